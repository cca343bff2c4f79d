/*
 * test_quant.c - every weight format and every kernel set this CPU can run,
 * against the float64 value quant.h defines for it, on sizes that are not
 * multiples of 16, 32 or 64 and on some that are (no partial block, pairs
 * of Q4 blocks with and without an odd last one, the kernels' on-stack
 * limit of 4096 columns); the conversions of kmat_from_tensor; and the
 * quality of each format on the v7 fixture model (max / mean absolute logit
 * error and KL divergence against float32, printed as diagnostics).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/kernels/kernels.h"
#include "engine/kernels/kernels_impl.h"
#include "engine/kernels/kmat.h"
#include "engine/kernels/quant.h"
#include "engine/rwkv.h"
#include "tests/evalonce.h"
#include "tests/kl.h"
#include "tests/tap.h"

static uint64_t rng_state = 88172645463325252ull;

static double urand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}

/* Roughly normal values with a few outliers, as trained weights have. */
static float wrand(void)
{
    double s = urand() + urand() + urand() + urand() - 2.0;

    if (urand() < 0.01) {
        s *= 6;
    }
    return (float)(s * 0.1);
}

/* An activation: a spread of magnitudes, as a LayerNorm output or relu^2
 * has. */
static float xrand(void)
{
    return (float)((urand() * 4 - 2) * (urand() < 0.05 ? 20 : 1));
}

static const char *const format_names[] = { "auto", "f32", "f16", "bf16", "q8", "q4" };

/* The exact value of row r of W times x (quant.h), in float64, and the sum
 * of |w x| that bounds float32 rounding of the kernel's sum. */
static double reference_row(const struct kmat *W, int r, const float *x,
                            const struct quant_xq *xq, double *mag)
{
    double s = 0, m = 0;

    if (W->type == RWKV_DTYPE_Q8) {
        /* x rounded per block (xq), in both modes (quant.h) */
        const int8_t *q = (const int8_t *)W->data + (size_t)r * W->cols;

        for (int b = 0; b < xq->n_blocks; b++) {
            long dot = 0, adot = 0;

            for (int j = 0; j < 32 && 32 * b + j < W->cols; j++) {
                dot += (long)q[32 * b + j] * xq->q[32 * b + j];
                adot += labs((long)q[32 * b + j] * xq->q[32 * b + j]);
            }
            s += (double)xq->d[b] * (double)dot;
            m += (double)xq->d[b] * (double)adot;
        }
        *mag = m * W->scales[r];
        return s * W->scales[r];
    }
    if (W->type == RWKV_DTYPE_Q4) {
        int nb = quant_q4_blocks(W->cols);
        const struct q4_block *blk = (const struct q4_block *)W->data + (size_t)r * nb;

        for (int b = 0; b < nb; b++) {
            double d = (double)half_f16_to_f32(blk[b].d) * xq->d[b];
            long dot = 0, adot = 0;

            for (int j = 0; j < 16; j++) {
                int lo = (blk[b].qs[j] & 15) - 8, hi = (blk[b].qs[j] >> 4) - 8;

                dot += lo * xq->q[32 * b + j] + hi * xq->q[32 * b + j + 16];
                adot += labs((long)lo * xq->q[32 * b + j]) + labs((long)hi * xq->q[32 * b + j + 16]);
            }
            s += d * (double)dot;
            m += fabs(d) * (double)adot;
        }
    } else {
        float *w = malloc((size_t)W->cols * sizeof *w);

        quant_dequant_row(W, r, w);
        for (int c = 0; c < W->cols; c++) {
            s += (double)w[c] * x[c];
            m += fabs((double)w[c] * x[c]);
        }
        free(w);
    }
    *mag = m;
    return s;
}

/* Runs one set's matvec_rows for format t on a rows x cols matrix against
 * the reference; also checks that rows outside [r0, r1) are not written.
 * Returns the worst error in units of the tolerance (<= 1 passes). */
