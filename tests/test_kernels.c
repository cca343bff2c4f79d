/* test_kernels.c - every kernel against a naive reference, on odd sizes. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/kernels/kernels.h"
#include "engine/kernels/kernels_impl.h"
#include "engine/kernels/kmat.h"
#include "engine/rwkv.h"
#include "tests/tap.h"

static uint64_t rng = 88172645463325252ull;

/* Uniform in [-1, 1). */
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static float *random_vec(size_t n)
{
    float *v = malloc(n * sizeof *v);

    for (size_t i = 0; i < n; i++) {
        v[i] = frand();
    }
    return v;
}

static uint16_t to_bf16(float f)
{
    uint32_t u;

    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

static float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;

    memcpy(&f, &u, 4);
    return f;
}

static struct ckpt_tensor tensor(const char *name, enum ckpt_dtype dtype, int rows, int cols,
                                 const void *data)
{
    struct ckpt_tensor t;

    memset(&t, 0, sizeof t);
    t.name = (char *)name;
    t.dtype = dtype;
    t.ndim = 2;
    t.shape[0] = rows;
    t.shape[1] = cols;
    t.numel = (int64_t)rows * cols;
    t.data = data;
    t.nbytes = (size_t)t.numel * ckpt_dtype_size(dtype);
    return t;
}

/* Largest |a - b| relative to max(1, |b|). */
static double max_err(const float *a, const double *b, size_t n)
{
    double e = 0;

    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]) / fmax(1.0, fabs(b[i]));

        if (!(d <= e)) {
            e = d;
        }
    }
    return e;
}

/* y = W x in double, W [rows][cols]. */
static void naive_matvec(const float *W, const float *x, int rows, int cols, double *y)
{
    for (int r = 0; r < rows; r++) {
        double s = 0;

        for (int c = 0; c < cols; c++) {
            s += (double)W[(size_t)r * cols + c] * x[c];
        }
        y[r] = s;
    }
}

static void test_products(struct kpool *pool, const char *pname)
{
    static const int sizes[][2] = { { 1, 1 }, { 1, 7 }, { 37, 53 }, { 301, 257 }, { 1000, 65 } };
    static const int Ts[] = { 1, 2, 3, 17 };

    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int rows = sizes[s][0], cols = sizes[s][1];
        float *Wf = random_vec((size_t)rows * cols);
        struct ckpt_tensor t = tensor("w", CKPT_F32, rows, cols, Wf);
        struct kmat m;
        char err[256];
        float *x = random_vec((size_t)17 * cols);
        float *y = calloc((size_t)17 * rows, sizeof *y);
        double *ref = calloc((size_t)17 * rows, sizeof *ref);

        ok(kmat_from_tensor(&m, &t, 0, RWKV_DTYPE_AUTO, err, sizeof err) == 0 &&
           m.rows == rows && m.cols == cols, "%s: kmat %dx%d from f32", pname, rows, cols);
        naive_matvec(Wf, x, rows, cols, ref);
        k_matvec(pool, &m, x, y);
        ok(max_err(y, ref, (size_t)rows) < 1e-5, "%s: matvec %dx%d (err %g)", pname, rows, cols,
           max_err(y, ref, (size_t)rows));
        for (size_t k = 0; k < sizeof Ts / sizeof Ts[0]; k++) {
            int T = Ts[k];

            for (int i = 0; i < T; i++) {
                naive_matvec(Wf, x + (size_t)i * cols, rows, cols, ref + (size_t)i * rows);
            }
            memset(y, 0, (size_t)17 * rows * sizeof *y);
            k_matmul(pool, &m, x, T, y);
            ok(max_err(y, ref, (size_t)T * rows) < 1e-5, "%s: matmul %dx%d T=%d (err %g)",
               pname, rows, cols, T, max_err(y, ref, (size_t)T * rows));
        }
        kmat_free(&m);
        free(Wf);
        free(x);
        free(y);
        free(ref);
    }
}

/* Frees the np matrices of test_cut and test_batch with their weights,
 * inputs, outputs and reference outputs. */
static void free_products(int np, struct kmat *m, float **w, float **x, float **y, float **ref)
{
    for (int i = 0; i < np; i++) {
        kmat_free(&m[i]);
        free(w[i]);
        free(x[i]);
        free(y[i]);
        free(ref[i]);
    }
}

