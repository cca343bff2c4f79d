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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/blocks.h"

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
    struct blocks_model base;   /* first: blocks_eval finds it at m->weights */
    int n_layer;
    struct rwkv6_layer layers[];
};

static void rwkv6_layer_forward(rwkv_model *m, int i, float *x, int T, float *state);

static void rwkv6_release(rwkv_model *m)
{
    struct rwkv6_weights *wt = m->weights;

    if (!wt) {
        return;
    }
    for (int i = 0; i < wt->n_layer; i++) {
        struct rwkv6_layer *l = &wt->layers[i];

        blocks_norm_free(&l->ln1);
        blocks_norm_free(&l->ln_x);
        free(l->maa_x);
        for (int j = 0; j < RWKV6_N_MIX; j++) {
            free(l->maa[j]);
            kmat_free(&l->maa_w2[j]);
        }
        kmat_free(&l->maa_w1);
        free(l->decay);
        kmat_free(&l->decay_w1);
        kmat_free(&l->decay_w2);
        free(l->first);
        kmat_free(&l->key);
        kmat_free(&l->value);
        kmat_free(&l->receptance);
        kmat_free(&l->gate);
        kmat_free(&l->output);
        blocks_ffn_free(&l->ffn);
    }
    blocks_model_free(&wt->base);
    free(wt);
    m->weights = NULL;
}

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
    wt = calloc(1, sizeof *wt + (size_t)m->info.n_layer * sizeof wt->layers[0]);
    if (!wt) {
        blocks_fail(&ld, "out of memory");
        return -1;
    }
    m->weights = wt;
    wt->n_layer = m->info.n_layer;
    for (int i = 0; i < wt->n_layer && !ld.failed; i++) {
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
    blocks_model_load(&ld, &wt->base, rwkv6_layer_forward, wide,
                      (size_t)2 * C + (size_t)H * N * N);
    if (ld.failed) {
        rwkv6_release(m);
        return -1;
    }
    return 0;
}

static void tanh_all(float *x, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        x[i] = tanhf(x[i]);
    }
}

/* The data-dependent token shift: inputs[j][T][C] = xx + sx' (maa_j + m_j)
 * for j = w, k, v, r, g, with m_j from the maa LoRA.  tmp: [T][C]. */
static void ddlerp(const struct rwkv6_layer *l, struct blocks_work *w, const float *xx,
                   const float *sx, int T, int C, float *tmp, float *inputs[RWKV6_N_MIX])
{
    int D = l->lora_maa;
    float *h = w->wide, *hj = w->wide + (size_t)T * RWKV6_N_MIX * D;

    blocks_maa(xx, sx, l->maa_x, 0, T, C, tmp);
    blocks_linear(w->pool, &l->maa_w1, tmp, T, h);
    tanh_all(h, (size_t)T * RWKV6_N_MIX * D);
    for (int j = 0; j < RWKV6_N_MIX; j++) {
        for (int t = 0; t < T; t++) {
            memcpy(hj + (size_t)t * D, h + ((size_t)t * RWKV6_N_MIX + j) * D,
                   (size_t)D * sizeof *hj);
        }
        blocks_linear(w->pool, &l->maa_w2[j], hj, T, tmp);
        for (int t = 0; t < T; t++) {
            float *row = tmp + (size_t)t * C;

            for (int c = 0; c < C; c++) {
                row[c] += l->maa[j][c];
            }
        }
        blocks_maa(xx, sx, tmp, 1, T, C, inputs[j]);
    }
}

/* decay[T][C] = exp(-exp(time_decay + tanh(wx Wd1) Wd2)). */
static void decay_lora(const struct rwkv6_layer *l, struct blocks_work *w, const float *wx,
                       int T, int C, float *decay)
{
    float *h = w->wide;

    blocks_linear(w->pool, &l->decay_w1, wx, T, h);
    tanh_all(h, (size_t)T * l->lora_decay);
    blocks_linear(w->pool, &l->decay_w2, h, T, decay);
    for (int t = 0; t < T; t++) {
        float *row = decay + (size_t)t * C;

        for (int c = 0; c < C; c++) {
            row[c] = expf(-expf(l->decay[c] + row[c]));
        }
    }
}

/* x[T][C] += TimeMix(ln1(x)); advances att x_prev and the wkv state. */
static void time_mix(const struct rwkv6_layer *l, struct blocks_work *w, float *x, int T,
                     int C, int H, float *state)
{
    float *xx = w->buf[0], *sx = w->buf[1], *decay = w->buf[2], *tmp = w->buf[3];
    float *wx = w->buf[4], *kx = w->buf[5], *vx = w->buf[6], *rx = w->buf[7];
    float *gx = w->buf[8], *k = w->buf[9], *v = w->buf[10], *g = w->buf[11];
    float *inputs[RWKV6_N_MIX] = { wx, kx, vx, rx, gx };
    float *r = tmp, *out = xx, *y = sx;
    size_t TC = (size_t)T * C;

    blocks_layernorm(&l->ln1, x, T, C, xx);
    blocks_shift(xx, T, C, state, sx);
    ddlerp(l, w, xx, sx, T, C, tmp, inputs);
    decay_lora(l, w, wx, T, C, decay);
    /* xx, sx and tmp are free from here on. */
    {
        struct k_product p[] = { { &l->receptance, rx, r }, { &l->key, kx, k },
                                 { &l->value, vx, v }, { &l->gate, gx, g } };

        k_matmul_batch(w->pool, p, 4, T);
    }
    blocks_silu(g, TC);
    blocks_wkv5(w->pool, T, H, C / H, r, k, v, decay, (size_t)C, l->first, state + C, out);
    blocks_lnx_gate(&l->ln_x, out, g, T, C, H);
    blocks_linear(w->pool, &l->output, out, T, y);
    blocks_add(x, y, TC);
}

static void rwkv6_layer_forward(rwkv_model *m, int i, float *x, int T, float *state)
{
    struct rwkv6_weights *wt = m->weights;
    const struct rwkv6_layer *l = &wt->layers[i];
    int C = m->info.n_embd, H = m->info.n_head, N = m->info.head_size;

    time_mix(l, &wt->base.work, x, T, C, H, state);
    blocks_ffn_forward(&l->ffn, &wt->base.work, x, T, C, state + C + (size_t)H * N * N);
}

const struct rwkv_arch rwkv6_arch = {
    rwkv6_prepare, rwkv6_release, blocks_state_zero, blocks_eval,
};
