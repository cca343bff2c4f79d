/*
 * test_context.c - weights shared by contexts: two conversations on one
 * loaded model, from two threads at once, each with its own context and
 * state, give bit-identical logits and states to the same conversations
 * run one after the other; rwkv_eval_batch equals single evaluations,
 * bit for bit, for batches of 1 to 5 states at different histories, every
 * weight format, RWKV-7/6/5/4 (and RWKV-7a/8 stored, q8 or q4), and batches
 * longer than a chunk, and really runs them through the batched layer; and
 * the context and batch error paths.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model/context_test.h"
#include "engine/rwkv.h"
#include "tests/tap.h"

/* A conversation: a prompt in sequence mode (longer than every version's
 * chunk, so it crosses chunk boundaries), then single tokens (RNN mode),
 * each step's logits kept in order. */
enum { PROMPT = 150, STEPS = 12, ROUNDS = 3 };

struct conv {
    const rwkv_model *model;
    int n_threads;              /* the context's */
    uint32_t seed;
    int32_t tokens[PROMPT + STEPS];
    float *logits;              /* (1 + STEPS) rows of n_vocab */
    float *state;               /* the final state */
    size_t state_floats;
    int rc;
    char err[RWKV_ERRLEN];
};

static void conv_init(struct conv *c, const rwkv_model *model, int n_threads, uint32_t seed)
{
    const struct rwkv_info *info = rwkv_model_info(model);
    uint32_t x = seed;

    memset(c, 0, sizeof *c);
    c->model = model;
    c->n_threads = n_threads;
    c->seed = seed;
    for (int i = 0; i < PROMPT + STEPS; i++) {
        x = x * 1664525u + 1013904223u;
        c->tokens[i] = (int32_t)((x >> 8) % (uint32_t)info->n_vocab);
    }
    c->logits = calloc((size_t)(1 + STEPS) * (size_t)info->n_vocab, sizeof(float));
    c->state_floats = info->state_floats;
    c->state = calloc(info->state_floats, sizeof(float));
}

static void conv_free(struct conv *c)
{
    free(c->logits);
    free(c->state);
}

/* Runs the conversation in a context of its own. */
static void *conv_run(void *arg)
{
    struct conv *c = arg;
    size_t V = (size_t)rwkv_model_info(c->model)->n_vocab;
    rwkv_context *ctx = rwkv_context_new(c->model, c->n_threads, c->err, sizeof c->err);
    rwkv_state *st = rwkv_state_new(c->model);

    c->rc = -1;
    if (ctx && st &&
        rwkv_eval(ctx, st, c->tokens, PROMPT, c->logits, 0, c->err, sizeof c->err) == 0) {
        c->rc = 0;
        for (int i = 0; i < STEPS && c->rc == 0; i++) {
            c->rc = rwkv_eval(ctx, st, &c->tokens[PROMPT + i], 1, c->logits + (size_t)(i + 1) * V,
                              0, c->err, sizeof c->err);
        }
        memcpy(c->state, rwkv_state_cdata(st), c->state_floats * sizeof(float));
    }
    rwkv_state_free(st);
    rwkv_context_free(ctx);
    return NULL;
}

static int same(const struct conv *a, const struct conv *b)
{
    size_t V = (size_t)rwkv_model_info(a->model)->n_vocab;

    return a->rc == 0 && b->rc == 0 &&
           !memcmp(a->logits, b->logits, (size_t)(1 + STEPS) * V * sizeof(float)) &&
           !memcmp(a->state, b->state, a->state_floats * sizeof(float));
}

/* Two conversations one after the other, then both at once (ROUNDS times,
 * with one context of one thread and one of two). */
static void test_two_threads(const char *file)
{
    char path[512], err[RWKV_ERRLEN];
    struct rwkv_load_options opts = { RWKV_DTYPE_AUTO, 2, RWKV_CACHE_MODE_OFF };
    struct conv seq[2], par[2];
    rwkv_model *m;

    snprintf(path, sizeof path, "%s", shared_path("fixtures/models/"));
    strncat(path, file, sizeof path - strlen(path) - 1);
    m = rwkv_model_load(path, &opts, err, sizeof err);
    if (!ok(m != NULL, "%s loads", file)) {
        diag("%s", err);
        return;
    }
    conv_init(&seq[0], m, 1, 1);
    conv_init(&seq[1], m, 2, 2);
    conv_run(&seq[0]);
    conv_run(&seq[1]);
    ok(seq[0].rc == 0 && seq[1].rc == 0, "%s: two conversations one after the other", file);
    for (int round = 0; round < ROUNDS; round++) {
        pthread_t th[2];
        int started = 1;

        conv_init(&par[0], m, 1, 1);
        conv_init(&par[1], m, 2, 2);
        for (int i = 0; i < 2; i++) {
            started &= pthread_create(&th[i], NULL, conv_run, &par[i]) == 0;
        }
        if (started) {
            pthread_join(th[0], NULL);
            pthread_join(th[1], NULL);
        }
        ok(started && same(&seq[0], &par[0]) && same(&seq[1], &par[1]),
           "%s: the same two conversations from two threads at once (round %d): logits and "
           "states bit-identical", file, round + 1);
        conv_free(&par[0]);
        conv_free(&par[1]);
    }
    conv_free(&seq[0]);
    conv_free(&seq[1]);
    rwkv_model_free(m);
}

