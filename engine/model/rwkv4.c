/*
 * rwkv4.c - the RWKV-4 forward pass.
 *
 * Per layer:  x += TimeMix(ln1(x));  x += ChannelMix(ln2(x)).
 * Time mix (RWKV-4 paper, eq. 14-16, in the numerically stable form of the
 * official package): per channel c, with w = -exp(time_decay) and
 * u = time_first,
 *   wkv_t = (e^{pp-p} aa + e^{u+k_t-p} v_t) / (e^{pp-p} bb + e^{u+k_t-p}),
 *           p = max(pp, u + k_t)
 *   aa, bb, pp <- e^{w+pp-q} aa + e^{k_t-q} v_t, e^{w+pp-q} bb + e^{k_t-q}, q
 *           q = max(w + pp, k_t)
 *   out = O (sigmoid(R rx) * wkv)
 * State per layer: att x_prev, aa, bb, pp, ffn x_prev (5 vectors of C).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model/blocks.h"

struct rwkv4_layer {
    struct blocks_norm ln1;
    float *mix_k, *mix_v, *mix_r;
    float *decay;               /* w = -exp(time_decay) */
    float *first;               /* u = time_first */
    struct kmat key, value, receptance, output;
    struct blocks_ffn ffn;
};

struct rwkv4_weights {
    struct blocks_weights base; /* first: blocks_work_new finds it at m->weights */
    struct rwkv4_layer layers[];
};

/* ------------------------------------------------------------------------ */
/* What an RWKV-4 checkpoint is                                               */

/* In the order of the released files. */
static const struct rwkv_tensor_spec v4_specs[] = {
    RWKV_SPEC_EMB,
    BLOCKS_SPEC_NORMS,
    { "blocks.%d.att.time_decay", RWKV_LAYER, "v:C", "C", RWKV_U(-5, 3) },
    { "blocks.%d.att.time_first", RWKV_LAYER, "v:C", "C", RWKV_U(-2, 1) },
    RWKV_SPEC_MIX("blocks.%d.att.time_mix_k", 0, 1),
    RWKV_SPEC_MIX("blocks.%d.att.time_mix_v", 0, 1),
    RWKV_SPEC_MIX("blocks.%d.att.time_mix_r", 0, 1),
    RWKV_SPEC_LINEAR("key"),
    RWKV_SPEC_LINEAR("value"),
    RWKV_SPEC_LINEAR("receptance"),
    RWKV_SPEC_LINEAR("output"),
    BLOCKS_SPEC_FFN("time_mix"),
    RWKV_SPEC_OUT,
    { NULL, 0, NULL, NULL, RWKV_U(0, 0) }
};

static const struct rwkv_tensor_spec *const v4_written[] = { v4_specs };

/* Anything the versions before it in the list did not take. */
static int rwkv4_detect(const ckpt_file *f, struct rwkv_info *info)
{
    (void)f;
    info->version = 4;
    info->minor = 0;
    snprintf(info->version_name, sizeof info->version_name, "4");
    return 1;
}

static const struct rwkv_tensor_spec *rwkv4_tensors(const ckpt_file *f,
                                                    const struct rwkv_info *info)
{
    (void)f;
    (void)info;
    return v4_specs;
}

/* No heads, no LoRA: emb and the FFN give every size. */
static void rwkv4_read_dims(const ckpt_file *f, const struct rwkv_info *info,
                            struct rwkv_dims *d)
{
    (void)f;
    (void)info;
    (void)d;
}

