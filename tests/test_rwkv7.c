/*
 * test_rwkv7.c - the RWKV-7 forward pass against the official package's
 * outputs (../shared/fixtures): every logits row and the final state within
 * 1e-4 absolute, in RNN mode, sequence mode and mixed chunks; greedy
 * generation of the trained tiny model; and proof that the tolerance is
 * sharp: leaving out any one term of the equations breaks the match.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/tools/pthwrite.h"
#include "engine/rwkv.h"
#include "engine/model/rwkv7_test.h"
#include "tests/tap.h"
#include "tests/tuned.h"

#define TOL 1e-4

struct golden {
    int32_t *tokens;
    size_t n;
    float *logits;              /* n x n_vocab */
    float *state;
    size_t state_floats;
};

static int load_golden(const char *dir, const char *name, struct golden *g)
{
    char rel[256];
    size_t len;
    char *text, *p, *end;

    memset(g, 0, sizeof *g);
    snprintf(rel, sizeof rel, "fixtures/%s/%s.tokens", dir, name);
    text = read_file(shared_path(rel), NULL);
    if (!text) {
        return -1;
    }
    g->tokens = malloc((strlen(text) / 2 + 1) * sizeof *g->tokens);
    for (p = text;; p = end) {
        long v = strtol(p, &end, 10);

        if (end == p) {
            break;
        }
        g->tokens[g->n++] = (int32_t)v;
    }
    free(text);
    snprintf(rel, sizeof rel, "fixtures/%s/%s.logits.f32", dir, name);
    g->logits = read_file(shared_path(rel), &len);
    snprintf(rel, sizeof rel, "fixtures/%s/%s.state.f32", dir, name);
    g->state = read_file(shared_path(rel), &len);
    g->state_floats = len / sizeof(float);
    return g->logits && g->state ? 0 : -1;
}

static void free_golden(struct golden *g)
{
    free(g->tokens);
    free(g->logits);
    free(g->state);
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double e = 0;

    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);

        if (!(d <= e)) {
            e = d;              /* also catches NaN */
        }
    }
    return e;
}

/*
 * Evaluates all tokens from the zero state in chunks taken in turn from
 * sizes[] (0 = everything left), collecting every logits row; returns the
 * largest logits and state differences from the golden output.
 */
static int run_chunks(rwkv_context *ctx, const struct golden *g, const size_t *sizes,
                      int n_sizes, double *logit_err, double *state_err)
{
    const rwkv_model *m = rwkv_context_model(ctx);
    const struct rwkv_info *info = rwkv_model_info(m);
    rwkv_state *st = rwkv_state_new(m);
    float *out = malloc(g->n * (size_t)info->n_vocab * sizeof *out);
    char err[RWKV_ERRLEN];
    size_t done = 0;
    int k = 0, rc = 0;

    while (done < g->n) {
        size_t c = sizes[k++ % n_sizes];

        if (c == 0 || c > g->n - done) {
            c = g->n - done;
        }
        if (rwkv_eval(ctx, st, g->tokens + done, c, out + done * (size_t)info->n_vocab, 1, err,
                      sizeof err) != 0) {
            diag("eval: %s", err);
            rc = -1;
            break;
        }
        done += c;
    }
    *logit_err = max_abs_diff(out, g->logits, g->n * (size_t)info->n_vocab);
    *state_err = rwkv_state_floats(st) == g->state_floats
                     ? max_abs_diff(rwkv_state_cdata(st), g->state, g->state_floats)
                     : INFINITY;
    free(out);
    rwkv_state_free(st);
    return rc;
}

static rwkv_model *load(const char *dir, const char *file, enum rwkv_dtype dtype)
{
    char rel[256], err[RWKV_ERRLEN];
    struct rwkv_load_options opts = { dtype, 2, RWKV_CACHE_MODE_OFF };   /* convert every time */
    rwkv_model *m;

    snprintf(rel, sizeof rel, "fixtures/%s/%s", dir, file);
    m = rwkv_model_load(shared_path(rel), &opts, err, sizeof err);
    if (!m) {
        diag("load: %s", err);
    }
    return m;
}

