/*
 * blocks.h - pieces the RWKV-4/5/6 forward passes share.
 */
#ifndef RWKV_BLOCKS_H
#define RWKV_BLOCKS_H

#include "engine/kernels.h"

/* y = x + (prev - x) * mix: the static token shift of RWKV-4/5 (n elements). */
void blocks_token_mix(const float *x, const float *prev, const float *mix, int n, float *y);

#endif
