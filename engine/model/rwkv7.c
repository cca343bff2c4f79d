/*
 * rwkv7.c - the RWKV-7 "Goose" forward pass.
 *
 * Written against the equations of the official package (RWKV_x070 in
 * BlinkDL's rwkv pip package: TMix_one / TMix_seq / CMix_one).  Every step
 * works on a chunk of T tokens: the projections are matrix-matrix products
 * (k_matmul; with T = 1 they are matrix-vector products, which is RNN mode)
 * and only the wkv recurrence runs token by token.  Per layer and token,
 * with ln1(x) the layer input and x_prev the previous token's ln1(x):
 *
 *   token shift   xr = x + (x_prev - x) * x_r       (also w, k, v, a, g)
 *   projections   r = R xr   k = K xk   v = V xv
 *   decay         w = exp(-e^-0.5 * sigmoid(w0 + w2 tanh(w1 xw)))
 *   in-context lr a = sigmoid(a0 + a2 a1 xa)
 *   gate          g = g2 sigmoid(g1 xg)
 *   key           kk = normalize_per_head(k * k_k);  k = k * (1 + (a-1) * k_a)
 *   value         layer 0: v_first = v;  later: v += (v_first - v) * sigmoid(v0 + v2 v1 xv)
 *   wkv           S = S diag(w) + S (-kk)(kk a)^T + v k^T;  y = S r
 *                 (S[h][i][j]: value index i, key index j)
 *   output        y = GroupNorm_H(y; eps 64e-5) + ((r * k * r_k).sum per head) v
 *                 x += O (y * g)
 *   channel mix   xk = x + (x_prev - x) * x_k;  x += Wv relu(Wk xk)^2   (on ln2(x))
 *
 * The embedding, ln0, ln_out and the head are the forward driver's
 * (context.c), shared by every version; this file is one layer.  A batch
 * (rwkv_eval_batch) runs one token of each of T conversations through the
 * same steps: the products read each weight once for all of them, and the
 * token shift and the wkv take each row's own state.
 */
#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model/rwkv7_family.h"
#include "engine/model/rwkv7_test.h"
#include "engine/model/weights.h"

/* exp(-0.5): the decay is exp(-exp(-0.5) * sigmoid(...)), in (0.545, 1). */
#define DECAY_SCALE 0.606531f
#define LN_EPS 1e-5f
#define GROUPNORM_EPS 64e-5f

struct layer {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    const float *x_r, *x_w, *x_k, *x_v, *x_a, *x_g;     /* token-shift mixes */
    const float *w0, *a0, *v0;                          /* v0: NULL in layer 0 */
    struct kmat w1, w2, a1, a2, v1, v2, g1, g2;         /* LoRA pairs, [out][in] */
    const float *k_k, *k_a, *r_k;
    struct kmat receptance, key, value, output;
    const float *ln_x_w, *ln_x_b;
    const float *ffn_x_k;
    struct kmat ffn_key, ffn_value;
};

/* Per-chunk work buffers of a context, [chunk][...] each. */
struct scratch {
    float *x;                   /* residual stream (the driver's, set per layer) */
    float *ln;                  /* LayerNorm output of x */
    float *xr, *xw, *xk, *xv, *xa, *xg;
    float *r, *w, *k, *v, *a, *g, *kk;
    float *v_first;
    float *y;                   /* wkv output, then the gated attention output */
    float *hw, *ha, *hg, *hv;   /* LoRA hidden layers [lora_max] */
    float *ffn;                 /* channel-mix hidden layer [ffn_size] */
};

/* Read-only after the load. */
struct weights {
    int C, H, N, L, V, F, lora_max;
    struct layer *layers;
    const void *variant;        /* a variant's own weights (rwkv7_family.h) */
};

/* Per-layer views of the official-order state. */
struct layer_state {
    float *att_x_prev;          /* [C] */
    float *wkv;                 /* [H][N][N], value index first */
    float *ffn_x_prev;          /* [C] */
};

/* One context's scratch (rwkv_version.work_new). */
struct work {
    struct scratch s;
    float *mem;
    struct layer_state *rows;   /* a batch's per-row states [chunk] */
    int batch;                  /* the pieces run a batch (rwkv7_batch_rows) */
    struct kpool *pool;
    unsigned dropped;           /* test hook: enum rwkv7_term mask */
    const float *extra;         /* [T][C] added after the time mix (RWKV-7b), or NULL */
};

/* ------------------------------------------------------------------------ */
/* What an RWKV-7 checkpoint is                                               */

/* In the order of the released files. */
static const struct rwkv_tensor_spec v7_specs[] = {
    RWKV7_SPEC_LAYERS,
    RWKV_SPEC_OUT,
    RWKV_SPEC_END
};

static const struct rwkv_tensor_spec *const v7_written[] = { v7_specs };

/* Has the att.x_r / w0 / k_k family. */
static int rwkv7_detect(const ckpt_file *f, struct rwkv_info *info)
{
    if (!ckpt_find(f, "blocks.0.att.x_r") || !ckpt_find(f, "blocks.0.att.w0") ||
        !ckpt_find(f, "blocks.0.att.k_k")) {
        return 0;
    }
    info->version = 7;
    info->minor = 0;
    snprintf(info->version_name, sizeof info->version_name, "7");
    return 1;
}

static const struct rwkv_tensor_spec *rwkv7_tensors(const ckpt_file *f,
                                                    const struct rwkv_info *info)
{
    (void)f;
    (void)info;
    return v7_specs;
}

/* Heads from r_k [H][N]; the LoRA ranks from their first factor [C][r]
 * (v1 from layer 1: layer 0 has none). */
