/* options.c - rwkv-chat's command line, merged over the config file. */
#include "app/session/options.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/session/chat.h"
#include "app/session/config.h"
#include "engine/sampling/knobs.h"

enum {
    OPT_STATE_IN = 256, OPT_STATE_OUT, OPT_GREEDY, OPT_BATCH,
    OPT_JSONL, OPT_COMPLETE, OPT_RESUME, OPT_VOCAB, OPT_DATA_DIR, OPT_DTYPE, OPT_NO_CACHE, OPT_CONFIG,
    OPT_STATE_TUNED, OPT_LORA, OPT_SYSTEM, OPT_THINK,
    OPT_SERVE, OPT_HOST, OPT_PORT, OPT_PARALLEL, OPT_STATE_CACHE_MB, OPT_STATES_MB, OPT_API_KEY,
    OPT_MAX_TOKENS_CAP, OPT_MAX_BODY_KB, OPT_IDLE_TIMEOUT, OPT_CACHE_MAX,
    OPT_KNOB = 512,         /* + the knob's index in knobs.h's table */
};

/* The options besides the knobs' (those follow from the knob table). */
static const struct option fixed_opts[] = {
    { "model", required_argument, NULL, 'm' },
    { "prompt", required_argument, NULL, 'p' },
    { "state-in", required_argument, NULL, OPT_STATE_IN },
    { "state-out", required_argument, NULL, OPT_STATE_OUT },
    { "state-tuned", required_argument, NULL, OPT_STATE_TUNED },
    { "system", required_argument, NULL, OPT_SYSTEM },
    { "think", required_argument, NULL, OPT_THINK },
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
    { "cache-max", required_argument, NULL, OPT_CACHE_MAX },
    { "lora", required_argument, NULL, OPT_LORA },
    { "config", required_argument, NULL, OPT_CONFIG },
    { "serve", no_argument, NULL, OPT_SERVE },
    { "host", required_argument, NULL, OPT_HOST },
    { "port", required_argument, NULL, OPT_PORT },
    { "parallel", required_argument, NULL, OPT_PARALLEL },
    { "state-cache-mb", required_argument, NULL, OPT_STATE_CACHE_MB },
    { "states-mb", required_argument, NULL, OPT_STATES_MB },
    { "api-key", required_argument, NULL, OPT_API_KEY },
    { "max-tokens-cap", required_argument, NULL, OPT_MAX_TOKENS_CAP },
    { "max-body-kb", required_argument, NULL, OPT_MAX_BODY_KB },
    { "idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
};
#define N_FIXED (sizeof(fixed_opts) / sizeof(fixed_opts[0]))

/* fixed_opts, then --OPTION=VALUE for each knob, then the end mark;
 * NULL on allocation failure.  The caller frees. */
static struct option *long_options(void)
{
    size_t i, n = knob_count();
    struct option *o = malloc((N_FIXED + n + 1) * sizeof *o);

    if (!o) {
        return NULL;
    }
    memcpy(o, fixed_opts, sizeof fixed_opts);
    for (i = 0; i < n; i++) {
        o[N_FIXED + i] = (struct option){ knob_at(i)->option, required_argument, NULL,
                                          OPT_KNOB + (int)i };
    }
    o[N_FIXED + n] = (struct option){ NULL, 0, NULL, 0 };
    return o;
}
static const char shortopts[] = "m:p:t:vhV";

/* --help's lines for the knobs: "--top-p=P  what (default 0.3)". */
static void knobs_usage(FILE *f)
{
    struct app_options d;
    char opt[64], value[48];
    size_t i;

    options_defaults(&d);
    for (i = 0; i < knob_count(); i++) {
        const struct knob *k = knob_at(i);

        snprintf(opt, sizeof opt, "--%s=%s", k->option, k->metavar);
        knob_format(k, &d.sampling, 0, value, sizeof value);
        fprintf(f, "      %-18s %s (default %s)\n", opt, k->help,
                k->type == KNOB_SEED ? "random" : value);
    }
}

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
        "                         (default: g1 for RWKV-7 G1 files, else default)\n"
        "      --system=TEXT      a system turn (\"System: TEXT\") at the start\n"
        "      --think=MODE       G1 thinking: auto, off, on, a-bit, a-lot (default auto)\n"
        "      --state-in=FILE    start from a saved conversation state\n"
        "      --state-out=FILE   save the conversation state at the end\n"
        "      --state-tuned=FILE start from a state-tuned initial state (a .pth of\n"
        "                         blocks.N.att.time_state tensors made for this model)\n"
        "      --resume           continue the session saved when the TUI last quit\n"
        "      --vocab=PATH       tokenizer: a World vocabulary or a tokenizer.json (BPE)\n"
        "                         (default: the installed one the model's vocabulary size\n"
        "                         calls for: World for 65536, 20B BPE for 50277/50304)\n"
        "      --data-dir=DIR     search DIR for prompts, models and the vocabulary first\n"
        "  -t, --threads=N        worker threads (default: the CPUs it may run on)\n"
        "      --dtype=TYPE       weights as fp32, fp16, bf16, q8 or q4 (default: as stored)\n"
        "      --no-cache         convert the weights at every start; no conversion cache\n"
        "      --cache-max=SIZE   the conversion caches keep under SIZE bytes together\n"
        "                         (K, M, G suffixes; default RWKV_CHAT_CACHE_MAX, else\n"
        "                         the config's cache_max, else 16G)\n"
        "      --lora=FILE[:SCALE]\n"
        "                         merge a LoRA adapter (RWKV-PEFT's lora_A/lora_B file)\n"
        "                         into the weights at load; SCALE is lora_alpha / r\n"
        "                         (default 1); repeat for several adapters\n"
        "      --config=FILE      read FILE instead of ~/.config/rwkv-chat/config\n"
        "\n"
        "Sampling:\n");
    knobs_usage(f);
    fprintf(f, "      --greedy           temperature 0 and no penalties\n"
        "\n"
        "Batch mode:\n"
        "      --batch            no terminal UI: messages on stdin, replies on stdout\n"
        "      --jsonl            JSON lines in and out (implies --batch)\n"
        "      --complete         raw completion of the whole of stdin (implies --batch)\n"
        "  -v, --verbose          diagnostics on stderr\n"
        "\n"
        "Server (an OpenAI-compatible HTTP API, see rwkv-chat(1)):\n"
        "      --serve            serve /v1/chat/completions, /v1/completions, /v1/models,\n"
        "                         /v1/states/ID and /health instead of chatting\n"
        "      --host=H           address to listen on (default 127.0.0.1: this machine only)\n"
        "      --port=P           port (default 8080; 0: any free port, printed)\n"
        "      --parallel=N       conversations generated at once, more wait (default 4)\n"
        "      --state-cache-mb=MB\n"
        "                         memory for the states of past conversations, so that\n"
        "                         a new turn reads only its new tokens (default 1024)\n"
        "      --states-mb=MB     memory for named states (state_save, PUT /v1/states/ID);\n"
        "                         past it a save is refused with 507 (default 256)\n"
        "      --api-key=KEY      require \"Authorization: Bearer KEY\"\n"
        "      --max-tokens-cap=N the most max_tokens a request may ask for (default 16384)\n"
        "      --max-body-kb=KB   the largest request body (default 4096)\n"
        "      --idle-timeout=S   close a connection idle for S seconds (default 60)\n"
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
    opts->think = -1;
    opts->port = OPTIONS_DEFAULT_PORT;
    opts->parallel = OPTIONS_DEFAULT_PARALLEL;
    opts->state_cache_mb = OPTIONS_DEFAULT_STATE_CACHE_MB;
    opts->states_mb = OPTIONS_DEFAULT_STATES_MB;
    opts->max_tokens_cap = OPTIONS_DEFAULT_MAX_TOKENS_CAP;
    opts->max_body_kb = OPTIONS_DEFAULT_MAX_BODY_KB;
    opts->idle_timeout = OPTIONS_DEFAULT_IDLE_TIMEOUT;
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
    free(opts->system);
    free(opts->vocab);
    free(opts->data_dir);
    free(opts->config_path);
    free(opts->host);
    free(opts->api_key);
    free_colours(&opts->colours);
    options_free_lora(opts->lora, opts->n_lora);
    memset(opts, 0, sizeof(*opts));
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

void options_apply_given(const struct app_options *opts, struct sampler_settings *s)
{
    size_t i;

    for (i = 0; i < knob_count(); i++) {
        if (opts->knobs_given & (1u << i)) {
            knob_copy(knob_at(i), s, &opts->sampling);
        }
    }
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
static void prescan(int argc, char **argv, const struct option *longopts, const char **config,
                    int *ends)
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

static int parse(struct app_options *opts, int argc, char **argv, const struct option *longopts)
{
    const char *config = NULL;
    char err[512];
    int ends = 0, c, r;
    long l;

    options_defaults(opts);
    prescan(argc, argv, longopts, &config, &ends);
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
            if (r == CONFIG_UNREADABLE && !config) {
                /* A default config that cannot be read (an unreadable
                 * ~/.config) must not stop the program: it is skipped. */
                fprintf(stderr, "rwkv-chat: warning: %s (config file skipped)\n", err);
                r = 1;
            }
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
        const struct knob *k = knob_at((size_t)(c - OPT_KNOB));

        if (c >= OPT_KNOB && k) {
            char why[160];

            if (knob_parse(k, &opts->sampling, optarg, why, sizeof(why)) < 0) {
                short_usage("--%s: %s", k->option, why);
                return OPTIONS_USAGE;
            }
            if (k->type == KNOB_SEED) {
                opts->seed_set = 1;
            }
            opts->knobs_given |= 1u << knob_index(k);
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
            opts->model_in_config = 0;
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
        case OPT_SYSTEM:
            replace(&opts->system, optarg);
            break;
        case OPT_THINK: {
            enum chat_think mode;

            if (chat_think_parse(optarg, &mode) < 0) {
                short_usage("--think: unknown mode '%s' (auto, off, on, a-bit, a-lot)", optarg,
                            NULL);
                return OPTIONS_USAGE;
            }
            opts->think = (int)mode;
            opts->think_given = 1;
            break;
        }
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
        case OPT_CACHE_MAX:
            if (rwkv_cache_size_parse(optarg, &opts->cache_max) < 0) {
                short_usage("--cache-max: '%s' is not a size (bytes, or with a K, M or G "
                            "suffix)", optarg, NULL);
                return OPTIONS_USAGE;
            }
            opts->cache_max_from = OPTIONS_CACHE_MAX_OPTION;
            break;
        case OPT_LORA: {
            char why[512];

            if (options_add_lora(&opts->lora, &opts->n_lora, optarg, why, sizeof why) < 0) {
                short_usage("--lora: %s", why, NULL);
                return OPTIONS_USAGE;
            }
            break;
        }
        case OPT_CONFIG:
            break;
        case OPT_SERVE:
            opts->serve = 1;
            break;
        case OPT_HOST:
            if (!*optarg) {
                short_usage("--host: empty address", NULL, NULL);
                return OPTIONS_USAGE;
            }
            replace(&opts->host, optarg);
            break;
        case OPT_API_KEY:
            if (!*optarg) {
                short_usage("--api-key: empty key", NULL, NULL);
                return OPTIONS_USAGE;
            }
            replace(&opts->api_key, optarg);
            break;
        case OPT_PORT:
        case OPT_PARALLEL:
        case OPT_STATE_CACHE_MB:
        case OPT_STATES_MB:
        case OPT_MAX_TOKENS_CAP:
        case OPT_MAX_BODY_KB:
        case OPT_IDLE_TIMEOUT: {
            static const struct { int opt; const char *name; long lo, hi; } num[] = {
                { OPT_PORT, "port", 0, 65535 }, { OPT_PARALLEL, "parallel", 1, 64 },
                { OPT_STATE_CACHE_MB, "state-cache-mb", 0, 1048576 },
                { OPT_STATES_MB, "states-mb", 0, 1048576 },
                { OPT_MAX_TOKENS_CAP, "max-tokens-cap", 1, 1048576 },
                { OPT_MAX_BODY_KB, "max-body-kb", 1, 1048576 },
                { OPT_IDLE_TIMEOUT, "idle-timeout", 1, 86400 },
            };
            size_t i = 0;
            char range[64];

            while (num[i].opt != c) {
                i++;
            }
            if (parse_long(optarg, num[i].lo, num[i].hi, &l) < 0) {
                snprintf(range, sizeof range, "%ld to %ld", num[i].lo, num[i].hi);
                fprintf(stderr, "rwkv-chat: --%s: '%s' is not a whole number from %s\n",
                        num[i].name, optarg, range);
                fputs("Usage: rwkv-chat [OPTION]...\n"
                      "Try 'rwkv-chat --help' for more information.\n", stderr);
                return OPTIONS_USAGE;
            }
            switch (c) {
            case OPT_PORT: opts->port = (int)l; break;
            case OPT_PARALLEL: opts->parallel = (int)l; break;
            case OPT_STATE_CACHE_MB: opts->state_cache_mb = l; break;
            case OPT_STATES_MB: opts->states_mb = l; break;
            case OPT_MAX_TOKENS_CAP: opts->max_tokens_cap = (int)l; break;
            case OPT_MAX_BODY_KB: opts->max_body_kb = l; break;
            default: opts->idle_timeout = (int)l; break;
            }
            break;
        }
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
    if (opts->serve && (opts->batch || opts->jsonl || opts->complete || opts->resume)) {
        short_usage("--serve cannot be combined with --batch, --jsonl, --complete or --resume",
                    NULL, NULL);
        return OPTIONS_USAGE;
    }
    if (opts->jsonl || opts->complete) {
        opts->batch = 1;
    }
    if (opts->greedy) {
        static const char *const overridden[] = { "temperature", "presence", "frequency" };
        size_t i;

        /* --greedy sets these: an explicit value as well is a contradiction. */
        for (i = 0; i < sizeof overridden / sizeof overridden[0]; i++) {
            const struct knob *k = knob_find(overridden[i]);

            if (opts->knobs_given & (1u << knob_index(k))) {
                short_usage("--greedy and --%s cannot be combined: --greedy means temperature 0 "
                            "and no presence or frequency penalty", k->option, NULL);
                return OPTIONS_USAGE;
            }
        }
        opts->sampling.temperature = 0;
        opts->sampling.presence = 0;
        opts->sampling.frequency = 0;
        opts->knobs_given |= 1u << knob_index(knob_find("temperature"));
        opts->knobs_given |= 1u << knob_index(knob_find("presence"));
        opts->knobs_given |= 1u << knob_index(knob_find("frequency"));
    }
    return 0;
}

int options_parse(struct app_options *opts, int argc, char **argv)
{
    struct option *longopts = long_options();
    int rc;

    if (!longopts) {
        fputs("rwkv-chat: out of memory\n", stderr);
        return OPTIONS_ERROR;
    }
    /* getopt's own messages name argv[0]: say "rwkv-chat:", not the path. */
    {
        char *argv0 = argc > 0 ? argv[0] : NULL;
        char name[] = "rwkv-chat";

        if (argc > 0) {
            argv[0] = name;
        }
        rc = parse(opts, argc, argv, longopts);
        if (argc > 0) {
            argv[0] = argv0;
        }
    }
    free(longopts);
    return rc;
}

int options_add_lora(struct rwkv_lora **list, int *n, const char *arg, char *err,
                     size_t errlen)
{
    const char *colon = strrchr(arg, ':');
    size_t len = strlen(arg);
    struct rwkv_lora *grown;
    float scale = 1.0f;
    char *path, *end = NULL;
    double v = colon && colon > arg && colon[1] ? strtod(colon + 1, &end) : 0;

    if (end && end != colon + 1 && !*end && isfinite(v) && fabs(v) <= 1e6) {
        scale = (float)v;
        len = (size_t)(colon - arg);
    }
    if (len == 0) {
        snprintf(err, errlen, "'%s': no adapter file named", arg);
        return -1;
    }
    if (*n >= 256 || !(grown = realloc(*list, (size_t)(*n + 1) * sizeof *grown)) ||
        !(path = strndup(arg, len))) {
        snprintf(err, errlen, "'%s': too many adapters or out of memory", arg);
        return -1;
    }
    *list = grown;
    grown[*n].path = path;
    grown[*n].scale = scale;
    (*n)++;
    return 0;
}

void options_free_lora(struct rwkv_lora *list, int n)
{
    for (int i = 0; i < n; i++) {
        free((char *)list[i].path);
    }
    free(list);
}

uint64_t options_cache_limit(const struct app_options *opts, const char **from)
{
    uint64_t env;
    const char *said = "the default";
    uint64_t limit = rwkv_cache_limit();

    if (opts->cache_max_from == OPTIONS_CACHE_MAX_OPTION) {
        said = "--cache-max";
        limit = opts->cache_max;
    } else if (rwkv_cache_size_parse(getenv("RWKV_CHAT_CACHE_MAX"), &env) == 0) {
        said = "RWKV_CHAT_CACHE_MAX";
        limit = env;
    } else if (opts->cache_max_from == OPTIONS_CACHE_MAX_CONFIG) {
        said = "cache_max in the config file";
        limit = opts->cache_max;
    }
    if (from) {
        *from = said;
    }
    return limit;
}

uint64_t options_load_cache_max(const struct app_options *opts)
{
    uint64_t limit = options_cache_limit(opts, NULL);

    /* 1 byte keeps what 0 would (only the cache just written: every cache
     * is larger), and 0 means "unset" to rwkv_load_options */
    return limit ? limit : 1;
}
