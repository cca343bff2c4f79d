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
 *        y[r] = s[r] * sum_c q[r][c] * x[c]   (x float32: the
 *        dequantisation is exact; only W is rounded).
 *  Q4    rows of ceil(cols / 32) blocks of 18 bytes (struct q4_block): an
 *        IEEE binary16 scale d and 32 four-bit codes u in [0, 15]:
 *            w[r][32 b + j] = d * (u_j - 8),
 *        byte j of qs holds element j (low nibble) and element j + 16 (high
 *        nibble).  d = m / -8 where m is the element of largest magnitude
 *        in the group (so m maps to code 0 exactly), u = clamp(round(w / d)
 *        + 8, 0, 15) computed with d rounded to binary16.  Columns past cols
 *        (last block) are zero weights.  kmat.scales is NULL.
 *        The product quantises x per block of 32 the same way ggml's Q8_0
 *        does (dx = max |x| / 127, qx = round(x / dx) in [-127, 127]):
 *            y[r] = sum_b d_b * dx_b * sum_j (u_j - 8) * qx_j,
 *        the inner sum an exact integer, so every implementation gives the
 *        same value up to the float32 sum over blocks.
 */
#ifndef RWKV_QUANT_H
#define RWKV_QUANT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine/kernels.h"

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

static inline float quant_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;

    memcpy(&f, &u, 4);
    return f;
}

/* IEEE binary16 -> float32, exact (subnormals, inf, nan). */
static inline float quant_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, u;
    float f;

    if (exp == 0) {
        if (mant == 0) {
            u = sign;
        } else {
            exp = 127 - 15 + 1;
            while (!(mant & 0x400)) {
                mant <<= 1;
                exp--;
            }
            u = sign | (exp << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000 | (mant << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    memcpy(&f, &u, 4);
    return f;
}

/* Packers and sizes shared by every kernel set (kernel_format.pack/bytes). */
int quant_pack_bf16(struct kmat *m, const float *src);
int quant_pack_f16(struct kmat *m, const float *src);
int quant_pack_q8(struct kmat *m, const float *src);
int quant_pack_q4(struct kmat *m, const float *src);
size_t quant_bytes_half(const struct kmat *W);
size_t quant_bytes_q8(const struct kmat *W);
size_t quant_bytes_q4(const struct kmat *W);

uint16_t quant_f32_to_f16(float f);
uint16_t quant_f32_to_bf16(float f);

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

/* ---- conversion cache ---------------------------------------------------
 * MODEL.rwkvcache-DTYPE beside the model holds the converted matrices of
 * one model for one format, so a second start maps them instead of
 * converting.  The header records the source file's size, mtime and the
 * model fingerprint; any difference (or a version bump) makes it stale and
 * it is rebuilt.  Layout: a 4096-byte header, then each matrix's data and
 * scales, 64-byte aligned, in the order the model prepares them. */
#define QUANT_CACHE_VERSION 1

typedef struct quant_cache quant_cache;

/* Opens (or prepares to write) the cache for model_path and dtype.  NULL
 * when caching is impossible (not an error: conversion just happens). */
quant_cache *quant_cache_open(const char *model_path, enum rwkv_dtype dtype,
                              uint64_t fingerprint);
/* Takes matrix number i from a valid cache (fills m, data mapped in place):
 * 1; or 0 when the cache is being written (m is then converted by the
 * caller and handed to quant_cache_put). */
int quant_cache_get(quant_cache *c, struct kmat *m, int rows, int cols);
void quant_cache_put(quant_cache *c, const struct kmat *m);
/* Writes the cache file if it was being built; unmaps nothing that a kmat
 * still uses (the mapping lives until quant_cache_close). */
void quant_cache_commit(quant_cache *c);
void quant_cache_close(quant_cache *c);

#endif