void rwkv7_read_dims(const ckpt_file *f, const struct rwkv_info *info,
                            struct rwkv_dims *d)
{
    static const struct {
        const char *name;
        size_t off;
    } ranks[] = {
        { "blocks.0.att.w1", offsetof(struct rwkv_dims, Dw) },
        { "blocks.0.att.a1", offsetof(struct rwkv_dims, Da) },
        { "blocks.0.att.g1", offsetof(struct rwkv_dims, Dg) },
        { "blocks.1.att.v1", offsetof(struct rwkv_dims, Dv) },
    };
    const struct ckpt_tensor *t;

    (void)info;
    if ((t = ckpt_find(f, "blocks.0.att.r_k")) && t->ndim == 2) {
        d->H = t->shape[0];
        d->N = t->shape[1];
    }
    for (size_t i = 0; i < sizeof ranks / sizeof ranks[0]; i++) {
        if ((t = ckpt_find(f, ranks[i].name)) && t->ndim == 2) {
            *(int64_t *)((char *)d + ranks[i].off) = t->shape[1];
        }
    }
}

/* att x_prev [C], wkv [H][N][N], ffn x_prev [C]. */
size_t rwkv7_layer_floats(const struct rwkv_info *info)
{
    return 2 * (size_t)info->n_embd + (size_t)info->n_head * info->head_size * info->head_size;
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                    */

/* A float32 copy of a tensor that must hold exactly n elements, owned by
 * the model. */
static const float *load_vector(rwkv_model *m, const struct ckpt_tensor *t, int64_t n,
                                char *err, size_t errlen)
{
    float *v;

    if (t->numel != n) {
        snprintf(err, errlen, "%s: tensor %s: expected %lld elements, found %lld",
                 ckpt_shown_path(m->file), t->name, (long long)n, (long long)t->numel);
        return NULL;
    }
    v = weights_vector(m, t);
    if (!v) {
        snprintf(err, errlen, "%s: tensor %s: out of memory", ckpt_shown_path(m->file), t->name);
        return NULL;
    }
    return v;
}

static int load_matrix(rwkv_model *m, struct kmat *k, const struct ckpt_tensor *t,
                       int transpose, int rows, int cols, enum rwkv_dtype dtype,
                       char *err, size_t errlen)
{
    char e[RWKV_ERRLEN];

    if (weights_matrix(m, k, t, transpose, dtype, e, sizeof e) != 0) {
        snprintf(err, errlen, "%s: %s", ckpt_shown_path(m->file), e);
        return -1;
    }
    if (k->rows != rows || k->cols != cols) {
        snprintf(err, errlen, "%s: tensor %s: expected %dx%d, found %dx%d",
                 ckpt_shown_path(m->file), t->name, transpose ? cols : rows,
                 transpose ? rows : cols, transpose ? k->cols : k->rows,
                 transpose ? k->rows : k->cols);
        kmat_free(k);
        return -1;
    }
    return 0;
}

#define VEC(dst, n, ...)                                                          \
    do {                                                                          \
        if (!((dst) = load_vector(m, weights_tensor(m, __VA_ARGS__), (n), err,    \
                                  errlen))) {                                     \
            return -1;                                                            \
        }                                                                         \
    } while (0)

/* A LoRA factor stored [in][out] (used as x @ w1), kept as [out][in]. */
#define LORA(dst, rows, cols, ...)                                                \
    do {                                                                          \
        if (load_matrix(m, &(dst), weights_tensor(m, __VA_ARGS__), 1, (rows), (cols), \
                        lora_dtype(m), err, errlen)) {                            \
            return -1;                                                            \
        }                                                                         \
    } while (0)

/* A Linear weight stored [out][in], in the model's compute format. */
#define LINEAR(dst, rows, cols, ...)                                              \
    do {                                                                          \
        if (load_matrix(m, &(dst), weights_tensor(m, __VA_ARGS__), 0, (rows), (cols), \
                        m->dtype, err, errlen)) {                                 \
            return -1;                                                            \
        }                                                                         \
    } while (0)

/* The LoRA factors are small but read for every token: a tenth of the
 * bytes of a bf16 model.  They follow the big matrices to bf16 when those
 * are bf16 or quantised (released files store them in bf16 anyway), and
 * stay float32 otherwise. */
static enum rwkv_dtype lora_dtype(const rwkv_model *m)
{
    switch (m->info.compute_dtype) {
    case RWKV_DTYPE_BF16:
    case RWKV_DTYPE_Q8:
    case RWKV_DTYPE_Q4:
        return RWKV_DTYPE_BF16;
    default:
        return RWKV_DTYPE_F32;
    }
}

/* Width of a LoRA: the out dimension of the tensor stored [C][D]. */
static int lora_width(rwkv_model *m, int layer, const char *name)
{
    const struct ckpt_tensor *t = weights_tensor(m, "blocks.%d.att.%s", layer, name);

    return (int)t->shape[t->ndim - 1];
}

static int load_layer(rwkv_model *m, struct weights *W, int i, char *err, size_t errlen)
{
    struct layer *l = &W->layers[i];
    int C = W->C, F = W->F;
    int dw = lora_width(m, i, "w1"), da = lora_width(m, i, "a1"), dg = lora_width(m, i, "g1");

    VEC(l->ln1_w, C, "blocks.%d.ln1.weight", i);
    VEC(l->ln1_b, C, "blocks.%d.ln1.bias", i);
    VEC(l->ln2_w, C, "blocks.%d.ln2.weight", i);
    VEC(l->ln2_b, C, "blocks.%d.ln2.bias", i);
    VEC(l->x_r, C, "blocks.%d.att.x_r", i);
    VEC(l->x_w, C, "blocks.%d.att.x_w", i);
    VEC(l->x_k, C, "blocks.%d.att.x_k", i);
    VEC(l->x_v, C, "blocks.%d.att.x_v", i);
    VEC(l->x_a, C, "blocks.%d.att.x_a", i);
    VEC(l->x_g, C, "blocks.%d.att.x_g", i);
    VEC(l->w0, C, "blocks.%d.att.w0", i);
    VEC(l->a0, C, "blocks.%d.att.a0", i);
    VEC(l->k_k, C, "blocks.%d.att.k_k", i);
    VEC(l->k_a, C, "blocks.%d.att.k_a", i);
    VEC(l->r_k, C, "blocks.%d.att.r_k", i);
    VEC(l->ln_x_w, C, "blocks.%d.att.ln_x.weight", i);
    VEC(l->ln_x_b, C, "blocks.%d.att.ln_x.bias", i);
    VEC(l->ffn_x_k, C, "blocks.%d.ffn.x_k", i);
    LORA(l->w1, dw, C, "blocks.%d.att.w1", i);
    LORA(l->w2, C, dw, "blocks.%d.att.w2", i);
    LORA(l->a1, da, C, "blocks.%d.att.a1", i);
    LORA(l->a2, C, da, "blocks.%d.att.a2", i);
    LORA(l->g1, dg, C, "blocks.%d.att.g1", i);
    LORA(l->g2, C, dg, "blocks.%d.att.g2", i);
    /* Layer 0 makes v_first; released files carry no v0/v1/v2 there. */
    if (i > 0) {
        int dv = lora_width(m, i, "v1");

        VEC(l->v0, C, "blocks.%d.att.v0", i);
        LORA(l->v1, dv, C, "blocks.%d.att.v1", i);
        LORA(l->v2, C, dv, "blocks.%d.att.v2", i);
        if (dv > W->lora_max) {
            W->lora_max = dv;
        }
    }
    LINEAR(l->receptance, C, C, "blocks.%d.att.receptance.weight", i);
    LINEAR(l->key, C, C, "blocks.%d.att.key.weight", i);
    LINEAR(l->value, C, C, "blocks.%d.att.value.weight", i);
    LINEAR(l->output, C, C, "blocks.%d.att.output.weight", i);
    LINEAR(l->ffn_key, F, C, "blocks.%d.ffn.key.weight", i);
    LINEAR(l->ffn_value, C, F, "blocks.%d.ffn.value.weight", i);
    if (dw > W->lora_max) {
        W->lora_max = dw;
    }
    if (da > W->lora_max) {
        W->lora_max = da;
    }
    if (dg > W->lora_max) {
        W->lora_max = dg;
    }
    return 0;
}

void rwkv7_work_free(void *work)
{
    struct work *wk = work;

    if (wk) {
        free(wk->mem);
        free(wk->rows);
        free(wk);
    }
}

/* A context's scratch for chunks of up to chunk tokens, carved out of one
 * allocation (the residual stream x is the driver's). */
void *rwkv7_work_new(const rwkv_model *m, struct kpool *pool, int chunk)
{
    const struct weights *W = m->weights;
    size_t C = (size_t)W->C, T = (size_t)chunk;
    size_t total = T * C * 16 + 4 * T * (size_t)W->lora_max + T * (size_t)W->F;
    struct work *wk = calloc(1, sizeof *wk);
    struct scratch *s;
    float *p;

    if (!wk) {
        return NULL;
    }
    wk->mem = p = calloc(total ? total : 1, sizeof *p);
    wk->rows = calloc(T, sizeof *wk->rows);
    if (!wk->mem || !wk->rows) {
        rwkv7_work_free(wk);
        return NULL;
    }
    wk->pool = pool;
    s = &wk->s;
    float **vecs[] = { &s->ln, &s->xr, &s->xw, &s->xk, &s->xv, &s->xa, &s->xg,
                       &s->r, &s->w, &s->k, &s->v, &s->a, &s->g, &s->kk, &s->v_first,
                       &s->y, NULL };

    for (int i = 0; vecs[i]; i++) {
        *vecs[i] = p;
        p += T * C;
    }
    float **hidden[] = { &s->hw, &s->ha, &s->hg, &s->hv };

    for (int i = 0; i < 4; i++) {
        *hidden[i] = p;
        p += T * (size_t)W->lora_max;
    }
    s->ffn = p;
    return wk;
}


int rwkv7_prepare(rwkv_model *m, char *err, size_t errlen)
{
    const struct rwkv_info *info = &m->info;
    struct weights *W = weights_alloc(m, sizeof *W);

    if (!W || !(W->layers = weights_alloc(m, (size_t)info->n_layer * sizeof *W->layers))) {
        snprintf(err, errlen, "%s: out of memory", ckpt_shown_path(m->file));
        return -1;
    }
    m->weights = W;
    W->C = info->n_embd;
    W->H = info->n_head;
    W->N = info->head_size;
    W->L = info->n_layer;
    W->V = info->n_vocab;
    W->F = (int)weights_tensor(m, "blocks.0.ffn.key.weight")->shape[0];
    assert(W->H * W->N == W->C);
    for (int i = 0; i < W->L; i++) {
        if (load_layer(m, W, i, err, errlen)) {
            return -1;
        }
    }
    return 0;
}

/* rwkv_version.test_drop_terms: the test hook of rwkv7_test.h. */
void rwkv7_drop_terms(void *work, unsigned mask)
{
    struct work *wk = work;

    wk->dropped = mask;
}

/* ------------------------------------------------------------------------ */
/* The forward pass                                                           */

static float sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

static struct layer_state layer_state(const struct weights *W, float *p)
{
    struct layer_state ls = { p, p + W->C, p + W->C + (size_t)W->H * W->N * W->N };

    return ls;
}

/* ------------------------------------------------------------------------ */
/* Token-range steps                                                          */

/*
 * Between the matrix products everything works token by token.  Each such
 * step is a function over a range of tokens [t0, t1); in sequence mode the
 * pool runs it with one range per thread, in RNN mode it runs inline.
 * Every step only reads rows that earlier steps finished, except the token
 * shift, which reads the previous token's row: it runs as a step of its own.
 * What comes between the projections and the output product (decay, key
 * and value terms, the wkv, GroupNorm, bonus and gate) stays within a head,
 * so it runs in the wkv's per-head tasks (wkv_head), on every thread even
 * for the few rows of RNN mode or a batch.
 *
 * The rows are either one conversation's consecutive tokens (state ls[0])
 * or, in a batch (rwkv_eval_batch), one token each of T conversations, row
 * t of state ls[t]: then every row is computed exactly as a chunk of one
 * token of its own state would be.
 */
struct span {
    const struct weights *W;
    struct work *wk;
    const struct layer *l;
    struct layer_state *ls;     /* ls[0]; a batch: ls[t] for row t */
    int batch;
    int layer, T;
    int with_decay;             /* the decay LoRA is applied */
    int with_vres;              /* v is pulled towards v_first */
};

typedef void span_fn(const struct span *sp, int t0, int t1);

struct span_job {
    const struct span *sp;
    span_fn *fn;
    int n;
};

/* Chunks and batches shorter than this run their steps inline: for a few
 * rows a step is a few microseconds, less than handing it to the pool and
 * waiting for the other threads (4 streams of the 0.1B model, 2 threads:
 * about 4 % more tokens per second inline). */
#define SPAN_MIN_T 8

static void span_task(void *ctx, int i)
{
    const struct span_job *job = ctx;
    int T = job->sp->T;

    job->fn(job->sp, (int)((int64_t)T * i / job->n), (int)((int64_t)T * (i + 1) / job->n));
}

static void for_tokens(const struct span *sp, span_fn *fn)
{
    struct span_job job = { sp, fn, kpool_threads(sp->wk->pool) };

    if (sp->T < SPAN_MIN_T || job.n <= 1) {
        fn(sp, 0, sp->T);
        return;
    }
    kpool_run(sp->wk->pool, span_task, &job, job.n);
}

/* The state of row t. */
static struct layer_state *row_state(const struct span *sp, int t)
{
    return &sp->ls[sp->batch ? t : 0];
}

/* o = cur + (prev - cur) * mix over n floats, eight lanes at a time so
 * that GCC -O2 vectorises it (its cheap cost model leaves loops that need
 * a remainder loop scalar); each element computed as the plain loop would. */
static inline void mix_row(float *restrict o, const float *restrict cur,
                           const float *restrict prev, const float *restrict mix, int n)
{
    int c = 0;

    for (; c + 8 <= n; c += 8) {
        for (int l = 0; l < 8; l++) {
            o[c + l] = cur[c + l] + (prev[c + l] - cur[c + l]) * mix[c + l];
        }
    }
    for (; c < n; c++) {
        o[c] = cur[c] + (prev[c] - cur[c]) * mix[c];
    }
}

/* x += y over n floats (eight lanes, as mix_row). */
static inline void add_row(float *restrict x, const float *restrict y, size_t n)
{
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        for (int l = 0; l < 8; l++) {
            x[i + l] += y[i + l];
        }
    }
    for (; i < n; i++) {
        x[i] += y[i];
    }
}

