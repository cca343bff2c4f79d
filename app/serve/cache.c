/* cache.c - the LRU of conversation states keyed by token prefixes. */
#include "app/serve/cache.h"

#include <stdlib.h>
#include <string.h>

struct entry {
    int32_t *key;
    size_t n;
    rwkv_state *state;
    float *logits;
    uint64_t used;          /* the clock at its last use */
};

struct state_cache {
    const rwkv_model *model;
    size_t n_vocab;
    size_t entry_bytes;     /* logits and the struct: the state and the key (4 per
                             * token) add theirs */
    size_t max_bytes, bytes;
    struct entry *e;
    size_t n, cap;
    uint64_t clock;
    uint64_t hits, misses, tokens_reused;
};

state_cache *state_cache_new(const rwkv_model *model, size_t max_bytes)
{
    const struct rwkv_info *info = rwkv_model_info(model);
    state_cache *sc = calloc(1, sizeof *sc);

    if (!sc) {
        return NULL;
    }
    sc->model = model;
    sc->n_vocab = (size_t)info->n_vocab;
    sc->entry_bytes = sc->n_vocab * sizeof(float) + sizeof(struct entry);
    sc->max_bytes = max_bytes;
    return sc;
}

/* An RWKV-7b state's bytes grow with its history (rwkv_state_bytes). */
static size_t entry_bytes(const state_cache *sc, const struct entry *e)
{
    return sc->entry_bytes + rwkv_state_bytes(e->state) + e->n * sizeof(int32_t);
}

static void drop(state_cache *sc, size_t i)
{
    struct entry *e = &sc->e[i];

    sc->bytes -= entry_bytes(sc, e);
    free(e->key);
    rwkv_state_free(e->state);
    free(e->logits);
    sc->e[i] = sc->e[--sc->n];
}

void state_cache_free(state_cache *sc)
{
    if (!sc) {
        return;
    }
    while (sc->n > 0) {
        drop(sc, sc->n - 1);
    }
    free(sc->e);
    free(sc);
}

size_t state_cache_lookup(state_cache *sc, const int32_t *tokens, size_t n, rwkv_state *state,
                          float *logits)
{
    struct entry *best = NULL;
    size_t i;

    for (i = 0; i < sc->n; i++) {
        struct entry *e = &sc->e[i];

        if (e->n <= n && (!best || e->n > best->n) &&
            memcmp(e->key, tokens, e->n * sizeof(int32_t)) == 0) {
            best = e;
        }
    }
    if (!best) {
        sc->misses++;
        return 0;
    }
    /* No memory for an RWKV-7b history: a miss (state unchanged). */
    if (rwkv_state_copy(state, best->state) != 0) {
        sc->misses++;
        return 0;
    }
    best->used = ++sc->clock;
    memcpy(logits, best->logits, sc->n_vocab * sizeof(float));
    sc->hits++;
    sc->tokens_reused += best->n;
    return best->n;
}

void state_cache_put(state_cache *sc, const int32_t *key, size_t n, const rwkv_state *state,
                     const float *logits)
{
    struct entry e;
    size_t i, oldest;

    if (n == 0 ||
        sc->entry_bytes + rwkv_state_bytes(state) + n * sizeof(int32_t) > sc->max_bytes) {
        return;
    }
    for (i = 0; i < sc->n; i++) {
        if (sc->e[i].n == n && memcmp(sc->e[i].key, key, n * sizeof(int32_t)) == 0) {
            sc->bytes -= entry_bytes(sc, &sc->e[i]);
            if (rwkv_state_copy(sc->e[i].state, state) != 0) {
                sc->bytes += entry_bytes(sc, &sc->e[i]);
                drop(sc, i);
                return;
            }
            sc->bytes += entry_bytes(sc, &sc->e[i]);
            memcpy(sc->e[i].logits, logits, sc->n_vocab * sizeof(float));
            sc->e[i].used = ++sc->clock;
            return;
        }
    }
    e.n = n;
    e.key = malloc(n * sizeof(int32_t));
    e.state = rwkv_state_clone(state);
    e.logits = malloc(sc->n_vocab * sizeof(float));
    e.used = ++sc->clock;
    if (sc->n == sc->cap) {
        size_t nc = sc->cap ? 2 * sc->cap : 16;
        struct entry *ne = realloc(sc->e, nc * sizeof *ne);

        if (ne) {
            sc->e = ne;
            sc->cap = nc;
        }
    }
    if (!e.key || !e.state || !e.logits || sc->n == sc->cap) {
        free(e.key);
        rwkv_state_free(e.state);
        free(e.logits);
        return;
    }
    memcpy(e.key, key, n * sizeof(int32_t));
    memcpy(e.logits, logits, sc->n_vocab * sizeof(float));
    sc->e[sc->n++] = e;
    sc->bytes += entry_bytes(sc, &e);
    while (sc->bytes > sc->max_bytes && sc->n > 0) {
        oldest = 0;
        for (i = 1; i < sc->n; i++) {
            if (sc->e[i].used < sc->e[oldest].used) {
                oldest = i;
            }
        }
        drop(sc, oldest);
    }
}

void state_cache_stats(const state_cache *sc, struct state_cache_stats *st)
{
    st->entries = sc->n;
    st->bytes = sc->bytes;
    st->max_bytes = sc->max_bytes;
    st->hits = sc->hits;
    st->misses = sc->misses;
    st->tokens_reused = sc->tokens_reused;
}
