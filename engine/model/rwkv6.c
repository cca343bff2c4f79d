/*
 * rwkv6.c - the RWKV-6 "Finch" forward pass.
 *
 * Per layer:  x += TimeMix(ln1(x));  x += ChannelMix(ln2(x)).
 * Time mix (Eagle and Finch paper, section 5, as the official package runs
 * it), with sx = x_prev - x the token-shift difference:
 *   data-dependent token shift (ddlerp):
 *     h            = tanh((x + sx maa_x) W1)              split into 5 x D
 *     m_j          = h_j W2_j                             j = w, k, v, r, g
 *     jx           = x + sx (maa_j + m_j)
 *   decay LoRA:    w = exp(-exp(time_decay + tanh(wx Wd1) Wd2))   per token
 *   r, k, v        = R rx, K kx, V vx;  g = silu(G gx)
 *   per head:      out_t = r_t (diag(u) k_t^T v_t + S);  S = k_t^T v_t + diag(w_t) S
 *   x             += O (GroupNorm_H(out) * g)
 * with u = time_faaaa.  The channel mix is RWKV-5's with the maa form of
 * the token shift (time_maa_k/r).
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model/blocks.h"

#define RWKV6_N_MIX 5   /* w, k, v, r, g: the order of time_maa_w1/w2 */

struct rwkv6_layer {
    struct blocks_norm ln1, ln_x;
    float *maa_x, *maa[RWKV6_N_MIX];        /* time_maa_w/k/v/r/g */
    struct kmat maa_w1;                     /* [5 D][C] */
    struct kmat maa_w2[RWKV6_N_MIX];        /* [C][D] each */
    float *decay;                           /* time_decay, [C] */
    struct kmat decay_w1, decay_w2;         /* [Dd][C], [C][Dd] */
    float *first;                           /* u, [C] */
    struct kmat key, value, receptance, gate, output;
    int lora_maa, lora_decay;               /* D, Dd */
    struct blocks_ffn ffn;
};

struct rwkv6_weights {
    struct blocks_weights base; /* first: blocks_work_new finds it at m->weights */
    struct rwkv6_layer layers[];
};

/* ------------------------------------------------------------------------ */
/* What an RWKV-6 checkpoint is                                               */

/* In the order of the released files. */
static const struct rwkv_tensor_spec v6_specs[] = {
    RWKV_SPEC_EMB,
    BLOCKS_SPEC_NORMS,
    RWKV_SPEC_MIX("blocks.%d.att.time_maa_x", 0, 1),
    RWKV_SPEC_MIX("blocks.%d.att.time_maa_w", 0, 1),
    RWKV_SPEC_MIX("blocks.%d.att.time_maa_k", 0, 1),
    RWKV_SPEC_MIX("blocks.%d.att.time_maa_v", 0, 1),
    RWKV_SPEC_MIX("blocks.%d.att.time_maa_r", 0, 1),
    RWKV_SPEC_MIX("blocks.%d.att.time_maa_g", 0, 1),
    { "blocks.%d.att.time_maa_w1", RWKV_LAYER, "C,Dm5", NULL, RWKV_N(0, 1.13, "*C") },
    { "blocks.%d.att.time_maa_w2", RWKV_LAYER, "5,Dm,C", NULL, RWKV_N(0, 0.3, "/Dm") },
    RWKV_SPEC_MIX("blocks.%d.att.time_decay", -6, 0.5),
    { "blocks.%d.att.time_decay_w1", RWKV_LAYER, "C,Dw", NULL, RWKV_N(0, 1.13, "*C") },
    { "blocks.%d.att.time_decay_w2", RWKV_LAYER, "Dw,C", NULL, RWKV_N(0, 0.566, "/Dw") },
    { "blocks.%d.att.time_faaaa", RWKV_LAYER, "H,N", NULL, RWKV_U(-0.3, 1) },
    RWKV_SPEC_LINEAR("receptance"),
    RWKV_SPEC_LINEAR("key"),
    RWKV_SPEC_LINEAR("value"),
    RWKV_SPEC_LINEAR("output"),
    RWKV_SPEC_LINEAR("gate"),
    RWKV_SPEC_NORM("blocks.%d.att.ln_x", RWKV_LAYER, 0.5, 1.5),
    BLOCKS_SPEC_FFN("time_maa"),
    RWKV_SPEC_OUT,
    { NULL, 0, NULL, NULL, RWKV_U(0, 0) }
};

static const struct rwkv_tensor_spec *const v6_written[] = { v6_specs };

