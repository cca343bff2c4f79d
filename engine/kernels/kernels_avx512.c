/*
 * kernels_avx512.c - row kernels for x86-64 CPUs with AVX-512 F/BW/VL
 * (Skylake-X and later, Zen 4 and later), and a second set,
 * kernel_set_avx512vnni, with AVX512-VNNI for the Q8/Q4 integer products.  Compiled with its own -m flags in
 * its own library and chosen at run time (kernels_impl.h); the formats and
 * the exact values are defined in quant.h.
 *
 * BF16 weights are widened to float32 exactly (a shift), not multiplied
 * with vdpbf16ps: that instruction would also round x to bf16, and the
 * matrix-vector product is limited by memory, not by arithmetic.
 */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kernels/kernels_impl.h"
#include "engine/kernels/quant.h"

static int avx512_usable(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
}

#define X_STACK 4096

/* ---- BF16: 32 weights per load; even elements by shift, odd by mask ----- */

/* xs[64 k .. +15] = even elements of 32-column chunk k, [+16 .. +31] odd. */
static void split_even_odd(const float *x, int chunks, float *xs)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);

    for (int k = 0; k < chunks; k++) {
        __m512 a = _mm512_loadu_ps(x + 32 * k), b = _mm512_loadu_ps(x + 32 * k + 16);

        _mm512_storeu_ps(xs + 32 * k, _mm512_permutex2var_ps(a, ev, b));
        _mm512_storeu_ps(xs + 32 * k + 16, _mm512_permutex2var_ps(a, od, b));
    }
}

static inline __m512 bf16_even(__m512i v)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

static inline __m512 bf16_odd(__m512i v)
{
    return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xffff0000u)));
}

/* One row at a time: a single stream per thread for the hardware
 * prefetcher (interleaving four rows was measurably slower with AVX2).
 * The kernels prefetch 4096 bytes ahead: each weight is used once, and
 * closer prefetches come too late to cover the memory latency.  On the
 * Xeon (15 GB/s a core) 2048 was enough (tests/bench_kernels, one thread:
 * bf16 0.9-1.0x the plain streaming read at 512, 1.0-1.2x at 2048; q4
 * 0.6-0.75x at 512, 0.8-0.95x at 2048); a Zen 4 core reads 27-30 GB/s and
 * wants 4096 (bf16 matvec 23.6 -> 29.0 GB/s, q8 24.0 -> 25.8, q4 19.3 ->
 * 20.9; 8192 and 6144 were slower again).  The multi-vector kernels too:
 * k_matvec_many hands them a task's rows in one pass when its vectors fit
 * in one group (4 streams), and 2048 gave 4 streams of the 0.1B model,
 * 2 threads, 3-10 % (bf16) and 10-27 % (q8, q4) more tokens per second
 * than 512 on the Xeon. */
#define MATVEC_PREFETCH 4096
/* bs_widen's distance: 4096 read v7-0.4B bf16 prompts 4 % slower on Zen 4
 * (the tile already fetches the next rows into L2). */
#define WIDEN_PREFETCH 2048

static void bf16_matvec_rows(const struct kmat *W, const float *x, float *y, int r0, int r1)
{
    const int cols = W->cols, chunks = cols / 32, tail = chunks * 32;
    float stack[X_STACK], *xs = tail <= X_STACK ? stack : malloc((size_t)tail * 4);
    const uint16_t *base = W->data;

    if (!xs) {
        kernel_set_quant.format[RWKV_DTYPE_BF16].matvec_rows(W, x, y, r0, r1);
        return;
    }
    split_even_odd(x, chunks, xs);
    for (int r = r0; r < r1; r++) {
        const uint16_t *w = base + (size_t)r * cols;
        __m512 a0 = _mm512_setzero_ps(), b0 = a0, a1 = a0, b1 = a0;
        int k = 0;
        float s;

        for (; k + 2 <= chunks; k += 2) {
            __m512i v0 = _mm512_loadu_si512(w + 32 * k), v1 = _mm512_loadu_si512(w + 32 * k + 32);

            _mm_prefetch((const char *)(w + 32 * k) + MATVEC_PREFETCH, _MM_HINT_T0);
            a0 = _mm512_fmadd_ps(bf16_even(v0), _mm512_loadu_ps(xs + 32 * k), a0);
            b0 = _mm512_fmadd_ps(bf16_odd(v0), _mm512_loadu_ps(xs + 32 * k + 16), b0);
            a1 = _mm512_fmadd_ps(bf16_even(v1), _mm512_loadu_ps(xs + 32 * k + 32), a1);
            b1 = _mm512_fmadd_ps(bf16_odd(v1), _mm512_loadu_ps(xs + 32 * k + 48), b1);
        }
        if (k < chunks) {
            __m512i v = _mm512_loadu_si512(w + 32 * k);

            a0 = _mm512_fmadd_ps(bf16_even(v), _mm512_loadu_ps(xs + 32 * k), a0);
            b0 = _mm512_fmadd_ps(bf16_odd(v), _mm512_loadu_ps(xs + 32 * k + 16), b0);
        }
        s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, b0), _mm512_add_ps(a1, b1)));
        for (int c = tail; c < cols; c++) {
            s += half_bf16_to_f32(w[c]) * x[c];
        }
        y[r] = s;
    }
    if (xs != stack) {
        free(xs);
    }
}

/* Rows [r0, r1) times G <= 4 vectors x[g] (xs[g] their split copies):
 * each pair of weight loads widened once for all G, and every y[g][r] the
 * same sums in the same order as bf16_matvec_rows gives (G is a constant
 * where it is called, and the loops over g are unrolled: GCC -O2 does not
 * unroll them by itself and then keeps the accumulators in memory, a load
 * and a store around every FMA). */
static inline __attribute__((always_inline)) void
bf16_rows_multi(const struct kmat *W, const float *const *x, const float *const *xs,
                float *const *y, const int G, int r0, int r1)
{
    const int cols = W->cols, chunks = cols / 32, tail = chunks * 32;
    const uint16_t *base = W->data;

    for (int r = r0; r < r1; r++) {
        const uint16_t *w = base + (size_t)r * cols;
        __m512 a0[4], b0[4], a1[4], b1[4];
        int k = 0;

#pragma GCC unroll 4
        for (int g = 0; g < G; g++) {
            a0[g] = b0[g] = a1[g] = b1[g] = _mm512_setzero_ps();
        }
        for (; k + 2 <= chunks; k += 2) {
            __m512i v0 = _mm512_loadu_si512(w + 32 * k), v1 = _mm512_loadu_si512(w + 32 * k + 32);
            __m512 e0 = bf16_even(v0), o0 = bf16_odd(v0), e1 = bf16_even(v1), o1 = bf16_odd(v1);

            _mm_prefetch((const char *)(w + 32 * k) + MATVEC_PREFETCH, _MM_HINT_T0);
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) {
                a0[g] = _mm512_fmadd_ps(e0, _mm512_loadu_ps(xs[g] + 32 * k), a0[g]);
                b0[g] = _mm512_fmadd_ps(o0, _mm512_loadu_ps(xs[g] + 32 * k + 16), b0[g]);
                a1[g] = _mm512_fmadd_ps(e1, _mm512_loadu_ps(xs[g] + 32 * k + 32), a1[g]);
                b1[g] = _mm512_fmadd_ps(o1, _mm512_loadu_ps(xs[g] + 32 * k + 48), b1[g]);
            }
        }
        if (k < chunks) {
            __m512i v = _mm512_loadu_si512(w + 32 * k);
            __m512 e = bf16_even(v), o = bf16_odd(v);

#pragma GCC unroll 4
            for (int g = 0; g < G; g++) {
                a0[g] = _mm512_fmadd_ps(e, _mm512_loadu_ps(xs[g] + 32 * k), a0[g]);
                b0[g] = _mm512_fmadd_ps(o, _mm512_loadu_ps(xs[g] + 32 * k + 16), b0[g]);
            }
        }
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) {
            float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0[g], b0[g]),
                                                         _mm512_add_ps(a1[g], b1[g])));

            for (int c = tail; c < cols; c++) {
                s += half_bf16_to_f32(w[c]) * x[g][c];
            }
            y[g][r] = s;
        }
    }
}

/* bf16_matvec_rows for T vectors, four at a time (kernel_format.matvec_multi_rows). */
static void bf16_matvec_multi_rows(const struct kmat *W, const float *X, int T, float *Y, int r0,
                                   int r1)
{
    const int cols = W->cols, chunks = cols / 32, tail = chunks * 32;
    float stack[4 * X_STACK], *xs = tail <= X_STACK ? stack : malloc((size_t)tail * 16);

    if (!xs) {
        for (int t = 0; t < T; t++) {
            bf16_matvec_rows(W, X + (size_t)t * cols, Y + (size_t)t * W->rows, r0, r1);
        }
        return;
    }
    for (int t0 = 0; t0 < T; t0 += 4) {
        int G = T - t0 < 4 ? T - t0 : 4;
        const float *x[4], *xsg[4];
        float *y[4];

        for (int g = 0; g < G; g++) {
            x[g] = X + (size_t)(t0 + g) * cols;
            xsg[g] = xs + (size_t)g * tail;
            y[g] = Y + (size_t)(t0 + g) * W->rows;
            split_even_odd(x[g], chunks, xs + (size_t)g * tail);
        }
        switch (G) {
        case 1:
            bf16_rows_multi(W, x, xsg, y, 1, r0, r1);
            break;
        case 2:
            bf16_rows_multi(W, x, xsg, y, 2, r0, r1);
            break;
        case 3:
            bf16_rows_multi(W, x, xsg, y, 3, r0, r1);
            break;
        default:
            bf16_rows_multi(W, x, xsg, y, 4, r0, r1);
            break;
        }
    }
    if (xs != stack) {
        free(xs);
    }
}