static double check_kernel(const struct kernel_set *set, enum rwkv_dtype t, int rows, int cols)
{
    struct kmat W = { 0 };
    float *src = malloc((size_t)rows * cols * sizeof *src), *x = malloc((size_t)cols * sizeof *x);
    float *y = malloc((size_t)rows * sizeof *y);
    struct quant_xq xq = { 0 };
    double worst = 0;
    int r0 = rows > 2 ? 1 : 0, r1 = rows > 2 ? rows - 1 : rows;

    for (size_t i = 0; i < (size_t)rows * cols; i++) {
        src[i] = wrand();
    }
    for (int c = 0; c < cols; c++) {
        x[c] = (float)(urand() * 4 - 2);
    }
    W.type = t;
    W.rows = rows;
    W.cols = cols;
    if (t == RWKV_DTYPE_F32) {
        W.data = src;
    } else if (kernel_set_quant.format[t].pack(&W, src) != 0) {
        return 1e9;
    }
    if (quant_xq_alloc(&xq, cols) != 0) {
        return 1e9;
    }
    if (t != RWKV_DTYPE_F32 && set->format[t].pack != kernel_set_quant.format[t].pack) {
        /* the set's own packer must give the portable bytes */
        struct kmat V = { .type = t, .rows = rows, .cols = cols };

        if (set->format[t].pack(&V, src) != 0 ||
            memcmp(V.data, W.data, t == RWKV_DTYPE_Q8 ? (size_t)rows * cols : kmat_bytes(&W)) != 0 ||
            (W.scales && memcmp(V.scales, W.scales, (size_t)rows * sizeof(float)) != 0)) {
            worst = 1e9;
        }
        kmat_free(&V);
    }
    quant_xq_fill(&xq, x);
    for (int r = 0; r < rows; r++) {
        y[r] = NAN;
    }
    if (set->format[t].rows_to_f32) {
        /* sequence mode's conversion: exactly the dequantised rows */
        float *out = malloc((size_t)(r1 - r0) * cols * sizeof *out), *ref = malloc(cols * 4);

        set->format[t].rows_to_f32(&W, r0, r1, out);
        for (int r = r0; r < r1; r++) {
            quant_dequant_row(&W, r, ref);
            if (memcmp(ref, out + (size_t)(r - r0) * cols, (size_t)cols * 4) != 0) {
                worst = 1e9;
            }
        }
        free(out);
        free(ref);
    }
    if (set->format[t].matvec_multi_rows) {
        /* 1 to 9 vectors (every group size of kernels that take 2 or 4 at
         * a time, and groups after a full one), each bit-identical to the
         * set's matvec on it; rows outside [r0, r1) untouched */
        static const int Ts[] = { 1, 2, 3, 4, 5, 6, 9 };
        enum { T_MAX = 9 };
        float *X = malloc((size_t)T_MAX * cols * sizeof *X);
        float *Y = malloc((size_t)T_MAX * rows * sizeof *Y);
        float *one = malloc((size_t)rows * sizeof *one);

        for (size_t i = 0; i < (size_t)T_MAX * cols; i++) {
            /* a spread of magnitudes, as a LayerNorm output or relu^2 has */
            X[i] = xrand();
        }
        for (size_t k = 0; k < sizeof Ts / sizeof Ts[0]; k++) {
            int T = Ts[k];

            for (size_t i = 0; i < (size_t)T * rows; i++) {
                Y[i] = NAN;
            }
            set->format[t].matvec_multi_rows(&W, X, T, Y, r0, r1);
            for (int v = 0; v < T; v++) {
                set->format[t].matvec_rows(&W, X + (size_t)v * cols, one, r0, r1);
                for (int r = 0; r < rows; r++) {
                    float got = Y[(size_t)v * rows + r];

                    if (r < r0 || r >= r1 ? !isnan(got)
                                          : memcmp(&got, &one[r], sizeof got) != 0) {
                        worst = 1e9;
                    }
                }
            }
        }
        free(X);
        free(Y);
        free(one);
    }
    set->format[t].matvec_rows(&W, x, y, r0, r1);
    for (int r = 0; r < rows; r++) {
        double mag, ref = reference_row(&W, r, x, &xq, &mag), tol = 2e-6 * mag + 1e-6, e;

        if (r < r0 || r >= r1) {
            e = isnan(y[r]) ? 0 : 1e9;
        } else {
            e = isfinite(y[r]) ? fabs(y[r] - ref) / tol : 1e9;
        }
        if (e > worst) {
            worst = e;
        }
    }
    if (t != RWKV_DTYPE_F32) {
        kmat_free(&W);
    }
    quant_xq_free(&xq);
    free(src);
    free(x);
    free(y);
    return worst;
}

/* One set's matmul_rows (sequence mode) for format t on T tokens against
 * the exact value of quant.h (activations rounded per block for Q8 and
 * Q4); rows outside [r0, r1) must stay unwritten.  Worst error in units of
 * the tolerance. */
static double check_matmul(const struct kernel_set *set, enum rwkv_dtype t, int rows, int cols,
                           int T)
{
    struct kmat W = { .type = t, .rows = rows, .cols = cols };
    float *src = malloc((size_t)rows * cols * sizeof *src), *X = malloc((size_t)T * cols * 4);
    float *Y = malloc((size_t)T * rows * sizeof *Y);
    struct quant_xq xq = { 0 };
    double worst = 0;
    int r0 = rows > 2 ? 1 : 0, r1 = rows > 2 ? rows - 1 : rows;

    for (size_t i = 0; i < (size_t)rows * cols; i++) {
        src[i] = wrand();
    }
    for (size_t i = 0; i < (size_t)T * cols; i++) {
        X[i] = xrand();
    }
    if (kernel_set_quant.format[t].pack(&W, src) != 0 || quant_xq_alloc(&xq, cols) != 0) {
        return 1e9;
    }
    for (size_t i = 0; i < (size_t)T * rows; i++) {
        Y[i] = NAN;
    }
    set->format[t].matmul_rows(&W, X, T, Y, r0, r1);
    for (int k = 0; k < T; k++) {
        quant_xq_fill(&xq, X + (size_t)k * cols);
        for (int r = 0; r < rows; r++) {
            double mag, ref = reference_row(&W, r, NULL, &xq, &mag), tol = 2e-6 * mag + 1e-6, e;
            float y = Y[(size_t)k * rows + r];

            if (r < r0 || r >= r1) {
                e = isnan(y) ? 0 : 1e9;
            } else {
                e = isfinite(y) ? fabs(y - ref) / tol : 1e9;
            }
            worst = fmax(worst, e);
        }
    }
    kmat_free(&W);
    quant_xq_free(&xq);
    free(src);
    free(X);
    free(Y);
    return worst;
}

/* One set's BF16 matmul_rows (float32 products of the exact weights) on
 * T tokens against the exact value, rows outside [r0, r1) unwritten; with
 * the set's f32_matmul_rows, the same products from a float32 copy of the
 * weights must agree to the bit.  Worst error in units of the tolerance;
 * *same is cleared when the two differ. */