/* RNN mode, sequence mode and mixed chunks on one model file. */
static void check_model(const char *dir, const char *file, const char *golden_name,
                        enum rwkv_dtype dtype)
{
    static const size_t rnn[] = { 1 }, seq[] = { 0 }, five[] = { 5 }, seven[] = { 7 },
                        mixed[] = { 1, 5, 7, 2 };
    static const struct {
        const char *name;
        const size_t *sizes;
        int n;
    } modes[] = {
        { "RNN mode (chunk 1)", rnn, 1 },
        { "sequence mode (all)", seq, 1 },
        { "chunks of 5", five, 1 },
        { "chunks of 7", seven, 1 },
        { "chunks 1,5,7,2", mixed, 4 },
    };
    struct golden g;
    rwkv_model *m;
    rwkv_context *ctx = NULL;

    if (load_golden(dir, golden_name, &g) != 0) {
        ok(0, "%s: golden files of %s readable", file, golden_name);
        return;
    }
    m = load(dir, file, dtype);
    if (!ok(m != NULL, "%s (%s): loads", file, rwkv_dtype_name(dtype))) {
        free_golden(&g);
        return;
    }
    ctx = rwkv_context_new(m, 0, NULL, 0);
    ok(rwkv_model_info(m)->version == 7, "%s: detected as RWKV-7", file);
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        double le, se;
        int rc = run_chunks(ctx, &g, modes[i].sizes, modes[i].n, &le, &se);

        ok(rc == 0 && le < TOL && se < TOL,
           "%s (%s) %s: %zu logits rows within %g (max %.2e), state (max %.2e)", file,
           rwkv_dtype_name(dtype), modes[i].name, g.n, TOL, le, se);
    }

    /* Only the last row asked for: the head runs once, same numbers. */
    {
        const struct rwkv_info *info = rwkv_model_info(m);
        rwkv_state *st = rwkv_state_new(m);
        float *last = malloc((size_t)info->n_vocab * sizeof *last);
        char err[RWKV_ERRLEN];
        int rc = rwkv_eval(ctx, st, g.tokens, g.n, last, 0, err, sizeof err);

        ok(rc == 0 && max_abs_diff(last, g.logits + (g.n - 1) * (size_t)info->n_vocab,
                                   (size_t)info->n_vocab) < TOL,
           "%s: last-row logits in sequence mode", file);
        /* and NULL logits just advances the state */
        rwkv_state_reset(st);
        rc = rwkv_eval(ctx, st, g.tokens, g.n, NULL, 0, err, sizeof err);
        ok(rc == 0 && max_abs_diff(rwkv_state_cdata(st), g.state, g.state_floats) < TOL,
           "%s: state advanced without logits", file);
        free(last);
        rwkv_state_free(st);
    }
    rwkv_context_free(ctx);
    rwkv_model_free(m);
    free_golden(&g);
}

/* Leaving out any one term must move the outputs far beyond the tolerance,
 * and restoring it must bring the match back. */
