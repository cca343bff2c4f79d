/*
 * dtype.h - the weight formats the engine computes from, and their names.
 * Part of the public API (rwkv.h includes it); kept apart so that the
 * kernels can name a format without depending on the model.
 */
#ifndef RWKV_BASE_DTYPE_H
#define RWKV_BASE_DTYPE_H

/* Weight format the kernels compute from (chosen at load time). */
enum rwkv_dtype {
    RWKV_DTYPE_AUTO = 0,    /* keep the stored float format (f32/f16/bf16) */
    RWKV_DTYPE_F32,
    RWKV_DTYPE_F16,
    RWKV_DTYPE_BF16,
    RWKV_DTYPE_Q8,          /* int8, per-row (output channel) scales */
    RWKV_DTYPE_Q4,          /* 4-bit, groups of 32 with one scale */
};

/* "auto", "fp32", "fp16", "bf16", "q8", "q4" ("?" for anything else). */
const char *rwkv_dtype_name(enum rwkv_dtype dtype);
/* Parses "fp32", "f32", "bf16", "fp16", "f16", "int8", "q8", "q4"...; -1 if unknown. */
int rwkv_dtype_parse(const char *name, enum rwkv_dtype *out);

#endif
