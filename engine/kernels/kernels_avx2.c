/*
 * kernels_avx2.c - row kernels for x86-64 CPUs with AVX2, FMA and F16C
 * (Haswell and later, Zen).  Compiled with -mavx2 -mfma -mf16c in its own
 * library and chosen at run time (kernels_impl.h); the formats and the
 * exact value each kernel computes are defined in quant.h.
 *
 * Generation reads every weight once per token, so these kernels are built
 * to stream memory: one row at a time (a single stream per thread for the
 * hardware prefetcher, which four interleaved rows measurably confused),
 * several accumulators, and a handful of instructions per weight (one
 * widening load, one shift or convert, one FMA).
 */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kernels/kernels_impl.h"
#include "engine/kernels/quant.h"

static int avx2_usable(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Four horizontal sums at once: lane i of the result is the sum of v_i. */
static inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d)
{
    __m256 ab = _mm256_hadd_ps(a, b), cd = _mm256_hadd_ps(c, d);
    __m256 s = _mm256_hadd_ps(ab, cd);

    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

/* ---- BF16 ----------------------------------------------------------------
 * 16 weights per load: the even elements become floats by a shift left of
 * 16, the odd ones by masking the low half, so x is first split into its
 * even and odd elements (per 16-column chunk) to match. */

static inline __m256 bf16_even(__m256i v)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

static inline __m256 bf16_odd(__m256i v)
{
    return _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int)0xffff0000u)));
}

/* xs[32 k .. 32 k + 7] = even elements of chunk k, [+8 .. +15] the odd. */
static void split_even_odd(const float *x, int chunks, float *xs)
{
    for (int k = 0; k < chunks; k++) {
        const float *xc = x + 16 * k;
        __m256 a = _mm256_loadu_ps(xc), b = _mm256_loadu_ps(xc + 8);
        /* a = x0..x7, b = x8..x15 -> even x0 x2 .. x14, odd x1 x3 .. x15 */
        __m256 ev = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
        __m256 od = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
        /* shuffle_ps works per 128-bit lane: fix the order of the 64-bit
         * pieces (a0a2 b0b2 a4a6 b4b6 -> a0a2 a4a6 b0b2 b4b6). */
        ev = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ev), _MM_SHUFFLE(3, 1, 2, 0)));
        od = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(od), _MM_SHUFFLE(3, 1, 2, 0)));
        _mm256_storeu_ps(xs + 16 * k, ev);
        _mm256_storeu_ps(xs + 16 * k + 8, od);
    }
}

#define X_STACK 4096

/* How far ahead of the loads the rows are prefetched: one row at a time
 * keeps a single stream per thread for the hardware prefetcher, and these
 * hints run 2048 bytes ahead of it (as in kernels_avx512.c: at 512 they
 * came too late to cover the memory latency). */
#define MATVEC_PREFETCH 2048

static void bf16_matvec_rows(const struct kmat *W, const float *x, float *y, int r0, int r1)
{
    const int cols = W->cols, chunks = cols / 16, tail = chunks * 16;
    float stack[X_STACK], *xs = tail <= X_STACK ? stack : malloc((size_t)tail * 4);
    const uint16_t *base = W->data;

    if (!xs) {
        /* No memory for the split copy: the portable kernel needs none. */
        kernel_set_quant.format[RWKV_DTYPE_BF16].matvec_rows(W, x, y, r0, r1);
        return;
    }
    split_even_odd(x, chunks, xs);
    for (int r = r0; r < r1; r++) {
        const uint16_t *w = base + (size_t)r * cols;
        __m256 a0 = _mm256_setzero_ps(), b0 = a0, a1 = a0, b1 = a0;
        int k = 0;
        float s;

        for (; k + 2 <= chunks; k += 2) {
            __m256i v0 = _mm256_loadu_si256((const __m256i *)(w + 16 * k));
            __m256i v1 = _mm256_loadu_si256((const __m256i *)(w + 16 * k + 16));

            _mm_prefetch((const char *)(w + 16 * k) + MATVEC_PREFETCH, _MM_HINT_T0);
            a0 = _mm256_fmadd_ps(bf16_even(v0), _mm256_loadu_ps(xs + 16 * k), a0);
            b0 = _mm256_fmadd_ps(bf16_odd(v0), _mm256_loadu_ps(xs + 16 * k + 8), b0);
            a1 = _mm256_fmadd_ps(bf16_even(v1), _mm256_loadu_ps(xs + 16 * k + 16), a1);
            b1 = _mm256_fmadd_ps(bf16_odd(v1), _mm256_loadu_ps(xs + 16 * k + 24), b1);
        }
        if (k < chunks) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(w + 16 * k));

            a0 = _mm256_fmadd_ps(bf16_even(v), _mm256_loadu_ps(xs + 16 * k), a0);
            b0 = _mm256_fmadd_ps(bf16_odd(v), _mm256_loadu_ps(xs + 16 * k + 8), b0);
        }
        s = hsum(_mm256_add_ps(_mm256_add_ps(a0, b0), _mm256_add_ps(a1, b1)));
        for (int c = tail; c < cols; c++) {
            s += half_bf16_to_f32(w[c]) * x[c];
        }
        y[r] = s;
    }
    if (xs != stack) {
        free(xs);
    }
}

/* Rows [r0, r1) times G <= 2 vectors x[g] (xs[g] their split copies):
 * each weight load widened once for both, every y[g][r] the same sums in
 * the same order as bf16_matvec_rows (two vectors' eight accumulators and
 * the four widened weights fill the sixteen registers). */
static inline __attribute__((always_inline)) void
bf16_rows_multi(const struct kmat *W, const float *const *x, const float *const *xs,
                float *const *y, const int G, int r0, int r1)
{
    const int cols = W->cols, chunks = cols / 16, tail = chunks * 16;
    const uint16_t *base = W->data;

    for (int r = r0; r < r1; r++) {
        const uint16_t *w = base + (size_t)r * cols;
        __m256 a0[2], b0[2], a1[2], b1[2];
        int k = 0;

#pragma GCC unroll 4
        for (int g = 0; g < G; g++) {
            a0[g] = b0[g] = a1[g] = b1[g] = _mm256_setzero_ps();
        }
        for (; k + 2 <= chunks; k += 2) {
            __m256i v0 = _mm256_loadu_si256((const __m256i *)(w + 16 * k));
            __m256i v1 = _mm256_loadu_si256((const __m256i *)(w + 16 * k + 16));
            __m256 e0 = bf16_even(v0), o0 = bf16_odd(v0), e1 = bf16_even(v1), o1 = bf16_odd(v1);

            _mm_prefetch((const char *)(w + 16 * k) + MATVEC_PREFETCH, _MM_HINT_T0);
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) {
                a0[g] = _mm256_fmadd_ps(e0, _mm256_loadu_ps(xs[g] + 16 * k), a0[g]);
                b0[g] = _mm256_fmadd_ps(o0, _mm256_loadu_ps(xs[g] + 16 * k + 8), b0[g]);
                a1[g] = _mm256_fmadd_ps(e1, _mm256_loadu_ps(xs[g] + 16 * k + 16), a1[g]);
                b1[g] = _mm256_fmadd_ps(o1, _mm256_loadu_ps(xs[g] + 16 * k + 24), b1[g]);
            }
        }
        if (k < chunks) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(w + 16 * k));
            __m256 e = bf16_even(v), o = bf16_odd(v);

