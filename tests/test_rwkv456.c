/* test_rwkv456.c - RWKV-4, 5.x and 6 forward passes against the official
 * package's goldens (../shared/fixtures/models and trained): every logits
 * row and the final state within 1e-4 in RNN mode, sequence mode and mixed
 * chunk sizes; greedy continuations of the trained models; load errors. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/rwkv.h"
#include "tests/evalonce.h"
#include "tests/tap.h"
#include "tests/tuned.h"

#define TOL 1e-4

struct fixture {
    const char *dir;        /* under fixtures/ */
    const char *name;       /* golden prefix */
    const char *file;       /* model file */
    int version, minor;
    const char *version_name;
    int n_head, head_size;
    int trained;            /* has a greedy continuation in the manifest */
};

static const struct fixture fixtures[] = {
    { "models", "v4", "v4.pth", 4, 0, "4", 0, 0, 0 },
    { "models", "v5.2", "v5.2.pth", 5, 2, "5.2", 2, 64, 0 },
    { "models", "v6", "v6.pth", 6, 0, "6", 2, 64, 0 },
    { "models", "v6", "v6.safetensors", 6, 0, "6", 2, 64, 0 },
    { "trained", "tiny-4v0-660K", "tiny-4v0-660K.pth", 4, 0, "4", 0, 0, 1 },
    { "trained", "tiny-5v1-730K", "tiny-5v1-730K.pth", 5, 0, "5.0", 8, 8, 1 },
    { "trained", "tiny-5v2-730K", "tiny-5v2-730K.pth", 5, 2, "5.2", 8, 8, 1 },
};

static float *read_floats(const char *path, size_t *n)
{
    size_t len = 0;
    float *data = read_file(path, &len);

    *n = len / sizeof(float);
    return data;
}

static int32_t *read_tokens(const char *path, size_t *n)
{
    char *text = read_file(path, NULL);
    int32_t *tokens;
    char *p, *end;

    *n = 0;
    if (!text) {
        return NULL;
    }
    tokens = malloc((strlen(text) / 2 + 1) * sizeof *tokens);
    for (p = text;; p = end) {
        long v = strtol(p, &end, 10);

        if (end == p) {
            break;
        }
        tokens[(*n)++] = (int32_t)v;
    }
    free(text);
    return tokens;
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double d = 0;

    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);

        if (!(e <= d)) {
            d = e;      /* NaN makes the difference infinite */
            if (isnan(e)) {
                return INFINITY;
            }
        }
    }
    return d;
}

/* The greedy continuation recorded in trained/manifest.json for file. */
static char *manifest_continuation(const char *file)
{
    char *json = read_file(shared_path("fixtures/trained/manifest.json"), NULL);
    char key[128], *p, *out = NULL;
    size_t n = 0;

    if (!json) {
        return NULL;
    }
    snprintf(key, sizeof key, "\"%s\"", file);
    p = strstr(json, key);
    if (p) {
        p = strstr(p, "\"greedy_continuation\"");
    }
    if (p) {
        p = strchr(p + strlen("\"greedy_continuation\""), '"');
    }
    if (p) {
        out = malloc(strlen(p));
        for (p++; *p && *p != '"'; p++) {
            if (*p == '\\' && p[1]) {
                p++;
            }
            out[n++] = *p;
        }
        out[n] = 0;
    }
    free(json);
    return out;
}

/* Runs tokens through a fresh state in chunks following the pattern
 * (0 = the rest), all logits rows into rows; returns the state. */
static rwkv_state *run_chunks(rwkv_model *model, const int32_t *tokens, size_t n,
                              const int *pattern, int n_pattern, float *rows, int *failed)
{
    const struct rwkv_info *info = rwkv_model_info(model);
    rwkv_state *state = rwkv_state_new(model);
    char err[RWKV_ERRLEN];
    size_t done = 0;

    for (int i = 0; done < n; i++) {
        size_t len = (size_t)pattern[i % n_pattern];

        if (len == 0 || len > n - done) {
            len = n - done;
        }
        if (eval_once(model, state, tokens + done, len, rows + done * (size_t)info->n_vocab,
                      1, err, sizeof err) != 0) {
            diag("rwkv_eval: %s", err);
            *failed = 1;
        }
        done += len;
    }
    return state;
}

