/*
 * kmat.c - kernel matrices: a checkpoint tensor turned into the weight
 * format the kernels read (in place from the mapped file when it already
 * is that format, else converted and packed at load).
 *
 * Conversion works on blocks of rows: each block is read from the tensor
 * into a small float32 buffer (transposed on the way for LoRA factors) and
 * packed with the active kernel set's pack() into its place in the result.
 * Every format packs rows independently (per-row scales, per-row groups,
 * element-wise rounding), so the bytes equal those of packing the whole
 * matrix at once, while memory stays bounded and blocks spread over the
 * model's worker pool.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kernels/kmat.h"
#include "engine/kernels/kernels_impl.h"
#include "engine/kernels/quant.h"

/* Largest block, and about how many float32 values one block holds. */
#define BLOCK_ROWS_MAX 256
#define BLOCK_FLOATS 65536

/* The kernel format of a stored tensor's float type. */
static enum rwkv_dtype stored_format(enum ckpt_dtype d)
{
    switch (d) {
    case CKPT_F16:
        return RWKV_DTYPE_F16;
    case CKPT_BF16:
        return RWKV_DTYPE_BF16;
    default:
        return RWKV_DTYPE_F32;
    }
}

int kmat_plan(struct kmat *m, const struct ckpt_tensor *t, int transpose, enum rwkv_dtype dtype,
              char *err, size_t errlen)
{
    enum rwkv_dtype want;

    memset(m, 0, sizeof *m);
    if (t->ndim != 2 || t->shape[0] <= 0 || t->shape[1] <= 0 ||
        t->shape[0] > INT32_MAX || t->shape[1] > INT32_MAX) {
        snprintf(err, errlen, "tensor %s: expected a 2-D matrix", t->name);
        return -1;
    }
    want = dtype == RWKV_DTYPE_AUTO ? stored_format(t->dtype) : dtype;
    if ((int)want < 0 || want >= KERNEL_N_FORMATS || !kernels_format(want)->pack) {
        want = RWKV_DTYPE_F32;
    }
    m->type = want;
    m->rows = (int)(transpose ? t->shape[1] : t->shape[0]);
    m->cols = (int)(transpose ? t->shape[0] : t->shape[1]);

    /* Half-precision weights already in the wanted format (a bf16 or fp16
     * file at --dtype auto): read in place from the mapped file. */
    if ((want == RWKV_DTYPE_BF16 || want == RWKV_DTYPE_F16) && want == stored_format(t->dtype) &&
        !transpose && ((uintptr_t)t->data % 2) == 0) {
        m->data = t->data;
        return 1;
    }
    /* Float32 already in kernel layout: use the mapped data in place. */
    if (want == RWKV_DTYPE_F32 && t->dtype == CKPT_F32 && !transpose &&
        ((uintptr_t)t->data % sizeof(float)) == 0) {
        m->data = t->data;
        return 1;
    }
    return 0;
}

struct convert {
    struct kmat *m;
    const struct ckpt_tensor *t;
    int transpose;
    const struct kernel_format *fmt;
    int block_rows, n_blocks, n_tasks;
    size_t row_bytes;
    unsigned char *data;
    float *scales;
    int *failed;                /* per task */
};

/* Rows [r0, r1) of the [rows][cols] result as float32 into out. */
static void read_rows(const struct convert *cv, int r0, int r1, float *out)
{
    const struct ckpt_tensor *t = cv->t;
    size_t esize = ckpt_dtype_size(t->dtype);
    int rows = cv->m->rows, cols = cv->m->cols, n = r1 - r0;
    const unsigned char *src = t->data;

    if (!cv->transpose) {
        ckpt_to_f32(t->dtype, src + (size_t)r0 * cols * esize, out, (size_t)n * cols);
        return;
    }
    /* stored [cols][rows]: row i of the tensor holds column i of the result */
    for (int i = 0; i < cols; i++) {
        float seg[BLOCK_ROWS_MAX];

        ckpt_to_f32(t->dtype, src + ((size_t)i * rows + r0) * esize, seg, (size_t)n);
        for (int j = 0; j < n; j++) {
            out[(size_t)j * cols + i] = seg[j];
        }
    }
}

/* One pool task: blocks task, task + n_tasks, ... of the matrix. */
static void convert_task(void *ctx, int task)
{
    struct convert *cv = ctx;
    struct kmat *m = cv->m;
    float *buf = NULL;

    if (m->type != RWKV_DTYPE_F32) {
        buf = malloc((size_t)cv->block_rows * (size_t)m->cols * sizeof *buf);
        if (!buf) {
            cv->failed[task] = 1;
            return;
        }
    }
    for (int b = task; b < cv->n_blocks; b += cv->n_tasks) {
        int r0 = b * cv->block_rows;
        int r1 = r0 + cv->block_rows < m->rows ? r0 + cv->block_rows : m->rows;
        struct kmat sub;

        if (!buf) {
            /* float32 result: the block is read straight into place */
            read_rows(cv, r0, r1, (float *)(cv->data + (size_t)r0 * cv->row_bytes));
            continue;
        }
        read_rows(cv, r0, r1, buf);
        memset(&sub, 0, sizeof sub);
        sub.type = m->type;
        sub.rows = r1 - r0;
        sub.cols = m->cols;
        if (cv->fmt->pack(&sub, buf) != 0) {
            cv->failed[task] = 1;
            break;
        }
        memcpy(cv->data + (size_t)r0 * cv->row_bytes, sub.data, (size_t)sub.rows * cv->row_bytes);
        if (cv->scales) {
            memcpy(cv->scales + r0, sub.scales, (size_t)sub.rows * sizeof *cv->scales);
        }
        free(sub.owned);
        free(sub.owned_scales);
    }
    free(buf);
}

