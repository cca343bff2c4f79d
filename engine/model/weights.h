/*
 * weights.h - a loaded model as the engine sees it, and what a version's
 * prepare() uses to build its weights.  Internal to engine/.
 *
 * model.c opens the checkpoint, detects the version (versions.h), checks
 * every tensor the version needs (presence, dtype, shape) and fills
 * rwkv_info; it loads what every version has around its layers (embedding,
 * ln0, ln_out, head: struct weights_common); then the version's prepare
 * turns its tensors into kernel matrices and float32 vectors.  Everything
 * a load allocates is tracked by the model (weights_alloc, weights_matrix)
 * and freed with it: no version counts or frees its own allocations.
 *
 * After the load a model is read-only: evaluation scratch and the worker
 * pool belong to an rwkv_context (context.c).
 */
#ifndef RWKV_WEIGHTS_H
#define RWKV_WEIGHTS_H

#include <limits.h>

#include "engine/load/checkpoint.h"
#include "engine/load/convcache.h"
#include "engine/kernels/kernels.h"
#include "engine/load/lora.h"
#include "engine/rwkv.h"
#include "engine/model/versions.h"

/* F.layer_norm's default, used by ln0/ln1/ln2/ln_out. */
#define WEIGHTS_LN_EPS 1e-5f

/* One kernel matrix a load made (weights_matrix), in the order made. */
struct weights_matrix_rec {
    struct convcache_item item;
    struct kmat *k;             /* item.m, owned by the model */
    int converted;              /* not in place: conversion or from the cache */
};

/* The conversion cache during and after a load. */
struct weights_cache {
    int active;                 /* the load converts its big matrices: use a cache */
    convcache *cache;           /* opened for reading; its mapping outlives weights */
    struct convcache_key key;
    size_t n_from_cache, n_converted;
    int scan_skipped;           /* check_finite left tensors to the cache */
    uint64_t limit;             /* the caches' size limit (rwkv_load_options) */
    struct rwkv_cache_info info;
    char path[PATH_MAX];
    char reason[RWKV_ERRLEN];
};

/* What every version has around its layers. */
struct weights_common {
    const struct ckpt_tensor *emb;  /* emb.weight [V][C], read a row at a time */
    const float *ln0_w, *ln0_b, *ln_out_w, *ln_out_b;
    struct kmat head;
};

struct rwkv_model {
    struct rwkv_info info;
    ckpt_file *file;
    const struct rwkv_version *version;
    struct weights_common common;
    void *weights;              /* the version's layers (made by prepare) */
    size_t layer_floats;        /* state floats per layer */
    size_t history_derived;     /* RWKV-7b: derived floats per history token */
    int n_threads;              /* the load's threads: contexts' default */
    struct kpool *pool;         /* during the load only (conversion, scans) */
    enum rwkv_dtype dtype;      /* format of the big matrices */
    char **extra;               /* names of unused tensors */
    struct weights_cache cache;
    /* Every allocation the load made for the weights: blocks (freed with
     * free) and kernel matrices (kmat_free; recorded for the cache too). */
    void **blocks;
    size_t n_blocks, cap_blocks;
    struct weights_matrix_rec *recs;
    size_t n_recs, cap_recs;
    /* weights_gather's mapping of every matrix's weights, or NULL */
    void *arena;
    size_t arena_bytes;
    lora_set *lora;             /* adapters merged at load, or NULL */
    /* During the load only: its progress callback (may be NULL) and the
     * conversion step's count (bytes of the matrices to convert). */
    rwkv_load_progress_fn progress;
    void *progress_data;
    uint64_t convert_done, convert_total;
};

/* Reports the load's progress (nothing without a callback). */
void weights_progress(const rwkv_model *m, enum rwkv_load_step step, uint64_t done,
                      uint64_t total);

/* n zeroed bytes owned by the model (freed with it); NULL when out of memory. */
void *weights_alloc(rwkv_model *m, size_t n);

/* The kernel matrix of tensor t for prepare() (kmat_from_tensor's
 * arguments): read in place, taken from the conversion cache, or converted
 * on the load's pool; owned by the model from then on (freed with it) and
 * remembered for the cache and for bytes_per_token.  k must live as long
 * as the model (inside weights_alloc memory or the model).  0, or -1 with
 * err (without the file name). */
int weights_matrix(rwkv_model *m, struct kmat *k, const struct ckpt_tensor *t, int transpose,
                   enum rwkv_dtype dtype, char *err, size_t errlen);

/* A float32 copy of tensor t owned by the model; NULL when out of memory. */
float *weights_vector(rwkv_model *m, const struct ckpt_tensor *t);

/* Tensor lookup for prepare(): the tensor must exist (validated). */
const struct ckpt_tensor *weights_tensor(const rwkv_model *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Lookup by a printf-formatted name; NULL when absent (for detect and
 * read_dims). */
const struct ckpt_tensor *weights_find(const ckpt_file *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The NaN and infinite values among n elements of a tensor's data. */
size_t weights_nonfinite(enum ckpt_dtype dtype, const void *data, size_t n);

/* Moves the weights of every kernel matrix (each read once per token) into
 * one anonymous mapping the kernel may back with 2 MiB pages, dropping the
 * file pages they came from (the checkpoint's or the conversion cache's):
 * reads from a file mapping of 4 KiB pages ran at about 0.8x the speed of
 * huge-page memory.  Matrices inside a larger buffer (a LoRA merge's, a
 * copy the checkpoint reader made) stay where they are.  Nothing moves
 * when the rest exceeds half of the memory the process may use (physical,
 * or a cgroup's limit), when an address-space or data limit is set, or
 * when the mapping fails. */
void weights_gather(rwkv_model *m);

/* Frees everything weights_alloc and weights_matrix made. */
void weights_free(rwkv_model *m);

#endif
