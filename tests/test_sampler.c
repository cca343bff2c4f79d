/* test_sampler.c - sampling maths on hand-made logits. */
#include "engine/sampling/sampler.h"
#include "tests/tap.h"

#include <math.h>
#include <time.h>

/* Settings with every filter and penalty off, temperature 1. */
static struct sampler_settings plain(void)
{
    struct sampler_settings s;

    sampler_defaults(&s);
    s.top_p = 1.0f;
    s.presence = 0.0f;
    s.frequency = 0.0f;
    s.decay = 1.0f;
    return s;
}

/* 1 if the last candidate set is exactly ids[0..n-1] (any order). */
static int kept_is(sampler *smp, const int32_t *ids, size_t n)
{
    const int32_t *k;
    const float *p;
    size_t m = sampler_last_candidates(smp, &k, &p), i, j;

    if (m != n) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        for (j = 0; j < m && k[j] != ids[i]; j++) {
        }
        if (j == m) {
            return 0;
        }
    }
    return 1;
}

/* Probability of id in the last candidate set (0 if absent). */
static float kept_prob(sampler *smp, int32_t id)
{
    const int32_t *k;
    const float *p;
    size_t m = sampler_last_candidates(smp, &k, &p), i;

    for (i = 0; i < m; i++) {
        if (k[i] == id) {
            return p[i];
        }
    }
    return 0.0f;
}

/* 1 under ASan/UBSan or valgrind, where long loops are cut short. */
static int instrumented(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return 1;
#endif
#endif
    return under_valgrind();
}

/* Standard normal from a small LCG (test data only). */
static double gauss(uint64_t *x)
{
    double u1, u2;

    *x = *x * 6364136223846793005ULL + 1442695040888963407ULL;
    u1 = ((*x >> 11) + 1.0) / 9007199254740993.0;
    *x = *x * 6364136223846793005ULL + 1442695040888963407ULL;
    u2 = (*x >> 11) / 9007199254740992.0;
    return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;

    return x > y ? -1 : x < y;
}

/* Reference top-p by a full sort: the count of tokens kept. */
static size_t reference_top_p(const float *logits, int n, float top_p)
{
    float *e = malloc(sizeof(float) * n), max = -INFINITY, cutoff;
    double total = 0, cum = 0;
    size_t kept = 0;
    int i;

    for (i = 0; i < n; i++) {
        max = logits[i] > max ? logits[i] : max;
    }
    for (i = 0; i < n; i++) {
        e[i] = expf(logits[i] - max);
        total += e[i];
    }
    qsort(e, n, sizeof *e, cmp_desc);
    cutoff = e[0];
    for (i = 0; i < n; i++) {
        cum += e[i];
        if (cum >= top_p * total) {
            cutoff = e[i];
            break;
        }
    }
    for (i = 0; i < n; i++) {
        kept += e[i] >= cutoff;
    }
    free(e);
    return kept;
}

