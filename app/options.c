/* options.c - rwkv-chat's command line, merged over the config file. */
#include "app/options.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/config.h"

const char *const options_knob_names[] = {
    "temperature", "top_p", "top_k", "min_p", "presence", "frequency", "decay",
    "max_tokens", "seed", NULL,
};

enum {
    OPT_STATE_IN = 256, OPT_STATE_OUT, OPT_SEED, OPT_MAX_TOKENS, OPT_TEMPERATURE, OPT_TOP_P,
    OPT_TOP_K, OPT_MIN_P, OPT_PRESENCE, OPT_FREQUENCY, OPT_DECAY, OPT_GREEDY, OPT_BATCH,
    OPT_JSONL, OPT_COMPLETE, OPT_RESUME, OPT_VOCAB, OPT_DATA_DIR, OPT_DTYPE, OPT_NO_CACHE, OPT_CONFIG,
    OPT_STATE_TUNED,
};

static const struct option longopts[] = {
    { "model", required_argument, NULL, 'm' },
    { "prompt", required_argument, NULL, 'p' },
    { "state-in", required_argument, NULL, OPT_STATE_IN },
    { "state-out", required_argument, NULL, OPT_STATE_OUT },
    { "state-tuned", required_argument, NULL, OPT_STATE_TUNED },
    { "seed", required_argument, NULL, OPT_SEED },
    { "max-tokens", required_argument, NULL, OPT_MAX_TOKENS },
    { "temperature", required_argument, NULL, OPT_TEMPERATURE },
    { "top-p", required_argument, NULL, OPT_TOP_P },
    { "top-k", required_argument, NULL, OPT_TOP_K },
    { "min-p", required_argument, NULL, OPT_MIN_P },
    { "presence", required_argument, NULL, OPT_PRESENCE },
    { "frequency", required_argument, NULL, OPT_FREQUENCY },
    { "decay", required_argument, NULL, OPT_DECAY },
    { "greedy", no_argument, NULL, OPT_GREEDY },
    { "batch", no_argument, NULL, OPT_BATCH },
    { "jsonl", no_argument, NULL, OPT_JSONL },
    { "complete", no_argument, NULL, OPT_COMPLETE },
    { "verbose", no_argument, NULL, 'v' },
    { "resume", no_argument, NULL, OPT_RESUME },
    { "vocab", required_argument, NULL, OPT_VOCAB },
    { "data-dir", required_argument, NULL, OPT_DATA_DIR },
    { "threads", required_argument, NULL, 't' },
    { "dtype", required_argument, NULL, OPT_DTYPE },
    { "no-cache", no_argument, NULL, OPT_NO_CACHE },
    { "config", required_argument, NULL, OPT_CONFIG },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
};
static const char shortopts[] = "m:p:t:vhV";

void options_usage(FILE *f)
{
    fprintf(f,
        "Usage: rwkv-chat [OPTION]...\n"
        "  or:  rwkv-chat --batch [OPTION]... < MESSAGES\n"
        "Chat with an RWKV language model in the terminal.  Without a terminal on\n"
        "stdin and stdout, or with --batch, read messages from stdin and write the\n"
        "replies to stdout.\n"
        "\n"
        "Model and conversation:\n"
        "  -m, --model=PATH|NAME  model file, or a name searched in\n"
        "                         $XDG_DATA_HOME/rwkv-chat/models and the installed\n"
        "                         models (default: the bundled tiny demo model)\n"
        "  -p, --prompt=NAME      chat template / persona (prompts/NAME.txt) or a path\n"
        "      --state-in=FILE    start from a saved conversation state\n"
        "      --state-out=FILE   save the conversation state at the end\n"
        "      --state-tuned=FILE start from a state-tuned initial state (a .pth of\n"
        "                         blocks.N.att.time_state tensors made for this model)\n"
        "      --resume           continue the session saved when the TUI last quit\n"
        "      --vocab=PATH       World vocabulary file (default: the installed one)\n"
        "      --data-dir=DIR     search DIR for prompts, models and the vocabulary first\n"
        "  -t, --threads=N        worker threads (default: the CPUs it may run on)\n"
        "      --dtype=TYPE       weights as fp32, fp16, bf16, q8 or q4 (default: as stored)\n"
        "      --no-cache         convert the weights at every start; no conversion cache\n"
        "      --config=FILE      read FILE instead of ~/.config/rwkv-chat/config\n"
        "\n"
        "Sampling:\n"
        "      --temperature=T    0 is greedy (default 1.0)\n"
        "      --top-p=P          nucleus sampling, 1 = off (default 0.3)\n"
        "      --top-k=K          0 = off (default 0)\n"
        "      --min-p=P          0 = off (default 0)\n"
        "      --presence=X       presence penalty (default 0.5)\n"
        "      --frequency=X      frequency penalty (default 0.5)\n"
        "      --decay=D          penalty decay per token (default 0.996)\n"
        "      --greedy           temperature 0 and no penalties\n"
        "      --max-tokens=N     reply length limit (default 1000), 0 = none\n"
        "      --seed=N           random seed (default: random)\n"
        "\n"
        "Batch mode:\n"
        "      --batch            no terminal UI: messages on stdin, replies on stdout\n"
        "      --jsonl            JSON lines in and out (implies --batch)\n"
        "      --complete         raw completion of the whole of stdin (implies --batch)\n"
        "  -v, --verbose          diagnostics on stderr\n"
        "\n"
        "  -h, --help             display this help and exit\n"
        "  -V, --version          output version information and exit\n"
        "\n"
        "In batch mode a line with only \"\"\" opens and closes a multi-line message, and\n"
        "lines starting with / are commands (/help lists them).  Exit status: 0 ok,\n"
        "1 runtime error, 2 usage error, 130 interrupted.  See rwkv-chat(1).\n");
}

