/* paths.c - data lookup and XDG directories. */
#include "app/session/paths.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef PKGDATADIR
#define PKGDATADIR "/usr/local/share/rwkv-chat"
#endif

char *paths_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 2);

    if (!p) {
        return NULL;
    }
    memcpy(p, a, la);
    p[la] = '/';
    memcpy(p + la + 1, b, lb + 1);
    return p;
}

/* True when this program runs from its build tree rather than an install:
 * then its data is still in the source tree (README: build/rwkv-chat). */
static int running_uninstalled(void)
{
#if defined(ABS_TOP_SRCDIR) && defined(ABS_TOP_BUILDDIR)
    char exe[4096], *slash, *builddir;
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    int same;

    if (n <= 0) {
        return 0;
    }
    exe[n] = '\0';
    if (!(slash = strrchr(exe, '/'))) {
        return 0;
    }
    *slash = '\0';
    builddir = realpath(ABS_TOP_BUILDDIR, NULL);
    same = builddir && strcmp(builddir, exe) == 0;
    free(builddir);
    return same;
#else
    return 0;
#endif
}

/* True when dir is one of the colon-separated directories in list. */
static int in_list(const char *list, const char *dir)
{
    size_t n = strlen(dir);

    while (list && *list) {
        if (strncmp(list, dir, n) == 0 && (list[n] == ':' || list[n] == '\0')) {
            return 1;
        }
        list = strchr(list, ':');
        list = list ? list + 1 : NULL;
    }
    return 0;
}

/* Calls fn on each data directory in search order until it returns
 * non-zero; returns that value.  Order: $RWKV_CHAT_DATADIR, the source
 * tree when running uninstalled (share/ holds the vocabulary and models,
 * the top holds prompts/), then $(pkgdatadir). */
static int each_data_dir(int (*fn)(const char *dir, void *ctx), void *ctx)
{
    const char *env = getenv("RWKV_CHAT_DATADIR");
    int r;

    if (env && *env) {
        char *copy = strdup(env), *save = NULL, *dir;

        if (!copy) {
            return 0;
        }
        for (dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
            if ((r = fn(dir, ctx)) != 0) {
                free(copy);
                return r;
            }
        }
        free(copy);
    }
#if defined(ABS_TOP_SRCDIR) && defined(ABS_TOP_BUILDDIR)
    if (running_uninstalled()) {
        if (!in_list(env, ABS_TOP_SRCDIR "/share") && (r = fn(ABS_TOP_SRCDIR "/share", ctx)) != 0) {
            return r;
        }
        if (!in_list(env, ABS_TOP_SRCDIR) && (r = fn(ABS_TOP_SRCDIR, ctx)) != 0) {
            return r;
        }
    }
#endif
    return fn(PKGDATADIR, ctx);
}

struct find_ctx {
    const char *rel;
    char *found;
};

static int find_in(const char *dir, void *vctx)
{
    struct find_ctx *ctx = vctx;
    char *p = paths_join(dir, ctx->rel);
    struct stat st;

    if (p && stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
        ctx->found = p;
        return 1;
    }
    free(p);
    return 0;
}

char *paths_find_data(const char *rel)
{
    struct find_ctx ctx = { rel, NULL };

    each_data_dir(find_in, &ctx);
    return ctx.found;
}

struct list_ctx {
    const char *rel;
    char *buf;
    size_t len;
};

static int list_in(const char *dir, void *vctx)
{
    struct list_ctx *ctx = vctx;
    char *p = paths_join(dir, ctx->rel);
    size_t n = p ? strlen(p) : 0;
    char *nb = p ? realloc(ctx->buf, ctx->len + n + 3) : NULL;

    if (!nb) {
        free(p);
        return 1;
    }
    ctx->buf = nb;
    if (ctx->len) {
        memcpy(ctx->buf + ctx->len, ", ", 2);
        ctx->len += 2;
    }
    memcpy(ctx->buf + ctx->len, p, n + 1);
    ctx->len += n;
    free(p);
    return 0;
}

char *paths_data_dirs(const char *rel)
{
    struct list_ctx ctx = { rel, NULL, 0 };

    each_data_dir(list_in, &ctx);
    return ctx.buf ? ctx.buf : strdup("");
}

/* $VAR/rwkv-chat, or $HOME/fallback/rwkv-chat. */
static char *xdg_dir(const char *var, const char *fallback)
{
    const char *v = getenv(var);
    const char *home = getenv("HOME");
    char *base, *p;

    if (v && *v == '/') {
        return paths_join(v, "rwkv-chat");
    }
    base = paths_join(home && *home ? home : ".", fallback);
    if (!base) {
        return NULL;
    }
    p = paths_join(base, "rwkv-chat");
    free(base);
    return p;
}

char *paths_config_dir(void)
{
    return xdg_dir("XDG_CONFIG_HOME", ".config");
}

char *paths_data_home(void)
{
    return xdg_dir("XDG_DATA_HOME", ".local/share");
}

char *paths_state_dir(void)
{
    return xdg_dir("XDG_STATE_HOME", ".local/state");
}

char *paths_session_file(const char *model_name)
{
    char *dir = paths_state_dir(), *path = NULL;

    if (dir && asprintf(&path, "%s/sessions/%s.state", dir, model_name) < 0) {
        path = NULL;
    }
    free(dir);
    return path;
}

char *paths_old_session_file(void)
{
    char *dir = paths_state_dir(), *path = dir ? paths_join(dir, "session.state") : NULL;

    free(dir);
    return path;
}

char *paths_last_session(void)
{
    char *dir = paths_state_dir(), *sessions = dir ? paths_join(dir, "sessions") : NULL;
    char *best = NULL;
    struct timespec best_time = { 0, 0 };
    struct dirent *e;
    DIR *d = sessions ? opendir(sessions) : NULL;

    while (d && (e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        struct stat st;
        char *path;

        if (n <= 6 || e->d_name[0] == '.' || strcmp(e->d_name + n - 6, ".state") != 0 ||
            !(path = paths_join(sessions, e->d_name))) {
            continue;
        }
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
            (!best || st.st_mtim.tv_sec > best_time.tv_sec ||
             (st.st_mtim.tv_sec == best_time.tv_sec && st.st_mtim.tv_nsec > best_time.tv_nsec))) {
            free(best);
            best = path;
            best_time = st.st_mtim;
        } else {
            free(path);
        }
    }
    if (d) {
        closedir(d);
    }
    free(sessions);
    free(dir);
    return best;
}

int paths_mkdirs(const char *dir)
{
    char *p = strdup(dir), *s;

    if (!p) {
        return -1;
    }
    for (s = p + 1; *s; s++) {
        if (*s == '/') {
            *s = 0;
            if (mkdir(p, 0700) != 0 && errno != EEXIST) {
                free(p);
                return -1;
            }
            *s = '/';
        }
    }
    if (mkdir(p, 0700) != 0 && errno != EEXIST) {
        free(p);
        return -1;
    }
    free(p);
    return 0;
}
