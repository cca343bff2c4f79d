/* test_variants.c - the RWKV-7 family's variants (RWKV-7a DeepEmbed, RWKV-7b
 * DEA, RWKV-8 Heron rc00) through the engine API, on the random-weight models of
 * tests/golden/variants (goldens from the official code, see README.md
 * there):
 *  - detection: version, minor and name, from the tensors;
 *  - float32 logits match the goldens in RNN, sequence and chunked mode,
 *    and the final state does;
 *  - q8 and q4 load and run, close to float32 (KL bound);
 *  - a state file saved mid-way continues exactly in a fresh load, and is
 *    refused by the other variant;
 *  - a file missing a variant tensor, or with a per-token table of the
 *    wrong shape, is refused with a message naming the tensor;
 *  - RWKV-7a's tensors with one of RWKV-7b's are told apart as 7b, not run
 *    as 7a, and refused for the 7b tensors they lack;
 *  - RWKV-7b's history (the DEA attention's growing cache): clone, copy
 *    and reset carry it, a cancelled evaluation restored from a copy and
 *    a batch give the golden logits, its bound refuses an evaluation
 *    with the state unchanged, and its serialized form is checked;
 *  - bytes/token counts one row of each per-token table, not the table
 *    (they are read from the mapped file as the tokens come). */
#include <math.h>

#include "app/tools/pthwrite.h"
#include "engine/load/checkpoint.h"
#include "engine/model/context_test.h"
#include "engine/load/statefile.h"
#include "tests/evalonce.h"
#include "tests/kl.h"
#include "tests/testutil.h"

#define GOLDEN ABS_TOP_SRCDIR "/tests/golden/variants/"
#define TOL 1e-4
#define MAX_TOKENS 64

struct variant {
    const char *name;           /* v7a: files NAME.pth, NAME.tokens, ... */
    int version, minor;
    const char *version_name;
    const char *table;          /* its per-token table in layer 0 */
};

static const struct variant variants[] = {
    { "v7a", 7, 1, "7a", "blocks.0.ffn.s_emb.weight" },
    { "v7b", 7, 2, "7b", "blocks.0.qkv.k_emb.weight" },
    { "v8", 8, 0, "8", "blocks.0.ffn.enn.weight" },
};
#define N_VARIANTS (sizeof variants / sizeof variants[0])

static int32_t tokens[MAX_TOKENS];
static int n_tokens;
static float *golden, *golden_state;
static size_t golden_state_floats;

static const char *golden_path(const struct variant *v, const char *ext)
{
    static char buf[2][1024];
    static int next;
    char *b = buf[next++ & 1];

    snprintf(b, sizeof buf[0], GOLDEN "%s%s", v->name, ext);
    return b;
}

static int read_goldens(const struct variant *v)
{
    char *s = read_file(golden_path(v, ".tokens"), NULL), *p, *end;
    size_t len;

    n_tokens = 0;
    for (p = s; s && n_tokens < MAX_TOKENS; p = end) {
        long t = strtol(p, &end, 10);

        if (end == p) {
            break;
        }
        tokens[n_tokens++] = (int32_t)t;
    }
    free(s);
    free(golden);
    free(golden_state);
    golden = read_file(golden_path(v, ".logits.f32"), NULL);
    golden_state = read_file(golden_path(v, ".state.f32"), &len);
    golden_state_floats = len / sizeof(float);
    return n_tokens > 0 && golden && golden_state ? 0 : -1;
}

static rwkv_model *load(const char *path, enum rwkv_dtype dtype, char *err, size_t errlen)
{
    struct rwkv_load_options lo = { .dtype = dtype, .n_threads = 2,
                                    .cache = RWKV_CACHE_MODE_OFF };

    return rwkv_model_load(path, &lo, err, errlen);
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double m = 0;

    for (size_t i = 0; i < n; i++) {
        m = fmax(m, fabs((double)a[i] - b[i]));
    }
    return m;
}

