/*
 * blocks.c - pieces the RWKV-4/5/6 forward passes share.
 */
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model/blocks.h"

/* ------------------------------------------------------------------------ */
/* Loading                                                                    */

void blocks_fail(struct blocks_loader *ld, const char *fmt, ...)
{
    va_list ap;
    int len;

    if (ld->failed) {
        return;
    }
    ld->failed = 1;
    len = snprintf(ld->err, ld->errlen, "%s: ", ckpt_shown_path(ld->m->file));
    if (len < 0 || (size_t)len >= ld->errlen) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(ld->err + len, ld->errlen - (size_t)len, fmt, ap);
    va_end(ap);
}

static const struct ckpt_tensor *find_tensor(struct blocks_loader *ld, int required,
                                             const char *fmt, va_list ap)
{
    char name[256];
    const struct ckpt_tensor *t;

    vsnprintf(name, sizeof name, fmt, ap);
    t = ckpt_find(ld->m->file, name);
    if (!t && required) {
        blocks_fail(ld, "tensor %s: missing", name);
    }
    return t;
}

static float *vector_of(struct blocks_loader *ld, const struct ckpt_tensor *t, size_t n)
{
    float *v;

    if ((size_t)t->numel != n) {
        blocks_fail(ld, "tensor %s: expected %zu elements, found %lld", t->name, n,
                    (long long)t->numel);
        return NULL;
    }
    v = weights_alloc(ld->m, n * sizeof *v);
    if (!v) {
        blocks_fail(ld, "tensor %s: out of memory", t->name);
        return NULL;
    }
    ckpt_to_f32(t->dtype, t->data, v, n);
    return v;
}

float *blocks_vector(struct blocks_loader *ld, size_t n, const char *fmt, ...)
{
    const struct ckpt_tensor *t;
    va_list ap;

    if (ld->failed) {
        return NULL;
    }
    va_start(ap, fmt);
    t = find_tensor(ld, 1, fmt, ap);
    va_end(ap);
    return t ? vector_of(ld, t, n) : NULL;
}

float *blocks_head_vector(struct blocks_loader *ld, int required, int H, int N,
                          const char *fmt, ...)
{
    const struct ckpt_tensor *t;
    size_t C = (size_t)H * N;
    float *v;
    va_list ap;

    if (ld->failed) {
        return NULL;
    }
    va_start(ap, fmt);
    t = find_tensor(ld, required, fmt, ap);
    va_end(ap);
    if (!t) {
        return NULL;
    }
    if ((size_t)t->numel != C && t->numel != H) {
        blocks_fail(ld, "tensor %s: expected %zu or %d elements, found %lld", t->name, C, H,
                    (long long)t->numel);
        return NULL;
    }
    v = weights_alloc(ld->m, C * sizeof *v);
    if (!v) {
        blocks_fail(ld, "tensor %s: out of memory", t->name);
        return NULL;
    }
    ckpt_to_f32(t->dtype, t->data, v, (size_t)t->numel);
    if ((size_t)t->numel != C) {
        /* Per head: spread backwards so no value is overwritten early. */
        for (int h = H - 1; h >= 0; h--) {
            float value = v[h];

            for (int i = 0; i < N; i++) {
                v[(size_t)h * N + i] = value;
            }
        }
    }
    return v;
}

float *blocks_bonus(struct blocks_loader *ld, int layer)
{
    int H = ld->m->info.n_head, N = ld->m->info.head_size;
    float *u = blocks_head_vector(ld, 0, H, N, "blocks.%d.att.time_faaaa", layer);

    if (!u && !ld->failed) {
        u = blocks_head_vector(ld, 1, H, N, "blocks.%d.att.time_first", layer);
        for (int c = 0; u && c < H * N; c++) {
            u[c] = expf(u[c]);
        }
    }
    return u;
}

