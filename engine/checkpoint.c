/* checkpoint.c - the tensor list shared by the .pth and safetensors readers. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/base/err.h"
#include "engine/base/escape.h"
#include "engine/base/half.h"
#include "engine/base/crc32.h"
#include "engine/checkpoint.h"
#include "engine/verified.h"

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

const char *ckpt_dtype_name(enum ckpt_dtype dtype)
{
    switch (dtype) {
    case CKPT_F32: return "float32";
    case CKPT_F16: return "float16";
    case CKPT_BF16: return "bfloat16";
    }
    return "?";
}

size_t ckpt_dtype_size(enum ckpt_dtype dtype)
{
    return dtype == CKPT_F32 ? 4 : 2;
}

void ckpt_to_f32(enum ckpt_dtype dtype, const void *src, float *dst, size_t n)
{
    switch (dtype) {
    case CKPT_F32:
        memcpy(dst, src, n * 4);
        break;
    case CKPT_F16:
        half_f16_to_f32_n(src, dst, n);
        break;
    case CKPT_BF16:
        half_bf16_to_f32_n(src, dst, n);
        break;
    }
}

int64_t ckpt_numel(int ndim, const int64_t *shape, int64_t max)
{
    int64_t n = 1;
    int i;

    for (i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            return -1;
        }
        if (shape[i] != 0 && n > max / shape[i]) {
            return -1;
        }
        n *= shape[i];
    }
    return n;
}

const char *ckpt_shape_str(int ndim, const int64_t *shape, char *buf, size_t len)
{
    size_t used = 0;
    int i;

    if (ndim == 0) {
        snprintf(buf, len, "scalar");
        return buf;
    }
    buf[0] = '\0';
    for (i = 0; i < ndim && used < len; i++) {
        int w = snprintf(buf + used, len - used, "%s%lld", i ? "x" : "", (long long)shape[i]);
        if (w < 0) {
            break;
        }
        used += (size_t)w;
    }
    return buf;
}

void *ckpt_alloc(ckpt_file *file, size_t nbytes)
{
    void *p;

    if (nbytes > file->size || file->owned_bytes > 4 * file->size - nbytes + (16u << 20)) {
        errno = EFBIG;
        return NULL;
    }
    if (file->n_owned == file->cap_owned) {
        size_t cap = file->cap_owned ? 2 * file->cap_owned : 64;
        void **o = realloc(file->owned, cap * sizeof(*o));
        if (!o) {
            errno = ENOMEM;
            return NULL;
        }
        file->owned = o;
        file->cap_owned = cap;
    }
    p = malloc(nbytes ? nbytes : 1);
    if (!p) {
        errno = ENOMEM;
        return NULL;
    }
    file->owned[file->n_owned++] = p;
    file->owned_bytes += nbytes;
    return p;
}

const unsigned char *ckpt_bytes(const ckpt_file *file, size_t *size)
{
    *size = file->size;
    return file->map;
}

int ckpt_add(ckpt_file *file, const char *name, size_t namelen, enum ckpt_dtype dtype,
             int ndim, const int64_t *shape, const void *data, size_t nbytes,
             char *err, size_t errlen)
{
    struct ckpt_tensor *t;
    size_t esize = ckpt_dtype_size(dtype);
    const unsigned char *d = data;
    int64_t numel;
    char *copy;
    char sbuf[96];
    int i;

    for (i = 0; i < (int)namelen && namelen <= 4096; i++) {
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f) {
            break;
        }
    }
    if (namelen == 0 || namelen > 4096 || i < (int)namelen) {
        err_set(err, errlen, "%s: tensor %zu: name of %zu bytes is empty, too long or holds "
                "control characters", file->shown, file->count, namelen);
        return -1;
    }
    if (ndim < 0 || ndim > CKPT_MAX_DIMS) {
        err_set(err, errlen, "%s: tensor %s: %d dimensions (at most %d supported)",
                file->shown, RWKV_ESCN(name, namelen), ndim, CKPT_MAX_DIMS);
        return -1;
    }
    numel = ckpt_numel(ndim, shape, (int64_t)(SIZE_MAX / 8));
    if (numel < 0) {
        err_set(err, errlen, "%s: tensor %s: shape %s overflows", file->shown,
                RWKV_ESCN(name, namelen), ckpt_shape_str(ndim, shape, sbuf, sizeof(sbuf)));
        return -1;
    }
    if ((uint64_t)numel * esize != nbytes) {
        err_set(err, errlen, "%s: tensor %s: shape %s of %s needs %lld bytes, data has %zu",
                file->shown, RWKV_ESCN(name, namelen),
                ckpt_shape_str(ndim, shape, sbuf, sizeof(sbuf)),
                ckpt_dtype_name(dtype), (long long)numel * (long long)esize, nbytes);
        return -1;
    }
    if (d >= file->map && d <= file->map + file->size) {
        if (nbytes > (size_t)(file->map + file->size - d)) {
            err_set(err, errlen, "%s: tensor %s: data runs past the end of the file",
                    file->shown, RWKV_ESCN(name, namelen));
            return -1;
        }
        if ((uintptr_t)d % esize) {
            void *aligned = ckpt_alloc(file, nbytes);
            if (!aligned) {
                err_set(err, errlen, "%s: tensor %s: %s", file->shown, RWKV_ESCN(name, namelen),
                        CKPT_ALLOC_ERROR());
                return -1;
            }
            memcpy(aligned, d, nbytes);
            d = aligned;
        }
    }
    if (file->count == file->cap) {
        size_t cap = file->cap ? 2 * file->cap : 256;
        struct ckpt_tensor *n = realloc(file->tensors, cap * sizeof(*n));
        if (!n) {
            err_set(err, errlen, "%s: out of memory", file->shown);
            return -1;
        }
        file->tensors = n;
        file->cap = cap;
    }
    copy = ckpt_alloc(file, namelen + 1);
    if (!copy) {
        err_set(err, errlen, "%s: tensor %s: %s", file->shown, RWKV_ESCN(name, namelen),
                CKPT_ALLOC_ERROR());
        return -1;
    }
    memcpy(copy, name, namelen);
    copy[namelen] = '\0';
    t = &file->tensors[file->count++];
    memset(t, 0, sizeof(*t));
    t->name = copy;
    t->dtype = dtype;
    t->ndim = ndim;
    for (i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
    }
    t->numel = numel;
    t->data = d;
    t->nbytes = nbytes;
    return 0;
}

/* Orders tensor indexes by name (glibc qsort_r; ctx is the tensor array). */
static int cmp_index(const void *a, const void *b, void *ctx)
{
    const struct ckpt_tensor *t = ctx;

    return strcmp(t[*(const size_t *)a].name, t[*(const size_t *)b].name);
}

