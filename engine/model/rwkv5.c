/*
 * rwkv5.c - the RWKV-5 "Eagle" forward pass (5.0, 5.1, 5.2).
 *
 * Per layer:  x += TimeMix(ln1(x));  x += ChannelMix(ln2(x)).
 * Time mix (Eagle and Finch paper, section 4, as the official package runs
 * it), per head of N channels, with the matrix state S [N][N] (key index
 * first), w = exp(-exp(time_decay)) and the bonus u:
 *   r, k, v = R rx, K kx, V vx                (static token-shift mixes)
 *   out_t   = r_t (diag(u) k_t^T v_t + S)
 *   S       = k_t^T v_t + diag(w) S
 *   x      += O (GroupNorm_H(out) * silu(G gx))
 * The versions differ only in their tensors:
 *   5.0: no gate; time_decay and time_first one per head; u = exp(time_first)
 *   5.1: gate (time_mix_g, gate.weight); decay per head
 *   5.2: gate; time_decay [H][N] per channel; u = time_faaaa as stored
 * (a file with time_faaaa uses it as u; one with time_first stores log u).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model/blocks.h"

struct rwkv5_layer {
    struct blocks_norm ln1, ln_x;
    float *mix_k, *mix_v, *mix_r, *mix_g;   /* mix_g NULL without a gate */
    float *decay;                           /* w = exp(-exp(time_decay)), [C] */
    float *first;                           /* u, [C] */
    struct kmat key, value, receptance, gate, output;
    int has_gate;
    struct blocks_ffn ffn;
};

struct rwkv5_weights {
    struct blocks_weights base; /* first: blocks_work_new finds it at m->weights */
    struct rwkv5_layer layers[];
};

/* ------------------------------------------------------------------------ */
/* What an RWKV-5.x checkpoint is                                             */

/* 5.0 and 5.1 have one decay and one bonus per head, 5.2 one per channel
 * ([H][N]); 5.1 and 5.2 add the gate.  The bonus is stored as time_faaaa,
 * or (older files) as time_first. */
#define V5_SPECS(decay, decay_stored, bonus, bonus_shape, bonus_stored, bonus_init, gate_mix, \
                 gate) { \
    RWKV_SPEC_EMB, \
    BLOCKS_SPEC_NORMS, \
    RWKV_SPEC_MIX("blocks.%d.att.time_mix_k", 0, 1), \
    RWKV_SPEC_MIX("blocks.%d.att.time_mix_v", 0, 1), \
    RWKV_SPEC_MIX("blocks.%d.att.time_mix_r", 0, 1), \
    gate_mix \
    { "blocks.%d.att.time_decay", RWKV_LAYER, decay, decay_stored, RWKV_U(-6, 1) }, \
    { "blocks.%d.att." bonus, RWKV_LAYER, bonus_shape, bonus_stored, bonus_init }, \
    RWKV_SPEC_LINEAR("receptance"), \
    RWKV_SPEC_LINEAR("key"), \
    RWKV_SPEC_LINEAR("value"), \
    RWKV_SPEC_LINEAR("output"), \
    gate \
    RWKV_SPEC_NORM("blocks.%d.att.ln_x", RWKV_LAYER, 0.5, 1.5), \
    BLOCKS_SPEC_FFN("time_mix"), \
    RWKV_SPEC_OUT, \
    { NULL, 0, NULL, NULL, RWKV_U(0, 0) } \
}
#define V5_NO_GATE
#define V5_GATE_MIX RWKV_SPEC_MIX("blocks.%d.att.time_mix_g", 0, 1),
#define V5_GATE RWKV_SPEC_LINEAR("gate"),

/* In the order of the released files; the bonus as time_faaaa (u) or as
 * time_first (log u: rwkv-tool mkmodel writes it for 5.0 only). */
#define V5_FAAAA RWKV_U(-0.3, 1)
#define V5_FIRST RWKV_U(-3, 0)
static const struct rwkv_tensor_spec v50_faaaa[] =
    V5_SPECS("v:H", "H", "time_faaaa", "v:H|H,N", "H", V5_FAAAA, V5_NO_GATE, V5_NO_GATE);
static const struct rwkv_tensor_spec v50_first[] =
    V5_SPECS("v:H", "H", "time_first", "v:H|H,N", "H", V5_FIRST, V5_NO_GATE, V5_NO_GATE);
static const struct rwkv_tensor_spec v51_faaaa[] =
    V5_SPECS("v:H", "H", "time_faaaa", "v:H|H,N", "H", V5_FAAAA, V5_GATE_MIX, V5_GATE);
static const struct rwkv_tensor_spec v51_first[] =
    V5_SPECS("v:H", "H", "time_first", "v:H|H,N", "H", V5_FIRST, V5_GATE_MIX, V5_GATE);
static const struct rwkv_tensor_spec v52_faaaa[] =
    V5_SPECS("H,N", NULL, "time_faaaa", "H,N", NULL, V5_FAAAA, V5_GATE_MIX, V5_GATE);
