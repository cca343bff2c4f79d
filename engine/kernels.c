/*
 * kernels.c - kernel dispatch, the worker pool, and the portable kernels.
 *
 * The matrix kernels are reached through the dispatch table described in
 * kernels_impl.h: kernels_init() picks, per weight format, the row kernels
 * of the best kernel set the CPU can run.  This file holds the portable set
 * (float32 rows in C, sequence-mode products through OpenBLAS sgemm), the
 * generic sequence-mode path for other formats (row blocks converted to
 * float32, then sgemm), and the vector kernels (LayerNorm, GroupNorm),
 * which are cheap next to the matrix products and stay portable.
 */
#include <assert.h>
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "engine/kernels.h"
#include "engine/kernels_impl.h"

/* ------------------------------------------------------------------------ */
/* Dispatch                                                                  */

/* Kernel sets in order of preference; the portable set must come last. */
static const struct kernel_set *const candidates[] = {
#ifdef __x86_64__
    &kernel_set_avx512,
    &kernel_set_avx2,
#endif
    &kernel_set_quant,
    &kernel_set_portable,
};

static struct kernel_format active[KERNEL_N_FORMATS];
static const char *active_name = "portable";
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* Plain 16-bit [rows][cols] matrices (as mapped from a bf16/f16 file) to
 * float32, rows [r0, r1). */
static void bf16_rows_to_f32(const struct kmat *W, int r0, int r1, float *out)
{
    const uint16_t *p = (const uint16_t *)W->data + (size_t)r0 * W->cols;
    size_t n = (size_t)(r1 - r0) * (size_t)W->cols;

    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)p[i] << 16;

        memcpy(&out[i], &u, sizeof u);
    }
}

static void f16_rows_to_f32(const struct kmat *W, int r0, int r1, float *out)
{
    ckpt_to_f32(CKPT_F16, (const uint16_t *)W->data + (size_t)r0 * W->cols, out,
                (size_t)(r1 - r0) * (size_t)W->cols);
}

/* One product y = W x (matvec_rows) and Y = X W^T for T = 3 (matmul_rows
 * when present) with format f on a fixed pseudo-random W [rows][cols];
 * y gets rows + 3 * rows floats.  -1 if packing fails. */
static int self_check_product(const struct kernel_format *f, enum rwkv_dtype t, const float *w,
                              const float *x, int rows, int cols, float *y)
{
    struct kmat m;

    memset(&m, 0, sizeof m);
    m.type = t;
    m.rows = rows;
    m.cols = cols;
    if (f->pack(&m, w) < 0) {
        return -1;
    }
    f->matvec_rows(&m, x, y, 0, rows);
    if (f->matmul_rows) {
        f->matmul_rows(&m, x, 3, y + rows, 0, rows);
    } else {
        for (int i = 0; i < 3; i++) {
            f->matvec_rows(&m, x + (size_t)i * cols, y + rows + (size_t)i * rows, 0, rows);
        }
    }
    free(m.owned);
    free(m.owned_scales);
    return 0;
}

/* Trust, but verify (see kernels_impl.h): a set that disagrees with the
 * reference is skipped for that format and the next one serves. */
int kernels_self_check(const struct kernel_format *f, const struct kernel_format *ref,
                       enum rwkv_dtype t)
{
    enum { ROWS = 37, COLS = 301, T = 3 };
    static float w[ROWS * COLS], x[T * COLS], y[4 * ROWS], y_ref[4 * ROWS];
    uint32_t r = 2463534242u;
    double err = 0, norm = 0;