/* ---- BF16 sequence mode: float32 products of the exact weights -----------
 * Y = X W^T as outer products: a panel of up to 48 tokens is transposed
 * (xt[c][t], zero past the last token), eight rows of weights at a time
 * are widened into a float32 copy, and for each column c the tile of 8
 * rows by 48 tokens takes Y[t][r] += W[r][c] xt[c][t] in 24 accumulators
 * (each weight broadcast, three vectors of tokens).  No float32 copy of
 * the matrix and no separate conversion pass as the generic rows_to_f32 +
 * sgemm path makes.  Each Y[t][r] is the plain sum over c in order, one
 * FMA per column: it depends on nothing but row r and token t.
 * At 1024 or 4096 columns (the 0.4B shapes) three things cost: the eight
 * widened rows a multiple of 4 KiB apart share one set of the L1 cache
 * (they are a line apart now, bs_ldw), the tile's 384 single-float stores
 * of Y hit lines 4 KiB apart (the tile is transposed and stored as one
 * 8-float vector per token), and bs_widen waited for the next rows from
 * memory (they are prefetched into L2 while the first panel passes).
 * The tile also prefetches its panel of tokens a few columns ahead. */

#define BS_RN 8
#define BS_TV 3                         /* vectors of 16 tokens per panel */
#define BS_PANEL (16 * BS_TV)
/* Floats ahead that bs_transpose prefetches in each row of x. */
#define BS_AHEAD 64
/* Columns ahead that bs_tile prefetches in its panel of tokens. */
#define BS_AHEADX 8
/* Transposed activations of one block of tokens: at most this many bytes. */
#define BS_BLOCK_BYTES (1024 * 1024)

/* Transposes 16 rows of 16 floats: r[i][j] becomes r[j][i]. */
static inline void bs_transpose16(__m512 r[16])
{
    __m512 t[16], u[16], v[8], w[8];

    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4 g + j]: rows 4g..4g+3 of columns j, j + 4, j + 8, j + 12. */
    for (int g = 0; g < 4; g++) {
        u[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xee);
        u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xee);
    }
    /* v: rows 0-7, w: rows 8-15; [2 j] columns j and j + 8, [2 j + 1]
     * columns j + 4 and j + 12. */
    for (int j = 0; j < 4; j++) {
        v[2 * j] = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);
        v[2 * j + 1] = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xdd);
        w[2 * j] = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
        w[2 * j + 1] = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xdd);
    }
    for (int j = 0; j < 4; j++) {
        r[j] = _mm512_shuffle_f32x4(v[2 * j], w[2 * j], 0x88);
        r[j + 8] = _mm512_shuffle_f32x4(v[2 * j], w[2 * j], 0xdd);
        r[j + 4] = _mm512_shuffle_f32x4(v[2 * j + 1], w[2 * j + 1], 0x88);
        r[j + 12] = _mm512_shuffle_f32x4(v[2 * j + 1], w[2 * j + 1], 0xdd);
    }
}

/* One token's column of the panels (for pieces that do not start or end
 * at a multiple of 16 tokens). */
static void bs_transpose_one(const float *X, int cols, int t, float *xt)
{
    float *lane = xt + (size_t)(t / BS_PANEL) * cols * BS_PANEL + t % BS_PANEL;

    for (int c = 0; c < cols; c++) {
        lane[(size_t)c * BS_PANEL] = X[(size_t)t * cols + c];
    }
}

/* Tokens [t0, t1) of X[T][cols] into panels: xt[p][c][t] = X[48 p + t][c],
 * writing only those tokens' lanes, so any split of [0, T) gives the same
 * panels; the piece that reaches T also zeroes the lanes past T. */
static void bs_transpose(const float *X, int cols, int T, int t0, int t1, float *xt)
{
    int g = (t0 + 15) / 16 * 16;

    for (int t = t0; t < g && t < t1; t++) {
        bs_transpose_one(X, cols, t, xt);
    }
    for (; g < t1 && (g + 16 <= t1 || t1 == T); g += 16) {
        float *panel = xt + (size_t)(g / BS_PANEL) * cols * BS_PANEL + g % BS_PANEL;

        for (int c0 = 0; c0 < cols; c0 += 16) {
            int w = cols - c0 < 16 ? cols - c0 : 16;
            const __mmask16 m = (__mmask16)((1u << w) - 1);
            __m512 r[16];

            for (int i = 0; i < 16; i++) {
                const float *row = X + (size_t)(g + i) * cols + c0;

                if (g + i < t1) {
                    /* Sixteen rows read side by side: the prefetcher
                     * does not follow them all. */
                    _mm_prefetch((const char *)(row + BS_AHEAD), _MM_HINT_T0);
                    r[i] = _mm512_maskz_loadu_ps(m, row);
                } else {
                    r[i] = _mm512_setzero_ps();
                }
            }
            bs_transpose16(r);
            for (int c = 0; c < w; c++) {
                _mm512_store_ps(panel + (size_t)(c0 + c) * BS_PANEL, r[c]);
            }
        }
    }
    for (int t = g > t0 ? g : t0; t < t1; t++) {
        bs_transpose_one(X, cols, t, xt);
    }
    if (t1 == T && T % BS_PANEL) {
        float *panel = xt + (size_t)(T / BS_PANEL) * cols * BS_PANEL;

        for (int c = 0; c < cols; c++) {
            memset(panel + (size_t)c * BS_PANEL + T % BS_PANEL, 0,
                   (size_t)(BS_PANEL - T % BS_PANEL) * sizeof *panel);
        }
    }
}

/* wf[i * ldw + c] = W row i as float32, for nr rows of cols. */
static void bs_widen(const uint16_t *w, int cols, int nr, float *wf, size_t ldw)
{
    for (int r = 0; r < nr; r++, w += cols, wf += ldw) {
        int i = 0;

        for (; i + 16 <= cols; i += 16) {
            __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(w + i)));

            _mm_prefetch((const char *)(w + i) + WIDEN_PREFETCH, _MM_HINT_T0);

            _mm512_storeu_ps(wf + i, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
        }
        for (; i < cols; i++) {
            wf[i] = half_bf16_to_f32(w[i]);
        }
    }
}

/* Y[t][i] (row stride ldy) = wf[i] . X[t] for i < RN and the n tokens of
 * the panel xt; row i of the weights at wf + i * ldw.  RN is a constant
 * where it is called. */
static inline __attribute__((always_inline)) void
bs_tile(const float *wf, size_t ldw, int cols, const float *xt, int n, float *Y, size_t ldy,
        const char *pf, const int RN)
{
    __m512 acc[BS_RN][BS_TV];

#pragma GCC unroll 8
    for (int i = 0; i < RN; i++) {
#pragma GCC unroll 3
        for (int v = 0; v < BS_TV; v++) {
            acc[i][v] = _mm512_setzero_ps();
        }
    }
    for (int c = 0; c < cols; c++) {
        const float *x = xt + (size_t)c * BS_PANEL;
        __m512 x0 = _mm512_load_ps(x), x1 = _mm512_load_ps(x + 16), x2 = _mm512_load_ps(x + 32);

        /* Three lines a column come from L2: the prefetcher alone falls
         * behind. */
        _mm_prefetch((const char *)(x + BS_AHEADX * BS_PANEL), _MM_HINT_T0);
        _mm_prefetch((const char *)(x + BS_AHEADX * BS_PANEL + 16), _MM_HINT_T0);
        _mm_prefetch((const char *)(x + BS_AHEADX * BS_PANEL + 32), _MM_HINT_T0);
        if (pf && c % 4 == 0) {
            /* The next rows' BF16 weights, 16 bytes a column, into L2. */
            _mm_prefetch(pf + (size_t)c * 16, _MM_HINT_T1);
        }
#pragma GCC unroll 8
        for (int i = 0; i < RN; i++) {
            __m512 w = _mm512_set1_ps(wf[(size_t)i * ldw + c]);

            acc[i][0] = _mm512_fmadd_ps(w, x0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(w, x1, acc[i][1]);
            acc[i][2] = _mm512_fmadd_ps(w, x2, acc[i][2]);
        }
    }
    if (RN == BS_RN) {
        /* Eight rows of a token side by side: one store per token. */
        __m512 r[16];

        for (int v = 0; v < BS_TV; v += 2) {
#pragma GCC unroll 8
            for (int i = 0; i < BS_RN; i++) {
                r[i] = acc[i][v];
                r[i + 8] = v + 1 < BS_TV ? acc[i][v + 1] : _mm512_setzero_ps();
            }
            bs_transpose16(r);
            /* r[j]: token 16 v + j in the low half, 16 (v + 1) + j in
             * the high half. */
            for (int j = 0; j < 16 && 16 * v + j < n; j++) {
                _mm256_storeu_ps(Y + (size_t)(16 * v + j) * ldy, _mm512_castps512_ps256(r[j]));
            }
            for (int j = 0; j < 16 && 16 * (v + 1) + j < n; j++) {
                _mm256_storeu_ps(Y + (size_t)(16 * (v + 1) + j) * ldy,
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(r[j]), 1)));
            }
        }
        return;
    }
    {
        float out[BS_PANEL];

#pragma GCC unroll 8
        for (int i = 0; i < RN; i++) {
            _mm512_storeu_ps(out, acc[i][0]);
            _mm512_storeu_ps(out + 16, acc[i][1]);
            _mm512_storeu_ps(out + 32, acc[i][2]);
            for (int t = 0; t < n; t++) {
                Y[(size_t)t * ldy + i] = out[t];
            }
        }
    }
}

