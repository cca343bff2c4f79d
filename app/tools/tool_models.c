/* tool_models.c - rwkv-tool models: the models rwkv-chat --model NAME finds. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/session/models.h"
#include "app/tools/tool.h"
#include "engine/base/escape.h"
#include "engine/rwkv.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: rwkv-tool models [OPTION]...\n"
               "List the models that 'rwkv-chat --model NAME' finds, in search order:\n"
               "$XDG_DATA_HOME/rwkv-chat/models, then the data directories' models/\n"
               "($RWKV_CHAT_DATADIR, the installed ones).  For each: name, RWKV version,\n"
               "parameter count, file size and path.\n\n"
               "  -h, --help     display this help and exit\n");
}

/* "18.2M", "1.5B": a count with an SI suffix. */
static void human(char *buf, size_t len, double v, const char *unit)
{
    if (v >= 1e9) {
        snprintf(buf, len, "%.1fG%s", v / 1e9, unit);
    } else if (v >= 1e6) {
        snprintf(buf, len, "%.1fM%s", v / 1e6, unit);
    } else if (v >= 1e3) {
        snprintf(buf, len, "%.1fk%s", v / 1e3, unit);
    } else {
        snprintf(buf, len, "%.0f%s", v, unit);
    }
}

int tool_models(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct rwkv_load_options load = { RWKV_DTYPE_AUTO, 1, RWKV_CACHE_MODE_ON, 0, 1, 0 };
    struct models_entry *list;
    char *dirs, err[RWKV_ERRLEN], params[32], size[32], version[16];
    /* names and paths come from directory listings: shown escaped, whole
     * (4 bytes of escape for each byte at worst) */
    char name[4 * 256 + 1], path[4 * 4096 + 1];
    size_t n, i;
    int c;

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            usage(stdout);
            return 0;
        default:
            tool_error("models: unrecognized option '%s'", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        tool_error("models: unexpected argument '%s'", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (models_list(&list, &n, &dirs) < 0) {
        tool_error("models: out of memory");
        return 1;
    }
    if (n == 0) {
        fprintf(stderr, "rwkv-tool: no models found in %s\n",
                rwkv_escape_str(path, sizeof path, dirs ? dirs : ""));
        free(dirs);
        return 0;
    }
    printf("%-32s %-7s %8s %9s  %s\n", "NAME", "VERSION", "PARAMS", "SIZE", "PATH");
    for (i = 0; i < n; i++) {
        rwkv_model *m = rwkv_model_load(list[i].path, &load, err, sizeof(err));
        struct stat st;

        if (stat(list[i].path, &st) == 0) {
            human(size, sizeof(size), (double)st.st_size, "B");
        } else {
            snprintf(size, sizeof(size), "?");
        }
        if (m) {
            const struct rwkv_info *info = rwkv_model_info(m);

            snprintf(version, sizeof(version), "%s", info->version_name);
            human(params, sizeof(params), (double)info->n_params, "");
            rwkv_model_free(m);
        } else {
            snprintf(version, sizeof(version), "?");
            snprintf(params, sizeof(params), "?");
            tool_error("%s", err);
        }
        printf("%-32s %-7s %8s %9s  %s%s\n", rwkv_escape_str(name, sizeof name, list[i].name),
               version, params, size, rwkv_escape_str(path, sizeof path, list[i].path),
               list[i].shadowed ? " (shadowed)" : "");
    }
    fflush(stdout);
    models_list_free(list, n);
    free(dirs);
    return 0;
}
