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

#include "engine/base/crc32.h"
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

/* Path of name in tmpdir (static buffer, one of eight used in turn). */
__attribute__((unused))
static const char *tmp_path(const char *name)
{
    static char buf[8][256];
    static int next;
    char *b = buf[next++ & 7];

    snprintf(b, sizeof(buf[0]), "%s/%s", tmpdir, name);
    return b;
}

/* Writes len bytes to path; a failure ends the test (exit 99, hard error). */
__attribute__((unused))
static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(99);
    }
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

static int zip_fix_crcs(unsigned char *b, size_t len);

/* Writes tmp_path(name), a copy of buf with the first (or, with all, every)
 * occurrence of from after the first occurrence of anchor (if any) replaced
 * by to (same length), its zip CRCs (if a zip) made to match; returns its
 * path. */
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
    zip_fix_crcs(copy, len);
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

/* Writes a stored (uncompressed) zip of n entries as torch.save lays them
 * out: entry data aligned to 64 bytes by a padding extra field. */
__attribute__((unused))
static void write_zip(const char *path, int n, const char *const *names,
                      const void *const *data, const size_t *sizes)
{
    size_t total = 22, len = 0, cd;
    size_t *offsets = calloc((size_t)n, sizeof(size_t));
    unsigned char *out, *h;
    int i;

    for (i = 0; i < n; i++) {
        total += 2 * (46 + strlen(names[i])) + 64 + sizes[i] + 8;
    }
    out = calloc(1, total);
    for (i = 0; i < n; i++) {
        size_t nlen = strlen(names[i]), pad = (64 - (len + 30 + nlen + 4) % 64) % 64;
        offsets[i] = len;
        h = out + len;
        wr32(h, 0x04034b50);
        wr16(h + 4, 20);
        wr32(h + 18, (uint32_t)sizes[i]);
        wr32(h + 22, (uint32_t)sizes[i]);
        wr16(h + 26, (unsigned)nlen);
        wr16(h + 28, (unsigned)(pad + 4));
        memcpy(h + 30, names[i], nlen);
        wr16(h + 30 + nlen, 0x5a46);     /* padding extra field, as torch writes */
        wr16(h + 32 + nlen, (unsigned)pad);
        len += 30 + nlen + 4 + pad;
        memcpy(out + len, data[i], sizes[i]);
        len += sizes[i];
    }
    cd = len;
    for (i = 0; i < n; i++) {
        size_t nlen = strlen(names[i]);
        h = out + len;
        wr32(h, 0x02014b50);
        wr16(h + 4, 20);
        wr16(h + 6, 20);
        wr32(h + 20, (uint32_t)sizes[i]);
        wr32(h + 24, (uint32_t)sizes[i]);
        wr16(h + 28, (unsigned)nlen);
        wr32(h + 42, (uint32_t)offsets[i]);
        memcpy(h + 46, names[i], nlen);
        len += 46 + nlen;
    }
    h = out + len;
    wr32(h, 0x06054b50);
    wr16(h + 8, (unsigned)n);
    wr16(h + 10, (unsigned)n);
    wr32(h + 12, (uint32_t)(len - cd));
    wr32(h + 16, (uint32_t)cd);
    len += 22;
    write_file(path, out, len);
    free(out);
    free(offsets);
}

/* Sets the CRC-32 of every entry of a plain (non-ZIP64) zip image, in its
 * central directory and local header, to that of the entry's bytes as they
 * are now: a test that edits a tensor or the pickle of a .pth copy makes a
 * consistent file (as a writer would), not a damaged download.  0, or -1
 * when b is not such a zip. */
__attribute__((unused))
static int zip_fix_crcs(unsigned char *b, size_t len)
{
    size_t eocd, pos, n, i;

    if (len < 22) {
        return -1;
    }
    for (eocd = len - 22; rd32(b + eocd) != 0x06054b50; eocd--) {
        if (eocd == 0 || len - eocd > 22 + 65535) {
            return -1;
        }
    }
    n = rd16(b + eocd + 10);
    pos = rd32(b + eocd + 16);
    for (i = 0; i < n; i++) {
        size_t lh, data, size;

        if (pos + 46 > eocd || rd32(b + pos) != 0x02014b50) {
            return -1;
        }
        lh = rd32(b + pos + 42);
        size = rd32(b + pos + 24);
        if (lh + 30 > len || rd32(b + lh) != 0x04034b50) {
            return -1;
        }
        data = lh + 30 + rd16(b + lh + 26) + rd16(b + lh + 28);
        if (data > len || size > len - data) {
            return -1;
        }
        wr32(b + pos + 16, crc32_update(0, b + data, size));
        wr32(b + lh + 14, crc32_update(0, b + data, size));
        pos += 46 + rd16(b + pos + 28) + rd16(b + pos + 30) + rd16(b + pos + 32);
    }
    return 0;
}

#endif
