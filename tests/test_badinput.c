/*
 * test_badinput.c - the loaders against bad files (issue 10): for the .pth
 * and safetensors readers, the model loader, the vocabulary, state files
 * and chat templates, files that are empty, cut at every structural
 * boundary, declare huge sizes, overlap, hold NaN/Inf weights, claim
 * big-endian data, or belong to another model.  Each case asserts the
 * exact one-line error and that the file on disk is unchanged.
 *
 * Allocation bombs: outside ASan the address space is capped at 1 GiB, so
 * a loader that believed a 2^60-byte size would fail with "out of memory"
 * instead of the expected message; under ASan any malloc above 1 GiB
 * aborts (max_allocation_size_mb).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "app/session/chat.h"
#include "engine/load/checkpoint.h"
#include "engine/load/convcache.h"
#include "engine/kernels/quant.h"
#include "engine/rwkv.h"
#include "engine/load/statefile.h"
#include "tests/evalonce.h"
#include "tests/testutil.h"
#include "tokenizer/world.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#ifdef UNDER_ASAN
/* Under ASan the address-space cap cannot be used: cap single allocations
 * at 1 GiB instead, so that a believed 2^60-byte size aborts the test. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "max_allocation_size_mb=1024";
}
#endif

static uint64_t fnv_bytes(const void *data, size_t n)
{
    const unsigned char *b = data;
    uint64_t h = 0xcbf29ce484222325ULL;
    size_t i;

    for (i = 0; i < n; i++) {
        h = (h ^ b[i]) * 0x100000001b3ULL;
    }
    return h;
}

/* A checksum of a file's bytes (four interleaved FNV-style lanes over
 * 8-byte words, then the tail) and its size; ~0 if unreadable. */
static uint64_t file_sum(const char *path, size_t *size)
{
    struct stat st;
    const unsigned char *p;
    uint64_t lane[4] = { 1, 2, 3, 4 }, w, h;
    size_t n, i;
    int fd, k;

    *size = 0;
    fd = open(path, O_RDONLY);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) {
            close(fd);
        }
        return ~(uint64_t)0;    /* a directory, a missing file: nothing to compare */
    }
    n = (size_t)st.st_size;
    *size = n;
    if (n == 0) {
        close(fd);
        return 0;
    }
    p = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        return ~(uint64_t)0;
    }
    for (i = 0; i + 32 <= n; i += 32) {
        for (k = 0; k < 4; k++) {
            memcpy(&w, p + i + 8 * k, 8);
            lane[k] = (lane[k] ^ w) * 0x100000001b3ULL;
            lane[k] ^= lane[k] >> 29;
        }
    }
    h = fnv_bytes(p + i, n - i);
    for (k = 0; k < 4; k++) {
        h = (h ^ lane[k]) * 0x9e3779b97f4a7c15ULL;
    }
    munmap((void *)p, n);
    return h;
}

/* ------------------------------------------------------------ loaders --- */

/* 1 if a message holds no control byte (no newline, no escape sequence):
 * names from files in it were escaped. */
static int shown_plain(const char *msg)
{
    for (; *msg; msg++) {
        if ((unsigned char)*msg < 0x20 || *msg == 0x7f) {
            return 0;
        }
    }
    return 1;
}

enum loader { L_CKPT, L_MODEL, L_VOCAB, L_STATE, L_TEMPLATE, L_CONVCACHE };

static rwkv_model *state_model;     /* the model L_STATE loads against */

/* The key fuzz_convcache's inputs were written for. */
static const struct convcache_key fuzz_cache_key = {
    .size = 1, .ino = 2, .dev = 3, .fingerprint = 4, .pack_signature = 5, .mtime_ns = 6,
    .dtype = RWKV_DTYPE_Q4,
};

/* L_CONVCACHE: the file parsed as fuzz_convcache does, as it is and sealed
 * (convcache_seal); err gets "PATH: reason" of the first refusal whose
 * reason is not one line, else of the sealed try.  1 if the sealed image
 * was accepted. */
static int run_convcache(const char *path, char *err, size_t errlen)
{
    size_t len;
    unsigned char *buf = read_file(path, &len);
    char why[2][RWKV_ERRLEN];
    int accepted = 0;

    if (!buf) {
        snprintf(err, errlen, "%s: cannot read", path);
        return 0;
    }
    for (int sealed = 0; sealed < 2; sealed++) {
        convcache *c;

        if (sealed) {
            convcache_seal(buf, len);
        }
        why[sealed][0] = '\0';
        c = convcache_parse(buf, len, &fuzz_cache_key, NULL, why[sealed], sizeof why[sealed]);
        accepted = c != NULL;
        convcache_close(c);
    }
    snprintf(err, errlen, "%s: %s", path, strchr(why[0], '\n') ? why[0] : why[1]);
    free(buf);
    return accepted && !strchr(why[0], '\n');
}

/* Runs a loader on path; 1 if it accepted the file (freed again). */
static int run_loader(enum loader l, const char *path, char *err, size_t errlen)
{
    struct rwkv_load_options opts = { RWKV_DTYPE_AUTO, 1, RWKV_CACHE_MODE_ON };
    struct chat_template t;
    ckpt_file *f;
    rwkv_model *m;
    world_tokenizer *tok;
    rwkv_statefile *sf;

    err[0] = '\0';
    switch (l) {
    case L_CKPT:
        f = ckpt_open(path, err, errlen);
        ckpt_close(f);
        return f != NULL;
    case L_MODEL:
        m = rwkv_model_load(path, &opts, err, errlen);
        rwkv_model_free(m);
        return m != NULL;
    case L_VOCAB:
        tok = world_load(path, err, errlen);
        world_free(tok);
        return tok != NULL;
    case L_STATE:
        sf = rwkv_statefile_load(path, state_model, err, errlen);
        rwkv_statefile_free(sf);
        return sf != NULL;
    case L_TEMPLATE:
        memset(&t, 0, sizeof(t));
        if (chat_template_load(&t, path, err, errlen) < 0) {
            return 0;
        }
        chat_template_free(&t);
        return 1;
    case L_CONVCACHE:
        return run_convcache(path, err, errlen);
    }
    return 0;
}

static int quiet;       /* 1: report only failures (loops of many cases) */
static int n_quiet_ok;

/* Loads path with l expecting exactly the error want (printf format), one
 * line, and the file unchanged.  want NULL: the file must load. */
__attribute__((format(printf, 4, 5)))
static int expect(const char *what, enum loader l, const char *path, const char *want, ...)
{
    char err[1024], exp[1024];
    size_t before_size, after_size;
    uint64_t before = file_sum(path, &before_size), after;
    int loaded, good;
    va_list ap;

    exp[0] = '\0';
    if (want) {
        va_start(ap, want);
        vsnprintf(exp, sizeof(exp), want, ap);
        va_end(ap);
    }
    loaded = run_loader(l, path, err, sizeof(err));
    after = file_sum(path, &after_size);
    good = want ? !loaded && !strcmp(err, exp) && !strchr(err, '\n')
                : loaded;
    good = good && before == after && before_size == after_size;
    if (quiet && good) {
        n_quiet_ok++;
        return 1;
    }
    if (!good) {
        diag("%s: got  \"%s\"%s", what, loaded ? "(loaded)" : err,
             before == after ? "" : " and the file changed");
        diag("%s: want \"%s\"", what, want ? exp : "(loads)");
    }
    ok(good, "%s: %s%s%s", what, want ? "\"" : "loads", want ? exp : "", want ? "\"" : "");
    return good;
}

/* ---------------------------------------------------------------- zip --- */

struct zent {
    char name[256];
    const unsigned char *data;
    size_t size;
    size_t header, data_off;    /* offsets in the file */
    size_t cd;                  /* offset of its central directory entry */
};

/* Lists a plain (non-ZIP64, no comment) zip; returns the count, fills
 * *cd_off and *eocd. */
static int zip_list(const unsigned char *b, size_t len, struct zent *e, int max, size_t *cd_off,
                    size_t *eocd)
{
    size_t pos, n, i;

    *eocd = len - 22;
    if (rd32(b + *eocd) != 0x06054b50) {
        return -1;
    }
    n = rd16(b + *eocd + 10);
    pos = *cd_off = rd32(b + *eocd + 16);
    for (i = 0; i < n && (int)i < max; i++) {
        size_t nlen = rd16(b + pos + 28), lh = rd32(b + pos + 42);
        snprintf(e[i].name, sizeof(e[i].name), "%.*s", (int)nlen, b + pos + 46);
        e[i].cd = pos;
        e[i].size = rd32(b + pos + 24);
        e[i].header = lh;
        e[i].data_off = lh + 30 + rd16(b + lh + 26) + rd16(b + lh + 28);
        e[i].data = b + e[i].data_off;
        pos += 46 + nlen + rd16(b + pos + 30) + rd16(b + pos + 32);
    }
    return (int)n;
}