static double check_matmul_bf16(const struct kernel_set *set, int rows, int cols, int T,
                                int *same)
{
    struct kmat W = { .type = RWKV_DTYPE_BF16, .rows = rows, .cols = cols };
    struct kmat F = { .type = RWKV_DTYPE_F32, .rows = rows, .cols = cols };
    float *src = malloc((size_t)rows * cols * sizeof *src), *X = malloc((size_t)T * cols * 4);
    float *Y = malloc((size_t)T * rows * sizeof *Y), *Y2 = malloc((size_t)T * rows * sizeof *Y2);
    double worst = 0;
    int r0 = rows > 2 ? 1 : 0, r1 = rows > 2 ? rows - 1 : rows;

    for (size_t i = 0; i < (size_t)rows * cols; i++) {
        src[i] = wrand();
    }
    for (size_t i = 0; i < (size_t)T * cols; i++) {
        X[i] = xrand();
    }
    if (kernel_set_quant.format[RWKV_DTYPE_BF16].pack(&W, src) != 0) {
        return 1e9;
    }
    for (int r = 0; r < rows; r++) {
        quant_dequant_row(&W, r, src + (size_t)r * cols);
    }
    if (kernel_set_portable.format[RWKV_DTYPE_F32].pack(&F, src) != 0) {
        return 1e9;
    }
    for (size_t i = 0; i < (size_t)T * rows; i++) {
        Y[i] = Y2[i] = NAN;
    }
    set->format[RWKV_DTYPE_BF16].matmul_rows(&W, X, T, Y, r0, r1);
    for (int k = 0; k < T; k++) {
        for (int r = 0; r < rows; r++) {
            double mag, ref = reference_row(&W, r, X + (size_t)k * cols, NULL, &mag), e;
            double tol = 2e-6 * mag + 1e-6;
            float y = Y[(size_t)k * rows + r];

            if (r < r0 || r >= r1) {
                e = isnan(y) ? 0 : 1e9;
            } else {
                e = isfinite(y) ? fabs(y - ref) / tol : 1e9;
            }
            worst = fmax(worst, e);
        }
    }
    if (set->f32_matmul_rows) {
        set->f32_matmul_rows(&F, X, T, Y2, r0, r1);
        for (int k = 0; k < T; k++) {
            for (int r = r0; r < r1; r++) {
                if (memcmp(&Y[(size_t)k * rows + r], &Y2[(size_t)k * rows + r], sizeof *Y)) {
                    *same = 0;
                }
            }
        }
    }
    kmat_free(&W);
    kmat_free(&F);
    free(src);
    free(X);
    free(Y);
    free(Y2);
    return worst;
}

static void test_kernel_sets(void)
{
    static const int sizes[][2] = {
        { 1, 1 }, { 3, 7 }, { 5, 17 }, { 37, 45 }, { 67, 131 }, { 13, 1037 }, { 9, 4133 }, { 6, 5003 },
        { 4, 32 }, { 5, 64 }, { 3, 96 }, { 7, 192 }, { 5, 768 }, { 3, 4096 }, { 3, 4160 },
    };
    const struct kernel_set *sets[4];
    int n_sets = 0;

    sets[n_sets++] = &kernel_set_quant;
#ifdef __x86_64__
    if (kernel_set_avx2.usable()) {
        sets[n_sets++] = &kernel_set_avx2;
    } else {
        skip("avx2 kernels: this CPU has no AVX2/FMA");
    }
    if (kernel_set_avx512.usable()) {
        sets[n_sets++] = &kernel_set_avx512;
    } else {
        skip("avx512 kernels: this CPU has no AVX-512 F/BW/VL");
    }
    if (kernel_set_avx512vnni.usable()) {
        sets[n_sets++] = &kernel_set_avx512vnni;
    } else {
        skip("avx512vnni kernels: this CPU has no AVX-512 VNNI");
    }
#endif
    for (int s = 0; s < n_sets; s++) {
        for (int t = RWKV_DTYPE_F32; t <= RWKV_DTYPE_Q4; t++) {
            double worst = 0;
            int at = 0;

            if (!sets[s]->format[t].matvec_rows) {
                continue;
            }
            for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
                double e = check_kernel(sets[s], (enum rwkv_dtype)t, sizes[k][0], sizes[k][1]);

                if (e > worst) {
                    worst = e;
                    at = (int)k;
                }
            }
            ok(worst <= 1.0, "%s %s matvec (and rows_to_f32) match the exact value on 15 shapes "
               "(worst %.2f of tolerance 2e-6*sum|wx|, at %dx%d)%s", sets[s]->name,
               format_names[t], worst, sizes[at][0], sizes[at][1],
               sets[s]->format[t].matvec_multi_rows
                   ? "; matvec_multi_rows bit-identical to matvec for 1-9 vectors" : "");
            if ((t == RWKV_DTYPE_Q8 || t == RWKV_DTYPE_Q4) && sets[s]->format[t].matmul_rows) {
                /* token counts around the kernels' tiles (4, 8, 16) */
                static const int Ts[] = { 1, 2, 3, 5, 17, 37 };
                int at_T = 0;

                worst = 0;
                at = 0;
                for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
                    for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++) {
                        double e = check_matmul(sets[s], (enum rwkv_dtype)t, sizes[k][0],
                                                sizes[k][1], Ts[i]);

                        if (e > worst) {
                            worst = e;
                            at = (int)k;
                            at_T = Ts[i];
                        }
                    }
                }
                ok(worst <= 1.0, "%s %s matmul (int8 activations) matches the exact value on 15 "
                   "shapes x 6 token counts (worst %.2f of tolerance, at %dx%d T=%d)",
                   sets[s]->name, format_names[t], worst, sizes[at][0], sizes[at][1], at_T);
            } else if (t == RWKV_DTYPE_Q8 || t == RWKV_DTYPE_Q4) {
                ok(0, "%s %s has a sequence-mode kernel", sets[s]->name, format_names[t]);
            }
            if (t == RWKV_DTYPE_BF16 && sets[s]->format[t].matmul_rows) {
                /* token counts around the avx512 kernel's panels (16, 48) */
                static const int Ts[] = { 1, 2, 3, 17, 47, 49, 97 };
                int at_T = 0, same = 1;

                worst = 0;
                at = 0;
                for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
                    for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++) {
                        double e = check_matmul_bf16(sets[s], sizes[k][0], sizes[k][1], Ts[i],
                                                     &same);

                        if (e > worst) {
                            worst = e;
                            at = (int)k;
                            at_T = Ts[i];
                        }
                    }
                }
                ok(worst <= 1.0, "%s bf16 matmul matches the exact value on 8 odd shapes x 7 "
                   "token counts (worst %.2f of tolerance, at %dx%d T=%d)", sets[s]->name, worst,
                   sizes[at][0], sizes[at][1], at_T);
                if (sets[s]->f32_matmul_rows) {
                    ok(same, "%s f32 matmul gives the bf16 matmul's values to the bit on the "
                       "same weights", sets[s]->name);
                }
            }
        }
    }
}

