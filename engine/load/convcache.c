/*
 * convcache.c - the conversion cache file (format in convcache.h): reading
 * it with every offset checked against the file size, and writing it
 * atomically.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/base/atomicfile.h"
#include "engine/base/escape.h"
#include "engine/base/fileid.h"
#include "engine/load/convcache.h"
#include "engine/load/verified.h"
#include "engine/kernels/kmat.h"
#include "engine/kernels/quant.h"

#define MAGIC "RWKVCNV1"
#define ENDIAN_MARK 0x01020304u
#define ALIGN 64

struct header {
    char magic[8];
    uint32_t version, layout, endian, dtype;
    uint64_t src_size, src_ino, src_dev;
    int64_t src_mtime_ns;
    uint64_t fingerprint;
    uint64_t n_entries, file_size, hash;
    uint64_t pack_signature;
    int64_t src_ctime_ns;       /* 0 in caches written before ctime was keyed */
    unsigned char pad[24];
};

struct entry {
    char name[CONVCACHE_NAME_MAX];
    uint64_t src_off;
    uint64_t data_off, data_size, scales_off, scales_size;
    uint64_t hash;
    int32_t type, rows, cols, transpose;
};

_Static_assert(sizeof(struct header) == 128, "cache header is 128 bytes");
_Static_assert(sizeof(struct entry) == 192, "cache entry is 192 bytes");

struct convcache {
    const unsigned char *base;
    size_t size;
    void *map;                  /* base when mapped by convcache_open */
    struct entry *entries;
    size_t n, next;             /* next: where the following lookup starts */
};

/* ------------------------------------------------------------------------ */
/* Hashing                                                                    */