/* Length of the pickle opcode at p (with its argument), as far as the
 * opcodes of a torch state dict go; may run past len (a cut opcode). */
static size_t op_len(const unsigned char *p, size_t len)
{
    const unsigned char *nl;

    switch (p[0]) {
    case 0x80: case 'q': case 'h': case 'K': return 2;
    case 'M': return 3;
    case 'r': case 'j': case 'J': return 5;
    case 'X': return len < 5 ? 5 : 5 + rd32(p + 1);
    case 0x8c: case 0x8a: return len < 2 ? 2 : 2 + p[1];
    case 'c':
        nl = memchr(p + 1, '\n', len - 1);
        nl = nl ? memchr(nl + 1, '\n', len - (size_t)(nl + 1 - p)) : NULL;
        return nl ? (size_t)(nl - p) + 1 : len + 1;
    default: return 1;
    }
}

/* ---------------------------------------------------------------- pth --- */

/* Cuts at every structural boundary of the zip, each local header, entry,
 * central directory entry and the end record. */
static void test_pth_cuts(const unsigned char *buf, size_t len, const struct zent *e, int n,
                          size_t cd_off, size_t eocd)
{
    const char *p = tmp_path("cut.pth");
    size_t *cuts = malloc(sizeof(size_t) * ((size_t)n * 12 + 16)), nc = 0, i;
    int k, fd;

    cuts[nc++] = 1;
    cuts[nc++] = 2;
    cuts[nc++] = 4;
    cuts[nc++] = 21;
    for (k = 0; k < n; k++) {
        size_t b[] = { e[k].header, e[k].header + 30, e[k].data_off, e[k].data_off + 1,
                       e[k].data_off + e[k].size - 1, e[k].data_off + e[k].size,
                       e[k].cd, e[k].cd + 46 };
        for (i = 0; i < sizeof(b) / sizeof(b[0]); i++) {
            if (b[i] > 0 && b[i] < len) {
                cuts[nc++] = b[i];
            }
        }
    }
    cuts[nc++] = cd_off;
    cuts[nc++] = eocd;
    cuts[nc++] = eocd + 10;
    cuts[nc++] = len - 1;
    /* One copy of the file, shortened cut by cut (longest first). */
    for (i = 1; i < nc; i++) {
        size_t j = i, t = cuts[i];
        while (j > 0 && cuts[j - 1] < t) {
            cuts[j] = cuts[j - 1];
            j--;
        }
        cuts[j] = t;
    }
    write_file(p, buf, len);
    quiet = 1;
    n_quiet_ok = 0;
    for (i = 0; i < nc; i++) {
        char what[64];
        size_t c = cuts[i];

        if (i > 0 && c == cuts[i - 1]) {
            n_quiet_ok++;
            continue;
        }
        if (truncate(p, (off_t)c) != 0) {
            perror("truncate");
            exit(99);
        }
        snprintf(what, sizeof(what), "v7.pth cut at %zu", c);
        if (c < 2) {
            expect(what, L_CKPT, p, "%s: not a model file (neither a PyTorch zip checkpoint "
                   "nor safetensors)", p);
        } else if (c < 4) {
            expect(what, L_CKPT, p, "%s: offset 0: zip file does not start with a local file "
                   "header", p);
        } else if (c < 22) {
            expect(what, L_CKPT, p, "%s: truncated zip file (%zu bytes)", p, c);
        } else {
            expect(what, L_CKPT, p, "%s: truncated or damaged zip file: no end of central "
                   "directory record (file is %zu bytes)", p, c);
        }
    }
    quiet = 0;
    ok(n_quiet_ok == (int)nc, "v7.pth cut at %zu structural boundaries (local headers, entry "
       "data, central directory entries, end record): exact error each time", nc);
    (void)fd;
    free(cuts);

    /* The central directory cut short but an end record after it. */
    quiet = 1;
    n_quiet_ok = 0;
    {
        unsigned char *copy = malloc(len + 22);
        for (k = 0; k < n; k++) {
            memcpy(copy, buf, e[k].cd);
            memcpy(copy + e[k].cd, buf + eocd, 22);
            write_file(p, copy, e[k].cd + 22);
            expect("central directory cut", L_CKPT, p, "%s: offset %zu: central directory "
                   "(%u bytes) runs past its end record: truncated or damaged zip", p, cd_off,
                   rd32(buf + eocd + 12));
        }
        free(copy);
    }
    quiet = 0;
    ok(n_quiet_ok == n, "v7.pth with its central directory cut before each of its %d entries "
       "and an end record appended: exact error each time", n);
}

/* Every zip entry the reader uses, its local header damaged; entries cut
 * one byte short; data.pkl cut at every byte. */
static void test_pth_entries(const unsigned char *buf, size_t len, const struct zent *e, int n)
{
    const char *p = tmp_path("entry.pth");
    unsigned char *copy = malloc(len);
    const char **names = malloc(sizeof(char *) * (size_t)n);
    const void **data = malloc(sizeof(void *) * (size_t)n);
    size_t *sizes = malloc(sizeof(size_t) * (size_t)n), i;
    const struct zent *pkl = NULL;
    char err[512];
    ckpt_file *good;
    int k, n_entries = 0, n_cut = 0;

    for (k = 0; k < n; k++) {
        names[k] = e[k].name;
        data[k] = e[k].data;
        sizes[k] = e[k].size;
        if (strstr(e[k].name, "data.pkl")) {
            pkl = &e[k];
        }
    }
    /* a damaged local header signature */
    quiet = 1;
    n_quiet_ok = 0;
    for (k = 0; k < n; k++) {
        int used = strstr(e[k].name, "/data/") || strstr(e[k].name, "data.pkl") ||
                   strstr(e[k].name, "byteorder");
        memcpy(copy, buf, len);
        copy[e[k].header + 3] = 0;
        write_file(p, copy, len);
        if (e[k].header == 0) {
            expect(e[k].name, L_CKPT, p, "%s: offset 0: zip file does not start with a local "
                   "file header", p);
        } else if (used) {
            expect(e[k].name, L_CKPT, p, "%s: offset %zu: zip entry %s: no local file header "
                   "there (truncated file?)", p, e[k].header, e[k].name);
        } else {
            expect(e[k].name, L_CKPT, p, NULL);
        }
    }
    quiet = 0;
    ok(n_quiet_ok == n, "v7.pth with each of its %d local headers damaged: exact error naming "
       "the entry (or loads when the entry is not read)", n);

    /* storage entries one byte short (a consistent zip around them) */
    good = ckpt_open(shared_path("fixtures/models/v7.pth"), err, sizeof(err));
    quiet = 1;
    n_quiet_ok = 0;
    for (k = 0; good && k < n; k++) {
        const struct ckpt_tensor *t = NULL;
        size_t mlen;
        const unsigned char *map = ckpt_bytes(good, &mlen);

        if (!strstr(e[k].name, "/data/")) {
            continue;
        }
        for (i = 0; i < ckpt_count(good); i++) {
            const unsigned char *d = ckpt_at(good, i)->data;
            if (d >= map + e[k].data_off && d < map + e[k].data_off + e[k].size) {
                t = ckpt_at(good, i);
            }
        }
        n_entries++;
        if (!t) {
            continue;
        }
        sizes[k] = e[k].size - 1;
        write_zip(p, n, names, data, sizes);
        sizes[k] = e[k].size;
        expect(e[k].name, L_CKPT, p, "%s: tensor %s: storage of %zu %s elements runs past the "
               "end of entry %s (%zu bytes)", p, t->name, e[k].size / ckpt_dtype_size(t->dtype),
               ckpt_dtype_name(t->dtype), e[k].name, e[k].size - 1);
        n_cut++;
    }
    quiet = 0;
    ok(good && n_quiet_ok == n_cut && n_cut == n_entries && n_cut > 90,
       "each of the %d storage entries of v7.pth one byte short: exact error naming its tensor",
       n_cut);
    ckpt_close(good);

    /* data.pkl cut at every opcode boundary and inside every opcode
     * argument, in a zip of its own */
    if (pkl) {
        const char *pn[] = { "v7/data.pkl" };
        const void *pd[] = { pkl->data };
        size_t pos, l, ps[1], n_cuts = 0, c, inner[2];
        int j;

        quiet = 1;
        n_quiet_ok = 0;
        for (pos = 0; pos < pkl->size; pos += l) {
            l = op_len(pkl->data + pos, pkl->size - pos);
            ps[0] = pos;
            write_zip(p, 1, pn, pd, ps);
            expect("data.pkl cut", L_CKPT, p, "%s: v7/data.pkl offset %zu: pickle ends "
                   "without STOP (truncated data.pkl)", p, pos);
            n_cuts++;
            inner[0] = pos + 1;
            inner[1] = pos + l / 2 + 1;
            for (j = 0; j < 2; j++) {
                c = inner[j];
                if (c >= pos + l || (j == 1 && c == inner[0])) {
                    continue;
                }
                ps[0] = c;
                write_zip(p, 1, pn, pd, ps);
                if (pkl->data[pos] == 'c') {
                    expect("data.pkl cut", L_CKPT, p, "%s: v7/data.pkl offset %zu: "
                           "unterminated GLOBAL", p, pos);
                } else {
                    expect("data.pkl cut", L_CKPT, p, "%s: v7/data.pkl offset %zu: pickle "
                           "ends inside an opcode argument (truncated data.pkl)", p, pos);
                }
                n_cuts++;
            }
        }
        quiet = 0;
        ok(n_quiet_ok == (int)n_cuts, "data.pkl of v7.pth (%zu bytes) cut at each opcode and "
           "inside each argument (%zu cuts): exact error (offset of the cut opcode)",
           pkl->size, n_cuts);
    }
    free(copy);
    free(names);
    free(data);
    free(sizes);
}

