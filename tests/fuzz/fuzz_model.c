/* fuzz_model.c - model loading (engine/model/model.c: version detection, sizes,
 * validation, the NaN/Inf scan, weight preparation) and one step of the
 * forward pass, on checkpoints described by arbitrary safetensors headers.
 *
 * The input is the JSON header alone; the harness appends 4 MiB of zero
 * data (sparse), so the fuzzer explores names, shapes and versions rather
 * than megabytes of weights.  Seeds: the headers of the fixtures. */
#include <string.h>

#include "engine/rwkv.h"
#include "tests/fuzz/fuzz.h"

#define DATA_BYTES ((size_t)4 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rwkv_load_options opts = { RWKV_DTYPE_AUTO, 1, RWKV_CACHE_MODE_ON };
    uint8_t len[8];
    char path[64], err[1024];
    rwkv_model *m;
    int fd, i;

    if (size > (1 << 20)) {
        return 0;
    }
    for (i = 0; i < 8; i++) {
        len[i] = (uint8_t)((uint64_t)size >> (8 * i));
    }
    fd = fuzz_memfile(len, 8, path, sizeof path);
    if (fd < 0) {
        return 0;
    }
    if (write(fd, data, size) != (ssize_t)size || ftruncate(fd, (off_t)(8 + size + DATA_BYTES))) {
        close(fd);
        return 0;
    }
    m = rwkv_model_load(path, &opts, err, sizeof err);
    if (m) {
        const struct rwkv_info *info = rwkv_model_info(m);
        rwkv_context *ctx = rwkv_context_new(m, 0, err, sizeof err);
        rwkv_state *st = rwkv_state_new(m);
        float *logits = malloc((size_t)info->n_vocab * 2 * sizeof(float));
        int32_t tokens[2] = { 0, info->n_vocab - 1 };

        if (ctx && st && logits) {
            (void)rwkv_eval(ctx, st, tokens, 1, logits, 0, err, sizeof err);
            (void)rwkv_eval(ctx, st, tokens, 2, logits, 1, err, sizeof err);
        }
        free(logits);
        rwkv_state_free(st);
        rwkv_context_free(ctx);
        rwkv_model_free(m);
    } else if (strchr(err, '\n')) {
        __builtin_trap();
    }
    close(fd);
    return 0;
}
