/*
 * context.c - evaluation contexts and the one forward driver every version
 * runs through (rwkv.h: rwkv_context_*, rwkv_eval, rwkv_eval_batch).
 *
 * A context owns a worker pool, the residual stream and head rows of one
 * chunk, and the version's scratch (rwkv_version.work_new); the model it
 * reads is never written.  The driver works through the tokens in chunks
 * of the version's seq_chunk: each token's embedding row goes through ln0
 * in float32 as it is read (the reference folds ln0 into a float32 copy
 * of the table at load; per token gives the same numbers without that
 * copy), the version's layer runs over the chunk layer by layer, and the
 * head (ln_out, then head.weight) runs only on the rows whose logits are
 * wanted.  A chunk of one token is RNN mode; longer chunks batch the
 * projections (sequence mode) while the recurrences stay sequential.
 *
 * A batch (rwkv_eval_batch) is a chunk whose rows are one token each of
 * different states: the version's layer_batch runs it, each row exactly as
 * RNN mode would run it alone, so the results are bit-identical to single
 * calls while every weight is read once per step for all the states.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/err.h"
#include "engine/model/context_test.h"
#include "engine/model/history.h"
#include "engine/model/rwkv7_test.h"
#include "engine/kernels/kernels.h"
#include "engine/kernels/pool.h"
#include "engine/model/weights.h"

struct rwkv_context {
    const rwkv_model *model;
    struct kpool *pool;
    int chunk;                  /* tokens per step: the version's seq_chunk */
    float *x;                   /* residual stream [chunk][C] */
    float *head_in;             /* ln_out rows [chunk][C] */
    float **rows;               /* a batch's per-row layer states [chunk] */
    size_t batched_rows;        /* context_test.h */
    void *work;                 /* the version's scratch */
    rwkv_cancel_fn cancel;      /* asked between layers; NULL: never stops */
    void *cancel_data;
};

rwkv_context *rwkv_context_new(const rwkv_model *model, int n_threads, char *err,
                               size_t errlen)
{
    const struct rwkv_version *v = model->version;
    size_t C = (size_t)model->info.n_embd;
    rwkv_context *ctx = calloc(1, sizeof *ctx);

    if (!ctx) {
        err_set(err, errlen, "%s: out of memory for an evaluation context",
                ckpt_shown_path(model->file));
        return NULL;
    }
    ctx->model = model;
    ctx->chunk = v->seq_chunk;
    ctx->pool = kpool_new(n_threads > 0 ? n_threads : model->n_threads);
    if (!ctx->pool) {
        err_set(err, errlen, "%s: cannot start worker threads", ckpt_shown_path(model->file));
        rwkv_context_free(ctx);
        return NULL;
    }
    ctx->x = calloc((size_t)ctx->chunk * C, sizeof *ctx->x);
    ctx->head_in = calloc((size_t)ctx->chunk * C, sizeof *ctx->head_in);
    ctx->rows = calloc((size_t)ctx->chunk, sizeof *ctx->rows);
    ctx->work = v->work_new(model, ctx->pool, ctx->chunk);
    if (!ctx->x || !ctx->head_in || !ctx->rows || !ctx->work) {
        err_set(err, errlen, "%s: out of memory for the work buffers",
                ckpt_shown_path(model->file));
        rwkv_context_free(ctx);
        return NULL;
    }
    return ctx;
}

void rwkv_context_free(rwkv_context *ctx)
{
    if (!ctx) {
        return;
    }
    ctx->model->version->work_free(ctx->work);
    free(ctx->x);
    free(ctx->head_in);
    free(ctx->rows);
    kpool_free(ctx->pool);
    free(ctx);
}

const rwkv_model *rwkv_context_model(const rwkv_context *ctx)
{
    return ctx->model;
}

int rwkv_context_threads(const rwkv_context *ctx)
{
    return kpool_threads(ctx->pool);
}

size_t rwkv_context_test_batched_rows(const rwkv_context *ctx)
{
    return ctx->batched_rows;
}

void rwkv_context_set_cancel(rwkv_context *ctx, rwkv_cancel_fn fn, void *data)
{
    ctx->cancel = fn;
    ctx->cancel_data = data;
}

void rwkv7_test_drop_terms(rwkv_context *ctx, unsigned mask)
{
    assert(ctx->model->version->test_drop_terms != NULL);
    ctx->model->version->test_drop_terms(ctx->work, mask);
}

