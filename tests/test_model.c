/*
 * test_model.c - the model description: version and sizes of every fixture
 * read from tensor shapes, states, rwkv_eval's checks, and the one-line
 * errors of damaged or foreign state dicts (copies made here).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/load/checkpoint.h"
#include "engine/rwkv.h"
#include "tests/tap.h"
#include "tests/testutil.h"

/* What the fixtures are (fixtures/README.md, the manifests, and shapes
 * listed with Python's zipfile + pickletools). */
static const struct expect {
    const char *file;
    const char *version;
    int layers, embd, heads, head_size, vocab, ffn;
    size_t state_floats;
    enum rwkv_dtype dtype;
    uint64_t params;
    int lora_decay, lora_aaa, lora_mv, lora_gate, lora_maa;
} fixtures[] = {
    { "fixtures/models/v4.pth", "4", 3, 128, 0, 0, 1000, 512, 1920, RWKV_DTYPE_F16, 899712,
      0, 0, 0, 0, 0 },
    { "fixtures/models/v5.2.pth", "5.2", 3, 128, 2, 64, 1000, 448, 25344, RWKV_DTYPE_BF16,
      900864, 0, 0, 0, 0, 0 },
    { "fixtures/models/v6.pth", "6", 3, 128, 2, 64, 1000, 448, 25344, RWKV_DTYPE_BF16, 1073664,
      64, 0, 0, 0, 32 },
    { "fixtures/models/v6.safetensors", "6", 3, 128, 2, 64, 1000, 448, 25344, RWKV_DTYPE_BF16,
      1073664, 64, 0, 0, 0, 32 },
    { "fixtures/models/v7.pth", "7", 3, 128, 2, 64, 1000, 512, 25344, RWKV_DTYPE_BF16, 943616,
      32, 32, 32, 32, 0 },
    { "fixtures/models/v7.torch2.pth", "7", 3, 128, 2, 64, 1000, 512, 25344, RWKV_DTYPE_BF16,
      943616, 32, 32, 32, 32, 0 },
    { "fixtures/models/v7.safetensors", "7", 3, 128, 2, 64, 1000, 512, 25344, RWKV_DTYPE_BF16,
      943616, 32, 32, 32, 32, 0 },
    { "fixtures/models/v7-fp32.pth", "7", 3, 128, 2, 64, 1000, 512, 25344, RWKV_DTYPE_F32,
      943616, 32, 32, 32, 32, 0 },
    { "fixtures/models/v7-world.pth", "7", 2, 64, 1, 64, 65536, 256, 8448, RWKV_DTYPE_BF16,
      8518208, 32, 32, 32, 32, 0 },
    { "fixtures/trained/tiny-4v0-660K.pth", "4", 4, 128, 0, 0, 256, 256, 2560, RWKV_DTYPE_F32,
      661504, 0, 0, 0, 0, 0 },
    { "fixtures/trained/tiny-5v1-730K.pth", "5.0", 12, 64, 8, 8, 256, 256, 7680,
      RWKV_DTYPE_F32, 680640, 0, 0, 0, 0, 0 },
    { "fixtures/trained/tiny-5v2-730K.pth", "5.2", 12, 64, 8, 8, 256, 256, 7680,
      RWKV_DTYPE_F32, 731904, 0, 0, 0, 0, 0 },
    { "fixtures/trained/tiny-7v0-834K.pth", "7", 12, 64, 1, 64, 256, 256, 50688,
      RWKV_DTYPE_F32, 829888, 32, 32, 32, 32, 0 },
};

static const struct rwkv_load_options one_thread = { RWKV_DTYPE_AUTO, 1, RWKV_CACHE_MODE_ON };

/* Reads the first row of the golden logits next to a fixture. */
static float *golden_row(const char *model_rel, int n_vocab, int32_t *first_token)
{
    char rel[256], *tokens;
    size_t len, base = strlen(model_rel) - (strstr(model_rel, ".safetensors") ? 12 : 4);
    float *logits;

    if (strstr(model_rel, "torch2")) {
        base -= 7;
    }
    snprintf(rel, sizeof(rel), "%.*s.tokens", (int)base, model_rel);
    tokens = read_file(shared_path(rel), NULL);
    snprintf(rel, sizeof(rel), "%.*s.logits.f32", (int)base, model_rel);
    logits = read_file(shared_path(rel), &len);
    if (!tokens || !logits || len < (size_t)n_vocab * 4) {
        free(tokens);
        free(logits);
        return NULL;
    }
    *first_token = (int32_t)strtol(tokens, NULL, 10);
    free(tokens);
    return logits;
}

