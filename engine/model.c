/*
 * model.c - what a checkpoint is: version, sizes, validated tensors; and
 * the public model and state objects of rwkv.h.
 *
 * The version is told from the key names the way the official rwkv package
 * does it (rwkv/model.py): RWKV-7 has the att.x_r / w0 / k_k family; RWKV-6
 * has time_maa; RWKV-5.x has ln_x, 5.1 adds the gate, 5.2 has a time_decay
 * of [heads][head size]; anything else is RWKV-4.  Every size comes from a
 * tensor shape, then every tensor the version needs is checked against a
 * per-version table before the forward pass sees it.
 */
#include <assert.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/base/err.h"
#include "engine/kmat.h"
#include "engine/model.h"
#include "engine/quant.h"

#define MAX_LAYERS 100000
#define MAX_HEAD_SIZE 1024       /* a state holds head_size^2 floats per head */

struct rwkv_state {
    const rwkv_model *model;
    size_t n;
    float data[];
};

/* ------------------------------------------------------ tensor tables --- */

enum scope {
    GLOBAL,         /* once */
    LAYER,          /* every layer */
    FIRST_LAYER,    /* layer 0 only (ln0) */
    LATER_LAYERS,   /* layers >= 1 (RWKV-7 v0/v1/v2: layer 0 makes v_first) */
};

/* A required tensor: name (printf format taking the layer), where it
 * appears, and its shape.  Shapes are comma-separated dimensions, each a
 * number or a size symbol (C n_embd, V vocab, F ffn, H heads, N head size,
 * Dw/Da/Dv/Dg/Dm LoRA ranks, Dm5 = 5 Dm); "v:X" is a vector of X elements
 * in any shape that squeezes to [X] (official files store [1][1][C]);
 * "A|B" accepts either shape. */
struct spec {
    const char *name;
    enum scope scope;
    const char *shape;
};

#define COMMON_GLOBALS \
    { "emb.weight", GLOBAL, "V,C" }, \
    { "blocks.0.ln0.weight", FIRST_LAYER, "v:C" }, \
    { "blocks.0.ln0.bias", FIRST_LAYER, "v:C" }, \
    { "ln_out.weight", GLOBAL, "v:C" }, \
    { "ln_out.bias", GLOBAL, "v:C" }, \
    { "head.weight", GLOBAL, "V,C" }, \
    { "blocks.%d.ln1.weight", LAYER, "v:C" }, \
    { "blocks.%d.ln1.bias", LAYER, "v:C" }, \
    { "blocks.%d.ln2.weight", LAYER, "v:C" }, \
    { "blocks.%d.ln2.bias", LAYER, "v:C" }

#define FFN_V4 \
    { "blocks.%d.ffn.time_mix_k", LAYER, "v:C" }, \
    { "blocks.%d.ffn.time_mix_r", LAYER, "v:C" }, \
    { "blocks.%d.ffn.key.weight", LAYER, "F,C" }, \
    { "blocks.%d.ffn.receptance.weight", LAYER, "C,C" }, \
    { "blocks.%d.ffn.value.weight", LAYER, "C,F" }

#define ATT_LINEAR \
    { "blocks.%d.att.key.weight", LAYER, "C,C" }, \
    { "blocks.%d.att.value.weight", LAYER, "C,C" }, \
    { "blocks.%d.att.receptance.weight", LAYER, "C,C" }, \
    { "blocks.%d.att.output.weight", LAYER, "C,C" }

static const struct spec v4_specs[] = {
    COMMON_GLOBALS,
    { "blocks.%d.att.time_decay", LAYER, "v:C" },
    { "blocks.%d.att.time_first", LAYER, "v:C" },
    { "blocks.%d.att.time_mix_k", LAYER, "v:C" },
    { "blocks.%d.att.time_mix_v", LAYER, "v:C" },
    { "blocks.%d.att.time_mix_r", LAYER, "v:C" },
    ATT_LINEAR,
    FFN_V4,
    { NULL, 0, NULL }
};

/* 5.0 and 5.1: one decay and one bonus per head; the bonus is stored as
 * time_faaaa or (older files) time_first - see bonus_name(). */
static const struct spec v50_specs[] = {
    COMMON_GLOBALS,
    { "blocks.%d.att.time_decay", LAYER, "v:H" },
    { "blocks.%d.att.BONUS", LAYER, "v:H|H,N" },
    { "blocks.%d.att.time_mix_k", LAYER, "v:C" },
    { "blocks.%d.att.time_mix_v", LAYER, "v:C" },
    { "blocks.%d.att.time_mix_r", LAYER, "v:C" },
    ATT_LINEAR,
    { "blocks.%d.att.ln_x.weight", LAYER, "v:C" },
    { "blocks.%d.att.ln_x.bias", LAYER, "v:C" },
    FFN_V4,
    { NULL, 0, NULL }
};

static const struct spec v51_specs[] = {
    COMMON_GLOBALS,
    { "blocks.%d.att.time_decay", LAYER, "v:H" },
    { "blocks.%d.att.BONUS", LAYER, "v:H|H,N" },
    { "blocks.%d.att.time_mix_k", LAYER, "v:C" },
    { "blocks.%d.att.time_mix_v", LAYER, "v:C" },
    { "blocks.%d.att.time_mix_r", LAYER, "v:C" },
    { "blocks.%d.att.time_mix_g", LAYER, "v:C" },
    ATT_LINEAR,
    { "blocks.%d.att.gate.weight", LAYER, "C,C" },
    { "blocks.%d.att.ln_x.weight", LAYER, "v:C" },
    { "blocks.%d.att.ln_x.bias", LAYER, "v:C" },
    FFN_V4,
    { NULL, 0, NULL }
};

