/*
 * blocks.h - pieces the RWKV-4/5/6 forward passes share.
 *
 * Loading helpers for prepare(), the RWKV-4/5/6 channel mix, the token
 * shift, the RWKV-5/6 matrix-state wkv, and the scratch of a context.
 * Everything works on chunks of T tokens: T = 1 is RNN mode;
 * larger T batches the projections (sequence mode) while the recurrences
 * stay sequential, so both modes compute the same thing.
 *
 * Activations are [T][n] float32 rows.  Internal to engine/.
 */
#ifndef RWKV_BLOCKS_H
#define RWKV_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/model/weights.h"

/* Tokens per chunk in sequence mode (rwkv_version.seq_chunk of 4/5/6): as
 * RWKV-7's.  Each chunk converts or quantizes every weight block once for
 * its products, so 64 spent several times RWKV-7's share of a prompt on that
 * (bf16_rows_to_f32, sgemm packing) for a few MiB less scratch. */
#define BLOCKS_CHUNK RWKV_SEQ_CHUNK
/* GroupNorm ln_x of RWKV-5/6 as the official package runs it. */
#define BLOCKS_LNX_EPS 64e-5f

/* The channel mix of RWKV-4 and 5.x (mix "time_mix") and 6 ("time_maa"),
 * for their tensor tables. */
#define BLOCKS_SPEC_FFN(mix) \
    RWKV_SPEC_MIX("blocks.%d.ffn." mix "_k", 0, 1), \
    RWKV_SPEC_MIX("blocks.%d.ffn." mix "_r", 0, 1), \
    { "blocks.%d.ffn.key.weight", RWKV_LAYER, "F,C", NULL, RWKV_N(0, 1, "*C") }, \
    { "blocks.%d.ffn.receptance.weight", RWKV_LAYER, "C,C", NULL, RWKV_N(0, 1, "*C") }, \
    { "blocks.%d.ffn.value.weight", RWKV_LAYER, "C,F", NULL, RWKV_N(0, 0.5, "/F") }
/* Per block ln1, ln2, then (block 0) ln0, as RWKV-LM's state dict lists them. */
#define BLOCKS_SPEC_NORMS RWKV_SPEC_BLOCK_NORMS, RWKV_SPEC_LN0

/* Collects tensors for prepare(); the first failure is kept in err and
 * later calls do nothing, so prepare can load everything, then check once. */
struct blocks_loader {
    rwkv_model *m;
    char *err;
    size_t errlen;
    int failed;
};

/* A float32 copy of a tensor that must hold n elements (any shape with
 * that many elements: time_mix [1,1,C] is a vector of C), owned by the model. */