static void test_fixture(const struct expect *e)
{
    char err[RWKV_ERRLEN];
    const struct rwkv_info *info;
    rwkv_model *m;
    rwkv_context *ctx;
    rwkv_state *s, *c, *fresh;
    struct stat st;
    float *logits, *golden;
    int32_t tok = 0;
    size_t i;
    int finite = 1, changed = 0;
    double maxdiff = 0;

    m = rwkv_model_load(shared_path(e->file), &one_thread, err, sizeof(err));
    if (!ok(m != NULL, "%s loads", e->file)) {
        diag("%s", err);
        return;
    }
    info = rwkv_model_info(m);
    ok(!strcmp(info->version_name, e->version) && info->version == e->version[0] - '0',
       "%s: RWKV-%s (want %s)", e->file, info->version_name, e->version);
    ok(info->n_layer == e->layers && info->n_embd == e->embd && info->n_vocab == e->vocab &&
       info->ffn_size == e->ffn, "%s: %d layers, embd %d, vocab %d, ffn %d", e->file,
       info->n_layer, info->n_embd, info->n_vocab, info->ffn_size);
    ok(info->n_head == e->heads && info->head_size == e->head_size, "%s: heads %d x %d",
       e->file, info->n_head, info->head_size);
    ok(info->lora_decay == e->lora_decay && info->lora_aaa == e->lora_aaa &&
       info->lora_mv == e->lora_mv && info->lora_gate == e->lora_gate &&
       info->lora_maa == e->lora_maa, "%s: LoRA ranks decay %d a %d v %d gate %d mix %d",
       e->file, info->lora_decay, info->lora_aaa, info->lora_mv, info->lora_gate,
       info->lora_maa);
    ok(info->state_floats == e->state_floats, "%s: state of %zu floats (manifest %zu)",
       e->file, info->state_floats, e->state_floats);
    ok(info->stored_dtype == e->dtype && info->compute_dtype == e->dtype,
       "%s: stored %s, computed %s", e->file, rwkv_dtype_name(info->stored_dtype),
       rwkv_dtype_name(info->compute_dtype));
    ok(info->n_params == e->params && info->n_extra_tensors == 0,
       "%s: %llu parameters, %d extra tensors", e->file, (unsigned long long)info->n_params,
       info->n_extra_tensors);
    ok(stat(shared_path(e->file), &st) == 0 && (uint64_t)st.st_size == info->file_size,
       "%s: file size %llu", e->file, (unsigned long long)info->file_size);
    /* every weight is read once per token, the embedding only one row */
    {
        uint64_t lo = (uint64_t)((double)(e->params - (uint64_t)e->vocab * e->embd) *
                                 (e->dtype == RWKV_DTYPE_F32 ? 4 : 2));
        ok(info->bytes_per_token >= lo && info->bytes_per_token < lo * 2,
           "%s: %llu bytes per token (weights without the embedding: %llu)", e->file,
           (unsigned long long)info->bytes_per_token, (unsigned long long)lo);
    }

    s = rwkv_state_new(m);
    fresh = rwkv_state_new(m);
    logits = malloc((size_t)info->n_vocab * sizeof(float));
    ok(s && rwkv_state_floats(s) == info->state_floats, "%s: new state", e->file);
    if (info->version == 4) {
        int good = 1, l;
        for (l = 0; l < info->n_layer; l++) {
            const float *p = rwkv_state_cdata(s) + (size_t)l * 5 * info->n_embd;
            good &= p[0] == 0 && p[3 * info->n_embd] <= -1e29f && p[4 * info->n_embd] == 0;
        }
        ok(good, "%s: zero state has pp = -1e30", e->file);
    } else {
        int good = 1;
        for (i = 0; i < info->state_floats; i++) {
            good &= rwkv_state_cdata(s)[i] == 0;
        }
        ok(good, "%s: zero state is all zeros", e->file);
    }
    golden = golden_row(e->file, info->n_vocab, &tok);
    ctx = rwkv_context_new(m, 0, err, sizeof(err));
    ok(ctx && rwkv_eval(ctx, s, &tok, 1, logits, 0, err, sizeof(err)) == 0,
       "%s: eval token %d", e->file, tok);
    rwkv_context_free(ctx);
    for (i = 0; i < (size_t)info->n_vocab; i++) {
        finite &= isfinite(logits[i]);
        if (golden && fabs(logits[i] - golden[i]) > maxdiff) {
            maxdiff = fabs(logits[i] - golden[i]);
        }
    }
    for (i = 0; i < info->state_floats; i++) {
        changed |= rwkv_state_cdata(s)[i] != rwkv_state_cdata(fresh)[i];
    }
    ok(finite && changed, "%s: logits finite, state advanced", e->file);
    if (golden) {
        ok(maxdiff < 1e-3, "%s: first logits match the official package (max diff %.2g, "
           "tolerance 1e-3)", e->file, maxdiff);
    }
    free(golden);
    c = rwkv_state_clone(s);
    ok(c && !memcmp(rwkv_state_cdata(c), rwkv_state_cdata(s), info->state_floats * 4),
       "%s: clone equals", e->file);
    rwkv_state_reset(s);
    ok(!memcmp(rwkv_state_cdata(fresh), rwkv_state_cdata(s), info->state_floats * 4),
       "%s: reset gives the zero state", e->file);
    rwkv_state_copy(s, c);
    ok(!memcmp(rwkv_state_cdata(c), rwkv_state_cdata(s), info->state_floats * 4),
       "%s: copy", e->file);
    rwkv_state_free(c);
    rwkv_state_free(s);
    rwkv_state_free(fresh);
    free(logits);
    rwkv_model_free(m);
}

