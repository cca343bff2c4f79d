/*
 * kmat.c - kernel matrices: a checkpoint tensor turned into the weight
 * format the kernels read (in place from the mapped file when it already
 * is that format, else converted and packed at load).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kernels.h"
#include "engine/kernels_impl.h"

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

int kmat_from_tensor(struct kmat *m, const struct ckpt_tensor *t, int transpose,
                     enum rwkv_dtype dtype, char *err, size_t errlen)
{
    enum rwkv_dtype want;
    const struct kernel_format *fmt;
    size_t n;
    float *tmp;
    int rows, cols;

    memset(m, 0, sizeof *m);
    if (t->ndim != 2 || t->shape[0] <= 0 || t->shape[1] <= 0 ||
        t->shape[0] > INT32_MAX || t->shape[1] > INT32_MAX) {
        snprintf(err, errlen, "tensor %s: expected a 2-D matrix", t->name);
        return -1;
    }
    rows = (int)(transpose ? t->shape[1] : t->shape[0]);
    cols = (int)(transpose ? t->shape[0] : t->shape[1]);
    want = dtype == RWKV_DTYPE_AUTO ? stored_format(t->dtype) : dtype;
    if ((int)want < 0 || want >= KERNEL_N_FORMATS || !kernels_format(want)->pack) {
        want = RWKV_DTYPE_F32;
    }
    fmt = kernels_format(want);
    m->type = want;
    m->rows = rows;
    m->cols = cols;

    /* Half-precision weights already in the wanted format (a bf16 or fp16
     * file at --dtype auto): read in place from the mapped file. */
    if ((want == RWKV_DTYPE_BF16 || want == RWKV_DTYPE_F16) && want == stored_format(t->dtype) &&
        !transpose && ((uintptr_t)t->data % 2) == 0) {
        m->data = t->data;
        return 0;
    }

    /* Float32 already in kernel layout: use the mapped data in place. */
    if (want == RWKV_DTYPE_F32 && t->dtype == CKPT_F32 && !transpose &&
        ((uintptr_t)t->data % sizeof(float)) == 0) {
        m->data = t->data;
        return 0;
    }

    n = (size_t)rows * (size_t)cols;
    tmp = malloc(n * sizeof *tmp);
    if (!tmp) {
        snprintf(err, errlen, "tensor %s: out of memory (%zu bytes)", t->name, n * sizeof *tmp);
        return -1;
    }
    ckpt_to_f32(t->dtype, t->data, tmp, n);
    if (transpose) {
        float *tr = malloc(n * sizeof *tr);

        if (!tr) {
            free(tmp);
            snprintf(err, errlen, "tensor %s: out of memory (%zu bytes)", t->name,
                     n * sizeof *tr);
            return -1;
        }
        /* stored [cols][rows] -> [rows][cols] */
        for (int i = 0; i < cols; i++) {
            for (int j = 0; j < rows; j++) {
                tr[(size_t)j * cols + i] = tmp[(size_t)i * rows + j];
            }
        }
        free(tmp);
        tmp = tr;
    }
    if (want == RWKV_DTYPE_F32) {
        m->data = tmp;
        m->owned = tmp;
        return 0;
    }
    if (fmt->pack(m, tmp) != 0) {
        free(tmp);
        memset(m, 0, sizeof *m);
        snprintf(err, errlen, "tensor %s: out of memory converting to %s", t->name,
                 rwkv_dtype_name(want));
        return -1;
    }
    free(tmp);
    return 0;
}

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

