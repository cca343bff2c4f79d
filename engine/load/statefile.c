/*
 * statefile.c - versioned, checksummed, atomically written state files.
 *
 * Layout (all integers little-endian; share/state-format.md):
 *   0    8  magic "RWKVSTAT"
 *   8    4  format version (1)
 *   12   4  header size (128)
 *   16   8  file size, checksum included
 *   24   4  number of sections
 *   28   4  zero
 *   32  64  model identity: version, minor, n_layer, n_embd, n_head,
 *           head_size, n_vocab, ffn_size (u32 each), fingerprint (u64),
 *           state_floats (u64), 16 zero bytes
 *   96  32  zero
 *   128     section table: per section tag[16] (NUL-padded), offset (u64),
 *           size (u64); section data follow, each at an offset that is a
 *           multiple of 8, zero-padded; the first section is "state"
 *   end-8 8 FNV-1a 64 of every byte before it
 */
#include "engine/load/statefile.h"
#include "engine/base/atomicfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/base/escape.h"

#define HEADER_SIZE 128
#define ENTRY_SIZE 32
#define MAX_SECTIONS 1024
/* The application's sections together (the state aside) are at most this
 * big: a reader never allocates more than the state plus this. */
#define MAX_SECTION_BYTES ((uint64_t)1 << 30)
#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

/* What a save may replace: a state file (its magic), or nothing. */
static const struct atomicfile_kind state_file_kind = {
    "state file", RWKV_STATEFILE_MAGIC, 8,
    "choose another name for the state file, or remove that file first"
};

struct section {
    char tag[RWKV_STATEFILE_TAGLEN];
    uint64_t offset, size;
};