static void test_eval_errors(void)
{
    char err[RWKV_ERRLEN];
    rwkv_model *m = rwkv_model_load(shared_path("fixtures/models/v7-world.pth"), &one_thread,
                                    err, sizeof(err));
    rwkv_context *ctx;
    rwkv_state *s;
    int32_t bad[3] = { 1, 70000, 2 }, neg = -1;
    float *logits;

    if (!m) {
        ok(0, "v7-world.pth loads: %s", err);
        return;
    }
    s = rwkv_state_new(m);
    ctx = rwkv_context_new(m, 0, err, sizeof(err));
    logits = malloc(65536 * sizeof(float));
    ok(rwkv_eval(ctx, s, bad, 3, logits, 0, err, sizeof(err)) == -1 &&
       strstr(err, "token 70000 out of range (n_vocab 65536)"), "token id past the vocab: "
       "\"%s\"", err);
    ok(rwkv_eval(ctx, s, &neg, 1, logits, 0, err, sizeof(err)) == -1 &&
       strstr(err, "token -1 out of range"), "negative token id: \"%s\"", err);
    ok(rwkv_eval(ctx, s, bad, 0, logits, 0, err, sizeof(err)) == -1 && strstr(err, "no tokens"),
       "no tokens: \"%s\"", err);
    {
        int good = 1;
        size_t i;
        for (i = 0; i < rwkv_state_floats(s); i++) {
            good &= rwkv_state_cdata(s)[i] == 0;
        }
        ok(good, "refused evals leave the state alone");
    }
    free(logits);
    rwkv_state_free(s);
    rwkv_context_free(ctx);
    rwkv_model_free(m);
}

static void expect_error(const char *what, const char *path, const char *want)
{
    char err[RWKV_ERRLEN];
    rwkv_model *m;

    memset(err, 0, sizeof(err));
    m = rwkv_model_load(path, &one_thread, err, sizeof(err));
    ok(m == NULL && strstr(err, path) == err && strstr(err, want) && !strchr(err, '\n'),
       "%s: \"%s\"", what, err);
    rwkv_model_free(m);
}

