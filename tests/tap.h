/*
 * tap.h - a tiny TAP producer for the test programs.
 *
 *   ok(cond, "v7 logits match reference (max err %g)", err);
 *   return tap_done();
 *
 * Fixture paths come from $SHARED_DIR (set by make check).
 */
#ifndef RWKV_TAP_H
#define RWKV_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_count;
static int tap_failures;

__attribute__((format(printf, 2, 3), unused))
static int ok(int cond, const char *fmt, ...)
{
    va_list ap;

    tap_count++;
    printf("%s %d - ", cond ? "ok" : "not ok", tap_count);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    if (!cond) {
        tap_failures++;
    }
    fflush(stdout);
    return cond;
}

/* A diagnostic line (shown in the test log). */
__attribute__((format(printf, 1, 2), unused))
static void diag(const char *fmt, ...)
{
    va_list ap;

    printf("# ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

__attribute__((format(printf, 1, 2), unused))
static void skip(const char *fmt, ...)
{
    va_list ap;

    tap_count++;
    printf("ok %d # SKIP ", tap_count);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

/* Prints the plan and returns the exit status for main. */
__attribute__((unused))
static int tap_done(void)
{
    printf("1..%d\n", tap_count);
    return tap_failures ? 1 : 0;
}

/* 1 when the test runs under valgrind (its preload library is in
 * LD_PRELOAD): slow, with its own memory in the RSS, and a CPU of its
 * own that may pick other kernel sets than a child run outside it. */
__attribute__((unused))
static int under_valgrind(void)
{
    const char *preload = getenv("LD_PRELOAD");

    return preload && strstr(preload, "vgpreload") != NULL;
}

/* Path of a file under $SHARED_DIR (static buffer, valid until next call). */
__attribute__((unused))
static const char *shared_path(const char *rel)
{
    static char buf[4][4096];
    static int next;
    const char *dir = getenv("SHARED_DIR");
    char *b = buf[next++ & 3];

    snprintf(b, sizeof buf[0], "%s/%s", dir ? dir : "../shared", rel);
    return b;
}

/* Reads a whole file into malloc'd memory; NULL if unreadable. */
__attribute__((unused))
static void *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *data;
    long n;

    if (!f) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    data = malloc((size_t)n + 1);
    if (data && fread(data, 1, (size_t)n, f) != (size_t)n) {
        free(data);
        data = NULL;
    }
    fclose(f);
    if (data) {
        data[n] = 0;
        if (len) {
            *len = (size_t)n;
        }
    }
    return data;
}

#endif