/* Logits of all tokens fed chunk at a time from the zero state into out;
 * the final state into state.  0 or -1. */
static int run(const rwkv_model *m, int chunk, float *out, rwkv_state *state)
{
    size_t V = (size_t)rwkv_model_info(m)->n_vocab;
    char err[RWKV_ERRLEN];

    rwkv_state_reset(state);
    for (int done = 0; done < n_tokens; done += chunk) {
        int n = n_tokens - done < chunk ? n_tokens - done : chunk;

        if (eval_once(m, state, tokens + done, (size_t)n, out + done * V, 1, err,
                      sizeof err) != 0) {
            diag("%s", err);
            return -1;
        }
    }
    return 0;
}

static void test_goldens(const struct variant *v, rwkv_model *m)
{
    const struct rwkv_info *info = rwkv_model_info(m);
    size_t V = (size_t)info->n_vocab;
    float *out = malloc((size_t)n_tokens * V * sizeof *out);
    rwkv_state *state = rwkv_state_new(m);
    static const int chunks[] = { 1, MAX_TOKENS, 5 };
    static const char *const modes[] = { "RNN mode", "sequence mode", "chunks of 5" };

    ok(info->version == v->version && info->minor == v->minor &&
       !strcmp(info->version_name, v->version_name),
       "%s: detected as RWKV-%s (version %d, minor %d)", v->name, info->version_name,
       info->version, info->minor);
    ok(rwkv_state_floats(state) == golden_state_floats,
       "%s: state of %zu floats, as the official code's", v->name, rwkv_state_floats(state));
    for (int c = 0; c < 3; c++) {
        double dl, ds;

        if (run(m, chunks[c], out, state) != 0) {
            ok(0, "%s: %s runs", v->name, modes[c]);
            continue;
        }
        dl = max_diff(out, golden, (size_t)n_tokens * V);
        ds = rwkv_state_floats(state) == golden_state_floats
             ? max_diff(rwkv_state_cdata(state), golden_state, golden_state_floats) : 1e9;
        ok(dl < TOL && ds < TOL, "%s float32 %s: logits within %.1e of the official code's, "
           "state within %.1e", v->name, modes[c], dl, ds);
    }
    rwkv_state_free(state);
    free(out);
}

/* KL(fp32 || dtype) per token, averaged over the tokens, in RNN mode. */
static void test_quantised(const struct variant *v, const float *ref, enum rwkv_dtype dtype,
                           const char *dname, double bound)
{
    char err[RWKV_ERRLEN];
    rwkv_model *m = load(golden_path(v, ".pth"), dtype, err, sizeof err);
    size_t V;
    float *out;
    rwkv_state *state;
    double kl = 0;
    int same_argmax = 0;

    if (!m) {
        ok(0, "%s %s loads: %s", v->name, dname, err);
        return;
    }
    V = (size_t)rwkv_model_info(m)->n_vocab;
    out = malloc((size_t)n_tokens * V * sizeof *out);
    state = rwkv_state_new(m);
    if (run(m, 1, out, state) != 0) {
        ok(0, "%s %s runs", v->name, dname);
    } else {
        for (int t = 0; t < n_tokens; t++) {
            const float *a = ref + t * V, *b = out + t * V;
            size_t ia = 0, ib = 0;

            for (size_t i = 0; i < V; i++) {
                ia = a[i] > a[ia] ? i : ia;
                ib = b[i] > b[ib] ? i : ib;
            }
            kl += row_kl(a, b, V);
            same_argmax += ia == ib;
        }
        kl /= n_tokens;
        ok(rwkv_model_info(m)->compute_dtype == dtype && kl <= bound,
           "%s %s: loads and runs, KL to float32 %.2e <= %.0e nats/token, same argmax on "
           "%d of %d tokens", v->name, dname, kl, bound, same_argmax, n_tokens);
    }
    rwkv_state_free(state);
    rwkv_model_free(m);
    free(out);
}

