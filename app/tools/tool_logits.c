/* tool_logits.c - rwkv-tool logits: raw logits (and the final state) of a
 * token list, to compare the engine with a reference implementation. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/session/options.h"
#include "app/tools/tool.h"
#include "engine/base/atomicfile.h"
#include "engine/rwkv.h"

/* Tokens per rwkv_eval call in sequence mode: bounds the logits buffer
 * (a multiple of the engine's own step, so the numbers do not change). */
#define PIECE 256

static const struct option long_options[] = {
    { "tokens-file", required_argument, NULL, 't' },
    { "output", required_argument, NULL, 'o' },
    { "chunk", required_argument, NULL, 'c' },
    { "state-out", required_argument, NULL, 's' },
    { "dtype", required_argument, NULL, 'd' },
    { "threads", required_argument, NULL, 'j' },
    { "state-tuned", required_argument, NULL, 'T' },
    { "lora", required_argument, NULL, 'l' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: rwkv-tool logits MODEL --tokens-file FILE -o OUT.f32 [OPTION]...\n"
               "Evaluates the token ids in FILE (whitespace separated) from the zero state\n"
               "(or a state-tuned start) and writes one row of n_vocab little-endian float32 logits per token to\n"
               "OUT: row t holds the logits after tokens 0..t.  MODEL is a path, or a name\n"
               "from 'rwkv-tool models' as rwkv-chat --model takes it.\n\n"
               "Options:\n"
               "  -t, --tokens-file FILE  the token ids\n"
               "  -o, --output OUT        where the logits go\n"
               "  -c, --chunk N           feed N tokens per evaluation (1: RNN mode);\n"
               "                          default: the whole list in sequence mode\n"
               "  -s, --state-out FILE    also write the final state (float32, the\n"
               "                          official package's order)\n"
               "  -d, --dtype FORMAT      weight format: auto, fp32, fp16, bf16, q8, q4\n"
               "  -j, --threads N         worker threads (default: all CPUs)\n"
               "  -T, --state-tuned FILE  start from the state-tuned initial state in FILE\n"
               "                          (blocks.N.att.time_state tensors)\n"
               "  -l, --lora FILE[:SCALE] merge a LoRA adapter (RWKV-PEFT layout) at load,\n"
               "                          SCALE = lora_alpha / r (default 1); repeatable\n"
               "  -h, --help              display this help and exit\n");
}

/* Parses whitespace-separated token ids; NULL with an error printed. */
static int32_t *read_tokens(const char *path, size_t *count)
{
    FILE *f = fopen(path, "r");
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    char word[64];
    int c;

    if (!f) {
        tool_error("%s: %s", path, strerror(errno));
        return NULL;
    }
    for (;;) {
        size_t len = 0;
        char *end;
        long v;

        while ((c = getc(f)) != EOF && (c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
        }
        if (c == EOF) {
            break;
        }
        while (c != EOF && c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            if (len + 1 < sizeof word) {
                word[len++] = (char)c;
            }
            c = getc(f);
        }
        word[len] = 0;
        errno = 0;
        v = strtol(word, &end, 10);
        if (end == word || *end || errno || v < 0 || v > INT32_MAX) {
            tool_error("%s: token %zu: '%s' is not a token id", path, n + 1, word);
            free(ids);
            fclose(f);
            return NULL;
        }
        if (n == cap) {
            int32_t *more;

            cap = cap ? cap * 2 : 256;
            more = realloc(ids, cap * sizeof *ids);
            if (!more) {
                tool_error("%s: out of memory", path);
                free(ids);
                fclose(f);
                return NULL;
            }
            ids = more;
        }
        ids[n++] = (int32_t)v;
    }
    if (ferror(f)) {
        tool_error("%s: read error", path);
        free(ids);
        fclose(f);
        return NULL;
    }
    fclose(f);
    if (n == 0) {
        tool_error("%s: no token ids", path);
        free(ids);
        return NULL;
    }
    *count = n;
    return ids;
}

/* Writes n floats little-endian. */
static int write_floats(FILE *f, const float *v, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (size_t i = 0; i < n; i++) {
        uint32_t u;

        memcpy(&u, &v[i], 4);
        u = __builtin_bswap32(u);
        if (fwrite(&u, 4, 1, f) != 1) {
            return -1;
        }
    }
    return 0;
#else
    return fwrite(v, sizeof *v, n, f) == n ? 0 : -1;
#endif
}

/* An output file written atomically (engine/base/atomicfile.h) and put in
 * place on success; a device or pipe (/dev/null, /dev/stdout) is written
 * in place (af NULL), as renaming over it would replace it. */
struct outfile {
    const char *path;
    atomicfile *af;
    FILE *f;
};

static int out_open(struct outfile *o, const char *path)
{
    char err[RWKV_ERRLEN];
    struct stat st;

    o->path = path;
    o->af = NULL;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        if (!(o->f = fopen(path, "wb"))) {
            tool_error("%s: %s", path, strerror(errno));
            return -1;
        }
        return 0;
    }
    if (!(o->af = atomicfile_open(path, NULL, 0, err, sizeof err)) ||
        !(o->f = atomicfile_stream(o->af, err, sizeof err))) {
        tool_error("%s", err);
        atomicfile_abort(o->af);
        o->af = NULL;
        return -1;
    }
    return 0;
}