/* Sorts tensor indexes by name and refuses duplicate names. */
static int build_index(ckpt_file *file, char *err, size_t errlen)
{
    size_t i;

    file->by_name = malloc((file->count ? file->count : 1) * sizeof(size_t));
    if (!file->by_name) {
        err_set(err, errlen, "%s: out of memory", file->shown);
        return -1;
    }
    for (i = 0; i < file->count; i++) {
        file->by_name[i] = i;
    }
    qsort_r(file->by_name, file->count, sizeof(size_t), cmp_index, file->tensors);
    for (i = 1; i < file->count; i++) {
        if (!strcmp(file->tensors[file->by_name[i]].name,
                    file->tensors[file->by_name[i - 1]].name)) {
            err_set(err, errlen, "%s: tensor %s appears twice", file->shown,
                    RWKV_ESC(file->tensors[file->by_name[i]].name));
            return -1;
        }
    }
    return 0;
}

int ckpt_add_check(ckpt_file *file, const char *name, size_t namelen, const void *data,
                   size_t size, uint32_t crc)
{
    const unsigned char *d = data;

    if (crc == 0 && size > 0) {
        return 0;   /* not recorded (torch.save with compute_crc32 off) */
    }
    if (d < file->map || d > file->map + file->size ||
        size > (size_t)(file->map + file->size - d)) {
        errno = EINVAL;
        return -1;
    }
    if (file->n_checks == file->cap_checks) {
        size_t cap = file->cap_checks ? 2 * file->cap_checks : 64;
        struct ckpt_check *c = realloc(file->checks, cap * sizeof(*c));

        if (!c) {
            errno = ENOMEM;
            return -1;
        }
        file->checks = c;
        file->cap_checks = cap;
    }
    file->checks[file->n_checks].name = name;
    file->checks[file->n_checks].namelen = namelen;
    file->checks[file->n_checks].data = d;
    file->checks[file->n_checks].size = size;
    file->checks[file->n_checks].crc = crc;
    file->checks[file->n_checks].got = 0;
    file->n_checks++;
    return 0;
}