/* Saved after half the tokens, loaded by a fresh load, the rest of the
 * tokens give the golden rows. */
static void test_statefile(const struct variant *v, const struct variant *other)
{
    char err[RWKV_ERRLEN], path[256];
    rwkv_model *m = load(golden_path(v, ".pth"), RWKV_DTYPE_F32, err, sizeof err);
    rwkv_model *m2 = load(golden_path(v, ".pth"), RWKV_DTYPE_F32, err, sizeof err);
    rwkv_model *mo = load(golden_path(other, ".pth"), RWKV_DTYPE_F32, err, sizeof err);
    int half = n_tokens / 2, good = 1;
    size_t V;
    float *out;
    rwkv_state *s, *s2;
    rwkv_statefile *sf;

    if (!m || !m2 || !mo) {
        ok(0, "%s: models for the state file test load: %s", v->name, err);
        rwkv_model_free(m);
        rwkv_model_free(m2);
        rwkv_model_free(mo);
        return;
    }
    snprintf(path, sizeof path, "%s/%s.state", tmpdir, v->name);
    V = (size_t)rwkv_model_info(m)->n_vocab;
    out = malloc(V * sizeof *out);
    s = rwkv_state_new(m);
    s2 = rwkv_state_new(m2);
    good &= eval_once(m, s, tokens, (size_t)half, NULL, 0, err, sizeof err) == 0;
    good &= rwkv_statefile_save(path, m, s, NULL, 0, err, sizeof err) == 0;
    sf = good ? rwkv_statefile_load(path, m2, err, sizeof err) : NULL;
    if (!sf) {
        diag("%s", err);
        good = 0;
    } else {
        rwkv_statefile_get_state(sf, s2);
        rwkv_statefile_free(sf);
    }
    for (int t = half; good && t < n_tokens; t++) {
        good &= eval_once(m2, s2, &tokens[t], 1, out, 0, err, sizeof err) == 0;
        good &= max_diff(out, golden + t * V, V) < TOL;
    }
    ok(good, "%s: state file saved after %d tokens continues in a fresh load to the golden "
       "logits of the other %d", v->name, half, n_tokens - half);
    sf = rwkv_statefile_load(path, mo, err, sizeof err);
    ok(!sf && strstr(err, "RWKV-") != NULL,
       "%s: its state file is refused by the RWKV-%s model (%s)", v->name,
       other->version_name, err);
    rwkv_statefile_free(sf);
    free(out);
    rwkv_state_free(s);
    rwkv_state_free(s2);
    rwkv_model_free(m);
    rwkv_model_free(m2);
    rwkv_model_free(mo);
}

/* Copies model src to dst through the writer, leaving out tensor drop,
 * declaring tensor cut with its second dimension halved (its first rows'
 * data), and adding after the others, when add is not NULL, a tensor of
 * that name holding a copy of blocks.0.att.key.weight.  0 or -1. */
static int rewrite(const char *src, const char *dst, const char *drop, const char *cut,
                   const char *add)
{
    char err[RWKV_ERRLEN];
    ckpt_file *f = ckpt_open(src, err, sizeof err);
    pthw *w = f ? pthw_new(dst, PTHW_PTH, err, sizeof err) : NULL;
    int rc = w ? 0 : -1;

    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        if (pass == 1) {
            rc = pthw_begin(w, err, sizeof err);
        }
        for (size_t i = 0; rc == 0 && i < ckpt_count(f); i++) {
            const struct ckpt_tensor *t = ckpt_at(f, i);
            int64_t shape[CKPT_MAX_DIMS];

            if (!strcmp(t->name, drop)) {
                continue;
            }
            memcpy(shape, t->shape, sizeof shape);
            if (!strcmp(t->name, cut)) {
                shape[1] /= 2;
            }
            rc = pass == 0 ? pthw_declare(w, t->name, t->dtype, t->ndim, shape, err, sizeof err)
                           : pthw_write(w, t->data, err, sizeof err);
        }
        if (rc == 0 && add) {
            const struct ckpt_tensor *t = ckpt_find(f, "blocks.0.att.key.weight");

            rc = pass == 0 ? pthw_declare(w, add, t->dtype, t->ndim, t->shape, err, sizeof err)
                           : pthw_write(w, t->data, err, sizeof err);
        }
    }
    rc = rc ? rc : pthw_finish(w, err, sizeof err);
    if (rc) {
        diag("rewrite %s: %s", dst, err);
    }
    pthw_free(w);
    ckpt_close(f);
    return rc;
}

