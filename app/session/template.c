/*
 * template.c - chat templates (personas): prompts/NAME.txt files.
 *
 * The file format is documented in prompts/README: optional "key: value"
 * header lines (user, assistant, description) and '#' comments above a
 * line "---", then the intro text, fed verbatim once at the start of a
 * conversation.  A file without a "---" line is all intro.
 */
#include "app/session/template.h"
#include "engine/base/escape.h"
#include "app/session/paths.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>

static char *dup_range(const char *s, size_t n)
{
    char *p = malloc(n + 1);

    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f';
}

void chat_template_free(struct chat_template *t)
{
    if (!t) {
        return;
    }
    free(t->name);
    free(t->intro);
    free(t->user);
    free(t->assistant);
    free(t->system);
    t->name = t->intro = t->user = t->assistant = t->system = NULL;
    t->thinking = 0;
}

/* Finds the "---" separator line; returns the offset of the line or -1. */
static long find_separator(const char *text, size_t len)
{
    size_t pos = 0;

    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len, n = end - pos;

        while (n > 0 && is_space(text[pos + n - 1])) {
            n--;
        }
        if (n == 3 && !memcmp(text + pos, "---", 3)) {
            return (long)pos;
        }
        pos = end + 1;
    }
    return -1;
}

/* Parses the header lines text[0..len-1] into t; 0 or -1 with err. */
static int parse_header(struct chat_template *t, const char *name, const char *text, size_t len,
                        char *err, size_t errlen)
{
    size_t pos = 0;
    int line = 0;

    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        const char *s = text + pos, *colon;
        size_t n = end - pos, klen, vstart, vlen;
        char **slot = NULL;

        line++;
        pos = end + 1;
        while (n > 0 && is_space(s[n - 1])) {
            n--;
        }
        while (n > 0 && is_space(*s)) {
            s++;
            n--;
        }
        if (n == 0 || *s == '#') {
            continue;
        }
        colon = memchr(s, ':', n);
        if (!colon) {
            snprintf(err, errlen, "%s: line %d: expected \"key: value\" or \"---\"",
                     RWKV_ESC(name), line);
            return -1;
        }
        klen = (size_t)(colon - s);
        while (klen > 0 && is_space(s[klen - 1])) {
            klen--;
        }
        vstart = (size_t)(colon - s) + 1;
        while (vstart < n && is_space(s[vstart])) {
            vstart++;
        }
        vlen = n - vstart;
        if (klen == 4 && !memcmp(s, "user", 4)) {
            slot = &t->user;
        } else if (klen == 9 && !memcmp(s, "assistant", 9)) {
            slot = &t->assistant;
        } else if (klen == 6 && !memcmp(s, "system", 6)) {
            slot = &t->system;
        } else if (klen == 8 && !memcmp(s, "thinking", 8)) {
            if ((vlen == 3 && !memcmp(s + vstart, "yes", 3)) ||
                (vlen == 2 && !memcmp(s + vstart, "no", 2))) {
                t->thinking = vlen == 3;
                continue;
            }
            snprintf(err, errlen, "%s: line %d: thinking: '%s' is not yes or no", RWKV_ESC(name),
                     line, RWKV_ESCN(s + vstart, vlen));
            return -1;
        } else if (klen == 11 && !memcmp(s, "description", 11)) {
            continue;
        } else {
            snprintf(err, errlen, "%s: line %d: unknown key '%s' (expected user, assistant, "
                     "system, thinking or description)", RWKV_ESC(name), line, RWKV_ESCN(s, klen));
            return -1;
        }
        if (vlen == 0) {
            snprintf(err, errlen, "%s: line %d: empty value for '%s'", RWKV_ESC(name), line,
                     RWKV_ESCN(s, klen));
            return -1;
        }
        free(*slot);
        if (!(*slot = dup_range(s + vstart, vlen))) {
            snprintf(err, errlen, "%s: out of memory", RWKV_ESC(name));
            return -1;
        }
    }
    return 0;
}

int chat_template_check(const struct chat_template *t, const char *where, char *err,
                        size_t errlen)
{
    size_t n = strlen(t->intro);

    if (n > CHAT_INTRO_MAX) {
        snprintf(err, errlen, "%s: the intro has %zu bytes, more than the %d KiB rwkv-chat feeds "
                 "the model at a start", where, n, CHAT_INTRO_MAX / 1024);
        return -1;
    }
    if (strlen(t->user) > CHAT_NAME_MAX || strlen(t->assistant) > CHAT_NAME_MAX ||
        (t->system && strlen(t->system) > CHAT_NAME_MAX)) {
        snprintf(err, errlen, "%s: a user, assistant or system name longer than %d bytes", where,
                 CHAT_NAME_MAX);
        return -1;
    }
    return 0;
}