/* A large product on the pool is cut into pieces: every row written, each
 * exactly as the row kernel over all rows in one call gives it; so for a
 * batch of products in one job (k_matmul_batch, T = 1). */
static void test_cut(struct kpool *pool, const char *pname)
{
    static const int shapes[][2] = { { 4099, 96 }, { 20011, 64 }, { 513, 1024 }, { 3, 40000 } };
    static const enum rwkv_dtype types[] = { RWKV_DTYPE_BF16, RWKV_DTYPE_Q4, RWKV_DTYPE_F32,
                                             RWKV_DTYPE_Q8 };
    enum { NP = 4 };
    struct kmat m[NP];
    struct k_product p[NP];
    float *w[NP], *x[NP], *y[NP], *ref[NP];
    char err[256];
    int built = 1, same = 1, batch_same = 1;

    for (int i = 0; i < NP; i++) {
        int rows = shapes[i][0], cols = shapes[i][1];
        struct ckpt_tensor t;

        w[i] = random_vec((size_t)rows * cols);
        x[i] = random_vec((size_t)cols);
        y[i] = malloc((size_t)rows * sizeof *y[i]);
        ref[i] = malloc((size_t)rows * sizeof *ref[i]);
        t = tensor("cut", CKPT_F32, rows, cols, w[i]);
        built &= kmat_from_tensor(&m[i], &t, 0, types[i], err, sizeof err) == 0;
        p[i] = (struct k_product){ &m[i], x[i], y[i] };
    }
    ok(built, "%s: four large matrices in four formats", pname);
    for (int i = 0; built && i < NP; i++) {
        kernels_format(m[i].type)->matvec_rows(&m[i], x[i], ref[i], 0, m[i].rows);
        for (int r = 0; r < m[i].rows; r++) {
            y[i][r] = NAN;
        }
        k_matvec(pool, &m[i], x[i], y[i]);
        same &= memcmp(y[i], ref[i], (size_t)m[i].rows * sizeof *y[i]) == 0;
        for (int r = 0; r < m[i].rows; r++) {
            y[i][r] = NAN;
        }
    }
    ok(built && same, "%s: k_matvec of 4099x96 bf16, 20011x64 q4, 513x1024 f32, 3x40000 q8 "
       "equals the row kernel over all rows, bit for bit", pname);
    if (built) {
        k_matmul_batch(pool, p, NP, 1);
    }
    for (int i = 0; built && i < NP; i++) {
        batch_same &= memcmp(y[i], ref[i], (size_t)m[i].rows * sizeof *y[i]) == 0;
    }
    ok(built && batch_same, "%s: the four in one k_matmul_batch job, the same, bit for bit", pname);
    free_products(NP, m, w, x, y, ref);
}

