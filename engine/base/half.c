/* half.c - float32 to and from bfloat16 / binary16 (half.h). */
#include "engine/base/half.h"

uint16_t half_f32_to_bf16(float f)
{
    uint32_t u;

    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) {
        return (uint16_t)((u >> 16) | 0x40);
    }
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

uint16_t half_f32_to_f16(float f)
{
    uint32_t u, sign, mant;
    int exp;

    memcpy(&u, &f, 4);
    sign = (u >> 16) & 0x8000;
    exp = (int)((u >> 23) & 0xff) - 127 + 15;
    mant = u & 0x7fffff;
    if (((u >> 23) & 0xff) == 0xff) {
        return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0));
    }
    if (exp >= 31) {
        return (uint16_t)(sign | 0x7c00);
    }
    if (exp <= 0) {
        uint32_t m, shift, half, rest;

        if (exp < -10) {
            return (uint16_t)sign;
        }
        m = mant | 0x800000;
        shift = (uint32_t)(14 - exp);
        half = 1u << (shift - 1);
        rest = m & ((1u << shift) - 1);
        m >>= shift;
        if (rest > half || (rest == half && (m & 1))) {
            m++;
        }
        return (uint16_t)(sign | m);
    }
    uint32_t h = sign | ((uint32_t)exp << 10) | (mant >> 13), rest = mant & 0x1fff;

    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) {
        h++;                    /* a carry into the exponent is still right */
    }
    return (uint16_t)h;
}

/* Whole 16-bit loads on a little-endian host, in a form GCC vectorises
 * when asked (-O2 alone leaves it scalar, and the byte-wise loop was the
 * largest cost of converting a model at load). */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("tree-vectorize")))
#endif
void half_bf16_to_f32_n(const void *src, float *dst, size_t n)
{
    const unsigned char *p = src;

    for (size_t i = 0; i < n; i++) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        uint16_t v;

        memcpy(&v, p + 2 * i, 2);
#else
        uint16_t v = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
#endif
        uint32_t bits = (uint32_t)v << 16;

        memcpy(&dst[i], &bits, 4);
    }
}

void half_f16_to_f32_n(const void *src, float *dst, size_t n)
{
    const unsigned char *p = src;

    for (size_t i = 0; i < n; i++) {
        dst[i] = half_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
    }
}