static const struct rwkv_tensor_spec v52_first[] =
    V5_SPECS("H,N", NULL, "time_first", "H,N", NULL, V5_FIRST, V5_GATE_MIX, V5_GATE);

/* What rwkv-tool mkmodel writes for 5.0, 5.1, 5.2. */
static const struct rwkv_tensor_spec *const v5_written[] = { v50_first, v51_faaaa, v52_faaaa };

/* Has ln_x (and no time_maa: RWKV-6 comes first in the list); 5.1 has a
 * gate, 5.2 a time_decay of [heads][head size]. */
static int rwkv5_detect(const ckpt_file *f, struct rwkv_info *info)
{
    const struct ckpt_tensor *td;
    size_t n = ckpt_count(f);
    int ln_x = 0, gate = 0;

    for (size_t i = 0; i < n; i++) {
        const char *name = ckpt_at(f, i)->name;

        ln_x |= strstr(name, "ln_x") != NULL;
        gate |= strstr(name, "gate.weight") != NULL;
    }
    if (!ln_x) {
        return 0;
    }
    info->version = 5;
    info->minor = gate ? 1 : 0;
    td = ckpt_find(f, "blocks.0.att.time_decay");
    if (td && td->ndim >= 2 && td->shape[1] > 1) {
        info->minor = 2;
    }
    snprintf(info->version_name, sizeof info->version_name, "5.%d", info->minor);
    return 1;
}

static const struct rwkv_tensor_spec *rwkv5_tensors(const ckpt_file *f,
                                                    const struct rwkv_info *info)
{
    static const struct rwkv_tensor_spec *const tables[3][2] = {
        { v50_faaaa, v50_first }, { v51_faaaa, v51_first }, { v52_faaaa, v52_first },
    };
    int first = ckpt_find(f, "blocks.0.att.time_faaaa") == NULL;

    return tables[info->minor >= 0 && info->minor <= 2 ? info->minor : 2][first];
}

/* Heads from time_decay: [H][N] in 5.2, [H] (per head) before. */
static void rwkv5_read_dims(const ckpt_file *f, const struct rwkv_info *info,
                            struct rwkv_dims *d)
{
    const struct ckpt_tensor *t = ckpt_find(f, "blocks.0.att.time_decay");