static void bs_tile8(const float *wf, size_t ldw, int cols, const float *xt, int n, float *Y,
                     size_t ldy, const char *pf)
{
    bs_tile(wf, ldw, cols, xt, n, Y, ldy, pf, 8);
}

static void bs_tile1(const float *wf, int cols, const float *xt, int n, float *Y, size_t ldy)
{
    bs_tile(wf, (size_t)cols, cols, xt, n, Y, ldy, NULL, 1);
}

/* Row stride of the widened rows: a line past the row, so that rows of
 * 1024 or 4096 columns do not all fall into one set of the L1 cache. */
static size_t bs_ldw(int cols)
{
    return ((size_t)cols + 15) / 16 * 16 + 16;
}

/* Y = X W^T for rows [r0, r1) and the n tokens from t0 whose panels are
 * at xt: every eight rows of weights widened (BF16) once or read in place
 * (F32), then multiplied by each panel. */
static void bs_rows(const struct kmat *W, const float *xt, int t0, int n, float *Y, int r0,
                    int r1, float *wf)
{
    const int cols = W->cols;
    const size_t ldy = (size_t)W->rows, panel_floats = (size_t)cols * BS_PANEL;
    float *y = Y + (size_t)t0 * ldy;

    for (int r = r0; r < r1; r += BS_RN) {
        int nr = r1 - r < BS_RN ? r1 - r : BS_RN;
        const float *w;
        size_t ldw;

        if (W->type == RWKV_DTYPE_BF16) {
            ldw = bs_ldw(cols);
            bs_widen((const uint16_t *)W->data + (size_t)r * cols, cols, nr, wf, ldw);
            w = wf;
        } else {
            ldw = (size_t)cols;
            w = (const float *)W->data + (size_t)r * cols;
        }
        for (int p = 0; p * BS_PANEL < n; p++) {
            int np = n - p * BS_PANEL < BS_PANEL ? n - p * BS_PANEL : BS_PANEL;
            float *yp = y + (size_t)p * BS_PANEL * ldy + r;
            const float *xp = xt + (size_t)p * panel_floats;

            if (nr == BS_RN) {
                /* While the first panel passes, the next eight rows
                 * come into L2 for bs_widen. */
                const char *pf = W->type == RWKV_DTYPE_BF16 && p == 0 && r + 2 * BS_RN <= r1
                                     ? (const char *)W->data + (size_t)(r + BS_RN) * cols * 2
                                     : NULL;

                bs_tile8(w, ldw, cols, xp, np, yp, ldy, pf);
                continue;
            }
            for (int i = 0; i < nr; i++) {
                bs_tile1(w + (size_t)i * ldw, cols, xp, np, yp + i, ldy);
            }
        }
    }
}

/* Panels per block of tokens: up to BS_BLOCK_BYTES, so that a block stays
 * in L2 while the rows pass. */
static int bs_block_panels(int cols, int T)
{
    int panels = (int)(BS_BLOCK_BYTES / ((size_t)cols * BS_PANEL * sizeof(float)));

    if (panels < 1) {
        panels = 1;
    }
    if (panels > (T + BS_PANEL - 1) / BS_PANEL) {
        panels = (T + BS_PANEL - 1) / BS_PANEL;
    }
    return panels;
}

/* One product row by row, for when no memory can be had. */
static void bs_fallback(const struct kmat *W, const float *X, int T, float *Y, int r0, int r1)
{
    for (int t = 0; t < T; t++) {
        const float *x = X + (size_t)t * W->cols;
        float *y = Y + (size_t)t * W->rows;

        if (W->type == RWKV_DTYPE_BF16) {
            bf16_matvec_rows(W, x, y, r0, r1);
        } else {
            kernel_set_portable.format[RWKV_DTYPE_F32].matvec_rows(W, x, y, r0, r1);
        }
    }
}

/* kernel_format.matmul_rows for BF16 and F32: transposes one block of
 * tokens at a time itself. */
static void bs_matmul(const struct kmat *W, const float *X, int T, float *Y, int r0, int r1)
{
    const int cols = W->cols, block = bs_block_panels(cols, T) * BS_PANEL;
    float *xt = aligned_alloc(64, (size_t)block * cols * sizeof *xt);
    float *wf = malloc((size_t)BS_RN * bs_ldw(cols) * sizeof *wf);

    if (!xt || !wf) {
        free(xt);
        free(wf);
        bs_fallback(W, X, T, Y, r0, r1);
        return;
    }
    for (int t0 = 0; t0 < T; t0 += block) {
        int n = T - t0 < block ? T - t0 : block;

        bs_transpose(X + (size_t)t0 * cols, cols, n, 0, n, xt);
        bs_rows(W, xt, t0, n, Y, r0, r1, wf);
    }
    free(xt);
    free(wf);
}

/* kernel_format.seq_bytes, seq_fill and seq_rows for BF16 and F32: the
 * threads share the transposition of all T tokens (buf), then each takes
 * its rows over it, block by block.  Same values as bs_matmul. */
static size_t bs_seq_bytes(int cols, int T)
{
    return (size_t)((T + BS_PANEL - 1) / BS_PANEL) * BS_PANEL * cols * sizeof(float);
}

static void bs_seq_fill(const float *X, int cols, int T, int t0, int t1, void *buf)
{
    bs_transpose(X, cols, T, t0, t1, buf);
}

static void bs_seq_rows(const struct kmat *W, const float *X, const void *buf, int T, float *Y,
                        int r0, int r1)
{
    const int cols = W->cols, block = bs_block_panels(cols, T) * BS_PANEL;
    float *wf = malloc((size_t)BS_RN * bs_ldw(cols) * sizeof *wf);

    if (!wf) {
        bs_fallback(W, X, T, Y, r0, r1);
        return;
    }
    for (int t0 = 0; t0 < T; t0 += block) {
        int n = T - t0 < block ? T - t0 : block;

        bs_rows(W, (const float *)buf + (size_t)t0 * cols, t0, n, Y, r0, r1, wf);
    }
    free(wf);
}

/* kernel_format.matmul_rows for BF16 and F32. */
static void bf16_matmul_rows(const struct kmat *W, const float *X, int T, float *Y, int r0,
                             int r1)
{
    bs_matmul(W, X, T, Y, r0, r1);
}

static void f32_matmul_rows(const struct kmat *W, const float *X, int T, float *Y, int r0, int r1)
{
    bs_matmul(W, X, T, Y, r0, r1);
}

/* ---- F16 ------------------------------------------------------------------ */

static void f16_matvec_rows(const struct kmat *W, const float *x, float *y, int r0, int r1)
{
    const int cols = W->cols, tail = cols & ~15;
    const uint16_t *base = W->data;

    for (int r = r0; r < r1; r++) {
        const uint16_t *w = base + (size_t)r * cols;
        __m512 a = _mm512_setzero_ps();
        float s;

        for (int c = 0; c < tail; c += 16) {
            _mm_prefetch((const char *)(w + c) + MATVEC_PREFETCH, _MM_HINT_T0);
            a = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + c))),
                                _mm512_loadu_ps(x + c), a);
        }
        s = _mm512_reduce_add_ps(a);
        for (int c = tail; c < cols; c++) {
            s += half_f16_to_f32(w[c]) * x[c];
        }
        y[r] = s;
    }
}

/* ---- Q4: two blocks per 512-bit register ---------------------------------- */

/* Activation blocks (quant.h): dx = max|x| / 127, qx = round(x / dx). */
static void xq_fill(const float *x, int cols, int n_blocks, int8_t *q, float *d, int32_t *sum)
{
    for (int b = 0; b < n_blocks; b++) {
        int n = cols - 32 * b;
        __mmask16 m0 = n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
        __mmask16 m1 = n >= 32 ? 0xffff : n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1);
        __m512 v0 = _mm512_maskz_loadu_ps(m0, x + 32 * b);
        __m512 v1 = _mm512_maskz_loadu_ps(m1, x + 32 * b + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        __m512 inv = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
        __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, inv));
        __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, inv));

        d[b] = amax / 127.0f;
        sum[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
        _mm_storeu_si128((__m128i *)(q + 32 * b), _mm512_cvtsepi32_epi8(i0));
        _mm_storeu_si128((__m128i *)(q + 32 * b + 16), _mm512_cvtsepi32_epi8(i1));
    }
}

/* ---- Q8 matrix-vector products: int8 weights times int8 activations -----
 * quant.h defines the value: x quantised per block of 32 (xq_fill), an
 * exact integer product per block, the row's scale s[r] at the end.  Each
 * 512-bit step covers 64 columns, two blocks: int32 lane l holds the sum
 * of four products of block l / 8 of the step, and a lane's scale is its
 * block's dx (struct q8_xv stores it per lane).  With VNNI the weights
 * become unsigned by flipping their sign bit (q + 128, what vpdpbusd
 * wants), and each lane starts at -128 times the sum of its four
 * activations, which takes the offset back out exactly; without VNNI, the
 * weights' magnitudes times the activations carrying the weights' signs go
 * through vpmaddubsw (at most 2 * 127 * 127 per pair: no saturation).  Both
 * give every lane the same exact integer.  Every y[r] is, in float, s[r]
 * times the sum of the lanes of two accumulators (even and odd steps)
 * after all steps in order, the same for one vector as for four.  A row's
 * last, partial step loads its weights with a mask (zeros past cols), and
 * the activations there are zero. */