/* A hand-made state dict {'a': tensor} whose numbers are 8-byte LONG1
 * values: storage numel, the size tuple and the stride tuple. */
static size_t bomb_pickle(unsigned char *out, int64_t numel, int ndim, const int64_t *shape,
                          const int64_t *stride)
{
    static const char head[] =
        "\x80\x02}(X\x01\x00\x00\x00" "a" "ctorch._utils\n_rebuild_tensor_v2\n"
        "((X\x07\x00\x00\x00" "storage" "ctorch\nFloatStorage\n"
        "X\x01\x00\x00\x00" "0" "X\x03\x00\x00\x00" "cpu";
    static const char tail[] = "\x89" "ccollections\nOrderedDict\n" ")R" "tR" "u.";
    size_t n = sizeof(head) - 1;
    int i, pass;

    memcpy(out, head, n);
    out[n++] = 0x8a;
    out[n++] = 8;
    wr64(out + n, (uint64_t)numel);
    n += 8;
    out[n++] = 't';
    out[n++] = 'Q';
    out[n++] = 'K';
    out[n++] = 0;
    for (pass = 0; pass < 2; pass++) {
        out[n++] = '(';
        for (i = 0; i < ndim; i++) {
            out[n++] = 0x8a;
            out[n++] = 8;
            wr64(out + n, (uint64_t)(pass ? stride[i] : shape[i]));
            n += 8;
        }
        out[n++] = 't';
    }
    memcpy(out + n, tail, sizeof(tail) - 1);
    return n + sizeof(tail) - 1;
}

static void write_bomb(const char *p, int64_t numel, int ndim, const int64_t *shape,
                       const int64_t *stride)
{
    static const float s0[4] = { 1, 2, 3, 4 };
    unsigned char pk[512];
    const char *names[] = { "archive/data.pkl", "archive/data/0" };
    const void *data[] = { pk, s0 };
    size_t sizes[] = { bomb_pickle(pk, numel, ndim, shape, stride), sizeof(s0) };

    write_zip(p, 2, names, data, sizes);
}

/* A state dict of n tensors t0, t1, ... that all view one float32 storage
 * of 128x128 transposed (strides 1, 128): each must be copied (gathered),
 * so a 1 MB pickle could ask for gigabytes of copies. */
static void write_amplifier(const char *p, int n, int contiguous)
{
    static float s0[128 * 128];
    size_t cap = 256 + (size_t)n * 64, len = 0;
    unsigned char *pk = malloc(cap);
    const char *names[] = { "archive/data.pkl", "archive/data/0" };
    const void *data[] = { pk, s0 };
    size_t sizes[2];
    int i;
    static const char head[] =
        "\x80\x02}(" "\x8c\x02" "t0" "ctorch._utils\n_rebuild_tensor_v2\nq\x00"
        "((X\x07\x00\x00\x00" "storage" "ctorch\nFloatStorage\n"
        "X\x01\x00\x00\x00" "0" "X\x03\x00\x00\x00" "cpu" "J\x00\x40\x00\x00" "tq\x01Q"
        "K\x00" "K\x80K\x80\x86q\x02" "K\x01K\x80\x86q\x03" "\x89tR";

    memcpy(pk, head, sizeof(head) - 1);
    if (contiguous) {   /* strides (128, 1) instead of (1, 128) */
        unsigned char *st = memmem(pk, sizeof(head) - 1, "K\x01K\x80\x86", 5);
        memcpy(st, "K\x80K\x01\x86", 5);
    }
    len = sizeof(head) - 1;
    for (i = 1; i < n; i++) {
        char name[16];
        int nl = snprintf(name, sizeof(name), "t%d", i);
        pk[len++] = 0x8c;               /* SHORT_BINUNICODE name */
        pk[len++] = (unsigned char)nl;
        memcpy(pk + len, name, (size_t)nl);
        len += (size_t)nl;
        memcpy(pk + len, "h\x00(h\x01QK\x00h\x02h\x03\x89tR", 15);
        len += 15;
    }
    memcpy(pk + len, "u.", 2);
    len += 2;
    sizes[0] = len;
    sizes[1] = sizeof(s0);
    write_zip(p, 2, names, data, sizes);
    free(pk);
}