static void check_terms_matter(void)
{
    static const struct {
        unsigned term;
        const char *name;
    } terms[] = {
        { RWKV7_TERM_BONUS, "r_k bonus" },
        { RWKV7_TERM_K_A, "k_a key scaling" },
        { RWKV7_TERM_V_FIRST, "v_first residual" },
        { RWKV7_TERM_DECAY_LORA, "decay LoRA" },
        { RWKV7_TERM_STATE_KK, "state -kk (kk a) term" },
        { RWKV7_TERM_GATE, "output gate" },
    };
    static const size_t rnn[] = { 1 }, seq[] = { 0 };
    struct golden g;
    rwkv_model *m = load("models", "v7.pth", RWKV_DTYPE_F32);
    double le, se;
    rwkv_context *ctx = NULL;

    if (!m || load_golden("models", "v7", &g) != 0) {
        ok(0, "v7.pth loads for the term checks");
        rwkv_model_free(m);
        return;
    }
    ctx = rwkv_context_new(m, 0, NULL, 0);
    for (size_t i = 0; i < sizeof terms / sizeof terms[0]; i++) {
        double le2, se2;

        rwkv7_test_drop_terms(ctx, terms[i].term);
        run_chunks(ctx, &g, rnn, 1, &le, &se);
        run_chunks(ctx, &g, seq, 1, &le2, &se2);
        ok(le > 100 * TOL && le2 > 100 * TOL,
           "without the %s the logits miss by %.3g (RNN) / %.3g (sequence)", terms[i].name, le,
           le2);
    }
    rwkv7_test_drop_terms(ctx, 0);
    run_chunks(ctx, &g, rnn, 1, &le, &se);
    ok(le < TOL && se < TOL, "all terms restored: match again (%.2e)", le);
    rwkv_context_free(ctx);
    rwkv_model_free(m);
    free_golden(&g);
}

/* Greedy decoding of the trained byte-level model gives the manifest's text. */
static void check_greedy(void)
{
    const char *want = " the the the the the the the the the the";
    char *manifest = read_file(shared_path("fixtures/trained/manifest.json"), NULL);
    struct golden g;
    rwkv_model *m = load("trained", "tiny-7v0-834K.pth", RWKV_DTYPE_AUTO);
    char got[64] = "", err[RWKV_ERRLEN];
    size_t len = strlen(want);
    rwkv_context *ctx = NULL;

    /* The expected text is read from the manifest when it has it. */
    if (manifest) {
        const char *p = strstr(manifest, "tiny-7v0-834K.pth");
        const char *q = p ? strstr(p, "\"greedy_continuation\": \"") : NULL;

        if (q) {
            q += strlen("\"greedy_continuation\": \"");
            const char *e = strchr(q, '"');
            if (e && (size_t)(e - q) < sizeof got) {
                len = (size_t)(e - q);
            }
            want = q;
        }
    }
    if (!m || load_golden("trained", "tiny-7v0-834K", &g) != 0) {
        ok(0, "tiny-7v0-834K loads");
        rwkv_model_free(m);
        free(manifest);
        return;
    }
    ctx = rwkv_context_new(m, 0, NULL, 0);
    {
        const struct rwkv_info *info = rwkv_model_info(m);
        rwkv_state *st = rwkv_state_new(m);
        float *logits = malloc((size_t)info->n_vocab * sizeof *logits);
        int rc = rwkv_eval(ctx, st, g.tokens, g.n, logits, 0, err, sizeof err);

        for (size_t i = 0; rc == 0 && i < len; i++) {
            int32_t best = 0;

            for (int32_t v = 1; v < info->n_vocab; v++) {
                if (logits[v] > logits[best]) {
                    best = v;
                }
            }
            got[i] = (char)best;
            rc = rwkv_eval(ctx, st, &best, 1, logits, 0, err, sizeof err);
        }
        ok(rc == 0 && memcmp(got, want, len) == 0, "tiny-7v0 greedy continuation \"%s\"", got);
        free(logits);
        rwkv_state_free(st);
    }
    rwkv_context_free(ctx);
    rwkv_model_free(m);
    free_golden(&g);
    free(manifest);
}