static uint64_t mix(uint64_t h)
{
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* A 64-bit hash of n bytes, four independent lanes of 8-byte words so it
 * runs near memory speed; it guards against corruption, not attacks. */
static uint64_t hash_bytes(uint64_t seed, const void *p, size_t n)
{
    const unsigned char *b = p;
    const uint64_t k = 0x9e3779b97f4a7c15ULL;
    uint64_t h[4] = { seed, seed ^ 1, seed ^ 2, seed ^ 3 }, w;
    size_t i = 0;

    for (; i + 32 <= n; i += 32) {
        for (int j = 0; j < 4; j++) {
            memcpy(&w, b + i + 8 * j, 8);
            h[j] = (rotl(h[j], 23) ^ w) * k;
        }
    }
    for (; i < n; i++) {
        h[0] = (rotl(h[0], 23) ^ b[i]) * k;
    }
    return mix(mix(h[0] ^ (uint64_t)n) + mix(h[1]) * 3 + mix(h[2]) * 5 + mix(h[3]) * 7);
}

/* Hash of one matrix: its data, then its scales. */
static uint64_t hash_matrix(const void *data, size_t data_size, const void *scales,
                            size_t scales_size)
{
    uint64_t h = hash_bytes(0x5eed, data, data_size);

    return scales_size ? hash_bytes(h, scales, scales_size) : h;
}

static uint64_t hash_table(const struct header *hdr, const void *table, size_t table_size)
{
    struct header h = *hdr;

    h.hash = 0;
    return hash_bytes(hash_bytes(0x7ab1e, &h, sizeof h), table, table_size);
}

/* ------------------------------------------------------------------------ */
/* Keys and names                                                             */

int convcache_key_of(const char *model_path, enum rwkv_dtype dtype, uint64_t fingerprint,
                     struct convcache_key *key)
{
    struct stat st;
    struct fileid id;

    if (stat(model_path, &st) != 0) {
        return -1;
    }
    fileid_of(&st, &id);
    memset(key, 0, sizeof *key);
    key->size = id.size;
    key->ino = id.ino;
    key->dev = id.dev;
    key->mtime_ns = id.mtime_ns;
    key->ctime_ns = id.ctime_ns;
    key->fingerprint = fingerprint;
    key->dtype = (int32_t)dtype;
    /* the format's packer, and bf16's: RWKV-7 keeps its LoRA factors in
     * bf16 at the quantised formats */
    key->pack_signature = kmat_pack_signature(dtype) * 31 + kmat_pack_signature(RWKV_DTYPE_BF16);
    key->owner = (uint32_t)st.st_uid;
    return 0;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    while (*s) {
        h = (h ^ (unsigned char)*s++) * 0x100000001b3ULL;
    }
    return h;
}

int convcache_path(const char *model_path, enum rwkv_dtype dtype, char *out, size_t outlen)
{
    const char *base;
    char abs[PATH_MAX], dir[PATH_MAX];
    int n;

    if (!realpath(model_path, abs)) {
        return -1;
    }
    base = strrchr(abs, '/');
    base = base ? base + 1 : abs;
    if (verified_dir(dir, sizeof dir) != 0) {
        return -1;
    }
    n = snprintf(out, outlen, "%s/%016llx-%.100s.%s" CONVCACHE_SUFFIX, dir,
                 (unsigned long long)fnv1a(abs), base, rwkv_dtype_name(dtype));
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int convcache_parse_size(const char *text, uint64_t *bytes)
{
    char *end;
    double x;

    if (!text || !*text) {
        return -1;
    }
    errno = 0;
    x = strtod(text, &end);
    if (errno || end == text || !(x >= 0)) {
        return -1;
    }
    switch (*end) {
    case 'k': case 'K': x *= 1024.0; end++; break;
    case 'm': case 'M': x *= 1024.0 * 1024.0; end++; break;
    case 'g': case 'G': x *= 1024.0 * 1024.0 * 1024.0; end++; break;
    default: break;
    }
    if (*end != '\0' || x >= 1.8e19) {
        return -1;
    }
    *bytes = (uint64_t)x;
    return 0;
}

uint64_t convcache_limit(void)
{
    uint64_t limit;

    if (convcache_parse_size(getenv("RWKV_CHAT_CACHE_MAX"), &limit) != 0) {
        return CONVCACHE_DEFAULT_MAX;
    }
    return limit;
}

void convcache_touch(const char *path)
{
    /* a cache's mtime is its last use: what eviction goes by (atime is
     * often not kept) */
    utimensat(AT_FDCWD, path, NULL, 0);
}

struct cache_file {
    char name[NAME_MAX + 1];
    uint64_t size;
    int64_t used_ns;
};

static int oldest_first(const void *a, const void *b)
{
    const struct cache_file *x = a, *y = b;

    return x->used_ns < y->used_ns ? -1 : x->used_ns > y->used_ns ? 1 : strcmp(x->name, y->name);
}

int convcache_evict(const char *dir, const char *keep, uint64_t limit)
{
    struct cache_file *files = NULL;
    size_t n = 0, cap = 0, s = strlen(CONVCACHE_SUFFIX);
    uint64_t total = 0;
    int removed = 0;
    struct dirent *de;
    DIR *d = opendir(dir);
    const char *keep_base = keep ? strrchr(keep, '/') : NULL;

    keep_base = keep_base ? keep_base + 1 : keep;
    if (!d) {
        return 0;
    }
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        char path[PATH_MAX];
        struct stat st;

        if (len <= s || strcmp(de->d_name + len - s, CONVCACHE_SUFFIX) != 0 ||
            de->d_name[0] == '.' ||
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path ||
            lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            continue;
        }
        if (n == cap) {
            struct cache_file *p = realloc(files, (cap = cap ? 2 * cap : 16) * sizeof *p);

            if (!p) {
                break;
            }
            files = p;
        }
        snprintf(files[n].name, sizeof files[n].name, "%s", de->d_name);
        files[n].size = (uint64_t)st.st_size;
        files[n].used_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        total += files[n].size;
        n++;
    }
    closedir(d);
    if (n > 1) {
        qsort(files, n, sizeof *files, oldest_first);
    }
    for (size_t i = 0; i < n && total > limit; i++) {
        char path[PATH_MAX];

        if (keep_base && !strcmp(files[i].name, keep_base)) {
            continue;   /* the one just written stays, even alone over the limit */
        }
        snprintf(path, sizeof path, "%s/%s", dir, files[i].name);
        if (unlink(path) == 0) {
            total -= files[i].size;
            removed++;
        }
    }
    free(files);
    return removed;
}

/* ------------------------------------------------------------------------ */
/* Reading                                                                    */

/* Bytes of a rows x cols matrix of format t: data and scales; -1 when the
 * format is unknown or the size overflows. */
static int matrix_sizes(int32_t t, int32_t rows, int32_t cols, uint64_t *data, uint64_t *scales)
{
    uint64_t row;

    /* (cols is rounded up to whole 32-column blocks in int arithmetic) */
    if (t < RWKV_DTYPE_F32 || t > RWKV_DTYPE_Q4 || rows <= 0 || cols <= 0 ||
        cols > INT32_MAX - 64) {
        return -1;
    }
    row = quant_row_bytes((enum rwkv_dtype)t, cols);
    if (row > UINT64_MAX / (uint64_t)rows) {
        return -1;
    }
    *data = row * (uint64_t)rows;
    *scales = quant_row_scales((enum rwkv_dtype)t) ? (uint64_t)rows * sizeof(float) : 0;
    return 0;
}

/* Whether [off, off + len) lies in a file of size bytes, aligned. */
static int in_file(uint64_t off, uint64_t len, uint64_t size)
{
    return off % ALIGN == 0 && off <= size && len <= size - off;
}

struct verify {
    const convcache *c;
    int *bad;
};

static void verify_entry(void *ctx, int i)
{
    struct verify *v = ctx;
    const struct entry *e = &v->c->entries[i];

    v->bad[i] = hash_matrix(v->c->base + e->data_off, e->data_size,
                            v->c->base + e->scales_off, e->scales_size) != e->hash;
}

convcache *convcache_parse(const void *buf, size_t size, const struct convcache_key *key,
                           struct kpool *pool, char *why, size_t whylen)
{
    const unsigned char *b = buf;
    struct header h;
    convcache *c;
    uint64_t table_size;
    struct verify v;

    if (size < sizeof h) {
        snprintf(why, whylen, "corrupt: %zu bytes, shorter than the header", size);
        return NULL;
    }
    memcpy(&h, b, sizeof h);
    if (memcmp(h.magic, MAGIC, sizeof h.magic) != 0) {
        snprintf(why, whylen, "corrupt: not a conversion cache");
        return NULL;
    }
    if (h.version != CONVCACHE_VERSION || h.layout != QUANT_LAYOUT_VERSION ||
        h.endian != ENDIAN_MARK) {
        snprintf(why, whylen, "written by another engine version");
        return NULL;
    }
    if (h.file_size != size) {
        snprintf(why, whylen, "corrupt: %zu bytes, the header says %llu", size,
                 (unsigned long long)h.file_size);
        return NULL;
    }
    if ((int32_t)h.dtype != key->dtype) {
        snprintf(why, whylen, "written for another weight format");
        return NULL;
    }
    if (h.src_size != key->size || h.src_ino != key->ino || h.src_dev != key->dev ||
        h.src_mtime_ns != key->mtime_ns || h.src_ctime_ns != key->ctime_ns ||
        h.fingerprint != key->fingerprint) {
        snprintf(why, whylen, "the model file changed since it was written");
        return NULL;
    }
    if (h.pack_signature != key->pack_signature) {
        snprintf(why, whylen, "written by an engine that packs %s differently",
                 rwkv_dtype_name((enum rwkv_dtype)key->dtype));
        return NULL;
    }
    if (h.n_entries > (size - sizeof h) / sizeof(struct entry)) {
        snprintf(why, whylen, "corrupt: %llu entries do not fit in %zu bytes",
                 (unsigned long long)h.n_entries, size);
        return NULL;
    }
    table_size = h.n_entries * sizeof(struct entry);
    if (hash_table(&h, b + sizeof h, (size_t)table_size) != h.hash) {
        snprintf(why, whylen, "corrupt: header or table hash mismatch");
        return NULL;
    }
    c = calloc(1, sizeof *c);
    if (!c || !(c->entries = malloc(h.n_entries ? (size_t)table_size : 1))) {
        free(c);
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    memcpy(c->entries, b + sizeof h, (size_t)table_size);
    c->base = b;
    c->size = size;
    c->n = (size_t)h.n_entries;
    for (size_t i = 0; i < c->n; i++) {
        struct entry *e = &c->entries[i];
        uint64_t data, scales;

        if (memchr(e->name, '\0', sizeof e->name) == NULL || e->transpose < 0 ||
            e->transpose > 1 || matrix_sizes(e->type, e->rows, e->cols, &data, &scales) != 0 ||
            e->data_size != data || e->scales_size != scales ||
            !in_file(e->data_off, e->data_size, size) ||
            !in_file(e->scales_off, e->scales_size, size)) {
            snprintf(why, whylen, "corrupt: entry %zu is malformed", i);
            convcache_close(c);
            return NULL;
        }
    }
    if (c->n > INT32_MAX) {
        snprintf(why, whylen, "corrupt: %zu entries", c->n);
        convcache_close(c);
        return NULL;
    }
    if (c->n > 0) {
        v.c = c;
        v.bad = calloc(c->n, sizeof *v.bad);
        if (!v.bad) {
            snprintf(why, whylen, "out of memory");
            convcache_close(c);
            return NULL;
        }
        kpool_run(pool, verify_entry, &v, (int)c->n);
        for (size_t i = 0; i < c->n; i++) {
            if (v.bad[i]) {
                snprintf(why, whylen, "corrupt: the data of %s does not match its hash",
                         RWKV_ESC(c->entries[i].name));
                free(v.bad);
                convcache_close(c);
                return NULL;
            }
        }
        free(v.bad);
    }
    return c;
}

convcache *convcache_open(const char *path, const struct convcache_key *key,
                          struct kpool *pool, char *why, size_t whylen)
{
    struct stat st;
    convcache *c;
    void *map;
    /* O_NONBLOCK: a FIFO of that name must not hang the load */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

    if (fd < 0) {
        snprintf(why, whylen, errno == ENOENT ? "no cache yet" : "cannot open: %s",
                 strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "not a regular file");
        close(fd);
        return NULL;
    }
    /* Its weights are trusted without the NaN/Inf scan: only a file of
     * ours, or of whoever owns the directory's models, is. */
    if (st.st_uid != geteuid() && st.st_uid != key->owner) {
        snprintf(why, whylen, "owned by another user (uid %u)", (unsigned)st.st_uid);
        close(fd);
        return NULL;
    }
    if (st.st_size < (off_t)sizeof(struct header)) {
        snprintf(why, whylen, "corrupt: %lld bytes, shorter than the header",
                 (long long)st.st_size);
        close(fd);
        return NULL;
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        snprintf(why, whylen, "too large to map");
        close(fd);
        return NULL;
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        snprintf(why, whylen, "cannot map: %s", strerror(errno));
        return NULL;
    }
    c = convcache_parse(map, (size_t)st.st_size, key, pool, why, whylen);
    if (!c) {
        munmap(map, (size_t)st.st_size);
        return NULL;
    }
    c->map = map;
    return c;
}

void convcache_close(convcache *c)
{
    if (!c) {
        return;
    }
    if (c->map) {
        munmap(c->map, c->size);
    }
    free(c->entries);
    free(c);
}

int convcache_holds(const convcache *c, const void *data, size_t n)
{
    const unsigned char *p = data, *map;

    if (!c || !c->map) {
        return 0;
    }
    map = c->map;
    return p >= map && n <= c->size && (size_t)(p - map) <= c->size - n;
}

void convcache_release(const convcache *c, const void *data, size_t n)
{
    const unsigned char *p = data, *map;
    size_t page = (size_t)sysconf(_SC_PAGESIZE), first, last;

    if (!c || !c->map || !page) {
        return;
    }
    map = c->map;
    if (p < map || p + n > map + c->size) {
        return;
    }
    first = ((size_t)(p - map) + page - 1) / page * page;
    last = (size_t)(p + n - map) / page * page;
    if (last > first) {
        /* private, never written: a failure only costs memory */
        (void)madvise((void *)(map + first), last - first, MADV_DONTNEED);
    }
}

size_t convcache_count(const convcache *c)
{
    return c ? c->n : 0;
}

int convcache_has_name(const convcache *c, const char *name)
{
    for (size_t i = 0; c && i < c->n; i++) {
        if (strncmp(c->entries[i].name, name, sizeof c->entries[i].name) == 0) {
            return 1;
        }
    }
    return 0;
}

int convcache_entry(const convcache *c, size_t i, const char **name, struct kmat *m)
{
    const struct entry *e;

    if (!c || i >= c->n) {
        return -1;
    }
    e = &c->entries[i];
    memset(m, 0, sizeof *m);
    m->type = (enum rwkv_dtype)e->type;
    m->rows = e->rows;
    m->cols = e->cols;
    m->data = c->base + e->data_off;
    m->scales = e->scales_size ? (const float *)(c->base + e->scales_off) : NULL;
    *name = e->name;
    return 0;
}

static int entry_matches(const struct entry *e, const char *name, uint64_t src_off,
                         int transpose, const struct kmat *m)
{
    return e->src_off == src_off && e->transpose == transpose && e->type == (int32_t)m->type &&
           e->rows == m->rows && e->cols == m->cols &&
           strncmp(e->name, name, sizeof e->name) == 0;
}

int convcache_find(convcache *c, const char *name, uint64_t src_off, int transpose,
                   struct kmat *m)
{
    if (!c) {
        return 0;
    }
    /* loads ask in the order they wrote: start where the last one matched */
    for (size_t k = 0; k < c->n; k++) {
        size_t i = (c->next + k) % c->n;
        const struct entry *e = &c->entries[i];

        if (entry_matches(e, name, src_off, transpose, m)) {
            m->data = c->base + e->data_off;
            m->scales = e->scales_size ? (const float *)(c->base + e->scales_off) : NULL;
            m->owned = NULL;
            m->owned_scales = NULL;
            c->next = i + 1;
            return 1;
        }
    }
    return 0;
}

void convcache_seal(void *buf, size_t size)
{
    unsigned char *b = buf;
    struct header h;

    if (size < sizeof h) {
        return;
    }
    memcpy(&h, b, sizeof h);
    if (h.n_entries > (size - sizeof h) / sizeof(struct entry)) {
        return;
    }
    for (size_t i = 0; i < h.n_entries; i++) {
        struct entry e;
        unsigned char *p = b + sizeof h + i * sizeof e;

        memcpy(&e, p, sizeof e);
        if (e.data_off <= size && e.data_size <= size - e.data_off &&
            e.scales_off <= size && e.scales_size <= size - e.scales_off) {
            e.hash = hash_matrix(b + e.data_off, (size_t)e.data_size, b + e.scales_off,
                                 (size_t)e.scales_size);
            memcpy(p, &e, sizeof e);
        }
    }
    h.file_size = size;
    h.hash = hash_table(&h, b + sizeof h, (size_t)h.n_entries * sizeof(struct entry));
    memcpy(b, &h, sizeof h);
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                    */

static uint64_t align_up(uint64_t x)
{
    return (x + ALIGN - 1) / ALIGN * ALIGN;
}

struct hash_job {
    const struct convcache_item *items;
    struct entry *entries;
};

static void hash_item(void *ctx, int i)
{
    struct hash_job *j = ctx;
    const struct kmat *m = j->items[i].m;
    struct entry *e = &j->entries[i];

    e->hash = hash_matrix(m->data, e->data_size, m->scales, e->scales_size);
}

/* Writes n bytes, then zeros up to the next multiple of ALIGN from *pos. */
static int write_padded(int fd, const void *p, size_t n, uint64_t *pos)
{
    static const unsigned char zeros[ALIGN];
    const unsigned char *b = p;
    size_t pad;

    while (n > 0) {
        ssize_t w = write(fd, b, n);

        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            if (w == 0) {
                errno = ENOSPC;
            }
            return -1;
        }
        b += w;
        n -= (size_t)w;
        *pos += (uint64_t)w;
    }
    pad = (size_t)(align_up(*pos) - *pos);
    if (pad && write(fd, zeros, pad) != (ssize_t)pad) {
        if (errno == 0) {
            errno = ENOSPC;
        }
        return -1;
    }
    *pos += pad;
    return 0;
}

/* mkdir -p of path's directory. */
static int make_parents(const char *path)
{
    char dir[PATH_MAX];
    size_t n = strlen(path);

    if (n >= sizeof dir) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(dir, path, n + 1);
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/') {
            continue;
        }
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            return -1;
        }
        *p = '/';
    }
    return 0;
}