#pragma GCC unroll 4
            for (int g = 0; g < G; g++) {
                a0[g] = _mm256_fmadd_ps(e, _mm256_loadu_ps(xs[g] + 16 * k), a0[g]);
                b0[g] = _mm256_fmadd_ps(o, _mm256_loadu_ps(xs[g] + 16 * k + 8), b0[g]);
            }
        }
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) {
            float s = hsum(_mm256_add_ps(_mm256_add_ps(a0[g], b0[g]), _mm256_add_ps(a1[g], b1[g])));

            for (int c = tail; c < cols; c++) {
                s += half_bf16_to_f32(w[c]) * x[g][c];
            }
            y[g][r] = s;
        }
    }
}

/* bf16_matvec_rows for T vectors, two at a time (kernel_format.matvec_multi_rows). */
static void bf16_matvec_multi_rows(const struct kmat *W, const float *X, int T, float *Y, int r0,
                                   int r1)
{
    const int cols = W->cols, chunks = cols / 16, tail = chunks * 16;
    float stack[2 * X_STACK], *xs = tail <= X_STACK ? stack : malloc((size_t)tail * 8);

    if (!xs) {
        for (int t = 0; t < T; t++) {
            bf16_matvec_rows(W, X + (size_t)t * cols, Y + (size_t)t * W->rows, r0, r1);
        }
        return;
    }
    for (int t0 = 0; t0 < T; t0 += 2) {
        int G = T - t0 < 2 ? T - t0 : 2;
        const float *x[2], *xsg[2];
        float *y[2];

        for (int g = 0; g < G; g++) {
            x[g] = X + (size_t)(t0 + g) * cols;
            xsg[g] = xs + (size_t)g * tail;
            y[g] = Y + (size_t)(t0 + g) * W->rows;
            split_even_odd(x[g], chunks, xs + (size_t)g * tail);
        }
        if (G == 2) {
            bf16_rows_multi(W, x, xsg, y, 2, r0, r1);
        } else {
            bf16_rows_multi(W, x, xsg, y, 1, r0, r1);
        }
    }
    if (xs != stack) {
        free(xs);
    }
}

/* ---- F16 (F16C converts 8 at a time) ------------------------------------- */

static void f16_matvec_rows(const struct kmat *W, const float *x, float *y, int r0, int r1)
{
    const int cols = W->cols, tail = cols & ~7;
    const uint16_t *base = W->data;

    for (int r = r0; r < r1; r++) {
        const uint16_t *w = base + (size_t)r * cols;
        __m256 a = _mm256_setzero_ps(), b = a;
        int c = 0;
        float s;

        for (; c + 16 <= tail; c += 16) {
            _mm_prefetch((const char *)(w + c) + MATVEC_PREFETCH, _MM_HINT_T0);
            a = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + c))),
                                _mm256_loadu_ps(x + c), a);
            b = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + c + 8))),
                                _mm256_loadu_ps(x + c + 8), b);
        }
        for (; c < tail; c += 8) {
            a = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + c))),
                                _mm256_loadu_ps(x + c), a);
        }
        s = hsum(_mm256_add_ps(a, b));
        for (; c < cols; c++) {
            s += half_f16_to_f32(w[c]) * x[c];
        }
        y[r] = s;
    }
}

/* ---- Q4: 4-bit codes times int8 activation blocks ------------------------ */

/* quant_xq_fill with AVX2: dx = max|x| / 127, qx = round(x / dx). */
static void xq_fill(const float *x, int cols, int n_blocks, int8_t *q, float *d, int32_t *sum)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));

    for (int b = 0; b < n_blocks; b++) {
        const float *xb = x + 32 * b;
        float tmp[32];

        if (32 * b + 32 > cols) {
            int n = cols - 32 * b;

            for (int j = 0; j < 32; j++) {
                tmp[j] = j < n ? xb[j] : 0.0f;
            }
            xb = tmp;
        }
        __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
        __m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v0, absmask), _mm256_and_ps(v1, absmask)),
                                 _mm256_max_ps(_mm256_and_ps(v2, absmask), _mm256_and_ps(v3, absmask)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));

        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        __m256 inv = _mm256_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);

        d[b] = amax / 127.0f;
        /* cvtps rounds to nearest even, as lrintf does */
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, inv));
        __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, inv));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, inv));
        __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, inv));
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));

        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
        sum[b] = _mm_cvtsi128_si32(s4);
        /* pack to int8 in element order */
        __m256i p01 = _mm256_packs_epi32(i0, i1), p23 = _mm256_packs_epi32(i2, i3);
        __m256i p = _mm256_packs_epi16(p01, p23);

        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + 32 * b), p);
    }
}

/* Eight int8 weights widened to float (exact): Q8's rows_to_f32. */
static inline __m256 q8_load8(const int8_t *p)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

/* ---- Q8 matrix-vector products: int8 weights times int8 activations -----
 * quant.h defines the value: x quantised per block of 32 (xq_fill), an
 * exact integer product per block, the row's scale s[r] at the end.  A
 * block is one 256-bit step: the weights' magnitudes times the activations
 * carrying the weights' signs (vpsignb) through vpmaddubsw (at most
 * 2 * 127 * 127 per pair: no saturation), then vpmaddwd to eight int32
 * lanes of four products each, scaled by the block's dx.  Every y[r] is, in
 * float, s[r] times the sum of the lanes of two accumulators (even and odd
 * blocks) after all blocks in order, the same for one vector as for four.
 * A row's last, partial block is read from a zero-padded copy; the
 * activations there are zero. */
struct q8_xv {
    int8_t *q;                  /* [blocks][32] */
    float *dx;                  /* [blocks] */
};

/* Bytes of a q8_xv's arrays for nb blocks (32-byte aligned pieces). */
static size_t q8_xv_bytes(int nb)
{
    return (size_t)nb * 32 + (((size_t)nb * sizeof(float) + 31) & ~(size_t)31);
}

/* v's arrays in buf (32-byte aligned, q8_xv_bytes(nb)) from x[cols]. */
static void q8_xv_fill(struct q8_xv *v, unsigned char *buf, const float *x, int cols, int nb)
{
    int32_t sum[1];

    v->q = (int8_t *)buf;
    v->dx = (float *)(buf + (size_t)nb * 32);
    for (int b = 0; b < nb; b++) {
        xq_fill(x + 32 * b, cols - 32 * b, 1, v->q + 32 * b, v->dx + b, sum);
    }
}

/* Block B's step (weights W) for vector g into accumulator A. */
#define Q8_XV_STEP(A, W, B) \
    A[g] = _mm256_fmadd_ps( \
        _mm256_cvtepi32_ps(_mm256_madd_epi16( \
            _mm256_maddubs_epi16(_mm256_sign_epi8(W, W), \
                                 _mm256_sign_epi8(_mm256_load_si256( \
                                                      (const __m256i *)(xv[g].q + 32 * (B))), \
                                                  W)), \
            _mm256_set1_epi16(1))), \
        _mm256_broadcast_ss(xv[g].dx + (B)), A[g])