/* Token shift of rows [t0, t1): each token mixed with the one before it in
 * its conversation (the row above, or x_prev from the state for a chunk's
 * first row and every row of a batch; ffn picks the channel mix's x_prev),
 * out_j[t] = x[t] + (prev[t] - x[t]) * mix_j. */
K_CLONES
static void token_shift(const struct span *sp, const float *x, int t0, int t1, int ffn,
                        const float *const *mix, float *const *out, int n_mix)
{
    int C = sp->W->C;

    for (int t = t0; t < t1; t++) {
        const float *cur = x + (size_t)t * C;
        const struct layer_state *ls = row_state(sp, t);
        const float *prev = t && !sp->batch ? cur - C : ffn ? ls->ffn_x_prev : ls->att_x_prev;

        for (int j = 0; j < n_mix; j++) {
            mix_row(out[j] + (size_t)t * C, cur, prev, mix[j], C);
        }
    }
}

static void layernorm_rows(const float *x, int T, int C, const float *w, const float *b,
                           float *y)
{
    for (int t = 0; t < T; t++) {
        k_layernorm(x + (size_t)t * C, w, b, C, LN_EPS, y + (size_t)t * C);
    }
}

/* ln = ln1(x). */
static void step_ln1(const struct span *sp, int t0, int t1)
{
    struct scratch *s = &sp->wk->s;
    size_t C = (size_t)sp->W->C;

    layernorm_rows(s->x + t0 * C, t1 - t0, (int)C, sp->l->ln1_w, sp->l->ln1_b, s->ln + t0 * C);
}

