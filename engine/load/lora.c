/*
 * lora.c - RWKV-PEFT LoRA adapters merged at load (see lora.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/err.h"
#include "engine/base/escape.h"
#include "engine/base/half.h"
#include "engine/kernels/kmat.h"
#include "engine/load/lora.h"

/* One lora_A / lora_B pair of an adapter file. */
struct lora_pair {
    const struct ckpt_tensor *a, *b;
    int adapter;
    float scale;
};

/* A tensor of the model that pairs add to. */
struct lora_target {
    char *name;                 /* NAME.weight */
    struct lora_pair *pairs;
    int n_pairs;
    int claimed;
    void *kept;                 /* the merged data read in place */
    enum ckpt_dtype kept_dtype;
};

struct lora_set {
    ckpt_file **files;
    int n_files;
    struct lora_target *targets;
    size_t n_targets, cap_targets;
    uint64_t identity;
};

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++) {
        h = (h ^ b[i]) * 0x100000001b3ULL;
    }
    return h;
}

/* NaN and infinite values among tensor t's elements. */
static size_t nonfinite_values(const struct ckpt_tensor *t)
{
    float buf[4096];
    size_t done = 0, n = (size_t)t->numel, esize = ckpt_dtype_size(t->dtype), bad = 0;

    while (done < n) {
        size_t k = n - done < 4096 ? n - done : 4096;

        ckpt_to_f32(t->dtype, (const char *)t->data + done * esize, buf, k);
        for (size_t i = 0; i < k; i++) {
            bad += !isfinite(buf[i]);
        }
        done += k;
    }
    return bad;
}

/* Whether a and b have the same dimensions once those of size 1 are
 * dropped (official files keep vectors as [1][1][C]). */
static int same_squeezed(const struct ckpt_tensor *a, const struct ckpt_tensor *b)
{
    int i = 0, j = 0;

    for (;;) {
        while (i < a->ndim && a->shape[i] == 1) {
            i++;
        }
        while (j < b->ndim && b->shape[j] == 1) {
            j++;
        }
        if (i == a->ndim || j == b->ndim) {
            return i == a->ndim && j == b->ndim;
        }
        if (a->shape[i++] != b->shape[j++]) {
            return 0;
        }
    }
}

static struct lora_target *find_target(const lora_set *set, const char *name)
{
    for (size_t i = 0; i < set->n_targets; i++) {
        if (!strcmp(set->targets[i].name, name)) {
            return &set->targets[i];
        }
    }
    return NULL;
}

/* The target called name, added when new; NULL when out of memory. */
static struct lora_target *add_target(lora_set *set, const char *name)
{
    struct lora_target *t = find_target(set, name);

    if (t) {
        return t;
    }
    if (set->n_targets == set->cap_targets) {
        size_t cap = set->cap_targets ? 2 * set->cap_targets : 64;
        struct lora_target *p = realloc(set->targets, cap * sizeof *p);

        if (!p) {
            return NULL;
        }
        set->targets = p;
        set->cap_targets = cap;
    }
    t = &set->targets[set->n_targets];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) {
        return NULL;
    }
    set->n_targets++;
    return t;
}

/* The name with its suffix (of suffix_len bytes) swapped for with. */
static int swap_suffix(char *out, size_t len, const char *name, size_t suffix_len,
                       const char *with)
{
    int n = snprintf(out, len, "%.*s%s", (int)(strlen(name) - suffix_len), name, with);

    return n < 0 || (size_t)n >= len ? -1 : 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);

    return n >= k && !strcmp(s + n - k, suffix);
}

/* Checks the pair whose lora_A is a in adapter file f and adds it to
 * its target.  0, or -1 with err. */
