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

#include "engine/load/checkpoint.h"
#include "engine/rwkv.h"

struct kpool;
struct rwkv_history;

/* Where a required tensor appears. */
enum rwkv_scope {
    RWKV_GLOBAL,            /* once */
    RWKV_LAYER,             /* every layer */
    RWKV_FIRST_LAYER,       /* layer 0 only (ln0) */
    RWKV_LATER_LAYERS,      /* layers >= 1 (RWKV-7 v0/v1/v2: layer 0 makes v_first) */
};

/* How rwkv-tool mkmodel draws a tensor's values, in the ranges trained
 * models have: 'U' uniform in [a, b]; 'N' normal, mean a and standard
 * deviation b, scaled by per: NULL none, "*X" times 1/sqrt(X), "/X"
 * divided by sqrt(X), X a size symbol (see below). */
struct rwkv_init {
    char dist;
    double a, b;
    const char *per;
};
#define RWKV_U(lo, hi) { 'U', (lo), (hi), NULL }
#define RWKV_N(mean, sd, per) { 'N', (mean), (sd), (per) }

/* A tensor of the version: name (printf format taking the layer), where
 * it appears, and its shape.  Shapes are comma-separated dimensions, each
 * a number or a size symbol (C n_embd, V vocab, F ffn, H heads, N head
 * size, Dw/Da/Dv/Dg/Dm LoRA ranks, Dm5 = 5 Dm, Q and Dk RWKV-7b's DEA
 * widths); "v:X" is a vector of X
 * elements in any shape that squeezes to [X] (official files store
 * [1][1][C]); "A|B" accepts either shape.  stored is the shape released
 * files have (NULL: shape), and init how mkmodel fills it.  Tables list
 * the tensors in the order released files do (what mkmodel writes); the
 * loader checks the once-only ones first, then each layer's.  They end
 * with a NULL name. */
struct rwkv_tensor_spec {
    const char *name;
    enum rwkv_scope scope;
    const char *shape;
    const char *stored;
    struct rwkv_init init;
};

/* The sizes shapes are written in; -1 while unknown.  Q: the width of
 * RWKV-7b's DEA queries and keys; Dk: the width of its compact keys and
 * values. */
struct rwkv_dims {
    int64_t C, V, F, H, N, Dw, Da, Dv, Dg, Dm, Q, Dk;
};

/* Pieces every version's table has. */
#define RWKV_SPEC_EMB { "emb.weight", RWKV_GLOBAL, "V,C", NULL, RWKV_N(0, 1, NULL) }
#define RWKV_SPEC_NORM(prefix, scope, lo, hi) \
    { prefix ".weight", scope, "v:C", "C", RWKV_U(lo, hi) }, \
    { prefix ".bias", scope, "v:C", "C", RWKV_N(0, 0.05, NULL) }
#define RWKV_SPEC_BLOCK_NORMS \
    RWKV_SPEC_NORM("blocks.%d.ln1", RWKV_LAYER, 0.8, 1.2), \
    RWKV_SPEC_NORM("blocks.%d.ln2", RWKV_LAYER, 0.8, 1.2)
#define RWKV_SPEC_LN0 RWKV_SPEC_NORM("blocks.0.ln0", RWKV_FIRST_LAYER, 0.8, 1.2)
#define RWKV_SPEC_OUT \
    RWKV_SPEC_NORM("ln_out", RWKV_GLOBAL, 0.8, 1.2), \
    { "head.weight", RWKV_GLOBAL, "V,C", NULL, RWKV_N(0, 3, "*C") }
/* A square projection of the time mix, "blocks.%d.att.NAME.weight". */
#define RWKV_SPEC_LINEAR(name) \
    { "blocks.%d.att." name ".weight", RWKV_LAYER, "C,C", NULL, RWKV_N(0, 1, "*C") }
/* A token-shift mix [1][1][C] (or another per-channel vector so stored). */
#define RWKV_SPEC_MIX(name, lo, hi) { name, RWKV_LAYER, "v:C", "1,1,C", RWKV_U(lo, hi) }

