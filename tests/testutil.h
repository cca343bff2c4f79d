/*
 * testutil.h - helpers the test programs share beyond TAP output: a private
 * temporary folder, writing and damaging file copies, little-endian fields.
 * Includes tests/tap.h.
 *
 *   if (tmpdir_make("test_model") != 0) { return 99; }
 *   write_file(tmp_path("empty.pth"), "", 0);
 *   ...
 *   tmpdir_remove();
 */
#ifndef RWKV_TESTUTIL_H
#define RWKV_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"

static char tmpdir[64];

/* Makes /tmp/NAME.XXXXXX as tmpdir; 0, or -1 after printing why. */
__attribute__((unused))
static int tmpdir_make(const char *name)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/%s.XXXXXX", name);
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return -1;
    }
    return 0;
}

/* Removes tmpdir and everything in it. */
__attribute__((unused))
static void tmpdir_remove(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) {
        diag("could not remove %s", tmpdir);
    }
}

/* Path of name in tmpdir (static buffer, one of four used in turn). */
__attribute__((unused))
static const char *tmp_path(const char *name)
{
    static char buf[4][256];
    static int next;
    char *b = buf[next++ & 3];

    snprintf(b, sizeof(buf[0]), "%s/%s", tmpdir, name);
    return b;
}

/* Writes len bytes to path; a failure ends the test (exit 99, hard error). */
__attribute__((unused))
static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    if (!f || fwrite(data, 1, len, f) != len) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(99);
    }
    fclose(f);
}

/* Offset of needle in buf at or after from, or -1. */
__attribute__((unused))
static long find_bytes(const unsigned char *buf, size_t len, size_t from, const void *needle,
                       size_t nlen)
{
    size_t i;

    for (i = from; i + nlen <= len; i++) {
        if (!memcmp(buf + i, needle, nlen)) {
            return (long)i;
        }
    }
    return -1;
}

/* Writes tmp_path(name), a copy of buf with the first (or, with all, every)
 * occurrence of from after the first occurrence of anchor (if any) replaced
 * by to (same length); returns its path. */
__attribute__((unused))
static const char *patched(const char *name, const unsigned char *buf, size_t len,
                           const char *anchor, const void *from, const void *to, size_t n,
                           int all)
{
    unsigned char *copy = malloc(len);
    long a = anchor ? find_bytes(buf, len, 0, anchor, strlen(anchor)) : 0;
    long pos = a < 0 ? -1 : find_bytes(buf, len, (size_t)a, from, n);

    memcpy(copy, buf, len);
    if (pos < 0) {
        diag("patch for %s not found", name);
    }
    while (pos >= 0) {
        memcpy(copy + pos, to, n);
        pos = all ? find_bytes(copy, len, (size_t)pos + n, from, n) : -1;
    }
    write_file(tmp_path(name), copy, len);
    free(copy);
    return tmp_path(name);
}

/* Little-endian fields, as in zip, pickle and safetensors headers. */
__attribute__((unused))
static uint16_t rd16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

__attribute__((unused))
static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

__attribute__((unused))
static void wr16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

__attribute__((unused))
static void wr32(unsigned char *p, uint32_t v)
{
    wr16(p, v & 0xffff);
    wr16(p + 2, v >> 16);
}

__attribute__((unused))
static void wr64(unsigned char *p, uint64_t v)
{
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

#endif