/* x[t] = ln0(emb[token t]) in float32, for T tokens. */
static void embed(const rwkv_context *ctx, const int32_t *tokens, int T)
{
    const struct weights_common *cm = &ctx->model->common;
    int C = ctx->model->info.n_embd;
    size_t row_bytes = (size_t)C * ckpt_dtype_size(cm->emb->dtype);

    for (int t = 0; t < T; t++) {
        float *x = ctx->x + (size_t)t * C;

        ckpt_to_f32(cm->emb->dtype, (const char *)cm->emb->data + (size_t)tokens[t] * row_bytes,
                    x, (size_t)C);
        k_layernorm(x, cm->ln0_w, cm->ln0_b, C, WEIGHTS_LN_EPS, x);
    }
}

/* logits[rows][V] = head ln_out(x[first .. first + rows - 1]); batch: the
 * rows are different conversations' tokens, each product bit-identical to
 * RNN mode's (k_matvec_many). */
static void head(const rwkv_context *ctx, int first, int rows, int batch, float *logits)
{
    const struct weights_common *cm = &ctx->model->common;
    int C = ctx->model->info.n_embd;

    for (int t = 0; t < rows; t++) {
        k_layernorm(ctx->x + (size_t)(first + t) * C, cm->ln_out_w, cm->ln_out_b, C,
                    WEIGHTS_LN_EPS, ctx->head_in + (size_t)t * C);
    }
    if (batch) {
        struct k_product p = { &cm->head, ctx->head_in, logits };

        k_matvec_many(ctx->pool, &p, 1, rows);
    } else {
        k_matmul(ctx->pool, &cm->head, ctx->head_in, rows, logits);
    }
}

/* Whether the cancel callback asks to stop. */
static int cancelled(const rwkv_context *ctx)
{
    return ctx->cancel && ctx->cancel(ctx->cancel_data);
}

/* The forward pass over n >= 1 valid tokens (see rwkv_eval).  0, or (when
 * stoppable) RWKV_CANCELLED with *done_out the tokens of the pieces
 * finished. */
static int forward(rwkv_context *ctx, rwkv_state *st, const int32_t *tokens, size_t n,
                   float *logits, int all_logits, int stoppable, size_t *done_out)
{
    const rwkv_model *m = ctx->model;
    size_t V = (size_t)m->info.n_vocab;
    float *state = rwkv_state_data(st);
    struct rwkv_history *h = rwkv_state_history_of(st);

    /* A history has room for all n tokens already (reserve_history). */
    if (m->version->bind_history) {
        m->version->bind_history(ctx->work, h);
    }
    *done_out = 0;
    for (size_t done = 0; done < n;) {
        int T = n - done < (size_t)ctx->chunk ? (int)(n - done) : ctx->chunk;

        embed(ctx, tokens + done, T);
        if (h) {
            assert(h->n + (size_t)T <= h->cap);
            memcpy(h->tokens + h->n, tokens + done, (size_t)T * sizeof *tokens);
        }
        for (int i = 0; i < m->info.n_layer; i++) {
            if (stoppable && cancelled(ctx)) {
                *done_out = done;
                return RWKV_CANCELLED;
            }
            m->version->layer(m, ctx->work, i, tokens + done, ctx->x, T,
                              state + (size_t)i * m->layer_floats);
        }
        if (h) {
            /* Every layer derived its keys and values of the chunk. */
            h->n += (size_t)T;
            h->n_derived = h->n;
        }
        if (logits && all_logits) {
            head(ctx, 0, T, 0, logits + done * V);
        } else if (logits && done + (size_t)T == n) {
            head(ctx, T - 1, 1, 0, logits);
        }
        done += (size_t)T;
    }
    *done_out = n;
    return 0;
}

/* One token for each of n states (checked; n >= 1), a chunk at a time
 * through the version's layer_batch (see rwkv_eval_batch). */
static void forward_batch(rwkv_context *ctx, rwkv_state *const *states, const int32_t *tokens,
                          size_t n, float *logits)
{
    const rwkv_model *m = ctx->model;
    size_t V = (size_t)m->info.n_vocab;

    for (size_t done = 0; done < n;) {
        int T = n - done < (size_t)ctx->chunk ? (int)(n - done) : ctx->chunk;

        embed(ctx, tokens + done, T);
        for (int i = 0; i < m->info.n_layer; i++) {
            for (int t = 0; t < T; t++) {
                ctx->rows[t] = rwkv_state_data(states[done + (size_t)t]) +
                               (size_t)i * m->layer_floats;
            }
            m->version->layer_batch(m, ctx->work, i, tokens + done, ctx->x, T, ctx->rows);
        }
        if (logits) {
            head(ctx, 0, T, 1, logits + done * V);
        }
        done += (size_t)T;
        ctx->batched_rows += (size_t)T;
    }
}