/* The end of a table. */
#define RWKV_SPEC_END { NULL, 0, NULL, NULL, RWKV_U(0, 0) }

/* A LoRA rank a version reports (rwkv-tool info): its name and the
 * struct rwkv_info field that holds it. */
struct rwkv_rank {
    const char *label;
    size_t info_offset;         /* offsetof(struct rwkv_info, lora_...) */
};

struct rwkv_model;

struct rwkv_version {
    int version;                /* 4, 5, 6, 7, 8 (rwkv_info.version) */
    /* The minors (rwkv_info.minor) it covers: minor_first ..
     * minor_first + n_minors - 1 (RWKV-7a is 7 minor 1, 7b 7 minor 2). */
    int minor_first;
    /* Tokens per sequence-mode chunk (scratch rows of a context). */
    int seq_chunk;
    /* Whether file f is this version, told from its key names as the
     * official package does; fills info->minor and info->version_name.
     * Versions are tried in list order; the last one accepts anything. */
    int (*detect)(const ckpt_file *f, struct rwkv_info *info);
    /* The tensors this version (info->minor) needs in file f. */
    const struct rwkv_tensor_spec *(*tensors)(const ckpt_file *f, const struct rwkv_info *info);
    /* The tensors released files of each minor have (mkmodel writes
     * written[minor - minor_first]); n_minors entries. */
    const struct rwkv_tensor_spec *const *written;
    int n_minors;
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
    /* One layer over a chunk: x[T][C] in/out; state: that layer's floats;
     * tokens: the chunk's T token ids, for versions with per-token tables
     * (RWKV-7a, 8: rows read from the mapped file as the tokens come).
     * The driver runs layers 0 .. n_layer - 1 in order for each chunk. */
    void (*layer)(const struct rwkv_model *m, void *work, int layer, const int32_t *tokens,
                  float *x, int T, float *state);
    /* One layer over a batch (rwkv_eval_batch): row t of x[T][C] is one
     * token of its own conversation, whose floats of that layer are
     * states[t] (T <= the work's chunk).  Every row must come out
     * bit-identical to layer() on that token alone, with each weight
     * matrix read once for all T (k_matvec_many).  tokens[t]: row t's
     * token (for per-token tables).  NULL: the driver runs the states one
     * after the other instead (a new version may start that way). */
    void (*layer_batch)(const struct rwkv_model *m, void *work, int layer,
                        const int32_t *tokens, float *x, int T, float *const *states);
    /* Sizes of a state's history (history.h) per token: the saved floats
     * (rwkv_info.history_floats) and the derived ones; NULL: the version
     * keeps no history. */
    void (*history_sizes)(const struct rwkv_model *m, size_t *saved, size_t *derived);
    /* Tells work the history of the state the next layers run on (the
     * driver calls it before each state's chunks; NULL when none). */
    void (*bind_history)(void *work, struct rwkv_history *h);
    /* Test hook (rwkv7_test.h): later layers run in work leave out the
     * terms in mask.  NULL for versions without such terms. */
    void (*test_drop_terms)(void *work, unsigned mask);
};

extern const struct rwkv_version rwkv4_version;
extern const struct rwkv_version rwkv5_version;
extern const struct rwkv_version rwkv6_version;
extern const struct rwkv_version rwkv7_version;
extern const struct rwkv_version rwkv7a_version;
extern const struct rwkv_version rwkv7b_version;
extern const struct rwkv_version rwkv8_version;

/* The versions the loader knows, in detection order, NULL-terminated. */
extern const struct rwkv_version *const rwkv_versions[];
/* The entry of rwkv_versions for version (4 ... 8) and minor (rwkv_info's
 * version and minor: 7a is 7.1); NULL if none. */
const struct rwkv_version *rwkv_version_of(int version, int minor);
/* The value of a size symbol ("C", "Dm5", "64"); -1 while unknown. */
int64_t rwkv_dim_value(const struct rwkv_dims *d, const char *sym, size_t len);

#endif
