/*
 * config.h - the config file (~/.config/rwkv-chat/config).
 *
 * Plain "key = value" lines; '#' starts a comment line, and '#' after
 * white space ends an unquoted value; blank lines are ignored.  Keys: model, prompt, vocab, data_dir, threads, dtype, cache_max, the
 * sampling knobs (the names of engine/sampling/knobs.h: temperature, top_p, ...) and TUI colours (colour.user, colour.assistant,
 * colour.status, colour.accent, colour.error; "color." also accepted).
 */
#ifndef RWKV_CONFIG_H
#define RWKV_CONFIG_H

#include <stddef.h>

#include "app/session/app_options.h"

/* The default config file path (paths_config_dir()/config), malloc'd. */
char *config_default_path(void);

/* config_load could not open or read the file (permissions, I/O error). */
#define CONFIG_UNREADABLE (-2)

/* Applies the file at path over opts.  Returns 0, 1 if the file does not
 * exist (nothing applied), -1 with one line "FILE:LINE: problem" in err
 * (a line rwkv-chat does not understand, longer than 4096 bytes or holding
 * a NUL byte; or "FILE: problem" for a file that is not a regular file or
 * /dev/null: a FIFO is never waited on), or CONFIG_UNREADABLE with "FILE:
 * reason".  A UTF-8 byte order mark at the start is skipped. */
int config_load(struct app_options *opts, const char *path, char *err, size_t errlen);

/* Applies one key = value pair; 0, or -1 with the problem (no FILE:LINE
 * prefix) in err. */
int config_apply(struct app_options *opts, const char *key, const char *value,
                 char *err, size_t errlen);

/* Sets the knob called name (engine/sampling/knobs.h; '-' may stand for '_', e.g.
 * "top-p") from a string, through the table's one check.  0, or -1 with a
 * one-line reason in err ("top_p: '2' is not a number from 0 to 1"). */
int options_set_knob(struct sampler_settings *s, const char *name, const char *value,
                     char *err, size_t errlen);

#endif
