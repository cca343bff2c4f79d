/*
 * rwkv.h - the public face of the rwkv-chat engine.
 *
 * Loads an official RWKV checkpoint (.pth or .safetensors, RWKV-4/5/6/7),
 * holds recurrent states, and advances a state over tokens while producing
 * logits.  The engine never prints: every fallible call fills a caller
 * buffer `err` (at most `errlen` bytes, always NUL-terminated) with one line
 * naming the file, the object and the problem, and returns an error value.
 *
 * Objects and threads:
 *   rwkv_model    the weights, loaded once.  Read-only after rwkv_model_load
 *                 returns: any number of threads may use one model at once
 *                 (through their own contexts), and every rwkv_model_* /
 *                 rwkv_state_new call on it is safe from any thread.  Free
 *                 it last, after every context and state made from it.
 *   rwkv_context  what evaluating needs besides the weights: a pool of
 *                 worker threads and the scratch buffers of one chunk.  Made
 *                 from a model; one thread at a time per context (calls on
 *                 one context must not overlap).  Make one per thread that
 *                 evaluates: two contexts of one model run in parallel.
 *   rwkv_state    a conversation's recurrent state, a plain value of its
 *                 model.  Used by one call at a time; any context of the
 *                 same model can advance it, with the same results as any
 *                 other (bit-identical: a context holds no numbers that
 *                 outlive a call).
 */
#ifndef RWKV_H
#define RWKV_H

#include <stddef.h>
#include <stdint.h>

#include "engine/base/dtype.h"

#define RWKV_ERRLEN 512

/* What a model is, read from its tensor shapes. */
struct rwkv_info {
    int version;            /* 4, 5, 6, 7 or 8 */
    int minor;              /* 5.0/5.1/5.2 -> 0/1/2; 7 -> 0, 7a (DeepEmbed) -> 1,
                             * 7b (DEA) -> 2; otherwise 0 */
    char version_name[8];   /* "4", "5.2", "6", "7", "7a", "7b", "8" */
    int n_layer;
    int n_embd;
    int n_head;             /* 0 for RWKV-4 */
    int head_size;          /* 0 for RWKV-4 */
    int n_vocab;
    int ffn_size;
    int lora_decay, lora_aaa, lora_mv, lora_gate, lora_maa; /* 0 if absent */
    int dea_width;          /* RWKV-7b: width of the DEA queries and keys; else 0 */
    enum rwkv_dtype stored_dtype;   /* F32, F16 or BF16: the file's weights */
    enum rwkv_dtype compute_dtype;  /* what the kernels read */
    uint64_t n_params;
    uint64_t file_size;
    uint64_t bytes_per_token;       /* weight bytes one generated token reads */
    uint64_t fingerprint;           /* identity hash of shapes + weights (and
                                     * the LoRA adapters and their scales) */
    int n_lora;                     /* adapters merged at load */
    size_t state_floats;            /* floats in a state, official order */
    size_t history_floats;          /* RWKV-7b: floats a state keeps per token of
                                     * its history (n_layer x 2 x Dk, Dk the
                                     * compact width, qkv.k1's); 0: none */
    size_t history_max;             /* RWKV-7b: the most tokens a state's history
                                     * holds (RWKV_HISTORY_MAX); 0: no bound */
    int n_extra_tensors;            /* tensors present but not used */
};

/* Whether a load that converts weights (--dtype q8, q4, or a float format
 * other than the file's) keeps them in a conversion cache file under
 * $XDG_CACHE_HOME/rwkv-chat/ (~/.cache/rwkv-chat/; never beside the model)
 * and reads them from it next time.  Writing one removes the least
 * recently used caches there past rwkv_cache_limit() bytes. */
enum rwkv_cache_mode {
    RWKV_CACHE_MODE_ON = 0,     /* default */
    RWKV_CACHE_MODE_OFF,        /* neither read nor write a cache */
};

/* A LoRA adapter in RWKV-PEFT's layout, merged into the weights at load:
 * for each NAME.lora_A [r][in] and NAME.lora_B [out][r] in the file,
 * NAME.weight becomes NAME.weight + scale * lora_B @ lora_A (scale is
 * RWKV-PEFT's lora_alpha / r); any other tensor in the file replaces the
 * model's tensor of that name (RWKV-PEFT saves the "ln"/"time" parts it
 * trained beside the LoRA pairs).  Adapters apply in order. */