static void short_usage(const char *fmt, const char *a, const char *b)
{
    fputs("rwkv-chat: ", stderr);
    fprintf(stderr, fmt, a, b);
    fputs("\nUsage: rwkv-chat [OPTION]...\n"
          "Try 'rwkv-chat --help' for more information.\n", stderr);
}

void options_defaults(struct app_options *opts)
{
    memset(opts, 0, sizeof(*opts));
    sampler_defaults(&opts->sampling);
    /* A model that never ends its turn must not generate forever. */
    opts->sampling.max_tokens = OPTIONS_DEFAULT_MAX_TOKENS;
    opts->dtype = RWKV_DTYPE_AUTO;
}

static void free_colours(struct app_colours *c)
{
    free(c->user);
    free(c->assistant);
    free(c->status);
    free(c->accent);
    free(c->error);
}

void options_free(struct app_options *opts)
{
    free(opts->model);
    free(opts->prompt);
    free(opts->state_in);
    free(opts->state_out);
    free(opts->state_tuned);
    free(opts->vocab);
    free(opts->data_dir);
    free(opts->config_path);
    free_colours(&opts->colours);
    memset(opts, 0, sizeof(*opts));
}

/* Parses a whole string as a finite double in [lo, hi]. */
static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || v < lo || v > hi) {
        return -1;
    }
    *out = v;
    return 0;
}

/* Parses a whole string as a decimal integer in [lo, hi]. */
static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) {
        return -1;
    }
    *out = v;
    return 0;
}

/* Index of a knob in options_knob_names ('-' or '_'), or -1. */
static int knob_index(const char *name)
{
    int i;
    size_t k;

    for (i = 0; options_knob_names[i]; i++) {
        const char *a = options_knob_names[i];

        for (k = 0; a[k] && (name[k] == a[k] || (name[k] == '-' && a[k] == '_')); k++) {
        }
        if (!a[k] && !name[k]) {
            return i;
        }
    }
    return -1;
}

/* Each knob of options_knob_names (same order): its field in struct
 * sampler_settings and the values it takes. */
enum knob_type {
    KNOB_NUMBER,    /* float in [lo, hi] */
    KNOB_WHOLE,     /* int in [lo, hi] */
    KNOB_SEED,      /* uint64_t */
};
#define KNOB(type, field, lo, hi) \
    { type, offsetof(struct sampler_settings, field), \
      sizeof(((struct sampler_settings *)0)->field), lo, hi }
static const struct knob {
    enum knob_type type;
    size_t offset, size;
    double lo, hi;
} knobs[] = {
    KNOB(KNOB_NUMBER, temperature, 0, 10),
    KNOB(KNOB_NUMBER, top_p, 0, 1),
    KNOB(KNOB_WHOLE, top_k, 0, 1 << 20),
    KNOB(KNOB_NUMBER, min_p, 0, 1),
    KNOB(KNOB_NUMBER, presence, -100, 100),
    KNOB(KNOB_NUMBER, frequency, -100, 100),
    KNOB(KNOB_NUMBER, decay, 0, 1),
    KNOB(KNOB_WHOLE, max_tokens, 0, 1000000000L),
    KNOB(KNOB_SEED, seed, 0, 0),
};
#undef KNOB
_Static_assert(sizeof(knobs) / sizeof(knobs[0]) + 1 ==
               sizeof(options_knob_names) / sizeof(options_knob_names[0]),
               "one entry of knobs[] per name in options_knob_names");