/* y[g][r] for G vectors xv[g] (G constant where called), rows [r0, r1):
 * each block's weights loaded once for all G. */
static inline __attribute__((always_inline)) void
q8_xv_rows(const struct kmat *W, const struct q8_xv *xv, float *const *y, const int G, int r0,
           int r1)
{
    const int cols = W->cols, nb = quant_q4_blocks(cols), full = cols / 32;
    const int8_t *base = W->data;

    for (int r = r0; r < r1; r++) {
        const int8_t *w = base + (size_t)r * cols;
        __m256 a[4], b[4];
        int k = 0;

#pragma GCC unroll 4
        for (int g = 0; g < G; g++) {
            a[g] = b[g] = _mm256_setzero_ps();
        }
        for (; k + 2 <= full; k += 2) {
            __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + 32 * k));
            __m256i w1 = _mm256_loadu_si256((const __m256i *)(w + 32 * k + 32));

            _mm_prefetch((const char *)(w + 32 * k) + MATVEC_PREFETCH, _MM_HINT_T0);
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) {
                Q8_XV_STEP(a, w0, k);
                Q8_XV_STEP(b, w1, k + 1);
            }
        }
        for (; k < nb; k++) {
            int8_t pad[32] __attribute__((aligned(32)));
            __m256i wk;

            if (k < full) {
                wk = _mm256_loadu_si256((const __m256i *)(w + 32 * k));
            } else {
                memset(pad, 0, sizeof pad);
                memcpy(pad, w + 32 * k, (size_t)(cols - 32 * k));
                wk = _mm256_load_si256((const __m256i *)pad);
            }
            if (k & 1) {
#pragma GCC unroll 4
                for (int g = 0; g < G; g++) {
                    Q8_XV_STEP(b, wk, k);
                }
            } else {
#pragma GCC unroll 4
                for (int g = 0; g < G; g++) {
                    Q8_XV_STEP(a, wk, k);
                }
            }
        }
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) {
            y[g][r] = W->scales[r] * hsum(_mm256_add_ps(a[g], b[g]));
        }
    }
}

static void q8_matvec_rows(const struct kmat *W, const float *x, float *y, int r0, int r1)
{
    const int nb = quant_q4_blocks(W->cols);
    unsigned char stack[(X_STACK / 32) * 36 + 32] __attribute__((aligned(32)));
    unsigned char *buf = stack;
    struct q8_xv xv;

    if (q8_xv_bytes(nb) > sizeof stack) {
        buf = aligned_alloc(32, q8_xv_bytes(nb));
        if (!buf) {
            kernel_set_quant.format[RWKV_DTYPE_Q8].matvec_rows(W, x, y, r0, r1);
            return;
        }
    }
    q8_xv_fill(&xv, buf, x, W->cols, nb);
    q8_xv_rows(W, &xv, &y, 1, r0, r1);
    if (buf != stack) {
        free(buf);
    }
}

/* kernel_format.matvec_multi_rows for Q8: four vectors at a time through
 * the same steps as q8_matvec_rows (so the same sums, bit for bit). */
static void q8_matvec_multi_rows(const struct kmat *W, const float *X, int T, float *Y, int r0,
                                 int r1)
{
    const int nb = quant_q4_blocks(W->cols);
    const size_t each = q8_xv_bytes(nb);
    unsigned char *buf = aligned_alloc(32, 4 * each);

    if (!buf) {
        for (int t = 0; t < T; t++) {
            q8_matvec_rows(W, X + (size_t)t * W->cols, Y + (size_t)t * W->rows, r0, r1);
        }
        return;
    }
    for (int t0 = 0; t0 < T; t0 += 4) {
        int G = T - t0 < 4 ? T - t0 : 4;
        struct q8_xv xv[4];
        float *y[4];

        for (int g = 0; g < G; g++) {
            y[g] = Y + (size_t)(t0 + g) * W->rows;
            q8_xv_fill(&xv[g], buf + (size_t)g * each, X + (size_t)(t0 + g) * W->cols, W->cols,
                       nb);
        }
        switch (G) {
        case 1:
            q8_xv_rows(W, xv, y, 1, r0, r1);
            break;
        case 2:
            q8_xv_rows(W, xv, y, 2, r0, r1);
            break;
        case 3:
            q8_xv_rows(W, xv, y, 3, r0, r1);
            break;
        default:
            q8_xv_rows(W, xv, y, 4, r0, r1);
            break;
        }
    }
    free(buf);
}

/* The 32 codes of a block as unsigned bytes, element order. */
static inline __m256i q4_codes(const struct q4_block *b)
{
    __m128i raw = _mm_loadu_si128((const __m128i *)b->qs);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);

    return _mm256_and_si256(both, _mm256_set1_epi8(15));
}

/* sum_j u_j * qx_j as 8 int32 lanes (u in [0,15]: maddubs cannot saturate). */
static inline __m256i q4_dot(__m256i u, __m256i qx)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, qx), _mm256_set1_epi16(1));
}

/* ---- Q4 matrix-vector products: activations laid out as the codes unpack --
 * A pair of blocks' codes unpacks in a few instructions to two registers,
 * [b low nibbles | b+1 low] and [b high | b+1 high] (16 bytes each), so
 * each vector's int8 activation blocks (xq_fill's values) are stored in
 * that order too (struct q4_xv), with, per int32 lane of the product,
 * -8 times the sum of the lane's eight activations: added to the lane's
 * products, it makes each lane the exact integer sum of (u - 8) qx over
 * its eight elements (four from each register), and leaves no per-block
 * correction and no scalar work in the loop.  A lane's scale is its
 * block's d (from the weights, lanes 0-3 block b, 4-7 block b+1) times
 * its block's dx (stored per lane).  Every y[r] is, in float, the sum over
 * lanes and pairs of scale * lane, two accumulators (even and odd pairs),
 * then an odd last block's product: the same for one vector as for four. */
struct q4_xv {
    int pairs;                  /* blocks / 2 */
    int8_t *q;                  /* [pairs][64], then an odd last block's 32 in element order */
    int32_t *bias;              /* [pairs][8] */
    float *dx;                  /* [pairs][8] */
    float tail_dx;              /* the odd last block's dx */
    int32_t tail_sum;           /* ... and the sum of its activations */
};

/* Bytes of a q4_xv's arrays for nb blocks (32-byte aligned pieces). */
static size_t q4_xv_bytes(int nb)
{
    return (size_t)(nb / 2) * (64 + 32 + 32) + 32;
}

/* The pair's int32 lanes of u . q (u unsigned codes, q signed), both
 * registers of the pair: the four-product sums of lo and hi added as int16
 * (at most 2 * 4 * 15 * 127 = 15240: no overflow), then widened. */
static inline __m256i q4_pair_dot(__m256i lo, __m256i hi, __m256i q0, __m256i q1)
{
    return _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo, q0),
                                              _mm256_maddubs_epi16(hi, q1)),
                             _mm256_set1_epi16(1));
}

