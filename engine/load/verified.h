/*
 * verified.h - the record of model files whose zip checksums passed once,
 * so that later starts need not read the whole file again.
 *
 * One small file per model, DIR/verified/DEV-INO (hexadecimal), holding
 * the file's identity (fileid.h) when it passed: a file rewritten since,
 * even in place with its mtime put back, has another ctime and is checked
 * again.  DIR is the user's cache directory (verified_dir).  Only a
 * regular file of ours is believed; writing one (through atomicfile) is
 * best effort: a record that cannot be written only costs the next start
 * a check.
 * Internal to engine/.
 */
#ifndef RWKV_VERIFIED_H
#define RWKV_VERIFIED_H

#include <stddef.h>

#include "engine/base/fileid.h"

/* $XDG_CACHE_HOME/rwkv-chat, else $HOME/.cache/rwkv-chat (as the
 * conversion cache's fallback); 0, or -1 when neither is an absolute path
 * or it does not fit in outlen. */
int verified_dir(char *out, size_t outlen);
/* 1 if dir records that the file of identity id passed. */
int verified_has(const char *dir, const struct fileid *id);
/* Records that the file of identity id passed (creating dir/verified);
 * 0, or -1. */
int verified_add(const char *dir, const struct fileid *id);

#endif
