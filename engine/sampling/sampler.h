/*
 * sampler.h - choose the next token from logits.
 *
 * ChatRWKV's sampling (rwkv pip PIPELINE.sample_logits / generate and
 * API_DEMO_CHAT.py), in this order: logit -= presence + frequency * count
 * for every token seen since sampler_reset_counts; banned tokens -inf;
 * temperature 0: argmax (lowest id on ties); otherwise softmax at
 * temperature 1, keep the largest probabilities allowed by top-p (the
 * smallest prefix of the sorted distribution whose mass reaches top_p, plus
 * ties with its last member), top-k and min-p (p >= min_p * p_max), then
 * p^(1/temperature) over the kept set, one draw from a seeded xoshiro256**.
 * After each emitted token every count is multiplied by decay, then the
 * token's count grows by its weight.  Deterministic for a given seed.
 * Costs about 0.3 ms over 65536 logits (no sort of the vocabulary).
 */
#ifndef RWKV_SAMPLER_H
#define RWKV_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/sampling/knobs.h"     /* struct sampler_settings and its table */

/* ChatRWKV chat defaults (knob_defaults). */
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
 * record it: call sampler_accept with the token actually emitted.
 * Returns -1 only when every token is banned, and SAMPLER_NONFINITE when
 * the logits given hold a NaN or are all -inf (a broken model or state:
 * nothing can be sampled from them). */
int32_t sampler_sample(sampler *smp, float *logits);
#define SAMPLER_NONFINITE (-2)
/* Decays all counts, then counts token (ChatRWKV order). */
void sampler_accept(sampler *smp, int32_t token);

/* Serialisable random state and counts, for snapshots/state files. */
size_t sampler_state_size(const sampler *smp);
/* Writes the serialised state (random generator, penalty counts, bans,
 * count weights; not the settings) to buf, which has room for
 * sampler_state_size bytes.  Returns the bytes written. */
size_t sampler_state_save(const sampler *smp, void *buf);
/* Restores a state written by sampler_state_save for the same n_vocab.
 * 0, or -1 (sampler unchanged) when buf is malformed. */
int sampler_state_load(sampler *smp, const void *buf, size_t len);

/* How much one occurrence of id adds to its count (1 by default).  ChatRWKV
 * counts tokens that decode to a piece of " \t0123456789" with weight 0:
 * they still get the presence penalty once seen, never the frequency one. */
void sampler_set_count_weight(sampler *smp, int32_t id, float weight);
/* The decayed count of id, and whether it occurred since the last reset. */
float sampler_count(const sampler *smp, int32_t id);
int sampler_present(const sampler *smp, int32_t id);

/* The candidate set of the last sampler_sample: ids and their final
 * probabilities (after penalties, top-k, top-p, min-p and temperature),
 * valid until the next call.  Sorted by decreasing probability when there
 * are at most 4096 of them; otherwise in no particular order. */
size_t sampler_last_candidates(sampler *smp, const int32_t **ids, const float **probs);

#endif