/* Quantisation error of each format against the float32 product, relative
 * to the rms of the output. */
static void test_format_error(void)
{
    const int rows = 97, cols = 771;
    float *src = malloc((size_t)rows * cols * sizeof *src), *x = malloc(cols * sizeof *x);
    float *y = malloc(rows * sizeof *y), *yf = malloc(rows * sizeof *yf);
    static const double bound[] = { 0, 0, 1e-3, 1e-2, 5e-2, 0.2 };

    for (size_t i = 0; i < (size_t)rows * cols; i++) {
        src[i] = wrand();
    }
    for (int c = 0; c < cols; c++) {
        x[c] = (float)(urand() * 2 - 1);
    }
    double rms = 0;

    for (int r = 0; r < rows; r++) {
        double s = 0;

        for (int c = 0; c < cols; c++) {
            s += (double)src[(size_t)r * cols + c] * x[c];
        }
        yf[r] = (float)s;
        rms += s * s;
    }
    rms = sqrt(rms / rows);
    for (int t = RWKV_DTYPE_F16; t <= RWKV_DTYPE_Q4; t++) {
        struct kmat W = { .type = (enum rwkv_dtype)t, .rows = rows, .cols = cols };
        double err = 0;

        kernels_format(W.type)->pack(&W, src);
        k_matvec(NULL, &W, x, y);
        for (int r = 0; r < rows; r++) {
            err += (y[r] - yf[r]) * (double)(y[r] - yf[r]);
        }
        err = sqrt(err / rows) / rms;
        ok(err < bound[t], "%s product error vs float32: %.2e of output rms (bound %.0e)",
           format_names[t], err, bound[t]);
        kmat_free(&W);
    }
    free(src);
    free(x);
    free(y);
    free(yf);
}

/* Squared error of one packed Q4 block against its 32 source values. */
static double q4_block_err(const struct q4_block *b, const float *v)
{
    double d = half_f16_to_f32(b->d), e = 0;

    for (int j = 0; j < 32; j++) {
        int u = j < 16 ? b->qs[j] & 15 : b->qs[j - 16] >> 4;
        double x = d * (u - 8) - v[j];

        e += x * x;
    }
    return e;
}

/* Q4 blocks: 18 bytes, padding columns zero; the scale search never does
 * worse on a block than the plain scale m / -8 (m the element of largest
 * magnitude, codes rounded to nearest), up to the binary16 rounding of the
 * scale, and does better over many blocks of Gaussian-like weights. */
