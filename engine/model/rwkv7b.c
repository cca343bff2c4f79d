/*
 * rwkv7b.c - RWKV-7b "DEA": RWKV-7a with, in every layer, an attention
 * over every token fed so far.
 *
 * Written against RWKV-LM's RWKV-v7/rwkv_v7b_demo.py (forward_seq).  The
 * time mix and the DeepEmbed channel mix are RWKV-7a's (rwkv7_family.h).
 * Each layer adds blocks.N.qkv.*: qq [Q][C], k1 and v1 [C][Dk], k2 [Dk][Q],
 * v2 [Dk][C], per-token tables k_emb [V][Q] and v_emb [V][C] (read a row at
 * a time from the mapped file), k_emb_x [Q][C] and v_emb_x [C][C] (folded
 * with e = ln0(emb[token]) per token, as RWKV-7a's s_emb_x), the token-shift
 * mixes x_q, x_k [Q] and x_v [C], and the layer norms lnq, lnk [Q], lnv [C].
 * With x the layer's input (the residual stream, not normed) and t running
 * over every token of the conversation, token 0 first:
 *
 *   q_t  = Wq x_t                                (the new tokens only)
 *   ck_t = x_t k1,  cv_t = x_t v1                (kept in the history)
 *   k_t  = (ck_t k2) * (k_emb[tok_t] + k_emb_x e_t)
 *   v_t  = tanh(cv_t v2) * (v_emb[tok_t] + v_emb_x e_t)
 *   q'_t = lnq(q_t + (q_{t-1} - q_t) * x_q)      (q_{-1}: the state's, zero at first)
 *   k'_t = lnk(k_t + (k_{t-1} - k_t) * x_k)      (k_{-1} = v_{-1} = 0)
 *   v'_t = lnv(v_t + (v_{t-1} - v_t) * x_v)
 *   a_t  = softmax_{s <= t}(64 tanh(q'_t . k'_s / 1024)) v'
 *   x   += TimeMix(ln1(x)) + a;  x += CMix_7a(ln2(x))
 *
 * The state holds q_{t-1} per layer after RWKV-7's floats, and a history
 * (history.h) of the token ids and ck, cv per token and layer: everything
 * k' and v' are made from.  k' and v' themselves are kept beside it
 * (derived, rebuilt from the history when missing: after a state file is
 * read).
 */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kernels/pool.h"
#include "engine/model/history.h"
#include "engine/model/rwkv7_family.h"
#include "engine/model/weights.h"

/* Keys one attention task of a single token covers: a token's attention
 * over a long history is split into blocks of this many keys, a number
 * that depends on the history alone (never on the threads), so every
 * context gives the same bits. */
#define KEY_BLOCK 1024

struct dea_layer {
    struct kmat qq;                     /* [Q][C] */
    struct kmat k1, v1;                 /* [Dk][C] (stored [C][Dk]) */
    struct kmat k2;                     /* [Q][Dk] (stored [Dk][Q]) */
    struct kmat v2;                     /* [C][Dk] (stored [Dk][C]) */
    struct kmat k_emb_x;                /* [Q][C] */
    struct kmat v_emb_x;                /* [C][C] */
    const struct ckpt_tensor *k_emb;    /* [V][Q], read a row at a time */
    const struct ckpt_tensor *v_emb;    /* [V][C], read a row at a time */
    const float *x_q, *x_k, *x_v;
    const float *lnq_w, *lnq_b, *lnk_w, *lnk_b, *lnv_w, *lnv_b;
};

struct dea_weights {
    const void *cmix;                   /* RWKV-7a's channel mix */
    struct dea_layer *layers;
    int Q, Dk;
};

struct dea_work {
    void *de;                           /* rwkv7a_work_new */
    struct kpool *pool;
    struct rwkv_history *h;             /* of the state being evaluated */
    int chunk;
    float *mem;
    float *q;                           /* [chunk][Q]: Wq x */
    float *qn;                          /* [chunk][Q]: q' */
    float *ck, *cv;                     /* [chunk][Dk] */
    float *e;                           /* [chunk][C]: ln0(emb) of derived tokens */
    float *kraw, *kemb;                 /* [chunk][Q] */
    float *vraw, *vemb;                 /* [chunk][C] */
    float *att;                         /* [chunk][C] */
    double *acc;                        /* [chunk][C]: attention sums per task */
    double *sum;                        /* [chunk] */
    /* The attention in flight (attend_task). */
    const struct rwkv_model *m;
    int layer, T, parts;
    size_t n0;
};