/* Has time_maa (the data-dependent token shift). */
static int rwkv6_detect(const ckpt_file *f, struct rwkv_info *info)
{
    size_t n = ckpt_count(f);

    for (size_t i = 0; i < n; i++) {
        if (strstr(ckpt_at(f, i)->name, "time_maa")) {
            info->version = 6;
            info->minor = 0;
            snprintf(info->version_name, sizeof info->version_name, "6");
            return 1;
        }
    }
    return 0;
}

static const struct rwkv_tensor_spec *rwkv6_tensors(const ckpt_file *f,
                                                    const struct rwkv_info *info)
{
    (void)f;
    (void)info;
    return v6_specs;
}

/* Heads from time_faaaa [H][N]; the LoRA ranks from their w1 [C][r]. */
static void rwkv6_read_dims(const ckpt_file *f, const struct rwkv_info *info,
                            struct rwkv_dims *d)
{
    const struct ckpt_tensor *t;

    (void)info;
    blocks_heads(f, "blocks.0.att.time_faaaa", d);
    if ((t = ckpt_find(f, "blocks.0.att.time_maa_w1")) && t->ndim == 2 && t->shape[1] % 5 == 0) {
        d->Dm = t->shape[1] / 5;
    }
    if ((t = ckpt_find(f, "blocks.0.att.time_decay_w1")) && t->ndim == 2) {
        d->Dw = t->shape[1];
    }
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                    */

/* Width of a LoRA from its w1 tensor [C][width] (divided by parts). */
static int lora_width(struct blocks_loader *ld, int layer, const char *name, int parts)
{
    char full[96];
    const struct ckpt_tensor *t;

    snprintf(full, sizeof full, "blocks.%d.att.%s", layer, name);
    t = ckpt_find(ld->m->file, full);
    if (!t || t->ndim != 2 || t->shape[0] != ld->m->info.n_embd || t->shape[1] % parts != 0 ||
        t->shape[1] <= 0) {
        blocks_fail(ld, "tensor %s: missing or not [%d][n x %d]", full, ld->m->info.n_embd,
                    parts);
        return 0;
    }
    return (int)(t->shape[1] / parts);
}

static void load_layer(struct blocks_loader *ld, struct rwkv6_layer *l, int i)
{
    static const char mix_names[RWKV6_N_MIX] = { 'w', 'k', 'v', 'r', 'g' };
    const rwkv_model *m = ld->m;
    int C = m->info.n_embd;
    char prefix[64];

    snprintf(prefix, sizeof prefix, "blocks.%d.ln1", i);
    blocks_norm_load(ld, &l->ln1, C, prefix);
    snprintf(prefix, sizeof prefix, "blocks.%d.att.ln_x", i);
    blocks_norm_load(ld, &l->ln_x, C, prefix);
    l->maa_x = blocks_vector(ld, C, "blocks.%d.att.time_maa_x", i);
    for (int j = 0; j < RWKV6_N_MIX; j++) {
        l->maa[j] = blocks_vector(ld, C, "blocks.%d.att.time_maa_%c", i, mix_names[j]);
    }
    l->lora_maa = lora_width(ld, i, "time_maa_w1", RWKV6_N_MIX);
    l->lora_decay = lora_width(ld, i, "time_decay_w1", 1);
    if (ld->failed) {
        return;
    }
    blocks_matrix(ld, &l->maa_w1, RWKV6_N_MIX * l->lora_maa, C, 1, RWKV_DTYPE_F32,
                  "blocks.%d.att.time_maa_w1", i);
    for (int j = 0; j < RWKV6_N_MIX; j++) {
        blocks_matrix_slice(ld, &l->maa_w2[j], j, C, l->lora_maa, "blocks.%d.att.time_maa_w2",
                            i);
    }
    l->decay = blocks_vector(ld, C, "blocks.%d.att.time_decay", i);
    blocks_matrix(ld, &l->decay_w1, l->lora_decay, C, 1, RWKV_DTYPE_F32,
                  "blocks.%d.att.time_decay_w1", i);
    blocks_matrix(ld, &l->decay_w2, C, l->lora_decay, 1, RWKV_DTYPE_F32,
                  "blocks.%d.att.time_decay_w2", i);
    l->first = blocks_bonus(ld, i);
    blocks_matrix(ld, &l->key, C, C, 0, m->dtype, "blocks.%d.att.key.weight", i);
    blocks_matrix(ld, &l->value, C, C, 0, m->dtype, "blocks.%d.att.value.weight", i);
    blocks_matrix(ld, &l->receptance, C, C, 0, m->dtype, "blocks.%d.att.receptance.weight", i);
    blocks_matrix(ld, &l->gate, C, C, 0, m->dtype, "blocks.%d.att.gate.weight", i);
    blocks_matrix(ld, &l->output, C, C, 0, m->dtype, "blocks.%d.att.output.weight", i);
    blocks_ffn_load(ld, &l->ffn, i, 1);
}

static int rwkv6_prepare(rwkv_model *m, char *err, size_t errlen)
{
    struct blocks_loader ld = { m, err, errlen, 0 };
    struct rwkv6_weights *wt;
    int C = m->info.n_embd, H = m->info.n_head, N = m->info.head_size, wide = 0;

    if (H <= 0 || N <= 0 || H * N != C) {
        blocks_fail(&ld, "RWKV-6: %d heads of %d do not make n_embd %d", H, N, C);
        return -1;
    }
    wt = weights_alloc(m, sizeof *wt + (size_t)m->info.n_layer * sizeof wt->layers[0]);
    if (!wt) {
        blocks_fail(&ld, "out of memory");
        return -1;
    }
    m->weights = wt;
    wt->base.n_layer = m->info.n_layer;
    for (int i = 0; i < wt->base.n_layer && !ld.failed; i++) {
        struct rwkv6_layer *l = &wt->layers[i];

        load_layer(&ld, l, i);
        /* The wide rows hold the FFN key, the maa LoRA (5 D plus one
         * gathered D) or the decay LoRA. */
        if (l->ffn.ffn_size > wide) {
            wide = l->ffn.ffn_size;
        }
        if ((RWKV6_N_MIX + 1) * l->lora_maa > wide) {
            wide = (RWKV6_N_MIX + 1) * l->lora_maa;
        }
        if (l->lora_decay > wide) {
            wide = l->lora_decay;
        }
    }
    wt->base.wide_width = wide;
    return ld.failed ? -1 : 0;
}

K_CLONES
static void tanh_all(float *x, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        x[i] = tanhf(x[i]);
    }
}

