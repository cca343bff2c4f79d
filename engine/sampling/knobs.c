/* knobs.c - the table of sampling knobs and the one check of their values. */
#include "engine/sampling/knobs.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIELD(f) offsetof(struct sampler_settings, f)

/* ChatRWKV's chat defaults (API_DEMO_CHAT.py).  Ranges: a temperature above
 * 10 or a penalty beyond 100 only ever gives noise or one token. */
static const struct knob table[] = {
    { "temperature", "temperature", "T", "0 is greedy", KNOB_REAL, FIELD(temperature),
      0, 10, 0.05, "%.2f", NULL, 1.0 },
    { "top_p", "top-p", "P", "nucleus sampling, 1 = off", KNOB_REAL, FIELD(top_p),
      0, 1, 0.05, "%.2f", NULL, 0.3 },
    { "top_k", "top-k", "K", "keep the K likeliest tokens, 0 = off", KNOB_WHOLE, FIELD(top_k),
      0, 1 << 20, 1, NULL, "off", 0 },
    { "min_p", "min-p", "P", "keep p >= P * p_max, 0 = off", KNOB_REAL, FIELD(min_p),
      0, 1, 0.01, "%.2f", NULL, 0 },
    { "presence", "presence", "X", "presence penalty", KNOB_REAL, FIELD(presence),
      -100, 100, 0.05, "%.2f", NULL, 0.5 },
    { "frequency", "frequency", "X", "frequency penalty", KNOB_REAL, FIELD(frequency),
      -100, 100, 0.05, "%.2f", NULL, 0.5 },
    { "decay", "decay", "D", "penalty decay per token", KNOB_REAL, FIELD(decay),
      0, 1, 0.001, "%.3f", NULL, 0.996 },
    { "max_tokens", "max-tokens", "N", "reply length limit, 0 = none", KNOB_WHOLE,
      FIELD(max_tokens), 0, 1000000000, 50, NULL, "off", 0 },
    { "seed", "seed", "N", "random seed", KNOB_SEED, FIELD(seed),
      0, 0, 1, NULL, NULL, 0 },
};
#define N_KNOBS (sizeof(table) / sizeof(table[0]))
_Static_assert(N_KNOBS <= 32, "front ends keep one bit per knob in an unsigned");

size_t knob_count(void)
{
    return N_KNOBS;
}

const struct knob *knob_at(size_t i)
{
    return i < N_KNOBS ? &table[i] : NULL;
}

size_t knob_index(const struct knob *k)
{
    return (size_t)(k - table);
}

const struct knob *knob_find(const char *name)
{
    size_t i, n;

    if (!strcmp(name, "temp")) {
        name = "temperature";
    }
    for (i = 0; i < N_KNOBS; i++) {
        const char *a = table[i].name;

        for (n = 0; a[n] && (name[n] == a[n] || (name[n] == '-' && a[n] == '_')); n++) {
        }
        if (!a[n] && !name[n]) {
            return &table[i];
        }
    }
    return NULL;
}

void knob_list(char *buf, size_t len)
{
    size_t i, used = 0;

    if (len) {
        buf[0] = '\0';
    }
    for (i = 0; i < N_KNOBS && used < len; i++) {
        int n = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", table[i].name);

        if (n < 0) {
            break;
        }
        used += (size_t)n;
    }
}

void knob_describe(const struct knob *k, char *buf, size_t len)
{
    switch (k->type) {
    case KNOB_REAL:
        snprintf(buf, len, "a number from %g to %g", k->min, k->max);
        break;
    case KNOB_WHOLE:
        snprintf(buf, len, "a whole number from %.0f to %.0f", k->min, k->max);
        break;
    case KNOB_SEED:
        snprintf(buf, len, "a whole number >= 0");
        break;
    }
}

void knob_defaults(struct sampler_settings *s)
{
    size_t i;

    memset(s, 0, sizeof *s);
    for (i = 0; i < N_KNOBS; i++) {
        char *field = (char *)s + table[i].offset;

        switch (table[i].type) {
        case KNOB_REAL:
            *(float *)field = (float)table[i].fallback;
            break;
        case KNOB_WHOLE:
            *(int *)field = (int)table[i].fallback;
            break;
        case KNOB_SEED:
            *(uint64_t *)field = (uint64_t)table[i].fallback;
            break;
        }
    }
}

/* Whether v is a value of k: finite, in range, whole where it must be. */
static int in_range(const struct knob *k, double v)
{
    if (!isfinite(v)) {
        return 0;
    }
    switch (k->type) {
    case KNOB_REAL:
        return v >= k->min && v <= k->max;
    case KNOB_WHOLE:
        return v == floor(v) && v >= k->min && v <= k->max;
    case KNOB_SEED:
        return v == floor(v) && v >= 0 && v < 18446744073709551616.0;
    }
    return 0;
}