static const struct rwkv_tensor_spec v7b_specs[] = {
    RWKV7_SPEC_LAYERS,
    RWKV7A_SPEC_CMIX,
    { "blocks.%d.qkv.qq.weight", RWKV_LAYER, "Q,C", NULL, RWKV_N(0, 1, "*C") },
    { "blocks.%d.qkv.k1", RWKV_LAYER, "C,Dk", NULL, RWKV_N(0, 1, "*C") },
    { "blocks.%d.qkv.k2", RWKV_LAYER, "Dk,Q", NULL, RWKV_N(0, 1, "*Dk") },
    { "blocks.%d.qkv.v1", RWKV_LAYER, "C,Dk", NULL, RWKV_N(0, 1, "*C") },
    { "blocks.%d.qkv.v2", RWKV_LAYER, "Dk,C", NULL, RWKV_N(0, 1, "*Dk") },
    { "blocks.%d.qkv.k_emb.weight", RWKV_LAYER, "V,Q", NULL, RWKV_N(0, 1, NULL) },
    { "blocks.%d.qkv.k_emb_x.weight", RWKV_LAYER, "Q,C", NULL, RWKV_N(0, 0.5, "*C") },
    { "blocks.%d.qkv.v_emb.weight", RWKV_LAYER, "V,C", NULL, RWKV_N(0, 1, NULL) },
    { "blocks.%d.qkv.v_emb_x.weight", RWKV_LAYER, "C,C", NULL, RWKV_N(0, 0.5, "*C") },
    { "blocks.%d.qkv.x_q", RWKV_LAYER, "v:Q", "1,1,Q", RWKV_U(0, 1) },
    { "blocks.%d.qkv.x_k", RWKV_LAYER, "v:Q", "1,1,Q", RWKV_U(0, 1) },
    { "blocks.%d.qkv.x_v", RWKV_LAYER, "v:C", "1,1,C", RWKV_U(0, 1) },
    { "blocks.%d.qkv.lnq.weight", RWKV_LAYER, "v:Q", "Q", RWKV_U(2, 5) },
    { "blocks.%d.qkv.lnq.bias", RWKV_LAYER, "v:Q", "Q", RWKV_N(0, 0.05, NULL) },
    { "blocks.%d.qkv.lnk.weight", RWKV_LAYER, "v:Q", "Q", RWKV_U(2, 5) },
    { "blocks.%d.qkv.lnk.bias", RWKV_LAYER, "v:Q", "Q", RWKV_N(0, 0.05, NULL) },
    { "blocks.%d.qkv.lnv.weight", RWKV_LAYER, "v:C", "C", RWKV_U(0.2, 0.6) },
    { "blocks.%d.qkv.lnv.bias", RWKV_LAYER, "v:C", "C", RWKV_N(0, 0.05, NULL) },
    RWKV_SPEC_OUT,
    RWKV_SPEC_END
};

static const struct rwkv_tensor_spec *const v7b_written[] = { v7b_specs };

/* RWKV-7's tensors with the DEA attention (qkv.qq). */
static int rwkv7b_detect(const ckpt_file *f, struct rwkv_info *info)
{
    if (!ckpt_find(f, "blocks.0.att.x_r") || !ckpt_find(f, "blocks.0.qkv.qq.weight")) {
        return 0;
    }
    info->version = 7;
    info->minor = 2;
    snprintf(info->version_name, sizeof info->version_name, "7b");
    return 1;
}

static const struct rwkv_tensor_spec *rwkv7b_tensors(const ckpt_file *f,
                                                     const struct rwkv_info *info)
{
    (void)f;
    (void)info;
    return v7b_specs;
}

/* RWKV-7's sizes, Q from qq [Q][C] and Dk from k1 [C][Dk]. */
static void rwkv7b_read_dims(const ckpt_file *f, const struct rwkv_info *info,
                             struct rwkv_dims *d)
{
    const struct ckpt_tensor *t;

