/*
 * bench.c - rwkv-bench: how fast the engine runs a model on this machine.
 *
 * Prints a table in the manner of llama-bench: prompt processing (ppN) and
 * generation (tgN) in tokens per second (median of the repeats, with the
 * spread), milliseconds per generated token, peak RSS, the weight bytes one
 * generated token reads, the machine's measured read bandwidth with the
 * same number of threads, and the fraction of the ceiling that bandwidth
 * puts on generation.  --ctx N also measures generation after an N-token
 * context, to show that speed and memory do not depend on it.  --streams
 * N,M,... measures aggregate generation of N concurrent conversations
 * stepped together by rwkv_eval_batch (what a server does), against one.
 */
#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "app/session/blascore.h"
#include "app/tools/membw.h"
#include "app/tools/perplexity.h"
#include "app/session/options.h"
#include "engine/rwkv.h"

#define MAX_STREAM_COUNTS 16
#define MAX_STREAMS 512

struct opts {
    const char *model;
    int threads;
    enum rwkv_dtype dtype;
    int prompt, gen, repeats;
    long ctx;
    int no_reexec;
    double bandwidth;           /* --bandwidth: given, not measured (bytes/s) */
    int quality;                /* --quality N: compare N tokens with fp32 */
    int no_cache;               /* --no-cache: convert at load, no cache file */
    const char *text;           /* --text FILE: perplexity and KL on a text */
    const char *vocab;          /* --vocab PATH (for --text) */
    int text_ctx;               /* --text-ctx N */
    const char *kernels;        /* --kernels SET, or NULL: the best the CPU runs */
    struct rwkv_lora *lora;     /* --lora FILE[:SCALE], in order */
    int n_lora;
    int streams[MAX_STREAM_COUNTS]; /* --streams: stream counts, 1 first */
    int n_streams;
};

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Resident set size now, in bytes (/proc/self/statm). */
static double rss_now(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) {
            resident = 0;
        }
        fclose(f);
    }
    return (double)resident * (double)sysconf(_SC_PAGESIZE);
}

static double rss_peak(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss * 1024.0;
}

/* ---- machine read bandwidth ---------------------------------------------- */

struct bw_job {
    const uint64_t *a;
    size_t n;
    uint64_t sink;
};

static void *bw_read(void *arg)
{
    struct bw_job *j = arg;

    j->sink = membw_read(j->a, j->n * sizeof *j->a);
    return NULL;
}

/* Streaming read of a 1 GiB array of random words (random so that no
 * page deduplication can make it cache-resident) with `threads` threads;
 * the best of five passes, in bytes per second. */
static double measure_bandwidth_here(int threads)
{
    const size_t bytes = (size_t)1 << 30, n = bytes / 8;
    uint64_t *a = aligned_alloc(64, bytes), x = 0x9E3779B97F4A7C15ull, sink = 0;
    double best = 0;

    if (!a) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        a[i] = x;
    }
    for (int pass = 0; pass < 5; pass++) {
        pthread_t tid[256];
        struct bw_job job[256];
        double t0 = now(), dt;

        for (int t = 0; t < threads; t++) {
            size_t lo = n / (size_t)threads * (size_t)t;
            size_t hi = t == threads - 1 ? n : n / (size_t)threads * (size_t)(t + 1);

            job[t].a = a + lo;
            job[t].n = hi - lo;
            if (t > 0 && pthread_create(&tid[t], NULL, bw_read, &job[t]) != 0) {
                bw_read(&job[t]);
                tid[t] = 0;
            }
        }
        bw_read(&job[0]);
        for (int t = 1; t < threads; t++) {
            if (tid[t]) {
                pthread_join(tid[t], NULL);
            }
        }
        dt = now() - t0;
        for (int t = 0; t < threads; t++) {
            sink ^= job[t].sink;
        }
        if (bytes / dt > best) {
            best = (double)bytes / dt;
        }
    }
    free(a);
    if (sink == 42) {
        fputc(' ', stderr);     /* keeps the reads alive */
    }
    return best;
}

