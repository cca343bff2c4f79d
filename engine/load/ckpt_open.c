/* ckpt_open.c - opens a model file: maps it, hands it to the reader of its
 * container (pth.c, safetensors.c), indexes the tensors and checks the zip
 * CRC-32s. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/base/crc32.h"
#include "engine/base/err.h"
#include "engine/base/escape.h"
#include "engine/base/fileid.h"
#include "engine/load/checkpoint.h"
#include "engine/load/ckpt_reader.h"
#include "engine/load/verified.h"

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

/* Drops the whole pages of [ptr, ptr + nbytes) of file's mapping from
 * resident memory (its neighbours stay as they are); random: no read-ahead
 * around them afterwards either. */
static void drop_pages(const ckpt_file *file, const void *ptr, size_t nbytes, int random)
{
    const unsigned char *data = ptr;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t first, last;

    if (!file->map || data < file->map || data + nbytes > file->map + file->size) {
        return;
    }
    first = ((size_t)(data - file->map) + page - 1) / page * page;
    last = (size_t)(data + nbytes - file->map) / page * page;
    if (last > first) {
        /* The mapping is private and never written: dropped pages are read
         * from the file again when touched.  A failure only costs memory. */
        (void)madvise((void *)(file->map + first), last - first, MADV_DONTNEED);
        if (random) {
            (void)madvise((void *)(file->map + first), last - first, MADV_RANDOM);
        }
    }
}

/* Below this many bytes the CRCs are computed on the calling thread. */
#define CRC_THREADED_BYTES ((size_t)32 << 20)
#define CRC_MAX_THREADS 8
/* An entry's CRC is computed by slices of this many bytes, so that the
 * calling thread reports its progress often. */
#define CRC_SLICE ((size_t)8 << 20)

struct crc_work {
    const ckpt_file *file;
    struct ckpt_check *checks;
    size_t n;
    _Atomic size_t next;
    _Atomic uint64_t done;      /* bytes checked so far, by every thread */
    uint64_t total;
    ckpt_progress_fn progress;  /* called by the calling thread only */
    void *progress_data;
};

/* Takes entries until none is left; report: this is the calling thread. */
static void crc_run(struct crc_work *w, int report)
{
    size_t i;

    while ((i = atomic_fetch_add(&w->next, 1)) < w->n) {
        const unsigned char *p = w->checks[i].data;
        size_t left = w->checks[i].size;
        uint32_t crc = 0;

        while (left > 0) {
            size_t k = left < CRC_SLICE ? left : CRC_SLICE;
            uint64_t done;

            crc = crc32_update(crc, p, k);
            /* read once here: resident memory does not grow to the file's
             * size (the load reads again what it uses, from the page cache) */
            drop_pages(w->file, p, k, 0);
            p += k;
            left -= k;
            done = atomic_fetch_add(&w->done, k) + k;
            if (report && w->progress && done < w->total) {
                w->progress(w->progress_data, done, w->total);
            }
        }
        w->checks[i].got = crc;
    }
}

static void *crc_worker(void *arg)
{
    crc_run(arg, 0);
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
 * CRC_MAX_THREADS threads, reporting the bytes done to progress (from 0 to
 * the total); names the first damaged entry in the file. */
static int check_crcs(ckpt_file *file, ckpt_progress_fn progress, void *progress_data,
                      char *err, size_t errlen)
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
    w.file = file;
    w.checks = file->checks;
    w.n = file->n_checks;
    atomic_init(&w.next, 0);
    atomic_init(&w.done, 0);
    w.total = total;
    w.progress = progress;
    w.progress_data = progress_data;
    if (progress) {
        progress(progress_data, 0, total);
    }
    if (total >= CRC_THREADED_BYTES) {
        for (started = 0; started + 1 < want && started + 1 < w.n; started++) {
            if (pthread_create(&threads[started], NULL, crc_worker, &w) != 0) {
                break;
            }
        }
    }
    crc_run(&w, 1);
    for (i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
    }
    if (progress) {
        progress(progress_data, total, total);
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
static int check_recorded(ckpt_file *file, const char *record_dir, ckpt_progress_fn progress,
                          void *progress_data, char *err, size_t errlen)
{
    if (file->n_checks == 0) {
        return 0;
    }
    if (record_dir && verified_has(record_dir, &file->id)) {
        return 0;
    }
    if (check_crcs(file, progress, progress_data, err, errlen) != 0) {
        return -1;
    }
    if (record_dir) {
        verified_add(record_dir, &file->id);
    }
    return 0;
}

ckpt_file *ckpt_open(const char *path, char *err, size_t errlen)
{
    return ckpt_open_checked(path, NULL, err, errlen);
}

ckpt_file *ckpt_open_checked(const char *path, const char *record_dir, char *err,
                             size_t errlen)
{
    return ckpt_open_progress(path, record_dir, NULL, NULL, err, errlen);
}

ckpt_file *ckpt_open_progress(const char *path, const char *record_dir,
                              ckpt_progress_fn progress, void *progress_data, char *err,
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
        rc = check_recorded(file, record_dir, progress, progress_data, err, errlen);
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

int ckpt_holds(const ckpt_file *file, const void *ptr, size_t nbytes)
{
    const unsigned char *data = ptr;

    return file && file->map && data >= file->map && nbytes <= file->size &&
           (size_t)(data - file->map) <= file->size - nbytes;
}

void ckpt_release(const ckpt_file *file, const void *ptr, size_t nbytes)
{
    drop_pages(file, ptr, nbytes, 1);
}