/* rwkv_eval_batch: one token for each of three states equals three
 * rwkv_eval calls; bad batches change nothing. */
static void test_batch(const char *file)
{
    char path[512], err[RWKV_ERRLEN];
    rwkv_model *m, *other;
    rwkv_context *ctx;
    rwkv_state *a[3], *b[3], *alien;
    const int32_t prompt[3][3] = { { 1, 2, 3 }, { 40, 41 }, { 7 } };
    const size_t plen[3] = { 3, 2, 1 };
    int32_t next[3] = { 5, 6, 7 };
    size_t V, S;
    float *rows, *one;
    int good = 1;

    snprintf(path, sizeof path, "%s", shared_path("fixtures/models/"));
    strncat(path, file, sizeof path - strlen(path) - 1);
    m = rwkv_model_load(path, NULL, err, sizeof err);
    ctx = m ? rwkv_context_new(m, 2, err, sizeof err) : NULL;
    if (!ok(ctx != NULL, "%s: model and context", file)) {
        diag("%s", err);
        rwkv_model_free(m);
        return;
    }
    ok(rwkv_context_threads(ctx) == 2 && rwkv_context_model(ctx) == m,
       "%s: the context has the threads asked for and its model", file);
    V = (size_t)rwkv_model_info(m)->n_vocab;
    S = rwkv_model_info(m)->state_floats;
    rows = calloc(3 * V, sizeof *rows);
    one = calloc(V, sizeof *one);
    for (int i = 0; i < 3; i++) {
        a[i] = rwkv_state_new(m);
        b[i] = rwkv_state_new(m);
        good &= rwkv_eval(ctx, a[i], prompt[i], plen[i], NULL, 0, err, sizeof err) == 0;
        rwkv_state_copy(b[i], a[i]);
    }
    good &= rwkv_eval_batch(ctx, a, next, 3, rows, err, sizeof err) == 0;
    for (int i = 0; i < 3; i++) {
        good &= rwkv_eval(ctx, b[i], &next[i], 1, one, 0, err, sizeof err) == 0;
        good &= !memcmp(one, rows + (size_t)i * V, V * sizeof *one);
        good &= !memcmp(rwkv_state_cdata(a[i]), rwkv_state_cdata(b[i]), S * sizeof(float));
    }
    ok(good, "%s: a batch of three states, one token each, equals three single evals "
       "(logits rows and states bit-identical)", file);

    {
        rwkv_state *dup[2] = { a[0], a[0] };
        int32_t bad[3] = { 1, 2, (int32_t)V };

        ok(rwkv_eval_batch(ctx, dup, next, 2, rows, err, sizeof err) == -1 &&
           strstr(err, "same state"), "a state twice in one batch refused: %s", err);
        ok(rwkv_eval_batch(ctx, a, bad, 3, rows, err, sizeof err) == -1 &&
           strstr(err, "batch entry 2") && strstr(err, "out of range"),
           "a bad token refused, naming its entry: %s", err);
        ok(rwkv_eval_batch(ctx, a, next, 0, rows, err, sizeof err) == -1 &&
           strstr(err, "no states"), "an empty batch refused: %s", err);
        good = 1;
        for (int i = 0; i < 3; i++) {
            good &= !memcmp(rwkv_state_cdata(a[i]), rwkv_state_cdata(b[i]), S * sizeof(float));
        }
        ok(good, "refused batches leave every state alone");
    }

    /* A state of another model (another size) is refused, in and out of a batch. */
    snprintf(path, sizeof path, "%s", shared_path("fixtures/models/v4.pth"));
    other = rwkv_model_load(path, NULL, err, sizeof err);
    alien = other ? rwkv_state_new(other) : NULL;
    if (alien && rwkv_state_floats(alien) != S) {
        rwkv_state *mixed[2] = { a[0], alien };

        ok(rwkv_eval(ctx, alien, next, 1, one, 0, err, sizeof err) == -1 &&
           strstr(err, "does not belong"), "a state of another model refused: %s", err);
        ok(rwkv_eval_batch(ctx, mixed, next, 2, rows, err, sizeof err) == -1 &&
           strstr(err, "batch entry 1") && !memcmp(rwkv_state_cdata(a[0]),
                                                   rwkv_state_cdata(b[0]), S * sizeof(float)),
           "and in a batch, before any state moves: %s", err);
    } else {
        ok(0, "v4.pth loads with a state of another size");
        ok(0, "(skipped)");
    }
    rwkv_state_free(alien);
    rwkv_model_free(other);
    for (int i = 0; i < 3; i++) {
        rwkv_state_free(a[i]);
        rwkv_state_free(b[i]);
    }
    free(rows);
    free(one);
    rwkv_context_free(ctx);
    rwkv_model_free(m);
}

