/*
 * kernels_portable.c - the portable float32 kernel set (kernels_impl.h):
 * rows in plain C, sequence-mode products through OpenBLAS sgemm.  The
 * last set of the dispatch list, the one every format falls back to.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/kernels/blas.h"
#include "engine/kernels/kernels_impl.h"

static float dot_f32(const float *a, const float *b, int n)
{
    /* Four partial sums: lets the compiler vectorise without -ffast-math. */
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int i = 0;

    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++) {
        s0 += a[i] * b[i];
    }
    return (s0 + s1) + (s2 + s3);
}

static int f32_pack(struct kmat *m, const float *src)
{
    size_t n = (size_t)m->rows * (size_t)m->cols;
    float *d = malloc(n * sizeof *d);

    if (!d) {
        return -1;
    }
    memcpy(d, src, n * sizeof *d);
    m->data = d;
    m->owned = d;
    return 0;
}

static void f32_matvec_rows(const struct kmat *W, const float *x, float *y, int r0, int r1)
{
    const float *w = W->data;

    for (int r = r0; r < r1; r++) {
        y[r] = dot_f32(w + (size_t)r * W->cols, x, W->cols);
    }
}

/* Y[T][rows] = X[T][cols] W^T for rows [r0, r1), one sgemm. */
static void f32_matmul_rows(const struct kmat *W, const float *X, int T, float *Y, int r0, int r1)
{
    const float *w = (const float *)W->data + (size_t)r0 * W->cols;

    blas_sgemm_nt(T, r1 - r0, W->cols, X, w, Y + r0, W->rows);
}

static size_t f32_bytes(const struct kmat *W)
{
    return (size_t)W->rows * (size_t)W->cols * sizeof(float);
}

const struct kernel_set kernel_set_portable = {
    .name = "portable",
    .usable = NULL,
    .format = {
        [RWKV_DTYPE_F32] = { f32_pack, f32_matvec_rows, f32_matmul_rows, f32_bytes },
    },
};
