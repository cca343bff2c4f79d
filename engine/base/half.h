/*
 * half.h - 16-bit float formats (IEEE binary16 and bfloat16) to and from
 * float32, in one place for the readers, the kernels and the tools.
 *
 * The readers are inline: the portable kernels call them per weight.
 */
#ifndef RWKV_BASE_HALF_H
#define RWKV_BASE_HALF_H

#include <stdint.h>
#include <string.h>

/* bfloat16 -> float32 (exact: the top half of the float). */
static inline float half_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;

    memcpy(&f, &u, 4);
    return f;
}

/* IEEE binary16 -> float32, exact (subnormals, infinities, NaN). */
static inline float half_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, u;
    float f;

    if (exp == 0) {
        if (mant == 0) {
            u = sign;
        } else {
            exp = 127 - 15 + 1;
            while (!(mant & 0x400)) {
                mant <<= 1;
                exp--;
            }
            u = sign | (exp << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000 | (mant << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    memcpy(&f, &u, 4);
    return f;
}

/* float32 -> bfloat16, round to nearest even (NaN stays NaN). */
uint16_t half_f32_to_bf16(float f);
/* float32 -> IEEE binary16, round to nearest even (subnormals, overflow to
 * infinity). */
uint16_t half_f32_to_f16(float f);
/* n little-endian bfloat16 / binary16 values at src -> float32. */
void half_bf16_to_f32_n(const void *src, float *dst, size_t n);
void half_f16_to_f32_n(const void *src, float *dst, size_t n);

#endif