struct rwkv_lora {
    const char *path;
    float scale;
};

struct rwkv_load_options {
    enum rwkv_dtype dtype;  /* RWKV_DTYPE_AUTO: as stored */
    int n_threads;          /* threads of the load (conversion, checks), and the
                             * default of its contexts; 0: rwkv_default_threads() */
    enum rwkv_cache_mode cache;
    uint64_t cache_max;     /* the most bytes the conversion caches may hold after
                             * this load writes one; 0: rwkv_cache_limit() */
    int keep_mapped;        /* 1: the weights stay where the load read them (for
                             * programs that only read the model's facts); 0:
                             * they move into one huge-page mapping for speed */
    size_t history_max;     /* RWKV-7b: a smaller limit on a state's history
                             * than RWKV_HISTORY_MAX (1 to it; 0: that), so
                             * that tests reach it in a few tokens */
};

/* What the conversion cache did during a load. */
enum rwkv_cache_result {
    RWKV_CACHE_NONE = 0,        /* weights used as stored: nothing to cache */
    RWKV_CACHE_USED,            /* converted weights read from path */
    RWKV_CACHE_WRITTEN,         /* converted at load and saved to path */
    RWKV_CACHE_NOT_WRITTEN,     /* converted at load, not saved: reason */
    RWKV_CACHE_OFF,             /* converted at load; the cache is turned off */
};

struct rwkv_cache_info {
    enum rwkv_cache_result result;
    const char *path;           /* the cache file, "" when none */
    const char *reason;         /* WRITTEN: why (re)built ("no cache yet", "the
                                 * model file changed..."); NOT_WRITTEN: why not */
    double seconds;             /* USED: mapping and checking the file; WRITTEN:
                                 * writing it (the conversion not included) */
};

typedef struct rwkv_model rwkv_model;
typedef struct rwkv_context rwkv_context;
typedef struct rwkv_state rwkv_state;

/* Opens and validates the checkpoint at path: shapes, and no NaN or
 * infinite value in any weight it uses ("v7.pth: tensor
 * blocks.0.att.key.weight: 3 NaN/Inf values").  NULL on error (err filled).
 * opts may be NULL for defaults.  Free with rwkv_model_free. */
rwkv_model *rwkv_model_load(const char *path, const struct rwkv_load_options *opts,
                            char *err, size_t errlen);
/* rwkv_model_load with n_lora LoRA adapters merged in, in order (before
 * any conversion: the conversion cache is keyed on them too).  An adapter
 * that does not fit the model fails the load with one line naming the
 * adapter file and the tensor. */
rwkv_model *rwkv_model_load_lora(const char *path, const struct rwkv_load_options *opts,
                                 const struct rwkv_lora *lora, int n_lora, char *err,
                                 size_t errlen);
/* The steps of a load, in order; each is reported from done 0 to done ==
 * total (steps a load does not need are not reported). */
enum rwkv_load_step {
    RWKV_LOAD_VERIFY = 0,   /* checking the file's zip CRC-32s (a .pth's first
                             * start with the cache on, every start with it
                             * off): bytes */
    RWKV_LOAD_READ,         /* reading the weights (and checking them for NaN/Inf): bytes */
    RWKV_LOAD_CACHE_READ,   /* mapping and checking the conversion cache: 0 then 1 of 1 */
    RWKV_LOAD_CONVERT,      /* converting to the asked format (the first start
                             * only, when the cache is on): bytes of the source */
    RWKV_LOAD_CACHE_WRITE,  /* writing the conversion cache: 0 then 1 of 1 */
};
/* Called on the loading thread, often (every megabytes): keep it cheap. */
typedef void (*rwkv_load_progress_fn)(void *data, enum rwkv_load_step step, uint64_t done,
                                      uint64_t total);
/* rwkv_model_load_lora reporting its progress to fn (NULL: none). */
rwkv_model *rwkv_model_load_progress(const char *path, const struct rwkv_load_options *opts,
                                     const struct rwkv_lora *lora, int n_lora,
                                     rwkv_load_progress_fn fn, void *data, char *err,
                                     size_t errlen);
void rwkv_model_free(rwkv_model *model);
const struct rwkv_info *rwkv_model_info(const rwkv_model *model);
/* The directory of the conversion caches (and of the records of checked
 * files): $XDG_CACHE_HOME/rwkv-chat or ~/.cache/rwkv-chat.  0, or -1 when
 * neither variable gives one. */
