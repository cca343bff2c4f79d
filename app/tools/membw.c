/*
 * membw.c - a streaming read (membw.h), shared by rwkv-bench and
 * tests/bench_kernels.
 */
#include "app/tools/membw.h"

typedef uint64_t membw_vec __attribute__((vector_size(32)));

#if defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
uint64_t membw_read(const void *p, size_t bytes)
{
    const membw_vec *a = p;
    size_t n = bytes / sizeof *a;
    membw_vec s0 = { 0 }, s1 = { 0 }, s2 = { 0 }, s3 = { 0 };

    for (size_t i = 0; i + 4 <= n; i += 4) {
        s0 += a[i];
        s1 += a[i + 1];
        s2 += a[i + 2];
        s3 += a[i + 3];
    }
    s0 ^= s1 ^ s2 ^ s3;
    return s0[0] ^ s0[1] ^ s0[2] ^ s0[3];
}