/* xr, xw, xk, xv, xa, xg: the token-shifted inputs of the time mix. */
static void step_att_shift(const struct span *sp, int t0, int t1)
{
    const struct layer *l = sp->l;
    struct scratch *s = &sp->wk->s;
    const float *mix[6] = { l->x_r, l->x_w, l->x_k, l->x_v, l->x_a, l->x_g };
    float *out[6] = { s->xr, s->xw, s->xk, s->xv, s->xa, s->xg };

    token_shift(sp, s->ln, t0, t1, 0, mix, out, 6);
}

/* The LoRA hidden layers: tanh(w1 xw), (a1 xa as it is), sigmoid(g1 xg),
 * (v1 xv as it is). */
K_CLONES
static void step_hidden(const struct span *sp, int t0, int t1)
{
    const struct layer *l = sp->l;
    struct scratch *s = &sp->wk->s;

    if (sp->with_decay) {
        size_t D = (size_t)l->w1.rows;

        for (size_t i = t0 * D; i < t1 * D; i++) {
            s->hw[i] = tanhf(s->hw[i]);
        }
    }
    size_t D = (size_t)l->g1.rows;

    for (size_t i = t0 * D; i < t1 * D; i++) {
        s->hg[i] = sigmoid(s->hg[i]);
    }
}

