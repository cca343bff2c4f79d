/*
 * rwkv7a.c - RWKV-7a "DeepEmbed": RWKV-7 with a per-token modulation of
 * the channel mix.
 *
 * Written against the official package's RWKV_x070 with RWKV_DE_VERSION=1
 * (CMix_one / CMix_seq).  The time mix, state and every RWKV-7 tensor are
 * RWKV-7's (rwkv7_family.h).  Each layer adds s_emb [V][1024] (a 32x32
 * matrix per token), s_emb_x [1024][C], s1 [C][32], s2 [32][F], s0 [F].
 * With e = ln0(emb[token]) the token's embedding as the first layer sees
 * it and x = ln2(x) the channel mix's input (before the token shift):
 *
 *   M   = reshape_32x32(s_emb[token] + s_emb_x e)
 *   ss  = (x s1) M                       (a row vector of 32)
 *   k   = relu(Wk xk)^2 * (ss s2 + s0)
 *   x  += Wv k
 *
 * The package folds s_emb_x into a float copy of the whole s_emb table at
 * load; here the token's row is read from the mapped file and s_emb_x e is
 * one product per token, which gives the same numbers without the table
 * in memory.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kernels/pool.h"
#include "engine/model/rwkv7_family.h"
#include "engine/model/weights.h"

#define DE_SIDE 32                      /* the per-token matrix is 32x32 */
#define DE_SIZE (DE_SIDE * DE_SIDE)

struct de_layer {
    const struct ckpt_tensor *s_emb;    /* [V][1024], read a row at a time */
    struct kmat s_emb_x;                /* [1024][C] */
    struct kmat s1;                     /* [32][C] (stored [C][32]) */
    struct kmat s2;                     /* [F][32] (stored [32][F]) */
    const float *s0;                    /* [F] */
};

struct de_weights {
    struct de_layer *layers;
};

/* A context's scratch: RWKV-7's and, per chunk row, DeepEmbed's. */
struct de_work {
    void *base;                         /* rwkv7_work_new */
    float *mem;
    float *e;                           /* [chunk][C]: ln0(emb) of the chunk's tokens */
    float *mat;                         /* [chunk][1024]: each token's 32x32 matrix */
    float *h;                           /* [chunk][32]: x s1 */
    float *ss;                          /* [chunk][32]: (x s1) M */
    float *mod;                         /* [chunk][F]: ss s2 */
};

static const struct rwkv_tensor_spec v7a_specs[] = {
    RWKV7_SPEC_LAYERS,
    RWKV7A_SPEC_CMIX,
    RWKV_SPEC_OUT,
    RWKV_SPEC_END
};

static const struct rwkv_tensor_spec *const v7a_written[] = { v7a_specs };

/* RWKV-7's tensors with ffn.s_emb: DeepEmbed. */
static int rwkv7a_detect(const ckpt_file *f, struct rwkv_info *info)
{
    if (!ckpt_find(f, "blocks.0.att.x_r") || !ckpt_find(f, "blocks.0.ffn.s_emb.weight")) {
        return 0;
    }
    info->version = 7;
    info->minor = 1;
    snprintf(info->version_name, sizeof info->version_name, "7a");
    return 1;
}

static const struct rwkv_tensor_spec *rwkv7a_tensors(const ckpt_file *f,
                                                     const struct rwkv_info *info)
{
    (void)f;
    (void)info;
    return v7a_specs;
}

const void *rwkv7a_cmix_prepare(rwkv_model *m, char *err, size_t errlen)
{
    int L = m->info.n_layer, C = m->info.n_embd, F = rwkv7_ffn_size(m);
    struct de_weights *D;

    D = weights_alloc(m, sizeof *D);
    if (!D || !(D->layers = weights_alloc(m, (size_t)L * sizeof *D->layers))) {
        snprintf(err, errlen, "%s: out of memory", ckpt_shown_path(m->file));
        return NULL;
    }
    for (int i = 0; i < L; i++) {
        struct de_layer *l = &D->layers[i];

        l->s_emb = weights_tensor(m, "blocks.%d.ffn.s_emb.weight", i);
        if (rwkv7_matrix(m, &l->s_emb_x, weights_tensor(m, "blocks.%d.ffn.s_emb_x.weight", i),
                         0, DE_SIZE, C, 0, err, errlen) ||
            rwkv7_matrix(m, &l->s1, weights_tensor(m, "blocks.%d.ffn.s1", i), 1, DE_SIDE, C, 1,
                         err, errlen) ||
            rwkv7_matrix(m, &l->s2, weights_tensor(m, "blocks.%d.ffn.s2", i), 1, F, DE_SIDE, 1,
                         err, errlen) ||
            !(l->s0 = rwkv7_vector(m, weights_tensor(m, "blocks.%d.ffn.s0", i), F, err,
                                   errlen))) {
            return NULL;
        }
    }
    return D;
}

static int rwkv7a_prepare(rwkv_model *m, char *err, size_t errlen)
{
    const void *D;

    if (rwkv7_prepare(m, err, errlen) != 0 || !(D = rwkv7a_cmix_prepare(m, err, errlen))) {
        return -1;
    }
    rwkv7_set_variant(m, D);
    return 0;
}

void rwkv7a_work_free(void *work)
{
    struct de_work *wk = work;

    if (wk) {
        rwkv7_work_free(wk->base);
        free(wk->mem);
        free(wk);
    }
}

