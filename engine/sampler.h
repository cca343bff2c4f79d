/*
 * sampler.h - choose the next token from logits.
 *
 * ChatRWKV's sampling: presence/frequency penalties on the counts of
 * generated tokens (decayed every token), a ban list, then temperature,
 * top-k, top-p, min-p.  Deterministic for a given seed.  Temperature 0 is
 * greedy (argmax after penalties and bans).
 */
#ifndef RWKV_SAMPLER_H
#define RWKV_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

struct sampler_settings {
    float temperature;      /* 1.0; 0 = greedy */
    float top_p;            /* 0.3; 1 = off */
    int top_k;              /* 0 = off */
    float min_p;            /* 0 = off */
    float presence;         /* 0.5 */
    float frequency;        /* 0.5 */
    float decay;            /* 0.996: counts *= decay every token */
    int max_tokens;         /* reply length limit (chat), 0 = none */
    uint64_t seed;
};

/* ChatRWKV chat defaults. */
void sampler_defaults(struct sampler_settings *s);

typedef struct sampler sampler;

/* n_vocab-sized penalty counters and scratch; NULL on allocation failure. */
sampler *sampler_new(int n_vocab, const struct sampler_settings *s);
void sampler_free(sampler *smp);
sampler *sampler_clone(const sampler *smp);
/* Settings apply from the next sampler_sample call. */
void sampler_configure(sampler *smp, const struct sampler_settings *s);
/* Re-seeds the random generator. */
void sampler_seed(sampler *smp, uint64_t seed);
/* Clears the penalty counts (new reply). */
void sampler_reset_counts(sampler *smp);
/* Token ban list (ids never sampled); token 0 is banned by default. */
void sampler_ban(sampler *smp, int32_t id, int banned);

/* Applies penalties/bans to logits in place and draws a token.  Does not
 * record it: call sampler_accept with the token actually emitted. */
int32_t sampler_sample(sampler *smp, float *logits);
/* Decays all counts, then counts token (ChatRWKV order). */
void sampler_accept(sampler *smp, int32_t token);

/* Serialisable random state and counts, for snapshots/state files. */
size_t sampler_state_size(const sampler *smp);

#endif
