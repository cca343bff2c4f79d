/* fuzz_tokenizer.c - encode/decode round trip and the streaming decoder
 * with the real World vocabulary. */
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "tokenizer/world.h"

static world_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[4096], err[WORLD_ERRLEN];

    (void)argc;
    (void)argv;
    snprintf(path, sizeof path, "%s/%s", fuzz_share_dir(), WORLD_VOCAB_FILE);
    tok = world_load(path, err, sizeof err);
    if (!tok) {
        fprintf(stderr, "fuzz_tokenizer: %s (set FUZZ_SHARE to the source tree's share/)\n", err);
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int32_t *ids = NULL;
    size_t n_ids = 0, len = 0, n_out = 0;
    uint8_t *back = NULL, *streamed;
    char err[WORLD_ERRLEN];
    struct world_stream s;

    if (world_encode(tok, data, size, &ids, &n_ids) != 0) {
        return 0;
    }
    if (world_decode(tok, ids, n_ids, &back, &len, err, sizeof err) != 0 || len != size ||
        memcmp(back, data, size) != 0) {
        __builtin_trap();   /* decode must invert encode exactly */
    }
    /* Stream token by token: output is valid, bounded UTF-8. */
    streamed = malloc(3 * (size + 16) + 64);
    world_stream_init(&s);
    for (size_t i = 0; i < n_ids; i++) {
        size_t tl;
        const uint8_t *tb = world_token(tok, ids[i], &tl);
        n_out += world_stream_push(&s, tb, tl, streamed + n_out);
    }
    n_out += world_stream_flush(&s, streamed + n_out);
    if (n_out > 3 * size + 48) {
        __builtin_trap();
    }
    /* Decoding arbitrary ids must refuse unknown ones, not crash. */
    if (size >= 4) {
        int32_t raw[64];
        size_t n = size / 4 > 64 ? 64 : size / 4;
        memcpy(raw, data, n * 4);
        free(back);
        back = NULL;
        (void)world_decode(tok, raw, n, &back, &len, err, sizeof err);
    }
    free(streamed);
    free(back);
    free(ids);
    return 0;
}
