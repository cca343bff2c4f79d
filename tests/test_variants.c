/* test_variants.c - the RWKV-7 family's variants (RWKV-7a DeepEmbed, RWKV-8
 * Heron rc00) through the engine API, on the random-weight models of
 * tests/golden/variants (goldens from the official code, see README.md
 * there):
 *  - detection: version, minor and name, from the tensors;
 *  - float32 logits match the goldens in RNN, sequence and chunked mode,
 *    and the final state does;
 *  - q8 and q4 load and run, close to float32 (KL bound);
 *  - a state file saved mid-way continues exactly in a fresh load, and is
 *    refused by the other variant;
 *  - a file missing a variant tensor, or with a per-token table of the
 *    wrong shape, is refused with a message naming the tensor;
 *  - RWKV-7b (DEA) files are told apart and refused;
 *  - bytes/token counts one row of each per-token table, not the table
 *    (they are read from the mapped file as the tokens come). */
#include <math.h>

#include "app/tools/pthwrite.h"
#include "engine/load/checkpoint.h"
#include "engine/load/statefile.h"
#include "tests/evalonce.h"
#include "tests/testutil.h"

#define GOLDEN ABS_TOP_SRCDIR "/tests/golden/variants/"
#define TOL 1e-4
#define MAX_TOKENS 64

struct variant {
    const char *name;           /* v7a: files NAME.pth, NAME.tokens, ... */
    int version, minor;
    const char *version_name;
    const char *table;          /* its per-token table in layer 0 */
};

static const struct variant variants[] = {
    { "v7a", 7, 1, "7a", "blocks.0.ffn.s_emb.weight" },
    { "v8", 8, 0, "8", "blocks.0.ffn.enn.weight" },
};

static int32_t tokens[MAX_TOKENS];
static int n_tokens;
static float *golden, *golden_state;
static size_t golden_state_floats;

static const char *golden_path(const struct variant *v, const char *ext)
{
    static char buf[2][1024];
    static int next;
    char *b = buf[next++ & 1];

    snprintf(b, sizeof buf[0], GOLDEN "%s%s", v->name, ext);
    return b;
}

static int read_goldens(const struct variant *v)
{
    char *s = read_file(golden_path(v, ".tokens"), NULL), *p, *end;
    size_t len;

    n_tokens = 0;
    for (p = s; s && n_tokens < MAX_TOKENS; p = end) {
        long t = strtol(p, &end, 10);

        if (end == p) {
            break;
        }
        tokens[n_tokens++] = (int32_t)t;
    }
    free(s);
    free(golden);
    free(golden_state);
    golden = read_file(golden_path(v, ".logits.f32"), NULL);
    golden_state = read_file(golden_path(v, ".state.f32"), &len);
    golden_state_floats = len / sizeof(float);
    return n_tokens > 0 && golden && golden_state ? 0 : -1;
}

static rwkv_model *load(const char *path, enum rwkv_dtype dtype, char *err, size_t errlen)
{
    struct rwkv_load_options lo = { .dtype = dtype, .n_threads = 2,
                                    .cache = RWKV_CACHE_MODE_OFF };

    return rwkv_model_load(path, &lo, err, errlen);
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double m = 0;

    for (size_t i = 0; i < n; i++) {
        m = fmax(m, fabs((double)a[i] - b[i]));
    }
    return m;
}

/* Logits of all tokens fed chunk at a time from the zero state into out;
 * the final state into state.  0 or -1. */
static int run(const rwkv_model *m, int chunk, float *out, rwkv_state *state)
{
    size_t V = (size_t)rwkv_model_info(m)->n_vocab;
    char err[RWKV_ERRLEN];

    rwkv_state_reset(state);
    for (int done = 0; done < n_tokens; done += chunk) {
        int n = n_tokens - done < chunk ? n_tokens - done : chunk;

        if (eval_once(m, state, tokens + done, (size_t)n, out + done * V, 1, err,
                      sizeof err) != 0) {
            diag("%s", err);
            return -1;
        }
    }
    return 0;
}

