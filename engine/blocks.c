/*
 * blocks.c - pieces the RWKV-4/5/6 forward passes share.
 */
#include "engine/blocks.h"

void blocks_token_mix(const float *x, const float *prev, const float *mix, int n, float *y)
{
    for (int i = 0; i < n; i++) {
        y[i] = x[i] * mix[i] + prev[i] * (1.0f - mix[i]);
    }
}
