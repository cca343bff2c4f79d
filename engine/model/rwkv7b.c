/*
 * rwkv7b.c - RWKV-7b "DEA" (RWKV-LM RWKV-v7/rwkv_v7b_demo.py): recognised
 * and refused.
 *
 * RWKV-7b is RWKV-7a plus, per layer, an attention over every earlier
 * token (blocks.N.qkv.*: a key and value cache of 2 x 32 numbers per token
 * and layer, and the token ids).  That cache grows with the conversation,
 * which the fixed-size state of rwkv_state and of state files cannot hold,
 * so such files are told apart here (they also carry RWKV-7a's tensors)
 * and refused with that reason instead of running as something else.
 */
#include <stdio.h>

#include "engine/model/rwkv7_family.h"
#include "engine/model/weights.h"

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

/* Only what the refusal needs: the RWKV-7 tensors the sizes come from. */
static const struct rwkv_tensor_spec v7b_checked[] = {
    RWKV_SPEC_EMB,
    { "blocks.%d.att.r_k", RWKV_LAYER, "H,N", NULL, RWKV_N(0, 0.2, NULL) },
    { "blocks.%d.ffn.key.weight", RWKV_LAYER, "F,C", NULL, RWKV_N(0, 1, "*C") },
    RWKV_SPEC_END
};

static const struct rwkv_tensor_spec *const v7b_written[] = { v7b_checked };

static const struct rwkv_tensor_spec *rwkv7b_tensors(const ckpt_file *f,
                                                     const struct rwkv_info *info)
{
    (void)f;
    (void)info;
    return v7b_checked;
}

static int rwkv7b_prepare(rwkv_model *m, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: RWKV-7b (DEA) is not supported: its attention keeps a cache "
             "that grows with every token, which rwkv-chat's fixed-size states cannot hold; "
             "use an RWKV-7 or RWKV-7a model", ckpt_shown_path(m->file));
    return -1;
}

const struct rwkv_version rwkv7b_version = {
    .version = 7,
    .minor_first = 2,
    .seq_chunk = RWKV_SEQ_CHUNK,
    .detect = rwkv7b_detect,
    .tensors = rwkv7b_tensors,
    .written = v7b_written,
    .n_minors = 1,
    .read_dims = rwkv7_read_dims,
    .heads_tensor = "blocks.0.att.r_k",
    .ranks = rwkv7_ranks,
    .n_ranks = RWKV7_N_RANKS,
    .layer_floats = rwkv7_layer_floats,
    .state_init = NULL,
    .prepare = rwkv7b_prepare,
    .work_new = rwkv7_work_new,
    .work_free = rwkv7_work_free,
    .layer = NULL,
    .test_drop_terms = NULL,
};