int chat_template_parse(struct chat_template *t, const char *name, const char *text, size_t len,
                        char *err, size_t errlen)
{
    struct chat_template n = { NULL, NULL, NULL, NULL, NULL, 0 };
    long sep = find_separator(text, len);
    const char *body = text;
    size_t blen = len, i, o;
    char *intro;

    if (memchr(text, '\0', len)) {
        snprintf(err, errlen, "%s: contains a NUL byte: not a text file", RWKV_ESC(name));
        return -1;
    }
    if (sep >= 0) {
        const char *nl;

        if (parse_header(&n, name, text, (size_t)sep, err, errlen) < 0) {
            chat_template_free(&n);
            return -1;
        }
        nl = memchr(text + sep, '\n', len - (size_t)sep);
        body = nl ? nl + 1 : text + len;
        blen = (size_t)(text + len - body);
    }
    /* The intro: CRLF -> LF, leading blank lines and trailing whitespace
     * dropped, then "\n\n" so the first "User:" starts a new turn. */
    intro = malloc(blen + 3);
    if (!intro) {
        snprintf(err, errlen, "%s: out of memory", RWKV_ESC(name));
        chat_template_free(&n);
        return -1;
    }
    for (i = o = 0; i < blen; i++) {
        if (body[i] == '\r' && i + 1 < blen && body[i + 1] == '\n') {
            continue;
        }
        intro[o++] = body[i];
    }
    while (o > 0 && is_space(intro[o - 1])) {
        o--;
    }
    for (i = 0; i < o && (intro[i] == '\n' || intro[i] == '\r'); i++) {
    }
    memmove(intro, intro + i, o - i);
    o -= i;
    if (o > 0) {
        intro[o++] = '\n';
        intro[o++] = '\n';
    }
    intro[o] = '\0';
    n.intro = intro;
    n.name = strdup(name);
    if (!n.user) {
        n.user = strdup("User");
    }
    if (!n.assistant) {
        n.assistant = strdup("Assistant");
    }
    if (!n.system) {
        n.system = strdup("System");
    }
    if (!n.name || !n.user || !n.assistant || !n.system) {
        snprintf(err, errlen, "%s: out of memory", RWKV_ESC(name));
        chat_template_free(&n);
        return -1;
    }
    if (chat_template_check(&n, name, err, errlen) < 0) {
        chat_template_free(&n);
        return -1;
    }
    *t = n;
    return 0;
}