    rwkv7_read_dims(f, info, d);
    if ((t = ckpt_find(f, "blocks.0.qkv.qq.weight")) && t->ndim == 2) {
        d->Q = t->shape[0];
    }
    if ((t = ckpt_find(f, "blocks.0.qkv.k1")) && t->ndim == 2) {
        d->Dk = t->shape[1];
    }
}

static const struct dea_weights *dea(const rwkv_model *m)
{
    return rwkv7_variant(m);
}

static int rwkv7b_prepare(rwkv_model *m, char *err, size_t errlen)
{
    int L = m->info.n_layer, C = m->info.n_embd, Q, Dk;
    const struct ckpt_tensor *k1 = weights_tensor(m, "blocks.0.qkv.k1");
    struct dea_weights *W;

    Q = (int)weights_tensor(m, "blocks.0.qkv.qq.weight")->shape[0];
    Dk = (int)k1->shape[1];
    if (rwkv7_prepare(m, err, errlen) != 0) {
        return -1;
    }
    W = weights_alloc(m, sizeof *W);
    if (!W || !(W->layers = weights_alloc(m, (size_t)L * sizeof *W->layers))) {
        snprintf(err, errlen, "%s: out of memory", ckpt_shown_path(m->file));
        return -1;
    }
    W->Q = Q;
    W->Dk = Dk;
    if (!(W->cmix = rwkv7a_cmix_prepare(m, err, errlen))) {
        return -1;
    }
    for (int i = 0; i < L; i++) {
        struct dea_layer *l = &W->layers[i];
        const float **vec[] = { &l->x_q, &l->x_k, &l->x_v, &l->lnq_w, &l->lnq_b, &l->lnk_w,
                                &l->lnk_b, &l->lnv_w, &l->lnv_b };
        static const char *const vec_name[] = { "x_q", "x_k", "x_v", "lnq.weight", "lnq.bias",
                                                "lnk.weight", "lnk.bias", "lnv.weight",
                                                "lnv.bias" };
        const int vec_n[] = { Q, Q, C, Q, Q, Q, Q, C, C };

#define T_(name) weights_tensor(m, "blocks.%d.qkv." name, i)
        l->k_emb = T_("k_emb.weight");
        l->v_emb = T_("v_emb.weight");
        if (rwkv7_matrix(m, &l->qq, T_("qq.weight"), 0, Q, C, 0, err, errlen) ||
            rwkv7_matrix(m, &l->k1, T_("k1"), 1, Dk, C, 1, err, errlen) ||
            rwkv7_matrix(m, &l->v1, T_("v1"), 1, Dk, C, 1, err, errlen) ||
            rwkv7_matrix(m, &l->k2, T_("k2"), 1, Q, Dk, 1, err, errlen) ||
            rwkv7_matrix(m, &l->v2, T_("v2"), 1, C, Dk, 1, err, errlen) ||
            rwkv7_matrix(m, &l->k_emb_x, T_("k_emb_x.weight"), 0, Q, C, 0, err, errlen) ||
            rwkv7_matrix(m, &l->v_emb_x, T_("v_emb_x.weight"), 0, C, C, 0, err, errlen)) {
            return -1;
        }
#undef T_
        for (size_t j = 0; j < sizeof vec / sizeof vec[0]; j++) {
            if (!(*vec[j] = rwkv7_vector(m, weights_tensor(m, "blocks.%d.qkv.%s", i,
                                                           vec_name[j]), vec_n[j], err,
                                         errlen))) {
                return -1;
            }
        }
    }
    rwkv7_set_variant(m, W);
    return 0;
}

/* RWKV-7's floats, then the query's previous value [Q]. */
static size_t rwkv7b_layer_floats(const struct rwkv_info *info)
{
    return rwkv7_layer_floats(info) + (size_t)info->dea_width;
}

static void rwkv7b_history_sizes(const rwkv_model *m, size_t *saved, size_t *derived)
{
    const struct dea_weights *W = dea(m);
    size_t L = (size_t)m->info.n_layer;

    *saved = L * 2 * (size_t)W->Dk;
    *derived = L * ((size_t)W->Q + (size_t)m->info.n_embd);
}