/* The time mix's per-token steps, in the order time_mix runs them. */
enum tm_step { TM_NORM, TM_MIX_X, TM_TANH, TM_MIX_J, TM_DECAY, TM_GATE, TM_ADD };

struct tm_rows {
    const struct rwkv6_layer *l;
    enum tm_step step;
    int C, H;
    int j;              /* TM_MIX_J: which of w, k, v, r, g */
    int width;          /* TM_TANH: floats per row of h */
    float *x, *xx, *sx, *tmp, *h, *decay, *g, *out, *y;
    float *inputs[RWKV6_N_MIX];
};

K_CLONES
static void tm_rows_run(void *ctx, int t0, int t1)
{
    const struct tm_rows *s = ctx;
    const struct rwkv6_layer *l = s->l;
    int C = s->C, n = t1 - t0;
    size_t o = (size_t)t0 * C, nC = (size_t)n * C;

    switch (s->step) {
    case TM_NORM:
        blocks_layernorm(&l->ln1, s->x + o, n, C, s->xx + o);
        break;
    case TM_MIX_X:
        blocks_maa(s->xx + o, s->sx + o, l->maa_x, 0, n, C, s->tmp + o);
        break;
    case TM_TANH:
        tanh_all(s->h + (size_t)t0 * s->width, (size_t)n * s->width);
        break;
    case TM_MIX_J: {
        const float *maa = l->maa[s->j];

        for (int t = 0; t < n; t++) {
            float *row = s->tmp + o + (size_t)t * C;

            for (int c = 0; c < C; c++) {
                row[c] += maa[c];
            }
        }
        blocks_maa(s->xx + o, s->sx + o, s->tmp + o, 1, n, C, s->inputs[s->j] + o);
        break;
    }
    case TM_DECAY:
        for (int t = 0; t < n; t++) {
            float *row = s->decay + o + (size_t)t * C;

            for (int c = 0; c < C; c++) {
                row[c] = expf(-expf(l->decay[c] + row[c]));
            }
        }
        break;
    case TM_GATE:
        blocks_silu(s->g + o, nC);
        blocks_lnx_gate(&l->ln_x, s->out + o, s->g + o, n, C, s->H);
        break;
    case TM_ADD:
        blocks_add(s->x + o, s->y + o, nC);
        break;
    }
}

static void tm_step(struct blocks_work *w, struct tm_rows *s, enum tm_step step, int T)
{
    s->step = step;
    blocks_rows(w, T, tm_rows_run, s);
}

/* The data-dependent token shift: inputs[j][T][C] = xx + sx' (maa_j + m_j)
 * for j = w, k, v, r, g, with m_j from the maa LoRA. */
