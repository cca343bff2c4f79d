/*
 * test_convcache.c - weight conversion by blocks of rows, and the
 * conversion cache (engine/kernels/kmat.c, engine/load/convcache.c, engine/model/model.c).
 *
 * Blocked conversion must give the bytes the old whole-matrix conversion
 * gave (every format, transposed or not, odd shapes, inline or on a pool).
 * The cache must give bit-identical logits to converting, be rebuilt when
 * the model file changes or the cache is damaged, live in $XDG_CACHE_HOME
 * (never beside the model: an old cache there is ignored), keep to its
 * size limit by removing the least recently used, and never stop a load.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "engine/load/checkpoint.h"
#include "engine/load/convcache.h"
#include "engine/kernels/kernels.h"
#include "engine/kernels/kernels_impl.h"
#include "engine/kernels/kmat.h"
#include "engine/kernels/quant.h"
#include "engine/model/weights.h"
#include "engine/rwkv.h"
#include "tests/evalonce.h"
#include "testutil.h"

/* ------------------------------------------------------------------------ */
/* Blocked conversion == whole-matrix conversion                              */

/* The conversion as it was: the whole tensor to float32, transposed, then
 * one pack of the whole matrix. */
static int old_convert(struct kmat *m, const struct ckpt_tensor *t, int transpose,
                       enum rwkv_dtype want)
{
    size_t n = (size_t)t->numel;
    float *tmp = malloc(n * sizeof *tmp);