static int add_pair(lora_set *set, const ckpt_file *model, const ckpt_file *f, int index,
                    float scale, const struct ckpt_tensor *a, char *err, size_t errlen)
{
    const char *path = ckpt_path(f);
    const struct ckpt_tensor *b, *w;
    struct lora_target *target;
    struct lora_pair *pairs;
    char bname[512], wname[512], s1[64], s2[64], s3[64];

    if (swap_suffix(bname, sizeof bname, a->name, 7, ".lora_B") ||
        swap_suffix(wname, sizeof wname, a->name, 7, ".weight")) {
        err_set(err, errlen, "%s: tensor %s: name too long", RWKV_ESC(path),
                RWKV_ESC(a->name));
        return -1;
    }
    if (!(b = ckpt_find(f, bname))) {
        err_set(err, errlen, "%s: tensor %s has no %s beside it: not a complete LoRA adapter",
                RWKV_ESC(path), RWKV_ESC(a->name), RWKV_ESC(bname));
        return -1;
    }
    if (!(w = ckpt_find(model, wname))) {
        err_set(err, errlen, "%s: tensor %s: the model has no %s to add it to (an adapter "
                "for another model?)", RWKV_ESC(path), RWKV_ESC(a->name), RWKV_ESC(wname));
        return -1;
    }
    if (a->ndim != 2 || b->ndim != 2 || a->shape[0] != b->shape[1] || a->shape[0] < 1) {
        err_set(err, errlen, "%s: tensor %s is %s and %s is %s: expected [r][in] and "
                "[out][r] of one rank r", RWKV_ESC(path), RWKV_ESC(a->name),
                ckpt_shape_str(a->ndim, a->shape, s1, sizeof s1), RWKV_ESC(b->name),
                ckpt_shape_str(b->ndim, b->shape, s2, sizeof s2));
        return -1;
    }
    if (w->ndim != 2 || w->shape[0] != b->shape[0] || w->shape[1] != a->shape[1]) {
        err_set(err, errlen, "%s: tensor %s: lora_B @ lora_A is %lldx%lld but the model's "
                "%s is %s (an adapter for another model?)", RWKV_ESC(path), RWKV_ESC(a->name),
                (long long)b->shape[0], (long long)a->shape[1], RWKV_ESC(wname),
                ckpt_shape_str(w->ndim, w->shape, s3, sizeof s3));
        return -1;
    }
    if (!(target = add_target(set, wname)) ||
        !(pairs = realloc(target->pairs, (size_t)(target->n_pairs + 1) * sizeof *pairs))) {
        err_set(err, errlen, "%s: out of memory", RWKV_ESC(path));
        return -1;
    }
    target->pairs = pairs;
    pairs[target->n_pairs].a = a;
    pairs[target->n_pairs].b = b;
    pairs[target->n_pairs].adapter = index;
    pairs[target->n_pairs].scale = scale;
    target->n_pairs++;
    return 0;
}

/* Checks replacement t of adapter f and points the model's tensor at it;
 * what earlier adapters added to that tensor no longer counts. */
static int replace(lora_set *set, ckpt_file *model, const ckpt_file *f, int index,
                   const struct ckpt_tensor *t, char *err, size_t errlen)
{
    const struct ckpt_tensor *w = ckpt_find(model, t->name);
    struct lora_target *target;
    char s1[64], s2[64];

    if (!w) {
        err_set(err, errlen, "%s: tensor %s: the model has no tensor of that name (an adapter "
                "holds NAME.lora_A/NAME.lora_B pairs and tensors of its model)",
                RWKV_ESC(ckpt_path(f)), RWKV_ESC(t->name));
        return -1;
    }
    if (w->numel != t->numel || !same_squeezed(w, t)) {
        err_set(err, errlen, "%s: tensor %s is %s but the model's is %s (an adapter for "
                "another model?)", RWKV_ESC(ckpt_path(f)), RWKV_ESC(t->name),
                ckpt_shape_str(t->ndim, t->shape, s1, sizeof s1),
                ckpt_shape_str(w->ndim, w->shape, s2, sizeof s2));
        return -1;
    }
    if ((target = find_target(set, t->name)) != NULL) {
        int kept = 0;

        for (int i = 0; i < target->n_pairs; i++) {
            if (target->pairs[i].adapter == index) {
                target->pairs[kept++] = target->pairs[i];
            }
        }
        target->n_pairs = kept;
    }
    return ckpt_replace_data(model, t->name, t);
}