static void test_pth_bombs(const unsigned char *buf, size_t len, const struct zent *e, int n,
                           size_t eocd)
{
    const char *p = tmp_path("bomb.pth");
    int64_t big = (int64_t)1 << 60, big59 = (int64_t)1 << 59, four = 4, one = 1;
    unsigned char *copy;
    int k;

    write_bomb(p, 4, 1, &four, &one);
    expect("hand-made .pth", L_CKPT, p, NULL);
    write_amplifier(p, 10, 0);
    expect("10 transposed views of one storage", L_CKPT, p, NULL);
    /* 3000 x 64 KiB = 197 MB of copies from a 0.13 MB file: refused once
     * the copies (and names) pass four times the file size + 16 MiB */
    write_amplifier(p, 3000, 0);
    {
        struct stat st;
        size_t owned = 0, limit;
        int k = 0;

        stat(p, &st);
        limit = 4 * (size_t)st.st_size + (16u << 20);
        for (;; k++) {
            char name[16];
            if (owned + 65536 > limit) {
                break;
            }
            owned += 65536;
            owned += (size_t)snprintf(name, sizeof(name), "t%d", k) + 1;
            if (owned > limit) {
                break;
            }
        }
        expect("3000 transposed views of one storage (197 MB of copies)", L_CKPT, p,
               "%s: tensor t%d: copied tensors and names would exceed four times the file "
               "size", p, k);
        /* the same as plain views: nothing copied, but a model made of them
         * would convert 197 MB of weights */
        write_amplifier(p, 3000, 1);
        stat(p, &st);
        expect("3000 views of one storage", L_CKPT, p, "%s: its tensors add up to %d bytes, "
               "more than four times the file (%zu bytes): storages shared by many tensors",
               p, 3000 * 65536, (size_t)st.st_size);
    }
    write_bomb(p, big, 1, &four, &one);
    expect("storage claiming 2^60 elements", L_CKPT, p, "%s: tensor a: storage of "
           "1152921504606846976 float32 elements runs past the end of entry archive/data/0 "
           "(16 bytes)", p);
    write_bomb(p, 4, 1, &big59, &one);
    expect("tensor of 2^59 elements over 4 stored", L_CKPT, p, "%s: tensor a: data runs past "
           "the end of entry archive/data/0 (element 576460752303423487 of a storage of 4)", p);
    write_bomb(p, 4, 1, &big, &one);
    expect("tensor of 2^60 elements", L_CKPT, p, "%s: tensor a: size overflows", p);
    {
        int64_t shape[2] = { (int64_t)1 << 40, (int64_t)1 << 40 }, stride[2] = { 1, 1 };
        write_bomb(p, 4, 2, shape, stride);
        expect("tensor of 2^80 elements", L_CKPT, p, "%s: tensor a: size overflows", p);
    }
    {
        int64_t shape[2] = { 2, 2 }, stride[2] = { 0, 0 };
        write_bomb(p, 4, 2, shape, stride);
        expect("expanded (zero-stride) view", L_CKPT, p, NULL);
        shape[0] = shape[1] = 3;
        write_bomb(p, 4, 2, shape, stride);
        expect("expanded view larger than its storage", L_CKPT, p, "%s: tensor a: overlapping "
               "(expanded) view of 9 elements over a storage of 4 not supported", p);
    }
    {
        static const char memo[] = "\x80\x02}r\xf0\xff\xff\xff.";
        static const char str[] = "\x80\x02}X\xff\xff\xff\xff" "abc";
        const char *names[] = { "archive/data.pkl" };
        const void *data[] = { memo };
        size_t sizes[] = { sizeof(memo) - 1 };

        write_zip(p, 1, names, data, sizes);
        expect("pickle memo index 2^32-16", L_CKPT, p, "%s: archive/data.pkl offset 3: memo "
               "index 4294967280 out of range", p);
        data[0] = str;
        sizes[0] = sizeof(str) - 1;
        write_zip(p, 1, names, data, sizes);
        expect("pickle string of 2^32-1 bytes", L_CKPT, p, "%s: archive/data.pkl offset 3: "
               "pickle ends inside an opcode argument (truncated data.pkl)", p);
    }
    copy = malloc(len);
    /* end record: 60000 entries in the directory */
    memcpy(copy, buf, len);
    wr16(copy + eocd + 8, 60000);
    wr16(copy + eocd + 10, 60000);
    write_file(p, copy, len);
    expect("end record claiming 60000 entries", L_CKPT, p, "%s: zip claims 60000 entries in a "
           "%u-byte central directory", p, rd32(buf + eocd + 12));
    /* an entry claiming 4 GiB - 2 bytes */
    for (k = 0; k < n && !strstr(e[k].name, "/data/0"); k++) {
    }
    memcpy(copy, buf, len);
    wr32(copy + e[k].cd + 20, 0xfffffffeu);
    wr32(copy + e[k].cd + 24, 0xfffffffeu);
    write_file(p, copy, len);
    expect("entry claiming 4 GiB", L_CKPT, p, "%s: offset %zu: zip entry %s (4294967294 bytes) "
           "runs past the end of the file (%zu bytes): truncated file", p, e[k].data_off,
           e[k].name, len);
    free(copy);
}

/* Opens path in a child process; its peak RSS growth (KiB) in *grew_kb
 * and its error in err.  1 if the file opened, 0 if refused, -1 if the
 * child died. */
static int open_measured(const char *path, long *grew_kb, char *err, size_t errlen)
{
    int fds[2], status;
    pid_t pid;
    struct {
        long grew_kb;
        int opened;
        char err[512];
    } r;

    memset(&r, 0, sizeof(r));
    if (pipe(fds) != 0 || (pid = fork()) < 0) {
        return -1;
    }
    if (pid == 0) {
        struct rusage before, after;
        ckpt_file *f;

        close(fds[0]);
        getrusage(RUSAGE_SELF, &before);
        f = ckpt_open(path, r.err, sizeof(r.err));
        getrusage(RUSAGE_SELF, &after);
        r.opened = f != NULL;
        r.grew_kb = after.ru_maxrss - before.ru_maxrss;
        ckpt_close(f);
        _exit(write(fds[1], &r, sizeof(r)) == (ssize_t)sizeof(r) ? 0 : 1);
    }
    close(fds[1]);
    if (read(fds[0], &r, sizeof(r)) != (ssize_t)sizeof(r)) {
        r.opened = -1;
    }
    close(fds[0]);
    waitpid(pid, &status, 0);
    *grew_kb = r.grew_kb;
    snprintf(err, errlen, "%s", r.err);
    return r.opened;
}

/* Runs of one pickle opcode (each value ~200 bytes of heap before the
 * budget: an 8 MB pickle took 1.6 GB) must be refused within a small
 * multiple of their size. */
static void test_pth_opcode_runs(void)
{
    static const struct {
        const char *what, *unit;
        size_t len;
        int budget;     /* refused by the unpickling budget (else runs to the end) */
    } runs[] = {
        { "EMPTY_DICT", "}", 1, 1 },
        { "NONE then TUPLE1 nested", "\x85", 1, 1 },
        { "MARK then TUPLE", "(t", 2, 0 },
        { "EMPTY_TUPLE", ")", 1, 0 },
        { "NONE", "N", 1, 0 },
        { "NEWTRUE", "\x88", 1, 0 },
        { "MARK", "(", 1, 0 },
        { "NONE then BINPUT", "Nq\x00", 3, 0 },
        { "BININT1 then LONG_BINPUT", "K\x01r\x00\x00\x00\x00", 7, 0 },
        { "EMPTY_DICT then BINPUT", "}q\x00", 3, 0 },
        { "BINGET of a dict", "h\x00", 2, 0 },
        { "SHORT_BINUNICODE", "\x8c\x01" "a", 3, 0 },
    };
    const size_t size = (size_t)8 << 20;
    const char *p = tmp_path("runs.pth");
    const char *names[] = { "archive/data.pkl" };
    unsigned char *pk = malloc(size + 16);
    size_t i, n;

    for (i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
        const void *data[] = { pk };
        size_t sizes[1];
        char err[1024], want[512];
        long grew_kb = 0;
        int opened;

        n = 0;
        pk[n++] = 0x80;
        pk[n++] = 2;
        pk[n++] = '}';          /* something for TUPLE1, BINGET 0 and memo 0 */
        pk[n++] = 'q';
        pk[n++] = 0;
        pk[n++] = 'N';
        while (n + runs[i].len <= size) {
            memcpy(pk + n, runs[i].unit, runs[i].len);
            n += runs[i].len;
        }
        sizes[0] = n;
        write_zip(p, 1, names, data, sizes);
        opened = open_measured(p, &grew_kb, err, sizeof(err));
        if (runs[i].budget) {
            snprintf(want, sizeof(want), "unpickling would take more than %zu MiB, 32 times the "
                     "size of the pickle: damaged or not a plain state dict",
                     (((size_t)1 << 20) + 32 * n) >> 20);
        } else {
            snprintf(want, sizeof(want), "pickle ends without STOP (truncated data.pkl)");
        }
        /* valgrind's own memory counts in the child's RSS: there only the
         * refusal is checked. */
        ok(opened == 0 && strstr(err, want) && !strchr(err, '\n') &&
           (grew_kb < (long)(48 * (n >> 10)) || under_valgrind()),
           "a %zu-byte pickle of %s refused (\"%s\") with the peak RSS %ld KiB higher "
           "(at most 48 times the pickle)", n, runs[i].what, want, grew_kb);
        if (opened != 0 || !strstr(err, want)) {
            diag("got: %s", opened < 0 ? "(child died)" : opened ? "(opened)" : err);
        }
    }
    free(pk);
}

/* torch2-style files say "little" or "big" in PREFIX/byteorder. */
static void test_pth_byteorder(void)
{
    size_t len, eocd, cd_off;
    unsigned char *buf = read_file(shared_path("fixtures/models/v7.torch2.pth"), &len);
    static struct zent e[512];
    const char *names[512];
    const void *data[512];
    size_t sizes[512];
    const char *p = tmp_path("byteorder.pth");
    int n, k, bo = -1;

    if (!buf || (n = zip_list(buf, len, e, 512, &cd_off, &eocd)) <= 0) {
        skip("v7.torch2.pth not readable as a plain zip");
        free(buf);
        return;
    }
    for (k = 0; k < n; k++) {
        names[k] = e[k].name;
        data[k] = e[k].data;
        sizes[k] = e[k].size;
        if (strstr(e[k].name, "/byteorder")) {
            bo = k;
        }
    }
    if (bo < 0) {
        skip("v7.torch2.pth has no byteorder entry");
        free(buf);
        return;
    }
    write_zip(p, n, names, data, sizes);
    expect("v7.torch2.pth rewritten", L_MODEL, p, NULL);
    data[bo] = "big";
    sizes[bo] = 3;
    write_zip(p, n, names, data, sizes);
    expect("byteorder \"big\"", L_CKPT, p, "%s: entry %s: only little-endian checkpoints are "
           "supported", p, e[bo].name);
    data[bo] = "little\n";
    sizes[bo] = 7;
    write_zip(p, n, names, data, sizes);
    expect("byteorder \"little\\n\"", L_CKPT, p, "%s: entry %s: only little-endian checkpoints "
           "are supported", p, e[bo].name);
    free(buf);
}

