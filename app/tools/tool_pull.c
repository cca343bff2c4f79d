/*
 * tool_pull.c - rwkv-tool pull NAME|URL: downloads a model into the
 * models folder ($XDG_DATA_HOME/rwkv-chat/models, where --model NAME
 * looks first).
 *
 * A known NAME (share/models.list) gives the address, the file name, the
 * size and the SHA-256 to check; a URL gives the address and the file
 * name (its last part), and the size the server announces.  The bytes go
 * to FILE.part beside the final file: a download that stops (a cut
 * connection, Ctrl-C) is resumed from there next time with an HTTP Range
 * request.  The whole file is checked (size, then SHA-256 when known)
 * before it is renamed to FILE; a file that fails is removed, never
 * installed.
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app/session/models.h"
#include "app/session/paths.h"
#include "app/tools/sha256.h"
#include "app/tools/tool.h"

#define LIST_FILE MODELS_PULL_LIST

/* One line of models.list. */
struct known {
    char name[128], file[256], sha256[65], url[1024];
    uint64_t size;
};

struct transfer {
    FILE *f;
    uint64_t offset;            /* bytes in the .part file before this request */
    uint64_t written;           /* bytes written by this request */
    uint64_t expected;          /* the whole file's size; 0: not known yet */
    uint64_t published;         /* the size the list gives; 0: none */
    int restarted;              /* the server ignored the Range: written from 0 */
    int checked;                /* the response code was looked at */
    int tty;                    /* stderr is a terminal: draw the bar */
    double drawn;               /* when the bar was last drawn */
    int write_failed;
    CURL *curl;
};

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* "1.2 GB", "340 MB", "12 kB". */
static const char *human(uint64_t n, char *buf, size_t len)
{
    if (n >= 1000000000) {
        snprintf(buf, len, "%.1f GB", (double)n / 1e9);
    } else if (n >= 1000000) {
        snprintf(buf, len, "%.0f MB", (double)n / 1e6);
    } else {
        snprintf(buf, len, "%.0f kB", (double)n / 1e3);
    }
    return buf;
}

/* Reads models.list (the first found in the data directories).  0 with
 * *out (malloc'd) and *n, or -1 with an error printed. */
static int read_list(struct known **out, size_t *n)
{
    char *path = paths_find_data(LIST_FILE), line[2048];
    struct known *list = NULL;
    size_t cap = 0;
    FILE *f;

    *out = NULL;
    *n = 0;
    if (!path) {
        char *dirs = paths_data_dirs(LIST_FILE);

        tool_error("pull: %s not found (looked in %s): reinstall rwkv-chat, or pull a URL",
                   LIST_FILE, dirs ? dirs : "");
        free(dirs);
        return -1;
    }
    if (!(f = fopen(path, "r"))) {
        tool_error("pull: %s: %s", path, strerror(errno));
        free(path);
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        struct known k;

        if (line[0] == '#' || line[strspn(line, " \t\r\n")] == '\0') {
            continue;
        }
        memset(&k, 0, sizeof k);
        if (sscanf(line, "%127s %255s %" SCNu64 " %64s %1023s", k.name, k.file, &k.size,
                   k.sha256, k.url) != 5 || strlen(k.sha256) != 64) {
            continue;   /* a malformed line is skipped, not fatal */
        }
        if (*n == cap) {
            struct known *p = realloc(list, (cap = cap ? 2 * cap : 16) * sizeof *p);

            if (!p) {
                tool_error("pull: out of memory");
                free(list);
                fclose(f);
                free(path);
                return -1;
            }
            list = p;
        }
        list[(*n)++] = k;
    }
    fclose(f);
    free(path);
    *out = list;
    return 0;
}

/* Whether arg names k: its short name, or its file name with or without
 * the extension. */
static int names(const struct known *k, const char *arg)
{
    size_t len = strlen(arg);
    const char *dot = strrchr(k->file, '.');

    return !strcmp(k->name, arg) || !strcmp(k->file, arg) ||
           (dot && (size_t)(dot - k->file) == len && !strncmp(k->file, arg, len));
}

/* The file name a URL's download is saved as: its last path part, without
 * a query or fragment.  0, or -1 when there is none usable. */
