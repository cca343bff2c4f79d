/*
 * rwkv7_family.h - what the RWKV-7 family's variants share with rwkv7.c.
 * Internal to engine/model/.
 *
 * RWKV-7a ("DeepEmbed", rwkv7a.c) and RWKV-8 ("Heron" rc00, rwkv8.c) keep
 * RWKV-7's tensors, state and time mix and change only the channel mix,
 * with a per-token table read from the mapped file as the tokens come.
 * Their version files build RWKV-7's weights with rwkv7_prepare, keep their
 * own beside them (rwkv7_set_variant), and run a layer from the pieces
 * below: the time mix, the channel mix's hidden layer, its output and the
 * residual, changing what they need in between.
 */
#ifndef RWKV_RWKV7_FAMILY_H
#define RWKV_RWKV7_FAMILY_H

#include <stdint.h>

#include "engine/kernels/kernels.h"
#include "engine/model/versions.h"

/* RWKV-7's tensors from emb.weight to the channel mix, in the order of the
 * released files (a variant's table adds its own, then RWKV_SPEC_OUT). */
#define RWKV7_SPEC_LAYERS \
    RWKV_SPEC_EMB, \
    RWKV_SPEC_LN0, \
    RWKV_SPEC_BLOCK_NORMS, \
    RWKV_SPEC_MIX("blocks.%d.att.x_r", 0, 1), \
    RWKV_SPEC_MIX("blocks.%d.att.x_w", 0, 1), \
    RWKV_SPEC_MIX("blocks.%d.att.x_k", 0, 1), \
    RWKV_SPEC_MIX("blocks.%d.att.x_v", 0, 1), \
    RWKV_SPEC_MIX("blocks.%d.att.x_a", 0, 1), \
    RWKV_SPEC_MIX("blocks.%d.att.x_g", 0, 1), \
    RWKV_SPEC_MIX("blocks.%d.att.w0", -6, 1), \
    { "blocks.%d.att.r_k", RWKV_LAYER, "H,N", NULL, RWKV_N(0, 0.2, NULL) }, \
    { "blocks.%d.att.w1", RWKV_LAYER, "C,Dw", NULL, RWKV_N(0, 1.13, "*C") }, \
    { "blocks.%d.att.w2", RWKV_LAYER, "Dw,C", NULL, RWKV_N(0, 0.566, "/Dw") }, \
    { "blocks.%d.att.a1", RWKV_LAYER, "C,Da", NULL, RWKV_N(0, 1.13, "*C") }, \
    { "blocks.%d.att.a2", RWKV_LAYER, "Da,C", NULL, RWKV_N(0, 0.566, "/Da") }, \
    RWKV_SPEC_MIX("blocks.%d.att.a0", -0.8, 0.8), \
    { "blocks.%d.att.g1", RWKV_LAYER, "C,Dg", NULL, RWKV_N(0, 1.13, "*C") }, \
    { "blocks.%d.att.g2", RWKV_LAYER, "Dg,C", NULL, RWKV_N(0, 0.566, "/Dg") }, \
    { "blocks.%d.att.v2", RWKV_LATER_LAYERS, "Dv,C", NULL, RWKV_N(0, 0.566, "/Dv") }, \
    { "blocks.%d.att.v1", RWKV_LATER_LAYERS, "C,Dv", NULL, RWKV_N(0, 1.13, "*C") }, \
    { "blocks.%d.att.v0", RWKV_LATER_LAYERS, "v:C", "1,1,C", RWKV_N(0.5, 0.5, NULL) }, \
    RWKV_SPEC_MIX("blocks.%d.att.k_k", 0.5, 1.2), \
    RWKV_SPEC_MIX("blocks.%d.att.k_a", 0.5, 1.5), \
    RWKV_SPEC_LINEAR("receptance"), \
    RWKV_SPEC_LINEAR("key"), \
    RWKV_SPEC_LINEAR("value"), \
    RWKV_SPEC_LINEAR("output"), \
    RWKV_SPEC_NORM("blocks.%d.att.ln_x", RWKV_LAYER, 0.5, 1.5), \
    RWKV_SPEC_MIX("blocks.%d.ffn.x_k", 0, 1), \
    { "blocks.%d.ffn.key.weight", RWKV_LAYER, "F,C", NULL, RWKV_N(0, 1, "*C") }, \
    { "blocks.%d.ffn.value.weight", RWKV_LAYER, "C,F", NULL, RWKV_N(0, 0.5, "/F") }

/* RWKV-7a's DeepEmbed channel-mix tensors (after RWKV7_SPEC_LAYERS). */
#define RWKV7A_SPEC_CMIX \
    { "blocks.%d.ffn.s1", RWKV_LAYER, "C,32", NULL, RWKV_N(0, 1, "*C") }, \
    { "blocks.%d.ffn.s2", RWKV_LAYER, "32,F", NULL, RWKV_N(0, 0.3, "*32") }, \
    { "blocks.%d.ffn.s0", RWKV_LAYER, "v:F", "F", RWKV_U(0.5, 1.5) }, \
    { "blocks.%d.ffn.s_emb.weight", RWKV_LAYER, "V,1024", NULL, RWKV_N(0, 0.2, NULL) }, \
    { "blocks.%d.ffn.s_emb_x.weight", RWKV_LAYER, "1024,C", NULL, RWKV_N(0, 0.2, "*C") }

