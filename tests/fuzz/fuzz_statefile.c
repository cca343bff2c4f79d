/* fuzz_statefile.c - state files against a small model: the container
 * reader (engine/load/statefile.c) and the chat's sections (app/session/chat_*.c
 * chat_load) must refuse bad files, never crash, and leave the chat as it
 * was.  The model is loaded once: $FUZZ_MODEL, by default the v7-world
 * fixture (a World-vocabulary model, so the chat's tokenizer matches).
 *
 * A mutated file almost never passes the checksum, so each input is tried
 * twice: as it is, and with its size field and FNV-1a checksum repaired so
 * that the section table and the sections themselves get fuzzed. */
#include <string.h>

#include "app/session/chat.h"
#include "engine/load/statefile.h"
#include "tests/fuzz/fuzz.h"
#include "tokenizer/world.h"

#ifndef FUZZ_DEFAULT_MODEL
#define FUZZ_DEFAULT_MODEL "../shared/fixtures/models/v7-world.pth"
#endif

static rwkv_model *model;
static tokenizer *tok;
static chat *conv;
static rwkv_state *state;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct rwkv_load_options opts = { RWKV_DTYPE_AUTO, 1, RWKV_CACHE_MODE_ON };
    const char *path = getenv("FUZZ_MODEL");
    char err[1024], vocab[4096];

    (void)argc;
    (void)argv;
    model = rwkv_model_load(path ? path : FUZZ_DEFAULT_MODEL, &opts, err, sizeof err);
    if (!model) {
        fprintf(stderr, "fuzz_statefile: %s (set FUZZ_MODEL)\n", err);
        exit(1);
    }
    snprintf(vocab, sizeof vocab, "%s/rwkv_vocab_v20230424.txt", fuzz_share_dir());
    tok = tokenizer_load(vocab, err, sizeof err);
    conv = tok ? chat_new(model, tok, NULL, NULL, err, sizeof err) : NULL;
    if (!conv) {
        fprintf(stderr, "fuzz_statefile: %s (set FUZZ_SHARE)\n", err);
        exit(1);
    }
    state = rwkv_state_new(model);
    return 0;
}

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    while (n--) {
        h = (h ^ *p++) * 0x100000001b3ULL;
    }
    return h;
}

static void try_file(const uint8_t *data, size_t size)
{
    char path[64], err[1024];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    rwkv_statefile *sf;
    size_t turns_before = chat_turn_count(conv);

    if (fd < 0) {
        return;
    }
    sf = rwkv_statefile_load(path, model, err, sizeof err);
    if (sf) {
        static const char *const tags[] = { "state", "transcript", "template", "settings", "knobs",
                                            "sampler", "chat", "tuned", "tuned_name",
                                            "template_ext", "think", "system", "reasoning",
                                            "snapshots", "x" };
        volatile uint8_t sum = 0;
        size_t i, j, n;

        rwkv_statefile_get_state(sf, state);
        for (i = 0; i < sizeof tags / sizeof tags[0]; i++) {
            const uint8_t *p = rwkv_statefile_section(sf, tags[i], &n);
            for (j = 0; p && j < n; j++) {
                sum ^= p[j];
            }
        }
        rwkv_statefile_free(sf);
    } else if (strchr(err, '\n')) {
        __builtin_trap();       /* errors are one line */
    }
    if (chat_load(conv, path, err, sizeof err) < 0) {
        /* a refused file changes nothing */
        if (chat_turn_count(conv) != turns_before || strchr(err, '\n')) {
            __builtin_trap();
        }
    } else {
        chat_reset(conv);
    }
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *fixed;
    uint64_t h;
    int i;

    try_file(data, size);
    if (size < 136 || memcmp(data, "RWKVSTAT", 8) != 0) {
        return 0;
    }
    fixed = malloc(size);
    if (!fixed) {
        return 0;
    }
    memcpy(fixed, data, size);
    for (i = 0; i < 8; i++) {
        fixed[16 + i] = (uint8_t)((uint64_t)size >> (8 * i));
    }
    h = fnv1a(fixed, size - 8);
    for (i = 0; i < 8; i++) {
        fixed[size - 8 + i] = (uint8_t)(h >> (8 * i));
    }
    try_file(fixed, size);
    free(fixed);
    return 0;
}