    if (f == ref || !f->pack || !ref->pack) {
        return 1;       /* nothing to compare with */
    }
    for (int i = 0; i < ROWS * COLS; i++) {
        r ^= r << 13, r ^= r >> 17, r ^= r << 5;
        w[i] = (float)((int)(r % 2001) - 1000) / 1000.0f;
    }
    for (int i = 0; i < T * COLS; i++) {
        r ^= r << 13, r ^= r >> 17, r ^= r << 5;
        x[i] = (float)((int)(r % 2001) - 1000) / 1000.0f;
    }
    if (self_check_product(f, t, w, x, ROWS, COLS, y) < 0 ||
        self_check_product(ref, t, w, x, ROWS, COLS, y_ref) < 0) {
        return 0;
    }
    for (int i = 0; i < 4 * ROWS; i++) {
        err = fmax(err, fabs((double)y[i] - (double)y_ref[i]));
        norm = fmax(norm, fabs((double)y_ref[i]));
    }
    /* Same quantisation on both sides: only the order of float additions
     * may differ (and NaN fails). */
    return err <= 1e-4 * (norm + 1.0);
}

/* Fills active[] from the first usable set that provides each format and
 * passes its self-check. */
static void kernels_choose(void)
{
    size_t n = sizeof candidates / sizeof candidates[0];
    int best_set_used = 0;

    for (int t = 0; t < KERNEL_N_FORMATS; t++) {
        const struct kernel_format *ref = NULL;

        for (size_t i = n; i-- > 0;) {
            if (candidates[i]->format[t].matvec_rows) {
                ref = &candidates[i]->format[t];
                break;
            }
        }
        for (size_t i = 0; i < n; i++) {
            const struct kernel_set *s = candidates[i];

            if (s->usable && !s->usable()) {
                continue;
            }
            if (!best_set_used) {
                active_name = s->name;
                best_set_used = 1;
            }
            if (s->format[t].matvec_rows && kernels_self_check(&s->format[t], ref, (enum rwkv_dtype)t)) {
                active[t] = s->format[t];
                break;
            }
        }
    }
    /* Every product is split over the model's own pool (its --threads), so
     * OpenBLAS must not start threads of its own: they would oversubscribe
     * the cores and spin between calls. */
    openblas_set_num_threads(1);
    if (!active[RWKV_DTYPE_BF16].rows_to_f32) {
        active[RWKV_DTYPE_BF16].rows_to_f32 = bf16_rows_to_f32;
    }
    if (!active[RWKV_DTYPE_F16].rows_to_f32) {
        active[RWKV_DTYPE_F16].rows_to_f32 = f16_rows_to_f32;
    }
}

void kernels_init(void)
{
    pthread_once(&init_once, kernels_choose);
}

const struct kernel_format *kernels_format(enum rwkv_dtype t)
{
    kernels_init();
    assert(t >= 0 && t < KERNEL_N_FORMATS);
    return &active[t];
}

const char *rwkv_kernels_name(void)
{
    kernels_init();
    return active_name;
}

/* ------------------------------------------------------------------------ */
/* Portable float32 kernels                                                   */

static float dot_f32(const float *a, const float *b, int n)
{
    /* Four partial sums: lets the compiler vectorise without -ffast-math. */
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int i = 0;

    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++) {
        s0 += a[i] * b[i];
    }
    return (s0 + s1) + (s2 + s3);
}

static int f32_pack(struct kmat *m, const float *src)
{
    size_t n = (size_t)m->rows * (size_t)m->cols;
    float *d = malloc(n * sizeof *d);

    if (!d) {
        return -1;
    }
    memcpy(d, src, n * sizeof *d);
    m->data = d;
    m->owned = d;
    return 0;
}

static void f32_matvec_rows(const struct kmat *W, const float *x, float *y, int r0, int r1)
{
    const float *w = W->data;

    for (int r = r0; r < r1; r++) {
        y[r] = dot_f32(w + (size_t)r * W->cols, x, W->cols);
    }
}

/* Y[T][rows] = X[T][cols] W^T for rows [r0, r1), one sgemm. */
static void f32_matmul_rows(const struct kmat *W, const float *X, int T, float *Y, int r0, int r1)
{
    const float *w = (const float *)W->data + (size_t)r0 * W->cols;

    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, r1 - r0, W->cols,
                1.0f, X, W->cols, w, W->cols, 0.0f, Y + r0, W->rows);
}

