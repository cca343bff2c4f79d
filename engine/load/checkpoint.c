/* checkpoint.c - the tensor list shared by the .pth and safetensors readers. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "engine/base/err.h"
#include "engine/base/escape.h"
#include "engine/base/half.h"
#include "engine/load/checkpoint.h"
#include "engine/load/ckpt_reader.h"

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

uint64_t ckpt_checked_bytes(const ckpt_file *file)
{
    return file->checked_bytes;
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
