/* tool_common.c - what every rwkv-tool subcommand shares (tool.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/session/models.h"
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