/* Below this many bytes the CRCs are computed on the calling thread. */
#define CRC_THREADED_BYTES ((size_t)32 << 20)
#define CRC_MAX_THREADS 8

struct crc_work {
    struct ckpt_check *checks;
    size_t n;
    _Atomic size_t next;
};

static void *crc_worker(void *arg)
{
    struct crc_work *w = arg;
    size_t i;

    while ((i = atomic_fetch_add(&w->next, 1)) < w->n) {
        w->checks[i].got = crc32_update(0, w->checks[i].data, w->checks[i].size);
    }
    return NULL;
}

static int cmp_check_size(const void *a, const void *b)
{
    const struct ckpt_check *x = a, *y = b;

    return x->size > y->size ? -1 : x->size < y->size;
}

static int cmp_check_data(const void *a, const void *b)
{
    const struct ckpt_check *x = a, *y = b;

    return x->data < y->data ? -1 : x->data > y->data;
}

/* Computes every registered CRC-32, the largest entries first, on up to
 * CRC_MAX_THREADS threads; names the first damaged entry in the file. */
static int check_crcs(ckpt_file *file, char *err, size_t errlen)
{
    struct crc_work w;
    pthread_t threads[CRC_MAX_THREADS];
    size_t i, started = 0, total = 0;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t want = cpus < 1 ? 1 : cpus > CRC_MAX_THREADS ? CRC_MAX_THREADS : (size_t)cpus;

    for (i = 0; i < file->n_checks; i++) {
        total += file->checks[i].size;
    }
    qsort(file->checks, file->n_checks, sizeof(*file->checks), cmp_check_size);
    w.checks = file->checks;
    w.n = file->n_checks;
    atomic_init(&w.next, 0);
    if (total >= CRC_THREADED_BYTES) {
        for (started = 0; started + 1 < want && started + 1 < w.n; started++) {
            if (pthread_create(&threads[started], NULL, crc_worker, &w) != 0) {
                break;
            }
        }
    }
    crc_worker(&w);
    for (i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
    }
    file->checked_bytes = total;
    qsort(file->checks, file->n_checks, sizeof(*file->checks), cmp_check_data);
    for (i = 0; i < file->n_checks; i++) {
        const struct ckpt_check *c = &file->checks[i];

        if (c->got != c->crc) {
            err_set(err, errlen, "%s: zip entry %.*s: CRC-32 mismatch (damaged download?): "
                    "download it again", file->path, (int)(c->namelen > 200 ? 200 : c->namelen),
                    c->name);
            return -1;
        }
    }
    return 0;
}

/* The CRC check of ckpt_open_checked: skipped when record_dir says this
 * very file passed before, recorded there when it passes now. */
static int check_recorded(ckpt_file *file, const char *record_dir, char *err, size_t errlen)
{
    if (file->n_checks == 0) {
        return 0;
    }
    if (record_dir && verified_has(record_dir, &file->id)) {
        return 0;
    }
    if (check_crcs(file, err, errlen) != 0) {
        return -1;
    }
    if (record_dir) {
        verified_add(record_dir, &file->id);
    }
    return 0;
}

uint64_t ckpt_checked_bytes(const ckpt_file *file)
{
    return file->checked_bytes;
}

ckpt_file *ckpt_open(const char *path, char *err, size_t errlen)
{
    return ckpt_open_checked(path, NULL, err, errlen);
}