    memset(m, 0, sizeof *m);
    m->type = want;
    m->rows = (int)(transpose ? t->shape[1] : t->shape[0]);
    m->cols = (int)(transpose ? t->shape[0] : t->shape[1]);
    ckpt_to_f32(t->dtype, t->data, tmp, n);
    if (transpose) {
        float *tr = malloc(n * sizeof *tr);

        for (int i = 0; i < m->cols; i++) {
            for (int j = 0; j < m->rows; j++) {
                tr[(size_t)j * m->cols + i] = tmp[(size_t)i * m->rows + j];
            }
        }
        free(tmp);
        tmp = tr;
    }
    if (want == RWKV_DTYPE_F32) {
        m->data = tmp;
        m->owned = tmp;
        return 0;
    }
    if (kernels_format(want)->pack(m, tmp) != 0) {
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

static int same_kmat(const struct kmat *a, const struct kmat *b)
{
    size_t n;

    if (a->type != b->type || a->rows != b->rows || a->cols != b->cols) {
        return 0;
    }
    n = (size_t)a->rows * quant_row_bytes(a->type, a->cols);
    if (memcmp(a->data, b->data, n) != 0) {
        return 0;
    }
    if (quant_row_scales(a->type)) {
        return a->scales && b->scales &&
               memcmp(a->scales, b->scales, (size_t)a->rows * sizeof(float)) == 0;
    }
    return 1;
}

static void test_blocked(void)
{
    static const int shapes[][2] = { { 1, 1 }, { 517, 131 }, { 3, 70001 }, { 300, 33 },
                                     { 37, 1000 }, { 257, 7 } };
    static const enum ckpt_dtype stored[] = { CKPT_F32, CKPT_BF16, CKPT_F16 };
    static const enum rwkv_dtype formats[] = { RWKV_DTYPE_F32, RWKV_DTYPE_F16, RWKV_DTYPE_BF16,
                                               RWKV_DTYPE_Q8, RWKV_DTYPE_Q4 };
    struct kpool *pool = kpool_new(3);
    uint32_t r = 12345;

    for (size_t f = 0; f < sizeof formats / sizeof formats[0]; f++) {
        for (int transpose = 0; transpose <= 1; transpose++) {
            int cases = 0, same = 0;

            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                for (size_t d = 0; d < sizeof stored / sizeof stored[0]; d++) {
                    size_t n = (size_t)shapes[s][0] * shapes[s][1];
                    unsigned char *buf = malloc(n * 4);
                    struct ckpt_tensor t;
                    struct kmat want, got, pooled;
                    char err[256];
                    int rc;

                    for (size_t i = 0; i < n; i++) {
                        float v;
                        uint16_t h;

                        r ^= r << 13, r ^= r >> 17, r ^= r << 5;
                        v = (float)((int)(r % 200001) - 100000) / (i % 97 == 0 ? 10.0f : 7.0e4f);
                        if (stored[d] == CKPT_F32) {
                            memcpy(buf + 4 * i, &v, 4);
                        } else {
                            h = stored[d] == CKPT_BF16 ? half_f32_to_bf16(v) : half_f32_to_f16(v);
                            memcpy(buf + 2 * i, &h, 2);
                        }
                    }
                    memset(&t, 0, sizeof t);
                    t.name = "blocks.0.att.test";
                    t.dtype = stored[d];
                    t.ndim = 2;
                    t.shape[0] = shapes[s][0];
                    t.shape[1] = shapes[s][1];
                    t.numel = (int64_t)n;
                    t.data = buf;
                    t.nbytes = n * ckpt_dtype_size(stored[d]);
                    cases++;
                    if (old_convert(&want, &t, transpose, formats[f]) != 0 ||
                        kmat_from_tensor(&got, &t, transpose, formats[f], err, sizeof err) != 0) {
                        diag("conversion failed: %s", err);
                        free(buf);
                        continue;
                    }
                    rc = kmat_plan(&pooled, &t, transpose, formats[f], err, sizeof err);
                    if (rc == 0) {
                        rc = kmat_convert(&pooled, &t, transpose, pool, err, sizeof err);
                    } else {
                        rc = rc == 1 ? 0 : -1;
                    }
                    if (rc == 0 && same_kmat(&want, &got) && same_kmat(&want, &pooled)) {
                        same++;
                    } else {
                        diag("%s %dx%d from %s%s differs", rwkv_dtype_name(formats[f]),
                             shapes[s][0], shapes[s][1], ckpt_dtype_name(stored[d]),
                             transpose ? " transposed" : "");
                    }
                    kmat_free(&want);
                    kmat_free(&got);
                    kmat_free(&pooled);
                    free(buf);
                }
            }
            ok(same == cases, "%s%s: blocked conversion (inline and on 3 threads) gives the bytes "
               "of the whole-matrix conversion on %d odd shapes x 3 stored types",
               rwkv_dtype_name(formats[f]), transpose ? ", transposed" : "", cases / 3);
        }
    }
    kpool_free(pool);
}

static void put64(unsigned char *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static void put32(unsigned char *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v;

    memcpy(&v, p, 8);
    return v;
}

/* ------------------------------------------------------------------------ */
/* The cache on a copy of the v7 fixture                                      */

#define N_TOK 6

static const int32_t tokens[N_TOK] = { 1, 17, 400, 999, 3, 250 };

static char model[512];         /* the copy in tmpdir */

struct load {
    float *logits;              /* after the N_TOK tokens, n_vocab floats */
    enum rwkv_cache_result result;
    char path[512], reason[512];
    uint64_t bytes_per_token;
    int n_vocab;
};

/* Loads path at dtype (cache on or off) and runs the tokens; 0, or -1. */
static int load_run(const char *path, enum rwkv_dtype dtype, int cache, struct load *out)
{
    struct rwkv_load_options lo = { dtype, 2, cache ? RWKV_CACHE_MODE_ON : RWKV_CACHE_MODE_OFF };
    char err[RWKV_ERRLEN];
    rwkv_model *m = rwkv_model_load(path, &lo, err, sizeof err);
    const struct rwkv_cache_info *ci;
    rwkv_state *s;
    int rc;

    memset(out, 0, sizeof *out);
    if (!m) {
        diag("%s", err);
        return -1;
    }
    ci = rwkv_model_cache(m);
    out->result = ci->result;
    snprintf(out->path, sizeof out->path, "%s", ci->path);
    snprintf(out->reason, sizeof out->reason, "%s", ci->reason);
    out->bytes_per_token = rwkv_model_info(m)->bytes_per_token;
    out->n_vocab = rwkv_model_info(m)->n_vocab;
    out->logits = malloc((size_t)out->n_vocab * sizeof(float));
    s = rwkv_state_new(m);
    rc = eval_once(m, s, tokens, N_TOK, out->logits, 0, err, sizeof err);
    rwkv_state_free(s);
    rwkv_model_free(m);
    return rc;
}

static int same_logits(const struct load *a, const struct load *b)
{
    return a->logits && b->logits && a->n_vocab == b->n_vocab &&
           memcmp(a->logits, b->logits, (size_t)a->n_vocab * sizeof(float)) == 0;
}

/* The cache file of model_path at dtype (in $XDG_CACHE_HOME/rwkv-chat). */
static void cache_of(const char *model_path, enum rwkv_dtype dtype, char *out, size_t len)
{
    if (convcache_path(model_path, dtype, out, len) != 0) {
        printf("Bail out! no cache path for %s\n", model_path);
        exit(99);
    }
}

static int exists(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0;
}

static void copy_file(const char *from, const char *to)
{
    size_t n;
    unsigned char *data = read_file(from, &n);

    if (!data) {
        printf("Bail out! cannot read %s\n", from);
        exit(99);
    }
    write_file(to, data, n);
    free(data);
}

static const char *result_name(enum rwkv_cache_result r)
{
    static const char *const names[] = { "none", "used", "written", "not written", "off" };

    return (unsigned)r < 5 ? names[r] : "?";
}

/* Round trip at one format: written, then used, logits bit-identical, and
 * identical to converting without a cache. */
static void test_round_trip(enum rwkv_dtype dtype, struct load *ref)
{
    struct load first, second, off;
    char cache[600];
    const char *name = rwkv_dtype_name(dtype);

    cache_of(model, dtype, cache, sizeof cache);
    unlink(cache);
    load_run(model, dtype, 0, &off);
    ok(off.result == RWKV_CACHE_OFF && !exists(cache),
       "%s with the cache off: converted, nothing written (%s)", name, result_name(off.result));
    load_run(model, dtype, 1, &first);
    ok(first.result == RWKV_CACHE_WRITTEN && !strcmp(first.path, cache) && exists(cache) &&
       !strcmp(first.reason, "no cache yet"),
       "%s first load writes %s (%s: %s)", name, cache, result_name(first.result), first.reason);
    load_run(model, dtype, 1, &second);
    ok(second.result == RWKV_CACHE_USED && !strcmp(second.path, cache),
       "%s second load uses the cache (%s)", name, result_name(second.result));
    ok(same_logits(&first, &second) && same_logits(&first, &off),
       "%s logits from the cache are bit-identical to converting", name);
    ok(first.bytes_per_token == second.bytes_per_token,
       "%s bytes per token the same from the cache (%llu)", name,
       (unsigned long long)second.bytes_per_token);
    free(off.logits);
    free(second.logits);
    *ref = first;
}

/* Replaces the cache with what damage() makes of it; the next load must
 * rebuild it (reason starting with want) with the right logits. */
static void expect_rebuilt(const char *what, const char *cache, const struct load *ref,
                           const char *want)
{
    struct load l;

    load_run(model, RWKV_DTYPE_Q8, 1, &l);
    ok(l.result == RWKV_CACHE_WRITTEN && !strncmp(l.reason, want, strlen(want)) &&
       same_logits(&l, ref) && !strchr(l.reason, '\n'),
       "%s: ignored and rewritten (%s: %s), logits right", what, result_name(l.result), l.reason);
    free(l.logits);
    (void)cache;
}

/* The next q8 load must come from the cache, with the reference logits. */
static void expect_used(const char *what, const struct load *ref)
{
    struct load l;

    load_run(model, RWKV_DTYPE_Q8, 1, &l);
    ok(l.result == RWKV_CACHE_USED && same_logits(&l, ref), "%s (%s)", what,
       result_name(l.result));
    free(l.logits);
}

static void test_damage(const struct load *ref)
{
    char cache[600];
    unsigned char *img;
    size_t n;

    cache_of(model, RWKV_DTYPE_Q8, cache, sizeof cache);
    img = read_file(cache, &n);
    if (!img || n < 4096) {
        ok(0, "q8 cache readable (%zu bytes)", n);
        free(img);
        return;
    }
    img[n - 100] ^= 0x40;
    write_file(cache, img, n);
    expect_rebuilt("a cache with one flipped data bit", cache, ref, "corrupt");
    img[n - 100] ^= 0x40;
    write_file(cache, img, n / 2);
    expect_rebuilt("a truncated cache", cache, ref, "corrupt");
    write_file(cache, "RWKVCNV1 but nothing else", 25);
    expect_rebuilt("a 25-byte cache", cache, ref, "corrupt");
    write_file(cache, "", 0);
    expect_rebuilt("an empty cache", cache, ref, "corrupt");
    memset(img, 'x', 200);
    write_file(cache, img, n);
    expect_rebuilt("a cache with a garbage header", cache, ref, "corrupt");
    expect_used("the rewritten cache is used", ref);
    free(img);
}

/* Files at the cache's name that must not be trusted or must not block:
 * a FIFO (opening one for reading would wait for a writer) and, when we
 * can make one, a cache owned by another user (its weights skip the NaN
 * scan, so only our own or the model owner's are used). */
static void test_strange_files(const struct load *ref)
{
    char cache[600];
    unsigned char *img;
    size_t n;
    struct load l;

    cache_of(model, RWKV_DTYPE_Q8, cache, sizeof cache);
    img = read_file(cache, &n);
    unlink(cache);
    if (mkfifo(cache, 0644) != 0) {
        skip("mkfifo: %s", strerror(errno));
    } else {
        load_run(model, RWKV_DTYPE_Q8, 1, &l);
        struct stat st;

        ok(l.result != RWKV_CACHE_USED && strstr(l.reason, "not a regular file") &&
           same_logits(&l, ref) && lstat(cache, &st) == 0 && S_ISFIFO(st.st_mode),
           "a FIFO at the cache's name does not block the load and is not replaced (%s: %s)",
           result_name(l.result), l.reason);
        free(l.logits);
        if (l.result == RWKV_CACHE_WRITTEN && strcmp(l.path, cache) != 0) {
            unlink(l.path);     /* written to the cache directory instead */
        }
        unlink(cache);
    }
    if (!img) {
        ok(0, "q8 cache readable");
        return;
    }
    write_file(cache, img, n);
    if (geteuid() != 0 || chown(cache, 4242, 4242) != 0) {
        skip("chown to another user needs root");
    } else {
        load_run(model, RWKV_DTYPE_Q8, 1, &l);
        ok(l.result != RWKV_CACHE_USED && same_logits(&l, ref),
           "a cache owned by another user (uid 4242) is not used (%s: %s)",
           result_name(l.result), l.reason);
        free(l.logits);
    }
    unlink(cache);
    write_file(cache, img, n);
    expect_used("our own copy of it is used", ref);
    free(img);
}

static void test_invalidation(const struct load *ref)
{
    struct timespec times[2] = { { 0, 0 }, { 1500000000, 123456789 } };
    struct load l;
    struct stat st;
    char other[600];

    /* a new modification time */
    times[0].tv_nsec = UTIME_OMIT;
    utimensat(AT_FDCWD, model, times, 0);
    load_run(model, RWKV_DTYPE_Q8, 1, &l);
    ok(l.result == RWKV_CACHE_WRITTEN && strstr(l.reason, "changed") && same_logits(&l, ref),
       "touching the model invalidates the cache (%s: %s)", result_name(l.result), l.reason);
    free(l.logits);
    load_run(model, RWKV_DTYPE_Q8, 1, &l);
    ok(l.result == RWKV_CACHE_USED, "and the new cache is used (%s)", result_name(l.result));
    free(l.logits);

    /* another file put in its place with the same size and time (new inode) */
    stat(model, &st);
    snprintf(other, sizeof other, "%s.new", model);
    copy_file(model, other);
    times[1] = st.st_mtim;
    utimensat(AT_FDCWD, other, times, 0);
    rename(other, model);
    load_run(model, RWKV_DTYPE_Q8, 1, &l);
    ok(l.result == RWKV_CACHE_WRITTEN && strstr(l.reason, "changed") && same_logits(&l, ref),
       "a model file replaced (same size and time, new inode) invalidates the cache (%s: %s)",
       result_name(l.result), l.reason);
    free(l.logits);

    /* a cache for another format at this name */
    {
        char q4[600], q8[600];

        cache_of(model, RWKV_DTYPE_Q4, q4, sizeof q4);
        cache_of(model, RWKV_DTYPE_Q8, q8, sizeof q8);
        copy_file(q4, q8);
    }
    load_run(model, RWKV_DTYPE_Q8, 1, &l);
    ok(l.result == RWKV_CACHE_WRITTEN && strstr(l.reason, "format") && same_logits(&l, ref),
       "a q4 cache under the q8 name is not used (%s: %s)", result_name(l.result), l.reason);
    free(l.logits);
}

/* Where caches go: the user's cache directory, whatever the model's
 * directory; an old cache beside the model (written by earlier versions)
 * is neither read nor removed; with no cache directory the load goes on
 * without one. */
static void test_location(const struct load *ref)
{
    char dir[600], ro_model[700], xdg[400], next_to[800], user[600], afile[300];
    const char *home = getenv("HOME");
    struct load l, again;
    unsigned char *img;
    size_t n;

    snprintf(dir, sizeof dir, "%s", tmp_path("ro"));
    snprintf(xdg, sizeof xdg, "%s", getenv("XDG_CACHE_HOME"));
    mkdir(dir, 0755);
    snprintf(ro_model, sizeof ro_model, "%s/v7.pth", dir);
    copy_file(shared_path("fixtures/models/v7.pth"), ro_model);
    chmod(dir, 0555);
    snprintf(next_to, sizeof next_to, "%s.q8.rwkvcache", ro_model);

    load_run(ro_model, RWKV_DTYPE_Q8, 1, &l);
    ok(l.result == RWKV_CACHE_WRITTEN && !strncmp(l.path, xdg, strlen(xdg)) &&
       strstr(l.path, "/rwkv-chat/") && strstr(l.path, "-v7.pth.q8.rwkvcache") &&
       !exists(next_to) && exists(l.path),
       "the cache goes to $XDG_CACHE_HOME/rwkv-chat (%s)", l.path);
    load_run(ro_model, RWKV_DTYPE_Q8, 1, &again);
    ok(again.result == RWKV_CACHE_USED && !strcmp(again.path, l.path) &&
       same_logits(&again, ref) && same_logits(&l, ref),
       "and is used from there (%s), logits right", result_name(again.result));
    free(l.logits);
    free(again.logits);
    chmod(dir, 0755);

    /* an old cache beside a (writable) model: ignored, left alone */
    cache_of(model, RWKV_DTYPE_Q8, user, sizeof user);
    snprintf(next_to, sizeof next_to, "%s.q8.rwkvcache", model);
    img = read_file(user, &n);
    if (!img) {
        ok(0, "q8 cache readable");
    } else {
        write_file(next_to, img, n);
        unlink(user);
        load_run(model, RWKV_DTYPE_Q8, 1, &l);
        ok(l.result == RWKV_CACHE_WRITTEN && !strcmp(l.path, user) &&
           !strcmp(l.reason, "no cache yet") && same_logits(&l, ref),
           "an old cache beside the model is not read: a new one is written in the cache "
           "directory (%s: %s)", result_name(l.result), l.reason);
        free(l.logits);
        {
            size_t m;
            unsigned char *left = read_file(next_to, &m);

            ok(left && m == n && !memcmp(left, img, n),
               "and the old one is left as it was (not removed, not rewritten)");
            free(left);
        }
        unlink(next_to);
        free(img);
    }

    /* no writable place at all: runs without a cache */
    snprintf(afile, sizeof afile, "%s", tmp_path("afile"));
    write_file(afile, "x", 1);
    snprintf(dir, sizeof dir, "%s/sub", afile);
    setenv("XDG_CACHE_HOME", dir, 1);
    load_run(ro_model, RWKV_DTYPE_Q4, 1, &l);
    ok(l.result == RWKV_CACHE_NOT_WRITTEN && l.reason[0] && !strchr(l.reason, '\n') &&
       l.logits != NULL,
       "nowhere to write: loads without a cache (%s: %s)", result_name(l.result), l.reason);
    free(l.logits);
    /* no cache directory known */
    {
        char *saved_home = home ? strdup(home) : NULL;

        unsetenv("XDG_CACHE_HOME");
        unsetenv("HOME");
        load_run(ro_model, RWKV_DTYPE_Q4, 1, &l);
        ok(l.result == RWKV_CACHE_NOT_WRITTEN && strstr(l.reason, "no user cache directory") &&
           l.logits != NULL, "neither XDG_CACHE_HOME nor HOME: loads without a cache (%s)",
           l.reason);
        free(l.logits);
        if (saved_home) {
            setenv("HOME", saved_home, 1);
        }
        free(saved_home);
    }
    setenv("XDG_CACHE_HOME", xdg, 1);
}

static uint64_t file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* Sets path's mtime (a cache's last use) to seconds_ago before now. */
static void age(const char *path, long seconds_ago)
{
    struct timespec t[2];

    clock_gettime(CLOCK_REALTIME, &t[0]);
    t[0].tv_sec -= seconds_ago;
    t[1] = t[0];
    utimensat(AT_FDCWD, path, t, 0);
}

/* The size limit (RWKV_CHAT_CACHE_MAX): a new cache removes the least
 * recently used ones (a load that uses a cache counts as a use), never
 * itself. */
static void test_evict(void)
{
    char q8[600], q4[600], f16[600], limit[64];
    uint64_t s8, s4, s16;
    struct load l;

    setenv("XDG_CACHE_HOME", tmp_path("xdg-evict"), 1);
    cache_of(model, RWKV_DTYPE_Q8, q8, sizeof q8);
    cache_of(model, RWKV_DTYPE_Q4, q4, sizeof q4);
    cache_of(model, RWKV_DTYPE_F16, f16, sizeof f16);
    load_run(model, RWKV_DTYPE_Q8, 1, &l);
    free(l.logits);
    load_run(model, RWKV_DTYPE_Q4, 1, &l);
    free(l.logits);
    load_run(model, RWKV_DTYPE_F16, 1, &l);
    free(l.logits);
    s8 = file_size(q8);
    s4 = file_size(q4);
    s16 = file_size(f16);
    ok(s8 && s4 && s16 && !unlink(f16), "three caches written without a limit (%llu, %llu, "
       "%llu bytes)", (unsigned long long)s8, (unsigned long long)s4, (unsigned long long)s16);
    /* q8 written before q4, but used after it */
    age(q8, 3000);
    age(q4, 2000);
    load_run(model, RWKV_DTYPE_Q8, 1, &l);
    ok(l.result == RWKV_CACHE_USED, "q8 used (%s)", result_name(l.result));
    free(l.logits);
    snprintf(limit, sizeof limit, "%llu", (unsigned long long)(s8 + s16 + s4 / 2));
    setenv("RWKV_CHAT_CACHE_MAX", limit, 1);
    load_run(model, RWKV_DTYPE_F16, 1, &l);
    ok(l.result == RWKV_CACHE_WRITTEN && exists(f16) && exists(q8) && !exists(q4),
       "over the limit (%s bytes): the least recently used (q4) is removed, not the oldest "
       "written (q8)", limit);
    free(l.logits);
    setenv("RWKV_CHAT_CACHE_MAX", "1K", 1);
    load_run(model, RWKV_DTYPE_Q4, 1, &l);
    ok(l.result == RWKV_CACHE_WRITTEN && exists(q4) && !exists(q8) && !exists(f16),
       "a limit below one cache: the new one stays, the others go");
    free(l.logits);
    load_run(model, RWKV_DTYPE_Q4, 1, &l);
    ok(l.result == RWKV_CACHE_USED, "and is used next time (%s)", result_name(l.result));
    free(l.logits);
    setenv("RWKV_CHAT_CACHE_MAX", "junk", 1);
    ok(rwkv_cache_limit() == (uint64_t)16 << 30, "a malformed RWKV_CHAT_CACHE_MAX: the 16 GiB "
       "default");
    setenv("RWKV_CHAT_CACHE_MAX", "2G", 1);
    ok(rwkv_cache_limit() == (uint64_t)2 << 30, "RWKV_CHAT_CACHE_MAX=2G: 2 GiB");
    unsetenv("RWKV_CHAT_CACHE_MAX");
}

/* RWKV-4/5/6 (blocks.c; v6 keeps five slices of one tensor apart). */
static void test_versions(void)
{
    static const char *const files[] = { "v4.pth", "v5.2.pth", "v6.pth" };

    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char rel[64], copy[300];
        struct load a, b;

        snprintf(rel, sizeof rel, "fixtures/models/%s", files[i]);
        snprintf(copy, sizeof copy, "%s", tmp_path(files[i]));
        copy_file(shared_path(rel), copy);
        load_run(copy, RWKV_DTYPE_Q4, 1, &a);
        load_run(copy, RWKV_DTYPE_Q4, 1, &b);
        ok(a.result == RWKV_CACHE_WRITTEN && b.result == RWKV_CACHE_USED && same_logits(&a, &b),
           "%s at q4: cache written, then used, logits bit-identical (%s, %s)", files[i],
           result_name(a.result), result_name(b.result));
        free(a.logits);
        free(b.logits);
    }
}