/* v's arrays in buf (32-byte aligned, q4_xv_bytes(nb)) from x[cols]. */
static void q4_xv_fill(struct q4_xv *v, unsigned char *buf, const float *x, int cols, int nb)
{
    const __m256i one = _mm256_set1_epi8(1);
    float d[2];
    int32_t s[2];

    v->pairs = nb / 2;
    v->q = (int8_t *)buf;
    v->bias = (int32_t *)(buf + (size_t)v->pairs * 64 + 32);
    v->dx = (float *)(buf + (size_t)v->pairs * 96 + 32);
    for (int p = 0; p < v->pairs; p++) {
        int8_t *q = v->q + 64 * p;
        __m256i a, b, q0, q1, lane;

        xq_fill(x + 64 * p, cols - 64 * p, 2, q, d, s);
        /* element order [b 0-15 | b 16-31 | b+1 0-15 | b+1 16-31] to
         * [b 0-15 | b+1 0-15] [b 16-31 | b+1 16-31] */
        a = _mm256_load_si256((const __m256i *)q);
        b = _mm256_load_si256((const __m256i *)(q + 32));
        q0 = _mm256_permute2x128_si256(a, b, 0x20);
        q1 = _mm256_permute2x128_si256(a, b, 0x31);
        _mm256_store_si256((__m256i *)q, q0);
        _mm256_store_si256((__m256i *)(q + 32), q1);
        lane = q4_pair_dot(one, one, q0, q1);
        _mm256_store_si256((__m256i *)(v->bias + 8 * p),
                           _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(lane, 3)));
        _mm256_store_ps(v->dx + 8 * p, _mm256_set_m128(_mm_set1_ps(d[1]), _mm_set1_ps(d[0])));
    }
    if (nb & 1) {
        xq_fill(x + 64 * v->pairs, cols - 64 * v->pairs, 1, v->q + 64 * v->pairs, &v->tail_dx,
                &v->tail_sum);
    }
}

/* The codes of blocks b[0], b[1] as *lo = [b0 low | b1 low], *hi =
 * [b0 high | b1 high] (low nibbles: elements 0-15, high: 16-31). */
static inline void q4_codes_pair(const struct q4_block *b, __m256i *lo, __m256i *hi)
{
    __m256i v = _mm256_loadu2_m128i((const __m128i *)b[1].qs, (const __m128i *)b[0].qs);
    const __m256i m = _mm256_set1_epi8(15);

    *lo = _mm256_and_si256(v, m);
    *hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m);
}

/* The scales d of blocks b[0], b[1] in their lanes (0-3, 4-7): one 32-byte
 * load covers both (d of b[1] is bytes 18-19). */
static inline __m256 q4_d_pair(const struct q4_block *b)
{
    const __m256i pick = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
                                          2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
    __m256i h = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)b), pick);

    h = _mm256_permute4x64_epi64(h, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_cvtph_ps(_mm256_castsi256_si128(h));
}

/* The odd last block b of a row for v: d dx sum_j (u_j - 8) qx_j. */
static inline float q4_tail(const struct q4_block *b, const struct q4_xv *v)
{
    __m256i q = _mm256_load_si256((const __m256i *)(v->q + 64 * v->pairs));
    __m256i p = q4_dot(q4_codes(b), q);
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));

    h = _mm_add_epi32(h, _mm_unpackhi_epi64(h, h));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 1));
    return _cvtsh_ss(b->d) * v->tail_dx * (float)(_mm_cvtsi128_si32(h) - 8 * v->tail_sum);
}

/* One pair P's step for vector g into accumulator A. */
#define Q4_XV_STEP(A, LO, HI, D, P) \
    A = _mm256_fmadd_ps( \
        _mm256_cvtepi32_ps(_mm256_add_epi32( \
            q4_pair_dot(LO, HI, _mm256_load_si256((const __m256i *)(xv[g].q + 64 * (P))), \
                        _mm256_load_si256((const __m256i *)(xv[g].q + 64 * (P) + 32))), \
            _mm256_load_si256((const __m256i *)(xv[g].bias + 8 * (P))))), \
        _mm256_mul_ps(D, _mm256_load_ps(xv[g].dx + 8 * (P))), A)

/* y[g][r] for G <= 4 vectors xv[g] (G constant where called), rows
 * [r0, r1): each pair of blocks' codes and scales unpacked once for all
 * G, each vector's sums in the same order. */
static inline __attribute__((always_inline)) void
q4_xv_rows(const struct q4_block *base, int nb, const struct q4_xv *xv, float *const *y,
           const int G, int r0, int r1)
{
    const int pairs = nb / 2;

    for (int r = r0; r < r1; r++) {
        const struct q4_block *bl = base + (size_t)r * nb;
        __m256 a0[4], a1[4];
        int p = 0;

#pragma GCC unroll 4
        for (int g = 0; g < G; g++) {
            a0[g] = a1[g] = _mm256_setzero_ps();
        }
        for (; p + 2 <= pairs; p += 2) {
            const struct q4_block *k = bl + 2 * p;
            __m256i lo0, hi0, lo1, hi1;
            __m256 d01 = q4_d_pair(k), d23 = q4_d_pair(k + 2);

            _mm_prefetch((const char *)k + MATVEC_PREFETCH, _MM_HINT_T0);
            q4_codes_pair(k, &lo0, &hi0);
            q4_codes_pair(k + 2, &lo1, &hi1);
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) {
                Q4_XV_STEP(a0[g], lo0, hi0, d01, p);
                Q4_XV_STEP(a1[g], lo1, hi1, d23, p + 1);
            }
        }
        if (p < pairs) {
            const struct q4_block *k = bl + 2 * p;
            __m256i lo0, hi0;
            __m256 d01 = q4_d_pair(k);

            q4_codes_pair(k, &lo0, &hi0);
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) {
                Q4_XV_STEP(a0[g], lo0, hi0, d01, p);
            }
        }
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) {
            float s = hsum(_mm256_add_ps(a0[g], a1[g]));

            y[g][r] = (nb & 1) ? s + q4_tail(&bl[nb - 1], &xv[g]) : s;
        }
    }
}

static void q4_matvec_rows(const struct kmat *W, const float *x, float *y, int r0, int r1)
{
    const int nb = quant_q4_blocks(W->cols);
    unsigned char stack[(X_STACK / 64) * 128 + 32] __attribute__((aligned(32)));
    unsigned char *buf = stack;
    struct q4_xv xv;

    if (q4_xv_bytes(nb) > sizeof stack) {
        buf = aligned_alloc(32, (q4_xv_bytes(nb) + 31) & ~(size_t)31);
        if (!buf) {
            kernel_set_quant.format[RWKV_DTYPE_Q4].matvec_rows(W, x, y, r0, r1);
            return;
        }
    }
    q4_xv_fill(&xv, buf, x, W->cols, nb);
    q4_xv_rows(W->data, nb, &xv, &y, 1, r0, r1);
    if (buf != stack) {
        free(buf);
    }
}

/* kernel_format.matvec_multi_rows for Q4: four vectors at a time through
 * the same steps as q4_matvec_rows (so the same sums, bit for bit). */
