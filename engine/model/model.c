/*
 * model.c - the load sequence and the public model and state objects of
 * rwkv.h.
 *
 * A load opens the checkpoint, asks each version of the list below in turn
 * whether the file is its own (versions.h: told from the key names the way
 * the official rwkv package does it), reads every size from tensor shapes,
 * checks every tensor the version's table names (presence, shape), scans
 * the weights for NaN/Inf, loads what every version has around its layers
 * (embedding, ln0, ln_out, head) and lets the version prepare its layers.
 * The conversion cache is opened before and written after.
 */
#include <assert.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/base/escape.h"
#include "engine/base/err.h"
#include "engine/kernels/kmat.h"
#include "engine/model/context_test.h"
#include "engine/model/history.h"
#include "engine/model/weights.h"
#include "engine/kernels/quant.h"
#include "engine/load/verified.h"

#define MAX_LAYERS 100000
#define MAX_HEAD_SIZE 1024       /* a state holds head_size^2 floats per head */

struct rwkv_state {
    const rwkv_model *model;
    size_t n;
    struct rwkv_history *history;   /* RWKV-7b (history.h); NULL otherwise */
    float data[];
};

/* ------------------------------------------------------------ shapes --- */

int64_t rwkv_dim_value(const struct rwkv_dims *d, const char *sym, size_t len)
{
    static const struct {
        const char *name;
        size_t off;
    } syms[] = {
        { "C", offsetof(struct rwkv_dims, C) }, { "V", offsetof(struct rwkv_dims, V) },
        { "F", offsetof(struct rwkv_dims, F) }, { "H", offsetof(struct rwkv_dims, H) },
        { "N", offsetof(struct rwkv_dims, N) }, { "Dw", offsetof(struct rwkv_dims, Dw) },
        { "Da", offsetof(struct rwkv_dims, Da) }, { "Dv", offsetof(struct rwkv_dims, Dv) },
        { "Dg", offsetof(struct rwkv_dims, Dg) }, { "Dm", offsetof(struct rwkv_dims, Dm) },
        { "Q", offsetof(struct rwkv_dims, Q) }, { "Dk", offsetof(struct rwkv_dims, Dk) },
    };
    size_t i;

    if (len > 0 && sym[0] >= '0' && sym[0] <= '9') {
        return strtoll(sym, NULL, 10);
    }
    if (len == 3 && !memcmp(sym, "Dm5", 3)) {
        return d->Dm < 0 ? -1 : 5 * d->Dm;
    }
    for (i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
        if (strlen(syms[i].name) == len && !memcmp(syms[i].name, sym, len)) {
            return *(const int64_t *)((const char *)d + syms[i].off);
        }
    }
    assert(!"unknown shape symbol");
    return -1;
}

/* Resolves one alternative of a shape spec ("v:C" or "5,Dm,C") into dims;
 * returns ndim, with *vector set for "v:" specs. */
static int resolve_shape(const struct rwkv_dims *d, const char *s, size_t len, int64_t *out,
                         int *vector)
{
    int n = 0;
    size_t i = 0;

    *vector = 0;
    if (len >= 2 && s[0] == 'v' && s[1] == ':') {
        *vector = 1;
        i = 2;
    }
    while (i < len && n < CKPT_MAX_DIMS) {
        size_t j = i;
        while (j < len && s[j] != ',') {
            j++;
        }
        out[n++] = rwkv_dim_value(d, s + i, j - i);
        i = j + 1;
    }
    return n;
}

/* Whether tensor t has the shape of one alternative. */
static int shape_matches(const struct ckpt_tensor *t, int ndim, const int64_t *want, int vector)
{
    int i, big = 0;

    if (vector) {
        /* any shape that squeezes to [want[0]] */
        if (t->numel != want[0] || t->ndim < 1) {
            return 0;
        }
        for (i = 0; i < t->ndim; i++) {
            big += t->shape[i] != 1;
        }
        return big <= 1;
    }
    if (t->ndim != ndim) {
        return 0;
    }
    for (i = 0; i < ndim; i++) {
        if (t->shape[i] != want[i]) {
            return 0;
        }
    }
    return 1;
}

/* ----------------------------------------------------- detection, dims --- */

/* The layer index of a "blocks.N." name, or -1. */
static long layer_of(const char *name)
{
    long n = 0;
    const char *p;

    if (strncmp(name, "blocks.", 7)) {
        return -1;
    }
    for (p = name + 7; *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (*p - '0');
        if (n > MAX_LAYERS) {
            return -1;
        }
    }
    return p > name + 7 && *p == '.' ? n : -1;
}

/* Tells the version from the key names: the first of the list whose
 * detect accepts the file (the last accepts any). */
static const struct rwkv_version *detect_version(rwkv_model *m)
{
    for (size_t i = 0; rwkv_versions[i]; i++) {
        if (rwkv_versions[i]->detect(m->file, &m->info)) {
            return rwkv_versions[i];
        }
    }
    return NULL;
}