static void matrix_of(struct blocks_loader *ld, struct kmat *mat, const struct ckpt_tensor *t,
                      int rows, int cols, int transpose, enum rwkv_dtype dtype)
{
    char msg[RWKV_ERRLEN];

    if (weights_matrix(ld->m, mat, t, transpose, dtype, msg, sizeof msg) != 0) {
        blocks_fail(ld, "%s", msg);
        return;
    }
    if (mat->rows != rows || mat->cols != cols) {
        blocks_fail(ld, "tensor %s: expected %dx%d, found %dx%d", t->name,
                    transpose ? cols : rows, transpose ? rows : cols,
                    transpose ? mat->cols : mat->rows, transpose ? mat->rows : mat->cols);
        kmat_free(mat);
    }
}

void blocks_matrix(struct blocks_loader *ld, struct kmat *mat, int rows, int cols,
                   int transpose, enum rwkv_dtype dtype, const char *fmt, ...)
{
    const struct ckpt_tensor *t;
    va_list ap;

    if (ld->failed) {
        return;
    }
    va_start(ap, fmt);
    t = find_tensor(ld, 1, fmt, ap);
    va_end(ap);
    if (t) {
        matrix_of(ld, mat, t, rows, cols, transpose, dtype);
    }
}

void blocks_matrix_slice(struct blocks_loader *ld, struct kmat *mat, int i, int rows,
                         int cols, const char *fmt, ...)
{
    const struct ckpt_tensor *t;
    struct ckpt_tensor slice;
    size_t slice_bytes;
    va_list ap;

    if (ld->failed) {
        return;
    }
    va_start(ap, fmt);
    t = find_tensor(ld, 1, fmt, ap);
    va_end(ap);
    if (!t) {
        return;
    }
    if (t->ndim != 3 || t->shape[0] <= i || t->shape[1] != cols || t->shape[2] != rows) {
        blocks_fail(ld, "tensor %s: expected [n][%d][%d]", t->name, cols, rows);
        return;
    }
    slice_bytes = (size_t)rows * (size_t)cols * ckpt_dtype_size(t->dtype);
    slice = *t;
    slice.ndim = 2;
    slice.shape[0] = cols;
    slice.shape[1] = rows;
    slice.numel = (int64_t)rows * cols;
    slice.data = (const char *)t->data + (size_t)i * slice_bytes;
    slice.nbytes = slice_bytes;
    matrix_of(ld, mat, &slice, rows, cols, 1, RWKV_DTYPE_F32);
}

void blocks_norm_load(struct blocks_loader *ld, struct blocks_norm *norm, size_t n,
                      const char *prefix)
{
    norm->weight = blocks_vector(ld, n, "%s.weight", prefix);
    norm->bias = blocks_vector(ld, n, "%s.bias", prefix);
}

void *blocks_work_new(const rwkv_model *m, struct kpool *pool, int chunk)
{
    const struct blocks_weights *bw = m->weights;
    struct blocks_work *w = calloc(1, sizeof *w);
    int width = m->info.n_embd;

    if (!w) {
        return NULL;
    }
    w->pool = pool;
    w->width = width;
    w->wide_width = bw->wide_width > width ? bw->wide_width : width;
    for (int i = 0; i < BLOCKS_N_BUFS; i++) {
        w->buf[i] = calloc((size_t)chunk * width, sizeof(float));
        if (!w->buf[i]) {
            blocks_work_free(w);
            return NULL;
        }
    }
    w->wide = calloc((size_t)chunk * w->wide_width, sizeof(float));
    if (!w->wide) {
        blocks_work_free(w);
        return NULL;
    }
    return w;
}

void blocks_work_free(void *work)
{
    struct blocks_work *w = work;

    if (!w) {
        return;
    }
    for (int i = 0; i < BLOCKS_N_BUFS; i++) {
        free(w->buf[i]);
    }
    free(w->wide);
    free(w);
}

/* ------------------------------------------------------------------------ */
/* Element-wise pieces                                                        */

void blocks_linear(const struct blocks_work *w, const struct kmat *W, const float *X, int T,
                   float *Y)
{
    struct k_product p = { W, X, Y };

    blocks_products(w, &p, 1, T);
}

void blocks_products(const struct blocks_work *w, const struct k_product *p, int n, int T)
{
    if (w->rows && T > 1) {
        k_matvec_many(w->pool, p, n, T);
    } else if (n == 1 && T == 1) {
        k_matvec(w->pool, p->W, p->X, p->Y);
    } else {
        k_matmul_batch(w->pool, p, n, T);
    }
}