static void test_bad_files(const struct variant *v)
{
    char err[RWKV_ERRLEN], path[256], missing[64];
    rwkv_model *m;

    snprintf(missing, sizeof missing, "blocks.1.ffn.%s", v->version == 8 ? "enn.weight" : "s0");
    snprintf(path, sizeof path, "%s/%s-missing.pth", tmpdir, v->name);
    if (rewrite(golden_path(v, ".pth"), path, missing, "", NULL) != 0) {
        ok(0, "%s: file without %s written", v->name, missing);
    } else {
        m = load(path, RWKV_DTYPE_F32, err, sizeof err);
        ok(!m && strstr(err, missing), "%s without %s is refused (%s)", v->name, missing, err);
        rwkv_model_free(m);
    }
    snprintf(path, sizeof path, "%s/%s-cut.pth", tmpdir, v->name);
    if (rewrite(golden_path(v, ".pth"), path, "", v->table, NULL) != 0) {
        ok(0, "%s: file with a narrow %s written", v->name, v->table);
    } else {
        m = load(path, RWKV_DTYPE_F32, err, sizeof err);
        ok(!m && strstr(err, v->table), "%s with %s of half its width is refused (%s)",
           v->name, v->table, err);
        rwkv_model_free(m);
    }
}

/* RWKV-7a's tensors plus one of the DEA attention's (qkv.qq) are RWKV-7b:
 * told apart, not run as 7a with an extra tensor, and refused for the 7b
 * tensors they lack. */
static void test_7b_told_apart(void)
{
    char err[RWKV_ERRLEN], path[256];
    rwkv_model *m;

    snprintf(path, sizeof path, "%s/v7a-qq.pth", tmpdir);
    if (rewrite(GOLDEN "v7a.pth", path, "", "", "blocks.0.qkv.qq.weight") != 0) {
        ok(0, "a file with one of RWKV-7b's qkv tensors written");
        return;
    }
    m = load(path, RWKV_DTYPE_F32, err, sizeof err);
    ok(!m && strstr(err, "blocks.0.qkv.") && strstr(err, "RWKV-7b"),
       "7a plus qkv.qq is read as RWKV-7b and refused for its missing tensors (%s)", err);
    rwkv_model_free(m);
}

/* Feeds tokens [from, to) one at a time on ctx; checks each row against
 * the goldens.  1 when all match. */
static int continues(rwkv_context *ctx, rwkv_state *s, int from, int to, size_t V)
{
    char err[RWKV_ERRLEN];
    float *out = malloc(V * sizeof *out);
    int good = out != NULL;

    for (int t = from; good && t < to; t++) {
        good &= rwkv_eval(ctx, s, &tokens[t], 1, out, 0, err, sizeof err) == 0 &&
                max_diff(out, golden + (size_t)t * V, V) < TOL;
    }
    free(out);
    return good;
}

static int cancel_after;                /* callbacks answered before stopping */

static int cancel_cb(void *data)
{
    (void)data;
    return cancel_after-- <= 0;
}

/* RWKV-7b: rwkv_load_options.history_max lowers the bound a state's
 * history keeps (0 and values past RWKV_HISTORY_MAX leave it), and an
 * evaluation past it is refused. */