static void test_damaged(void)
{
    unsigned char *buf;
    size_t len;
    const char *p;

    buf = read_file(shared_path("fixtures/models/v7.pth"), &len);
    if (!buf) {
        skip("v7.pth not found");
        return;
    }
    /* size (128,128) -> (128,64) in the pickle: a shape contradicting n_embd */
    p = patched("key.pth", buf, len, "blocks.1.att.key.weight", "K\x80K\x80\x86",
                "K\x80K\x40\x86", 5, 0);
    expect_error("key matrix of the wrong shape", p,
                 "tensor blocks.1.att.key.weight: expected 128x128, found 128x64");
    p = patched("head.pth", buf, len, "head.weight", "M\xe8\x03K\x80\x86", "M\xe7\x03K\x80\x86",
                6, 0);
    expect_error("head contradicting the embedding's vocab", p,
                 "tensor head.weight: expected 1000x128, found 999x128");
    p = patched("rk.pth", buf, len, "blocks.0.att.r_k", "K\x02K\x40\x86", "K\x02K\x20\x86", 5, 0);
    expect_error("heads that do not cover n_embd", p,
                 "tensor blocks.0.att.r_k: shape 2x32 does not split n_embd 128 into heads");
    p = patched("ffn.pth", buf, len, "blocks.2.ffn.value.weight", "K\x80M\x00\x02\x86",
                "K\x80M\x00\x01\x86", 6, 0);
    expect_error("ffn value contradicting ffn key", p,
                 "tensor blocks.2.ffn.value.weight: expected 128x512, found 128x256");
    p = patched("missing.pth", buf, len, NULL, "blocks.2.att.k_k", "blocks.2.att.kXk", 16, 0);
    expect_error("a required tensor missing", p,
                 "tensor blocks.2.att.k_k missing (RWKV-7 needs it)");
    p = patched("foreign.pth", buf, len, NULL, "emb.weight", "tok.weight", 10, 0);
    expect_error("state dict that is not RWKV", p, "not an RWKV model: no emb.weight tensor");
    free(buf);

    buf = read_file(shared_path("fixtures/models/v6.pth"), &len);
    if (buf) {
        p = patched("v6w2.pth", buf, len, "blocks.1.att.time_maa_w2", "K\x05K\x20K\x80\x87",
                    "K\x04K\x20K\x80\x87", 7, 0);
        expect_error("RWKV-6 mix LoRA of the wrong shape", p,
                     "tensor blocks.1.att.time_maa_w2: expected 5x32x128, found 4x32x128");
        p = patched("v6w1.pth", buf, len, "blocks.0.att.time_maa_w1", "K\x80K\xa0\x86",
                    "K\x80K\x9f\x86", 5, 0);
        expect_error("RWKV-6 mix LoRA width not a multiple of 5", p,
                     "tensor blocks.0.att.time_maa_w1: expected 128x?, found 128x159");
        free(buf);
    }
    buf = read_file(shared_path("fixtures/models/v4.pth"), &len);
    if (buf) {
        p = patched("v4.pth", buf, len, "blocks.2.att.time_first", "K\x80\x85", "K\x40\x85", 3,
                    0);
        expect_error("RWKV-4 vector of the wrong size", p,
                     "tensor blocks.2.att.time_first: expected 128 elements, found 64");
        free(buf);
    }
    write_file(tmp_path("empty.pth"), "", 0);
    expect_error("empty file", tmp_path("empty.pth"), "empty file");
}

/* Writes every tensor of src (plus one named extra, a copy of the tensor
 * named like) to a safetensors file, reversed in order. */
static int write_safetensors(const char *path, const ckpt_file *src, const char *extra,
                             const char *like)
{
    size_t n = ckpt_count(src), i, cap = 1 << 20, hl = 0, off = 0, total = 0;
    char *h = malloc(cap);
    const struct ckpt_tensor *lt = ckpt_find(src, like);
    unsigned char *out;
    FILE *f;
    int d;

    hl += (size_t)snprintf(h + hl, cap - hl, "{");
    for (i = 0; i <= n; i++) {
        const struct ckpt_tensor *t = i < n ? ckpt_at(src, n - 1 - i) : lt;
        const char *name = i < n ? t->name : extra;
        hl += (size_t)snprintf(h + hl, cap - hl, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                               i ? "," : "", name, t->dtype == CKPT_F32 ? "F32"
                               : t->dtype == CKPT_F16 ? "F16" : "BF16");
        for (d = 0; d < t->ndim; d++) {
            hl += (size_t)snprintf(h + hl, cap - hl, "%s%lld", d ? "," : "",
                                   (long long)t->shape[d]);
        }
        hl += (size_t)snprintf(h + hl, cap - hl, "],\"data_offsets\":[%zu,%zu]}", off,
                               off + t->nbytes);
        off += t->nbytes;
    }
    hl += (size_t)snprintf(h + hl, cap - hl, "}");
    while (hl % 8) {
        h[hl++] = ' ';
    }
    total = 8 + hl + off;
    out = malloc(total);
    wr64(out, hl);
    memcpy(out + 8, h, hl);
    off = 8 + hl;
    for (i = 0; i <= n; i++) {
        const struct ckpt_tensor *t = i < n ? ckpt_at(src, n - 1 - i) : lt;
        memcpy(out + off, t->data, t->nbytes);
        off += t->nbytes;
    }
    f = fopen(path, "wb");
    if (f) {
        fwrite(out, 1, total, f);
        fclose(f);
    }
    free(out);
    free(h);
    return f ? 0 : -1;
}