static uint32_t lcg(uint32_t *x)
{
    *x = *x * 1664525u + 1013904223u;
    return *x >> 8;
}

/* Whether the version of m runs batches through a batched layer (one
 * without would loop over the states: see context.c): RWKV-4, 5, 6, 7 and
 * the RWKV-7 family's 7a and 8; not RWKV-7b (minor 2). */
static int batched_version(const rwkv_model *m)
{
    const struct rwkv_info *info = rwkv_model_info(m);
    int v = info->version;

    return v == 4 || v == 5 || v == 6 || (v == 7 && info->minor != 2) || v == 8;
}

/* Batches of 1..5 states, each with a history of its own (prompts of
 * different lengths in sequence mode, then single tokens), step after step
 * against copies advanced by rwkv_eval: logits rows and states must be
 * bit-identical.  Why they can be: a batch row goes through the same row
 * kernels and the same per-row steps as RNN mode (rwkv_eval of one token),
 * only with the weights read once for every row; it never goes through
 * sequence mode's sgemm, whose sums run in another order. */
static void test_batch_sizes(const char *file, enum rwkv_dtype dtype, int threads)
{
    enum { MAX_N = 5, STEPS = 3 };
    char path[512], err[RWKV_ERRLEN];
    struct rwkv_load_options opts = { dtype, threads, RWKV_CACHE_MODE_OFF };
    const char *fmt = dtype == RWKV_DTYPE_AUTO ? "stored" : rwkv_dtype_name(dtype);
    rwkv_model *m;
    rwkv_context *ctx;
    size_t V, S;
    float *rows, *one;
    uint32_t x = 99;
    int good = 1, batched = 1, moved = 1;

    /* a file name is a fixture; a path, a model of the source tree */
    snprintf(path, sizeof path, "%s", file[0] == '/' ? "" : shared_path("fixtures/models/"));
    strncat(path, file, sizeof path - strlen(path) - 1);
    if (strrchr(file, '/')) {
        file = strrchr(file, '/') + 1;
    }
    m = rwkv_model_load(path, &opts, err, sizeof err);
    ctx = m ? rwkv_context_new(m, threads, err, sizeof err) : NULL;
    if (!ok(ctx != NULL, "%s (%s, %d threads): model and context", file, fmt, threads)) {
        diag("%s", err);
        rwkv_model_free(m);
        return;
    }
    V = (size_t)rwkv_model_info(m)->n_vocab;
    S = rwkv_model_info(m)->state_floats;
    rows = calloc(MAX_N * V, sizeof *rows);
    one = calloc(V, sizeof *one);
    for (int n = 1; n <= MAX_N; n++) {
        rwkv_state *a[MAX_N], *b[MAX_N];
        int32_t prompt[16], next[MAX_N];

        for (int i = 0; i < n; i++) {
            size_t len = 1 + (size_t)(3 * i + n) % 16;

            for (size_t j = 0; j < len; j++) {
                prompt[j] = (int32_t)(lcg(&x) % V);
            }
            a[i] = rwkv_state_new(m);
            b[i] = rwkv_state_new(m);
            good &= a[i] && b[i] &&
                    rwkv_eval(ctx, a[i], prompt, len, NULL, 0, err, sizeof err) == 0;
            rwkv_state_copy(b[i], a[i]);
        }
        for (int step = 0; step < STEPS && good; step++) {
            /* the last step asks for no logits: the states still advance */
            float *want = step < STEPS - 1 ? rows : NULL;

            for (int i = 0; i < n; i++) {
                next[i] = (int32_t)(lcg(&x) % V);
            }
            good &= rwkv_eval_batch(ctx, a, next, (size_t)n, want, err, sizeof err) == 0;
            batched &= rwkv_context_test_batched_rows(ctx) ==
                       (batched_version(m) ? (size_t)n : 0);
            for (int i = 0; i < n; i++) {
                const float *before = rwkv_state_cdata(b[i]);

                moved &= memcmp(rwkv_state_cdata(a[i]), before, S * sizeof(float)) != 0;
                good &= rwkv_eval(ctx, b[i], &next[i], 1, one, 0, err, sizeof err) == 0;
                good &= !want || !memcmp(one, rows + (size_t)i * V, V * sizeof *one);
                good &= !memcmp(rwkv_state_cdata(a[i]), rwkv_state_cdata(b[i]),
                                S * sizeof(float));
            }
        }
        for (int i = 0; i < n; i++) {
            rwkv_state_free(a[i]);
            rwkv_state_free(b[i]);
        }
    }
    if (!good) {
        diag("%s", err);
    }
    ok(good && moved, "%s (%s, %d threads): batches of 1 to %d states at different histories, "
       "%d steps: logits rows and states bit-identical to single rwkv_eval calls", file, fmt,
       threads, MAX_N, STEPS);
    ok(batched, "%s (%s): %s", file, fmt,
       batched_version(m) ? "every batch ran through the batched layer"
                          : "no batched layer: the states ran one after the other");
    free(rows);
    free(one);
    rwkv_context_free(ctx);
    rwkv_model_free(m);
}