static void q4_matvec_multi_rows(const struct kmat *W, const float *X, int T, float *Y, int r0,
                                 int r1)
{
    const int nb = quant_q4_blocks(W->cols);
    const size_t each = q4_xv_bytes(nb);
    unsigned char *buf = aligned_alloc(32, 4 * each);

    if (!buf) {
        for (int t = 0; t < T; t++) {
            q4_matvec_rows(W, X + (size_t)t * W->cols, Y + (size_t)t * W->rows, r0, r1);
        }
        return;
    }
    for (int t0 = 0; t0 < T; t0 += 4) {
        int G = T - t0 < 4 ? T - t0 : 4;
        struct q4_xv xv[4];
        float *y[4];

        for (int g = 0; g < G; g++) {
            y[g] = Y + (size_t)(t0 + g) * W->rows;
            q4_xv_fill(&xv[g], buf + (size_t)g * each, X + (size_t)(t0 + g) * W->cols, W->cols,
                       nb);
        }
        switch (G) {
        case 1:
            q4_xv_rows(W->data, nb, xv, y, 1, r0, r1);
            break;
        case 2:
            q4_xv_rows(W->data, nb, xv, y, 2, r0, r1);
            break;
        case 3:
            q4_xv_rows(W->data, nb, xv, y, 3, r0, r1);
            break;
        default:
            q4_xv_rows(W->data, nb, xv, y, 4, r0, r1);
            break;
        }
    }
    free(buf);
}

/* ---- Q8 sequence mode, packed 16-bit tiles ---------------------------------
 * quant.h defines the value: each token's x quantised per block of 32
 * (xq_fill), an exact integer product per block, the block's dx, the row's
 * scale s[r] at the end.  Both operands are signed (weights and activations
 * in [-127, 127]), so the Q4 tiles' vpmaddubsw on unsigned activations would
 * saturate (2 * 255 * 127 per pair); the weights' signs moved onto the
 * activations (vpsignb) cost an instruction per row-token pair and their
 * pairs (up to 2 * 127 * 127) cannot be summed in 16 bits.  Here both sides
 * are widened to int16 once instead: a tile of 8 rows is unpacked once per
 * call into wt[nb][16][8][2] (block, pair of columns, row), the tokens once
 * per chunk (p8_seq_fill, on the pool) into [group of P8_TOK][nb][token][32],
 * and one vpmaddwd multiplies 8 rows' column pair by one token's broadcast
 * pair: 16 per block and token, summed in int32 (at most 32 * 127 * 127)
 * into one block product per row and token before any float work. */

#define P8_ROWS 8
#define P8_TOK 4

struct p8_x {
    int nb;
    int16_t *q;                 /* [groups][nb][P8_TOK][32] */
    float *d;                   /* [groups][nb][P8_TOK] */
};

/* Blocks of 32 activations in the buffer of T tokens in groups of tok
 * (the p8_x and pt_x layouts: a last, partial group takes a whole group). */
static size_t x_slots(int cols, int T, int tok)
{
    return (size_t)((T + tok - 1) / tok) * (size_t)tok * (size_t)quant_q4_blocks(cols);
}

static size_t p8_x_bytes(int cols, int T)
{
    return x_slots(cols, T, P8_TOK) * (64 + sizeof(float));
}

static void p8_x_init(struct p8_x *xs, void *buf, int cols, int T)
{
    xs->nb = quant_q4_blocks(cols);
    xs->q = buf;
    xs->d = (float *)(xs->q + x_slots(cols, T, P8_TOK) * 32);
}

/* kernel_format.seq_fill for Q8: tokens [t0, t1) of X[T][cols] into buf. */
static void p8_seq_fill(const float *X, int cols, int T, int t0, int t1, void *buf)
{
    struct p8_x xs;

    p8_x_init(&xs, buf, cols, T);
    for (int t = t0; t < t1; t++) {
        const float *x = X + (size_t)t * cols;
        size_t at = (size_t)(t / P8_TOK) * xs.nb * P8_TOK + (size_t)(t % P8_TOK);

        for (int b = 0; b < xs.nb; b++, at += P8_TOK) {
            int8_t q[32];
            int32_t sum;

            xq_fill(x + 32 * b, cols - 32 * b, 1, q, &xs.d[at], &sum);
            _mm256_store_si256((__m256i *)(xs.q + at * 32),
                               _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)q)));
            _mm256_store_si256((__m256i *)(xs.q + at * 32 + 16),
                               _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(q + 16))));
        }
    }
}

/* Rows [r, r + n), n <= 8, as wt[nb][16][8][2] (int16); rows past n repeat
 * the last row; a row's partial last block is zero-padded. */
static void p8_unpack(const struct kmat *W, int r, int n, int16_t *wt)
{
    const int cols = W->cols, nb = quant_q4_blocks(cols);

    for (int i = 0; i < P8_ROWS; i++) {
        const int8_t *row = (const int8_t *)W->data + (size_t)(r + (i < n ? i : n - 1)) * cols;

        for (int b = 0; b < nb; b++) {
            int8_t tmp[32] = { 0 };
            const int8_t *src = row + 32 * b;
            int32_t pair[16];

            if (32 * b + 32 > cols) {
                memcpy(tmp, src, (size_t)(cols - 32 * b));
                src = tmp;
            }
            _mm256_storeu_si256((__m256i *)pair,
                                _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)src)));
            _mm256_storeu_si256((__m256i *)(pair + 8),
                                _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(src + 16))));
            for (int k = 0; k < 16; k++) {
                memcpy(wt + ((size_t)b * 128 + (size_t)k * P8_ROWS + i) * 2, &pair[k], sizeof pair[k]);
            }
        }
    }
}

/* Y[j * ystride + i] = s[i] * (row i . token j) for the tile's n rows and
 * the TN tokens of group g. */
static inline __attribute__((always_inline)) void
p8_tile(const int16_t *wt, const struct p8_x *xs, int g, const int TN, const float *s, float *Y,
        size_t ystride, int n)
{
    const int nb = xs->nb;
    const int16_t *xq = xs->q + (size_t)g * nb * P8_TOK * 32;
    const float *xd = xs->d + (size_t)g * nb * P8_TOK;
    __m256 f[P8_TOK], sc;

#pragma GCC unroll 8
    for (int j = 0; j < TN; j++) {
        f[j] = _mm256_setzero_ps();
    }
    for (int b = 0; b < nb; b++) {
        const int16_t *w = wt + (size_t)b * 256;
        const int16_t *x = xq + (size_t)b * P8_TOK * 32;
        __m256i a[P8_TOK];

#pragma GCC unroll 8
        for (int j = 0; j < TN; j++) {
            a[j] = _mm256_setzero_si256();
        }
        /* two column pairs a step: unrolled further, GCC reassociates the
         * sums into trees and spills the products to the stack */
#pragma GCC unroll 1
        for (int k = 0; k < 16; k += 2) {
#pragma GCC unroll 2
            for (int kk = k; kk < k + 2; kk++) {
                const __m256i wk = _mm256_load_si256((const __m256i *)(w + 16 * kk));

#pragma GCC unroll 8
                for (int j = 0; j < TN; j++) {
                    int32_t v;

                    memcpy(&v, x + 32 * j + 2 * kk, sizeof v);
                    a[j] = _mm256_add_epi32(a[j], _mm256_madd_epi16(wk, _mm256_set1_epi32(v)));
                }
            }
        }
#pragma GCC unroll 8
        for (int j = 0; j < TN; j++) {
            f[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a[j]), _mm256_set1_ps(xd[b * P8_TOK + j]),
                                   f[j]);
        }
    }
    if (n == P8_ROWS) {
        sc = _mm256_loadu_ps(s);
    } else {
        float tmp[P8_ROWS] = { 0 };

        memcpy(tmp, s, (size_t)n * sizeof *tmp);
        sc = _mm256_loadu_ps(tmp);
    }