static void test_7b_history_option(void)
{
    static const size_t asked[] = { 7, 0, (size_t)RWKV_HISTORY_MAX + 1 };
    static const size_t want[] = { 7, RWKV_HISTORY_MAX, RWKV_HISTORY_MAX };

    for (size_t i = 0; i < 3; i++) {
        struct rwkv_load_options lo = { .dtype = RWKV_DTYPE_F32, .n_threads = 1,
                                        .cache = RWKV_CACHE_MODE_OFF, .history_max = asked[i] };
        char err[RWKV_ERRLEN] = "";
        rwkv_model *m = rwkv_model_load(GOLDEN "v7b.pth", &lo, err, sizeof err);
        rwkv_context *ctx = m ? rwkv_context_new(m, 1, err, sizeof err) : NULL;
        rwkv_state *s = ctx ? rwkv_state_new(m) : NULL;
        int refused = 0;

        if (s && i == 0) {
            refused = rwkv_eval(ctx, s, tokens, 8, NULL, 0, err, sizeof err) == -1 &&
                      strstr(err, "more than the 7") && rwkv_state_history(s) == 0 &&
                      rwkv_eval(ctx, s, tokens, 7, NULL, 0, err, sizeof err) == 0;
        }
        ok(s && rwkv_model_info(m)->history_max == want[i] && (i != 0 || refused),
           "v7b loaded with history_max %zu: the bound is %zu%s", asked[i], want[i],
           i == 0 ? ", 8 tokens refused, 7 taken" : "");
        rwkv_state_free(s);
        rwkv_context_free(ctx);
        rwkv_model_free(m);
    }
}

