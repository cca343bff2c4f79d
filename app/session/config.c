/* config.c - the config file: "key = value" lines under the XDG config dir. */
#include "app/session/config.h"
#include "engine/base/escape.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/session/chat.h"
#include "app/session/paths.h"
#include "engine/base/escape.h"
#include "engine/sampling/knobs.h"

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

/* (Declared in config.h: options.c and commands.c use it too.) */
int options_set_knob(struct sampler_settings *s, const char *name, const char *value,
                     char *err, size_t errlen)
{
    const struct knob *k = knob_find(name);
    char why[160], names[256];

    if (!k) {
        knob_list(names, sizeof names);
        snprintf(err, errlen, "unknown knob '%s' (knobs: %s)", name, names);
        return -1;
    }
    if (knob_parse(k, s, value, why, sizeof why) < 0) {
        snprintf(err, errlen, "%s: %s", name, why);
        return -1;
    }
    return 0;
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
        opts->model_in_config = 1;
        return set_string(&opts->model, value, err, errlen);
    }
    if (!strcmp(key, "prompt")) {
        return set_string(&opts->prompt, value, err, errlen);
    }
    if (!strcmp(key, "system")) {
        return set_string(&opts->system, value, err, errlen);
    }
    if (!strcmp(key, "think")) {
        enum chat_think mode;

        if (chat_think_parse(value, &mode) < 0) {
            snprintf(err, errlen, "think: unknown mode '%s' (auto, off, on, a-bit, a-lot)", value);
            return -1;
        }
        opts->think = (int)mode;
        return 0;
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
    if (!strcmp(key, "cache_max")) {
        if (rwkv_cache_size_parse(value, &opts->cache_max) < 0) {
            snprintf(err, errlen, "cache_max: '%s' is not a size (bytes, or with a K, M or G "
                     "suffix)", value);
            return -1;
        }
        opts->cache_max_from = OPTIONS_CACHE_MAX_CONFIG;
        return 0;
    }
    if (!strcmp(key, "theme")) {
        if (strcmp(value, "colour") && strcmp(value, "color") && strcmp(value, "mono")) {
            snprintf(err, errlen, "theme: '%s' is not a theme (colour or mono)", value);
            return -1;
        }
        col->mono = !strcmp(value, "mono");
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

/* The longest line a config file may have, its newline aside. */
#define CONFIG_MAX_LINE 4096

/* 1 if st is /dev/null ("--config /dev/null": no settings). */
static int is_dev_null(const struct stat *st)
{
    struct stat null;

    return S_ISCHR(st->st_mode) && stat("/dev/null", &null) == 0 && S_ISCHR(null.st_mode) &&
           null.st_rdev == st->st_rdev;
}

/* What kind of file st is, for "not a regular file" messages. */
static const char *file_kind(const struct stat *st)
{
    return S_ISDIR(st->st_mode) ? "a directory" : S_ISFIFO(st->st_mode) ? "a FIFO"
           : S_ISCHR(st->st_mode) ? "a character device" : S_ISBLK(st->st_mode) ? "a block device"
           : S_ISSOCK(st->st_mode) ? "a socket" : "not a regular file";
}

/* Reads one line, its newline dropped, into line (CONFIG_MAX_LINE + 1
 * bytes, NUL-terminated).  1 for a line, 0 at the end of the file; -1 for
 * a line too long and -3 at a NUL byte (*len bytes came before it; the
 * rest is not read); -2 on a read error. */
static int read_line(FILE *f, char *line, size_t *len)
{
    int c;

    *len = 0;
    while ((c = getc(f)) != EOF && c != '\n') {
        if (c == 0) {
            return -3;
        }
        if (*len == CONFIG_MAX_LINE) {
            return -1;
        }
        line[(*len)++] = (char)c;
    }
    line[*len] = 0;
    if (c == EOF && ferror(f)) {
        return -2;
    }
    return c == EOF && *len == 0 ? 0 : 1;
}

int config_load(struct app_options *opts, const char *path, char *err, size_t errlen)
{
    char line[CONFIG_MAX_LINE + 1], *key, *value, *eq, problem[400];
    size_t len;
    long lineno = 0;
    struct stat st;
    FILE *f;
    int fd, rc = 0, r;

    /* O_NONBLOCK: opening a FIFO nobody writes to would wait forever. */
    fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            return 1;
        }
        snprintf(err, errlen, "%s: %s", RWKV_ESC(path), strerror(errno));
        return CONFIG_UNREADABLE;
    }
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: %s", RWKV_ESC(path), strerror(errno));
        close(fd);
        return CONFIG_UNREADABLE;
    }
    if (!S_ISREG(st.st_mode) && !is_dev_null(&st)) {
        snprintf(err, errlen, "%s: %s, not a config file", RWKV_ESC(path), file_kind(&st));
        close(fd);
        return -1;
    }
    if (!(f = fdopen(fd, "r"))) {
        snprintf(err, errlen, "%s: %s", RWKV_ESC(path), strerror(errno));
        close(fd);
        return CONFIG_UNREADABLE;
    }
    while ((r = read_line(f, line, &len)) != 0) {
        lineno++;
        if (r == -2) {
            snprintf(err, errlen, "%s: %s", RWKV_ESC(path), strerror(errno));
            rc = CONFIG_UNREADABLE;
            break;
        }
        if (r == -1) {
            snprintf(err, errlen, "%s:%ld: line longer than %d bytes", RWKV_ESC(path), lineno,
                     CONFIG_MAX_LINE);
            rc = -1;
            break;
        }
        if (r == -3) {
            snprintf(err, errlen, "%s:%ld: NUL byte at byte %zu of the line", RWKV_ESC(path),
                     lineno, len + 1);
            rc = -1;
            break;
        }
        key = line;
        if (lineno == 1 && !strncmp(key, "\xEF\xBB\xBF", 3)) {
            key += 3;       /* a UTF-8 byte order mark, as some editors write */
        }
        key = trim(key);
        if (!*key || *key == '#') {
            continue;
        }
        if ((eq = strchr(key, '=')) == NULL) {
            snprintf(err, errlen, "%s:%ld: expected 'key = value', found '%s'", RWKV_ESC(path),
                     lineno, RWKV_ESCN(key, strlen(key) > 60 ? 60 : strlen(key)));
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
            snprintf(err, errlen, "%s:%ld: missing key before '='", RWKV_ESC(path), lineno);
            rc = -1;
            break;
        }
        if (!*value) {
            snprintf(err, errlen, "%s:%ld: %s: missing value after '='", RWKV_ESC(path), lineno,
                     RWKV_ESC(key));
            rc = -1;
            break;
        }
        if (config_apply(opts, key, value, problem, sizeof(problem)) < 0) {
            snprintf(err, errlen, "%s:%ld: %s", RWKV_ESC(path), lineno, problem);
            rc = -1;
            break;
        }
    }
    fclose(f);
    return rc;
}