static void test_extra_and_fingerprint(void)
{
    char err[RWKV_ERRLEN];
    ckpt_file *src = ckpt_open(shared_path("fixtures/models/v7.pth"), err, sizeof(err));
    rwkv_model *a, *b, *c, *d;

    if (!src) {
        ok(0, "v7.pth opens: %s", err);
        return;
    }
    write_safetensors(tmp_path("extra.safetensors"), src, "blocks.0.att.v0", "blocks.1.att.v0");
    ckpt_close(src);
    a = rwkv_model_load(shared_path("fixtures/models/v7.pth"), &one_thread, err, sizeof(err));
    b = rwkv_model_load(tmp_path("extra.safetensors"), &one_thread, err, sizeof(err));
    if (!ok(b != NULL, "RWKV-7 file with a layer-0 v0 loads")) {
        diag("%s", err);
    } else {
        ok(rwkv_model_info(b)->n_extra_tensors == 1 &&
           !strcmp(rwkv_model_extra_tensor(b, 0), "blocks.0.att.v0") &&
           rwkv_model_extra_tensor(b, 1) == NULL, "the unused tensor is listed as extra: %s",
           rwkv_model_extra_tensor(b, 0));
        ok(rwkv_model_info(b)->n_params == rwkv_model_info(a)->n_params,
           "extra tensors are not counted as parameters");
        ok(rwkv_model_info(a)->fingerprint != rwkv_model_info(b)->fingerprint,
           "an extra tensor changes the fingerprint");
    }
    c = rwkv_model_load(shared_path("fixtures/models/v7.safetensors"), &one_thread, err,
                        sizeof(err));
    d = rwkv_model_load(shared_path("fixtures/models/v7-fp32.pth"), &one_thread, err,
                        sizeof(err));
    if (a && c && d) {
        ok(rwkv_model_info(a)->fingerprint == rwkv_model_info(c)->fingerprint,
           "same weights, same fingerprint in .pth and safetensors (%016llx)",
           (unsigned long long)rwkv_model_info(a)->fingerprint);
        ok(rwkv_model_info(a)->fingerprint != rwkv_model_info(d)->fingerprint,
           "other weights, other fingerprint");
    } else {
        ok(0, "fingerprint models load");
    }
    rwkv_model_free(a);
    rwkv_model_free(b);
    rwkv_model_free(c);
    rwkv_model_free(d);
}

static void test_dtype_names(void)
{
    enum rwkv_dtype d = RWKV_DTYPE_AUTO;
    int good = 1;

    good &= rwkv_dtype_parse("bf16", &d) == 0 && d == RWKV_DTYPE_BF16;
    good &= rwkv_dtype_parse("FP32", &d) == 0 && d == RWKV_DTYPE_F32;
    good &= rwkv_dtype_parse("f16", &d) == 0 && d == RWKV_DTYPE_F16;
    good &= rwkv_dtype_parse("int8", &d) == 0 && d == RWKV_DTYPE_Q8;
    good &= rwkv_dtype_parse("q4", &d) == 0 && d == RWKV_DTYPE_Q4;
    good &= rwkv_dtype_parse("auto", &d) == 0 && d == RWKV_DTYPE_AUTO;
    good &= rwkv_dtype_parse("fp8", &d) == -1;
    ok(good, "rwkv_dtype_parse accepts the documented names and refuses others");
    ok(!strcmp(rwkv_dtype_name(RWKV_DTYPE_BF16), "bf16") &&
       !strcmp(rwkv_dtype_name(RWKV_DTYPE_Q8), "q8"), "rwkv_dtype_name");
}

int main(void)
{
    size_t i;

    if (tmpdir_make("test_model") != 0) {
        return 99;
    }
    for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
        test_fixture(&fixtures[i]);
    }
    test_eval_errors();
    test_damaged();
    test_extra_and_fingerprint();
    test_dtype_names();
    tmpdir_remove();
    return tap_done();
}
