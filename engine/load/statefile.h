/*
 * statefile.h - the rwkv-chat state file: a model state plus opaque
 * sections for the application, bound to one model.
 *
 * Layout in share/state-format.md: a header with magic, format version and
 * the model's identity (version, shapes, rwkv_info.fingerprint), a section
 * table, the state floats (little-endian float32, official order), the
 * application's sections, and an FNV-1a 64 checksum over everything before
 * it.  Saving is atomic (engine/base/atomicfile.h: a temporary in the same
 * directory, fsync, rename, fsync of the directory) and replaces only a
 * state file: never a model, a text file, a symbolic link.  Loading checks everything (size,
 * version, checksum, table, model) before handing anything out, so a
 * refused file changes nothing; the model and the size the section table
 * lays out are checked before the file is read, and the sections besides
 * the state may hold at most 1 GiB, so a reader never allocates more than
 * the state plus that.  Never prints; errors are one line in err.
 */
#ifndef RWKV_STATEFILE_H
#define RWKV_STATEFILE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/rwkv.h"

#define RWKV_STATEFILE_MAGIC "RWKVSTAT"
#define RWKV_STATEFILE_VERSION 2     /* 2: knobs by name; 1 (fixed "settings") still read */
#define RWKV_STATEFILE_TAGLEN 16    /* tags are at most 15 bytes */

struct rwkv_statefile_section {
    const char *tag;                /* "transcript"; "state" and "history" are
                                     * the engine's */
    const void *data;
    size_t size;
};

/* Writes state and sections to path for model.  0, or -1 with err; on
 * failure an existing file at path is left as it was.  An existing file
 * that is not a state file (no magic) is refused. */
int rwkv_statefile_save(const char *path, const rwkv_model *model, const rwkv_state *state,
                        const struct rwkv_statefile_section *sections, size_t n_sections,
                        char *err, size_t errlen);

/* Whether rwkv_statefile_save could replace path now: 0, or -1 with err
 * (a file that is not a state file, a link, a directory, no directory). */
int rwkv_statefile_check_target(const char *path, char *err, size_t errlen);

typedef struct rwkv_statefile rwkv_statefile;

/* Reads and verifies path against model.  NULL with err on any problem:
 * not a state file, newer format version, truncated, bad checksum,
 * malformed table, made for another model. */
rwkv_statefile *rwkv_statefile_load(const char *path, const rwkv_model *model, char *err,
                                    size_t errlen);
void rwkv_statefile_free(rwkv_statefile *sf);
/* Reads one small section of path without checking the model or the
 * checksum (for messages and for choosing a model before one is loaded:
 * the session's "model" section).  Copies at most outlen - 1 bytes and a
 * NUL into out; returns the section's size, or -1 when the file cannot be
 * read, is not a state file or has no such section. */
long rwkv_statefile_peek(const char *path, const char *tag, char *out, size_t outlen);
/* Copies the saved state (and an RWKV-7b state's history) into state (a
 * state of the same model).  0, or -1 (another model's state, no memory
 * for the history): state unchanged then. */
int rwkv_statefile_get_state(const rwkv_statefile *sf, rwkv_state *state);
/* A section's bytes (valid until rwkv_statefile_free), or NULL if absent. */
const void *rwkv_statefile_section(const rwkv_statefile *sf, const char *tag, size_t *size);

#endif
