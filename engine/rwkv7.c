/*
 * rwkv7.c - the RWKV-7 "Goose" forward pass (work in progress).
 */
#include <stdio.h>
#include <string.h>

#include "engine/model.h"

static int rwkv7_prepare(rwkv_model *m, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: RWKV-7 forward pass not implemented yet", ckpt_path(m->file));
    return -1;
}

static void rwkv7_release(rwkv_model *m)
{
    m->weights = NULL;
}

static void rwkv7_state_init(const rwkv_model *m, float *state)
{
    memset(state, 0, m->info.state_floats * sizeof *state);
}

static void rwkv7_eval(rwkv_model *m, float *state, const int32_t *tokens, size_t n,
                       float *logits, int all_logits)
{
    (void)m, (void)state, (void)tokens, (void)n, (void)logits, (void)all_logits;
}

const struct rwkv_arch rwkv7_arch = {
    rwkv7_prepare, rwkv7_release, rwkv7_state_init, rwkv7_eval,
};
