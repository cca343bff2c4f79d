/*
 * knobs.h - the sampling knobs: one table of the settings in struct
 * sampler_settings that a user may change, each with its name, command-line
 * option, range, step, display format and default.
 *
 * The command line, the config file, /set and its Tab completion, the TUI's
 * knobs panel, --jsonl messages and state files all read this table, and
 * every value any of them sets passes knob_parse or knob_set: a finite
 * number inside the knob's range, or nothing changes.  A knob is added by
 * one row in knobs.c and a field in struct sampler_settings below.
 * Never prints; errors are one line in err.
 */
#ifndef RWKV_KNOBS_H
#define RWKV_KNOBS_H

#include <stddef.h>
#include <stdint.h>

/* What the sampler (sampler.h) and the chat read; every field is a knob. */
struct sampler_settings {
    float temperature;      /* 0 = greedy */
    float top_p;            /* 1 = off */
    int top_k;              /* 0 = off */
    float min_p;            /* 0 = off */
    float presence;         /* presence penalty */
    float frequency;        /* frequency penalty */
    float decay;            /* counts *= decay every token */
    int max_tokens;         /* reply length limit (chat), 0 = none */
    uint64_t seed;
};

enum knob_type {
    KNOB_REAL,      /* float field, a finite number in [min, max] */
    KNOB_WHOLE,     /* int field, a whole number in [min, max] */
    KNOB_SEED,      /* uint64_t field, any whole number 0 .. 2^64-1 */
};

struct knob {
    const char *name;       /* "top_p": /set, config, --jsonl and state-file name */
    const char *option;     /* "top-p": the option --top-p and the panel's label */
    const char *metavar;    /* "P" in --help's "--top-p=P" */
    const char *help;       /* --help's description, the default is added */
    enum knob_type type;
    size_t offset;          /* of the field in struct sampler_settings */
    double min, max;        /* inclusive (not for KNOB_SEED) */
    double step;            /* one arrow key in the panel */
    const char *format;     /* the panel's printf format of a KNOB_REAL value */
    const char *zero;       /* the panel's text for 0 ("off"), or NULL */
    double fallback;        /* the default (ChatRWKV's chat settings) */
};

/* Every knob at its default (sampler_defaults is this). */
void knob_defaults(struct sampler_settings *s);

/* The knobs, in the order they are listed and shown. */
size_t knob_count(void);
const struct knob *knob_at(size_t i);
/* The knob called name ('-' may stand for '_', "temp" for temperature),
 * or NULL. */
const struct knob *knob_find(const char *name);
/* k's position in the table (0 .. knob_count()-1). */
size_t knob_index(const struct knob *k);
/* "temperature, top_p, ..." into buf: for messages that list the knobs. */
void knob_list(char *buf, size_t len);
/* What k accepts, for messages: "a number from 0 to 10", "a whole number
 * from 0 to 1048576", "a whole number >= 0". */
void knob_describe(const struct knob *k, char *buf, size_t len);

/* Sets k in s from text (the whole string, decimal, finite, in range).
 * 0, or -1 with err ("temperature: 'nan' is not a number from 0 to 10")
 * and s unchanged. */
int knob_parse(const struct knob *k, struct sampler_settings *s, const char *text, char *err,
               size_t errlen);
/* Sets k in s from a number (--jsonl): the same checks.  0, or -1 with err
 * and s unchanged. */
int knob_set(const struct knob *k, struct sampler_settings *s, double value, char *err,
             size_t errlen);
/* Whether every knob of s holds a value knob_parse would accept: 0, or -1
 * with err naming the first that does not. */
int knob_check_all(const struct sampler_settings *s, char *err, size_t errlen);

/* k's value in s as text: short ("%g": 0.7, 40) or, with exact, the
 * digits that read back to the same float ("%.9g"). */
void knob_format(const struct knob *k, const struct sampler_settings *s, int exact, char *buf,
                 size_t len);
/* k's value as the panel shows it: k->format, or k->zero for 0. */
void knob_display(const struct knob *k, const struct sampler_settings *s, char *buf, size_t len);
/* Moves k by steps of k->step, rounded to the step and kept in range. */
void knob_step(const struct knob *k, struct sampler_settings *s, int steps);
/* Copies k's field from src to dst. */
void knob_copy(const struct knob *k, struct sampler_settings *dst,
               const struct sampler_settings *src);

#endif
