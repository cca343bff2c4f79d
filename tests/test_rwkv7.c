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

#include "engine/rwkv.h"
#include "engine/rwkv7_test.h"
#include "tests/tap.h"

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
static int run_chunks(rwkv_model *m, const struct golden *g, const size_t *sizes, int n_sizes,
                      double *logit_err, double *state_err)
{
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
        if (rwkv_eval(m, st, g->tokens + done, c, out + done * (size_t)info->n_vocab, 1, err,
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
    struct rwkv_load_options opts = { dtype, 2 };
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

    if (load_golden(dir, golden_name, &g) != 0) {
        ok(0, "%s: golden files of %s readable", file, golden_name);
        return;
    }
    m = load(dir, file, dtype);
    if (!ok(m != NULL, "%s (%s): loads", file, rwkv_dtype_name(dtype))) {
        free_golden(&g);
        return;
    }
    ok(rwkv_model_info(m)->version == 7, "%s: detected as RWKV-7", file);
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        double le, se;
        int rc = run_chunks(m, &g, modes[i].sizes, modes[i].n, &le, &se);

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
        int rc = rwkv_eval(m, st, g.tokens, g.n, last, 0, err, sizeof err);

        ok(rc == 0 && max_abs_diff(last, g.logits + (g.n - 1) * (size_t)info->n_vocab,
                                   (size_t)info->n_vocab) < TOL,
           "%s: last-row logits in sequence mode", file);
        /* and NULL logits just advances the state */
        rwkv_state_reset(st);
        rc = rwkv_eval(m, st, g.tokens, g.n, NULL, 0, err, sizeof err);
        ok(rc == 0 && max_abs_diff(rwkv_state_cdata(st), g.state, g.state_floats) < TOL,
           "%s: state advanced without logits", file);
        free(last);
        rwkv_state_free(st);
    }
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

    if (!m || load_golden("models", "v7", &g) != 0) {
        ok(0, "v7.pth loads for the term checks");
        rwkv_model_free(m);
        return;
    }
    for (size_t i = 0; i < sizeof terms / sizeof terms[0]; i++) {
        double le2, se2;

        rwkv7_test_drop_terms(m, terms[i].term);
        run_chunks(m, &g, rnn, 1, &le, &se);
        run_chunks(m, &g, seq, 1, &le2, &se2);
        ok(le > 100 * TOL && le2 > 100 * TOL,
           "without the %s the logits miss by %.3g (RNN) / %.3g (sequence)", terms[i].name, le,
           le2);
    }
    rwkv7_test_drop_terms(m, 0);
    run_chunks(m, &g, rnn, 1, &le, &se);
    ok(le < TOL && se < TOL, "all terms restored: match again (%.2e)", le);
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
    {
        const struct rwkv_info *info = rwkv_model_info(m);
        rwkv_state *st = rwkv_state_new(m);
        float *logits = malloc((size_t)info->n_vocab * sizeof *logits);
        int rc = rwkv_eval(m, st, g.tokens, g.n, logits, 0, err, sizeof err);

        for (size_t i = 0; rc == 0 && i < len; i++) {
            int32_t best = 0;

            for (int32_t v = 1; v < info->n_vocab; v++) {
                if (logits[v] > logits[best]) {
                    best = v;
                }
            }
            got[i] = (char)best;
            rc = rwkv_eval(m, st, &best, 1, logits, 0, err, sizeof err);
        }
        ok(rc == 0 && memcmp(got, want, len) == 0, "tiny-7v0 greedy continuation \"%s\"", got);
        free(logits);
        rwkv_state_free(st);
    }
    rwkv_model_free(m);
    free_golden(&g);
    free(manifest);
}

/* Same results whatever the thread count, and bad token ids refused. */
static void check_threads_and_errors(void)
{
    static const size_t seq[] = { 0 }, rnn[] = { 1 };
    char rel[] = "fixtures/models/v7-world.pth", err[RWKV_ERRLEN];
    struct rwkv_load_options one = { RWKV_DTYPE_F32, 1 };
    struct golden g;
    rwkv_model *m = rwkv_model_load(shared_path(rel), &one, err, sizeof err);
    double le, se;

    if (!m || load_golden("models", "v7-world", &g) != 0) {
        ok(0, "v7-world loads single-threaded");
        rwkv_model_free(m);
        return;
    }
    run_chunks(m, &g, seq, 1, &le, &se);
    ok(le < TOL && se < TOL, "one thread, sequence mode matches (%.2e)", le);
    run_chunks(m, &g, rnn, 1, &le, &se);
    ok(le < TOL && se < TOL, "one thread, RNN mode matches (%.2e)", le);
    {
        rwkv_state *st = rwkv_state_new(m);
        int32_t bad[3] = { 1, 65536, 2 };
        float *logits = malloc(65536 * sizeof *logits);

        ok(rwkv_eval(m, st, bad, 3, logits, 0, err, sizeof err) == -1 && strstr(err, "65536"),
           "token id past the vocabulary refused: %s", err);
        int zero = 1;

        for (size_t i = 0; i < rwkv_state_floats(st); i++) {
            zero &= rwkv_state_cdata(st)[i] == 0.0f;
        }
        ok(zero, "refused eval leaves the state untouched");
        free(logits);
        rwkv_state_free(st);
    }
    rwkv_model_free(m);
    free_golden(&g);
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
    return tap_done();
}