int rwkv_cache_dir(char *out, size_t len);
/* The most bytes the conversion caches may hold: $RWKV_CHAT_CACHE_MAX
 * (K, M, G suffixes: powers of 1024), default 16 GiB. */
uint64_t rwkv_cache_limit(void);
/* A size as RWKV_CHAT_CACHE_MAX takes it ("8G", "500M", "1.5G", "0"):
 * bytes, or with a K, M or G suffix (powers of 1024).  0, or -1. */
int rwkv_cache_size_parse(const char *text, uint64_t *bytes);
/* What the conversion cache did at load (valid while the model lives). */
const struct rwkv_cache_info *rwkv_model_cache(const rwkv_model *model);
/* Names of tensors present in the file but not used by the version (for
 * reporting); i < info->n_extra_tensors. */
const char *rwkv_model_extra_tensor(const rwkv_model *model, int i);

/* A state is the flat float array of the official package's order (see
 * ../shared/fixtures/README.md): RWKV-4 five vectors per layer (att x_prev,
 * aa, bb, pp, ffn x_prev); RWKV-5/6/7 att x_prev [C], wkv [H][N][N],
 * ffn x_prev [C] per layer (RWKV-7b then the DEA query's previous value
 * [Q]).  New states are the official zero state (pp = -1e30 for RWKV-4).
 *
 * RWKV-7b states also hold a history that grows with every token fed: the
 * token ids and, per token and layer, the DEA attention's compact key and
 * value (2 x Dk floats, Dk 32 in the released model).  It is part of the
 * state's value: clone, copy, reset and state files carry it.  It holds at most RWKV_HISTORY_MAX
 * tokens (rwkv_info.history_max): an rwkv_eval or rwkv_eval_batch that
 * would pass that is refused (-1, err says so, state unchanged); reset the
 * state or start a new conversation.  Besides, such a state keeps the
 * keys and values the attention derives from it (not saved: rebuilt from
 * the history when missing), L x (Q + C) floats per token. */
#define RWKV_HISTORY_MAX 16384
/* NULL when out of memory. */
rwkv_state *rwkv_state_new(const rwkv_model *model);
rwkv_state *rwkv_state_clone(const rwkv_state *state);
/* Makes dst (a state of the same model) equal to src.  0, or -1 when out
 * of memory for src's history (RWKV-7b only; never when dst once held as
 * many tokens, as when restoring a copy taken before an evaluation): dst
 * is then unchanged. */
int rwkv_state_copy(rwkv_state *dst, const rwkv_state *src);
void rwkv_state_reset(rwkv_state *state);
void rwkv_state_free(rwkv_state *state);
size_t rwkv_state_floats(const rwkv_state *state);
float *rwkv_state_data(rwkv_state *state);
const float *rwkv_state_cdata(const rwkv_state *state);
/* The memory the state holds in bytes (its floats, its history and what
 * is derived from it), for caches that count their bytes. */
size_t rwkv_state_bytes(const rwkv_state *state);
/* Tokens in the state's history (RWKV-7b); 0 for other versions. */
size_t rwkv_state_history(const rwkv_state *state);
/* The history as bytes, for state files: rwkv_state_history_size bytes
 * (0 when the model keeps no history), little-endian: u64 n_tokens, n
 * i32 token ids, zero bytes to a multiple of 8, then per token the
 * history_floats float32 of rwkv_info (per layer the compact key [Dk],
 * then the compact value [Dk]).  rwkv_state_history_write fills out. */
size_t rwkv_state_history_size(const rwkv_state *state);
void rwkv_state_history_write(const rwkv_state *state, void *out);
/* Checks such bytes against model: 0, or -1 with err (sizes that do not
 * add up, more than history_max tokens, a token id out of range, NaN or
 * infinity). */
int rwkv_state_history_check(const rwkv_model *model, const void *data, size_t size, char *err,
                             size_t errlen);
/* Replaces state's history with those bytes (checked first): 0, or -1 with
 * err (the check, out of memory); state unchanged on failure. */
int rwkv_state_history_read(rwkv_state *state, const void *data, size_t size, char *err,
                            size_t errlen);

/* A context for evaluating model's states with n_threads threads (the
 * caller's included; n_threads <= 0: the load's n_threads).  NULL on error
 * (err filled).  Free with rwkv_context_free before the model. */
rwkv_context *rwkv_context_new(const rwkv_model *model, int n_threads, char *err,
                               size_t errlen);