/* Rewrites path in place as rsync --inplace -t does: the same inode and
 * size, n bytes at off replaced (zip CRCs made to match, as in a file a
 * writer made), the mtime put back.  The ctime moves on (the kernel sets
 * it); should the clock not have ticked since the last change, the
 * times are set again until it has.  0, or -1. */
static int rewrite_in_place(const char *path, long off, const void *bytes, size_t n)
{
    struct stat before, after;
    struct timespec times[2];
    unsigned char *buf;
    size_t len;
    int fd, rc = -1;

    if (stat(path, &before) != 0 || !(buf = read_file(path, &len))) {
        return -1;
    }
    memcpy(buf + off, bytes, n);
    zip_fix_crcs(buf, len);
    fd = open(path, O_WRONLY);
    if (fd >= 0 && pwrite(fd, buf, len, 0) == (ssize_t)len) {
        rc = 0;
    }
    if (fd >= 0) {
        close(fd);
    }
    free(buf);
    times[0].tv_sec = 0;
    times[0].tv_nsec = UTIME_OMIT;
    times[1] = before.st_mtim;
    for (int i = 0; rc == 0 && i < 1000; i++) {
        struct timespec ms = { 0, 1000000 };

        utimensat(AT_FDCWD, path, times, 0);
        stat(path, &after);
        if (after.st_ctim.tv_sec != before.st_ctim.tv_sec ||
            after.st_ctim.tv_nsec != before.st_ctim.tv_nsec) {
            break;
        }
        nanosleep(&ms, NULL);
    }
    return rc;
}

