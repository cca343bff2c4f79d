/*
 * pth.c - PyTorch zip checkpoints: what torch.save(state_dict) writes.
 *
 * The container is a ZIP archive of stored (uncompressed) entries under one
 * top-level folder of any name: PREFIX/data.pkl (the pickled dict) and
 * PREFIX/data/KEY (one raw little-endian storage per key), plus small
 * entries we only glance at (byteorder, version, .data/serialization_id).
 *
 * data.pkl is read by a deliberately tiny pickle machine: it knows the
 * protocol 2 opcodes that a state dict needs and only six globals
 * (torch._utils._rebuild_tensor_v2 and _rebuild_parameter,
 * collections.OrderedDict and the float, half and bfloat16 storage types).  Anything else is refused, so a model
 * file can never make us call code: it can only describe tensors.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/crc32.h"
#include "engine/base/err.h"
#include "engine/base/escape.h"
#include "engine/load/checkpoint.h"
#include "engine/load/ckpt_reader.h"

/* ---------------------------------------------------------------- ZIP --- */

struct zip_entry {
    const char *name;           /* into the mapping, not NUL-terminated */
    size_t namelen;
    unsigned method;
    uint64_t csize, usize;
    uint64_t header;            /* offset of the local file header */
    uint32_t crc;               /* CRC-32 of the data, from the central directory */
};

struct zip {
    const char *path;
    const unsigned char *map;
    size_t size;
    struct zip_entry *entries;  /* sorted by name */
    size_t count;
    const unsigned char **data; /* per entry: its bytes once zip_data gave them out */
};

static uint16_t rd16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const unsigned char *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static int cmp_entry(const void *a, const void *b)
{
    const struct zip_entry *x = a, *y = b;
    size_t n = x->namelen < y->namelen ? x->namelen : y->namelen;
    int c = memcmp(x->name, y->name, n);

    if (c) {
        return c;
    }
    return x->namelen < y->namelen ? -1 : x->namelen > y->namelen;
}

static const struct zip_entry *zip_find(const struct zip *z, const char *name, size_t len)
{
    struct zip_entry key;

    key.name = name;
    key.namelen = len;
    return bsearch(&key, z->entries, z->count, sizeof(key), cmp_entry);
}

/* Reads the ZIP64 extended information extra field of a central header:
 * the 64-bit values replace those of the 32-bit fields that hold 0xffffffff. */
static int zip64_extra(const struct zip *z, const unsigned char *extra, size_t len,
                       struct zip_entry *e, int need_usize, int need_csize, int need_header,
                       char *err, size_t errlen)
{
    size_t pos = 0;

    while (pos + 4 <= len) {
        unsigned id = rd16(extra + pos), size = rd16(extra + pos + 2);
        const unsigned char *p = extra + pos + 4;
        size_t need = 8 * (size_t)(need_usize + need_csize + need_header);

        if (pos + 4 + size > len) {
            break;
        }
        if (id == 1) {
            if (size < need) {
                err_set(err, errlen, "%s: zip entry %s: ZIP64 extra field too short",
                        z->path, RWKV_ESCN(e->name, e->namelen));
                return -1;
            }
            if (need_usize) {
                e->usize = rd64(p);
                p += 8;
            }
            if (need_csize) {
                e->csize = rd64(p);
                p += 8;
            }
            if (need_header) {
                e->header = rd64(p);
            }
            return 0;
        }
        pos += 4 + size;
    }
    if (need_usize || need_csize || need_header) {
        err_set(err, errlen, "%s: zip entry %s: ZIP64 sizes missing", z->path,
                RWKV_ESCN(e->name, e->namelen));
        return -1;
    }
    return 0;
}

