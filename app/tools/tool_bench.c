/* tool_bench.c - rwkv-tool bench WHAT ...: timing of one component. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/tools/tool.h"
#include "engine/sampling/sampler.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/world.h"

struct bench {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
};

static int bench_tokenizer(int argc, char **argv);
static int bench_sampler(int argc, char **argv);

static const struct bench benches[] = {
    { "tokenizer", "vocabulary load time, encode and decode MB/s on FILE", bench_tokenizer },
    { "sampler", "time to sample one token from 65536 logits, per setting", bench_sampler },
    { NULL, NULL, NULL },
};

/* Seconds on the wall clock, or of this thread's CPU time. */
static double clock_seconds(clockid_t clock)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now(void)
{
    return clock_seconds(CLOCK_MONOTONIC);
}

static void usage(FILE *f)
{
    const struct bench *b;

    fprintf(f, "Usage: rwkv-tool bench WHAT [OPTION]... [ARG]...\n"
               "Measures the speed of one component on one core.\n\n"
               "What:\n");
    for (b = benches; b->name; b++) {
        fprintf(f, "  %-12s %s\n", b->name, b->summary);
    }
    fprintf(f, "\nRun 'rwkv-tool bench WHAT --help' for its options.\n");
}

int tool_bench(int argc, char **argv)
{
    const struct bench *b;

    if (argc < 2) {
        tool_error("bench: what to measure? (one of: tokenizer, sampler)");
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    for (b = benches; b->name; b++) {
        if (!strcmp(argv[1], b->name)) {
            return b->run(argc - 1, argv + 1);
        }
    }
    tool_error("bench: unknown benchmark '%s'", argv[1]);
    usage(stderr);
    return 2;
}

/* --- bench tokenizer --------------------------------------------------- */

static void bench_tokenizer_usage(FILE *f)
{
    fprintf(f, "Usage: rwkv-tool bench tokenizer [--vocab PATH] [--seconds S] FILE\n"
               "Times loading the vocabulary, then encodes and decodes FILE repeatedly\n"
               "for about S seconds each and prints MB/s (1 MB = 10^6 bytes) of input.\n"
               "Checks that decoding gives FILE back (with a BPE tokenizer, only when\n"
               "FILE is valid UTF-8 in NFC without special tokens).\n\n"
               "Options:\n"
               "      --vocab PATH  a World vocabulary or a tokenizer.json (BPE)\n"
               "                    (default: the installed %s)\n"
               "      --seconds S   time spent on each measurement (default 1)\n"
               "  -h, --help        display this help and exit\n", WORLD_VOCAB_FILE);
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Reads a whole file; NULL with the error printed. */
static uint8_t *load_input(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    long n;

    if (!f) {
        tool_error("%s: %s", path, strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        tool_error("%s: cannot determine the size (not a regular file?)", path);
        fclose(f);
        return NULL;
    }
    if (!(data = malloc((size_t)n + 1))) {
        tool_error("%s: out of memory", path);
    } else if (fread(data, 1, (size_t)n, f) != (size_t)n) {
        tool_error("%s: read error", path);
        free(data);
        data = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return data;
}

static int bench_tokenizer(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "vocab", required_argument, NULL, 'v' },
        { "seconds", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    char err[WORLD_ERRLEN];
    const char *vocab_option = NULL;
    char *vocab = NULL, *endp;
    double seconds = 1.0, t0, c0, t, loads[9], cpu[9], best, total, cpu_total = 0;
    tokenizer *tok = NULL;
    uint8_t *input = NULL, *back = NULL;
    int32_t *ids = NULL;
    size_t n = 0, n_ids = 0, back_len, runs;
    int c, i, status = 1;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
        switch (c) {
        case 'v':
            vocab_option = optarg;
            break;
        case 's':
            seconds = strtod(optarg, &endp);
            if (*endp || !(seconds > 0 && seconds <= 3600)) {
                tool_error("bench tokenizer: --seconds wants a number of seconds, not '%s'",
                           optarg);
                return 2;
            }
            break;
        case 'h':
            bench_tokenizer_usage(stdout);
            return 0;
        default:
            tool_error("bench tokenizer: unrecognized option '%s'", argv[optind - 1]);
            bench_tokenizer_usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        tool_error("bench tokenizer: expected one FILE to encode");
        bench_tokenizer_usage(stderr);
        return 2;
    }
    if (!(input = load_input(argv[optind], &n))) {
        return 1;
    }
    if (n == 0) {
        tool_error("%s: empty file, nothing to measure", argv[optind]);
        free(input);
        return 1;
    }
    if (!(vocab = tool_vocab_path(vocab_option))) {
        free(input);
        return 1;
    }

    /* Load time: the median of 9 loads (the first warms the page cache). */
    for (i = 0; i < 9; i++) {
        tokenizer_free(tok);
        t0 = now();
        c0 = clock_seconds(CLOCK_THREAD_CPUTIME_ID);
        if (!(tok = tokenizer_load(vocab, err, sizeof err))) {
            tool_error("%s", err);
            goto out;
        }
        loads[i] = now() - t0;
        cpu[i] = clock_seconds(CLOCK_THREAD_CPUTIME_ID) - c0;
    }
    qsort(loads, 9, sizeof loads[0], compare_double);
    qsort(cpu, 9, sizeof cpu[0], compare_double);
    printf("vocabulary: %s, %s, %d ids, load %.1f ms (median of 9, best %.1f ms; CPU time "
           "median %.1f ms)\n", vocab, tokenizer_describe(tok), tokenizer_vocab_size(tok), loads[4] * 1e3, loads[0] * 1e3,
           cpu[4] * 1e3);


    best = 1e30;
    total = 0;
    for (runs = 0; runs < 3 || total < seconds; runs++) {
        free(ids);
        t0 = now();
        c0 = clock_seconds(CLOCK_THREAD_CPUTIME_ID);
        if (tokenizer_encode(tok, input, n, &ids, &n_ids) < 0) {
            tool_error("%s: out of memory encoding", argv[optind]);
            goto out;
        }
        t = now() - t0;
        cpu_total += clock_seconds(CLOCK_THREAD_CPUTIME_ID) - c0;
        total += t;
        best = t < best ? t : best;
    }
    printf("encode: %.1f MB/s (best of %zu runs; mean %.1f MB/s, by CPU time %.1f MB/s), "
           "%zu bytes -> %zu tokens, %.2f bytes/token\n", n / best / 1e6, runs,
           n * runs / total / 1e6, n * runs / cpu_total / 1e6, n, n_ids,
           (double)n / (double)(n_ids ? n_ids : 1));

    best = 1e30;
    total = 0;
    for (runs = 0; runs < 3 || total < seconds; runs++) {
        free(back);
        t0 = now();
        if (tokenizer_decode(tok, ids, n_ids, &back, &back_len, err, sizeof err) < 0) {
            tool_error("%s", err);
            goto out;
        }
        t = now() - t0;
        total += t;
        best = t < best ? t : best;
    }
    printf("decode: %.1f MB/s (best of %zu runs; mean %.1f MB/s)\n", n / best / 1e6, runs,
           n * runs / total / 1e6);
    if (back_len != n || memcmp(back, input, n) != 0) {
        if (tokenizer_kind(tok) == TOKENIZER_WORLD) {
            tool_error("%s: decoding the ids does not give the file back", argv[optind]);
            goto out;
        }
        /* BPE normalizes: invalid UTF-8, non-NFC text, special tokens. */
        printf("decode: not the file's bytes (the BPE encoder normalized it)\n");
    }
    status = 0;
out:
    free(back);
    free(ids);
    free(input);
    free(vocab);
    tokenizer_free(tok);
    return status;
}

/* Sampling cost over a World-sized vocabulary: logits drawn N(0, 3^2)
 * (the spread of real models), best of 7 runs of 200 draws per setting,
 * CPU time of this thread, the 256 KB copy of the logits included. */
static int bench_sampler(int argc, char **argv)
{
    static const struct {
        const char *name;
        float top_p, min_p, temperature;
        int top_k;
    } cfg[] = {
        { "defaults (top_p 0.3)", 0.3f, 0.0f, 1.0f, 0 },
        { "top_p 0.9, T 0.8", 0.9f, 0.0f, 0.8f, 0 },
        { "top_p 1 (no cut)", 1.0f, 0.0f, 1.0f, 0 },
        { "top_k 40", 1.0f, 0.0f, 1.0f, 40 },
        { "min_p 0.05", 1.0f, 0.05f, 1.0f, 0 },
        { "greedy", 1.0f, 0.0f, 0.0f, 0 },
    };
    enum { N = 65536, DRAWS = 200, REPEATS = 7 };
    float *base, *logits;
    struct sampler_settings s;
    uint64_t x = 88172645463325252ull;
    sampler *smp;
    size_t c;
    int i;

    if (argc > 1) {
        if (!strcmp(argv[1], "--help")) {
            printf("Usage: rwkv-tool bench sampler\n"
                   "Prints the CPU time of one sampling step over 65536 logits per setting.\n");
            return 0;
        }
        tool_error("bench sampler: unexpected argument '%s'", argv[1]);
        return 2;
    }
    base = malloc(sizeof(float) * N);
    logits = malloc(sizeof(float) * N);
    sampler_defaults(&s);
    smp = sampler_new(N, &s);
    if (!base || !logits || !smp) {
        tool_error("bench sampler: out of memory");
        free(base);
        free(logits);
        sampler_free(smp);
        return 1;
    }
    for (i = 0; i < N; i += 2) {
        /* Box-Muller on a xorshift64 stream. */
        double u1, u2, r;

        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        u1 = ((x >> 11) + 1.0) / 9007199254740993.0;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        u2 = (x >> 11) / 9007199254740992.0;
        r = 3.0 * sqrt(-2.0 * log(u1));
        base[i] = (float)(r * cos(6.283185307179586 * u2));
        base[i + 1] = (float)(r * sin(6.283185307179586 * u2));
    }
    printf("%-24s %12s\n", "setting", "ms/token");
    for (c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        double best = 1e30;
        int rep;

        sampler_defaults(&s);
        s.top_p = cfg[c].top_p;
        s.top_k = cfg[c].top_k;
        s.min_p = cfg[c].min_p;
        s.temperature = cfg[c].temperature;
        sampler_configure(smp, &s);
        sampler_reset_counts(smp);
        for (rep = 0; rep < REPEATS; rep++) {
            double t0 = clock_seconds(CLOCK_THREAD_CPUTIME_ID);

            for (i = 0; i < DRAWS; i++) {
                memcpy(logits, base, sizeof(float) * N);
                sampler_accept(smp, sampler_sample(smp, logits));
            }
            t0 = (clock_seconds(CLOCK_THREAD_CPUTIME_ID) - t0) / DRAWS;
            best = t0 < best ? t0 : best;
        }
        printf("%-24s %12.3f\n", cfg[c].name, best * 1e3);
    }
    sampler_free(smp);
    free(base);
    free(logits);
    return 0;
}