static int file_of_url(const char *url, char *out, size_t len)
{
    const char *p = strstr(url, "://"), *slash, *end;
    size_t n;

    if (!p) {
        return -1;
    }
    p += 3;
    end = p + strcspn(p, "?#");
    slash = NULL;
    for (const char *q = p; q < end; q++) {
        if (*q == '/') {
            slash = q;
        }
    }
    if (!slash) {
        return -1;
    }
    n = (size_t)(end - slash - 1);
    if (n == 0 || n >= len || slash[1] == '.') {
        return -1;
    }
    memcpy(out, slash + 1, n);
    out[n] = '\0';
    return 0;
}

static void draw(struct transfer *t, int last)
{
    uint64_t have = t->offset + t->written;
    char a[32], b[32], bar[33];

    if (!t->tty || (!last && now() - t->drawn < 0.1)) {
        return;
    }
    t->drawn = now();
    if (t->expected > 0) {
        int pct = have >= t->expected ? 100 : (int)(have * 100 / t->expected);
        int fill = pct * 32 / 100;

        memset(bar, '#', (size_t)fill);
        memset(bar + fill, '.', (size_t)(32 - fill));
        bar[32] = '\0';
        fprintf(stderr, "\r\033[K[%s] %3d%%  %s of %s", bar, pct, human(have, a, sizeof a),
                human(t->expected, b, sizeof b));
    } else {
        fprintf(stderr, "\r\033[K%s", human(have, a, sizeof a));
    }
    if (last) {
        fputc('\n', stderr);
    }
    fflush(stderr);
}

/* libcurl's write callback: the body into the .part file.  A server that
 * answers a Range request with the whole file (200) starts it over. */
static size_t on_data(char *data, size_t size, size_t nmemb, void *arg)
{
    struct transfer *t = arg;
    size_t n = size * nmemb;

    if (!t->checked) {
        long code = 0;

        t->checked = 1;
        curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &code);
        if (t->offset > 0 && code == 200) {
            if (fflush(t->f) != 0 || ftruncate(fileno(t->f), 0) != 0 ||
                fseek(t->f, 0, SEEK_SET) != 0) {
                t->write_failed = errno;
                return 0;
            }
            t->offset = 0;
            t->restarted = 1;
            t->expected = t->published;
        }
    }
    if (fwrite(data, 1, n, t->f) != n) {
        t->write_failed = errno ? errno : EIO;
        return 0;
    }
    t->written += n;
    draw(t, 0);
    return n;
}

/* libcurl's progress callback: learns the size from Content-Length. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    struct transfer *t = arg;

    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    if (t->expected == 0 && dltotal > 0) {
        t->expected = t->offset + (uint64_t)dltotal;
    }
    return 0;
}

/* The SHA-256 of the file at path into hex.  0, or -1 with errno. */
static int hash_file(const char *path, char hex[65])
{
    static unsigned char buf[1 << 20];
    struct sha256 s;
    FILE *f = fopen(path, "rb");
    size_t n;

    if (!f) {
        return -1;
    }
    sha256_init(&s);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        sha256_update(&s, buf, n);
    }
    if (ferror(f)) {
        fclose(f);
        errno = EIO;
        return -1;
    }
    fclose(f);
    sha256_final_hex(&s, hex);
    return 0;
}

/* Checks the finished .part against the size and (when given) the
 * SHA-256.  0, or -1 with why filled. */
static int verify(const char *part, uint64_t size, const char *sha, char *why, size_t len)
{
    struct stat st;
    char hex[65];

    if (stat(part, &st) != 0) {
        snprintf(why, len, "%s: %s", part, strerror(errno));
        return -1;
    }
    if (size > 0 && (uint64_t)st.st_size != size) {
        snprintf(why, len, "%" PRIu64 " bytes received, %" PRIu64 " expected",
                 (uint64_t)st.st_size, size);
        return -1;
    }
    if (sha && sha[0]) {
        if (hash_file(part, hex) != 0) {
            snprintf(why, len, "%s: %s", part, strerror(errno));
            return -1;
        }
        if (strcmp(hex, sha) != 0) {
            snprintf(why, len, "SHA-256 %s, expected %s", hex, sha);
            return -1;
        }
    }
    return 0;
}