/* Conversions: bf16 and f16 stored data, and the LoRA transpose. */
static void test_kmat(void)
{
    int rows = 13, cols = 29;
    float *src = random_vec((size_t)rows * cols);
    uint16_t *bf = malloc((size_t)rows * cols * 2);
    _Float16 *hf = malloc((size_t)rows * cols * sizeof *hf);
    struct kmat m;
    char err[256];
    int good;

    for (int i = 0; i < rows * cols; i++) {
        bf[i] = to_bf16(src[i]);
        hf[i] = (_Float16)src[i];
    }

    struct ckpt_tensor tb = tensor("bf", CKPT_BF16, rows, cols, bf);
    ok(kmat_from_tensor(&m, &tb, 0, RWKV_DTYPE_AUTO, err, sizeof err) == 0, "kmat from bf16");
    good = m.rows == rows && m.cols == cols;
    for (int i = 0; good && i < rows * cols; i++) {
        float got;

        if (m.type == RWKV_DTYPE_F32) {
            got = ((const float *)m.data)[i];
        } else {
            break;              /* other formats are checked by the products */
        }
        good = got == from_bf16(bf[i]);
    }
    ok(good, "bf16 -> kernel matrix is exact (%s)", rwkv_dtype_name(m.type));
    kmat_free(&m);

    struct ckpt_tensor th = tensor("hf", CKPT_F16, rows, cols, hf);
    ok(kmat_from_tensor(&m, &th, 0, RWKV_DTYPE_F32, err, sizeof err) == 0 &&
       m.type == RWKV_DTYPE_F32, "kmat from f16 as f32");
    good = 1;
    for (int i = 0; i < rows * cols; i++) {
        good &= ((const float *)m.data)[i] == (float)hf[i];
    }
    ok(good, "f16 -> f32 is exact");
    ok(kmat_bytes(&m) == (size_t)rows * cols * 4, "kmat_bytes f32 = %zu", kmat_bytes(&m));
    kmat_free(&m);

    /* transpose: stored [cols][rows] -> [rows][cols] */
    struct ckpt_tensor tt = tensor("t", CKPT_F32, cols, rows, src);
    ok(kmat_from_tensor(&m, &tt, 1, RWKV_DTYPE_F32, err, sizeof err) == 0 &&
       m.rows == rows && m.cols == cols, "kmat transpose shape %dx%d", m.rows, m.cols);
    good = 1;
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++) {
            good &= ((const float *)m.data)[r * cols + c] == src[c * rows + r];
        }
    }
    ok(good, "kmat transpose values");
    kmat_free(&m);

    /* f32 without conversion uses the data in place */
    struct ckpt_tensor tf = tensor("f", CKPT_F32, rows, cols, src);
    ok(kmat_from_tensor(&m, &tf, 0, RWKV_DTYPE_AUTO, err, sizeof err) == 0 &&
       m.data == src && m.owned == NULL, "f32 kmat maps the tensor in place");
    kmat_free(&m);

    /* error path: not a matrix */
    struct ckpt_tensor t1 = tensor("blocks.0.att.x_r", CKPT_F32, rows, cols, src);
    t1.ndim = 1;
    err[0] = 0;
    ok(kmat_from_tensor(&m, &t1, 0, RWKV_DTYPE_AUTO, err, sizeof err) == -1 &&
       strstr(err, "blocks.0.att.x_r") != NULL, "1-D tensor refused: %s", err);
    free(src);
    free(bf);
    free(hf);
}

static void test_norms(void)
{
    static const int ns[] = { 1, 3, 65, 1031 };

    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        int n = ns[k];
        float *x = random_vec((size_t)n), *w = random_vec((size_t)n), *b = random_vec((size_t)n);
        float *y = malloc((size_t)n * sizeof *y);
        double *ref = malloc((size_t)n * sizeof *ref);
        double mean = 0, var = 0;

        for (int i = 0; i < n; i++) {
            x[i] = x[i] * 3 + 0.5f;
            mean += x[i];
        }
        mean /= n;
        for (int i = 0; i < n; i++) {
            var += (x[i] - mean) * (x[i] - mean);
        }
        var /= n;
        for (int i = 0; i < n; i++) {
            ref[i] = (x[i] - mean) / sqrt(var + 1e-5) * w[i] + b[i];
        }
        k_layernorm(x, w, b, n, 1e-5f, y);
        ok(max_err(y, ref, (size_t)n) < 1e-5, "layernorm n=%d (err %g)", n,
           max_err(y, ref, (size_t)n));
        free(x);
        free(w);
        free(b);
        free(y);
        free(ref);
    }

    /* GroupNorm: 7 groups of 9, large eps as RWKV uses (64e-5) */
    int G = 7, gs = 9, n = G * gs;
    float *x = random_vec((size_t)n), *w = random_vec((size_t)n), *b = random_vec((size_t)n);
    float *y = malloc((size_t)n * sizeof *y);
    double ref[63];

    for (int g = 0; g < G; g++) {
        double mean = 0, var = 0;

        for (int i = g * gs; i < (g + 1) * gs; i++) {
            mean += x[i];
        }
        mean /= gs;
        for (int i = g * gs; i < (g + 1) * gs; i++) {
            var += (x[i] - mean) * (x[i] - mean);
        }
        var /= gs;
        for (int i = g * gs; i < (g + 1) * gs; i++) {
            ref[i] = (x[i] - mean) / sqrt(var + 64e-5) * w[i] + b[i];
        }
    }
    k_groupnorm(x, w, b, n, G, 64e-5f, y);
    ok(max_err(y, ref, (size_t)n) < 1e-5, "groupnorm 7x9 eps 64e-5 (err %g)",
       max_err(y, ref, (size_t)n));
    k_groupnorm(x, w, b, n, G, 64e-5f, x);
    ok(max_err(x, ref, (size_t)n) < 1e-5, "groupnorm in place");
    free(x);
    free(w);
    free(b);
    free(y);
}