static void test_pth(void)
{
    size_t len, cd_off, eocd;
    unsigned char *buf = read_file(shared_path("fixtures/models/v7.pth"), &len);
    static struct zent e[512];
    int n;

    if (!buf || (n = zip_list(buf, len, e, 512, &cd_off, &eocd)) <= 0) {
        skip("v7.pth not readable");
        free(buf);
        return;
    }
    write_file(tmp_path("empty.pth"), "", 0);
    expect("empty .pth", L_CKPT, tmp_path("empty.pth"), "%s: empty file (0 bytes), not a model",
           tmp_path("empty.pth"));
    expect("empty .pth as a model", L_MODEL, tmp_path("empty.pth"), "%s: empty file (0 bytes), "
           "not a model", tmp_path("empty.pth"));
    test_pth_cuts(buf, len, e, n, cd_off, eocd);
    test_pth_entries(buf, len, e, n);
    test_pth_bombs(buf, len, e, n, eocd);
    test_pth_opcode_runs();
    test_pth_byteorder();
    free(buf);
}

/* -------------------------------------------------------- safetensors --- */

static void put_safetensors(const char *p, const char *header, const void *data, size_t dlen)
{
    size_t hlen = strlen(header), len = 8 + hlen + dlen;
    unsigned char *b = malloc(len);

    wr64(b, hlen);
    memcpy(b + 8, header, hlen);
    memcpy(b + 8 + hlen, data, dlen);
    write_file(p, b, len);
    free(b);
}

static void test_safetensors(void)
{
    const char *src = shared_path("fixtures/models/v7.safetensors");
    const char *p = tmp_path("cut.safetensors");
    unsigned char *buf;
    size_t len, hlen, i, nc = 0, *cuts;
    char err[512];
    ckpt_file *f;
    float data[16] = { 0 };

    buf = read_file(src, &len);
    f = buf ? ckpt_open(src, err, sizeof(err)) : NULL;
    if (!f) {
        skip("v7.safetensors not readable");
        free(buf);
        return;
    }
    hlen = (size_t)buf[0] | (size_t)buf[1] << 8 | (size_t)buf[2] << 16 | (size_t)buf[3] << 24;
    write_file(tmp_path("empty.safetensors"), "", 0);
    expect("empty safetensors", L_CKPT, tmp_path("empty.safetensors"), "%s: empty file (0 "
           "bytes), not a model", tmp_path("empty.safetensors"));

    /* cuts: in the length prefix, the header, and each tensor's data */
    cuts = malloc(sizeof(size_t) * (3 * ckpt_count(f) + 16));
    for (i = 1; i <= 8; i++) {
        cuts[nc++] = i;
    }
    cuts[nc++] = 9;
    cuts[nc++] = 8 + hlen / 2;
    cuts[nc++] = 8 + hlen - 1;
    for (i = 0; i < ckpt_count(f); i++) {
        const struct ckpt_tensor *t = ckpt_at(f, i);
        size_t mlen, off = (size_t)((const unsigned char *)t->data - ckpt_bytes(f, &mlen));
        cuts[nc++] = off;
        cuts[nc++] = off + t->nbytes / 2;
        cuts[nc++] = off + t->nbytes - 1;
    }
    quiet = 1;
    n_quiet_ok = 0;
    for (i = 0; i < nc; i++) {
        size_t c = cuts[i], data_size = c > 8 + hlen ? c - 8 - hlen : 0, k;
        write_file(p, buf, c);
        if (c < 9) {
            expect("safetensors cut", L_CKPT, p, "%s: not a model file (neither a PyTorch zip "
                   "checkpoint nor safetensors)", p);
        } else if (c < 8 + hlen) {
            expect("safetensors cut", L_CKPT, p, "%s: safetensors header of %zu bytes runs past "
                   "the end of the file (%zu bytes): truncated or not safetensors", p, hlen, c);
        } else {
            /* the first tensor, in header order, whose data is cut */
            for (k = 0; k < ckpt_count(f); k++) {
                const struct ckpt_tensor *t = ckpt_at(f, k);
                size_t mlen, begin = (size_t)((const unsigned char *)t->data -
                                              ckpt_bytes(f, &mlen)) - 8 - hlen;
                if (begin + t->nbytes > data_size) {
                    expect("safetensors cut", L_CKPT, p, "%s: tensor %s: data_offsets [%zu, "
                           "%zu] run past the end of the data (%zu bytes): truncated file",
                           p, t->name, begin, begin + t->nbytes, data_size);
                    break;
                }
            }
        }
    }
    quiet = 0;
    ok(n_quiet_ok == (int)nc, "v7.safetensors cut at %zu boundaries (length prefix, header, "
       "start, middle and end of each tensor's data): exact error each time", nc);
    free(cuts);
    ckpt_close(f);
    free(buf);

    /* huge declared sizes */
    {
        unsigned char b[16] = { 0, 0, 0, 0, 0, 0, 0, 0x10, '{', '}' };
        write_file(p, b, sizeof(b));
        expect("header length 2^60", L_CKPT, p, "%s: safetensors header of 1152921504606846976 "
               "bytes runs past the end of the file (16 bytes): truncated or not safetensors", p);
    }
    put_safetensors(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],"
                    "\"data_offsets\":[0,1152921504606846976]}}", data, 16);
    expect("data_offsets to 2^60", L_CKPT, p, "%s: tensor a: data_offsets [0, "
           "1152921504606846976] run past the end of the data (16 bytes): truncated file", p);
    put_safetensors(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
                    "\"data_offsets\":[0,16]}}", data, 16);
    expect("shape of 2^62 elements", L_CKPT, p, "%s: tensor a: shape [4611686018427387904] "
           "overflows", p);
    put_safetensors(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1073741824,1073741824,16],"
                    "\"data_offsets\":[0,16]}}", data, 16);
    expect("shape of 2^64 elements", L_CKPT, p, "%s: tensor a: shape [1073741824, 1073741824, "
           "16] overflows", p);
    put_safetensors(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
                    "\"data_offsets\":[16,8]}}", data, 16);
    expect("reversed data_offsets", L_CKPT, p, "%s: tensor a: data_offsets [16, 8] are "
           "reversed", p);
    put_safetensors(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
                    "\"data_offsets\":[64,32]}}", data, 16);
    expect("reversed data_offsets past the end", L_CKPT, p, "%s: tensor a: data_offsets "
           "[64, 32] are reversed", p);
    put_safetensors(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],"
                    "\"data_offsets\":[0,99999999999999999999]}}", data, 16);
    expect("offset above 2^63", L_CKPT, p, "%s: header offset 76: number too large", p);

    /* found by fuzz_pth: no tensors at all sorted a NULL array (UBSan) */
    put_safetensors(p, "{}", data, 0);
    expect("safetensors header {}", L_CKPT, p, "%s: holds no tensors", p);
    put_safetensors(p, "{\"__metadata__\":{\"format\":\"pt\"}}", data, 0);
    expect("safetensors with metadata only", L_CKPT, p, "%s: holds no tensors", p);

    /* overlapping data */
    put_safetensors(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
                    data, 32);
    expect("overlapping tensors", L_CKPT, p, "%s: tensor b: data [8, 24] overlaps tensor a", p);
    put_safetensors(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]},"
                    "\"c\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
                    data, 32);
    expect("tensor inside another, an empty tensor between them", L_CKPT, p,
           "%s: tensor c: data [16, 24] overlaps tensor a", p);
    put_safetensors(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
                    data, 16);
    expect("two tensors on the same bytes", L_CKPT, p, "%s: tensor b: data [0, 16] overlaps "
           "tensor a", p);
    put_safetensors(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]},"
                    "\"c\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}",
                    data, 32);
    expect("adjacent tensors and an empty one", L_CKPT, p, NULL);
}

/* ------------------------------------------------------------ NaN/Inf --- */

/* Writes a copy of a model with count values of tensor name set to
 * non-finite bit patterns of its format; returns the path. */