struct rwkv_statefile {
    uint8_t *data;                  /* the whole file */
    size_t size;
    struct section *sections;
    size_t n_sections;
    const uint8_t *state;           /* little-endian float32 */
    size_t state_floats;
};

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const uint8_t *p = data;
    size_t i;

    for (i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

static void put32(uint8_t *p, uint32_t v)
{
    int i;

    for (i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void put64(uint8_t *p, uint64_t v)
{
    int i;

    for (i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static int little_endian(void)
{
    uint16_t x = 1;

    return *(uint8_t *)&x == 1;
}

/* The 64-byte model identity block. */
static void put_identity(uint8_t *p, const struct rwkv_info *info)
{
    memset(p, 0, 64);
    put32(p + 0, (uint32_t)info->version);
    put32(p + 4, (uint32_t)info->minor);
    put32(p + 8, (uint32_t)info->n_layer);
    put32(p + 12, (uint32_t)info->n_embd);
    put32(p + 16, (uint32_t)info->n_head);
    put32(p + 20, (uint32_t)info->head_size);
    put32(p + 24, (uint32_t)info->n_vocab);
    put32(p + 28, (uint32_t)info->ffn_size);
    put64(p + 32, info->fingerprint);
    put64(p + 40, (uint64_t)info->state_floats);
}

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* Buffered writer that hashes what it writes. */
struct writer {
    int fd;
    uint64_t hash;
    uint8_t buf[1 << 16];
    size_t len;
    int error;                      /* errno of the first failure */
};

static void flush_out(struct writer *w)
{
    size_t off = 0;

    while (off < w->len && !w->error) {
        ssize_t k = write(w->fd, w->buf + off, w->len - off);

        if (k < 0) {
            if (errno != EINTR) {
                w->error = errno;
            }
            continue;
        }
        off += (size_t)k;
    }
    w->len = 0;
}

static void emit(struct writer *w, const void *data, size_t n)
{
    const uint8_t *p = data;

    w->hash = fnv1a(w->hash, data, n);
    while (n > 0 && !w->error) {
        size_t k = sizeof w->buf - w->len;

        if (k > n) {
            k = n;
        }
        memcpy(w->buf + w->len, p, k);
        w->len += k;
        p += k;
        n -= k;
        if (w->len == sizeof w->buf) {
            flush_out(w);
        }
    }
}

static void emit_zeros(struct writer *w, size_t n)
{
    static const uint8_t zero[8];

    emit(w, zero, n);
}

/* The state floats in little-endian order. */
static void emit_floats(struct writer *w, const float *f, size_t n)
{
    size_t i;

    if (little_endian()) {
        emit(w, f, n * sizeof(float));
        return;
    }
    for (i = 0; i < n; i++) {
        uint8_t b[4];
        uint32_t u;

        memcpy(&u, &f[i], 4);
        put32(b, u);
        emit(w, b, 4);
    }
}

/* rwkv_statefile_save with the engine's sections among sections. */
static int save_sections(const char *path, const rwkv_model *model, const rwkv_state *state,
                         const struct rwkv_statefile_section *sections, size_t n_sections,
                         char *err, size_t errlen)
{
    const struct rwkv_info *info = rwkv_model_info(model);
    size_t n_floats = rwkv_state_floats(state), n_total = n_sections + 1, i, offset;
    uint64_t app;
    uint8_t header[HEADER_SIZE], entry[ENTRY_SIZE], sum[8];
    struct writer *w;
    atomicfile *af;

    if (n_floats != info->state_floats) {
        snprintf(err, errlen, "%s: the state does not belong to this model", path);
        return -1;
    }
    if (n_total > MAX_SECTIONS) {
        snprintf(err, errlen, "%s: too many sections (%zu)", path, n_sections);
        return -1;
    }
    for (i = 0, app = 0; i < n_sections; i++) {
        size_t tl = strlen(sections[i].tag);

        if (tl == 0 || tl >= RWKV_STATEFILE_TAGLEN || !strcmp(sections[i].tag, "state")) {
            snprintf(err, errlen, "%s: bad section tag '%s'", path, sections[i].tag);
            return -1;
        }
        /* What the reader would refuse is never written. */
        if (sections[i].size > MAX_SECTION_BYTES - app) {
            snprintf(err, errlen, "%s: more than %llu bytes to save: the conversation is too long",
                     path, (unsigned long long)MAX_SECTION_BYTES);
            return -1;
        }
        app += sections[i].size;
    }
    /* Offsets: the table, then "state", then each section, 8-aligned. */
    offset = HEADER_SIZE + n_total * ENTRY_SIZE;
    memset(header, 0, sizeof header);
    memcpy(header, RWKV_STATEFILE_MAGIC, 8);
    put32(header + 8, RWKV_STATEFILE_VERSION);
    put32(header + 12, HEADER_SIZE);
    put32(header + 24, (uint32_t)n_total);
    put_identity(header + 32, info);
    {
        size_t end = align8(offset + n_floats * sizeof(float));

        for (i = 0; i < n_sections; i++) {
            end = align8(end + sections[i].size);
        }
        put64(header + 16, (uint64_t)end + 8);
    }

    w = malloc(sizeof *w);
    if (!w) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    /* Only a state file (or a new name) is replaced: never the model,
     * notes, a link or a device (atomicfile.h). */
    af = atomicfile_open(path, &state_file_kind, 0, err, errlen);
    if (!af) {
        free(w);
        return -1;
    }
    w->fd = atomicfile_fd(af);
    w->hash = FNV_OFFSET;
    w->len = 0;
    w->error = 0;
    emit(w, header, sizeof header);
    {
        size_t off = offset;

        memset(entry, 0, sizeof entry);
        memcpy(entry, "state", 5);
        put64(entry + 16, off);
        put64(entry + 24, n_floats * sizeof(float));
        emit(w, entry, sizeof entry);
        off = align8(off + n_floats * sizeof(float));
        for (i = 0; i < n_sections; i++) {
            memset(entry, 0, sizeof entry);
            memcpy(entry, sections[i].tag, strlen(sections[i].tag));
            put64(entry + 16, off);
            put64(entry + 24, sections[i].size);
            emit(w, entry, sizeof entry);
            off = align8(off + sections[i].size);
        }
    }
    emit_floats(w, rwkv_state_cdata(state), n_floats);
    emit_zeros(w, align8(n_floats * sizeof(float)) - n_floats * sizeof(float));
    for (i = 0; i < n_sections; i++) {
        emit(w, sections[i].data, sections[i].size);
        emit_zeros(w, align8(sections[i].size) - sections[i].size);
    }
    put64(sum, w->hash);
    emit(w, sum, 8);
    flush_out(w);
    if (w->error) {
        snprintf(err, errlen, "%s: cannot save: %s", path, strerror(w->error));
        atomicfile_abort(af);
        free(w);
        return -1;
    }
    free(w);
    return atomicfile_commit(af, err, errlen);
}

int rwkv_statefile_save(const char *path, const rwkv_model *model, const rwkv_state *state,
                        const struct rwkv_statefile_section *sections, size_t n_sections,
                        char *err, size_t errlen)
{
    size_t hist = rwkv_state_history_size(state);
    struct rwkv_statefile_section *all;
    void *buf;
    int rc;

    for (size_t i = 0; i < n_sections; i++) {
        if (!strcmp(sections[i].tag, "history")) {
            snprintf(err, errlen, "%s: bad section tag '%s'", path, sections[i].tag);
            return -1;
        }
    }
    if (!rwkv_model_info(model)->history_floats) {
        return save_sections(path, model, state, sections, n_sections, err, errlen);
    }
    /* RWKV-7b: the state's history goes right after the state. */
    all = malloc((n_sections + 1) * sizeof *all);
    buf = malloc(hist);
    if (!all || !buf) {
        free(all);
        free(buf);
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    rwkv_state_history_write(state, buf);
    all[0].tag = "history";
    all[0].data = buf;
    all[0].size = hist;
    if (n_sections) {
        memcpy(all + 1, sections, n_sections * sizeof *all);
    }
    rc = save_sections(path, model, state, all, n_sections + 1, err, errlen);
    free(all);
    free(buf);
    return rc;
}

int rwkv_statefile_check_target(const char *path, char *err, size_t errlen)
{
    return atomicfile_check(path, &state_file_kind, err, errlen);
}

long rwkv_statefile_peek(const char *path, const char *tag, char *out, size_t outlen)
{
    uint8_t header[HEADER_SIZE], e[ENTRY_SIZE];
    uint32_t n_sec, i;
    long found = -1;
    int fd;

    if (outlen == 0) {
        return -1;
    }
    out[0] = '\0';
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        return -1;
    }
    if (pread(fd, header, sizeof header, 0) != HEADER_SIZE ||
        memcmp(header, RWKV_STATEFILE_MAGIC, 8) != 0) {
        close(fd);
        return -1;
    }
    n_sec = get32(header + 24);
    for (i = 0; i < n_sec && i < MAX_SECTIONS; i++) {
        uint64_t offset, size;
        size_t n;

        if (pread(fd, e, sizeof e, HEADER_SIZE + (off_t)i * ENTRY_SIZE) != ENTRY_SIZE) {
            break;
        }
        if (e[RWKV_STATEFILE_TAGLEN - 1] != '\0' || strcmp((const char *)e, tag) != 0) {
            continue;
        }
        offset = get64(e + 16);
        size = get64(e + 24);
        n = size < outlen - 1 ? (size_t)size : outlen - 1;
        if (size <= LONG_MAX && offset <= (uint64_t)INT64_MAX &&
            pread(fd, out, n, (off_t)offset) == (ssize_t)n) {
            out[n] = '\0';
            found = (long)size;
        }
        break;
    }
    close(fd);
    return found;
}

void rwkv_statefile_free(rwkv_statefile *sf)
{
    if (sf) {
        free(sf->data);
        free(sf->sections);
        free(sf);
    }
}

/* "RWKV-7, 3 layers x 128, vocab 1000, fingerprint 0123abcd..." */
static void describe(char *buf, size_t len, uint32_t version, uint32_t minor, uint32_t n_layer,
                     uint32_t n_embd, uint32_t n_vocab, uint64_t fp)
{
    if (version == 5) {
        snprintf(buf, len, "RWKV-5.%u, %u layers x %u, vocab %u, fingerprint %016llx", minor,
                 n_layer, n_embd, n_vocab, (unsigned long long)fp);
    } else if (version == 7 && minor >= 1 && minor <= 2) {
        /* The variants of RWKV-7 (7a DeepEmbed, 7b DEA). */
        snprintf(buf, len, "RWKV-7%c, %u layers x %u, vocab %u, fingerprint %016llx",
                 (char)('a' + minor - 1), n_layer, n_embd, n_vocab, (unsigned long long)fp);
    } else {
        snprintf(buf, len, "RWKV-%u, %u layers x %u, vocab %u, fingerprint %016llx", version,
                 n_layer, n_embd, n_vocab, (unsigned long long)fp);
    }
}

/* Names the identity fields in which a (theirs) and b (ours) differ
 * beyond what describe() shows, into buf: "heads 4 in the file, 2 here;
 * ...".  Empty when they differ in none of those. */
static void other_differences(char *buf, size_t len, const uint8_t *a, const uint8_t *b)
{
    static const struct {
        int offset, bytes;
        const char *name;
    } fields[] = {
        { 16, 4, "heads" }, { 20, 4, "head size" }, { 28, 4, "FFN size" },
        { 40, 8, "state size (floats)" },
    };
    size_t used = 0, i;
    int k;

    buf[0] = 0;
    for (i = 0; i < sizeof fields / sizeof fields[0] && used < len; i++) {
        uint64_t x = fields[i].bytes == 4 ? get32(a + fields[i].offset) : get64(a + fields[i].offset);
        uint64_t y = fields[i].bytes == 4 ? get32(b + fields[i].offset) : get64(b + fields[i].offset);

        if (x != y) {
            k = snprintf(buf + used, len - used, "%s%s %llu in the file, %llu here", used ? "; " : "",
                         fields[i].name, (unsigned long long)x, (unsigned long long)y);
            used += k > 0 ? (size_t)k : 0;
        }
    }
    if (used < len && memcmp(a + 48, b + 48, 16) != 0) {
        snprintf(buf + used, len - used, "%sreserved identity bytes not zero", used ? "; " : "");
    }
}

/* The model identity in a file's header must be this model's: 0, or -1
 * with err naming both (and, where the two read the same, what differs). */
static int check_model(const char *path, const uint8_t *header, const struct rwkv_info *info,
                       char *err, size_t errlen)
{
    const uint8_t *h = header + 32;
    uint8_t mine[64];
    char theirs[160], ours[160], other[200];

    put_identity(mine, info);
    if (memcmp(mine, h, 64) == 0) {
        return 0;
    }
    describe(theirs, sizeof theirs, get32(h), get32(h + 4), get32(h + 8), get32(h + 12),
             get32(h + 24), get64(h + 32));
    describe(ours, sizeof ours, (uint32_t)info->version, (uint32_t)info->minor,
             (uint32_t)info->n_layer, (uint32_t)info->n_embd, (uint32_t)info->n_vocab,
             info->fingerprint);
    if (strcmp(theirs, ours) != 0) {
        snprintf(err, errlen, "%s: saved with another model (%s), not this one (%s)", path, theirs,
                 ours);
        return -1;
    }
    /* The same description twice would not say what is wrong. */
    other_differences(other, sizeof other, h, mine);
    snprintf(err, errlen, "%s: saved with another model: %s (both %s)", path, other, ours);
    return -1;
}

/* Before anything is allocated: the file must be for this model and its
 * size must be what its section table lays out (the state first, each
 * section 8-aligned right after the one before, the checksum last), with
 * at most MAX_SECTION_BYTES of sections besides the state.  size is the
 * file's size, already equal to the header's.  0, or -1 with err. */
static int check_layout(int fd, const char *path, const uint8_t *header,
                        const struct rwkv_info *info, uint64_t size, char *err, size_t errlen)
{
    uint8_t *table;
    uint64_t n_sec = get32(header + 24), end, app = 0, i;
    size_t table_bytes;

    if (check_model(path, header, info, err, errlen) < 0) {
        return -1;
    }
    if (n_sec == 0 || n_sec > MAX_SECTIONS || HEADER_SIZE + n_sec * ENTRY_SIZE > size - 8) {
        snprintf(err, errlen, "%s: corrupt section table (%llu sections)", path,
                 (unsigned long long)n_sec);
        return -1;
    }
    table_bytes = (size_t)n_sec * ENTRY_SIZE;
    table = malloc(table_bytes);
    if (!table) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    if (pread(fd, table, table_bytes, HEADER_SIZE) != (ssize_t)table_bytes) {
        snprintf(err, errlen, "%s: cannot read the section table", path);
        free(table);
        return -1;
    }
    end = HEADER_SIZE + table_bytes;
    for (i = 0; i < n_sec; i++) {
        const uint8_t *e = table + i * ENTRY_SIZE;
        uint64_t offset = get64(e + 16), n = get64(e + 24);
        int is_state = !memcmp(e, "state", 6);

        if (offset != end || offset > size - 8 || n > size - 8 - offset ||
            (i == 0) != is_state ||
            (is_state && n != (uint64_t)info->state_floats * sizeof(float))) {
            snprintf(err, errlen, "%s: corrupt section table (entry %llu)", path,
                     (unsigned long long)i);
            free(table);
            return -1;
        }
        if (!is_state) {
            if (n > MAX_SECTION_BYTES - app) {
                snprintf(err, errlen, "%s: sections of more than %llu bytes: not a state file "
                         "rwkv-chat writes", path, (unsigned long long)MAX_SECTION_BYTES);
                free(table);
                return -1;
            }
            app += n;
        }
        end = (offset + n + 7) & ~(uint64_t)7;
    }
    free(table);
    if (end + 8 != size) {
        snprintf(err, errlen, "%s: corrupt: its sections take %llu bytes, the file has %llu", path,
                 (unsigned long long)(end + 8), (unsigned long long)size);
        return -1;
    }
    return 0;
}

/* Reads all of fd (size bytes) into a new buffer. */
static uint8_t *read_all(int fd, size_t size, int *error)
{
    uint8_t *buf = malloc(size ? size : 1);
    size_t off = 0;

    if (!buf) {
        *error = ENOMEM;
        return NULL;
    }
    while (off < size) {
        ssize_t k = read(fd, buf + off, size - off);

        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            *error = k < 0 ? errno : EIO;
            free(buf);
            return NULL;
        }
        off += (size_t)k;
    }
    return buf;
}

rwkv_statefile *rwkv_statefile_load(const char *file, const rwkv_model *model, char *err,
                                    size_t errlen)
{
    const struct rwkv_info *info = rwkv_model_info(model);
    /* The name as messages show it: escaped, and a long one shortened in
     * the middle so that the reason after it always fits. */
    char path[RWKV_ESCAPE_LEN];
    uint8_t header[HEADER_SIZE];
    struct stat st;
    rwkv_statefile *sf;
    uint64_t declared, n_sec, table_end, i, j;
    uint32_t version;
    ssize_t got;
    int fd, error = 0;

    rwkv_escape_str(path, sizeof path, file);
    fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);   /* a FIFO must not hang */
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    got = pread(fd, header, sizeof header, 0);
    if (got < 8 || memcmp(header, RWKV_STATEFILE_MAGIC, 8) != 0) {
        snprintf(err, errlen, "%s: not an rwkv-chat state file (no RWKVSTAT magic)", path);
        close(fd);
        return NULL;
    }
    if (got < HEADER_SIZE) {
        snprintf(err, errlen, "%s: truncated: %lld bytes, the header alone is %d", path,
                 (long long)st.st_size, HEADER_SIZE);
        close(fd);
        return NULL;
    }
    version = get32(header + 8);
    if (version > RWKV_STATEFILE_VERSION) {
        snprintf(err, errlen, "%s: state file format version %u is newer than this rwkv-chat "
                 "reads (%d): upgrade rwkv-chat", path, version, RWKV_STATEFILE_VERSION);
        close(fd);
        return NULL;
    }
    if (version == 0 || get32(header + 12) != HEADER_SIZE) {
        snprintf(err, errlen, "%s: corrupt header (version %u, header size %u)", path, version,
                 get32(header + 12));
        close(fd);
        return NULL;
    }
    declared = get64(header + 16);
    if ((uint64_t)st.st_size < declared) {
        snprintf(err, errlen, "%s: truncated: %lld of %llu bytes", path, (long long)st.st_size,
                 (unsigned long long)declared);
        close(fd);
        return NULL;
    }
    if ((uint64_t)st.st_size != declared || declared < HEADER_SIZE + 8 ||
        declared > (uint64_t)SIZE_MAX) {
        snprintf(err, errlen, "%s: corrupt: header says %llu bytes, the file has %lld", path,
                 (unsigned long long)declared, (long long)st.st_size);
        close(fd);
        return NULL;
    }
    if (check_layout(fd, path, header, info, declared, err, errlen) < 0) {
        close(fd);
        return NULL;
    }
    sf = calloc(1, sizeof *sf);
    if (!sf) {
        snprintf(err, errlen, "%s: out of memory", path);
        close(fd);
        return NULL;
    }
    sf->size = (size_t)declared;
    sf->data = read_all(fd, sf->size, &error);
    close(fd);
    if (!sf->data) {
        snprintf(err, errlen, "%s: %s", path, strerror(error));
        rwkv_statefile_free(sf);
        return NULL;
    }
    if (fnv1a(FNV_OFFSET, sf->data, sf->size - 8) != get64(sf->data + sf->size - 8)) {
        snprintf(err, errlen, "%s: checksum mismatch: the file is corrupt", path);
        rwkv_statefile_free(sf);
        return NULL;
    }
    /* The section table, every entry inside the file, tags unique. */
    n_sec = get32(sf->data + 24);
    table_end = HEADER_SIZE + n_sec * ENTRY_SIZE;
    if (n_sec == 0 || n_sec > MAX_SECTIONS || table_end > sf->size - 8) {
        snprintf(err, errlen, "%s: corrupt section table (%llu sections)", path,
                 (unsigned long long)n_sec);
        rwkv_statefile_free(sf);
        return NULL;
    }
    sf->sections = calloc((size_t)n_sec, sizeof *sf->sections);
    if (!sf->sections) {
        snprintf(err, errlen, "%s: out of memory", path);
        rwkv_statefile_free(sf);
        return NULL;
    }
    sf->n_sections = (size_t)n_sec;
    for (i = 0; i < n_sec; i++) {
        const uint8_t *e = sf->data + HEADER_SIZE + i * ENTRY_SIZE;
        struct section *s = &sf->sections[i];

        memcpy(s->tag, e, RWKV_STATEFILE_TAGLEN);
        s->offset = get64(e + 16);
        s->size = get64(e + 24);
        if (s->tag[RWKV_STATEFILE_TAGLEN - 1] != '\0' || s->tag[0] == '\0' ||
            s->offset < table_end || s->offset > sf->size - 8 ||
            s->size > sf->size - 8 - s->offset) {
            snprintf(err, errlen, "%s: corrupt section table (entry %llu)", path,
                     (unsigned long long)i);
            rwkv_statefile_free(sf);
            return NULL;
        }
        for (j = 0; j < i; j++) {
            if (!strcmp(sf->sections[j].tag, s->tag)) {
                snprintf(err, errlen, "%s: section '%s' appears twice", path, RWKV_ESC(s->tag));
                rwkv_statefile_free(sf);
                return NULL;
            }
        }
    }
    /* The model. */
    if (check_model(path, sf->data, info, err, errlen) < 0) {
        rwkv_statefile_free(sf);
        return NULL;
    }
    {
        size_t n;
        const void *p = rwkv_statefile_section(sf, "state", &n);

        if (!p || n != info->state_floats * sizeof(float)) {
            snprintf(err, errlen, "%s: the state section is missing or has the wrong size", path);
            rwkv_statefile_free(sf);
            return NULL;
        }
        sf->state = p;
        sf->state_floats = info->state_floats;
    }
    {
        /* NaN or infinity in a state poisons every reply after it. */
        size_t k, bad = 0, first = 0;

        for (k = 0; k < sf->state_floats; k++) {
            if ((get32(sf->state + k * 4) & 0x7f800000u) == 0x7f800000u && bad++ == 0) {
                first = k;
            }
        }
        if (bad) {
            snprintf(err, errlen, "%s: the saved state holds %zu NaN/Inf values (the first at "
                     "float %zu): the file is damaged and cannot be loaded", path, bad, first);
            rwkv_statefile_free(sf);
            return NULL;
        }
    }
    if (info->history_floats) {
        /* RWKV-7b: the history of the state, checked whole. */
        size_t n;
        const void *p = rwkv_statefile_section(sf, "history", &n);
        char why[RWKV_ERRLEN];

        if (!p) {
            snprintf(err, errlen, "%s: the RWKV-7b state's history section is missing", path);
            rwkv_statefile_free(sf);
            return NULL;
        }
        if (rwkv_state_history_check(model, p, n, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s: corrupt 'history' section: %s", path, why);
            rwkv_statefile_free(sf);
            return NULL;
        }
    }
    return sf;
}

int rwkv_statefile_get_state(const rwkv_statefile *sf, rwkv_state *state)
{
    float *dst = rwkv_state_data(state);
    size_t i, n;
    const void *hist = rwkv_statefile_section(sf, "history", &n);
    char err[RWKV_ERRLEN];

    if (rwkv_state_floats(state) != sf->state_floats) {
        return -1;
    }
    /* The history first: only it can fail (memory), before anything
     * changed.  rwkv_statefile_load checked it against the model. */
    if (rwkv_state_history_size(state) > 0 &&
        (!hist || rwkv_state_history_read(state, hist, n, err, sizeof err) != 0)) {
        return -1;
    }
    if (little_endian()) {
        memcpy(dst, sf->state, sf->state_floats * sizeof(float));
        return 0;
    }
    for (i = 0; i < sf->state_floats; i++) {
        uint32_t u = get32(sf->state + i * 4);

        memcpy(&dst[i], &u, 4);
    }
    return 0;
}

const void *rwkv_statefile_section(const rwkv_statefile *sf, const char *tag, size_t *size)
{
    size_t i;

    for (i = 0; i < sf->n_sections; i++) {
        if (!strncmp(sf->sections[i].tag, tag, RWKV_STATEFILE_TAGLEN)) {
            if (size) {
                *size = (size_t)sf->sections[i].size;
            }
            return sf->data + sf->sections[i].offset;
        }
    }
    if (size) {
        *size = 0;
    }
    return NULL;
}
