/* verified.c - records of model files whose checksums passed (verified.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/base/atomicfile.h"
#include "engine/load/verified.h"

#define RECORD_MAGIC "rwkv-chat verified zip CRC-32 1"

int verified_dir(char *out, size_t outlen)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;

    /* XDG: a relative XDG_CACHE_HOME is invalid and ignored */
    if (xdg && xdg[0] == '/') {
        n = snprintf(out, outlen, "%s/rwkv-chat", xdg);
    } else if (home && home[0] == '/') {
        n = snprintf(out, outlen, "%s/.cache/rwkv-chat", home);
    } else {
        return -1;
    }
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* The record's file name and the text it holds for id. */
static int record_of(const char *dir, const struct fileid *id, char *path, size_t pathlen,
                     char *text, size_t textlen)
{
    int n = snprintf(path, pathlen, "%s/verified/%llx-%llx", dir, (unsigned long long)id->dev,
                     (unsigned long long)id->ino);

    if (n < 0 || (size_t)n >= pathlen) {
        return -1;
    }
    n = snprintf(text, textlen, "%s\ndev %llu ino %llu size %llu mtime_ns %lld ctime_ns %lld\n",
                 RECORD_MAGIC, (unsigned long long)id->dev, (unsigned long long)id->ino,
                 (unsigned long long)id->size, (long long)id->mtime_ns, (long long)id->ctime_ns);
    return n < 0 || (size_t)n >= textlen ? -1 : n;
}

int verified_has(const char *dir, const struct fileid *id)
{
    char path[4096], want[256], got[256];
    struct stat st;
    ssize_t n;
    int len = record_of(dir, id, path, sizeof path, want, sizeof want), fd, same;

    if (len < 0) {
        return 0;
    }
    /* not a FIFO, not through a symlink, not someone else's */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        return 0;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
        st.st_size != len) {
        close(fd);
        return 0;
    }
    n = read(fd, got, sizeof got);
    same = n == len && memcmp(got, want, (size_t)len) == 0;
    close(fd);
    return same;
}

/* mkdir -p of path (mode 0700 for what it creates). */
static int make_dirs(char *path)
{
    char *p;

    for (p = path + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(path, 0700) != 0 && errno != EEXIST) {
                *p = '/';
                return -1;
            }
            *p = '/';
        }
    }
    return mkdir(path, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

int verified_add(const char *dir, const struct fileid *id)
{
    static const struct atomicfile_kind kind = {
        "verified-checksum record", RECORD_MAGIC, sizeof(RECORD_MAGIC) - 1, NULL,
    };
    char path[4096], text[256], sub[4096], err[512];
    int len = record_of(dir, id, path, sizeof path, text, sizeof text);

    if (len < 0 || snprintf(sub, sizeof sub, "%s/verified", dir) >= (int)sizeof sub ||
        make_dirs(sub) != 0) {
        return -1;
    }
    /* no fsync: a lost record only costs the next start a check */
    return atomicfile_write(path, &kind, ATOMICFILE_NO_SYNC, text, (size_t)len, err,
                            sizeof err);
}
