/*
 * atomicfile.c - replace a file atomically, with one policy (atomicfile.h).
 */
#include "engine/base/atomicfile.h"
#include "engine/base/escape.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/random.h>
#endif

#define RANDOM_LEN 8
#define TEMP_OVERHEAD (1 + 1 + RANDOM_LEN + 4)  /* "." NAME "." XXXXXXXX ".tmp" */
#define MAX_TRIES 100
#define MAX_MAGIC 64

struct atomicfile {
    char *path;             /* the target as the caller named it: for messages */
    const char *base;       /* its last component, inside path */
    struct atomicfile_kind kind;
    unsigned flags;
    int dirfd;
    int fd;
    FILE *stream;
    int unnamed;            /* fd is an O_TMPFILE file with no name yet */
    size_t stem_len;        /* bytes of base in the temporary's name */
    char tmp[NAME_MAX + 1]; /* the temporary's name in the directory, "" if none */
};

/* The directory part of path: "." when none, "/" for "/x". */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (!slash) {
        return strdup(".");
    }
    return strndup(path, slash == path ? 1 : (size_t)(slash - path));
}

static const char *base_of(const char *path)
{
    const char *slash = strrchr(path, '/');

    return slash ? slash + 1 : path;
}

static void fill_random(unsigned char *r, size_t n)
{
    size_t got = 0;

#ifdef __linux__
    ssize_t k = getrandom(r, n, GRND_NONBLOCK);

    got = k > 0 ? (size_t)k : 0;
#endif
    if (got < n) {
        /* No entropy source: the clock and the pid (O_EXCL keeps this
         * safe; randomness only makes a collision unlikely). */
        struct timespec ts;
        uint64_t h;

        clock_gettime(CLOCK_REALTIME, &ts);
        h = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec ^
            ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)r;
        for (size_t i = got; i < n; i++) {
            h ^= h >> 29;
            h *= 0xbf58476d1ce4e5b9ull;
            h ^= h >> 32;
            r[i] = (unsigned char)h;
        }
    }
}

/* RANDOM_LEN letters and digits into out (not terminated).  Tests
 * define ATOMICFILE_RANDOM_CHARS to choose the names. */
static void random_chars(char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char r[RANDOM_LEN];

    fill_random(r, sizeof r);
    for (size_t i = 0; i < RANDOM_LEN; i++) {
        out[i] = alphabet[r[i] % (sizeof alphabet - 1)];
    }
}
#ifndef ATOMICFILE_RANDOM_CHARS
#define ATOMICFILE_RANDOM_CHARS random_chars
#endif
/* Tests set it to 0 to take the named path where O_TMPFILE works. */
#ifndef ATOMICFILE_TRY_UNNAMED
#define ATOMICFILE_TRY_UNNAMED 1
#endif

