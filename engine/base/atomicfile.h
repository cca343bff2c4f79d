/*
 * atomicfile.h - replace a file atomically, the one way every file the
 * program writes is written (state files, the session, conversion caches,
 * the input history, model files, rwkv-tool outputs).
 *
 * Policy:
 *  - The data goes to a temporary file in the target's directory, created
 *    mode 0600: unnamed (O_TMPFILE) where the file system allows, so that a
 *    killed save leaves nothing visible; else, and for the moment before
 *    the rename, named ".NAME.XXXXXXXX.tmp" with random X, created with
 *    O_CREAT|O_EXCL|O_NOFOLLOW (a file or symbolic link planted at such a
 *    name is never written through: another name is drawn).  NAME is cut
 *    so that the temporary's name fits NAME_MAX, so any valid name saves.
 *  - Committing: fsync the file (unless ATOMICFILE_NO_SYNC: derived data
 *    that is checked when read), give it the mode of the file it replaces
 *    (not its owner: the saver owns what it saves; a group that changes
 *    gets no more than everyone else had) or 0666 & ~umask for a new
 *    file, rename it over the target, fsync the directory.
 *  - Only a regular file is replaced; never a symbolic link (the link is
 *    refused, so a planted link can never redirect a save to the file it
 *    points to), a directory, a device or a FIFO.  With a kind that has a
 *    magic, an existing non-empty file must start with it: a save never
 *    replaces a file of another kind (a model, notes).
 *  - Stale named temporaries of the same target (ours by name pattern and
 *    owner, regular files untouched for ATOMICFILE_STALE_SECONDS) are
 *    removed when the target is next saved.
 *  - On any failure the temporary is removed and the target is untouched.
 *    Errors are one line naming the target (never the temporary): what
 *    failed, why, and what to do.  Never prints.
 */
#ifndef RWKV_ATOMICFILE_H
#define RWKV_ATOMICFILE_H

#include <stddef.h>
#include <stdio.h>

#define ATOMICFILE_NO_SYNC 1u           /* derived data: no fsync of file or directory */
#define ATOMICFILE_STALE_SECONDS (15 * 60)

/* What may be replaced.  NULL everywhere means any regular file. */
struct atomicfile_kind {
    const char *name;       /* "state file": named in a refusal */
    const char *magic;      /* an existing non-empty file must start with it, or NULL */
    size_t magic_len;
    const char *advice;     /* what to do when refused; NULL: a generic hint */
};

typedef struct atomicfile atomicfile;

/* Checks that path may be replaced and creates its temporary.  NULL with
 * err when path is refused (see the policy) or cannot be written. */
atomicfile *atomicfile_open(const char *path, const struct atomicfile_kind *kind, unsigned flags,
                            char *err, size_t errlen);
/* The temporary's descriptor, to write to (do not close it). */
int atomicfile_fd(const atomicfile *af);
/* A stdio stream on the temporary (made once; do not fclose it).  NULL
 * with err when it cannot be made. */
FILE *atomicfile_stream(atomicfile *af, char *err, size_t errlen);
/* Flushes, syncs and renames the temporary over the target, then frees
 * af.  0, or -1 with err (the target then untouched, the temporary gone). */
int atomicfile_commit(atomicfile *af, char *err, size_t errlen);
/* Removes the temporary and frees af (NULL is fine). */
void atomicfile_abort(atomicfile *af);

/* Whether atomicfile_open would accept path now (nothing is created): 0,
 * or -1 with err.  For checking early what will be saved late. */
int atomicfile_check(const char *path, const struct atomicfile_kind *kind, char *err,
                     size_t errlen);
/* open, write len bytes, commit. */
int atomicfile_write(const char *path, const struct atomicfile_kind *kind, unsigned flags,
                     const void *data, size_t len, char *err, size_t errlen);

#endif
