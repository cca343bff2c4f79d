/* models.c - model lookup by path or name, and listing what is installed. */
#include "app/session/models.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/session/options.h"
#include "app/session/paths.h"

static const char *const extensions[] = MODELS_EXTENSIONS;
#define N_EXTENSIONS (sizeof(extensions) / sizeof(extensions[0]))

static int is_file(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The model directories in search order (malloc'd array of malloc'd
 * strings, *n set): the user's, then each data dir's models/. */
static char **search_dirs(size_t *n)
{
    char *home = paths_data_home(), *joined = paths_data_dirs("models"), *p, *sep;
    char **dirs = NULL;
    size_t count = 0, cap = 0;

    *n = 0;
    if (!joined) {
        free(home);
        return NULL;
    }
    if (home) {
        dirs = malloc(sizeof(*dirs) * 4);
        cap = 4;
        if (!dirs || !(dirs[count] = paths_join(home, "models"))) {
            free(home);
            free(joined);
            free(dirs);
            return NULL;
        }
        count++;
        free(home);
    }
    /* paths_data_dirs joins the directories with ", ". */
    for (p = joined; *p; p = sep + 2) {
        size_t len;

        sep = strstr(p, ", ");
        len = sep ? (size_t)(sep - p) : strlen(p);
        if (count == cap) {
            char **nd = realloc(dirs, sizeof(*dirs) * (cap = cap ? cap * 2 : 4));

            if (!nd) {
                break;
            }
            dirs = nd;
        }
        if (!(dirs[count] = strndup(p, len))) {
            break;
        }
        count++;
        if (!sep) {
            break;
        }
    }
    free(joined);
    *n = count;
    return dirs;
}

static void free_dirs(char **dirs, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        free(dirs[i]);
    }
    free(dirs);
}

/* Looks for name (with each extension) in the search directories. */
static char *find_name(const char *name, char **dirs, size_t n_dirs)
{
    size_t i, e;
    char *base, *p;

    for (i = 0; i < n_dirs; i++) {
        for (e = 0; e < N_EXTENSIONS; e++) {
            base = malloc(strlen(name) + strlen(extensions[e]) + 1);
            if (!base) {
                return NULL;
            }
            strcpy(base, name);
            strcat(base, extensions[e]);
            p = paths_join(dirs[i], base);
            free(base);
            if (p && is_file(p)) {
                return p;
            }
            free(p);
        }
    }
    return NULL;
}

/* "looked for NAME, NAME.pth, NAME.safetensors in A, B, C" into err. */
static void not_found(const char *what, const char *name, char **dirs, size_t n_dirs,
                      char *err, size_t errlen)
{
    size_t i, len;

    snprintf(err, errlen, "%s '%s' not found: looked for %s, %s.pth, %s.safetensors in ", what,
             name, name, name, name);
    for (i = 0; i < n_dirs; i++) {
        len = strlen(err);
        snprintf(err + len, errlen - len, "%s%s", i ? ", " : "", dirs[i]);
    }
}

/* The file name models.list (what rwkv-tool pull knows) gives the short
 * name; 0, or -1 when it names no known model. */
static int pull_file(const char *name, char *file, size_t len)
{
    char *path = paths_find_data(MODELS_PULL_LIST), line[2048], n[128], f[256];
    FILE *fp = path ? fopen(path, "r") : NULL;
    int rc = -1;

    free(path);
    if (!fp) {
        return -1;
    }
    while (rc != 0 && fgets(line, sizeof line, fp)) {
        if (line[0] != '#' && sscanf(line, "%127s %255s", n, f) == 2 && !strcmp(n, name) &&
            strlen(f) < len) {
            strcpy(file, f);
            rc = 0;
        }
    }
    fclose(fp);
    return rc;
}

