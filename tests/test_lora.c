/*
 * test_lora.c - LoRA adapters merged at load (engine/load/lora.c):
 *  - the merge equals a model file written with W + scale * B @ A and the
 *    replacements computed here (double precision), for float32 and
 *    bfloat16 adapters, including the head;
 *  - at q8 and q4 an adapter works and goes through the conversion cache:
 *    the second load reads it, another scale, other adapter contents or no
 *    adapter rebuild it, and the cached load gives the same logits;
 *  - a bfloat16 model at its own format keeps the merged matrices in
 *    bfloat16 and stays near the golden;
 *  - an adapter that does not fit is refused with the adapter file and
 *    the tensor named: unknown target, shape or rank mismatch, a lora_A
 *    without lora_B and the reverse, NaN, an unknown or misshapen
 *    replacement, LoRA on emb.weight, overflow.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/tools/pthwrite.h"
#include "engine/base/half.h"
#include "engine/load/checkpoint.h"
#include "engine/rwkv.h"
#include "testutil.h"

#define GOLDEN ABS_TOP_SRCDIR "/tests/golden/lora/"

/* A tensor to write: float32 values, stored as dtype. */
struct spec {
    const char *name;
    int ndim;
    int64_t shape[CKPT_MAX_DIMS];
    const float *data;
};