#define RWKV7_N_RANKS 4
extern const struct rwkv_rank rwkv7_ranks[RWKV7_N_RANKS];

/* The rwkv_version functions of RWKV-7, for the variants' entries. */
void rwkv7_read_dims(const ckpt_file *f, const struct rwkv_info *info, struct rwkv_dims *d);
size_t rwkv7_layer_floats(const struct rwkv_info *info);
int rwkv7_prepare(struct rwkv_model *m, char *err, size_t errlen);
void *rwkv7_work_new(const struct rwkv_model *m, struct kpool *pool, int chunk);
void rwkv7_work_free(void *work);
void rwkv7_drop_terms(void *work, unsigned mask);

/* A variant's own weights, kept with RWKV-7's (owned by the model). */
void rwkv7_set_variant(struct rwkv_model *m, const void *variant);
const void *rwkv7_variant(const struct rwkv_model *m);

/* Loading for a variant's prepare: the kernel matrix of t (stored
 * transposed when transpose), rows x cols, in the format of the big
 * matrices, or of the LoRA factors when small; a float32 vector of
 * exactly n elements.  0 / the vector, or -1 / NULL with err. */
int rwkv7_matrix(struct rwkv_model *m, struct kmat *k, const struct ckpt_tensor *t,
                 int transpose, int rows, int cols, int small, char *err, size_t errlen);
const float *rwkv7_vector(struct rwkv_model *m, const struct ckpt_tensor *t, int64_t n,
                          char *err, size_t errlen);
int rwkv7_ffn_size(const struct rwkv_model *m);

/* One layer in pieces, in this order, over a chunk of T tokens (work from
 * rwkv7_work_new, state: the layer's floats):
 *   rwkv7_time_mix      x += TimeMix(ln1(x)); ln2(x) is then rwkv7_ln2
 *   rwkv7_ffn_hidden    relu(Wk shift(ln2 x))^2 [T][F], returned (writable)
 *   rwkv7_ffn_value     Wv hidden [T][C], returned (writable)
 *   rwkv7_ffn_residual  x += that output.
 * rwkv7_ln2 is valid from the time mix until rwkv7_ffn_value. */
void rwkv7_time_mix(const struct rwkv_model *m, void *work, int layer, float *x, int T,
                    float *state);
/* rwkv7_time_mix with extra [T][C] (NULL: none) added to x after the
 * time mix's output, before ln2: x = (x + TimeMix(ln1(x))) + extra. */
void rwkv7_time_mix_plus(const struct rwkv_model *m, void *work, int layer, float *x, int T,
                         float *state, const float *extra);
float *rwkv7_ffn_hidden(const struct rwkv_model *m, void *work, int layer, int T, float *state);
float *rwkv7_ffn_value(const struct rwkv_model *m, void *work, int layer, int T);
void rwkv7_ffn_residual(const struct rwkv_model *m, void *work, int layer, int T);
const float *rwkv7_ln2(const void *work);
struct kpool *rwkv7_pool(const void *work);
/* Until called again with NULL, the pieces above run a batch
 * (rwkv_version.layer_batch): row t of their T rows is one token of its
 * own conversation, whose layer floats are states[t] (their state
 * argument is then ignored), each row bit-identical to the piece on that
 * token alone. */
void rwkv7_batch_rows(const struct rwkv_model *m, void *work, float *const *states, int T);
/* n independent products Y = X W^T over T rows as the pieces run them:
 * in a batch each row as RNN mode's product (k_matvec_many), else k_matmul. */
void rwkv7_products(void *work, const struct k_product *p, int n, int T);

/* RWKV-7a's DeepEmbed channel mix (rwkv7a.c), which RWKV-7b keeps:
 * its weights (after rwkv7_prepare; owned by the model, NULL with err),
 * its scratch (RWKV-7's inside, rwkv7a_base_work), ln0(emb) of the
 * chunk's tokens kept at layer 0, and the channel mix of layer i after
 * rwkv7_time_mix (x += CMix(ln2(x))). */
const void *rwkv7a_cmix_prepare(struct rwkv_model *m, char *err, size_t errlen);
void *rwkv7a_work_new(const struct rwkv_model *m, struct kpool *pool, int chunk);
void rwkv7a_work_free(void *work);
void *rwkv7a_base_work(void *work);
void rwkv7a_keep_embedded(void *work, const float *x, int T, int C);
void rwkv7a_cmix(const struct rwkv_model *m, const void *cmix, void *work, int layer,
                 const int32_t *tokens, int T, float *state);

#endif