/* RWKV-7b: what the history of a state does (variants[1] read). */
static void test_7b_history(void)
{
    char err[RWKV_ERRLEN];
    rwkv_model *m = load(GOLDEN "v7b.pth", RWKV_DTYPE_F32, err, sizeof err);
    rwkv_context *ctx = m ? rwkv_context_new(m, 2, err, sizeof err) : NULL;
    const struct rwkv_info *info;
    rwkv_state *a, *b, *c, *batch[2];
    size_t V, half = (size_t)n_tokens / 2, before, bytes0;
    float *out, *snap;
    int32_t pair[2];
    unsigned char *buf;
    int good;

    if (!ctx) {
        ok(0, "v7b loads: %s", err);
        rwkv_model_free(m);
        return;
    }
    info = rwkv_model_info(m);
    V = (size_t)info->n_vocab;
    out = malloc(2 * V * sizeof *out);
    a = rwkv_state_new(m);
    b = rwkv_state_new(m);
    c = rwkv_state_new(m);
    ok(info->history_floats == (size_t)info->n_layer * 64 &&
       info->history_max == RWKV_HISTORY_MAX && info->dea_width == 24 &&
       rwkv_state_history(a) == 0,
       "v7b: history of %zu floats per token, at most %zu tokens, DEA width %d",
       info->history_floats, info->history_max, info->dea_width);
    bytes0 = rwkv_state_bytes(a);
    good = rwkv_eval(ctx, a, tokens, half, NULL, 0, err, sizeof err) == 0;
    ok(good && rwkv_state_history(a) == half && rwkv_state_bytes(a) > bytes0 +
       half * (info->history_floats + (size_t)info->n_layer * (24 + 48)) * sizeof(float),
       "v7b: %zu tokens fed, the history holds them and the state's bytes count it "
       "(%zu -> %zu)", half, bytes0, rwkv_state_bytes(a));
    /* clone and copy carry the history; the original is untouched */
    {
        rwkv_state *cl = rwkv_state_clone(a);

        ok(cl && rwkv_state_copy(b, a) == 0 && rwkv_state_history(cl) == half &&
           continues(ctx, cl, (int)half, n_tokens, V) && continues(ctx, b, (int)half, n_tokens, V)
           && rwkv_state_history(a) == half && continues(ctx, a, (int)half, n_tokens, V),
           "v7b: a clone and a copy continue to the golden logits, and so does the original");
        rwkv_state_free(cl);
    }
    /* a copy onto a longer state shrinks it back */
    ok(rwkv_state_copy(c, a) == 0 && rwkv_state_history(c) == (size_t)n_tokens,
       "v7b: a copy into a fresh state takes all %d tokens", n_tokens);
    rwkv_state_reset(a);
    ok(rwkv_state_history(a) == 0 && rwkv_state_bytes(a) == bytes0 &&
       continues(ctx, a, 0, n_tokens, V),
       "v7b: reset empties the history, gives its memory back, and runs from the start again");
    /* cancelled part-way, restored from a copy, continued */
    rwkv_state_reset(a);
    rwkv_eval(ctx, a, tokens, half, NULL, 0, err, sizeof err);
    rwkv_state_copy(b, a);
    cancel_after = 2;
    rwkv_context_set_cancel(ctx, cancel_cb, NULL);
    good = rwkv_eval(ctx, a, tokens + half, 4, NULL, 0, err, sizeof err) == RWKV_CANCELLED;
    rwkv_context_set_cancel(ctx, NULL, NULL);
    ok(good && rwkv_state_copy(a, b) == 0 && rwkv_state_history(a) == half &&
       continues(ctx, a, (int)half, n_tokens, V),
       "v7b: a cancelled evaluation restored from its copy continues to the golden logits");
    /* a batch of two states at different points: each row its golden */
    rwkv_state_reset(a);
    rwkv_state_reset(b);
    rwkv_eval(ctx, a, tokens, 3, NULL, 0, err, sizeof err);
    rwkv_eval(ctx, b, tokens, 10, NULL, 0, err, sizeof err);
    batch[0] = a;
    batch[1] = b;
    pair[0] = tokens[3];
    pair[1] = tokens[10];
    ok(rwkv_eval_batch(ctx, batch, pair, 2, out, err, sizeof err) == 0 &&
       max_diff(out, golden + 3 * V, V) < TOL && max_diff(out + V, golden + 10 * V, V) < TOL &&
       rwkv_state_history(a) == 4 && rwkv_state_history(b) == 11,
       "v7b: rwkv_eval_batch advances each state's history to its golden row");
    /* the bound: refused with the state unchanged, then reached exactly */
    rwkv_model_test_history_max(m, 14);
    snap = malloc(rwkv_state_floats(b) * sizeof *snap);
    memcpy(snap, rwkv_state_cdata(b), rwkv_state_floats(b) * sizeof *snap);
    before = rwkv_state_history(b);
    good = rwkv_eval(ctx, b, tokens + 11, 4, NULL, 0, err, sizeof err) == -1;
    ok(good && strstr(err, "more than the 14") && rwkv_state_history(b) == before &&
       !memcmp(snap, rwkv_state_cdata(b), rwkv_state_floats(b) * sizeof *snap),
       "v7b: an evaluation past the bound is refused, the state unchanged (%s)", err);
    ok(rwkv_eval(ctx, b, tokens + 11, 3, out, 0, err, sizeof err) == 0 &&
       max_diff(out, golden + 13 * V, V) < TOL && rwkv_state_history(b) == 14,
       "v7b: up to the bound it runs, to the golden logits");
    pair[0] = tokens[4];
    pair[1] = tokens[14];
    memcpy(snap, rwkv_state_cdata(a), rwkv_state_floats(a) * sizeof *snap);
    ok(rwkv_eval_batch(ctx, batch, pair, 2, out, err, sizeof err) == -1 &&
       strstr(err, "batch entry 1") && rwkv_state_history(a) == 4 &&
       !memcmp(snap, rwkv_state_cdata(a), rwkv_state_floats(a) * sizeof *snap),
       "v7b: a batch with a full state is refused before any state changes (%s)", err);
    rwkv_model_test_history_max(m, RWKV_HISTORY_MAX);
    /* the serialized history: read back exactly; damage refused */
    buf = malloc(rwkv_state_history_size(b));
    rwkv_state_history_write(b, buf);
    rwkv_state_reset(c);
    good = rwkv_state_history_read(c, buf, rwkv_state_history_size(b), err, sizeof err) == 0;
    memcpy(rwkv_state_data(c), rwkv_state_cdata(b), rwkv_state_floats(b) * sizeof(float));
    ok(good && rwkv_state_history(c) == 14 && continues(ctx, c, 14, n_tokens, V),
       "v7b: a history read back from its bytes (derived keys rebuilt) continues to the "
       "golden logits");
    buf[8] = 200;       /* token 0: out of range */
    ok(rwkv_state_history_check(m, buf, rwkv_state_history_size(b), err, sizeof err) == -1 &&
       strstr(err, "out of range"), "v7b: a history with a bad token id is refused (%s)", err);
    ok(rwkv_state_history_check(m, buf, rwkv_state_history_size(b) - 4, err, sizeof err) == -1
       && strstr(err, "bytes"), "v7b: a history of the wrong size is refused (%s)", err);
    free(buf);
    free(snap);
    free(out);
    rwkv_state_free(a);
    rwkv_state_free(b);
    rwkv_state_free(c);
    rwkv_context_free(ctx);
    rwkv_model_free(m);
}