static void test_fixture(const struct fixture *fx)
{
    char rel[256], err[RWKV_ERRLEN];
    const struct rwkv_info *info;
    rwkv_model *model;
    float *golden_logits, *golden_state, *rows, *last;
    int32_t *tokens;
    size_t n_tokens, n_logits, n_state, V;
    int failed = 0;

    snprintf(rel, sizeof rel, "fixtures/%s/%s", fx->dir, fx->file);
    model = rwkv_model_load(shared_path(rel), NULL, err, sizeof err);
    if (!ok(model != NULL, "%s loads", fx->file)) {
        diag("%s", err);
        return;
    }
    info = rwkv_model_info(model);
    ok(info->version == fx->version && info->minor == fx->minor &&
       strcmp(info->version_name, fx->version_name) == 0,
       "%s: version %s (got %d.%d \"%s\")", fx->file, fx->version_name, info->version,
       info->minor, info->version_name);
    ok(info->n_head == fx->n_head && info->head_size == fx->head_size,
       "%s: %d heads of %d (got %d of %d)", fx->file, fx->n_head, fx->head_size,
       info->n_head, info->head_size);

    snprintf(rel, sizeof rel, "fixtures/%s/%s.tokens", fx->dir, fx->name);
    tokens = read_tokens(shared_path(rel), &n_tokens);
    snprintf(rel, sizeof rel, "fixtures/%s/%s.logits.f32", fx->dir, fx->name);
    golden_logits = read_floats(shared_path(rel), &n_logits);
    snprintf(rel, sizeof rel, "fixtures/%s/%s.state.f32", fx->dir, fx->name);
    golden_state = read_floats(shared_path(rel), &n_state);
    V = (size_t)info->n_vocab;
    if (!tokens || !golden_logits || !golden_state || n_logits != n_tokens * V) {
        ok(0, "%s: golden files readable and consistent", fx->name);
        goto out;
    }
    ok(info->state_floats == n_state, "%s: state has %zu floats (got %zu)", fx->file, n_state,
       info->state_floats);
    if (info->state_floats != n_state) {
        goto out;
    }
    rows = malloc(n_tokens * V * sizeof *rows);
    last = malloc(V * sizeof *last);

    /* RNN mode: one token per call, the last row each time. */
    {
        rwkv_state *state = rwkv_state_new(model);
        double d = 0;

        for (size_t t = 0; t < n_tokens; t++) {
            if (eval_once(model, state, tokens + t, 1, last, 0, err, sizeof err) != 0) {
                failed = 1;
            }
            double e = max_diff(last, golden_logits + t * V, V);
            if (e > d) {
                d = e;
            }
        }
        ok(!failed && d <= TOL, "%s: RNN mode logits, every row (max err %.3g)", fx->file, d);
        d = max_diff(rwkv_state_cdata(state), golden_state, n_state);
        ok(d <= TOL, "%s: RNN mode final state (max err %.3g)", fx->file, d);
        rwkv_state_free(state);
    }

    /* Sequence mode and mixed chunk sizes, all rows. */
    {
        static const int whole[] = { 0 };
        static const int mixed[] = { 1, 5, 7, 0 };
        static const int sevens[] = { 7, 1, 3 };
        static const struct {
            const char *name;
            const int *pattern;
            int n;
        } runs[] = {
            { "sequence mode", whole, 1 },
            { "chunks 1,5,7,rest", mixed, 4 },
            { "chunks 7,1,3,...", sevens, 3 },
        };

        for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
            rwkv_state *state;
            double dl, ds;

            memset(rows, 0, n_tokens * V * sizeof *rows);
            state = run_chunks(model, tokens, n_tokens, runs[r].pattern, runs[r].n, rows,
                               &failed);
            dl = max_diff(rows, golden_logits, n_tokens * V);
            ds = max_diff(rwkv_state_cdata(state), golden_state, n_state);
            ok(!failed && dl <= TOL, "%s: %s logits, every row (max err %.3g)", fx->file,
               runs[r].name, dl);
            ok(ds <= TOL, "%s: %s final state (max err %.3g)", fx->file, runs[r].name, ds);
            rwkv_state_free(state);
        }
    }

    /* Sequence mode with only the last row, and with no logits at all. */
    {
        rwkv_state *state = rwkv_state_new(model);
        double d;

        eval_once(model, state, tokens, n_tokens, last, 0, err, sizeof err);
        d = max_diff(last, golden_logits + (n_tokens - 1) * V, V);
        ok(d <= TOL, "%s: sequence mode, last row only (max err %.3g)", fx->file, d);
        rwkv_state_reset(state);
        eval_once(model, state, tokens, n_tokens - 1, NULL, 0, err, sizeof err);
        eval_once(model, state, tokens + n_tokens - 1, 1, last, 0, err, sizeof err);
        d = fmax(max_diff(last, golden_logits + (n_tokens - 1) * V, V),
                 max_diff(rwkv_state_cdata(state), golden_state, n_state));
        ok(d <= TOL, "%s: prefix without logits, then one token (max err %.3g)", fx->file, d);
        rwkv_state_free(state);
    }

    /* Greedy continuation of the trained byte-level models. */
    if (fx->trained) {
        char *want = manifest_continuation(fx->file);
        char got[64];
        rwkv_state *state = rwkv_state_new(model);
        size_t len = want ? strlen(want) : 0;

        eval_once(model, state, tokens, n_tokens, last, 0, err, sizeof err);
        for (size_t i = 0; i < len && i < sizeof got - 1; i++) {
            int32_t best = 0;

            for (size_t v = 1; v < V; v++) {
                if (last[v] > last[best]) {
                    best = (int32_t)v;
                }
            }
            got[i] = (char)best;
            eval_once(model, state, &best, 1, last, 0, err, sizeof err);
        }
        got[len < sizeof got ? len : sizeof got - 1] = 0;
        ok(want && len > 0 && strcmp(got, want) == 0, "%s: greedy continuation \"%s\"",
           fx->file, got);
        free(want);
        rwkv_state_free(state);
    }

    /* A bad token id is refused and leaves the state alone. */
    {
        rwkv_state *state = rwkv_state_new(model);
        rwkv_state *fresh = rwkv_state_new(model);
        int32_t bad[2] = { tokens[0], (int32_t)V };

        ok(eval_once(model, state, bad, 2, last, 0, err, sizeof err) == -1 && err[0] &&
           max_diff(rwkv_state_cdata(state), rwkv_state_cdata(fresh), n_state) == 0,
           "%s: token id %zu refused (%s)", fx->file, V, err);
        rwkv_state_free(state);
        rwkv_state_free(fresh);
    }
    free(rows);
    free(last);
