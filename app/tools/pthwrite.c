/* pthwrite.c - write tensors as a PyTorch zip checkpoint or safetensors file. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/tools/pthwrite.h"
#include "engine/base/atomicfile.h"
#include "engine/base/crc32.h"

struct pthw_tensor {
    char *name;
    enum ckpt_dtype dtype;
    int ndim;
    int64_t shape[CKPT_MAX_DIMS];
    uint64_t nbytes;
    uint64_t offset;            /* pth: local header offset; st: data offset */
    uint32_t crc;
};

struct pthw {
    enum pthw_format format;
    char *path;
    char *stem;                 /* zip folder name: the file name without .pth */
    atomicfile *af;             /* the file being written, from pthw_begin */
    FILE *f;                    /* its stream */
    uint64_t pos;               /* bytes written so far */
    struct pthw_tensor *t;
    size_t n, cap;
    size_t next;                /* next tensor to write */
    int begun;
    /* pth: the non-tensor entries (data.pkl, version) */
    struct pthw_tensor pkl, version;
};

/* A growable byte buffer for the pickle, the JSON header and the directory. */
struct buf {
    unsigned char *p;
    size_t n, cap;
    int oom;
};

static void buf_put(struct buf *b, const void *data, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        unsigned char *p;

        while (cap < b->n + n) {
            cap *= 2;
        }
        if (!(p = realloc(b->p, cap))) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void buf_byte(struct buf *b, unsigned c)
{
    unsigned char x = (unsigned char)c;

    buf_put(b, &x, 1);
}

static void buf_le(struct buf *b, uint64_t v, int bytes)
{
    int i;

    for (i = 0; i < bytes; i++) {
        buf_byte(b, (unsigned)(v >> (8 * i)) & 0xff);
    }
}

static void buf_str(struct buf *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void buf_printf(struct buf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) {
        buf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
    }
}

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

enum pthw_format pthw_format_for(const char *path)
{
    size_t n = strlen(path);

    return n >= 12 && !strcmp(path + n - 12, ".safetensors") ? PTHW_SAFETENSORS : PTHW_PTH;
}

pthw *pthw_new(const char *path, enum pthw_format format, char *err, size_t errlen)
{
    pthw *w;
    const char *base;
    char *dot;

    /* Checked before any work: the file is replaced only if it is a
     * regular file (never a link, a device or a FIFO). */
    if (atomicfile_check(path, NULL, err, errlen) != 0) {
        return NULL;
    }
    w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        fail(err, errlen, "%s: out of memory", path);
        pthw_free(w);
        return NULL;
    }
    w->format = format;
    base = strrchr(path, '/');
    w->stem = strdup(base ? base + 1 : path);
    if (!w->stem) {
        fail(err, errlen, "%s: out of memory", path);
        pthw_free(w);
        return NULL;
    }
    if ((dot = strrchr(w->stem, '.')) != NULL && dot != w->stem) {
        *dot = '\0';
    }
    if (!*w->stem) {
        free(w->stem);
        w->stem = strdup("archive");
    }
    return w;
}

int pthw_declare(pthw *w, const char *name, enum ckpt_dtype dtype, int ndim,
                 const int64_t *shape, char *err, size_t errlen)
{
    struct pthw_tensor *t;
    int i;

    if (w->begun) {
        return fail(err, errlen, "%s: tensor %s declared after the header was written",
                    w->path, name);
    }
    if (ndim < 1 || ndim > CKPT_MAX_DIMS) {
        return fail(err, errlen, "%s: tensor %s: %d dimensions (1..%d allowed)",
                    w->path, name, ndim, CKPT_MAX_DIMS);
    }
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 256;
        struct pthw_tensor *p = realloc(w->t, cap * sizeof *p);

        if (!p) {
            return fail(err, errlen, "%s: out of memory", w->path);
        }
        w->t = p;
        w->cap = cap;
    }
    t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) {
        return fail(err, errlen, "%s: out of memory", w->path);
    }
    t->dtype = dtype;
    t->ndim = ndim;
    t->nbytes = dtype == CKPT_F32 ? 4 : 2;
    for (i = 0; i < ndim; i++) {
        if (shape[i] < 1) {
            free(t->name);
            return fail(err, errlen, "%s: tensor %s: dimension %d is %lld",
                        w->path, name, i, (long long)shape[i]);
        }
        t->shape[i] = shape[i];
        t->nbytes *= (uint64_t)shape[i];
    }
    if (w->format == PTHW_PTH && t->nbytes >= 0xFFFFFFFFull) {
        free(t->name);
        return fail(err, errlen, "%s: tensor %s: %llu bytes is too large for one zip entry",
                    w->path, name, (unsigned long long)t->nbytes);
    }
    w->n++;
    return 0;
}