static void test_q4_layout(void)
{
    enum { BLOCKS = 2000 };
    float src[2 * 40], *g = malloc(sizeof *g * 32 * BLOCKS);
    struct kmat W = { .type = RWKV_DTYPE_Q4, .rows = 2, .cols = 40 };
    struct kmat G = { .type = RWKV_DTYPE_Q4, .rows = BLOCKS, .cols = 32 };
    double plain_total = 0, search_total = 0;
    float row[40];
    int good = 1, worse = 0;

    for (int i = 0; i < 80; i++) {
        src[i] = (float)(i % 7) * 0.01f;
    }
    src[5] = -0.5f;
    src[33] = 0.75f;
    quant_pack_q4(&W, src);
    const struct q4_block *b = W.data;

    good &= quant_bytes_q4(&W) == 2 * 2 * 18;
    for (int j = 8; j < 32; j++) {      /* columns 40..63 of each row */
        int u = j < 16 ? b[1].qs[j] & 15 : b[1].qs[j - 16] >> 4;

        good &= u == 8;
    }
    quant_dequant_row(&W, 0, row);
    good &= fabsf(row[5] + 0.5f) < 0.5f / 16 && fabsf(row[33] - 0.75f) < 0.75f / 16;
    ok(good, "q4 block layout: 18-byte blocks, extreme values within half a step, padding is zero");
    kmat_free(&W);

    /* sums of three uniforms: bell-shaped, with a few large values per block */
    for (int i = 0; i < 32 * BLOCKS; i++) {
        g[i] = (float)(urand() + urand() + urand() - 1.5);
    }
    quant_pack_q4(&G, g);
    for (int k = 0; k < BLOCKS; k++) {
        const float *v = g + 32 * k;
        struct q4_block plain;
        float big = 0, d;
        double e_plain, e_search;

        for (int j = 0; j < 32; j++) {
            big = fabsf(v[j]) > fabsf(big) ? v[j] : big;
        }
        plain.d = half_f32_to_f16(big / -8.0f);
        d = half_f16_to_f32(plain.d);
        for (int j = 0; j < 16; j++) {
            int lo = (int)lrintf(v[j] / d) + 8, hi = (int)lrintf(v[j + 16] / d) + 8;

            lo = lo < 0 ? 0 : lo > 15 ? 15 : lo;
            hi = hi < 0 ? 0 : hi > 15 ? 15 : hi;
            plain.qs[j] = (uint8_t)(lo | hi << 4);
        }
        e_plain = q4_block_err(&plain, v);
        e_search = q4_block_err((const struct q4_block *)G.data + k, v);
        plain_total += e_plain;
        search_total += e_search;
        worse += e_search > e_plain * 1.01 + 1e-12;
    }
    ok(worse == 0 && search_total < 0.9 * plain_total,
       "q4 scale search: no block worse than the plain scale m / -8 (%d are); squared error "
       "%.4f of the plain one's over %d blocks", worse, search_total / plain_total, BLOCKS);
    kmat_free(&G);
    free(g);
}

/* kmat_from_tensor: a bf16 tensor at AUTO is used in place; conversions to
 * every format (and transposed) agree with the float32 matrix. */
static void test_from_tensor(void)
{
    const int rows = 19, cols = 45;
    uint16_t *bf = malloc((size_t)rows * cols * 2);
    float *f = malloc((size_t)rows * cols * sizeof *f), x[45], y[45], yr[45];
    struct ckpt_tensor t = { 0 };
    char err[256];
    struct kmat m;

    for (int i = 0; i < rows * cols; i++) {
        bf[i] = half_f32_to_bf16(wrand());
        f[i] = half_bf16_to_f32(bf[i]);
    }
    for (int c = 0; c < cols; c++) {
        x[c] = (float)(urand() - 0.5);
    }
    t.name = "blocks.0.att.key.weight";
    t.dtype = CKPT_BF16;
    t.ndim = 2;
    t.shape[0] = rows;
    t.shape[1] = cols;
    t.numel = rows * cols;
    t.data = bf;
    t.nbytes = (size_t)rows * cols * 2;

    int rc0 = kmat_from_tensor(&m, &t, 0, RWKV_DTYPE_AUTO, err, sizeof err);
    size_t bytes = rc0 == 0 ? kmat_bytes(&m) : 0;

    ok(rc0 == 0 && m.type == RWKV_DTYPE_BF16 && m.data == (const void *)bf && m.owned == NULL &&
       bytes == (size_t)rows * cols * 2,
       "bf16 tensor at dtype auto is read in place (%zu bytes per product)", bytes);
    kmat_free(&m);

    for (int r = 0; r < rows; r++) {
        double s = 0;

        for (int c = 0; c < cols; c++) {
            s += (double)f[r * cols + c] * x[c];
        }
        yr[r] = (float)s;
    }
    for (int d = RWKV_DTYPE_F32; d <= RWKV_DTYPE_Q4; d++) {
        double worst = 0;
        int rc = kmat_from_tensor(&m, &t, 0, (enum rwkv_dtype)d, err, sizeof err);

        if (rc == 0) {
            k_matvec(NULL, &m, x, y);
            for (int r = 0; r < rows; r++) {
                worst = fmax(worst, fabs(y[r] - yr[r]));
            }
        }
        ok(rc == 0 && m.type == (enum rwkv_dtype)d && worst < (d == RWKV_DTYPE_Q4 ? 0.15 : d == RWKV_DTYPE_Q8 ? 0.03 : 1e-4),
           "bf16 tensor converted to %s at load: max error %.2e", format_names[d], worst);
        kmat_free(&m);
    }
    /* transposed: the tensor is [in][out] = [45][19] (LoRA w1 layout), the
     * kernel matrix [out][in] = [19][45]: W[r][c] = data[c * 19 + r] */
    t.shape[0] = cols;
    t.shape[1] = rows;
    {
        float yt[19], yref[19];
        double worst = 0;

        for (int r = 0; r < rows; r++) {
            double s = 0;

            for (int c = 0; c < cols; c++) {
                s += (double)f[c * rows + r] * x[c];
            }
            yref[r] = (float)s;
        }
        int rc = kmat_from_tensor(&m, &t, 1, RWKV_DTYPE_Q8, err, sizeof err);

        if (rc == 0) {
            k_matvec(NULL, &m, x, yt);
            for (int r = 0; r < rows; r++) {
                worst = fmax(worst, fabs(yt[r] - yref[r]));
            }
        }
        ok(rc == 0 && m.rows == rows && m.cols == cols && worst < 0.02,
           "transposed [in][out] tensor to q8: %dx%d, max error %.2e", m.rows, m.cols, worst);
        kmat_free(&m);
    }
    free(bf);
    free(f);
}

/* k_matvec on the pool and k_matmul over a few tokens give the rows of the
 * single-threaded product, for every format. */