int main(void)
{
    struct sampler_settings s;
    sampler *smp, *b;
    float logits[16];
    const double p5[5] = { 0.30, 0.25, 0.20, 0.15, 0.10 };
    int i;

    /* Defaults: ChatRWKV's chat settings. */
    sampler_defaults(&s);
    ok(s.temperature == 1.0f && s.top_p == 0.3f && s.presence == 0.5f && s.frequency == 0.5f &&
       s.decay == 0.996f && s.top_k == 0 && s.min_p == 0.0f,
       "defaults are ChatRWKV's: T 1.0, top_p 0.3, presence 0.5, frequency 0.5, decay 0.996");

    /* Penalties and decay, observed through greedy sampling (which
     * leaves the penalised logits in place). */
    s = plain();
    s.temperature = 0.0f;
    s.presence = 0.5f;
    s.frequency = 0.25f;
    s.decay = 0.5f;
    smp = sampler_new(10, &s);
    sampler_accept(smp, 3);
    sampler_accept(smp, 3);
    sampler_accept(smp, 5);
    ok(sampler_count(smp, 3) == 0.75f && sampler_count(smp, 5) == 1.0f,
       "counts decay before counting: 3 -> (1*0.5+1)*0.5 = 0.75, 5 -> 1 (got %g, %g)",
       sampler_count(smp, 3), sampler_count(smp, 5));
    for (i = 0; i < 10; i++) {
        logits[i] = 0.0f;
    }
    i = sampler_sample(smp, logits);
    ok(logits[3] == -(0.5f + 0.75f * 0.25f) && logits[5] == -(0.5f + 1.0f * 0.25f),
       "penalty = presence + frequency * count: %g and %g", logits[3], logits[5]);
    ok(logits[1] == 0.0f && logits[9] == 0.0f, "unseen tokens untouched");
    ok(isinf(logits[0]) && logits[0] < 0, "token 0 banned by default (-inf)");
    ok(i == 1, "greedy picks the lowest id among equal maxima (got %d)", i);

    /* ChatRWKV's zero-weight tokens: presence penalty only. */
    sampler_set_count_weight(smp, 7, 0.0f);
    sampler_accept(smp, 7);
    ok(sampler_present(smp, 7) && sampler_count(smp, 7) == 0.0f,
       "zero-weight token present with count 0");
    for (i = 0; i < 10; i++) {
        logits[i] = 0.0f;
    }
    sampler_sample(smp, logits);
    ok(logits[7] == -0.5f, "zero-weight token gets exactly the presence penalty (%g)", logits[7]);
    ok(logits[3] == -(0.5f + 0.375f * 0.25f), "older counts decayed again (%g)", logits[3]);
    sampler_reset_counts(smp);
    ok(!sampler_present(smp, 3) && sampler_count(smp, 3) == 0.0f, "reset clears the counts");

    /* Bans. */
    sampler_ban(smp, 0, 0);
    sampler_ban(smp, 2, 1);
    for (i = 0; i < 10; i++) {
        logits[i] = (float)i * 0.1f;
    }
    logits[2] = 5.0f;
    logits[0] = 4.0f;
    i = sampler_sample(smp, logits);
    ok(i == 0 && isinf(logits[2]), "banned best token skipped, unbanned token 0 chosen (%d)", i);
    sampler_free(smp);

    /* Top-p: exactly the smallest prefix of the sorted distribution whose
     * mass reaches p.  Tokens shuffled so ids do not follow the order. */
    {
        const int32_t order[5] = { 3, 0, 4, 1, 2 };  /* id of the k-th largest */
        float lg[5];
        int32_t want[5];
        struct { float top_p; size_t n; } cases[] = {
            { 0.29f, 1 }, { 0.31f, 2 }, { 0.54f, 2 }, { 0.56f, 3 }, { 0.74f, 3 },
            { 0.76f, 4 }, { 0.89f, 4 }, { 0.91f, 5 }, { 0.0f, 1 },
        };
        size_t c;

        s = plain();
        smp = sampler_new(5, &s);
        sampler_ban(smp, 0, 0);
        for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            for (i = 0; i < 5; i++) {
                lg[order[i]] = (float)log(p5[i]);
                want[i] = order[i];
            }
            s.top_p = cases[c].top_p;
            sampler_configure(smp, &s);
            sampler_sample(smp, lg);
            ok(kept_is(smp, want, cases[c].n), "top_p %.2f keeps exactly the %zu largest",
               cases[c].top_p, cases[c].n);
        }
        /* Renormalised over the kept set. */
        for (i = 0; i < 5; i++) {
            lg[order[i]] = (float)log(p5[i]);
        }
        s.top_p = 0.56f;
        sampler_configure(smp, &s);
        sampler_sample(smp, lg);
        ok(fabsf(kept_prob(smp, 3) - 0.30f / 0.75f) < 1e-6f &&
           fabsf(kept_prob(smp, 4) - 0.20f / 0.75f) < 1e-6f,
           "kept probabilities renormalised (%g, %g; want 0.4, 0.2667)", kept_prob(smp, 3),
           kept_prob(smp, 4));

        /* Top-k. */
        s = plain();
        s.top_k = 2;
        sampler_configure(smp, &s);
        for (i = 0; i < 5; i++) {
            lg[order[i]] = (float)log(p5[i]);
        }
        sampler_sample(smp, lg);
        ok(kept_is(smp, want, 2), "top_k 2 keeps the two largest");

        /* Min-p: p >= 0.6 * 0.30 = 0.18 keeps 0.30, 0.25, 0.20. */
        s = plain();
        s.min_p = 0.6f;
        sampler_configure(smp, &s);
        for (i = 0; i < 5; i++) {
            lg[order[i]] = (float)log(p5[i]);
        }
        sampler_sample(smp, lg);
        ok(kept_is(smp, want, 3), "min_p 0.6 keeps p >= 0.18 (three tokens)");

        /* Intersection of the rules. */
        s = plain();
        s.top_p = 0.91f;
        s.top_k = 4;
        s.min_p = 0.4f;     /* p >= 0.12: four tokens */
        sampler_configure(smp, &s);
        for (i = 0; i < 5; i++) {
            lg[order[i]] = (float)log(p5[i]);
        }
        sampler_sample(smp, lg);
        ok(kept_is(smp, want, 4), "top_p 0.91 & top_k 4 & min_p 0.4 keep four");
        s.top_k = 3;
        sampler_configure(smp, &s);
        for (i = 0; i < 5; i++) {
            lg[order[i]] = (float)log(p5[i]);
        }
        sampler_sample(smp, lg);
        ok(kept_is(smp, want, 3), "the smallest rule wins (top_k 3)");

        /* Temperature: p^(1/T) renormalised, after the cut. */
        s = plain();
        s.temperature = 0.5f;
        sampler_configure(smp, &s);
        for (i = 0; i < 5; i++) {
            lg[order[i]] = (float)log(p5[i]);
        }
        sampler_sample(smp, lg);
        {
            double z = 0, worst = 0;

            for (i = 0; i < 5; i++) {
                z += p5[i] * p5[i];
            }
            for (i = 0; i < 5; i++) {
                double d = fabs(kept_prob(smp, order[i]) - p5[i] * p5[i] / z);

                worst = d > worst ? d : worst;
            }
            ok(worst < 1e-6, "temperature 0.5 gives p^2 renormalised (max err %.2g)", worst);
        }
        /* ChatRWKV applies temperature after top-p: T does not change the set. */
        s.top_p = 0.56f;
        s.temperature = 3.0f;
        sampler_configure(smp, &s);
        for (i = 0; i < 5; i++) {
            lg[order[i]] = (float)log(p5[i]);
        }
        sampler_sample(smp, lg);
        ok(kept_is(smp, want, 3), "top_p is measured at temperature 1 (T 3 keeps the same 3)");

        /* Empirical distribution of the draws. */
        s = plain();
        s.seed = 42;
        sampler_configure(smp, &s);
        sampler_seed(smp, 42);
        {
            int hist[5] = { 0 }, n = instrumented() ? 50000 : 200000;
            double worst = 0;

            for (i = 0; i < n; i++) {
                int k;

                for (k = 0; k < 5; k++) {
                    lg[order[k]] = (float)log(p5[k]);
                }
                hist[sampler_sample(smp, lg)]++;
            }
            for (i = 0; i < 5; i++) {
                double d = fabs(hist[order[i]] / (double)n - p5[i]);

                worst = d > worst ? d : worst;
            }
            ok(worst < 0.01, "%d draws follow the distribution (max deviation %.4f)", n, worst);
        }
        sampler_free(smp);
    }

    /* Determinism per seed. */
    {
        float lg[16];
        int same = 1, differ = 0, k;
        sampler *x, *y, *z;

        s = plain();
        s.seed = 7;
        x = sampler_new(16, &s);
        y = sampler_new(16, &s);
        s.seed = 8;
        z = sampler_new(16, &s);
        for (i = 0; i < 1000; i++) {
            int32_t tx, ty, tz;

            for (k = 0; k < 16; k++) {
                lg[k] = (float)k * 0.1f;
            }
            tx = sampler_sample(x, lg);
            for (k = 0; k < 16; k++) {
                lg[k] = (float)k * 0.1f;
            }
            ty = sampler_sample(y, lg);
            for (k = 0; k < 16; k++) {
                lg[k] = (float)k * 0.1f;
            }
            tz = sampler_sample(z, lg);
            same &= tx == ty;
            differ |= tx != tz;
            sampler_accept(x, tx);
            sampler_accept(y, ty);
            sampler_accept(z, tz);
        }
        ok(same, "same seed: same 1000 draws");
        ok(differ, "another seed: other draws");

        /* Serialised state: a clone from bytes continues identically. */
        {
            size_t n = sampler_state_size(x), w;
            uint8_t *buf = malloc(n);
            sampler *r;

            sampler_ban(x, 5, 1);
            sampler_set_count_weight(x, 6, 0.0f);
            n = sampler_state_size(x);
            buf = realloc(buf, n);
            w = sampler_state_save(x, buf);
            s.seed = 99;
            r = sampler_new(16, &s);
            ok(w == n && sampler_state_load(r, buf, n) == 0, "state saved (%zu bytes) and loaded", n);
            same = 1;
            for (i = 0; i < 200; i++) {
                int32_t tx, tr;

                for (k = 0; k < 16; k++) {
                    lg[k] = (float)k * 0.1f;
                }
                tx = sampler_sample(x, lg);
                for (k = 0; k < 16; k++) {
                    lg[k] = (float)k * 0.1f;
                }
                tr = sampler_sample(r, lg);
                same &= tx == tr && tx != 5;
                sampler_accept(x, tx);
                sampler_accept(r, tr);
            }
            ok(same && sampler_count(r, 6) == sampler_count(x, 6) && sampler_count(r, 3) == sampler_count(x, 3),
               "restored sampler draws the same 200 tokens, counts equal");
            ok(sampler_state_load(r, buf, n - 1) == -1, "truncated sampler state refused");
            buf[4] = 17;
            ok(sampler_state_load(r, buf, n) == -1, "sampler state for another vocabulary refused");
            free(buf);
            sampler_free(r);
        }
        {
            sampler *c = sampler_clone(x);
            int32_t t1, t2;

            for (k = 0; k < 16; k++) {
                lg[k] = (float)k * 0.1f;
            }
            t1 = sampler_sample(x, lg);
            for (k = 0; k < 16; k++) {
                lg[k] = (float)k * 0.1f;
            }
            t2 = sampler_sample(c, lg);
            ok(t1 == t2, "a clone draws what the original draws");
            sampler_free(c);
        }
        sampler_free(x);
        sampler_free(y);
        sampler_free(z);
    }

    /* 65536 logits: agreement with a full sort (speed: rwkv-tool bench sampler). */
    {
        int n = 65536, k;
        float *base = malloc(sizeof(float) * n), *lg = malloc(sizeof(float) * n);
        uint64_t x = 1;
        const float tops[] = { 0.0f, 0.1f, 0.3f, 0.5f, 0.7f, 0.9f, 0.99f };
        int agree = 1;

        for (i = 0; i < n; i++) {
            base[i] = (float)(3.0 * gauss(&x));
        }
        s = plain();
        smp = sampler_new(n, &s);
        sampler_ban(smp, 0, 0);
        for (k = 0; k < (int)(sizeof tops / sizeof tops[0]); k++) {
            size_t want = reference_top_p(base, n, tops[k]), got;
            const int32_t *ids;
            const float *p;

            s.top_p = tops[k];
            sampler_configure(smp, &s);
            memcpy(lg, base, sizeof(float) * n);
            sampler_sample(smp, lg);
            got = sampler_last_candidates(smp, &ids, &p);
            if (got != want) {
                diag("top_p %.2f: kept %zu, full sort keeps %zu", tops[k], got, want);
                agree = 0;
            }
        }
        ok(agree, "top_p over 65536 logits (std 3) keeps what a full sort keeps, 7 values of p");

        /* Top-k against the sort too. */
        s = plain();
        s.top_k = 40;
        sampler_configure(smp, &s);
        memcpy(lg, base, sizeof(float) * n);
        sampler_sample(smp, lg);
        {
            const int32_t *ids;
            const float *p;
            size_t got = sampler_last_candidates(smp, &ids, &p);
            float *sorted = malloc(sizeof(float) * n), lo = INFINITY;
            size_t j;

            memcpy(sorted, base, sizeof(float) * n);
            qsort(sorted, n, sizeof *sorted, cmp_desc);
            for (j = 0; j < got; j++) {
                lo = base[ids[j]] < lo ? base[ids[j]] : lo;
            }
            ok(got == 40 && lo == sorted[39], "top_k 40 over 65536 keeps the 40 largest");
            free(sorted);
        }

        sampler_free(smp);
        free(base);
        free(lg);
    }

    /* An infinite logit wins outright. */
    s = plain();
    b = sampler_new(4, &s);
    logits[0] = logits[1] = logits[2] = 1.0f;
    logits[3] = INFINITY;
    ok(sampler_sample(b, logits) == 3, "+inf logit: chosen");
    sampler_free(b);

    /* NaN logits, or none finite: a broken model, not a banned vocabulary. */
    s = plain();
    b = sampler_new(4, &s);
    logits[0] = logits[1] = logits[3] = 1.0f;
    logits[2] = NAN;
    ok(sampler_sample(b, logits) == SAMPLER_NONFINITE, "a NaN logit: SAMPLER_NONFINITE");
    s.temperature = 0;
    sampler_configure(b, &s);
    logits[0] = logits[1] = logits[3] = 1.0f;
    logits[2] = NAN;
    ok(sampler_sample(b, logits) == SAMPLER_NONFINITE, "a NaN logit, greedy: SAMPLER_NONFINITE");
    logits[0] = logits[1] = logits[2] = logits[3] = -INFINITY;
    ok(sampler_sample(b, logits) == SAMPLER_NONFINITE, "every logit -inf: SAMPLER_NONFINITE");
    sampler_free(b);

    /* Everything banned. */
    s = plain();
    b = sampler_new(3, &s);
    sampler_ban(b, 1, 1);
    sampler_ban(b, 2, 1);
    logits[0] = logits[1] = logits[2] = 1.0f;
    ok(sampler_sample(b, logits) == -1, "every token banned: -1");
    sampler_free(b);
    return tap_done();
}