static size_t f32_bytes(const struct kmat *W)
{
    return (size_t)W->rows * (size_t)W->cols * sizeof(float);
}

const struct kernel_set kernel_set_portable = {
    .name = "portable",
    .usable = NULL,
    .format = {
        [RWKV_DTYPE_F32] = { f32_pack, f32_matvec_rows, f32_matmul_rows, f32_bytes },
    },
};

/* ------------------------------------------------------------------------ */
/* Worker pool                                                                */

/*
 * n_threads - 1 workers wait for jobs; kpool_run publishes a job (fn, ctx,
 * n) under a new generation number, joins in, and returns once every task
 * has finished.  Tasks are handed out through one atomic word,
 *     claim = generation << 32 | n << 16 | next index,
 * so a worker late for a finished job can never take a task: its
 * compare-and-swap fails on the generation, or finds next == n.  fn and ctx
 * are read only after a successful claim, while the caller is still
 * waiting for that task, so they are the claimed job's.
 *
 * Generation calls one product after another, a few microseconds apart: a
 * worker that went to sleep between them would cost a futex wake-up (tens
 * of microseconds on a virtual machine) every time.  So workers, and the
 * caller waiting for stragglers, spin for a while (SPIN_NS) before they
 * sleep on a condition variable (wake, done).  Each sleeper announces
 * itself (sleepers, waiting) before its last look at what it waits for,
 * and the other side looks at that announcement after changing it, all
 * sequentially consistent: one of the two always sees the other.
 */
#define SPIN_NS 50000
#define MAX_TASKS 0xFFFF

struct kpool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t lock;
    pthread_cond_t wake;        /* a new job, or quit */
    pthread_cond_t done;        /* tasks_left reached 0 */
    int quit;                   /* atomic */
    uint32_t generation;        /* atomic: the newest job */
    int sleepers;               /* atomic: workers asleep or about to be */
    /* the current job */
    void (*fn)(void *ctx, int i);
    void *ctx;
    uint64_t claim;             /* atomic, see above */
    int tasks_left;             /* atomic: tasks not finished yet */
    int waiting;                /* atomic: the caller sleeps on done */
    float *tile;                /* k_matmul's conversion buffer, kept between calls */
    size_t tile_floats;
};

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A bounded spin: spin_on pauses and returns 1 until the spin is SPIN_NS
 * old (the clock is read every 256 turns), then 0. */
struct spin {
    uint64_t start;
    unsigned turns;
};

static int spin_on(struct spin *s)
{
    if ((s->turns++ & 255) == 0) {
        uint64_t t = now_ns();

        if (!s->start) {
            s->start = t;
        } else if (t - s->start > SPIN_NS) {
            return 0;
        }
    }
    cpu_relax();
    return 1;
}