static void test_pool_products(void)
{
    const int rows = 301, cols = 517, T = 3;
    struct kpool *pool = kpool_new(2);
    float *src = malloc((size_t)rows * cols * sizeof *src), *X = malloc((size_t)T * cols * 4);
    float *Y = malloc((size_t)T * rows * 4), *y1 = malloc((size_t)rows * 4);

    for (size_t i = 0; i < (size_t)rows * cols; i++) {
        src[i] = wrand();
    }
    for (int i = 0; i < T * cols; i++) {
        X[i] = (float)(urand() - 0.5);
    }
    for (int t = RWKV_DTYPE_F16; t <= RWKV_DTYPE_Q4; t++) {
        struct kmat W = { .type = (enum rwkv_dtype)t, .rows = rows, .cols = cols };
        double worst = 0;

        const struct kernel_format *f = kernels_format(W.type);
        float *Y1 = malloc((size_t)T * rows * 4);

        f->pack(&W, src);
        k_matmul(pool, &W, X, T, Y);
        /* the sequence-mode value (Q8/Q4: int8 activations), on one thread */
        for (int k = 0; k < T; k++) {
            if (!f->matmul_rows) {
                f->matvec_rows(&W, X + k * cols, Y1 + k * rows, 0, rows);
            }
        }
        if (f->matmul_rows) {
            f->matmul_rows(&W, X, T, Y1, 0, rows);
        }
        for (int i = 0; i < T * rows; i++) {
            worst = fmax(worst, fabs(Y[i] - Y1[i]) / (1e-5 + fabs(Y1[i])));
        }
        free(Y1);
        k_matvec(pool, &W, X, Y);
        kernels_format(W.type)->matvec_rows(&W, X, y1, 0, rows);
        for (int r = 0; r < rows; r++) {
            worst = fmax(worst, fabs(Y[r] - y1[r]) / (1e-5 + fabs(y1[r])));
        }
        ok(worst < 1e-4, "%s k_matvec and k_matmul (T=%d) on 2 threads match the row kernels "
           "(worst relative %.1e)", format_names[t], T, worst);
        kmat_free(&W);
    }
    kpool_free(pool);
    free(src);
    free(X);
    free(Y);
    free(y1);
}

/* Sequence mode in two steps (kernel_format.seq_fill, seq_rows): tokens
 * prepared in uneven pieces and rows taken in two ranges give matmul_rows's
 * products bit for bit, for every set and format (bf16, q8, q4) that has
 * them, on odd shapes (tiles of 16 rows and groups of 8 tokens with tails;
 * bf16: 16-token transposes, 48-token panels); and k_matmul on 2 threads,
 * which takes that path, gives them too. */
static void test_seq_two_steps(void)
{
    static const int shapes[][3] = { { 1, 1, 2 }, { 17, 45, 9 }, { 45, 301, 37 }, { 33, 1037, 8 },
                                     { 19, 70, 100 } };
    const struct kernel_set *sets[3];
    int n_sets = 0, tested = 0, same = 1;
    struct kpool *pool = kpool_new(2);

#ifdef __x86_64__
    if (kernel_set_avx2.usable()) {
        sets[n_sets++] = &kernel_set_avx2;
    }
    if (kernel_set_avx512.usable()) {
        sets[n_sets++] = &kernel_set_avx512;
    }
    if (kernel_set_avx512vnni.usable()) {
        sets[n_sets++] = &kernel_set_avx512vnni;
    }
#endif
    for (int s = 0; s < n_sets; s++) {
        for (int t = RWKV_DTYPE_BF16; t <= RWKV_DTYPE_Q4; t++) {
            const struct kernel_format *f = &sets[s]->format[t];

            if (!f->seq_rows) {
                continue;
            }
            for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
                int rows = shapes[k][0], cols = shapes[k][1], T = shapes[k][2], cut = T / 3;
                struct kmat W = { .type = (enum rwkv_dtype)t, .rows = rows, .cols = cols };
                float *src = malloc((size_t)rows * cols * sizeof *src);
                float *X = malloc((size_t)T * cols * sizeof *X);
                float *Y1 = malloc((size_t)T * rows * sizeof *Y1);
                float *Y2 = malloc((size_t)T * rows * sizeof *Y2);
                void *buf = aligned_alloc(64, (f->seq_bytes(cols, T) + 63) & ~(size_t)63);

                for (size_t i = 0; i < (size_t)rows * cols; i++) {
                    src[i] = wrand();
                }
                for (size_t i = 0; i < (size_t)T * cols; i++) {
                    X[i] = xrand();
                }
                f->pack(&W, src);
                f->matmul_rows(&W, X, T, Y1, 0, rows);
                f->seq_fill(X, cols, T, cut, T, buf);
                f->seq_fill(X, cols, T, 0, cut, buf);
                f->seq_rows(&W, X, buf, T, Y2, rows / 2, rows);
                f->seq_rows(&W, X, buf, T, Y2, 0, rows / 2);
                same &= !memcmp(Y1, Y2, (size_t)T * rows * sizeof *Y1);
                tested++;
                kmat_free(&W);
                free(src);
                free(X);
                free(Y1);
                free(Y2);
                free(buf);
            }
        }
    }
    if (tested) {
        ok(same, "seq_fill/seq_rows in pieces give matmul_rows's products bit for bit (%d set, "
           "format and shape cases)", tested);
    } else {
        skip("no kernel set of this CPU has two-step sequence kernels");
    }
    for (int t = RWKV_DTYPE_Q8; t <= RWKV_DTYPE_Q4; t++) {
        const int rows = 301, cols = 517, T = 37;
        struct kmat W = { .type = (enum rwkv_dtype)t, .rows = rows, .cols = cols };
        const struct kernel_format *f = kernels_format(W.type);
        float *src = malloc((size_t)rows * cols * sizeof *src);
        float *X = malloc((size_t)T * cols * sizeof *X);
        float *Y1 = malloc((size_t)T * rows * sizeof *Y1), *Y2 = malloc((size_t)T * rows * sizeof *Y2);

        for (size_t i = 0; i < (size_t)rows * cols; i++) {
            src[i] = wrand();
        }
        for (size_t i = 0; i < (size_t)T * cols; i++) {
            X[i] = (float)(urand() - 0.5);
        }
        f->pack(&W, src);
        f->matmul_rows(&W, X, T, Y1, 0, rows);
        k_matmul(pool, &W, X, T, Y2);
        ok(!memcmp(Y1, Y2, (size_t)T * rows * sizeof *Y1),
           "%s k_matmul on 2 threads (T=%d%s) gives matmul_rows's products bit for bit",
           format_names[t], T, f->seq_rows ? ", tokens prepared in two halves" : "");
        kmat_free(&W);
        free(src);
        free(X);
        free(Y1);
        free(Y2);
    }
    kpool_free(pool);
}