static void test_goldens(const struct variant *v, rwkv_model *m)
{
    const struct rwkv_info *info = rwkv_model_info(m);
    size_t V = (size_t)info->n_vocab;
    float *out = malloc((size_t)n_tokens * V * sizeof *out);
    rwkv_state *state = rwkv_state_new(m);
    static const int chunks[] = { 1, MAX_TOKENS, 5 };
    static const char *const modes[] = { "RNN mode", "sequence mode", "chunks of 5" };

    ok(info->version == v->version && info->minor == v->minor &&
       !strcmp(info->version_name, v->version_name),
       "%s: detected as RWKV-%s (version %d, minor %d)", v->name, info->version_name,
       info->version, info->minor);
    ok(rwkv_state_floats(state) == golden_state_floats,
       "%s: state of %zu floats, as the official code's", v->name, rwkv_state_floats(state));
    for (int c = 0; c < 3; c++) {
        double dl, ds;

        if (run(m, chunks[c], out, state) != 0) {
            ok(0, "%s: %s runs", v->name, modes[c]);
            continue;
        }
        dl = max_diff(out, golden, (size_t)n_tokens * V);
        ds = rwkv_state_floats(state) == golden_state_floats
             ? max_diff(rwkv_state_cdata(state), golden_state, golden_state_floats) : 1e9;
        ok(dl < TOL && ds < TOL, "%s float32 %s: logits within %.1e of the official code's, "
           "state within %.1e", v->name, modes[c], dl, ds);
    }
    rwkv_state_free(state);
    free(out);
}

/* KL(fp32 || dtype) per token, averaged over the tokens, in RNN mode. */
static void test_quantised(const struct variant *v, const float *ref, enum rwkv_dtype dtype,
                           const char *dname, double bound)
{
    char err[RWKV_ERRLEN];
    rwkv_model *m = load(golden_path(v, ".pth"), dtype, err, sizeof err);
    size_t V;
    float *out;
    rwkv_state *state;
    double kl = 0;
    int same_argmax = 0;

    if (!m) {
        ok(0, "%s %s loads: %s", v->name, dname, err);
        return;
    }
    V = (size_t)rwkv_model_info(m)->n_vocab;
    out = malloc((size_t)n_tokens * V * sizeof *out);
    state = rwkv_state_new(m);
    if (run(m, 1, out, state) != 0) {
        ok(0, "%s %s runs", v->name, dname);
    } else {
        for (int t = 0; t < n_tokens; t++) {
            const float *a = ref + t * V, *b = out + t * V;
            double ma = a[0], mb = b[0], za = 0, zb = 0;
            size_t ia = 0, ib = 0;

            for (size_t i = 0; i < V; i++) {
                ia = a[i] > a[ia] ? i : ia;
                ib = b[i] > b[ib] ? i : ib;
                ma = fmax(ma, a[i]);
                mb = fmax(mb, b[i]);
            }
            for (size_t i = 0; i < V; i++) {
                za += exp(a[i] - ma);
                zb += exp(b[i] - mb);
            }
            for (size_t i = 0; i < V; i++) {
                double la = a[i] - ma - log(za), lb = b[i] - mb - log(zb);

                kl += exp(la) * (la - lb);
            }
            same_argmax += ia == ib;
        }
        kl /= n_tokens;
        ok(rwkv_model_info(m)->compute_dtype == dtype && kl <= bound,
           "%s %s: loads and runs, KL to float32 %.2e <= %.0e nats/token, same argmax on "
           "%d of %d tokens", v->name, dname, kl, bound, same_argmax, n_tokens);
    }
    rwkv_state_free(state);
    rwkv_model_free(m);
    free(out);
}

/* Saved after half the tokens, loaded by a fresh load, the rest of the
 * tokens give the golden rows. */