/* Takes tasks of job `generation` until none are left; returns how many. */
static int kpool_work(struct kpool *p, uint32_t generation)
{
    uint64_t cur = __atomic_load_n(&p->claim, __ATOMIC_ACQUIRE);
    int done = 0;

    for (;;) {
        unsigned next = (unsigned)(cur & 0xFFFF), n = (unsigned)(cur >> 16) & 0xFFFF;

        if ((uint32_t)(cur >> 32) != generation || next >= n) {
            break;
        }
        if (__atomic_compare_exchange_n(&p->claim, &cur, cur + 1, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            p->fn(p->ctx, (int)next);
            done++;
            cur = __atomic_load_n(&p->claim, __ATOMIC_ACQUIRE);
        }
    }
    return done;
}

/* Waits until the pool's generation differs from seen (or quit); returns it. */
static uint32_t kpool_wait_job(struct kpool *p, uint32_t seen)
{
    struct spin spin = { 0, 0 };
    uint32_t g;

    do {
        g = __atomic_load_n(&p->generation, __ATOMIC_ACQUIRE);
        if (g != seen || __atomic_load_n(&p->quit, __ATOMIC_ACQUIRE)) {
            return g;
        }
    } while (spin_on(&spin));
    /* Sleep.  The caller stores the generation, then reads sleepers; we
     * count ourselves in, then read the generation (both sequentially
     * consistent): one of us sees the other, so no wake-up is lost. */
    pthread_mutex_lock(&p->lock);
    __atomic_add_fetch(&p->sleepers, 1, __ATOMIC_SEQ_CST);
    while ((g = __atomic_load_n(&p->generation, __ATOMIC_SEQ_CST)) == seen &&
           !__atomic_load_n(&p->quit, __ATOMIC_SEQ_CST)) {
        pthread_cond_wait(&p->wake, &p->lock);
    }
    __atomic_sub_fetch(&p->sleepers, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&p->lock);
    return g;
}

static void *kpool_main(void *arg)
{
    struct kpool *p = arg;
    uint32_t seen = 0;

    for (;;) {
        seen = kpool_wait_job(p, seen);
        if (__atomic_load_n(&p->quit, __ATOMIC_ACQUIRE)) {
            break;
        }
        int did = kpool_work(p, seen);

        if (did && __atomic_sub_fetch(&p->tasks_left, did, __ATOMIC_SEQ_CST) == 0 &&
            __atomic_load_n(&p->waiting, __ATOMIC_SEQ_CST)) {
            pthread_mutex_lock(&p->lock);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->lock);
        }
    }
    return NULL;
}

int rwkv_default_threads(void)
{
    long n;
#ifdef CPU_COUNT
    cpu_set_t set;

    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) {
        return CPU_COUNT(&set);
    }
#endif
    n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

struct kpool *kpool_new(int n_threads)
{
    struct kpool *p;

    if (n_threads <= 0) {
        n_threads = rwkv_default_threads();
    }
    if (n_threads > 256) {
        n_threads = 256;
    }
    p = calloc(1, sizeof *p);
    if (!p) {
        return NULL;
    }
    p->n_threads = 1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    if (n_threads > 1) {
        sigset_t all, old;

        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            kpool_free(p);
            return NULL;
        }
        /* Workers block every signal (they inherit this mask), so that the
         * program's handlers always run on its own threads. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        for (int i = 0; i < n_threads - 1; i++) {
            if (pthread_create(&p->threads[i], NULL, kpool_main, p) != 0) {
                break;          /* run with the threads we got */
            }
            p->n_threads++;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    return p;
}

void kpool_free(struct kpool *p)
{
    if (!p) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    __atomic_store_n(&p->quit, 1, __ATOMIC_SEQ_CST);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->n_threads - 1; i++) {
        pthread_join(p->threads[i], NULL);
    }
    free(p->threads);
    free(p->tile);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p);
}

int kpool_threads(const struct kpool *p)
{
    return p ? p->n_threads : 1;
}

/* Runs fn(ctx, i) for i in [0, n), 1 < n <= MAX_TASKS, on the pool. */
static void kpool_run_some(struct kpool *p, void (*fn)(void *ctx, int i), void *ctx, int n)
{
    uint32_t generation = p->generation + 1;
    struct spin spin = { 0, 0 };

    p->fn = fn;
    p->ctx = ctx;
    __atomic_store_n(&p->tasks_left, n, __ATOMIC_RELAXED);
    __atomic_store_n(&p->claim, (uint64_t)generation << 32 | (uint64_t)n << 16,
                     __ATOMIC_RELEASE);
    __atomic_store_n(&p->generation, generation, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&p->sleepers, __ATOMIC_SEQ_CST) > 0) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
    }

    int did = kpool_work(p, generation);
    int left = __atomic_sub_fetch(&p->tasks_left, did, __ATOMIC_ACQ_REL);

    /* Stragglers: spin, then sleep until the last one signals (a worker may
     * have been descheduled in the middle of its task). */
    while (left > 0 && spin_on(&spin)) {
        left = __atomic_load_n(&p->tasks_left, __ATOMIC_ACQUIRE);
    }
    if (left > 0) {
        pthread_mutex_lock(&p->lock);
        __atomic_store_n(&p->waiting, 1, __ATOMIC_SEQ_CST);
        while (__atomic_load_n(&p->tasks_left, __ATOMIC_SEQ_CST) > 0) {
            pthread_cond_wait(&p->done, &p->lock);
        }
        __atomic_store_n(&p->waiting, 0, __ATOMIC_SEQ_CST);
        pthread_mutex_unlock(&p->lock);
    }
}