static void rwkv7b_work_free(void *work)
{
    struct dea_work *wk = work;

    if (wk) {
        rwkv7a_work_free(wk->de);
        free(wk->mem);
        free(wk->acc);
        free(wk);
    }
}

static void *rwkv7b_work_new(const rwkv_model *m, struct kpool *pool, int chunk)
{
    const struct dea_weights *W = dea(m);
    size_t T = (size_t)chunk, C = (size_t)m->info.n_embd, Q = (size_t)W->Q;
    size_t Dk = (size_t)W->Dk;
    struct dea_work *wk = calloc(1, sizeof *wk);
    float *p;

    if (!wk) {
        return NULL;
    }
    wk->de = rwkv7a_work_new(m, pool, chunk);
    wk->mem = calloc(T * (4 * Q + 2 * Dk + 4 * C), sizeof *wk->mem);
    wk->acc = calloc(T * (C + 1), sizeof *wk->acc);
    if (!wk->de || !wk->mem || !wk->acc) {
        rwkv7b_work_free(wk);
        return NULL;
    }
    wk->pool = pool;
    wk->chunk = chunk;
    p = wk->mem;
    wk->q = p, p += T * Q;
    wk->qn = p, p += T * Q;
    wk->kraw = p, p += T * Q;
    wk->kemb = p, p += T * Q;
    wk->ck = p, p += T * Dk;
    wk->cv = p, p += T * Dk;
    wk->e = p, p += T * C;
    wk->vraw = p, p += T * C;
    wk->vemb = p, p += T * C;
    wk->att = p;
    wk->sum = wk->acc + T * C;
    return wk;
}

static void rwkv7b_bind_history(void *work, struct rwkv_history *h)
{
    struct dea_work *wk = work;

    wk->h = h;
}

/* y[n] = table row `token` of t (float32) plus y. */
static void add_row(const struct ckpt_tensor *t, int32_t token, size_t n, float *y, float *row)
{
    size_t row_bytes = n * ckpt_dtype_size(t->dtype);

    ckpt_to_f32(t->dtype, (const char *)t->data + (size_t)token * row_bytes, row, n);
    for (size_t j = 0; j < n; j++) {
        y[j] += row[j];
    }
}

/* y[j] = x[j] + (prev[j] - x[j]) * mix[j] (prev NULL: zero), then y's
 * layer norm: the demo's token shift and norm of q, k, v. */
static void shift_norm(const float *x, const float *prev, const float *mix, const float *w,
                       const float *b, int n, float *y)
{
    for (int j = 0; j < n; j++) {
        y[j] = x[j] + ((prev ? prev[j] : 0.0f) - x[j]) * mix[j];
    }
    k_layernorm(y, w, b, n, WEIGHTS_LN_EPS, y);
}

/* Derives k' and v' of layer i for history tokens [from, from + count)
 * (count <= the chunk) from their saved ck, cv and token ids; from is the
 * history's first underived token of this layer, so h->last holds the
 * unshifted k, v of token from - 1 and is left holding those of the last. */
