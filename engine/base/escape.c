/*
 * escape.c - one name from a file, escaped for a one-line message
 * (what is escaped and how: escape.h).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "engine/base/escape.h"

/* Code points shown as \uHHHH although they are valid UTF-8: C1 controls
 * (0x9b starts a CSI sequence on some terminals), line and paragraph
 * separators, and the marks and overrides that reorder text. */
static int hidden(uint32_t cp)
{
    return (cp >= 0x80 && cp <= 0x9f) || cp == 0x061c || cp == 0x200e || cp == 0x200f ||
           (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff;
}

/* Length of the valid UTF-8 sequence at p (n bytes left) and its code
 * point, or 0 when p starts no valid sequence (overlong, surrogate, above
 * U+10FFFF, truncated). */
static size_t utf8_seq(const unsigned char *p, size_t n, uint32_t *cp)
{
    unsigned char b = p[0], lo = 0x80, hi = 0xbf;
    size_t len;

    if (b >= 0xc2 && b <= 0xdf) {
        len = 2;
        *cp = b & 0x1f;
    } else if (b >= 0xe0 && b <= 0xef) {
        len = 3;
        *cp = b & 0x0f;
        lo = b == 0xe0 ? 0xa0 : 0x80;
        hi = b == 0xed ? 0x9f : 0xbf;
    } else if (b >= 0xf0 && b <= 0xf4) {
        len = 4;
        *cp = b & 0x07;
        lo = b == 0xf0 ? 0x90 : 0x80;
        hi = b == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (n < len || p[1] < lo || p[1] > hi) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
        *cp = *cp << 6 | (p[i] & 0x3f);
    }
    return len;
}

/* The shown form of the character at p (n > 0 bytes left) in piece;
 * returns how many bytes of p it covers. */
static size_t unit(const unsigned char *p, size_t n, char piece[8])
{
    uint32_t cp;
    size_t len;

    if (p[0] >= 0x20 && p[0] < 0x7f) {
        piece[0] = (char)p[0];
        piece[1] = '\0';
        return 1;
    }
    if (p[0] == '\n' || p[0] == '\r' || p[0] == '\t') {
        piece[0] = '\\';
        piece[1] = p[0] == '\n' ? 'n' : p[0] == '\r' ? 'r' : 't';
        piece[2] = '\0';
        return 1;
    }
    len = p[0] >= 0x80 ? utf8_seq(p, n, &cp) : 0;
    if (len == 0) {
        snprintf(piece, 8, "\\x%02x", p[0]);
        return 1;
    }
    if (hidden(cp)) {
        snprintf(piece, 8, "\\u%04x", (unsigned)cp);
    } else {
        memcpy(piece, p, len);
        piece[len] = '\0';
    }
    return len;
}

char *rwkv_escape(char *out, size_t outlen, const void *in, size_t inlen)
{
    const unsigned char *p = in;
    size_t total = 0, done = 0, used = 0, head, tail, i;
    char piece[8];
    int skipping = 0;

    if (outlen == 0) {
        return out;
    }
    for (i = 0; i < inlen;) {
        i += unit(p + i, inlen - i, piece);
        total += strlen(piece);
    }
    if (total < outlen) {
        head = total;
        tail = 0;
    } else if (outlen > 4) {
        /* the tail says more (a file name, ".att.key.weight"): it gets
         * two thirds of the room */
        head = (outlen - 4) / 3;
        tail = outlen - 4 - head;
    } else {
        snprintf(out, outlen, "...");
        return out;
    }
    for (i = 0; i < inlen;) {
        size_t k = unit(p + i, inlen - i, piece), len = strlen(piece);

        if (!skipping && used + len > head) {
            skipping = 1;
            memcpy(out + used, "...", 3);
            used += 3;
        }
        if (!skipping || total - done <= tail) {
            memcpy(out + used, piece, len);
            used += len;
        }
        done += len;
        i += k;
    }
    out[used] = '\0';
    return out;
}

char *rwkv_escape_str(char *out, size_t outlen, const char *in)
{
    return rwkv_escape(out, outlen, in, strlen(in));
}