/* Same results whatever the thread count, and bad token ids refused. */
static void check_threads_and_errors(void)
{
    static const size_t seq[] = { 0 }, rnn[] = { 1 };
    char rel[] = "fixtures/models/v7-world.pth", err[RWKV_ERRLEN];
    struct rwkv_load_options one = { RWKV_DTYPE_F32, 1, RWKV_CACHE_MODE_ON };
    struct golden g;
    rwkv_model *m = rwkv_model_load(shared_path(rel), &one, err, sizeof err);
    double le, se;
    rwkv_context *ctx = NULL;

    if (!m || load_golden("models", "v7-world", &g) != 0) {
        ok(0, "v7-world loads single-threaded");
        rwkv_model_free(m);
        return;
    }
    ctx = rwkv_context_new(m, 0, NULL, 0);
    run_chunks(ctx, &g, seq, 1, &le, &se);
    ok(le < TOL && se < TOL, "one thread, sequence mode matches (%.2e)", le);
    run_chunks(ctx, &g, rnn, 1, &le, &se);
    ok(le < TOL && se < TOL, "one thread, RNN mode matches (%.2e)", le);
    {
        rwkv_state *st = rwkv_state_new(m);
        int32_t bad[3] = { 1, 65536, 2 };
        float *logits = malloc(65536 * sizeof *logits);

        ok(rwkv_eval(ctx, st, bad, 3, logits, 0, err, sizeof err) == -1 && strstr(err, "65536"),
           "token id past the vocabulary refused: %s", err);
        int zero = 1;

        for (size_t i = 0; i < rwkv_state_floats(st); i++) {
            zero &= rwkv_state_cdata(st)[i] == 0.0f;
        }
        ok(zero, "refused eval leaves the state untouched");
        free(logits);
        rwkv_state_free(st);
    }
    rwkv_context_free(ctx);
    rwkv_model_free(m);
    free_golden(&g);
}

/* ------------------------------------------------------------------------ */
/* A float64 reference on a model of unusual shape                            */

/* Sizes with nothing a multiple of 64: 3 heads of 16, odd LoRA ranks. */
enum { RV = 53, RC = 48, RH = 3, RN = 16, RL = 3, RF = 88, RDW = 7, RDA = 5, RDV = 3, RDG = 9 };

struct rtensor {
    char name[64];
    int ndim;
    int64_t shape[3];
    float *data;
};

static struct rtensor rt[RL * 40 + 8];
static int n_rt;

/* A tensor of uniform values in centre +- spread. */
static float *rt_add(int layer, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2,
                     double centre, double spread)
{
    struct rtensor *t = &rt[n_rt++];
    int64_t n = d0 * (ndim > 1 ? d1 : 1) * (ndim > 2 ? d2 : 1);

    if (layer >= 0) {
        snprintf(t->name, sizeof t->name, "blocks.%d.%s", layer, name);
    } else {
        snprintf(t->name, sizeof t->name, "%s", name);
    }
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->shape[2] = d2;
    t->data = malloc((size_t)n * sizeof *t->data);
    for (int64_t i = 0; i < n; i++) {
        t->data[i] = (float)(centre + spread * (2.0 * rand() / RAND_MAX - 1.0));
    }
    return t->data;
}

static const float *rt_get(int layer, const char *name)
{
    char full[64];

    if (layer >= 0) {
        snprintf(full, sizeof full, "blocks.%d.%s", layer, name);
    } else {
        snprintf(full, sizeof full, "%s", name);
    }
    for (int i = 0; i < n_rt; i++) {
        if (!strcmp(rt[i].name, full)) {
            return rt[i].data;
        }
    }
    abort();
}

