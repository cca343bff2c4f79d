/*
 * sampler.c - ChatRWKV's sampling, without sorting the vocabulary.
 *
 * Order of operations (as rwkv pip PIPELINE.sample_logits and ChatRWKV's
 * API_DEMO_CHAT.py):
 *   1. logit[t] -= presence + frequency * count[t] for every token seen
 *      since the last reset; banned tokens get -inf;
 *   2. temperature 0: argmax (lowest id on ties);
 *   3. p = softmax(logits) at temperature 1;
 *   4. keep the largest probabilities: top-p keeps the smallest prefix of
 *      the sorted distribution whose mass reaches top_p (plus tokens tied
 *      with its last one), top-k keeps k, min-p keeps p >= min_p * p_max;
 *      the kept set is the intersection (all are prefixes);
 *   5. p^(1/temperature) over the kept set, renormalised, one draw.
 * After a token is emitted, every count is multiplied by decay and the
 * token's count grows by its weight (1, or 0 for ChatRWKV's whitespace and
 * digit tokens).
 *
 * Step 4 finds the cut without a sort: a histogram of the gap
 * max_logit - logit in 1/8-nat buckets gives the bucket holding the cut,
 * and only that bucket is sorted.
 */
#include "engine/sampling/sampler.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS_PER_NAT 8
#define N_BUCKETS 512                   /* gaps up to 64 nats; the rest share the last */
#define SORTED_LIMIT 4096

#define FLAG_PRESENT 1
#define FLAG_BANNED 2

struct sampler {
    int n_vocab;
    struct sampler_settings set;
    uint64_t rng[4];                    /* xoshiro256** */
    float *count;                       /* decayed occurrence counts */
    float *weight;                      /* what one occurrence adds */
    uint8_t *flags;
    int32_t *present;                   /* ids with FLAG_PRESENT, first-seen order */
    size_t n_present;
    /* scratch for one draw */
    float *e;                           /* exp(logit - max) */
    uint16_t *bucket;
    int32_t *kept;
    float *kept_p;
    size_t n_kept;
    int kept_sorted;
    double kept_sum;                    /* kept_p sum to this */
    int32_t *tie;                       /* members of the cut bucket */
    uint64_t *key;                      /* sort keys */
    int32_t *banned;                    /* ids with FLAG_BANNED */
    size_t n_banned;
    int banned_stale;                   /* flags changed since the list was built */
    double mass[N_BUCKETS];
    double part_mass[4][N_BUCKETS];
    uint32_t part_filled[4][N_BUCKETS];
    size_t filled[N_BUCKETS];
};

static void list_banned(sampler *smp);

