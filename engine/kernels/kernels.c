/*
 * kernels.c - kernel dispatch and the portable kernels.
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
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kernels/blas.h"
#include "engine/kernels/kernels.h"
#include "engine/kernels/kernels_impl.h"

/* ------------------------------------------------------------------------ */
/* Dispatch                                                                  */

/* Kernel sets in order of preference; the portable set must come last. */
static const struct kernel_set *const candidates[] = {
#ifdef __x86_64__
    &kernel_set_avx512vnni,
    &kernel_set_avx512,
    &kernel_set_avx2,
#endif
    &kernel_set_quant,
    &kernel_set_portable,
};

static struct kernel_format active[KERNEL_N_FORMATS];
static const char *active_name = "portable";
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
/* The candidate kernels_choose starts from (kernels_select), and whether
 * it has run. */
static size_t first_candidate;
static int chosen;

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

/* 1 if f's matvec_multi_rows gives, for five vectors, exactly what its
 * matvec_rows gives for each (see kernels_impl.h). */
static int multi_self_check(const struct kernel_format *f, enum rwkv_dtype t)
{
    enum { ROWS = 23, COLS = 333, T = 5 };
    static float w[ROWS * COLS], x[T * COLS], y[T * ROWS], y_ref[T * ROWS];
    uint32_t r = 88675123u;
    struct kmat m;
    int same;

    for (int i = 0; i < ROWS * COLS; i++) {
        r ^= r << 13, r ^= r >> 17, r ^= r << 5;
        w[i] = (float)((int)(r % 2001) - 1000) / 1000.0f;
    }
    for (int i = 0; i < T * COLS; i++) {
        r ^= r << 13, r ^= r >> 17, r ^= r << 5;
        x[i] = (float)((int)(r % 2001) - 1000) / 1000.0f;
    }
    memset(&m, 0, sizeof m);
    m.type = t;
    m.rows = ROWS;
    m.cols = COLS;
    if (f->pack(&m, w) < 0) {
        return 0;
    }
    for (int i = 0; i < T; i++) {
        f->matvec_rows(&m, x + i * COLS, y_ref + i * ROWS, 0, ROWS);
    }
    f->matvec_multi_rows(&m, x, T, y, 0, ROWS);
    same = !memcmp(y, y_ref, sizeof y);
    free(m.owned);
    free(m.owned_scales);
    return same;
}

/* Fills active[] from the first usable set that provides each format and
 * passes its self-check. */