static int put(pthw *w, const void *p, size_t n, char *err, size_t errlen)
{
    if (n && fwrite(p, 1, n, w->f) != n) {
        return fail(err, errlen, "%s: write failed: %s", w->path, strerror(errno));
    }
    w->pos += n;
    return 0;
}

/* Writes a stored zip entry's local header, padded so that the data starts
 * on a 64-byte boundary (torch's "FB" extra field), then its data. */
static int zip_entry(pthw *w, struct pthw_tensor *e, const char *name, const void *data,
                     uint64_t n, char *err, size_t errlen)
{
    struct buf b = { 0 };
    size_t namelen = strlen(name);
    uint64_t start = w->pos + 30 + namelen + 4;
    size_t pad = (size_t)((64 - start % 64) % 64);
    int rc;

    e->offset = w->pos;
    e->nbytes = n;
    e->crc = crc32_update(0, data, n);
    buf_le(&b, 0x04034b50, 4);
    buf_le(&b, 20, 2);              /* version needed */
    buf_le(&b, 0x0800, 2);          /* flags: UTF-8 names */
    buf_le(&b, 0, 2);               /* stored */
    buf_le(&b, 0, 2);               /* time */
    buf_le(&b, 0x21, 2);            /* date 1980-01-01 */
    buf_le(&b, e->crc, 4);
    buf_le(&b, n, 4);
    buf_le(&b, n, 4);
    buf_le(&b, namelen, 2);
    buf_le(&b, 4 + pad, 2);
    buf_put(&b, name, namelen);
    buf_le(&b, 0x4246, 2);          /* "FB" */
    buf_le(&b, pad, 2);
    while (pad--) {
        buf_byte(&b, 'Z');
    }
    if (b.oom) {
        free(b.p);
        return fail(err, errlen, "%s: out of memory", w->path);
    }
    rc = put(w, b.p, b.n, err, errlen);
    free(b.p);
    if (rc == 0) {
        rc = put(w, data, (size_t)n, err, errlen);
    }
    return rc;
}

/* Pickle opcodes (protocol 2) for a non-negative integer. */
static void pkl_int(struct buf *b, uint64_t v)
{
    if (v < 256) {
        buf_byte(b, 'K');
        buf_byte(b, (unsigned)v);
    } else if (v < 65536) {
        buf_byte(b, 'M');
        buf_le(b, v, 2);
    } else if (v < 0x80000000ull) {
        buf_byte(b, 'J');
        buf_le(b, v, 4);
    } else {
        int n = 8;

        while (n > 1 && !((v >> (8 * (n - 1))) & 0xff) && !((v >> (8 * (n - 2))) & 0x80)) {
            n--;
        }
        buf_byte(b, 0x8a);          /* LONG1 */
        buf_byte(b, (unsigned)n);
        buf_le(b, v, n);
    }
}

static void pkl_str(struct buf *b, const char *s)
{
    buf_byte(b, 'X');               /* BINUNICODE */
    buf_le(b, strlen(s), 4);
    buf_str(b, s);
}

static void pkl_tuple(struct buf *b, const int64_t *v, int n)
{
    int i;

    if (n > 3) {
        buf_byte(b, '(');
    }
    for (i = 0; i < n; i++) {
        pkl_int(b, (uint64_t)v[i]);
    }
    buf_byte(b, n == 1 ? 0x85 : n == 2 ? 0x86 : n == 3 ? 0x87 : 't');
}

static const char *storage_name(enum ckpt_dtype d)
{
    return d == CKPT_F32 ? "FloatStorage" : d == CKPT_F16 ? "HalfStorage" : "BFloat16Storage";
}

/* The data.pkl torch.save writes for a dict of tensors: every value is
 * _rebuild_tensor_v2(storage, 0, shape, stride, False, OrderedDict()) with
 * the storage a persistent id ('storage', torch.XStorage, key, 'cpu', numel). */