/* Writes the tensors as a .pth file (exits 99 on failure). */
static void write_pth(const char *path, const struct spec *t, int n, enum ckpt_dtype dtype)
{
    char err[RWKV_ERRLEN];
    pthw *w = pthw_new(path, PTHW_PTH, err, sizeof err);
    int i;

    for (i = 0; w && i < n; i++) {
        if (pthw_declare(w, t[i].name, dtype, t[i].ndim, t[i].shape, err, sizeof err)) {
            break;
        }
    }
    if (!w || i < n || pthw_begin(w, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", path, err);
        exit(99);
    }
    for (i = 0; i < n; i++) {
        size_t count = (size_t)ckpt_numel(t[i].ndim, t[i].shape, INT64_MAX);
        uint16_t *h = malloc(count * sizeof *h);

        for (size_t k = 0; dtype == CKPT_BF16 && k < count; k++) {
            h[k] = half_f32_to_bf16(t[i].data[k]);
        }
        if (pthw_write(w, dtype == CKPT_BF16 ? (const void *)h : t[i].data, err, sizeof err)) {
            fprintf(stderr, "%s: %s\n", path, err);
            exit(99);
        }
        free(h);
    }
    if (pthw_finish(w, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", path, err);
        exit(99);
    }
    pthw_free(w);
}

static int32_t tokens[64];
static size_t n_tokens;

static void read_tokens(const char *path)
{
    char *text = read_file(path, NULL), *p = text, *end;

    n_tokens = 0;
    while (text && n_tokens < 64) {
        long v = strtol(p, &end, 10);
        if (end == p) {
            break;
        }
        tokens[n_tokens++] = (int32_t)v;
        p = end;
    }
    free(text);
}

static rwkv_model *load(const char *path, enum rwkv_dtype dtype, const struct rwkv_lora *lora,
                        int n, char *err)
{
    struct rwkv_load_options o = { dtype, 1, RWKV_CACHE_MODE_ON };

    return rwkv_model_load_lora(path, &o, lora, n, err, RWKV_ERRLEN);
}

/* All logits of the tokens (RNN mode), malloc'd; NULL on error. */
static float *logits_of(rwkv_model *m)
{
    int V = rwkv_model_info(m)->n_vocab;
    float *out = malloc(n_tokens * (size_t)V * sizeof *out);
    rwkv_state *s = rwkv_state_new(m);
    char err[RWKV_ERRLEN];
    rwkv_context *ctx = rwkv_context_new(m, 1, err, sizeof err);

    for (size_t t = 0; out && s && t < n_tokens; t++) {
        if (!ctx || rwkv_eval(ctx, s, &tokens[t], 1, out + t * (size_t)V, 0, err, sizeof err)) {
            free(out);
            out = NULL;
        }
    }
    rwkv_context_free(ctx);
    rwkv_state_free(s);
    return out;
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double m = 0;

    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        m = d > m ? d : m;
    }
    return m;
}

/* Deterministic small values. */
static void fill(float *v, size_t n, double seed, double amp)
{
    for (size_t i = 0; i < n; i++) {
        v[i] = (float)(amp * sin(seed + 0.731 * (double)i + 0.017 * (double)(i % 97) * seed));
    }
}

static float bf16_round(float f)
{
    uint16_t h = half_f32_to_bf16(f);
    float out;

    ckpt_to_f32(CKPT_BF16, &h, &out, 1);
    return out;
}

/* The adapter's pairs: target, rank, rows, cols. */
static const struct {
    const char *target, *a, *b;
    int r, rows, cols;
} pairs[] = {
    { "blocks.1.att.key.weight", "blocks.1.att.key.lora_A", "blocks.1.att.key.lora_B", 3, 128,
      128 },
    { "blocks.2.ffn.value.weight", "blocks.2.ffn.value.lora_A", "blocks.2.ffn.value.lora_B", 2,
      128, 512 },
    { "head.weight", "head.lora_A", "head.lora_B", 2, 1000, 128 },
};
#define N_PAIRS 3
#define REPLACED "blocks.0.ln1.weight"

/* Writes an adapter (pairs plus one replacement, in dtype) and the model
 * merged by hand from base at scale; compares their logits. */
static void test_merge_matches_hand_merge(enum ckpt_dtype dtype)
{
    const char *base = shared_path("fixtures/models/v7-fp32.pth");
    char err[RWKV_ERRLEN];
    ckpt_file *f = ckpt_open(base, err, sizeof err);
    struct spec ad[2 * N_PAIRS + 1], *all;
    float *a[N_PAIRS], *b[N_PAIRS], repl[128], **data;
    const float scale = 1.5f;
    static char path[256];
    struct rwkv_lora lora = { path, scale };
    size_t n, i;
    int p;

    if (!f) {
        ok(0, "open %s: %s", base, err);
        return;
    }
    snprintf(path, sizeof path, "%s", tmp_path("adapter.pth"));
    n = ckpt_count(f);
    for (p = 0; p < N_PAIRS; p++) {
        size_t na = (size_t)pairs[p].r * pairs[p].cols, nb = (size_t)pairs[p].rows * pairs[p].r;
        a[p] = malloc(na * sizeof(float));
        b[p] = malloc(nb * sizeof(float));
        fill(a[p], na, 1.0 + p, 0.09);
        fill(b[p], nb, 2.0 + p, 0.08);
        for (size_t k = 0; dtype == CKPT_BF16 && k < na; k++) {
            a[p][k] = bf16_round(a[p][k]);
        }
        for (size_t k = 0; dtype == CKPT_BF16 && k < nb; k++) {
            b[p][k] = bf16_round(b[p][k]);
        }
        ad[2 * p] = (struct spec){ pairs[p].a, 2, { pairs[p].r, pairs[p].cols }, a[p] };
        ad[2 * p + 1] = (struct spec){ pairs[p].b, 2, { pairs[p].rows, pairs[p].r }, b[p] };
    }
    ckpt_to_f32(ckpt_find(f, REPLACED)->dtype, ckpt_find(f, REPLACED)->data, repl, 128);
    for (i = 0; i < 128; i++) {
        repl[i] += (float)(0.05 * sin((double)i));
        repl[i] = dtype == CKPT_BF16 ? bf16_round(repl[i]) : repl[i];
    }
    ad[2 * N_PAIRS] = (struct spec){ REPLACED, 1, { 128 }, repl };
    write_pth(lora.path, ad, 2 * N_PAIRS + 1, dtype);

    /* the merged model, computed here in double */
    all = calloc(n, sizeof *all);
    data = calloc(n, sizeof *data);
    for (i = 0; i < n; i++) {
        const struct ckpt_tensor *t = ckpt_at(f, i);

        data[i] = malloc((size_t)t->numel * sizeof(float));
        ckpt_to_f32(t->dtype, t->data, data[i], (size_t)t->numel);
        all[i].name = t->name;
        all[i].ndim = t->ndim;
        memcpy(all[i].shape, t->shape, sizeof t->shape);
        all[i].data = data[i];
        if (!strcmp(t->name, REPLACED)) {
            memcpy(data[i], repl, sizeof repl);
        }
        for (p = 0; p < N_PAIRS; p++) {
            if (strcmp(t->name, pairs[p].target)) {
                continue;
            }
            for (int r = 0; r < pairs[p].rows; r++) {
                for (int c = 0; c < pairs[p].cols; c++) {
                    double d = 0;
                    for (int k = 0; k < pairs[p].r; k++) {
                        d += (double)b[p][r * pairs[p].r + k] * a[p][k * pairs[p].cols + c];
                    }
                    data[i][(size_t)r * pairs[p].cols + c] += (float)(scale * d);
                }
            }
        }
    }
    write_pth(tmp_path("merged.pth"), all, (int)n, CKPT_F32);

    {
        rwkv_model *hand = load(tmp_path("merged.pth"), RWKV_DTYPE_AUTO, NULL, 0, err);
        rwkv_model *merged = hand ? load(base, RWKV_DTYPE_AUTO, &lora, 1, err) : NULL;
        rwkv_model *plain = merged ? load(base, RWKV_DTYPE_AUTO, NULL, 0, err) : NULL;
        float *lh = hand ? logits_of(hand) : NULL, *lm = merged ? logits_of(merged) : NULL;
        float *lp = plain ? logits_of(plain) : NULL;
        size_t count = n_tokens * 1000;
        const char *what = dtype == CKPT_BF16 ? "bfloat16" : "float32";

        ok(lh && lm && max_diff(lh, lm, count) < 1e-5,
           "%s adapter (3 pairs incl. head, 1 replacement) at scale 1.5 = the model merged "
           "by hand (max diff %g) %s", what, lh && lm ? max_diff(lh, lm, count) : -1.0, err);
        ok(lm && lp && max_diff(lm, lp, count) > 0.1,
           "%s adapter: the logits move (max diff from the plain model %g)", what,
           lm && lp ? max_diff(lm, lp, count) : -1.0);
        if (dtype == CKPT_F32) {
            ok(merged && plain && rwkv_model_info(merged)->n_lora == 1 &&
               rwkv_model_info(plain)->n_lora == 0 &&
               rwkv_model_info(merged)->fingerprint != rwkv_model_info(plain)->fingerprint,
               "n_lora 1, and the fingerprint includes the adapter");
        }
        free(lh);
        free(lm);
        free(lp);
        rwkv_model_free(hand);
        rwkv_model_free(merged);
        rwkv_model_free(plain);
    }
    for (i = 0; i < n; i++) {
        free(data[i]);
    }
    free(data);
    free(all);
    for (p = 0; p < N_PAIRS; p++) {
        free(a[p]);
        free(b[p]);
    }
    ckpt_close(f);
}

/* Copies src to dst (exits 99 on failure). */
static void copy_file(const char *src, const char *dst)
{
    size_t len;
    void *data = read_file(src, &len);

    if (!data) {
        fprintf(stderr, "cannot read %s\n", src);
        exit(99);
    }
    write_file(dst, data, len);
    free(data);
}

/* One load of the copied model: its cache result, its logits in *out. */
static enum rwkv_cache_result cached_load(enum rwkv_dtype dtype, const struct rwkv_lora *lora,
                                          int n, float **out)
{
    char err[RWKV_ERRLEN];
    rwkv_model *m = load(tmp_path("m.pth"), dtype, lora, n, err);
    enum rwkv_cache_result r;

    *out = NULL;
    if (!m) {
        diag("load: %s", err);
        return (enum rwkv_cache_result)-1;
    }
    r = rwkv_model_cache(m)->result;
    *out = logits_of(m);
    rwkv_model_free(m);
    return r;
}

static void test_cache(enum rwkv_dtype dtype)
{
    const char *name = rwkv_dtype_name(dtype);
    static char path[256];
    struct rwkv_lora two = { path, 2.0f }, other = { path, 2.5f };
    size_t count = n_tokens * 1000, len;
    float *first, *again, *scaled, *plain, *back, *golden, *base_golden;
    enum rwkv_cache_result r1, r2, r3, r4, r5, r6, r7;

    snprintf(path, sizeof path, "%s", tmp_path("ad.pth"));
    copy_file(shared_path("fixtures/models/v7-fp32.pth"), tmp_path("m.pth"));
    copy_file(GOLDEN "v7-fp32.lora.pth", path);
    golden = read_file(GOLDEN "v7-fp32.lora.logits.f32", &len);
    base_golden = read_file(shared_path("fixtures/models/v7-fp32.logits.f32"), NULL);

    r1 = cached_load(dtype, &two, 1, &first);
    r2 = cached_load(dtype, &two, 1, &again);
    ok(r1 == RWKV_CACHE_WRITTEN && r2 == RWKV_CACHE_USED && first && again &&
       !memcmp(first, again, count * sizeof(float)),
       "%s + adapter: the first load writes the cache, the second reads it, same logits",
       name);
    if (dtype == RWKV_DTYPE_Q8) {
        ok(first && golden && len == count * sizeof(float) &&
           max_diff(first, golden, count) < 0.5 && max_diff(first, base_golden, count) > 1.0,
           "q8 + adapter is near the adapter's golden (%g) and away from the base's (%g)",
           first && golden ? max_diff(first, golden, count) : -1.0,
           first && base_golden ? max_diff(first, base_golden, count) : -1.0);
    }
    r3 = cached_load(dtype, &other, 1, &scaled);
    r4 = cached_load(dtype, &other, 1, &back);
    ok(r3 == RWKV_CACHE_WRITTEN && r4 == RWKV_CACHE_USED && first && scaled &&
       max_diff(first, scaled, count) > 0.01,
       "%s: another scale rebuilds the cache (then reads it), other logits", name);
    free(back);
    r5 = cached_load(dtype, NULL, 0, &plain);
    ok(r5 == RWKV_CACHE_WRITTEN && plain && first && max_diff(first, plain, count) > 0.1,
       "%s: no adapter rebuilds the cache, other logits", name);
    r6 = cached_load(dtype, &two, 1, &back);
    ok(r6 == RWKV_CACHE_WRITTEN && back && first && !memcmp(first, back, count * sizeof(float)),
       "%s: the adapter again rebuilds it, the first logits again", name);
    free(back);
    copy_file(GOLDEN "v7-fp32.lora2.pth", path);
    r7 = cached_load(dtype, &two, 1, &back);
    ok(r7 == RWKV_CACHE_WRITTEN && back && first && max_diff(first, back, count) > 0.01,
       "%s: other contents under the same adapter path and scale rebuild it", name);
    free(back);
    free(first);
    free(again);
    free(scaled);
    free(plain);
    free(golden);
    free(base_golden);
}

/* v6.pth is bfloat16: at its own format the merged matrices are bf16. */
static void test_bf16_in_place(void)
{
    struct rwkv_lora lora = { GOLDEN "v6.lora.pth", 2.0f };
    char err[RWKV_ERRLEN];
    rwkv_model *m;
    float *l = NULL, *golden, *base_golden;
    size_t count;

    read_tokens(shared_path("fixtures/models/v6.tokens"));
    count = n_tokens * 1000;
    m = load(shared_path("fixtures/models/v6.pth"), RWKV_DTYPE_AUTO, &lora, 1, err);
    golden = read_file(GOLDEN "v6.lora.logits.f32", NULL);
    base_golden = read_file(shared_path("fixtures/models/v6.logits.f32"), NULL);
    if (m) {
        l = logits_of(m);
    }
    ok(m && l && golden && base_golden &&
       rwkv_model_info(m)->compute_dtype == RWKV_DTYPE_BF16 &&
       rwkv_model_cache(m)->result == RWKV_CACHE_NONE &&
       max_diff(l, golden, count) < 0.25 && max_diff(l, base_golden, count) > 1.0,
       "v6 (bf16) + adapter at its own format: bf16 kernels, no cache, near the golden (%g), "
       "away from the base's (%g) %s", l && golden ? max_diff(l, golden, count) : -1.0,
       l && base_golden ? max_diff(l, base_golden, count) : -1.0, m ? "" : err);
    free(l);
    free(golden);
    free(base_golden);
    rwkv_model_free(m);
}

/* Writes the tensors as adapter NAME in tmpdir, loads v7-fp32 with it at
 * scale; passes when the load fails with every needle in the message. */
static void refused(const char *what, const struct spec *t, int n, float scale,
                    const char *needle1, const char *needle2)
{
    static char path[256];
    struct rwkv_lora lora = { path, scale };
    char err[RWKV_ERRLEN] = "";
    rwkv_model *m;

    snprintf(path, sizeof path, "%s", tmp_path("bad.pth"));
    write_pth(path, t, n, CKPT_F32);
    m = load(shared_path("fixtures/models/v7-fp32.pth"), RWKV_DTYPE_AUTO, &lora, 1, err);
    ok(!m && strstr(err, "bad.pth") && strstr(err, needle1) &&
       (!needle2 || strstr(err, needle2)) && !strchr(err, '\n'),
       "refused: %s: %s", what, err);
    rwkv_model_free(m);
}

static void test_refusals(void)
{
    static float a[4 * 512], b[1000 * 4], big[4 * 128], nan_b[128 * 4], vec[128];
    const float inf_scale = 1e38f;

    fill(a, 4 * 512, 3.0, 0.1);
    fill(b, 1000 * 4, 4.0, 0.1);
    for (int i = 0; i < 4 * 128; i++) {
        big[i] = 1e20f;
    }
    memcpy(nan_b, b, sizeof nan_b);
    nan_b[17] = NAN;
    fill(vec, 128, 5.0, 1.0);
    {
        struct spec t[] = { { "blocks.7.att.key.lora_A", 2, { 4, 128 }, a },
                            { "blocks.7.att.key.lora_B", 2, { 128, 4 }, b } };
        refused("unknown target", t, 2, 1, "blocks.7.att.key.lora_A",
                "no blocks.7.att.key.weight");
    }
    {
        struct spec t[] = { { "blocks.0.att.key.lora_A", 2, { 4, 128 }, a },
                            { "blocks.0.att.key.lora_B", 2, { 64, 4 }, b } };
        refused("shape mismatch", t, 2, 1, "blocks.0.att.key.lora_A", "64x128");
    }
    {
        struct spec t[] = { { "blocks.0.att.key.lora_A", 2, { 4, 128 }, a },
                            { "blocks.0.att.key.lora_B", 2, { 128, 3 }, b } };
        refused("rank mismatch", t, 2, 1, "blocks.0.att.key.lora_A", "one rank");
    }
    {
        struct spec t[] = { { "blocks.0.att.key.lora_A", 2, { 4, 128 }, a } };
        refused("lora_A without lora_B", t, 1, 1, "blocks.0.att.key.lora_A",
                "no blocks.0.att.key.lora_B");
    }
    {
        struct spec t[] = { { "blocks.0.ffn.key.lora_B", 2, { 512, 4 }, b } };
        refused("lora_B without lora_A", t, 1, 1, "blocks.0.ffn.key.lora_B",
                "no blocks.0.ffn.key.lora_A");
    }
    {
        struct spec t[] = { { "blocks.0.att.key.lora_A", 2, { 4, 128 }, a },
                            { "blocks.0.att.key.lora_B", 2, { 128, 4 }, nan_b } };
        refused("NaN", t, 2, 1, "blocks.0.att.key.lora_B", "1 NaN/Inf value");
    }
    {
        struct spec t[] = { { "blocks.0.att.not_a_tensor", 1, { 128 }, vec } };
        refused("unknown replacement", t, 1, 1, "blocks.0.att.not_a_tensor", "no tensor");
    }
    {
        struct spec t[] = { { "blocks.0.ln1.weight", 1, { 64 }, vec } };
        refused("misshapen replacement", t, 1, 1, "blocks.0.ln1.weight", "64");
    }
    {
        struct spec t[] = { { "emb.lora_A", 2, { 4, 128 }, a },
                            { "emb.lora_B", 2, { 1000, 4 }, b } };
        refused("LoRA on emb.weight", t, 2, 1, "emb.lora_A", "not supported");
    }
    {
        struct spec t[] = { { "blocks.0.att.key.lora_A", 2, { 4, 128 }, big },
                            { "blocks.0.att.key.lora_B", 2, { 128, 4 }, big } };
        refused("overflow", t, 2, inf_scale, "blocks.0.att.key.weight", "overflow");
    }
    {
        static char path[256];
        struct rwkv_lora lora = { path, 1 };
        char err[RWKV_ERRLEN] = "";
        rwkv_model *m;

        snprintf(path, sizeof path, "%s", tmp_path("nothing-here.pth"));
        m = load(shared_path("fixtures/models/v7-fp32.pth"), RWKV_DTYPE_AUTO, &lora, 1, err);
        ok(!m && strstr(err, "nothing-here.pth"), "refused: a missing adapter: %s", err);
        rwkv_model_free(m);
    }
}

int main(void)
{
    if (tmpdir_make("test_lora") != 0) {
        return 99;
    }
    /* caches of the read-only fixtures go to the private folder */
    setenv("XDG_CACHE_HOME", tmp_path("xdg"), 1);
    read_tokens(shared_path("fixtures/models/v7-fp32.tokens"));
    if (n_tokens == 0) {
        printf("1..0 # SKIP model fixtures not found\n");
        tmpdir_remove();
        return 0;
    }
    test_merge_matches_hand_merge(CKPT_F32);
    test_merge_matches_hand_merge(CKPT_BF16);
    test_cache(RWKV_DTYPE_Q8);
    test_cache(RWKV_DTYPE_Q4);
    test_refusals();
    test_bf16_in_place();
    tmpdir_remove();
    return tap_done();
}
