/*
 * context_test.h - a test-only look into the forward driver.  Internal to
 * engine/ and tests/: the program never calls it.
 */
#ifndef RWKV_CONTEXT_TEST_H
#define RWKV_CONTEXT_TEST_H

#include <stddef.h>

#include "engine/rwkv.h"

/* Rows the last rwkv_eval_batch on ctx ran through the version's batched
 * layer (all its states when the version has one; 0 when it ran them one
 * after the other, or refused the batch). */
size_t rwkv_context_test_batched_rows(const rwkv_context *ctx);

/* Lowers model's history bound (RWKV-7b: rwkv_info.history_max) so that
 * tests reach it with a few tokens. */
void rwkv_model_test_history_max(const rwkv_model *model, size_t max);

#endif
