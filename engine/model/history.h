/*
 * history.h - the growing part of an RWKV-7b state (rwkv.h: "RWKV-7b
 * states also hold a history").  Internal to engine/model/.
 *
 * For tokens 0 .. n-1 fed to the state so far: the token ids and, per
 * token, the saved record (per layer the DEA compact key [32] and value
 * [32]: rwkv_info.history_floats).  Derived from it and kept for speed,
 * never saved: per token and layer the attention's key [Q] and value [C]
 * after the token shift and their layer norms (rows 0 .. n_derived - 1),
 * and per layer the key and value of token n_derived - 1 before the shift
 * (what the next token's shift needs).  The arrays hold cap tokens.
 */
#ifndef RWKV_HISTORY_H
#define RWKV_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "engine/rwkv.h"

struct rwkv_history {
    size_t n;                   /* tokens in the history */
    size_t n_derived;           /* rows of derived valid (<= n) */
    size_t cap;                 /* tokens the arrays hold */
    int32_t *tokens;            /* [cap] */
    float *saved;               /* [cap][history_floats] */
    float *derived;             /* [cap][n_layer][Q + C] */
    float *last;                /* [n_layer][Q + C] */
};

/* The history of state, or NULL when its model keeps none. */
struct rwkv_history *rwkv_state_history_of(rwkv_state *state);
/* Makes h hold at least total tokens (contents kept).  0, or -1 with err
 * (past the model's history_max, out of memory); h unchanged then. */
int rwkv_history_reserve(const rwkv_model *m, struct rwkv_history *h, size_t total, char *err,
                         size_t errlen);

#endif