static void refuse(const struct knob *k, const char *shown, char *err, size_t errlen)
{
    char what[96];

    knob_describe(k, what, sizeof what);
    snprintf(err, errlen, "'%s' is not %s", shown, what);
}

int knob_parse(const struct knob *k, struct sampler_settings *s, const char *text, char *err,
               size_t errlen)
{
    char *field = (char *)s + k->offset, *end;
    unsigned long long u;
    double d;
    long l;

    errno = 0;
    switch (k->type) {
    case KNOB_REAL:
        d = strtod(text, &end);
        if (end == text || *end || errno || !in_range(k, d)) {
            break;
        }
        *(float *)field = (float)d;
        return 0;
    case KNOB_WHOLE:
        l = strtol(text, &end, 10);
        if (end == text || *end || errno || !in_range(k, (double)l)) {
            break;
        }
        *(int *)field = (int)l;
        return 0;
    case KNOB_SEED:
        u = strtoull(text, &end, 10);
        if (end == text || *end || errno || strchr(text, '-')) {
            break;
        }
        *(uint64_t *)field = (uint64_t)u;
        return 0;
    }
    refuse(k, text, err, errlen);
    return -1;
}

int knob_set(const struct knob *k, struct sampler_settings *s, double value, char *err,
             size_t errlen)
{
    char *field = (char *)s + k->offset, shown[48];

    if (!in_range(k, value)) {
        snprintf(shown, sizeof shown, "%g", value);
        refuse(k, shown, err, errlen);
        return -1;
    }
    switch (k->type) {
    case KNOB_REAL:
        *(float *)field = (float)value;
        break;
    case KNOB_WHOLE:
        *(int *)field = (int)value;
        break;
    case KNOB_SEED:
        *(uint64_t *)field = (uint64_t)value;
        break;
    }
    return 0;
}

int knob_check_all(const struct sampler_settings *s, char *err, size_t errlen)
{
    size_t i;

    for (i = 0; i < N_KNOBS; i++) {
        const struct knob *k = &table[i];
        const char *field = (const char *)s + k->offset;
        double v;
        char shown[48];

        if (k->type == KNOB_SEED) {
            continue;
        }
        v = k->type == KNOB_REAL ? (double)*(const float *)field : (double)*(const int *)field;
        if (!in_range(k, v)) {
            snprintf(shown, sizeof shown, "%g", v);
            snprintf(err, errlen, "%s: ", k->name);
            refuse(k, shown, err + strlen(err), errlen - strlen(err));
            return -1;
        }
    }
    return 0;
}

void knob_format(const struct knob *k, const struct sampler_settings *s, int exact, char *buf,
                 size_t len)
{
    const char *field = (const char *)s + k->offset;

    switch (k->type) {
    case KNOB_REAL:
        snprintf(buf, len, exact ? "%.9g" : "%g", (double)*(const float *)field);
        break;
    case KNOB_WHOLE:
        snprintf(buf, len, "%d", *(const int *)field);
        break;
    case KNOB_SEED:
        snprintf(buf, len, "%llu", (unsigned long long)*(const uint64_t *)field);
        break;
    }
}

void knob_display(const struct knob *k, const struct sampler_settings *s, char *buf, size_t len)
{
    const char *field = (const char *)s + k->offset;

    if (k->zero && ((k->type == KNOB_REAL && *(const float *)field == 0.0f) ||
                    (k->type == KNOB_WHOLE && *(const int *)field == 0))) {
        snprintf(buf, len, "%s", k->zero);
    } else if (k->type == KNOB_REAL && k->format) {
        snprintf(buf, len, k->format, (double)*(const float *)field);
    } else {
        knob_format(k, s, 0, buf, len);
    }
}

void knob_step(const struct knob *k, struct sampler_settings *s, int steps)
{
    char *field = (char *)s + k->offset;
    double v;

    switch (k->type) {
    case KNOB_REAL:
        v = (double)*(float *)field + steps * k->step;
        v = round(v / k->step) * k->step;
        v = v < k->min ? k->min : v > k->max ? k->max : v;
        *(float *)field = (float)v;
        break;
    case KNOB_WHOLE:
        v = (double)*(int *)field + steps * k->step;
        v = v < k->min ? k->min : v > k->max ? k->max : v;
        *(int *)field = (int)v;
        break;
    case KNOB_SEED: {
        uint64_t *u = (uint64_t *)field;

        *u = steps < 0 && *u < (uint64_t)-(int64_t)steps ? 0 : *u + (uint64_t)(int64_t)steps;
        break;
    }
    }
}

void knob_copy(const struct knob *k, struct sampler_settings *dst,
               const struct sampler_settings *src)
{
    size_t size = k->type == KNOB_REAL ? sizeof(float)
                  : k->type == KNOB_WHOLE ? sizeof(int) : sizeof(uint64_t);

    memcpy((char *)dst + k->offset, (const char *)src + k->offset, size);
}
