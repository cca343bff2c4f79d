/* test_statefile.c - state files: a saved conversation continues exactly
 * (in a fresh chat and in a fresh process), and every bad file is refused
 * with one line, changing nothing. */
#include "app/session/chat.h"
#include "engine/load/statefile.h"
#include "tests/tap.h"

#include <dirent.h>
#include <math.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TMPDIR "tests/tmp"

static tokenizer *tok;

static struct sampler_settings sampling(void)
{
    struct sampler_settings s;

    sampler_defaults(&s);          /* ChatRWKV's: T 1, top_p 0.3, penalties */
    s.max_tokens = under_valgrind() ? 6 : 24;
    s.seed = 20260101;
    return s;
}

static struct chat_template *tmpl(void)
{
    static struct chat_template t = { "saved", "User: hi\n\nAssistant: Hello!\n\n", "User",
                                      "Assistant", NULL, 0 };

    return &t;
}

/* Streams a reply to the end into a malloc'd string. */
static char *reply(chat *c)
{
    char err[RWKV_ERRLEN], *buf = malloc(1);
    size_t len = 0, n;
    const char *out;
    int rc;

    do {
        rc = chat_step(c, &out, &n, err, sizeof err);
        if (rc < 0) {
            diag("chat_step: %s", err);
            break;
        }
        buf = realloc(buf, len + n + 1);
        memcpy(buf + len, out, n);
        len += n;
    } while (rc == CHAT_STOP_NONE);
    buf[len] = '\0';
    return buf;
}

static const char *turns[] = { "Who are you?", "What does ls do?", "Tell me about ssh." };

/* Sends the third message and writes its logits and reply to path. */
static int continue_to(chat *c, const char *path, int n_vocab)
{
    char err[RWKV_ERRLEN], *r;
    FILE *f;

    if (chat_send(c, turns[2], err, sizeof err) < 0) {
        diag("%s", err);
        return -1;
    }
    f = fopen(path, "wb");
    if (!f) {
        return -1;
    }
    fwrite(chat_logits(c), sizeof(float), (size_t)n_vocab, f);
    r = reply(c);
    fwrite(r, 1, strlen(r), f);
    fclose(f);
    free(r);
    return 0;
}

