/*
 * rwkv7_test.h - test-only hooks into the RWKV-7 forward pass.  Internal to
 * engine/ and tests/: the program never calls these.
 *
 * Dropping a term lets a test show that the golden comparison is sharp
 * enough to notice each part of the equations.
 */
#ifndef RWKV_RWKV7_TEST_H
#define RWKV_RWKV7_TEST_H

#include "engine/rwkv.h"

enum rwkv7_term {
    RWKV7_TERM_BONUS = 1 << 0,          /* (r . k . r_k) v per head */
    RWKV7_TERM_K_A = 1 << 1,            /* k = k (1 + (a - 1) k_a) */
    RWKV7_TERM_V_FIRST = 1 << 2,        /* v residual towards layer 0's v */
    RWKV7_TERM_DECAY_LORA = 1 << 3,     /* tanh(xw w1) w2 in the decay */
    RWKV7_TERM_STATE_KK = 1 << 4,       /* S (-kk)(kk a)^T in the state update */
    RWKV7_TERM_GATE = 1 << 5,           /* output gate g */
};

/* Makes later evaluations in ctx (a context of an RWKV-7 model) leave out
 * the terms in the mask (a bitwise or of enum rwkv7_term); 0 restores the
 * full model.  (Implemented in context.c, which hands the mask to the
 * version's scratch.) */
void rwkv7_test_drop_terms(rwkv_context *ctx, unsigned mask);

#endif