/* A job of more than MAX_TASKS tasks runs in rounds. */
struct kpool_round {
    void (*fn)(void *ctx, int i);
    void *ctx;
    int base;
};

static void round_task(void *ctx, int i)
{
    const struct kpool_round *r = ctx;

    r->fn(r->ctx, r->base + i);
}

void kpool_run(struct kpool *p, void (*fn)(void *ctx, int i), void *ctx, int n)
{
    if (n <= 0) {
        return;
    }
    if (!p || p->n_threads == 1 || n == 1) {
        for (int i = 0; i < n; i++) {
            fn(ctx, i);
        }
        return;
    }
    if (n > MAX_TASKS) {
        for (int base = 0; base < n; base += MAX_TASKS) {
            struct kpool_round r = { fn, ctx, base };

            kpool_run(p, round_task, &r, n - base < MAX_TASKS ? n - base : MAX_TASKS);
        }
        return;
    }
    kpool_run_some(p, fn, ctx, n);
}

/* ------------------------------------------------------------------------ */
/* Matrix products                                                            */

/* Below this many weights a product runs on the calling thread. */
#define PARALLEL_MIN_WEIGHTS (64 * 1024)

struct rows_job {
    const struct kernel_format *fmt;
    const struct kmat *W;
    const float *x;
    float *y;
    int T;
    int n_tasks;
};

static void row_range(const struct rows_job *job, int i, int *r0, int *r1)
{
    int rows = job->W->rows;

    *r0 = (int)((int64_t)rows * i / job->n_tasks);
    *r1 = (int)((int64_t)rows * (i + 1) / job->n_tasks);
}

static void matvec_task(void *ctx, int i)
{
    const struct rows_job *job = ctx;
    int r0, r1;

    row_range(job, i, &r0, &r1);
    if (r1 > r0) {
        job->fmt->matvec_rows(job->W, job->x, job->y, r0, r1);
    }
}

/* Task count for a product: one per thread, a few more for balance. */
static int split_tasks(struct kpool *pool, const struct kmat *W)
{
    int threads = kpool_threads(pool);
    size_t weights = (size_t)W->rows * (size_t)W->cols;
    int n;

    if (threads <= 1 || weights < PARALLEL_MIN_WEIGHTS) {
        return 1;
    }
    n = threads * 4;
    if (n > W->rows) {
        n = W->rows;
    }
    return n;
}

void k_matvec(struct kpool *pool, const struct kmat *W, const float *x, float *y)
{
    struct rows_job job = { kernels_format(W->type), W, x, y, 1, 0 };

    assert(job.fmt->matvec_rows);
    job.n_tasks = split_tasks(pool, W);
    kpool_run(pool, matvec_task, &job, job.n_tasks);
}