#pragma GCC unroll 8
    for (int j = 0; j < TN; j++) {
        __m256 y = _mm256_mul_ps(sc, f[j]);

        if (n == P8_ROWS) {
            _mm256_storeu_ps(Y + (size_t)j * ystride, y);
        } else {
            float tmp[P8_ROWS];

            _mm256_storeu_ps(tmp, y);
            memcpy(Y + (size_t)j * ystride, tmp, (size_t)n * sizeof *tmp);
        }
    }
}

/* kernel_format.seq_rows for Q8: rows [r0, r1) times the T tokens X
 * prepared in buf. */
static void q8_seq_rows(const struct kmat *W, const float *X, const void *buf, int T, float *Y,
                        int r0, int r1)
{
    const int nb = quant_q4_blocks(W->cols);
    int16_t *wt = aligned_alloc(64, (size_t)nb * 512);
    struct p8_x xs;

    if (!wt) {
        /* Out of memory: the portable kernel allocates less. */
        kernel_set_quant.format[W->type].matmul_rows(W, X, T, Y, r0, r1);
        return;
    }
    p8_x_init(&xs, (void *)buf, W->cols, T);
    for (int r = r0; r < r1; r += P8_ROWS) {
        int n = r1 - r < P8_ROWS ? r1 - r : P8_ROWS;

        p8_unpack(W, r, n, wt);
        for (int g = 0; g * P8_TOK < T; g++) {
            float *y = Y + (size_t)g * P8_TOK * W->rows + r;
            const float *s = W->scales + r;

            switch (T - g * P8_TOK >= P8_TOK ? P8_TOK : T - g * P8_TOK) {
            case 4: p8_tile(wt, &xs, g, 4, s, y, (size_t)W->rows, n); break;
            case 3: p8_tile(wt, &xs, g, 3, s, y, (size_t)W->rows, n); break;
            case 2: p8_tile(wt, &xs, g, 2, s, y, (size_t)W->rows, n); break;
            default: p8_tile(wt, &xs, g, 1, s, y, (size_t)W->rows, n); break;
            }
        }
    }
    free(wt);
}

/* kernel_format.matmul_rows through a format's seq_bytes, seq_fill and
 * seq_rows on one thread (the portable kernel where the buffer cannot be
 * had). */
static void seq_matmul_rows(const struct kmat *W, const float *X, int T, float *Y, int r0, int r1,
                            size_t (*seq_bytes)(int cols, int T),
                            void (*seq_fill)(const float *X, int cols, int T, int t0, int t1,
                                             void *buf),
                            void (*seq_rows)(const struct kmat *W, const float *X,
                                             const void *buf, int T, float *Y, int r0, int r1))
{
    size_t bytes = seq_bytes(W->cols, T);
    void *buf = aligned_alloc(64, (bytes + 63) & ~(size_t)63);

    if (!buf) {
        kernel_set_quant.format[W->type].matmul_rows(W, X, T, Y, r0, r1);
        return;
    }
    seq_fill(X, W->cols, T, 0, T, buf);
    seq_rows(W, X, buf, T, Y, r0, r1);
    free(buf);
}

/* kernel_format.matmul_rows for Q8: p8_seq_fill and q8_seq_rows on one
 * thread. */
static void q8_matmul_rows(const struct kmat *W, const float *X, int T, float *Y, int r0, int r1)
{
    seq_matmul_rows(W, X, T, Y, r0, r1, p8_x_bytes, p8_seq_fill, q8_seq_rows);
}

/* ---- Q4 sequence mode, packed tiles -----------------------------------------
 * As the avx512 sets do it (kernels_avx512.c explains): a tile of 8 rows is
 * unpacked once per call into signed weights u - 8, laid out [block][group
 * of 4 columns][row][4], with -128 times each row's block sum as the int32
 * start; the tokens' activations are qx + 128 (unsigned), in groups of 8
 * tokens.  A block's 8 vpmaddubsw (one per group: 8 rows by one token's 4
 * activations, broadcast) are summed in 16 bits, which cannot overflow
 * (|pair| <= 2 * 255 * 8, eight of them 32640), then widened once: every
 * int32 lane is a whole block product of one row and one token before any
 * float work. */

#define PT_ROWS 8
#define PT_TOK 8

struct pt_x {
    int nb;
    uint8_t *q;                 /* [groups][nb][PT_TOK][32] */
    float *d;                   /* [groups][nb][PT_TOK] */
};

static size_t pt_x_bytes(int cols, int T)
{
    return x_slots(cols, T, PT_TOK) * (32 + sizeof(float));
}

static void pt_x_init(struct pt_x *xs, void *buf, int cols, int T)
{
    xs->nb = quant_q4_blocks(cols);
    xs->q = buf;
    xs->d = (float *)(xs->q + x_slots(cols, T, PT_TOK) * 32);
}

/* kernel_format.seq_fill: tokens [t0, t1) of X[T][cols] into buf. */
static void pt_seq_fill(const float *X, int cols, int T, int t0, int t1, void *buf)
{
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    struct pt_x xs;

    pt_x_init(&xs, buf, cols, T);
    for (int t = t0; t < t1; t++) {
        const float *x = X + (size_t)t * cols;
        size_t at = (size_t)(t / PT_TOK) * xs.nb * PT_TOK + (size_t)(t % PT_TOK);

        for (int b = 0; b < xs.nb; b++, at += PT_TOK) {
            int8_t q[32];
            int32_t sum;

            xq_fill(x + 32 * b, cols - 32 * b, 1, q, &xs.d[at], &sum);
            _mm256_storeu_si256((__m256i *)(xs.q + at * 32),
                                _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)q), flip));
        }
    }
}

/* A tile: rows [r, r + n), n <= 8, as wt[nb][8][8][4], the int32 starts
 * bias[nb][8] and the block scales dw[nb][8]; lanes past n repeat the last
 * row. */
struct pt_tile {
    int8_t *wt;
    int32_t *bias;
    float *dw;
};

