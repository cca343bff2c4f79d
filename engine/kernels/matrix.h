/*
 * matrix.h - the kernel matrix: a weight matrix in the format the kernels
 * read.  A plain struct shared by the kernels (kernels.h), the kernel sets
 * (kernels_impl.h), the packers (quant.h) and the loaders (kmat.h); it has
 * no functions of its own here, so that a kernel set can name it without
 * depending on the kernels that call it.
 *
 * Matrices are stored as [rows][cols] (torch Linear layout: y = W x with
 * W of shape [out, in]).
 */
#ifndef RWKV_MATRIX_H
#define RWKV_MATRIX_H

#include "engine/base/dtype.h"

struct kmat {
    enum rwkv_dtype type;       /* F32, F16, BF16, Q8, Q4 */
    int rows, cols;
    const void *data;           /* rows*cols elements (or blocks) */
    const float *scales;        /* Q8: per row; Q4: per group of 32 */
    void *owned;                /* memory to free with kmat_free, or NULL */
    void *owned_scales;
};

#endif
