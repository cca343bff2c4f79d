/* fuzz_vocab.c - the vocabulary parser on arbitrary files; a vocabulary
 * that loads must encode and decode its own bytes. */
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "tokenizer/world.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], err[WORLD_ERRLEN];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    world_tokenizer *tok;

    if (fd < 0) {
        return 0;
    }
    tok = world_load(path, err, sizeof err);
    if (tok) {
        int32_t *ids = NULL;
        size_t n_ids = 0, len = 0;
        uint8_t *back = NULL;

        if (world_encode(tok, data, size, &ids, &n_ids) == 0 &&
            world_decode(tok, ids, n_ids, &back, &len, err, sizeof err) == 0) {
            /* Bytes the vocabulary cannot spell are dropped, never invented. */
            if (len > size) {
                __builtin_trap();
            }
        }
        free(back);
        free(ids);
        world_free(tok);
    }
    close(fd);
    return 0;
}