/* At float32 every tensor is held as float32, except the embedding and
 * the per-token tables (s_emb, enn), read a row per token from the file:
 * bytes/token counts exactly that. */
static void test_bytes_per_token(const struct variant *v, const rwkv_model *m)
{
    char err[RWKV_ERRLEN];
    ckpt_file *f = ckpt_open(golden_path(v, ".pth"), err, sizeof err);
    const struct rwkv_info *info = rwkv_model_info(m);
    uint64_t want = 0, tables = 0;

    for (size_t i = 0; f && i < ckpt_count(f); i++) {
        const struct ckpt_tensor *t = ckpt_at(f, i);

        if (strcmp(t->name, "head.weight") && t->ndim == 2 && t->shape[0] == info->n_vocab) {
            want += (uint64_t)t->shape[1] * ckpt_dtype_size(t->dtype);
            tables += t->nbytes;
        } else {
            want += (uint64_t)t->numel * sizeof(float);
        }
    }
    ok(f && info->bytes_per_token == want,
       "%s: bytes/token %llu: one row of the embedding and of each per-token table "
       "(%llu bytes whole), the rest as float32", v->name,
       (unsigned long long)info->bytes_per_token, (unsigned long long)tables);
    ckpt_close(f);
}

int main(void)
{
    if (tmpdir_make("test_variants") != 0) {
        return 99;
    }
    for (size_t i = 0; i < N_VARIANTS; i++) {
        const struct variant *v = &variants[i];
        const struct variant *other = &variants[(i + 1) % N_VARIANTS];
        char err[RWKV_ERRLEN];
        rwkv_model *m;

        if (read_goldens(v) != 0) {
            ok(0, "%s: goldens readable under " GOLDEN, v->name);
            continue;
        }
        m = load(golden_path(v, ".pth"), RWKV_DTYPE_F32, err, sizeof err);
        if (!m) {
            ok(0, "%s loads: %s", v->name, err);
            continue;
        }
        test_goldens(v, m);
        test_bytes_per_token(v, m);
        rwkv_model_free(m);
        test_quantised(v, golden, RWKV_DTYPE_Q8, "q8", 3e-3);
        test_quantised(v, golden, RWKV_DTYPE_Q4, "q4", 0.3);
        test_statefile(v, other);
        test_bad_files(v);
        if (v->minor == 2) {
            test_7b_history();
            test_7b_history_option();
        }
    }
    test_7b_told_apart();
    free(golden);
    free(golden_state);
    tmpdir_remove();
    return tap_done();
}