struct count_ctx {
    int *hits;
};

static void count_task(void *ctx, int i)
{
    struct count_ctx *c = ctx;

    __atomic_fetch_add(&c->hits[i], 1, __ATOMIC_RELAXED);
}

/* count_task after 3 ms for the last index. */
static void slow_task(void *ctx, int i)
{
    struct timespec pause = { 0, 3000000 };

    if (i == 5) {
        nanosleep(&pause, NULL);
    }
    count_task(ctx, i);
}

static void test_pool(void)
{
    struct kpool *pool = kpool_new(3);
    int hits[101];
    struct count_ctx c = { hits };
    int good = 1;

    ok(pool != NULL && kpool_threads(pool) == 3, "pool of 3 threads");
    ok(kpool_threads(NULL) == 1, "NULL pool counts as one thread");
    /* Many small jobs in a row: each index exactly once, no lost wake-up. */
    for (int run = 0; run < 2000 && good; run++) {
        int n = 1 + run % 101;

        memset(hits, 0, sizeof hits);
        kpool_run(pool, count_task, &c, n);
        for (int i = 0; i < 101; i++) {
            good &= hits[i] == (i < n);
        }
    }
    ok(good, "2000 pool runs: every task index run exactly once");
    memset(hits, 0, sizeof hits);
    kpool_run(pool, count_task, &c, 0);
    kpool_run(NULL, count_task, &c, 5);
    ok(hits[0] == 1 && hits[4] == 1 && hits[5] == 0, "n=0 runs nothing; NULL pool runs inline");
    /* Jobs after the workers stopped spinning and went to sleep. */
    good = 1;
    for (int run = 0; run < 5 && good; run++) {
        struct timespec pause = { 0, 2000000 };

        nanosleep(&pause, NULL);
        memset(hits, 0, sizeof hits);
        kpool_run(pool, count_task, &c, 64);
        for (int i = 0; i < 101; i++) {
            good &= hits[i] == (i < 64);
        }
    }
    ok(good, "jobs after 2 ms idle (sleeping workers) run every task once");
    /* More tasks than one job holds (65535): run in rounds. */
    {
        enum { BIG = 70001 };
        int *many = calloc(BIG, sizeof *many);
        struct count_ctx cm = { many };

        good = many != NULL;
        if (many) {
            kpool_run(pool, count_task, &cm, BIG);
            for (int i = 0; i < BIG; i++) {
                good &= many[i] == 1;
            }
        }
        ok(good, "a job of %d tasks runs each exactly once", BIG);
        free(many);
    }
    /* A straggler much slower than the spin: the caller sleeps and is woken. */
    good = 1;
    for (int run = 0; run < 3 && good; run++) {
        memset(hits, 0, sizeof hits);
        kpool_run(pool, slow_task, &c, 6);
        for (int i = 0; i < 101; i++) {
            good &= hits[i] == (i < 6);
        }
    }
    ok(good, "tasks of 3 ms (longer than the spin): every task once, all finished on return");
    kpool_free(pool);
    kpool_free(NULL);

    pool = kpool_new(0);
    ok(pool != NULL && kpool_threads(pool) >= 1, "pool sized from online CPUs (%d)",
       kpool_threads(pool));
    kpool_free(pool);
}

/* k_matmul_batch gives what one k_matmul per product gives, bit for bit
 * (the same row kernels on the same rows), for mixed formats and odd
 * sizes, in RNN mode (one pool job) and sequence mode. */