static void matmul_task(void *ctx, int i)
{
    const struct rows_job *job = ctx;
    int r0, r1;

    row_range(job, i, &r0, &r1);
    if (r1 <= r0) {
        return;
    }
    if (job->fmt->matmul_rows) {
        job->fmt->matmul_rows(job->W, job->x, job->T, job->y, r0, r1);
        return;
    }
    /* Blocks of rows stay in cache while every token passes over them. */
    for (int t = 0; t < job->T; t++) {
        job->fmt->matvec_rows(job->W, job->x + (size_t)t * job->W->cols,
                              job->y + (size_t)t * job->W->rows, r0, r1);
    }
}

/* Tokens from which converting weights to float32 for sgemm pays off. */
#define DEQUANT_MIN_T 4
/* Float32 tile of converted rows: about 2 MB. */
#define DEQUANT_TILE_FLOATS (512 * 1024)

struct dequant_job {
    const struct kernel_format *fmt;
    const struct kmat *W;
    const float *X;
    float *Y;
    int T, r0, r1, n_tasks;
    float *tile;
};

/* One task's share of a row block: convert its rows, multiply them. */
static void dequant_task(void *ctx, int i)
{
    const struct dequant_job *job = ctx;
    const struct kmat *W = job->W;
    int n = job->r1 - job->r0;
    int a = job->r0 + (int)((int64_t)n * i / job->n_tasks);
    int b = job->r0 + (int)((int64_t)n * (i + 1) / job->n_tasks);
    float *tile = job->tile + (size_t)(a - job->r0) * W->cols;

    if (b > a) {
        job->fmt->rows_to_f32(W, a, b, tile);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, job->T, b - a, W->cols, 1.0f,
                    job->X, W->cols, tile, W->cols, 0.0f, job->Y + a, W->rows);
    }
}

/* Y = X W^T for formats without a matmul kernel: blocks of rows are
 * converted to float32 and multiplied with sgemm, both on the pool.
 * Returns -1 when the tile cannot be allocated. */
static int matmul_by_conversion(struct kpool *pool, const struct kernel_format *fmt,
                                const struct kmat *W, const float *X, int T, float *Y)
{
    int block = DEQUANT_TILE_FLOATS / W->cols;
    size_t need;
    float *tile;

    if (block < 16 * kpool_threads(pool)) {
        block = 16 * kpool_threads(pool);
    }
    if (block > W->rows) {
        block = W->rows;
    }
    /* The pool keeps the tile: a fresh 2 MB allocation per product would
     * cost page faults every time. */
    need = (size_t)block * (size_t)W->cols;
    if (pool && pool->tile_floats >= need) {
        tile = pool->tile;
    } else {
        tile = malloc(need * sizeof *tile);
        if (!tile) {
            return -1;
        }
        if (pool) {
            free(pool->tile);
            pool->tile = tile;
            pool->tile_floats = need;
        }
    }
    for (int r0 = 0; r0 < W->rows; r0 += block) {
        int r1 = r0 + block < W->rows ? r0 + block : W->rows;
        struct dequant_job job = { fmt, W, X, Y, T, r0, r1, kpool_threads(pool), tile };

        if (job.n_tasks > r1 - r0) {
            job.n_tasks = r1 - r0;
        }
        kpool_run(pool, dequant_task, &job, job.n_tasks);
    }
    if (!pool) {
        free(tile);
    }
    return 0;
}

void k_matmul(struct kpool *pool, const struct kmat *W, const float *X, int T, float *Y)
{
    struct rows_job job = { kernels_format(W->type), W, X, Y, T, 0 };

    if (T <= 0) {
        return;
    }
    if (T == 1) {
        k_matvec(pool, W, X, Y);
        return;
    }
    if (job.fmt->matmul_rows) {
        /* Matrix kernels (sgemm) want big blocks: one per thread. */
        job.n_tasks = split_tasks(pool, W) > 1 ? kpool_threads(pool) : 1;
        kpool_run(pool, matmul_task, &job, job.n_tasks);
        return;
    }
    if (!job.fmt->matmul_rows && job.fmt->rows_to_f32 && T >= DEQUANT_MIN_T &&
        matmul_by_conversion(pool, job.fmt, W, X, T, Y) == 0) {
        return;
    }
    job.n_tasks = split_tasks(pool, W);
    kpool_run(pool, matmul_task, &job, job.n_tasks);
}