float *blocks_vector(struct blocks_loader *ld, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A per-channel vector [H*N] from a tensor of H*N elements, or of H
 * (one value per head, repeated over the head's N channels: RWKV-5.0/5.1).
 * NULL without an error when absent and !required. */
float *blocks_head_vector(struct blocks_loader *ld, int required, int H, int N,
                          const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The RWKV-5/6 bonus u per channel [H*N]: time_faaaa as stored, or
 * exp(time_first) from files that store log u (5.0). */
float *blocks_bonus(struct blocks_loader *ld, int layer);
/* A kernel matrix [rows][cols] from a 2-D tensor.  transpose: stored
 * [in][out] (LoRA w1/w2).  dtype as kmat_from_tensor; made by model_matrix
 * (in place, from the conversion cache, or converted). */
void blocks_matrix(struct blocks_loader *ld, struct kmat *mat, int rows, int cols,
                   int transpose, enum rwkv_dtype dtype, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
/* One [rows][cols] slice (index i of dimension 0) of a 3-D tensor stored
 * [n][cols][rows] (time_maa_w2), as a transposed kernel matrix. */
void blocks_matrix_slice(struct blocks_loader *ld, struct kmat *mat, int i, int rows,
                         int cols, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* Sets a formatted one-line error (if none yet). */
void blocks_fail(struct blocks_loader *ld, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* LayerNorm / GroupNorm parameters. */
struct blocks_norm {
    float *weight, *bias;
};
void blocks_norm_load(struct blocks_loader *ld, struct blocks_norm *norm, size_t n,
                      const char *prefix);

/* A 4/5/6 version's m->weights starts with this. */
struct blocks_weights {
    int n_layer;
    int wide_width;             /* the widest scratch rows (FFN, LoRA) */
};

/* A context's scratch rows for one chunk: buf[i] holds chunk x width
 * floats, wide holds chunk x wide_width (rwkv_version.work_new/free).
 * rows: NULL while the chunk is one conversation's consecutive tokens (its
 * layer floats passed as `state`); during a batch (layer_batch), row t is
 * one token of its own conversation, whose layer floats are rows[t], and
 * `state` is NULL. */
#define BLOCKS_N_BUFS 12
struct blocks_work {
    struct kpool *pool;
    int width, wide_width;
    float *buf[BLOCKS_N_BUFS];
    float *wide;
    float *const *rows;
};

/* Floats at offset off in the layer state of row t (see blocks_work). */
static inline float *blocks_state(const struct blocks_work *w, float *state, int t, size_t off)
{
    return (w->rows ? w->rows[t] : state) + off;
}
void *blocks_work_new(const rwkv_model *m, struct kpool *pool, int chunk);
void blocks_work_free(void *work);

/* Y[T][W->rows] = X[T][W->cols] W^T (a matvec when T = 1; in a batch,
 * each row bit-identical to its matvec, the weights read once for all). */
void blocks_linear(const struct blocks_work *w, const struct kmat *W, const float *X, int T,
                   float *Y);
/* n independent products of T rows each, the same way. */
void blocks_products(const struct blocks_work *w, const struct k_product *p, int n, int T);
/* A step over the rows [t0, t1) of a chunk. */
typedef void blocks_rows_fn(void *ctx, int t0, int t1);
/* Runs fn over [0, T) in one span of rows per pool thread (inline for
 * short chunks): for the per-token steps between the products, whose rows
 * never read each other, so the split changes no result. */
void blocks_rows(const struct blocks_work *w, int T, blocks_rows_fn *fn, void *ctx);
/* y[T][n] = LayerNorm(x) row by row. */
void blocks_layernorm(const struct blocks_norm *norm, const float *x, int T, int n, float *y);
/* Token shift, prev being the n floats at offset off of the layer state:
 * sx[0] = prev, sx[t] = xx[t-1]; then prev = xx[T-1] (the state now holds
 * this chunk's last LayerNorm output).  In a batch, each row's own. */
void blocks_shift(const struct blocks_work *w, const float *xx, int T, int n, float *state,
                  size_t off, float *sx);
/* y = x * mix + sx * (1 - mix): the static token mix of RWKV-4/5. */
void blocks_mix(const float *xx, const float *sx, const float *mix, int T, int n, float *y);
/* y = x + (sx - x) * maa: RWKV-6's form of the same interpolation (maa
 * may be a [T][n] array when per_token, else one [n] vector). */
void blocks_maa(const float *xx, const float *sx, const float *maa, int per_token, int T,
                int n, float *y);
/* x[i] += y[i] for count elements. */
void blocks_add(float *x, const float *y, size_t count);
/* In place: x = 1 / (1 + e^-x), and x = x sigmoid(x). */
void blocks_sigmoid(float *x, size_t count);
void blocks_silu(float *x, size_t count);

/* The RWKV-4/5/6 channel mix ("FFN"):
 *   k = relu(K kx)^2,  r = sigmoid(R rx),  x += r * (V k)
 * with kx, rx the token-shift mixes of LayerNorm(x) (ln2). */
struct blocks_ffn {
    struct blocks_norm ln;
    float *mix_k, *mix_r;   /* time_mix_k/r (4, 5) or time_maa_k/r (6) */
    int maa;                /* 1: RWKV-6 maa form */
    struct kmat key, value, receptance;
    int ffn_size;
};
void blocks_ffn_load(struct blocks_loader *ld, struct blocks_ffn *ffn, int layer, int maa);
/* x[T][C] += channel mix; the ffn x_prev is at offset off of the layer
 * state (updated). */
void blocks_ffn_forward(const struct blocks_ffn *ffn, struct blocks_work *w, float *x, int T,
                        int n_embd, float *state, size_t off);

/* RWKV-5/6 wkv over T tokens, all heads (each head on a pool thread):
 *   out_t[j] = sum_i r_t[i] (u[i] k_t[i] v_t[j] + S[i][j])
 *   S[i][j]  = k_t[i] v_t[j] + w_t[i] S[i][j]
 * S is the state [H][N][N] (key index first) at offset off of the layer
 * state (each row's own in a batch); r, k, v, out are [T][H*N]; u is
 * [H*N]; w is [H*N] when w_stride is 0 (5.x), [T][H*N] when it is H*N (6:
 * a decay per token). */
void blocks_wkv5(const struct blocks_work *work, int T, int H, int N, const float *r,
                 const float *k, const float *v, const float *w, size_t w_stride,
                 const float *u, float *state, size_t off, float *out);
/* out[T][C] = GroupNorm(out) (H groups, eps 64e-5), times g when g is
 * not NULL (g already holds silu of the gate). */
void blocks_lnx_gate(const struct blocks_norm *ln_x, float *out, const float *g, int T, int C,
                     int H);

/* rwkv_version.read_dims for 5 and 6: heads from a [H][N] tensor. */
void blocks_heads(const ckpt_file *f, const char *name, struct rwkv_dims *d);
/* The RWKV-5/6 state per layer: att x_prev [C], wkv [H][N][N], ffn x_prev [C]. */
size_t blocks_matrix_state_floats(const struct rwkv_info *info);

#endif
