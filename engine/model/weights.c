/*
 * weights.c - what a model owns, and the helpers a version's prepare()
 * builds its weights with (weights.h).
 */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kernels/kmat.h"
#include "engine/model/weights.h"

void *weights_alloc(rwkv_model *m, size_t n)
{
    void *p;

    if (m->n_blocks == m->cap_blocks) {
        size_t cap = m->cap_blocks ? 2 * m->cap_blocks : 256;
        void **b = realloc(m->blocks, cap * sizeof *b);

        if (!b) {
            return NULL;
        }
        m->blocks = b;
        m->cap_blocks = cap;
    }
    p = calloc(1, n ? n : 1);
    if (p) {
        m->blocks[m->n_blocks++] = p;
    }
    return p;
}

float *weights_vector(rwkv_model *m, const struct ckpt_tensor *t)
{
    float *v = weights_alloc(m, (size_t)t->numel * sizeof *v);

    if (v) {
        ckpt_to_f32(t->dtype, t->data, v, (size_t)t->numel);
    }
    return v;
}

const struct ckpt_tensor *weights_find(const ckpt_file *f, const char *fmt, ...)
{
    char name[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    return ckpt_find(f, name);
}

const struct ckpt_tensor *weights_tensor(const rwkv_model *m, const char *fmt, ...)
{
    char name[256];
    va_list ap;
    const struct ckpt_tensor *t;

    va_start(ap, fmt);
    vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    t = ckpt_find(m->file, name);
    assert(t != NULL);
    return t;
}

/* Counts the NaN and infinite values among n elements: those whose
 * exponent bits are all ones. */
static size_t count_nonfinite_exact(enum ckpt_dtype dtype, const void *data, size_t n)
{
    size_t bad = 0, i;

    if (dtype == CKPT_F32) {
        const uint32_t *p = data;
        for (i = 0; i < n; i++) {
            bad += (p[i] & 0x7f800000u) == 0x7f800000u;
        }
    } else {
        const uint16_t *p = data;
        uint16_t mask = dtype == CKPT_F16 ? 0x7c00 : 0x7f80;
        for (i = 0; i < n; i++) {
            bad += (uint16_t)(p[i] & mask) == mask;
        }
    }
    return bad;
}

/* The same count, fast when it is 0: eight bytes at a time, a lane's
 * clear exponent bits plus 0x7fff (0x7fffffff) set its top bit unless the
 * exponent is all ones, and no lane carries into the next. */
size_t weights_nonfinite(enum ckpt_dtype dtype, const void *data, size_t n)
{
    const unsigned char *b = data;
    size_t nbytes = n * ckpt_dtype_size(dtype), words = nbytes / 8, i;
    uint64_t exp, low, top, acc = ~(uint64_t)0, w;

    exp = dtype == CKPT_F32 ? 0x7f8000007f800000ULL
        : dtype == CKPT_F16 ? 0x7c007c007c007c00ULL : 0x7f807f807f807f80ULL;
    low = dtype == CKPT_F32 ? 0x7fffffff7fffffffULL : 0x7fff7fff7fff7fffULL;
    top = dtype == CKPT_F32 ? 0x8000000080000000ULL : 0x8000800080008000ULL;
    for (i = 0; i < words; i++) {
        memcpy(&w, b + 8 * i, 8);
        acc &= (~w & exp) + low;
    }
    if ((acc & top) == top && nbytes % 8 == 0) {
        return 0;
    }
    return count_nonfinite_exact(dtype, data, n);
}

/* Where tensor t's data lies in the model file (tells the slices of one
 * tensor apart); UINT64_MAX for data copied out of the mapping. */
static uint64_t tensor_offset(const rwkv_model *m, const struct ckpt_tensor *t)
{
    size_t size;
    uintptr_t base = (uintptr_t)ckpt_bytes(m->file, &size), p = (uintptr_t)t->data;

    return p >= base && p - base < size ? (uint64_t)(p - base) : lora_offset(m->lora, t->data);
}

int weights_matrix(rwkv_model *m, struct kmat *k, const struct ckpt_tensor *t, int transpose,
                   enum rwkv_dtype dtype, char *err, size_t errlen)
{
    struct weights_cache *c = &m->cache;
    struct weights_matrix_rec *rec;
    struct ckpt_tensor merged;
    void *merged_data = NULL;
    uint64_t off = tensor_offset(m, t);
    int rc, from_cache = 0, lora;
    size_t bad;

    /* The record first: a matrix the model cannot track is not made. */
    if (m->n_recs == m->cap_recs) {
        size_t cap = m->cap_recs ? 2 * m->cap_recs : 256;
        struct weights_matrix_rec *p = realloc(m->recs, cap * sizeof *p);

        if (!p) {
            snprintf(err, errlen, "tensor %s: out of memory", t->name);
            return -1;
        }
        m->recs = p;
        m->cap_recs = cap;
    }
    rc = kmat_plan(k, t, transpose, dtype, err, errlen);
    if (rc < 0) {
        return -1;
    }
    lora = lora_claim(m->lora, t->name);
    if (rc == 1 && lora) {
        /* read in place: the merged copy stays, in the stored type */
        if (lora_merge(m->lora, m->pool, t, 1, &merged, &merged_data, err, errlen) != 0) {
            return -1;
        }
        rc = kmat_plan(k, t = &merged, transpose, dtype, err, errlen);
        lora = 0;
    }
    if (rc == 0) {
        from_cache = c->active && convcache_find(c->cache, t->name, off, transpose, k);
        if (!from_cache && c->scan_skipped &&
            (bad = weights_nonfinite(t->dtype, t->data, (size_t)t->numel)) != 0) {
            /* a tensor check_finite left to the cache, which lacks it */
            snprintf(err, errlen, "tensor %s: %zu NaN/Inf value%s", t->name, bad,
                     bad == 1 ? "" : "s");
            memset(k, 0, sizeof *k);
            return -1;
        }
        if (!from_cache && lora &&
            lora_merge(m->lora, m->pool, t, 0, &merged, &merged_data, err, errlen) != 0) {
            return -1;
        }
        if (!from_cache && kmat_convert(k, lora ? &merged : t, transpose, m->pool, err,
                                        errlen) != 0) {
            free(merged_data);
            memset(k, 0, sizeof *k);
            return -1;
        }
        free(merged_data);
        c->n_from_cache += (size_t)from_cache;
        c->n_converted += (size_t)!from_cache;
    }
    if (m->convert_total > 0) {
        m->convert_done += t->nbytes;
        weights_progress(m, RWKV_LOAD_CONVERT, m->convert_done < m->convert_total ?
                         m->convert_done : m->convert_total, m->convert_total);
    }
    rec = &m->recs[m->n_recs++];
    rec->item.name = t->name;
    rec->item.src_off = off;
    rec->item.transpose = transpose;
    rec->item.m = k;
    rec->k = k;
    rec->converted = rc == 0;
    return 0;
}

void weights_progress(const rwkv_model *m, enum rwkv_load_step step, uint64_t done,
                      uint64_t total)
{
    if (m->progress) {
        m->progress(m->progress_data, step, done, total);
    }
}

void weights_free(rwkv_model *m)
{
    for (size_t i = 0; i < m->n_recs; i++) {
        kmat_free(m->recs[i].k);
    }
    free(m->recs);
    m->recs = NULL;
    m->n_recs = m->cap_recs = 0;
    for (size_t i = 0; i < m->n_blocks; i++) {
        free(m->blocks[i]);
    }
    free(m->blocks);
    m->blocks = NULL;
    m->n_blocks = m->cap_blocks = 0;
}