/* Room in state's history (if it keeps one) for n more tokens: 0, or -1
 * with err (past history_max, out of memory), the state unchanged. */
static int reserve_history(const rwkv_context *ctx, rwkv_state *state, size_t n, char *err,
                           size_t errlen)
{
    struct rwkv_history *h = rwkv_state_history_of(state);

    return h ? rwkv_history_reserve(ctx->model, h, h->n + n, err, errlen) : 0;
}

/* 0 when state belongs to ctx's model and the n tokens are in range. */
static int check(const rwkv_context *ctx, const rwkv_state *state, const int32_t *tokens,
                 size_t n, char *err, size_t errlen)
{
    const rwkv_model *m = ctx->model;

    if (rwkv_state_floats(state) != m->info.state_floats) {
        err_set(err, errlen, "%s: state of %zu floats does not belong to this model (%zu)",
                ckpt_shown_path(m->file), rwkv_state_floats(state), m->info.state_floats);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= m->info.n_vocab) {
            err_set(err, errlen, "token %ld out of range (n_vocab %d) at position %zu",
                    (long)tokens[i], m->info.n_vocab, i);
            return -1;
        }
    }
    return 0;
}

int rwkv_eval(rwkv_context *ctx, rwkv_state *state, const int32_t *tokens, size_t n,
              float *logits, int all_logits, char *err, size_t errlen)
{
    size_t done;

    if (n == 0) {
        err_set(err, errlen, "%s: no tokens to evaluate", ckpt_shown_path(ctx->model->file));
        return -1;
    }
    if (check(ctx, state, tokens, n, err, errlen) != 0 ||
        reserve_history(ctx, state, n, err, errlen) != 0) {
        return -1;
    }
    if (forward(ctx, state, tokens, n, logits, all_logits, 1, &done) != 0) {
        err_set(err, errlen, "stopped after %zu of %zu tokens", done, n);
        return RWKV_CANCELLED;
    }
    return 0;
}

int rwkv_eval_batch(rwkv_context *ctx, rwkv_state *const *states, const int32_t *tokens,
                    size_t n_states, float *logits, char *err, size_t errlen)
{
    size_t V = (size_t)ctx->model->info.n_vocab;

    ctx->batched_rows = 0;
    if (n_states == 0) {
        err_set(err, errlen, "%s: no states to evaluate", ckpt_shown_path(ctx->model->file));
        return -1;
    }
    if (!states || !tokens) {
        err_set(err, errlen, "%s: no %s given for a batch of %zu", ckpt_shown_path(ctx->model->file),
                states ? "tokens" : "states", n_states);
        return -1;
    }
    for (size_t i = 0; i < n_states; i++) {
        char e[RWKV_ERRLEN];

        if (!states[i]) {
            err_set(err, errlen, "batch entry %zu: no state (NULL)", i);
            return -1;
        }
        if (check(ctx, states[i], &tokens[i], 1, e, sizeof e) != 0 ||
            reserve_history(ctx, states[i], 1, e, sizeof e) != 0) {
            err_set(err, errlen, "batch entry %zu: %s", i, e);
            return -1;
        }
        for (size_t j = 0; j < i; j++) {
            if (states[j] == states[i]) {
                err_set(err, errlen, "batch entries %zu and %zu are the same state", j, i);
                return -1;
            }
        }
    }
    if (ctx->model->version->layer_batch) {
        forward_batch(ctx, states, tokens, n_states, logits);
        return 0;
    }
    /* A version without a batched layer: the states one after the other,
     * never stopped part-way (the cancel callback is for long prompts). */
    for (size_t i = 0; i < n_states; i++) {
        size_t done;

        forward(ctx, states[i], &tokens[i], 1,
                logits ? logits + i * V : NULL, 0, 0, &done);
    }
    return 0;
}

int rwkv_default_threads(void)
{
    return kpool_default_threads();
}

const char *rwkv_kernels_name(void)
{
    return kernels_name();
}

int rwkv_kernels_select(const char *name, char *err, size_t errlen)
{
    switch (kernels_select(name)) {
    case 0:
        return 0;
    case -1:
        err_set(err, errlen, "kernel set '%s': no such set in this build (on x86-64: "
                "avx512vnni, avx512, avx2, portable)", name);
        break;
    case -2:
        err_set(err, errlen, "kernel set '%s': this CPU cannot run it; choose a slower set "
                "(avx512vnni, avx512, avx2, portable: the best first)", name);
        break;
    default:
        err_set(err, errlen, "kernel set '%s': the kernels were already chosen (%s); "
                "select the set before loading a model", name, kernels_name());
        break;
    }
    return -1;
}
