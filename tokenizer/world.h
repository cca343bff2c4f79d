/*
 * world.h - the RWKV World tokenizer (rwkv_vocab_v20230424.txt).
 *
 * Greedy longest match over bytes, identical to the official
 * TRIE_TOKENIZER; decode is its exact inverse.  Never prints: errors are
 * returned as one line in a caller buffer.  A loaded tokenizer is never
 * modified, so threads may share it.
 */
#ifndef RWKV_WORLD_H
#define RWKV_WORLD_H

#include <stddef.h>
#include <stdint.h>

#define WORLD_ERRLEN 512
#define WORLD_VOCAB_FILE "rwkv_vocab_v20230424.txt"

typedef struct world_tokenizer world_tokenizer;

/* Loads a vocabulary file: lines "ID LITERAL LENGTH" with a Python str or
 * bytes literal; every single byte must be a token, so that any input
 * encodes.  NULL on error with err filled
 * ("vocab.txt:17: declared length 3, decoded 2 bytes"). */
world_tokenizer *world_load(const char *path, char *err, size_t errlen);
void world_free(world_tokenizer *tok);
/* Largest id + 1 (65530 for the World vocabulary; id 0 is end of text). */
int world_vocab_size(const world_tokenizer *tok);

/* Encodes n bytes.  *ids is malloc'd (free it); *n_ids set.  0, or -1 on
 * allocation failure. */
int world_encode(const world_tokenizer *tok, const uint8_t *bytes, size_t n,
                 int32_t **ids, size_t *n_ids);
/* Bytes of one token; NULL for an unknown id (id 0 has no bytes: len 0). */
const uint8_t *world_token(const world_tokenizer *tok, int32_t id, size_t *len);
/* Decodes ids into malloc'd *out (*out_len bytes, plus a NUL not counted).
 * -1 with err for an unknown id. */
int world_decode(const world_tokenizer *tok, const int32_t *ids, size_t n,
                 uint8_t **out, size_t *out_len, char *err, size_t errlen);

/* Streaming decoder: feed token bytes as generated, get back only complete
 * UTF-8 characters; an incomplete sequence is held until the next bytes
 * complete it.  Zero-initialise (or world_stream_init) before use. */
struct world_stream {
    uint8_t held[8];
    int n_held;
};
void world_stream_init(struct world_stream *s);
/* Appends n input bytes; writes the printable bytes to out (room for
 * 3 * (n + 8) bytes) and returns how many.  Invalid sequences become U+FFFD. */
size_t world_stream_push(struct world_stream *s, const uint8_t *in, size_t n, uint8_t *out);
/* Flushes what is held (each byte that never formed a character becomes
 * U+FFFD); out has room for 8 * 3 bytes.  Returns bytes written. */
size_t world_stream_flush(struct world_stream *s, uint8_t *out);

#endif