static void test_statefile(const struct variant *v, const struct variant *other)
{
    char err[RWKV_ERRLEN], path[256];
    rwkv_model *m = load(golden_path(v, ".pth"), RWKV_DTYPE_F32, err, sizeof err);
    rwkv_model *m2 = load(golden_path(v, ".pth"), RWKV_DTYPE_F32, err, sizeof err);
    rwkv_model *mo = load(golden_path(other, ".pth"), RWKV_DTYPE_F32, err, sizeof err);
    int half = n_tokens / 2, good = 1;
    size_t V;
    float *out;
    rwkv_state *s, *s2;
    rwkv_statefile *sf;

    if (!m || !m2 || !mo) {
        ok(0, "%s: models for the state file test load: %s", v->name, err);
        rwkv_model_free(m);
        rwkv_model_free(m2);
        rwkv_model_free(mo);
        return;
    }
    snprintf(path, sizeof path, "%s/%s.state", tmpdir, v->name);
    V = (size_t)rwkv_model_info(m)->n_vocab;
    out = malloc(V * sizeof *out);
    s = rwkv_state_new(m);
    s2 = rwkv_state_new(m2);
    good &= eval_once(m, s, tokens, (size_t)half, NULL, 0, err, sizeof err) == 0;
    good &= rwkv_statefile_save(path, m, s, NULL, 0, err, sizeof err) == 0;
    sf = good ? rwkv_statefile_load(path, m2, err, sizeof err) : NULL;
    if (!sf) {
        diag("%s", err);
        good = 0;
    } else {
        rwkv_statefile_get_state(sf, s2);
        rwkv_statefile_free(sf);
    }
    for (int t = half; good && t < n_tokens; t++) {
        good &= eval_once(m2, s2, &tokens[t], 1, out, 0, err, sizeof err) == 0;
        good &= max_diff(out, golden + t * V, V) < TOL;
    }
    ok(good, "%s: state file saved after %d tokens continues in a fresh load to the golden "
       "logits of the other %d", v->name, half, n_tokens - half);
    sf = rwkv_statefile_load(path, mo, err, sizeof err);
    ok(!sf && strstr(err, "RWKV-") != NULL,
       "%s: its state file is refused by the RWKV-%s model (%s)", v->name,
       other->version_name, err);
    rwkv_statefile_free(sf);
    free(out);
    rwkv_state_free(s);
    rwkv_state_free(s2);
    rwkv_model_free(m);
    rwkv_model_free(m2);
    rwkv_model_free(mo);
}

/* Copies model src to dst through the writer, leaving out tensor drop,
 * declaring tensor cut with its second dimension halved (its first rows'
 * data), and adding after the others, when add is not NULL, a tensor of
 * that name holding a copy of blocks.0.att.key.weight.  0 or -1. */
static int rewrite(const char *src, const char *dst, const char *drop, const char *cut,
                   const char *add)
{
    char err[RWKV_ERRLEN];
    ckpt_file *f = ckpt_open(src, err, sizeof err);
    pthw *w = f ? pthw_new(dst, PTHW_PTH, err, sizeof err) : NULL;
    int rc = w ? 0 : -1;

    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        if (pass == 1) {
            rc = pthw_begin(w, err, sizeof err);
        }
        for (size_t i = 0; rc == 0 && i < ckpt_count(f); i++) {
            const struct ckpt_tensor *t = ckpt_at(f, i);
            int64_t shape[CKPT_MAX_DIMS];

            if (!strcmp(t->name, drop)) {
                continue;
            }
            memcpy(shape, t->shape, sizeof shape);
            if (!strcmp(t->name, cut)) {
                shape[1] /= 2;
            }
            rc = pass == 0 ? pthw_declare(w, t->name, t->dtype, t->ndim, shape, err, sizeof err)
                           : pthw_write(w, t->data, err, sizeof err);
        }
        if (rc == 0 && add) {
            const struct ckpt_tensor *t = ckpt_find(f, "blocks.0.att.key.weight");

            rc = pass == 0 ? pthw_declare(w, add, t->dtype, t->ndim, t->shape, err, sizeof err)
                           : pthw_write(w, t->data, err, sizeof err);
        }
    }
    rc = rc ? rc : pthw_finish(w, err, sizeof err);
    if (rc) {
        diag("rewrite %s: %s", dst, err);
    }
    pthw_free(w);
    ckpt_close(f);
    return rc;
}

