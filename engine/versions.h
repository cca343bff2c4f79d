/*
 * versions.h - what an RWKV version is, for the loader and for tools.
 *
 * Each version file (rwkv4.c ... rwkv7.c) defines one struct rwkv_version:
 * how to recognise its checkpoints, the tensors it needs and their shapes,
 * the sizes it reads from them, its state layout, how it prepares its
 * weights and its layer.  model.c holds the load sequence and the one list
 * of versions (rwkv_versions); the forward driver (context.c) chunks the
 * tokens, embeds them, runs the version's layer over each chunk and applies
 * the head.  Adding a version is one new file plus one line in that list.
 *
 * Tools (rwkv-tool info, mkmodel) read the same tables through this
 * header; it is internal to the engine and its tools, not the consumer API
 * of rwkv.h.
 */
#ifndef RWKV_VERSIONS_H
#define RWKV_VERSIONS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/checkpoint.h"
#include "engine/rwkv.h"

struct kpool;

/* Where a required tensor appears. */
enum rwkv_scope {
    RWKV_GLOBAL,            /* once */
    RWKV_LAYER,             /* every layer */
    RWKV_FIRST_LAYER,       /* layer 0 only (ln0) */
    RWKV_LATER_LAYERS,      /* layers >= 1 (RWKV-7 v0/v1/v2: layer 0 makes v_first) */
};

/* A required tensor: name (printf format taking the layer), where it
 * appears, and its shape.  Shapes are comma-separated dimensions, each a
 * number or a size symbol (C n_embd, V vocab, F ffn, H heads, N head size,
 * Dw/Da/Dv/Dg/Dm LoRA ranks, Dm5 = 5 Dm); "v:X" is a vector of X elements
 * in any shape that squeezes to [X] (official files store [1][1][C]);
 * "A|B" accepts either shape.  Tables end with a NULL name. */
struct rwkv_tensor_spec {
    const char *name;
    enum rwkv_scope scope;
    const char *shape;
};

/* The sizes shapes are written in; -1 while unknown. */
struct rwkv_dims {
    int64_t C, V, F, H, N, Dw, Da, Dv, Dg, Dm;
};

/* Every version has these around its layers. */
#define RWKV_SPEC_COMMON \
    { "emb.weight", RWKV_GLOBAL, "V,C" }, \
    { "blocks.0.ln0.weight", RWKV_FIRST_LAYER, "v:C" }, \
    { "blocks.0.ln0.bias", RWKV_FIRST_LAYER, "v:C" }, \
    { "ln_out.weight", RWKV_GLOBAL, "v:C" }, \
    { "ln_out.bias", RWKV_GLOBAL, "v:C" }, \
    { "head.weight", RWKV_GLOBAL, "V,C" }, \
    { "blocks.%d.ln1.weight", RWKV_LAYER, "v:C" }, \
    { "blocks.%d.ln1.bias", RWKV_LAYER, "v:C" }, \
    { "blocks.%d.ln2.weight", RWKV_LAYER, "v:C" }, \
    { "blocks.%d.ln2.bias", RWKV_LAYER, "v:C" }

/* The four square projections of the time mix. */
#define RWKV_SPEC_ATT_LINEAR \
    { "blocks.%d.att.key.weight", RWKV_LAYER, "C,C" }, \
    { "blocks.%d.att.value.weight", RWKV_LAYER, "C,C" }, \
    { "blocks.%d.att.receptance.weight", RWKV_LAYER, "C,C" }, \
    { "blocks.%d.att.output.weight", RWKV_LAYER, "C,C" }

/* A LoRA rank a version reports (rwkv-tool info): its name and the
 * struct rwkv_info field that holds it. */
struct rwkv_rank {
    const char *label;
    size_t info_offset;         /* offsetof(struct rwkv_info, lora_...) */
};

struct rwkv_model;

struct rwkv_version {
    int version;                /* 4, 5, 6, 7 */
    /* Tokens per sequence-mode chunk (scratch rows of a context). */
    int seq_chunk;
    /* Whether file f is this version, told from its key names as the
     * official package does; fills info->minor and info->version_name.
     * Versions are tried in list order; the last one accepts anything. */
    int (*detect)(const ckpt_file *f, struct rwkv_info *info);
    /* The tensors this version (info->minor) needs, in check order. */
    const struct rwkv_tensor_spec *(*tensors)(const ckpt_file *f, const struct rwkv_info *info);
    /* Reads the version's sizes (heads, LoRA ranks) from tensor shapes
     * into d (C, V, F already set).  heads_tensor names the tensor the
     * head layout comes from (NULL: no heads). */
    void (*read_dims)(const ckpt_file *f, const struct rwkv_info *info, struct rwkv_dims *d);
    const char *heads_tensor;
    /* The LoRA ranks it has, in the order rwkv-tool info shows them;
     * n_ranks may be 0. */
    const struct rwkv_rank *ranks;
    int n_ranks;
    /* State floats per layer (the official order, rwkv.h). */
    size_t (*layer_floats)(const struct rwkv_info *info);
    /* Writes the zero state of all layers; NULL: all zeros. */
    void (*state_init)(const struct rwkv_info *info, float *state);
    /* Builds m->weights from m->file (tensors validated; allocations made
     * with model_alloc / model_matrix, freed with the model).  0, or -1
     * with err. */
    int (*prepare)(struct rwkv_model *m, char *err, size_t errlen);
    /* Scratch of one evaluation context for chunks of up to chunk tokens;
     * NULL when out of memory.  work_free(NULL) does nothing. */
    void *(*work_new)(const struct rwkv_model *m, struct kpool *pool, int chunk);
    void (*work_free)(void *work);
    /* One layer over a chunk: x[T][C] in/out; state: that layer's floats. */
    void (*layer)(const struct rwkv_model *m, void *work, int layer, float *x, int T,
                  float *state);
    /* Test hook (rwkv7_test.h): later layers run in work leave out the
     * terms in mask.  NULL for versions without such terms. */
    void (*test_drop_terms)(void *work, unsigned mask);
};

extern const struct rwkv_version rwkv4_version;
extern const struct rwkv_version rwkv5_version;
extern const struct rwkv_version rwkv6_version;
extern const struct rwkv_version rwkv7_version;

/* The versions the loader knows, in detection order, NULL-terminated. */
extern const struct rwkv_version *const rwkv_versions[];
/* The entry of rwkv_versions for version (4, 5, 6, 7); NULL if none. */
const struct rwkv_version *rwkv_version_of(int version);

#endif