/* Finds the central directory (ZIP64 aware) and lists its entries. */
static int zip_open(struct zip *z, char *err, size_t errlen)
{
    const unsigned char *m = z->map;
    size_t size = z->size, eocd = 0, pos, i;
    uint64_t count, cd_size, cd_off, scan_end;
    int found = 0;

    if (size < 22) {
        err_set(err, errlen, "%s: truncated zip file (%zu bytes)", z->path, size);
        return -1;
    }
    /* The end record is 22 bytes plus a comment of at most 65535. */
    scan_end = size > 22 + 65535 ? size - 22 - 65535 : 0;
    for (pos = size - 22;; pos--) {
        if (rd32(m + pos) == 0x06054b50 && pos + 22 + rd16(m + pos + 20) == size) {
            eocd = pos;
            found = 1;
            break;
        }
        if (pos == scan_end) {
            break;
        }
    }
    if (!found) {
        err_set(err, errlen, "%s: truncated or damaged zip file: no end of central directory "
                "record (file is %zu bytes)", z->path, size);
        return -1;
    }
    count = rd16(m + eocd + 10);
    cd_size = rd32(m + eocd + 12);
    cd_off = rd32(m + eocd + 16);
    if (count == 0xffff || cd_size == 0xffffffffu || cd_off == 0xffffffffu) {
        uint64_t e64;

        if (eocd < 20 || rd32(m + eocd - 20) != 0x07064b50) {
            err_set(err, errlen, "%s: offset %zu: ZIP64 locator missing", z->path, eocd);
            return -1;
        }
        e64 = rd64(m + eocd - 20 + 8);
        if (e64 > size - 56 || e64 + 56 > eocd - 20 || rd32(m + e64) != 0x06064b50) {
            err_set(err, errlen, "%s: offset %llu: bad ZIP64 end of central directory",
                    z->path, (unsigned long long)e64);
            return -1;
        }
        count = rd64(m + e64 + 32);
        cd_size = rd64(m + e64 + 40);
        cd_off = rd64(m + e64 + 48);
        eocd = (size_t)e64;
    }
    if (cd_off > eocd || cd_size > eocd - cd_off) {
        err_set(err, errlen, "%s: offset %llu: central directory (%llu bytes) runs past its end "
                "record: truncated or damaged zip", z->path, (unsigned long long)cd_off,
                (unsigned long long)cd_size);
        return -1;
    }
    if (count > cd_size / 46) {
        err_set(err, errlen, "%s: zip claims %llu entries in a %llu-byte central directory",
                z->path, (unsigned long long)count, (unsigned long long)cd_size);
        return -1;
    }
    z->entries = calloc(count ? (size_t)count : 1, sizeof(*z->entries));
    if (!z->entries) {
        err_set(err, errlen, "%s: out of memory", z->path);
        return -1;
    }
    pos = (size_t)cd_off;
    for (i = 0; i < count; i++) {
        struct zip_entry *e = &z->entries[i];
        const unsigned char *h = m + pos;
        size_t nlen, elen, clen;

        if (pos + 46 > cd_off + cd_size || rd32(h) != 0x02014b50) {
            err_set(err, errlen, "%s: offset %zu: bad central directory header (entry %zu)",
                    z->path, pos, i);
            return -1;
        }
        nlen = rd16(h + 28);
        elen = rd16(h + 30);
        clen = rd16(h + 32);
        if (pos + 46 + nlen + elen + clen > cd_off + cd_size) {
            err_set(err, errlen, "%s: offset %zu: central directory entry runs past the "
                    "directory", z->path, pos);
            return -1;
        }
        e->name = (const char *)h + 46;
        e->namelen = nlen;
        e->method = rd16(h + 10);
        e->csize = rd32(h + 20);
        e->usize = rd32(h + 24);
        e->header = rd32(h + 42);
        e->crc = rd32(h + 16);
        if (zip64_extra(z, h + 46 + nlen, elen, e, e->usize == 0xffffffffu,
                        e->csize == 0xffffffffu, e->header == 0xffffffffu, err, errlen)) {
            return -1;
        }
        pos += 46 + nlen + elen + clen;
    }
    z->count = (size_t)count;
    qsort(z->entries, z->count, sizeof(*z->entries), cmp_entry);
    for (i = 1; i < z->count; i++) {
        /* which of the two a reader would use is anyone's guess */
        if (!cmp_entry(&z->entries[i - 1], &z->entries[i])) {
            err_set(err, errlen, "%s: zip holds two entries named %.*s: damaged or "
                    "tampered with", z->path,
                    (int)(z->entries[i].namelen > 200 ? 200 : z->entries[i].namelen),
                    z->entries[i].name);
            return -1;
        }
    }
    z->data = calloc(z->count ? z->count : 1, sizeof(*z->data));
    if (!z->data) {
        err_set(err, errlen, "%s: out of memory", z->path);
        return -1;
    }
    return 0;
}

/* The bytes of a stored entry, checked against the local header and the
 * end of the file.  NULL with err filled. */
static const unsigned char *zip_data(const struct zip *z, const struct zip_entry *e,
                                     char *err, size_t errlen)
{
    uint64_t h = e->header, data;

    if (e->method != 0) {
        err_set(err, errlen, "%s: zip entry %s is compressed (method %u); PyTorch stores "
                "entries uncompressed", z->path, RWKV_ESCN(e->name, e->namelen), e->method);
        return NULL;
    }
    if (e->csize != e->usize) {
        err_set(err, errlen, "%s: zip entry %s: stored entry with sizes %llu and %llu",
                z->path, RWKV_ESCN(e->name, e->namelen), (unsigned long long)e->csize,
                (unsigned long long)e->usize);
        return NULL;
    }
    if (h > z->size || z->size - h < 30 || rd32(z->map + h) != 0x04034b50) {
        err_set(err, errlen, "%s: offset %llu: zip entry %s: no local file header there "
                "(truncated file?)", z->path, (unsigned long long)h,
                RWKV_ESCN(e->name, e->namelen));
        return NULL;
    }
    data = h + 30 + rd16(z->map + h + 26) + rd16(z->map + h + 28);
    if (data > z->size || z->size - data < e->usize) {
        err_set(err, errlen, "%s: offset %llu: zip entry %s (%llu bytes) runs past the end "
                "of the file (%zu bytes): truncated file", z->path, (unsigned long long)data,
                RWKV_ESCN(e->name, e->namelen), (unsigned long long)e->usize, z->size);
        return NULL;
    }
    z->data[e - z->entries] = z->map + data;
    return z->map + data;
}

/* ------------------------------------------------------------- pickle --- */

enum pk_kind {
    PK_MARK, PK_NONE, PK_BOOL, PK_INT, PK_STR, PK_TUPLE, PK_DICT, PK_GLOBAL,
    PK_STORAGE, PK_TENSOR,
};

enum pk_global {
    G_REBUILD_TENSOR_V2, G_REBUILD_PARAMETER, G_ORDERED_DICT, G_FLOAT_STORAGE, G_HALF_STORAGE,
    G_BFLOAT16_STORAGE,
};