static void test_bad_files(const struct variant *v)
{
    char err[RWKV_ERRLEN], path[256], missing[64];
    rwkv_model *m;

    snprintf(missing, sizeof missing, "blocks.1.ffn.%s", v->version == 8 ? "enn.weight" : "s0");
    snprintf(path, sizeof path, "%s/%s-missing.pth", tmpdir, v->name);
    if (rewrite(golden_path(v, ".pth"), path, missing, "", NULL) != 0) {
        ok(0, "%s: file without %s written", v->name, missing);
    } else {
        m = load(path, RWKV_DTYPE_F32, err, sizeof err);
        ok(!m && strstr(err, missing), "%s without %s is refused (%s)", v->name, missing, err);
        rwkv_model_free(m);
    }
    snprintf(path, sizeof path, "%s/%s-cut.pth", tmpdir, v->name);
    if (rewrite(golden_path(v, ".pth"), path, "", v->table, NULL) != 0) {
        ok(0, "%s: file with a narrow %s written", v->name, v->table);
    } else {
        m = load(path, RWKV_DTYPE_F32, err, sizeof err);
        ok(!m && strstr(err, v->table), "%s with %s of half its width is refused (%s)",
           v->name, v->table, err);
        rwkv_model_free(m);
    }
}

/* RWKV-7a's tensors plus the DEA attention's (qkv.*) are RWKV-7b: told
 * apart and refused with the reason, not run as 7a with extra tensors. */
static void test_7b_refused(void)
{
    char err[RWKV_ERRLEN], path[256];
    rwkv_model *m;

    snprintf(path, sizeof path, "%s/v7b.pth", tmpdir);
    if (rewrite(GOLDEN "v7a.pth", path, "", "", "blocks.0.qkv.qq.weight") != 0) {
        ok(0, "a file with RWKV-7b's qkv tensors written");
        return;
    }
    m = load(path, RWKV_DTYPE_F32, err, sizeof err);
    ok(!m && strstr(err, "RWKV-7b (DEA) is not supported"), "RWKV-7b is refused (%s)", err);
    rwkv_model_free(m);
}

/* At float32 every tensor is held as float32, except the embedding and
 * the per-token tables (s_emb, enn), read a row per token from the file:
 * bytes/token counts exactly that. */
static void test_bytes_per_token(const struct variant *v, const rwkv_model *m)
{
    char err[RWKV_ERRLEN];
    ckpt_file *f = ckpt_open(golden_path(v, ".pth"), err, sizeof err);
    const struct rwkv_info *info = rwkv_model_info(m);
    uint64_t want = 0, tables = 0;

    for (size_t i = 0; f && i < ckpt_count(f); i++) {
        const struct ckpt_tensor *t = ckpt_at(f, i);

        if (strcmp(t->name, "head.weight") && t->ndim == 2 && t->shape[0] == info->n_vocab) {
            want += (uint64_t)t->shape[1] * ckpt_dtype_size(t->dtype);
            tables += t->nbytes;
        } else {
            want += (uint64_t)t->numel * sizeof(float);
        }
    }
    ok(f && info->bytes_per_token == want,
       "%s: bytes/token %llu: one row of the embedding and of each per-token table "
       "(%llu bytes whole), the rest as float32", v->name,
       (unsigned long long)info->bytes_per_token, (unsigned long long)tables);
    ckpt_close(f);
}

int main(void)
{
    if (tmpdir_make("test_variants") != 0) {
        return 99;
    }
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        const struct variant *v = &variants[i];
        const struct variant *other = &variants[(i + 1) % 2];
        char err[RWKV_ERRLEN];
        rwkv_model *m;

        if (read_goldens(v) != 0) {
            ok(0, "%s: goldens readable under " GOLDEN, v->name);
            continue;
        }
        m = load(golden_path(v, ".pth"), RWKV_DTYPE_F32, err, sizeof err);
        if (!m) {
            ok(0, "%s loads: %s", v->name, err);
            continue;
        }
        test_goldens(v, m);
        test_bytes_per_token(v, m);
        rwkv_model_free(m);
        test_quantised(v, golden, RWKV_DTYPE_Q8, "q8", 3e-3);
        test_quantised(v, golden, RWKV_DTYPE_Q4, "q4", 0.3);
        test_statefile(v, other);
        test_bad_files(v);
    }
    test_7b_refused();
    free(golden);
    free(golden_state);
    tmpdir_remove();
    return tap_done();
}