static void pt_unpack_q4(const struct kmat *W, int r, int n, const struct pt_tile *tl)
{
    const int nb = quant_q4_blocks(W->cols);
    const __m256i low = _mm256_set1_epi8(15), eight = _mm256_set1_epi8(8);
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    const struct q4_block *row[PT_ROWS];

    for (int i = 0; i < PT_ROWS; i++) {
        row[i] = (const struct q4_block *)W->data + (size_t)(r + (i < n ? i : n - 1)) * nb;
    }
    for (int b = 0; b < nb; b++) {
        __m256i p[4], z[4], sum = _mm256_setzero_si256();
        uint16_t h[PT_ROWS];

        /* 8 rows x 4 dwords to z[k], lane i row i's dword k */
        for (int a = 0; a < 4; a++) {
            p[a] = _mm256_inserti128_si256(
                _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)row[a][b].qs)),
                _mm_loadu_si128((const __m128i *)row[a + 4][b].qs), 1);
        }
        for (int i = 0; i < PT_ROWS; i++) {
            h[i] = row[i][b].d;
        }
        {
            __m256i lo01 = _mm256_unpacklo_epi32(p[0], p[1]), hi01 = _mm256_unpackhi_epi32(p[0], p[1]);
            __m256i lo23 = _mm256_unpacklo_epi32(p[2], p[3]), hi23 = _mm256_unpackhi_epi32(p[2], p[3]);

            z[0] = _mm256_unpacklo_epi64(lo01, lo23);
            z[1] = _mm256_unpackhi_epi64(lo01, lo23);
            z[2] = _mm256_unpacklo_epi64(hi01, hi23);
            z[3] = _mm256_unpackhi_epi64(hi01, hi23);
        }
        for (int k = 0; k < 4; k++) {
            __m256i w0 = _mm256_sub_epi8(_mm256_and_si256(z[k], low), eight);
            __m256i w1 = _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(z[k], 4), low), eight);

            _mm256_store_si256((__m256i *)(tl->wt + (size_t)b * 256 + 32 * k), w0);
            _mm256_store_si256((__m256i *)(tl->wt + (size_t)b * 256 + 32 * (k + 4)), w1);
            sum = _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, w0), ones16));
            sum = _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, w1), ones16));
        }
        _mm256_store_si256((__m256i *)(tl->bias + 8 * b),
                           _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sum, 7)));
        _mm256_store_ps(tl->dw + 8 * b, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h)));
    }
}

/* Y[j * ystride + i] for the tile's n rows and TN tokens of group g. */
static inline __attribute__((always_inline)) void
pt_tile_q4(const struct pt_tile *tl, const struct pt_x *xs, int g, const int TN, float *Y,
           size_t ystride, int n)
{
    const int nb = xs->nb;
    const uint8_t *xq = xs->q + (size_t)g * nb * PT_TOK * 32;
    const float *xd = xs->d + (size_t)g * nb * PT_TOK;
    const __m256i ones16 = _mm256_set1_epi16(1);
    __m256 f[PT_TOK];

#pragma GCC unroll 8
    for (int j = 0; j < TN; j++) {
        f[j] = _mm256_setzero_ps();
    }
    for (int b = 0; b < nb; b++) {
        const int8_t *w = tl->wt + (size_t)b * 256;
        const uint8_t *x = xq + (size_t)b * PT_TOK * 32;
        const __m256i bias = _mm256_load_si256((const __m256i *)(tl->bias + 8 * b));
        const __m256 d = _mm256_load_ps(tl->dw + 8 * b);

#pragma GCC unroll 8
        for (int j = 0; j < TN; j++) {
            __m256i s[2];

#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
                int32_t v;
                __m256i p;

                memcpy(&v, x + 32 * j + 4 * k, sizeof v);
                p = _mm256_maddubs_epi16(_mm256_set1_epi32(v),
                                         _mm256_load_si256((const __m256i *)(w + 32 * k)));
                s[k & 1] = k < 2 ? p : _mm256_add_epi16(s[k & 1], p);
            }
            __m256i a = _mm256_add_epi32(_mm256_madd_epi16(_mm256_add_epi16(s[0], s[1]), ones16), bias);

            f[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a),
                                   _mm256_mul_ps(d, _mm256_set1_ps(xd[b * PT_TOK + j])), f[j]);
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < TN; j++) {
        if (n == PT_ROWS) {
            _mm256_storeu_ps(Y + (size_t)j * ystride, f[j]);
        } else {
            float tmp[PT_ROWS];

            _mm256_storeu_ps(tmp, f[j]);
            memcpy(Y + (size_t)j * ystride, tmp, (size_t)n * sizeof *tmp);
        }
    }
}

static void pt_tokens_q4(const struct pt_tile *tl, const struct pt_x *xs, int T, float *Y,
                         size_t ystride, int n)
{
    for (int g = 0; g * PT_TOK < T; g++) {
        float *y = Y + (size_t)g * PT_TOK * ystride;

        switch (T - g * PT_TOK >= PT_TOK ? PT_TOK : T - g * PT_TOK) {
        case 8: pt_tile_q4(tl, xs, g, 8, y, ystride, n); break;
        case 7: pt_tile_q4(tl, xs, g, 7, y, ystride, n); break;
        case 6: pt_tile_q4(tl, xs, g, 6, y, ystride, n); break;
        case 5: pt_tile_q4(tl, xs, g, 5, y, ystride, n); break;
        case 4: pt_tile_q4(tl, xs, g, 4, y, ystride, n); break;
        case 3: pt_tile_q4(tl, xs, g, 3, y, ystride, n); break;
        case 2: pt_tile_q4(tl, xs, g, 2, y, ystride, n); break;
        default: pt_tile_q4(tl, xs, g, 1, y, ystride, n); break;
        }
    }
}

/* kernel_format.seq_rows for Q4: rows [r0, r1) times the T tokens X
 * prepared in buf. */
static void q4_seq_rows(const struct kmat *W, const float *X, const void *buf, int T, float *Y,
                        int r0, int r1)
{
    const int nb = quant_q4_blocks(W->cols);
    struct pt_x xs;
    struct pt_tile tl;

    tl.wt = aligned_alloc(64, (size_t)nb * (256 + 64));
    if (!tl.wt) {
        /* Out of memory: the portable kernel allocates less. */
        kernel_set_quant.format[W->type].matmul_rows(W, X, T, Y, r0, r1);
        return;
    }
    tl.bias = (int32_t *)(tl.wt + (size_t)nb * 256);
    tl.dw = (float *)(tl.bias + (size_t)nb * 8);
    pt_x_init(&xs, (void *)buf, W->cols, T);
    for (int r = r0; r < r1; r += PT_ROWS) {
        int n = r1 - r < PT_ROWS ? r1 - r : PT_ROWS;

        pt_unpack_q4(W, r, n, &tl);
        pt_tokens_q4(&tl, &xs, T, Y + r, (size_t)W->rows, n);
    }
    free(tl.wt);
}

/* kernel_format.matmul_rows for Q4: pt_seq_fill and q4_seq_rows on one
 * thread. */
static void q4_matmul_rows(const struct kmat *W, const float *X, int T, float *Y, int r0, int r1)
{
    seq_matmul_rows(W, X, T, Y, r0, r1, pt_x_bytes, pt_seq_fill, q4_seq_rows);
}

/* ---- F32 (the LoRA matrices, kept in float32 in every format) -------------- */

