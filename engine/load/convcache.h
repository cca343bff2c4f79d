/*
 * convcache.h - the conversion cache: the kernel matrices one load made
 * (q8, q4, bf16 from fp32...), saved in a file that a later load of the
 * same model at the same --dtype maps and reads in place instead of
 * converting again.  Internal to engine/ (model.c drives it).
 *
 * File $XDG_CACHE_HOME/rwkv-chat/HASH-BASENAME.DTYPE.rwkvcache (~/.cache
 * when XDG_CACHE_HOME is unset), HASH being the FNV-1a hash of the model's
 * absolute path; never beside the model (caches of earlier versions there,
 * MODEL.DTYPE.rwkvcache, are neither read nor removed).  The files' mtime
 * is their last use: past a size limit the least recently used go.
 * Native byte order, every field fixed-size:
 *
 *   header, 128 bytes: "RWKVCNV1", u32 cache version, u32 layout version
 *     (QUANT_LAYOUT_VERSION), u32 0x01020304 (byte order), u32 dtype;
 *     the model file's u64 size, u64 inode, u64 device, i64 mtime in ns,
 *     u64 fingerprint (rwkv_info); u64 entries, u64 file size, u64 hash of
 *     header and table (this field zero while hashing); u64 signature of
 *     the packer (kmat_pack_signature); i64 the model file's ctime in ns
 *     (0 in caches written before it was part of the key: such a cache
 *     reads as written for a changed file and is rebuilt once); zero
 *     padding.
 *   table, 192 bytes per entry: name[128] (NUL-padded tensor name), u64
 *     offset of the tensor's data in the model file (tells slices of one
 *     tensor apart), u64 data offset, u64 data bytes, u64 scales offset,
 *     u64 scales bytes, u64 hash of data then scales, i32 format, rows,
 *     cols, transposed.
 *   data: each matrix's rows (quant.h layouts) then its scales, every
 *     piece at a 64-byte aligned offset, so the kernels read the mapping.
 *
 * Any mismatch (versions, byte order, dtype, the model file's identity),
 * truncation, bad offset or hash makes the whole file be ignored; the
 * caller converts and writes a new one (temporary file, then rename; no
 * fsync: a cache torn by a crash fails its hashes and is rebuilt).
 */
#ifndef RWKV_CONVCACHE_H
#define RWKV_CONVCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/kernels/kernels.h"

#define CONVCACHE_VERSION 1
#define CONVCACHE_NAME_MAX 128
#define CONVCACHE_SUFFIX ".rwkvcache"
/* The caches' total size limit without RWKV_CHAT_CACHE_MAX: 16 GiB. */
#define CONVCACHE_DEFAULT_MAX ((uint64_t)16 << 30)

/* What a cache must match. */
struct convcache_key {
    uint64_t size, ino, dev, fingerprint;
    uint64_t pack_signature;    /* kmat_pack_signature of dtype and of bf16 */
    int64_t mtime_ns, ctime_ns; /* fileid.h: an in-place rewrite that puts the
                                 * mtime back still moves the ctime */
    int32_t dtype;
    uint32_t owner;             /* the model file's owner: a cache file owned by
                                 * anyone but us or them is ignored */
};

/* One matrix of a load, to write or to look up. */
struct convcache_item {
    const char *name;           /* tensor name */
    uint64_t src_off;           /* the tensor data's offset in the model file */
    int transpose;
    const struct kmat *m;
};

typedef struct convcache convcache;

/* The key of the model file at path (stat) for dtype; -1 with errno. */
int convcache_key_of(const char *model_path, enum rwkv_dtype dtype, uint64_t fingerprint,
                     struct convcache_key *key);
/* The cache file name for the model at path, in the user's cache
 * directory.  0, or -1 when it does not fit or no cache directory is
 * known (neither XDG_CACHE_HOME nor HOME). */
int convcache_path(const char *model_path, enum rwkv_dtype dtype, char *out, size_t outlen);
/* The limit on the caches' total size: RWKV_CHAT_CACHE_MAX (bytes, with
 * an optional K, M or G suffix of powers of 1024), else the default. */
uint64_t convcache_limit(void);
/* Parses a size as RWKV_CHAT_CACHE_MAX takes it; 0, or -1. */
int convcache_parse_size(const char *text, uint64_t *bytes);
/* Marks the cache at path as used now (its mtime). */
void convcache_touch(const char *path);
/* Removes the least recently used *.rwkvcache files of dir until they
 * total at most limit bytes, never keep (a path; may be NULL).  Returns
 * how many it removed. */
int convcache_evict(const char *dir, const char *keep, uint64_t limit);

/* Maps and checks the cache at path (hashes verified on pool's threads;
 * pool may be NULL).  NULL when missing or unusable, with why filled
 * ("no cache yet", "written for another model file", "corrupt: ..."). */
convcache *convcache_open(const char *path, const struct convcache_key *key,
                          struct kpool *pool, char *why, size_t whylen);
/* The same checks on size bytes at buf (not copied: buf must outlive the
 * result; freed by convcache_close only when it came from convcache_open). */
convcache *convcache_parse(const void *buf, size_t size, const struct convcache_key *key,
                           struct kpool *pool, char *why, size_t whylen);
void convcache_close(convcache *cache);
/* Drops the whole pages of [data, data + n) from resident memory when they
 * lie in cache's mapping (read again from the file if touched); else, or
 * with cache NULL, nothing. */
void convcache_release(const convcache *cache, const void *data, size_t n);
/* 1 if [data, data + n) lies in cache's mapping, else (or cache NULL) 0. */
int convcache_holds(const convcache *cache, const void *data, size_t n);
size_t convcache_count(const convcache *cache);
/* Whether some entry was made from the tensor called name. */
int convcache_has_name(const convcache *cache, const char *name);
/* Entry i (< convcache_count): its tensor name, and m filled as
 * convcache_find would.  0, or -1 when i is out of range. */
int convcache_entry(const convcache *cache, size_t i, const char **name, struct kmat *m);

/* Fills m (planned: format, rows and cols set) with the entry for it, the
 * data read in place from the cache.  1 when found, 0 otherwise. */
int convcache_find(convcache *cache, const char *name, uint64_t src_off, int transpose,
                   struct kmat *m);

/* For tests and fuzzing: makes a cache image in memory self-consistent
 * again after an edit (its size field, the hash of every entry whose
 * data lies in the image, the table hash), so that what follows the
 * hashes gets exercised.  Does nothing to an image shorter than a header
 * or whose table does not fit. */
void convcache_seal(void *buf, size_t size);

/* Writes the n matrices to path atomically; make_dir creates its directory
 * (and missing parents).  0, or -1 with why filled. */
int convcache_write(const char *path, int make_dir, const struct convcache_key *key,
                    const struct convcache_item *items, size_t n, struct kpool *pool,
                    char *why, size_t whylen);

#endif