out:
    free(tokens);
    free(golden_logits);
    free(golden_state);
    rwkv_model_free(model);
}

/* ------------------------------------------------------------------------ */
/* Broken files: a generated RWKV-5.2 / RWKV-6 safetensors model with one
 * tensor of the wrong size must fail to load with a message naming it. */

struct gen_tensor {
    char name[64];
    int ndim;
    int shape[3];
};

static int gen_count;
static struct gen_tensor gen[128];

static void gen_add(const char *name, int ndim, int d0, int d1, int d2)
{
    struct gen_tensor *t = &gen[gen_count++];

    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->shape[2] = d2;
}

/* Tensor list of a one-layer model: C = 16, 2 heads of 8, vocab 8.
 * version 5: 5.2; 51: 5.1 (decay and bonus one per head, as time_first =
 * log u); 6: 6. */
static void gen_model(int version)
{
    const int C = 16, H = 2, N = 8, V = 8, F = 32;

    gen_count = 0;
    gen_add("emb.weight", 2, V, C, 0);
    gen_add("blocks.0.ln0.weight", 1, C, 0, 0);
    gen_add("blocks.0.ln0.bias", 1, C, 0, 0);
    gen_add("blocks.0.ln1.weight", 1, C, 0, 0);
    gen_add("blocks.0.ln1.bias", 1, C, 0, 0);
    gen_add("blocks.0.ln2.weight", 1, C, 0, 0);
    gen_add("blocks.0.ln2.bias", 1, C, 0, 0);
    gen_add("blocks.0.att.ln_x.weight", 1, C, 0, 0);
    gen_add("blocks.0.att.ln_x.bias", 1, C, 0, 0);
    gen_add("blocks.0.att.key.weight", 2, C, C, 0);
    gen_add("blocks.0.att.value.weight", 2, C, C, 0);
    gen_add("blocks.0.att.receptance.weight", 2, C, C, 0);
    gen_add("blocks.0.att.gate.weight", 2, C, C, 0);
    gen_add("blocks.0.att.output.weight", 2, C, C, 0);
    if (version == 51) {
        gen_add("blocks.0.att.time_first", 1, H, 0, 0);
        gen_add("blocks.0.att.time_decay", 1, H, 0, 0);
    } else {
        gen_add("blocks.0.att.time_faaaa", 2, H, N, 0);
    }
    if (version == 5) {
        gen_add("blocks.0.att.time_decay", 2, H, N, 0);
    }
    if (version == 5 || version == 51) {
        gen_add("blocks.0.att.time_mix_k", 3, 1, 1, C);
        gen_add("blocks.0.att.time_mix_v", 3, 1, 1, C);
        gen_add("blocks.0.att.time_mix_r", 3, 1, 1, C);
        gen_add("blocks.0.att.time_mix_g", 3, 1, 1, C);
        gen_add("blocks.0.ffn.time_mix_k", 3, 1, 1, C);
        gen_add("blocks.0.ffn.time_mix_r", 3, 1, 1, C);
    } else {
        gen_add("blocks.0.att.time_decay", 3, 1, 1, C);
        gen_add("blocks.0.att.time_maa_x", 3, 1, 1, C);
        gen_add("blocks.0.att.time_maa_w", 3, 1, 1, C);
        gen_add("blocks.0.att.time_maa_k", 3, 1, 1, C);
        gen_add("blocks.0.att.time_maa_v", 3, 1, 1, C);
        gen_add("blocks.0.att.time_maa_r", 3, 1, 1, C);
        gen_add("blocks.0.att.time_maa_g", 3, 1, 1, C);
        gen_add("blocks.0.att.time_maa_w1", 2, C, 5 * 4, 0);
        gen_add("blocks.0.att.time_maa_w2", 3, 5, 4, C);
        gen_add("blocks.0.att.time_decay_w1", 2, C, 8, 0);
        gen_add("blocks.0.att.time_decay_w2", 2, 8, C, 0);
        gen_add("blocks.0.ffn.time_maa_k", 3, 1, 1, C);
        gen_add("blocks.0.ffn.time_maa_r", 3, 1, 1, C);
    }
    gen_add("blocks.0.ffn.key.weight", 2, F, C, 0);
    gen_add("blocks.0.ffn.value.weight", 2, C, F, 0);
    gen_add("blocks.0.ffn.receptance.weight", 2, C, C, 0);
    gen_add("ln_out.weight", 1, C, 0, 0);
    gen_add("ln_out.bias", 1, C, 0, 0);
    gen_add("head.weight", 2, V, C, 0);
}