/* Reads n_layer and every size from tensor shapes.  0, or -1 with err. */
static int read_dims(rwkv_model *m, struct rwkv_dims *d, char *err, size_t errlen)
{
    struct rwkv_info *info = &m->info;
    const char *path = ckpt_shown_path(m->file);
    const struct ckpt_tensor *t;
    size_t i, n = ckpt_count(m->file);
    long layers = 0;
    char sbuf[64];

    memset(d, 0xff, sizeof(*d));    /* all -1 */
    t = ckpt_find(m->file, "emb.weight");
    if (!t) {
        err_set(err, errlen, "%s: not an RWKV model: no emb.weight tensor among its %zu "
                "tensors (first: %s)", path, n, RWKV_ESC(ckpt_at(m->file, 0)->name));
        return -1;
    }
    if (t->ndim != 2 || t->shape[0] < 1 || t->shape[1] < 1 || t->shape[0] > INT32_MAX ||
        t->shape[1] > 65536) {
        err_set(err, errlen, "%s: tensor emb.weight: expected [vocab][n_embd], found %s", path,
                ckpt_shape_str(t->ndim, t->shape, sbuf, sizeof(sbuf)));
        return -1;
    }
    d->V = t->shape[0];
    d->C = t->shape[1];
    for (i = 0; i < n; i++) {
        long l = layer_of(ckpt_at(m->file, i)->name);
        if (l + 1 > layers) {
            layers = l + 1;
        }
    }
    if (layers == 0) {
        err_set(err, errlen, "%s: not an RWKV model: no blocks.N.* tensors", path);
        return -1;
    }
    info->n_layer = (int)layers;
    info->n_embd = (int)d->C;
    info->n_vocab = (int)d->V;

    if ((t = ckpt_find(m->file, "blocks.0.ffn.key.weight")) && t->ndim == 2) {
        d->F = t->shape[0];
    }
    m->version->read_dims(m->file, info, d);
    if (m->version->heads_tensor) {
        if (d->H < 1 || d->N < 1 || d->H * d->N != d->C) {
            const char *src = m->version->heads_tensor;

            t = ckpt_find(m->file, src);
            if (!t) {
                err_set(err, errlen, "%s: tensor %s missing (RWKV-%s needs it for the head "
                        "layout)", path, src, info->version_name);
            } else {
                err_set(err, errlen, "%s: tensor %s: shape %s does not split n_embd %lld into "
                        "heads", path, src, ckpt_shape_str(t->ndim, t->shape, sbuf,
                                                           sizeof(sbuf)), (long long)d->C);
            }
            return -1;
        }
        if (d->N > MAX_HEAD_SIZE) {
            err_set(err, errlen, "%s: head size %lld above %d is not supported", path,
                    (long long)d->N, MAX_HEAD_SIZE);
            return -1;
        }
        info->n_head = (int)d->H;
        info->head_size = (int)d->N;
    }
    info->ffn_size = (int)(d->F > 0 ? d->F : 0);
    info->lora_decay = (int)(d->Dw > 0 ? d->Dw : 0);
    info->lora_aaa = (int)(d->Da > 0 ? d->Da : 0);
    info->lora_mv = (int)(d->Dv > 0 ? d->Dv : 0);
    info->lora_gate = (int)(d->Dg > 0 ? d->Dg : 0);
    info->lora_maa = (int)(d->Dm > 0 ? d->Dm : 0);
    info->dea_width = (int)(d->Q > 0 ? d->Q : 0);
    return 0;
}

/* Checks one required tensor; marks it used.  0, or -1 with err. */
static int check_tensor(rwkv_model *m, const struct rwkv_dims *d, const char *name,
                        const char *shape, unsigned char *used, char *err, size_t errlen)
{
    const struct ckpt_tensor *t = ckpt_find(m->file, name);
    const char *alt = shape, *bar;
    char want[96], found[64];
    int64_t dims[CKPT_MAX_DIMS];
    int ndim, vector, first = 1;

    if (!t) {
        err_set(err, errlen, "%s: tensor %s missing (RWKV-%s needs it)", ckpt_shown_path(m->file),
                name, m->info.version_name);
        return -1;
    }
    want[0] = '\0';
    for (;;) {
        bar = strchr(alt, '|');
        ndim = resolve_shape(d, alt, bar ? (size_t)(bar - alt) : strlen(alt), dims, &vector);
        if (shape_matches(t, ndim, dims, vector)) {
            used[t - ckpt_at(m->file, 0)] = 1;
            return 0;
        }
        if (first) {
            if (vector) {
                snprintf(want, sizeof(want), "%lld elements", (long long)dims[0]);
            } else {
                int k;
                size_t used = 0;
                /* an unknown rank (its source tensor was malformed) shows as ? */
                for (k = 0; k < ndim && used < sizeof(want); k++) {
                    int w = dims[k] < 0
                        ? snprintf(want + used, sizeof(want) - used, "%s?", k ? "x" : "")
                        : snprintf(want + used, sizeof(want) - used, "%s%lld", k ? "x" : "",
                                   (long long)dims[k]);
                    used += w > 0 ? (size_t)w : 0;
                }
            }
            first = 0;
        }
        if (!bar) {
            break;
        }
        alt = bar + 1;
    }
    err_set(err, errlen, "%s: tensor %s: expected %s, found %s", ckpt_shown_path(m->file), name,
            want, ckpt_shape_str(t->ndim, t->shape, found, sizeof(found)));
    return -1;
}