/* Adds adapter file f (the index-th) to the set.  0, or -1 with err. */
static int add_adapter(lora_set *set, ckpt_file *model, const ckpt_file *f, int index,
                       float scale, char *err, size_t errlen)
{
    size_t n = ckpt_count(f), bad;
    uint64_t h = set->identity;

    h = fnv(h, &index, sizeof index);
    h = fnv(h, &scale, sizeof scale);
    for (size_t i = 0; i < n; i++) {
        const struct ckpt_tensor *t = ckpt_at(f, i);
        int32_t dt = (int32_t)t->dtype;

        if ((bad = nonfinite_values(t)) != 0) {
            err_set(err, errlen, "%s: tensor %s: %zu NaN/Inf value%s", RWKV_ESC(ckpt_path(f)),
                    RWKV_ESC(t->name), bad, bad == 1 ? "" : "s");
            return -1;
        }
        h = fnv(h, t->name, strlen(t->name) + 1);
        h = fnv(h, &dt, sizeof dt);
        h = fnv(h, t->shape, sizeof t->shape[0] * (size_t)t->ndim);
        h = fnv(h, t->data, t->nbytes);
        if (ends_with(t->name, ".lora_A")) {
            if (add_pair(set, model, f, index, scale, t, err, errlen)) {
                return -1;
            }
        } else if (ends_with(t->name, ".lora_B")) {
            char aname[512];

            if (swap_suffix(aname, sizeof aname, t->name, 7, ".lora_A") == 0 &&
                !ckpt_find(f, aname)) {
                err_set(err, errlen, "%s: tensor %s has no %s beside it: not a complete LoRA "
                        "adapter", RWKV_ESC(ckpt_path(f)), RWKV_ESC(t->name), RWKV_ESC(aname));
                return -1;
            }
        } else if (replace(set, model, f, index, t, err, errlen)) {
            return -1;
        }
    }
    if (n == 0) {
        err_set(err, errlen, "%s: no tensors: not a LoRA adapter", RWKV_ESC(ckpt_path(f)));
        return -1;
    }
    set->identity = h;
    return 0;
}

lora_set *lora_open(ckpt_file *model, const struct rwkv_lora *adapters, int n, char *err,
                    size_t errlen)
{
    lora_set *set = calloc(1, sizeof *set);

    if (!set || !(set->files = calloc((size_t)(n > 0 ? n : 1), sizeof *set->files))) {
        err_set(err, errlen, "%s: out of memory", RWKV_ESC(ckpt_path(model)));
        free(set);
        return NULL;
    }
    set->identity = 0xcbf29ce484222325ULL;
    for (int i = 0; i < n; i++) {
        if (!isfinite(adapters[i].scale)) {
            err_set(err, errlen, "%s: scale %g is not a finite number",
                    RWKV_ESC(adapters[i].path), (double)adapters[i].scale);
            lora_free(set);
            return NULL;
        }
        if (!(set->files[i] = ckpt_open(adapters[i].path, err, errlen))) {
            lora_free(set);
            return NULL;
        }
        set->n_files = i + 1;
        if (add_adapter(set, model, set->files[i], i, adapters[i].scale, err, errlen)) {
            lora_free(set);
            return NULL;
        }
    }
    return set;
}

void lora_free(lora_set *set)
{
    if (!set) {
        return;
    }
    for (size_t i = 0; i < set->n_targets; i++) {
        free(set->targets[i].name);
        free(set->targets[i].pairs);
        free(set->targets[i].kept);
    }
    free(set->targets);
    for (int i = 0; i < set->n_files; i++) {
        ckpt_close(set->files[i]);
    }
    free(set->files);
    free(set);
}

uint64_t lora_fingerprint(const lora_set *set, uint64_t fingerprint)
{
    uint64_t h;

    if (!set) {
        return fingerprint;
    }
    h = fnv(set->identity, &fingerprint, sizeof fingerprint);
    h ^= h >> 31;
    return h;
}

int lora_claim(lora_set *set, const char *name)
{
    struct lora_target *t;

    if (!set || !(t = find_target(set, name)) || t->n_pairs == 0) {
        return 0;
    }
    t->claimed = 1;
    return 1;
}

int lora_merge(lora_set *set, struct kpool *pool, const struct ckpt_tensor *t, int keep,
               struct ckpt_tensor *out, void **to_free, char *err, size_t errlen)
{
    struct lora_target *target = find_target(set, t->name);
    size_t rows, cols, n, max_r = 0;
    float *w = NULL, *b = NULL, *d = NULL;
    int rc = -1;