ckpt_file *ckpt_open_checked(const char *path, const char *record_dir, char *err,
                             size_t errlen)
{
    ckpt_file *file;
    struct stat st;
    int fd, rc;
    void *map;
    char *p;

    file = calloc(1, sizeof(*file));
    if (!file || !(file->path = strdup(path))) {
        free(file);
        err_set(err, errlen, "%s: out of memory", RWKV_ESC(path));
        return NULL;
    }
    rwkv_escape_str(file->shown, sizeof file->shown, path);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);   /* a FIFO must not hang */
    if (fd < 0) {
        err_set(err, errlen, "%s: %s", file->shown, strerror(errno));
        ckpt_close(file);
        return NULL;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        err_set(err, errlen, "%s: %s", file->shown,
                fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) ? "is a directory"
                                                           : "not a regular file");
        close(fd);
        ckpt_close(file);
        return NULL;
    }
    if (st.st_size == 0) {
        err_set(err, errlen, "%s: empty file (0 bytes), not a model", file->shown);
        close(fd);
        ckpt_close(file);
        return NULL;
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        err_set(err, errlen, "%s: too large to map", file->shown);
        close(fd);
        ckpt_close(file);
        return NULL;
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        err_set(err, errlen, "%s: mmap: %s", file->shown, strerror(errno));
        ckpt_close(file);
        return NULL;
    }
    file->map = map;
    file->size = (size_t)st.st_size;
    fileid_of(&st, &file->id);

    if (file->size >= 4 && !memcmp(file->map, "PK\003\004", 4)) {
        rc = pth_read(file, err, errlen);
    } else if (file->size >= 9 && file->map[8] == '{') {
        rc = safetensors_read(file, err, errlen);
    } else if (file->size >= 2 && file->map[0] == 0x80 && file->map[1] <= 5) {
        err_set(err, errlen, "%s: legacy (pre-1.6) PyTorch pickle format is not supported; "
                "re-save it with a current torch.save", file->shown);
        rc = -1;
    } else if (file->size >= 2 && !memcmp(file->map, "PK", 2)) {
        err_set(err, errlen, "%s: offset 0: zip file does not start with a local file header",
                file->shown);
        rc = -1;
    } else {
        err_set(err, errlen, "%s: not a model file (neither a PyTorch zip checkpoint nor "
                "safetensors)", file->shown);
        rc = -1;
    }
    if (rc == 0) {
        rc = build_index(file, err, errlen);
    }
    if (rc == 0 && file->count == 0) {
        err_set(err, errlen, "%s: holds no tensors", file->shown);
        rc = -1;
    }
    if (rc == 0) {
        /* Views may share a storage (.pth), but a model built from a few
         * megabytes seen a thousand times over would ask the loader for
         * gigabytes: the tensors may add up to four times the file. */
        uint64_t total = 0;
        size_t i;

        for (i = 0; i < file->count; i++) {
            total += file->tensors[i].nbytes;
        }
        if (total > 4 * (uint64_t)file->size + (16u << 20)) {
            err_set(err, errlen, "%s: its tensors add up to %llu bytes, more than four times "
                    "the file (%zu bytes): storages shared by many tensors", file->shown,
                    (unsigned long long)total, file->size);
            rc = -1;
        }
    }
    if (rc == 0) {
        rc = check_recorded(file, record_dir, err, errlen);
    }
    if (rc != 0) {
        /* names and globals in the message come from the file: keep the
         * message one printable line whatever they hold */
        if (err && errlen) {
            for (p = err; p < err + errlen && *p; p++) {
                if ((unsigned char)*p < 0x20 || *p == 0x7f) {
                    *p = '?';
                }
            }
        }
        ckpt_close(file);
        return NULL;
    }
    return file;
}

void ckpt_close(ckpt_file *file)
{
    size_t i;

    if (!file) {
        return;
    }
    if (file->map) {
        munmap((void *)file->map, file->size);
    }
    for (i = 0; i < file->n_owned; i++) {
        free(file->owned[i]);
    }
    free(file->owned);
    free(file->checks);
    free(file->tensors);
    free(file->by_name);
    free(file->path);
    free(file);
}

const char *ckpt_path(const ckpt_file *file)
{
    return file->path;
}

const char *ckpt_shown_path(const ckpt_file *file)
{
    return file->shown;
}

uint64_t ckpt_file_size(const ckpt_file *file)
{
    return file->size;
}

size_t ckpt_count(const ckpt_file *file)
{
    return file->count;
}

const struct ckpt_tensor *ckpt_at(const ckpt_file *file, size_t i)
{
    return i < file->count ? &file->tensors[i] : NULL;
}

const struct ckpt_tensor *ckpt_find(const ckpt_file *file, const char *name)
{
    size_t lo = 0, hi = file->count;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct ckpt_tensor *t = &file->tensors[file->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) {
            return t;
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return NULL;
}

int ckpt_replace_data(ckpt_file *file, const char *name, const struct ckpt_tensor *src)
{
    const struct ckpt_tensor *found = ckpt_find(file, name);
    struct ckpt_tensor *t;

    if (!found || found->numel != src->numel) {
        return -1;
    }
    t = &file->tensors[found - file->tensors];
    t->dtype = src->dtype;
    t->data = src->data;
    t->nbytes = src->nbytes;
    return 0;
}
