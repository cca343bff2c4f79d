/*
 * options.h - every option of rwkv-chat, from the command line merged over
 * the config file (~/.config/rwkv-chat/config).
 *
 * options_parse fills a struct app_options in three layers: built-in
 * defaults, then the config file, then the command line (which wins).
 * All strings are malloc'd and freed by options_free.
 */
#ifndef RWKV_OPTIONS_H
#define RWKV_OPTIONS_H

#include <stdio.h>

#include "engine/rwkv.h"
#include "engine/sampler.h"

/* Reply length limit unless set (0 on the command line means none). */
#define OPTIONS_DEFAULT_MAX_TOKENS 1000
/* The name of the bundled demo model, found via paths_find_data. */
#define OPTIONS_DEMO_MODEL "rwkv7-tiny-chat.pth"
/* What rwkv-chat says about the demo model (status line, /info, --verbose). */
#define OPTIONS_DEMO_NOTICE \
    "tiny demo model: knows a little about Debian commands; " \
    "load a real RWKV-7 World model with --model PATH"

/* TUI colours from the config file: curses colour names or numbers
 * ("default", "red", "cyan", "244"...); NULL = the TUI's own choice. */
struct app_colours {
    char *user;             /* colour.user */
    char *assistant;        /* colour.assistant */
    char *status;           /* colour.status */
    char *accent;           /* colour.accent: selection, panel titles */
    char *error;            /* colour.error */
};

struct app_options {
    char *model;            /* --model PATH|NAME or config "model"; NULL = demo */
    int model_from_user;    /* 1 if model came from the command line or config;
                               main sets it to 0 when that is the demo model itself */
    char *prompt;           /* --prompt NAME or config "prompt"; NULL = default */
    char *state_in;         /* --state-in FILE */
    char *state_out;        /* --state-out FILE */
    char *state_tuned;      /* --state-tuned FILE or config "state_tuned": the start state */
    char *vocab;            /* --vocab PATH; NULL = installed vocabulary */
    char *data_dir;         /* --data-dir DIR: searched before $(pkgdatadir) */
    char *config_path;      /* --config FILE, or the default path (may not exist) */
    struct sampler_settings sampling;   /* knobs (sampler.h), defaults + config + options */
    int seed_set;           /* --seed or config seed given (else a random seed) */
    unsigned knobs_given;   /* bit i: knob_at(i) given on the command line
                               (--greedy counts for temperature, presence, frequency) */
    int greedy;             /* --greedy: temperature 0, no penalties */
    int batch;              /* --batch */
    int jsonl;              /* --jsonl */
    int complete;           /* --complete */
    int verbose;            /* --verbose */
    int resume;             /* --resume */
    int n_threads;          /* -t/--threads, 0 = all CPUs */
    enum rwkv_dtype dtype;  /* --dtype */
    int no_cache;           /* --no-cache: no conversion cache */
    struct rwkv_lora *lora; /* --lora FILE[:SCALE], in order (paths malloc'd) */
    int n_lora;
    struct app_colours colours;
};

/* Exit statuses of options_parse other than 0. */
#define OPTIONS_EXIT        -1  /* --help/--version printed: exit 0 */
#define OPTIONS_USAGE       2   /* usage error printed with usage on stderr */
#define OPTIONS_ERROR       1   /* config file error printed on stderr */

/* Parses argv over the config file into opts.  Returns 0 to go on,
 * OPTIONS_EXIT after --help/--version, OPTIONS_USAGE (usage error; the
 * message and usage are on stderr) or OPTIONS_ERROR (bad config file:
 * "FILE:LINE: ..." on stderr). */
int options_parse(struct app_options *opts, int argc, char **argv);
/* Built-in defaults only (no config, no argv). */
void options_defaults(struct app_options *opts);
void options_free(struct app_options *opts);
/* Prints the --help text to f. */
void options_usage(FILE *f);

/* Appends the adapter of a --lora argument, "FILE" or "FILE:SCALE" (a
 * suffix that is not a number belongs to the file name; SCALE defaults to
 * 1), to the list (grown with realloc).  0, or -1 with a one-line reason
 * in err. */
int options_add_lora(struct rwkv_lora **list, int *n, const char *arg, char *err,
                     size_t errlen);
/* Frees a list made by options_add_lora. */
void options_free_lora(struct rwkv_lora *list, int n);

/* Sets the knob called name (engine/knobs.h; '-' may stand for '_', e.g.
 * "top-p") from a string, through the table's one check.  0, or -1 with a
 * one-line reason in err ("top_p: '2' is not a number from 0 to 1"). */
int options_set_knob(struct sampler_settings *s, const char *name, const char *value,
                     char *err, size_t errlen);
/* Copies the knobs given on the command line (opts->knobs_given) into s:
 * after --state-in/--resume restored a conversation's own settings, the
 * command line still wins. */
void options_apply_given(const struct app_options *opts, struct sampler_settings *s);

#endif