/* Checks every tensor of the version's table; the others become extras. */
static int validate(rwkv_model *m, const struct rwkv_dims *d, unsigned char *used, char *err,
                    size_t errlen)
{
    const struct rwkv_tensor_spec *table = m->version->tensors(m->file, &m->info), *s;
    size_t n = ckpt_count(m->file), i;
    char name[256];
    int layer, n_extra = 0, rc = -1;

    for (s = table; s->name; s++) {
        if (s->scope == RWKV_GLOBAL || s->scope == RWKV_FIRST_LAYER) {
            if (check_tensor(m, d, s->name, s->shape, used, err, errlen)) {
                goto out;
            }
        }
    }
    for (layer = 0; layer < m->info.n_layer; layer++) {
        for (s = table; s->name; s++) {
            if (s->scope == RWKV_GLOBAL || s->scope == RWKV_FIRST_LAYER ||
                (s->scope == RWKV_LATER_LAYERS && layer == 0)) {
                continue;
            }
            snprintf(name, sizeof(name), s->name, layer);
            if (check_tensor(m, d, name, s->shape, used, err, errlen)) {
                goto out;
            }
        }
    }
    for (i = 0; i < n; i++) {
        n_extra += !used[i];
    }
    m->extra = calloc((size_t)n_extra + 1, sizeof(*m->extra));
    if (!m->extra) {
        err_set(err, errlen, "%s: out of memory", ckpt_shown_path(m->file));
        goto out;
    }
    m->info.n_extra_tensors = 0;
    for (i = 0; i < n; i++) {
        if (!used[i]) {
            m->extra[m->info.n_extra_tensors++] = ckpt_at(m->file, i)->name;
        } else {
            const struct ckpt_tensor *t = ckpt_at(m->file, i);
            m->info.n_params += (uint64_t)t->numel;
        }
    }
    rc = 0;
out:
    return rc;
}

/* ------------------------------------------------------------ summary --- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t i;

    for (i = 0; i < n; i++) {
        h = (h ^ b[i]) * 0x100000001b3ULL;
    }
    return h;
}

/* A 64-bit identity of the weights: FNV-1a over each tensor's name, type
 * and shape and a sample of its bytes (head, tail and 16 spread windows),
 * so that it costs a few pages per tensor, not a read of the file.  The
 * per-tensor hashes are mixed and summed, so the order of the tensors in
 * the file (.pth or safetensors) does not matter. */
static uint64_t fingerprint(const ckpt_file *file)
{
    uint64_t sum = 0;
    size_t i, n = ckpt_count(file);

    for (i = 0; i < n; i++) {
        const struct ckpt_tensor *t = ckpt_at(file, i);
        const unsigned char *b = t->data;
        uint64_t h = 0xcbf29ce484222325ULL;
        int32_t dt = (int32_t)t->dtype;
        size_t k;

        h = fnv(h, t->name, strlen(t->name) + 1);
        h = fnv(h, &dt, sizeof(dt));
        h = fnv(h, t->shape, sizeof(t->shape[0]) * (size_t)t->ndim);
        if (t->nbytes <= 256) {
            h = fnv(h, b, t->nbytes);
        } else {
            h = fnv(h, b, 64);
            h = fnv(h, b + t->nbytes - 64, 64);
            for (k = 1; k <= 16; k++) {
                h = fnv(h, b + (t->nbytes - 8) / 17 * k, 8);
            }
        }
        /* splitmix64 finaliser before summing */
        h ^= h >> 30;
        h *= 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 27;
        h *= 0x94d049bb133111ebULL;
        h ^= h >> 31;
        sum += h;
    }
    return sum;
}

/* Fills stored dtype, fingerprint and state size from the used tensors
 * (bytes_per_token comes from the kernel matrices, after prepare). */
static void summarize(rwkv_model *m, const unsigned char *used)
{
    struct rwkv_info *info = &m->info;
    uint64_t by_type[3] = { 0, 0, 0 };
    size_t i, n = ckpt_count(m->file);

    for (i = 0; i < n; i++) {
        const struct ckpt_tensor *t = ckpt_at(m->file, i);

        if (!used[i]) {
            continue;
        }
        by_type[t->dtype] += t->nbytes;
    }
    /* the format that holds most of the bytes */
    info->stored_dtype = RWKV_DTYPE_F32;
    if (by_type[CKPT_F16] > by_type[CKPT_F32] && by_type[CKPT_F16] >= by_type[CKPT_BF16]) {
        info->stored_dtype = RWKV_DTYPE_F16;
    } else if (by_type[CKPT_BF16] > by_type[CKPT_F32] && by_type[CKPT_BF16] > by_type[CKPT_F16]) {
        info->stored_dtype = RWKV_DTYPE_BF16;
    }
    info->compute_dtype = m->dtype == RWKV_DTYPE_AUTO ? info->stored_dtype : m->dtype;
    info->file_size = ckpt_file_size(m->file);
    info->fingerprint = fingerprint(m->file);
    m->layer_floats = m->version->layer_floats(info);
    info->state_floats = (size_t)info->n_layer * m->layer_floats;
}

/* ------------------------------------------------------ finite check --- */

/* Bytes of tensor data one task of the NaN/Inf scan reads. */
#define SCAN_CHUNK ((size_t)1 << 20)
/* Chunks per hand-off to the pool: the read's progress is told between. */
#define SCAN_SLICE ((size_t)64)

struct scan {
    const struct ckpt_tensor **tensors;     /* the used tensors */
    size_t *first_chunk;                    /* of each tensor; [n] = total */
    size_t n;
    size_t *bad;                            /* per chunk: NaN/Inf values */
    const rwkv_model *m;
    size_t base;                            /* the first chunk of this hand-off */
};

/* Whether t is a table read a row per token in place (the embedding;
 * RWKV-7a's s_emb, RWKV-8's enn): [n_vocab][...] and not the head, the
 * one such tensor every version makes into a kernel matrix. */
static int row_table(const rwkv_model *m, const struct ckpt_tensor *t)
{
    return t->ndim == 2 && t->shape[0] == m->info.n_vocab && strcmp(t->name, "head.weight");
}

/* One pool task: chunk i of the concatenated used tensors.  A row table's
 * pages leave resident memory again once scanned: they are read back a
 * row at a time as tokens come (for RWKV-7a and 8 most of the file). */
