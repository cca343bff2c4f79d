/* fuzz_bpe.c - the byte-level BPE encoder with the real 20B_tokenizer.json:
 * any bytes encode to ids of the vocabulary, decode to valid UTF-8 (the
 * NFC text itself when the input is valid UTF-8 without special tokens),
 * and stream through the World decoder in whole characters. */
#include <string.h>

#include <utf8proc.h>

#include "tests/fuzz/fuzz.h"
#include "tokenizer/bpe.h"
#include "tokenizer/world.h"

static bpe_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[4096], err[BPE_ERRLEN];

    (void)argc;
    (void)argv;
    snprintf(path, sizeof path, "%s/%s", fuzz_share_dir(), BPE_VOCAB_FILE);
    tok = bpe_load(path, err, sizeof err);
    if (!tok) {
        fprintf(stderr, "fuzz_bpe: %s (set FUZZ_SHARE to the source tree's share/)\n", err);
        exit(1);
    }
    return 0;
}

static int valid_utf8(const uint8_t *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t r = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &cp);

        if (r <= 0) {
            return 0;
        }
        i += (size_t)r;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int32_t *ids = NULL;
    size_t n_ids = 0, len = 0, n_out = 0, i;
    uint8_t *back = NULL, *streamed;
    char err[BPE_ERRLEN];
    struct world_stream s;

    if (bpe_encode(tok, data, size, &ids, &n_ids) != 0) {
        return 0;
    }
    for (i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= bpe_vocab_size(tok) || !bpe_token(tok, ids[i], &len)) {
            __builtin_trap();   /* every id is a token */
        }
    }
    if (bpe_decode(tok, ids, n_ids, &back, &len, err, sizeof err) != 0 || !valid_utf8(back, len)) {
        __builtin_trap();   /* the decoding is valid UTF-8 */
    }
    if (size > 0 && valid_utf8(data, size) && !memmem(data, size, "<|", 2)) {
        utf8proc_uint8_t *nfc = NULL;
        utf8proc_ssize_t nfc_len = utf8proc_map(data, (utf8proc_ssize_t)size, &nfc,
                                                UTF8PROC_STABLE | UTF8PROC_COMPOSE);

        if (nfc_len >= 0 && ((size_t)nfc_len != len || memcmp(nfc, back, len) != 0)) {
            __builtin_trap();   /* decode(encode(x)) == NFC(x) */
        }
        free(nfc);
    }
    /* Stream token by token: whole characters out, the same bytes in the end. */
    streamed = malloc(3 * (len + 16) + 64);
    world_stream_init(&s);
    for (i = 0; i < n_ids; i++) {
        size_t tl;
        const uint8_t *tb = bpe_token(tok, ids[i], &tl);

        n_out += world_stream_push(&s, tb, tl, streamed + n_out);
    }
    n_out += world_stream_flush(&s, streamed + n_out);
    if (n_out != len || memcmp(streamed, back, len) != 0) {
        __builtin_trap();
    }
    free(streamed);
    free(back);
    free(ids);
    return 0;
}