/* Random weights in the released key names and shapes, written as .pth. */
static int write_reference_model(const char *path)
{
    char err[RWKV_ERRLEN];
    pthw *w;
    int rc = 0;
    double sc = 1 / sqrt((double)RC);

    srand(7);
    rt_add(-1, "emb.weight", 2, RV, RC, 0, 0, 1);
    rt_add(0, "ln0.weight", 1, RC, 0, 0, 1, 0.2);
    rt_add(0, "ln0.bias", 1, RC, 0, 0, 0, 0.2);
    for (int l = 0; l < RL; l++) {
        static const char *mixes[] = { "att.x_r", "att.x_w", "att.x_k", "att.x_v", "att.x_a",
                                       "att.x_g", "ffn.x_k" };

        rt_add(l, "ln1.weight", 1, RC, 0, 0, 1, 0.2);
        rt_add(l, "ln1.bias", 1, RC, 0, 0, 0, 0.2);
        rt_add(l, "ln2.weight", 1, RC, 0, 0, 1, 0.2);
        rt_add(l, "ln2.bias", 1, RC, 0, 0, 0, 0.2);
        for (int i = 0; i < 7; i++) {
            rt_add(l, mixes[i], 3, 1, 1, RC, 0.5, 0.5);
        }
        rt_add(l, "att.w0", 3, 1, 1, RC, -2, 2);
        rt_add(l, "att.w1", 2, RC, RDW, 0, 0, 0.5);
        rt_add(l, "att.w2", 2, RDW, RC, 0, 0, 0.5);
        rt_add(l, "att.a0", 3, 1, 1, RC, 0, 1);
        rt_add(l, "att.a1", 2, RC, RDA, 0, 0, 0.5);
        rt_add(l, "att.a2", 2, RDA, RC, 0, 0, 0.5);
        if (l > 0) {
            rt_add(l, "att.v0", 3, 1, 1, RC, 0, 1);
            rt_add(l, "att.v1", 2, RC, RDV, 0, 0, 0.5);
            rt_add(l, "att.v2", 2, RDV, RC, 0, 0, 0.5);
        }
        rt_add(l, "att.g1", 2, RC, RDG, 0, 0, 0.5);
        rt_add(l, "att.g2", 2, RDG, RC, 0, 0, 0.5);
        rt_add(l, "att.k_k", 3, 1, 1, RC, 1, 0.5);
        rt_add(l, "att.k_a", 3, 1, 1, RC, 1, 0.5);
        rt_add(l, "att.r_k", 2, RH, RN, 0, 0, 0.5);
        rt_add(l, "att.receptance.weight", 2, RC, RC, 0, 0, 2 * sc);
        rt_add(l, "att.key.weight", 2, RC, RC, 0, 0, 2 * sc);
        rt_add(l, "att.value.weight", 2, RC, RC, 0, 0, 2 * sc);
        rt_add(l, "att.output.weight", 2, RC, RC, 0, 0, 2 * sc);
        rt_add(l, "att.ln_x.weight", 1, RC, 0, 0, 1, 0.2);
        rt_add(l, "att.ln_x.bias", 1, RC, 0, 0, 0, 0.2);
        rt_add(l, "ffn.key.weight", 2, RF, RC, 0, 0, 2 * sc);
        rt_add(l, "ffn.value.weight", 2, RC, RF, 0, 0, 2 / sqrt((double)RF));
    }
    rt_add(-1, "ln_out.weight", 1, RC, 0, 0, 1, 0.2);
    rt_add(-1, "ln_out.bias", 1, RC, 0, 0, 0, 0.2);
    rt_add(-1, "head.weight", 2, RV, RC, 0, 0, 3 * sc);

    w = pthw_new(path, PTHW_PTH, err, sizeof err);
    for (int i = 0; w && rc == 0 && i < n_rt; i++) {
        rc = pthw_declare(w, rt[i].name, CKPT_F32, rt[i].ndim, rt[i].shape, err, sizeof err);
    }
    rc = !w ? -1 : rc ? rc : pthw_begin(w, err, sizeof err);
    for (int i = 0; rc == 0 && i < n_rt; i++) {
        rc = pthw_write(w, rt[i].data, err, sizeof err);
    }
    rc = rc ? rc : pthw_finish(w, err, sizeof err);
    if (rc) {
        diag("writing %s: %s", path, err);
    }
    pthw_free(w);
    return rc;
}