/* A batch longer than the context's chunk (512 rows for every
 * version) runs in pieces, still bit-identical to single calls. */
static void test_batch_long(const char *file, size_t n)
{
    char path[512], err[RWKV_ERRLEN];
    rwkv_model *m;
    rwkv_context *ctx;
    rwkv_state **a, **b;
    int32_t *next;
    float *rows, *one;
    size_t V, S;
    uint32_t x = 7;
    int good = 1;

    snprintf(path, sizeof path, "%s", shared_path("fixtures/models/"));
    strncat(path, file, sizeof path - strlen(path) - 1);
    m = rwkv_model_load(path, NULL, err, sizeof err);
    ctx = m ? rwkv_context_new(m, 2, err, sizeof err) : NULL;
    if (!ok(ctx != NULL, "%s: model and context", file)) {
        diag("%s", err);
        rwkv_model_free(m);
        return;
    }
    V = (size_t)rwkv_model_info(m)->n_vocab;
    S = rwkv_model_info(m)->state_floats;
    a = calloc(n, sizeof *a);
    b = calloc(n, sizeof *b);
    next = calloc(n, sizeof *next);
    rows = calloc(n * V, sizeof *rows);
    one = calloc(V, sizeof *one);
    for (size_t i = 0; i < n && good; i++) {
        int32_t first = (int32_t)(lcg(&x) % V);

        a[i] = rwkv_state_new(m);
        b[i] = rwkv_state_new(m);
        good &= a[i] && b[i] && rwkv_eval(ctx, a[i], &first, 1, NULL, 0, err, sizeof err) == 0;
        if (good) {
            rwkv_state_copy(b[i], a[i]);
        }
        next[i] = (int32_t)(lcg(&x) % V);
    }
    good &= rwkv_eval_batch(ctx, a, next, n, rows, err, sizeof err) == 0;
    for (size_t i = 0; i < n && good; i++) {
        good &= rwkv_eval(ctx, b[i], &next[i], 1, one, 0, err, sizeof err) == 0;
        good &= !memcmp(one, rows + i * V, V * sizeof *one);
        good &= !memcmp(rwkv_state_cdata(a[i]), rwkv_state_cdata(b[i]), S * sizeof(float));
    }
    ok(good && rwkv_context_test_batched_rows(ctx) == (batched_version(m) ? n : 0),
       "%s: a batch of %zu states (more than a chunk) equals single calls, bit for bit",
       file, n);
    for (size_t i = 0; i < n; i++) {
        rwkv_state_free(a[i]);
        rwkv_state_free(b[i]);
    }
    free(a);
    free(b);
    free(next);
    free(rows);
    free(one);
    rwkv_context_free(ctx);
    rwkv_model_free(m);
}