int options_set_knob(struct sampler_settings *s, const char *name, const char *value,
                     char *err, size_t errlen)
{
    int i = knob_index(strcmp(name, "temp") ? name : "temperature");
    unsigned long long seed;
    char *field, *end;
    double d;
    long l;

    if (i < 0) {
        snprintf(err, errlen, "unknown knob '%s' (knobs: temperature, top_p, top_k, min_p, "
                 "presence, frequency, decay, max_tokens, seed)", name);
        return -1;
    }
    field = (char *)s + knobs[i].offset;
    switch (knobs[i].type) {
    case KNOB_NUMBER:
        if (parse_double(value, knobs[i].lo, knobs[i].hi, &d) < 0) {
            snprintf(err, errlen, "%s: '%s' is not a number from %g to %g", name, value,
                     knobs[i].lo, knobs[i].hi);
            return -1;
        }
        *(float *)field = (float)d;
        break;
    case KNOB_WHOLE:
        if (parse_long(value, (long)knobs[i].lo, (long)knobs[i].hi, &l) < 0) {
            goto not_whole;
        }
        *(int *)field = (int)l;
        break;
    case KNOB_SEED:
        errno = 0;
        seed = strtoull(value, &end, 10);
        if (end == value || *end || errno || value[0] == '-') {
            goto not_whole;
        }
        *(uint64_t *)field = (uint64_t)seed;
        break;
    }
    return 0;

not_whole:
    snprintf(err, errlen, "%s: '%s' is not a whole number >= 0", name, value);
    return -1;
}

void options_apply_given(const struct app_options *opts, struct sampler_settings *s)
{
    for (size_t i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++) {
        if (opts->knobs_given & (1u << i)) {
            memcpy((char *)s + knobs[i].offset,
                   (const char *)&opts->sampling + knobs[i].offset, knobs[i].size);
        }
    }
}

int options_get_knob(const struct sampler_settings *s, const char *name, char *buf, size_t len)
{
    const char *field;
    int i;

    for (i = 0; options_knob_names[i] && strcmp(name, options_knob_names[i]); i++) {
    }
    if (!options_knob_names[i]) {
        return -1;
    }
    field = (const char *)s + knobs[i].offset;
    switch (knobs[i].type) {
    case KNOB_NUMBER:
        snprintf(buf, len, "%g", *(const float *)field);
        break;
    case KNOB_WHOLE:
        snprintf(buf, len, "%d", *(const int *)field);
        break;
    case KNOB_SEED:
        snprintf(buf, len, "%llu", (unsigned long long)*(const uint64_t *)field);
        break;
    }
    return 0;
}

static void replace(char **dst, const char *src)
{
    char *copy = strdup(src);

    if (!copy) {
        fputs("rwkv-chat: out of memory\n", stderr);
        exit(1);
    }
    free(*dst);
    *dst = copy;
}

/* First pass: finds --config FILE and whether --help/--version will end
 * the run (then the config file is not read). */
static void prescan(int argc, char **argv, const char **config, int *ends)
{
    int c;

    opterr = 0;
    optind = 0;
    while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        if (c == OPT_CONFIG) {
            *config = optarg;
        } else if (c == 'h' || c == 'V') {
            *ends = 1;
        }
    }
    opterr = 1;
    optind = 0;
}

static const char *knob_of_option(int c)
{
    switch (c) {
    case OPT_SEED: return "seed";
    case OPT_MAX_TOKENS: return "max-tokens";
    case OPT_TEMPERATURE: return "temperature";
    case OPT_TOP_P: return "top-p";
    case OPT_TOP_K: return "top-k";
    case OPT_MIN_P: return "min-p";
    case OPT_PRESENCE: return "presence";
    case OPT_FREQUENCY: return "frequency";
    case OPT_DECAY: return "decay";
    default: return NULL;
    }
}