static void ref_layernorm(const double *x, const float *w, const float *b, int n, double eps,
                          double *y)
{
    double mean = 0, var = 0;

    for (int i = 0; i < n; i++) {
        mean += x[i];
    }
    mean /= n;
    for (int i = 0; i < n; i++) {
        var += (x[i] - mean) * (x[i] - mean);
    }
    var /= n;
    for (int i = 0; i < n; i++) {
        y[i] = (x[i] - mean) / sqrt(var + eps) * w[i] + b[i];
    }
}

/* y[out] = M x with M stored [out][in] (transposed: stored [in][out]). */
static void ref_linear(const float *M, int out, int in, int transposed, const double *x,
                       double *y)
{
    for (int o = 0; o < out; o++) {
        double s = 0;

        for (int i = 0; i < in; i++) {
            s += (transposed ? M[(size_t)i * out + o] : M[(size_t)o * in + i]) * x[i];
        }
        y[o] = s;
    }
}

static double ref_sigmoid(double x)
{
    return 1 / (1 + exp(-x));
}

/* One token of RWKV-7 in float64, straight from the equations; state as
 * the engine keeps it (att x_prev, S[h][i][j] value-first, ffn x_prev). */
static void ref_token(int token, double *state, double *logits)
{
    double x[RC], xa[RC], mix[6][RC], r[RC], w[RC], k[RC], v[RC], a[RC], g[RC], kk[RC];
    double y[RC], o[RC], hid[RF], low[16], tmp[RC];
    static double v_first[RC];
    static const char *mix_names[6] = { "att.x_r", "att.x_w", "att.x_k", "att.x_v", "att.x_a",
                                        "att.x_g" };
    const float *e = rt_get(-1, "emb.weight") + (size_t)token * RC;

    for (int c = 0; c < RC; c++) {
        tmp[c] = e[c];
    }
    ref_layernorm(tmp, rt_get(0, "ln0.weight"), rt_get(0, "ln0.bias"), RC, 1e-5, x);
    for (int l = 0; l < RL; l++) {
        double *att_prev = state + (size_t)l * (2 * RC + RH * RN * RN);
        double *S = att_prev + RC, *ffn_prev = S + RH * RN * RN;

        ref_layernorm(x, rt_get(l, "ln1.weight"), rt_get(l, "ln1.bias"), RC, 1e-5, xa);
        for (int m = 0; m < 6; m++) {
            const float *mu = rt_get(l, mix_names[m]);

            for (int c = 0; c < RC; c++) {
                mix[m][c] = xa[c] + (att_prev[c] - xa[c]) * mu[c];
            }
        }
        memcpy(att_prev, xa, sizeof xa);
        ref_linear(rt_get(l, "att.receptance.weight"), RC, RC, 0, mix[0], r);
        ref_linear(rt_get(l, "att.key.weight"), RC, RC, 0, mix[2], k);
        ref_linear(rt_get(l, "att.value.weight"), RC, RC, 0, mix[3], v);
        ref_linear(rt_get(l, "att.w1"), RDW, RC, 1, mix[1], low);
        for (int i = 0; i < RDW; i++) {
            low[i] = tanh(low[i]);
        }
        ref_linear(rt_get(l, "att.w2"), RC, RDW, 1, low, w);
        ref_linear(rt_get(l, "att.a1"), RDA, RC, 1, mix[4], low);
        ref_linear(rt_get(l, "att.a2"), RC, RDA, 1, low, a);
        ref_linear(rt_get(l, "att.g1"), RDG, RC, 1, mix[5], low);
        for (int i = 0; i < RDG; i++) {
            low[i] = ref_sigmoid(low[i]);
        }
        ref_linear(rt_get(l, "att.g2"), RC, RDG, 1, low, g);
        for (int c = 0; c < RC; c++) {
            w[c] = exp(-exp(-0.5) * ref_sigmoid(rt_get(l, "att.w0")[c] + w[c]));
            a[c] = ref_sigmoid(rt_get(l, "att.a0")[c] + a[c]);
            kk[c] = k[c] * rt_get(l, "att.k_k")[c];
        }
        for (int h = 0; h < RH; h++) {
            double n2 = 0;

            for (int j = h * RN; j < (h + 1) * RN; j++) {
                n2 += kk[j] * kk[j];
            }
            for (int j = h * RN; j < (h + 1) * RN; j++) {
                kk[j] /= fmax(sqrt(n2), 1e-12);
            }
        }
        for (int c = 0; c < RC; c++) {
            k[c] *= 1 + (a[c] - 1) * rt_get(l, "att.k_a")[c];
        }
        if (l == 0) {
            memcpy(v_first, v, sizeof v);
        } else {
            ref_linear(rt_get(l, "att.v1"), RDV, RC, 1, mix[3], low);
            ref_linear(rt_get(l, "att.v2"), RC, RDV, 1, low, tmp);
            for (int c = 0; c < RC; c++) {
                v[c] += (v_first[c] - v[c]) * ref_sigmoid(rt_get(l, "att.v0")[c] + tmp[c]);
            }
        }
        for (int h = 0; h < RH; h++) {
            double *Sh = S + h * RN * RN;
            int b = h * RN;

            for (int i = 0; i < RN; i++) {
                double sa = 0;

                for (int j = 0; j < RN; j++) {
                    sa += Sh[i * RN + j] * -kk[b + j];
                }
                y[b + i] = 0;
                for (int j = 0; j < RN; j++) {
                    Sh[i * RN + j] = Sh[i * RN + j] * w[b + j] + sa * kk[b + j] * a[b + j] +
                                     v[b + i] * k[b + j];
                    y[b + i] += Sh[i * RN + j] * r[b + j];
                }
            }
        }
        for (int h = 0; h < RH; h++) {
            double bonus = 0;
            int b = h * RN;

            ref_layernorm(y + b, rt_get(l, "att.ln_x.weight") + b, rt_get(l, "att.ln_x.bias") + b,
                          RN, 64e-5, tmp + b);
            for (int j = b; j < b + RN; j++) {
                bonus += r[j] * k[j] * rt_get(l, "att.r_k")[j];
            }
            for (int j = b; j < b + RN; j++) {
                y[j] = (tmp[j] + bonus * v[j]) * g[j];
            }
        }
        ref_linear(rt_get(l, "att.output.weight"), RC, RC, 0, y, o);
        for (int c = 0; c < RC; c++) {
            x[c] += o[c];
        }
        ref_layernorm(x, rt_get(l, "ln2.weight"), rt_get(l, "ln2.bias"), RC, 1e-5, xa);
        for (int c = 0; c < RC; c++) {
            tmp[c] = xa[c] + (ffn_prev[c] - xa[c]) * rt_get(l, "ffn.x_k")[c];
        }
        memcpy(ffn_prev, xa, sizeof xa);
        ref_linear(rt_get(l, "ffn.key.weight"), RF, RC, 0, tmp, hid);
        for (int i = 0; i < RF; i++) {
            hid[i] = hid[i] > 0 ? hid[i] * hid[i] : 0;
        }
        ref_linear(rt_get(l, "ffn.value.weight"), RC, RF, 0, hid, o);
        for (int c = 0; c < RC; c++) {
            x[c] += o[c];
        }
    }
    ref_layernorm(x, rt_get(-1, "ln_out.weight"), rt_get(-1, "ln_out.bias"), RC, 1e-5, tmp);
    ref_linear(rt_get(-1, "head.weight"), RV, RC, 0, tmp, logits);
}