/* The directory part of path ("." when none) into dir; -1 if too long. */
static int dir_of(const char *path, char *dir, size_t len)
{
    const char *slash = strrchr(path, '/');
    size_t n;

    if (!slash) {
        snprintf(dir, len, ".");
        return 0;
    }
    n = slash == path ? 1 : (size_t)(slash - path);
    if (n >= len) {
        return -1;
    }
    memcpy(dir, path, n);
    dir[n] = '\0';
    return 0;
}

/* Whether the directory of path may be written: it exists and has a write
 * permission bit (checked by mode too, so that root leaves a directory
 * marked read-only alone). */
static int dir_writable(const char *path)
{
    char dir[PATH_MAX];
    struct stat st;

    return dir_of(path, dir, sizeof dir) == 0 && stat(dir, &st) == 0 && S_ISDIR(st.st_mode) &&
           (st.st_mode & (S_IWUSR | S_IWGRP | S_IWOTH)) && access(dir, W_OK) == 0;
}

int convcache_write(const char *path, int make_dir, const struct convcache_key *key,
                    const struct convcache_item *items, size_t n, struct kpool *pool,
                    char *why, size_t whylen)
{
    struct header h;
    struct entry *entries;
    struct hash_job job;
    uint64_t pos, off;
    atomicfile *af;
    int fd, saved;

    if (n > INT32_MAX / 2) {
        snprintf(why, whylen, "too many matrices");
        return -1;
    }
    if (make_dir && make_parents(path) != 0) {
        snprintf(why, whylen, "cannot create the directory of %s: %s", RWKV_ESC(path),
                 strerror(errno));
        return -1;
    }
    if (!dir_writable(path)) {
        snprintf(why, whylen, "the directory of %s is read-only", RWKV_ESC(path));
        return -1;
    }
    entries = calloc(n ? n : 1, sizeof *entries);
    if (!entries) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    memset(&h, 0, sizeof h);
    memcpy(h.magic, MAGIC, sizeof h.magic);
    h.version = CONVCACHE_VERSION;
    h.layout = QUANT_LAYOUT_VERSION;
    h.endian = ENDIAN_MARK;
    h.dtype = (uint32_t)key->dtype;
    h.src_size = key->size;
    h.src_ino = key->ino;
    h.src_dev = key->dev;
    h.src_mtime_ns = key->mtime_ns;
    h.src_ctime_ns = key->ctime_ns;
    h.fingerprint = key->fingerprint;
    h.pack_signature = key->pack_signature;
    h.n_entries = n;
    off = align_up(sizeof h + n * sizeof *entries);
    for (size_t i = 0; i < n; i++) {
        struct entry *e = &entries[i];
        const struct kmat *m = items[i].m;

        if (strlen(items[i].name) >= sizeof e->name) {
            snprintf(why, whylen, "tensor name %s is too long", RWKV_ESC(items[i].name));
            free(entries);
            return -1;
        }
        strcpy(e->name, items[i].name);
        e->src_off = items[i].src_off;
        e->transpose = items[i].transpose;
        e->type = (int32_t)m->type;
        e->rows = m->rows;
        e->cols = m->cols;
        matrix_sizes(e->type, e->rows, e->cols, &e->data_size, &e->scales_size);
        e->data_off = off;
        off = align_up(off + e->data_size);
        e->scales_off = e->scales_size ? off : 0;
        off = align_up(off + e->scales_size);
    }
    h.file_size = off;
    job.items = items;
    job.entries = entries;
    kpool_run(pool, hash_item, &job, (int)n);
    h.hash = hash_table(&h, entries, n * sizeof *entries);

    /* No fsync, of the file or the directory: a cache is derived data,
     * every matrix in it is checked against its hash when it is loaded, so
     * one torn by a power cut is rebuilt; syncing 1-2 GB made the first
     * start 2.5-7 s slower.  Any regular file at the cache's name may be
     * replaced: the name (MODEL.DTYPE.rwkvcache, or one in the cache
     * directory) is the cache's own, and a damaged cache must be rebuilt. */
    af = atomicfile_open(path, NULL, ATOMICFILE_NO_SYNC, why, whylen);
    if (!af) {
        free(entries);
        return -1;
    }
    fd = atomicfile_fd(af);
    pos = 0;
    errno = 0;
    /* 128-byte header, table, padding: data starts aligned */
    if (write_padded(fd, &h, sizeof h, &pos) != 0 ||
        write_padded(fd, entries, n * sizeof *entries, &pos) != 0) {
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        const struct kmat *m = items[i].m;

        if (write_padded(fd, m->data, (size_t)entries[i].data_size, &pos) != 0 ||
            (entries[i].scales_size &&
             write_padded(fd, m->scales, (size_t)entries[i].scales_size, &pos) != 0)) {
            goto fail;
        }
    }
    if (pos != h.file_size) {
        goto fail;
    }
    free(entries);
    return atomicfile_commit(af, why, whylen);
fail:
    saved = errno ? errno : EIO;
    atomicfile_abort(af);
    free(entries);
    snprintf(why, whylen, "cannot write %s: %s", RWKV_ESC(path), strerror(saved));
    return -1;
}
