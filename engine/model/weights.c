/*
 * weights.c - what a model owns, and the helpers a version's prepare()
 * builds its weights with (weights.h).
 */
#include <assert.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "engine/kernels/kmat.h"
#include "engine/kernels/pool.h"
#include "engine/kernels/quant.h"
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

/* Bytes of a kernel matrix's data array (its weights, not Q8's scales). */
static size_t data_bytes(const struct kmat *k)
{
    return (size_t)k->rows * quant_row_bytes(k->type, k->cols);
}

#define GATHER_ALIGN 64
#define HUGE_PAGE (2u << 20)

struct gather_job {
    rwkv_model *m;
    unsigned char *dst;
    size_t *off;
};

/* 1 if matrix k can move into the arena without its bytes staying
 * resident twice: memory of its own that is freed, or bytes read in place
 * from the checkpoint's or the cache's mapping whose pages are dropped.
 * Bytes inside a larger buffer (a LoRA merge's, a copy the checkpoint
 * reader made) stay where they are. */
static int movable(const rwkv_model *m, const struct kmat *k)
{
    size_t n = data_bytes(k);

    if (k->owned) {
        return k->owned == k->data;
    }
    return ckpt_holds(m->file, k->data, n) || convcache_holds(m->cache.cache, k->data, n);
}

/* Matrix i into its place in the arena; its old memory freed or its file
 * pages dropped. */
static void gather_task(void *ctx, int i)
{
    const struct gather_job *job = ctx;
    struct kmat *k = job->m->recs[i].k;
    size_t n = data_bytes(k);
    unsigned char *to = job->dst + job->off[i];

    if (job->off[i] == SIZE_MAX) {
        return;
    }
    memcpy(to, k->data, n);
    if (k->owned) {
        free(k->owned);
        k->owned = NULL;
    } else {
        ckpt_release(job->m->file, k->data, n);
        convcache_release(job->m->cache.cache, k->data, n);
    }
    k->data = to;
}

/* The most bytes the arena may take: half of the memory the process may
 * use (physical memory, or a cgroup v2 limit below it), and none when an
 * address-space or data limit is set (the copy would count against it
 * while the file mapping still does). */
static size_t gather_budget(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    size_t mem;
    struct rlimit rl;
    FILE *f;

    if (pages <= 0 || page <= 0) {
        return 0;
    }
    mem = (size_t)pages * (size_t)page;
    if ((getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) ||
        (getrlimit(RLIMIT_DATA, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)) {
        return 0;
    }
    if ((f = fopen("/sys/fs/cgroup/memory.max", "r"))) {
        unsigned long long lim;

        if (fscanf(f, "%llu", &lim) == 1 && lim < mem) {
            mem = (size_t)lim;
        }
        fclose(f);
    }
    return mem / 2;
}

void weights_gather(rwkv_model *m)
{
    size_t total = 0, *off;
    unsigned char *raw, *base;

    if (m->n_recs == 0 || m->arena || m->n_recs > INT_MAX) {
        return;
    }
    off = malloc(m->n_recs * sizeof *off);
    if (!off) {
        return;
    }
    for (size_t i = 0; i < m->n_recs; i++) {
        if (!movable(m, m->recs[i].k)) {
            off[i] = SIZE_MAX;
            continue;
        }
        off[i] = total;
        total += (data_bytes(m->recs[i].k) + GATHER_ALIGN - 1) / GATHER_ALIGN * GATHER_ALIGN;
    }
    total = (total + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    if (total == 0 || total > gather_budget()) {
        free(off);
        return;
    }
    /* 2 MiB-aligned: map a huge page more and trim the ends */
    raw = mmap(NULL, total + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
               0);
    if (raw == MAP_FAILED) {
        free(off);
        return;
    }
    base = (unsigned char *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (base > raw) {
        munmap(raw, (size_t)(base - raw));
    }
    munmap(base + total, HUGE_PAGE - (size_t)(base - raw));
#ifdef MADV_HUGEPAGE
    (void)madvise(base, total, MADV_HUGEPAGE);  /* a failure costs speed only */
#endif
    {
        struct gather_job job = { m, base, off };

        kpool_run(m->pool, gather_task, &job, (int)m->n_recs);
    }
    (void)mprotect(base, total, PROT_READ);
    m->arena = base;
    m->arena_bytes = total;
    free(off);
}

void weights_free(rwkv_model *m)
{
    for (size_t i = 0; i < m->n_recs; i++) {
        kmat_free(m->recs[i].k);
    }
    free(m->recs);
    m->recs = NULL;
    m->n_recs = m->cap_recs = 0;
    if (m->arena) {
        munmap(m->arena, m->arena_bytes);
        m->arena = NULL;
        m->arena_bytes = 0;
    }
    for (size_t i = 0; i < m->n_blocks; i++) {
        free(m->blocks[i]);
    }
    free(m->blocks);
    m->blocks = NULL;
    m->n_blocks = m->cap_blocks = 0;
}
