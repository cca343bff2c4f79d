/*
 * rwkv4.c - the RWKV-4 forward pass (skeleton; being written).
 */
#include <stdio.h>
#include <string.h>

#include "engine/model.h"

static int rwkv4_prepare(rwkv_model *m, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: RWKV-4: not implemented", ckpt_path(m->file));
    return -1;
}

static void rwkv4_release(rwkv_model *m)
{
    m->weights = NULL;
}

static void rwkv4_state_init(const rwkv_model *m, float *state)
{
    memset(state, 0, m->info.state_floats * sizeof(float));
}

static void rwkv4_eval(rwkv_model *m, float *state, const int32_t *tokens, size_t n,
                       float *logits, int all_logits)
{
    (void)m; (void)state; (void)tokens; (void)n; (void)logits; (void)all_logits;
}

const struct rwkv_arch rwkv4_arch = {
    rwkv4_prepare, rwkv4_release, rwkv4_state_init, rwkv4_eval,
};