/* The child: loads the file in a fresh process and continues. */
static int child(const char *model_path, const char *state_path, const char *out_path)
{
    char err[RWKV_ERRLEN];
    struct sampler_settings s = sampling();
    rwkv_model *m = rwkv_model_load(model_path, NULL, err, sizeof err);
    chat *c;

    if (!m) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    s.seed = 777;   /* the file's settings and random state must win */
    c = chat_new(m, tok, NULL, &s, err, sizeof err);
    if (!c || chat_load(c, state_path, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (continue_to(c, out_path, rwkv_model_info(m)->n_vocab) < 0) {
        return 1;
    }
    chat_free(c);
    rwkv_model_free(m);
    return 0;
}

static int same_file(const char *a, const char *b)
{
    size_t la, lb;
    char *x = read_file(a, &la), *y = read_file(b, &lb);
    int same = x && y && la == lb && !memcmp(x, y, la);

    free(x);
    free(y);
    return same;
}

static void copy_file(const char *from, const char *to, size_t len)
{
    size_t n;
    char *d = read_file(from, &n);
    FILE *f = fopen(to, "wb");

    fwrite(d, 1, len < n ? len : n, f);
    fclose(f);
    free(d);
}

/* Patches bytes at off in file and (if fix) recomputes the checksum. */
static void patch(const char *path, size_t off, const void *bytes, size_t n, int fix)
{
    size_t len, i;
    unsigned char *d = read_file(path, &len);
    FILE *f;

    memcpy(d + off, bytes, n);
    if (fix) {
        uint64_t h = 0xcbf29ce484222325ULL;

        for (i = 0; i + 8 < len; i++) {
            h = (h ^ d[i]) * 0x100000001b3ULL;
        }
        for (i = 0; i < 8; i++) {
            d[len - 8 + i] = (unsigned char)(h >> (8 * i));
        }
    }
    f = fopen(path, "wb");
    fwrite(d, 1, len, f);
    fclose(f);
    free(d);
}

/* Saves two turns, then continues (a) uninterrupted, (b) in a fresh chat
 * object loaded from the file, (c) in a fresh process. */
static void test_continue(const char *self, const char *model_path, const char *what)
{
    char err[RWKV_ERRLEN], cmd[8192];
    struct sampler_settings s = sampling();
    rwkv_model *m = rwkv_model_load(model_path, NULL, err, sizeof err);
    chat *a, *b;
    int i, n_vocab;
    char *r;

    if (!m) {
        ok(0, "%s: %s", what, err);
        return;
    }
    n_vocab = rwkv_model_info(m)->n_vocab;
    a = chat_new(m, tok, tmpl(), &s, err, sizeof err);
    for (i = 0; i < 2; i++) {
        chat_send(a, turns[i], err, sizeof err);
        free(reply(a));
    }
    ok(chat_save(a, TMPDIR "/two.state", err, sizeof err) == 0, "%s: saved after two turns (%s)", what,
       err);
    ok(continue_to(a, TMPDIR "/uninterrupted.out", n_vocab) == 0, "%s: uninterrupted third turn", what);

    s.seed = 4242;
    b = chat_new(m, tok, NULL, &s, err, sizeof err);
    ok(b && chat_load(b, TMPDIR "/two.state", err, sizeof err) == 0, "%s: loaded into a fresh chat (%s)",
       what, err);
    ok(chat_turn_count(b) == 4 && !strcmp(chat_turn_at(b, 2)->text, turns[1]) &&
       !strcmp(chat_turn_at(a, 3)->text, chat_turn_at(b, 3)->text) &&
       !strcmp(chat_get_template(b)->name, "saved") &&
       chat_settings(b)->seed == 20260101 && chat_settings(b)->max_tokens == s.max_tokens,
       "%s: transcript, template and settings restored", what);
    continue_to(b, TMPDIR "/fresh-chat.out", n_vocab);
    ok(same_file(TMPDIR "/uninterrupted.out", TMPDIR "/fresh-chat.out"),
       "%s: fresh chat: third-turn logits bit-identical, same sampled reply", what);
    r = read_file(TMPDIR "/uninterrupted.out", NULL);
    diag("%s: third reply: %s", what, r ? r + n_vocab * sizeof(float) : "?");
    free(r);

    snprintf(cmd, sizeof cmd, "'%s' --continue '%s' " TMPDIR "/two.state " TMPDIR "/fresh-process.out",
             self, model_path);
    /* Under valgrind the child (run by system, not traced) sees the real
     * CPU while this process sees valgrind's, so the two may pick other
     * kernel sets: bit-identity between them says nothing there. */
    if (under_valgrind()) {
        skip("%s: fresh process: under valgrind the child runs on other kernels", what);
    } else {
        ok(system(cmd) == 0 && same_file(TMPDIR "/uninterrupted.out", TMPDIR "/fresh-process.out"),
           "%s: fresh process: third-turn logits bit-identical, same sampled reply", what);
    }
    chat_free(a);
    chat_free(b);
    rwkv_model_free(m);
}

/* 1 if a file in dir starts with prefix. */
static int temporaries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int found = 0;

    while (d && (e = readdir(d))) {
        found |= !strncmp(e->d_name, prefix, strlen(prefix));
    }
    if (d) {
        closedir(d);
    }
    return found;
}

/* Every refusal: one line, nothing changed. */
static void test_refusals(void)
{
    char err[RWKV_ERRLEN], path[512];
    struct sampler_settings s = sampling();
    rwkv_model *m = rwkv_model_load(shared_path("fixtures/models/v7.pth"), NULL, err, sizeof err);
    rwkv_model *m32 = rwkv_model_load(shared_path("fixtures/models/v7-fp32.pth"), NULL, err,
                                      sizeof err);
    rwkv_state *before;
    chat *c, *d;
    size_t len, n_turns;
    struct stat st;
    uint32_t v;
    int i;

    if (!m || !m32) {
        ok(0, "v7.pth and v7-fp32.pth load: %s", err);
        return;
    }
    /* v7.pth has a 1000-token vocabulary: feed control bytes, which the
     * World tokenizer keeps as single-byte tokens (ids 1..256). */
    s.max_tokens = 5;
    c = chat_new(m, tok, NULL, &s, err, sizeof err);
    ok(chat_send_raw(c, "\x10\x11\x12", 3, err, sizeof err) == 0, "v7.pth: raw prompt fed (%s)", err);
    free(reply(c));
    ok(chat_save(c, TMPDIR "/v7.state", err, sizeof err) == 0, "v7.pth: saved");
    stat(TMPDIR "/v7.state", &st);
    len = (size_t)st.st_size;

    /* A chat with some history of its own, which a refused load must keep. */
    d = chat_new(m32, tok, NULL, &s, err, sizeof err);
    chat_send_raw(d, "\x13\x14", 2, err, sizeof err);
    free(reply(d));
    n_turns = chat_turn_count(d);
    before = rwkv_state_clone(chat_state(d));
#define UNCHANGED(x)                                                                           \
    (chat_turn_count(x) == n_turns &&                                                          \
     !memcmp(rwkv_state_cdata(chat_state(x)), rwkv_state_cdata(before),                        \
             rwkv_state_floats(before) * sizeof(float)))

    ok(chat_load(d, TMPDIR "/v7.state", err, sizeof err) == -1 &&
       strstr(err, "v7.state: saved with another model (RWKV-7, 3 layers x 128, vocab 1000, "
                   "fingerprint ") && strstr(err, "not this one (RWKV-7, 3 layers x 128") &&
       !strchr(err, '\n') && UNCHANGED(d),
       "another model of the same shape (v7.pth vs v7-fp32.pth) refused: %s", err);

    /* Load into a chat of the right model, then try the broken files on it. */
    n_turns = chat_turn_count(c);
    rwkv_state_free(before);
    before = rwkv_state_clone(chat_state(c));
    d = (chat_free(d), NULL);

    snprintf(path, sizeof path, TMPDIR "/truncated.state");
    copy_file(TMPDIR "/v7.state", path, len - 100);
    ok(chat_load(c, path, err, sizeof err) == -1 &&
       strstr(err, "truncated.state: truncated: ") && strstr(err, " bytes") && UNCHANGED(c),
       "truncated file refused: %s", err);
    copy_file(TMPDIR "/v7.state", path, 60);
    ok(chat_load(c, path, err, sizeof err) == -1 && strstr(err, "truncated") && UNCHANGED(c),
       "file cut inside the header refused: %s", err);

    snprintf(path, sizeof path, TMPDIR "/flipped.state");
    copy_file(TMPDIR "/v7.state", path, len);
    patch(path, len / 2, "\x55", 1, 0);
    ok(chat_load(c, path, err, sizeof err) == -1 &&
       !strcmp(strstr(err, "flipped.state:"), "flipped.state: checksum mismatch: the file is corrupt") &&
       UNCHANGED(c), "one flipped byte: bad checksum refused: %s", err);

    snprintf(path, sizeof path, TMPDIR "/newer.state");
    copy_file(TMPDIR "/v7.state", path, len);
    v = 3;
    patch(path, 8, &v, 4, 1);
    ok(chat_load(c, path, err, sizeof err) == -1 &&
       strstr(err, "newer.state: state file format version 3 is newer than this rwkv-chat reads (2)") &&
       UNCHANGED(c), "newer format version refused: %s", err);

    /* An identity that differs only where the description does not look:
     * the message says what differs instead of one description twice. */
    snprintf(path, sizeof path, TMPDIR "/ffn.state");
    copy_file(TMPDIR "/v7.state", path, len);
    {
        uint32_t ffn = (uint32_t)rwkv_model_info(m)->ffn_size + 64;
        char desc[160];

        patch(path, 32 + 28, &ffn, 4, 1);
        ok(chat_load(c, path, err, sizeof err) == -1 && strstr(err, "ffn.state: saved with another "
           "model: FFN size ") && strstr(err, " in the file, ") && strstr(err, " here (both RWKV-7, "
           "3 layers x 128, vocab 1000, fingerprint ") && !strstr(err, "not this one") &&
           UNCHANGED(c), "identity differing in the FFN size only: says so: %s", err);
        snprintf(desc, sizeof desc, "FFN size %u in the file, %u here (", ffn,
                 (unsigned)rwkv_model_info(m)->ffn_size);
        ok(strstr(err, desc) != NULL, "the FFN sizes are the file's and the model's (%s)", desc);
        copy_file(TMPDIR "/v7.state", path, len);
        patch(path, 32 + 50, "\x01", 1, 1);
        ok(chat_load(c, path, err, sizeof err) == -1 &&
           strstr(err, "saved with another model: reserved identity bytes not zero (both RWKV-7") &&
           UNCHANGED(c), "identity with a reserved byte set: says so: %s", err);
    }

    /* A long path: the message is shortened in the middle of the path,
     * never at its end, where the reason is. */
    {
        char dir[700], lpath[800];
        size_t k;

        snprintf(dir, sizeof dir, TMPDIR "/");
        for (k = 0; k < 3; k++) {
            size_t at = strlen(dir);

            memset(dir + at, 'a' + (int)k, 200);
            dir[at + 200] = '/';
            dir[at + 201] = 0;
            mkdir(dir, 0700);
        }
        snprintf(lpath, sizeof lpath, "%smagic.state", dir);
        ok(strlen(lpath) > 600, "a path of %zu bytes", strlen(lpath));
        copy_file(TMPDIR "/v7.state", lpath, len);
        patch(lpath, 0, "GGUF", 4, 1);
        ok(chat_load(c, lpath, err, sizeof err) == -1 && strlen(err) < 200 &&
           strstr(err, "...") && !strncmp(err, TMPDIR "/aaa", strlen(TMPDIR) + 4) &&
           strstr(err, "cccc/magic.state: not an rwkv-chat state file (no RWKVSTAT magic)") &&
           UNCHANGED(c), "long path: the reason is whole at the end: %s", err);
        unlink(lpath);
        strcat(lpath, ".missing");
        ok(chat_load(c, lpath, err, sizeof err) == -1 &&
           strstr(err, "magic.state.missing: No such file or directory") && UNCHANGED(c),
           "long path of a missing file: the reason is whole: %s", err);
        for (k = 3; k-- > 0;) {
            dir[strlen(TMPDIR) + 1 + (k + 1) * 201 - 1] = 0;
            rmdir(dir);
        }
    }

    snprintf(path, sizeof path, TMPDIR "/magic.state");
    copy_file(TMPDIR "/v7.state", path, len);
    patch(path, 0, "GGUF", 4, 1);
    ok(chat_load(c, path, err, sizeof err) == -1 && strstr(err, "not an rwkv-chat state file") &&
       UNCHANGED(c), "bad magic refused: %s", err);

    ok(chat_load(c, shared_path("fixtures/models/v7.pth"), err, sizeof err) == -1 &&
       strstr(err, "not an rwkv-chat state file") && UNCHANGED(c), "a model file is not a state file");
    ok(chat_load(c, TMPDIR "/missing.state", err, sizeof err) == -1 &&
       strstr(err, "No such file") && UNCHANGED(c), "missing file: %s", err);

    /* A valid container whose chat sections are corrupt (checksum fixed). */
    snprintf(path, sizeof path, TMPDIR "/sections.state");
    copy_file(TMPDIR "/v7.state", path, len);
    {
        unsigned char *d8 = read_file(path, NULL);
        uint32_t n_sec = d8[24];
        uint64_t off = 0;

        for (i = 0; i < (int)n_sec; i++) {
            if (!strcmp((char *)d8 + 128 + i * 32, "transcript")) {
                memcpy(&off, d8 + 128 + i * 32 + 16, 8);
            }
        }
        free(d8);
        v = 1000000;
        patch(path, (size_t)off, &v, 4, 1);
    }
    ok(chat_load(c, path, err, sizeof err) == -1 &&
       strstr(err, "sections.state: corrupt 'transcript' section") && UNCHANGED(c),
       "corrupt transcript section refused: %s", err);

    /* The good file still loads into the same chat. */
    ok(chat_load(c, TMPDIR "/v7.state", err, sizeof err) == 0 && UNCHANGED(c), "the good file loads");

    /* Atomic save: a failed save leaves the old file as it was. */
    {
        size_t l1, l2;
        char *old = read_file(TMPDIR "/v7.state", &l1), *now;

        ok(chat_save(c, TMPDIR "/no-such-dir/x.state", err, sizeof err) == -1 &&
           strstr(err, "x.state: cannot write into"), "save into a missing directory fails: %s",
           err);
        chat_send_raw(c, "\x15", 1, err, sizeof err);
        ok(chat_save(c, TMPDIR "/v7.state", err, sizeof err) == -1 && strstr(err, "being generated"),
           "save during a reply refused");
        now = read_file(TMPDIR "/v7.state", &l2);
        ok(l1 == l2 && !memcmp(old, now, l1), "the old file is untouched");
        free(old);
        free(now);
        chat_interrupt(c);
        ok(chat_save(c, TMPDIR "/v7.state", err, sizeof err) == 0 &&
           !temporaries(TMPDIR, "v7.state.tmp") && !temporaries(TMPDIR, ".v7.state."),
           "save replaces the file, no temporary left");
    }
    rwkv_state_free(before);
    chat_free(c);
    rwkv_model_free(m);
    rwkv_model_free(m32);
}

/* 1 when built with AddressSanitizer (which reserves terabytes of
 * address space, so RLIMIT_AS cannot be used). */
static int under_asan(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return 1;
#endif
#endif
    return 0;
}

static void put_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    if (f) {
        fwrite(data, 1, len, f);
        fclose(f);
    }
}