struct rows_job {
    blocks_rows_fn *fn;
    void *ctx;
    int T, n;
};

/* Chunks shorter than this run their row steps inline. */
#define BLOCKS_ROWS_MIN 4

static void rows_task(void *ctx, int i)
{
    const struct rows_job *job = ctx;

    job->fn(job->ctx, (int)((int64_t)job->T * i / job->n),
            (int)((int64_t)job->T * (i + 1) / job->n));
}

void blocks_rows(const struct blocks_work *w, int T, blocks_rows_fn *fn, void *ctx)
{
    struct rows_job job = { fn, ctx, T, kpool_threads(w->pool) };

    if (T < BLOCKS_ROWS_MIN || job.n <= 1) {
        fn(ctx, 0, T);
        return;
    }
    if (job.n > T) {
        job.n = T;
    }
    kpool_run(w->pool, rows_task, &job, job.n);
}

void blocks_layernorm(const struct blocks_norm *norm, const float *x, int T, int n, float *y)
{
    for (int t = 0; t < T; t++) {
        k_layernorm(x + (size_t)t * n, norm->weight, norm->bias, n, WEIGHTS_LN_EPS,
                    y + (size_t)t * n);
    }
}

void blocks_shift(const struct blocks_work *w, const float *xx, int T, int n, float *state,
                  size_t off, float *sx)
{
    float *prev = blocks_state(w, state, 0, off);

    assert(T >= 1 && T <= BLOCKS_CHUNK);
    if (w->rows) {
        for (int t = 0; t < T; t++) {
            prev = blocks_state(w, state, t, off);
            memcpy(sx + (size_t)t * n, prev, (size_t)n * sizeof *sx);
            memcpy(prev, xx + (size_t)t * n, (size_t)n * sizeof *prev);
        }
        return;
    }
    memcpy(sx, prev, (size_t)n * sizeof *sx);
    memcpy(sx + n, xx, (size_t)(T - 1) * n * sizeof *sx);
    memcpy(prev, xx + (size_t)(T - 1) * n, (size_t)n * sizeof *prev);
}

K_CLONES
void blocks_mix(const float *xx, const float *sx, const float *mix, int T, int n, float *y)
{
    for (int t = 0; t < T; t++) {
        size_t o = (size_t)t * n;

        for (int i = 0; i < n; i++) {
            y[o + i] = xx[o + i] * mix[i] + sx[o + i] * (1.0f - mix[i]);
        }
    }
}

K_CLONES
void blocks_maa(const float *xx, const float *sx, const float *maa, int per_token, int T,
                int n, float *y)
{
    for (int t = 0; t < T; t++) {
        size_t o = (size_t)t * n;
        const float *m = per_token ? maa + o : maa;

        for (int i = 0; i < n; i++) {
            y[o + i] = xx[o + i] + (sx[o + i] - xx[o + i]) * m[i];
        }
    }
}

K_CLONES
void blocks_add(float *x, const float *y, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        x[i] += y[i];
    }
}

K_CLONES
void blocks_sigmoid(float *x, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        x[i] = 1.0f / (1.0f + expf(-x[i]));
    }
}

K_CLONES
void blocks_silu(float *x, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        x[i] = x[i] / (1.0f + expf(-x[i]));
    }
}

/* ------------------------------------------------------------------------ */
/* Channel mix                                                                */

