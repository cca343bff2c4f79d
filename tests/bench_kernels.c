/*
 * bench_kernels.c - speed of each weight format's matrix-vector kernel on
 * one thread, against a plain streaming read of the same memory, both timed
 * in thread CPU time so that other processes on a shared machine do not
 * count.  Not a test (no timed assertions in make check): build it with
 * `make tests/bench_kernels` and run `tests/bench_kernels [--set NAME]
 * [ROWS COLS [T]]`; --set measures kernel set NAME (avx2 on an AVX-512 CPU,
 * say: kernels_select) instead of the best the CPU can run.
 * The last column is k_matvec_many with four vectors (four conversations'
 * tokens, rwkv_eval_batch) in units of one matvec's time: 4.0 would mean
 * no gain from reading the weights once.  A second table times sequence
 * mode (k_matmul: a prompt's chunk of T tokens, default 128) on a matrix of
 * at most 3072 of those rows, in multiply-adds per second of CPU time.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/tools/membw.h"
#include "engine/kernels/kernels.h"
#include "engine/kernels/kernels_impl.h"

static double cpu_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    int rows, cols;
    size_t n;
    float *src, *x, *y;
    uint64_t state = 88172645463325252ull, sink = 0;

    if (argc > 2 && strcmp(argv[1], "--set") == 0) {
        int rc = kernels_select(argv[2]);

        if (rc != 0) {
            fprintf(stderr, "bench_kernels: kernel set '%s': %s\n", argv[2],
                    rc == -1 ? "not in this build" : "this CPU cannot run it");
            return 1;
        }
        argc -= 2;
        argv += 2;
    }
    rows = argc > 2 ? atoi(argv[1]) : 131072;
    cols = argc > 2 ? atoi(argv[2]) : 768;
    n = (size_t)rows * (size_t)cols;
    src = malloc(n * sizeof *src);
    x = malloc((size_t)4 * cols * sizeof *x);
    y = malloc((size_t)4 * rows * sizeof *y);
    if (!src || !x || !y || rows < 1 || cols < 1) {
        fprintf(stderr, "bench_kernels: bad size or out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        src[i] = (float)((int64_t)(state >> 40) - (1 << 23)) / (float)(1 << 26);
    }
    for (int c = 0; c < 4 * cols; c++) {
        x[c] = (float)(c % cols) / (float)cols - 0.5f + (float)(c / cols) * 0.01f;
    }
    kernels_init();
    printf("kernels: %s; matrix %d x %d; one thread, CPU time, best of 5\n",
           kernels_name(), rows, cols);
    printf("| format | MB | matvec GB/s | read GB/s | matvec / read | 4 vectors / 1 |\n"
           "|---|---|---|---|---|---|\n");
    for (int t = RWKV_DTYPE_F32; t <= RWKV_DTYPE_Q4; t++) {
        struct kmat W = { .type = (enum rwkv_dtype)t, .rows = rows, .cols = cols };
        double best = 1e30, best_read = 1e30, best4 = 1e30;
        struct k_product p = { &W, x, y };
        size_t bytes;

        if (t == RWKV_DTYPE_F32) {
            W.data = src;
        } else if (kernels_format(W.type)->pack(&W, src) != 0) {
            fprintf(stderr, "bench_kernels: out of memory\n");
            return 1;
        }
        bytes = kmat_bytes(&W);
        for (int r = 0; r < 5; r++) {
            double t0 = cpu_now();

            k_matvec(NULL, &W, x, y);
            best = best < cpu_now() - t0 ? best : cpu_now() - t0;
            t0 = cpu_now();
            /* the same number of bytes, read from the float32 source */
            sink ^= membw_read(src, bytes);
            best_read = best_read < cpu_now() - t0 ? best_read : cpu_now() - t0;
            t0 = cpu_now();
            k_matvec_many(NULL, &p, 1, 4);
            best4 = best4 < cpu_now() - t0 ? best4 : cpu_now() - t0;
        }
        printf("| %s | %.0f | %.1f | %.1f | %.0f %% | %.2f |\n", rwkv_dtype_name(W.type),
               bytes / 1e6, bytes / best / 1e9, bytes / best_read / 1e9,
               100.0 * best_read / best, best4 / best);
        if (t != RWKV_DTYPE_F32) {
            kmat_free(&W);
        }
    }
    {
        int T = argc > 3 ? atoi(argv[3]) : 128, mrows = rows < 3072 ? rows : 3072;
        float *X = malloc((size_t)T * cols * sizeof *X), *Y = malloc((size_t)T * mrows * sizeof *Y);

        if (!X || !Y || T < 1) {
            fprintf(stderr, "bench_kernels: bad token count or out of memory\n");
            return 1;
        }
        for (size_t i = 0; i < (size_t)T * cols; i++) {
            X[i] = src[(i * 7919) % n] * 64.0f;
        }
        printf("\nsequence mode: %d x %d matrix, %d tokens, one thread, CPU time, best of 3\n"
               "| format | GMAC/s | ms |\n|---|---|---|\n", mrows, cols, T);
        for (int t = RWKV_DTYPE_F32; t <= RWKV_DTYPE_Q4; t++) {
            struct kmat W = { .type = (enum rwkv_dtype)t, .rows = mrows, .cols = cols };
            double best = 1e30;

            if (t == RWKV_DTYPE_F32) {
                W.data = src;
            } else if (kernels_format(W.type)->pack(&W, src) != 0) {
                fprintf(stderr, "bench_kernels: out of memory\n");
                return 1;
            }
            for (int r = 0; r < 3; r++) {
                double t0 = cpu_now();

                k_matmul(NULL, &W, X, T, Y);
                best = best < cpu_now() - t0 ? best : cpu_now() - t0;
            }
            printf("| %s | %.1f | %.2f |\n", rwkv_dtype_name(W.type),
                   (double)mrows * cols * T / best / 1e9, best * 1e3);
            if (t != RWKV_DTYPE_F32) {
                kmat_free(&W);
            }
        }
        free(X);
        free(Y);
    }
    free(src);
    free(x);
    free(y);
    return sink == 42;
}
