/*
 * tuned.c - state-tuned initial states (rwkv_state_load_tuned).
 *
 * A state-tuning run (RWKV-LM / RWKV-PEFT) saves one tensor per layer,
 * blocks.N.att.time_state, shaped [n_head, head_size, head_size].  The
 * initial state is att x_prev = 0, wkv from time_state, ffn x_prev = 0,
 * in the flat official-order state of rwkv.h.  The wkv part depends on
 * the version: RWKV-5/6 keep k·vᵀ ([H][K][V]) at run time while the
 * tuning saved its transpose, so the official loader (ChatRWKV
 * API_DEMO_CHAT.py) uses time_state.transpose(1, 2); RWKV-7 keeps v·kᵀ
 * ([H][V][K]) and its tuning saves the state in that orientation, so the
 * file is used as stored (RWKV-Runner does the same for version >= 7).
 * RWKV-4 has no wkv matrix state and cannot be state-tuned.
 */
#include "engine/load/checkpoint.h"
#include "engine/rwkv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rwkv_state_load_tuned(const rwkv_model *model, rwkv_state *state, const char *path,
                          char *err, size_t errlen)
{
    const struct rwkv_info *info = rwkv_model_info(model);
    size_t H = (size_t)info->n_head, N = (size_t)info->head_size, C = (size_t)info->n_embd;
    size_t per_layer = 2 * C + H * N * N, L = (size_t)info->n_layer, l, h, i, j;
    float *out, *tmp;
    ckpt_file *f;

    if (info->version == 4 || H == 0 || N == 0) {
        snprintf(err, errlen, "%s: RWKV-%s models have no wkv state to tune", path,
                 info->version_name);
        return -1;
    }
    if (rwkv_state_floats(state) != L * per_layer || info->state_floats != L * per_layer) {
        snprintf(err, errlen, "%s: the state does not belong to this model", path);
        return -1;
    }
    f = ckpt_open(path, err, errlen);
    if (!f) {
        return -1;
    }
    tmp = malloc(H * N * N * sizeof(float));
    if (!tmp) {
        snprintf(err, errlen, "%s: out of memory", path);
        ckpt_close(f);
        return -1;
    }
    /* Check every layer (shape and values) before touching the state. */
    for (l = 0; l < L; l++) {
        char name[64];
        const struct ckpt_tensor *t;

        snprintf(name, sizeof name, "blocks.%zu.att.time_state", l);
        t = ckpt_find(f, name);
        if (!t) {
            snprintf(err, errlen, "%s: tensor %s missing: not a state-tuned file for a %zu-layer "
                     "model", path, name, L);
            free(tmp);
            ckpt_close(f);
            return -1;
        }
        if (t->ndim != 3 || (size_t)t->shape[0] != H || (size_t)t->shape[1] != N ||
            (size_t)t->shape[2] != N) {
            char shape[64] = "";
            int d;

            for (d = 0; d < t->ndim; d++) {
                size_t k = strlen(shape);

                snprintf(shape + k, sizeof shape - k, "%s%lld", d ? "x" : "",
                         (long long)t->shape[d]);
            }
            snprintf(err, errlen, "%s: tensor %s: expected %zux%zux%zu, found %s", path, name, H,
                     N, N, t->ndim ? shape : "a scalar");
            free(tmp);
            ckpt_close(f);
            return -1;
        }
        ckpt_to_f32(t->dtype, t->data, tmp, H * N * N);
        for (i = 0; i < H * N * N && isfinite(tmp[i]); i++) {
        }
        if (i < H * N * N) {
            /* A NaN start poisons every reply after it. */
            snprintf(err, errlen, "%s: tensor %s holds NaN/Inf values: the state-tuned file is "
                     "damaged and cannot be used", path, name);
            free(tmp);
            ckpt_close(f);
            return -1;
        }
    }
    out = rwkv_state_data(state);
    for (l = 0; l < L; l++) {
        char name[64];
        const struct ckpt_tensor *t;
        float *layer = out + l * per_layer, *wkv = layer + C;

        snprintf(name, sizeof name, "blocks.%zu.att.time_state", l);
        t = ckpt_find(f, name);
        ckpt_to_f32(t->dtype, t->data, tmp, H * N * N);
        memset(layer, 0, C * sizeof(float));
        if (info->version >= 7) {
            memcpy(wkv, tmp, H * N * N * sizeof(float));
        } else {
            for (h = 0; h < H; h++) {
                for (i = 0; i < N; i++) {
                    for (j = 0; j < N; j++) {
                        wkv[(h * N + i) * N + j] = tmp[(h * N + j) * N + i];
                    }
                }
            }
        }
        memset(wkv + H * N * N, 0, C * sizeof(float));
    }
    free(tmp);
    ckpt_close(f);
    return 0;
}