static const struct spec v52_specs[] = {
    COMMON_GLOBALS,
    { "blocks.%d.att.time_decay", LAYER, "H,N" },
    { "blocks.%d.att.BONUS", LAYER, "H,N" },
    { "blocks.%d.att.time_mix_k", LAYER, "v:C" },
    { "blocks.%d.att.time_mix_v", LAYER, "v:C" },
    { "blocks.%d.att.time_mix_r", LAYER, "v:C" },
    { "blocks.%d.att.time_mix_g", LAYER, "v:C" },
    ATT_LINEAR,
    { "blocks.%d.att.gate.weight", LAYER, "C,C" },
    { "blocks.%d.att.ln_x.weight", LAYER, "v:C" },
    { "blocks.%d.att.ln_x.bias", LAYER, "v:C" },
    FFN_V4,
    { NULL, 0, NULL }
};

static const struct spec v6_specs[] = {
    COMMON_GLOBALS,
    { "blocks.%d.att.time_maa_x", LAYER, "v:C" },
    { "blocks.%d.att.time_maa_w", LAYER, "v:C" },
    { "blocks.%d.att.time_maa_k", LAYER, "v:C" },
    { "blocks.%d.att.time_maa_v", LAYER, "v:C" },
    { "blocks.%d.att.time_maa_r", LAYER, "v:C" },
    { "blocks.%d.att.time_maa_g", LAYER, "v:C" },
    { "blocks.%d.att.time_maa_w1", LAYER, "C,Dm5" },
    { "blocks.%d.att.time_maa_w2", LAYER, "5,Dm,C" },
    { "blocks.%d.att.time_decay", LAYER, "v:C" },
    { "blocks.%d.att.time_decay_w1", LAYER, "C,Dw" },
    { "blocks.%d.att.time_decay_w2", LAYER, "Dw,C" },
    { "blocks.%d.att.time_faaaa", LAYER, "H,N" },
    ATT_LINEAR,
    { "blocks.%d.att.gate.weight", LAYER, "C,C" },
    { "blocks.%d.att.ln_x.weight", LAYER, "v:C" },
    { "blocks.%d.att.ln_x.bias", LAYER, "v:C" },
    { "blocks.%d.ffn.time_maa_k", LAYER, "v:C" },
    { "blocks.%d.ffn.time_maa_r", LAYER, "v:C" },
    { "blocks.%d.ffn.key.weight", LAYER, "F,C" },
    { "blocks.%d.ffn.receptance.weight", LAYER, "C,C" },
    { "blocks.%d.ffn.value.weight", LAYER, "C,F" },
    { NULL, 0, NULL }
};

static const struct spec v7_specs[] = {
    COMMON_GLOBALS,
    { "blocks.%d.att.x_r", LAYER, "v:C" },
    { "blocks.%d.att.x_w", LAYER, "v:C" },
    { "blocks.%d.att.x_k", LAYER, "v:C" },
    { "blocks.%d.att.x_v", LAYER, "v:C" },
    { "blocks.%d.att.x_a", LAYER, "v:C" },
    { "blocks.%d.att.x_g", LAYER, "v:C" },
    { "blocks.%d.att.w0", LAYER, "v:C" },
    { "blocks.%d.att.w1", LAYER, "C,Dw" },
    { "blocks.%d.att.w2", LAYER, "Dw,C" },
    { "blocks.%d.att.a0", LAYER, "v:C" },
    { "blocks.%d.att.a1", LAYER, "C,Da" },
    { "blocks.%d.att.a2", LAYER, "Da,C" },
    { "blocks.%d.att.v0", LATER_LAYERS, "v:C" },
    { "blocks.%d.att.v1", LATER_LAYERS, "C,Dv" },
    { "blocks.%d.att.v2", LATER_LAYERS, "Dv,C" },
    { "blocks.%d.att.g1", LAYER, "C,Dg" },
    { "blocks.%d.att.g2", LAYER, "Dg,C" },
    { "blocks.%d.att.k_k", LAYER, "v:C" },
    { "blocks.%d.att.k_a", LAYER, "v:C" },
    { "blocks.%d.att.r_k", LAYER, "H,N" },
    ATT_LINEAR,
    { "blocks.%d.att.ln_x.weight", LAYER, "v:C" },
    { "blocks.%d.att.ln_x.bias", LAYER, "v:C" },
    { "blocks.%d.ffn.x_k", LAYER, "v:C" },
    { "blocks.%d.ffn.key.weight", LAYER, "F,C" },
    { "blocks.%d.ffn.value.weight", LAYER, "C,F" },
    { NULL, 0, NULL }
};

/* The sizes shapes are written in; -1 while unknown. */
struct dims {
    int64_t C, V, F, H, N, Dw, Da, Dv, Dg, Dm;
};

static int64_t dim_value(const struct dims *d, const char *sym, size_t len)
{
    static const struct {
        const char *name;
        size_t off;
    } syms[] = {
        { "C", offsetof(struct dims, C) }, { "V", offsetof(struct dims, V) },
        { "F", offsetof(struct dims, F) }, { "H", offsetof(struct dims, H) },
        { "N", offsetof(struct dims, N) }, { "Dw", offsetof(struct dims, Dw) },
        { "Da", offsetof(struct dims, Da) }, { "Dv", offsetof(struct dims, Dv) },
        { "Dg", offsetof(struct dims, Dg) }, { "Dm", offsetof(struct dims, Dm) },
    };
    size_t i;

    if (len > 0 && sym[0] >= '0' && sym[0] <= '9') {
        return strtoll(sym, NULL, 10);
    }
    if (len == 3 && !memcmp(sym, "Dm5", 3)) {
        return d->Dm < 0 ? -1 : 5 * d->Dm;
    }
    for (i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
        if (strlen(syms[i].name) == len && !memcmp(syms[i].name, sym, len)) {
            return *(const int64_t *)((const char *)d + syms[i].off);
        }
    }
    assert(!"unknown shape symbol");
    return -1;
}

/* Resolves one alternative of a shape spec ("v:C" or "5,Dm,C") into dims;
 * returns ndim, with *vector set for "v:" specs. */
