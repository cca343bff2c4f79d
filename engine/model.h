/*
 * model.h - what the version-specific forward passes share with model.c.
 * Internal to engine/: not installed, not used by app/.
 *
 * model.c opens the checkpoint, detects the version from the key names,
 * checks every tensor the version needs (presence, dtype, shape) and fills
 * rwkv_info; then the version's arch->prepare turns tensors into kernel
 * matrices.  A state is the official-order float array (rwkv.h).
 */
#ifndef RWKV_MODEL_H
#define RWKV_MODEL_H

#include <limits.h>

#include "engine/checkpoint.h"
#include "engine/convcache.h"
#include "engine/kernels.h"
#include "engine/rwkv.h"

struct rwkv_arch {
    /* Builds m->weights from m->file (all tensors already validated). */
    int (*prepare)(rwkv_model *m, char *err, size_t errlen);
    void (*release)(rwkv_model *m);
    /* Writes the zero state (state_floats floats). */
    void (*state_init)(const rwkv_model *m, float *state);
    /* Advances state over n >= 1 valid tokens; see rwkv_eval. */
    void (*eval)(rwkv_model *m, float *state, const int32_t *tokens, size_t n,
                 float *logits, int all_logits);
};

/* One kernel matrix a load made (model_matrix), in the order made. */
struct model_matrix_rec {
    struct convcache_item item;
    int converted;              /* not in place: conversion or from the cache */
};

/* The conversion cache during and after a load. */
struct model_cache {
    int active;                 /* the load converts its big matrices: use a cache */
    convcache *cache;           /* opened for reading; its mapping outlives weights */
    struct convcache_key key;
    struct model_matrix_rec *recs;
    size_t n_recs, cap_recs;
    size_t n_from_cache, n_converted;
    int failed;                 /* out of memory for recs: write nothing */
    int scan_skipped;           /* check_finite left tensors to the cache */
    struct rwkv_cache_info info;
    char path[PATH_MAX];
    char reason[RWKV_ERRLEN];
};

struct rwkv_model {
    struct rwkv_info info;
    ckpt_file *file;
    const struct rwkv_arch *arch;
    void *weights;              /* owned by arch (prepare/release) */
    struct kpool *pool;         /* worker threads for the kernels */
    enum rwkv_dtype dtype;      /* format of the big matrices */
    char **extra;               /* names of unused tensors */
    struct model_cache cache;
};

extern const struct rwkv_arch rwkv4_arch;
extern const struct rwkv_arch rwkv5_arch;
extern const struct rwkv_arch rwkv6_arch;
extern const struct rwkv_arch rwkv7_arch;

/* The kernel matrix of tensor t for prepare() (kmat_from_tensor's
 * arguments): read in place, taken from the conversion cache, or converted
 * on the model's pool; remembered for the cache and for bytes_per_token.
 * 0, or -1 with err (without the file name). */
int model_matrix(rwkv_model *m, struct kmat *k, const struct ckpt_tensor *t, int transpose,
                 enum rwkv_dtype dtype, char *err, size_t errlen);

/* Tensor lookup for prepare(): the tensor must exist (validated). */
const struct ckpt_tensor *model_tensor(const rwkv_model *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