void blocks_ffn_load(struct blocks_loader *ld, struct blocks_ffn *ffn, int layer, int maa)
{
    const rwkv_model *m = ld->m;
    int C = m->info.n_embd;
    const struct ckpt_tensor *key;
    char prefix[64];

    memset(ffn, 0, sizeof *ffn);
    ffn->maa = maa;
    snprintf(prefix, sizeof prefix, "blocks.%d.ln2", layer);
    blocks_norm_load(ld, &ffn->ln, C, prefix);
    ffn->mix_k = blocks_vector(ld, C, "blocks.%d.ffn.time_%s_k", layer, maa ? "maa" : "mix");
    ffn->mix_r = blocks_vector(ld, C, "blocks.%d.ffn.time_%s_r", layer, maa ? "maa" : "mix");
    snprintf(prefix, sizeof prefix, "blocks.%d.ffn.key.weight", layer);
    key = ckpt_find(m->file, prefix);
    if (!key || key->ndim != 2) {
        blocks_fail(ld, "tensor %s: missing or not a matrix", prefix);
        return;
    }
    ffn->ffn_size = (int)key->shape[0];
    blocks_matrix(ld, &ffn->key, ffn->ffn_size, C, 0, m->dtype, "blocks.%d.ffn.key.weight",
                  layer);
    blocks_matrix(ld, &ffn->value, C, ffn->ffn_size, 0, m->dtype,
                  "blocks.%d.ffn.value.weight", layer);
    blocks_matrix(ld, &ffn->receptance, C, C, 0, m->dtype, "blocks.%d.ffn.receptance.weight",
                  layer);
}

/* The channel mix's per-token steps, in the order blocks_ffn_forward runs
 * them. */
enum ffn_step { FFN_NORM, FFN_MIX, FFN_RELU_SQ, FFN_OUT };

struct ffn_rows {
    const struct blocks_ffn *ffn;
    enum ffn_step step;
    int C;
    float *x, *xx, *sx, *kx, *rx, *r, *k, *out;
};

K_CLONES
static void ffn_rows_run(void *ctx, int t0, int t1)
{
    const struct ffn_rows *s = ctx;
    const struct blocks_ffn *ffn = s->ffn;
    int C = s->C, n = t1 - t0;
    size_t o = (size_t)t0 * C, nC = (size_t)n * C;

    switch (s->step) {
    case FFN_NORM:
        blocks_layernorm(&ffn->ln, s->x + o, n, C, s->xx + o);
        break;
    case FFN_MIX:
        if (ffn->maa) {
            blocks_maa(s->xx + o, s->sx + o, ffn->mix_k, 0, n, C, s->kx + o);
            blocks_maa(s->xx + o, s->sx + o, ffn->mix_r, 0, n, C, s->rx + o);
        } else {
            blocks_mix(s->xx + o, s->sx + o, ffn->mix_k, n, C, s->kx + o);
            blocks_mix(s->xx + o, s->sx + o, ffn->mix_r, n, C, s->rx + o);
        }
        break;
    case FFN_RELU_SQ: {
        float *k = s->k + (size_t)t0 * ffn->ffn_size;
        size_t count = (size_t)n * ffn->ffn_size;

        for (size_t i = 0; i < count; i++) {
            float relu = k[i] > 0 ? k[i] : 0;

            k[i] = relu * relu;
        }
        break;
    }
    case FFN_OUT: {
        float *x = s->x + o, *r = s->r + o;
        const float *out = s->out + o;

        blocks_sigmoid(r, nC);
        for (size_t i = 0; i < nC; i++) {
            x[i] += r[i] * out[i];
        }
        break;
    }
    }
}

void blocks_ffn_forward(const struct blocks_ffn *ffn, struct blocks_work *w, float *x, int T,
                        int n_embd, float *state, size_t off)
{
    int C = n_embd;
    struct ffn_rows s = { ffn, FFN_NORM, C, x, w->buf[0], w->buf[1], w->buf[2], w->buf[3],
                          w->buf[4], w->wide, w->buf[5] };

    blocks_rows(w, T, ffn_rows_run, &s);
    blocks_shift(w, s.xx, T, C, state, off, s.sx);
    s.step = FFN_MIX;
    blocks_rows(w, T, ffn_rows_run, &s);
    blocks_linear(w, &ffn->receptance, s.rx, T, s.r);
    blocks_linear(w, &ffn->key, s.kx, T, s.k);
    s.step = FFN_RELU_SQ;
    blocks_rows(w, T, ffn_rows_run, &s);
    blocks_linear(w, &ffn->value, s.k, T, s.out);
    s.step = FFN_OUT;
    blocks_rows(w, T, ffn_rows_run, &s);
}