/* Head size 16, three heads, odd sizes: the engine against float64. */
static void check_reference(void)
{
    const char *path = "tests/tmp/rwkv7-h16.pth";
    enum { NT = 40 };
    static const size_t rnn[] = { 1 }, seq[] = { 0 }, mixed[] = { 3, 1, 11 };
    static const size_t *modes[] = { rnn, seq, mixed };
    static const int n_modes[] = { 1, 1, 3 };
    static const char *mode_names[] = { "RNN mode", "sequence mode", "chunks 3,1,11" };
    size_t state_floats = (size_t)RL * (2 * RC + RH * RN * RN);
    double *state = calloc(state_floats, sizeof *state), logits[RV];
    struct golden g = { 0 };
    char err[RWKV_ERRLEN];
    rwkv_model *m;
    rwkv_context *ctx;

    mkdir("tests", 0755);
    mkdir("tests/tmp", 0755);
    if (!ok(write_reference_model(path) == 0, "wrote a random RWKV-7 with 3 heads of 16")) {
        free(state);
        return;
    }
    m = rwkv_model_load(path, NULL, err, sizeof err);
    if (!ok(m != NULL, "it loads: %s", m ? "yes" : err)) {
        free(state);
        return;
    }
    ctx = rwkv_context_new(m, 0, err, sizeof err);
    ok(rwkv_model_info(m)->head_size == RN && rwkv_model_info(m)->n_head == RH,
       "head size %d, %d heads", rwkv_model_info(m)->head_size, rwkv_model_info(m)->n_head);

    /* Golden outputs from the float64 reference. */
    g.n = NT;
    g.tokens = malloc(NT * sizeof *g.tokens);
    g.logits = malloc((size_t)NT * RV * sizeof *g.logits);
    g.state = malloc(state_floats * sizeof *g.state);
    g.state_floats = state_floats;
    for (int t = 0; t < NT; t++) {
        g.tokens[t] = (int32_t)((t * 31 + 7) % RV);
        ref_token(g.tokens[t], state, logits);
        for (int i = 0; i < RV; i++) {
            g.logits[(size_t)t * RV + i] = (float)logits[i];
        }
    }
    for (size_t i = 0; i < state_floats; i++) {
        g.state[i] = (float)state[i];
    }
    {
        double sum = 0, sq = 0, n = (double)NT * RV;

        for (size_t i = 0; i < (size_t)NT * RV; i++) {
            sum += g.logits[i];
            sq += (double)g.logits[i] * g.logits[i];
        }
        ok(sqrt(sq / n - (sum / n) * (sum / n)) > 0.5,
           "reference logits are not degenerate (std %.2f)", sqrt(sq / n - (sum / n) * (sum / n)));
    }
    for (int i = 0; i < 3; i++) {
        double le, se;
        int rc = run_chunks(ctx, &g, modes[i], n_modes[i], &le, &se);

        ok(rc == 0 && le < TOL && se < TOL,
           "head size 16, %s: %d rows match float64 (max %.2e), state (max %.2e)",
           mode_names[i], NT, le, se);
    }
    rwkv_context_free(ctx);
    rwkv_model_free(m);
    free_golden(&g);
    free(state);
    for (int i = 0; i < n_rt; i++) {
        free(rt[i].data);
    }
    n_rt = 0;
    remove(path);
}

int main(void)
{
    diag("kernels: %s", rwkv_kernels_name());
    check_model("models", "v7.pth", "v7", RWKV_DTYPE_AUTO);
    check_model("models", "v7.pth", "v7", RWKV_DTYPE_F32);
    check_model("models", "v7-fp32.pth", "v7-fp32", RWKV_DTYPE_AUTO);
    check_model("models", "v7-world.pth", "v7-world", RWKV_DTYPE_AUTO);
    check_model("models", "v7.torch2.pth", "v7", RWKV_DTYPE_AUTO);
    check_model("models", "v7.safetensors", "v7", RWKV_DTYPE_AUTO);
    check_model("trained", "tiny-7v0-834K.pth", "tiny-7v0-834K", RWKV_DTYPE_AUTO);
    check_terms_matter();
    check_greedy();
    check_threads_and_errors();
    check_reference();
    check_tuned_fixture("v7-fp32.pth", "v7-fp32", 0);
    return tap_done();
}