static void test_batch(struct kpool *pool, const char *pname)
{
    static const int shapes[][2] = { { 37, 53 }, { 301, 257 }, { 5, 3 }, { 64, 1031 }, { 1, 7 } };
    static const enum rwkv_dtype types[] = { RWKV_DTYPE_F32, RWKV_DTYPE_BF16, RWKV_DTYPE_Q8,
                                             RWKV_DTYPE_Q4, RWKV_DTYPE_F16 };
    enum { NP = 5 };
    struct kmat m[NP];
    struct k_product p[NP];
    float *w[NP], *x[NP], *y[NP], *ref[NP];
    char err[256];
    int built = 1;

    for (int i = 0; i < NP; i++) {
        int rows = shapes[i][0], cols = shapes[i][1];
        struct ckpt_tensor t;

        w[i] = random_vec((size_t)rows * cols);
        x[i] = random_vec((size_t)3 * cols);
        y[i] = calloc((size_t)3 * rows, sizeof *y[i]);
        ref[i] = calloc((size_t)3 * rows, sizeof *ref[i]);
        t = tensor("batch", CKPT_F32, rows, cols, w[i]);
        built &= kmat_from_tensor(&m[i], &t, 0, types[i], err, sizeof err) == 0;
        p[i] = (struct k_product){ &m[i], x[i], y[i] };
    }
    ok(built, "%s: five matrices in five formats for a batch", pname);
    for (int T = 1; T <= 3; T += 2) {
        int same = 1;

        for (int i = 0; i < NP; i++) {
            memset(y[i], 0, (size_t)3 * shapes[i][0] * sizeof *y[i]);
            k_matmul(pool, &m[i], x[i], T, ref[i]);
        }
        k_matmul_batch(pool, p, NP, T);
        for (int i = 0; i < NP; i++) {
            same &= memcmp(y[i], ref[i], (size_t)T * shapes[i][0] * sizeof *y[i]) == 0;
        }
        ok(same, "%s: k_matmul_batch T=%d equals one k_matmul per product", pname, T);
    }
    /* k_matvec_many: T vectors per product, each row bit-identical to
     * k_matvec on that vector (the 301x257 bf16 matrix is cut into blocks
     * that every vector passes over in turn). */
    for (int T = 1; T <= 3; T++) {
        int same = 1;

        for (int i = 0; i < NP; i++) {
            memset(y[i], 0, (size_t)3 * shapes[i][0] * sizeof *y[i]);
            for (int t = 0; t < T; t++) {
                k_matvec(pool, &m[i], x[i] + (size_t)t * shapes[i][1],
                         ref[i] + (size_t)t * shapes[i][0]);
            }
        }
        k_matvec_many(pool, p, NP, T);
        for (int i = 0; i < NP; i++) {
            same &= memcmp(y[i], ref[i], (size_t)T * shapes[i][0] * sizeof *y[i]) == 0;
        }
        ok(same, "%s: k_matvec_many T=%d equals k_matvec per vector, bit for bit", pname, T);
    }
    {
        /* Wide Q8 rows (once taken two vectors at a time over row
         * blocks; now four at a time like every format): still
         * k_matvec's results, for a group of four, and one of five
         * (4 + 1). */
        enum { R = 70, C = 3072 };
        float *wq = random_vec((size_t)R * C), *xq = random_vec((size_t)5 * C);
        float *yq = calloc((size_t)5 * R, sizeof *yq), *rq = calloc((size_t)5 * R, sizeof *rq);
        struct ckpt_tensor tq = tensor("wide", CKPT_F32, R, C, wq);
        struct kmat mq;
        int same = kmat_from_tensor(&mq, &tq, 0, RWKV_DTYPE_Q8, err, sizeof err) == 0;

        for (int T = 4; same && T <= 5; T++) {
            struct k_product pq = { &mq, xq, yq };

            for (int t = 0; t < T; t++) {
                k_matvec(pool, &mq, xq + (size_t)t * C, rq + (size_t)t * R);
            }
            k_matvec_many(pool, &pq, 1, T);
            same &= memcmp(yq, rq, (size_t)T * R * sizeof *yq) == 0;
        }
        ok(same, "%s: k_matvec_many on wide Q8 rows (%d columns), 4 and 5 vectors, equals "
           "k_matvec per vector, bit for bit", pname, C);
        kmat_free(&mq);
        free(wq);
        free(xq);
        free(yq);
        free(rq);
    }
    {
        const struct kernel_format *bf = kernels_format(RWKV_DTYPE_BF16);

        if (!strcmp(kernels_name(), "avx512") || !strcmp(kernels_name(), "avx2")) {
            ok(bf->matvec_multi_rows != NULL, "%s: the %s set's bf16 multi-vector kernel passed "
               "its start-up check and is in use", pname, kernels_name());
        }
    }
    free_products(NP, m, w, x, y, ref);
}