static const char *poison(const char *rel, const char *out, const char *name, int count)
{
    size_t len, mlen, off;
    unsigned char *buf = read_file(shared_path(rel), &len);
    char err[512];
    ckpt_file *f = buf ? ckpt_open(shared_path(rel), err, sizeof(err)) : NULL;
    const struct ckpt_tensor *t = f ? ckpt_find(f, name) : NULL;
    int i;

    if (!t) {
        free(buf);
        ckpt_close(f);
        return NULL;
    }
    off = (size_t)((const unsigned char *)t->data - ckpt_bytes(f, &mlen));
    for (i = 0; i < count; i++) {
        size_t at = off + ((size_t)i * 7919 % (size_t)t->numel) * ckpt_dtype_size(t->dtype);
        int kind = i % 3;   /* NaN, +Inf, -Inf */
        if (t->dtype == CKPT_F32) {
            wr32(buf + at, kind == 0 ? 0x7fc00001u : kind == 1 ? 0x7f800000u : 0xff800000u);
        } else if (t->dtype == CKPT_F16) {
            wr16(buf + at, kind == 0 ? 0x7e01 : kind == 1 ? 0x7c00 : 0xfc00);
        } else {
            wr16(buf + at, kind == 0 ? 0x7fc1 : kind == 1 ? 0x7f80 : 0xff80);
        }
    }
    zip_fix_crcs(buf, len);     /* NaN written by the trainer, not by damage */
    write_file(tmp_path(out), buf, len);
    ckpt_close(f);
    free(buf);
    return tmp_path(out);
}

static void test_nonfinite(void)
{
    static const struct {
        const char *rel, *out, *tensor;
        int count;
    } cases[] = {
        { "fixtures/models/v7.pth", "nan-v7.pth", "blocks.0.att.key.weight", 3 },
        { "fixtures/models/v7.safetensors", "nan-v7.safetensors", "blocks.2.ffn.value.weight",
          1 },
        { "fixtures/models/v7-fp32.pth", "nan-fp32.pth", "blocks.1.att.w0", 5 },
        { "fixtures/models/v4.pth", "nan-v4.pth", "head.weight", 2 },
        { "fixtures/models/v7.pth", "nan-emb.pth", "emb.weight", 1000 },
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *p = poison(cases[i].rel, cases[i].out, cases[i].tensor, cases[i].count);
        char what[128];

        snprintf(what, sizeof(what), "%s with %d NaN/Inf in %s", cases[i].rel, cases[i].count,
                 cases[i].tensor);
        if (!p) {
            skip("%s: tensor not found", what);
            continue;
        }
        expect(what, L_MODEL, p, "%s: tensor %s: %d NaN/Inf value%s", p, cases[i].tensor,
               cases[i].count, cases[i].count == 1 ? "" : "s");
    }
}

/* --------------------------------------------------------- vocabulary --- */

static void test_vocab(void)
{
    const char *src = shared_path("fixtures/rwkv_vocab_v20230424.txt");
    const char *p = tmp_path("vocab.txt");
    size_t len, i, line_start[300], nl = 0;
    char *buf = read_file(src, &len);

    if (!buf) {
        skip("vocabulary fixture not found");
        return;
    }
    expect("the vocabulary", L_VOCAB, src, NULL);
    write_file(p, "", 0);
    expect("empty vocabulary", L_VOCAB, p, "%s: no token for byte 0x00 (every byte needs one)",
           p);
    /* line starts of the first lines */
    line_start[nl++] = 0;
    for (i = 0; i < len && nl < 300; i++) {
        if (buf[i] == '\n') {
            line_start[nl++] = i + 1;
        }
    }
    /* cut after whole lines: bytes 0x00.. are ids 1..256, one a line */
    write_file(p, buf, line_start[10]);
    expect("vocabulary of 10 lines", L_VOCAB, p, "%s: no token for byte 0x0a (every byte needs "
           "one)", p);
    write_file(p, buf, line_start[255]);
    expect("vocabulary of 255 lines", L_VOCAB, p, "%s: no token for byte 0xff (every byte needs "
           "one)", p);
    write_file(p, buf, line_start[256]);
    expect("vocabulary of the 256 single bytes", L_VOCAB, p, NULL);
    /* cut inside line 257 at every byte: "257 '\\x..' 2" style lines */
    {
        int n_cuts = 0;
        quiet = 1;
        n_quiet_ok = 0;
        for (i = line_start[256] + 1; i < line_start[257] - 1; i++) {
            char what[64];
            size_t k = i - line_start[256];
            const char *l = buf + line_start[256];
            size_t sp1 = (size_t)((const char *)memchr(l, ' ', 8) - l);
            size_t sp2 = (size_t)((const char *)memrchr(l, ' ', line_start[257] -
                                                        line_start[256]) - l);
            write_file(p, buf, i);
            snprintf(what, sizeof(what), "line 257 cut after %zu bytes", k);
            n_cuts++;
            if (k <= sp1) {
                expect(what, L_VOCAB, p, "%s:257: expected a space after the id", p);
            } else if (k == sp1 + 1) {
                expect(what, L_VOCAB, p, "%s:257: expected a Python string literal after the "
                       "id", p);
            } else if (k < sp2) {
                expect(what, L_VOCAB, p, "%s:257: unterminated string literal", p);
            } else if (k == sp2) {
                expect(what, L_VOCAB, p, "%s:257: expected a space and the length after the "
                       "string literal", p);
            } else {
                expect(what, L_VOCAB, p, "%s:257: expected the token length after the string "
                       "literal", p);
            }
        }
        quiet = 0;
        ok(n_quiet_ok == n_cuts, "vocabulary cut at each of the %d bytes inside line 257: "
           "exact error", n_cuts);
    }
    /* huge numbers */
    {
        size_t n = line_start[256];
        char *text = malloc(n + 64), what[96];
        memcpy(text, buf, n);
        {
            const char *bad[] = { "257 'ab' 99999999999999999999999\n",
                                  "99999999999999999999 'ab' 2\n",
                                  "257 'ab' 18446744073709551618\n",
                                  "257 'ab' -2\n" };
            const char *want[] = { "%s:257: expected the token length after the string literal",
                                   "%s:257: expected a token id (a number up to 16777216) at "
                                   "the start of the line",
                                   "%s:257: expected the token length after the string literal",
                                   "%s:257: expected the token length after the string literal" };
            for (i = 0; i < 4; i++) {
                size_t bl = strlen(bad[i]);
                memcpy(text + n, bad[i], bl);
                write_file(p, text, n + bl);
                snprintf(what, sizeof(what), "vocabulary line \"%.*s\"", (int)bl - 1, bad[i]);
                expect(what, L_VOCAB, p, want[i], p);
            }
        }
        free(text);
    }
    free(buf);
}

/* ---------------------------------------------------------- templates --- */

static void test_templates(void)
{
    const char *p = tmp_path("persona.txt");
    int fd;

    write_file(p, "", 0);
    expect("empty template", L_TEMPLATE, p, NULL);
    write_file(p, "user: Bob\nassistant\n---\nhi\n", 27);
    expect("template header line without a colon", L_TEMPLATE, p, "%s: line 2: expected \"key: "
           "value\" or \"---\"", p);
    write_file(p, "user: Bob\ncolour: red\n---\nhi\n", 29);
    expect("template with an unknown key", L_TEMPLATE, p, "%s: line 2: unknown key 'colour' "
           "(expected user, assistant, system, thinking or description)", p);
    write_file(p, "user:\n---\n", 10);
    expect("template with an empty name", L_TEMPLATE, p, "%s: line 1: empty value for 'user'", p);
    write_file(p, "user: A\0B\n---\n", 14);
    expect("template with a NUL byte", L_TEMPLATE, p, "%s: contains a NUL byte: not a text file",
           p);
    write_file(p, "user: \xff\xfe\n---\n\xc3(\n", 16);
    expect("template with invalid UTF-8 (fed as bytes)", L_TEMPLATE, p, NULL);
    /* 40 MiB of nothing (sparse): refused after reading at most 32 MiB */
    fd = open(p, O_WRONLY | O_TRUNC);
    if (fd >= 0 && ftruncate(fd, 40 << 20) == 0) {
        close(fd);
        expect("40 MiB template", L_TEMPLATE, p, "%s: larger than 16 MiB: not a chat template",
               p);
    } else {
        skip("cannot make a sparse file");
    }
    expect("template that is a directory", L_TEMPLATE, tmpdir, "%s: Is a directory", tmpdir);
    expect("missing template", L_TEMPLATE, tmp_path("none/x.txt"), "%s: No such file or "
           "directory", tmp_path("none/x.txt"));
}

