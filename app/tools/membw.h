/*
 * membw.h - the memory read rate the kernels are measured against.
 */
#ifndef RWKV_APP_MEMBW_H
#define RWKV_APP_MEMBW_H

#include <stddef.h>
#include <stdint.h>

/* Reads bytes (a multiple of 128, 32-byte aligned) at p as fast as plain
 * loads go: 256-bit loads where the CPU has them, as the kernels use, four
 * independent sums so loads, not additions, set the pace.  Returns a value
 * that depends on every byte, for the caller to keep. */
uint64_t membw_read(const void *p, size_t bytes);

#endif
