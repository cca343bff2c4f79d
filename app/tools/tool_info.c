/* tool_info.c - rwkv-tool info: what a model file is, read from its tensors
 * (the version's heads and LoRA ranks as its engine/model/versions.h entry names
 * them). */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/tools/tool.h"
#include "engine/rwkv.h"
#include "engine/model/versions.h"

static const struct option long_options[] = {
    { "dtype", required_argument, NULL, 'd' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: rwkv-tool info [--dtype FORMAT] MODEL\n"
               "Loads an RWKV checkpoint (.pth or .safetensors; a path, or a name from\n"
               "'rwkv-tool models' as rwkv-chat --model takes it), checks every tensor and\n"
               "prints its version, sizes, parameter count and the weight bytes one\n"
               "generated token reads.  Tensors the version does not use are listed.\n\n"
               "Options:\n"
               "  -d, --dtype FORMAT  weight format to compute in: auto (as stored), fp32,\n"
               "                      fp16, bf16, q8, q4 (changes bytes per token)\n"
               "  -h, --help          display this help and exit\n");
}

/* "1.23 M" style figure for humans, next to the exact number. */
static const char *human(double v, const char *unit, char *buf, size_t len)
{
    static const char *prefix[] = { "", "K", "M", "G", "T" };
    int i = 0;

    while (v >= 1000 && i < 4) {
        v /= 1000;
        i++;
    }
    snprintf(buf, len, i ? "%.2f %s%s" : "%.0f %s%s", v, prefix[i], unit);
    return buf;
}

int tool_info(int argc, char **argv)
{
    struct rwkv_load_options opts = { RWKV_DTYPE_AUTO, 1, RWKV_CACHE_MODE_ON, 0, 1, 0 };
    const struct rwkv_info *info;
    const struct rwkv_version *version;
    char err[RWKV_ERRLEN], h[32];
    rwkv_model *model;
    char *path;
    int c, i;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "d:h", long_options, NULL)) != -1) {
        switch (c) {
        case 'd':
            if (rwkv_dtype_parse(optarg, &opts.dtype)) {
                tool_error("info: unknown weight format '%s' (auto, fp32, fp16, bf16, q8, q4)",
                           optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            if (optopt == 'd') {
                tool_error("info: option '--dtype' needs a FORMAT");
            } else {
                tool_error("info: unrecognized option '%s'", argv[optind - 1]);
            }
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        tool_error(optind == argc ? "info: missing MODEL" : "info: more than one MODEL");
        usage(stderr);
        return 2;
    }
    if (!(path = tool_model_path(argv[optind]))) {
        return 1;
    }
    opts.cache_max = tool_load_cache_max();
    model = rwkv_model_load(path, &opts, err, sizeof(err));
    if (!model) {
        tool_error("%s", err);
        free(path);
        return 1;
    }
    info = rwkv_model_info(model);
    printf("file:          %s\n", path);
    free(path);
    printf("version:       RWKV-%s\n", info->version_name);
    printf("layers:        %d\n", info->n_layer);
    printf("embedding:     %d\n", info->n_embd);
    version = rwkv_version_of(info->version, info->minor);
    if (version && version->heads_tensor) {
        printf("heads:         %d x %d\n", info->n_head, info->head_size);
    } else {
        printf("heads:         - (RWKV-%s has none)\n", info->version_name);
    }
    printf("vocab:         %d\n", info->n_vocab);
    printf("ffn:           %d\n", info->ffn_size);
    for (i = 0; version && i < version->n_ranks; i++) {
        const struct rwkv_rank *r = &version->ranks[i];

        printf("%s%s %d%s", i ? "" : "lora ranks:    ", r->label,
               *(const int *)((const char *)info + r->info_offset),
               i + 1 < version->n_ranks ? ", " : "\n");
    }
    printf("stored dtype:  %s\n", rwkv_dtype_name(info->stored_dtype));
    printf("compute dtype: %s\n", rwkv_dtype_name(info->compute_dtype));
    printf("parameters:    %" PRIu64 " (%s)\n", info->n_params,
           human((double)info->n_params, "", h, sizeof(h)));
    printf("file size:     %" PRIu64 " bytes (%s)\n", info->file_size,
           human((double)info->file_size, "B", h, sizeof(h)));
    printf("bytes/token:   %" PRIu64 " (%s)\n", info->bytes_per_token,
           human((double)info->bytes_per_token, "B", h, sizeof(h)));
    printf("state:         %zu floats\n", info->state_floats);
    printf("fingerprint:   %016" PRIx64 "\n", info->fingerprint);
    printf("extra tensors: %d\n", info->n_extra_tensors);
    for (i = 0; i < info->n_extra_tensors; i++) {
        printf("  %s\n", rwkv_model_extra_tensor(model, i));
    }
    rwkv_model_free(model);
    return 0;
}