/* --------------------------------------------------------- state files --- */

static void put_checksum(unsigned char *b, size_t len)
{
    wr64(b + len - 8, fnv_bytes(b, len - 8));
}

static void describe(char *buf, size_t len, const struct rwkv_info *i)
{
    if (i->version == 5) {
        snprintf(buf, len, "RWKV-5.%d, %d layers x %d, vocab %d, fingerprint %016llx", i->minor,
                 i->n_layer, i->n_embd, i->n_vocab, (unsigned long long)i->fingerprint);
    } else {
        snprintf(buf, len, "RWKV-%d, %d layers x %d, vocab %d, fingerprint %016llx", i->version,
                 i->n_layer, i->n_embd, i->n_vocab, (unsigned long long)i->fingerprint);
    }
}

static void test_statefile(void)
{
    struct rwkv_load_options opts = { RWKV_DTYPE_AUTO, 1, RWKV_CACHE_MODE_ON };
    const char *p = tmp_path("chat.state"), *q = tmp_path("cut.state");
    static const char transcript[] = "a transcript section, opaque to the engine";
    struct rwkv_statefile_section sec[2] = {
        { "transcript", transcript, sizeof(transcript) },
        { "extra", "xyz", 3 },
    };
    const char *others[] = { "fixtures/models/v6.pth", "fixtures/models/v7-fp32.pth",
                             "fixtures/models/v4.pth" };
    int32_t tokens[4] = { 1, 2, 3, 4 };
    char err[512], ours[200], theirs[200];
    unsigned char *buf, *copy;
    size_t len, i, nc = 0, cuts[64];
    rwkv_state *st;
    uint64_t n_sec;

    state_model = rwkv_model_load(shared_path("fixtures/models/v7.pth"), &opts, err,
                                  sizeof(err));
    if (!state_model) {
        skip("v7.pth: %s", err);
        return;
    }
    st = rwkv_state_new(state_model);
    eval_once(state_model, st, tokens, 4, NULL, 0, err, sizeof(err));
    if (rwkv_statefile_save(p, state_model, st, sec, 2, err, sizeof(err)) != 0) {
        ok(0, "state file saved: %s", err);
        goto out;
    }
    expect("a state file of v7.pth", L_STATE, p, NULL);
    buf = read_file(p, &len);
    n_sec = rd32(buf + 24);

    write_file(q, "", 0);
    expect("empty state file", L_STATE, q, "%s: not an rwkv-chat state file (no RWKVSTAT magic)",
           q);
    /* cuts: inside the magic, each header field, each table entry, each
     * section's start and end, the checksum */
    {
        size_t fields[] = { 4, 8, 12, 24, 28, 32, 96, 127, 128 };
        for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
            cuts[nc++] = fields[i];
        }
    }
    for (i = 0; i < n_sec && nc + 4 < 64; i++) {
        const unsigned char *e = buf + 128 + 32 * i;
        cuts[nc++] = 128 + 32 * i + 16;
        cuts[nc++] = 128 + 32 * (i + 1);
        cuts[nc++] = (size_t)rd32(e + 16);
        cuts[nc++] = (size_t)rd32(e + 16) + (size_t)rd32(e + 24) - 1;
    }
    cuts[nc++] = len - 8;
    cuts[nc++] = len - 1;
    quiet = 1;
    n_quiet_ok = 0;
    for (i = 0; i < nc; i++) {
        char what[64];
        size_t c = cuts[i];
        write_file(q, buf, c);
        snprintf(what, sizeof(what), "state file cut at %zu", c);
        if (c < 8) {
            expect(what, L_STATE, q, "%s: not an rwkv-chat state file (no RWKVSTAT magic)", q);
        } else if (c < 128) {
            expect(what, L_STATE, q, "%s: truncated: %zu bytes, the header alone is 128", q, c);
        } else {
            expect(what, L_STATE, q, "%s: truncated: %zu of %zu bytes", q, c, len);
        }
    }
    quiet = 0;
    ok(n_quiet_ok == (int)nc, "state file cut at %zu boundaries (header fields, table entries, "
       "sections, checksum): exact error each time", nc);

    copy = malloc(len);
    /* huge sizes */
    memcpy(copy, buf, len);
    wr64(copy + 16, (uint64_t)1 << 60);
    write_file(q, copy, len);
    expect("header claiming 2^60 bytes", L_STATE, q, "%s: truncated: %zu of "
           "1152921504606846976 bytes", q, len);
    memcpy(copy, buf, len);
    wr32(copy + 24, 0x80000000u);
    put_checksum(copy, len);
    write_file(q, copy, len);
    expect("table of 2^31 sections", L_STATE, q, "%s: corrupt section table (2147483648 sections)",
           q);
    memcpy(copy, buf, len);
    wr64(copy + 128 + 32 + 24, (uint64_t)1 << 60);
    put_checksum(copy, len);
    write_file(q, copy, len);
    expect("section of 2^60 bytes", L_STATE, q, "%s: corrupt section table (entry 1)", q);
    memcpy(copy, buf, len);
    wr64(copy + 128 + 32 + 16, ~(uint64_t)0 - 4);
    put_checksum(copy, len);
    write_file(q, copy, len);
    expect("section offset near 2^64", L_STATE, q, "%s: corrupt section table (entry 1)", q);
    memcpy(copy, buf, len);
    copy[len / 2] ^= 1;
    write_file(q, copy, len);
    expect("one bit flipped", L_STATE, q, "%s: checksum mismatch: the file is corrupt", q);
    memcpy(copy, buf, len);
    wr32(copy + 8, RWKV_STATEFILE_VERSION + 1);
    write_file(q, copy, len);
    expect("a newer format version", L_STATE, q, "%s: state file format version %d is newer than "
           "this rwkv-chat reads (%d): upgrade rwkv-chat", q, RWKV_STATEFILE_VERSION + 1,
           RWKV_STATEFILE_VERSION);
    free(copy);

    /* the same file against other models */
    describe(theirs, sizeof(theirs), rwkv_model_info(state_model));
    for (i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        rwkv_model *m = rwkv_model_load(shared_path(others[i]), &opts, err, sizeof(err));
        rwkv_model *keep = state_model;
        char what[96];

        if (!m) {
            skip("%s: %s", others[i], err);
            continue;
        }
        describe(ours, sizeof(ours), rwkv_model_info(m));
        state_model = m;
        snprintf(what, sizeof(what), "v7.pth state file with %s", others[i]);
        expect(what, L_STATE, p, "%s: saved with another model (%s), not this one (%s)", p,
               theirs, ours);
        state_model = keep;
        rwkv_model_free(m);
    }
    {
        /* the same weights in safetensors: the same model */
        rwkv_model *m = rwkv_model_load(shared_path("fixtures/models/v7.safetensors"), &opts,
                                        err, sizeof(err));
        rwkv_model *keep = state_model;
        if (m) {
            state_model = m;
            expect("v7.pth state file with v7.safetensors (same weights)", L_STATE, p, NULL);
            state_model = keep;
            rwkv_model_free(m);
        }
    }
    free(buf);
out:
    rwkv_state_free(st);
    rwkv_model_free(state_model);
    state_model = NULL;
}

/* Replays tests/fuzz/regress/TARGET-NAME (inputs that once crashed a fuzz
 * target) through the loader of that target: each must load or be refused
 * with one line naming the file. */
