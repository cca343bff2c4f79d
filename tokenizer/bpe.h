/*
 * bpe.h - byte-level BPE tokenizers in the Hugging Face tokenizer.json
 * format: GPT-NeoX's 20B_tokenizer.json, which the RWKV Pile models use.
 *
 * Encoding follows the tokenizers library step by step: invalid UTF-8
 * becomes U+FFFD (one per maximal invalid subsequence, as Python's
 * bytes.decode(errors="replace") does before the official pipeline sees a
 * str); the special tokens are cut out; the rest is normalized (NFC) and
 * the normalized added tokens (the runs of spaces) are cut out; the GPT-2
 * pre-tokenizer splits it into words; each word's bytes are merged by
 * rank.  Decoding concatenates the tokens' bytes; special tokens decode to
 * nothing.  Never prints: errors are one line in a caller buffer.  A loaded
 * tokenizer is never modified, so threads may share it.
 */
#ifndef RWKV_BPE_H
#define RWKV_BPE_H

#include <stddef.h>
#include <stdint.h>

#define BPE_ERRLEN 512
#define BPE_VOCAB_FILE "20B_tokenizer.json"

typedef struct bpe_tokenizer bpe_tokenizer;

/* Loads a tokenizer.json with a BPE model, a ByteLevel pre-tokenizer and
 * an NFC normalizer or none.  NULL on error with err filled
 * ("20B_tokenizer.json: merge 17 (\"x y\"): \"y\" is not in the vocabulary"). */
bpe_tokenizer *bpe_load(const char *path, char *err, size_t errlen);
/* As bpe_load, from the file's text (path is used only in messages). */
bpe_tokenizer *bpe_load_text(const char *path, const char *text, size_t len, char *err,
                             size_t errlen);
void bpe_free(bpe_tokenizer *tok);
/* Largest id + 1 (50277 for the 20B tokenizer; id 0 is end of text). */
int bpe_vocab_size(const bpe_tokenizer *tok);

/* Encodes n bytes.  *ids is malloc'd (free it); *n_ids set.  0, or -1 on
 * allocation failure. */
int bpe_encode(const bpe_tokenizer *tok, const uint8_t *bytes, size_t n, int32_t **ids,
               size_t *n_ids);
/* Bytes of one token; NULL for an unknown id; a special token has no
 * bytes (len 0, not NULL). */
const uint8_t *bpe_token(const bpe_tokenizer *tok, int32_t id, size_t *len);
/* Decodes ids into malloc'd *out (*out_len bytes, plus a NUL not counted).
 * -1 with err for an unknown id. */
int bpe_decode(const bpe_tokenizer *tok, const int32_t *ids, size_t n, uint8_t **out,
               size_t *out_len, char *err, size_t errlen);

#endif