/* Where tensor name's data starts in the model file at path, plus half
 * its size (mid-tensor lies outside the fingerprint's samples); -1 if
 * absent. */
static long mid_tensor(const char *path, const char *name)
{
    char err[RWKV_ERRLEN];
    ckpt_file *f = ckpt_open(path, err, sizeof err);
    const struct ckpt_tensor *t = f ? ckpt_find(f, name) : NULL;
    size_t size;
    long off = -1;

    if (t) {
        off = (long)((const unsigned char *)t->data - ckpt_bytes(f, &size)) +
              (long)(t->nbytes / 2 & ~(size_t)1);
    }
    ckpt_close(f);
    return off;
}

/* A model rewritten in place with one weight changed and its mtime put
 * back (same size, inode, mtime; the weight outside the fingerprint's
 * samples): its ctime moved, so the cache is rebuilt, and the logits are
 * those of the new weights. */
static void test_inplace_rewrite(const struct load *ref)
{
    const char *name = "blocks.0.att.key.weight";
    char copy[300];
    struct load first, l, off;
    struct stat a, b;
    long at;

    snprintf(copy, sizeof copy, "%s", tmp_path("inplace.pth"));
    copy_file(shared_path("fixtures/models/v7.pth"), copy);
    load_run(copy, RWKV_DTYPE_Q8, 1, &first);
    at = mid_tensor(copy, name);
    stat(copy, &a);
    if (at < 0 || rewrite_in_place(copy, at, "\x00\x41", 2) != 0) {     /* bf16 8.0 */
        ok(0, "%s rewritten in place", copy);
        free(first.logits);
        return;
    }
    stat(copy, &b);
    load_run(copy, RWKV_DTYPE_Q8, 1, &l);
    load_run(copy, RWKV_DTYPE_Q8, 0, &off);
    ok(a.st_size == b.st_size && a.st_ino == b.st_ino &&
       a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec &&
       first.result == RWKV_CACHE_WRITTEN && same_logits(&first, ref) &&
       l.result == RWKV_CACHE_WRITTEN && strstr(l.reason, "model file changed") &&
       same_logits(&l, &off) && !same_logits(&l, ref),
       "a model rewritten in place, one weight changed, mtime put back (rsync --inplace -t): "
       "the cache is rebuilt (%s: %s) and the logits are the new weights'",
       result_name(l.result), l.reason);
    free(first.logits);
    free(l.logits);
    free(off.logits);
}

