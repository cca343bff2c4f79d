/*
 * cache.h - the server's memory of conversation states.
 *
 * An LRU of states keyed by the tokens that led to them: a request whose
 * tokens start with a key continues from that state and reads only the
 * rest.  Each entry holds the state and the logits after its last token,
 * so a request that is all key needs no evaluation at all.  The cache
 * holds at most its byte budget; the least recently used entries go first.
 * Not thread-safe: the scheduler thread alone uses it.
 */
#ifndef RWKV_SERVE_CACHE_H
#define RWKV_SERVE_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/rwkv.h"

typedef struct state_cache state_cache;

/* A cache of at most max_bytes for model's states (0: keeps nothing).
 * NULL on allocation failure. */
state_cache *state_cache_new(const rwkv_model *model, size_t max_bytes);
void state_cache_free(state_cache *sc);

/* The longest key that is a prefix of tokens[0..n) (n itself included):
 * its length, with its state copied into state and its logits into
 * logits; 0 when none (state and logits untouched). */
size_t state_cache_lookup(state_cache *sc, const int32_t *tokens, size_t n, rwkv_state *state,
                          float *logits);
/* Keeps a copy of state and logits under key[0..n) (replacing an entry of
 * that key), then drops the least recently used entries past the budget.
 * Fails silently (nothing kept) when out of memory or over the budget. */
void state_cache_put(state_cache *sc, const int32_t *key, size_t n, const rwkv_state *state,
                     const float *logits);

struct state_cache_stats {
    size_t entries, bytes, max_bytes;
    uint64_t hits, misses, tokens_reused;
};
void state_cache_stats(const state_cache *sc, struct state_cache_stats *st);

#endif
