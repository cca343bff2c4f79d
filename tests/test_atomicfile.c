/*
 * test_atomicfile.c - the one way files are replaced (engine/base/atomicfile.c).
 *
 * The module is compiled into this test with two seams: the random part
 * of the temporary names (so that a link can be planted at the very name
 * a save will try) and whether the unnamed (O_TMPFILE) temporary is tried,
 * so that both the named and the unnamed paths are exercised.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void random_chars(char *out);

/* Names the next temporaries take: each call uses the next 8 characters
 * of forced_names, then falls back to random ones. */
static const char *forced_names;
static int try_unnamed = 1;

static void test_random_chars(char *out)
{
    if (forced_names && strlen(forced_names) >= 8) {
        memcpy(out, forced_names, 8);
        forced_names += 8;
        return;
    }
    random_chars(out);
}
#define ATOMICFILE_RANDOM_CHARS test_random_chars
#define ATOMICFILE_TRY_UNNAMED try_unnamed
#include "engine/base/atomicfile.c"

#include "tests/tap.h"

static char dir[PATH_MAX];

static const struct atomicfile_kind state_kind = {
    "state file", "RWKVSTAT", 8, "choose another name for the state file"
};

static void put(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) || close(fd) != 0) {
        printf("Bail out! cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
    chmod(path, mode);
}

/* The whole file as a string ("" when missing), in a static buffer. */
static const char *get(const char *path)
{
    static char buf[4096];
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : 0;

    if (fd >= 0) {
        close(fd);
    }
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static mode_t mode_of(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? st.st_mode & 07777 : (mode_t)-1;
}

/* Entries of dir whose names end in ".tmp". */
static int temporaries(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    while (d && (e = readdir(d))) {
        size_t len = strlen(e->d_name);

        n += len > 4 && !strcmp(e->d_name + len - 4, ".tmp");
    }
    if (d) {
        closedir(d);
    }
    return n;
}

static const char *at(const char *name);

static void remove_temporaries(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    while (d && (e = readdir(d))) {
        if (strstr(e->d_name, ".tmp")) {
            unlink(at(e->d_name));
        }
    }
    if (d) {
        closedir(d);
    }
}

static const char *at(const char *name)
{
    static char paths[4][PATH_MAX + 300];
    static int next;
    char *p = paths[next++ % 4];

    snprintf(p, sizeof paths[0], "%s/%s", dir, name);
    return p;
}

static int save(const char *name, const char *text, const struct atomicfile_kind *kind,
                char *err, size_t errlen)
{
    return atomicfile_write(at(name), kind, 0, text, strlen(text), err, errlen);
}

static void test_modes(void)
{
    char err[512];
    int rc;

    umask(022);
    rc = save("new", "one", NULL, err, sizeof err);
    ok(rc == 0 && mode_of(at("new")) == 0644 && !strcmp(get(at("new")), "one"),
       "a new file gets 0666 & ~umask (022: 0644, got %o)", (unsigned)mode_of(at("new")));
    umask(027);
    rc = save("new2", "two", NULL, err, sizeof err);
    ok(rc == 0 && mode_of(at("new2")) == 0640,
       "a new file gets 0666 & ~umask (027: 0640, got %o)", (unsigned)mode_of(at("new2")));
    umask(022);
    put(at("private"), "secret", 0600);
    rc = save("private", "still secret", NULL, err, sizeof err);
    ok(rc == 0 && mode_of(at("private")) == 0600 && !strcmp(get(at("private")), "still secret"),
       "a 600 file stays 600 after a save (got %o)", (unsigned)mode_of(at("private")));
    put(at("shared"), "x", 0664);
    rc = save("shared", "y", NULL, err, sizeof err);
    ok(rc == 0 && mode_of(at("shared")) == 0664, "a 664 file stays 664 (got %o)",
       (unsigned)mode_of(at("shared")));
    put(at("team"), "x", 0660);
    if (geteuid() != 0 || chown(at("team"), 4242, 4242) != 0) {
        skip("chown to another group needs root");
    } else {
        rc = save("team", "y", NULL, err, sizeof err);
        ok(rc == 0 && mode_of(at("team")) == 0600,
           "a 660 file of another group: that group's rights are not handed to ours (got %o)",
           (unsigned)mode_of(at("team")));
    }
    ok(temporaries() == 0, "no temporary left after saves");
}

static void test_symlinks(void)
{
    char err[512];

    put(at("victim"), "precious", 0644);
    if (symlink(at("victim"), at("link")) != 0) {
        skip("symlink: %s", strerror(errno));
        return;
    }
    ok(save("link", "RWKVSTAT overwrite", &state_kind, err, sizeof err) == -1 &&
       !strcmp(get(at("victim")), "precious") && strstr(err, at("link")) &&
       strstr(err, "symbolic link") && !strchr(err, '\n'),
       "a symbolic link at the target is refused, the file it points to untouched: %s", err);
    ok(atomicfile_check(at("link"), NULL, err, sizeof err) == -1 && strstr(err, "symbolic link"),
       "atomicfile_check refuses it too");

    /* A link planted at the first temporary name a save will try. */
    for (int unnamed = 0; unnamed <= 1; unnamed++) {
        char planted[64];
        struct stat st;

        try_unnamed = unnamed;
        snprintf(planted, sizeof planted, ".target.%s.tmp", unnamed ? "CCCCCCCC" : "AAAAAAAA");
        symlink(at("victim"), at(planted));
        forced_names = unnamed ? "CCCCCCCCDDDDDDDD" : "AAAAAAAABBBBBBBB";
        ok(save("target", "saved", NULL, err, sizeof err) == 0 &&
           !strcmp(get(at("victim")), "precious") && !strcmp(get(at("target")), "saved") &&
           lstat(at(planted), &st) == 0 && S_ISLNK(st.st_mode) && *forced_names == '\0',
           "%s temporary: a link planted at its name is never written through",
           unnamed ? "unnamed" : "named");
        unlink(at(planted));
        forced_names = NULL;
    }
    try_unnamed = 1;
    /* A link shaped like a stale temporary is not swept (nor followed). */
    {
        struct timespec old[2] = { { time(NULL) - 3600, 0 }, { time(NULL) - 3600, 0 } };
        struct stat st;

        symlink(at("victim"), at(".target.EEEEEEEE.tmp"));
        utimensat(AT_FDCWD, at(".target.EEEEEEEE.tmp"), old, AT_SYMLINK_NOFOLLOW);
        ok(save("target", "again", NULL, err, sizeof err) == 0 &&
           lstat(at(".target.EEEEEEEE.tmp"), &st) == 0 && S_ISLNK(st.st_mode) &&
           !strcmp(get(at("victim")), "precious"),
           "an old link named like a temporary is left alone, its target untouched");
        unlink(at(".target.EEEEEEEE.tmp"));
    }
    unlink(at("link"));
}

static void test_long_name(void)
{
    char err[512], name[NAME_MAX + 1];

    memset(name, 'n', NAME_MAX);
    name[NAME_MAX] = '\0';
    for (int unnamed = 0; unnamed <= 1; unnamed++) {
        try_unnamed = unnamed;
        ok(save(name, unnamed ? "long2" : "long1", NULL, err, sizeof err) == 0 &&
           !strcmp(get(at(name)), unnamed ? "long2" : "long1") && temporaries() == 0,
           "a %d-byte file name saves (%s temporary)", NAME_MAX, unnamed ? "unnamed" : "named");
    }
    try_unnamed = 1;
    unlink(at(name));
    /* UTF-8 names are cut at a character boundary: 2-byte characters. */
    {
        char utf[NAME_MAX + 1] = "";

        while (strlen(utf) + 2 <= NAME_MAX) {
            strcat(utf, "\xc3\xa9");
        }
        try_unnamed = 0;
        ok(save(utf, "utf", NULL, err, sizeof err) == 0 && !strcmp(get(at(utf)), "utf"),
           "a long UTF-8 name saves");
        try_unnamed = 1;
        unlink(at(utf));
    }
}

/* A save killed after writing: the child opens, writes and dies. */
static void killed_save(const char *name, int unnamed)
{
    pid_t pid = fork();

    if (pid == 0) {
        char err[512];
        atomicfile *af;

        try_unnamed = unnamed;
        af = atomicfile_open(at(name), NULL, 0, err, sizeof err);
        if (af && write(atomicfile_fd(af), "half", 4) == 4) {
            raise(SIGKILL);
        }
        _exit(3);
    }
    waitpid(pid, NULL, 0);
}

static void age(const char *name, time_t seconds)
{
    struct timespec t[2] = { { time(NULL) - seconds, 0 }, { time(NULL) - seconds, 0 } };

    utimensat(AT_FDCWD, at(name), t, AT_SYMLINK_NOFOLLOW);
}

static void test_killed(void)
{
    char err[512], name[NAME_MAX + 1] = "";
    DIR *d;
    struct dirent *e;

    put(at("k"), "before", 0644);
    killed_save("k", 1);
    if (temporaries() == 0) {
        ok(!strcmp(get(at("k")), "before"),
           "a save killed while writing an unnamed temporary leaves nothing visible");
    } else {
        skip("no O_TMPFILE here: the killed save's temporary is named");
        remove_temporaries();
    }
    killed_save("k", 0);
    ok(temporaries() == 1 && !strcmp(get(at("k")), "before"),
           "a killed save (named temporary) leaves the target as it was");
    d = opendir(dir);
    while (d && (e = readdir(d))) {
        if (strstr(e->d_name, ".tmp")) {
            snprintf(name, sizeof name, "%s", e->d_name);
        }
    }
    closedir(d);
    /* A temporary being written now (recent) and one of another target. */
    put(at(".k.FRESHxxx.tmp"), "in progress", 0600);
    put(at(".other.OLDxxxxx.tmp"), "other's", 0600);
    age(".other.OLDxxxxx.tmp", 3600);
    ok(save("k", "after", NULL, err, sizeof err) == 0 && access(at(name), F_OK) == 0,
       "a recent temporary (a save in progress) is kept");
    age(name, ATOMICFILE_STALE_SECONDS + 60);
    ok(save("k", "after", NULL, err, sizeof err) == 0 && access(at(name), F_OK) != 0 &&
       access(at(".k.FRESHxxx.tmp"), F_OK) == 0 && access(at(".other.OLDxxxxx.tmp"), F_OK) == 0 &&
       !strcmp(get(at("k")), "after"),
       "the next save of the target removes its stale temporary, and only that");
    unlink(at(".k.FRESHxxx.tmp"));
    unlink(at(".other.OLDxxxxx.tmp"));
}

static void test_failures(void)
{
    char err[512], big[100000];
    struct rlimit old, small;
    atomicfile *af;

    /* A write that fails half way (file size limit, as a full disk). */
    put(at("keep"), "RWKVSTAT old", 0644);
    memset(big, 'x', sizeof big);
    memcpy(big, "RWKVSTAT", 8);
    big[sizeof big - 1] = '\0';
    getrlimit(RLIMIT_FSIZE, &old);
    small = old;
    small.rlim_cur = 4096;
    signal(SIGXFSZ, SIG_IGN);
    for (int unnamed = 0; unnamed <= 1; unnamed++) {
        try_unnamed = unnamed;
        setrlimit(RLIMIT_FSIZE, &small);
        err[0] = '\0';
        ok(save("keep", big, &state_kind, err, sizeof err) == -1 &&
           !strcmp(get(at("keep")), "RWKVSTAT old") && temporaries() == 0 &&
           strstr(err, at("keep")) && !strstr(err, ".tmp") && !strchr(err, '\n'),
           "a failed write (%s): the old file intact, no temporary, the message names the "
           "target: %s", unnamed ? "unnamed" : "named", err);
        setrlimit(RLIMIT_FSIZE, &old);
    }
    try_unnamed = 1;

    /* The target changed into something else before the commit. */
    af = atomicfile_open(at("keep"), &state_kind, 0, err, sizeof err);
    put(at("keep"), "my notes", 0644);
    ok(af && write(atomicfile_fd(af), "RWKVSTAT new", 12) == 12 &&
       atomicfile_commit(af, err, sizeof err) == -1 && !strcmp(get(at("keep")), "my notes") &&
       temporaries() == 0 && strstr(err, "not a state file"),
       "a target that became another kind of file before the commit is kept: %s", err);

    /* Aborting leaves the target and nothing else. */
    put(at("keep"), "RWKVSTAT old", 0644);
    af = atomicfile_open(at("keep"), &state_kind, 0, err, sizeof err);
    if (af) {
        fputs("RWKVSTAT partial", atomicfile_stream(af, err, sizeof err));
    }
    atomicfile_abort(af);
    ok(af && !strcmp(get(at("keep")), "RWKVSTAT old") && temporaries() == 0,
       "an aborted save leaves the old file and no temporary");

    ok(save("no-such-dir/x", "x", NULL, err, sizeof err) == -1 &&
       strstr(err, "no-such-dir/x: cannot write into") && !strchr(err, '\n'),
       "a missing directory: one line naming the target: %s", err);
}

static void test_kinds(void)
{
    char err[512];

    put(at("notes.txt"), "my notes", 0644);
    ok(save("notes.txt", "RWKVSTAT new", &state_kind, err, sizeof err) == -1 &&
       !strcmp(get(at("notes.txt")), "my notes") && strstr(err, at("notes.txt")) &&
       strstr(err, "is not a state file") && strstr(err, "choose another name"),
       "a file of another kind is not replaced: %s", err);
    ok(atomicfile_check(at("notes.txt"), &state_kind, err, sizeof err) == -1 &&
       strstr(err, "not a state file"), "atomicfile_check says so before any save");
    put(at("short"), "RWKV", 0644);
    ok(save("short", "RWKVSTAT new", &state_kind, err, sizeof err) == -1 &&
       !strcmp(get(at("short")), "RWKV"), "a file shorter than the magic is not replaced");
    put(at("empty"), "", 0644);
    ok(save("empty", "RWKVSTAT new", &state_kind, err, sizeof err) == 0 &&
       !strcmp(get(at("empty")), "RWKVSTAT new"), "an empty file is replaced (nothing is lost)");
    ok(save("empty", "RWKVSTAT newer", &state_kind, err, sizeof err) == 0 &&
       !strcmp(get(at("empty")), "RWKVSTAT newer"), "a state file is replaced");
    ok(atomicfile_check(at("empty"), &state_kind, err, sizeof err) == 0 &&
       atomicfile_check(at("absent"), &state_kind, err, sizeof err) == 0,
       "atomicfile_check accepts a state file and a new name");
    mkdir(at("adir"), 0755);
    ok(save("adir", "x", NULL, err, sizeof err) == -1 && strstr(err, "not a regular file"),
       "a directory is not replaced: %s", err);
    ok(save("", "x", NULL, err, sizeof err) == -1 && strstr(err, "not a file name"),
       "a path ending in / is refused: %s", err);
    ok(atomicfile_write(at("nosync"), NULL, ATOMICFILE_NO_SYNC, "derived", 7, err,
                        sizeof err) == 0 && !strcmp(get(at("nosync")), "derived"),
       "ATOMICFILE_NO_SYNC saves too");
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(dir, sizeof dir, "%s/atomicfile.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        printf("Bail out! mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    test_modes();
    test_symlinks();
    test_long_name();
    test_killed();
    test_failures();
    test_kinds();
    {
        char cmd[PATH_MAX + 16];

        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) {
            diag("could not remove %s", dir);
        }
    }
    return tap_done();
}