/* The bandwidth measured in a child process, so that its 1 GiB array does
 * not count in this process's peak RSS. */
static double measure_bandwidth(int threads)
{
    int fd[2];
    double bw = 0;
    pid_t pid;

    if (pipe(fd) != 0) {
        return measure_bandwidth_here(threads);
    }
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        bw = measure_bandwidth_here(threads);
        if (write(fd[1], &bw, sizeof bw) != sizeof bw) {
            _exit(1);
        }
        _exit(0);
    }
    close(fd[1]);
    if (pid < 0 || read(fd[0], &bw, sizeof bw) != sizeof bw) {
        bw = 0;
    }
    close(fd[0]);
    if (pid > 0) {
        waitpid(pid, NULL, 0);
    }
    return bw > 0 ? bw : measure_bandwidth_here(threads);
}

/* ---- measurements ---------------------------------------------------------- */

static void fill_tokens(int32_t *tok, long n, int vocab, uint64_t seed)
{
    for (long i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = 1 + (int32_t)((seed >> 33) % (uint64_t)(vocab - 1));
    }
}

static int argmax(const float *v, int n)
{
    int best = 0;

    for (int i = 1; i < n; i++) {
        if (v[i] > v[best]) {
            best = i;
        }
    }
    return best;
}

/* Generates n tokens greedily from state; seconds per token. */
static double time_generation(rwkv_context *ctx, rwkv_state *s, float *logits, int n,
                              int first, char *err, size_t errlen)
{
    const int vocab = rwkv_model_info(rwkv_context_model(ctx))->n_vocab;
    int32_t tok = first;
    double t0 = now();

    for (int i = 0; i < n; i++) {
        if (rwkv_eval(ctx, s, &tok, 1, logits, 0, err, errlen) != 0) {
            return -1;
        }
        tok = argmax(logits, vocab);
    }
    return (now() - t0) / n;
}

/* Generates n tokens greedily in each of k streams at once, one
 * rwkv_eval_batch per step (tok, logits: k entries, k rows); seconds per
 * step.  Every stream starts from the zero state with a token of its own,
 * so their histories differ. */
static double time_streams(rwkv_context *ctx, rwkv_state **st, int k, int32_t *tok,
                           float *logits, int n, char *err, size_t errlen)
{
    const int vocab = rwkv_model_info(rwkv_context_model(ctx))->n_vocab;
    double t0;

    for (int i = 0; i < k; i++) {
        rwkv_state_reset(st[i]);
        tok[i] = 1 + i % (vocab - 1);
    }
    t0 = now();
    for (int step = 0; step < n; step++) {
        if (rwkv_eval_batch(ctx, st, tok, (size_t)k, logits, err, errlen) != 0) {
            return -1;
        }
        for (int i = 0; i < k; i++) {
            tok[i] = argmax(logits + (size_t)i * vocab, vocab);
        }
    }
    return (now() - t0) / n;
}

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: rwkv-bench MODEL [OPTION]...\n"
        "Measure prompt processing and generation speed of a model.\n\n"
        "  -t, --threads N    worker threads (default: the CPUs it may run on)\n"
        "      --dtype D      weight format: auto, fp32, fp16, bf16, int8/q8, q4\n"
        "      --no-cache     convert the weights at load; no conversion cache\n"
        "      --lora FILE[:SCALE]  merge a LoRA adapter at load (repeatable)\n"
        "  -p, --prompt N     prompt tokens (default 512; 0 skips)\n"
        "  -n, --gen N        generated tokens (default 128; 0 skips)\n"
        "  -r, --repeats N    repeats, the median is reported (default 5)\n"
        "      --ctx N        also measure generation after an N-token context\n"
        "      --streams N[,M...]  also measure aggregate generation of N concurrent\n"
        "                     streams stepped together (rwkv_eval_batch), against\n"
        "                     one stream, interleaved (up to 512 streams)\n"
        "      --no-reexec    keep the OpenBLAS core type the library detected\n"
        "      --kernels SET  use kernel set SET (avx512vnni, avx512, avx2, portable)\n"
        "                     instead of the best this CPU can run\n"
        "      --bandwidth G  take the read bandwidth as G GB/s instead of measuring\n"
        "      --quality N    only compare the logits of N tokens with fp32 weights\n"
        "                     (max and mean |logit error|, KL divergence)\n"
        "      --text FILE    only score FILE: perplexity of fp32 and each format\n"
        "                     (bf16, q8, q4; fp16 for an fp16 file; or --dtype's),\n"
        "                     KL divergence from fp32 and top-1 agreement with it\n"
        "      --text-ctx N   --text: chunks of N tokens, the second half of each\n"
        "                     scored (default 512)\n"
        "      --vocab PATH   --text: the World vocabulary (default: the installed one)\n"
        "  -h, --help         display this help and exit\n");
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) {
        return -1;
    }
    *out = v;
    return 0;
}