/* Closes; keep: sync and put in place, else remove the temporary. */
static int out_close(struct outfile *o, int keep)
{
    char err[RWKV_ERRLEN];
    int rc = 0;

    if (!o->f) {
        return 0;
    }
    if (!o->af) {
        if ((fflush(o->f) != 0 || fclose(o->f) != 0) && keep) {
            tool_error("%s: %s", o->path, strerror(errno));
            rc = -1;
        }
    } else if (!keep) {
        atomicfile_abort(o->af);
    } else if (atomicfile_commit(o->af, err, sizeof err) != 0) {
        tool_error("%s", err);
        rc = -1;
    }
    o->f = NULL;
    o->af = NULL;
    return rc;
}

static int parse_count(const char *s, const char *what, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < 0 || v > INT32_MAX) {
        tool_error("logits: %s must be a whole number, not '%s'", what, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Evaluates the tokens and streams the logits rows to out. */
static int evaluate(rwkv_context *ctx, rwkv_state *state, const int32_t *ids, size_t n,
                    size_t chunk, struct outfile *out)
{
    const struct rwkv_info *info = rwkv_model_info(rwkv_context_model(ctx));
    size_t piece = chunk ? chunk : PIECE;
    float *logits = malloc(piece * (size_t)info->n_vocab * sizeof *logits);
    char err[RWKV_ERRLEN];

    if (!logits) {
        tool_error("logits: out of memory for %zu rows of %d logits", piece, info->n_vocab);
        return -1;
    }
    for (size_t done = 0; done < n;) {
        size_t c = n - done < piece ? n - done : piece;

        if (rwkv_eval(ctx, state, ids + done, c, logits, 1, err, sizeof err) != 0) {
            tool_error("%s", err);
            free(logits);
            return -1;
        }
        if (write_floats(out->f, logits, c * (size_t)info->n_vocab) != 0) {
            tool_error("%s: %s", out->path, strerror(errno));
            free(logits);
            return -1;
        }
        done += c;
    }
    free(logits);
    return 0;
}

int tool_logits(int argc, char **argv)
{
    struct rwkv_load_options opts = { RWKV_DTYPE_AUTO, 0, RWKV_CACHE_MODE_ON, 0, 0, 0 };
    const char *tokens_path = NULL, *out_path = NULL, *state_path = NULL, *tuned_path = NULL;
    struct outfile out = { 0 }, state_out = { 0 };
    char err[RWKV_ERRLEN];
    struct rwkv_lora *lora = NULL;
    int n_lora = 0;
    rwkv_model *model;
    rwkv_context *ctx;
    rwkv_state *state;
    int32_t *ids;
    char *path;
    size_t n;
    long chunk = 0, threads;
    int c, rc = 1;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "t:o:c:s:d:j:T:l:h", long_options, NULL)) != -1) {
        switch (c) {
        case 't':
            tokens_path = optarg;
            break;
        case 'o':
            out_path = optarg;
            break;
        case 'c':
            if (parse_count(optarg, "--chunk", &chunk)) {
                return 2;
            }
            break;
        case 's':
            state_path = optarg;
            break;
        case 'd':
            if (rwkv_dtype_parse(optarg, &opts.dtype)) {
                tool_error("logits: unknown weight format '%s' (auto, fp32, fp16, bf16, q8, q4)",
                           optarg);
                return 2;
            }
            break;
        case 'j':
            if (parse_count(optarg, "--threads", &threads)) {
                return 2;
            }
            opts.n_threads = (int)threads;
            break;
        case 'T':
            tuned_path = optarg;
            break;
        case 'l':
            if (options_add_lora(&lora, &n_lora, optarg, err, sizeof err)) {
                tool_error("logits: --lora %s", err);
                options_free_lora(lora, n_lora);
                return 2;
            }
            break;
        case 'h':
            options_free_lora(lora, n_lora);
            usage(stdout);
            return 0;
        default:
            options_free_lora(lora, n_lora);
            if (optopt && strchr("tocsdjTl", optopt)) {
                tool_error("logits: option '%s' needs a value", argv[optind - 1]);
            } else {
                tool_error("logits: unrecognized option '%s'", argv[optind - 1]);
            }
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        tool_error(optind == argc ? "logits: missing MODEL" : "logits: more than one MODEL");
        usage(stderr);
        options_free_lora(lora, n_lora);
        return 2;
    }
    if (!tokens_path || !out_path) {
        tool_error("logits: %s is required", tokens_path ? "-o OUT" : "--tokens-file FILE");
        usage(stderr);
        options_free_lora(lora, n_lora);
        return 2;
    }

    if (!(path = tool_model_path(argv[optind]))) {
        options_free_lora(lora, n_lora);
        return 1;
    }
    ids = read_tokens(tokens_path, &n);
    if (!ids) {
        options_free_lora(lora, n_lora);
        free(path);
        return 1;
    }
    opts.cache_max = tool_load_cache_max();
    model = rwkv_model_load_lora(path, &opts, lora, n_lora, err, sizeof err);
    options_free_lora(lora, n_lora);
    ctx = model ? rwkv_context_new(model, 0, err, sizeof err) : NULL;
    if (!ctx) {
        tool_error("%s", err);
        rwkv_model_free(model);
        free(ids);
        free(path);
        return 1;
    }
    state = rwkv_state_new(model);
    if (!state) {
        tool_error("%s: out of memory for the state", path);
    } else if (tuned_path && rwkv_state_load_tuned(model, state, tuned_path, err, sizeof err)) {
        tool_error("%s", err);
    } else if (out_open(&out, out_path) == 0 &&
               (!state_path || out_open(&state_out, state_path) == 0) &&
               evaluate(ctx, state, ids, n, (size_t)chunk, &out) == 0) {
        rc = 0;
        if (state_path &&
            write_floats(state_out.f, rwkv_state_cdata(state), rwkv_state_floats(state)) != 0) {
            tool_error("%s: %s", state_out.path, strerror(errno));
            rc = 1;
        }
    }
    if (out_close(&state_out, rc == 0) != 0) {
        rc = 1;
    }
    if (out_close(&out, rc == 0) != 0) {
        rc = 1;
    }
    rwkv_state_free(state);
    rwkv_context_free(ctx);
    rwkv_model_free(model);
    free(ids);
    free(path);
    return rc;
}
