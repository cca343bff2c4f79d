/*
 * quant.h - the packed weight formats, their exact dequantisation, and the
 * conversion cache.  Internal to engine/.
 *
 * Every kernel set (kernels.c, quant.c, kernels_avx2.c, kernels_avx512.c)
 * computes, for each format, the value defined here, up to float32
 * summation order:
 *
 *  BF16  w = bf16 bits << 16 as float32 (exact).  Stored rows of cols
 *        uint16; a bf16 file is used in place.
 *  F16   w = IEEE binary16 -> float32 (exact).
 *  Q8    int8 q[rows][cols], float s[rows] (kmat.scales):
 *            w[r][c] = s[r] * q[r][c],   q in [-127, 127],
 *        s[r] = max_c |W[r][c]| / 127, q = round-to-nearest(W / s).
 *        The product quantises x per block of 32 as Q4's does (below):
 *            y[r] = s[r] * sum_b dx_b * sum_j q[r][32 b + j] * qx_bj,
 *        the inner sums exact integers.  Before issue 19 it took x in
 *        float32 (only W rounded); the integer form reads int8 weights
 *        with integer dot products (AVX-512 VNNI vpdpbusd, AVX2
 *        vpmaddubsw) instead of widening each to float, and rounds x
 *        about as much as W (tests/test_quant.c measures both).
 *  Q4    rows of ceil(cols / 32) blocks of 18 bytes (struct q4_block): an
 *        IEEE binary16 scale d and 32 four-bit codes u in [0, 15]:
 *            w[r][32 b + j] = d * (u_j - 8),
 *        byte j of qs holds element j (low nibble) and element j + 16 (high
 *        nibble).  d is searched per block (quant.c, q4_block_scale): for
 *        each scale mapping m, the element of largest magnitude, to
 *        -(8 + k / 2), k in [-2, 2], the least-squares scale of the
 *        codes it gives; the one of least squared error wins (k = 0 alone
 *        is ggml's Q4_0, d = m / -8).  u = clamp(round(w / d) + 8, 0, 15)
 *        computed with d rounded to binary16.  Columns past cols
 *        (last block) are zero weights.  kmat.scales is NULL.
 *        The product quantises x per block of 32 the same way ggml's Q8_0
 *        does: dx = max |x| / 127 and qx = round(x * (127 / max |x|)) in
 *        [-127, 127] (that form in every kernel, ties to even):
 *            y[r] = sum_b d_b * dx_b * sum_j (u_j - 8) * qx_j,
 *        the inner sum an exact integer, so every implementation gives the
 *        same value up to the float32 sum over blocks.
 *
 * Sequence mode (kernel_format.matmul_rows, several tokens at once) gives
 * every token the matrix-vector value above (Q8 and Q4: each token's x
 * quantised per block of 32, struct quant_xq), each block's sum an exact
 * integer, so kernel sets, and a prompt against the same tokens fed one at
 * a time, agree up to the float32 sum over blocks.
 */
#ifndef RWKV_QUANT_H
#define RWKV_QUANT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine/base/half.h"
#include "engine/kernels/matrix.h"

#define QUANT_Q4_GROUP 32

struct q4_block {
    uint16_t d;                 /* binary16 scale */
    uint8_t qs[QUANT_Q4_GROUP / 2];
};

/* x quantised for the Q4 product: one int8 block per 32 columns. */
struct quant_xq {
    int cols, n_blocks;
    int8_t *q;                  /* n_blocks * 32, zero past cols */
    float *d;                   /* n_blocks scales */
    int32_t *sum;               /* n_blocks sums of q (for the -8 offset) */
};

/* Packers and sizes shared by every kernel set (kernel_format.pack/bytes). */
int quant_pack_bf16(struct kmat *m, const float *src);
int quant_pack_f16(struct kmat *m, const float *src);
int quant_pack_q8(struct kmat *m, const float *src);
int quant_pack_q4(struct kmat *m, const float *src);
size_t quant_bytes_half(const struct kmat *W);
size_t quant_bytes_q8(const struct kmat *W);
size_t quant_bytes_q4(const struct kmat *W);

/* Version of the packed layouts above (and of struct q4_block): bump it
 * whenever a format's bytes change, so conversion caches written by an
 * older engine are rebuilt rather than misread.  (Q4's scale search of
 * issue 19 changed the bytes, not the layout: kmat_pack_signature, part
 * of every cache's key, changed with it, so q4 caches made before it are
 * rebuilt; bumping this would also void the fuzz regression inputs.) */
#define QUANT_LAYOUT_VERSION 1

/* Bytes of one packed row of format t with cols columns (kmat.data is
 * rows of this size), and float scales per row (kmat.scales: 1 for Q8). */
size_t quant_row_bytes(enum rwkv_dtype t, int cols);
int quant_row_scales(enum rwkv_dtype t);

/* Blocks per Q4 row. */
static inline int quant_q4_blocks(int cols)
{
    return (cols + QUANT_Q4_GROUP - 1) / QUANT_Q4_GROUP;
}

/* Row r of W dequantised into dst[cols] (any format; the reference the
 * tests compare kernels with). */
void quant_dequant_row(const struct kmat *W, int r, float *dst);
/* Rows [r0, r1) dequantised to out (kernel_format.rows_to_f32: sequence
 * mode multiplies them with sgemm). */
void quant_rows_to_f32(const struct kmat *W, int r0, int r1, float *out);

/* Quantises x for the Q4 product (see above); xq buffers sized by
 * quant_xq_alloc.  0, or -1 when out of memory. */
int quant_xq_alloc(struct quant_xq *xq, int cols);
void quant_xq_free(struct quant_xq *xq);
void quant_xq_fill(struct quant_xq *xq, const float *x);

#endif
