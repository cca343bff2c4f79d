/*
 * lora.h - LoRA adapters in RWKV-PEFT's layout, merged into a model's
 * weights while it loads.  Internal to engine/ (model.c drives it).
 *
 * An adapter is a checkpoint (.pth or .safetensors) holding pairs
 * NAME.lora_A [r][in] and NAME.lora_B [out][r]: the model's NAME.weight
 * [out][in] becomes NAME.weight + scale * lora_B @ lora_A, in the layout
 * the file stores it (as RWKV-PEFT's merge/merge_lora.py does, with scale
 * its lora_alpha / r), computed in float32.  Every other tensor of the
 * adapter replaces the model's tensor of that name (RWKV-PEFT saves the
 * parts it trained in full, "ln" and "time" by default); within one
 * adapter the replacement comes first and its own pair adds to it.
 * Adapters apply in order, as merging them one after the other would.
 *
 * The replacements are made in the model's checkpoint (lora_open), so
 * every reader sees them; the pairs are merged when weights_matrix turns
 * their target into a kernel matrix (lora_claim, lora_merge), so a load
 * served by the conversion cache does not merge at all.
 */
#ifndef RWKV_LORA_H
#define RWKV_LORA_H

#include <stddef.h>
#include <stdint.h>

#include "engine/load/checkpoint.h"
#include "engine/kernels/kernels.h"
#include "engine/rwkv.h"

typedef struct lora_set lora_set;

/* Opens the n adapters and checks them against model (the base file):
 * every lora_A has its lora_B and the reverse, the ranks agree, B @ A has
 * the shape of an existing 2-D NAME.weight, replacements name existing
 * tensors of the same shape, every value is finite.  Then points the
 * model's replaced tensors at the adapters' data (which lives until
 * lora_free).  NULL with one line in err naming the adapter file and the
 * tensor ("a.pth: tensor blocks.9.att.key.lora_A: the model has no
 * blocks.9.att.key.weight ..."). */
lora_set *lora_open(ckpt_file *model, const struct rwkv_lora *adapters, int n, char *err,
                    size_t errlen);
/* Frees the set (after the model is done with its tensors).  NULL is fine. */
void lora_free(lora_set *set);

/* fingerprint mixed with the identity of the adapters (their contents, in
 * order, and their scales); fingerprint itself when set is NULL. */
uint64_t lora_fingerprint(const lora_set *set, uint64_t fingerprint);
/* Whether some adapter adds to the tensor called name; records that the
 * load reached it.  0 when set is NULL. */
int lora_claim(lora_set *set, const char *name);
/* The merged tensor t (a claimed target of the model's file) in *out: t's
 * name and shape, float32 data W + sum of scale * B @ A (products on pool).
 * keep: the merged data is to be read in place for the model's life: it is
 * stored in t's own float type and owned by the set, *to_free NULL;
 * otherwise it is float32 and the caller frees *to_free after use.
 * 0, or -1 with err (the tensor named; no file name). */
int lora_merge(lora_set *set, struct kpool *pool, const struct ckpt_tensor *t, int keep,
               struct ckpt_tensor *out, void **to_free, char *err, size_t errlen);
/* After the load: -1 with err naming an adapter and a target no kernel
 * matrix was made from (LoRA on e.g. emb.weight, which is read as rows),
 * else 0. */
int lora_check_claimed(const lora_set *set, char *err, size_t errlen);
/* Where p lies in an adapter file, for telling apart the conversion
 * cache's entries made from replaced tensors: a value with the top bit set,
 * or UINT64_MAX when p is in none of them. */
uint64_t lora_offset(const lora_set *set, const void *p);

#endif