/* The NaN/Inf scan leaves the tensors the cache holds to the cache (it
 * was written from this very file, checked): a NaN in a cached weight
 * goes unread while the cache matches the file's identity (here forged to
 * the rewritten file's ctime: a rewrite itself invalidates the cache, see
 * test_inplace_rewrite); but once the cache lacks that matrix, the load
 * checks the tensor and refuses it. */
static void test_nan_behind_cache(const struct load *ref)
{
    const char *name = "blocks.1.att.key.weight";
    char copy[300], cache[400], err[RWKV_ERRLEN];
    struct load l;
    struct stat st;
    size_t n;
    long off;
    unsigned char *img;

    snprintf(copy, sizeof copy, "%s", tmp_path("nan.pth"));
    copy_file(shared_path("fixtures/models/v7.pth"), copy);
    cache_of(copy, RWKV_DTYPE_Q8, cache, sizeof cache);
    load_run(copy, RWKV_DTYPE_Q8, 1, &l);
    free(l.logits);
    off = mid_tensor(copy, name);
    if (off < 0 || rewrite_in_place(copy, off, "\xc0\x7f", 2) != 0) {
        ok(0, "cannot write a NaN into %s", copy);
        return;
    }
    /* the cache's key: the file's new ctime (header offset 96) */
    stat(copy, &st);
    img = read_file(cache, &n);
    if (img && n >= 128) {
        put64(img + 96, (uint64_t)((int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec));
        convcache_seal(img, n);
        write_file(cache, img, n);
    }
    free(img);

    load_run(copy, RWKV_DTYPE_Q8, 1, &l);
    ok(l.result == RWKV_CACHE_USED && same_logits(&l, ref),
       "a NaN behind a valid cache is not read: loads from the cache (%s)", result_name(l.result));
    free(l.logits);

    /* the cache's entry for that tensor no longer matches (transposed) */
    img = read_file(cache, &n);
    for (size_t e = 128; img && e + 192 <= n && e < 128 + 192 * 64; e += 192) {
        if (!strcmp((const char *)img + e, name)) {
            put32(img + e + 188, 1);
            convcache_seal(img, n);
            write_file(cache, img, n);
            break;
        }
    }
    free(img);
    {
        struct rwkv_load_options lo = { RWKV_DTYPE_Q8, 1, RWKV_CACHE_MODE_ON };
        rwkv_model *m = rwkv_model_load(copy, &lo, err, sizeof err);

        ok(!m && strstr(err, name) && strstr(err, "1 NaN/Inf value"),
           "the cache lacking that matrix: the tensor is checked and refused (%s)", err);
        rwkv_model_free(m);
    }
}

static void test_no_conversion(void)
{
    struct load l;
    char a[600], b[600];

    cache_of(model, RWKV_DTYPE_AUTO, a, sizeof a);
    cache_of(model, RWKV_DTYPE_BF16, b, sizeof b);
    load_run(model, RWKV_DTYPE_AUTO, 1, &l);
    ok(l.result == RWKV_CACHE_NONE && !l.path[0] && !exists(a),
       "bf16 file at dtype auto: no cache (%s)", result_name(l.result));
    free(l.logits);
    load_run(model, RWKV_DTYPE_BF16, 1, &l);
    ok(l.result == RWKV_CACHE_NONE && !exists(b), "bf16 file at dtype bf16: no cache (%s)",
       result_name(l.result));
    free(l.logits);
}

/* bytes_per_token = the matrices as held + vectors in float32 + one
 * embedding row, counted here from the tensors.  The LoRA factors' format
 * is the forward pass's choice (float32 or bf16): what remains once the
 * rest is counted must be one of the two. */
static void test_bytes_per_token(void)
{
    static const char *const lora[] = { ".att.w1", ".att.w2", ".att.a1", ".att.a2", ".att.v1",
                                        ".att.v2", ".att.g1", ".att.g2" };
    static const char *const linear[] = { "key.weight", "value.weight", "receptance.weight",
                                          "output.weight", "head.weight" };
    char err[RWKV_ERRLEN];
    ckpt_file *f = ckpt_open(model, err, sizeof err);
    struct rwkv_load_options lo = { RWKV_DTYPE_AUTO, 1, RWKV_CACHE_MODE_OFF };
    rwkv_model *m[2];
    uint64_t want[2] = { 0, 0 }, lora_numel = 0, lora_bytes, got[2];

    lo.dtype = RWKV_DTYPE_AUTO;
    m[0] = rwkv_model_load(model, &lo, err, sizeof err);
    lo.dtype = RWKV_DTYPE_Q8;
    m[1] = rwkv_model_load(model, &lo, err, sizeof err);
    if (!f || !m[0] || !m[1]) {
        ok(0, "bytes per token: %s", err);
        return;
    }
    for (size_t i = 0; i < ckpt_count(f); i++) {
        const struct ckpt_tensor *t = ckpt_at(f, i);
        size_t len = strlen(t->name);
        int is_lora = 0, is_linear = 0, extra = 0;

        for (int j = 0; j < rwkv_model_info(m[0])->n_extra_tensors; j++) {
            extra |= !strcmp(rwkv_model_extra_tensor(m[0], j), t->name);
        }
        if (extra) {
            continue;
        }
        for (size_t j = 0; j < sizeof lora / sizeof lora[0]; j++) {
            is_lora |= len > strlen(lora[j]) && !strcmp(t->name + len - strlen(lora[j]), lora[j]);
        }
        for (size_t j = 0; j < sizeof linear / sizeof linear[0]; j++) {
            is_linear |= len >= strlen(linear[j]) &&
                         !strcmp(t->name + len - strlen(linear[j]), linear[j]) && t->ndim == 2;
        }
        if (!strcmp(t->name, "emb.weight")) {
            want[0] += (uint64_t)t->shape[1] * 2;
            want[1] += (uint64_t)t->shape[1] * 2;
        } else if (is_linear) {
            want[0] += (uint64_t)t->numel * 2;
            want[1] += (uint64_t)t->shape[0] * ((uint64_t)t->shape[1] + 4);
        } else if (is_lora) {
            lora_numel += (uint64_t)t->numel;
        } else {
            want[0] += (uint64_t)t->numel * 4;     /* vectors: float32 */
            want[1] += (uint64_t)t->numel * 4;
        }
    }
    got[0] = rwkv_model_info(m[0])->bytes_per_token;
    got[1] = rwkv_model_info(m[1])->bytes_per_token;
    lora_bytes = got[0] - want[0];
    ok(lora_numel > 0 && (lora_bytes == 2 * lora_numel || lora_bytes == 4 * lora_numel) &&
       got[1] - want[1] == lora_bytes,
       "bytes per token from the matrices as held: bf16 %llu, q8 %llu (%llu without the LoRA "
       "factors, which take %.0f bytes per element)", (unsigned long long)got[0],
       (unsigned long long)got[1], (unsigned long long)want[1],
       (double)lora_bytes / (double)(lora_numel ? lora_numel : 1));
    rwkv_model_free(m[0]);
    rwkv_model_free(m[1]);
    ckpt_close(f);
}

/* ------------------------------------------------------------------------ */
/* The reader on edited images                                                */

/* Edits a copy of img with edit(copy), seals it, and expects the parser
 * to refuse it with a reason starting with want. */
static void expect_refused(const char *what, const unsigned char *img, size_t n,
                           const struct convcache_key *key, void (*edit)(unsigned char *, size_t),
                           const char *want)
{
    unsigned char *c = malloc(n);
    char why[512] = "";
    convcache *cc;

    memcpy(c, img, n);
    edit(c, n);
    convcache_seal(c, n);
    cc = convcache_parse(c, n, key, NULL, why, sizeof why);
    ok(!cc && !strncmp(why, want, strlen(want)), "%s: refused (%s)", what, why);
    convcache_close(cc);
    free(c);
}

/* Offsets in the file (convcache.h): header fields and entry 0. */
#define H_VERSION 8
#define H_ENTRIES 64
#define E0 128
#define E_DATA_OFF (E0 + 136)
#define E_DATA_SIZE (E0 + 144)
#define E_SCALES_OFF (E0 + 152)
#define E_SCALES_SIZE (E0 + 160)
#define E_TYPE (E0 + 176)
#define E_ROWS (E0 + 180)
#define E_TRANSPOSE (E0 + 188)

static void ed_version(unsigned char *c, size_t n) { (void)n; put32(c + H_VERSION, 99); }
static void ed_entries(unsigned char *c, size_t n) { put64(c + H_ENTRIES, (uint64_t)n); }
static void ed_past_end(unsigned char *c, size_t n) { put64(c + E_DATA_OFF, (n + 64) & ~(uint64_t)63); }
static void ed_wrap(unsigned char *c, size_t n) { (void)n; put64(c + E_DATA_SIZE, UINT64_MAX - 32); }
static void ed_size(unsigned char *c, size_t n) { (void)n; put64(c + E_DATA_SIZE, get64(c + E_DATA_SIZE) + 1); }
static void ed_align(unsigned char *c, size_t n) { (void)n; put64(c + E_DATA_OFF, get64(c + E_DATA_OFF) + 8); }
static void ed_type(unsigned char *c, size_t n) { (void)n; put32(c + E_TYPE, 77); }
static void ed_rows(unsigned char *c, size_t n) { (void)n; put32(c + E_ROWS, (uint32_t)-5); }
static void ed_transpose(unsigned char *c, size_t n) { (void)n; put32(c + E_TRANSPOSE, 2); }
static void ed_name(unsigned char *c, size_t n) { (void)n; memset(c + E0, 'a', 128); }
static void ed_scales(unsigned char *c, size_t n) { put64(c + E_SCALES_OFF, (uint64_t)n & ~(uint64_t)63); put64(c + E_SCALES_SIZE, 4096); }

static void test_reader(void)
{
    char cache[600], why[512];
    unsigned char *img;
    size_t n;
    struct convcache_key key;
    struct stat st;
    convcache *c;

    cache_of(model, RWKV_DTYPE_Q8, cache, sizeof cache);
    img = read_file(cache, &n);
    stat(model, &st);
    /* the key of the model as it is now, as model.c makes it */
    {
        struct rwkv_load_options lo = { RWKV_DTYPE_AUTO, 1, RWKV_CACHE_MODE_OFF };
        char err[RWKV_ERRLEN];
        rwkv_model *m = rwkv_model_load(model, &lo, err, sizeof err);

        convcache_key_of(model, RWKV_DTYPE_Q8, m ? rwkv_model_info(m)->fingerprint : 0, &key);
        rwkv_model_free(m);
    }
    if (!img) {
        ok(0, "q8 cache readable");
        return;
    }
    c = convcache_parse(img, n, &key, NULL, why, sizeof why);
    ok(c && convcache_count(c) > 10, "the q8 cache parses from memory (%zu entries)",
       convcache_count(c));
    convcache_close(c);
    {
        unsigned char *s = malloc(n);

        memcpy(s, img, n);
        convcache_seal(s, n);
        c = convcache_parse(s, n, &key, NULL, why, sizeof why);
        ok(c != NULL && !memcmp(s, img, n), "sealing an intact image changes nothing");
        convcache_close(c);
        free(s);
    }
    expect_refused("another cache version", img, n, &key, ed_version, "written by another engine");
    expect_refused("more entries than fit", img, n, &key, ed_entries, "corrupt");
    expect_refused("data past the end", img, n, &key, ed_past_end, "corrupt: entry 0");
    expect_refused("data size wrapping around", img, n, &key, ed_wrap, "corrupt: entry 0");
    expect_refused("data size not rows x row bytes", img, n, &key, ed_size, "corrupt: entry 0");
    expect_refused("misaligned data", img, n, &key, ed_align, "corrupt: entry 0");
    expect_refused("unknown format", img, n, &key, ed_type, "corrupt: entry 0");
    expect_refused("negative rows", img, n, &key, ed_rows, "corrupt: entry 0");
    expect_refused("transpose flag 2", img, n, &key, ed_transpose, "corrupt: entry 0");
    expect_refused("name without NUL", img, n, &key, ed_name, "corrupt: entry 0");
    expect_refused("scales past the end", img, n, &key, ed_scales, "corrupt: entry 0");
    key.dtype = RWKV_DTYPE_Q4;
    c = convcache_parse(img, n, &key, NULL, why, sizeof why);
    ok(!c && strstr(why, "format"), "another dtype's key: refused (%s)", why);
    convcache_close(c);
    free(img);
}

/* weights_gather (model.c, at the end of every load): each kernel
 * matrix's weights lie in the model's one 2 MiB-aligned arena, none is
 * left in memory of its own (owned), and those read in place hold the
 * checkpoint's bytes; converted (q8, cache off) and read from the cache
 * (q4, the second load) alike.  Results: the logits tests above and the
 * fixtures' tests load through it too. */
static void test_gather(void)
{
    static const struct {
        enum rwkv_dtype dtype;
        enum rwkv_cache_mode cache;
        const char *what;
    } cases[] = {
        { RWKV_DTYPE_AUTO, RWKV_CACHE_MODE_OFF, "bf16 in place" },
        { RWKV_DTYPE_Q8, RWKV_CACHE_MODE_OFF, "q8 converted" },
        { RWKV_DTYPE_Q4, RWKV_CACHE_MODE_ON, "q4 from the cache" },
    };
    char err[RWKV_ERRLEN];
    ckpt_file *f = ckpt_open(model, err, sizeof err);

    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct rwkv_load_options lo = { cases[c].dtype, 1, cases[c].cache, 0, 0 };
        rwkv_model *m;
        size_t inside = 0, unowned = 0, inplace = 0, same = 0;
        int from_cache = 0;

        if (cases[c].cache == RWKV_CACHE_MODE_ON) {
            rwkv_model_free(rwkv_model_load(model, &lo, err, sizeof err));  /* writes it */
        }
        m = rwkv_model_load(model, &lo, err, sizeof err);
        if (!f || !m) {
            ok(0, "gather %s: %s", cases[c].what, err);
            rwkv_model_free(m);
            continue;
        }
        from_cache = m->cache.n_from_cache > 0;
        for (size_t i = 0; i < m->n_recs; i++) {
            const struct kmat *k = m->recs[i].k;
            const unsigned char *d = k->data, *a = m->arena;
            size_t n = (size_t)k->rows * quant_row_bytes(k->type, k->cols);

            inside += a && d >= a && d + n <= a + m->arena_bytes;
            unowned += k->owned == NULL;
            if (!m->recs[i].converted) {
                const struct ckpt_tensor *t = ckpt_find(f, m->recs[i].item.name);

                inplace++;
                same += t && t->nbytes == n && memcmp(d, t->data, n) == 0;
            }
        }
        ok(m->arena && (uintptr_t)m->arena % (2u << 20) == 0 && m->n_recs > 0 &&
           inside == m->n_recs && unowned == m->n_recs && same == inplace &&
           (cases[c].dtype == RWKV_DTYPE_AUTO ? inplace > 0 : inplace < m->n_recs) &&
           from_cache == (cases[c].cache == RWKV_CACHE_MODE_ON),
           "%s: the %zu matrices' weights in the model's arena (%zu), none owned apart (%zu), "
           "%zu of %zu read in place the checkpoint's bytes", cases[c].what, m->n_recs, inside,
           unowned, same, inplace);
        rwkv_model_free(m);
    }
    {
        /* keep_mapped (rwkv-tool models and info): nothing moves */
        struct rwkv_load_options lo = { RWKV_DTYPE_AUTO, 1, RWKV_CACHE_MODE_OFF, 0, 1 };
        rwkv_model *m = rwkv_model_load(model, &lo, err, sizeof err);
        size_t held = 0, inplace = 0;

        for (size_t i = 0; m && i < m->n_recs; i++) {
            const struct kmat *k = m->recs[i].k;

            if (!m->recs[i].converted) {
                inplace++;
                held += ckpt_holds(m->file, k->data,
                                   (size_t)k->rows * quant_row_bytes(k->type, k->cols));
            }
        }
        ok(m && !m->arena && inplace > 0 && held == inplace,
           "keep_mapped: no arena, %zu of the %zu matrices read in place still in the file's "
           "mapping", held, inplace);
        rwkv_model_free(m);
    }
    ckpt_close(f);
}

int main(void)
{
    struct load q8, q4;

    test_blocked();
    if (tmpdir_make("test_convcache") != 0) {
        return 99;
    }
    setenv("XDG_CACHE_HOME", tmp_path("xdg"), 1);
    snprintf(model, sizeof model, "%s", tmp_path("v7.pth"));
    copy_file(shared_path("fixtures/models/v7.pth"), model);
    test_no_conversion();
    test_round_trip(RWKV_DTYPE_Q8, &q8);
    test_round_trip(RWKV_DTYPE_Q4, &q4);
    test_bytes_per_token();
    test_gather();
    test_versions();
    test_reader();
    test_damage(&q8);
    test_strange_files(&q8);
    test_invalidation(&q8);
    test_location(&q8);
    test_inplace_rewrite(&q8);
    test_nan_behind_cache(&q8);
    test_evict();
    free(q8.logits);
    free(q4.logits);
    tmpdir_remove();
    return tap_done();
}