static void build_pickle(const pthw *w, struct buf *b)
{
    size_t i;
    int d;

    buf_byte(b, 0x80);
    buf_byte(b, 2);
    buf_byte(b, '}');
    for (i = 0; i < w->n; i++) {
        const struct pthw_tensor *t = &w->t[i];
        int64_t stride[CKPT_MAX_DIMS], numel = 1;
        char key[32];

        if (i % 1000 == 0) {
            buf_byte(b, '(');
        }
        for (d = t->ndim - 1; d >= 0; d--) {
            stride[d] = numel;
            numel *= t->shape[d];
        }
        pkl_str(b, t->name);
        buf_str(b, "ctorch._utils\n_rebuild_tensor_v2\n");
        buf_byte(b, '(');
        buf_byte(b, '(');
        pkl_str(b, "storage");
        buf_printf(b, "ctorch\n%s\n", storage_name(t->dtype));
        snprintf(key, sizeof key, "%zu", i);
        pkl_str(b, key);
        pkl_str(b, "cpu");
        pkl_int(b, (uint64_t)numel);
        buf_byte(b, 't');
        buf_byte(b, 'Q');           /* BINPERSID */
        pkl_int(b, 0);
        pkl_tuple(b, t->shape, t->ndim);
        pkl_tuple(b, stride, t->ndim);
        buf_byte(b, 0x89);          /* NEWFALSE: requires_grad */
        buf_str(b, "ccollections\nOrderedDict\n");
        buf_byte(b, ')');
        buf_byte(b, 'R');
        buf_byte(b, 't');
        buf_byte(b, 'R');
        if (i % 1000 == 999 || i + 1 == w->n) {
            buf_byte(b, 'u');       /* SETITEMS */
        }
    }
    buf_byte(b, '.');
}

static const char *st_dtype(enum ckpt_dtype d)
{
    return d == CKPT_F32 ? "F32" : d == CKPT_F16 ? "F16" : "BF16";
}