void rwkv_context_free(rwkv_context *ctx);
const rwkv_model *rwkv_context_model(const rwkv_context *ctx);
int rwkv_context_threads(const rwkv_context *ctx);
/* Asked by rwkv_eval on the calling thread before each piece of tokens and
 * between the layers of a piece (so a stop waits for one layer over one
 * piece at most); nonzero stops the evaluation. */
typedef int (*rwkv_cancel_fn)(void *data);
/* Sets (fn NULL: removes) the cancel callback of ctx's evaluations. */
void rwkv_context_set_cancel(rwkv_context *ctx, rwkv_cancel_fn fn, void *data);
/* rwkv_eval: the cancel callback stopped the evaluation. */
#define RWKV_CANCELLED (-2)

/* Advances state (of ctx's model) over tokens[0..n-1] (n >= 1).  If logits
 * is not NULL it receives n_vocab floats: the logits after the last token,
 * or, when all_logits is set, n rows of n_vocab (one per token).  Sequence
 * mode is used for n > 1.  Returns 0, or -1 with err filled (bad token id,
 * a state of another model, an RWKV-7b history that would pass
 * history_max or no memory for it: the state is then unchanged), or RWKV_CANCELLED with err filled when the
 * context's cancel callback stopped it: the state is then partly advanced
 * (some layers over some tokens, no prefix's state) and the logits
 * undefined; the caller restores the state from a copy. */
int rwkv_eval(rwkv_context *ctx, rwkv_state *state, const int32_t *tokens, size_t n,
              float *logits, int all_logits, char *err, size_t errlen);
/* Advances n_states distinct states (a batch of conversations, n_states
 * >= 1) by one token each: states[i] over tokens[i].  If logits is not
 * NULL, row i of n_vocab floats receives states[i]'s logits.
 *
 * The results (logits and states) are bit-identical to n_states single
 * rwkv_eval calls of one token each, in any order, on any context of the
 * model: every row goes through RNN mode's own kernels and steps.  What
 * changes is the cost: each weight matrix is read from memory once per
 * call for all the states (the token shift and the recurrences run per
 * state), so a step of several conversations costs little more than one
 * (a server's concurrent streams).  Batches longer than the sequence chunk
 * run in pieces of it.  Every version but RWKV-7b is batched (its states run
 * one after the other, with the same results).
 *
 * Checks everything before it advances any state: n_states 0, a NULL
 * array or state, a state of another model, the same state twice, a
 * token out of range, or an RWKV-7b history that would pass history_max
 * gives -1 with err (naming the entry) and no state
 * changed; otherwise 0. */
int rwkv_eval_batch(rwkv_context *ctx, rwkv_state *const *states, const int32_t *tokens,
                    size_t n_states, float *logits, char *err, size_t errlen);
/* Sequence-mode piece (every version works through a prompt in pieces of
 * this many tokens or a divisor of it): feeding a prompt in multiples of
 * this gives bit-identical results to one rwkv_eval call. */
#define RWKV_SEQ_CHUNK 512

/* Loads a state-tuned initial state (a .pth/.safetensors holding
 * blocks.N.att.time_state tensors, [n_head, head_size, head_size]) into
 * state: token-shift parts zero, wkv the time_state as stored for RWKV-7
 * and transposed for RWKV-5/6 (as the official loaders do).  0, or -1 with
 * err naming the tensor that does not fit; the state is unchanged then. */
int rwkv_state_load_tuned(const rwkv_model *model, rwkv_state *state, const char *path,
                          char *err, size_t errlen);

/* Worker threads by default: the CPUs this process may run on (its
 * affinity mask, as set by taskset or a container's cpuset), else the
 * online CPUs. */
int rwkv_default_threads(void);
/* The kernel set chosen for this CPU ("avx512vnni", "avx2", "portable"). */
const char *rwkv_kernels_name(void);
/* Makes the engine use kernel set `name` ("avx512vnni", "avx512", "avx2",
 * "portable") instead of the best this CPU can run, with the sets after it
 * for the formats it lacks: to measure a slower CPU's kernels on a faster
 * one.  Call first, before any model loads and from one thread: it holds
 * for the whole process.  0, or -1 and err when the name is unknown, this
 * CPU cannot run the set, or the kernels were already chosen. */
int rwkv_kernels_select(const char *name, char *err, size_t errlen);

#endif
