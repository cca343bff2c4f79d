/*
 * kmat.h - kernel matrices made from checkpoint tensors: read in place from
 * the mapped file when the tensor already has the wanted format, else
 * converted and packed at load.  The matrix type itself, and what the
 * kernels do with it, are in kernels.h.
 */
#ifndef RWKV_KMAT_H
#define RWKV_KMAT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/base/dtype.h"
#include "engine/load/checkpoint.h"
#include "engine/kernels/kernels.h"
#include "engine/kernels/pool.h"

/* Makes a kernel matrix from a 2-D tensor.  transpose: the tensor is
 * stored [in][out] (LoRA w1/w2 style) and must be turned into [out][in].
 * dtype: wanted format (AUTO keeps the stored float format).  Uses the
 * mapped data in place when no conversion is needed. */
int kmat_from_tensor(struct kmat *m, const struct ckpt_tensor *t, int transpose,
                     enum rwkv_dtype dtype, char *err, size_t errlen);
/* Conversion at load, in two steps so that a caller can take the
 * result from a cache instead.  kmat_plan sets m's format and shape for
 * tensor t at dtype (as kmat_from_tensor); returns 1 when the mapped data
 * serves in place (m complete), 0 when t needs converting, -1 on error.
 * kmat_convert then converts a planned m from t by blocks of rows, spread
 * over pool (NULL: this thread); 0, or -1 with err when out of memory. */
int kmat_plan(struct kmat *m, const struct ckpt_tensor *t, int transpose, enum rwkv_dtype dtype,
              char *err, size_t errlen);
int kmat_convert(struct kmat *m, const struct ckpt_tensor *t, int transpose,
                 struct kpool *pool, char *err, size_t errlen);

/* A hash of what the active packer of format t makes of a fixed matrix:
 * part of a conversion cache's key, so that a change in a packer's output
 * invalidates old caches even where QUANT_LAYOUT_VERSION was not bumped.
 * 0 for F32 and formats without a packer. */
uint64_t kmat_pack_signature(enum rwkv_dtype t);

#endif
