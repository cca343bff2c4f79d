/*
 * ckpt_reader.h - the inside of a ckpt_file, for the code that fills one:
 * ckpt_open.c (opens and maps the file, picks the container, checks the
 * CRCs) and the container readers (pth.c, safetensors.c), which walk the
 * mapped bytes and register each tensor with ckpt_add.  checkpoint.c owns
 * the list, the name index and any copied data.  Users of a checkpoint
 * include checkpoint.h only.
 */
#ifndef RWKV_CKPT_READER_H
#define RWKV_CKPT_READER_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/base/escape.h"
#include "engine/base/fileid.h"
#include "engine/load/checkpoint.h"

struct ckpt_file {
    char *path;
    char shown[RWKV_ESCAPE_LEN];    /* path as messages show it (escape.h) */
    const unsigned char *map;   /* whole file, read-only */
    size_t size;
    struct ckpt_tensor *tensors;
    size_t count, cap;
    size_t *by_name;            /* indexes sorted by name, for ckpt_find */
    void **owned;               /* copies and names freed by ckpt_close */
    size_t n_owned, cap_owned;
    size_t owned_bytes;         /* their total: at most 4 x file size + 16 MiB */
    struct fileid id;           /* at open */
    struct ckpt_check *checks;  /* zip entries whose CRC-32 to check */
    size_t n_checks, cap_checks;
    uint64_t checked_bytes;     /* what ckpt_open checked */
};

struct ckpt_check {
    const char *name;           /* into the mapping */
    size_t namelen;
    const unsigned char *data;
    size_t size;
    uint32_t crc;               /* as recorded */
    uint32_t got;               /* as computed */
};

/* Adds a tensor whose data is contiguous row-major.  Checks ndim, shape,
 * numel * element size == nbytes and that data lies inside the mapping
 * (unless it is memory from ckpt_alloc).  If data is not aligned to the
 * element size it is copied.  0, or -1 with err filled. */
int ckpt_add(ckpt_file *file, const char *name, size_t namelen, enum ckpt_dtype dtype,
             int ndim, const int64_t *shape, const void *data, size_t nbytes,
             char *err, size_t errlen);
/* Memory freed by ckpt_close (for tensors that had to be copied).  NULL if
 * out of memory (errno ENOMEM), or with errno EFBIG once the copies made
 * for one file would pass four times its size plus 16 MiB: many views of
 * one storage must not turn a small file into gigabytes of copies. */
void *ckpt_alloc(ckpt_file *file, size_t nbytes);
#define CKPT_COPY_LIMIT_MSG "copied tensors and names would exceed four times the file size"
/* What a NULL from ckpt_alloc means, for messages. */
#define CKPT_ALLOC_ERROR() (errno == EFBIG ? CKPT_COPY_LIMIT_MSG : "out of memory")

/* Registers a zip entry (inside the mapping) whose CRC-32 ckpt_open checks
 * once the reader is done; crc 0 on a non-empty entry means none was
 * recorded (torch.save with compute_crc32 off writes 0) and is not
 * checked.  0, or -1 with errno. */
int ckpt_add_check(ckpt_file *file, const char *name, size_t namelen, const void *data,
                   size_t size, uint32_t crc);

/* The container readers, called by ckpt_open (ckpt_open.c) on a mapped
 * file: 0, or -1 with err filled. */
int pth_read(ckpt_file *file, char *err, size_t errlen);
int safetensors_read(ckpt_file *file, char *err, size_t errlen);

#endif