struct q8_xv {
    int steps;                  /* ceil(cols / 64) */
    int8_t *q;                  /* [steps][64] */
    int32_t *bias;              /* [steps][16] (VNNI's -128 offsets) */
    float *dx;                  /* [steps][16] */
};

/* Bytes of a q8_xv's arrays for cols columns (64-byte aligned pieces). */
static size_t q8_xv_bytes(int cols)
{
    return (size_t)((cols + 63) / 64) * (64 + 64 + 64);
}

/* v's arrays in buf (64-byte aligned, q8_xv_bytes(cols)) from x[cols]. */
static void q8_xv_fill(struct q8_xv *v, unsigned char *buf, const float *x, int cols)
{
    float d[2];
    int32_t s[2];

    v->steps = (cols + 63) / 64;
    v->q = (int8_t *)buf;
    v->bias = (int32_t *)(buf + (size_t)v->steps * 64);
    v->dx = (float *)(buf + (size_t)v->steps * 128);
    for (int j = 0; j < v->steps; j++) {
        __m512i q, lane;

        /* a block past cols: zero activations and dx */
        xq_fill(x + 64 * j, cols - 64 * j, 2, v->q + 64 * j, d, s);
        q = _mm512_load_si512(v->q + 64 * j);
        lane = _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_set1_epi8(1), q),
                                 _mm512_set1_epi16(1));
        _mm512_store_si512(v->bias + 16 * j, _mm512_sub_epi32(_mm512_setzero_si512(),
                                                              _mm512_slli_epi32(lane, 7)));
        _mm512_store_ps(v->dx + 16 * j, _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(d[0]),
                                                             _mm512_set1_ps(d[1])));
    }
}

/* The lanes of one step: weights w (signed), activations qx, VNNI's
 * starting value bias. */
__attribute__((target("avx512vnni")))
static inline __m512i q8_dot_vnni(__m512i w, __m512i qx, __m512i bias)
{
    return _mm512_dpbusd_epi32(bias, _mm512_xor_si512(w, _mm512_set1_epi8((char)0x80)), qx);
}

static inline __m512i q8_dot_bw(__m512i w, __m512i qx, __m512i bias)
{
    __m512i sx = _mm512_mask_sub_epi8(qx, _mm512_movepi8_mask(w), _mm512_setzero_si512(), qx);

    (void)bias;
    return _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_abs_epi8(w), sx), _mm512_set1_epi16(1));
}

/* Step J (weights W) for vector g into accumulator A. */
#define Q8_XV_STEP(DOT, A, W, J) \
    A[g] = _mm512_fmadd_ps( \
        _mm512_cvtepi32_ps(DOT(W, _mm512_load_si512(xv[g].q + 64 * (J)), \
                               _mm512_load_si512(xv[g].bias + 16 * (J)))), \
        _mm512_load_ps(xv[g].dx + 16 * (J)), A[g])

/* y[g][r] for G vectors xv[g], rows [r0, r1): each step's weights loaded
 * once for all G. */
#define Q8_XV_ROWS(DOT, G) \
    for (int r = r0; r < r1; r++) { \
        const int8_t *w = base + (size_t)r * cols; \
        __m512 a[G], b[G]; \
        int j = 0; \
        _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) { \
            a[g] = b[g] = _mm512_setzero_ps(); \
        } \
        for (; j + 2 <= full; j += 2) { \
            __m512i w0 = _mm512_loadu_si512(w + 64 * j), w1 = _mm512_loadu_si512(w + 64 * j + 64); \
            _mm_prefetch((const char *)(w + 64 * j) + MATVEC_PREFETCH, _MM_HINT_T0); \
            _mm_prefetch((const char *)(w + 64 * j) + MATVEC_PREFETCH + 64, _MM_HINT_T0); \
            _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) { \
                Q8_XV_STEP(DOT, a, w0, j); \
                Q8_XV_STEP(DOT, b, w1, j + 1); \
            } \
        } \
        if (j < full) { \
            __m512i w0 = _mm512_loadu_si512(w + 64 * j); \
            _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) { \
                Q8_XV_STEP(DOT, a, w0, j); \
            } \
            j++; \
        } \
        if (j < steps) { \
            __m512i wt = _mm512_maskz_loadu_epi8(tail, w + 64 * j); \
            if (j & 1) { \
                _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) { \
                    Q8_XV_STEP(DOT, b, wt, j); \
                } \
            } else { \
                _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) { \
                    Q8_XV_STEP(DOT, a, wt, j); \
                } \
            } \
        } \
        _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) { \
            y[g][r] = W->scales[r] * _mm512_reduce_add_ps(_mm512_add_ps(a[g], b[g])); \
        } \
    }

#define Q8_XV_SWITCH(DOT) \
    const int cols = W->cols, steps = xv[0].steps, full = cols / 64; \
    const __mmask64 tail = (cols & 63) ? ((__mmask64)1 << (cols & 63)) - 1 : 0; \
    const int8_t *base = W->data; \
    switch (G) { \
    case 1: \
        Q8_XV_ROWS(DOT, 1) \
        break; \
    case 2: \
        Q8_XV_ROWS(DOT, 2) \
        break; \
    case 3: \
        Q8_XV_ROWS(DOT, 3) \
        break; \
    default: \
        Q8_XV_ROWS(DOT, 4) \
        break; \
    }

typedef void q8_xv_rows_fn(const struct kmat *W, const struct q8_xv *xv, float *const *y, int G,
                           int r0, int r1);

__attribute__((target("avx512vnni")))
static void q8_xv_rows_vnni(const struct kmat *W, const struct q8_xv *xv, float *const *y, int G,
                            int r0, int r1)
{
    Q8_XV_SWITCH(q8_dot_vnni)
}

static void q8_xv_rows_bw(const struct kmat *W, const struct q8_xv *xv, float *const *y, int G,
                          int r0, int r1)
{
    Q8_XV_SWITCH(q8_dot_bw)
}

/* kernel_format.matvec_rows for Q8; rows: the set's step products. */
static void q8_matvec(const struct kmat *W, const float *x, float *y, int r0, int r1,
                      q8_xv_rows_fn *rows)
{
    unsigned char stack[(X_STACK / 64) * 192] __attribute__((aligned(64)));
    unsigned char *buf = stack;
    struct q8_xv xv;

    if (q8_xv_bytes(W->cols) > sizeof stack) {
        buf = aligned_alloc(64, q8_xv_bytes(W->cols));
        if (!buf) {
            kernel_set_quant.format[RWKV_DTYPE_Q8].matvec_rows(W, x, y, r0, r1);
            return;
        }
    }
    q8_xv_fill(&xv, buf, x, W->cols);
    rows(W, &xv, &y, 1, r0, r1);
    if (buf != stack) {
        free(buf);
    }
}

static void q8_matvec_rows(const struct kmat *W, const float *x, float *y, int r0, int r1)
{
    q8_matvec(W, x, y, r0, r1, q8_xv_rows_bw);
}

static void q8_matvec_rows_vnni(const struct kmat *W, const float *x, float *y, int r0, int r1)
{
    q8_matvec(W, x, y, r0, r1, q8_xv_rows_vnni);
}

/* kernel_format.matvec_multi_rows for Q8: four vectors at a time through
 * the same rows as q8_matvec (so the same sums, bit for bit). */
static void q8_matvec_multi(const struct kmat *W, const float *X, int T, float *Y, int r0, int r1,
                            q8_xv_rows_fn *rows)
{
    const size_t each = q8_xv_bytes(W->cols);
    unsigned char *buf = aligned_alloc(64, 4 * each);

    if (!buf) {
        for (int t = 0; t < T; t++) {
            q8_matvec(W, X + (size_t)t * W->cols, Y + (size_t)t * W->rows, r0, r1, rows);
        }
        return;
    }
    for (int t0 = 0; t0 < T; t0 += 4) {
        int G = T - t0 < 4 ? T - t0 : 4;
        struct q8_xv xv[4];
        float *y[4];

        for (int g = 0; g < G; g++) {
            y[g] = Y + (size_t)(t0 + g) * W->rows;
            q8_xv_fill(&xv[g], buf + (size_t)g * each, X + (size_t)(t0 + g) * W->cols, W->cols);
        }
        rows(W, xv, y, G, r0, r1);
    }
    free(buf);
}

static void q8_matvec_multi_rows(const struct kmat *W, const float *X, int T, float *Y, int r0,
                                 int r1)
{
    q8_matvec_multi(W, X, T, Y, r0, r1, q8_xv_rows_bw);
}

static void q8_matvec_multi_rows_vnni(const struct kmat *W, const float *X, int T, float *Y,
                                      int r0, int r1)
{
    q8_matvec_multi(W, X, T, Y, r0, r1, q8_xv_rows_vnni);
}