static int resolve_shape(const struct dims *d, const char *s, size_t len, int64_t *out,
                         int *vector)
{
    int n = 0;
    size_t i = 0;

    *vector = 0;
    if (len >= 2 && s[0] == 'v' && s[1] == ':') {
        *vector = 1;
        i = 2;
    }
    while (i < len && n < CKPT_MAX_DIMS) {
        size_t j = i;
        while (j < len && s[j] != ',') {
            j++;
        }
        out[n++] = dim_value(d, s + i, j - i);
        i = j + 1;
    }
    return n;
}

/* Whether tensor t has the shape of one alternative. */
static int shape_matches(const struct ckpt_tensor *t, int ndim, const int64_t *want, int vector)
{
    int i, big = 0;

    if (vector) {
        /* any shape that squeezes to [want[0]] */
        if (t->numel != want[0] || t->ndim < 1) {
            return 0;
        }
        for (i = 0; i < t->ndim; i++) {
            big += t->shape[i] != 1;
        }
        return big <= 1;
    }
    if (t->ndim != ndim) {
        return 0;
    }
    for (i = 0; i < ndim; i++) {
        if (t->shape[i] != want[i]) {
            return 0;
        }
    }
    return 1;
}

/* ---------------------------------------------------------- detection --- */

/* The layer index of a "blocks.N." name, or -1. */
static long layer_of(const char *name)
{
    long n = 0;
    const char *p;

    if (strncmp(name, "blocks.", 7)) {
        return -1;
    }
    for (p = name + 7; *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (*p - '0');
        if (n > MAX_LAYERS) {
            return -1;
        }
    }
    return p > name + 7 && *p == '.' ? n : -1;
}