/* ---- quality on the fixture model ----------------------------------------- */

static int read_tokens(const char *path, int32_t *tok, int max)
{
    char *s = read_file(path, NULL), *p, *end;
    int n = 0;

    if (!s) {
        return -1;
    }
    for (p = s; n < max; p = end) {
        long v = strtol(p, &end, 10);

        if (end == p) {
            break;
        }
        tok[n++] = (int32_t)v;
    }
    free(s);
    return n;
}

/* Logits after each token at one weight format: n x vocab; RNN mode (one
 * token per call) or sequence mode (one call, every row). */
static float *run_model(const char *path, enum rwkv_dtype d, const int32_t *tok, int n,
                        int *vocab, int sequence)
{
    struct rwkv_load_options lo = { .dtype = d, .n_threads = 2, .cache = RWKV_CACHE_MODE_OFF };
    char err[RWKV_ERRLEN];
    rwkv_model *m = rwkv_model_load(path, &lo, err, sizeof err);
    rwkv_state *s;
    float *out;

    if (!m) {
        diag("%s", err);
        return NULL;
    }
    *vocab = rwkv_model_info(m)->n_vocab;
    s = rwkv_state_new(m);
    out = malloc((size_t)n * *vocab * sizeof *out);
    if (sequence && eval_once(m, s, tok, (size_t)n, out, 1, err, sizeof err) != 0) {
        diag("%s", err);
        free(out);
        out = NULL;
    }
    for (int i = 0; i < n && !sequence; i++) {
        if (eval_once(m, s, &tok[i], 1, out + (size_t)i * *vocab, 0, err, sizeof err) != 0) {
            diag("%s", err);
            free(out);
            out = NULL;
            break;
        }
    }
    rwkv_state_free(s);
    rwkv_model_free(m);
    return out;
}

/* Mean KL(p_a || p_b) over n rows of vocab logits. */
static double mean_kl(const float *a, const float *b, int n, int vocab)
{
    double kl = 0;

    for (int i = 0; i < n; i++) {
        kl += row_kl(a + (size_t)i * vocab, b + (size_t)i * vocab, (size_t)vocab);
    }
    return kl / n;
}

/* The shared fixture `name`: its path (path[512]), its tokens (tok[256],
 * *n of them) and float32's logits over them in RNN mode, or NULL. */
static float *fixture_f32(const char *name, char *path, int32_t *tok, int *n, int *vocab)
{
    char tpath[512];

    snprintf(path, 512, "%s", shared_path(name));
    snprintf(tpath, sizeof tpath, "%.*s.tokens", (int)(strlen(path) - 4), path);
    *n = read_tokens(tpath, tok, 256);
    return *n > 0 ? run_model(path, RWKV_DTYPE_F32, tok, *n, vocab, 0) : NULL;
}

/* KL divergence from float32 of each format d in [F16, Q4] (kl[d], and
 * the largest logit error maxe[d]) over the fixture's tokens, with the
 * kernels this process chose.  0, or -1 if a run failed. */
static int quality_kl(const char *name, int sequence, double *kl, double *maxe)
{
    char path[512];
    int32_t tok[256];
    int n, vocab = 0;
    float *ref = fixture_f32(name, path, tok, &n, &vocab);

    if (!ref) {
        return -1;
    }
    for (int d = RWKV_DTYPE_F16; d <= RWKV_DTYPE_Q4; d++) {
        float *q = run_model(path, (enum rwkv_dtype)d, tok, n, &vocab, sequence);
        double meane = 0;

        if (!q) {
            free(ref);
            return -1;
        }
        maxe[d] = 0;
        for (size_t i = 0; i < (size_t)n * vocab; i++) {
            double e = fabs(ref[i] - q[i]);

            maxe[d] = fmax(maxe[d], e);
            meane += e;
        }
        meane /= (double)n * vocab;
        kl[d] = mean_kl(ref, q, n, vocab);
        diag("%s %-4s %s vs fp32: max |dlogit| %.4f, mean |dlogit| %.5f, KL %.2e nats/token "
             "(%d tokens, %s kernels)", name, format_names[d], sequence ? "sequence" : "RNN",
             maxe[d], meane, kl[d], n, rwkv_kernels_name());
        free(q);
    }
    free(ref);
    return 0;
}