/* ---- Q4 matrix-vector products: activations laid out as the codes unpack --
 * Four blocks (a quad, 128 weights, 72 bytes) at a time: their 64 code
 * bytes, gathered into one register, give the low nibbles (elements 0-15
 * of each block) with an AND and the high nibbles (16-31) with a shift and
 * an AND, so int32 lane l of both products belongs to block l / 4.  Each
 * vector's int8 activation blocks (xq_fill's values) are stored in that
 * order (struct q4_xv: 64 bytes for the low halves, 64 for the high), with,
 * per lane, -8 times the sum of the lane's eight activations: the
 * products' starting value, which makes each lane the exact integer sum of
 * (u - 8) qx over its eight elements, both halves in one integer sum.  A
 * lane's scale is its block's d (from the weights) times its block's dx
 * (stored per lane), one multiply per quad.  Every y[r] is, in float, the
 * sum over lanes of one accumulator of scale * lane over the quads in
 * order, the same for one vector as for four.  A row's last, partial quad
 * is read from a zero-padded copy against zero activations (zero scale):
 * it adds exact zeros. */
struct q4_xv {
    int quads;                  /* ceil(blocks / 4) */
    int8_t *q;                  /* [quads][128]: low halves, then high halves */
    int32_t *bias;              /* [quads][16] */
    float *dx;                  /* [quads][16] */
};

/* Bytes of a q4_xv's arrays for nb blocks (64-byte aligned pieces). */
static size_t q4_xv_bytes(int nb)
{
    return (size_t)((nb + 3) / 4) * (128 + 64 + 64);
}

/* v's arrays in buf (64-byte aligned, q4_xv_bytes(nb)) from x[cols]. */
static void q4_xv_fill(struct q4_xv *v, unsigned char *buf, const float *x, int cols, int nb)
{
    const __m512i four = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    int8_t tmp[128] __attribute__((aligned(64)));
    float d[4];
    int32_t s[4];

    v->quads = (nb + 3) / 4;
    v->q = (int8_t *)buf;
    v->bias = (int32_t *)(buf + (size_t)v->quads * 128);
    v->dx = (float *)(buf + (size_t)v->quads * 192);
    for (int j = 0; j < v->quads; j++) {
        __m512i a, b, lo, hi, lane;

        /* blocks past nb: zero codes and dx (xq_fill reads nothing there) */
        xq_fill(x + 128 * j, cols - 128 * j, 4, tmp, d, s);
        a = _mm512_load_si512(tmp);
        b = _mm512_load_si512(tmp + 64);
        lo = _mm512_shuffle_i64x2(a, b, 0x88);
        hi = _mm512_shuffle_i64x2(a, b, 0xdd);
        _mm512_store_si512(v->q + 128 * j, lo);
        _mm512_store_si512(v->q + 128 * j + 64, hi);
        lane = _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_set1_epi8(1), lo),
                                 _mm512_set1_epi16(1));
        lane = _mm512_add_epi32(lane, _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_set1_epi8(1), hi),
                                                        _mm512_set1_epi16(1)));
        _mm512_store_si512(v->bias + 16 * j, _mm512_sub_epi32(_mm512_setzero_si512(),
                                                              _mm512_slli_epi32(lane, 3)));
        _mm512_store_ps(v->dx + 16 * j, _mm512_permutexvar_ps(four, _mm512_castps128_ps512(
                                                                 _mm_loadu_ps(d))));
    }
}

/* The 64 code bytes of blocks b[0..3], in block order. */
static inline __m512i q4_codes_quad(const struct q4_block *b)
{
    __m256i c01 = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)b[0].qs)),
        _mm_loadu_si128((const __m128i *)b[1].qs), 1);
    __m256i c23 = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)b[2].qs)),
        _mm_loadu_si128((const __m128i *)b[3].qs), 1);

    return _mm512_inserti64x4(_mm512_castsi256_si512(c01), c23, 1);
}

/* The scales d of blocks b[0..3] (72 bytes; d of b[k] is 16-bit word 9k),
 * block k's in lanes 4k..4k+3. */
static inline __m512 q4_d_quad(const struct q4_block *b)
{
    static const uint16_t idx[32] __attribute__((aligned(64))) = {
        0, 0, 0, 0, 9, 9, 9, 9, 18, 18, 18, 18, 27, 27, 27, 27,
    };
    __m512i h = _mm512_permutexvar_epi16(_mm512_load_si512(idx), _mm512_loadu_si512(b));

    return _mm512_cvtph_ps(_mm512_castsi512_si256(h));
}

/* acc + per-lane dot of codes u and activations qx (groups of 4 bytes). */
__attribute__((target("avx512vnni")))
static inline __m512i q4_dot_vnni(__m512i acc, __m512i u, __m512i qx)
{
    return _mm512_dpbusd_epi32(acc, u, qx);
}

static inline __m512i q4_dot_bw(__m512i acc, __m512i u, __m512i qx)
{
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, qx),
                                                   _mm512_set1_epi16(1)));
}

/* One quad's step for vector g: codes LO, HI, weight scales D, quad J. */
#define Q4_XV_STEP(DOT, LO, HI, D, J) \
    a[g] = _mm512_fmadd_ps( \
        _mm512_cvtepi32_ps(DOT(DOT(_mm512_load_si512(xv[g].bias + 16 * (J)), LO, \
                                   _mm512_load_si512(xv[g].q + 128 * (J))), \
                               HI, _mm512_load_si512(xv[g].q + 128 * (J) + 64))), \
        _mm512_mul_ps(D, _mm512_load_ps(xv[g].dx + 16 * (J))), a[g])

/* The codes and scales of quad K (blocks at k), then every vector's step. */
#define Q4_XV_QUAD(DOT, G, K, J) \
    { \
        __m512i u = q4_codes_quad(K); \
        __m512i lo = _mm512_and_si512(u, _mm512_set1_epi8(15)); \
        __m512i hi = _mm512_and_si512(_mm512_srli_epi16(u, 4), _mm512_set1_epi8(15)); \
        __m512 d = q4_d_quad(K); \
        _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) { \
            Q4_XV_STEP(DOT, lo, hi, d, J); \
        } \
    }

/* y[g][r] for G vectors xv[g], rows [r0, r1): each quad's codes and
 * scales unpacked once for all G. */
#define Q4_XV_ROWS(DOT, G) \
    for (int r = r0; r < r1; r++) { \
        const struct q4_block *bl = base + (size_t)r * nb; \
        __m512 a[G]; \
        int j = 0; \
        _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) { \
            a[g] = _mm512_setzero_ps(); \
        } \
        for (; j < full; j++) { \
            const struct q4_block *k = bl + 4 * j; \
            _mm_prefetch((const char *)k + MATVEC_PREFETCH, _MM_HINT_T0); \
            Q4_XV_QUAD(DOT, G, k, j) \
        } \
        if (j < quads) { \
            struct q4_block pad[4]; \
            memset(pad, 0, sizeof pad); \
            memcpy(pad, bl + 4 * j, (size_t)(nb - 4 * j) * sizeof *pad); \
            Q4_XV_QUAD(DOT, G, pad, j) \
        } \
        _Pragma("GCC unroll 4") for (int g = 0; g < G; g++) { \
            y[g][r] = _mm512_reduce_add_ps(a[g]); \
        } \
    }

#define Q4_XV_SWITCH(DOT) \
    const int quads = (nb + 3) / 4, full = nb / 4; \
    switch (G) { \
    case 1: \
        Q4_XV_ROWS(DOT, 1) \
        break; \
    case 2: \
        Q4_XV_ROWS(DOT, 2) \
        break; \
    case 3: \
        Q4_XV_ROWS(DOT, 3) \
        break; \
    default: \
        Q4_XV_ROWS(DOT, 4) \
        break; \
    }

typedef void q4_xv_rows_fn(const struct q4_block *base, int nb, const struct q4_xv *xv,
                           float *const *y, int G, int r0, int r1);

__attribute__((target("avx512vnni")))
static void q4_xv_rows_vnni(const struct q4_block *base, int nb, const struct q4_xv *xv,
                            float *const *y, int G, int r0, int r1)
{
    Q4_XV_SWITCH(q4_dot_vnni)
}

static void q4_xv_rows_bw(const struct q4_block *base, int nb, const struct q4_xv *xv,
                          float *const *y, int G, int r0, int r1)
{
    Q4_XV_SWITCH(q4_dot_bw)
}

/* kernel_format.matvec_rows for Q4; rows: the set's block products. */
static void q4_matvec(const struct kmat *W, const float *x, float *y, int r0, int r1,
                      q4_xv_rows_fn *rows)
{
    const int nb = quant_q4_blocks(W->cols);
    unsigned char stack[(X_STACK / 128) * 256] __attribute__((aligned(64)));
    unsigned char *buf = stack;
    struct q4_xv xv;

    if (q4_xv_bytes(nb) > sizeof stack) {
        buf = aligned_alloc(64, q4_xv_bytes(nb));
        if (!buf) {
            kernel_set_quant.format[RWKV_DTYPE_Q4].matvec_rows(W, x, y, r0, r1);
            return;
        }
    }
    q4_xv_fill(&xv, buf, x, W->cols, nb);
    rows(W->data, nb, &xv, &y, 1, r0, r1);
    if (buf != stack) {
        free(buf);
    }
}

static void q4_matvec_rows(const struct kmat *W, const float *x, float *y, int r0, int r1)
{
    q4_matvec(W, x, y, r0, r1, q4_xv_rows_bw);
}

static void q4_matvec_rows_vnni(const struct kmat *W, const float *x, float *y, int r0, int r1)
{
    q4_matvec(W, x, y, r0, r1, q4_xv_rows_vnni);
}