/* Half-precision files at dtype auto keep their format (where a kernel set
 * has it): the products must equal float32 ones on the rounded weights. */
static void test_half_products(struct kpool *pool)
{
    static const int sizes[][2] = { { 5, 3 }, { 37, 53 }, { 301, 257 } };

    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int rows = sizes[s][0], cols = sizes[s][1];
        size_t n = (size_t)rows * cols;
        float *Wf = random_vec(n), *x = random_vec((size_t)9 * cols);
        uint16_t *bf = malloc(n * 2);
        _Float16 *hf = malloc(n * sizeof *hf);
        float *y = calloc((size_t)9 * rows, sizeof *y);
        double *ref = calloc((size_t)9 * rows, sizeof *ref);
        char err[256];

        for (int half = 0; half < 2; half++) {
            struct ckpt_tensor t;
            struct kmat m;

            for (size_t i = 0; i < n; i++) {
                if (half) {
                    hf[i] = (_Float16)Wf[i];
                } else {
                    bf[i] = to_bf16(Wf[i]);
                }
            }
            float *rounded = malloc(n * sizeof *rounded);
            for (size_t i = 0; i < n; i++) {
                rounded[i] = half ? (float)hf[i] : from_bf16(bf[i]);
            }
            t = tensor("h", half ? CKPT_F16 : CKPT_BF16, rows, cols, half ? (void *)hf : (void *)bf);
            if (kmat_from_tensor(&m, &t, 0, RWKV_DTYPE_AUTO, err, sizeof err) != 0) {
                ok(0, "kmat from %s: %s", half ? "f16" : "bf16", err);
                free(rounded);
                continue;
            }
            for (int i = 0; i < 9; i++) {
                naive_matvec(rounded, x + (size_t)i * cols, rows, cols, ref + (size_t)i * rows);
            }
            k_matvec(pool, &m, x, y);
            ok(max_err(y, ref, (size_t)rows) < 1e-5, "%s stored, %s kernel: matvec %dx%d (err %g)",
               half ? "f16" : "bf16", rwkv_dtype_name(m.type), rows, cols,
               max_err(y, ref, (size_t)rows));
            k_matmul(pool, &m, x, 9, y);
            ok(max_err(y, ref, (size_t)9 * rows) < 1e-5,
               "%s stored, %s kernel: matmul %dx%d T=9 (err %g)", half ? "f16" : "bf16",
               rwkv_dtype_name(m.type), rows, cols, max_err(y, ref, (size_t)9 * rows));
            kmat_free(&m);
            free(rounded);
        }
        free(Wf);
        free(x);
        free(bf);
        free(hf);
        free(y);
        free(ref);
    }
}

/* A broken kernel: right shape, every output off by 0.5. */
static const struct kernel_format *broken_base;

static void broken_matvec_rows(const struct kmat *W, const float *x, float *y, int r0, int r1)
{
    broken_base->matvec_rows(W, x, y, r0, r1);
    for (int r = r0; r < r1; r++) {
        y[r] += 0.5f;
    }
}

/* Dispatch keeps the fastest set for every format only if it reproduces
 * the plain C kernels; a set that gets the numbers wrong is refused. */