int kmat_convert(struct kmat *m, const struct ckpt_tensor *t, int transpose,
                 struct kpool *pool, char *err, size_t errlen)
{
    struct convert cv;
    int failed[64] = { 0 };
    size_t n_bytes;

    memset(&cv, 0, sizeof cv);
    cv.m = m;
    cv.t = t;
    cv.transpose = transpose;
    cv.fmt = kernels_format(m->type);
    cv.row_bytes = quant_row_bytes(m->type, m->cols);
    cv.block_rows = BLOCK_FLOATS / m->cols;
    cv.block_rows = cv.block_rows < 1 ? 1 : cv.block_rows > BLOCK_ROWS_MAX ? BLOCK_ROWS_MAX
                                                                           : cv.block_rows;
    cv.n_blocks = (m->rows + cv.block_rows - 1) / cv.block_rows;
    cv.n_tasks = pool ? kpool_threads(pool) : 1;
    cv.n_tasks = cv.n_tasks > cv.n_blocks ? cv.n_blocks : cv.n_tasks;
    cv.n_tasks = cv.n_tasks > 64 ? 64 : cv.n_tasks < 1 ? 1 : cv.n_tasks;
    cv.failed = failed;
    n_bytes = (size_t)m->rows * cv.row_bytes;
    cv.data = malloc(n_bytes);
    if (quant_row_scales(m->type)) {
        cv.scales = malloc((size_t)m->rows * sizeof *cv.scales);
    }
    if (!cv.data || (quant_row_scales(m->type) && !cv.scales)) {
        free(cv.data);
        free(cv.scales);
        snprintf(err, errlen, "tensor %s: out of memory (%zu bytes)", t->name, n_bytes);
        return -1;
    }
    kpool_run(pool, convert_task, &cv, cv.n_tasks);
    for (int i = 0; i < cv.n_tasks; i++) {
        if (failed[i]) {
            free(cv.data);
            free(cv.scales);
            snprintf(err, errlen, "tensor %s: out of memory converting to %s", t->name,
                     rwkv_dtype_name(m->type));
            return -1;
        }
    }
    m->data = cv.data;
    m->owned = cv.data;
    m->scales = cv.scales;
    m->owned_scales = cv.scales;
    return 0;
}

uint64_t kmat_pack_signature(enum rwkv_dtype t)
{
    enum { ROWS = 5, COLS = 77 };
    float w[ROWS * COLS];
    uint32_t r = 2463534242u;
    uint64_t h = 0xcbf29ce484222325ULL;
    struct kmat m;
    size_t n;

    for (int i = 0; i < ROWS * COLS; i++) {
        r ^= r << 13, r ^= r >> 17, r ^= r << 5;
        w[i] = (float)((int)(r % 20001) - 10000) / (i % 7 == 0 ? 3.0f : 7000.0f);
    }
    memset(&m, 0, sizeof m);
    m.type = t;
    m.rows = ROWS;
    m.cols = COLS;
    if (t == RWKV_DTYPE_F32 || (int)t < 0 || t >= KERNEL_N_FORMATS || !kernels_format(t)->pack ||
        kernels_format(t)->pack(&m, w) != 0) {
        return 0;
    }
    n = (size_t)ROWS * quant_row_bytes(t, COLS);
    for (size_t i = 0; i < n; i++) {
        h = (h ^ ((const unsigned char *)m.data)[i]) * 0x100000001b3ULL;
    }
    for (int i = 0; m.scales && i < ROWS; i++) {
        uint32_t u;

        memcpy(&u, &m.scales[i], sizeof u);
        h = (h ^ u) * 0x100000001b3ULL;
    }
    free(m.owned);
    free(m.owned_scales);
    return h;
}

int kmat_from_tensor(struct kmat *m, const struct ckpt_tensor *t, int transpose,
                     enum rwkv_dtype dtype, char *err, size_t errlen)
{
    int rc = kmat_plan(m, t, transpose, dtype, err, errlen);

    if (rc != 0) {
        return rc < 0 ? -1 : 0;
    }
    if (kmat_convert(m, t, transpose, NULL, err, errlen) != 0) {
        memset(m, 0, sizeof *m);
        return -1;
    }
    return 0;
}