static size_t gen_numel(const struct gen_tensor *t)
{
    size_t n = 1;

    for (int d = 0; d < t->ndim; d++) {
        n *= (size_t)t->shape[d];
    }
    return n;
}

/* Element j of a generated tensor: a pattern that depends on the name, so
 * the same tensor has the same values in every generated file.  Decay and
 * bonus depend on the head only, so a 5.1 file (one per head) and a 5.2
 * file (one per channel) describe the same model. */
static float gen_value(const struct gen_tensor *t, size_t j)
{
    size_t head = gen_numel(t) == 2 ? j : j / 8;    /* 2 heads of 8 */
    unsigned hash = 0;

    if (strstr(t->name, "time_decay") && !strstr(t->name, "_w")) {
        return -1.0f - 0.5f * (float)head;
    }
    if (strstr(t->name, "time_first")) {
        return 0.1f * (float)head - 0.3f;
    }
    if (strstr(t->name, "time_faaaa")) {
        return expf(0.1f * (float)head - 0.3f);
    }
    if (strstr(t->name, "ln")) {
        return 1.0f;
    }
    for (const char *p = t->name; *p; p++) {
        hash = hash * 31 + (unsigned char)*p;
    }
    return 0.01f * (float)((j * 7 + hash) % 13) - 0.03f;
}

