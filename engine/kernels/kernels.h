/*
 * kernels.h - the numeric kernels the forward passes are written against.
 *
 * Matrices are stored as [rows][cols] (torch Linear layout: y = W x with
 * W of shape [out, in]).  The element format is chosen at load time; every
 * kernel accumulates in float32.  The best implementation for the running
 * CPU is chosen once (kernels_init) and reported by kernels_name().
 */
#ifndef RWKV_KERNELS_H
#define RWKV_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/base/dtype.h"
#include "engine/load/checkpoint.h"
#include "engine/kernels/matrix.h"
#include "engine/kernels/pool.h"

/* Put before a function of plain C loops to have it compiled three times,
 * for x86-64-v4 (AVX-512), x86-64-v3 (AVX2, FMA) and the baseline, the copy
 * picked once at load time (function multi-versioning).  For the vector
 * steps that are not worth hand-written kernels; elsewhere it expands to
 * nothing.  The copies compute the same values (element-wise loops, sums
 * in the order written). */
#if defined(__x86_64__) && defined(__ELF__) && defined(__GNUC__) && !defined(RWKV_NO_CLONES)
#define K_CLONES \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define K_CLONES
#endif

/* Frees what the matrix owns (nothing for one read in place). */
void kmat_free(struct kmat *m);
/* Bytes of weight data one matvec reads. */
size_t kmat_bytes(const struct kmat *m);

/* y[rows] = W x[cols]. */
void k_matvec(struct kpool *pool, const struct kmat *W, const float *x, float *y);
/* Y[T][rows] = X[T][cols] W^T  (sequence mode). */
void k_matmul(struct kpool *pool, const struct kmat *W, const float *X, int T, float *Y);

/* One product of a batch: Y[T][W->rows] = X[T][W->cols] W^T. */
struct k_product {
    const struct kmat *W;
    const float *X;
    float *Y;
};
/* Runs n independent products.  With T = 1 they are one job on the pool,
 * their rows shared out together: generation hands the pool one job for
 * r, k, v and the LoRA factors instead of one per matrix, and small
 * matrices no longer run on one thread. */
void k_matmul_batch(struct kpool *pool, const struct k_product *p, int n, int T);
/* Runs n products of T independent vectors each (several conversations,
 * one token each: rwkv_eval_batch): every row of every Y is bit-identical
 * to what k_matvec gives for that vector alone (the same row kernel), and
 * the weights are read from memory once for all T (a block of rows stays
 * in cache while each vector passes over it). */
void k_matvec_many(struct kpool *pool, const struct k_product *p, int n, int T);

/* Vectors (n elements). */
void k_layernorm(const float *x, const float *w, const float *b, int n, float eps, float *y);
/* GroupNorm over n_groups contiguous groups of n/n_groups elements. */
void k_groupnorm(const float *x, const float *w, const float *b, int n, int n_groups,
                 float eps, float *y);

/* Called once; picks the implementation.  Safe to call repeatedly. */
void kernels_init(void);
/* Makes kernels_init take kernel set `name` (kernels_impl.h: "avx512vnni",
 * "avx512", "avx2", "portable") as the best, the sets after it serving
 * the formats it lacks, instead of the best the CPU can run: to measure
 * or test a set on a CPU that has a faster one.  Call before kernels_init
 * (before any model loads), from one thread.  0; -1 for a name this
 * build does not have, -2 when this CPU cannot run the set, -3 when the
 * kernels were already chosen from another set. */
int kernels_select(const char *name);
/* The kernel set chosen for this CPU (rwkv_kernels_name). */
const char *kernels_name(void);

#endif
