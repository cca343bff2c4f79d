/* tool_common.c - what every rwkv-tool subcommand shares (tool.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/session/config.h"
#include "app/session/models.h"
#include "app/session/options.h"
#include "app/session/paths.h"
#include "app/tools/tool.h"
#include "engine/rwkv.h"
#include "tokenizer/world.h"

void tool_error(const char *fmt, ...)
{
    va_list ap;

    fputs("rwkv-tool: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

char *tool_vocab_path(const char *option_value)
{
    char *p, *dirs;

    if (option_value) {
        return strdup(option_value);
    }
    if ((p = paths_find_data(WORLD_VOCAB_FILE)) != NULL) {
        return p;
    }
    dirs = paths_data_dirs(WORLD_VOCAB_FILE);
    tool_error("vocabulary not found (looked in %s): reinstall rwkv-chat or pass --vocab PATH",
               dirs ? dirs : "");
    free(dirs);
    return NULL;
}

char *tool_model_path(const char *name_or_path)
{
    char err[RWKV_ERRLEN];
    char *path = models_find(name_or_path, err, sizeof err);

    if (!path) {
        tool_error("%s", err);
    }
    return path;
}

/* The options of the user's config file that rwkv-tool follows (only
 * cache_max); a config file that cannot be read or has an error is
 * skipped with a warning. */
static void tool_config(struct app_options *opts)
{
    char err[512];
    char *path = config_default_path();
    int r;

    options_defaults(opts);
    if (!path) {
        return;
    }
    r = config_load(opts, path, err, sizeof err);
    if (r < 0) {
        fprintf(stderr, "rwkv-tool: warning: %s (config file skipped)\n", err);
        options_free(opts);
        options_defaults(opts);
    }
    free(path);
}

uint64_t tool_cache_limit(const char **from)
{
    struct app_options opts;
    uint64_t limit;

    tool_config(&opts);
    limit = options_cache_limit(&opts, from);
    options_free(&opts);
    return limit;
}

uint64_t tool_load_cache_max(void)
{
    struct app_options opts;
    uint64_t limit;

    tool_config(&opts);
    limit = options_load_cache_max(&opts);
    options_free(&opts);
    return limit;
}