/* Writes the first head bytes of from to path and makes it size bytes
 * long (sparse: nothing is written past head); the header's size field
 * says size.  0, or -1 when the file system cannot hold such a file. */
static int sparse_copy(const char *from, const char *path, size_t head, uint64_t size)
{
    size_t n;
    unsigned char *d = read_file(from, &n);
    int fd, rc = -1, i;

    if (!d || n < head) {
        free(d);
        return -1;
    }
    for (i = 0; i < 8; i++) {
        d[16 + i] = (unsigned char)(size >> (8 * i));
    }
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0 && write(fd, d, head) == (ssize_t)head && ftruncate(fd, (off_t)size) == 0) {
        rc = 0;
    }
    if (fd >= 0) {
        close(fd);
    }
    free(d);
    return rc;
}

/* Loads path in a child whose address space is capped at what it uses now
 * plus 512 MiB; 1 if the load was refused with an error containing want. */
static int refused_in_little_memory(const rwkv_model *m, const char *path, const char *want)
{
    pid_t pid = fork();
    int status;

    if (pid == 0) {
        char err[RWKV_ERRLEN];
        unsigned long pages = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        struct rlimit lim;
        rwkv_statefile *sf;

        if (!f || fscanf(f, "%lu", &pages) != 1) {
            _exit(2);
        }
        fclose(f);
        lim.rlim_cur = lim.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) +
                                      ((rlim_t)512 << 20);
        if (setrlimit(RLIMIT_AS, &lim) < 0) {
            _exit(2);
        }
        sf = rwkv_statefile_load(path, m, err, sizeof err);
        _exit(!sf && strstr(err, want) ? 0 : 1);
    }
    return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
           WEXITSTATUS(status) == 0;
}

/* A file is checked against the size its header and section table lay out
 * before anything is allocated: an 8 GB (sparse) file with a valid header
 * is refused at once, whether its table is small or claims 8 GB. */
static void test_size_cap(void)
{
    char err[RWKV_ERRLEN], want[128];
    rwkv_model *m = rwkv_model_load(shared_path("fixtures/models/v7.pth"), NULL, err, sizeof err);
    const uint64_t huge = (uint64_t)8 << 30;
    rwkv_statefile *sf;
    rwkv_state *st;
    struct rwkv_statefile_section sec[2] = { { "alpha", "hello", 5 }, { "big", "0123456789", 10 } };
    unsigned char *d;
    size_t len, head;
    uint64_t off, size;
    int i;

    if (!m) {
        ok(0, "v7.pth: %s", err);
        return;
    }
    st = rwkv_state_new(m);
    rwkv_statefile_save(TMPDIR "/small.state", m, st, sec, 2, err, sizeof err);
    d = read_file(TMPDIR "/small.state", &len);
    head = 128 + 3 * 32;        /* header and table: state, alpha, big */
    ok(d && len > head, "a small state file to start from (%zu bytes)", len);

    /* 1. The table lays out len bytes; the header and the file say 8 GB. */
    if (sparse_copy(TMPDIR "/small.state", TMPDIR "/huge.state", head, huge) < 0) {
        skip("cannot make an 8 GB sparse file here");
        skip("cannot make an 8 GB sparse file here");
        skip("cannot make an 8 GB sparse file here");
    } else {
        snprintf(want, sizeof want, "huge.state: corrupt: its sections take %zu bytes, the file "
                 "has %llu", len, (unsigned long long)huge);
        sf = rwkv_statefile_load(TMPDIR "/huge.state", m, err, sizeof err);
        ok(!sf && strstr(err, want) && !strchr(err, '\n'),
           "8 GB file whose table lays out %zu bytes refused before reading: %s", len, err);
        rwkv_statefile_free(sf);
        if (under_asan() || under_valgrind()) {
            skip("address space cap under a sanitizer");
        } else {
            ok(refused_in_little_memory(m, TMPDIR "/huge.state", want),
               "refused the same way with the address space capped 512 MiB above what is used");
        }

        /* 2. The last section claims the 8 GB: refused by the cap. */
        memcpy(&off, d + 128 + 2 * 32 + 16, 8);
        size = huge - 8 - off;
        for (i = 0; i < 8; i++) {
            d[128 + 2 * 32 + 24 + i] = (unsigned char)(size >> (8 * i));
            d[16 + i] = (unsigned char)(huge >> (8 * i));
        }
        put_file(TMPDIR "/bigsec.state", d, head);
        sf = NULL;
        err[0] = '\0';
        if (truncate(TMPDIR "/bigsec.state", (off_t)huge) == 0) {
            sf = rwkv_statefile_load(TMPDIR "/bigsec.state", m, err, sizeof err);
        }
        ok(!sf && strstr(err, "bigsec.state: sections of more than 1073741824 bytes"),
           "8 GB file whose table claims an 8 GB section refused by the 1 GiB cap: %s", err);
        rwkv_statefile_free(sf);
    }
    unlink(TMPDIR "/huge.state");
    unlink(TMPDIR "/bigsec.state");

    /* 3. A gap between sections (the size field and checksum agree). */
    d = (free(d), read_file(TMPDIR "/small.state", &len));
    if (d) {
        unsigned char *g = malloc(len + 8);

        memcpy(g, d, len);
        memcpy(&off, g + 128 + 2 * 32 + 16, 8);
        off += 8;
        memcpy(g + 128 + 2 * 32 + 16, &off, 8);
        memmove(g + off, g + off - 8, len - (off - 8));
        put_file(TMPDIR "/gap.state", g, len + 8);
        size = len + 8;
        patch(TMPDIR "/gap.state", 16, &size, 8, 1);
        sf = rwkv_statefile_load(TMPDIR "/gap.state", m, err, sizeof err);
        ok(!sf && strstr(err, "gap.state: corrupt section table (entry 2)"),
           "a section not where the one before it ends is refused: %s", err);
        rwkv_statefile_free(sf);
        free(g);
    }
    free(d);

    /* 4. The writer refuses what the reader would. */
    sec[1].size = ((size_t)1 << 30) - 4;
    ok(rwkv_statefile_save(TMPDIR "/toobig.state", m, st, sec, 2, err, sizeof err) == -1 &&
       strstr(err, "toobig.state: more than 1073741824 bytes to save") &&
       access(TMPDIR "/toobig.state", F_OK) != 0,
       "sections over the cap are not written: %s", err);
    rwkv_state_free(st);
    rwkv_model_free(m);
}