static void test_fuzz_regressions(void)
{
    const char *top = getenv("TOP_SRCDIR");
    char dir[4096], path[8192], err[1024];
    struct dirent *d;
    DIR *dp;
    int n = 0, good = 0;

    snprintf(dir, sizeof(dir), "%s/tests/fuzz/regress", top ? top : ".");
    if (!(dp = opendir(dir))) {
        skip("%s: %s", dir, strerror(errno));
        return;
    }
    while ((d = readdir(dp)) != NULL) {
        enum loader l;
        int loaded;

        if (!strncmp(d->d_name, "fuzz_pth-", 9) || !strncmp(d->d_name, "fuzz_safetensors-", 17)) {
            l = L_CKPT;
        } else if (!strncmp(d->d_name, "fuzz_vocab-", 11)) {
            l = L_VOCAB;
        } else if (!strncmp(d->d_name, "fuzz_template-", 14)) {
            l = L_TEMPLATE;
        } else if (!strncmp(d->d_name, "fuzz_convcache-", 15)) {
            l = L_CONVCACHE;
        } else {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
        loaded = run_loader(l, path, err, sizeof(err));
        n++;
        if (loaded || (strstr(err, path) == err && shown_plain(err))) {
            good++;
        } else {
            diag("%s: \"%s\"", d->d_name, err);
        }
    }
    closedir(dp);
    ok(n > 0 && good == n, "%d inputs that crashed fuzz targets (tests/fuzz/regress) are "
       "handled", n);
}

/* ------------------------------------------------ names from files --- */

/* err is one line, holds no control byte and holds shown (the escaped
 * name). */
static void expect_shown(const char *what, const char *err, const char *shown)
{
    int good = shown_plain(err) && strstr(err, shown) != NULL;

    if (!good) {
        diag("%s: got \"%s\"", what, err);
        diag("%s: want one line holding \"%s\"", what, shown);
    }
    ok(good, "%s: one line, the name shown as %s", what, shown);
}

/* The conversion cache that once made fuzz_convcache trap (a tensor named
 * "\n"), and the same with the name "\n\x1b[31mred". */
static void test_names_convcache(void)
{
    const char *top = getenv("TOP_SRCDIR");
    char path[4096], err[RWKV_ERRLEN];
    unsigned char *buf;
    size_t len;

    snprintf(path, sizeof path, "%s/tests/fuzz/regress/fuzz_convcache-newline-name",
             top ? top : ".");
    if (!(buf = read_file(path, &len)) || len < 128 + 192) {
        skip("%s unreadable", path);
        free(buf);
        return;
    }
    write_file(tmp_path("newline.rwkvcache"), buf, len);
    run_loader(L_CONVCACHE, tmp_path("newline.rwkvcache"), err, sizeof err);
    expect_shown("conversion cache, tensor named \"\\n\"", err, "the data of \\n does not");
    memcpy(buf + 128, "\n\x1b[31mred", 10);   /* the first entry's name, NUL included */
    write_file(tmp_path("escape.rwkvcache"), buf, len);
    run_loader(L_CONVCACHE, tmp_path("escape.rwkvcache"), err, sizeof err);
    expect_shown("conversion cache, tensor named \"\\n\\x1b[31mred\"", err,
                 "the data of \\n\\x1b[31mred does not");
    free(buf);
}

#define BAD_NAME "x\n\x1b[31my"         /* newline, escape sequence */
#define BAD_SHOWN "x\\n\\x1b[31my"      /* how a message must show it */

/* .pth: a dict key (tensor name) and a zip entry name, and a file name,
 * holding BAD_NAME. */
static void test_names_pth(void)
{
    static const char pk[] = "\x80\x02}(\x8c\x08" BAD_NAME "K\x01u.";
    const char *names[2] = { "archive/data.pkl" }, *p = tmp_path("names.pth");
    const void *data[2] = { pk, pk };
    size_t sizes[2] = { sizeof(pk) - 1, sizeof(pk) - 1 };
    char err[RWKV_ERRLEN], bad_path[256];

    write_zip(p, 1, names, data, sizes);
    run_loader(L_CKPT, p, err, sizeof err);
    expect_shown(".pth, key named x\\n\\x1b[31my", err, "key " BAD_SHOWN " holds a number");
    names[0] = BAD_NAME "/data.pkl";
    names[1] = "b/data.pkl";
    write_zip(p, 2, names, data, sizes);
    run_loader(L_CKPT, p, err, sizeof err);
    expect_shown(".pth, zip entry named x\\n\\x1b[31my/data.pkl", err,
                 "more than one data.pkl (b/data.pkl and " BAD_SHOWN "/data.pkl)");
    snprintf(bad_path, sizeof bad_path, "%s", tmp_path(BAD_NAME ".pth"));
    write_file(bad_path, "", 0);
    run_loader(L_MODEL, bad_path, err, sizeof err);
    expect_shown(".pth file named x\\n\\x1b[31my.pth, as a model", err,
                 "/" BAD_SHOWN ".pth: empty file (0 bytes), not a model");
}

/* safetensors: a tensor name (JSON \u escapes) and a dtype holding
 * BAD_NAME. */
static void test_names_safetensors(void)
{
    const char *p = tmp_path("names.safetensors");
    char err[RWKV_ERRLEN];
    float data[2] = { 0 };

    put_safetensors(p, "{\"x\\u000a\\u001b[31my\":{\"dtype\":\"F64\",\"shape\":[1],"
                    "\"data_offsets\":[0,8]}}", data, sizeof data);
    run_loader(L_CKPT, p, err, sizeof err);
    expect_shown("safetensors, tensor named x\\n\\x1b[31my", err,
                 "tensor " BAD_SHOWN ": dtype F64 not supported");
    put_safetensors(p, "{\"w\":{\"dtype\":\"x\\u000a\\u001b[31my\",\"shape\":[1],"
                    "\"data_offsets\":[0,4]}}", data, sizeof data);
    run_loader(L_CKPT, p, err, sizeof err);
    expect_shown("safetensors, dtype x\\n\\x1b[31my", err,
                 "tensor w: dtype " BAD_SHOWN " not supported");
}

/* State files: two sections tagged BAD_NAME, and a file name holding it. */
static void test_names_statefile(void)
{
    struct rwkv_load_options opts = { RWKV_DTYPE_AUTO, 1, RWKV_CACHE_MODE_ON };
    struct rwkv_statefile_section sec[2] = { { "one", "1", 1 }, { "two", "2", 1 } };
    const char *p = tmp_path("names.state");
    char err[RWKV_ERRLEN], bad_path[256];
    rwkv_state *st = NULL;
    unsigned char *buf = NULL;
    size_t len, i;

    state_model = rwkv_model_load(shared_path("fixtures/models/v7.pth"), &opts, err,
                                  sizeof(err));
    if (!state_model || !(st = rwkv_state_new(state_model)) ||
        rwkv_statefile_save(p, state_model, st, sec, 2, err, sizeof(err)) != 0 ||
        !(buf = read_file(p, &len))) {
        skip("state file of v7.pth: %s", err);
        goto out;
    }
    for (i = 0; i < 3; i++) {   /* the table: state, one, two */
        unsigned char *tag = buf + 128 + 32 * i;

        if (!memcmp(tag, "one", 4) || !memcmp(tag, "two", 4)) {
            memset(tag, 0, 16);
            memcpy(tag, BAD_NAME, sizeof(BAD_NAME) - 1);
        }
    }
    put_checksum(buf, len);
    write_file(p, buf, len);
    run_loader(L_STATE, p, err, sizeof err);
    expect_shown("state file, two sections tagged x\\n\\x1b[31my", err,
                 "section '" BAD_SHOWN "' appears twice");
    snprintf(bad_path, sizeof bad_path, "%s", tmp_path(BAD_NAME ".state"));
    write_file(bad_path, "", 0);
    run_loader(L_STATE, bad_path, err, sizeof err);
    expect_shown("state file named x\\n\\x1b[31my.state", err,
                 "/" BAD_SHOWN ".state: not an rwkv-chat state file");
out:
    free(buf);
    rwkv_state_free(st);
    rwkv_model_free(state_model);
    state_model = NULL;
}

/* Vocabularies: a file name holding BAD_NAME. */
static void test_names_vocab(void)
{
    char err[RWKV_ERRLEN], bad_path[256];

    snprintf(bad_path, sizeof bad_path, "%s", tmp_path(BAD_NAME ".txt"));
    write_file(bad_path, "garbage\n", 8);
    run_loader(L_VOCAB, bad_path, err, sizeof err);
    expect_shown("vocabulary named x\\n\\x1b[31my.txt", err, "/" BAD_SHOWN ".txt:1: ");
}

int main(void)
{
#ifndef UNDER_ASAN
    struct rlimit rl = { (rlim_t)1 << 30, (rlim_t)1 << 30 };

    /* an allocation bomb fails with "out of memory", not the expected text */
    if (setrlimit(RLIMIT_AS, &rl) != 0) {
        diag("setrlimit: %s", strerror(errno));
    }
#endif
    if (tmpdir_make("test_badinput") != 0) {
        return 99;
    }
    test_pth();
    test_safetensors();
    test_nonfinite();
    test_vocab();
    test_templates();
    test_statefile();
    test_fuzz_regressions();
    test_names_convcache();
    test_names_pth();
    test_names_safetensors();
    test_names_statefile();
    test_names_vocab();
    tmpdir_remove();
    return tap_done();
}
