/*
 * tool_cache.c - rwkv-tool cache list|clear: the conversion caches
 * (--dtype q8/q4 and other conversions, saved for the next start) in
 * $XDG_CACHE_HOME/rwkv-chat/.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app/tools/tool.h"
#include "engine/rwkv.h"

#define SUFFIX ".rwkvcache"

struct entry {
    char *name;
    uint64_t size;
    time_t used;                /* the file's mtime: the last load that used it */
};

static const char *human(uint64_t n, char *buf, size_t len)
{
    if (n >= 1000000000) {
        snprintf(buf, len, "%.1f GB", (double)n / 1e9);
    } else if (n >= 1000000) {
        snprintf(buf, len, "%.1f MB", (double)n / 1e6);
    } else {
        snprintf(buf, len, "%.0f kB", (double)n / 1e3);
    }
    return buf;
}

/* A limit as it is written (RWKV_CHAT_CACHE_MAX, cache_max): "16G",
 * "1536M", "1000". */
static const char *limit_text(uint64_t n, char *buf, size_t len)
{
    static const char units[] = "GMK";
    int i;

    for (i = 0; i < 3; i++) {
        uint64_t u = (uint64_t)1 << (10 * (3 - i));

        if (n >= u && n % u == 0) {
            snprintf(buf, len, "%llu%c", (unsigned long long)(n / u), units[i]);
            return buf;
        }
    }
    snprintf(buf, len, "%llu", (unsigned long long)n);
    return buf;
}

static int is_cache(const char *name)
{
    size_t n = strlen(name), s = strlen(SUFFIX);

    return n > s && !strcmp(name + n - s, SUFFIX) && name[0] != '.';
}

static int by_use(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;

    return x->used < y->used ? 1 : x->used > y->used ? -1 : strcmp(x->name, y->name);
}

/* The caches in dir, newest use first (*out malloc'd).  0, or -1 with
 * errno (a missing directory is an empty list). */
static int scan(const char *dir, struct entry **out, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t cap = 0;

    *out = NULL;
    *n = 0;
    if (!d) {
        return errno == ENOENT ? 0 : -1;
    }
    while ((de = readdir(d))) {
        char path[8192];
        struct stat st;

        if (!is_cache(de->d_name) ||
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path ||
            lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            continue;
        }
        if (*n == cap) {
            struct entry *p = realloc(*out, (cap = cap ? 2 * cap : 16) * sizeof *p);

            if (!p) {
                break;
            }
            *out = p;
        }
        if (!((*out)[*n].name = strdup(de->d_name))) {
            break;
        }
        (*out)[*n].size = (uint64_t)st.st_size;
        (*out)[*n].used = st.st_mtime;
        (*n)++;
    }
    closedir(d);
    if (*n > 1) {
        qsort(*out, *n, sizeof **out, by_use);
    }
    return 0;
}

static void free_entries(struct entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(e[i].name);
    }
    free(e);
}

static void usage(FILE *f)
{
    fprintf(f, "Usage: rwkv-tool cache list|clear\n"
               "The conversion caches: the weights --dtype q8, q4 (or another format than the\n"
               "file's) converted at a model's first start, kept for the next starts in\n"
               "$XDG_CACHE_HOME/rwkv-chat/ (~/.cache/rwkv-chat/).  The least recently used\n"
               "are removed when they hold more than the limit: RWKV_CHAT_CACHE_MAX, else\n"
               "cache_max in the config file (rwkv-chat --cache-max for one start), default\n"
               "16G (K, M, G suffixes).\n\n"
               "  list    each cache (newest use first): size, last use, file; then the total\n"
               "          and the limit, and where the limit comes from\n"
               "  clear   remove them all (the next start of each model converts again)\n"
               "  -h, --help  display this help and exit\n");
}

int tool_cache(int argc, char **argv)
{
    char dir[4096], b[32], c[32], when[32];
    struct entry *list;
    size_t n;
    uint64_t total = 0;
    int rc = 0;

    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        usage(stdout);
        return 0;
    }
    if (argc != 2 || (strcmp(argv[1], "list") != 0 && strcmp(argv[1], "clear") != 0)) {
        tool_error("cache: %s", argc < 2 ? "say list or clear" : argc > 2 ?
                   "one of list or clear" : "unknown action: say list or clear");
        usage(stderr);
        return 2;
    }
    if (rwkv_cache_dir(dir, sizeof dir) != 0) {
        tool_error("cache: no cache directory (neither XDG_CACHE_HOME nor HOME is set)");
        return 1;
    }
    if (scan(dir, &list, &n) != 0) {
        tool_error("cache: %s: %s", dir, strerror(errno));
        return 1;
    }
    if (!strcmp(argv[1], "list")) {
        for (size_t i = 0; i < n; i++) {
            strftime(when, sizeof when, "%Y-%m-%d %H:%M", localtime(&list[i].used));
            printf("%9s  %s  %s\n", human(list[i].size, b, sizeof b), when, list[i].name);
            total += list[i].size;
        }
        const char *from;
        uint64_t limit = tool_cache_limit(&from);

        printf("%zu cache%s, %s in %s (limit %s: %s)\n", n, n == 1 ? "" : "s",
               human(total, b, sizeof b), dir, limit_text(limit, c, sizeof c), from);
    } else {
        size_t removed = 0;

        for (size_t i = 0; i < n; i++) {
            char path[8192];

            snprintf(path, sizeof path, "%s/%s", dir, list[i].name);
            if (unlink(path) == 0) {
                removed++;
                total += list[i].size;
            } else if (errno != ENOENT) {
                tool_error("cache: %s: %s", path, strerror(errno));
                rc = 1;
            }
        }
        printf("removed %zu cache%s (%s) from %s\n", removed, removed == 1 ? "" : "s",
               human(total, b, sizeof b), dir);
    }
    free_entries(list, n);
    return rc;
}