static void f32_matvec_rows(const struct kmat *W, const float *x, float *y, int r0, int r1)
{
    const int cols = W->cols, tail = cols & ~7;
    const float *base = W->data;

    for (int r = r0; r < r1; r++) {
        const float *w = base + (size_t)r * cols;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int c = 0;
        float s;

        for (; c + 32 <= tail; c += 32) {
            _mm_prefetch((const char *)(w + c) + MATVEC_PREFETCH, _MM_HINT_T0);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + c), _mm256_loadu_ps(x + c), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + c + 8), _mm256_loadu_ps(x + c + 8), a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + c + 16), _mm256_loadu_ps(x + c + 16), a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + c + 24), _mm256_loadu_ps(x + c + 24), a3);
        }
        for (; c < tail; c += 8) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + c), _mm256_loadu_ps(x + c), a0);
        }
        s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; c < cols; c++) {
            s += w[c] * x[c];
        }
        y[r] = s;
    }
}

/* Packing, sizes and sequence mode stay the portable set's (sgemm). */
static int f32_pack(struct kmat *m, const float *src)
{
    return kernel_set_portable.format[RWKV_DTYPE_F32].pack(m, src);
}

static void f32_matmul_rows(const struct kmat *W, const float *X, int T, float *Y, int r0, int r1)
{
    kernel_set_portable.format[RWKV_DTYPE_F32].matmul_rows(W, X, T, Y, r0, r1);
}

static size_t f32_bytes(const struct kmat *W)
{
    return (size_t)W->rows * (size_t)W->cols * sizeof(float);
}

/* ---- packing at load time -------------------------------------------------- */

/* quant_pack_q8 with 8 lanes: the same scales and codes (cvtps rounds to
 * nearest even like the portable code; |w / s| <= 127 needs no clamp). */
static int q8_pack(struct kmat *m, const float *src)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const int cols = m->cols, tail = cols & ~31;
    int8_t *q = malloc((size_t)m->rows * (size_t)cols);
    float *s = malloc((size_t)m->rows * sizeof *s);

    if (!q || !s) {
        free(q);
        free(s);
        return -1;
    }
    for (int r = 0; r < m->rows; r++) {
        const float *w = src + (size_t)r * cols;
        int8_t *qr = q + (size_t)r * cols;
        __m256 mx = _mm256_setzero_ps();
        float amax, inv;
        int c = 0;

        for (; c + 8 <= cols; c += 8) {
            mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(w + c), absmask));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));

        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        amax = _mm_cvtss_f32(m4);
        for (; c < cols; c++) {
            float a = w[c] < 0 ? -w[c] : w[c];

            amax = a > amax ? a : amax;
        }
        s[r] = amax / 127.0f;
        inv = amax > 0 ? 127.0f / amax : 0.0f;
        __m256 iv = _mm256_set1_ps(inv);

        for (c = 0; c < tail; c += 32) {
            __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(w + c), iv));
            __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(w + c + 8), iv));
            __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(w + c + 16), iv));
            __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(w + c + 24), iv));
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));

            p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(qr + c), p);
        }
        for (; c < cols; c++) {
            float v = _mm_cvtss_f32(_mm_round_ss(_mm_setzero_ps(), _mm_set_ss(w[c] * inv),
                                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));

            qr[c] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
        }
    }
    m->data = q;
    m->owned = q;
    m->scales = s;
    m->owned_scales = s;
    return 0;
}

/* ---- rows to float32 for sequence mode (sgemm) ---------------------------- */

static void bf16_rows_to_f32(const struct kmat *W, int r0, int r1, float *out)
{
    const uint16_t *p = (const uint16_t *)W->data + (size_t)r0 * W->cols;
    size_t n = (size_t)(r1 - r0) * (size_t)W->cols, i = 0;

    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p + i)));

        _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
    }
    for (; i < n; i++) {
        out[i] = half_bf16_to_f32(p[i]);
    }
}

static void f16_rows_to_f32(const struct kmat *W, int r0, int r1, float *out)
{
    const uint16_t *p = (const uint16_t *)W->data + (size_t)r0 * W->cols;
    size_t n = (size_t)(r1 - r0) * (size_t)W->cols, i = 0;

    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + i))));
    }
    for (; i < n; i++) {
        out[i] = half_f16_to_f32(p[i]);
    }
}

static void q8_rows_to_f32(const struct kmat *W, int r0, int r1, float *out)
{
    const int cols = W->cols, tail = cols & ~7;

    for (int r = r0; r < r1; r++) {
        const int8_t *q = (const int8_t *)W->data + (size_t)r * cols;
        float *o = out + (size_t)(r - r0) * cols;
        __m256 s = _mm256_set1_ps(W->scales[r]);
        int c = 0;

        for (; c < tail; c += 8) {
            _mm256_storeu_ps(o + c, _mm256_mul_ps(q8_load8(q + c), s));
        }
        for (; c < cols; c++) {
            o[c] = W->scales[r] * q[c];
        }
    }
}

static void q4_rows_to_f32(const struct kmat *W, int r0, int r1, float *out)
{
    const int cols = W->cols, nb = quant_q4_blocks(cols);

    for (int r = r0; r < r1; r++) {
        const struct q4_block *blk = (const struct q4_block *)W->data + (size_t)r * nb;
        float *o = out + (size_t)(r - r0) * cols;

        for (int b = 0; b < nb; b++) {
            __m256i u = q4_codes(&blk[b]);
            __m256 d = _mm256_set1_ps(_cvtsh_ss(blk[b].d)), eight = _mm256_set1_ps(8.0f);
            float tmp[32], *dst = 32 * b + 32 <= cols ? o + 32 * b : tmp;
            __m128i lo = _mm256_castsi256_si128(u), hi = _mm256_extracti128_si256(u, 1);

            _mm256_storeu_ps(dst, _mm256_mul_ps(d, _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), eight)));
            _mm256_storeu_ps(dst + 8, _mm256_mul_ps(d, _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))), eight)));
            _mm256_storeu_ps(dst + 16, _mm256_mul_ps(d, _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), eight)));
            _mm256_storeu_ps(dst + 24, _mm256_mul_ps(d, _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))), eight)));
            if (dst == tmp) {
                memcpy(o + 32 * b, tmp, (size_t)(cols - 32 * b) * sizeof *tmp);
            }
        }
    }
}

const struct kernel_set kernel_set_avx2 = {
    .name = "avx2",
    .usable = avx2_usable,
    .format = {
        [RWKV_DTYPE_F32] = { f32_pack, f32_matvec_rows, f32_matmul_rows, f32_bytes, NULL },
        [RWKV_DTYPE_F16] = { quant_pack_f16, f16_matvec_rows, NULL, quant_bytes_half, f16_rows_to_f32 },
        [RWKV_DTYPE_BF16] = { quant_pack_bf16, bf16_matvec_rows, NULL, quant_bytes_half, bf16_rows_to_f32,
                              bf16_matvec_multi_rows, 2 },
        [RWKV_DTYPE_Q8] = { q8_pack, q8_matvec_rows, q8_matmul_rows, quant_bytes_q8, q8_rows_to_f32,
                            q8_matvec_multi_rows, 4, p8_x_bytes, p8_seq_fill, q8_seq_rows },
        [RWKV_DTYPE_Q4] = { quant_pack_q4, q4_matvec_rows, q4_matmul_rows, quant_bytes_q4,
                            q4_rows_to_f32, q4_matvec_multi_rows, 4, pt_x_bytes, pt_seq_fill,
                            q4_seq_rows },
    },
};
