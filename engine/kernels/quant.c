/*
 * quant.c - packing into the weight formats of quant.h, and their portable
 * row kernels (the set that every CPU can run, and the reference the
 * instruction-set kernels are tested against).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kernels/kernels_impl.h"
#include "engine/kernels/quant.h"


/* ------------------------------------------------------------------------ */
/* Packing                                                                    */

/* Round to nearest, ties to even, for |v| < 2^22 (the codes here are at
 * most 127): adding and removing 1.5 * 2^23 leaves the rounded value, as
 * lrintf would in the default rounding mode, without a library call. */
static inline float round_small(float v)
{
    const float m = 12582912.0f;    /* not folded: float addition is not associative */

    return (v + m) - m;
}

static int pack_half(struct kmat *m, const float *src, int bf16)
{
    size_t n = (size_t)m->rows * (size_t)m->cols, i;
    uint16_t *d = malloc(n * sizeof *d);

    if (!d) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        d[i] = bf16 ? half_f32_to_bf16(src[i]) : half_f32_to_f16(src[i]);
    }
    m->data = d;
    m->owned = d;
    return 0;
}

int quant_pack_bf16(struct kmat *m, const float *src)
{
    return pack_half(m, src, 1);
}

int quant_pack_f16(struct kmat *m, const float *src)
{
    return pack_half(m, src, 0);
}

/* Q8: per-row scale max|w| / 127, codes round(w / s). */
int quant_pack_q8(struct kmat *m, const float *src)
{
    int8_t *q = malloc((size_t)m->rows * (size_t)m->cols);
    float *s = malloc((size_t)m->rows * sizeof *s);

    if (!q || !s) {
        free(q);
        free(s);
        return -1;
    }
    for (int r = 0; r < m->rows; r++) {
        const float *w = src + (size_t)r * m->cols;
        int8_t *qr = q + (size_t)r * m->cols;
        float amax = 0;

        for (int c = 0; c < m->cols; c++) {
            float a = fabsf(w[c]);

            amax = a > amax ? a : amax;
        }
        s[r] = amax / 127.0f;
        float inv = amax > 0 ? 127.0f / amax : 0.0f;

        for (int c = 0; c < m->cols; c++) {
            float v = round_small(w[c] * inv);

            qr[c] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
        }
    }
    m->data = q;
    m->owned = q;
    m->scales = s;
    m->owned_scales = s;
    return 0;
}

/* The scale of one Q4 block of 32 values (see quant.h): of the scales
 * that map the element of largest magnitude m to -(8 + k / 2), k in
 * [-Q4_SEARCH, Q4_SEARCH], each refined to the least-squares scale for the
 * codes it gives, the one with the smallest squared error.  (Steps of 1/10
 * over [-1, 1] instead remove 0.7 % more of the error on bell-shaped
 * weights, for four times the packing time.) */
#define Q4_SEARCH 2

static float q4_block_scale(const float *v)
{
    float big = 0, best_d = 0, best_score = -1;

    for (int j = 0; j < QUANT_Q4_GROUP; j++) {
        if (fabsf(v[j]) > fabsf(big)) {
            big = v[j];
        }
    }
    if (big == 0) {
        return 0;
    }
    for (int k = -Q4_SEARCH; k <= Q4_SEARCH; k++) {
        float iscale = -(8.0f + 0.5f * (float)k) / big, sum_vq = 0, sum_qq = 0;

        for (int j = 0; j < QUANT_Q4_GROUP; j++) {
            float q = round_small(v[j] * iscale);

            q = q < -8 ? -8 : q > 7 ? 7 : q;
            sum_vq += v[j] * q;
            sum_qq += q * q;
        }
        /* with the least-squares scale sum_vq / sum_qq, the squared error
         * is sum v^2 - sum_vq^2 / sum_qq: the largest sum_vq^2 / sum_qq wins */
        if (sum_qq > 0 && sum_vq * sum_vq / sum_qq > best_score) {
            best_score = sum_vq * sum_vq / sum_qq;
            best_d = sum_vq / sum_qq;
        }
    }
    return best_d;
}