static const struct {
    const char *module, *name;
} allowed_globals[] = {
    [G_REBUILD_TENSOR_V2] = { "torch._utils", "_rebuild_tensor_v2" },
    [G_REBUILD_PARAMETER] = { "torch._utils", "_rebuild_parameter" },
    [G_ORDERED_DICT] = { "collections", "OrderedDict" },
    [G_FLOAT_STORAGE] = { "torch", "FloatStorage" },
    [G_HALF_STORAGE] = { "torch", "HalfStorage" },
    [G_BFLOAT16_STORAGE] = { "torch", "BFloat16Storage" },
};

struct pk_tensor {
    const struct pk_value *storage;
    int64_t offset;
    int ndim;
    int64_t shape[CKPT_MAX_DIMS], stride[CKPT_MAX_DIMS];
};

/* One value on the stack, 64 bytes: the heap a pickle takes is mostly
 * these. */
struct pk_value {
    enum pk_kind kind;
    enum ckpt_dtype dtype;      /* STORAGE */
    int64_t i;                  /* INT, BOOL; GLOBAL: enum pk_global; STORAGE: numel */
    const char *s;              /* STR: into the pickle bytes; STORAGE: its key */
    size_t len;
    struct pk_value **items;    /* TUPLE items; DICT keys and values interleaved */
    size_t n, cap;
    struct pk_tensor *tensor;   /* TENSOR */
};

/* Values are allocated PK_CHUNK at a time and freed together. */
#define PK_CHUNK 256

struct pk_chunk {
    struct pk_chunk *next;
    size_t used;
    struct pk_value v[PK_CHUNK];
};

struct pk {
    const char *path, *entry;
    const unsigned char *p;     /* data.pkl */
    size_t len, pos, op_pos;
    struct pk_value **stack;
    size_t depth, cap;
    struct pk_value **memo;
    size_t n_memo;
    struct pk_chunk *chunks;    /* every value, newest chunk first */
    size_t used, budget;        /* heap bytes taken so far, and the most allowed */
    char *err;
    size_t errlen;
};

static struct pk_value pk_mark = { .kind = PK_MARK };
/* Values that are never changed are shared, not allocated. */
static struct pk_value pk_none = { .kind = PK_NONE };
static struct pk_value pk_true = { .kind = PK_BOOL, .i = 1 };
static struct pk_value pk_false = { .kind = PK_BOOL, .i = 0 };
static struct pk_value pk_empty_tuple = { .kind = PK_TUPLE };

/* Heap a pickle may take: PK_BUDGET_PER_BYTE bytes for each of its bytes,
 * plus PK_BUDGET_BASE.  A state dict takes about 10 (measured on the
 * fixtures: each tensor's few values against its ~150 pickle bytes); runs
 * of one-byte opcodes (EMPTY_DICT, NONE, TUPLE1...) would take ~200 a byte
 * and turn a 120 MB file into gigabytes. */
#define PK_BUDGET_PER_BYTE 32
#define PK_BUDGET_BASE ((size_t)1 << 20)
/* What malloc spends per allocation beyond the bytes asked for. */
#define PK_MALLOC_OVERHEAD 16

