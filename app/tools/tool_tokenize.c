/* tool_tokenize.c - rwkv-tool tokenize / detokenize: bytes <-> token ids. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/tools/tool.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/world.h"

static const struct option long_options[] = {
    { "vocab", required_argument, NULL, 'v' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

static void usage(FILE *f, const char *name)
{
    if (!strcmp(name, "tokenize")) {
        fprintf(f, "Usage: rwkv-tool tokenize [--vocab PATH] < FILE\n"
                   "Reads bytes from standard input and prints their token ids (RWKV World,\n"
                   "or BPE with a tokenizer.json) on one line, separated by spaces.\n\n");
    } else {
        fprintf(f, "Usage: rwkv-tool detokenize [--vocab PATH] < IDS\n"
                   "Reads whitespace-separated token ids (RWKV World, or BPE with a\n"
                   "tokenizer.json) from standard input and writes the bytes they stand for\n"
                   "to standard output.\n\n");
    }
    fprintf(f, "Options:\n"
               "      --vocab PATH  a World vocabulary or a tokenizer.json such as\n"
               "                    20B_tokenizer.json (default: the installed %s)\n"
               "  -h, --help        display this help and exit\n", WORLD_VOCAB_FILE);
}

/* Parses the options shared by both commands; returns -1 to exit with
 * *status, else 0 with *vocab set to the --vocab value or NULL. */
static int parse_options(int argc, char **argv, const char **vocab, int *status)
{
    int c;

    *vocab = NULL;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
        switch (c) {
        case 'v':
            *vocab = optarg;
            break;
        case 'h':
            usage(stdout, argv[0]);
            *status = 0;
            return -1;
        default:
            if (optopt == 'v') {
                tool_error("%s: option '--vocab' needs a PATH", argv[0]);
            } else {
                tool_error("%s: unrecognized option '%s'", argv[0], argv[optind - 1]);
            }
            usage(stderr, argv[0]);
            *status = 2;
            return -1;
        }
    }
    if (optind < argc) {
        tool_error("%s: unexpected argument '%s' (input is read from stdin)", argv[0],
                   argv[optind]);
        usage(stderr, argv[0]);
        *status = 2;
        return -1;
    }
    return 0;
}

/* Loads the vocabulary named by --vocab or the installed one; NULL with
 * the error printed. */
static tokenizer *load_vocab(const char *option_value)
{
    char err[WORLD_ERRLEN];
    char *path = tool_vocab_path(option_value);
    tokenizer *tok;

    if (!path) {
        return NULL;
    }
    if (!(tok = tokenizer_load(path, err, sizeof err))) {
        tool_error("%s", err);
    }
    free(path);
    return tok;
}

/* Reads all of stdin into malloc'd memory; NULL with the error printed. */
static uint8_t *read_stdin(size_t *len)
{
    size_t cap = 1 << 16, n = 0, got;
    uint8_t *data = malloc(cap), *grown;

    for (;;) {
        if (!data) {
            tool_error("stdin: out of memory");
            return NULL;
        }
        got = fread(data + n, 1, cap - n, stdin);
        n += got;
        if (n < cap) {
            if (ferror(stdin)) {
                tool_error("stdin: %s", strerror(errno));
                free(data);
                return NULL;
            }
            if (feof(stdin)) {
                break;
            }
            continue;
        }
        cap *= 2;
        if (!(grown = realloc(data, cap))) {
            free(data);
        }
        data = grown;
    }
    *len = n;
    return data;
}

/* What both commands start with: the options, the vocabulary and all of
 * stdin.  Returns -1 to exit with *status (any error printed), else 0. */
static int start(int argc, char **argv, tokenizer **tok, uint8_t **input, size_t *n,
                 int *status)
{
    const char *vocab;

    if (parse_options(argc, argv, &vocab, status) < 0) {
        return -1;
    }
    if (!(*tok = load_vocab(vocab))) {
        return -1;
    }
    if (!(*input = read_stdin(n))) {
        tokenizer_free(*tok);
        return -1;
    }
    return 0;
}

int tool_tokenize(int argc, char **argv)
{
    tokenizer *tok;
    uint8_t *input;
    int32_t *ids;
    size_t n, n_ids, i;
    int status = 1;

    if (start(argc, argv, &tok, &input, &n, &status) < 0) {
        return status;
    }
    if (tokenizer_encode(tok, input, n, &ids, &n_ids) < 0) {
        tool_error("stdin: out of memory encoding %zu bytes", n);
        goto out;
    }
    for (i = 0; i < n_ids; i++) {
        printf(i ? " %d" : "%d", (int)ids[i]);
    }
    putchar('\n');
    free(ids);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        tool_error("stdout: %s", strerror(errno));
        goto out;
    }
    status = 0;
out:
    free(input);
    tokenizer_free(tok);
    return status;
}

int tool_detokenize(int argc, char **argv)
{
    char err[WORLD_ERRLEN];
    tokenizer *tok;
    uint8_t *input, *bytes = NULL;
    int32_t *ids = NULL;
    size_t n, n_ids = 0, len;
    char *p, *word;
    int status = 1;

    if (start(argc, argv, &tok, &input, &n, &status) < 0) {
        return status;
    }
    /* Room for every id: each takes at least two bytes with its separator. */
    if (!(ids = malloc((n / 2 + 1) * sizeof *ids))) {
        tool_error("stdin: out of memory");
        goto out;
    }
    if (memchr(input, 0, n)) {
        tool_error("stdin: NUL byte among the ids");
        goto out;
    }
    input[n] = 0;   /* read_stdin leaves room: n < cap */
    for (p = (char *)input; ; ) {
        long v;
        char *endp;

        while (*p && isspace((unsigned char)*p)) {
            p++;
        }
        if (!*p) {
            break;
        }
        word = p;
        errno = 0;
        v = strtol(p, &endp, 10);
        if (endp == p || (*endp && !isspace((unsigned char)*endp))) {
            while (*p && !isspace((unsigned char)*p)) {
                p++;
            }
            *p = 0;
            tool_error("stdin: '%.40s' is not a token id", word);
            goto out;
        }
        if (errno == ERANGE || v > INT32_MAX || v < INT32_MIN) {
            *endp = 0;
            tool_error("id %.40s out of range (vocabulary has %d ids)", word,
                       tokenizer_vocab_size(tok));
            goto out;
        }
        ids[n_ids++] = (int32_t)v;
        p = endp;
    }
    if (tokenizer_decode(tok, ids, n_ids, &bytes, &len, err, sizeof err) < 0) {
        tool_error("%s", err);
        goto out;
    }
    if (fwrite(bytes, 1, len, stdout) != len || fflush(stdout) != 0) {
        tool_error("stdout: %s", strerror(errno));
        goto out;
    }
    status = 0;
out:
    free(bytes);
    free(ids);
    free(input);
    tokenizer_free(tok);
    return status;
}