/* ------------------------------------------------------------------------ */
/* RWKV-5/6 matrix-state wkv                                                  */

struct wkv5_job {
    const struct blocks_work *work;
    int T, H, N;
    const float *r, *k, *v, *w, *u;
    size_t w_stride;
    float *state;
    size_t off;
    float *out;
};

/* One token of one head: out[j] = sum_i r[i] (u[i] k[i] v[j] + S[i][j]),
 * then S[i][j] = k[i] v[j] + w[i] S[i][j].  The arrays never overlap, which
 * lets the compiler vectorise.  Columns go 16 at a time with the rows
 * inside, so each block of out stays in registers over all i (the sums
 * over i in the same order as one pass per row would make). */
K_CLONES
static void wkv5_step(int N, const float *restrict r, const float *restrict k,
                      const float *restrict v, const float *restrict w,
                      const float *restrict u, float *restrict S, float *restrict out)
{
    int j = 0;

    for (; j + 16 <= N; j += 16) {
        float o[16] = { 0 }, vj[16];

        for (int q = 0; q < 16; q++) {
            vj[q] = v[j + q];
        }
        for (int i = 0; i < N; i++) {
            float *restrict s = S + (size_t)i * N + j;
            float ki = k[i], ri = r[i], ui = u[i], wi = w[i];

            for (int q = 0; q < 16; q++) {
                float a = ki * vj[q];

                o[q] += ri * (ui * a + s[q]);
                s[q] = a + wi * s[q];
            }
        }
        for (int q = 0; q < 16; q++) {
            out[j + q] = o[q];
        }
    }
    for (; j < N; j++) {
        float o = 0;

        for (int i = 0; i < N; i++) {
            float *restrict s = S + (size_t)i * N + j;
            float a = k[i] * v[j];

            o += r[i] * (u[i] * a + *s);
            *s = a + w[i] * *s;
        }
        out[j] = o;
    }
}

/* The recurrence of one head over all T tokens. */
static void wkv5_head(void *ctx, int h)
{
    const struct wkv5_job *job = ctx;
    int N = job->N, C = job->H * job->N;
    size_t head = (size_t)h * N;

    for (int t = 0; t < job->T; t++) {
        size_t o = (size_t)t * C + head;

        wkv5_step(N, job->r + o, job->k + o, job->v + o,
                  job->w + (size_t)t * job->w_stride + head, job->u + head,
                  blocks_state(job->work, job->state, t, job->off) + head * N, job->out + o);
    }
}

void blocks_wkv5(const struct blocks_work *work, int T, int H, int N, const float *r,
                 const float *k, const float *v, const float *w, size_t w_stride,
                 const float *u, float *state, size_t off, float *out)
{
    struct wkv5_job job = { work, T, H, N, r, k, v, w, u, w_stride, state, off, out };

    /* Small heads are not worth a thread hand-off. */
    if ((size_t)T * H * N * N < 16384) {
        for (int h = 0; h < H; h++) {
            wkv5_head(&job, h);
        }
        return;
    }
    kpool_run(work->pool, wkv5_head, &job, H);
}

K_CLONES
void blocks_lnx_gate(const struct blocks_norm *ln_x, float *out, const float *g, int T, int C,
                     int H)
{
    for (int t = 0; t < T; t++) {
        float *row = out + (size_t)t * C;

        k_groupnorm(row, ln_x->weight, ln_x->bias, C, H, BLOCKS_LNX_EPS, row);
        if (g) {
            const float *gt = g + (size_t)t * C;

            for (int i = 0; i < C; i++) {
                row[i] *= gt[i];
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Dimensions and state                                                       */

void blocks_heads(const ckpt_file *f, const char *name, struct rwkv_dims *d)
{
    const struct ckpt_tensor *t = ckpt_find(f, name);

    if (t && t->ndim == 2) {
        d->H = t->shape[0];
        d->N = t->shape[1];
    }
}

size_t blocks_matrix_state_floats(const struct rwkv_info *info)
{
    return 2 * (size_t)info->n_embd + (size_t)info->n_head * info->head_size * info->head_size;
}
