/*
 * perplexity.c - rwkv-bench --text: how much each weight format costs in
 * quality on real text, the way llama-perplexity --kl-divergence measures it.
 *
 * The tokens of the text are cut into chunks of --text-ctx tokens; each
 * chunk runs from the zero state.  The first half of a chunk is context
 * only; the logits after each token of the second half (but the last) are
 * scored against the next token.  So every scored prediction has at least
 * half a chunk of text behind it, and a chunk's start, where any model is
 * guessing, does not weigh on the figures (llama-perplexity does the same).
 *
 * Per format, over the scored tokens: perplexity exp(mean NLL); the ratio
 * of its perplexity to float32's, exp(mean(NLL - NLL_f32)); the mean KL
 * divergence KL(p_f32 || p_format) and its 99th percentile; how often the
 * most likely token is float32's.  The "±" figures are one standard error,
 * taking the scored tokens as independent (they are not quite: neighbours
 * share context), as llama-perplexity reports them.
 *
 * The float32 row runs the reference model a second time in its own
 * context and state, so its zero KL shows that evaluation is repeatable,
 * not merely that a row equals itself.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/session/paths.h"
#include "app/tools/perplexity.h"
#include "tokenizer/world.h"

#define MIN_TOKENS 8

/* One weight format under test and its running sums. */
struct fmt_run {
    enum rwkv_dtype dtype;
    rwkv_model *model;          /* owned; NULL: the reference model's */
    rwkv_context *ctx;
    rwkv_state *state;
    double nll, nll2;           /* sums of NLL and NLL^2 */
    double dnll, dnll2;         /* of NLL - NLL_f32 */
    double kl, kl2;
    long agree;
    float *kls;                 /* per scored token, for the percentile */
    long n;
};