/* att x_prev, aa, bb, pp, ffn x_prev. */
static size_t rwkv4_layer_floats(const struct rwkv_info *info)
{
    return 5 * (size_t)info->n_embd;
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                    */

static void load_layer(struct blocks_loader *ld, struct rwkv4_layer *l, int i)
{
    const rwkv_model *m = ld->m;
    int C = m->info.n_embd;
    char prefix[64];

    snprintf(prefix, sizeof prefix, "blocks.%d.ln1", i);
    blocks_norm_load(ld, &l->ln1, C, prefix);
    l->mix_k = blocks_vector(ld, C, "blocks.%d.att.time_mix_k", i);
    l->mix_v = blocks_vector(ld, C, "blocks.%d.att.time_mix_v", i);
    l->mix_r = blocks_vector(ld, C, "blocks.%d.att.time_mix_r", i);
    l->decay = blocks_vector(ld, C, "blocks.%d.att.time_decay", i);
    l->first = blocks_vector(ld, C, "blocks.%d.att.time_first", i);
    if (l->decay) {
        for (int c = 0; c < C; c++) {
            l->decay[c] = -expf(l->decay[c]);
        }
    }
    blocks_matrix(ld, &l->key, C, C, 0, m->dtype, "blocks.%d.att.key.weight", i);
    blocks_matrix(ld, &l->value, C, C, 0, m->dtype, "blocks.%d.att.value.weight", i);
    blocks_matrix(ld, &l->receptance, C, C, 0, m->dtype, "blocks.%d.att.receptance.weight", i);
    blocks_matrix(ld, &l->output, C, C, 0, m->dtype, "blocks.%d.att.output.weight", i);
    blocks_ffn_load(ld, &l->ffn, i, 0);
}

static int rwkv4_prepare(rwkv_model *m, char *err, size_t errlen)
{
    struct blocks_loader ld = { m, err, errlen, 0 };
    struct rwkv4_weights *wt;
    int ffn_size = 0;

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

/* The official zero state: pp = -1e30, everything else 0. */
static void rwkv4_state_init(const struct rwkv_info *info, float *state)
{
    int C = info->n_embd;

    memset(state, 0, info->state_floats * sizeof *state);
    for (int i = 0; i < info->n_layer; i++) {
        float *pp = state + (size_t)i * 5 * C + 3 * C;

        for (int c = 0; c < C; c++) {
            pp[c] = -1e30f;
        }
    }
}

/* The per-channel recurrence over T tokens: wkv[T][C] from k, v and the
 * (aa, bb, pp) state at C, 2C, 3C of the layer state (each row's own in a
 * batch), which it advances. */
struct wkv4_job {
    const struct rwkv4_layer *l;
    const struct blocks_work *w;
    int T, C, n;
    const float *k, *v;
    float *state, *wkv;
};

/* The recurrence of the channels [c0, c1) over all T tokens (the channels
 * never read each other, so they split across the pool). */
static void wkv4_span(void *ctx, int i)
{
    const struct wkv4_job *job = ctx;
    const struct rwkv4_layer *l = job->l;
    int C = job->C;
    int c0 = (int)((int64_t)C * i / job->n), c1 = (int)((int64_t)C * (i + 1) / job->n);

    for (int t = 0; t < job->T; t++) {
        const float *kt = job->k + (size_t)t * C, *vt = job->v + (size_t)t * C;
        float *out = job->wkv + (size_t)t * C;
        float *aa = blocks_state(job->w, job->state, t, (size_t)C), *bb = aa + C;
        float *pp = aa + 2 * C;

        for (int c = c0; c < c1; c++) {
            float ww = l->first[c] + kt[c];
            float p = fmaxf(pp[c], ww);
            float e1 = expf(pp[c] - p);
            float e2 = expf(ww - p);

            out[c] = (e1 * aa[c] + e2 * vt[c]) / (e1 * bb[c] + e2);
            ww = l->decay[c] + pp[c];
            p = fmaxf(ww, kt[c]);
            e1 = expf(ww - p);
            e2 = expf(kt[c] - p);
            aa[c] = e1 * aa[c] + e2 * vt[c];
            bb[c] = e1 * bb[c] + e2;
            pp[c] = p;
        }
    }
}

/* The per-channel recurrence over T tokens: wkv[T][C] from k, v and the
 * (aa, bb, pp) state at C, 2C, 3C of the layer state (each row's own in a
 * batch), which it advances. */
static void wkv4(const struct rwkv4_layer *l, const struct blocks_work *w, int T, int C,
                 const float *k, const float *v, float *state, float *wkv)
{
    struct wkv4_job job = { l, w, T, C, kpool_threads(w->pool), k, v, state, wkv };

    /* Short chunks are not worth a thread hand-off. */
    if ((size_t)T * C < 4096 || job.n <= 1) {
        job.n = 1;
        wkv4_span(&job, 0);
        return;
    }
    kpool_run(w->pool, wkv4_span, &job, job.n);
}

/* The time mix's per-token steps, in the order time_mix runs them. */
enum tm_step { TM_NORM, TM_MIX, TM_GATE, TM_ADD };

struct tm_rows {
    const struct rwkv4_layer *l;
    enum tm_step step;
    int C;
    float *x, *xx, *sx, *kx, *vx, *rx, *r, *wkv, *out;
};

K_CLONES
static void tm_rows_run(void *ctx, int t0, int t1)
{
    const struct tm_rows *s = ctx;
    const struct rwkv4_layer *l = s->l;
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
        break;
    case TM_GATE: {
        float *wkv = s->wkv + o, *r = s->r + o;

        blocks_sigmoid(r, nC);
        for (size_t i = 0; i < nC; i++) {
            wkv[i] *= r[i];
        }
        break;
    }
    case TM_ADD:
        blocks_add(s->x + o, s->out + o, nC);
        break;
    }
}

static void tm_step(struct blocks_work *w, struct tm_rows *s, enum tm_step step, int T)
{
    s->step = step;
    blocks_rows(w, T, tm_rows_run, s);
}

static void time_mix(const struct rwkv4_layer *l, struct blocks_work *w, float *x, int T,
                     int C, float *state)
{
    struct tm_rows s = { l, TM_NORM, C, x, w->buf[0], w->buf[1], w->buf[2], w->buf[3],
                         w->buf[4], w->buf[5], w->buf[8], w->buf[9] };
    float *k = w->buf[6], *v = w->buf[7];

    tm_step(w, &s, TM_NORM, T);
    blocks_shift(w, s.xx, T, C, state, 0, s.sx);
    tm_step(w, &s, TM_MIX, T);
    {
        struct k_product p[] = { { &l->receptance, s.rx, s.r }, { &l->key, s.kx, k },
                                 { &l->value, s.vx, v } };

        blocks_products(w, p, 3, T);
    }
    wkv4(l, w, T, C, k, v, state, s.wkv);
    tm_step(w, &s, TM_GATE, T);
    blocks_linear(w, &l->output, s.wkv, T, s.out);
    tm_step(w, &s, TM_ADD, T);
}

static void rwkv4_layer(const rwkv_model *m, void *work, int i, const int32_t *tokens, float *x,
                        int T, float *state)
{
    const struct rwkv4_weights *wt = m->weights;
    const struct rwkv4_layer *l = &wt->layers[i];
    int C = m->info.n_embd;

    (void)tokens;
    time_mix(l, work, x, T, C, state);
    blocks_ffn_forward(&l->ffn, work, x, T, C, state, 4 * (size_t)C);
}

/* A batch (rwkv_version.layer_batch): row t is one token of states[t]. */
static void rwkv4_layer_batch(const rwkv_model *m, void *work, int i, const int32_t *tokens,
                              float *x, int T, float *const *states)
{
    struct blocks_work *w = work;

    w->rows = states;
    rwkv4_layer(m, work, i, tokens, x, T, NULL);
    w->rows = NULL;
}

const struct rwkv_version rwkv4_version = {
    .version = 4,
    .seq_chunk = BLOCKS_CHUNK,
    .detect = rwkv4_detect,
    .tensors = rwkv4_tensors,
    .written = v4_written,
    .n_minors = 1,
    .read_dims = rwkv4_read_dims,
    .heads_tensor = NULL,
    .layer_floats = rwkv4_layer_floats,
    .state_init = rwkv4_state_init,
    .prepare = rwkv4_prepare,
    .work_new = blocks_work_new,
    .work_free = blocks_work_free,
    .layer = rwkv4_layer,
    .layer_batch = rwkv4_layer_batch,
};