/* After the projections, per token, for the channels of head h:
 *   decay         w = exp(-e^-0.5 sigmoid(w0 + w2 tanh(w1 xw)))
 *   in-context lr a = sigmoid(a0 + a2 a1 xa)
 *   key           kk = k * k_k normalised to unit L2 norm per head (torch
 *                 F.normalize, eps 1e-12); k = k * (1 + (a - 1) * k_a)
 *   value         layer 0 keeps v as v_first; later layers
 *                 v += (v_first - v) * sigmoid(v0 + v2 v1 xv).
 * Every term stays within its head, so each head's wkv task does its own
 * (wkv_head), on every thread of the pool, even for a few rows. */
static inline __attribute__((always_inline)) void
after_proj_head(const struct span *sp, int t, int h)
{
    const struct weights *W = sp->W;
    const struct layer *l = sp->l;
    const struct scratch *s = &sp->wk->s;
    int C = W->C, N = W->N, c0 = h * N, c1 = c0 + N;
    size_t o = (size_t)t * C;
    float *w = s->w + o, *a = s->a + o, *k = s->k + o, *kk = s->kk + o, *v = s->v + o;
    float sum = 0;

    if (!sp->with_decay) {
        memset(w + c0, 0, (size_t)N * sizeof *w);
    }
    for (int c = c0; c < c1; c++) {
        w[c] = expf(-DECAY_SCALE * sigmoid(l->w0[c] + w[c]));
        a[c] = sigmoid(l->a0[c] + a[c]);
    }
    for (int j = c0; j < c1; j++) {
        kk[j] = k[j] * l->k_k[j];
        sum += kk[j] * kk[j];
    }
    float inv = 1.0f / fmaxf(sqrtf(sum), 1e-12f);

    for (int j = c0; j < c1; j++) {
        kk[j] *= inv;
    }
    if (!(sp->wk->dropped & RWKV7_TERM_K_A)) {
        for (int c = c0; c < c1; c++) {
            k[c] = k[c] * (1.0f + (a[c] - 1.0f) * l->k_a[c]);
        }
    }
    if (sp->layer == 0) {
        memcpy(s->v_first + o + c0, v + c0, (size_t)N * sizeof *v);
    } else if (sp->with_vres) {
        const float *vf = s->v_first + o;
        const float *y = s->y + o;

        for (int c = c0; c < c1; c++) {
            v[c] += (vf[c] - v[c]) * sigmoid(l->v0[c] + y[c]);
        }
    }
}

/* Output of the attention for head h of row t: GroupNorm (head h is
 * group h: k_groupnorm's own k_layernorm call), the r_k bonus
 * ((r * k * r_k).sum over the head) v, times the gate g. */
static inline __attribute__((always_inline)) void
wkv_output_head(const struct span *sp, int t, int h)
{
    const struct weights *W = sp->W;
    const struct layer *l = sp->l;
    const struct scratch *s = &sp->wk->s;
    int C = W->C, N = W->N, c0 = h * N, c1 = c0 + N;
    size_t o = (size_t)t * C;
    float *y = s->y + o;
    const float *r = s->r + o, *k = s->k + o, *v = s->v + o, *g = s->g + o;

    assert(W->H * N == C);
    k_layernorm(y + c0, l->ln_x_w + c0, l->ln_x_b + c0, N, GROUPNORM_EPS, y + c0);
    if (!(sp->wk->dropped & RWKV7_TERM_BONUS)) {
        float bonus = 0;

        for (int j = c0; j < c1; j++) {
            bonus += r[j] * k[j] * l->r_k[j];
        }
        for (int j = c0; j < c1; j++) {
            y[j] += bonus * v[j];
        }
    }
    if (!(sp->wk->dropped & RWKV7_TERM_GATE)) {
        for (int c = c0; c < c1; c++) {
            y[c] *= g[c];
        }
    }
}

struct wkv_job {
    const struct span *sp;      /* the rows and their states ([H][N][N] wkv) */
};

