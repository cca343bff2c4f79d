/*
 * evalonce.h - rwkv_eval on a model through a context made for the one
 * call, for tests that check numbers rather than contexts.  rwkv.h
 * promises that a context holds nothing that outlives a call, so this
 * gives the same results as a long-lived context (test_context checks
 * that promise directly).
 */
#ifndef RWKV_TESTS_EVALONCE_H
#define RWKV_TESTS_EVALONCE_H

#include "engine/rwkv.h"

__attribute__((unused))
static int eval_once(const rwkv_model *m, rwkv_state *state, const int32_t *tokens, size_t n,
                     float *logits, int all_logits, char *err, size_t errlen)
{
    rwkv_context *ctx = rwkv_context_new(m, 0, err, errlen);
    int rc = ctx ? rwkv_eval(ctx, state, tokens, n, logits, all_logits, err, errlen) : -1;

    rwkv_context_free(ctx);
    return rc;
}

#endif