static void derive(const rwkv_model *m, struct dea_work *wk, int i, size_t from, int count)
{
    const struct dea_weights *W = dea(m);
    const struct dea_layer *l = &W->layers[i];
    const struct weights_common *cm = &m->common;
    struct rwkv_history *h = wk->h;
    int C = m->info.n_embd, Q = W->Q, Dk = W->Dk;
    size_t D = m->history_derived, S = m->info.history_floats;
    size_t emb_bytes = (size_t)C * ckpt_dtype_size(cm->emb->dtype);
    float *last_k = h->last + (size_t)i * (size_t)(Q + C), *last_v = last_k + Q;
    float row[C > Q ? C : Q];

    for (int r = 0; r < count; r++) {
        size_t t = from + (size_t)r;
        const float *saved = h->saved + t * S + (size_t)i * 2 * (size_t)Dk;
        float *e = wk->e + (size_t)r * C;

        /* ln0(emb[token]) exactly as the driver embeds a token. */
        ckpt_to_f32(cm->emb->dtype, (const char *)cm->emb->data + (size_t)h->tokens[t] * emb_bytes,
                    e, (size_t)C);
        k_layernorm(e, cm->ln0_w, cm->ln0_b, C, WEIGHTS_LN_EPS, e);
        memcpy(wk->ck + (size_t)r * Dk, saved, (size_t)Dk * sizeof(float));
        memcpy(wk->cv + (size_t)r * Dk, saved + Dk, (size_t)Dk * sizeof(float));
    }
    k_matmul(wk->pool, &l->k_emb_x, wk->e, count, wk->kemb);
    k_matmul(wk->pool, &l->v_emb_x, wk->e, count, wk->vemb);
    k_matmul(wk->pool, &l->k2, wk->ck, count, wk->kraw);
    k_matmul(wk->pool, &l->v2, wk->cv, count, wk->vraw);
    for (int r = 0; r < count; r++) {
        size_t t = from + (size_t)r;
        float *ke = wk->kemb + (size_t)r * Q, *kr = wk->kraw + (size_t)r * Q;
        float *ve = wk->vemb + (size_t)r * C, *vr = wk->vraw + (size_t)r * C;
        float *dk = h->derived + t * D + (size_t)i * (size_t)(Q + C), *dv = dk + Q;
        const float *pk = r ? kr - Q : t ? last_k : NULL;
        const float *pv = r ? vr - C : t ? last_v : NULL;

        add_row(l->k_emb, h->tokens[t], (size_t)Q, ke, row);
        add_row(l->v_emb, h->tokens[t], (size_t)C, ve, row);
        for (int j = 0; j < Q; j++) {
            kr[j] *= ke[j];
        }
        for (int j = 0; j < C; j++) {
            vr[j] = tanhf(vr[j]) * ve[j];
        }
        shift_norm(kr, pk, l->x_k, l->lnk_w, l->lnk_b, Q, dk);
        shift_norm(vr, pv, l->x_v, l->lnv_w, l->lnv_b, C, dv);
    }
    memcpy(last_k, wk->kraw + (size_t)(count - 1) * Q, (size_t)Q * sizeof(float));
    memcpy(last_v, wk->vraw + (size_t)(count - 1) * C, (size_t)C * sizeof(float));
}

/* One attention task: part p of the keys of new token t (row k = t *
 * parts + p), into acc[k] and sum[k]: sum_s w_s v'_s and sum_s w_s with
 * w_s = exp(score_s - 64) (scores are capped at 64: no overflow; double
 * keeps the smallest weights from vanishing). */
static void attend_task(void *ctx, int k)
{
    struct dea_work *wk = ctx;
    const struct dea_weights *W = dea(wk->m);
    struct rwkv_history *h = wk->h;
    int C = wk->m->info.n_embd, Q = W->Q, t = k / wk->parts, p = k % wk->parts;
    size_t D = wk->m->history_derived, keys = wk->n0 + (size_t)t + 1;
    size_t first = (size_t)p * KEY_BLOCK, end = first + KEY_BLOCK;
    const float *q = wk->qn + (size_t)t * Q;
    double *acc = wk->acc + (size_t)k * C, sum = 0;

    if (wk->parts == 1) {
        first = 0;
        end = keys;
    } else if (end > keys) {
        end = keys;
    }
    memset(acc, 0, (size_t)C * sizeof *acc);
    for (size_t s = first; s < end; s++) {
        const float *kk = h->derived + s * D + (size_t)wk->layer * (size_t)(Q + C);
        const float *vv = kk + Q;
        float dot = 0;
        double w;

        for (int j = 0; j < Q; j++) {
            dot += q[j] * kk[j];
        }
        w = exp(64.0 * tanh((double)dot * (1.0 / 1024.0)) - 64.0);
        sum += w;
        for (int c = 0; c < C; c++) {
            acc[c] += w * vv[c];
        }
    }
    wk->sum[k] = sum;
}

/* att[t] = the attention of new token t of the chunk over history tokens
 * 0 .. n0 + t (derived for this layer). */