/* The container itself: sections round-trip, tags checked. */
static void test_container(void)
{
    char err[RWKV_ERRLEN];
    rwkv_model *m = rwkv_model_load(shared_path("fixtures/models/v7.pth"), NULL, err, sizeof err);
    rwkv_state *st, *st2;
    struct rwkv_statefile_section sec[2] = { { "alpha", "hello", 5 }, { "empty", "", 0 } };
    rwkv_statefile *sf;
    const char *p;
    size_t n, i;

    if (!m) {
        ok(0, "v7.pth: %s", err);
        return;
    }
    st = rwkv_state_new(m);
    st2 = rwkv_state_new(m);
    for (i = 0; i < rwkv_state_floats(st); i++) {
        rwkv_state_data(st)[i] = (float)i * 0.25f - 3.0f;
    }
    ok(rwkv_statefile_save(TMPDIR "/raw.state", m, st, sec, 2, err, sizeof err) == 0, "container saved");
    sf = rwkv_statefile_load(TMPDIR "/raw.state", m, err, sizeof err);
    ok(sf != NULL, "container loads (%s)", sf ? "" : err);
    if (sf) {
        rwkv_statefile_get_state(sf, st2);
        ok(!memcmp(rwkv_state_cdata(st), rwkv_state_cdata(st2), rwkv_state_floats(st) * 4),
           "state floats round-trip exactly");
        p = rwkv_statefile_section(sf, "alpha", &n);
        ok(p && n == 5 && !memcmp(p, "hello", 5), "section round-trips");
        p = rwkv_statefile_section(sf, "empty", &n);
        ok(p && n == 0 && rwkv_statefile_section(sf, "nope", &n) == NULL, "empty and absent sections");
        rwkv_statefile_free(sf);
    }
    sec[0].tag = "state";
    ok(rwkv_statefile_save(TMPDIR "/raw2.state", m, st, sec, 1, err, sizeof err) == -1,
       "reserved tag refused: %s", err);

    /* Every version's state round-trips (RWKV-4's pp = -1e30 included). */
    {
        static const char *models[] = { "v4.pth", "v5.2.pth", "v6.pth", "v7.safetensors" };
        int all = 1;

        for (i = 0; i < 4; i++) {
            char rel[64];
            rwkv_model *mv;
            rwkv_state *a, *b;

            snprintf(rel, sizeof rel, "fixtures/models/%s", models[i]);
            mv = rwkv_model_load(shared_path(rel), NULL, err, sizeof err);
            if (!mv) {
                diag("%s", err);
                all = 0;
                continue;
            }
            a = rwkv_state_new(mv);
            b = rwkv_state_new(mv);
            rwkv_state_data(a)[1] = 1.5f;
            rwkv_state_data(b)[1] = 0.0f;
            sf = NULL;
            if (rwkv_statefile_save(TMPDIR "/any.state", mv, a, NULL, 0, err, sizeof err) < 0 ||
                !(sf = rwkv_statefile_load(TMPDIR "/any.state", mv, err, sizeof err))) {
                diag("%s: %s", models[i], err);
                all = 0;
            } else {
                rwkv_statefile_get_state(sf, b);
                all &= !memcmp(rwkv_state_cdata(a), rwkv_state_cdata(b),
                               rwkv_state_floats(a) * sizeof(float));
            }
            rwkv_statefile_free(sf);
            rwkv_state_free(a);
            rwkv_state_free(b);
            if (i == 0) {
                /* A RWKV-4 file is refused by the RWKV-7 model. */
                all &= rwkv_statefile_load(TMPDIR "/any.state", m, err, sizeof err) == NULL &&
                       strstr(err, "saved with another model (RWKV-4, 3 layers x 128") != NULL;
            }
            rwkv_model_free(mv);
        }
        ok(all, "state files round-trip for RWKV-4, 5.2, 6 and 7 (safetensors); versions told apart");
    }
    rwkv_state_free(st);
    rwkv_state_free(st2);
    rwkv_model_free(m);
}

/* Writes to path the file at from with section tag replaced by data (NULL:
 * dropped; absent: added) and, when nan_at is not -1, the state float
 * nan_at made NaN.  The container is the current one; version then sets
 * its format version field (checksum fixed).  0, or -1. */
static int resave(const rwkv_model *m, const char *from, const char *path, const char *tag,
                  const void *data, size_t len, long nan_at, uint32_t version)
{
    static const char *const tags[] = { "transcript", "template", "settings", "knobs",
                                        "sampler", "chat", "tuned", "snapshots" };
    struct rwkv_statefile_section sec[9];
    char err[RWKV_ERRLEN];
    rwkv_statefile *sf = rwkv_statefile_load(from, m, err, sizeof err);
    rwkv_state *st = rwkv_state_new(m);
    size_t i, n = 0;
    int rc, placed = 0;

    if (!sf || !st) {
        diag("resave %s: %s", from, err);
        rwkv_statefile_free(sf);
        rwkv_state_free(st);
        return -1;
    }
    for (i = 0; i < sizeof tags / sizeof tags[0]; i++) {
        size_t sz;
        const void *p = rwkv_statefile_section(sf, tags[i], &sz);

        if (!strcmp(tags[i], tag)) {
            placed = 1;
            if (data) {
                sec[n++] = (struct rwkv_statefile_section){ tags[i], data, len };
            }
        } else if (p) {
            sec[n++] = (struct rwkv_statefile_section){ tags[i], p, sz };
        }
    }
    if (!placed && data) {
        sec[n++] = (struct rwkv_statefile_section){ tag, data, len };
    }
    rwkv_statefile_get_state(sf, st);
    if (nan_at >= 0) {
        rwkv_state_data(st)[nan_at] = NAN;
    }
    rc = rwkv_statefile_save(path, m, st, sec, n, err, sizeof err);
    if (rc < 0) {
        diag("resave %s: %s", path, err);
    }
    rwkv_statefile_free(sf);
    rwkv_state_free(st);
    if (rc == 0 && version) {
        patch(path, 8, &version, 4, 1);
    }
    return rc;
}