/* Pieces a batch of matrix-vector products may be cut into. */
#define BATCH_TASKS 256

struct batch_job {
    const struct k_product *p;
    int n_tasks;
    struct {
        unsigned short product;
        int r0, r1;
    } task[BATCH_TASKS];
};

static void batch_task(void *ctx, int i)
{
    const struct batch_job *job = ctx;
    const struct k_product *p = &job->p[job->task[i].product];

    kernels_format(p->W->type)->matvec_rows(p->W, p->X, p->Y, job->task[i].r0, job->task[i].r1);
}

void k_matmul_batch(struct kpool *pool, const struct k_product *p, int n, int T)
{
    struct batch_job job;
    size_t total = 0, grain;
    int threads = kpool_threads(pool);

    if (T != 1 || n <= 1 || n > BATCH_TASKS / 8 || threads <= 1) {
        for (int i = 0; i < n; i++) {
            k_matmul(pool, p[i].W, p[i].X, T, p[i].Y);
        }
        return;
    }
    /* Cut every matrix into pieces of about `grain` bytes: several per
     * thread for balance, and never fewer than one per matrix. */
    for (int i = 0; i < n; i++) {
        total += kmat_bytes(p[i].W);
    }
    grain = total / ((size_t)threads * 4) + 1;
    if (grain < 16384) {
        grain = 16384;
    }
    job.p = p;
    job.n_tasks = 0;
    for (int i = 0; i < n; i++) {
        int rows = p[i].W->rows;
        size_t pieces = kmat_bytes(p[i].W) / grain + 1;

        if (pieces > (size_t)rows) {
            pieces = (size_t)rows;
        }
        if (pieces > (size_t)(BATCH_TASKS - job.n_tasks - (n - 1 - i))) {
            pieces = (size_t)(BATCH_TASKS - job.n_tasks - (n - 1 - i));
        }
        for (size_t j = 0; j < pieces; j++) {
            job.task[job.n_tasks].product = (unsigned short)i;
            job.task[job.n_tasks].r0 = (int)((int64_t)rows * (int64_t)j / (int64_t)pieces);
            job.task[job.n_tasks].r1 = (int)((int64_t)rows * (int64_t)(j + 1) / (int64_t)pieces);
            job.n_tasks++;
        }
    }
    kpool_run(pool, batch_task, &job, job.n_tasks);
}

/* ------------------------------------------------------------------------ */
/* Normalisations                                                             */

/* y = (x - mean) / sqrt(var + eps) * w + b over n elements (torch
 * layer_norm: biased variance). */
K_CLONES
void k_layernorm(const float *x, const float *w, const float *b, int n, float eps, float *y)
{
    double mean = 0, var = 0;

    for (int i = 0; i < n; i++) {
        mean += x[i];
    }
    mean /= n;
    for (int i = 0; i < n; i++) {
        double d = x[i] - mean;

        var += d * d;
    }
    var /= n;
    float inv = (float)(1.0 / sqrt(var + (double)eps));
    float m = (float)mean;

    for (int i = 0; i < n; i++) {
        y[i] = (x[i] - m) * inv * w[i] + b[i];
    }
}

/* LayerNorm of each group of n/n_groups elements, then the per-channel
 * affine w, b over all n (torch group_norm on one sample). */
K_CLONES
void k_groupnorm(const float *x, const float *w, const float *b, int n, int n_groups,
                 float eps, float *y)
{
    int g_size = n / n_groups;

    assert(n_groups > 0 && n % n_groups == 0);
    for (int g = 0; g < n_groups; g++) {
        k_layernorm(x + g * g_size, w + g * g_size, b + g * g_size, g_size, eps,
                    y + g * g_size);
    }
}