/* A NULL state, a NULL array: refused, naming the entry, nothing moved. */
static void test_batch_null(void)
{
    char path[512], err[RWKV_ERRLEN];
    rwkv_model *m;
    rwkv_context *ctx;
    rwkv_state *a[3] = { NULL, NULL, NULL };
    float *before;
    int32_t next[3] = { 1, 2, 3 };
    size_t S;

    snprintf(path, sizeof path, "%s", shared_path("fixtures/models/v7.pth"));
    m = rwkv_model_load(path, NULL, err, sizeof err);
    ctx = m ? rwkv_context_new(m, 2, err, sizeof err) : NULL;
    if (!ok(ctx != NULL, "v7.pth: model and context")) {
        rwkv_model_free(m);
        return;
    }
    S = rwkv_model_info(m)->state_floats;
    a[0] = rwkv_state_new(m);
    a[2] = rwkv_state_new(m);
    rwkv_eval(ctx, a[0], next, 3, NULL, 0, err, sizeof err);
    before = malloc(S * sizeof *before);
    memcpy(before, rwkv_state_cdata(a[0]), S * sizeof *before);
    ok(rwkv_eval_batch(ctx, a, next, 3, NULL, err, sizeof err) == -1 &&
       strstr(err, "batch entry 1") && strstr(err, "NULL") &&
       !memcmp(before, rwkv_state_cdata(a[0]), S * sizeof *before),
       "a NULL state in a batch refused before any state moves: %s", err);
    ok(rwkv_eval_batch(ctx, NULL, next, 3, NULL, err, sizeof err) == -1 &&
       strstr(err, "no states"), "no state array refused: %s", err);
    ok(rwkv_eval_batch(ctx, a, NULL, 3, NULL, err, sizeof err) == -1 &&
       strstr(err, "no tokens") && !memcmp(before, rwkv_state_cdata(a[0]), S * sizeof *before),
       "no token array refused: %s", err);
    free(before);
    rwkv_state_free(a[0]);
    rwkv_state_free(a[2]);
    rwkv_context_free(ctx);
    rwkv_model_free(m);
}

/* A context defaults to the load's thread count. */
static void test_default_threads(void)
{
    char path[512], err[RWKV_ERRLEN];
    struct rwkv_load_options opts = { RWKV_DTYPE_AUTO, 3, RWKV_CACHE_MODE_OFF };
    rwkv_model *m;
    rwkv_context *ctx;

    snprintf(path, sizeof path, "%s", shared_path("fixtures/models/v7.pth"));
    m = rwkv_model_load(path, &opts, err, sizeof err);
    ctx = m ? rwkv_context_new(m, 0, err, sizeof err) : NULL;
    ok(ctx && rwkv_context_threads(ctx) == 3, "n_threads 0: the load's 3 threads (%d)",
       ctx ? rwkv_context_threads(ctx) : -1);
    rwkv_context_free(ctx);
    rwkv_context_free(NULL);
    rwkv_model_free(m);
}

int main(void)
{
    static const char *const files[] = { "v7.pth", "v6.pth", "v5.2.pth", "v4.pth" };

    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        test_two_threads(files[i]);
    }
    static const enum rwkv_dtype formats[] = { RWKV_DTYPE_AUTO, RWKV_DTYPE_F32, RWKV_DTYPE_F16,
                                               RWKV_DTYPE_BF16, RWKV_DTYPE_Q8, RWKV_DTYPE_Q4 };

    test_batch("v7.pth");
    test_batch("v5.2.pth");
    for (size_t f = 0; f < sizeof formats / sizeof formats[0]; f++) {
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
            test_batch_sizes(files[i], formats[f], 2);
        }
    }
    test_batch_sizes("v7.pth", RWKV_DTYPE_BF16, 1);
    /* the RWKV-7 family's variants, their per-token tables read per row */
    test_batch_sizes(ABS_TOP_SRCDIR "/tests/golden/variants/v7a.pth", RWKV_DTYPE_AUTO, 2);
    test_batch_sizes(ABS_TOP_SRCDIR "/tests/golden/variants/v8.pth", RWKV_DTYPE_AUTO, 2);
    test_batch_sizes(ABS_TOP_SRCDIR "/tests/golden/variants/v7a.pth", RWKV_DTYPE_Q4, 2);
    test_batch_sizes(ABS_TOP_SRCDIR "/tests/golden/variants/v8.pth", RWKV_DTYPE_Q8, 2);
    test_batch_sizes("v7.pth", RWKV_DTYPE_Q4, 3);
    test_batch_long("v7.pth", 515);
    test_batch_long("v5.2.pth", 515);
    test_batch_null();
    test_default_threads();
    return tap_done();
}