static int pk_fail(struct pk *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Fills err with "PATH: ENTRY offset N: problem" and returns -1. */
static int pk_fail(struct pk *k, const char *fmt, ...)
{
    va_list ap;
    int w;

    if (!k->err || !k->errlen) {
        return -1;
    }
    w = snprintf(k->err, k->errlen, "%s: %s offset %zu: ", k->path, k->entry, k->op_pos);
    if (w >= 0 && (size_t)w < k->errlen) {
        va_start(ap, fmt);
        vsnprintf(k->err + w, k->errlen - (size_t)w, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Counts n more bytes of heap against the budget; -1 with err filled once
 * it is spent. */
static int pk_charge(struct pk *k, size_t n)
{
    if (n > k->budget - k->used) {
        return pk_fail(k, "unpickling would take more than %zu MiB, %d times the size of the "
                       "pickle: damaged or not a plain state dict", k->budget >> 20,
                       PK_BUDGET_PER_BYTE);
    }
    k->used += n;
    return 0;
}

/* Counted, zeroed heap for items arrays and tensors (NULL with err filled). */
static void *pk_alloc(struct pk *k, size_t n)
{
    void *p;

    if (pk_charge(k, n + PK_MALLOC_OVERHEAD)) {
        return NULL;
    }
    p = calloc(1, n);
    if (!p) {
        pk_fail(k, "out of memory");
    }
    return p;
}

static struct pk_value *pk_new(struct pk *k, enum pk_kind kind)
{
    struct pk_chunk *c = k->chunks;
    struct pk_value *v;

    if (!c || c->used == PK_CHUNK) {
        if (!(c = pk_alloc(k, sizeof(*c)))) {
            return NULL;
        }
        c->next = k->chunks;
        k->chunks = c;
    }
    v = &c->v[c->used++];
    v->kind = kind;
    return v;
}

static void pk_free_all(struct pk *k)
{
    struct pk_chunk *c = k->chunks, *next;
    size_t i;

    while (c) {
        next = c->next;
        for (i = 0; i < c->used; i++) {
            free(c->v[i].items);
            free(c->v[i].tensor);
        }
        free(c);
        c = next;
    }
    free(k->stack);
    free(k->memo);
}

static int pk_push(struct pk *k, struct pk_value *v)
{
    if (!v) {
        return -1;
    }
    if (k->depth == k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 64;
        struct pk_value **s;

        if (pk_charge(k, (cap - k->cap) * sizeof(*s))) {
            return -1;
        }
        s = realloc(k->stack, cap * sizeof(*s));
        if (!s) {
            return pk_fail(k, "out of memory");
        }
        k->stack = s;
        k->cap = cap;
    }
    k->stack[k->depth++] = v;
    return 0;
}

static struct pk_value *pk_pop(struct pk *k)
{
    if (k->depth == 0 || k->stack[k->depth - 1] == &pk_mark) {
        pk_fail(k, "pickle stack underflow");
        return NULL;
    }
    return k->stack[--k->depth];
}

static int pk_append(struct pk *k, struct pk_value *c, struct pk_value *item)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 8;
        struct pk_value **it;

        if (pk_charge(k, (cap - c->cap) * sizeof(*it) + (c->cap ? 0 : PK_MALLOC_OVERHEAD))) {
            return -1;
        }
        it = realloc(c->items, cap * sizeof(*it));
        if (!it) {
            return pk_fail(k, "out of memory");
        }
        c->items = it;
        c->cap = cap;
    }
    c->items[c->n++] = item;
    return 0;
}

/* Index of the topmost MARK on the stack, or -1. */
static long pk_find_mark(struct pk *k)
{
    size_t i = k->depth;

    while (i > 0) {
        if (k->stack[--i] == &pk_mark) {
            return (long)i;
        }
    }
    pk_fail(k, "no MARK on the pickle stack");
    return -1;
}

static int pk_need(struct pk *k, size_t n)
{
    if (k->len - k->pos < n) {
        return pk_fail(k, "pickle ends inside an opcode argument (truncated data.pkl)");
    }
    return 0;
}

/* Builds a tuple of the n topmost values (n < 0: down to the MARK). */
static int pk_tuple(struct pk *k, long n)
{
    struct pk_value *t;
    size_t start, i;

    if (n < 0) {
        long m = pk_find_mark(k);
        if (m < 0) {
            return -1;
        }
        start = (size_t)m + 1;
    } else {
        if (k->depth < (size_t)n) {
            return pk_fail(k, "pickle stack underflow");
        }
        start = k->depth - (size_t)n;
    }
    for (i = start; i < k->depth; i++) {
        if (k->stack[i] == &pk_mark) {
            return pk_fail(k, "MARK inside a tuple");
        }
    }
    if (start == k->depth) {
        t = &pk_empty_tuple;
    } else {
        if (!(t = pk_new(k, PK_TUPLE)) ||
            !(t->items = pk_alloc(k, (k->depth - start) * sizeof(*t->items)))) {
            return -1;
        }
        t->n = t->cap = k->depth - start;
        memcpy(t->items, k->stack + start, t->n * sizeof(*t->items));
    }
    k->depth = n < 0 ? start - 1 : start;
    return pk_push(k, t);
}

static int pk_memo_put(struct pk *k, uint64_t idx)
{
    if (k->depth == 0 || k->stack[k->depth - 1] == &pk_mark) {
        return pk_fail(k, "memo put with an empty stack");
    }
    /* Memo indexes count up from 0; one per opcode at most. */
    if (idx > k->len) {
        return pk_fail(k, "memo index %llu out of range", (unsigned long long)idx);
    }
    if (idx >= k->n_memo) {
        size_t n = (size_t)idx + 1 > 2 * k->n_memo ? (size_t)idx + 1 : 2 * k->n_memo;
        struct pk_value **m;

        if (pk_charge(k, (n - k->n_memo) * sizeof(*m))) {
            return -1;
        }
        m = realloc(k->memo, n * sizeof(*m));
        if (!m) {
            return pk_fail(k, "out of memory");
        }
        memset(m + k->n_memo, 0, (n - k->n_memo) * sizeof(*m));
        k->memo = m;
        k->n_memo = n;
    }
    k->memo[idx] = k->stack[k->depth - 1];
    return 0;
}

static int pk_memo_get(struct pk *k, uint64_t idx)
{
    if (idx >= k->n_memo || !k->memo[idx]) {
        return pk_fail(k, "memo index %llu used before it was set", (unsigned long long)idx);
    }
    return pk_push(k, k->memo[idx]);
}

static int pk_global(struct pk *k)
{
    const char *mod = (const char *)k->p + k->pos, *name, *end;
    size_t rest = k->len - k->pos, modlen, namelen, i;
    struct pk_value *g;

    end = memchr(mod, '\n', rest);
    if (!end) {
        return pk_fail(k, "unterminated GLOBAL");
    }
    modlen = (size_t)(end - mod);
    name = end + 1;
    end = memchr(name, '\n', rest - modlen - 1);
    if (!end) {
        return pk_fail(k, "unterminated GLOBAL");
    }
    namelen = (size_t)(end - name);
    k->pos += modlen + namelen + 2;
    for (i = 0; i < sizeof(allowed_globals) / sizeof(allowed_globals[0]); i++) {
        if (strlen(allowed_globals[i].module) == modlen &&
            !memcmp(allowed_globals[i].module, mod, modlen) &&
            strlen(allowed_globals[i].name) == namelen &&
            !memcmp(allowed_globals[i].name, name, namelen)) {
            g = pk_new(k, PK_GLOBAL);
            if (!g) {
                return -1;
            }
            g->i = (int64_t)i;
            return pk_push(k, g);
        }
    }
    if (modlen == 5 && !memcmp(mod, "torch", 5) && namelen > 7 &&
        !memcmp(name + namelen - 7, "Storage", 7)) {
        return pk_fail(k, "tensor type torch.%s not supported (float32, float16 or bfloat16 "
                       "only)", RWKV_ESCN(name, namelen));
    }
    return pk_fail(k, "refusing foreign GLOBAL %s.%s: a checkpoint may only hold tensors",
                   RWKV_ESCN(mod, modlen), RWKV_ESCN(name, namelen));
}

static int is_str(const struct pk_value *v, const char *s)
{
    return v->kind == PK_STR && v->len == strlen(s) && !memcmp(v->s, s, v->len);
}

/* BINPERSID: ('storage', StorageType, key, location, numel) -> a storage. */
static int pk_persid(struct pk *k)
{
    struct pk_value *pid = pk_pop(k), *s;

    if (!pid) {
        return -1;
    }
    if (pid->kind != PK_TUPLE || pid->n != 5 || !is_str(pid->items[0], "storage") ||
        pid->items[1]->kind != PK_GLOBAL || pid->items[1]->i < G_FLOAT_STORAGE ||
        pid->items[2]->kind != PK_STR || pid->items[4]->kind != PK_INT) {
        return pk_fail(k, "persistent id is not a ('storage', type, key, location, size) "
                       "tuple");
    }
    if (pid->items[4]->i < 0) {
        return pk_fail(k, "storage of negative size");
    }
    s = pk_new(k, PK_STORAGE);
    if (!s) {
        return -1;
    }
    s->dtype = pid->items[1]->i == G_FLOAT_STORAGE ? CKPT_F32
             : pid->items[1]->i == G_HALF_STORAGE ? CKPT_F16 : CKPT_BF16;
    s->s = pid->items[2]->s;
    s->len = pid->items[2]->len;
    s->i = pid->items[4]->i;    /* numel */
    return pk_push(k, s);
}

/* Reads a tuple of ints (sizes or strides) into out. */
static int pk_ints(struct pk *k, const struct pk_value *t, int64_t *out, const char *what)
{
    size_t i;

    if (t->kind != PK_TUPLE) {
        return pk_fail(k, "tensor %s is not a tuple", what);
    }
    if (t->n > CKPT_MAX_DIMS) {
        return pk_fail(k, "tensor has %zu dimensions (at most %d supported)", t->n,
                       CKPT_MAX_DIMS);
    }
    for (i = 0; i < t->n; i++) {
        if (t->items[i]->kind != PK_INT || t->items[i]->i < 0) {
            return pk_fail(k, "tensor %s holds something other than a size", what);
        }
        out[i] = t->items[i]->i;
    }
    return 0;
}

/* REDUCE: only _rebuild_tensor_v2(storage, offset, size, stride, ...) and
 * OrderedDict() may be called. */
static int pk_reduce(struct pk *k)
{
    struct pk_value *args = pk_pop(k), *fn, *v;

    if (!args || !(fn = pk_pop(k))) {
        return -1;
    }
    if (fn->kind != PK_GLOBAL || args->kind != PK_TUPLE) {
        return pk_fail(k, "REDUCE of something other than an allowed global");
    }
    if (fn->i == G_ORDERED_DICT) {
        if (args->n != 0) {
            return pk_fail(k, "OrderedDict called with arguments");
        }
        return pk_push(k, pk_new(k, PK_DICT));
    }
    if (fn->i == G_REBUILD_PARAMETER) {
        /* nn.Parameter(data, requires_grad, hooks): the data tensor itself */
        if (args->n != 3 || args->items[0]->kind != PK_TENSOR) {
            return pk_fail(k, "_rebuild_parameter arguments are not (tensor, requires_grad, "
                           "hooks)");
        }
        return pk_push(k, args->items[0]);
    }
    if (fn->i != G_REBUILD_TENSOR_V2) {
        return pk_fail(k, "storage type called as a function");
    }
    if (args->n < 4 || args->n > 7 || args->items[0]->kind != PK_STORAGE ||
        args->items[1]->kind != PK_INT || args->items[1]->i < 0) {
        return pk_fail(k, "_rebuild_tensor_v2 arguments are not (storage, offset, size, "
                       "stride, ...)");
    }
    v = pk_new(k, PK_TENSOR);
    if (!v || !(v->tensor = pk_alloc(k, sizeof(*v->tensor)))) {
        return -1;
    }
    v->tensor->storage = args->items[0];
    v->tensor->offset = args->items[1]->i;
    if (pk_ints(k, args->items[2], v->tensor->shape, "size") ||
        pk_ints(k, args->items[3], v->tensor->stride, "stride")) {
        return -1;
    }
    if (args->items[2]->n != args->items[3]->n) {
        return pk_fail(k, "tensor size and stride differ in length");
    }
    v->tensor->ndim = (int)args->items[2]->n;
    return pk_push(k, v);
}

static int pk_setitems(struct pk *k, long mark)
{
    struct pk_value *d;
    size_t i;

    if (mark < 0) {
        return -1;
    }
    if (mark == 0 || k->stack[mark - 1]->kind != PK_DICT) {
        return pk_fail(k, "SETITEMS on something that is not a dict");
    }
    if ((k->depth - (size_t)mark - 1) % 2) {
        return pk_fail(k, "SETITEMS with an odd number of items");
    }
    d = k->stack[mark - 1];
    /* the topmost MARK is at mark: nothing above it is a MARK */
    for (i = (size_t)mark + 1; i < k->depth; i++) {
        if (pk_append(k, d, k->stack[i])) {
            return -1;
        }
    }
    k->depth = (size_t)mark;
    return 0;
}

/* Runs data.pkl; the result (a dict) in *out. */
static int pk_run(struct pk *k, struct pk_value **out)
{
    while (k->pos < k->len) {
        unsigned op = k->p[k->pos];
        uint64_t n;
        struct pk_value *v;

        k->op_pos = k->pos++;
        switch (op) {
        case 0x80: /* PROTO */
            if (pk_need(k, 1)) {
                return -1;
            }
            if (k->p[k->pos] < 2 || k->p[k->pos] > 5) {
                return pk_fail(k, "pickle protocol %u not supported", k->p[k->pos]);
            }
            k->pos++;
            break;
        case '}': /* EMPTY_DICT */
            if (pk_push(k, pk_new(k, PK_DICT))) {
                return -1;
            }
            break;
        case ')': /* EMPTY_TUPLE */
            if (pk_push(k, &pk_empty_tuple)) {
                return -1;
            }
            break;
        case '(': /* MARK */
            if (pk_push(k, &pk_mark)) {
                return -1;
            }
            break;
        case 'X': /* BINUNICODE */
        case 0x8c: /* SHORT_BINUNICODE */
            if (pk_need(k, op == 'X' ? 4 : 1)) {
                return -1;
            }
            n = op == 'X' ? rd32(k->p + k->pos) : k->p[k->pos];
            k->pos += op == 'X' ? 4 : 1;
            if (pk_need(k, (size_t)n) || !(v = pk_new(k, PK_STR))) {
                return -1;
            }
            v->s = (const char *)k->p + k->pos;
            v->len = (size_t)n;
            k->pos += (size_t)n;
            if (pk_push(k, v)) {
                return -1;
            }
            break;
        case 'q': /* BINPUT */
        case 'r': /* LONG_BINPUT */
        case 'h': /* BINGET */
        case 'j': /* LONG_BINGET */
            n = op == 'q' || op == 'h' ? 1 : 4;
            if (pk_need(k, (size_t)n)) {
                return -1;
            }
            n = n == 1 ? k->p[k->pos++] : (k->pos += 4, rd32(k->p + k->pos - 4));
            if ((op == 'q' || op == 'r') ? pk_memo_put(k, n) : pk_memo_get(k, n)) {
                return -1;
            }
            break;
        case 'c': /* GLOBAL */
            if (pk_global(k)) {
                return -1;
            }
            break;
        case 'Q': /* BINPERSID */
            if (pk_persid(k)) {
                return -1;
            }
            break;
        case 'J': /* BININT */
        case 'K': /* BININT1 */
        case 'M': /* BININT2 */
            n = op == 'J' ? 4 : op == 'K' ? 1 : 2;
            if (pk_need(k, (size_t)n) || !(v = pk_new(k, PK_INT))) {
                return -1;
            }
            v->i = op == 'J' ? (int32_t)rd32(k->p + k->pos)
                 : op == 'K' ? k->p[k->pos] : rd16(k->p + k->pos);
            k->pos += (size_t)n;
            if (pk_push(k, v)) {
                return -1;
            }
            break;
        case 0x8a: { /* LONG1: little-endian two's complement, here at most 8 bytes */
            uint64_t u = 0;
            size_t i;

            if (pk_need(k, 1)) {
                return -1;
            }
            n = k->p[k->pos++];
            if (n > 8) {
                return pk_fail(k, "integer of %u bytes too large", (unsigned)n);
            }
            if (pk_need(k, (size_t)n) || !(v = pk_new(k, PK_INT))) {
                return -1;
            }
            for (i = 0; i < n; i++) {
                u |= (uint64_t)k->p[k->pos + i] << (8 * i);
            }
            if (n > 0 && n < 8 && (k->p[k->pos + n - 1] & 0x80)) {
                u |= ~(uint64_t)0 << (8 * n);
            }
            memcpy(&v->i, &u, 8);
            k->pos += (size_t)n;
            if (pk_push(k, v)) {
                return -1;
            }
            break;
        }
        case 't': /* TUPLE */
            if (pk_tuple(k, -1)) {
                return -1;
            }
            break;
        case 0x85: /* TUPLE1 */
        case 0x86: /* TUPLE2 */
        case 0x87: /* TUPLE3 */
            if (pk_tuple(k, (long)(op - 0x84))) {
                return -1;
            }
            break;
        case 0x88: /* NEWTRUE */
        case 0x89: /* NEWFALSE */
            if (pk_push(k, op == 0x88 ? &pk_true : &pk_false)) {
                return -1;
            }
            break;
        case 'N': /* NONE */
            if (pk_push(k, &pk_none)) {
                return -1;
            }
            break;
        case 'R': /* REDUCE */
            if (pk_reduce(k)) {
                return -1;
            }
            break;
        case 's': { /* SETITEM */
            struct pk_value *val = pk_pop(k), *key = val ? pk_pop(k) : NULL;

            if (!key) {
                return -1;
            }
            if (k->depth == 0 || k->stack[k->depth - 1]->kind != PK_DICT) {
                return pk_fail(k, "SETITEM on something that is not a dict");
            }
            if (pk_append(k, k->stack[k->depth - 1], key) ||
                pk_append(k, k->stack[k->depth - 1], val)) {
                return -1;
            }
            break;
        }
        case 'u': /* SETITEMS */
            if (pk_setitems(k, pk_find_mark(k))) {
                return -1;
            }
            break;
        case 'b': /* BUILD: OrderedDict's _metadata attribute, ignored */
            if (!pk_pop(k)) {
                return -1;
            }
            if (k->depth == 0 || k->stack[k->depth - 1]->kind != PK_DICT) {
                return pk_fail(k, "BUILD on something that is not a dict");
            }
            break;
        case '.': /* STOP */
            if (!(v = pk_pop(k))) {
                return -1;
            }
            if (v->kind != PK_DICT) {
                return pk_fail(k, "the pickle is not a dict of tensors");
            }
            *out = v;
            return 0;
        default:
            return pk_fail(k, "pickle opcode 0x%02x not allowed in a checkpoint", op);
        }
    }
    k->op_pos = k->pos;
    return pk_fail(k, "pickle ends without STOP (truncated data.pkl)");
}

/* ------------------------------------------------------------ tensors --- */

/* Registers one tensor of the dict, after checking its storage and view
 * against the bounds of its data entry. */
static int add_tensor(ckpt_file *file, const struct zip *z, const char *prefix,
                      const struct pk_value *key, const struct pk_tensor *t,
                      char *err, size_t errlen)
{
    const struct pk_value *s = t->storage;
    const struct zip_entry *e;
    const unsigned char *data;
    char ename[512];
    size_t esize = ckpt_dtype_size(s->dtype);
    int64_t numel, last = 0, expect = 1;
    int contiguous = 1, i;
    const char *path = z->path, *tensor = RWKV_ESCN(key->s, key->len);

    if ((size_t)snprintf(ename, sizeof(ename), "%sdata/%.*s", prefix, (int)s->len, s->s)
        >= sizeof(ename) || !(e = zip_find(z, ename, strlen(ename)))) {
        err_set(err, errlen, "%s: tensor %s: storage entry %s missing from the zip", path,
                tensor, RWKV_ESCN(s->s, s->len));
        return -1;
    }
    if (!(data = zip_data(z, e, err, errlen))) {
        return -1;
    }
    if ((uint64_t)s->i > e->usize / esize) {
        err_set(err, errlen, "%s: tensor %s: storage of %lld %s elements runs past the end "
                "of entry %s (%llu bytes)", path, tensor, (long long)s->i,
                ckpt_dtype_name(s->dtype), RWKV_ESC(ename), (unsigned long long)e->usize);
        return -1;
    }
    numel = ckpt_numel(t->ndim, t->shape, INT64_MAX / 8);
    if (numel < 0) {
        err_set(err, errlen, "%s: tensor %s: size overflows", path, tensor);
        return -1;
    }
    /* Highest element index the view touches: offset + sum (size-1)*stride. */
    for (i = t->ndim - 1; i >= 0 && numel > 0; i--) {
        if (t->shape[i] > 1) {
            if (t->stride[i] > (INT64_MAX / 4 - last) / (t->shape[i] - 1)) {
                err_set(err, errlen, "%s: tensor %s: stride overflows", path, tensor);
                return -1;
            }
            last += (t->shape[i] - 1) * t->stride[i];
            if (t->stride[i] != expect) {
                contiguous = 0;
            }
        }
        expect *= t->shape[i];
    }
    if (numel > 0 && (t->offset > s->i || last >= s->i - t->offset)) {
        err_set(err, errlen, "%s: tensor %s: data runs past the end of entry %s (element "
                "%lld of a storage of %lld)", path, tensor, RWKV_ESC(ename),
                (long long)(t->offset + last), (long long)s->i);
        return -1;
    }
    if (contiguous || numel == 0) {
        return ckpt_add(file, key->s, key->len, s->dtype, t->ndim, t->shape,
                        numel ? data + (size_t)t->offset * esize : data,
                        (size_t)numel * esize, err, errlen);
    } else {
        /* A strided view: gather it once into row-major order.  Its elements
         * are distinct storage elements, so numel <= storage numel bounds the
         * allocation. */
        unsigned char *copy;
        int64_t idx[CKPT_MAX_DIMS] = { 0 }, j;

        if (numel > s->i) {
            err_set(err, errlen, "%s: tensor %s: overlapping (expanded) view of %lld "
                    "elements over a storage of %lld not supported", path, tensor,
                    (long long)numel, (long long)s->i);
            return -1;
        }
        copy = ckpt_alloc(file, (size_t)numel * esize);
        if (!copy) {
            err_set(err, errlen, "%s: tensor %s: %s", path, tensor, CKPT_ALLOC_ERROR());
            return -1;
        }
        for (j = 0; j < numel; j++) {
            int64_t off = t->offset;
            for (i = 0; i < t->ndim; i++) {
                off += idx[i] * t->stride[i];
            }
            memcpy(copy + (size_t)j * esize, data + (size_t)off * esize, esize);
            for (i = t->ndim - 1; i >= 0; i--) {
                if (++idx[i] < t->shape[i]) {
                    break;
                }
                idx[i] = 0;
            }
        }
        return ckpt_add(file, key->s, key->len, s->dtype, t->ndim, t->shape, copy,
                        (size_t)numel * esize, err, errlen);
    }
}

/* Finds PREFIX/data.pkl: exactly one, at the top level or one folder down. */
static const struct zip_entry *find_pickle(const struct zip *z, char *prefix, size_t plen,
                                           char *err, size_t errlen)
{
    const struct zip_entry *found = NULL;
    size_t i;

    for (i = 0; i < z->count; i++) {
        const struct zip_entry *e = &z->entries[i];
        size_t dir;

        if (e->namelen < 8 || memcmp(e->name + e->namelen - 8, "data.pkl", 8)) {
            continue;
        }
        dir = e->namelen - 8;
        if (dir > 0 && (e->name[dir - 1] != '/' || memchr(e->name, '/', dir - 1))) {
            continue;
        }
        if (found) {
            err_set(err, errlen, "%s: zip holds more than one data.pkl (%s and %s)",
                    z->path, RWKV_ESCN(found->name, found->namelen),
                    RWKV_ESCN(e->name, e->namelen));
            return NULL;
        }
        found = e;
    }
    if (!found) {
        err_set(err, errlen, "%s: zip file is not a PyTorch checkpoint: no data.pkl entry "
                "among its %zu entries", z->path, z->count);
        return NULL;
    }
    if (found->namelen - 8 >= plen) {
        err_set(err, errlen, "%s: folder name of %s too long", z->path,
                RWKV_ESCN(found->name, found->namelen));
        return NULL;
    }
    memcpy(prefix, found->name, found->namelen - 8);
    prefix[found->namelen - 8] = '\0';
    return found;
}

int pth_read(ckpt_file *file, char *err, size_t errlen)
{
    struct zip z;
    struct pk k;
    struct pk_value *dict = NULL;
    const struct zip_entry *pkl, *bo;
    char prefix[256], name[300], entry[300];
    size_t i;
    int rc = -1;

    memset(&z, 0, sizeof(z));
    memset(&k, 0, sizeof(k));
    z.path = ckpt_shown_path(file);
    z.map = ckpt_bytes(file, &z.size);
    if (zip_open(&z, err, errlen) || !(pkl = find_pickle(&z, prefix, sizeof(prefix), err,
                                                         errlen))) {
        goto out;
    }
    snprintf(name, sizeof(name), "%sbyteorder", prefix);
    if ((bo = zip_find(&z, name, strlen(name))) != NULL) {
        const unsigned char *b = zip_data(&z, bo, err, errlen);
        if (!b) {
            goto out;
        }
        if (bo->usize != 6 || memcmp(b, "little", 6)) {
            err_set(err, errlen, "%s: entry %s: only little-endian checkpoints are supported",
                    z.path, RWKV_ESC(name));
            goto out;
        }
    }
    rwkv_escape(entry, sizeof(entry), pkl->name, pkl->namelen);
    k.path = z.path;
    k.entry = entry;
    k.err = err;
    k.errlen = errlen;
    if (!(k.p = zip_data(&z, pkl, err, errlen))) {
        goto out;
    }
    k.len = (size_t)pkl->usize;
    k.budget = k.len > (SIZE_MAX - PK_BUDGET_BASE) / PK_BUDGET_PER_BYTE ? SIZE_MAX
             : PK_BUDGET_BASE + PK_BUDGET_PER_BYTE * k.len;
    if (pk_run(&k, &dict)) {
        goto out;
    }
    for (i = 0; i + 1 < dict->n; i += 2) {
        const struct pk_value *key = dict->items[i], *val = dict->items[i + 1];

        if (key->kind != PK_STR) {
            err_set(err, errlen, "%s: %s: dict key %zu is not a string", z.path, entry, i / 2);
            goto out;
        }
        if (val->kind != PK_TENSOR) {
            err_set(err, errlen, "%s: key %s holds a %s, not a tensor (not a plain state "
                    "dict)", z.path, RWKV_ESCN(key->s, key->len),
                    val->kind == PK_DICT ? "dict" : val->kind == PK_INT ? "number" : "value");
            goto out;
        }
        if (add_tensor(file, &z, prefix, key, val->tensor, err, errlen)) {
            goto out;
        }
    }
    /* the entries read: ckpt_open checks their CRC-32 once all is read */
    for (i = 0; i < z.count; i++) {
        const struct zip_entry *e = &z.entries[i];

        if (z.data[i] && ckpt_add_check(file, e->name, e->namelen, z.data[i],
                                        (size_t)e->usize, e->crc) != 0) {
            err_set(err, errlen, "%s: out of memory", z.path);
            goto out;
        }
    }
    rc = 0;
out:
    if (rc != 0 && k.p && pkl->crc != 0 && crc32_update(0, k.p, k.len) != pkl->crc) {
        /* a damaged pickle says odd things: say what is wrong instead */
        err_set(err, errlen, "%s: zip entry %s: CRC-32 mismatch (damaged download?): download "
                "it again", z.path, entry);
    }
    pk_free_all(&k);
    free(z.data);
    free(z.entries);
    return rc;
}