/* The safetensors header: JSON padded with spaces to a multiple of 8. */
static void build_json(pthw *w, struct buf *b)
{
    uint64_t off = 0;
    size_t i;
    int d;

    buf_str(b, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (i = 0; i < w->n; i++) {
        struct pthw_tensor *t = &w->t[i];

        buf_printf(b, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->name, st_dtype(t->dtype));
        for (d = 0; d < t->ndim; d++) {
            buf_printf(b, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        }
        t->offset = off;
        buf_printf(b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                   (unsigned long long)(off + t->nbytes));
        off += t->nbytes;
    }
    buf_byte(b, '}');
    while ((b->n + 8) % 8) {
        buf_byte(b, ' ');
    }
}

int pthw_begin(pthw *w, char *err, size_t errlen)
{
    struct buf b = { 0 };
    char name[300];
    int rc;
    size_t i;

    if (w->begun) {
        return fail(err, errlen, "%s: header already written", w->path);
    }
    for (i = 0; i < w->n; i++) {
        if (strchr(w->t[i].name, '"') || strchr(w->t[i].name, '\\')) {
            return fail(err, errlen, "%s: tensor name %s has a quote or backslash",
                        w->path, w->t[i].name);
        }
    }
    if (!(w->af = atomicfile_open(w->path, NULL, 0, err, errlen)) ||
        !(w->f = atomicfile_stream(w->af, err, errlen))) {
        return -1;
    }
    setvbuf(w->f, NULL, _IOFBF, 1 << 20);
    w->begun = 1;
    if (w->format == PTHW_SAFETENSORS) {
        build_json(w, &b);
        if (b.oom) {
            free(b.p);
            return fail(err, errlen, "%s: out of memory", w->path);
        }
        unsigned char len[8];
        for (i = 0; i < 8; i++) {
            len[i] = (unsigned char)((uint64_t)b.n >> (8 * i));
        }
        rc = put(w, len, 8, err, errlen);
        if (rc == 0) {
            rc = put(w, b.p, b.n, err, errlen);
        }
        free(b.p);
        return rc;
    }
    build_pickle(w, &b);
    if (b.oom) {
        free(b.p);
        return fail(err, errlen, "%s: out of memory", w->path);
    }
    snprintf(name, sizeof name, "%s/data.pkl", w->stem);
    rc = zip_entry(w, &w->pkl, name, b.p, b.n, err, errlen);
    free(b.p);
    return rc;
}

int pthw_write(pthw *w, const void *data, char *err, size_t errlen)
{
    struct pthw_tensor *t;
    char name[300];

    if (!w->begun || w->next >= w->n) {
        return fail(err, errlen, "%s: no declared tensor left to write", w->path);
    }
    t = &w->t[w->next];
    if (w->format == PTHW_SAFETENSORS) {
        w->next++;
        return put(w, data, (size_t)t->nbytes, err, errlen);
    }
    snprintf(name, sizeof name, "%s/data/%zu", w->stem, w->next);
    w->next++;
    return zip_entry(w, t, name, data, t->nbytes, err, errlen);
}

/* One central directory record; offsets past 4 GiB go in a ZIP64 extra. */
static void central_record(struct buf *b, const struct pthw_tensor *e, const char *name)
{
    int big = e->offset >= 0xFFFFFFFFull;

    buf_le(b, 0x02014b50, 4);
    buf_le(b, big ? 45 : 20, 2);    /* made by */
    buf_le(b, big ? 45 : 20, 2);    /* needed */
    buf_le(b, 0x0800, 2);
    buf_le(b, 0, 2);
    buf_le(b, 0, 2);
    buf_le(b, 0x21, 2);
    buf_le(b, e->crc, 4);
    buf_le(b, e->nbytes, 4);
    buf_le(b, e->nbytes, 4);
    buf_le(b, strlen(name), 2);
    buf_le(b, big ? 12 : 0, 2);
    buf_le(b, 0, 2);                /* comment */
    buf_le(b, 0, 2);                /* disk */
    buf_le(b, 0, 2);                /* internal attributes */
    buf_le(b, 0, 4);                /* external attributes */
    buf_le(b, big ? 0xFFFFFFFFull : e->offset, 4);
    buf_str(b, name);
    if (big) {
        buf_le(b, 1, 2);
        buf_le(b, 8, 2);
        buf_le(b, e->offset, 8);
    }
}

int pthw_finish(pthw *w, char *err, size_t errlen)
{
    struct buf b = { 0 };
    char name[300];
    uint64_t cd_start, cd_size, count;
    size_t i;
    int rc;

    if (!w->begun || w->next != w->n) {
        return fail(err, errlen, "%s: %zu of %zu tensors written", w->path, w->next, w->n);
    }
    if (w->format == PTHW_PTH) {
        snprintf(name, sizeof name, "%s/version", w->stem);
        if (zip_entry(w, &w->version, name, "3\n", 2, err, errlen)) {
            return -1;
        }
        cd_start = w->pos;
        snprintf(name, sizeof name, "%s/data.pkl", w->stem);
        central_record(&b, &w->pkl, name);
        for (i = 0; i < w->n; i++) {
            snprintf(name, sizeof name, "%s/data/%zu", w->stem, i);
            central_record(&b, &w->t[i], name);
        }
        snprintf(name, sizeof name, "%s/version", w->stem);
        central_record(&b, &w->version, name);
        cd_size = b.n;
        count = w->n + 2;
        if (cd_start + cd_size >= 0xFFFFFFFFull || count >= 0xFFFF) {
            uint64_t eocd64 = cd_start + cd_size;

            buf_le(&b, 0x06064b50, 4);
            buf_le(&b, 44, 8);
            buf_le(&b, 45, 2);
            buf_le(&b, 45, 2);
            buf_le(&b, 0, 4);
            buf_le(&b, 0, 4);
            buf_le(&b, count, 8);
            buf_le(&b, count, 8);
            buf_le(&b, cd_size, 8);
            buf_le(&b, cd_start, 8);
            buf_le(&b, 0x07064b50, 4);
            buf_le(&b, 0, 4);
            buf_le(&b, eocd64, 8);
            buf_le(&b, 1, 4);
        }
        buf_le(&b, 0x06054b50, 4);
        buf_le(&b, 0, 2);
        buf_le(&b, 0, 2);
        buf_le(&b, count >= 0xFFFF ? 0xFFFF : count, 2);
        buf_le(&b, count >= 0xFFFF ? 0xFFFF : count, 2);
        buf_le(&b, cd_size >= 0xFFFFFFFFull ? 0xFFFFFFFFull : cd_size, 4);
        buf_le(&b, cd_start >= 0xFFFFFFFFull ? 0xFFFFFFFFull : cd_start, 4);
        buf_le(&b, 0, 2);
        if (b.oom) {
            free(b.p);
            return fail(err, errlen, "%s: out of memory", w->path);
        }
        rc = put(w, b.p, b.n, err, errlen);
        free(b.p);
        if (rc) {
            return rc;
        }
    }
    w->f = NULL;
    rc = atomicfile_commit(w->af, err, errlen);
    w->af = NULL;
    return rc;
}

void pthw_free(pthw *w)
{
    size_t i;

    if (!w) {
        return;
    }
    atomicfile_abort(w->af);
    for (i = 0; i < w->n; i++) {
        free(w->t[i].name);
    }
    free(w->t);
    free(w->stem);
    free(w->path);
    free(w);
}