static void test_self_check(void)
{
    static const char *names[] = { "auto", "f32", "f16", "bf16", "q8", "q4" };
    const struct kernel_set *sets[] = {
#ifdef __x86_64__
        &kernel_set_avx512vnni, &kernel_set_avx512, &kernel_set_avx2,
#endif
        &kernel_set_quant, &kernel_set_portable,
    };
    size_t n = sizeof sets / sizeof sets[0];

    for (int t = RWKV_DTYPE_F32; t < KERNEL_N_FORMATS; t++) {
        const struct kernel_format *ref = NULL, *first = NULL;
        struct kernel_format bad;

        for (size_t i = n; i-- > 0;) {
            if (sets[i]->format[t].matvec_rows) {
                ref = &sets[i]->format[t];
                break;
            }
        }
        for (size_t i = 0; i < n && !first; i++) {
            if ((!sets[i]->usable || sets[i]->usable()) && sets[i]->format[t].matvec_rows) {
                first = &sets[i]->format[t];
            }
        }
        if (!ref || !first) {
            continue;
        }
        ok(kernels_self_check(first, ref, (enum rwkv_dtype)t) &&
           kernels_format((enum rwkv_dtype)t)->matvec_rows == first->matvec_rows,
           "%s: the fastest usable kernels pass the self-check and are the ones in use",
           names[t]);
        broken_base = first;
        bad = *first;
        bad.matvec_rows = broken_matvec_rows;
        bad.matmul_rows = NULL;
        ok(!kernels_self_check(&bad, ref, (enum rwkv_dtype)t),
           "%s: kernels that get the numbers wrong fail the self-check", names[t]);
    }
}

/* In a child process that has not chosen its kernels yet: selects set
 * `name` and exits 0 if the active kernels of every format are that set's
 * own where it has them (kernels.c's self-checks passing), 1 if not, 2 if
 * the select failed. */
static int select_in_child(const char *name, const struct kernel_set *set)
{
    pid_t pid = fork();
    int status;

    if (pid == 0) {
        char err[RWKV_ERRLEN];
        int same = 1;

        if (rwkv_kernels_select(name, err, sizeof err) != 0) {
            _exit(2);
        }
        same = strcmp(rwkv_kernels_name(), name) == 0;
        for (int t = 0; t < KERNEL_N_FORMATS; t++) {
            if (set->format[t].matvec_rows &&
                kernels_format((enum rwkv_dtype)t)->matvec_rows != set->format[t].matvec_rows) {
                same = 0;
            }
        }
        _exit(same ? 0 : 1);
    }
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) {
        return -1;
    }
    return WEXITSTATUS(status);
}

/* rwkv_kernels_select: a chosen set serves every format it has; errors
 * for an unknown name and for a set other than the one already chosen.
 * Runs first, while this process has not chosen its kernels. */
static void test_select(void)
{
    char err[RWKV_ERRLEN];

    ok(select_in_child("portable", &kernel_set_quant) == 0,
       "rwkv_kernels_select(portable): the portable kernels serve every format");
#ifdef __x86_64__
    if (kernel_set_avx2.usable()) {
        ok(select_in_child("avx2", &kernel_set_avx2) == 0,
           "rwkv_kernels_select(avx2): the AVX2 kernels serve every format they have");
    } else {
        skip("rwkv_kernels_select(avx2): this CPU has no AVX2/FMA");
    }
    if (!kernel_set_avx512.usable()) {
        ok(rwkv_kernels_select("avx512", err, sizeof err) != 0 && strstr(err, "cannot run"),
           "rwkv_kernels_select(avx512) on a CPU without AVX-512 fails: %s", err);
    }
#endif
    ok(rwkv_kernels_select("avx9", err, sizeof err) != 0 && strstr(err, "'avx9'"),
       "rwkv_kernels_select of an unknown set fails: %s", err);
    kernels_init();
    ok(rwkv_kernels_select(rwkv_kernels_name(), err, sizeof err) == 0,
       "rwkv_kernels_select of the set already chosen succeeds");
    if (strcmp(rwkv_kernels_name(), "portable") != 0) {
        ok(rwkv_kernels_select("portable", err, sizeof err) != 0 && strstr(err, "already chosen"),
           "rwkv_kernels_select of another set after the kernels were chosen fails: %s", err);
    }
}

int main(void)
{
    struct kpool *pool;

    test_select();
    kernels_init();
    kernels_init();
    ok(rwkv_kernels_name() && rwkv_kernels_name()[0], "kernel set: %s", rwkv_kernels_name());
    test_self_check();
    test_kmat();
    test_norms();
    test_pool();
    test_products(NULL, "inline");
    pool = kpool_new(3);
    test_products(pool, "pool3");
    test_batch(NULL, "inline");
    test_batch(pool, "pool3");
    test_half_products(pool);
    test_half_products(NULL);
    test_cut(pool, "pool3");
    kpool_free(pool);
    pool = kpool_new(2);
    test_cut(pool, "pool2");
    kpool_free(pool);
    return tap_done();
}
