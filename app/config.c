/* config.c - the config file: "key = value" lines under the XDG config dir. */
#include "app/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/paths.h"
#include "engine/knobs.h"

char *config_default_path(void)
{
    char *dir = paths_config_dir(), *p;

    if (!dir) {
        return NULL;
    }
    p = paths_join(dir, "config");
    free(dir);
    return p;
}

/* Replaces *dst with a copy of value; -1 on allocation failure. */
static int set_string(char **dst, const char *value, char *err, size_t errlen)
{
    char *copy = strdup(value);

    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    free(*dst);
    *dst = copy;
    return 0;
}

/* A colour: a curses name or a number 0..255. */
static int valid_colour(const char *v)
{
    static const char *const names[] = {
        "default", "black", "red", "green", "yellow", "blue", "magenta", "cyan", "white",
        "bright-black", "bright-red", "bright-green", "bright-yellow", "bright-blue",
        "bright-magenta", "bright-cyan", "bright-white", NULL,
    };
    char *end;
    long n;
    int i;

    for (i = 0; names[i]; i++) {
        if (!strcmp(v, names[i])) {
            return 1;
        }
    }
    errno = 0;
    n = strtol(v, &end, 10);
    return end != v && !*end && !errno && n >= 0 && n <= 255;
}

int config_apply(struct app_options *opts, const char *key, const char *value,
                 char *err, size_t errlen)
{
    struct app_colours *col = &opts->colours;
    char **colour = NULL;
    const struct knob *k;
    const char *cname;

    if (!strcmp(key, "model")) {
        opts->model_from_user = 1;
        return set_string(&opts->model, value, err, errlen);
    }
    if (!strcmp(key, "prompt")) {
        return set_string(&opts->prompt, value, err, errlen);
    }
    if (!strcmp(key, "state_tuned")) {
        return set_string(&opts->state_tuned, value, err, errlen);
    }
    if (!strcmp(key, "vocab")) {
        return set_string(&opts->vocab, value, err, errlen);
    }
    if (!strcmp(key, "data_dir")) {
        return set_string(&opts->data_dir, value, err, errlen);
    }
    if (!strcmp(key, "threads")) {
        char *end;
        long n;

        errno = 0;
        n = strtol(value, &end, 10);
        if (end == value || *end || errno || n < 0 || n > 4096) {
            snprintf(err, errlen, "threads: '%s' is not a whole number from 0 to 4096", value);
            return -1;
        }
        opts->n_threads = (int)n;
        return 0;
    }
    if (!strcmp(key, "dtype")) {
        if (rwkv_dtype_parse(value, &opts->dtype) < 0) {
            snprintf(err, errlen, "dtype: unknown type '%s' (fp32, fp16, bf16, q8, q4)", value);
            return -1;
        }
        return 0;
    }
    if (!strncmp(key, "colour.", 7) || !strncmp(key, "color.", 6)) {
        cname = strchr(key, '.') + 1;
        if (!strcmp(cname, "user")) {
            colour = &col->user;
        } else if (!strcmp(cname, "assistant")) {
            colour = &col->assistant;
        } else if (!strcmp(cname, "status")) {
            colour = &col->status;
        } else if (!strcmp(cname, "accent")) {
            colour = &col->accent;
        } else if (!strcmp(cname, "error")) {
            colour = &col->error;
        } else {
            snprintf(err, errlen, "unknown colour '%s' (user, assistant, status, accent, error)",
                     cname);
            return -1;
        }
        if (!valid_colour(value)) {
            snprintf(err, errlen, "%s: '%s' is not a colour name (red, bright-blue, default...) "
                     "or a number 0-255", key, value);
            return -1;
        }
        return set_string(colour, value, err, errlen);
    }
    if ((k = knob_find(key)) != NULL) {
        if (options_set_knob(&opts->sampling, key, value, err, errlen) < 0) {
            return -1;
        }
        if (k->type == KNOB_SEED) {
            opts->seed_set = 1;
        }
        return 0;
    }
    snprintf(err, errlen, "unknown key '%s'", key);
    return -1;
}

/* Strips leading and trailing white space in place; returns the start. */
static char *trim(char *s)
{
    char *e;

    while (isspace((unsigned char)*s)) {
        s++;
    }
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) {
        *--e = 0;
    }
    return s;
}

int config_load(struct app_options *opts, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char *line = NULL, *key, *value, *eq, problem[400];
    size_t cap = 0, len;
    long lineno = 0;
    ssize_t n;
    int rc = 0;

    if (!f) {
        if (errno == ENOENT) {
            return 1;
        }
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    while ((n = getline(&line, &cap, f)) != -1) {
        lineno++;
        key = trim(line);
        if (!*key || *key == '#') {
            continue;
        }
        if ((eq = strchr(key, '=')) == NULL) {
            snprintf(err, errlen, "%s:%ld: expected 'key = value', found '%.60s'", path, lineno,
                     key);
            rc = -1;
            break;
        }
        *eq = 0;
        value = trim(eq + 1);
        key = trim(key);
        /* " # ..." after an unquoted value is a comment. */
        if (value[0] != '"') {
            char *hash;

            for (hash = value; (hash = strchr(hash, '#')) != NULL; hash++) {
                if (hash > value && (hash[-1] == ' ' || hash[-1] == '\t')) {
                    *hash = 0;
                    value = trim(value);
                    break;
                }
            }
        }
        len = strlen(value);
        if (len >= 2 && value[0] == '"' && value[len - 1] == '"') {
            value[len - 1] = 0;
            value++;
        }
        if (!*key) {
            snprintf(err, errlen, "%s:%ld: missing key before '='", path, lineno);
            rc = -1;
            break;
        }
        if (!*value) {
            snprintf(err, errlen, "%s:%ld: %s: missing value after '='", path, lineno, key);
            rc = -1;
            break;
        }
        if (config_apply(opts, key, value, problem, sizeof(problem)) < 0) {
            snprintf(err, errlen, "%s:%ld: %s", path, lineno, problem);
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        rc = -1;
    }
    free(line);
    fclose(f);
    return rc;
}
