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

#include "app/session/app_options.h"
#include "app/session/config.h"

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

/* The most bytes the conversion caches may hold: --cache-max, else
 * RWKV_CHAT_CACHE_MAX, else the config file's cache_max, else the default
 * (16 GiB).  *from (if not NULL) says which: "--cache-max",
 * "RWKV_CHAT_CACHE_MAX", "cache_max in the config file" or "the default". */
uint64_t options_cache_limit(const struct app_options *opts, const char **from);
/* The same as rwkv_load_options.cache_max takes it (never 0, its "unset"). */
uint64_t options_load_cache_max(const struct app_options *opts);

/* Appends the adapter of a --lora argument, "FILE" or "FILE:SCALE" (a
 * suffix that is not a number belongs to the file name; SCALE defaults to
 * 1), to the list (grown with realloc).  0, or -1 with a one-line reason
 * in err. */
int options_add_lora(struct rwkv_lora **list, int *n, const char *arg, char *err,
                     size_t errlen);
/* Frees a list made by options_add_lora. */
void options_free_lora(struct rwkv_lora *list, int n);

/* Copies the knobs given on the command line (opts->knobs_given) into s:
 * after --state-in/--resume restored a conversation's own settings, the
 * command line still wins. */
void options_apply_given(const struct app_options *opts, struct sampler_settings *s);

#endif