int options_parse(struct app_options *opts, int argc, char **argv)
{
    const char *config = NULL;
    char err[512];
    int ends = 0, c, r;
    long l;

    options_defaults(opts);
    prescan(argc, argv, &config, &ends);
    if (!ends) {
        if (config) {
            replace(&opts->config_path, config);
        } else {
            opts->config_path = config_default_path();
        }
        if (config && !*config) {
            short_usage("--config: empty file name", NULL, NULL);
            return OPTIONS_USAGE;
        }
        if (opts->config_path) {
            r = config_load(opts, opts->config_path, err, sizeof(err));
            if (r < 0 || (r == 1 && config)) {
                if (r == 1) {
                    snprintf(err, sizeof(err), "%s: no such file", opts->config_path);
                }
                fprintf(stderr, "rwkv-chat: %s\n", err);
                return OPTIONS_ERROR;
            }
        }
    }
    while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        const char *knob = knob_of_option(c);

        if (knob) {
            if (options_set_knob(&opts->sampling, knob, optarg, err, sizeof(err)) < 0) {
                short_usage("--%s", err, NULL);
                return OPTIONS_USAGE;
            }
            if (c == OPT_SEED) {
                opts->seed_set = 1;
            }
            opts->knobs_given |= 1u << knob_index(knob);
            continue;
        }
        if ((c == OPT_STATE_IN || c == OPT_STATE_OUT || c == OPT_VOCAB || c == OPT_DATA_DIR ||
             c == OPT_STATE_TUNED) && !*optarg) {
            short_usage("--%s: empty file name", c == OPT_STATE_IN ? "state-in"
                        : c == OPT_STATE_OUT ? "state-out" : c == OPT_VOCAB ? "vocab"
                        : c == OPT_STATE_TUNED ? "state-tuned" : "data-dir", NULL);
            return OPTIONS_USAGE;
        }
        switch (c) {
        case 'm':
            replace(&opts->model, optarg);
            opts->model_from_user = 1;
            break;
        case 'p':
            replace(&opts->prompt, optarg);
            break;
        case OPT_STATE_IN:
            replace(&opts->state_in, optarg);
            break;
        case OPT_STATE_OUT:
            replace(&opts->state_out, optarg);
            break;
        case OPT_STATE_TUNED:
            replace(&opts->state_tuned, optarg);
            break;
        case OPT_GREEDY:
            opts->greedy = 1;
            break;
        case OPT_BATCH:
            opts->batch = 1;
            break;
        case OPT_JSONL:
            opts->jsonl = 1;
            break;
        case OPT_COMPLETE:
            opts->complete = 1;
            break;
        case 'v':
            opts->verbose = 1;
            break;
        case OPT_RESUME:
            opts->resume = 1;
            break;
        case OPT_VOCAB:
            replace(&opts->vocab, optarg);
            break;
        case OPT_DATA_DIR:
            replace(&opts->data_dir, optarg);
            break;
        case 't':
            if (parse_long(optarg, 0, 4096, &l) < 0) {
                short_usage("--threads: '%s' is not a whole number from 0 to 4096", optarg, NULL);
                return OPTIONS_USAGE;
            }
            opts->n_threads = (int)l;
            break;
        case OPT_DTYPE:
            if (rwkv_dtype_parse(optarg, &opts->dtype) < 0) {
                short_usage("--dtype: unknown type '%s' (fp32, fp16, bf16, q8, q4)", optarg, NULL);
                return OPTIONS_USAGE;
            }
            break;
        case OPT_NO_CACHE:
            opts->no_cache = 1;
            break;
        case OPT_CONFIG:
            break;
        case 'h':
            options_usage(stdout);
            return OPTIONS_EXIT;
        case 'V':
            printf("rwkv-chat (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
            return OPTIONS_EXIT;
        default:
            fputs("Usage: rwkv-chat [OPTION]...\n"
                  "Try 'rwkv-chat --help' for more information.\n", stderr);
            return OPTIONS_USAGE;
        }
    }
    if (optind < argc) {
        short_usage("unexpected argument '%s'", argv[optind], NULL);
        return OPTIONS_USAGE;
    }
    if (opts->complete && opts->jsonl) {
        short_usage("--complete and --jsonl cannot be combined", NULL, NULL);
        return OPTIONS_USAGE;
    }
    if (opts->resume && opts->state_in) {
        short_usage("--resume and --state-in cannot be combined", NULL, NULL);
        return OPTIONS_USAGE;
    }
    if (opts->jsonl || opts->complete) {
        opts->batch = 1;
    }
    if (opts->greedy) {
        opts->sampling.temperature = 0;
        opts->sampling.presence = 0;
        opts->sampling.frequency = 0;
        opts->knobs_given |= 1u << knob_index("temperature");
        opts->knobs_given |= 1u << knob_index("presence");
        opts->knobs_given |= 1u << knob_index("frequency");
    }
    return 0;
}
