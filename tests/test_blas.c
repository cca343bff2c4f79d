/* test_blas.c - blas_sgemm_nt under an address-space limit (issue 17:
 * OpenBLAS 0.3.21 retried its buffer allocation forever there). */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/kernels/blas.h"
#include "tests/tap.h"

enum { T = 5, N = 33, K = 70 };

static float X[T * K], W[N * K], Y[T * N];
static double ref[T * N];

/* Largest difference from the double-precision product. */
static double max_error(void)
{
    double e = 0;

    for (int i = 0; i < T * N; i++) {
        e = fmax(e, fabs(Y[i] - ref[i]));
    }
    return e;
}

static void *product_thread(void *arg)
{
    (void)arg;
    blas_sgemm_nt(T, N, K, X, W, Y, N);
    return NULL;
}

/* The address space in use now, in bytes. */
static unsigned long long address_space(void)
{
    unsigned long long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f) {
        if (fscanf(f, "%llu", &pages) != 1) {
            pages = 0;
        }
        fclose(f);
    }
    return pages * (unsigned long long)sysconf(_SC_PAGESIZE);
}

/* In a child: limits the address space to what is in use plus headroom,
 * runs one product on a new thread (the first OpenBLAS call, which wants
 * a 128 MiB buffer) and exits 0 if it is right, 2 if it is wrong; 3 if it
 * was computed without OpenBLAS and should not have been, 4 the other way
 * round.  An alarm ends a hang. */
static int limited_child(unsigned long long headroom, int expect_fallback)
{
    pid_t pid = fork();
    int status;

    if (pid == 0) {
        struct rlimit r;
        unsigned long before = blas_fallbacks();
        pthread_t th;

        alarm(30);
        r.rlim_cur = r.rlim_max = address_space() + headroom;
        if (setrlimit(RLIMIT_AS, &r) != 0 || pthread_create(&th, NULL, product_thread, NULL) != 0) {
            _exit(5);
        }
        pthread_join(th, NULL);
        if (max_error() > 1e-4) {
            _exit(2);
        }
        if ((blas_fallbacks() != before) != expect_fallback) {
            _exit(expect_fallback ? 4 : 3);
        }
        _exit(0);
    }
    if (pid < 0 || waitpid(pid, &status, 0) != pid) {
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(void)
{
    int rc;

    srand(7);
    for (int i = 0; i < T * K; i++) {
        X[i] = (float)rand() / RAND_MAX - 0.5f;
    }
    for (int i = 0; i < N * K; i++) {
        W[i] = (float)rand() / RAND_MAX - 0.5f;
    }
    for (int t = 0; t < T; t++) {
        for (int n = 0; n < N; n++) {
            double s = 0;

            for (int k = 0; k < K; k++) {
                s += (double)X[t * K + k] * W[n * K + k];
            }
            ref[t * N + n] = s;
        }
    }
    /* The children first: OpenBLAS keeps the buffer of its first call for
     * later ones, so a product before the fork would let them reuse it. */
#if defined(__SANITIZE_ADDRESS__)
    (void)rc;
    skip("AddressSanitizer reserves terabytes of address space: no ulimit -v");
    skip("AddressSanitizer reserves terabytes of address space: no ulimit -v");
#else
    rc = limited_child(48ull << 20, 1);
    ok(rc == 0, "48 MiB of address space left: the product is computed without OpenBLAS, "
       "right, no hang (child status %d)", rc);
    rc = limited_child(1ull << 30, 0);
    ok(rc == 0, "1 GiB left: the product goes through OpenBLAS (child status %d)", rc);
#endif
    blas_sgemm_nt(T, N, K, X, W, Y, N);
    ok(max_error() < 1e-4 && blas_fallbacks() == 0,
       "no limit: OpenBLAS's product (max error %g)", max_error());
    return tap_done();
}