static int is_alnum(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* How much of base goes into a temporary's name so that it fits the
 * directory's NAME_MAX; cut at a UTF-8 character boundary. */
static size_t stem_length(int dirfd, const char *base)
{
    long name_max = fpathconf(dirfd, _PC_NAME_MAX);
    size_t len = strlen(base), room;

    if (name_max <= 0 || name_max > NAME_MAX) {
        name_max = NAME_MAX;
    }
    room = (size_t)name_max > TEMP_OVERHEAD ? (size_t)name_max - TEMP_OVERHEAD : 0;
    if (len <= room) {
        return len;
    }
    len = room;
    while (len > 0 && ((unsigned char)base[len] & 0xC0) == 0x80) {
        len--;
    }
    return len;
}

/* A fresh temporary name for af into af->tmp. */
static void new_temp_name(atomicfile *af)
{
    char *p = af->tmp;

    *p++ = '.';
    memcpy(p, af->base, af->stem_len);
    p += af->stem_len;
    *p++ = '.';
    ATOMICFILE_RANDOM_CHARS(p);
    p += RANDOM_LEN;
    memcpy(p, ".tmp", 5);
}

/* Whether name is one of ours for the target whose stem is base[0..stem_len). */
static int is_temp_name(const char *name, const char *base, size_t stem_len)
{
    size_t i;

    if (strlen(name) != stem_len + TEMP_OVERHEAD || name[0] != '.' ||
        memcmp(name + 1, base, stem_len) != 0 || name[1 + stem_len] != '.' ||
        strcmp(name + 2 + stem_len + RANDOM_LEN, ".tmp") != 0) {
        return 0;
    }
    for (i = 0; i < RANDOM_LEN; i++) {
        if (!is_alnum(name[2 + stem_len + i])) {
            return 0;
        }
    }
    return 1;
}

/* Removes the temporaries a killed save of the same target left: our
 * name pattern, a regular file, ours, untouched for a while (a save in
 * progress keeps writing, so its file is recent).  Best effort. */
static void sweep_stale(atomicfile *af)
{
    int fd = openat(af->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *e;
    struct stat st;
    time_t now = time(NULL);

    if (!d) {
        if (fd >= 0) {
            close(fd);
        }
        return;
    }
    while ((e = readdir(d)) != NULL) {
        if (is_temp_name(e->d_name, af->base, af->stem_len) &&
            fstatat(af->dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            st.st_uid == geteuid() && now - st.st_mtime >= ATOMICFILE_STALE_SECONDS) {
            unlinkat(af->dirfd, e->d_name, 0);
        }
    }
    closedir(d);
}

/* The process's umask, read without changing it where /proc allows
 * (umask() both reads and sets, which races with other threads). */
static mode_t current_umask(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    char line[256];
    mode_t m;

    if (f) {
        while (fgets(line, sizeof line, f)) {
            if (!strncmp(line, "Umask:", 6)) {
                fclose(f);
                return (mode_t)strtoul(line + 6, NULL, 8) & 0777;
            }
        }
        fclose(f);
    }
    m = umask(022);
    umask(m);
    return m;
}

/* Whether the existing entry base in dirfd may be replaced.  *st gets
 * its stat and *exists whether there is one.  0, or -1 with err. */
static int check_target(int dirfd, const char *path, const char *base,
                        const struct atomicfile_kind *kind, struct stat *st, int *exists,
                        char *err, size_t errlen)
{
    const char *what = kind && kind->name ? kind->name : "file";
    unsigned char head[MAX_MAGIC];
    ssize_t got = 0;
    int fd;

    *exists = 0;
    if (!*base) {
        snprintf(err, errlen, "%s: not a file name: give a file to save to", RWKV_ESC(path));
        return -1;
    }
    if (fstatat(dirfd, base, st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) {
            return 0;
        }
        snprintf(err, errlen, "%s: cannot save: %s", RWKV_ESC(path), strerror(errno));
        return -1;
    }
    *exists = 1;
    if (S_ISLNK(st->st_mode)) {
        snprintf(err, errlen, "%s: is a symbolic link, not replacing it: save to the file it "
                 "points to, or remove the link", RWKV_ESC(path));
        return -1;
    }
    if (!S_ISREG(st->st_mode)) {
        snprintf(err, errlen, "%s: not a regular file, not replacing it: give a file name",
                 RWKV_ESC(path));
        return -1;
    }
    if (!kind || !kind->magic || st->st_size == 0) {
        return 0;
    }
    assert(kind->magic_len > 0 && kind->magic_len <= MAX_MAGIC);
    fd = openat(dirfd, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0) {
        do {
            got = pread(fd, head, kind->magic_len, 0);
        } while (got < 0 && errno == EINTR);
    }
    if (fd < 0 || got < 0) {
        snprintf(err, errlen, "%s: cannot read it to check that it is a %s: %s",
                 RWKV_ESC(path), what, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    close(fd);
    if ((size_t)got < kind->magic_len || memcmp(head, kind->magic, kind->magic_len) != 0) {
        snprintf(err, errlen, "%s: exists and is not a %s, not replacing it: %s", RWKV_ESC(path),
                 what,
                 kind->advice ? kind->advice : "choose another name, or remove the file first");
        return -1;
    }
    return 0;
}

/* Opens the directory of path for the *at calls.  -1 with err. */
static int open_dir(const char *path, char *err, size_t errlen)
{
    char *dir = dir_of(path);
    int fd;

    if (!dir) {
        snprintf(err, errlen, "%s: out of memory", RWKV_ESC(path));
        return -1;
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
#ifdef O_PATH
    if (fd < 0 && errno == EACCES) {
        fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);   /* writable, not readable */
    }
#endif
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot write into %s: %s", RWKV_ESC(path), RWKV_ESC(dir),
                 strerror(errno));
    }
    free(dir);
    return fd;
}

int atomicfile_check(const char *path, const struct atomicfile_kind *kind, char *err,
                     size_t errlen)
{
    struct stat st;
    int dirfd = open_dir(path, err, errlen), exists, rc;

    if (dirfd < 0) {
        return -1;
    }
    rc = check_target(dirfd, path, base_of(path), kind, &st, &exists, err, errlen);
    if (rc == 0 && faccessat(dirfd, ".", W_OK | X_OK, AT_EACCESS) != 0) {
        char *dir = dir_of(path);

        snprintf(err, errlen, "%s: cannot write into %s: %s", RWKV_ESC(path),
                 dir ? RWKV_ESC(dir) : "its directory", strerror(errno));
        free(dir);
        rc = -1;
    }
    close(dirfd);
    return rc;
}

/* Creates the temporary: unnamed where possible, else at a fresh name
 * that nothing (no file, no planted link) holds. */
static int create_temp(atomicfile *af)
{
    int i;

#ifdef O_TMPFILE
    /* Naming it later goes through /proc (linkat with AT_EMPTY_PATH needs
     * a privilege). */
    if (ATOMICFILE_TRY_UNNAMED && access("/proc/self/fd", X_OK) == 0) {
        af->fd = openat(af->dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
        if (af->fd >= 0) {
            af->unnamed = 1;
            return 0;
        }
    }
#endif
    for (i = 0; i < MAX_TRIES; i++) {
        new_temp_name(af);
        af->fd = openat(af->dirfd, af->tmp,
                        O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (af->fd >= 0) {
            return 0;
        }
        if (errno != EEXIST) {
            break;
        }
    }
    af->tmp[0] = '\0';
    return -1;
}

static void release(atomicfile *af)
{
    if (af->stream) {
        fclose(af->stream);
    } else if (af->fd >= 0) {
        close(af->fd);
    }
    if (af->tmp[0]) {
        unlinkat(af->dirfd, af->tmp, 0);
    }
    if (af->dirfd >= 0) {
        close(af->dirfd);
    }
    free(af->path);
    free(af);
}

atomicfile *atomicfile_open(const char *path, const struct atomicfile_kind *kind, unsigned flags,
                            char *err, size_t errlen)
{
    atomicfile *af = calloc(1, sizeof *af);
    struct stat st;
    int exists;

    if (!af || !(af->path = strdup(path))) {
        free(af);
        snprintf(err, errlen, "%s: out of memory", RWKV_ESC(path));
        return NULL;
    }
    af->fd = -1;
    af->base = base_of(af->path);
    af->flags = flags;
    if (kind) {
        af->kind = *kind;
    }
    af->dirfd = open_dir(path, err, errlen);
    if (af->dirfd < 0 ||
        check_target(af->dirfd, path, af->base, kind, &st, &exists, err, errlen) < 0) {
        release(af);
        return NULL;
    }
    af->stem_len = stem_length(af->dirfd, af->base);
    sweep_stale(af);
    if (create_temp(af) < 0) {
        char *dir = dir_of(path);

        snprintf(err, errlen, "%s: cannot create a file in %s: %s", RWKV_ESC(path),
                 dir ? RWKV_ESC(dir) : "its directory", strerror(errno));
        free(dir);
        release(af);
        return NULL;
    }
    return af;
}

int atomicfile_fd(const atomicfile *af)
{
    return af->fd;
}

FILE *atomicfile_stream(atomicfile *af, char *err, size_t errlen)
{
    if (!af->stream && !(af->stream = fdopen(af->fd, "wb"))) {
        snprintf(err, errlen, "%s: cannot write: %s", RWKV_ESC(af->path), strerror(errno));
    }
    return af->stream;
}

void atomicfile_abort(atomicfile *af)
{
    if (af) {
        release(af);
    }
}

/* The mode of the file being replaced, or the mode a new file gets, onto
 * the temporary.  The owner is not carried over (the file becomes the
 * saver's, as any new file would); when its group differs from the old
 * one, that group gets no more than everyone else had, so a save never
 * hands a file's group rights to another group. */
static int set_mode(atomicfile *af, const struct stat *old, int exists)
{
    struct stat mine;
    mode_t mode;

    if (!exists) {
        return fchmod(af->fd, 0666 & ~current_umask());
    }
    mode = old->st_mode & 0777;
    if (fstat(af->fd, &mine) != 0 || mine.st_gid != old->st_gid) {
        mode = (mode & ~(mode_t)070) | ((mode & 07) << 3);
    }
    return fchmod(af->fd, mode);
}

/* Gives an unnamed temporary a fresh name in the directory. */
static int name_temp(atomicfile *af)
{
    char proc[64];
    int i;

    snprintf(proc, sizeof proc, "/proc/self/fd/%d", af->fd);
    for (i = 0; i < MAX_TRIES; i++) {
        new_temp_name(af);
        if (linkat(AT_FDCWD, proc, af->dirfd, af->tmp, AT_SYMLINK_FOLLOW) == 0) {
            af->unnamed = 0;
            return 0;
        }
        if (errno != EEXIST) {
            break;
        }
    }
    af->tmp[0] = '\0';
    return -1;
}

int atomicfile_commit(atomicfile *af, char *err, size_t errlen)
{
    struct stat st;
    int exists, saved, fd;

    if (af->stream && fflush(af->stream) != 0) {
        goto fail;
    }
    if (!(af->flags & ATOMICFILE_NO_SYNC) && fsync(af->fd) != 0) {
        goto fail;
    }
    /* What is there now may have changed since the open. */
    if (check_target(af->dirfd, af->path, af->base, &af->kind, &st, &exists, err, errlen) < 0) {
        release(af);
        return -1;
    }
    if (set_mode(af, &st, exists) != 0 || (af->unnamed && name_temp(af) != 0)) {
        goto fail;
    }
    fd = af->fd;
    af->fd = -1;
    if (af->stream ? fclose(af->stream) != 0 : close(fd) != 0) {
        af->stream = NULL;
        goto fail;
    }
    af->stream = NULL;
    if (renameat(af->dirfd, af->tmp, af->dirfd, af->base) != 0) {
        goto fail;
    }
    af->tmp[0] = '\0';
    /* Make the rename itself durable (some file systems cannot sync a
     * directory; the file is in place either way). */
    if (!(af->flags & ATOMICFILE_NO_SYNC)) {
        fsync(af->dirfd);
    }
    release(af);
    return 0;
fail:
    saved = errno ? errno : EIO;
    snprintf(err, errlen, "%s: cannot save: %s", RWKV_ESC(af->path), strerror(saved));
    release(af);
    return -1;
}

int atomicfile_write(const char *path, const struct atomicfile_kind *kind, unsigned flags,
                     const void *data, size_t len, char *err, size_t errlen)
{
    atomicfile *af = atomicfile_open(path, kind, flags, err, errlen);
    const char *p = data;

    if (!af) {
        return -1;
    }
    while (len > 0) {
        ssize_t k = write(af->fd, p, len);

        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            snprintf(err, errlen, "%s: cannot save: %s", RWKV_ESC(path),
                     k < 0 ? strerror(errno) : "nothing written");
            atomicfile_abort(af);
            return -1;
        }
        p += k;
        len -= (size_t)k;
    }
    return atomicfile_commit(af, err, errlen);
}
