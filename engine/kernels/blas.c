/*
 * blas.c - sgemm through OpenBLAS when the address-space limit leaves
 * room for its work buffer, a plain loop when it does not (blas.h).
 */
#include "engine/kernels/blas.h"

#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

/* What a thread's first OpenBLAS call allocates (BUFFER_SIZE, 32 << 22,
 * plus alignment) and a margin for the thread's malloc arena and
 * OpenBLAS's own bookkeeping. */
#define BLAS_FIRST_CALL_BYTES ((size_t)(128 + 32) << 20)

/* This thread has made an OpenBLAS call: its buffer exists and is reused. */
static _Thread_local int thread_has_buffer;
/* Under a memory limit calls take turns (blas_sgemm_nt). */
static pthread_mutex_t first_call = PTHREAD_MUTEX_INITIALIZER;
static atomic_ulong fallbacks;

/* The limits that malloc runs into: 1 if neither is set. */
static int unlimited(struct rlimit *as, struct rlimit *data)
{
    if (getrlimit(RLIMIT_AS, as) != 0) {
        as->rlim_cur = RLIM_INFINITY;
    }
    if (getrlimit(RLIMIT_DATA, data) != 0) {
        data->rlim_cur = RLIM_INFINITY;
    }
    return as->rlim_cur == RLIM_INFINITY && data->rlim_cur == RLIM_INFINITY;
}

/* 1 if the limits leave room for a thread's first OpenBLAS call.  The
 * process's address space and data size come from /proc/self/statm; if
 * it cannot be read, there is no room. */
static int room_for_first_call(const struct rlimit *as, const struct rlimit *data)
{
    unsigned long long size, resident, shared, text, lib, data_pages;
    unsigned long long page = (unsigned long long)sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/statm", "r");
    int n;

    if (!f) {
        return 0;
    }
    n = fscanf(f, "%llu %llu %llu %llu %llu %llu", &size, &resident, &shared, &text, &lib,
               &data_pages);
    fclose(f);
    if (n != 6) {
        return 0;
    }
    if (as->rlim_cur != RLIM_INFINITY &&
        (unsigned long long)as->rlim_cur < size * page + BLAS_FIRST_CALL_BYTES) {
        return 0;
    }
    if (data->rlim_cur != RLIM_INFINITY &&
        (unsigned long long)data->rlim_cur < data_pages * page + BLAS_FIRST_CALL_BYTES) {
        return 0;
    }
    return 1;
}

static void loop_sgemm_nt(int T, int n, int k, const float *X, const float *W, float *Y, int ldy)
{
    for (int t = 0; t < T; t++) {
        const float *x = X + (size_t)t * k;

        for (int r = 0; r < n; r++) {
            const float *w = W + (size_t)r * k;
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int c = 0;

            for (; c + 4 <= k; c += 4) {
                s0 += x[c] * w[c];
                s1 += x[c + 1] * w[c + 1];
                s2 += x[c + 2] * w[c + 2];
                s3 += x[c + 3] * w[c + 3];
            }
            for (; c < k; c++) {
                s0 += x[c] * w[c];
            }
            Y[(size_t)t * ldy + r] = (s0 + s1) + (s2 + s3);
        }
    }
}

static void call_sgemm(int T, int n, int k, const float *X, const float *W, float *Y, int ldy)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, n, k, 1.0f, X, k, W, k, 0.0f, Y, ldy);
}

void blas_sgemm_nt(int T, int n, int k, const float *X, const float *W, float *Y, int ldy)
{
    struct rlimit as, data;
    int room;

    if (unlimited(&as, &data)) {
        call_sgemm(T, n, k, X, W, Y, ldy);
        return;
    }
    /* Under a limit every call takes its turn, not only a thread's first:
     * OpenBLAS gives calls that overlap a work buffer each and retries a
     * failed one forever, and between a first call's check and its
     * buffer another thread may take the room (a malloc arena reserves
     * 64 MiB).  One at a time, the calls reuse the buffers they have. */
    pthread_mutex_lock(&first_call);
    room = thread_has_buffer || room_for_first_call(&as, &data);
    if (room) {
        call_sgemm(T, n, k, X, W, Y, ldy);
        thread_has_buffer = 1;
    }
    pthread_mutex_unlock(&first_call);
    if (!room) {
        atomic_fetch_add(&fallbacks, 1);
        loop_sgemm_nt(T, n, k, X, W, Y, ldy);
    }
}

unsigned long blas_fallbacks(void)
{
    return atomic_load(&fallbacks);
}