/* a . b with eight partial sums, so the compiler can use vector lanes. */
static inline float dot(const float *a, const float *b, int n)
{
    float acc[8] = { 0 };
    int j = 0;

    for (; j + 8 <= n; j += 8) {
        for (int l = 0; l < 8; l++) {
            acc[l] += a[j + l] * b[j + l];
        }
    }
    for (; j < n; j++) {
        acc[0] += a[j] * b[j];
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* One row of the state update, fused with its output:
 *   S_i = S_i * w + sa * b + v_i * k,  returns S_i . r
 * (eight lanes written out so the compiler vectorises without -ffast-math). */
static inline float state_row(float *restrict Si, const float *restrict w, const float *restrict b,
                       const float *restrict k, const float *restrict r, float sa, float vi,
                       int n)
{
    float acc[8] = { 0 };
    int j = 0;

    for (; j + 8 <= n; j += 8) {
        for (int l = 0; l < 8; l++) {
            float x = Si[j + l] * w[j + l] + sa * b[j + l] + vi * k[j + l];

            Si[j + l] = x;
            acc[l] += x * r[j + l];
        }
    }
    for (; j < n; j++) {
        Si[j] = Si[j] * w[j] + sa * b[j] + vi * k[j];
        acc[0] += Si[j] * r[j];
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* Tokens from which a chunk's wkv runs on the transposed state (and head
 * sizes up to which it fits on the stack). */
#define WKV_T_MIN 16
#define WKV_T_MAX_N 128

/* The wkv recurrence of one token on St = S^T (St[j][i] = S[i][j]):
 * with S's rows as St's columns, both products S (-kk) and S r become
 * sums of St's rows, vectors over i, with no sums across lanes. */
static inline void wkv_step_transposed(float *restrict St, const float *restrict w,
                                       const float *restrict k, const float *restrict v,
                                       const float *restrict kk, const float *restrict a,
                                       const float *restrict r, int use_kk, int N,
                                       float *restrict y)
{
    float sa[WKV_T_MAX_N], acc[WKV_T_MAX_N];

    for (int i = 0; i < N; i++) {
        sa[i] = 0;
        acc[i] = 0;
    }
    if (use_kk) {
        for (int j = 0; j < N; j++) {
            const float *restrict row = St + (size_t)j * N;
            float kkj = kk[j];

            for (int i = 0; i < N; i++) {
                sa[i] += row[i] * kkj;
            }
        }
    }
    for (int j = 0; j < N; j++) {
        float *restrict row = St + (size_t)j * N;
        float wj = w[j], bj = -kk[j] * a[j], kj = k[j], rj = r[j];

        if (!use_kk) {
            bj = 0;
        }
        for (int i = 0; i < N; i++) {
            float x = row[i] * wj + sa[i] * bj + v[i] * kj;

            row[i] = x;
            acc[i] += x * rj;
        }
    }
    for (int i = 0; i < N; i++) {
        y[i] = acc[i];
    }
}

/* dst[j][i] = src[i][j], N x N. */
static void transpose_head(const float *restrict src, float *restrict dst, int N)
{
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < N; j++) {
            dst[(size_t)j * N + i] = src[(size_t)i * N + j];
        }
    }
}

/* Head h over the chunk, token by token: the terms after the
 * projections (after_proj_head), the wkv recurrence
 *   S = S diag(w) + (S (-kk)) (kk a)^T + v k^T,   y = S r,
 * and the attention's output (wkv_output_head).  A chunk of one
 * conversation's tokens (WKV_T_MIN or more) runs on the state transposed
 * once for the chunk (wkv_step_transposed): the same terms, summed in
 * another order. */
K_CLONES
static void wkv_head(void *ctx, int h)
{
    const struct wkv_job *job = ctx;
    const struct span *sp = job->sp;
    const struct weights *W = sp->W;
    const struct scratch *s = &sp->wk->s;
    int C = W->C, N = W->N;
    int use_kk = !(sp->wk->dropped & RWKV7_TERM_STATE_KK);

    if (!sp->batch && sp->T >= WKV_T_MIN && N <= WKV_T_MAX_N) {
        float *S = row_state(sp, 0)->wkv + (size_t)h * N * N;
        float St[WKV_T_MAX_N * WKV_T_MAX_N];

        transpose_head(S, St, N);
        for (int t = 0; t < sp->T; t++) {
            size_t o = (size_t)t * C + (size_t)h * N;

            after_proj_head(sp, t, h);
            wkv_step_transposed(St, s->w + o, s->k + o, s->v + o, s->kk + o, s->a + o,
                                s->r + o, use_kk, N, s->y + o);
            wkv_output_head(sp, t, h);
        }
        transpose_head(St, S, N);
        return;
    }
    for (int t = 0; t < sp->T; t++) {
        float *S = row_state(sp, t)->wkv + (size_t)h * N * N;
        size_t o = (size_t)t * C + (size_t)h * N;
        const float *r = s->r + o, *w = s->w + o, *k = s->k + o, *v = s->v + o;
        const float *kk = s->kk + o, *a = s->a + o;
        float *y = s->y + o;
        float b[N];

        after_proj_head(sp, t, h);
        for (int j = 0; j < N; j++) {
            b[j] = kk[j] * a[j];
        }
        for (int i = 0; i < N; i++) {
            float *Si = S + (size_t)i * N;
            float sa = use_kk ? -dot(Si, kk, N) : 0.0f;

            y[i] = state_row(Si, w, b, k, r, sa, v[i], N);
        }
        wkv_output_head(sp, t, h);
    }
}

/* x += the attention output (in ln), and a variant's extra term; then
 * ln = ln2(x). */
K_CLONES
static void step_att_residual(const struct span *sp, int t0, int t1)
{
    struct scratch *s = &sp->wk->s;
    size_t C = (size_t)sp->W->C;
    const float *extra = sp->wk->extra;

    add_row(s->x + t0 * C, s->ln + t0 * C, (t1 - t0) * C);
    if (extra) {
        add_row(s->x + t0 * C, extra + t0 * C, (t1 - t0) * C);
    }
    layernorm_rows(s->x + t0 * C, t1 - t0, (int)C, sp->l->ln2_w, sp->l->ln2_b, s->ln + t0 * C);
}

/* xk: the token-shifted input of the channel mix. */
static void step_ffn_shift(const struct span *sp, int t0, int t1)
{
    struct scratch *s = &sp->wk->s;
    const float *mix[1] = { sp->l->ffn_x_k };
    float *out[1] = { s->xk };

    token_shift(sp, s->ln, t0, t1, 1, mix, out, 1);
}

/* relu(v)^2: v where v > 0, else +0 (NaN too), squared; the select as a
 * mask so that it vectorises. */
static inline float relu_sq(float v)
{
    uint32_t u;

    memcpy(&u, &v, sizeof u);
    u &= -(uint32_t)(v > 0);
    memcpy(&v, &u, sizeof v);
    return v * v;
}

/* ffn = relu(ffn)^2 (eight lanes, as mix_row). */
K_CLONES
static void step_relu_sq(const struct span *sp, int t0, int t1)
{
    float *restrict f = sp->wk->s.ffn;
    size_t F = (size_t)sp->W->F, i = t0 * F, end = t1 * F;

    for (; i + 8 <= end; i += 8) {
        for (int l = 0; l < 8; l++) {
            f[i + l] = relu_sq(f[i + l]);
        }
    }
    for (; i < end; i++) {
        f[i] = relu_sq(f[i]);
    }
}

/* x += the channel-mix output (in ln). */
K_CLONES
static void step_ffn_residual(const struct span *sp, int t0, int t1)
{
    struct scratch *s = &sp->wk->s;
    size_t C = (size_t)sp->W->C;

    add_row(s->x + t0 * C, s->ln + t0 * C, (t1 - t0) * C);
}

/* ------------------------------------------------------------------------ */
/* One layer                                                                  */

/* n independent products over the span's rows: one conversation's tokens
 * (sequence mode when T > 1), or a batch's rows, each bit-identical to its
 * conversation's RNN-mode product with the weights read once for all. */
static void products(const struct span *sp, const struct k_product *p, int n)
{
    if (sp->batch && sp->T > 1) {
        k_matvec_many(sp->wk->pool, p, n, sp->T);
    } else {
        k_matmul_batch(sp->wk->pool, p, n, sp->T);
    }
}

/* Y = X W^T over the span's rows (see products). */
static void product(const struct span *sp, const struct kmat *W, const float *X, float *Y)
{
    struct k_product p = { W, X, Y };

    products(sp, &p, 1);
}

/* Each conversation's x_prev (the channel mix's when ffn) becomes its last
 * row of ln. */
static void save_prev(const struct span *sp, int ffn)
{
    size_t C = (size_t)sp->W->C;
    int first = sp->batch ? 0 : sp->T - 1;

    for (int t = first; t < sp->T; t++) {
        struct layer_state *ls = row_state(sp, t);

        memcpy(ffn ? ls->ffn_x_prev : ls->att_x_prev, sp->wk->s.ln + (size_t)t * C,
               C * sizeof *sp->wk->s.ln);
    }
}

/* The projections of the time mix, all from the token-shifted inputs: r,
 * k, v and the LoRA factors (w, a, g, and the v residual's mixing factor,
 * left in s->y).  Independent products go to the pool together
 * (k_matmul_batch): two hand-offs for the lot in generation, not one per
 * matrix. */
static void projections(const struct span *sp)
{
    const struct layer *l = sp->l;
    struct scratch *s = &sp->wk->s;
    struct k_product down[7], up[4];
    int n_down = 0, n_up = 0;

    down[n_down++] = (struct k_product){ &l->receptance, s->xr, s->r };
    down[n_down++] = (struct k_product){ &l->key, s->xk, s->k };
    down[n_down++] = (struct k_product){ &l->value, s->xv, s->v };
    down[n_down++] = (struct k_product){ &l->a1, s->xa, s->ha };
    down[n_down++] = (struct k_product){ &l->g1, s->xg, s->hg };
    up[n_up++] = (struct k_product){ &l->a2, s->ha, s->a };
    up[n_up++] = (struct k_product){ &l->g2, s->hg, s->g };
    if (sp->with_decay) {
        down[n_down++] = (struct k_product){ &l->w1, s->xw, s->hw };
        up[n_up++] = (struct k_product){ &l->w2, s->hw, s->w };
    }
    if (sp->with_vres) {
        down[n_down++] = (struct k_product){ &l->v1, s->xv, s->hv };
        up[n_up++] = (struct k_product){ &l->v2, s->hv, s->y };
    }
    products(sp, down, n_down);
    for_tokens(sp, step_hidden);
    products(sp, up, n_up);
}

/* x += TimeMix(ln1(x)); leaves ln2(x) in s->ln.  ls and batch as in
 * struct span (so for the pieces below). */
static void time_mix(const struct weights *W, struct work *wk, int i, struct layer_state *ls,
                     int batch, int T)
{
    const struct layer *l = &W->layers[i];
    struct scratch *s = &wk->s;
    struct span sp = { W, wk, l, ls, batch, i, T, !(wk->dropped & RWKV7_TERM_DECAY_LORA),
                       i > 0 && !(wk->dropped & RWKV7_TERM_V_FIRST) };
    struct wkv_job job = { &sp };

    for_tokens(&sp, step_ln1);
    for_tokens(&sp, step_att_shift);
    save_prev(&sp, 0);
    projections(&sp);
    kpool_run(wk->pool, wkv_head, &job, W->H);
    /* s->ln is free again: the projected output lands there. */
    product(&sp, &l->output, s->y, s->ln);
    for_tokens(&sp, step_att_residual);
}

/* The channel mix's hidden layer relu(Wk xk)^2 into s->ffn, from ln2(x)
 * in s->ln (left there). */
static void ffn_hidden(const struct weights *W, struct work *wk, int i, struct layer_state *ls,
                       int batch, int T)
{
    const struct layer *l = &W->layers[i];
    struct scratch *s = &wk->s;
    struct span sp = { W, wk, l, ls, batch, i, T, 0, 0 };

    for_tokens(&sp, step_ffn_shift);
    save_prev(&sp, 1);
    product(&sp, &l->ffn_key, s->xk, s->ffn);
    for_tokens(&sp, step_relu_sq);
}

/* The channel mix's output Wv ffn, into s->ln. */
static void ffn_value(const struct weights *W, struct work *wk, int i, struct layer_state *ls,
                      int batch, int T)
{
    const struct layer *l = &W->layers[i];
    struct span sp = { W, wk, l, ls, batch, i, T, 0, 0 };

    product(&sp, &l->ffn_value, wk->s.ffn, wk->s.ln);
}

/* x += the channel-mix output (in s->ln). */
static void ffn_residual(const struct weights *W, struct work *wk, int i,
                         struct layer_state *ls, int batch, int T)
{
    struct span sp = { W, wk, &W->layers[i], ls, batch, i, T, 0, 0 };

    for_tokens(&sp, step_ffn_residual);
}

/* x += TimeMix(ln1(x)), then x += ChannelMix(ln2(x)); ls and batch as in
 * struct span. */
static void layer_forward(const struct weights *W, struct work *wk, int i,
                          struct layer_state *ls, int batch, int T)
{
    time_mix(W, wk, i, ls, batch, T);
    ffn_hidden(W, wk, i, ls, batch, T);
    ffn_value(W, wk, i, ls, batch, T);
    ffn_residual(W, wk, i, ls, batch, T);
}

/* One layer over a chunk of T tokens (rwkv_version.layer). */
static void rwkv7_layer(const rwkv_model *m, void *work, int i, const int32_t *tokens, float *x,
                        int T, float *state)
{
    const struct weights *W = m->weights;
    struct work *wk = work;
    struct layer_state ls = layer_state(W, state);

    (void)tokens;
    wk->s.x = x;
    layer_forward(W, wk, i, &ls, 0, T);
}

/* Row t's state views: layer floats states[t]. */
static void set_rows(const struct weights *W, struct work *wk, float *const *states, int T)
{
    for (int t = 0; t < T; t++) {
        wk->rows[t] = layer_state(W, states[t]);
    }
}

/* One layer over a batch: row t of x[T][C] is one token of its own
 * conversation, whose layer floats are states[t] (rwkv_version.layer_batch). */
static void rwkv7_layer_batch(const rwkv_model *m, void *work, int i, const int32_t *tokens,
                              float *x, int T, float *const *states)
{
    const struct weights *W = m->weights;
    struct work *wk = work;

    (void)tokens;
    set_rows(W, wk, states, T);
    wk->s.x = x;
    layer_forward(W, wk, i, wk->rows, 1, T);
}

/* ------------------------------------------------------------------------ */
/* The pieces the variants use (rwkv7_family.h), over a chunk of one state   */

/* The states the pieces run on: wk->rows in a batch, else state's views
 * in *one. */
static struct layer_state *piece_states(const struct weights *W, struct work *wk, float *state,
                                        struct layer_state *one)
{
    if (wk->batch) {
        return wk->rows;
    }
    *one = layer_state(W, state);
    return one;
}

void rwkv7_time_mix(const rwkv_model *m, void *work, int i, float *x, int T, float *state)
{
    rwkv7_time_mix_plus(m, work, i, x, T, state, NULL);
}

void rwkv7_time_mix_plus(const rwkv_model *m, void *work, int i, float *x, int T, float *state,
                         const float *extra)
{
    const struct weights *W = m->weights;
    struct work *wk = work;
    struct layer_state one;

    wk->s.x = x;
    wk->extra = extra;
    time_mix(W, wk, i, piece_states(W, wk, state, &one), wk->batch, T);
    wk->extra = NULL;
}

float *rwkv7_ffn_hidden(const rwkv_model *m, void *work, int i, int T, float *state)
{
    const struct weights *W = m->weights;
    struct work *wk = work;
    struct layer_state one;

    ffn_hidden(W, wk, i, piece_states(W, wk, state, &one), wk->batch, T);
    return wk->s.ffn;
}

float *rwkv7_ffn_value(const rwkv_model *m, void *work, int i, int T)
{
    struct work *wk = work;

    ffn_value(m->weights, wk, i, wk->rows, wk->batch, T);
    return wk->s.ln;
}

void rwkv7_ffn_residual(const rwkv_model *m, void *work, int i, int T)
{
    struct work *wk = work;

    ffn_residual(m->weights, wk, i, wk->rows, wk->batch, T);
}

void rwkv7_batch_rows(const rwkv_model *m, void *work, float *const *states, int T)
{
    struct work *wk = work;

    wk->batch = states != NULL;
    if (states) {
        set_rows(m->weights, wk, states, T);
    }
}

void rwkv7_products(void *work, const struct k_product *p, int n, int T)
{
    struct work *wk = work;

    if (wk->batch) {
        k_matvec_many(wk->pool, p, n, T);
    } else {
        for (int i = 0; i < n; i++) {
            k_matmul(wk->pool, p[i].W, p[i].X, T, p[i].Y);
        }
    }
}

const float *rwkv7_ln2(const void *work)
{
    const struct work *wk = work;

    return wk->s.ln;
}

struct kpool *rwkv7_pool(const void *work)
{
    const struct work *wk = work;

    return wk->pool;
}

int rwkv7_ffn_size(const rwkv_model *m)
{
    const struct weights *W = m->weights;

    return W->F;
}

void rwkv7_set_variant(rwkv_model *m, const void *variant)
{
    struct weights *W = m->weights;

    W->variant = variant;
}

const void *rwkv7_variant(const rwkv_model *m)
{
    const struct weights *W = m->weights;

    return W->variant;
}

int rwkv7_matrix(rwkv_model *m, struct kmat *k, const struct ckpt_tensor *t, int transpose,
                 int rows, int cols, int small, char *err, size_t errlen)
{
    return load_matrix(m, k, t, transpose, rows, cols, small ? lora_dtype(m) : m->dtype, err,
                       errlen);
}

const float *rwkv7_vector(rwkv_model *m, const struct ckpt_tensor *t, int64_t n, char *err,
                          size_t errlen)
{
    return load_vector(m, t, n, err, errlen);
}

const struct rwkv_rank rwkv7_ranks[RWKV7_N_RANKS] = {
    { "decay", offsetof(struct rwkv_info, lora_decay) },
    { "a", offsetof(struct rwkv_info, lora_aaa) },
    { "v", offsetof(struct rwkv_info, lora_mv) },
    { "gate", offsetof(struct rwkv_info, lora_gate) },
};

const struct rwkv_version rwkv7_version = {
    .version = 7,
    .seq_chunk = RWKV_SEQ_CHUNK,
    .detect = rwkv7_detect,
    .tensors = rwkv7_tensors,
    .written = v7_written,
    .n_minors = 1,
    .read_dims = rwkv7_read_dims,
    .heads_tensor = "blocks.0.att.r_k",
    .ranks = rwkv7_ranks,
    .n_ranks = RWKV7_N_RANKS,
    .layer_floats = rwkv7_layer_floats,
    .state_init = NULL,
    .prepare = rwkv7_prepare,
    .work_new = rwkv7_work_new,
    .work_free = rwkv7_work_free,
    .layer = rwkv7_layer,
    .layer_batch = rwkv7_layer_batch,
    .test_drop_terms = rwkv7_drop_terms,
};