/* kernel_format.matvec_multi_rows for Q4: four vectors at a time through
 * the same rows as q4_matvec (so the same sums, bit for bit). */
static void q4_matvec_multi(const struct kmat *W, const float *X, int T, float *Y, int r0, int r1,
                            q4_xv_rows_fn *rows)
{
    const int nb = quant_q4_blocks(W->cols);
    const size_t each = q4_xv_bytes(nb);
    unsigned char *buf = aligned_alloc(64, 4 * each);

    if (!buf) {
        for (int t = 0; t < T; t++) {
            q4_matvec(W, X + (size_t)t * W->cols, Y + (size_t)t * W->rows, r0, r1, rows);
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
        rows(W->data, nb, xv, y, G, r0, r1);
    }
    free(buf);
}

static void q4_matvec_multi_rows(const struct kmat *W, const float *X, int T, float *Y, int r0,
                                 int r1)
{
    q4_matvec_multi(W, X, T, Y, r0, r1, q4_xv_rows_bw);
}

static void q4_matvec_multi_rows_vnni(const struct kmat *W, const float *X, int T, float *Y,
                                      int r0, int r1)
{
    q4_matvec_multi(W, X, T, Y, r0, r1, q4_xv_rows_vnni);
}

/* ---- Sequence mode: int8 activations, integer block products ------------
 * quant.h defines the value: each token's x quantised per block of 32, an
 * exact integer product per block, a float scale per block.  Tiles of 4 rows
 * by 4 tokens keep 16 accumulators in registers; every 512-bit step covers
 * two blocks (lanes 0-7 the first, 8-15 the second).  Tokens are quantised
 * MM_TOKENS at a time, so their blocks stay in cache while the rows pass. */

#define MM_TOKENS 16
#define MM_RN 4
#define MM_TN 4

/* Quantised activations of up to MM_TOKENS tokens, padded to an even number
 * of blocks (a zero block with zero scale and sum). */
struct xq_tile {
    int steps;                  /* 64-column steps: ceil(blocks / 2) */
    int8_t *q;                  /* [MM_TOKENS][64 * steps] */
    float *d;                   /* [MM_TOKENS][2 * steps] */
    int32_t *negsum;            /* [MM_TOKENS][2 * steps]: -sum of the block's codes */
};

static int xq_tile_alloc(struct xq_tile *xt, int cols)
{
    int nb = quant_q4_blocks(cols);

    xt->steps = (nb + 1) / 2;
    xt->q = aligned_alloc(64, (size_t)MM_TOKENS * 64 * xt->steps);
    xt->d = malloc((size_t)MM_TOKENS * 2 * xt->steps * sizeof *xt->d);
    xt->negsum = malloc((size_t)MM_TOKENS * 2 * xt->steps * sizeof *xt->negsum);
    if (!xt->q || !xt->d || !xt->negsum) {
        free(xt->q);
        free(xt->d);
        free(xt->negsum);
        return -1;
    }
    return 0;
}

static void xq_tile_free(struct xq_tile *xt)
{
    free(xt->q);
    free(xt->d);
    free(xt->negsum);
}

/* Token i of the tile from x[cols]. */
static void xq_tile_fill(struct xq_tile *xt, int i, const float *x, int cols)
{
    int nb = quant_q4_blocks(cols);
    int8_t *q = xt->q + (size_t)i * 64 * xt->steps;
    float *d = xt->d + (size_t)i * 2 * xt->steps;
    int32_t *s = xt->negsum + (size_t)i * 2 * xt->steps;

    xq_fill(x, cols, nb, q, d, s);
    if (nb & 1) {
        memset(q + 32 * nb, 0, 32);
        d[nb] = 0;
        s[nb] = 0;
    }
    for (int b = 0; b < nb; b++) {
        s[b] = -s[b];
    }
}

/* Two per-block values (p[0] in lanes 0-7, p[1] in 8-15). */
static inline __m512 pair_ps(const float *p)
{
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);

    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(
                                          _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)p))));
}

/* acc + u . s in 16 int32 lanes (u unsigned, s signed bytes, groups of 4). */
#define DOT_VNNI(acc, u, s) _mm512_dpbusd_epi32((acc), (u), (s))
#define DOT_BW(acc, u, s) \
    _mm512_add_epi32((acc), _mm512_madd_epi16(_mm512_maddubs_epi16((u), (s)), _mm512_set1_epi16(1)))

/* Q8: Y[t][r] = s[r] * sum_b dx_tb * sum_j q_rj qx_tj.  vpdpbusd wants one
 * unsigned operand: |w| times qx with the sign of w (|w| <= 127, so
 * vpmaddubsw cannot saturate either). */
#define Q8_TILE(NAME, ATTR, DOT) \
ATTR static inline __attribute__((always_inline)) void NAME( \
    const struct kmat *W, int r, const struct xq_tile *xt, int t, int t0, float *Y, \
    const int RN, const int TN) \
{ \
    const int cols = W->cols; \
    const int8_t *w = (const int8_t *)W->data + (size_t)r * cols; \
    __m512 acc[MM_RN][MM_TN]; \
    _Pragma("GCC unroll 4") for (int i = 0; i < RN; i++) { \
        _Pragma("GCC unroll 4") for (int j = 0; j < TN; j++) { \
            acc[i][j] = _mm512_setzero_ps(); \
        } \
    } \
    for (int k = 0; k < xt->steps; k++) { \
        int c = 64 * k; \
        __mmask64 m = cols - c >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (cols - c)) - 1); \
        __m512i aw[MM_RN]; \
        __mmask64 neg[MM_RN]; \
        _Pragma("GCC unroll 4") for (int i = 0; i < RN; i++) { \
            __m512i v = _mm512_maskz_loadu_epi8(m, w + (size_t)i * cols + c); \
            aw[i] = _mm512_abs_epi8(v); \
            neg[i] = _mm512_movepi8_mask(v); \
        } \
        _Pragma("GCC unroll 4") for (int j = 0; j < TN; j++) { \
            __m512i qx = _mm512_load_si512(xt->q + (size_t)(t + j) * 64 * xt->steps + c); \
            __m512 dx = pair_ps(xt->d + (size_t)(t + j) * 2 * xt->steps + 2 * k); \
            _Pragma("GCC unroll 4") for (int i = 0; i < RN; i++) { \
                __m512i sq = _mm512_mask_sub_epi8(qx, neg[i], _mm512_setzero_si512(), qx); \
                __m512i p = DOT(_mm512_setzero_si512(), aw[i], sq); \
                acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), dx, acc[i][j]); \
            } \
        } \
    } \
    _Pragma("GCC unroll 4") for (int i = 0; i < RN; i++) { \
        _Pragma("GCC unroll 4") for (int j = 0; j < TN; j++) { \
            Y[(size_t)(t0 + t + j) * W->rows + r + i] = \
                W->scales[r + i] * _mm512_reduce_add_ps(acc[i][j]); \
        } \
    } \
}

/* One format's sequence-mode rows: tokens MM_TOKENS at a time, then tiles
 * of MM_RN x MM_TN, smaller tiles at the edges. */
#define MATMUL_ROWS(NAME, ATTR, TILE) \
ATTR static void NAME(const struct kmat *W, const struct xq_tile *xt, int t0, int n, \
                      float *Y, int r0, int r1) \
{ \
    int r = r0; \
    for (; r + MM_RN <= r1; r += MM_RN) { \
        int t = 0; \
        for (; t + MM_TN <= n; t += MM_TN) { \
            TILE(W, r, xt, t, t0, Y, MM_RN, MM_TN); \
        } \
        for (; t < n; t++) { \
            TILE(W, r, xt, t, t0, Y, MM_RN, 1); \
        } \
    } \
    for (; r < r1; r++) { \
        int t = 0; \
        for (; t + MM_TN <= n; t += MM_TN) { \
            TILE(W, r, xt, t, t0, Y, 1, MM_TN); \
        } \
        for (; t < n; t++) { \
            TILE(W, r, xt, t, t0, Y, 1, 1); \
        } \
    } \
}

#define VNNI __attribute__((target("avx512vnni")))
#define NO_ATTR

Q8_TILE(q8_tile_bw, NO_ATTR, DOT_BW)
MATMUL_ROWS(q8_seq_bw, NO_ATTR, q8_tile_bw)

typedef void rows_fn(const struct kmat *W, const struct xq_tile *xt, int t0, int n, float *Y,
                     int r0, int r1);

static void matmul_int8(const struct kmat *W, const float *X, int T, float *Y, int r0, int r1,
                        rows_fn *rows)
{
    struct xq_tile xt;

    if (xq_tile_alloc(&xt, W->cols) != 0) {
        /* Out of memory: the portable kernel allocates less. */
        kernel_set_quant.format[W->type].matmul_rows(W, X, T, Y, r0, r1);
        return;
    }
    for (int t0 = 0; t0 < T; t0 += MM_TOKENS) {
        int n = T - t0 < MM_TOKENS ? T - t0 : MM_TOKENS;

        for (int i = 0; i < n; i++) {
            xq_tile_fill(&xt, i, X + (size_t)(t0 + i) * W->cols, W->cols);
        }
        rows(W, &xt, t0, n, Y, r0, r1);
    }
    xq_tile_free(&xt);
}

static void q8_matmul_rows(const struct kmat *W, const float *X, int T, float *Y, int r0, int r1)
{
    matmul_int8(W, X, T, Y, r0, r1, q8_seq_bw);
}

