/* fuzz_pth.c - the checkpoint reader (.pth zip + unpickler, safetensors
 * sniffed by magic) on arbitrary files: must refuse, never crash. */
#include "engine/load/checkpoint.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], err[512];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    ckpt_file *f;

    if (fd < 0) {
        return 0;
    }
    f = ckpt_open(path, err, sizeof err);
    if (f) {
        /* Touch every byte of every tensor: reads must stay in bounds. */
        for (size_t i = 0; i < ckpt_count(f); i++) {
            const struct ckpt_tensor *t = ckpt_at(f, i);
            volatile uint8_t sum = 0;
            for (size_t b = 0; b < t->nbytes; b++) {
                sum ^= ((const uint8_t *)t->data)[b];
            }
            (void)ckpt_find(f, t->name);
        }
        ckpt_close(f);
    }
    close(fd);
    return 0;
}