/* Knobs in state files: saved by name, checked like every other way of
 * setting them; the format-1 "settings" section still read; NaN states
 * refused. */
static void test_knobs_and_values(void)
{
    char err[RWKV_ERRLEN];
    struct sampler_settings s = sampling();
    rwkv_model *m = rwkv_model_load(shared_path("fixtures/models/v7-world.pth"), NULL, err,
                                    sizeof err);
    chat *c = m ? chat_new(m, tok, tmpl(), &s, err, sizeof err) : NULL;
    const char *good = TMPDIR "/knobs.state", *bad = TMPDIR "/knobs-bad.state";
    char oldpath[4096], *text;
    size_t n_turns;
    rwkv_state *before;
    size_t len;

    if (!c) {
        ok(0, "v7-world loads: %s", err);
        return;
    }
    snprintf(oldpath, sizeof oldpath, "%s/%s", getenv("TOP_SRCDIR") ? getenv("TOP_SRCDIR") : "..",
             "tests/data/v1-v7-world.state");
    chat_settings(c)->top_k = 33;
    chat_settings(c)->temperature = 0.7f;
    chat_settings_changed(c);
    ok(chat_save(c, good, err, sizeof err) == 0, "saved with knobs by name (%s)", err);
    text = read_file(good, &len);
#define HAS(x) (text && memmem(text, len, x, strlen(x)) != NULL)
    ok(HAS("temperature 0.699999988\ntop_p 0.300000012\ntop_k 33\n") &&
       HAS("\nseed 20260101\n") && !HAS("settings"),
       "the knobs section holds 'name value' lines, exact digits; no 'settings' section");
#undef HAS
    free(text);
    n_turns = chat_turn_count(c);
    before = rwkv_state_clone(chat_state(c));
#define SAME(x)                                                                                \
    (chat_turn_count(x) == n_turns && chat_settings(x)->top_k == 33 &&                         \
     !memcmp(rwkv_state_cdata(chat_state(x)), rwkv_state_cdata(before),                        \
             rwkv_state_floats(before) * sizeof(float)))

    /* Values from a state file pass the knob table's check. */
    {
        static const struct { const char *knobs, *want; } cases[] = {
            { "temperature nan\n", "'knobs' section: temperature: 'nan' is not a number from 0 to 10" },
            { "top_p 2\n", "'knobs' section: top_p: '2' is not a number from 0 to 1" },
            { "top_k -1\n", "'knobs' section: top_k: '-1' is not a whole number from 0 to 1048576" },
            { "decay inf\n", "'knobs' section: decay: 'inf' is not a number from 0 to 1" },
            { "temperature 1", "'knobs' section: the last line has no newline" },
            { "temperature\n", "'knobs' section: 'temperature' is not a 'name value' line" },
        };
        size_t i, n_ok = 0;

        for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            err[0] = 0;
            if (resave(m, good, bad, "knobs", cases[i].knobs, strlen(cases[i].knobs), -1, 0) == 0 &&
                chat_load(c, bad, err, sizeof err) == -1 && strstr(err, cases[i].want) &&
                strstr(err, "knobs-bad.state: ") == err + strlen(TMPDIR) + 1 && SAME(c)) {
                n_ok++;
            } else {
                diag("%s: %s", cases[i].knobs, err);
            }
        }
        ok(n_ok == sizeof cases / sizeof cases[0], "knobs out of range, NaN, inf or malformed in "
           "a state file refused with one line naming the knob; nothing changes (%zu of %zu)",
           n_ok, sizeof cases / sizeof cases[0]);
    }
    {
        const char *k = "min_p 0.25\nwarmth 3\n";

        ok(resave(m, good, bad, "knobs", k, strlen(k), -1, 0) == 0 &&
           chat_load(c, bad, err, sizeof err) == 0 && chat_settings(c)->min_p == 0.25f &&
           chat_settings(c)->temperature == 1.0f,
           "a knob this version does not know is skipped, a knob not saved is at its default (%s)",
           err);
    }
    ok(chat_load(c, good, err, sizeof err) == 0 && SAME(c), "the good file loads back (%s)", err);

    /* NaN in the saved state. */
    ok(resave(m, good, bad, "x-none", NULL, 0, 1000, 0) == 0 &&
       chat_load(c, bad, err, sizeof err) == -1 &&
       strstr(err, "knobs-bad.state: the saved state holds 1 NaN/Inf values (the first at float "
                   "1000): the file is damaged") && !strchr(err, '\n') && SAME(c),
       "a state holding NaN is refused at load with a clear message: %s", err);
    {
        size_t nf = rwkv_state_floats(chat_state(c));
        float *t = malloc(nf * sizeof *t);

        memcpy(t, rwkv_state_cdata(chat_state(c)), nf * sizeof *t);
        t[5] = INFINITY;
        ok(resave(m, good, bad, "tuned", t, nf * sizeof *t, -1, 0) == 0 &&
           chat_load(c, bad, err, sizeof err) == -1 &&
           strstr(err, "state-tuned start in the file holds NaN/Inf") && SAME(c),
           "a saved state-tuned start holding Inf is refused: %s", err);
        free(t);
    }

    /* Format 1: the fixed "settings" section (made by rwkv-chat before
     * knobs were saved by name) still loads, and is checked too. */
    ok(chat_load(c, oldpath, err, sizeof err) == 0 && chat_turn_count(c) == 2 &&
       chat_settings(c)->temperature == 0.7f && chat_settings(c)->top_p == 0.8f &&
       chat_settings(c)->top_k == 40 && chat_settings(c)->min_p == 0.05f &&
       chat_settings(c)->presence == 0.25f && chat_settings(c)->frequency == 0.125f &&
       chat_settings(c)->decay == 0.99f && chat_settings(c)->max_tokens == 8 &&
       chat_settings(c)->seed == 4242,
       "a format-1 state file (tests/data/v1-v7-world.state) loads: transcript and knobs (%s)",
       err);
    {
        size_t n;
        unsigned char *d = read_file(oldpath, &n), set[48];
        rwkv_statefile *sf = rwkv_statefile_load(oldpath, m, err, sizeof err);
        const void *p = sf ? rwkv_statefile_section(sf, "settings", &n) : NULL;
        float t = 11;

        free(d);
        if (p && n == sizeof set) {
            memcpy(set, p, n);
            memcpy(set, &t, 4);
        }
        n_turns = chat_turn_count(c);
        ok(p && n == sizeof set &&
           resave(m, oldpath, bad, "settings", set, sizeof set, -1, 1) == 0 &&
           chat_load(c, bad, err, sizeof err) == -1 &&
           strstr(err, "'settings' section: temperature: '11' is not a number from 0 to 10") &&
           chat_turn_count(c) == n_turns,
           "a format-1 file with an out-of-range knob is refused: %s", err);
        rwkv_statefile_free(sf);
    }
#undef SAME
    rwkv_state_free(before);
    chat_free(c);
    rwkv_model_free(m);
}