void *rwkv7a_work_new(const rwkv_model *m, struct kpool *pool, int chunk)
{
    size_t T = (size_t)chunk, C = (size_t)m->info.n_embd, F = (size_t)rwkv7_ffn_size(m);
    struct de_work *wk = calloc(1, sizeof *wk);

    if (!wk) {
        return NULL;
    }
    wk->base = rwkv7_work_new(m, pool, chunk);
    wk->mem = calloc(T * (C + DE_SIZE + 2 * DE_SIDE + F), sizeof *wk->mem);
    if (!wk->base || !wk->mem) {
        rwkv7a_work_free(wk);
        return NULL;
    }
    wk->e = wk->mem;
    wk->mat = wk->e + T * C;
    wk->h = wk->mat + T * DE_SIZE;
    wk->ss = wk->h + T * DE_SIDE;
    wk->mod = wk->ss + T * DE_SIDE;
    return wk;
}

/* ss[t] = h[t] M[t] with M[t] = mat[t] as 32x32, row index first (the
 * package's semb.view(32, 32)), after mat[t] += the token's s_emb row. */
static void modulation_rows(const struct de_layer *l, struct de_work *wk,
                            const int32_t *tokens, int T)
{
    size_t row_bytes = DE_SIZE * ckpt_dtype_size(l->s_emb->dtype);
    float row[DE_SIZE];

    for (int t = 0; t < T; t++) {
        float *mat = wk->mat + (size_t)t * DE_SIZE;
        const float *h = wk->h + (size_t)t * DE_SIDE;
        float *ss = wk->ss + (size_t)t * DE_SIDE;

        ckpt_to_f32(l->s_emb->dtype, (const char *)l->s_emb->data + (size_t)tokens[t] * row_bytes,
                    row, DE_SIZE);
        for (int j = 0; j < DE_SIZE; j++) {
            mat[j] += row[j];
        }
        for (int j = 0; j < DE_SIDE; j++) {
            ss[j] = 0;
        }
        for (int i = 0; i < DE_SIDE; i++) {
            for (int j = 0; j < DE_SIDE; j++) {
                ss[j] += h[i] * mat[i * DE_SIDE + j];
            }
        }
    }
}

void *rwkv7a_base_work(void *work)
{
    struct de_work *wk = work;

    return wk->base;
}

void rwkv7a_keep_embedded(void *work, const float *x, int T, int C)
{
    struct de_work *wk = work;

    memcpy(wk->e, x, (size_t)T * (size_t)C * sizeof *x);
}

void rwkv7a_cmix(const rwkv_model *m, const void *cmix, void *work, int i,
                 const int32_t *tokens, int T, float *state)
{
    const struct de_weights *D = cmix;
    const struct de_layer *l = &D->layers[i];
    struct de_work *wk = work;
    size_t F = (size_t)rwkv7_ffn_size(m);
    float *hidden;

    hidden = rwkv7_ffn_hidden(m, wk->base, i, T, state);
    struct k_product in[2] = { { &l->s1, rwkv7_ln2(wk->base), wk->h },
                               { &l->s_emb_x, wk->e, wk->mat } };
    struct k_product out = { &l->s2, wk->ss, wk->mod };

    rwkv7_products(wk->base, in, 2, T);
    modulation_rows(l, wk, tokens, T);
    rwkv7_products(wk->base, &out, 1, T);
    for (size_t t = 0; t < (size_t)T; t++) {
        float *k = hidden + t * F;
        const float *mod = wk->mod + t * F;

        for (size_t j = 0; j < F; j++) {
            k[j] *= mod[j] + l->s0[j];
        }
    }
    rwkv7_ffn_value(m, wk->base, i, T);
    rwkv7_ffn_residual(m, wk->base, i, T);
}

/* One layer over a chunk (rwkv_version.layer): RWKV-7's time mix, then the
 * DeepEmbed channel mix. */
static void rwkv7a_layer(const rwkv_model *m, void *work, int i, const int32_t *tokens,
                         float *x, int T, float *state)
{
    struct de_work *wk = work;

    /* The driver runs layer 0 first on the embedded chunk: keep ln0(emb). */
    if (i == 0) {
        rwkv7a_keep_embedded(wk, x, T, m->info.n_embd);
    }
    rwkv7_time_mix(m, wk->base, i, x, T, state);
    rwkv7a_cmix(m, rwkv7_variant(m), wk, i, tokens, T, state);
}

/* A batch (rwkv_version.layer_batch): row t is one token of states[t]. */
static void rwkv7a_layer_batch(const rwkv_model *m, void *work, int i, const int32_t *tokens,
                               float *x, int T, float *const *states)
{
    struct de_work *wk = work;

    rwkv7_batch_rows(m, wk->base, states, T);
    rwkv7a_layer(m, work, i, tokens, x, T, NULL);
    rwkv7_batch_rows(m, wk->base, NULL, T);
}

const struct rwkv_version rwkv7a_version = {
    .version = 7,
    .minor_first = 1,
    .seq_chunk = RWKV_SEQ_CHUNK,
    .detect = rwkv7a_detect,
    .tensors = rwkv7a_tensors,
    .written = v7a_written,
    .n_minors = 1,
    .read_dims = rwkv7_read_dims,
    .heads_tensor = "blocks.0.att.r_k",
    .ranks = rwkv7_ranks,
    .n_ranks = RWKV7_N_RANKS,
    .layer_floats = rwkv7_layer_floats,
    .state_init = NULL,
    .prepare = rwkv7a_prepare,
    .work_new = rwkv7a_work_new,
    .work_free = rwkv7a_work_free,
    .layer = rwkv7a_layer,
    .layer_batch = rwkv7a_layer_batch,
    .test_drop_terms = NULL,
};