static const struct ckpt_tensor *find(const rwkv_model *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static const struct ckpt_tensor *find(const rwkv_model *m, const char *fmt, ...)
{
    char name[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    return ckpt_find(m->file, name);
}

const struct ckpt_tensor *model_tensor(const rwkv_model *m, const char *fmt, ...)
{
    char name[256];
    va_list ap;
    const struct ckpt_tensor *t;

    va_start(ap, fmt);
    vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    t = ckpt_find(m->file, name);
    assert(t != NULL);
    return t;
}

/* The 5.0/5.1 bonus tensor's name in this file. */
static const char *bonus_name(const rwkv_model *m)
{
    return find(m, "blocks.0.att.time_faaaa") ? "time_faaaa" : "time_first";
}

/* Tells the version from the key names, as the official package does. */
static void detect_version(rwkv_model *m)
{
    struct rwkv_info *info = &m->info;
    const struct ckpt_tensor *td;
    size_t i, n = ckpt_count(m->file);
    int ln_x = 0, gate = 0, maa = 0;

    info->version = 4;
    info->minor = 0;
    if (find(m, "blocks.0.att.x_r") && find(m, "blocks.0.att.w0") &&
        find(m, "blocks.0.att.k_k")) {
        info->version = 7;
        return;
    }
    for (i = 0; i < n; i++) {
        const char *name = ckpt_at(m->file, i)->name;
        ln_x |= strstr(name, "ln_x") != NULL;
        gate |= strstr(name, "gate.weight") != NULL;
        maa |= strstr(name, "time_maa") != NULL;
    }
    if (maa) {
        info->version = 6;
    } else if (ln_x) {
        info->version = 5;
        info->minor = gate ? 1 : 0;
        td = find(m, "blocks.0.att.time_decay");
        if (td && td->ndim >= 2 && td->shape[1] > 1) {
            info->minor = 2;
        }
    }
}

/* Reads n_layer and every size from tensor shapes.  0, or -1 with err. */
static int read_dims(rwkv_model *m, struct dims *d, char *err, size_t errlen)
{
    struct rwkv_info *info = &m->info;
    const char *path = ckpt_path(m->file);
    const struct ckpt_tensor *t;
    size_t i, n = ckpt_count(m->file);
    long layers = 0;
    char sbuf[64];

    memset(d, 0xff, sizeof(*d));    /* all -1 */
    t = ckpt_find(m->file, "emb.weight");
    if (!t) {
        err_set(err, errlen, "%s: not an RWKV model: no emb.weight tensor among its %zu "
                "tensors (first: %s)", path, n, ckpt_at(m->file, 0)->name);
        return -1;
    }
    if (t->ndim != 2 || t->shape[0] < 1 || t->shape[1] < 1 || t->shape[0] > INT32_MAX ||
        t->shape[1] > 65536) {
        err_set(err, errlen, "%s: tensor emb.weight: expected [vocab][n_embd], found %s", path,
                ckpt_shape_str(t->ndim, t->shape, sbuf, sizeof(sbuf)));
        return -1;
    }
    d->V = t->shape[0];
    d->C = t->shape[1];
    for (i = 0; i < n; i++) {
        long l = layer_of(ckpt_at(m->file, i)->name);
        if (l + 1 > layers) {
            layers = l + 1;
        }
    }
    if (layers == 0) {
        err_set(err, errlen, "%s: not an RWKV model: no blocks.N.* tensors", path);
        return -1;
    }
    info->n_layer = (int)layers;
    info->n_embd = (int)d->C;
    info->n_vocab = (int)d->V;

    if ((t = find(m, "blocks.0.ffn.key.weight")) && t->ndim == 2) {
        d->F = t->shape[0];
    }
    switch (info->version) {
    case 5:
        t = find(m, "blocks.0.att.time_decay");
        if (t && info->minor == 2) {
            d->H = t->shape[0];
            d->N = t->shape[1];
        } else if (t) {
            d->H = t->numel;
            d->N = d->H > 0 && d->C % d->H == 0 ? d->C / d->H : -1;
        }
        break;
    case 6:
        if ((t = find(m, "blocks.0.att.time_faaaa")) && t->ndim == 2) {
            d->H = t->shape[0];
            d->N = t->shape[1];
        }
        if ((t = find(m, "blocks.0.att.time_maa_w1")) && t->ndim == 2 && t->shape[1] % 5 == 0) {
            d->Dm = t->shape[1] / 5;
        }
        if ((t = find(m, "blocks.0.att.time_decay_w1")) && t->ndim == 2) {
            d->Dw = t->shape[1];
        }
        break;
    case 7:
        if ((t = find(m, "blocks.0.att.r_k")) && t->ndim == 2) {
            d->H = t->shape[0];
            d->N = t->shape[1];
        }
        if ((t = find(m, "blocks.0.att.w1")) && t->ndim == 2) {
            d->Dw = t->shape[1];
        }
        if ((t = find(m, "blocks.0.att.a1")) && t->ndim == 2) {
            d->Da = t->shape[1];
        }
        if ((t = find(m, "blocks.0.att.g1")) && t->ndim == 2) {
            d->Dg = t->shape[1];
        }
        if ((t = find(m, "blocks.1.att.v1")) && t->ndim == 2) {
            d->Dv = t->shape[1];
        }
        break;
    }
    if (info->version >= 5) {
        if (d->H < 1 || d->N < 1 || d->H * d->N != d->C) {
            const char *src = info->version == 7 ? "blocks.0.att.r_k"
                            : info->version == 6 ? "blocks.0.att.time_faaaa"
                            : "blocks.0.att.time_decay";
            t = ckpt_find(m->file, src);
            if (!t) {
                err_set(err, errlen, "%s: tensor %s missing (RWKV-%s needs it for the head "
                        "layout)", path, src, info->version_name);
            } else {
                err_set(err, errlen, "%s: tensor %s: shape %s does not split n_embd %lld into "
                        "heads", path, src, ckpt_shape_str(t->ndim, t->shape, sbuf,
                                                           sizeof(sbuf)), (long long)d->C);
            }
            return -1;
        }
        if (d->N > MAX_HEAD_SIZE) {
            err_set(err, errlen, "%s: head size %lld above %d is not supported", path,
                    (long long)d->N, MAX_HEAD_SIZE);
            return -1;
        }
        info->n_head = (int)d->H;
        info->head_size = (int)d->N;
    }
    info->ffn_size = (int)(d->F > 0 ? d->F : 0);
    info->lora_decay = (int)(d->Dw > 0 ? d->Dw : 0);
    info->lora_aaa = (int)(d->Da > 0 ? d->Da : 0);
    info->lora_mv = (int)(d->Dv > 0 ? d->Dv : 0);
    info->lora_gate = (int)(d->Dg > 0 ? d->Dg : 0);
    info->lora_maa = (int)(d->Dm > 0 ? d->Dm : 0);
    return 0;
}

/* Checks one required tensor; marks it used.  0, or -1 with err. */
static int check_tensor(rwkv_model *m, const struct dims *d, const char *name,
                        const char *shape, unsigned char *used, char *err, size_t errlen)
{
    const struct ckpt_tensor *t = ckpt_find(m->file, name);
    const char *alt = shape, *bar;
    char want[96], found[64];
    int64_t dims[CKPT_MAX_DIMS];
    int ndim, vector, first = 1;

    if (!t) {
        err_set(err, errlen, "%s: tensor %s missing (RWKV-%s needs it)", ckpt_path(m->file),
                name, m->info.version_name);
        return -1;
    }
    want[0] = '\0';
    for (;;) {
        bar = strchr(alt, '|');
        ndim = resolve_shape(d, alt, bar ? (size_t)(bar - alt) : strlen(alt), dims, &vector);
        if (shape_matches(t, ndim, dims, vector)) {
            used[t - ckpt_at(m->file, 0)] = 1;
            return 0;
        }
        if (first) {
            if (vector) {
                snprintf(want, sizeof(want), "%lld elements", (long long)dims[0]);
            } else {
                int k;
                size_t used = 0;
                /* an unknown rank (its source tensor was malformed) shows as ? */
                for (k = 0; k < ndim && used < sizeof(want); k++) {
                    int w = dims[k] < 0
                        ? snprintf(want + used, sizeof(want) - used, "%s?", k ? "x" : "")
                        : snprintf(want + used, sizeof(want) - used, "%s%lld", k ? "x" : "",
                                   (long long)dims[k]);
                    used += w > 0 ? (size_t)w : 0;
                }
            }
            first = 0;
        }
        if (!bar) {
            break;
        }
        alt = bar + 1;
    }
    err_set(err, errlen, "%s: tensor %s: expected %s, found %s", ckpt_path(m->file), name,
            want, ckpt_shape_str(t->ndim, t->shape, found, sizeof(found)));
    return -1;
}

/* Checks every tensor of the version's table; the others become extras. */
static int validate(rwkv_model *m, const struct dims *d, unsigned char *used, char *err,
                    size_t errlen)
{
    static const struct spec *tables[] = { v4_specs, v50_specs, v51_specs, v52_specs,
                                           v6_specs, v7_specs };
    const struct spec *table, *s;
    size_t n = ckpt_count(m->file), i;
    char name[256];
    int layer, n_extra = 0, rc = -1;

    switch (m->info.version) {
    case 4: table = tables[0]; break;
    case 5: table = tables[1 + m->info.minor]; break;
    case 6: table = tables[4]; break;
    default: table = tables[5]; break;
    }
    for (s = table; s->name; s++) {
        if (s->scope == GLOBAL || s->scope == FIRST_LAYER) {
            if (check_tensor(m, d, s->name, s->shape, used, err, errlen)) {
                goto out;
            }
        }
    }
    for (layer = 0; layer < m->info.n_layer; layer++) {
        for (s = table; s->name; s++) {
            const char *bonus;
            if (s->scope == GLOBAL || s->scope == FIRST_LAYER ||
                (s->scope == LATER_LAYERS && layer == 0)) {
                continue;
            }
            if ((bonus = strstr(s->name, "BONUS")) != NULL) {
                snprintf(name, sizeof(name), "blocks.%d.att.%s", layer, bonus_name(m));
            } else {
                snprintf(name, sizeof(name), s->name, layer);
            }
            if (check_tensor(m, d, name, s->shape, used, err, errlen)) {
                goto out;
            }
        }
    }
    for (i = 0; i < n; i++) {
        n_extra += !used[i];
    }
    m->extra = calloc((size_t)n_extra + 1, sizeof(*m->extra));
    if (!m->extra) {
        err_set(err, errlen, "%s: out of memory", ckpt_path(m->file));
        goto out;
    }
    m->info.n_extra_tensors = 0;
    for (i = 0; i < n; i++) {
        if (!used[i]) {
            m->extra[m->info.n_extra_tensors++] = ckpt_at(m->file, i)->name;
        } else {
            const struct ckpt_tensor *t = ckpt_at(m->file, i);
            m->info.n_params += (uint64_t)t->numel;
        }
    }
    rc = 0;
out:
    return rc;
}

/* ------------------------------------------------------------ summary --- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t i;

    for (i = 0; i < n; i++) {
        h = (h ^ b[i]) * 0x100000001b3ULL;
    }
    return h;
}

/* A 64-bit identity of the weights: FNV-1a over each tensor's name, type
 * and shape and a sample of its bytes (head, tail and 16 spread windows),
 * so that it costs a few pages per tensor, not a read of the file.  The
 * per-tensor hashes are mixed and summed, so the order of the tensors in
 * the file (.pth or safetensors) does not matter. */
static uint64_t fingerprint(const ckpt_file *file)
{
    uint64_t sum = 0;
    size_t i, n = ckpt_count(file);

    for (i = 0; i < n; i++) {
        const struct ckpt_tensor *t = ckpt_at(file, i);
        const unsigned char *b = t->data;
        uint64_t h = 0xcbf29ce484222325ULL;
        int32_t dt = (int32_t)t->dtype;
        size_t k;

        h = fnv(h, t->name, strlen(t->name) + 1);
        h = fnv(h, &dt, sizeof(dt));
        h = fnv(h, t->shape, sizeof(t->shape[0]) * (size_t)t->ndim);
        if (t->nbytes <= 256) {
            h = fnv(h, b, t->nbytes);
        } else {
            h = fnv(h, b, 64);
            h = fnv(h, b + t->nbytes - 64, 64);
            for (k = 1; k <= 16; k++) {
                h = fnv(h, b + (t->nbytes - 8) / 17 * k, 8);
            }
        }
        /* splitmix64 finaliser before summing */
        h ^= h >> 30;
        h *= 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 27;
        h *= 0x94d049bb133111ebULL;
        h ^= h >> 31;
        sum += h;
    }
    return sum;
}

/* Fills stored dtype, fingerprint and state size from the used tensors
 * (bytes_per_token comes from the kernel matrices, after prepare). */
static void summarize(rwkv_model *m, const unsigned char *used)
{
    struct rwkv_info *info = &m->info;
    uint64_t by_type[3] = { 0, 0, 0 };
    size_t i, n = ckpt_count(m->file);

    for (i = 0; i < n; i++) {
        const struct ckpt_tensor *t = ckpt_at(m->file, i);

        if (!used[i]) {
            continue;
        }
        by_type[t->dtype] += t->nbytes;
    }
    /* the format that holds most of the bytes */
    info->stored_dtype = RWKV_DTYPE_F32;
    if (by_type[CKPT_F16] > by_type[CKPT_F32] && by_type[CKPT_F16] >= by_type[CKPT_BF16]) {
        info->stored_dtype = RWKV_DTYPE_F16;
    } else if (by_type[CKPT_BF16] > by_type[CKPT_F32] && by_type[CKPT_BF16] > by_type[CKPT_F16]) {
        info->stored_dtype = RWKV_DTYPE_BF16;
    }
    info->compute_dtype = m->dtype == RWKV_DTYPE_AUTO ? info->stored_dtype : m->dtype;
    info->file_size = ckpt_file_size(m->file);
    info->fingerprint = fingerprint(m->file);
    if (info->version == 4) {
        info->state_floats = (size_t)info->n_layer * 5 * (size_t)info->n_embd;
    } else {
        info->state_floats = (size_t)info->n_layer *
            (2 * (size_t)info->n_embd + (size_t)info->n_head * info->head_size * info->head_size);
    }
}

/* ------------------------------------------------------ finite check --- */

/* Bytes of tensor data one task of the NaN/Inf scan reads. */
#define SCAN_CHUNK ((size_t)1 << 20)

struct scan {
    const struct ckpt_tensor **tensors;     /* the used tensors */
    size_t *first_chunk;                    /* of each tensor; [n] = total */
    size_t n;
    size_t *bad;                            /* per chunk: NaN/Inf values */
};

/* Counts the NaN and infinite values among n elements: those whose
 * exponent bits are all ones. */
static size_t count_nonfinite_exact(enum ckpt_dtype dtype, const void *data, size_t n)
{
    size_t bad = 0, i;

    if (dtype == CKPT_F32) {
        const uint32_t *p = data;
        for (i = 0; i < n; i++) {
            bad += (p[i] & 0x7f800000u) == 0x7f800000u;
        }
    } else {
        const uint16_t *p = data;
        uint16_t mask = dtype == CKPT_F16 ? 0x7c00 : 0x7f80;
        for (i = 0; i < n; i++) {
            bad += (uint16_t)(p[i] & mask) == mask;
        }
    }
    return bad;
}

/* The same count, fast when it is 0: eight bytes at a time, a lane's
 * clear exponent bits plus 0x7fff (0x7fffffff) set its top bit unless the
 * exponent is all ones, and no lane carries into the next. */
static size_t count_nonfinite(enum ckpt_dtype dtype, const void *data, size_t n)
{
    const unsigned char *b = data;
    size_t nbytes = n * ckpt_dtype_size(dtype), words = nbytes / 8, i;
    uint64_t exp, low, top, acc = ~(uint64_t)0, w;

    exp = dtype == CKPT_F32 ? 0x7f8000007f800000ULL
        : dtype == CKPT_F16 ? 0x7c007c007c007c00ULL : 0x7f807f807f807f80ULL;
    low = dtype == CKPT_F32 ? 0x7fffffff7fffffffULL : 0x7fff7fff7fff7fffULL;
    top = dtype == CKPT_F32 ? 0x8000000080000000ULL : 0x8000800080008000ULL;
    for (i = 0; i < words; i++) {
        memcpy(&w, b + 8 * i, 8);
        acc &= (~w & exp) + low;
    }
    if ((acc & top) == top && nbytes % 8 == 0) {
        return 0;
    }
    return count_nonfinite_exact(dtype, data, n);
}

/* One pool task: chunk i of the concatenated used tensors. */
static void scan_chunk(void *ctx, int i)
{
    struct scan *s = ctx;
    size_t c = (size_t)i, lo = 0, hi = s->n, esize, begin, end;
    const struct ckpt_tensor *t;

    while (hi - lo > 1) {       /* the tensor whose chunks hold c */
        size_t mid = lo + (hi - lo) / 2;
        if (s->first_chunk[mid] <= c) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    t = s->tensors[lo];
    esize = ckpt_dtype_size(t->dtype);
    begin = (c - s->first_chunk[lo]) * SCAN_CHUNK;
    end = begin + SCAN_CHUNK < t->nbytes ? begin + SCAN_CHUNK : t->nbytes;
    s->bad[c] = count_nonfinite(t->dtype, (const unsigned char *)t->data + begin,
                                (end - begin) / esize);
}

/* Refuses weights holding NaN or infinity, naming the first such tensor:
 * they would only turn every logit into NaN later.  Reads each used
 * tensor once, on the pool's threads, except those the open conversion
 * cache holds. */
static int check_finite(rwkv_model *m, const unsigned char *used, char *err, size_t errlen)
{
    struct scan s;
    size_t n = ckpt_count(m->file), i, k, chunks = 0;
    int rc = -1;

    memset(&s, 0, sizeof(s));
    s.tensors = malloc((n ? n : 1) * sizeof(*s.tensors));
    s.first_chunk = malloc((n + 1) * sizeof(*s.first_chunk));
    if (!s.tensors || !s.first_chunk) {
        err_set(err, errlen, "%s: out of memory", ckpt_path(m->file));
        goto out;
    }
    for (i = 0; i < n; i++) {
        const struct ckpt_tensor *t = ckpt_at(m->file, i);
        if (used[i] && t->nbytes > 0 && m->cache.cache &&
            convcache_has_name(m->cache.cache, t->name)) {
            /* read from the conversion cache instead: it was written from
             * this very file (size, time, inode, fingerprint) after a load
             * that checked it; model_matrix checks it on a cache miss */
            m->cache.scan_skipped = 1;
        } else if (used[i] && t->nbytes > 0) {
            s.tensors[s.n] = t;
            s.first_chunk[s.n++] = chunks;
            chunks += (t->nbytes + SCAN_CHUNK - 1) / SCAN_CHUNK;
        }
    }
    s.first_chunk[s.n] = chunks;
    if (chunks > (size_t)INT32_MAX || !(s.bad = calloc(chunks ? chunks : 1, sizeof(*s.bad)))) {
        err_set(err, errlen, "%s: out of memory", ckpt_path(m->file));
        goto out;
    }
    kpool_run(m->pool, scan_chunk, &s, (int)chunks);
    for (i = 0; i < s.n; i++) {
        size_t bad = 0;
        for (k = s.first_chunk[i]; k < s.first_chunk[i + 1]; k++) {
            bad += s.bad[k];
        }
        if (bad) {
            err_set(err, errlen, "%s: tensor %s: %zu NaN/Inf value%s", ckpt_path(m->file),
                    s.tensors[i]->name, bad, bad == 1 ? "" : "s");
            goto out;
        }
    }
    rc = 0;
out:
    free(s.tensors);
    free(s.first_chunk);
    free(s.bad);
    return rc;
}

/* ---------------------------------------------------- conversion cache --- */

static double seconds_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Where tensor t's data lies in the model file (tells the slices of one
 * tensor apart); UINT64_MAX for data copied out of the mapping. */
static uint64_t tensor_offset(const rwkv_model *m, const struct ckpt_tensor *t)
{
    size_t size;
    uintptr_t base = (uintptr_t)ckpt_bytes(m->file, &size), p = (uintptr_t)t->data;

    return p >= base && p - base < size ? (uint64_t)(p - base) : UINT64_MAX;
}

int model_matrix(rwkv_model *m, struct kmat *k, const struct ckpt_tensor *t, int transpose,
                 enum rwkv_dtype dtype, char *err, size_t errlen)
{
    struct model_cache *c = &m->cache;
    struct model_matrix_rec *rec;
    uint64_t off = tensor_offset(m, t);
    int rc = kmat_plan(k, t, transpose, dtype, err, errlen), from_cache = 0;
    size_t bad;

    if (rc < 0) {
        return -1;
    }
    if (rc == 0) {
        from_cache = c->active && convcache_find(c->cache, t->name, off, transpose, k);
        if (!from_cache && c->scan_skipped &&
            (bad = count_nonfinite(t->dtype, t->data, (size_t)t->numel)) != 0) {
            /* a tensor check_finite left to the cache, which lacks it */
            snprintf(err, errlen, "tensor %s: %zu NaN/Inf value%s", t->name, bad,
                     bad == 1 ? "" : "s");
            memset(k, 0, sizeof *k);
            return -1;
        }
        if (!from_cache && kmat_convert(k, t, transpose, m->pool, err, errlen) != 0) {
            memset(k, 0, sizeof *k);
            return -1;
        }
        c->n_from_cache += (size_t)from_cache;
        c->n_converted += (size_t)!from_cache;
    }
    if (c->n_recs == c->cap_recs) {
        size_t cap = c->cap_recs ? 2 * c->cap_recs : 256;
        struct model_matrix_rec *p = realloc(c->recs, cap * sizeof *p);

        if (!p) {
            c->failed = 1;
            return 0;
        }
        c->recs = p;
        c->cap_recs = cap;
    }
    rec = &c->recs[c->n_recs++];
    rec->item.name = t->name;
    rec->item.src_off = off;
    rec->item.transpose = transpose;
    rec->item.m = k;
    rec->converted = rc == 0;
    return 0;
}

/* Before prepare: decides whether this load uses a cache and opens the
 * one there is.  A load uses one when it converts the big matrices (its
 * format is not the file's); LoRA factors alone are cheap to convert. */
static void cache_begin(rwkv_model *m, const struct rwkv_load_options *opts)
{
    struct model_cache *c = &m->cache;
    const char *path = ckpt_path(m->file);
    char why[RWKV_ERRLEN], fallback[PATH_MAX];
    double t0 = seconds_now();

    c->info.path = c->path;
    c->info.reason = c->reason;
    if (m->dtype == RWKV_DTYPE_AUTO || m->dtype == m->info.stored_dtype) {
        return;
    }
    if (opts && opts->cache == RWKV_CACHE_MODE_OFF) {
        c->info.result = RWKV_CACHE_OFF;
        snprintf(c->reason, sizeof c->reason, "the cache is turned off");
        return;
    }
    if (convcache_key_of(path, m->dtype, m->info.fingerprint, &c->key) != 0) {
        c->info.result = RWKV_CACHE_NOT_WRITTEN;
        snprintf(c->reason, sizeof c->reason, "cannot stat %s", path);
        return;
    }
    c->active = 1;
    if (convcache_path(path, m->dtype, 0, c->path, sizeof c->path) == 0) {
        c->cache = convcache_open(c->path, &c->key, m->pool, c->reason, sizeof c->reason);
    } else {
        snprintf(c->reason, sizeof c->reason, "no cache yet");
    }
    if (!c->cache && convcache_path(path, m->dtype, 1, fallback, sizeof fallback) == 0) {
        c->cache = convcache_open(fallback, &c->key, m->pool, why, sizeof why);
        if (c->cache) {
            snprintf(c->path, sizeof c->path, "%s", fallback);
        } else if (!strcmp(c->reason, "no cache yet")) {
            snprintf(c->reason, sizeof c->reason, "%s", why);
        }
    }
    c->info.seconds = seconds_now() - t0;
}

/* After prepare: reports the cache as used, or writes a new one holding
 * every converted matrix (next to the model, else in the user's cache
 * directory). */
static void cache_finish(rwkv_model *m)
{
    struct model_cache *c = &m->cache;
    struct convcache_item *items;
    char why[RWKV_ERRLEN] = "the cache file name beside the model is too long";
    char why2[RWKV_ERRLEN], fallback[PATH_MAX];
    size_t n = 0;
    double t0;

    if (!c->active) {
        return;
    }
    if (c->n_converted == 0 && c->n_from_cache > 0) {
        c->info.result = RWKV_CACHE_USED;
        c->reason[0] = '\0';
        return;
    }
    if (c->n_converted == 0) {
        c->info.result = RWKV_CACHE_NONE;
        c->path[0] = '\0';
        return;
    }
    c->info.result = RWKV_CACHE_NOT_WRITTEN;
    if (c->cache) {
        snprintf(c->reason, sizeof c->reason, "the cache lacked %zu of the matrices",
                 c->n_converted);
    }
    if (c->failed || !(items = malloc(c->n_recs * sizeof *items))) {
        snprintf(c->reason, sizeof c->reason, "out of memory");
        c->path[0] = '\0';
        return;
    }
    for (size_t i = 0; i < c->n_recs; i++) {
        if (c->recs[i].converted) {
            items[n++] = c->recs[i].item;
        }
    }
    t0 = seconds_now();
    if (c->path[0] && convcache_write(c->path, 0, &c->key, items, n, m->pool, why,
                                      sizeof why) == 0) {
        c->info.result = RWKV_CACHE_WRITTEN;
    } else if (convcache_path(ckpt_path(m->file), m->dtype, 1, fallback, sizeof fallback) != 0) {
        snprintf(c->reason, sizeof c->reason, "%.400s; no user cache directory (HOME unset)", why);
        c->path[0] = '\0';
    } else if (convcache_write(fallback, 1, &c->key, items, n, m->pool, why2,
                               sizeof why2) == 0) {
        c->info.result = RWKV_CACHE_WRITTEN;
        snprintf(c->path, sizeof c->path, "%s", fallback);
    } else {
        snprintf(c->reason, sizeof c->reason, "%.250s; %.250s", why, why2);
        c->path[0] = '\0';
    }
    c->info.seconds = seconds_now() - t0;
    free(items);
}

/* Weight bytes one generated token reads: every kernel matrix as it is
 * held (kmat_bytes: LoRA factors in their own format, the Linear
 * weights in the compute format), the float32 copies of the other used
 * tensors, and one embedding row. */
static uint64_t bytes_per_token(const rwkv_model *m, const unsigned char *used)
{
    const struct model_cache *c = &m->cache;
    size_t n = ckpt_count(m->file);
    unsigned char *is_kmat = calloc(n ? n : 1, 1);
    uint64_t bytes = 0;

    for (size_t i = 0; i < c->n_recs; i++) {
        const struct ckpt_tensor *t = ckpt_find(m->file, c->recs[i].item.name);

        bytes += kmat_bytes(c->recs[i].item.m);
        for (size_t j = 0; is_kmat && t && j < n; j++) {
            if (ckpt_at(m->file, j) == t) {
                is_kmat[j] = 1;
                break;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        const struct ckpt_tensor *t = ckpt_at(m->file, i);

        if (!used[i] || (is_kmat && is_kmat[i])) {
            continue;
        }
        if (!strcmp(t->name, "emb.weight")) {
            bytes += (uint64_t)m->info.n_embd * ckpt_dtype_size(t->dtype);
        } else {
            bytes += (uint64_t)t->numel * sizeof(float);
        }
    }
    free(is_kmat);
    return bytes;
}

/* ------------------------------------------------------------- public --- */

rwkv_model *rwkv_model_load(const char *path, const struct rwkv_load_options *opts,
                            char *err, size_t errlen)
{
    rwkv_model *m;
    struct dims d;
    unsigned char *used;

    if (err && errlen) {
        err[0] = '\0';
    }
    m = calloc(1, sizeof(*m));
    if (!m) {
        err_set(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    m->dtype = opts ? opts->dtype : RWKV_DTYPE_AUTO;
    if (m->dtype < RWKV_DTYPE_AUTO || m->dtype > RWKV_DTYPE_Q4) {
        err_set(err, errlen, "%s: unknown weight format %d", path, (int)m->dtype);
        free(m);
        return NULL;
    }
    m->file = ckpt_open(path, err, errlen);
    if (!m->file) {
        free(m);
        return NULL;
    }
    detect_version(m);
    if (m->info.version == 5) {
        snprintf(m->info.version_name, sizeof(m->info.version_name), "5.%d", m->info.minor);
    } else {
        snprintf(m->info.version_name, sizeof(m->info.version_name), "%d", m->info.version);
    }
    used = calloc(ckpt_count(m->file), 1);
    if (!used) {
        err_set(err, errlen, "%s: out of memory", path);
        rwkv_model_free(m);
        return NULL;
    }
    if (read_dims(m, &d, err, errlen) || validate(m, &d, used, err, errlen)) {
        free(used);
        rwkv_model_free(m);
        return NULL;
    }
    summarize(m, used);
    switch (m->info.version) {
    case 4: m->arch = &rwkv4_arch; break;
    case 5: m->arch = &rwkv5_arch; break;
    case 6: m->arch = &rwkv6_arch; break;
    default: m->arch = &rwkv7_arch; break;
    }
    m->pool = kpool_new(opts ? opts->n_threads : 0);
    if (!m->pool) {
        err_set(err, errlen, "%s: cannot start worker threads", path);
        free(used);
        rwkv_model_free(m);
        return NULL;
    }
    cache_begin(m, opts);
    if (check_finite(m, used, err, errlen)) {
        free(used);
        m->arch = NULL;
        rwkv_model_free(m);
        return NULL;
    }
    if (m->arch->prepare(m, err, errlen)) {
        /* prepare cleans up after itself or leaves what release frees */
        if (!m->weights) {
            m->arch = NULL;
        }
        free(used);
        rwkv_model_free(m);
        return NULL;
    }
    cache_finish(m);
    m->info.bytes_per_token = bytes_per_token(m, used);
    free(used);
    return m;
}

void rwkv_model_free(rwkv_model *m)
{
    if (!m) {
        return;
    }
    if (m->arch && m->weights) {
        m->arch->release(m);
    }
    convcache_close(m->cache.cache);
    free(m->cache.recs);
    kpool_free(m->pool);
    free(m->extra);
    ckpt_close(m->file);
    free(m);
}

const struct rwkv_info *rwkv_model_info(const rwkv_model *model)
{
    return &model->info;
}

const struct rwkv_cache_info *rwkv_model_cache(const rwkv_model *model)
{
    return &model->cache.info;
}

const char *rwkv_model_extra_tensor(const rwkv_model *model, int i)
{
    if (i < 0 || i >= model->info.n_extra_tensors) {
        return NULL;
    }
    return model->extra[i];
}

rwkv_state *rwkv_state_new(const rwkv_model *model)
{
    size_t n = model->info.state_floats;
    rwkv_state *s = malloc(sizeof(*s) + n * sizeof(float));

    if (!s) {
        return NULL;
    }
    s->model = model;
    s->n = n;
    model->arch->state_init(model, s->data);
    return s;
}

rwkv_state *rwkv_state_clone(const rwkv_state *state)
{
    rwkv_state *s = malloc(sizeof(*s) + state->n * sizeof(float));

    if (!s) {
        return NULL;
    }
    memcpy(s, state, sizeof(*s) + state->n * sizeof(float));
    return s;
}

void rwkv_state_copy(rwkv_state *dst, const rwkv_state *src)
{
    assert(dst->n == src->n);
    memcpy(dst->data, src->data, src->n * sizeof(float));
}

void rwkv_state_reset(rwkv_state *state)
{
    state->model->arch->state_init(state->model, state->data);
}

void rwkv_state_free(rwkv_state *state)
{
    free(state);
}

size_t rwkv_state_floats(const rwkv_state *state)
{
    return state->n;
}

float *rwkv_state_data(rwkv_state *state)
{
    return state->data;
}

const float *rwkv_state_cdata(const rwkv_state *state)
{
    return state->data;
}

int rwkv_eval(rwkv_model *model, rwkv_state *state, const int32_t *tokens, size_t n,
              float *logits, int all_logits, char *err, size_t errlen)
{
    size_t i;

    if (n == 0) {
        err_set(err, errlen, "%s: no tokens to evaluate", ckpt_path(model->file));
        return -1;
    }
    if (state->n != model->info.state_floats) {
        err_set(err, errlen, "%s: state of %zu floats does not belong to this model (%zu)",
                ckpt_path(model->file), state->n, model->info.state_floats);
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= model->info.n_vocab) {
            err_set(err, errlen, "token %ld out of range (n_vocab %d) at position %zu",
                    (long)tokens[i], model->info.n_vocab, i);
            return -1;
        }
    }
    model->arch->eval(model, state->data, tokens, n, logits, all_logits);
    return 0;
}

int rwkv_default_threads(void)
{
    return kpool_default_threads();
}