/* A template section: four strings, each u32 length + bytes. */
static size_t template_section(unsigned char *out, const char *name, const char *user,
                               const char *assistant, const char *intro)
{
    const char *f[4] = { name, user, assistant, intro };
    size_t n = 0, i, len;

    for (i = 0; i < 4; i++) {
        len = strlen(f[i]);
        out[n] = (unsigned char)len;
        out[n + 1] = (unsigned char)(len >> 8);
        out[n + 2] = (unsigned char)(len >> 16);
        out[n + 3] = (unsigned char)(len >> 24);
        memcpy(out + n + 4, f[i], len);
        n += 4 + len;
    }
    return n;
}

/* The chat's progress callback: counts calls, stops at call stop_at. */
struct progress {
    int calls, stop_at;
    size_t total;
};

static int on_progress(void *ctx, size_t fed, size_t total)
{
    struct progress *p = ctx;

    (void)fed;
    p->total = total;
    return ++p->calls == p->stop_at;
}

/* What a state file may make the model read: its template's intro is fed
 * when it loads (for /reset).  Bounded, and Ctrl-C (the progress callback)
 * stops it with nothing changed. */
static void test_intro_bounds(void)
{
    char err[RWKV_ERRLEN], *intro = malloc(CHAT_INTRO_MAX + 2), name[CHAT_NAME_MAX + 2];
    unsigned char *sec = malloc(CHAT_INTRO_MAX + 4096);
    struct sampler_settings s = sampling();
    rwkv_model *m = rwkv_model_load(shared_path("fixtures/models/v7-world.pth"), NULL, err,
                                    sizeof err);
    chat *c = m ? chat_new(m, tok, tmpl(), &s, err, sizeof err) : NULL;
    const char *good = TMPDIR "/intro.state", *bad = TMPDIR "/intro-bad.state";
    struct progress p = { 0, 0, 0 };
    rwkv_state *before;
    size_t n, i, n_turns;

    if (!c || !intro || !sec) {
        ok(0, "v7-world loads: %s", err);
        free(intro);
        free(sec);
        return;
    }
    chat_send(c, "Hello", err, sizeof err);
    free(reply(c));
    ok(chat_save(c, good, err, sizeof err) == 0, "saved (%s)", err);
    n_turns = chat_turn_count(c);
    before = rwkv_state_clone(chat_state(c));
#define SAME(x)                                                                                \
    (chat_turn_count(x) == n_turns &&                                                          \
     !memcmp(rwkv_state_cdata(chat_state(x)), rwkv_state_cdata(before),                        \
             rwkv_state_floats(before) * sizeof(float)))
    for (i = 0; i < CHAT_INTRO_MAX + 1; i++) {
        intro[i] = "abcdefghij klmnopqrstuvwxyz.\n"[i * 7 % 29];
    }
    intro[CHAT_INTRO_MAX + 1] = '\0';
    n = template_section(sec, "big", "User", "Assistant", intro);
    ok(resave(m, good, bad, "template", sec, n, -1, 0) == 0 &&
       chat_load(c, bad, err, sizeof err) == -1 &&
       strstr(err, "intro-bad.state: 'template' section: the intro has 65537 bytes, more than the "
                   "64 KiB") && SAME(c),
       "a state file whose intro is longer than 64 KiB is refused before the model reads it: %s",
       err);
    memset(name, 'N', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    n = template_section(sec, "names", name, "Assistant", "User: hi\n\n");
    ok(resave(m, good, bad, "template", sec, n, -1, 0) == 0 &&
       chat_load(c, bad, err, sizeof err) == -1 &&
       strstr(err, "a user, assistant or system name longer than 256 bytes") && SAME(c),
       "a user name longer than 256 bytes (fed every turn) is refused: %s", err);

    /* An intro of many prompt pieces: the progress callback is asked
     * between them, and stopping leaves the chat as it was. */
    intro[CHAT_INTRO_MAX - 1] = '\0';
    n = template_section(sec, "long", "User", "Assistant", intro);
    resave(m, good, bad, "template", sec, n, -1, 0);
    p.stop_at = 2;
    chat_set_progress(c, on_progress, &p);
    ok(chat_load(c, bad, err, sizeof err) == -1 && p.calls == 2 &&
       strstr(err, "intro-bad.state: reading the saved intro: interrupted after 512 of ") &&
       strstr(err, "; nothing changed") && SAME(c),
       "Ctrl-C while a state file's intro is read stops the load, nothing changed: %s", err);
    p.calls = 0;
    p.stop_at = -1;
    i = (size_t)chat_load(c, bad, err, sizeof err);
    ok(i == 0 && p.calls > 1 && !strcmp(chat_get_template(c)->name, "long"),
       "without Ctrl-C the same file loads (%d pieces of %zu tokens asked)", p.calls, p.total);
    chat_set_progress(c, NULL, NULL);
#undef SAME
    rwkv_state_free(before);
    chat_free(c);
    rwkv_model_free(m);
    free(intro);
    free(sec);
}

/* The third turn from snapshot name of c (raw: that raw prompt instead):
 * its logits and reply, malloc'd (n_vocab floats, then the reply's bytes);
 * NULL on failure. */
static char *from_snapshot_raw(chat *c, const char *name, const char *raw, int n_vocab,
                               size_t *len)
{
    char err[RWKV_ERRLEN], *r, *out;
    size_t rl;

    if (chat_snapshot_restore(c, name, err, sizeof err) < 0 ||
        (raw ? chat_send_raw(c, raw, strlen(raw), err, sizeof err)
             : chat_send(c, turns[2], err, sizeof err)) < 0) {
        diag("%s: %s", name, err);
        return NULL;
    }
    out = malloc((size_t)n_vocab * sizeof(float));
    memcpy(out, chat_logits(c), (size_t)n_vocab * sizeof(float));
    r = reply(c);
    rl = strlen(r);
    out = realloc(out, (size_t)n_vocab * sizeof(float) + rl);
    memcpy(out + (size_t)n_vocab * sizeof(float), r, rl);
    *len = (size_t)n_vocab * sizeof(float) + rl;
    free(r);
    return out;
}

static char *from_snapshot(chat *c, const char *name, int n_vocab, size_t *len)
{
    return from_snapshot_raw(c, name, NULL, n_vocab, len);
}

static const struct chat_template other_tmpl = { "other", "Q: hello\n\nA: Hi there.\n\n", "Q", "A",
                                                 NULL, 0 };

/* Snapshots in state files: two snapshots (one under another template)
 * come back in a fresh chat with their names, turns and times; each
 * continues exactly as before saving (sampled, temperature 1), /reset
 * after one returns to its own start; a malformed snapshots section is
 * refused with one line, changing nothing; a file without the section
 * leaves the snapshots in memory. */
static void test_snapshots(void)
{
    char err[RWKV_ERRLEN];
    struct sampler_settings s = sampling();
    rwkv_model *m = rwkv_model_load(shared_path("fixtures/models/v7-world.pth"), NULL, err,
                                    sizeof err);
    chat *c = m ? chat_new(m, tok, tmpl(), &s, err, sizeof err) : NULL, *b = NULL, *o = NULL;
    const char *good = TMPDIR "/snaps.state", *bad = TMPDIR "/snaps-bad.state";
    char *want[2] = { NULL, NULL }, *got;
    size_t wlen[2] = { 0, 0 }, glen = 0, sec_len = 0, n_turns, i;
    time_t taken[2];
    rwkv_state *before;
    unsigned char *sec = NULL;
    int n_vocab;

    if (!c) {
        ok(0, "v7-world loads: %s", err);
        return;
    }
    n_vocab = rwkv_model_info(m)->n_vocab;
    chat_send(c, turns[0], err, sizeof err);
    free(reply(c));
    ok(chat_snapshot_take(c, "one", err, sizeof err) == 0, "snapshot 'one' after a turn");
    chat_send(c, turns[1], err, sizeof err);
    free(reply(c));
    /* 'two' under another template: its /reset start is not the file's. */
    chat_set_template(c, &other_tmpl, err, sizeof err);
    chat_send(c, turns[1], err, sizeof err);
    free(reply(c));
    ok(chat_snapshot_take(c, "two", err, sizeof err) == 0, "snapshot 'two' under another template");
    taken[0] = chat_snapshot_time(c, 0);
    taken[1] = chat_snapshot_time(c, 1);
    chat_snapshot_restore(c, "one", err, sizeof err);
    ok(chat_save(c, good, err, sizeof err) == 0, "saved with two snapshots (%s)", err);
    want[0] = from_snapshot(c, "one", n_vocab, &wlen[0]);
    want[1] = from_snapshot(c, "two", n_vocab, &wlen[1]);

    s.seed = 99;
    b = chat_new(m, tok, NULL, &s, err, sizeof err);
    ok(b && chat_load(b, good, err, sizeof err) == 0 && chat_snapshot_count(b) == 2 &&
       !strcmp(chat_snapshot_name(b, 0), "one") && !strcmp(chat_snapshot_name(b, 1), "two") &&
       chat_snapshot_turns(b, 0) == 2 && chat_snapshot_turns(b, 1) == 2 &&
       chat_snapshot_time(b, 0) == taken[0] && chat_snapshot_time(b, 1) == taken[1],
       "a fresh chat loads both snapshots: names, turns and times (%s)", err);
    for (i = 0; i < 2; i++) {
        got = from_snapshot(b, i ? "two" : "one", n_vocab, &glen);
        ok(want[i] && got && glen == wlen[i] && !memcmp(got, want[i], glen),
           "restoring loaded snapshot '%s': third-turn logits bit-identical, same sampled reply",
           i ? "two" : "one");
        free(got);
    }
    ok(!strcmp(chat_get_template(b)->name, "other"), "its template came back with it");
    chat_reset(b);
    o = chat_new(m, tok, &other_tmpl, &s, err, sizeof err);
    ok(o && !memcmp(rwkv_state_cdata(chat_state(b)), rwkv_state_cdata(chat_state(o)),
                    rwkv_state_floats(chat_state(o)) * sizeof(float)),
       "/reset after restoring it starts from its own template's intro, read at load");
    chat_free(o);

    /* A snapshot is kept through a save of a loaded file: load, save, load. */
    ok(chat_save(b, bad, err, sizeof err) == 0 && chat_load(c, bad, err, sizeof err) == 0 &&
       chat_snapshot_count(c) == 2 && chat_snapshot_time(c, 1) == taken[1],
       "saved again from the loaded chat: both still there (%s)", err);

    /* Malformed snapshots sections: one line, nothing changes. */
    {
        rwkv_statefile *sf = rwkv_statefile_load(good, m, err, sizeof err);
        const void *p = sf ? rwkv_statefile_section(sf, "snapshots", &sec_len) : NULL;

        if (p) {
            sec = malloc(sec_len + 8);
            memcpy(sec, p, sec_len);
        }
        rwkv_statefile_free(sf);
    }
    ok(sec && sec_len > 2 * rwkv_state_floats(chat_state(b)) * sizeof(float),
       "the file has a snapshots section (%zu bytes)", sec_len);
    if (!sec) {
        goto done;
    }
    chat_load(b, good, err, sizeof err);
    n_turns = chat_turn_count(b);
    before = rwkv_state_clone(chat_state(b));
#define SAME(x)                                                                                \
    (chat_turn_count(x) == n_turns && chat_snapshot_count(x) == 2 &&                           \
     !memcmp(rwkv_state_cdata(chat_state(x)), rwkv_state_cdata(before),                        \
             rwkv_state_floats(before) * sizeof(float)))
#define REFUSED(what)                                                                          \
    (chat_load(b, bad, err, sizeof err) == -1 && strstr(err, "snaps-bad.state: " what) &&      \
     !strchr(err, '\n') && SAME(b))
    {
        /* Cut short anywhere: the first 64 bytes one by one, then ~300 cuts. */
        size_t cut, n_ok = 0, n_tried = 0, stride = sec_len / 300 + 1;

        for (cut = 0; cut < sec_len; cut += cut < 64 ? 1 : stride) {
            n_tried++;
            if (resave(m, good, bad, "snapshots", sec, cut, -1, 0) == 0 &&
                REFUSED("corrupt 'snapshots' section")) {
                n_ok++;
            } else {
                diag("cut at %zu of %zu: %s", cut, sec_len, err);
            }
        }
        ok(n_ok == n_tried, "a snapshots section cut short anywhere is refused: corrupt "
           "'snapshots' section, nothing changes (%zu of %zu cuts)", n_ok, n_tried);
    }
    {
        unsigned char *x = malloc(sec_len + 8);
        uint32_t v;
        float nan = NAN;
        unsigned char *at;

        memcpy(x, sec, sec_len);
        x[sec_len] = 0;
        ok(resave(m, good, bad, "snapshots", x, sec_len + 1, -1, 0) == 0 &&
           REFUSED("corrupt 'snapshots' section"), "a byte after the last snapshot: %s", err);
        v = CHAT_SNAPSHOTS_MAX + 1;
        memcpy(x, &v, 4);
        ok(resave(m, good, bad, "snapshots", x, sec_len, -1, 0) == 0 &&
           REFUSED("corrupt 'snapshots' section"), "a count over %d: %s", CHAT_SNAPSHOTS_MAX,
           err);
        memcpy(x, sec, sec_len);
        v = 7;
        memcpy(x + 4 + 4 + 3 + 8 + 4, &v, 4);
        ok(resave(m, good, bad, "snapshots", x, sec_len, -1, 0) == 0 &&
           REFUSED("corrupt 'snapshots' section"), "a turn of role 7: %s", err);
        memcpy(x, sec, sec_len);
        memcpy(x + sec_len - 8 - 4, &nan, 4);     /* the last float, before the history size */
        ok(resave(m, good, bad, "snapshots", x, sec_len, -1, 0) == 0 &&
           REFUSED("corrupt 'snapshots' section"), "a snapshot's state holding NaN: %s", err);
        /* Both named "one": "two" is the second name, after the first snapshot. */
        memcpy(x, sec, sec_len);
        at = memmem(x + 11, sec_len - 11, "\x03\0\0\0two", 7);
        if (at) {
            memcpy(at + 4, "one", 3);
        }
        ok(at && resave(m, good, bad, "snapshots", x, sec_len, -1, 0) == 0 &&
           REFUSED("corrupt 'snapshots' section"), "two snapshots of one name: %s", err);
        memcpy(x, sec, sec_len);
        at = memmem(x, sec_len, "top_p 0.300000012\n", 18);
        if (at) {
            memcpy(at + 6, "2.000000000", 11);
        }
        ok(at && resave(m, good, bad, "snapshots", x, sec_len, -1, 0) == 0 &&
           REFUSED("'snapshots' section: snapshot 'one': knobs: top_p: '2.000000000' is not a "
                   "number from 0 to 1"), "a snapshot's knob out of range names it: %s", err);
        free(x);
    }
    ok(resave(m, good, bad, "snapshots", NULL, 0, -1, 0) == 0 &&
       chat_snapshot_take(b, "mine", err, sizeof err) == 0 &&
       chat_load(b, bad, err, sizeof err) == 0 && chat_snapshot_count(b) == 3 &&
       chat_snapshot_exists(b, "mine"),
       "a file without the section (from before) leaves the snapshots in memory (%s)", err);
    ok(chat_load(b, good, err, sizeof err) == 0 && chat_snapshot_count(b) == 2 &&
       !chat_snapshot_exists(b, "mine"), "a file with it replaces them (%s)", err);
#undef REFUSED
#undef SAME
    rwkv_state_free(before);
done:
    free(sec);
    free(want[0]);
    free(want[1]);
    chat_free(b);
    chat_free(c);
    rwkv_model_free(m);
}

/* RWKV-7b: a snapshot's state keeps its history (the DEA cache) through a
 * state file, so restoring it continues exactly. */
static void test_snapshots_history(void)
{
    char err[RWKV_ERRLEN], path[4096];
    struct sampler_settings s = sampling();
    rwkv_model *m;
    chat *c, *b;
    char *want, *got;
    size_t wlen = 0, glen = 0;
    int n_vocab;

    snprintf(path, sizeof path, "%s/tests/golden/variants/v7b.pth",
             getenv("TOP_SRCDIR") ? getenv("TOP_SRCDIR") : "..");
    m = rwkv_model_load(path, NULL, err, sizeof err);
    c = m ? chat_new(m, tok, NULL, &s, err, sizeof err) : NULL;
    if (!c) {
        ok(0, "v7b.pth loads: %s", err);
        rwkv_model_free(m);
        return;
    }
    n_vocab = rwkv_model_info(m)->n_vocab;
    /* Its vocabulary has 61 ids: raw control bytes (single-byte tokens). */
    chat_send_raw(c, "\x10\x11\x12", 3, err, sizeof err);
    free(reply(c));
    chat_snapshot_take(c, "h", err, sizeof err);
    chat_send_raw(c, "\x13\x14", 2, err, sizeof err);
    free(reply(c));
    ok(chat_save(c, TMPDIR "/v7b-snaps.state", err, sizeof err) == 0 &&
       rwkv_state_history(chat_state(c)) > 0, "RWKV-7b: saved with a snapshot (%s)", err);
    want = from_snapshot_raw(c, "h", "\x15\x16", n_vocab, &wlen);
    b = chat_new(m, tok, NULL, &s, err, sizeof err);
    ok(b && chat_load(b, TMPDIR "/v7b-snaps.state", err, sizeof err) == 0 &&
       chat_snapshot_count(b) == 1, "RWKV-7b: loaded (%s)", err);
    got = b ? from_snapshot_raw(b, "h", "\x15\x16", n_vocab, &glen) : NULL;
    {
        /* The attention's derived keys and values are rebuilt from the
         * history after loading: equal to float rounding, not bit for bit. */
        float d = want && got ? 0 : INFINITY;
        size_t k = (size_t)n_vocab * sizeof(float);
        int i;

        for (i = 0; want && got && i < n_vocab; i++) {
            d = fmaxf(d, fabsf(((float *)want)[i] - ((float *)got)[i]));
        }
        ok(d < 1e-4f && glen == wlen && !memcmp(got + k, want + k, glen - k) &&
           rwkv_state_history(chat_state(b)) == rwkv_state_history(chat_state(c)),
           "RWKV-7b: the loaded snapshot keeps its history (%zu tokens): logits within %g, "
           "the same sampled reply", rwkv_state_history(chat_state(b)), (double)d);
    }
    /* A snapshot of an RWKV-7b model without its history (its size 0) is
     * refused: its floats would go on without the attention's tokens. */
    {
        rwkv_statefile *sf = rwkv_statefile_load(TMPDIR "/v7b-snaps.state", m, err, sizeof err);
        size_t sec_len = 0, q = 0, at = 0;
        const unsigned char *p = sf ? rwkv_statefile_section(sf, "snapshots", &sec_len) : NULL;
        unsigned char *x = p ? malloc(sec_len + 8) : NULL;
        uint64_t zero = 0;

        /* the last snapshot's history: a u64 size, then that many bytes to the end */
        for (q = sec_len >= 16 ? sec_len - 16 : 0; x && q > 0 && !at; q--) {
            uint64_t len;

            memcpy(&len, p + q, 8);
            if (len >= 8 && len == sec_len - q - 8) {
                at = q;
            }
        }
        if (at) {
            memcpy(x, p, at);
            memcpy(x + at, &zero, 8);
        }
        ok(at && resave(m, TMPDIR "/v7b-snaps.state", TMPDIR "/v7b-snaps-bad.state", "snapshots",
                        x, at + 8, -1, 0) == 0 &&
           chat_load(b, TMPDIR "/v7b-snaps-bad.state", err, sizeof err) == -1 &&
           strstr(err, "corrupt 'snapshots' section") && chat_snapshot_count(b) == 1,
           "RWKV-7b: a snapshot whose history is left out is refused: %s", err);
        free(x);
        rwkv_statefile_free(sf);
    }
    /* /reset gives a long history's memory back: the state is the size of a
     * new chat's again. */
    {
        chat *fresh = chat_new(m, tok, NULL, &s, err, sizeof err);
        char msg[200];
        size_t i, before;

        for (i = 0; i < sizeof msg; i++) {
            msg[i] = (char)(0x10 + i % 16);
        }
        chat_send_raw(c, msg, sizeof msg, err, sizeof err);
        free(reply(c));
        before = rwkv_state_bytes(chat_state(c));
        chat_reset(c);
        ok(fresh && rwkv_state_history(chat_state(c)) == rwkv_state_history(chat_state(fresh)) &&
           rwkv_state_bytes(chat_state(c)) == rwkv_state_bytes(chat_state(fresh)) &&
           rwkv_state_bytes(chat_state(c)) < before,
           "RWKV-7b: /reset after %zu bytes of state gives it back: %zu, as a new chat's %zu",
           before, rwkv_state_bytes(chat_state(c)),
           fresh ? rwkv_state_bytes(chat_state(fresh)) : 0);
        chat_free(fresh);
    }
    free(want);
    free(got);
    chat_free(b);
    chat_free(c);
    rwkv_model_free(m);
}

int main(int argc, char **argv)
{
    char err[WORLD_ERRLEN], demo[4096];

    tok = tokenizer_load(shared_path("fixtures/rwkv_vocab_v20230424.txt"), err, sizeof err);
    if (!tok) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (argc == 5 && !strcmp(argv[1], "--continue")) {
        int rc = child(argv[2], argv[3], argv[4]);

        tokenizer_free(tok);
        return rc;
    }
    mkdir("tests", 0755);
    mkdir(TMPDIR, 0755);
    test_container();
    test_size_cap();
    snprintf(demo, sizeof demo, "%s/share/models/rwkv7-tiny-chat.pth",
             getenv("TOP_SRCDIR") ? getenv("TOP_SRCDIR") : "..");
    test_continue(argv[0], demo, "demo model");
    if (!under_valgrind()) {
        test_continue(argv[0], shared_path("fixtures/models/v7-world.pth"), "v7-world");
    }
    test_refusals();
    test_knobs_and_values();
    test_intro_bounds();
    test_snapshots();
    test_snapshots_history();
    tokenizer_free(tok);
    return tap_done();
}