static void kernels_choose(void)
{
    size_t n = sizeof candidates / sizeof candidates[0];
    int best_set_used = 0;

    /* Every product is split over the model's own pool (its --threads), so
     * OpenBLAS must not start threads of its own: they would oversubscribe
     * the cores and spin between calls (and each would want a work buffer
     * of its own: blas.h).  Set before the self-checks call sgemm. */
    openblas_set_num_threads(1);
    chosen = 1;
    for (int t = 0; t < KERNEL_N_FORMATS; t++) {
        const struct kernel_format *ref = NULL;

        for (size_t i = n; i-- > 0;) {
            if (candidates[i]->format[t].matvec_rows) {
                ref = &candidates[i]->format[t];
                break;
            }
        }
        for (size_t i = first_candidate; i < n; i++) {
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
    for (int t = 0; t < KERNEL_N_FORMATS; t++) {
        if (active[t].matvec_multi_rows && active[t].pack &&
            !multi_self_check(&active[t], (enum rwkv_dtype)t)) {
            active[t].matvec_multi_rows = NULL;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const struct kernel_set *s = candidates[i];
        struct kernel_format f32 = active[RWKV_DTYPE_F32];

        if (!s->f32_matmul_rows || !active[RWKV_DTYPE_BF16].matmul_rows ||
            active[RWKV_DTYPE_BF16].matmul_rows != s->format[RWKV_DTYPE_BF16].matmul_rows) {
            continue;
        }
        f32.matmul_rows = s->f32_matmul_rows;
        f32.seq_bytes = active[RWKV_DTYPE_BF16].seq_bytes;
        f32.seq_fill = active[RWKV_DTYPE_BF16].seq_fill;
        f32.seq_rows = active[RWKV_DTYPE_BF16].seq_rows;
        if (kernels_self_check(&f32, &kernel_set_portable.format[RWKV_DTYPE_F32],
                               RWKV_DTYPE_F32)) {
            active[RWKV_DTYPE_F32] = f32;
        }
    }
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

int kernels_select(const char *name)
{
    size_t n = sizeof candidates / sizeof candidates[0];

    for (size_t i = 0; i < n; i++) {
        const struct kernel_set *s = candidates[i];

        if (strcmp(s->name, name) != 0) {
            continue;
        }
        if (s->usable && !s->usable()) {
            return -2;
        }
        if (chosen) {
            /* the set in use, not the one the search started from: a CPU
             * without the first candidates' instructions chose a later one */
            return strcmp(name, active_name) == 0 ? 0 : -3;
        }
        first_candidate = i;
        return 0;
    }
    return -1;
}

const struct kernel_format *kernels_format(enum rwkv_dtype t)
{
    kernels_init();
    assert(t >= 0 && t < KERNEL_N_FORMATS);
    return &active[t];
}

const char *kernels_name(void)
{
    kernels_init();
    return active_name;
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

/* Sequence mode in two steps (kernel_format.seq_fill, seq_rows): the
 * threads share the tokens' preparation, then the rows. */
struct seq_job {
    const struct kernel_format *fmt;
    const struct kmat *W;
    const float *X;
    float *Y;
    void *buf;
    int T, n_tasks;
};

/* Tokens per fill task are a multiple of this: tasks never share a cache
 * line of the buffer. */
#define SEQ_FILL_GRAIN 16

static void seq_fill_task(void *ctx, int i)
{
    const struct seq_job *job = ctx;
    int groups = (job->T + SEQ_FILL_GRAIN - 1) / SEQ_FILL_GRAIN;
    int t0 = (int)((int64_t)groups * i / job->n_tasks) * SEQ_FILL_GRAIN;
    int t1 = (int)((int64_t)groups * (i + 1) / job->n_tasks) * SEQ_FILL_GRAIN;

    if (t1 > job->T) {
        t1 = job->T;
    }
    if (t1 > t0) {
        job->fmt->seq_fill(job->X, job->W->cols, job->T, t0, t1, job->buf);
    }
}

static void seq_rows_task(void *ctx, int i)
{
    const struct seq_job *job = ctx;
    int rows = job->W->rows;
    int r0 = (int)((int64_t)rows * i / job->n_tasks);
    int r1 = (int)((int64_t)rows * (i + 1) / job->n_tasks);

    if (r1 > r0) {
        job->fmt->seq_rows(job->W, job->X, job->buf, job->T, job->Y, r0, r1);
    }
}

/* Y = X W^T through seq_fill and seq_rows on the pool; -1 when the buffer
 * cannot be had. */
static int matmul_in_two_steps(struct kpool *pool, const struct kernel_format *fmt,
                               const struct kmat *W, const float *X, int T, float *Y)
{
    size_t bytes = fmt->seq_bytes(W->cols, T) + 64;
    char *raw = (char *)kpool_scratch(pool, (bytes + sizeof(float) - 1) / sizeof(float));
    struct seq_job job = { fmt, W, X, Y, NULL, T, kpool_threads(pool) };

    if (!raw) {
        return -1;
    }
    job.buf = raw + ((64 - (uintptr_t)raw % 64) % 64);
    kpool_run(pool, seq_fill_task, &job, job.n_tasks);
    kpool_run(pool, seq_rows_task, &job, job.n_tasks);
    return 0;
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
        blas_sgemm_nt(job->T, b - a, W->cols, job->X, tile, job->Y + a, W->rows);
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
    tile = pool ? kpool_scratch(pool, need) : malloc(need * sizeof *tile);
    if (!tile) {
        return -1;
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
    if (job.fmt->seq_rows && pool && split_tasks(pool, W) > 1 &&
        matmul_in_two_steps(pool, job.fmt, W, X, T, Y) == 0) {
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
/* Products one batch job takes (more go to the pool in several jobs). */
#define BATCH_PRODUCTS (BATCH_TASKS / 8)
/* Weight bytes a task of k_matvec_many multiplies by every vector before
 * it moves on: the vectors after the first (or, with a multi-vector
 * kernel, after its first group) find them in the L2 cache, so memory is
 * read once for all of them. */
#define MANY_BLOCK_BYTES (64 * 1024)

/* Vectors one multi-vector kernel call takes for W (0: it has none).
 * Every format's takes its full group: the Q8 kernels once took fewer for
 * wide rows, when their float32 activations (4 bytes a column per vector)
 * no longer stayed in the L1 cache beside the weights; their int8
 * activations take 1-3 bytes, and 4 streams of the 0.1B and 0.4B models
 * ran 1.15-1.37x faster with the full group (2 threads, q8). */
static int many_group(const struct kernel_format *fmt)
{
    return fmt->matvec_multi_rows ? fmt->multi_width : 0;
}

struct batch_job {
    const struct k_product *p;
    int T;                      /* vectors per product */
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
    const struct kmat *W = p->W;
    const struct kernel_format *fmt = kernels_format(W->type);
    int r0 = job->task[i].r0, r1 = job->task[i].r1;
    size_t bytes = kmat_bytes(W);
    int block, group;

    if (job->T == 1) {
        fmt->matvec_rows(W, p->X, p->Y, r0, r1);
        return;
    }
    group = many_group(fmt);
    if (group && job->T <= group) {
        fmt->matvec_multi_rows(W, p->X, job->T, p->Y, r0, r1);
        return;
    }
    block = (int)((size_t)MANY_BLOCK_BYTES * (size_t)W->rows / (bytes ? bytes : 1));
    if (block < 1) {
        block = 1;
    }
    for (int b0 = r0; b0 < r1; b0 += block) {
        int b1 = b0 + block < r1 ? b0 + block : r1;

        for (int t = 0; group && t < job->T; t += group) {
            fmt->matvec_multi_rows(W, p->X + (size_t)t * W->cols,
                                   job->T - t < group ? job->T - t : group,
                                   p->Y + (size_t)t * W->rows, b0, b1);
        }
        if (group) {
            continue;
        }
        for (int t = 0; t < job->T; t++) {
            fmt->matvec_rows(W, p->X + (size_t)t * W->cols, p->Y + (size_t)t * W->rows, b0, b1);
        }
    }
}

/* One pool job for n <= BATCH_PRODUCTS products of T vectors each. */
static void batch_run(struct kpool *pool, const struct k_product *p, int n, int T)
{
    struct batch_job job;
    size_t total = 0, grain;
    int threads = kpool_threads(pool);

    assert(n >= 1 && n <= BATCH_PRODUCTS);
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
    job.T = T;
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

void k_matmul_batch(struct kpool *pool, const struct k_product *p, int n, int T)
{
    if (T != 1 || n <= 1 || n > BATCH_PRODUCTS || kpool_threads(pool) <= 1) {
        for (int i = 0; i < n; i++) {
            k_matmul(pool, p[i].W, p[i].X, T, p[i].Y);
        }
        return;
    }
    batch_run(pool, p, n, 1);
}

void k_matvec_many(struct kpool *pool, const struct k_product *p, int n, int T)
{
    if (T <= 0) {
        return;
    }
    for (int i = 0; i < n; i += BATCH_PRODUCTS) {
        batch_run(pool, p + i, n - i < BATCH_PRODUCTS ? n - i : BATCH_PRODUCTS, T);
    }
}

/* ------------------------------------------------------------------------ */
/* Normalisations                                                             */

/* y = (x - mean) / sqrt(var + eps) * w + b over n elements (torch
 * layer_norm: biased variance).  The sums are in double, in eight lanes
 * (lane l takes elements l, l + 8, ...; added in a fixed order): one chain
 * of dependent additions was the norm's whole cost. */
K_CLONES
void k_layernorm(const float *x, const float *w, const float *b, int n, float eps, float *y)
{
    double sum[8] = { 0 }, sq[8] = { 0 }, mean, var;
    int i = 0;

    for (; i + 8 <= n; i += 8) {
        for (int l = 0; l < 8; l++) {
            sum[l] += x[i + l];
        }
    }
    for (int l = 0; i + l < n; l++) {
        sum[l] += x[i + l];
    }
    mean = (((sum[0] + sum[1]) + (sum[2] + sum[3])) + ((sum[4] + sum[5]) + (sum[6] + sum[7]))) / n;
    for (i = 0; i + 8 <= n; i += 8) {
        for (int l = 0; l < 8; l++) {
            double d = x[i + l] - mean;

            sq[l] += d * d;
        }
    }
    for (int l = 0; i + l < n; l++) {
        double d = x[i + l] - mean;

        sq[l] += d * d;
    }
    var = (((sq[0] + sq[1]) + (sq[2] + sq[3])) + ((sq[4] + sq[5]) + (sq[6] + sq[7]))) / n;
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

/* ------------------------------------------------------------------------ */
/* Matrices                                                                   */

void kmat_free(struct kmat *m)
{
    if (!m) {
        return;
    }
    free(m->owned);
    free(m->owned_scales);
    memset(m, 0, sizeof *m);
}

size_t kmat_bytes(const struct kmat *m)
{
    const struct kernel_format *fmt = kernels_format(m->type);

    if (fmt->bytes) {
        return fmt->bytes(m);
    }
    return (size_t)m->rows * (size_t)m->cols * sizeof(float);
}
