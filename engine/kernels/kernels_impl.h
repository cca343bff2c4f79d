/*
 * kernels_impl.h - how kernel sets plug into kernels.c.  Internal to
 * engine/kernels*.c; the forward passes only see kernels.h.
 *
 * A kernel set is a table of per-format row kernels for one instruction
 * set (portable C, AVX2, AVX-512...).  kernels.c lists the sets it knows in
 * preference order; kernels_init() keeps, for every weight format, the
 * entries of the first set whose usable() says the CPU can run it and that
 * fills that entry.  Missing entries fall through to the next set, ending
 * at the portable set, so a new file may implement only what it speeds up.
 * Sequence-mode products (k_matmul) use, in order: the format's seq_fill and
 * seq_rows (on a pool of several threads: the tokens prepared once, shared
 * by the threads); its matmul_rows; else rows_to_f32 + OpenBLAS sgemm on
 * blocks of rows; else matvec_rows once per token.
 *
 * To add a set: write engine/kernels/kernels_NAME.c defining
 *     const struct kernel_set kernel_set_NAME = { "NAME", usable, { ... } };
 * declare it below, and add &kernel_set_NAME to the candidates[] list in
 * kernels.c (guarded by the configure macro that says it was compiled).
 */
#ifndef RWKV_KERNELS_IMPL_H
#define RWKV_KERNELS_IMPL_H

#include "engine/base/dtype.h"
#include "engine/kernels/matrix.h"

#define KERNEL_N_FORMATS (RWKV_DTYPE_Q4 + 1)

/* The kernels of one weight format (indexed by enum rwkv_dtype). */
struct kernel_format {
    /* Fills m->data (and m->scales, m->owned, m->owned_scales) from a
     * float32 [m->rows][m->cols] source; 0, or -1 when out of memory. */
    int (*pack)(struct kmat *m, const float *src);
    /* y[r] = W[r,:] . x for r in [r0, r1).  Each y[r] depends only on row
     * r and x, never on r0 and r1: k_matvec and k_matvec_many cut the rows
     * differently and must agree to the bit. */
    void (*matvec_rows)(const struct kmat *W, const float *x, float *y, int r0, int r1);
    /* Y[t][r] = W[r,:] . X[t,:] for t in [0, T), r in [r0, r1); Y rows have
     * W->rows elements.  NULL: kernels.c calls matvec_rows per token. */
    void (*matmul_rows)(const struct kmat *W, const float *X, int T, float *Y, int r0, int r1);
    /* Weight bytes of the whole matrix (what one matvec reads). */
    size_t (*bytes)(const struct kmat *W);
    /* out[(r - r0) * cols + c] = W[r][c] as float32 for r in [r0, r1).
     * With matmul_rows NULL, sequence-mode products convert blocks of rows
     * with it and multiply them with sgemm.  NULL for F16/BF16: kernels.c
     * fills in its own converter (those formats are always plain 16-bit
     * [rows][cols] arrays). */
    void (*rows_to_f32)(const struct kmat *W, int r0, int r1, float *out);
    /* Y[t][r] = W[r,:] . X[t,:] for t in [0, T), r in [r0, r1), each value
     * bit-identical to matvec_rows of the same set on X[t] (the same sums
     * in the same order), with each weight loaded and widened once for all
     * T: the batched generation of k_matvec_many.  NULL: kernels.c calls
     * matvec_rows once per vector on cache-sized blocks of rows.
     * kernels_init drops one that does not match its matvec_rows bit for
     * bit. */
    void (*matvec_multi_rows)(const struct kmat *W, const float *X, int T, float *Y, int r0,
                              int r1);
    /* The vectors matvec_multi_rows takes in one pass over the rows.  For
     * T up to this, k_matvec_many hands it a task's rows in one call, not
     * in cache-sized blocks: each row is read once anyway, and what it
     * prepares per vector (split or quantised copies of X) is done once.
     * 0: always in blocks. */
    int multi_width;
    /* Sequence mode in two steps, so that k_matmul's threads share the
     * activations' preparation instead of each doing all of it (NULL:
     * k_matmul calls matmul_rows).  seq_bytes(cols, T): the buffer's size
     * (64-byte aligned); seq_fill prepares tokens [t0, t1) of X[T][cols]
     * into it (any split of [0, T) among threads gives the same buffer);
     * seq_rows then gives for rows [r0, r1) exactly what matmul_rows gives
     * (X: for a fallback that needs no memory of its own). */
    size_t (*seq_bytes)(int cols, int T);
    void (*seq_fill)(const float *X, int cols, int T, int t0, int t1, void *buf);
    void (*seq_rows)(const struct kmat *W, const float *X, const void *buf, int T, float *Y,
                     int r0, int r1);
};

struct kernel_set {
    const char *name;           /* reported by rwkv_kernels_name() */
    int (*usable)(void);        /* NULL: always */
    struct kernel_format format[KERNEL_N_FORMATS];
    /* NULL, or an F32 matmul_rows with the same sums as this set's BF16
     * one: wherever kernels_init takes that BF16 kernel it takes this for
     * F32 too, with the BF16 entry's seq_bytes, seq_fill and seq_rows
     * (they must take both types; the F32 entry's other kernels stay as
     * chosen), so that a
     * bf16 file read as bf16 or as float32 gives the same values. */
    void (*f32_matmul_rows)(const struct kmat *W, const float *X, int T, float *Y, int r0,
                            int r1);
};

extern const struct kernel_set kernel_set_portable;
/* quant.c: portable BF16/F16/Q8/Q4 kernels; kernels_avx2.c, kernels_avx512.c
 * (avx512 and avx512vnni): x86-64 sets (compiled only there). */
extern const struct kernel_set kernel_set_quant;
extern const struct kernel_set kernel_set_avx2;
extern const struct kernel_set kernel_set_avx512;
extern const struct kernel_set kernel_set_avx512vnni;

/* 1 if kernels f of format t reproduce ref (the plain C kernels) on an
 * odd-sized pseudo-random matrix, for matvec and a 3-token matmul, to
 * 1e-4 of the largest output.  kernels_init runs it on every faster set
 * before using it, a guard for SIMD code that could not be run where it
 * was written (e.g. AVX-512 on an AVX2 machine): a set giving wrong
 * numbers there costs speed, not results.  Not thread-safe (static
 * scratch). */
int kernels_self_check(const struct kernel_format *f, const struct kernel_format *ref,
                       enum rwkv_dtype t);

/* The active kernels of format t (after kernels_init). */
const struct kernel_format *kernels_format(enum rwkv_dtype t);

#endif