/* ---- Sequence mode, packed tiles ------------------------------------------
 * The same values as above (quant.h), computed with each int32 lane a whole
 * block product of one row and one token: a tile of 16 rows is unpacked once
 * per call into signed int8 weights laid out [block][group of 4 columns]
 * [row][4], and every token of the call passes over it, 8 at a time: one
 * vpdpbusd takes a group's 16 rows and one token's 4 activations (broadcast).
 * After a block's 8 groups each lane holds its block's exact integer sum,
 * and only then does float arithmetic start (convert, scale, add): once per
 * block and token for 16 rows, not once per two blocks of one row.
 * vpdpbusd wants one unsigned operand: the activations qx + 128 (in
 * [1, 255]); the 128 * sum of the block's weights (Q4: u - 8, Q8: q) this
 * adds is taken off through the accumulator's start, one vector per block
 * and tile, made when the tile is unpacked.  The tile (nb * 640 bytes)
 * stays in L1 or L2 while the tokens pass, so the weights are unpacked once
 * per call however many tokens it has, and the activations need nothing
 * per block but their codes and scale. */

#define PT_ROWS 16
#define PT_TOK 8

/* Activations of T tokens quantised per block (xq_fill's values) as
 * qx + 128, in groups of PT_TOK tokens: for group g and block b the PT_TOK
 * tokens' 32 codes one after the other, and their scales.  A last, partial
 * group's missing tokens are never read. */
struct pt_x {
    int nb;
    uint8_t *q;                 /* [groups][nb][PT_TOK][32] */
    float *d;                   /* [groups][nb][PT_TOK] */
};

static size_t pt_x_bytes(int cols, int T)
{
    size_t n = (size_t)((T + PT_TOK - 1) / PT_TOK) * PT_TOK * (size_t)quant_q4_blocks(cols);

    return n * (32 + sizeof(float));
}

/* buf: pt_x_bytes(cols, T) bytes, 64-byte aligned. */
static void pt_x_init(struct pt_x *xs, void *buf, int cols, int T)
{
    size_t n = (size_t)((T + PT_TOK - 1) / PT_TOK) * PT_TOK * (size_t)quant_q4_blocks(cols);

    xs->nb = quant_q4_blocks(cols);
    xs->q = buf;
    xs->d = (float *)(xs->q + n * 32);
}

/* kernel_format.seq_fill: tokens [t0, t1) of X[T][cols] into buf. */
static void pt_seq_fill(const float *X, int cols, int T, int t0, int t1, void *buf)
{
    const __m128i flip = _mm_set1_epi8((char)0x80);
    struct pt_x xs;

    pt_x_init(&xs, buf, cols, T);
    for (int t = t0; t < t1; t++) {
        const float *x = X + (size_t)t * cols;
        size_t at = (size_t)(t / PT_TOK) * xs.nb * PT_TOK + (size_t)(t % PT_TOK);

        for (int b = 0; b < xs.nb; b++, at += PT_TOK) {
            int n = cols - 32 * b;
            __mmask16 m0 = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1);
            __mmask16 m1 = n >= 32 ? 0xffff : n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1);
            __m512 v0 = _mm512_maskz_loadu_ps(m0, x + 32 * b);
            __m512 v1 = _mm512_maskz_loadu_ps(m1, x + 32 * b + 16);
            float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
            __m512 inv = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
            __m128i q0 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v0, inv)));
            __m128i q1 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v1, inv)));

            _mm_storeu_si128((__m128i *)(xs.q + at * 32), _mm_xor_si128(q0, flip));
            _mm_storeu_si128((__m128i *)(xs.q + at * 32 + 16), _mm_xor_si128(q1, flip));
            xs.d[at] = amax / 127.0f;
        }
    }
}

/* The 16 rows' dwords k (bytes 4k .. 4k + 3 of v[i]) as z[k], lane i row
 * i: a 16 x 4 transpose. */
static inline void pt_transpose(const __m128i *v, __m512i *z)
{
    const __m512i perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    __m512i b[4], c[4];

    for (int a = 0; a < 4; a++) {
        __m512i t = _mm512_castsi128_si512(v[4 * a]);

        t = _mm512_inserti32x4(t, v[4 * a + 1], 1);
        t = _mm512_inserti32x4(t, v[4 * a + 2], 2);
        t = _mm512_inserti32x4(t, v[4 * a + 3], 3);
        b[a] = _mm512_permutexvar_epi32(perm, t);   /* 128-bit chunk k: rows 4a..4a+3, dword k */
    }
    c[0] = _mm512_shuffle_i32x4(b[0], b[1], 0x44);
    c[1] = _mm512_shuffle_i32x4(b[0], b[1], 0xee);
    c[2] = _mm512_shuffle_i32x4(b[2], b[3], 0x44);
    c[3] = _mm512_shuffle_i32x4(b[2], b[3], 0xee);
    z[0] = _mm512_shuffle_i32x4(c[0], c[2], 0x88);
    z[1] = _mm512_shuffle_i32x4(c[0], c[2], 0xdd);
    z[2] = _mm512_shuffle_i32x4(c[1], c[3], 0x88);
    z[3] = _mm512_shuffle_i32x4(c[1], c[3], 0xdd);
}

/* A tile: rows [r, r + n), n <= 16, as signed weights wt[nb][8][16][4],
 * per block the accumulators' start bias[nb][16] (-128 * the row's block
 * sum) and, for Q4, the block scales dw[nb][16]; lanes past n repeat the
 * last row. */
struct pt_tile {
    int8_t *wt;
    int32_t *bias;
    float *dw;
};

static inline void pt_store_group(const struct pt_tile *tl, int b, int k, __m512i w, __m512i *sum)
{
    _mm512_store_si512(tl->wt + (size_t)b * 512 + 64 * k, w);
    *sum = _mm512_add_epi32(*sum, _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_set1_epi8(1), w),
                                                    _mm512_set1_epi16(1)));
}

static void pt_unpack_q4(const struct kmat *W, int r, int n, const struct pt_tile *tl)
{
    const int nb = quant_q4_blocks(W->cols);
    const __m512i low = _mm512_set1_epi8(15), eight = _mm512_set1_epi8(8);
    const struct q4_block *row[PT_ROWS];

    for (int i = 0; i < PT_ROWS; i++) {
        row[i] = (const struct q4_block *)W->data + (size_t)(r + (i < n ? i : n - 1)) * nb;
    }
    for (int b = 0; b < nb; b++) {
        __m128i v[PT_ROWS];
        __m512i z[4], sum = _mm512_setzero_si512();
        uint16_t h[PT_ROWS];

        for (int i = 0; i < PT_ROWS; i++) {
            v[i] = _mm_loadu_si128((const __m128i *)row[i][b].qs);
            h[i] = row[i][b].d;
        }
        pt_transpose(v, z);
        for (int k = 0; k < 4; k++) {
            pt_store_group(tl, b, k, _mm512_sub_epi8(_mm512_and_si512(z[k], low), eight), &sum);
            pt_store_group(tl, b, k + 4,
                           _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(z[k], 4), low), eight),
                           &sum);
        }
        _mm512_store_si512(tl->bias + 16 * b, _mm512_sub_epi32(_mm512_setzero_si512(),
                                                                _mm512_slli_epi32(sum, 7)));
        _mm512_store_ps(tl->dw + 16 * b, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)h)));
    }
}

/* Q8: columns past cols are zero weights. */
static void pt_unpack_q8(const struct kmat *W, int r, int n, const struct pt_tile *tl)
{
    const int cols = W->cols, nb = quant_q4_blocks(cols);
    const int8_t *row[PT_ROWS];

    for (int i = 0; i < PT_ROWS; i++) {
        row[i] = (const int8_t *)W->data + (size_t)(r + (i < n ? i : n - 1)) * cols;
    }
    for (int b = 0; b < nb; b++) {
        __m512i sum = _mm512_setzero_si512();

        for (int h = 0; h < 2; h++) {
            int c = 32 * b + 16 * h, left = cols - c;
            __mmask16 m = left >= 16 ? 0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
            __m128i v[PT_ROWS];
            __m512i z[4];

            for (int i = 0; i < PT_ROWS; i++) {
                v[i] = _mm_maskz_loadu_epi8(m, row[i] + c);
            }
            pt_transpose(v, z);
            for (int k = 0; k < 4; k++) {
                pt_store_group(tl, b, 4 * h + k, z[k], &sum);
            }
        }
        _mm512_store_si512(tl->bias + 16 * b, _mm512_sub_epi32(_mm512_setzero_si512(),
                                                                _mm512_slli_epi32(sum, 7)));
    }
}

/* Y[j * ystride + i] for the tile's rows (lanes in mask m) and TN tokens of
 * group g: Q4 (Q4 = 1, block scales tl->dw), or Q8 with its rows' scales s. */