static void scan_chunk(void *ctx, int i)
{
    struct scan *s = ctx;
    size_t c = s->base + (size_t)i, lo = 0, hi = s->n, esize, begin, end;
    const struct ckpt_tensor *t;

    while (hi - lo > 1) {       /* the tensor whose chunks hold c */
        size_t mid = lo + (hi - lo) / 2;
        if (s->first_chunk[mid] <= c) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    t = s->tensors[lo];
    esize = ckpt_dtype_size(t->dtype);
    begin = (c - s->first_chunk[lo]) * SCAN_CHUNK;
    end = begin + SCAN_CHUNK < t->nbytes ? begin + SCAN_CHUNK : t->nbytes;
    s->bad[c] = weights_nonfinite(t->dtype, (const unsigned char *)t->data + begin,
                                (end - begin) / esize);
    if (row_table(s->m, t)) {
        ckpt_release(s->m->file, (const unsigned char *)t->data + begin, end - begin);
    }
}

/* Refuses weights holding NaN or infinity, naming the first such tensor:
 * they would only turn every logit into NaN later.  Reads each used
 * tensor once, on the pool's threads, except those the open conversion
 * cache holds. */
static int check_finite(rwkv_model *m, const unsigned char *used, char *err, size_t errlen)
{
    struct scan s;
    size_t n = ckpt_count(m->file), i, k, chunks = 0;
    int rc = -1;

    memset(&s, 0, sizeof(s));
    s.m = m;
    s.tensors = malloc((n ? n : 1) * sizeof(*s.tensors));
    s.first_chunk = malloc((n + 1) * sizeof(*s.first_chunk));
    if (!s.tensors || !s.first_chunk) {
        err_set(err, errlen, "%s: out of memory", ckpt_shown_path(m->file));
        goto out;
    }
    for (i = 0; i < n; i++) {
        const struct ckpt_tensor *t = ckpt_at(m->file, i);
        if (used[i] && t->nbytes > 0 && m->cache.cache &&
            convcache_has_name(m->cache.cache, t->name)) {
            /* read from the conversion cache instead: it was written from
             * this very file (size, time, inode, fingerprint) after a load
             * that checked it; model_matrix checks it on a cache miss */
            m->cache.scan_skipped = 1;
        } else if (used[i] && t->nbytes > 0) {
            s.tensors[s.n] = t;
            s.first_chunk[s.n++] = chunks;
            chunks += (t->nbytes + SCAN_CHUNK - 1) / SCAN_CHUNK;
        }
    }
    s.first_chunk[s.n] = chunks;
    if (chunks > (size_t)INT32_MAX || !(s.bad = calloc(chunks ? chunks : 1, sizeof(*s.bad)))) {
        err_set(err, errlen, "%s: out of memory", ckpt_shown_path(m->file));
        goto out;
    }
    /* in slices of 64 MiB, so that the progress moves */
    for (k = 0; k < chunks; k += SCAN_SLICE) {
        size_t count = chunks - k < SCAN_SLICE ? chunks - k : SCAN_SLICE;

        weights_progress(m, RWKV_LOAD_READ, (uint64_t)k * SCAN_CHUNK,
                         (uint64_t)chunks * SCAN_CHUNK);
        s.base = k;
        kpool_run(m->pool, scan_chunk, &s, (int)count);
    }
    weights_progress(m, RWKV_LOAD_READ, (uint64_t)chunks * SCAN_CHUNK,
                     (uint64_t)chunks * SCAN_CHUNK);
    for (i = 0; i < s.n; i++) {
        size_t bad = 0;
        for (k = s.first_chunk[i]; k < s.first_chunk[i + 1]; k++) {
            bad += s.bad[k];
        }
        if (bad) {
            err_set(err, errlen, "%s: tensor %s: %zu NaN/Inf value%s", ckpt_shown_path(m->file),
                    s.tensors[i]->name, bad, bad == 1 ? "" : "s");
            goto out;
        }
    }
    rc = 0;
out:
    free(s.tensors);
    free(s.first_chunk);
    free(s.bad);
    return rc;
}

/* ---------------------------------------------------- conversion cache --- */

static double seconds_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Before prepare: decides whether this load uses a cache and opens the
 * one there is.  A load uses one when it converts the big matrices (its
 * format is not the file's); LoRA factors alone are cheap to convert. */
static void cache_begin(rwkv_model *m, const struct rwkv_load_options *opts)
{
    struct weights_cache *c = &m->cache;
    const char *path = ckpt_path(m->file);
    double t0 = seconds_now();

    c->info.path = c->path;
    c->info.reason = c->reason;
    c->limit = opts && opts->cache_max ? opts->cache_max : convcache_limit();
    if (m->dtype == RWKV_DTYPE_AUTO || m->dtype == m->info.stored_dtype) {
        return;
    }
    if (opts && opts->cache == RWKV_CACHE_MODE_OFF) {
        c->info.result = RWKV_CACHE_OFF;
        snprintf(c->reason, sizeof c->reason, "the cache is turned off");
        return;
    }
    if (convcache_key_of(path, m->dtype, m->info.fingerprint, &c->key) != 0) {
        c->info.result = RWKV_CACHE_NOT_WRITTEN;
        snprintf(c->reason, sizeof c->reason, "cannot stat %s", RWKV_ESC(path));
        return;
    }
    c->active = 1;
    if (convcache_path(path, m->dtype, c->path, sizeof c->path) != 0) {
        snprintf(c->reason, sizeof c->reason, "no user cache directory (XDG_CACHE_HOME and "
                 "HOME unset)");
        c->path[0] = '\0';
    } else if ((c->cache = convcache_open(c->path, &c->key, m->pool, c->reason,
                                          sizeof c->reason))) {
        convcache_touch(c->path);
    }
    if (c->cache) {
        weights_progress(m, RWKV_LOAD_CACHE_READ, 0, 1);
        weights_progress(m, RWKV_LOAD_CACHE_READ, 1, 1);
    }
    c->info.seconds = seconds_now() - t0;
}

/* After prepare: reports the cache as used, or writes a new one holding
 * every converted matrix in the user's cache directory, then removes the
 * least recently used caches past the size limit. */
static void cache_finish(rwkv_model *m)
{
    struct weights_cache *c = &m->cache;
    struct convcache_item *items;
    char why[RWKV_ERRLEN];
    size_t n = 0;
    double t0;

    if (!c->active) {
        return;
    }
    if (c->n_converted == 0 && c->n_from_cache > 0) {
        c->info.result = RWKV_CACHE_USED;
        c->reason[0] = '\0';
        return;
    }
    if (c->n_converted == 0) {
        c->info.result = RWKV_CACHE_NONE;
        c->path[0] = '\0';
        return;
    }
    c->info.result = RWKV_CACHE_NOT_WRITTEN;
    if (c->cache) {
        snprintf(c->reason, sizeof c->reason, "the cache lacked %zu of the matrices",
                 c->n_converted);
    }
    if (!(items = malloc((m->n_recs ? m->n_recs : 1) * sizeof *items))) {
        snprintf(c->reason, sizeof c->reason, "out of memory");
        c->path[0] = '\0';
        return;
    }
    for (size_t i = 0; i < m->n_recs; i++) {
        if (m->recs[i].converted) {
            items[n++] = m->recs[i].item;
        }
    }
    t0 = seconds_now();
    if (c->path[0]) {   /* else no cache directory: the reason says so */
        weights_progress(m, RWKV_LOAD_CACHE_WRITE, 0, 1);
        if (convcache_write(c->path, 1, &c->key, items, n, m->pool, why, sizeof why) == 0) {
            char dir[PATH_MAX];

            c->info.result = RWKV_CACHE_WRITTEN;
            if (verified_dir(dir, sizeof dir) == 0) {
                convcache_evict(dir, c->path, c->limit);
            }
        } else {
            snprintf(c->reason, sizeof c->reason, "%s", why);
            c->path[0] = '\0';
        }
        weights_progress(m, RWKV_LOAD_CACHE_WRITE, 1, 1);
    }
    c->info.seconds = seconds_now() - t0;
    free(items);
}

/* Weight bytes one generated token reads: every kernel matrix as it is
 * held (kmat_bytes: LoRA factors in their own format, the Linear
 * weights in the compute format), the float32 copies of the other used
 * tensors, and one row of each per-token table read in place (the
 * embedding; RWKV-7a's s_emb, RWKV-8's enn: [n_vocab][...] and not a
 * kernel matrix). */
static uint64_t bytes_per_token(const rwkv_model *m, const unsigned char *used)
{
    size_t n = ckpt_count(m->file);
    unsigned char *is_kmat = calloc(n ? n : 1, 1);
    uint64_t bytes = 0;

    for (size_t i = 0; i < m->n_recs; i++) {
        const struct ckpt_tensor *t = ckpt_find(m->file, m->recs[i].item.name);

        bytes += kmat_bytes(m->recs[i].item.m);
        for (size_t j = 0; is_kmat && t && j < n; j++) {
            if (ckpt_at(m->file, j) == t) {
                is_kmat[j] = 1;
                break;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        const struct ckpt_tensor *t = ckpt_at(m->file, i);

        if (!used[i] || (is_kmat && is_kmat[i])) {
            continue;
        }
        if (row_table(m, t)) {
            bytes += (uint64_t)t->shape[1] * ckpt_dtype_size(t->dtype);
        } else {
            bytes += (uint64_t)t->numel * sizeof(float);
        }
    }
    free(is_kmat);
    return bytes;
}

/* ------------------------------------------------------------- common --- */

/* What every version has around its layers: the embedding (read in place,
 * a row at a time), ln0, ln_out and the head.  0, or -1 with err. */
static int load_common(rwkv_model *m, char *err, size_t errlen)
{
    struct weights_common *cm = &m->common;
    const float **vecs[] = { &cm->ln0_w, &cm->ln0_b, &cm->ln_out_w, &cm->ln_out_b };
    static const char *const names[] = { "blocks.0.ln0.weight", "blocks.0.ln0.bias",
                                         "ln_out.weight", "ln_out.bias" };
    char e[RWKV_ERRLEN];

    cm->emb = weights_tensor(m, "emb.weight");
    for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) {
        if (!(*vecs[i] = weights_vector(m, weights_tensor(m, "%s", names[i])))) {
            err_set(err, errlen, "%s: tensor %s: out of memory", ckpt_shown_path(m->file),
                    names[i]);
            return -1;
        }
    }
    if (weights_matrix(m, &cm->head, weights_tensor(m, "head.weight"), 0, m->dtype, e,
                       sizeof e) != 0) {
        err_set(err, errlen, "%s: %s", ckpt_shown_path(m->file), e);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------- public --- */

/* The versions the loader knows, in detection order: the RWKV-7 family's
 * variants by their own tensors (8: ffn.enn; 7b: qkv, refused; 7a:
 * ffn.s_emb), then
 * RWKV-7 by its own key family, 6 by time_maa, 5.x by ln_x, and anything
 * else is RWKV-4. */
const struct rwkv_version *const rwkv_versions[] = {
    &rwkv8_version,
    &rwkv7b_version,
    &rwkv7a_version,
    &rwkv7_version,
    &rwkv6_version,
    &rwkv5_version,
    &rwkv4_version,
    NULL,
};

const struct rwkv_version *rwkv_version_of(int version, int minor)
{
    for (size_t i = 0; rwkv_versions[i]; i++) {
        const struct rwkv_version *v = rwkv_versions[i];

        if (v->version == version && minor >= v->minor_first &&
            minor < v->minor_first + v->n_minors) {
            return rwkv_versions[i];
        }
    }
    return NULL;
}

rwkv_model *rwkv_model_load(const char *path, const struct rwkv_load_options *opts,
                            char *err, size_t errlen)
{
    return rwkv_model_load_lora(path, opts, NULL, 0, err, errlen);
}

rwkv_model *rwkv_model_load_lora(const char *path, const struct rwkv_load_options *opts,
                                 const struct rwkv_lora *lora, int n_lora, char *err,
                                 size_t errlen)
{
    return rwkv_model_load_progress(path, opts, lora, n_lora, NULL, NULL, err, errlen);
}

/* Bytes of the used matrices (2-D tensors; the embedding is read in
 * place): what the conversion step counts to, matrix by matrix. */
static uint64_t convert_total(const rwkv_model *m, const unsigned char *used)
{
    uint64_t total = 0;

    for (size_t i = 0; i < ckpt_count(m->file); i++) {
        const struct ckpt_tensor *t = ckpt_at(m->file, i);

        if (used[i] && t->ndim == 2 && strcmp(t->name, "emb.weight") != 0) {
            total += t->nbytes;
        }
    }
    return total;
}

/* The CRC check's progress as the load's first step. */
static void verify_progress(void *data, uint64_t done, uint64_t total)
{
    weights_progress(data, RWKV_LOAD_VERIFY, done, total);
}

rwkv_model *rwkv_model_load_progress(const char *path, const struct rwkv_load_options *opts,
                                     const struct rwkv_lora *lora, int n_lora,
                                     rwkv_load_progress_fn fn, void *data, char *err,
                                     size_t errlen)
{
    rwkv_model *m;
    struct rwkv_dims d;
    unsigned char *used = NULL;
    char record_dir[PATH_MAX];

    if (err && errlen) {
        err[0] = '\0';
    }
    m = calloc(1, sizeof(*m));
    if (!m) {
        err_set(err, errlen, "%s: out of memory", RWKV_ESC(path));
        return NULL;
    }
    m->dtype = opts ? opts->dtype : RWKV_DTYPE_AUTO;
    m->progress = fn;
    m->progress_data = data;
    if (m->dtype < RWKV_DTYPE_AUTO || m->dtype > RWKV_DTYPE_Q4) {
        err_set(err, errlen, "%s: unknown weight format %d", RWKV_ESC(path), (int)m->dtype);
        free(m);
        return NULL;
    }
    /* zip CRCs: checked at the first start, then vouched for by a record
     * in the user's cache directory (no directory, or --no-cache, which
     * writes nothing there: checked every time) */
    m->file = ckpt_open_progress(path, (!opts || opts->cache != RWKV_CACHE_MODE_OFF) &&
                                 verified_dir(record_dir, sizeof record_dir) == 0 ?
                                 record_dir : NULL, verify_progress, m, err, errlen);
    if (!m->file) {
        free(m);
        return NULL;
    }
    if (n_lora > 0 && !(m->lora = lora_open(m->file, lora, n_lora, err, errlen))) {
        goto fail;
    }
    m->version = detect_version(m);
    assert(m->version != NULL);
    used = calloc(ckpt_count(m->file), 1);
    if (!used) {
        err_set(err, errlen, "%s: out of memory", RWKV_ESC(path));
        goto fail;
    }
    if (read_dims(m, &d, err, errlen) || validate(m, &d, used, err, errlen)) {
        goto fail;
    }
    summarize(m, used);
    m->info.fingerprint = lora_fingerprint(m->lora, m->info.fingerprint);
    m->info.n_lora = n_lora;
    /* The load's own pool (conversion, the NaN scan, the cache's hashes),
     * sized as asked; contexts make theirs. */
    m->pool = kpool_new(opts ? opts->n_threads : 0);
    if (!m->pool) {
        err_set(err, errlen, "%s: cannot start worker threads", RWKV_ESC(path));
        goto fail;
    }
    m->n_threads = kpool_threads(m->pool);
    kernels_init();
    cache_begin(m, opts);
    if (check_finite(m, used, err, errlen)) {
        goto fail;
    }
    /* a conversion to report: another format, and no cache to read it from */
    if (m->dtype != RWKV_DTYPE_AUTO && m->dtype != m->info.stored_dtype && !m->cache.cache) {
        m->convert_total = convert_total(m, used);
    }
    if (m->convert_total > 0) {
        weights_progress(m, RWKV_LOAD_CONVERT, 0, m->convert_total);
    }
    if (load_common(m, err, errlen) || m->version->prepare(m, err, errlen)) {
        goto fail;
    }
    if (m->convert_total > 0) {
        weights_progress(m, RWKV_LOAD_CONVERT, m->convert_total, m->convert_total);
    }
    if (lora_check_claimed(m->lora, err, errlen)) {
        goto fail;
    }
    if (m->version->history_sizes) {
        m->version->history_sizes(m, &m->info.history_floats, &m->history_derived);
        m->info.history_max = RWKV_HISTORY_MAX;
        if (opts && opts->history_max >= 1 && opts->history_max <= RWKV_HISTORY_MAX) {
            m->info.history_max = opts->history_max;
        }
    }
    cache_finish(m);
    if (!opts || !opts->keep_mapped) {
        weights_gather(m);
    }
    m->info.bytes_per_token = bytes_per_token(m, used);
    free(used);
    kpool_free(m->pool);
    m->pool = NULL;
    m->progress = NULL;
    return m;
fail:
    free(used);
    rwkv_model_free(m);
    return NULL;
}

void rwkv_model_free(rwkv_model *m)
{
    if (!m) {
        return;
    }
    weights_free(m);
    convcache_close(m->cache.cache);
    kpool_free(m->pool);
    free(m->extra);
    ckpt_close(m->file);
    lora_free(m->lora);
    free(m);
}

const struct rwkv_info *rwkv_model_info(const rwkv_model *model)
{
    return &model->info;
}

int rwkv_cache_dir(char *out, size_t len)
{
    return verified_dir(out, len);
}

uint64_t rwkv_cache_limit(void)
{
    return convcache_limit();
}

int rwkv_cache_size_parse(const char *text, uint64_t *bytes)
{
    return convcache_parse_size(text, bytes);
}

const struct rwkv_cache_info *rwkv_model_cache(const rwkv_model *model)
{
    return &model->cache.info;
}

const char *rwkv_model_extra_tensor(const rwkv_model *model, int i)
{
    if (i < 0 || i >= model->info.n_extra_tensors) {
        return NULL;
    }
    return model->extra[i];
}

/* ------------------------------------------------------------- states --- */

static void history_free(struct rwkv_history *h)
{
    if (h) {
        free(h->tokens);
        free(h->saved);
        free(h->derived);
        free(h->last);
        free(h);
    }
}

/* An empty history for a state of m (which keeps one); NULL when out of
 * memory. */
static struct rwkv_history *history_new(const rwkv_model *m)
{
    struct rwkv_history *h = calloc(1, sizeof *h);

    if (h && !(h->last = calloc(m->history_derived, sizeof *h->last))) {
        free(h);
        return NULL;
    }
    return h;
}

struct rwkv_history *rwkv_state_history_of(rwkv_state *state)
{
    return state->history;
}

int rwkv_history_reserve(const rwkv_model *m, struct rwkv_history *h, size_t total, char *err,
                         size_t errlen)
{
    size_t cap = h->cap ? h->cap : 64, max = m->info.history_max;
    size_t saved = m->info.history_floats, derived = m->history_derived;
    int32_t *tokens;
    float *sv, *dv;

    if (total > max) {
        err_set(err, errlen, "%s: the conversation would hold %zu tokens, more than the %zu "
                "an RWKV-7b state keeps (its attention remembers every token): reset the "
                "conversation or start a new one", ckpt_shown_path(m->file), total, max);
        return -1;
    }
    if (total <= h->cap) {
        return 0;
    }
    while (cap < total) {
        cap *= 2;
    }
    if (cap > max) {
        cap = max;
    }
    /* Each array grows in place; one that cannot leaves the others larger
     * than needed, which is harmless: cap changes only when all grew. */
    tokens = realloc(h->tokens, cap * sizeof *tokens);
    if (tokens) {
        h->tokens = tokens;
    }
    sv = tokens ? realloc(h->saved, cap * saved * sizeof *sv) : NULL;
    if (sv) {
        h->saved = sv;
    }
    dv = sv ? realloc(h->derived, cap * derived * sizeof *dv) : NULL;
    if (!dv) {
        err_set(err, errlen, "%s: out of memory for a history of %zu tokens",
                ckpt_shown_path(m->file), total);
        return -1;
    }
    h->derived = dv;
    h->cap = cap;
    return 0;
}

void rwkv_model_test_history_max(const rwkv_model *model, size_t max)
{
    ((rwkv_model *)model)->info.history_max = max;
}

rwkv_state *rwkv_state_new(const rwkv_model *model)
{
    size_t n = model->info.state_floats;
    rwkv_state *s = malloc(sizeof(*s) + n * sizeof(float));

    if (!s) {
        return NULL;
    }
    s->model = model;
    s->n = n;
    s->history = NULL;
    if (model->info.history_floats && !(s->history = history_new(model))) {
        free(s);
        return NULL;
    }
    rwkv_state_reset(s);
    return s;
}

rwkv_state *rwkv_state_clone(const rwkv_state *state)
{
    rwkv_state *s = rwkv_state_new(state->model);

    if (s && rwkv_state_copy(s, state) != 0) {
        rwkv_state_free(s);
        return NULL;
    }
    return s;
}

int rwkv_state_copy(rwkv_state *dst, const rwkv_state *src)
{
    const struct rwkv_history *hs = src->history;
    struct rwkv_history *hd = dst->history;

    assert(dst->n == src->n && !hs == !hd);
    if (hs) {
        const rwkv_model *m = src->model;
        char err[RWKV_ERRLEN];

        if (rwkv_history_reserve(m, hd, hs->n, err, sizeof err) != 0) {
            return -1;
        }
        if (hs->n) {
            memcpy(hd->tokens, hs->tokens, hs->n * sizeof *hd->tokens);
            memcpy(hd->saved, hs->saved, hs->n * m->info.history_floats * sizeof(float));
        }
        if (hs->n_derived) {
            memcpy(hd->derived, hs->derived, hs->n_derived * m->history_derived * sizeof(float));
        }
        memcpy(hd->last, hs->last, m->history_derived * sizeof(float));
        hd->n = hs->n;
        hd->n_derived = hs->n_derived;
    }
    memcpy(dst->data, src->data, src->n * sizeof(float));
    return 0;
}

void rwkv_state_reset(rwkv_state *state)
{
    const rwkv_model *m = state->model;

    if (m->version->state_init) {
        m->version->state_init(&m->info, state->data);
    } else {
        memset(state->data, 0, state->n * sizeof(float));
    }
    if (state->history) {
        /* A reset gives the memory of a long conversation back. */
        struct rwkv_history *h = state->history;

        free(h->tokens);
        free(h->saved);
        free(h->derived);
        h->tokens = NULL;
        h->saved = h->derived = NULL;
        h->n = h->n_derived = h->cap = 0;
        memset(h->last, 0, m->history_derived * sizeof(float));
    }
}

void rwkv_state_free(rwkv_state *state)
{
    if (state) {
        history_free(state->history);
    }
    free(state);
}

size_t rwkv_state_floats(const rwkv_state *state)
{
    return state->n;
}

float *rwkv_state_data(rwkv_state *state)
{
    return state->data;
}

const float *rwkv_state_cdata(const rwkv_state *state)
{
    return state->data;
}

size_t rwkv_state_bytes(const rwkv_state *state)
{
    const struct rwkv_history *h = state->history;
    size_t bytes = sizeof *state + state->n * sizeof(float);

    if (h) {
        const rwkv_model *m = state->model;

        bytes += sizeof *h + m->history_derived * sizeof(float) +
                 h->cap * (sizeof(int32_t) +
                           (m->info.history_floats + m->history_derived) * sizeof(float));
    }
    return bytes;
}

size_t rwkv_state_history(const rwkv_state *state)
{
    return state->history ? state->history->n : 0;
}

/* Bytes of a serialized history of n tokens of history_floats floats. */
static size_t history_bytes(size_t n, size_t floats)
{
    return 8 + (n * 4 + 7) / 8 * 8 + n * floats * 4;
}

size_t rwkv_state_history_size(const rwkv_state *state)
{
    const struct rwkv_history *h = state->history;

    return h ? history_bytes(h->n, state->model->info.history_floats) : 0;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void rwkv_state_history_write(const rwkv_state *state, void *out)
{
    const struct rwkv_history *h = state->history;
    unsigned char *p = out;
    size_t floats, pad;

    if (!h) {
        return;
    }
    floats = state->model->info.history_floats;
    put_u32(p, (uint32_t)h->n);
    put_u32(p + 4, (uint32_t)((uint64_t)h->n >> 32));
    p += 8;
    for (size_t i = 0; i < h->n; i++, p += 4) {
        put_u32(p, (uint32_t)h->tokens[i]);
    }
    pad = (h->n * 4 + 7) / 8 * 8 - h->n * 4;
    memset(p, 0, pad);
    p += pad;
    for (size_t i = 0; i < h->n * floats; i++, p += 4) {
        uint32_t u;

        memcpy(&u, &h->saved[i], 4);
        put_u32(p, u);
    }
}

int rwkv_state_history_check(const rwkv_model *model, const void *data, size_t size, char *err,
                             size_t errlen)
{
    const unsigned char *p = data;
    size_t floats = model->info.history_floats, bad = 0;
    uint64_t n;

    if (!floats) {
        err_set(err, errlen, "RWKV-%s keeps no history", model->info.version_name);
        return -1;
    }
    if (size < 8) {
        err_set(err, errlen, "the history has %zu bytes, fewer than its count", size);
        return -1;
    }
    n = get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
    if (n > model->info.history_max) {
        err_set(err, errlen, "the history holds %llu tokens, more than the %zu an RWKV-7b "
                "state keeps", (unsigned long long)n, model->info.history_max);
        return -1;
    }
    if (size != history_bytes((size_t)n, floats)) {
        err_set(err, errlen, "the history of %llu tokens has %zu bytes, not %zu",
                (unsigned long long)n, size, history_bytes((size_t)n, floats));
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t t = get_u32(p + 8 + 4 * i);

        if (t >= (uint32_t)model->info.n_vocab) {
            err_set(err, errlen, "the history's token %zu is %ld, out of range (n_vocab %d)", i,
                    (long)(int32_t)t, model->info.n_vocab);
            return -1;
        }
    }
    p += history_bytes((size_t)n, 0);
    for (size_t i = 0; i < n * floats; i++) {
        bad += (get_u32(p + 4 * i) & 0x7f800000u) == 0x7f800000u;
    }
    if (bad) {
        err_set(err, errlen, "the history holds %zu NaN/Inf values", bad);
        return -1;
    }
    return 0;
}

int rwkv_state_history_read(rwkv_state *state, const void *data, size_t size, char *err,
                            size_t errlen)
{
    const rwkv_model *m = state->model;
    struct rwkv_history *h = state->history;
    const unsigned char *p = data;
    size_t n, floats = m->info.history_floats;

    if (rwkv_state_history_check(m, data, size, err, errlen) != 0) {
        return -1;
    }
    n = (size_t)(get_u32(p) | (uint64_t)get_u32(p + 4) << 32);
    if (rwkv_history_reserve(m, h, n, err, errlen) != 0) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        h->tokens[i] = (int32_t)get_u32(p + 8 + 4 * i);
    }
    p += history_bytes(n, 0);
    for (size_t i = 0; i < n * floats; i++) {
        uint32_t u = get_u32(p + 4 * i);

        memcpy(&h->saved[i], &u, 4);
    }
    /* The derived keys and values are rebuilt at the next evaluation. */
    h->n = n;
    h->n_derived = 0;
    memset(h->last, 0, m->history_derived * sizeof(float));
    return 0;
}