static void ddlerp(const struct rwkv6_layer *l, struct blocks_work *w, struct tm_rows *s, int T)
{
    int D = l->lora_maa;
    float *hj = w->wide + (size_t)T * RWKV6_N_MIX * D;

    tm_step(w, s, TM_MIX_X, T);
    s->h = w->wide;
    s->width = RWKV6_N_MIX * D;
    blocks_linear(w, &l->maa_w1, s->tmp, T, s->h);
    tm_step(w, s, TM_TANH, T);
    for (int j = 0; j < RWKV6_N_MIX; j++) {
        for (int t = 0; t < T; t++) {
            memcpy(hj + (size_t)t * D, s->h + ((size_t)t * RWKV6_N_MIX + j) * D,
                   (size_t)D * sizeof *hj);
        }
        blocks_linear(w, &l->maa_w2[j], hj, T, s->tmp);
        s->j = j;
        tm_step(w, s, TM_MIX_J, T);
    }
}

/* decay[T][C] = exp(-exp(time_decay + tanh(wx Wd1) Wd2)). */
static void decay_lora(const struct rwkv6_layer *l, struct blocks_work *w, struct tm_rows *s,
                       int T)
{
    s->h = w->wide;
    s->width = l->lora_decay;
    blocks_linear(w, &l->decay_w1, s->inputs[0], T, s->h);
    tm_step(w, s, TM_TANH, T);
    blocks_linear(w, &l->decay_w2, s->h, T, s->decay);
    tm_step(w, s, TM_DECAY, T);
}

/* x[T][C] += TimeMix(ln1(x)); advances att x_prev and the wkv state. */
static void time_mix(const struct rwkv6_layer *l, struct blocks_work *w, float *x, int T,
                     int C, int H, float *state)
{
    float *xx = w->buf[0], *sx = w->buf[1], *tmp = w->buf[3];
    float *k = w->buf[9], *v = w->buf[10];
    struct tm_rows s = { .l = l, .C = C, .H = H, .x = x, .xx = xx, .sx = sx, .tmp = tmp,
                         .decay = w->buf[2], .g = w->buf[11],
                         .inputs = { w->buf[4], w->buf[5], w->buf[6], w->buf[7], w->buf[8] } };
    float *r = tmp;

    tm_step(w, &s, TM_NORM, T);
    blocks_shift(w, xx, T, C, state, 0, sx);
    ddlerp(l, w, &s, T);
    decay_lora(l, w, &s, T);
    /* xx, sx and tmp are free from here on. */
    {
        struct k_product p[] = { { &l->receptance, s.inputs[3], r }, { &l->key, s.inputs[1], k },
                                 { &l->value, s.inputs[2], v }, { &l->gate, s.inputs[4], s.g } };

        blocks_products(w, p, 4, T);
    }
    s.out = xx;
    s.y = sx;
    blocks_wkv5(w, T, H, C / H, r, k, v, s.decay, (size_t)C, l->first, state, (size_t)C, s.out);
    tm_step(w, &s, TM_GATE, T);
    blocks_linear(w, &l->output, s.out, T, s.y);
    tm_step(w, &s, TM_ADD, T);
}

static void rwkv6_layer(const rwkv_model *m, void *work, int i, const int32_t *tokens, float *x,
                        int T, float *state)
{
    const struct rwkv6_weights *wt = m->weights;
    const struct rwkv6_layer *l = &wt->layers[i];
    int C = m->info.n_embd, H = m->info.n_head, N = m->info.head_size;

    (void)tokens;
    time_mix(l, work, x, T, C, H, state);
    blocks_ffn_forward(&l->ffn, work, x, T, C, state, C + (size_t)H * N * N);
}

/* A batch (rwkv_version.layer_batch): row t is one token of states[t]. */
static void rwkv6_layer_batch(const rwkv_model *m, void *work, int i, const int32_t *tokens,
                              float *x, int T, float *const *states)
{
    struct blocks_work *w = work;

    w->rows = states;
    rwkv6_layer(m, work, i, tokens, x, T, NULL);
    w->rows = NULL;
}

static const struct rwkv_rank rwkv6_ranks[] = {
    { "decay", offsetof(struct rwkv_info, lora_decay) },
    { "mix", offsetof(struct rwkv_info, lora_maa) },
};

const struct rwkv_version rwkv6_version = {
    .version = 6,
    .seq_chunk = BLOCKS_CHUNK,
    .detect = rwkv6_detect,
    .tensors = rwkv6_tensors,
    .written = v6_written,
    .n_minors = 1,
    .read_dims = rwkv6_read_dims,
    .heads_tensor = "blocks.0.att.time_faaaa",
    .ranks = rwkv6_ranks,
    .n_ranks = 2,
    .layer_floats = blocks_matrix_state_floats,
    .state_init = NULL,
    .prepare = rwkv6_prepare,
    .work_new = blocks_work_new,
    .work_free = blocks_work_free,
    .layer = rwkv6_layer,
    .layer_batch = rwkv6_layer_batch,
};