const char *chat_template_for_model(const char *path)
{
    const char *p = strrchr(path, '/');

    /* Name parts between '-', '_' and '.': "g1", "g1a", "g0b", "G1x"... */
    for (p = p ? p + 1 : path; *p; p++) {
        const char *q = p;

        if ((*q == 'g' || *q == 'G') && (q[1] == '0' || q[1] == '1')) {
            for (q += 2; (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z'); q++) {
            }
            if ((p == path || p[-1] == '-' || p[-1] == '_' || p[-1] == '.' || p[-1] == '/') &&
                (!*q || *q == '-' || *q == '_' || *q == '.')) {
                return "g1";
            }
        }
    }
    return NULL;
}

/* The stem of a path: "dir/coder.txt" -> "coder". malloc'd. */
static char *stem(const char *path)
{
    const char *base = strrchr(path, '/');
    size_t n;

    base = base ? base + 1 : path;
    n = strlen(base);
    if (n > 4 && !strcmp(base + n - 4, ".txt")) {
        n -= 4;
    }
    return dup_range(base, n);
}

/* Reads and parses the file at path as template name. */
static int load_file(struct chat_template *t, const char *name, const char *path, char *err,
                     size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0, got;
    int rc;

    if (!f) {
        snprintf(err, errlen, "%s: %s", RWKV_ESC(path), strerror(errno));
        return -1;
    }
    do {
        if (len == cap) {
            char *nb;

            if (cap > (1u << 24)) {
                snprintf(err, errlen, "%s: larger than 16 MiB: not a chat template",
                         RWKV_ESC(path));
                fclose(f);
                free(buf);
                return -1;
            }
            cap = cap ? cap * 2 : 4096;
            nb = realloc(buf, cap);
            if (!nb) {
                snprintf(err, errlen, "%s: out of memory", RWKV_ESC(path));
                fclose(f);
                free(buf);
                return -1;
            }
            buf = nb;
        }
        got = fread(buf + len, 1, cap - len, f);
        len += got;
    } while (got > 0);
    if (ferror(f)) {
        snprintf(err, errlen, "%s: %s", RWKV_ESC(path), strerror(errno ? errno : EIO));
        fclose(f);
        free(buf);
        return -1;
    }
    fclose(f);
    /* Parsed under the path so that errors name the file. */
    rc = chat_template_parse(t, path, buf ? buf : "", len, err, errlen);
    if (rc == 0) {
        char *n = strdup(name);

        if (!n) {
            chat_template_free(t);
            snprintf(err, errlen, "out of memory");
            rc = -1;
        } else {
            free(t->name);
            t->name = n;
        }
    }
    free(buf);
    return rc;
}

static int is_file(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int chat_template_load(struct chat_template *t, const char *name_or_path, char *err, size_t errlen)
{
    char *name, *rel, *dir, *path = NULL, *dirs;
    int rc;

    if (!name_or_path || !*name_or_path) {
        snprintf(err, errlen, "empty template name");
        return -1;
    }
    if (strchr(name_or_path, '/')) {
        name = stem(name_or_path);
        if (!name) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        rc = load_file(t, name, name_or_path, err, errlen);
        free(name);
        return rc;
    }
    rel = malloc(strlen(name_or_path) + 16);
    if (!rel) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    sprintf(rel, "prompts/%s.txt", name_or_path);
    /* The user's own prompts first, then the installed ones. */
    dir = paths_config_dir();
    if (dir) {
        path = paths_join(dir, rel);
        if (path && !is_file(path)) {
            free(path);
            path = NULL;
        }
    }
    if (!path) {
        path = paths_find_data(rel);
    }
    if (!path) {
        dirs = paths_data_dirs("prompts");
        snprintf(err, errlen, "no prompt named '%s' (looked for %s.txt in %s/prompts, %s)",
                 name_or_path, name_or_path, dir ? dir : "~/.config/rwkv-chat",
                 dirs ? dirs : "the data directories");
        free(dirs);
        free(dir);
        free(rel);
        return -1;
    }
    rc = load_file(t, name_or_path, path, err, errlen);
    free(path);
    free(dir);
    free(rel);
    return rc;
}

void chat_template_names_free(char **names)
{
    size_t i;

    for (i = 0; names && names[i]; i++) {
        free(names[i]);
    }
    free(names);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds the stems of dir's *.txt files to *names (n used, cap allocated). */
static int add_names(const char *dir, char ***names, size_t *n, size_t *cap)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    if (!d) {
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);

        if (len <= 4 || strcmp(e->d_name + len - 4, ".txt") != 0 || e->d_name[0] == '.') {
            continue;
        }
        if (*n + 2 > *cap) {
            size_t nc = *cap ? *cap * 2 : 16;
            char **nn = realloc(*names, nc * sizeof *nn);

            if (!nn) {
                closedir(d);
                return -1;
            }
            *names = nn;
            *cap = nc;
        }
        if (!((*names)[*n] = dup_range(e->d_name, len - 4))) {
            closedir(d);
            return -1;
        }
        (*n)++;
    }
    closedir(d);
    return 0;
}

char **chat_template_names(void)
{
    char **names = NULL, *cfg = paths_config_dir(), *dirs = paths_data_dirs("prompts");
    size_t n = 0, cap = 0, i, o;
    int rc = 0;

    if (cfg) {
        char *p = paths_join(cfg, "prompts");

        rc = p ? add_names(p, &names, &n, &cap) : -1;
        free(p);
    }
    /* paths_data_dirs joins the directories with ", ". */
    if (dirs && rc == 0) {
        char *d = dirs, *sep;

        for (;;) {
            sep = strstr(d, ", ");
            if (sep) {
                *sep = '\0';
            }
            if (*d && add_names(d, &names, &n, &cap) < 0) {
                rc = -1;
                break;
            }
            if (!sep) {
                break;
            }
            d = sep + 2;
        }
    }
    free(cfg);
    free(dirs);
    if (rc < 0 || (!names && !(names = malloc(sizeof *names)))) {
        for (i = 0; i < n; i++) {
            free(names[i]);
        }
        free(names);
        return NULL;
    }
    qsort(names, n, sizeof *names, by_name);
    for (i = o = 0; i < n; i++) {
        if (o > 0 && !strcmp(names[o - 1], names[i])) {
            free(names[i]);
        } else {
            names[o++] = names[i];
        }
    }
    names[o] = NULL;
    return names;
}
