/*
 * tokenizer.h - the tokenizer a model needs, whichever kind it is: the RWKV
 * World trie (world.h) or a byte-level BPE such as GPT-NeoX's 20B (bpe.h).
 *
 * The kind is read from the file (a tokenizer.json starts with '{'), and
 * the default file from the model's vocabulary size.  Streaming output
 * goes through world.h's UTF-8 stream for both kinds.  Never prints; a
 * loaded tokenizer is never modified, so threads may share it.
 */
#ifndef RWKV_TOKENIZER_H
#define RWKV_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#define TOKENIZER_ERRLEN 512

typedef struct tokenizer tokenizer;

enum tokenizer_kind {
    TOKENIZER_WORLD,        /* rwkv_vocab_v20230424.txt: greedy longest match */
    TOKENIZER_BPE,          /* tokenizer.json: byte-level BPE */
};

/* The installed file for a model with n_vocab rows of embedding:
 * 65530 and more (World: 65536) -> the World vocabulary; 50277..65529
 * (Pile: 50277, padded 50304) -> 20B_tokenizer.json; NULL for others. */
const char *tokenizer_file_for_vocab(int n_vocab);

/* Loads a World vocabulary or a tokenizer.json, whichever path holds.
 * NULL on error with err filled. */
tokenizer *tokenizer_load(const char *path, char *err, size_t errlen);
void tokenizer_free(tokenizer *tok);
enum tokenizer_kind tokenizer_kind(const tokenizer *tok);
/* "World (trie, rwkv_vocab_v20230424.txt)", "BPE (20B_tokenizer.json)":
 * which tokenizer and file, for --verbose and /info. */
const char *tokenizer_describe(const tokenizer *tok);
/* Largest id + 1. */
int tokenizer_vocab_size(const tokenizer *tok);

/* As world_encode / bpe_encode: *ids malloc'd; 0, or -1 out of memory. */
int tokenizer_encode(const tokenizer *tok, const uint8_t *bytes, size_t n, int32_t **ids,
                     size_t *n_ids);
/* Bytes of one token; NULL for an unknown id; len 0 for end of text and
 * other special tokens. */
const uint8_t *tokenizer_token(const tokenizer *tok, int32_t id, size_t *len);
/* Decodes ids into malloc'd *out; -1 with err for an unknown id. */
int tokenizer_decode(const tokenizer *tok, const int32_t *ids, size_t n, uint8_t **out,
                     size_t *out_len, char *err, size_t errlen);

#endif