/* One request from the .part file's end.  0 when the body came whole,
 * 1 when the server says the range is past the end (416: the .part may
 * be complete), 2 when it cannot send a range (start over), -1 with an
 * error printed. */
static int fetch(const char *url, const char *part, struct transfer *t)
{
    char curl_err[CURL_ERROR_SIZE] = "";
    CURL *c = curl_easy_init();
    CURLcode rc;
    long code = 0;
    struct stat st;

    if (!c) {
        tool_error("pull: cannot start libcurl");
        return -1;
    }
    t->offset = stat(part, &st) == 0 ? (uint64_t)st.st_size : 0;
    if (!(t->f = fopen(part, "ab"))) {
        tool_error("pull: %s: %s", part, strerror(errno));
        curl_easy_cleanup(c);
        return -1;
    }
    t->curl = c;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "rwkv-tool/" PACKAGE_VERSION);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, t);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    /* a stalled connection (under 1 byte/s for a minute) ends; resume then */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    if (t->offset > 0) {
        curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)t->offset);
    }
    rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (fclose(t->f) != 0 && !t->write_failed) {
        t->write_failed = errno;
    }
    t->f = NULL;
    curl_easy_cleanup(c);
    if (t->write_failed) {
        tool_error("pull: %s: %s", part, strerror(t->write_failed));
        return -1;
    }
    if (rc == CURLE_HTTP_RETURNED_ERROR && code == 416 && t->offset > 0) {
        return 1;
    }
    if (rc == CURLE_RANGE_ERROR && t->offset > 0) {
        return 2;
    }
    if (rc != CURLE_OK) {
        draw(t, 1);
        tool_error("pull: %s: %s%s", url, curl_err[0] ? curl_err : curl_easy_strerror(rc),
                   t->offset + t->written > 0 ?
                   "; what arrived is kept: run the same command again to resume" : "");
        return -1;
    }
    draw(t, 1);
    return 0;
}

/* fsync of the file at path, so that the rename installs whole data. */
static int sync_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    int rc;

    if (!f) {
        return -1;
    }
    rc = fsync(fileno(f));
    fclose(f);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "Usage: rwkv-tool pull [OPTION]... NAME|URL\n"
               "Download a model into the models folder, where rwkv-chat --model NAME finds\n"
               "it.  NAME is one of the known models (rwkv-tool pull --list); a URL (http or\n"
               "https) is saved under its last path part.  An interrupted download resumes\n"
               "where it stopped; the file is checked (size, SHA-256) before it is installed.\n\n"
               "  -d, --dir DIR     save into DIR instead of the models folder\n"
               "  -l, --list        list the known names, with sizes, and exit\n"
               "      --sha256 HEX  for a URL: the SHA-256 the file must have\n"
               "  -h, --help        display this help and exit\n");
}

/* The models folder, made if missing (malloc'd), or NULL with an error. */
static char *models_dir(const char *dir)
{
    char *home, *d;

    if (dir) {
        d = strdup(dir);
    } else {
        home = paths_data_home();
        d = home ? paths_join(home, "models") : NULL;
        free(home);
    }
    if (!d) {
        tool_error("pull: no models folder (HOME unset?): pass --dir DIR");
        return NULL;
    }
    if (paths_mkdirs(d) != 0) {
        tool_error("pull: %s: %s", d, strerror(errno));
        free(d);
        return NULL;
    }
    return d;
}

static int list_known(void)
{
    struct known *list;
    size_t n;
    char b[32];

    if (read_list(&list, &n) != 0) {
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        printf("%-12s %8s  %s\n", list[i].name, human(list[i].size, b, sizeof b), list[i].file);
    }
    free(list);
    return 0;
}

