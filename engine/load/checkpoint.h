/*
 * checkpoint.h - read tensors from official model files.
 *
 * Two containers: PyTorch's zip checkpoint (torch.save of a state dict,
 * read with a minimal safe unpickler) and safetensors.  Tensor data stays in
 * the mmap'd file where the layout allows; tensors that are not contiguous
 * are copied once.  Nothing here allocates from sizes it has not checked
 * against the file.
 */
#ifndef RWKV_CHECKPOINT_H
#define RWKV_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

enum ckpt_dtype { CKPT_F32, CKPT_F16, CKPT_BF16 };

#define CKPT_MAX_DIMS 4

struct ckpt_tensor {
    char *name;                 /* "blocks.0.att.key.weight" */
    enum ckpt_dtype dtype;
    int ndim;
    int64_t shape[CKPT_MAX_DIMS];
    int64_t numel;
    const void *data;           /* contiguous row-major, little-endian */
    size_t nbytes;
};

typedef struct ckpt_file ckpt_file;

/* Opens path, telling the container from its first bytes.  NULL on error
 * with one line in err ("v7.pth: tensor blocks.0...: data runs past the end
 * of entry archive/data/3"). */
ckpt_file *ckpt_open(const char *path, char *err, size_t errlen);
/* ckpt_open, which checks the zip CRC-32 of every entry it reads ("v7.pth:
 * zip entry v7/data/12: CRC-32 mismatch (damaged download?): download it
 * again") unless record_dir (verified.h) records that this very file
 * passed before; after a pass it writes that record (best effort).
 * record_dir NULL: always check, record nothing (what ckpt_open does). */
ckpt_file *ckpt_open_checked(const char *path, const char *record_dir, char *err,
                             size_t errlen);
/* Progress of the CRC-32 check: bytes checked of total, from 0 to total,
 * on the thread that opens the file (not called when nothing is checked). */
typedef void (*ckpt_progress_fn)(void *data, uint64_t done, uint64_t total);
/* ckpt_open_checked reporting the check's progress to progress (NULL: none). */
ckpt_file *ckpt_open_progress(const char *path, const char *record_dir,
                              ckpt_progress_fn progress, void *progress_data, char *err,
                              size_t errlen);
/* Bytes whose CRC-32 ckpt_open computed: 0 when the record vouched for
 * the file, and for safetensors (no checksums). */
uint64_t ckpt_checked_bytes(const ckpt_file *file);
void ckpt_close(ckpt_file *file);

const char *ckpt_path(const ckpt_file *file);
/* The path as messages show it: escaped (engine/base/escape.h). */
const char *ckpt_shown_path(const ckpt_file *file);
uint64_t ckpt_file_size(const ckpt_file *file);
size_t ckpt_count(const ckpt_file *file);
const struct ckpt_tensor *ckpt_at(const ckpt_file *file, size_t i);
/* NULL when absent. */
const struct ckpt_tensor *ckpt_find(const ckpt_file *file, const char *name);
/* Makes the tensor called name read src's data (another file's tensor of
 * the same element count: a LoRA adapter's replacement); its name and
 * shape stay.  src's data must outlive file's use of it.  0, or -1 when
 * the tensor is absent or the counts differ. */
int ckpt_replace_data(ckpt_file *file, const char *name, const struct ckpt_tensor *src);

const char *ckpt_dtype_name(enum ckpt_dtype dtype);
size_t ckpt_dtype_size(enum ckpt_dtype dtype);
/* Converts n elements of tensor data to float32. */
void ckpt_to_f32(enum ckpt_dtype dtype, const void *src, float *dst, size_t n);

/* Tells the system that the whole pages of the mapped file inside
 * [data, data + nbytes) are not needed now and will be read at random:
 * they leave the process's resident memory and are read from the file
 * again when touched, without read-ahead around them.  For
 * tables read a row at a time (the embedding, per-token tables) once the
 * load has read them (the NaN scan).  Does nothing for data that is not in
 * the mapping. */
void ckpt_release(const ckpt_file *file, const void *data, size_t nbytes);
/* 1 if [data, data + nbytes) lies in file's mapping (a tensor read in
 * place), 0 if not (a copy the load made, or no mapping). */
int ckpt_holds(const ckpt_file *file, const void *data, size_t nbytes);

/* The mapped file (size bytes). */
const unsigned char *ckpt_bytes(const ckpt_file *file, size_t *size);
/* Number of elements of a shape, or -1 on a negative dimension or when the
 * product overflows max. */
int64_t ckpt_numel(int ndim, const int64_t *shape, int64_t max);
/* Formats a shape as "768x768" ("scalar" for ndim 0). */
const char *ckpt_shape_str(int ndim, const int64_t *shape, char *buf, size_t len);

#endif