char *models_find(const char *name_or_path, char *err, size_t errlen)
{
    char **dirs, *found;
    size_t n_dirs;

    if (strchr(name_or_path, '/') || is_file(name_or_path)) {
        struct stat st;

        if (stat(name_or_path, &st) != 0) {
            snprintf(err, errlen, "%s: %s", name_or_path, strerror(errno));
            return NULL;
        }
        if (!S_ISREG(st.st_mode)) {
            snprintf(err, errlen, "%s: %s", name_or_path,
                     S_ISDIR(st.st_mode) ? "is a directory, not a model file" : "not a model file");
            return NULL;
        }
        if (!(found = strdup(name_or_path))) {
            snprintf(err, errlen, "out of memory");
        }
        return found;
    }
    if (!*name_or_path) {
        snprintf(err, errlen, "empty model name");
        return NULL;
    }
    dirs = search_dirs(&n_dirs);
    if (!dirs) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    found = find_name(name_or_path, dirs, n_dirs);
    if (!found) {
        char file[256];
        int known = pull_file(name_or_path, file, sizeof file) == 0;

        if (known && (found = find_name(file, dirs, n_dirs))) {
            free_dirs(dirs, n_dirs);
            return found;
        }
        not_found("model", name_or_path, dirs, n_dirs, err, errlen);
        if (known) {
            size_t len = strlen(err);

            snprintf(err + len, errlen - len, "; download it with: rwkv-tool pull %s",
                     name_or_path);
        }
    }
    free_dirs(dirs, n_dirs);
    return found;
}

char *models_find_demo(char *err, size_t errlen)
{
    char *p = paths_find_data("models/" OPTIONS_DEMO_MODEL), *dirs;

    if (!p) {
        dirs = paths_data_dirs("models/" OPTIONS_DEMO_MODEL);
        snprintf(err, errlen, "no model given and the demo model is not installed (looked in "
                 "%s): download a model with 'rwkv-tool pull g1-1.5b' ('rwkv-tool pull --list' "
                 "shows the others) and start 'rwkv-chat --model g1-1.5b', or pass --model PATH",
                 dirs ? dirs : "");
        free(dirs);
    }
    return p;
}

static int has_model_extension(const char *name)
{
    size_t n = strlen(name);

    return (n > 4 && !strcmp(name + n - 4, ".pth")) ||
           (n > 12 && !strcmp(name + n - 12, ".safetensors"));
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(((const struct models_entry *)a)->name, ((const struct models_entry *)b)->name);
}

int models_list(struct models_entry **out, size_t *n, char **dirs_joined)
{
    struct models_entry *list = NULL, *nl;
    size_t count = 0, cap = 0, n_dirs, i, j, first;
    char **dirs = search_dirs(&n_dirs);
    struct dirent *de;
    DIR *d;

    *out = NULL;
    *n = 0;
    if (dirs_joined) {
        *dirs_joined = NULL;
    }
    if (!dirs) {
        return -1;
    }
    for (i = 0; i < n_dirs; i++) {
        if (!(d = opendir(dirs[i]))) {
            continue;
        }
        first = count;
        while ((de = readdir(d)) != NULL) {
            char *path;

            if (de->d_name[0] == '.' || !has_model_extension(de->d_name)) {
                continue;
            }
            path = paths_join(dirs[i], de->d_name);
            if (!path || !is_file(path)) {
                free(path);
                continue;
            }
            if (count == cap) {
                nl = realloc(list, sizeof(*list) * (cap = cap ? cap * 2 : 8));
                if (!nl) {
                    free(path);
                    closedir(d);
                    models_list_free(list, count);
                    free_dirs(dirs, n_dirs);
                    return -1;
                }
                list = nl;
            }
            list[count].name = strdup(de->d_name);
            list[count].path = path;
            list[count].shadowed = 0;
            for (j = 0; j < first; j++) {
                if (list[count].name && !strcmp(list[j].name, list[count].name)) {
                    list[count].shadowed = 1;
                }
            }
            count++;
        }
        closedir(d);
        qsort(list + first, count - first, sizeof(*list), compare_names);
    }
    if (dirs_joined) {
        size_t len = 1;

        for (i = 0; i < n_dirs; i++) {
            len += strlen(dirs[i]) + 2;
        }
        if ((*dirs_joined = malloc(len)) != NULL) {
            (*dirs_joined)[0] = 0;
            for (i = 0; i < n_dirs; i++) {
                if (i) {
                    strcat(*dirs_joined, ", ");
                }
                strcat(*dirs_joined, dirs[i]);
            }
        }
    }
    free_dirs(dirs, n_dirs);
    *out = list;
    *n = count;
    return 0;
}

void models_list_free(struct models_entry *list, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        free(list[i].name);
        free(list[i].path);
    }
    free(list);
}
