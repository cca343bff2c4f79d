/*
 * fileid.h - the identity of a file as far as "is it still the file we saw"
 * goes: device, inode, size, and the modification and status-change times
 * in nanoseconds.  A user (or rsync -t) can set the mtime back after
 * rewriting a file in place, but not the ctime, which every write, chmod or
 * utimensat moves to now.  The conversion cache and the record of verified
 * checksums both key on it.
 */
#ifndef RWKV_BASE_FILEID_H
#define RWKV_BASE_FILEID_H

#include <stdint.h>
#include <sys/stat.h>

struct fileid {
    uint64_t dev, ino, size;
    int64_t mtime_ns, ctime_ns;
};

/* The identity of the file st describes. */
void fileid_of(const struct stat *st, struct fileid *id);
/* 1 if a and b are the same file, unchanged. */
int fileid_equal(const struct fileid *a, const struct fileid *b);

#endif