static void attend(const rwkv_model *m, struct dea_work *wk, int i, size_t n0, int T)
{
    int C = m->info.n_embd;
    size_t keys = n0 + 1;

    wk->m = m;
    wk->layer = i;
    wk->n0 = n0;
    wk->T = T;
    /* One token over a long history: its keys in blocks, on the pool. */
    wk->parts = T == 1 ? (int)((keys + KEY_BLOCK - 1) / KEY_BLOCK) : 1;
    /* acc and sum have a chunk's rows: history_max / KEY_BLOCK (16) fit. */
    assert(wk->parts <= wk->chunk);
    kpool_run(wk->pool, attend_task, wk, T * wk->parts);
    for (int t = 0; t < T; t++) {
        float *att = wk->att + (size_t)t * C;
        double total = 0;

        for (int p = 0; p < wk->parts; p++) {
            total += wk->sum[t * wk->parts + p];
        }
        for (int c = 0; c < C; c++) {
            double a = 0;

            for (int p = 0; p < wk->parts; p++) {
                a += wk->acc[(size_t)(t * wk->parts + p) * C + c];
            }
            att[c] = (float)(a / total);
        }
    }
}

/* One layer over a chunk (rwkv_version.layer): the DEA attention of the
 * layer's input, RWKV-7's time mix, both added, then RWKV-7a's channel
 * mix.  The chunk's tokens are history tokens h->n .. h->n + T - 1 (the
 * driver stored their ids and counts them after the last layer). */
static void rwkv7b_layer(const rwkv_model *m, void *work, int i, const int32_t *tokens,
                         float *x, int T, float *state)
{
    const struct dea_weights *W = dea(m);
    const struct dea_layer *l = &W->layers[i];
    struct dea_work *wk = work;
    struct rwkv_history *h = wk->h;
    int C = m->info.n_embd, Q = W->Q, Dk = W->Dk;
    size_t n0 = h->n, S = m->info.history_floats;
    float *qprev = state + rwkv7_layer_floats(&m->info);

    if (i == 0) {
        rwkv7a_keep_embedded(wk->de, x, T, C);
    }
    k_matmul(wk->pool, &l->qq, x, T, wk->q);
    k_matmul(wk->pool, &l->k1, x, T, wk->ck);
    k_matmul(wk->pool, &l->v1, x, T, wk->cv);
    for (int t = 0; t < T; t++) {
        float *saved = h->saved + (n0 + (size_t)t) * S + (size_t)i * 2 * (size_t)Dk;

        memcpy(saved, wk->ck + (size_t)t * Dk, (size_t)Dk * sizeof(float));
        memcpy(saved + Dk, wk->cv + (size_t)t * Dk, (size_t)Dk * sizeof(float));
    }
    /* k', v' of this layer for every token not yet derived: the chunk's,
     * and after a state file was read the whole history's. */
    for (size_t from = h->n_derived; from < n0 + (size_t)T;) {
        size_t left = n0 + (size_t)T - from;
        int count = left < (size_t)wk->chunk ? (int)left : wk->chunk;

        derive(m, wk, i, from, count);
        from += (size_t)count;
    }
    for (int t = 0; t < T; t++) {
        const float *q = wk->q + (size_t)t * Q;

        shift_norm(q, t ? q - Q : qprev, l->x_q, l->lnq_w, l->lnq_b, Q, wk->qn + (size_t)t * Q);
    }
    memcpy(qprev, wk->q + (size_t)(T - 1) * Q, (size_t)Q * sizeof(float));
    attend(m, wk, i, n0, T);
    rwkv7_time_mix_plus(m, rwkv7a_base_work(wk->de), i, x, T, state, wk->att);
    rwkv7a_cmix(m, W->cmix, wk->de, i, tokens, T, state);
    (void)tokens;
}

const struct rwkv_version rwkv7b_version = {
    .version = 7,
    .minor_first = 2,
    .seq_chunk = RWKV_SEQ_CHUNK,
    .detect = rwkv7b_detect,
    .tensors = rwkv7b_tensors,
    .written = v7b_written,
    .n_minors = 1,
    .read_dims = rwkv7b_read_dims,
    .heads_tensor = "blocks.0.att.r_k",
    .ranks = rwkv7_ranks,
    .n_ranks = RWKV7_N_RANKS,
    .layer_floats = rwkv7b_layer_floats,
    .state_init = NULL,
    .prepare = rwkv7b_prepare,
    .work_new = rwkv7b_work_new,
    .work_free = rwkv7b_work_free,
    .layer = rwkv7b_layer,
    .layer_batch = NULL,
    .history_sizes = rwkv7b_history_sizes,
    .bind_history = rwkv7b_bind_history,
    .test_drop_terms = NULL,
};
