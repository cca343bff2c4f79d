/*
 * blas.h - the one way the engine calls OpenBLAS's sgemm.
 *
 * OpenBLAS gives each thread that calls it a work buffer of 128 MiB on
 * its first call, and Debian's 0.3.21 retries a failed allocation of it
 * forever (100 % CPU, no error).  Under an address-space limit (ulimit -v,
 * or ulimit -d) a thread's first sgemm therefore runs only when the
 * limit leaves room for that buffer; otherwise the product is computed by
 * a plain loop: slower for long prompts, the same result.
 */
#ifndef RWKV_BLAS_H
#define RWKV_BLAS_H

/* Y[t * ldy + r] = sum_c X[t * k + c] * W[r * k + c] for t in [0, T),
 * r in [0, n): Y = X W^T with row-major X [T][k] and W [n][k]. */
void blas_sgemm_nt(int T, int n, int k, const float *X, const float *W, float *Y, int ldy);

/* How many sgemm calls ran without OpenBLAS for want of address space
 * (for tests and --verbose). */
unsigned long blas_fallbacks(void);

#endif