#define PT_TILE(NAME, ATTR, DOT) \
ATTR static inline __attribute__((always_inline)) void NAME( \
    const struct pt_tile *tl, const struct pt_x *xs, int g, const int TN, const int Q4, float *Y, \
    size_t ystride, __mmask16 m, __m512 s) \
{ \
    const int nb = xs->nb; \
    const uint8_t *xq = xs->q + (size_t)g * nb * PT_TOK * 32; \
    const float *xd = xs->d + (size_t)g * nb * PT_TOK; \
    __m512 f[PT_TOK]; \
    _Pragma("GCC unroll 8") for (int j = 0; j < TN; j++) { \
        f[j] = _mm512_setzero_ps(); \
    } \
    for (int b = 0; b < nb; b++) { \
        const int8_t *w = tl->wt + (size_t)b * 512; \
        const uint8_t *x = xq + (size_t)b * PT_TOK * 32; \
        const __m512i bias = _mm512_load_si512(tl->bias + 16 * b); \
        __m512i a[PT_TOK]; \
        _Pragma("GCC unroll 8") for (int j = 0; j < TN; j++) { \
            a[j] = bias; \
        } \
        _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++) { \
            __m512i wv = _mm512_load_si512(w + 64 * k); \
            _Pragma("GCC unroll 8") for (int j = 0; j < TN; j++) { \
                int32_t v; \
                memcpy(&v, x + 32 * j + 4 * k, sizeof v); \
                a[j] = DOT(a[j], _mm512_set1_epi32(v), wv); \
            } \
        } \
        if (Q4) { \
            __m512 d = _mm512_load_ps(tl->dw + 16 * b); \
            _Pragma("GCC unroll 8") for (int j = 0; j < TN; j++) { \
                f[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[j]), \
                                       _mm512_mul_ps(d, _mm512_set1_ps(xd[b * PT_TOK + j])), f[j]); \
            } \
        } else { \
            _Pragma("GCC unroll 8") for (int j = 0; j < TN; j++) { \
                f[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[j]), \
                                       _mm512_set1_ps(xd[b * PT_TOK + j]), f[j]); \
            } \
        } \
    } \
    _Pragma("GCC unroll 8") for (int j = 0; j < TN; j++) { \
        _mm512_mask_storeu_ps(Y + (size_t)j * ystride, m, Q4 ? f[j] : _mm512_mul_ps(f[j], s)); \
    } \
}

/* Every token of xs (T of them) against one unpacked tile. */
#define PT_TOKENS(NAME, ATTR, TILE, Q4) \
ATTR static void NAME(const struct pt_tile *tl, const struct pt_x *xs, int T, float *Y, \
                      size_t ystride, __mmask16 m, __m512 s) \
{ \
    for (int g = 0; g * PT_TOK < T; g++) { \
        float *y = Y + (size_t)g * PT_TOK * ystride; \
        switch (T - g * PT_TOK >= PT_TOK ? PT_TOK : T - g * PT_TOK) { \
        case 8: TILE(tl, xs, g, 8, Q4, y, ystride, m, s); break; \
        case 7: TILE(tl, xs, g, 7, Q4, y, ystride, m, s); break; \
        case 6: TILE(tl, xs, g, 6, Q4, y, ystride, m, s); break; \
        case 5: TILE(tl, xs, g, 5, Q4, y, ystride, m, s); break; \
        case 4: TILE(tl, xs, g, 4, Q4, y, ystride, m, s); break; \
        case 3: TILE(tl, xs, g, 3, Q4, y, ystride, m, s); break; \
        case 2: TILE(tl, xs, g, 2, Q4, y, ystride, m, s); break; \
        default: TILE(tl, xs, g, 1, Q4, y, ystride, m, s); break; \
        } \
    } \
}

/* vpmaddubsw cannot saturate here: |u - 8| <= 8, so a pair is at most
 * 2 * 255 * 8.  (Q8's weights could: the avx512 set keeps its own Q8.) */
PT_TILE(pt_tile_vnni, VNNI, DOT_VNNI)
PT_TILE(pt_tile_bw, NO_ATTR, DOT_BW)
PT_TOKENS(pt_q4_vnni, VNNI, pt_tile_vnni, 1)
PT_TOKENS(pt_q8_vnni, VNNI, pt_tile_vnni, 0)
PT_TOKENS(pt_q4_bw, NO_ATTR, pt_tile_bw, 1)

typedef void pt_tokens_fn(const struct pt_tile *tl, const struct pt_x *xs, int T, float *Y,
                          size_t ystride, __mmask16 m, __m512 s);

/* Rows [r0, r1) of W times the T tokens X prepared in buf (pt_seq_fill). */
static void pt_rows(const struct kmat *W, const float *X, const void *buf, int T, float *Y,
                    int r0, int r1, pt_tokens_fn *tokens)
{
    const int q4 = W->type == RWKV_DTYPE_Q4, nb = quant_q4_blocks(W->cols);
    struct pt_x xs;
    struct pt_tile tl;

    tl.wt = aligned_alloc(64, (size_t)nb * (512 + 128));
    if (!tl.wt) {
        /* Out of memory: the portable kernel allocates less. */
        kernel_set_quant.format[W->type].matmul_rows(W, X, T, Y, r0, r1);
        return;
    }
    tl.bias = (int32_t *)(tl.wt + (size_t)nb * 512);
    tl.dw = (float *)(tl.bias + (size_t)nb * 16);
    pt_x_init(&xs, (void *)buf, W->cols, T);
    for (int r = r0; r < r1; r += PT_ROWS) {
        int n = r1 - r < PT_ROWS ? r1 - r : PT_ROWS;
        __mmask16 m = (__mmask16)((1u << n) - 1);
        __m512 s = _mm512_setzero_ps();

        if (q4) {
            pt_unpack_q4(W, r, n, &tl);
        } else {
            pt_unpack_q8(W, r, n, &tl);
            s = _mm512_maskz_loadu_ps(m, W->scales + r);
        }
        tokens(&tl, &xs, T, Y + r, (size_t)W->rows, m, s);
    }
    free(tl.wt);
}

/* kernel_format.matmul_rows: pt_seq_fill and pt_rows on one thread. */
static void pt_matmul(const struct kmat *W, const float *X, int T, float *Y, int r0, int r1,
                      pt_tokens_fn *tokens)
{
    size_t bytes = pt_x_bytes(W->cols, T);
    void *buf = aligned_alloc(64, (bytes + 63) & ~(size_t)63);

    if (!buf) {
        kernel_set_quant.format[W->type].matmul_rows(W, X, T, Y, r0, r1);
        return;
    }
    pt_seq_fill(X, W->cols, T, 0, T, buf);
    pt_rows(W, X, buf, T, Y, r0, r1, tokens);
    free(buf);
}

#define PT_ENTRIES(FMT, TOKENS, ATTR) \
ATTR static void FMT##_matmul_rows_##TOKENS(const struct kmat *W, const float *X, int T, \
                                            float *Y, int r0, int r1) \
{ \
    pt_matmul(W, X, T, Y, r0, r1, TOKENS); \
} \
ATTR static void FMT##_seq_rows_##TOKENS(const struct kmat *W, const float *X, const void *buf, \
                                         int T, float *Y, int r0, int r1) \
{ \
    pt_rows(W, X, buf, T, Y, r0, r1, TOKENS); \
}

PT_ENTRIES(q4, pt_q4_vnni, NO_ATTR)
PT_ENTRIES(q8, pt_q8_vnni, NO_ATTR)
PT_ENTRIES(q4, pt_q4_bw, NO_ATTR)

const struct kernel_set kernel_set_avx512 = {
    .name = "avx512",
    .usable = avx512_usable,
    .format = {
        [RWKV_DTYPE_F16] = { quant_pack_f16, f16_matvec_rows, NULL, quant_bytes_half },
        [RWKV_DTYPE_BF16] = { quant_pack_bf16, bf16_matvec_rows, bf16_matmul_rows,
                              quant_bytes_half, NULL,
                              bf16_matvec_multi_rows, 4, bs_seq_bytes, bs_seq_fill,
                              bs_seq_rows },
        [RWKV_DTYPE_Q8] = { quant_pack_q8, q8_matvec_rows, q8_matmul_rows, quant_bytes_q8,
                            quant_rows_to_f32, q8_matvec_multi_rows, 4 },
        [RWKV_DTYPE_Q4] = { quant_pack_q4, q4_matvec_rows, q4_matmul_rows_pt_q4_bw, quant_bytes_q4,
                            quant_rows_to_f32, q4_matvec_multi_rows, 4, pt_x_bytes, pt_seq_fill,
                            q4_seq_rows_pt_q4_bw },
    },
    .f32_matmul_rows = f32_matmul_rows,
};

/* The same with AVX512-VNNI (Ice Lake, Zen 4 and later): vpdpbusd for the
 * integer products of Q8 and Q4; every other format falls through to the
 * set above.  A set of its own, so that a VNNI CPU tests both. */
static int avx512vnni_usable(void)
{
    return avx512_usable() && __builtin_cpu_supports("avx512vnni");
}

const struct kernel_set kernel_set_avx512vnni = {
    .name = "avx512vnni",
    .usable = avx512vnni_usable,
    .format = {
        [RWKV_DTYPE_Q8] = { quant_pack_q8, q8_matvec_rows_vnni, q8_matmul_rows_pt_q8_vnni,
                            quant_bytes_q8, quant_rows_to_f32, q8_matvec_multi_rows_vnni, 4, pt_x_bytes,
                            pt_seq_fill, q8_seq_rows_pt_q8_vnni },
        [RWKV_DTYPE_Q4] = { quant_pack_q4, q4_matvec_rows_vnni, q4_matmul_rows_pt_q4_vnni,
                            quant_bytes_q4, quant_rows_to_f32, q4_matvec_multi_rows_vnni, 4,
                            pt_x_bytes, pt_seq_fill, q4_seq_rows_pt_q4_vnni },
    },
};
