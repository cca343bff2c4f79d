/*
 * pthwrite.h - write tensors as an official-format model file.
 *
 * Two containers, the ones released RWKV models come in:
 *  - PyTorch's zip checkpoint, as torch.save writes a state dict: stored
 *    (uncompressed) entries STEM/data.pkl (protocol-2 pickle of a dict of
 *    torch._utils._rebuild_tensor_v2 calls whose storages are persistent
 *    ids), STEM/data/N (raw little-endian data, 64-byte aligned through an
 *    "FB" extra field as torch pads them) and STEM/version; ZIP64 records
 *    are added when the file passes 4 GiB;
 *  - safetensors: an 8-byte header length, a JSON header, raw data.
 *
 * The writer streams: declare every tensor, then hand over the data of each
 * in declaration order, so models larger than memory can be written.  The
 * file is written atomically (engine/base/atomicfile.h): a temporary in
 * the same directory, fsync'd and renamed over PATH on pthw_finish; PATH
 * may be a new name or a regular file, never a link or a device.
 */
#ifndef RWKV_PTHWRITE_H
#define RWKV_PTHWRITE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/load/checkpoint.h"

enum pthw_format { PTHW_PTH, PTHW_SAFETENSORS };

typedef struct pthw pthw;

/* Starts a file; nothing is written until pthw_begin.  NULL on error. */
pthw *pthw_new(const char *path, enum pthw_format format, char *err, size_t errlen);
/* Declares the next tensor (shape in row-major order, ndim 1..4). */
int pthw_declare(pthw *w, const char *name, enum ckpt_dtype dtype, int ndim,
                 const int64_t *shape, char *err, size_t errlen);
/* Writes the headers (pickle / JSON) once all tensors are declared. */
int pthw_begin(pthw *w, char *err, size_t errlen);
/* Writes the data of the next declared tensor (its full byte size). */
int pthw_write(pthw *w, const void *data, char *err, size_t errlen);
/* Closes the file (central directory), fsyncs and renames it into place.
 * All declared tensors must have been written. */
int pthw_finish(pthw *w, char *err, size_t errlen);
/* Frees the writer; removes the temporary file if pthw_finish did not run. */
void pthw_free(pthw *w);

/* The format a path asks for: PTHW_SAFETENSORS for "*.safetensors". */
enum pthw_format pthw_format_for(const char *path);

#endif