int tool_pull(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "dir", required_argument, NULL, 'd' },
        { "list", no_argument, NULL, 'l' },
        { "sha256", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *dir_opt = NULL, *arg, *sha = NULL, *url;
    struct known *list = NULL, *k = NULL;
    struct transfer t;
    char file[256], why[512], b[32];
    char *dir = NULL, *dest = NULL, *part = NULL;
    uint64_t size = 0;
    size_t n = 0;
    int opt, rc = 1, r;
    struct stat st;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "d:lh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'd':
            dir_opt = optarg;
            break;
        case 'l':
            return list_known();
        case 's':
            sha = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        tool_error("pull: %s", optind >= argc ? "give a model NAME or a URL" : "one NAME or URL");
        usage(stderr);
        return 2;
    }
    arg = argv[optind];
    if (sha && (strlen(sha) != 64 || strspn(sha, "0123456789abcdef") != 64)) {
        tool_error("pull: --sha256: %s is not 64 lowercase hex digits", sha);
        return 2;
    }
    if (strstr(arg, "://")) {
        if (strncmp(arg, "http://", 7) != 0 && strncmp(arg, "https://", 8) != 0) {
            tool_error("pull: %s: only http:// and https:// addresses are fetched", arg);
            return 1;
        }
        if (file_of_url(arg, file, sizeof file) != 0) {
            tool_error("pull: %s: no file name at the end of the address", arg);
            return 1;
        }
        url = arg;
    } else {
        if (read_list(&list, &n) != 0) {
            return 1;
        }
        for (size_t i = 0; i < n && !k; i++) {
            if (names(&list[i], arg)) {
                k = &list[i];
            }
        }
        if (!k) {
            tool_error("pull: unknown model '%s': 'rwkv-tool pull --list' shows the known names; "
                       "a URL is fetched as it is", arg);
            free(list);
            return 1;
        }
        snprintf(file, sizeof file, "%s", k->file);
        url = k->url;
        size = k->size;
        sha = k->sha256;
    }
    if (!(dir = models_dir(dir_opt)) || !(dest = paths_join(dir, file)) ||
        asprintf(&part, "%s.part", dest) < 0) {
        part = NULL;
        goto out;
    }
    if (stat(dest, &st) == 0) {
        if (size == 0 || (uint64_t)st.st_size == size) {
            printf("%s\n", dest);
            fprintf(stderr, "rwkv-tool: pull: %s is already there\n", dest);
            rc = 0;
        } else {
            tool_error("pull: %s exists and is not the published file (%" PRIu64 " bytes, not %"
                       PRIu64 "): move it away first", dest, (uint64_t)st.st_size, size);
        }
        goto out;
    }
    memset(&t, 0, sizeof t);
    t.expected = t.published = size;
    t.tty = isatty(STDERR_FILENO);
    fprintf(stderr, "rwkv-tool: pull: %s%s%s -> %s\n", url, size ? ", " : "",
            size ? human(size, b, sizeof b) : "", dest);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        tool_error("pull: cannot start libcurl");
        goto out;
    }
    r = fetch(url, part, &t);
    if (r == 2) {
        /* the server sends only whole files: start the .part over */
        fprintf(stderr, "rwkv-tool: pull: the server cannot resume: starting over\n");
        if (truncate(part, 0) != 0) {
            tool_error("pull: %s: %s", part, strerror(errno));
            curl_global_cleanup();
            goto out;
        }
        t.written = 0;
        t.restarted = 1;
        t.expected = size;
        r = fetch(url, part, &t);
    }
    curl_global_cleanup();
    if (r < 0) {
        /* nothing arrived: leave no empty .part behind */
        if (stat(part, &st) == 0 && st.st_size == 0) {
            unlink(part);
        }
        goto out;
    }
    if (t.offset > 0 && !t.restarted && r == 0) {
        fprintf(stderr, "rwkv-tool: pull: resumed at byte %" PRIu64 "\n", t.offset);
    }
    if (verify(part, size ? size : t.expected, sha, why, sizeof why) != 0) {
        unlink(part);
        tool_error("pull: %s: the download is not the published file (%s): removed, not "
                   "installed; run the command again to download it afresh", url, why);
        goto out;
    }
    if (sync_file(part) != 0 || rename(part, dest) != 0) {
        tool_error("pull: %s: %s", dest, strerror(errno));
        goto out;
    }
    printf("%s\n", dest);
    fprintf(stderr, "rwkv-tool: pull: %s installed%s; start it with: rwkv-chat --model %s\n",
            dest, sha ? " (SHA-256 checked)" : " (size checked)", k ? k->name : file);
    rc = 0;
out:
    free(part);
    free(dest);
    free(dir);
    free(list);
    return rc;
}