    if (t && info->minor == 2) {
        d->H = t->shape[0];
        d->N = t->shape[1];
    } else if (t) {
        d->H = t->numel;
        d->N = d->H > 0 && d->C % d->H == 0 ? d->C / d->H : -1;
    }
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                    */

static void load_layer(struct blocks_loader *ld, struct rwkv5_layer *l, int i)
{
    const rwkv_model *m = ld->m;
    int C = m->info.n_embd, H = m->info.n_head, N = m->info.head_size;
    char prefix[64];

    snprintf(prefix, sizeof prefix, "blocks.%d.ln1", i);
    blocks_norm_load(ld, &l->ln1, C, prefix);
    snprintf(prefix, sizeof prefix, "blocks.%d.att.ln_x", i);
    blocks_norm_load(ld, &l->ln_x, C, prefix);
    l->mix_k = blocks_vector(ld, C, "blocks.%d.att.time_mix_k", i);
    l->mix_v = blocks_vector(ld, C, "blocks.%d.att.time_mix_v", i);
    l->mix_r = blocks_vector(ld, C, "blocks.%d.att.time_mix_r", i);
    l->decay = blocks_head_vector(ld, 1, H, N, "blocks.%d.att.time_decay", i);
    if (l->decay) {
        for (int c = 0; c < C; c++) {
            l->decay[c] = expf(-expf(l->decay[c]));
        }
    }
    l->first = blocks_bonus(ld, i);
    blocks_matrix(ld, &l->key, C, C, 0, m->dtype, "blocks.%d.att.key.weight", i);
    blocks_matrix(ld, &l->value, C, C, 0, m->dtype, "blocks.%d.att.value.weight", i);
    blocks_matrix(ld, &l->receptance, C, C, 0, m->dtype, "blocks.%d.att.receptance.weight", i);
    blocks_matrix(ld, &l->output, C, C, 0, m->dtype, "blocks.%d.att.output.weight", i);
    snprintf(prefix, sizeof prefix, "blocks.%d.att.gate.weight", i);
    l->has_gate = ckpt_find(m->file, prefix) != NULL;
    if (l->has_gate) {
        l->mix_g = blocks_vector(ld, C, "blocks.%d.att.time_mix_g", i);
        blocks_matrix(ld, &l->gate, C, C, 0, m->dtype, "%s", prefix);
    }
    blocks_ffn_load(ld, &l->ffn, i, 0);
}

static int rwkv5_prepare(rwkv_model *m, char *err, size_t errlen)
{
    struct blocks_loader ld = { m, err, errlen, 0 };
    struct rwkv5_weights *wt;
    int C = m->info.n_embd, H = m->info.n_head, N = m->info.head_size, ffn_size = 0;

    if (H <= 0 || N <= 0 || H * N != C) {
        blocks_fail(&ld, "RWKV-5: %d heads of %d do not make n_embd %d", H, N, C);
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
        load_layer(&ld, &wt->layers[i], i);
        if (wt->layers[i].ffn.ffn_size > ffn_size) {
            ffn_size = wt->layers[i].ffn.ffn_size;
        }
    }
    wt->base.wide_width = ffn_size;
    return ld.failed ? -1 : 0;
}

/* x[T][C] += TimeMix(ln1(x)); advances att x_prev and the wkv state. */
/* The time mix's per-token steps, in the order time_mix runs them. */
enum tm_step { TM_NORM, TM_MIX, TM_GATE, TM_ADD };

struct tm_rows {
    const struct rwkv5_layer *l;
    enum tm_step step;
    int C, H;
    float *x, *xx, *sx, *kx, *vx, *rx, *gx, *g, *out, *y;
};

K_CLONES
static void tm_rows_run(void *ctx, int t0, int t1)
{
    const struct tm_rows *s = ctx;
    const struct rwkv5_layer *l = s->l;
    int C = s->C, n = t1 - t0;
    size_t o = (size_t)t0 * C, nC = (size_t)n * C;

    switch (s->step) {
    case TM_NORM:
        blocks_layernorm(&l->ln1, s->x + o, n, C, s->xx + o);
        break;
    case TM_MIX:
        blocks_mix(s->xx + o, s->sx + o, l->mix_k, n, C, s->kx + o);
        blocks_mix(s->xx + o, s->sx + o, l->mix_v, n, C, s->vx + o);
        blocks_mix(s->xx + o, s->sx + o, l->mix_r, n, C, s->rx + o);
        if (l->has_gate) {
            blocks_mix(s->xx + o, s->sx + o, l->mix_g, n, C, s->gx + o);
        }
        break;
    case TM_GATE:
        if (l->has_gate) {
            blocks_silu(s->g + o, nC);
        }
        blocks_lnx_gate(&l->ln_x, s->out + o, l->has_gate ? s->g + o : NULL, n, C, s->H);
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

static void time_mix(const struct rwkv5_layer *l, struct blocks_work *w, float *x, int T,
                     int C, int H, float *state)
{
    struct tm_rows s = { l, TM_NORM, C, H, x, w->buf[0], w->buf[1], w->buf[2], w->buf[3],
                         w->buf[4], w->buf[5], w->buf[9], w->buf[10], w->buf[11] };
    float *r = w->buf[6], *k = w->buf[7], *v = w->buf[8];

    tm_step(w, &s, TM_NORM, T);
    blocks_shift(w, s.xx, T, C, state, 0, s.sx);
    tm_step(w, &s, TM_MIX, T);
    {
        struct k_product p[] = { { &l->receptance, s.rx, r }, { &l->key, s.kx, k },
                                 { &l->value, s.vx, v }, { &l->gate, s.gx, s.g } };

        blocks_products(w, p, l->has_gate ? 4 : 3, T);
    }
    blocks_wkv5(w, T, H, C / H, r, k, v, l->decay, 0, l->first, state, (size_t)C, s.out);
    tm_step(w, &s, TM_GATE, T);
    blocks_linear(w, &l->output, s.out, T, s.y);
    tm_step(w, &s, TM_ADD, T);
}

static void rwkv5_layer(const rwkv_model *m, void *work, int i, const int32_t *tokens, float *x,
                        int T, float *state)
{
    const struct rwkv5_weights *wt = m->weights;
    const struct rwkv5_layer *l = &wt->layers[i];
    int C = m->info.n_embd, H = m->info.n_head, N = m->info.head_size;

    (void)tokens;
    time_mix(l, work, x, T, C, H, state);
    blocks_ffn_forward(&l->ffn, work, x, T, C, state, C + (size_t)H * N * N);
}

/* A batch (rwkv_version.layer_batch): row t is one token of states[t]. */
static void rwkv5_layer_batch(const rwkv_model *m, void *work, int i, const int32_t *tokens,
                              float *x, int T, float *const *states)
{
    struct blocks_work *w = work;

    w->rows = states;
    rwkv5_layer(m, work, i, tokens, x, T, NULL);
    w->rows = NULL;
}

const struct rwkv_version rwkv5_version = {
    .version = 5,
    .seq_chunk = BLOCKS_CHUNK,
    .detect = rwkv5_detect,
    .tensors = rwkv5_tensors,
    .written = v5_written,
    .n_minors = 3,
    .read_dims = rwkv5_read_dims,
    .heads_tensor = "blocks.0.att.time_decay",
    .layer_floats = blocks_matrix_state_floats,
    .state_init = NULL,
    .prepare = rwkv5_prepare,
    .work_new = blocks_work_new,
    .work_free = blocks_work_free,
    .layer = rwkv5_layer,
    .layer_batch = rwkv5_layer_batch,
};