/* Prints "rwkv-bench: " + message + newline to stderr. */
static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    va_list ap;

    fputs("rwkv-bench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* The whole file; NULL with one line printed.  Refuses what is not a
 * regular file and an empty file. */
static uint8_t *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    uint8_t *data;

    if (!f) {
        fail("%s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fail("%s: not a regular file; --text wants a text file", path);
        fclose(f);
        return NULL;
    }
    if (st.st_size == 0) {
        fail("%s: empty file: no text to score", path);
        fclose(f);
        return NULL;
    }
    data = malloc((size_t)st.st_size);
    if (!data || fread(data, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        fail("%s: %s", path, data ? "read error" : "out of memory");
        free(data);
        data = NULL;
    }
    fclose(f);
    *len = (size_t)st.st_size;
    return data;
}

/* The text's tokens for a model of n_vocab tokens: bytes for a byte-level
 * model (256), the World tokenizer for a World model.  NULL with one line
 * printed; *kind names the tokenizer. */
static int32_t *tokenize(const struct perplexity_opts *o, const uint8_t *text, size_t len,
                         int n_vocab, size_t *n_tok, const char **kind)
{
    char err[WORLD_ERRLEN], *path;
    world_tokenizer *tok;
    int32_t *ids = NULL;

    if (n_vocab == 256) {
        if (!(ids = malloc(len * sizeof *ids))) {
            fail("%s: %s", o->text, "out of memory");
            return NULL;
        }
        for (size_t i = 0; i < len; i++) {
            ids[i] = text[i];
        }
        *n_tok = len;
        *kind = "bytes";
        return ids;
    }
    if (n_vocab != 65536) {
        fail("%s: a vocabulary of %d tokens; --text reads World (65536) and byte-level (256) "
             "models", o->model, n_vocab);
        return NULL;
    }
    path = o->vocab ? strdup(o->vocab) : paths_find_data(WORLD_VOCAB_FILE);
    if (!path) {
        fail("%s: vocabulary not found: reinstall rwkv-chat or pass --vocab PATH",
             WORLD_VOCAB_FILE);
        return NULL;
    }
    tok = world_load(path, err, sizeof err);
    free(path);
    if (!tok) {
        fail("%s", err);
        return NULL;
    }
    if (world_encode(tok, text, len, &ids, n_tok) != 0) {
        fail("%s: %s", o->text, "out of memory tokenizing");
        ids = NULL;
    }
    world_free(tok);
    *kind = "World tokenizer";
    return ids;
}

/* lp[v] = log softmax(x)[v], rounded to float; the same arithmetic for
 * every format, so equal logits give equal log-probabilities. */
static void log_probs(const float *x, int n, float *lp)
{
    double max = x[0], sum = 0, lse;

    for (int v = 1; v < n; v++) {
        max = x[v] > max ? x[v] : max;
    }
    for (int v = 0; v < n; v++) {
        sum += exp((double)x[v] - max);
    }
    lse = max + log(sum);
    for (int v = 0; v < n; v++) {
        lp[v] = (float)((double)x[v] - lse);
    }
}

static int argmax(const float *x, int n)
{
    int best = 0;

    for (int v = 1; v < n; v++) {
        if (x[v] > x[best]) {
            best = v;
        }
    }
    return best;
}

/* Runs one chunk of n tokens from the zero state: the first `first` as
 * context, then logits after tokens first..n-2 into out (n - 1 - first
 * rows).  0, or -1 with err. */
static int run_chunk(struct fmt_run *r, const int32_t *tok, int n, int first, float *out,
                     char *err, size_t errlen)
{
    rwkv_state_reset(r->state);
    if (rwkv_eval(r->ctx, r->state, tok, (size_t)first, NULL, 0, err, errlen) != 0) {
        return -1;
    }
    return rwkv_eval(r->ctx, r->state, tok + first, (size_t)(n - 1 - first), out, 1, err,
                     errlen);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;

    return (x > y) - (x < y);
}

/* Standard error of the mean from a sum and a sum of squares over n. */
static double stderr_of(double sum, double sum2, long n)
{
    double mean = sum / n, var = n > 1 ? (sum2 / n - mean * mean) * n / (n - 1) : 0;

    return var > 0 ? sqrt(var / n) : 0;
}

static void print_row(struct fmt_run *r)
{
    long n = r->n;
    double mnll = r->nll / n, ppl = exp(mnll), se_nll = stderr_of(r->nll, r->nll2, n);
    double md = r->dnll / n, ratio = exp(md), se_d = stderr_of(r->dnll, r->dnll2, n);
    double p = (double)r->agree / n, kl99;
    char cell[4][64];

    qsort(r->kls, (size_t)n, sizeof *r->kls, cmp_float);
    kl99 = r->kls[(size_t)((n - 1) * 99 / 100)];
    snprintf(cell[0], sizeof cell[0], "%.4f ± %.4f", ppl, ppl * se_nll);
    snprintf(cell[1], sizeof cell[1], "%.4f ± %.4f", ratio, ratio * se_d);
    snprintf(cell[2], sizeof cell[2], "%.3e ± %.1e", r->kl / n, stderr_of(r->kl, r->kl2, n));
    snprintf(cell[3], sizeof cell[3], "%.2f ± %.2f %%", 100 * p, 100 * sqrt(p * (1 - p) / n));
    /* (each "±" is two bytes and one column: widths one more than the header's) */
    printf("| %-6s | %21s | %18s | %23s | %9.3e | %19s |\n", rwkv_dtype_name(r->dtype),
           cell[0], cell[1], cell[2], kl99, cell[3]);
}

static void free_runs(struct fmt_run *runs, int n)
{
    for (int i = 0; i < n; i++) {
        rwkv_state_free(runs[i].state);
        rwkv_context_free(runs[i].ctx);
        rwkv_model_free(runs[i].model);
        free(runs[i].kls);
    }
}

/* Loads the model for format d (NULL model: share ref) with its own
 * context and state.  0, or -1 with one line printed. */
static int open_run(const struct perplexity_opts *o, struct fmt_run *r, enum rwkv_dtype d,
                    const rwkv_model *ref, long n_scored)
{
    struct rwkv_load_options lo = { .dtype = d, .n_threads = o->threads,
                                    .cache = o->no_cache ? RWKV_CACHE_MODE_OFF
                                                         : RWKV_CACHE_MODE_ON };
    char err[RWKV_ERRLEN];
    const rwkv_model *m = ref;

    memset(r, 0, sizeof *r);
    r->dtype = d;
    if (!m && !(m = r->model = rwkv_model_load(o->model, &lo, err, sizeof err))) {
        fail("%s", err);
        return -1;
    }
    if (!(r->ctx = rwkv_context_new(m, o->threads, err, sizeof err))) {
        fail("%s", err);
        return -1;
    }
    r->state = rwkv_state_new(m);
    r->kls = malloc((size_t)n_scored * sizeof *r->kls);
    if (!r->state || !r->kls) {
        fail("%s: %s", o->model, "out of memory");
        return -1;
    }
    return 0;
}

int perplexity_run(const struct perplexity_opts *o)
{
    static const enum rwkv_dtype all[] = { RWKV_DTYPE_F16, RWKV_DTYPE_BF16, RWKV_DTYPE_Q8,
                                           RWKV_DTYPE_Q4 };
    struct fmt_run runs[2 + sizeof all / sizeof all[0]];    /* [0]: the reference */
    int n_runs = 0, ctx_len, first, rows, n_vocab, status = 1;
    struct rwkv_load_options lo = { .dtype = RWKV_DTYPE_F32, .n_threads = o->threads,
                                    .cache = o->no_cache ? RWKV_CACHE_MODE_OFF
                                                         : RWKV_CACHE_MODE_ON };
    char err[RWKV_ERRLEN];
    const struct rwkv_info *info;
    const char *kind = "", *base;
    rwkv_model *ref = NULL;
    uint8_t *text;
    int32_t *tok = NULL;
    float *ref_lp = NULL, *logits = NULL, *lp = NULL;
    int *ref_top = NULL;
    size_t len, n_tok = 0;
    long n_chunks, n_scored;

    if (!(text = read_text(o->text, &len))) {
        return 1;
    }
    if (!(ref = rwkv_model_load(o->model, &lo, err, sizeof err))) {
        fail("%s", err);
        free(text);
        return 1;
    }
    info = rwkv_model_info(ref);
    n_vocab = info->n_vocab;
    if (!(tok = tokenize(o, text, len, n_vocab, &n_tok, &kind))) {
        goto out;
    }
    if (n_tok < MIN_TOKENS) {
        fail("%s: only %zu token%s; --text needs at least %d", o->text, n_tok,
             n_tok == 1 ? "" : "s", MIN_TOKENS);
        goto out;
    }
    ctx_len = (size_t)o->ctx < n_tok ? o->ctx : (int)n_tok;
    first = ctx_len / 2;
    rows = ctx_len - 1 - first;
    n_chunks = (long)(n_tok / (size_t)ctx_len);
    n_scored = n_chunks * rows;

    /* The reference, float32 again in its own context, then each one that applies (fp16 only
     * for a file stored in fp16), or the one asked for. */
    if (open_run(o, &runs[n_runs++], RWKV_DTYPE_F32, ref, n_scored) != 0 ||
        open_run(o, &runs[n_runs++], RWKV_DTYPE_F32, ref, n_scored) != 0) {
        goto out;
    }
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        enum rwkv_dtype d = all[i];

        if (o->dtype != RWKV_DTYPE_AUTO ? d != o->dtype
                                        : d == RWKV_DTYPE_F16 && info->stored_dtype != d) {
            continue;
        }
        if (open_run(o, &runs[n_runs++], d, NULL, n_scored) != 0) {
            goto out;
        }
    }

    ref_lp = malloc((size_t)rows * n_vocab * sizeof *ref_lp);
    logits = malloc((size_t)rows * n_vocab * sizeof *logits);
    lp = malloc((size_t)n_vocab * sizeof *lp);
    ref_top = malloc((size_t)rows * sizeof *ref_top);
    if (!ref_lp || !logits || !lp || !ref_top) {
        fail("%s: out of memory for the logits of a chunk (try a smaller --text-ctx)", o->model);
        goto out;
    }

    base = strrchr(o->model, '/');
    base = base ? base + 1 : o->model;
    printf("rwkv-bench: %s: RWKV-%s L%d C%d V%d, %.1fM parameters (stored %s)\n", base,
           info->version_name, info->n_layer, info->n_embd, n_vocab,
           (double)info->n_params / 1e6, rwkv_dtype_name(info->stored_dtype));
    printf("text: %s: %zu bytes, %zu tokens (%s); %ld chunk%s of %d tokens from the zero "
           "state, the last %d predictions of each scored: %ld tokens\n", o->text, len, n_tok,
           kind, n_chunks, n_chunks == 1 ? "" : "s", ctx_len, rows, n_scored);
    printf("reference: fp32 weights; ± is one standard error (scored tokens taken as "
           "independent)\n\n");
    printf("| format | %20s | %17s | %22s | %9s | %18s |\n", "PPL", "PPL / PPL(fp32)",
           "mean KL (nats/token)", "KL 99 %", "same top-1 as fp32");
    printf("|--------|----------------------|-------------------|------------------------|"
           "-----------|--------------------|\n");
    fflush(stdout);

    for (long c = 0; c < n_chunks; c++) {
        const int32_t *ct = tok + c * ctx_len;

        if (run_chunk(&runs[0], ct, ctx_len, first, logits, err, sizeof err) != 0) {
            fail("%s", err);
            goto out;
        }
        for (int t = 0; t < rows; t++) {
            log_probs(logits + (size_t)t * n_vocab, n_vocab, ref_lp + (size_t)t * n_vocab);
            ref_top[t] = argmax(logits + (size_t)t * n_vocab, n_vocab);
        }
        for (int i = 1; i < n_runs; i++) {
            struct fmt_run *r = &runs[i];

            if (run_chunk(r, ct, ctx_len, first, logits, err, sizeof err) != 0) {
                fail("%s", err);
                goto out;
            }
            for (int t = 0; t < rows; t++) {
                const float *rl = ref_lp + (size_t)t * n_vocab, *x = logits + (size_t)t * n_vocab;
                int next = ct[first + t + 1];
                double kl = 0, nll, d;

                log_probs(x, n_vocab, lp);
                for (int v = 0; v < n_vocab; v++) {
                    kl += exp((double)rl[v]) * ((double)rl[v] - (double)lp[v]);
                }
                nll = -(double)lp[next];
                d = nll + (double)rl[next];
                r->nll += nll;
                r->nll2 += nll * nll;
                r->dnll += d;
                r->dnll2 += d * d;
                r->kl += kl;
                r->kl2 += kl * kl;
                r->kls[r->n++] = (float)kl;
                r->agree += argmax(x, n_vocab) == ref_top[t];
            }
        }
    }
    for (int i = 1; i < n_runs; i++) {
        print_row(&runs[i]);
    }
    status = 0;
out:
    free_runs(runs, n_runs);
    rwkv_model_free(ref);
    free(ref_lp);
    free(logits);
    free(lp);
    free(ref_top);
    free(tok);
    free(text);
    return status;
}