/* Writes the generated tensors as a float32 safetensors file. */
static int gen_write(const char *path)
{
    char header[16384];
    size_t len = 0, offset = 0;
    uint64_t hlen;
    FILE *f;

    len += (size_t)snprintf(header + len, sizeof header - len, "{");
    for (int i = 0; i < gen_count; i++) {
        size_t bytes = gen_numel(&gen[i]) * 4;

        len += (size_t)snprintf(header + len, sizeof header - len,
                                "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[", i ? "," : "",
                                gen[i].name);
        for (int d = 0; d < gen[i].ndim; d++) {
            len += (size_t)snprintf(header + len, sizeof header - len, "%s%d", d ? "," : "",
                                    gen[i].shape[d]);
        }
        len += (size_t)snprintf(header + len, sizeof header - len,
                                "],\"data_offsets\":[%zu,%zu]}", offset, offset + bytes);
        offset += bytes;
    }
    len += (size_t)snprintf(header + len, sizeof header - len, "}");
    while (len % 8) {
        header[len++] = ' ';
    }
    f = fopen(path, "wb");
    if (!f) {
        return -1;
    }
    hlen = len;
    fwrite(&hlen, 8, 1, f);     /* little-endian hosts only, as the engine */
    fwrite(header, 1, len, f);
    for (int i = 0; i < gen_count; i++) {
        size_t n = gen_numel(&gen[i]);

        for (size_t j = 0; j < n; j++) {
            float v = gen_value(&gen[i], j);

            fwrite(&v, 4, 1, f);
        }
    }
    return fclose(f);
}

static void test_broken(int version, const char *tensor, int ndim, int d0, int d1, int d2)
{
    char path[256], err[RWKV_ERRLEN] = "";
    rwkv_model *model;

    mkdir("tests", 0777);
    mkdir("tests/tmp", 0777);
    snprintf(path, sizeof path, "tests/tmp/rwkv456-v%d.safetensors", version);
    gen_model(version);
    if (!ok(gen_write(path) == 0, "wrote a generated RWKV-%d model", version)) {
        return;
    }
    model = rwkv_model_load(path, NULL, err, sizeof err);
    ok(model && rwkv_model_info(model)->version == version,
       "generated RWKV-%d model (2 heads of 8) loads", version);
    if (model) {
        const struct rwkv_info *info = rwkv_model_info(model);
        rwkv_state *state = rwkv_state_new(model);
        float *logits = malloc((size_t)info->n_vocab * sizeof *logits);
        int32_t tokens[3] = { 1, 2, 3 };
        int finite = 1;

        ok(eval_once(model, state, tokens, 3, logits, 0, err, sizeof err) == 0,
           "generated RWKV-%d model runs", version);
        for (int i = 0; i < info->n_vocab; i++) {
            finite &= isfinite(logits[i]) != 0;
        }
        ok(finite, "generated RWKV-%d model gives finite logits", version);
        free(logits);
        rwkv_state_free(state);
        rwkv_model_free(model);
    } else {
        diag("%s", err);
    }

    for (int i = 0; i < gen_count; i++) {
        if (strcmp(gen[i].name, tensor) == 0) {
            gen[i].ndim = ndim;
            gen[i].shape[0] = d0;
            gen[i].shape[1] = d1;
            gen[i].shape[2] = d2;
        }
    }
    gen_write(path);
    err[0] = 0;
    model = rwkv_model_load(path, NULL, err, sizeof err);
    ok(model == NULL && strstr(err, tensor) != NULL,
       "RWKV-%d with a bad %s is refused (%s)", version, tensor, err);
    rwkv_model_free(model);
    remove(path);
}

