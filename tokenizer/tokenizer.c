/* tokenizer.c - one face for the World trie and the byte-level BPE. */
#include "tokenizer/tokenizer.h"
#include "tokenizer/bpe.h"
#include "tokenizer/world.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/escape.h"

struct tokenizer {
    enum tokenizer_kind kind;
    world_tokenizer *world;
    bpe_tokenizer *bpe;
    char description[256];
};

const char *tokenizer_file_for_vocab(int n_vocab)
{
    if (n_vocab >= 65530) {
        return WORLD_VOCAB_FILE;
    }
    return n_vocab >= 50277 ? BPE_VOCAB_FILE : NULL;
}

/* Whether the file's first byte that is not white space is '{'. */
static int looks_like_json(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    int c;

    if (!f) {
        snprintf(err, errlen, "%s: %s", RWKV_ESC(path), strerror(errno));
        return -1;
    }
    while ((c = getc(f)) == ' ' || c == '\t' || c == '\n' || c == '\r') {
    }
    fclose(f);
    return c == '{';
}

tokenizer *tokenizer_load(const char *path, char *err, size_t errlen)
{
    tokenizer *tok;
    const char *base = strrchr(path, '/');
    int json;

    if ((json = looks_like_json(path, err, errlen)) < 0) {
        return NULL;
    }
    if (!(tok = calloc(1, sizeof *tok))) {
        snprintf(err, errlen, "%s: out of memory", RWKV_ESC(path));
        return NULL;
    }
    base = base ? base + 1 : path;
    if (json) {
        tok->kind = TOKENIZER_BPE;
        tok->bpe = bpe_load(path, err, errlen);
        snprintf(tok->description, sizeof tok->description, "BPE (%s)", RWKV_ESC(base));
    } else {
        tok->kind = TOKENIZER_WORLD;
        tok->world = world_load(path, err, errlen);
        snprintf(tok->description, sizeof tok->description, "World (trie, %s)", RWKV_ESC(base));
    }
    if (!tok->bpe && !tok->world) {
        free(tok);
        return NULL;
    }
    return tok;
}

void tokenizer_free(tokenizer *tok)
{
    if (!tok) {
        return;
    }
    world_free(tok->world);
    bpe_free(tok->bpe);
    free(tok);
}

enum tokenizer_kind tokenizer_kind(const tokenizer *tok)
{
    return tok->kind;
}

const char *tokenizer_describe(const tokenizer *tok)
{
    return tok->description;
}

int tokenizer_vocab_size(const tokenizer *tok)
{
    return tok->bpe ? bpe_vocab_size(tok->bpe) : world_vocab_size(tok->world);
}

int tokenizer_encode(const tokenizer *tok, const uint8_t *bytes, size_t n, int32_t **ids,
                     size_t *n_ids)
{
    return tok->bpe ? bpe_encode(tok->bpe, bytes, n, ids, n_ids)
                    : world_encode(tok->world, bytes, n, ids, n_ids);
}

const uint8_t *tokenizer_token(const tokenizer *tok, int32_t id, size_t *len)
{
    return tok->bpe ? bpe_token(tok->bpe, id, len) : world_token(tok->world, id, len);
}

int tokenizer_decode(const tokenizer *tok, const int32_t *ids, size_t n, uint8_t **out,
                     size_t *out_len, char *err, size_t errlen)
{
    return tok->bpe ? bpe_decode(tok->bpe, ids, n, out, out_len, err, errlen)
                    : world_decode(tok->world, ids, n, out, out_len, err, errlen);
}
