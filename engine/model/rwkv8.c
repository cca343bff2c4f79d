/*
 * rwkv8.c - RWKV-8 "Heron" rc00: RWKV-7 with a per-token scale on the
 * channel mix's output.
 *
 * Written against RWKV-LM's RWKV-v7/rwkv_v8_rc00_demo.py (RWKV_x080_CMix).
 * The time mix, state and every RWKV-7 tensor are RWKV-7's
 * (rwkv7_family.h).  Each layer adds ffn.enn.weight [V][C], one vector per
 * token, and with x = ln2(x):
 *
 *   xk  = x + (x_prev - x) * x_k
 *   x  += (Wv relu(Wk xk)^2) * enn[token]
 *
 * The enn tables are as large as the embedding once per layer; the demo
 * suggests streaming them, and here each token's row is read from the
 * mapped file when the token is evaluated, never converted or copied whole.
 */
#include <stdio.h>

#include "engine/model/rwkv7_family.h"
#include "engine/model/weights.h"

struct enn_weights {
    const struct ckpt_tensor **enn;     /* per layer: [V][C], read a row at a time */
};

static const struct rwkv_tensor_spec v8_specs[] = {
    RWKV7_SPEC_LAYERS,
    { "blocks.%d.ffn.enn.weight", RWKV_LAYER, "V,C", NULL, RWKV_U(0.5, 1.5) },
    RWKV_SPEC_OUT,
    RWKV_SPEC_END
};

static const struct rwkv_tensor_spec *const v8_written[] = { v8_specs };

/* RWKV-7's tensors with ffn.enn: RWKV-8. */
static int rwkv8_detect(const ckpt_file *f, struct rwkv_info *info)
{
    if (!ckpt_find(f, "blocks.0.att.x_r") || !ckpt_find(f, "blocks.0.ffn.enn.weight")) {
        return 0;
    }
    info->version = 8;
    info->minor = 0;
    snprintf(info->version_name, sizeof info->version_name, "8");
    return 1;
}

static const struct rwkv_tensor_spec *rwkv8_tensors(const ckpt_file *f,
                                                    const struct rwkv_info *info)
{
    (void)f;
    (void)info;
    return v8_specs;
}

static int rwkv8_prepare(rwkv_model *m, char *err, size_t errlen)
{
    int L = m->info.n_layer;
    struct enn_weights *E;

    if (rwkv7_prepare(m, err, errlen) != 0) {
        return -1;
    }
    E = weights_alloc(m, sizeof *E);
    if (!E || !(E->enn = weights_alloc(m, (size_t)L * sizeof *E->enn))) {
        snprintf(err, errlen, "%s: out of memory", ckpt_shown_path(m->file));
        return -1;
    }
    for (int i = 0; i < L; i++) {
        E->enn[i] = weights_tensor(m, "blocks.%d.ffn.enn.weight", i);
    }
    rwkv7_set_variant(m, E);
    return 0;
}

/* One layer over a chunk (rwkv_version.layer): RWKV-7's time mix, then the
 * channel mix scaled per token by its enn row. */
static void rwkv8_layer(const rwkv_model *m, void *work, int i, const int32_t *tokens,
                        float *x, int T, float *state)
{
    const struct enn_weights *E = rwkv7_variant(m);
    const struct ckpt_tensor *enn = E->enn[i];
    size_t C = (size_t)m->info.n_embd;
    size_t row_bytes = C * ckpt_dtype_size(enn->dtype);
    float *out, row[C];

    rwkv7_time_mix(m, work, i, x, T, state);
    rwkv7_ffn_hidden(m, work, i, T, state);
    out = rwkv7_ffn_value(m, work, i, T);
    for (int t = 0; t < T; t++) {
        float *o = out + (size_t)t * C;

        ckpt_to_f32(enn->dtype, (const char *)enn->data + (size_t)tokens[t] * row_bytes, row, C);
        for (size_t c = 0; c < C; c++) {
            o[c] *= row[c];
        }
    }
    rwkv7_ffn_residual(m, work, i, T);
}

/* A batch (rwkv_version.layer_batch): row t is one token of states[t]. */
static void rwkv8_layer_batch(const rwkv_model *m, void *work, int i, const int32_t *tokens,
                              float *x, int T, float *const *states)
{
    rwkv7_batch_rows(m, work, states, T);
    rwkv8_layer(m, work, i, tokens, x, T, NULL);
    rwkv7_batch_rows(m, work, NULL, T);
}

const struct rwkv_version rwkv8_version = {
    .version = 8,
    .seq_chunk = RWKV_SEQ_CHUNK,
    .detect = rwkv8_detect,
    .tensors = rwkv8_tensors,
    .written = v8_written,
    .n_minors = 1,
    .read_dims = rwkv7_read_dims,
    .heads_tensor = "blocks.0.att.r_k",
    .ranks = rwkv7_ranks,
    .n_ranks = RWKV7_N_RANKS,
    .layer_floats = rwkv7_layer_floats,
    .state_init = NULL,
    .prepare = rwkv8_prepare,
    .work_new = rwkv7_work_new,
    .work_free = rwkv7_work_free,
    .layer = rwkv8_layer,
    .layer_batch = rwkv8_layer_batch,
    .test_drop_terms = rwkv7_drop_terms,
};
