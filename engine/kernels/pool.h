/*
 * pool.h - a persistent pool of worker threads, the engine's only source of
 * parallelism.
 *
 * A pool is made once (per evaluation context, and for the duration of a
 * model load), never per token.  One caller at a time: kpool_run calls and
 * kpool_scratch on one pool must not overlap.  Different pools are
 * independent, so two threads may each drive their own pool at once.
 */
#ifndef RWKV_POOL_H
#define RWKV_POOL_H

#include <pthread.h>
#include <stddef.h>

struct kpool;

/* A pool of n_threads threads counting the caller (n_threads - 1 workers);
 * n_threads <= 0: kpool_default_threads().  NULL when out of memory. */
/* The stack a thread that runs the forward's steps needs: they keep a
 * head's state (up to 64 KiB) on it.  glibc's default is 8 MiB, musl's
 * 128 KiB. */
#define KPOOL_STACK ((size_t)1 << 20)
/* Raises attr's stack size to KPOOL_STACK when its default is smaller. */
void kpool_stack_attr(pthread_attr_t *attr);
struct kpool *kpool_new(int n_threads);
void kpool_free(struct kpool *pool);
/* Threads that run a job, the caller included; 1 for a NULL pool. */
int kpool_threads(const struct kpool *pool);
/* Runs fn(ctx, i) for i in [0, n) on the pool's threads; returns when all
 * are done.  pool may be NULL (runs inline). */
void kpool_run(struct kpool *pool, void (*fn)(void *ctx, int i), void *ctx, int n);
/* A buffer of at least n floats that the pool keeps between calls (for the
 * products' conversion tiles: a fresh allocation per product would cost
 * page faults every time).  Valid until the next call or kpool_free; NULL
 * when out of memory. */
float *kpool_scratch(struct kpool *pool, size_t n);
/* The CPUs this process may run on (its affinity mask, as set by taskset
 * or a container's cpuset), else the online CPUs. */
int kpool_default_threads(void);

#endif