/* splitmix64: expands a seed into the xoshiro state. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** (Blackman and Vigna, 2018). */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform double in [0, 1) from the top 53 bits. */
static double rng_uniform(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

void sampler_defaults(struct sampler_settings *s)
{
    knob_defaults(s);
}

void sampler_seed(sampler *smp, uint64_t seed)
{
    uint64_t x = seed;
    int i;

    for (i = 0; i < 4; i++) {
        smp->rng[i] = splitmix64(&x);
    }
}

sampler *sampler_new(int n_vocab, const struct sampler_settings *s)
{
    sampler *smp;
    size_t n = (size_t)n_vocab, i;

    if (n_vocab <= 0) {
        return NULL;
    }
    smp = calloc(1, sizeof *smp);
    if (!smp) {
        return NULL;
    }
    smp->n_vocab = n_vocab;
    smp->count = calloc(n, sizeof *smp->count);
    smp->weight = malloc(n * sizeof *smp->weight);
    smp->flags = calloc(n, 1);
    smp->present = malloc(n * sizeof *smp->present);
    smp->e = malloc(n * sizeof *smp->e);
    smp->bucket = malloc(n * sizeof *smp->bucket);
    smp->kept = malloc(n * sizeof *smp->kept);
    smp->kept_p = malloc(n * sizeof *smp->kept_p);
    smp->tie = malloc(n * sizeof *smp->tie);
    smp->key = malloc(n * sizeof *smp->key);
    smp->banned = malloc(n * sizeof *smp->banned);
    if (!smp->count || !smp->weight || !smp->flags || !smp->present || !smp->e ||
        !smp->bucket || !smp->kept || !smp->kept_p || !smp->tie || !smp->key ||
        !smp->banned) {
        sampler_free(smp);
        return NULL;
    }
    for (i = 0; i < n; i++) {
        smp->weight[i] = 1.0f;
    }
    sampler_ban(smp, 0, 1);
    if (s) {
        smp->set = *s;
    } else {
        sampler_defaults(&smp->set);
    }
    sampler_seed(smp, smp->set.seed);
    return smp;
}

void sampler_free(sampler *smp)
{
    if (!smp) {
        return;
    }
    free(smp->count);
    free(smp->weight);
    free(smp->flags);
    free(smp->present);
    free(smp->e);
    free(smp->bucket);
    free(smp->kept);
    free(smp->kept_p);
    free(smp->tie);
    free(smp->key);
    free(smp->banned);
    free(smp);
}

sampler *sampler_clone(const sampler *smp)
{
    sampler *c = sampler_new(smp->n_vocab, &smp->set);
    size_t n = (size_t)smp->n_vocab;

    if (!c) {
        return NULL;
    }
    memcpy(c->rng, smp->rng, sizeof c->rng);
    memcpy(c->count, smp->count, n * sizeof *c->count);
    memcpy(c->weight, smp->weight, n * sizeof *c->weight);
    memcpy(c->flags, smp->flags, n);
    memcpy(c->present, smp->present, smp->n_present * sizeof *c->present);
    c->n_present = smp->n_present;
    list_banned(c);
    return c;
}

void sampler_configure(sampler *smp, const struct sampler_settings *s)
{
    smp->set = *s;
}

void sampler_reset_counts(sampler *smp)
{
    size_t i;

    for (i = 0; i < smp->n_present; i++) {
        int32_t id = smp->present[i];

        smp->flags[id] &= (uint8_t)~FLAG_PRESENT;
        smp->count[id] = 0.0f;
    }
    smp->n_present = 0;
}

/* Rebuilds the list of banned ids from the flags. */
static void list_banned(sampler *smp)
{
    int32_t id;

    smp->n_banned = 0;
    smp->banned_stale = 0;
    for (id = 0; id < smp->n_vocab; id++) {
        if (smp->flags[id] & FLAG_BANNED) {
            smp->banned[smp->n_banned++] = id;
        }
    }
}

void sampler_ban(sampler *smp, int32_t id, int banned)
{
    if (id < 0 || id >= smp->n_vocab) {
        return;
    }
    if (banned) {
        smp->flags[id] |= FLAG_BANNED;
    } else {
        smp->flags[id] &= (uint8_t)~FLAG_BANNED;
    }
    smp->banned_stale = 1;      /* the list is rebuilt at the next draw */
}

void sampler_set_count_weight(sampler *smp, int32_t id, float weight)
{
    if (id >= 0 && id < smp->n_vocab) {
        smp->weight[id] = weight;
    }
}

float sampler_count(const sampler *smp, int32_t id)
{
    return id >= 0 && id < smp->n_vocab ? smp->count[id] : 0.0f;
}

int sampler_present(const sampler *smp, int32_t id)
{
    return id >= 0 && id < smp->n_vocab && (smp->flags[id] & FLAG_PRESENT);
}

size_t sampler_last_candidates(sampler *smp, const int32_t **ids, const float **probs)
{
    uint64_t *key = smp->key;
    size_t i, n = smp->n_kept;

    if (smp->kept_sum != 1.0) {
        for (i = 0; i < n; i++) {
            smp->kept_p[i] = (float)(smp->kept_p[i] / smp->kept_sum);
        }
        smp->kept_sum = 1.0;
    }
    if (!smp->kept_sorted && n <= SORTED_LIMIT) {
        /* Probabilities are positive floats: their bits order like them. */
        for (i = 0; i < n; i++) {
            uint32_t bits;

            memcpy(&bits, &smp->kept_p[i], 4);
            key[i] = (uint64_t)(~bits) << 32 | (uint32_t)smp->kept[i];
        }
        qsort(key, n, sizeof *key, cmp_u64);
        for (i = 0; i < n; i++) {
            uint32_t bits = ~(uint32_t)(key[i] >> 32);

            smp->kept[i] = (int32_t)(uint32_t)key[i];
            memcpy(&smp->kept_p[i], &bits, 4);
        }
        smp->kept_sorted = 1;
    }
    *ids = smp->kept;
    *probs = smp->kept_p;
    return n;
}

void sampler_accept(sampler *smp, int32_t token)
{
    float decay = smp->set.decay;
    size_t i;

    if (token < 0 || token >= smp->n_vocab) {
        return;
    }
    for (i = 0; i < smp->n_present; i++) {
        smp->count[smp->present[i]] *= decay;
    }
    if (!(smp->flags[token] & FLAG_PRESENT)) {
        smp->flags[token] |= FLAG_PRESENT;
        smp->present[smp->n_present++] = token;
        smp->count[token] = 0.0f;
    }
    smp->count[token] += smp->weight[token];
}

/* Sorts ids[0..n-1] by decreasing e, then increasing id.  e values are
 * positive floats, whose bit patterns order like the values, so one
 * 64-bit key (inverted e bits, id) sorts both ways at once. */
static void sort_desc(sampler *smp, int32_t *ids, size_t n)
{
    uint64_t *key = smp->key;
    size_t i;

    for (i = 0; i < n; i++) {
        uint32_t bits;

        memcpy(&bits, &smp->e[ids[i]], 4);
        key[i] = (uint64_t)(~bits) << 32 | (uint32_t)ids[i];
    }
    qsort(key, n, sizeof *key, cmp_u64);
    for (i = 0; i < n; i++) {
        ids[i] = (int32_t)(uint32_t)key[i];
    }
}

/* The greedy choice: argmax of the penalised logits, lowest id on ties. */
static int32_t argmax(sampler *smp, const float *logits)
{
    int32_t best = -1, i;
    float bv = -INFINITY;

    for (i = 0; i < smp->n_vocab; i++) {
        if (logits[i] > bv) {
            bv = logits[i];
            best = i;
        }
    }
    smp->n_kept = 0;
    if (best >= 0) {
        smp->kept[0] = best;
        smp->kept_p[0] = 1.0f;
        smp->n_kept = 1;
        smp->kept_sorted = 1;
    }
    return best;
}

#if defined(__GNUC__) && !defined(__clang__)
#define VECTORIZE __attribute__((optimize("tree-vectorize")))
#else
#define VECTORIZE
#endif

union f32bits {
    float f;
    uint32_t u;
};

/* e[i] = exp(logits[i] - max) and bucket[i] = floor(8 (max - logits[i]))
 * (at most N_BUCKETS - 1), branch-free so that it vectorises.  exp is
 * Cephes' expf: 2^n times a degree-7 polynomial on [-ln2/2, ln2/2],
 * relative error < 2e-7; arguments below -87 (and -inf) give 0. */
VECTORIZE
static void exp_pass(const float *logits, float max, float *e, uint16_t *bucket, int32_t n)
{
    int32_t i;

    for (i = 0; i < n; i++) {
        union f32bits x, scale, res;
        uint32_t keep;
        float t, nf, r, p;
        int32_t b;

        /* x <= 0; for negative floats the bit patterns grow with the
         * magnitude, so an integer min clamps without a float branch. */
        x.f = logits[i] - max;
        keep = (uint32_t)0 - (uint32_t)(x.u <= 0xC2AE0000u);   /* x >= -87 */
        x.u = x.u <= 0xC2AE0000u ? x.u : 0xC2AE0000u;
        t = x.f * 1.44269504088896341f;
        nf = (t + 12582912.0f) - 12582912.0f;                   /* round to nearest */
        r = x.f - nf * 0.693359375f;
        r = r - nf * -2.12194440e-4f;
        p = 1.9875691500e-4f;
        p = p * r + 1.3981999507e-3f;
        p = p * r + 8.3334519073e-3f;
        p = p * r + 4.1665795894e-2f;
        p = p * r + 1.6666665459e-1f;
        p = p * r + 5.0000001201e-1f;
        p = p * r * r + r + 1.0f;
        scale.u = (uint32_t)((int32_t)nf + 127) << 23;
        res.f = p * scale.f;
        res.u &= keep;
        e[i] = res.f;
        b = (int32_t)(x.f * -(float)BUCKETS_PER_NAT);
        b = b < N_BUCKETS - 1 ? b : N_BUCKETS - 1;
        bucket[i] = (uint16_t)b;
    }
}

/* w[i] = exp((logits[i] - max) / temperature) for the kept ids, the same
 * exp as exp_pass. */
static float exp_scalar(float x)
{
    union f32bits xb, scale, res;
    uint32_t keep;
    float t, nf, r, p;

    xb.f = x;
    keep = (uint32_t)0 - (uint32_t)(xb.u <= 0xC2AE0000u || !(xb.u >> 31));
    xb.u = (xb.u >> 31) && xb.u > 0xC2AE0000u ? 0xC2AE0000u : xb.u;
    t = xb.f * 1.44269504088896341f;
    nf = (t + 12582912.0f) - 12582912.0f;
    r = xb.f - nf * 0.693359375f;
    r = r - nf * -2.12194440e-4f;
    p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    scale.u = (uint32_t)((int32_t)nf + 127) << 23;
    res.f = p * scale.f;
    res.u &= keep;
    return res.f;
}

/* Histogram of the buckets: mass and count per bucket.  Four interleaved
 * partial histograms keep consecutive tokens that land in the same
 * bucket from waiting on each other's store.  Returns the total mass;
 * *n_valid counts e > 0. */
static double histogram(sampler *smp, size_t *n_valid)
{
    int32_t id, n = smp->n_vocab;
    double total = 0.0;
    size_t b, valid = 0;
    int lane;

    memset(smp->part_mass, 0, sizeof smp->part_mass);
    memset(smp->part_filled, 0, sizeof smp->part_filled);
    for (id = 0; id < n; id++) {
        float e = smp->e[id];

        if (e > 0.0f) {
            lane = id & 3;
            smp->part_mass[lane][smp->bucket[id]] += e;
            smp->part_filled[lane][smp->bucket[id]]++;
        }
    }
    for (b = 0; b < N_BUCKETS; b++) {
        smp->mass[b] = smp->part_mass[0][b] + smp->part_mass[1][b] + smp->part_mass[2][b] +
                       smp->part_mass[3][b];
        smp->filled[b] = smp->part_filled[0][b] + smp->part_filled[1][b] +
                         smp->part_filled[2][b] + smp->part_filled[3][b];
        total += smp->mass[b];
        valid += smp->filled[b];
    }
    *n_valid = valid;
    return total;
}

/* Finds the kept set (step 4) into smp->kept, in decreasing bucket order;
 * returns its size.  total is the sum of e. */
static size_t cut(sampler *smp, double total, size_t n_valid)
{
    const struct sampler_settings *s = &smp->set;
    int use_p = s->top_p < 1.0f, use_k = s->top_k > 0 && (size_t)s->top_k < n_valid;
    int use_m = s->min_p > 0.0f;
    double target = use_p ? (double)(s->top_p > 0.0f ? s->top_p : 0.0f) * total : 0.0;
    float min_e = use_m ? s->min_p : 0.0f;     /* e of the max token is 1 */
    size_t b, cut_b = N_BUCKETS - 1, n_kept = 0, n_tie = 0, i, cnt = 0;
    double cum = 0.0;
    int reached_p = 0;
    float last = 0.0f;
    int32_t id;

    if (use_m) {
        double gap = -log((double)min_e) * BUCKETS_PER_NAT;

        cut_b = gap >= N_BUCKETS - 1 ? N_BUCKETS - 1 : (size_t)gap;
    }
    for (b = 0; b < cut_b; b++) {
        if ((use_p && cum + smp->mass[b] >= target) ||
            (use_k && cnt + smp->filled[b] >= (size_t)s->top_k)) {
            cut_b = b;
            break;
        }
        cum += smp->mass[b];
        cnt += smp->filled[b];
    }
    /* Buckets before cut_b are kept whole: the cut is inside cut_b, whose
     * members are sorted and taken while every rule still allows. */
    for (id = 0; id < smp->n_vocab; id++) {
        if (smp->bucket[id] <= cut_b && smp->e[id] > 0.0f) {
            if (smp->bucket[id] < cut_b) {
                smp->kept[n_kept++] = id;
            } else {
                smp->tie[n_tie++] = id;
            }
        }
    }
    assert(n_kept == cnt);
    sort_desc(smp, smp->tie, n_tie);
    for (i = 0; i < n_tie; i++) {
        float v = smp->e[smp->tie[i]];

        if ((use_k && cnt >= (size_t)s->top_k) || (use_m && v < min_e) ||
            (reached_p && v != last)) {
            break;
        }
        smp->kept[n_kept++] = smp->tie[i];
        cnt++;
        cum += v;
        last = v;
        if (use_p && cum >= target) {
            reached_p = 1;
        }
    }
    return n_kept;
}

/* Whether logits[0..n-1] holds a NaN (the rare path: some value is not
 * finite). */
static int has_nan(const float *logits, int32_t n)
{
    int32_t i;

    for (i = 0; i < n; i++) {
        if (isnan(logits[i])) {
            return 1;
        }
    }
    return 0;
}

int32_t sampler_sample(sampler *smp, float *logits)
{
    const struct sampler_settings *s = &smp->set;
    int32_t n = smp->n_vocab, id, chosen;
    size_t i, n_valid = 0;
    float max = -INFINITY;
    double total, wsum = 0.0, r, acc = 0.0;
    float any = -INFINITY, poison = 0.0f;

    /* x * 0 is NaN for NaN and +-inf: one vectorisable pass finds NaN;
     * max finds a vocabulary of -inf only. */
    for (id = 0; id < n; id++) {
        poison += logits[id] * 0.0f;
        any = logits[id] > any ? logits[id] : any;
    }
    if (any == -INFINITY || (isnan(poison) && has_nan(logits, n))) {
        smp->n_kept = 0;
        return SAMPLER_NONFINITE;
    }
    for (i = 0; i < smp->n_present; i++) {
        id = smp->present[i];
        logits[id] -= s->presence + smp->count[id] * s->frequency;
    }
    if (smp->banned_stale) {
        list_banned(smp);
    }
    for (i = 0; i < smp->n_banned; i++) {
        logits[smp->banned[i]] = -INFINITY;
    }
    smp->kept_sorted = 0;
    smp->kept_sum = 1.0;
    if (!(s->temperature > 0.0f)) {
        return argmax(smp, logits);
    }
    for (id = 0; id < n; id++) {
        max = logits[id] > max ? logits[id] : max;
    }
    if (max == -INFINITY) {
        smp->n_kept = 0;
        return -1;
    }
    exp_pass(logits, max, smp->e, smp->bucket, n);
    if (s->top_p >= 1.0f && s->top_k <= 0 && !(s->min_p > 0.0f)) {
        /* No cut: every token with e > 0. */
        smp->n_kept = 0;
        for (id = 0; id < n; id++) {
            if (smp->e[id] > 0.0f) {
                smp->kept[smp->n_kept++] = id;
            }
        }
    } else {
        total = histogram(smp, &n_valid);
        smp->n_kept = cut(smp, total, n_valid);
    }
    if (smp->n_kept == 0) {
        /* Only NaN or infinite logits: fall back to the argmax. */
        return argmax(smp, logits);
    }
    /* Step 5: p^(1/T) = exp((logit - max) / T) over the kept set. */
    for (i = 0; i < smp->n_kept; i++) {
        float w;

        id = smp->kept[i];
        w = s->temperature == 1.0f ? smp->e[id] : exp_scalar((logits[id] - max) / s->temperature);
        smp->kept_p[i] = w;
        wsum += w;
    }
    if (!(wsum > 0.0)) {
        /* Temperature so low that every weight underflowed: the largest. */
        sort_desc(smp, smp->kept, smp->n_kept);
        for (i = 0; i < smp->n_kept; i++) {
            smp->kept_p[i] = i == 0 ? 1.0f : 0.0f;
        }
        smp->kept_sorted = 1;
        return smp->kept[0];
    }
    r = rng_uniform(smp->rng) * wsum;
    chosen = smp->kept[smp->n_kept - 1];
    for (i = 0; i < smp->n_kept; i++) {
        acc += smp->kept_p[i];
        if (r < acc) {
            chosen = smp->kept[i];
            break;
        }
    }
    smp->kept_sum = wsum;       /* normalised when someone asks */
    return chosen;
}

/* Serialised form (little-endian): "SMP1", n_vocab, rng[4], n_present and
 * (id, count) pairs, n_banned and ids, n_weights and (id, weight) pairs for
 * weights other than 1. */
static size_t count_banned(const sampler *smp)
{
    size_t k = 0;
    int32_t id;

    for (id = 0; id < smp->n_vocab; id++) {
        k += (smp->flags[id] & FLAG_BANNED) != 0;
    }
    return k;
}

static size_t n_weights(const sampler *smp)
{
    size_t k = 0;
    int32_t id;

    for (id = 0; id < smp->n_vocab; id++) {
        k += smp->weight[id] != 1.0f;
    }
    return k;
}

size_t sampler_state_size(const sampler *smp)
{
    return 4 + 4 + 32 + 4 + smp->n_present * 8 + 4 + count_banned(smp) * 4 + 4 + n_weights(smp) * 8;
}

static uint8_t *put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
    return p + 4;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t fbits(float f)
{
    uint32_t u;

    memcpy(&u, &f, 4);
    return u;
}

static float bitsf(uint32_t u)
{
    float f;

    memcpy(&f, &u, 4);
    return f;
}

size_t sampler_state_save(const sampler *smp, void *buf)
{
    uint8_t *p = buf;
    size_t i;
    int32_t id;

    memcpy(p, "SMP1", 4);
    p += 4;
    p = put32(p, (uint32_t)smp->n_vocab);
    for (i = 0; i < 4; i++) {
        p = put32(p, (uint32_t)smp->rng[i]);
        p = put32(p, (uint32_t)(smp->rng[i] >> 32));
    }
    p = put32(p, (uint32_t)smp->n_present);
    for (i = 0; i < smp->n_present; i++) {
        p = put32(p, (uint32_t)smp->present[i]);
        p = put32(p, fbits(smp->count[smp->present[i]]));
    }
    p = put32(p, (uint32_t)count_banned(smp));
    for (id = 0; id < smp->n_vocab; id++) {
        if (smp->flags[id] & FLAG_BANNED) {
            p = put32(p, (uint32_t)id);
        }
    }
    p = put32(p, (uint32_t)n_weights(smp));
    for (id = 0; id < smp->n_vocab; id++) {
        if (smp->weight[id] != 1.0f) {
            p = put32(p, (uint32_t)id);
            p = put32(p, fbits(smp->weight[id]));
        }
    }
    return (size_t)(p - (uint8_t *)buf);
}

/* Reads a count-prefixed list of records of rec bytes; checks every id.
 * Returns the record count or -1. */
static long read_list(const uint8_t *buf, size_t len, size_t *pos, size_t rec, uint32_t n_vocab)
{
    uint32_t k, i;

    if (len - *pos < 4) {
        return -1;
    }
    k = get32(buf + *pos);
    *pos += 4;
    if (k > n_vocab || (len - *pos) / rec < k) {
        return -1;
    }
    for (i = 0; i < k; i++) {
        if (get32(buf + *pos + (size_t)i * rec) >= n_vocab) {
            return -1;
        }
    }
    *pos += (size_t)k * rec;
    return (long)k;
}

int sampler_state_load(sampler *smp, const void *data, size_t len)
{
    const uint8_t *buf = data;
    size_t pos = 8 + 32, p_present, p_banned, p_weights, i;
    long k_present, k_banned, k_weights;
    int32_t id;

    if (len < pos || memcmp(buf, "SMP1", 4) != 0 || get32(buf + 4) != (uint32_t)smp->n_vocab) {
        return -1;
    }
    p_present = pos;
    if ((k_present = read_list(buf, len, &pos, 8, (uint32_t)smp->n_vocab)) < 0) {
        return -1;
    }
    p_banned = pos;
    if ((k_banned = read_list(buf, len, &pos, 4, (uint32_t)smp->n_vocab)) < 0) {
        return -1;
    }
    p_weights = pos;
    if ((k_weights = read_list(buf, len, &pos, 8, (uint32_t)smp->n_vocab)) < 0 || pos != len) {
        return -1;
    }
    /* A present id listed twice would corrupt the list: check first. */
    {
        uint8_t *seen = calloc((size_t)smp->n_vocab, 1);

        if (!seen) {
            return -1;
        }
        for (i = 0; i < (size_t)k_present; i++) {
            id = (int32_t)get32(buf + p_present + 4 + i * 8);
            if (seen[id]) {
                free(seen);
                return -1;
            }
            seen[id] = 1;
        }
        free(seen);
    }
    for (i = 0; i < 4; i++) {
        smp->rng[i] = (uint64_t)get32(buf + 8 + i * 8) | (uint64_t)get32(buf + 12 + i * 8) << 32;
    }
    sampler_reset_counts(smp);
    for (i = 0; i < (size_t)k_present; i++) {
        id = (int32_t)get32(buf + p_present + 4 + i * 8);
        smp->flags[id] |= FLAG_PRESENT;
        smp->count[id] = bitsf(get32(buf + p_present + 8 + i * 8));
        smp->present[smp->n_present++] = id;
    }
    for (id = 0; id < smp->n_vocab; id++) {
        smp->flags[id] &= (uint8_t)~FLAG_BANNED;
        smp->weight[id] = 1.0f;
    }
    for (i = 0; i < (size_t)k_banned; i++) {
        smp->flags[get32(buf + p_banned + 4 + i * 4)] |= FLAG_BANNED;
    }
    list_banned(smp);
    for (i = 0; i < (size_t)k_weights; i++) {
        id = (int32_t)get32(buf + p_weights + 4 + i * 8);
        smp->weight[id] = bitsf(get32(buf + p_weights + 8 + i * 8));
    }
    return 0;
}