    *to_free = NULL;
    if (!target || t->ndim != 2) {
        err_set(err, errlen, "tensor %s: no LoRA adapter adds to it", RWKV_ESC(t->name));
        return -1;
    }
    rows = (size_t)t->shape[0];
    cols = (size_t)t->shape[1];
    n = rows * cols;
    if (keep && target->kept) {
        /* made before: a kernel matrix may already read it */
        *out = *t;
        out->dtype = target->kept_dtype;
        out->data = target->kept;
        out->nbytes = n * ckpt_dtype_size(target->kept_dtype);
        return 0;
    }
    for (int i = 0; i < target->n_pairs; i++) {
        size_t r = (size_t)target->pairs[i].a->shape[0];
        max_r = r > max_r ? r : max_r;
    }
    w = malloc(n * sizeof *w);
    d = malloc(n * sizeof *d);
    b = malloc(rows * (max_r ? max_r : 1) * sizeof *b);
    if (!w || !d || !b) {
        err_set(err, errlen, "tensor %s: out of memory merging its LoRA adapters",
                RWKV_ESC(t->name));
        goto out;
    }
    ckpt_to_f32(t->dtype, t->data, w, n);
    for (int i = 0; i < target->n_pairs; i++) {
        const struct lora_pair *p = &target->pairs[i];
        struct kmat a_t;
        char why[RWKV_ERRLEN];

        /* B @ A as the kernels' Y = X W^T with X = B [rows][r] and W = A^T
         * [cols][r]: A is stored [r][cols], so W is A read transposed. */
        if (kmat_from_tensor(&a_t, p->a, 1, RWKV_DTYPE_F32, why, sizeof why) != 0) {
            err_set(err, errlen, "%s", why);
            goto out;
        }
        ckpt_to_f32(p->b->dtype, p->b->data, b, (size_t)p->b->numel);
        k_matmul(pool, &a_t, b, (int)rows, d);
        kmat_free(&a_t);
        for (size_t k = 0; k < n; k++) {
            w[k] += d[k] * p->scale;
        }
    }
    for (size_t k = 0; k < n; k++) {
        if (!isfinite(w[k])) {
            err_set(err, errlen, "tensor %s: merging the LoRA adapter %s makes it "
                    "overflow (a scale too large?)", RWKV_ESC(t->name),
                    RWKV_ESC(ckpt_path(set->files[target->pairs[0].adapter])));
            goto out;
        }
    }
    *out = *t;
    if (keep && t->dtype != CKPT_F32) {
        uint16_t *h = (uint16_t *)d;    /* n floats hold n halves */

        for (size_t k = 0; k < n; k++) {
            h[k] = t->dtype == CKPT_BF16 ? half_f32_to_bf16(w[k]) : half_f32_to_f16(w[k]);
        }
        target->kept = d;
        target->kept_dtype = t->dtype;
        d = NULL;
        out->data = h;
        out->nbytes = n * sizeof *h;
    } else {
        out->dtype = CKPT_F32;
        out->data = w;
        out->nbytes = n * sizeof *w;
        if (keep) {
            target->kept = w;
            target->kept_dtype = CKPT_F32;
        } else {
            *to_free = w;
        }
        w = NULL;
    }
    rc = 0;
out:
    free(w);
    free(d);
    free(b);
    return rc;
}

int lora_check_claimed(const lora_set *set, char *err, size_t errlen)
{
    if (!set) {
        return 0;
    }
    for (size_t i = 0; i < set->n_targets; i++) {
        const struct lora_target *t = &set->targets[i];

        if (t->n_pairs > 0 && !t->claimed) {
            err_set(err, errlen, "%s: tensor %s: LoRA on %s is not supported (only on the "
                    "matrices the forward pass multiplies: att, ffn, head)",
                    RWKV_ESC(ckpt_path(set->files[t->pairs[0].adapter])),
                    RWKV_ESC(t->pairs[0].a->name), RWKV_ESC(t->name));
            return -1;
        }
    }
    return 0;
}

uint64_t lora_offset(const lora_set *set, const void *p)
{
    for (int i = 0; set && i < set->n_files; i++) {
        size_t size;
        const unsigned char *base = ckpt_bytes(set->files[i], &size);
        uintptr_t q = (uintptr_t)p, b = (uintptr_t)base;

        if (q >= b && q - b < size) {
            return (UINT64_C(1) << 63) | ((uint64_t)i << 48) | (uint64_t)(q - b);
        }
    }
    return UINT64_MAX;
}