/* Logits of tokens (all rows, in chunks of chunk) and the final state of
 * a generated model, or -1 if it does not load. */
static int gen_run(const char *path, int chunk, float *logits, float *state,
                   struct rwkv_info *info)
{
    static const int32_t tokens[6] = { 1, 7, 3, 3, 0, 5 };
    char err[RWKV_ERRLEN];
    rwkv_model *model = rwkv_model_load(path, NULL, err, sizeof err);
    rwkv_state *st;

    if (!model) {
        diag("%s", err);
        return -1;
    }
    *info = *rwkv_model_info(model);
    st = rwkv_state_new(model);
    for (int t = 0; t < 6; t += chunk) {
        eval_once(model, st, tokens + t, (size_t)chunk, logits + t * info->n_vocab, 1, err,
                  sizeof err);
    }
    memcpy(state, rwkv_state_cdata(st), info->state_floats * sizeof *state);
    rwkv_state_free(st);
    rwkv_model_free(model);
    return 0;
}

/* RWKV-5.1 (decay and bonus per head, bonus stored as its log) against the
 * same model written as 5.2 (per channel): no golden exists for 5.1, but
 * the two files must compute the same thing. */
static void test_v51(void)
{
    float logits[2][6 * 8], state[2][1024];
    struct rwkv_info info[2];
    int ran;

    mkdir("tests", 0777);
    mkdir("tests/tmp", 0777);
    gen_model(51);
    gen_write("tests/tmp/rwkv456-v51.safetensors");
    gen_model(5);
    gen_write("tests/tmp/rwkv456-v52.safetensors");
    for (int chunk = 1; chunk <= 6; chunk *= 6) {
        ran = gen_run("tests/tmp/rwkv456-v51.safetensors", chunk, logits[0], state[0],
                      &info[0]) == 0 &&
              gen_run("tests/tmp/rwkv456-v52.safetensors", chunk, logits[1], state[1],
                      &info[1]) == 0;
        if (chunk == 1) {
            ok(ran && info[0].version == 5 && info[0].minor == 1 &&
               strcmp(info[0].version_name, "5.1") == 0 && info[1].minor == 2,
               "generated 5.1 and 5.2 files detected as such (%s, %s)",
               ran ? info[0].version_name : "-", ran ? info[1].version_name : "-");
        }
        ok(ran && info[0].state_floats == info[1].state_floats &&
           max_diff(logits[0], logits[1], 6 * 8) <= 1e-5 &&
           max_diff(state[0], state[1], info[0].state_floats) <= 1e-5,
           "RWKV-5.1 per-head decay and exp(time_first) match the 5.2 form (chunks of %d)",
           chunk);
    }
    remove("tests/tmp/rwkv456-v51.safetensors");
    remove("tests/tmp/rwkv456-v52.safetensors");
}

int main(void)
{
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) {
        test_fixture(&fixtures[i]);
    }
    test_broken(5, "blocks.0.att.time_decay", 1, 3, 0, 0);
    test_broken(6, "blocks.0.att.time_maa_w2", 3, 5, 3, 16);
    test_v51();
    check_tuned_fixture("v6.pth", "v6", 1);
    return tap_done();
}