/* --streams N[,M...]: o->streams gets 1, then the counts other than 1. */
static int parse_streams(const char *arg, struct opts *o)
{
    char buf[256], *save = NULL;
    long v;

    if (strlen(arg) >= sizeof buf) {
        return -1;
    }
    snprintf(buf, sizeof buf, "%s", arg);
    o->streams[0] = 1;
    o->n_streams = 1;
    for (char *p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (parse_long(p, 1, MAX_STREAMS, &v) != 0 || o->n_streams >= MAX_STREAM_COUNTS) {
            return -1;
        }
        if (v > 1) {
            o->streams[o->n_streams++] = (int)v;
        }
    }
    return o->n_streams > 1 ? 0 : -1;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        { "threads", required_argument, NULL, 't' },
        { "dtype", required_argument, NULL, 'd' },
        { "prompt", required_argument, NULL, 'p' },
        { "gen", required_argument, NULL, 'n' },
        { "repeats", required_argument, NULL, 'r' },
        { "ctx", required_argument, NULL, 'c' },
        { "no-reexec", no_argument, NULL, 'X' },
        { "bandwidth", required_argument, NULL, 'B' },
        { "quality", required_argument, NULL, 'Q' },
        { "no-cache", no_argument, NULL, 'N' },
        { "lora", required_argument, NULL, 'L' },
        { "streams", required_argument, NULL, 'S' },
        { "text", required_argument, NULL, 'T' },
        { "text-ctx", required_argument, NULL, 'C' },
        { "vocab", required_argument, NULL, 'V' },
        { "kernels", required_argument, NULL, 'K' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    long v;
    int c;

    memset(o, 0, sizeof *o);
    o->prompt = 512;
    o->gen = 128;
    o->repeats = 5;
    o->text_ctx = 512;
    while ((c = getopt_long(argc, argv, "t:p:n:r:h", longopts, NULL)) != -1) {
        switch (c) {
        case 't':
            if (parse_long(optarg, 1, 256, &v)) {
                fprintf(stderr, "rwkv-bench: bad --threads '%s'\n", optarg);
                return 2;
            }
            o->threads = (int)v;
            break;
        case 'd':
            if (!strcmp(optarg, "auto")) {
                o->dtype = RWKV_DTYPE_AUTO;
            } else if (rwkv_dtype_parse(optarg, &o->dtype) != 0) {
                fprintf(stderr, "rwkv-bench: bad --dtype '%s'\n", optarg);
                return 2;
            }
            break;
        case 'N':
            o->no_cache = 1;
            break;
        case 'L': {
            char why[RWKV_ERRLEN];

            if (options_add_lora(&o->lora, &o->n_lora, optarg, why, sizeof why)) {
                fprintf(stderr, "rwkv-bench: --lora %s\n", why);
                return 2;
            }
            break;
        }
        case 'p':
        case 'n':
            if (parse_long(optarg, 0, 1 << 20, &v)) {
                fprintf(stderr, "rwkv-bench: bad -%c '%s'\n", c, optarg);
                return 2;
            }
            *(c == 'p' ? &o->prompt : &o->gen) = (int)v;
            break;
        case 'r':
            if (parse_long(optarg, 1, 1000, &v)) {
                fprintf(stderr, "rwkv-bench: bad --repeats '%s'\n", optarg);
                return 2;
            }
            o->repeats = (int)v;
            break;
        case 'c':
            if (parse_long(optarg, 1, 100000000, &o->ctx)) {
                fprintf(stderr, "rwkv-bench: bad --ctx '%s'\n", optarg);
                return 2;
            }
            break;
        case 'X':
            o->no_reexec = 1;
            break;
        case 'S':
            if (parse_streams(optarg, o) != 0) {
                fprintf(stderr, "rwkv-bench: bad --streams '%s' (counts 1..%d, comma-separated, "
                        "at most %d)\n", optarg, MAX_STREAMS, MAX_STREAM_COUNTS - 1);
                return 2;
            }
            break;
        case 'T':
            o->text = optarg;
            break;
        case 'V':
            o->vocab = optarg;
            break;
        case 'K':
            o->kernels = optarg;
            break;
        case 'C':
            if (parse_long(optarg, 8, 1 << 20, &v)) {
                fprintf(stderr, "rwkv-bench: bad --text-ctx '%s' (8 or more tokens)\n", optarg);
                return 2;
            }
            o->text_ctx = (int)v;
            break;
        case 'Q':
            if (parse_long(optarg, 1, 100000, &v)) {
                fprintf(stderr, "rwkv-bench: bad --quality '%s'\n", optarg);
                return 2;
            }
            o->quality = (int)v;
            break;
        case 'B': {
            char *end;

            o->bandwidth = strtod(optarg, &end) * 1e9;
            if (*end || !(o->bandwidth > 0)) {
                fprintf(stderr, "rwkv-bench: bad --bandwidth '%s' (GB/s)\n", optarg);
                return 2;
            }
            break;
        }
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    o->model = argv[optind];
    if (!o->threads) {
        o->threads = rwkv_default_threads();
    }
    return 0;
}

static void row(const char *model, const char *test, const char *speed, const char *ms,
                const char *frac, const char *rss)
{
    printf("| %-22s | %-16s | %18s | %8s | %10s | %9s |\n", model, test, speed, ms, frac, rss);
}

static void fmt_speed(char *buf, size_t n, double *tps, int k)
{
    double lo = tps[0], hi = tps[0], med;

    for (int i = 1; i < k; i++) {
        lo = fmin(lo, tps[i]);
        hi = fmax(hi, tps[i]);
    }
    med = median(tps, k);
    snprintf(buf, n, "%.1f (%.0f-%.0f)", med, lo, hi);
}

/* Logits after each of n tokens (RNN mode) with weights in format d. */
static float *run_logits(const char *path, enum rwkv_dtype d, int threads, int no_cache,
                         const int32_t *tok, int n, int *vocab)
{
    struct rwkv_load_options lo = { .dtype = d, .n_threads = threads,
                                    .cache = no_cache ? RWKV_CACHE_MODE_OFF : RWKV_CACHE_MODE_ON };
    char err[RWKV_ERRLEN];
    rwkv_model *m = rwkv_model_load(path, &lo, err, sizeof err);
    rwkv_context *ctx = m ? rwkv_context_new(m, threads, err, sizeof err) : NULL;
    rwkv_state *s;
    float *out;

    if (!ctx) {
        fprintf(stderr, "rwkv-bench: %s\n", err);
        rwkv_model_free(m);
        return NULL;
    }
    *vocab = rwkv_model_info(m)->n_vocab;
    s = rwkv_state_new(m);
    out = malloc((size_t)n * (size_t)*vocab * sizeof *out);
    for (int i = 0; s && out && i < n; i++) {
        if (rwkv_eval(ctx, s, &tok[i], 1, out + (size_t)i * *vocab, 0, err, sizeof err) != 0) {
            fprintf(stderr, "rwkv-bench: %s\n", err);
            free(out);
            out = NULL;
        }
    }
    rwkv_state_free(s);
    rwkv_context_free(ctx);
    rwkv_model_free(m);
    return out;
}

/* --quality: how far the chosen format's logits are from float32 weights
 * over n pseudo-random tokens. */
static int quality(const struct opts *o)
{
    int32_t *tok = malloc((size_t)o->quality * sizeof *tok);
    int vocab = 0, vq = 0;
    float *ref, *q;
    double maxe = 0, meane = 0, kl = 0;
    int agree = 0;

    if (!tok) {
        return 1;
    }
    ref = run_logits(o->model, RWKV_DTYPE_F32, o->threads, o->no_cache, NULL, 0, &vocab);
    free(ref);
    fill_tokens(tok, o->quality, vocab > 1 ? vocab : 2, 4242);
    ref = run_logits(o->model, RWKV_DTYPE_F32, o->threads, o->no_cache, tok, o->quality, &vocab);
    q = run_logits(o->model, o->dtype, o->threads, o->no_cache, tok, o->quality, &vq);
    if (!ref || !q) {
        free(ref);
        free(q);
        free(tok);
        return 1;
    }
    for (int i = 0; i < o->quality; i++) {
        const float *a = ref + (size_t)i * vocab, *b = q + (size_t)i * vocab;
        double ma = a[0], mb = b[0], za = 0, zb = 0;

        for (int v = 0; v < vocab; v++) {
            double e = fabs((double)a[v] - b[v]);

            maxe = e > maxe ? e : maxe;
            meane += e;
            ma = a[v] > ma ? a[v] : ma;
            mb = b[v] > mb ? b[v] : mb;
        }
        for (int v = 0; v < vocab; v++) {
            za += exp(a[v] - ma);
            zb += exp(b[v] - mb);
        }
        for (int v = 0; v < vocab; v++) {
            double la = a[v] - ma - log(za), lb = b[v] - mb - log(zb);

            kl += exp(la) * (la - lb);
        }
        agree += argmax(a, vocab) == argmax(b, vocab);
    }
    printf("%s: %s vs fp32 weights over %d tokens: max |logit error| %.4f, mean %.5f, "
           "KL %.3e nats/token, same argmax %d/%d\n", o->model,
           o->dtype == RWKV_DTYPE_AUTO ? "stored format" : rwkv_dtype_name(o->dtype),
           o->quality, maxe, meane / ((double)o->quality * vocab), kl / o->quality, agree,
           o->quality);
    free(ref);
    free(q);
    free(tok);
    return 0;
}

/* One header line on what the conversion cache did at load. */
static void print_cache(const struct rwkv_cache_info *ci)
{
    switch (ci->result) {
    case RWKV_CACHE_NONE:
        printf("conversion cache: none needed (weights used as stored)\n");
        break;
    case RWKV_CACHE_USED:
        printf("conversion cache: used %s (%.2f s)\n", ci->path, ci->seconds);
        break;
    case RWKV_CACHE_WRITTEN:
        printf("conversion cache: written %s (%.2f s; %s)\n", ci->path, ci->seconds, ci->reason);
        break;
    case RWKV_CACHE_NOT_WRITTEN:
        printf("conversion cache: not written: %s\n", ci->reason);
        break;
    case RWKV_CACHE_OFF:
        printf("conversion cache: off (--no-cache)\n");
        break;
    }
}

/* --streams: for each count k, aggregate tokens per second of k streams
 * generating together, one rwkv_eval_batch per step; the counts take turns
 * within each repeat, so a busy machine slows them alike. */
static int streams(const struct opts *o, rwkv_context *ctx, const char *name, double bw)
{
    const rwkv_model *m = rwkv_context_model(ctx);
    const struct rwkv_info *info = rwkv_model_info(m);
    int kmax = 1, rc = 0;
    rwkv_state **st;
    int32_t *tok;
    float *logits;
    double *v = calloc((size_t)o->n_streams * (size_t)o->repeats, sizeof *v);
    char err[RWKV_ERRLEN], test[48], speed[64], ms[32], frac[32], rssb[32];

    for (int c = 0; c < o->n_streams; c++) {
        kmax = o->streams[c] > kmax ? o->streams[c] : kmax;
    }
    st = calloc((size_t)kmax, sizeof *st);
    tok = calloc((size_t)kmax, sizeof *tok);
    logits = malloc((size_t)kmax * (size_t)info->n_vocab * sizeof *logits);
    for (int i = 0; st && i < kmax; i++) {
        if (!(st[i] = rwkv_state_new(m))) {
            rc = 1;
        }
    }
    if (!v || !st || !tok || !logits || rc) {
        fprintf(stderr, "rwkv-bench: out of memory for %d streams\n", kmax);
        rc = 1;
        goto out;
    }
    for (int r = 0; r < o->repeats; r++) {
        for (int c = 0; c < o->n_streams; c++) {
            double spt = time_streams(ctx, st, o->streams[c], tok, logits, o->gen, err,
                                      sizeof err);

            if (spt < 0) {
                fprintf(stderr, "rwkv-bench: %s\n", err);
                rc = 1;
                goto out;
            }
            v[c * o->repeats + r] = o->streams[c] / spt;
        }
    }
    for (int c = 0; c < o->n_streams; c++) {
        double tps = median(v + c * o->repeats, o->repeats);

        fmt_speed(speed, sizeof speed, v + c * o->repeats, o->repeats);
        snprintf(test, sizeof test, "tg%d x%d stream%s", o->gen, o->streams[c],
                 o->streams[c] == 1 ? "" : "s");
        snprintf(ms, sizeof ms, "%.2f", 1000.0 * o->streams[c] / tps);
        /* one step reads the weights once, whatever the count */
        snprintf(frac, sizeof frac, "%.0f %%",
                 100.0 * tps / o->streams[c] * (double)info->bytes_per_token / bw);
        snprintf(rssb, sizeof rssb, "%.0f MB", rss_peak() / 1e6);
        row(name, test, speed, ms, frac, rssb);
    }
    printf("\nstreams: aggregate tok/s of N conversations stepped together by rwkv_eval_batch "
           "(ms/tok is per step, of ceiling the step rate's); against one stream:");
    for (int c = 1; c < o->n_streams; c++) {
        printf(" %d: %.2fx", o->streams[c],
               median(v + c * o->repeats, o->repeats) / median(v, o->repeats));
    }
    printf("\n");
    fflush(stdout);
out:
    for (int i = 0; st && i < kmax; i++) {
        rwkv_state_free(st[i]);
    }
    free(st);
    free(tok);
    free(logits);
    free(v);
    return rc;
}

int main(int argc, char **argv)
{
    struct opts o;
    struct rwkv_load_options lo = { 0 };
    const struct rwkv_info *info;
    char err[RWKV_ERRLEN], name[64], speed[64], ms[32], frac[32], rssb[32], test[48];
    const char *base;
    double bw, t0, load_s, first_s, gen_tps = 0;
    rwkv_model *m;
    rwkv_context *ctx;
    rwkv_state *s;
    float *logits;
    int32_t *tok;
    double *v;
    int rc;

    if ((rc = parse_args(argc, argv, &o)) != 0) {
        return rc;
    }
    if (!o.no_reexec) {
        blascore_pick(argv);
    }
    if (o.kernels && rwkv_kernels_select(o.kernels, err, sizeof err) != 0) {
        fprintf(stderr, "rwkv-bench: %s\n", err);
        return 2;
    }
    /* (the engine sets OpenBLAS to one thread: products are split over
     * its own pool of --threads) */
    if (o.quality) {
        return quality(&o);
    }
    if (o.text) {
        struct perplexity_opts po = { .model = o.model, .text = o.text, .vocab = o.vocab,
                                      .dtype = o.dtype, .ctx = o.text_ctx,
                                      .threads = o.threads, .no_cache = o.no_cache };

        options_free_lora(o.lora, o.n_lora);
        return perplexity_run(&po);
    }
    bw = o.bandwidth > 0 ? o.bandwidth : measure_bandwidth(o.threads);

    lo.dtype = o.dtype;
    lo.n_threads = o.threads;
    lo.cache = o.no_cache ? RWKV_CACHE_MODE_OFF : RWKV_CACHE_MODE_ON;
    t0 = now();
    m = rwkv_model_load_lora(o.model, &lo, o.lora, o.n_lora, err, sizeof err);
    options_free_lora(o.lora, o.n_lora);
    ctx = m ? rwkv_context_new(m, o.threads, err, sizeof err) : NULL;
    if (!ctx) {
        fprintf(stderr, "rwkv-bench: %s\n", err);
        return 1;
    }
    load_s = now() - t0;
    info = rwkv_model_info(m);
    s = rwkv_state_new(m);
    logits = malloc((size_t)info->n_vocab * sizeof *logits);
    tok = malloc(sizeof *tok * (size_t)(o.prompt > 4096 ? o.prompt : 4096));
    v = malloc(sizeof *v * (size_t)o.repeats);
    if (!s || !logits || !tok || !v) {
        fprintf(stderr, "rwkv-bench: out of memory\n");
        return 1;
    }
    {
        int32_t t1 = 1;

        t0 = now();
        if (rwkv_eval(ctx, s, &t1, 1, logits, 0, err, sizeof err) != 0) {
            fprintf(stderr, "rwkv-bench: %s\n", err);
            return 1;
        }
        first_s = now() - t0;
    }

    base = strrchr(o.model, '/');
    base = base ? base + 1 : o.model;
    snprintf(name, sizeof name, "%.22s", base);
    printf("rwkv-bench: %s: RWKV-%s L%d C%d V%d, %.1fM parameters, %s weights "
           "(stored %s), %.1f MB read per token\n",
           base, info->version_name, info->n_layer, info->n_embd, info->n_vocab,
           (double)info->n_params / 1e6, rwkv_dtype_name(info->compute_dtype),
           rwkv_dtype_name(info->stored_dtype), (double)info->bytes_per_token / 1e6);
    if (info->n_lora > 0) {
        printf("lora: %d adapter%s merged at load\n", info->n_lora, info->n_lora == 1 ? "" : "s");
    }
    printf("kernels: %s; BLAS: OpenBLAS core %s (OPENBLAS_CORETYPE=%s); threads: %d\n",
           rwkv_kernels_name(), blascore_name(),
           getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "unset", o.threads);
    printf("machine: read bandwidth %.1f GB/s (%s); generation ceiling %.1f tok/s\n",
           bw / 1e9, o.bandwidth > 0 ? "given" : "measured: 1 GiB, same threads, best of 5",
           bw / (double)info->bytes_per_token);
    printf("load: %.2f s to model, %.3f s more to the first token\n", load_s, first_s);
    print_cache(rwkv_model_cache(m));
    printf("\n");
    row("model", "test", "tok/s (min-max)", "ms/tok", "of ceiling", "peak RSS");
    printf("|%s|%s|%s|%s|%s|%s|\n", "------------------------", "------------------",
           "--------------------", "----------", "------------", "-----------");
    fflush(stdout);

    if (o.prompt > 0) {
        fill_tokens(tok, o.prompt, info->n_vocab, 12345);
        for (int r = 0; r < o.repeats; r++) {
            rwkv_state_reset(s);
            t0 = now();
            if (rwkv_eval(ctx, s, tok, (size_t)o.prompt, logits, 0, err, sizeof err) != 0) {
                fprintf(stderr, "rwkv-bench: %s\n", err);
                return 1;
            }
            v[r] = o.prompt / (now() - t0);
        }
        fmt_speed(speed, sizeof speed, v, o.repeats);
        snprintf(test, sizeof test, "pp%d", o.prompt);
        snprintf(ms, sizeof ms, "%.2f", 1000.0 / median(v, o.repeats));
        snprintf(rssb, sizeof rssb, "%.0f MB", rss_peak() / 1e6);
        row(name, test, speed, ms, "-", rssb);
        fflush(stdout);
    }
    if (o.gen > 0) {
        for (int r = 0; r < o.repeats; r++) {
            double spt;

            rwkv_state_reset(s);
            spt = time_generation(ctx, s, logits, o.gen, 1, err, sizeof err);
            if (spt < 0) {
                fprintf(stderr, "rwkv-bench: %s\n", err);
                return 1;
            }
            v[r] = 1.0 / spt;
        }
        fmt_speed(speed, sizeof speed, v, o.repeats);
        gen_tps = median(v, o.repeats);
        snprintf(test, sizeof test, "tg%d", o.gen);
        snprintf(ms, sizeof ms, "%.2f", 1000.0 / gen_tps);
        snprintf(frac, sizeof frac, "%.0f %%", 100.0 * gen_tps * (double)info->bytes_per_token / bw);
        snprintf(rssb, sizeof rssb, "%.0f MB", rss_peak() / 1e6);
        row(name, test, speed, ms, frac, rssb);
        fflush(stdout);
    }
    if (o.n_streams > 1 && o.gen > 0 && streams(&o, ctx, name, bw) != 0) {
        return 1;
    }
    if (o.ctx > 0 && o.gen > 0) {
        const long chunk = 4096;
        double rss0 = rss_now(), fed = 0, ctx_s, tps;

        rwkv_state_reset(s);
        t0 = now();
        for (long done = 0; done < o.ctx; done += chunk) {
            long k = o.ctx - done < chunk ? o.ctx - done : chunk;

            fill_tokens(tok, k, info->n_vocab, (uint64_t)done + 777);
            if (rwkv_eval(ctx, s, tok, (size_t)k, logits, 0, err, sizeof err) != 0) {
                fprintf(stderr, "rwkv-bench: %s\n", err);
                return 1;
            }
            fed += (double)k;
        }
        ctx_s = now() - t0;
        /* Interleave generation from the zero state and from the long
         * context, so that a busy machine slows both alike. */
        double *v0 = malloc(sizeof *v0 * (size_t)o.repeats), tps0;
        rwkv_state *zero = rwkv_state_new(m);
        int last = argmax(logits, info->n_vocab);

        if (!v0 || !zero) {
            fprintf(stderr, "rwkv-bench: out of memory\n");
            return 1;
        }
        for (int r = 0; r < o.repeats; r++) {
            rwkv_state *c = rwkv_state_clone(s);
            double spt0, spt;

            rwkv_state_reset(zero);
            spt0 = time_generation(ctx, zero, logits, o.gen, 1, err, sizeof err);
            spt = c ? time_generation(ctx, c, logits, o.gen, last, err, sizeof err) : -1;
            rwkv_state_free(c);
            if (spt0 < 0 || spt < 0) {
                fprintf(stderr, "rwkv-bench: %s\n", err);
                return 1;
            }
            v0[r] = 1.0 / spt0;
            v[r] = 1.0 / spt;
        }
        tps0 = median(v0, o.repeats);
        fmt_speed(speed, sizeof speed, v, o.repeats);
        tps = median(v, o.repeats);
        snprintf(test, sizeof test, "tg%d @ ctx %ld", o.gen, o.ctx);
        snprintf(ms, sizeof ms, "%.2f", 1000.0 / tps);
        snprintf(frac, sizeof frac, "%.0f %%", 100.0 * tps * (double)info->bytes_per_token / bw);
        snprintf(rssb, sizeof rssb, "%.0f MB", rss_peak() / 1e6);
        row(name, test, speed, ms, frac, rssb);
        printf("\nctx: %.0f tokens fed in %.1f s (%.0f tok/s, chunks of %ld); generation "
               "interleaved with the same from the zero state: %.1f vs %.1f tok/s (%+.1f %%); "
               "RSS %.0f MB before the context, %.0f MB after\n",
               fed, ctx_s, fed / ctx_s, chunk, tps, tps0, 100.0 * (tps - tps0) / tps0,
               rss0 / 1e6, rss_now() / 1e6);
        rwkv_state_free(zero);
        free(v0);
    }
    rwkv_state_free(s);
    rwkv_context_free(ctx);
    rwkv_model_free(m);
    free(logits);
    free(tok);
    free(v);
    return 0;
}
