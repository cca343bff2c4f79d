/* fuzz_convcache.c - the conversion cache reader (engine/load/convcache.c) on
 * arbitrary files: it must refuse anything malformed with a one-line
 * reason, and whatever it accepts must lie inside the file (every byte of
 * every accepted matrix is read here, so ASan sees any escape).
 *
 * A mutated file almost never passes the hashes, so each input is tried
 * twice: as it is, and sealed (convcache_seal: size field and hashes made
 * consistent) so that the table checks themselves get fuzzed.  Seeds:
 * small caches written for the fixed key below. */
#include <string.h>

#include "engine/load/convcache.h"
#include "engine/kernels/quant.h"
#include "tests/fuzz/fuzz.h"

/* The key the seeds were written for (tests/fuzz/corpus/convcache). */
static const struct convcache_key key = {
    .size = 1, .ino = 2, .dev = 3, .fingerprint = 4, .pack_signature = 5, .mtime_ns = 6,
    .dtype = RWKV_DTYPE_Q4,
};

static void try_image(const uint8_t *data, size_t size)
{
    char why[512];
    convcache *c = convcache_parse(data, size, &key, NULL, why, sizeof why);
    volatile uint8_t sum = 0;

    if (!c) {
        if (strchr(why, '\n') || !why[0]) {
            __builtin_trap();       /* reasons are one line */
        }
        return;
    }
    for (size_t i = 0; i < convcache_count(c); i++) {
        const char *name;
        struct kmat m, again;
        size_t n;

        if (convcache_entry(c, i, &name, &m) != 0 || !convcache_has_name(c, name)) {
            __builtin_trap();
        }
        n = (size_t)m.rows * quant_row_bytes(m.type, m.cols);
        for (size_t j = 0; j < n; j++) {
            sum ^= ((const uint8_t *)m.data)[j];
        }
        for (size_t j = 0; m.scales && j < (size_t)m.rows * sizeof(float); j++) {
            sum ^= ((const uint8_t *)m.scales)[j];
        }
        memset(&again, 0, sizeof again);
        again.type = m.type;
        again.rows = m.rows;
        again.cols = m.cols;
        if (!convcache_find(c, name, 0, 0, &again) && !convcache_find(c, name, 0, 1, &again)) {
            sum ^= 1;
        }
    }
    convcache_close(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *sealed;

    try_image(data, size);
    sealed = malloc(size ? size : 1);
    if (!sealed) {
        return 0;
    }
    memcpy(sealed, data, size);
    convcache_seal(sealed, size);
    try_image(sealed, size);
    free(sealed);
    return 0;
}