static const double kl_bound[] = { 0, 0, 1e-6, 1e-6, 3e-3, 0.3 };

/* Quality of each format against float32 (KL divergence over the
 * fixture's tokens).  Q8/Q4 products round activations to 8 bits per
 * block in both modes (quant.h); the bounds are the same for both. */
static void test_quality(const char *name, int sequence)
{
    double kl[KERNEL_N_FORMATS], maxe[KERNEL_N_FORMATS];

    if (quality_kl(name, sequence, kl, maxe) != 0) {
        ok(0, "%s: the runs for the quality check", name);
        return;
    }
    for (int d = RWKV_DTYPE_F16; d <= RWKV_DTYPE_Q4; d++) {
        ok(kl[d] <= kl_bound[d], "%s %s quality (%s mode): KL %.2e <= %.0e", name,
           format_names[d], sequence ? "sequence" : "RNN", kl[d], kl_bound[d]);
    }
}

/* Q8 and Q4 give a prompt the value of its tokens fed one at a time
 * (quant.h: both modes round the activations per block; only float32 sum
 * orders differ, which can move an activation's rounding by one step):
 * the two modes' logits must be far closer to each other than to float32.
 * Before Q8's generation kernels took int8 activations, its two modes
 * differed by the activation rounding, as much as q8 differs from fp32. */
static void test_modes_agree(const char *name)
{
    char path[512];
    int32_t tok[256];
    int n, vocab = 0;
    float *ref = fixture_f32(name, path, tok, &n, &vocab);

    for (int d = RWKV_DTYPE_Q8; d <= RWKV_DTYPE_Q4; d++) {
        float *rnn = ref ? run_model(path, (enum rwkv_dtype)d, tok, n, &vocab, 0) : NULL;
        float *seq = rnn ? run_model(path, (enum rwkv_dtype)d, tok, n, &vocab, 1) : NULL;

        if (!seq) {
            ok(0, "%s %s: the runs of both modes", name, format_names[d]);
        } else {
            double modes = mean_kl(rnn, seq, n, vocab), fp = mean_kl(ref, rnn, n, vocab);

            ok(modes <= fp / 1000, "%s %s: a prompt gives its tokens fed one at a time: KL between "
               "the modes %.2e <= 1/1000 of KL from fp32 %.2e (%d tokens)", name, format_names[d],
               modes, fp, n);
        }
        free(rnn);
        free(seq);
    }
    free(ref);
}

/* The same through kernel set `set` chosen for the whole model
 * (rwkv_kernels_select, in a child process that has not chosen its
 * kernels): the whole forward pass of a slower CPU, e.g. the AVX2 set on
 * an AVX-512 machine, in both modes.  Call before this process chooses. */
static void test_quality_set(const char *name, const char *set)
{
    double kl[2][KERNEL_N_FORMATS];
    int fd[2], status;
    pid_t pid;

    if (pipe(fd) != 0 || (pid = fork()) < 0) {
        ok(0, "%s through the %s kernels: a child process", name, set);
        return;
    }
    if (pid == 0) {
        char err[RWKV_ERRLEN];
        double maxe[KERNEL_N_FORMATS];
        int bad = rwkv_kernels_select(set, err, sizeof err) != 0 ||
                  strcmp(rwkv_kernels_name(), set) != 0 ||
                  quality_kl(name, 0, kl[0], maxe) != 0 || quality_kl(name, 1, kl[1], maxe) != 0;

        close(fd[0]);
        if (bad || write(fd[1], kl, sizeof kl) != (ssize_t)sizeof kl) {
            _exit(1);
        }
        _exit(0);
    }
    close(fd[1]);
    if (read(fd[0], kl, sizeof kl) != (ssize_t)sizeof kl || waitpid(pid, &status, 0) != pid ||
        !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        ok(0, "%s through the %s kernels: the child's runs", name, set);
        close(fd[0]);
        return;
    }
    close(fd[0]);
    for (int mode = 0; mode < 2; mode++) {
        for (int d = RWKV_DTYPE_F16; d <= RWKV_DTYPE_Q4; d++) {
            ok(kl[mode][d] <= kl_bound[d], "%s %s quality (%s mode) with every product on the "
               "%s kernels: KL %.2e <= %.0e", name, format_names[d],
               mode ? "sequence" : "RNN", set, kl[mode][d], kl_bound[d]);
        }
    }
}

int main(void)
{
#ifdef __x86_64__
    if (kernel_set_avx2.usable()) {
        test_quality_set("fixtures/models/v7-world.pth", "avx2");
    } else {
        skip("the v7 model through the avx2 kernels: this CPU has no AVX2/FMA");
    }
#endif
    kernels_init();
    diag("kernels chosen for this CPU: %s", rwkv_kernels_name());
    test_kernel_sets();
    test_format_error();
    test_q4_layout();
    test_from_tensor();
    test_pool_products();
    test_seq_two_steps();
    test_quality("fixtures/models/v7.pth", 0);
    test_quality("fixtures/models/v7-world.pth", 0);
    test_quality("fixtures/models/v7.pth", 1);
    test_quality("fixtures/models/v7-world.pth", 1);
    test_modes_agree("fixtures/models/v7.pth");
    test_modes_agree("fixtures/models/v7-world.pth");
    test_quality("fixtures/models/v6.pth", 1);
    return tap_done();
}