/* Q4: groups of 32, the scale of q4_block_scale, codes rounded to nearest
 * with that scale rounded to binary16. */
int quant_pack_q4(struct kmat *m, const float *src)
{
    int nb = quant_q4_blocks(m->cols);
    struct q4_block *blocks = malloc((size_t)m->rows * (size_t)nb * sizeof *blocks);

    if (!blocks) {
        return -1;
    }
    for (int r = 0; r < m->rows; r++) {
        const float *w = src + (size_t)r * m->cols;

        for (int b = 0; b < nb; b++) {
            struct q4_block *blk = &blocks[(size_t)r * nb + b];
            float v[QUANT_Q4_GROUP], d, inv;
            int j;

            for (j = 0; j < QUANT_Q4_GROUP; j++) {
                int c = b * QUANT_Q4_GROUP + j;

                v[j] = c < m->cols ? w[c] : 0.0f;
            }
            blk->d = half_f32_to_f16(q4_block_scale(v));
            d = half_f16_to_f32(blk->d);
            inv = d != 0 ? 1.0f / d : 0.0f;
            for (j = 0; j < QUANT_Q4_GROUP / 2; j++) {
                int lo = (int)round_small(v[j] * inv) + 8, hi = (int)round_small(v[j + 16] * inv) + 8;

                lo = lo < 0 ? 0 : lo > 15 ? 15 : lo;
                hi = hi < 0 ? 0 : hi > 15 ? 15 : hi;
                blk->qs[j] = (uint8_t)(lo | (hi << 4));
            }
        }
    }
    m->data = blocks;
    m->owned = blocks;
    m->scales = NULL;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Reference dequantisation                                                   */

void quant_dequant_row(const struct kmat *W, int r, float *dst)
{
    size_t off = (size_t)r * W->cols;
    int c;

    switch (W->type) {
    case RWKV_DTYPE_BF16:
        for (c = 0; c < W->cols; c++) {
            dst[c] = half_bf16_to_f32(((const uint16_t *)W->data)[off + c]);
        }
        break;
    case RWKV_DTYPE_F16:
        for (c = 0; c < W->cols; c++) {
            dst[c] = half_f16_to_f32(((const uint16_t *)W->data)[off + c]);
        }
        break;
    case RWKV_DTYPE_Q8:
        for (c = 0; c < W->cols; c++) {
            dst[c] = W->scales[r] * ((const int8_t *)W->data)[off + c];
        }
        break;
    case RWKV_DTYPE_Q4: {
        int nb = quant_q4_blocks(W->cols);
        const struct q4_block *blk = (const struct q4_block *)W->data + (size_t)r * nb;

        for (c = 0; c < W->cols; c++) {
            const struct q4_block *b = &blk[c / QUANT_Q4_GROUP];
            int j = c % QUANT_Q4_GROUP;
            int u = j < 16 ? b->qs[j] & 15 : b->qs[j - 16] >> 4;

            dst[c] = half_f16_to_f32(b->d) * (float)(u - 8);
        }
        break;
    }
    default:
        memcpy(dst, (const float *)W->data + off, (size_t)W->cols * sizeof *dst);
        break;
    }
}

void quant_rows_to_f32(const struct kmat *W, int r0, int r1, float *out)
{
    for (int r = r0; r < r1; r++) {
        quant_dequant_row(W, r, out + (size_t)(r - r0) * W->cols);
    }
}

int quant_xq_alloc(struct quant_xq *xq, int cols)
{
    xq->cols = cols;
    xq->n_blocks = quant_q4_blocks(cols);
    xq->q = calloc((size_t)xq->n_blocks * QUANT_Q4_GROUP, 1);
    xq->d = malloc((size_t)xq->n_blocks * sizeof *xq->d);
    xq->sum = malloc((size_t)xq->n_blocks * sizeof *xq->sum);
    if (!xq->q || !xq->d || !xq->sum) {
        quant_xq_free(xq);
        return -1;
    }
    return 0;
}

void quant_xq_free(struct quant_xq *xq)
{
    free(xq->q);
    free(xq->d);
    free(xq->sum);
    memset(xq, 0, sizeof *xq);
}

/* Q8_0-style activation blocks: dx = max|x| / 127, qx = round(x / dx). */
void quant_xq_fill(struct quant_xq *xq, const float *x)
{
    for (int b = 0; b < xq->n_blocks; b++) {
        int n = xq->cols - b * QUANT_Q4_GROUP, sum = 0;
        const float *xb = x + b * QUANT_Q4_GROUP;
        int8_t *q = xq->q + b * QUANT_Q4_GROUP;
        float amax = 0, inv;

        n = n > QUANT_Q4_GROUP ? QUANT_Q4_GROUP : n;
        for (int j = 0; j < n; j++) {
            amax = fmaxf(amax, fabsf(xb[j]));
        }
        xq->d[b] = amax / 127.0f;
        inv = amax > 0 ? 127.0f / amax : 0.0f;
        for (int j = 0; j < QUANT_Q4_GROUP; j++) {
            int v = j < n ? (int)lrintf(xb[j] * inv) : 0;

            q[j] = (int8_t)v;
            sum += v;
        }
        xq->sum[b] = sum;
    }
}

/* ------------------------------------------------------------------------ */
/* Portable row kernels                                                       */

static void bf16_matvec_rows(const struct kmat *W, const float *x, float *y, int r0, int r1)
{
    for (int r = r0; r < r1; r++) {
        const uint16_t *w = (const uint16_t *)W->data + (size_t)r * W->cols;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int c = 0;

        for (; c + 4 <= W->cols; c += 4) {
            s0 += half_bf16_to_f32(w[c]) * x[c];
            s1 += half_bf16_to_f32(w[c + 1]) * x[c + 1];
            s2 += half_bf16_to_f32(w[c + 2]) * x[c + 2];
            s3 += half_bf16_to_f32(w[c + 3]) * x[c + 3];
        }
        for (; c < W->cols; c++) {
            s0 += half_bf16_to_f32(w[c]) * x[c];
        }
        y[r] = (s0 + s1) + (s2 + s3);
    }
}

static void f16_matvec_rows(const struct kmat *W, const float *x, float *y, int r0, int r1)
{
    for (int r = r0; r < r1; r++) {
        const uint16_t *w = (const uint16_t *)W->data + (size_t)r * W->cols;
        float s = 0;

        for (int c = 0; c < W->cols; c++) {
            s += half_f16_to_f32(w[c]) * x[c];
        }
        y[r] = s;
    }
}

/* sum_j w_j * qx_j over one block of n <= 32 int8 weights (Q8). */
static int q8_block_dot(const int8_t *w, const int8_t *qx, int n)
{
    int s = 0;

    for (int j = 0; j < n; j++) {
        s += w[j] * qx[j];
    }
    return s;
}

/* sum_b dx_b * sum_j w[32 b + j] * qx_bj for one row w of cols int8
 * weights and x quantised in xq (quant.h); the row's scale not applied. */
static float q8_row_xq(const int8_t *w, int cols, const struct quant_xq *xq)
{
    float s = 0;

    for (int b = 0; b < xq->n_blocks; b++) {
        int c = b * QUANT_Q4_GROUP;
        int len = cols - c < QUANT_Q4_GROUP ? cols - c : QUANT_Q4_GROUP;

        s += xq->d[b] * (float)q8_block_dot(w + c, xq->q + c, len);
    }
    return s;
}

static void q8_matvec_rows(const struct kmat *W, const float *x, float *y, int r0, int r1)
{
    struct quant_xq xq;

    if (quant_xq_alloc(&xq, W->cols) != 0) {
        /* Out of memory mid-product: no error path here; fall back on the
         * exact dequantised product (float x). */
        for (int r = r0; r < r1; r++) {
            const int8_t *q = (const int8_t *)W->data + (size_t)r * W->cols;
            float s = 0;

            for (int c = 0; c < W->cols; c++) {
                s += (float)q[c] * x[c];
            }
            y[r] = W->scales[r] * s;
        }
        return;
    }
    quant_xq_fill(&xq, x);
    for (int r = r0; r < r1; r++) {
        y[r] = W->scales[r] * q8_row_xq((const int8_t *)W->data + (size_t)r * W->cols, W->cols, &xq);
    }
    quant_xq_free(&xq);
}

/* The integer inner product of one Q4 block with one activation block. */
static int q4_block_dot(const struct q4_block *b, const int8_t *qx)
{
    int s = 0;

    for (int j = 0; j < QUANT_Q4_GROUP / 2; j++) {
        s += ((b->qs[j] & 15) - 8) * qx[j] + ((b->qs[j] >> 4) - 8) * qx[j + 16];
    }
    return s;
}

static void q4_matvec_rows(const struct kmat *W, const float *x, float *y, int r0, int r1)
{
    int nb = quant_q4_blocks(W->cols);
    struct quant_xq xq;

    if (quant_xq_alloc(&xq, W->cols) != 0) {
        /* Out of memory mid-product: no error path here; fall back on the
         * exact dequantised product. */
        for (int r = r0; r < r1; r++) {
            float w[QUANT_Q4_GROUP], s = 0;

            for (int c0 = 0; c0 < W->cols; c0 += QUANT_Q4_GROUP) {
                const struct q4_block *b = (const struct q4_block *)W->data +
                                           (size_t)r * nb + c0 / QUANT_Q4_GROUP;

                for (int j = 0; j < QUANT_Q4_GROUP && c0 + j < W->cols; j++) {
                    int u = j < 16 ? b->qs[j] & 15 : b->qs[j - 16] >> 4;

                    w[j] = half_f16_to_f32(b->d) * (float)(u - 8);
                    s += w[j] * x[c0 + j];
                }
            }
            y[r] = s;
        }
        return;
    }
    quant_xq_fill(&xq, x);
    for (int r = r0; r < r1; r++) {
        const struct q4_block *blk = (const struct q4_block *)W->data + (size_t)r * nb;
        float s = 0;

        for (int b = 0; b < nb; b++) {
            s += half_f16_to_f32(blk[b].d) * xq.d[b] *
                 (float)q4_block_dot(&blk[b], xq.q + b * QUANT_Q4_GROUP);
        }
        y[r] = s;
    }
    quant_xq_free(&xq);
}

/* ------------------------------------------------------------------------ */
/* Sequence mode: activations quantised per block, integer block products     */

/* Tokens whose activations are quantised together: their blocks stay in
 * cache while the rows pass over them. */
#define MM_TOKENS 8

/* The activations of tokens [t0, t0 + n) quantised into xq[0 .. n). */
static int xq_tile_alloc(struct quant_xq *xq, int cols)
{
    for (int i = 0; i < MM_TOKENS; i++) {
        if (quant_xq_alloc(&xq[i], cols) != 0) {
            while (i-- > 0) {
                quant_xq_free(&xq[i]);
            }
            return -1;
        }
    }
    return 0;
}

static void xq_tile_free(struct quant_xq *xq)
{
    for (int i = 0; i < MM_TOKENS; i++) {
        quant_xq_free(&xq[i]);
    }
}

/* Y[t][r] = s[r] * sum_b dx_tb * sum_j q[r][32 b + j] * qx_tbj (quant.h). */
static void q8_matmul_rows(const struct kmat *W, const float *X, int T, float *Y, int r0, int r1)
{
    const int cols = W->cols;
    struct quant_xq xq[MM_TOKENS];

    if (xq_tile_alloc(xq, cols) != 0) {
        /* Out of memory: no error path here; the matvec's own fallback. */
        for (int t = 0; t < T; t++) {
            q8_matvec_rows(W, X + (size_t)t * cols, Y + (size_t)t * W->rows, r0, r1);
        }
        return;
    }
    for (int t0 = 0; t0 < T; t0 += MM_TOKENS) {
        int n = T - t0 < MM_TOKENS ? T - t0 : MM_TOKENS;

        for (int i = 0; i < n; i++) {
            quant_xq_fill(&xq[i], X + (size_t)(t0 + i) * cols);
        }
        for (int r = r0; r < r1; r++) {
            const int8_t *w = (const int8_t *)W->data + (size_t)r * cols;

            for (int i = 0; i < n; i++) {
                Y[(size_t)(t0 + i) * W->rows + r] = W->scales[r] * q8_row_xq(w, cols, &xq[i]);
            }
        }
    }
    xq_tile_free(xq);
}

/* Y[t][r] = sum_b d_rb * dx_tb * sum_j (u_rbj - 8) * qx_tbj: the matvec's
 * value for every token (quant.h). */
static void q4_matmul_rows(const struct kmat *W, const float *X, int T, float *Y, int r0, int r1)
{
    const int cols = W->cols, nb = quant_q4_blocks(cols);
    struct quant_xq xq[MM_TOKENS];

    if (xq_tile_alloc(xq, cols) != 0) {
        for (int t = 0; t < T; t++) {
            q4_matvec_rows(W, X + (size_t)t * cols, Y + (size_t)t * W->rows, r0, r1);
        }
        return;
    }
    for (int t0 = 0; t0 < T; t0 += MM_TOKENS) {
        int n = T - t0 < MM_TOKENS ? T - t0 : MM_TOKENS;

        for (int i = 0; i < n; i++) {
            quant_xq_fill(&xq[i], X + (size_t)(t0 + i) * cols);
        }
        for (int r = r0; r < r1; r++) {
            const struct q4_block *blk = (const struct q4_block *)W->data + (size_t)r * nb;

            for (int i = 0; i < n; i++) {
                float s = 0;

                for (int b = 0; b < nb; b++) {
                    s += half_f16_to_f32(blk[b].d) * xq[i].d[b] *
                         (float)q4_block_dot(&blk[b], xq[i].q + b * QUANT_Q4_GROUP);
                }
                Y[(size_t)(t0 + i) * W->rows + r] = s;
            }
        }
    }
    xq_tile_free(xq);
}

size_t quant_row_bytes(enum rwkv_dtype t, int cols)
{
    switch (t) {
    case RWKV_DTYPE_F16:
    case RWKV_DTYPE_BF16:
        return (size_t)cols * 2;
    case RWKV_DTYPE_Q8:
        return (size_t)cols;
    case RWKV_DTYPE_Q4:
        return (size_t)quant_q4_blocks(cols) * sizeof(struct q4_block);
    default:
        return (size_t)cols * sizeof(float);
    }
}

int quant_row_scales(enum rwkv_dtype t)
{
    return t == RWKV_DTYPE_Q8;
}

size_t quant_bytes_half(const struct kmat *W)
{
    return (size_t)W->rows * quant_row_bytes(W->type, W->cols);
}

size_t quant_bytes_q8(const struct kmat *W)
{
    return (size_t)W->rows * (quant_row_bytes(RWKV_DTYPE_Q8, W->cols) + sizeof(float));
}

size_t quant_bytes_q4(const struct kmat *W)
{
    return (size_t)W->rows * quant_row_bytes(RWKV_DTYPE_Q4, W->cols);
}

/* The portable kernels of the formats beyond float32 (which kernels.c's
 * portable set covers).  Listed after the instruction-set files, before
 * kernel_set_portable. */
const struct kernel_set kernel_set_quant = {
    .name = "portable",
    .usable = NULL,
    .format = {
        [RWKV_DTYPE_F16] = { quant_pack_f16, f16_matvec_rows, NULL, quant_bytes_half },
        [RWKV_DTYPE_BF16] = { quant_pack_bf16, bf16_matvec_rows, NULL, quant_bytes_half },
        [RWKV_DTYPE_Q8] = { quant_pack_q8, q8_matvec_rows, q8_matmul_rows, quant_bytes_q8,
                            quant_rows_to_f32 },
        [RWKV_DTYPE_Q4] = { quant_pack_q4, q4_matvec_rows, q4_matmul_rows, quant_bytes_q4,
                            quant_rows_to_f32 },
    },
};
