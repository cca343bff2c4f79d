/*
 * safetensors.c - the safetensors container: an 8-byte little-endian header
 * length, a JSON object describing each tensor, then the raw data.
 *
 *   {"__metadata__": {"format": "pt"},
 *    "emb.weight": {"dtype": "BF16", "shape": [65536, 768],
 *                   "data_offsets": [0, 100663296]}, ...}
 *
 * The JSON is read by a small strict parser: objects, arrays, strings,
 * non-negative integers (the only numbers the format needs), true, false,
 * null.  Offsets are relative to the first byte after the header; every
 * range is checked against the file and against the other tensors.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/escape.h"
#include "engine/load/checkpoint.h"
#include "engine/load/ckpt_reader.h"

#define HEADER_MAX (100u * 1024 * 1024)

struct json {
    const char *path;
    const char *p;
    size_t len, pos;
    char *err;
    size_t errlen;
};

struct range {
    uint64_t begin, end;
    const char *name;           /* for messages, NUL-terminated copy */
};

static int json_fail(struct json *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Fills err with "PATH: header offset N: problem"; returns -1. */
static int json_fail(struct json *j, const char *fmt, ...)
{
    va_list ap;
    int w;

    if (!j->err || !j->errlen) {
        return -1;
    }
    w = snprintf(j->err, j->errlen, "%s: header offset %zu: ", j->path, j->pos + 8);
    if (w >= 0 && (size_t)w < j->errlen) {
        va_start(ap, fmt);
        vsnprintf(j->err + w, j->errlen - (size_t)w, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static void skip_ws(struct json *j)
{
    while (j->pos < j->len && (j->p[j->pos] == ' ' || j->p[j->pos] == '\t' ||
                               j->p[j->pos] == '\n' || j->p[j->pos] == '\r')) {
        j->pos++;
    }
}

/* Consumes character c (after white space) or fails. */
static int expect(struct json *j, char c)
{
    skip_ws(j);
    if (j->pos >= j->len || j->p[j->pos] != c) {
        return json_fail(j, "expected '%c'", c);
    }
    j->pos++;
    return 0;
}

static int peek(struct json *j, char c)
{
    skip_ws(j);
    return j->pos < j->len && j->p[j->pos] == c;
}

static int hex4(struct json *j, unsigned *out)
{
    unsigned v = 0;
    int i;

    if (j->len - j->pos < 4) {
        return json_fail(j, "truncated \\u escape");
    }
    for (i = 0; i < 4; i++) {
        char c = j->p[j->pos++];
        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= (unsigned)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            v |= (unsigned)(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            v |= (unsigned)(c - 'A' + 10);
        } else {
            return json_fail(j, "bad \\u escape");
        }
    }
    *out = v;
    return 0;
}

/* Parses a string into buf (UTF-8, NUL-terminated, at most cap-1 bytes). */
static int parse_string(struct json *j, char *buf, size_t cap, size_t *outlen)
{
    size_t n = 0;

    if (expect(j, '"')) {
        return -1;
    }
    for (;;) {
        unsigned char c;
        unsigned cp;
        char tmp[4];
        size_t w = 0, i;

        if (j->pos >= j->len) {
            return json_fail(j, "unterminated string");
        }
        c = (unsigned char)j->p[j->pos++];
        if (c == '"') {
            break;
        }
        if (c < 0x20) {
            return json_fail(j, "control character in string");
        }
        if (c != '\\') {
            tmp[w++] = (char)c;
        } else {
            if (j->pos >= j->len) {
                return json_fail(j, "unterminated string");
            }
            c = (unsigned char)j->p[j->pos++];
            switch (c) {
            case '"': case '\\': case '/': tmp[w++] = (char)c; break;
            case 'b': tmp[w++] = '\b'; break;
            case 'f': tmp[w++] = '\f'; break;
            case 'n': tmp[w++] = '\n'; break;
            case 'r': tmp[w++] = '\r'; break;
            case 't': tmp[w++] = '\t'; break;
            case 'u':
                if (hex4(j, &cp)) {
                    return -1;
                }
                if (cp >= 0xd800 && cp < 0xdc00) {
                    unsigned lo;
                    if (j->len - j->pos < 2 || j->p[j->pos] != '\\' || j->p[j->pos + 1] != 'u') {
                        return json_fail(j, "lone surrogate in \\u escape");
                    }
                    j->pos += 2;
                    if (hex4(j, &lo)) {
                        return -1;
                    }
                    if (lo < 0xdc00 || lo >= 0xe000) {
                        return json_fail(j, "bad surrogate pair");
                    }
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                } else if (cp >= 0xdc00 && cp < 0xe000) {
                    return json_fail(j, "lone surrogate in \\u escape");
                }
                if (cp == 0) {
                    return json_fail(j, "NUL in string");
                }
                if (cp < 0x80) {
                    tmp[w++] = (char)cp;
                } else if (cp < 0x800) {
                    tmp[w++] = (char)(0xc0 | cp >> 6);
                    tmp[w++] = (char)(0x80 | (cp & 0x3f));
                } else if (cp < 0x10000) {
                    tmp[w++] = (char)(0xe0 | cp >> 12);
                    tmp[w++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                    tmp[w++] = (char)(0x80 | (cp & 0x3f));
                } else {
                    tmp[w++] = (char)(0xf0 | cp >> 18);
                    tmp[w++] = (char)(0x80 | ((cp >> 12) & 0x3f));
                    tmp[w++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                    tmp[w++] = (char)(0x80 | (cp & 0x3f));
                }
                break;
            default:
                return json_fail(j, "bad escape \\%s", RWKV_ESCN(&c, 1));
            }
        }
        for (i = 0; i < w; i++) {
            if (n + 1 >= cap) {
                return json_fail(j, "string longer than %zu bytes", cap - 1);
            }
            buf[n++] = tmp[i];
        }
    }
    buf[n] = '\0';
    if (outlen) {
        *outlen = n;
    }
    return 0;
}

/* A non-negative integer below 2^63. */
static int parse_uint(struct json *j, uint64_t *out)
{
    uint64_t v = 0;
    size_t start;

    skip_ws(j);
    start = j->pos;
    while (j->pos < j->len && j->p[j->pos] >= '0' && j->p[j->pos] <= '9') {
        unsigned d = (unsigned)(j->p[j->pos] - '0');
        if (v > (UINT64_MAX / 2 - d) / 10) {
            return json_fail(j, "number too large");
        }
        v = v * 10 + d;
        j->pos++;
    }
    if (j->pos == start) {
        return json_fail(j, "expected a non-negative integer");
    }
    if (j->pos - start > 1 && j->p[start] == '0') {
        return json_fail(j, "number with a leading zero");
    }
    if (j->pos < j->len && (j->p[j->pos] == '.' || j->p[j->pos] == 'e' || j->p[j->pos] == 'E')) {
        return json_fail(j, "expected an integer");
    }
    *out = v;
    return 0;
}

/* Skips any JSON value (for unknown metadata); depth-limited. */
static int skip_value(struct json *j, int depth)
{
    char buf[4096];

    if (depth > 32) {
        return json_fail(j, "nesting too deep");
    }
    skip_ws(j);
    if (j->pos >= j->len) {
        return json_fail(j, "unexpected end of header");
    }
    switch (j->p[j->pos]) {
    case '"':
        return parse_string(j, buf, sizeof(buf), NULL);
    case '{':
        j->pos++;
        if (peek(j, '}')) {
            j->pos++;
            return 0;
        }
        do {
            if (parse_string(j, buf, sizeof(buf), NULL) || expect(j, ':') ||
                skip_value(j, depth + 1)) {
                return -1;
            }
        } while (peek(j, ',') && ++j->pos);
        return expect(j, '}');
    case '[':
        j->pos++;
        if (peek(j, ']')) {
            j->pos++;
            return 0;
        }
        do {
            if (skip_value(j, depth + 1)) {
                return -1;
            }
        } while (peek(j, ',') && ++j->pos);
        return expect(j, ']');
    default:
        if (j->len - j->pos >= 4 && !memcmp(j->p + j->pos, "true", 4)) {
            j->pos += 4;
            return 0;
        }
        if (j->len - j->pos >= 5 && !memcmp(j->p + j->pos, "false", 5)) {
            j->pos += 5;
            return 0;
        }
        if (j->len - j->pos >= 4 && !memcmp(j->p + j->pos, "null", 4)) {
            j->pos += 4;
            return 0;
        }
        if (j->p[j->pos] == '-') {
            j->pos++;
        }
        {
            uint64_t v;
            if (parse_uint(j, &v)) {
                return -1;
            }
        }
        return 0;
    }
}

/* Reads [a, b, ...] of at most max integers; the count in *n. */
static int parse_uint_array(struct json *j, uint64_t *out, int max, int *n)
{
    *n = 0;
    if (expect(j, '[')) {
        return -1;
    }
    if (peek(j, ']')) {
        j->pos++;
        return 0;
    }
    do {
        if (*n >= max) {
            return json_fail(j, "more than %d dimensions", max);
        }
        if (parse_uint(j, &out[(*n)++])) {
            return -1;
        }
    } while (peek(j, ',') && ++j->pos);
    return expect(j, ']');
}

static int cmp_range(const void *a, const void *b)
{
    const struct range *x = a, *y = b;

    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1
         : x->end < y->end ? -1 : x->end > y->end;
}

int safetensors_read(ckpt_file *file, char *err, size_t errlen)
{
    struct json j;
    const unsigned char *map;
    size_t size, n_ranges = 0, cap_ranges = 0, i, far;
    uint64_t hlen, data_size;
    const unsigned char *data;
    struct range *ranges = NULL;
    char name[4096], dtype[32];
    int rc = -1;

    map = ckpt_bytes(file, &size);
    memset(&j, 0, sizeof(j));
    j.path = ckpt_shown_path(file);
    j.err = err;
    j.errlen = errlen;
    if (size < 8) {
        return json_fail(&j, "truncated file");
    }
    hlen = (uint64_t)map[0] | (uint64_t)map[1] << 8 | (uint64_t)map[2] << 16 |
           (uint64_t)map[3] << 24 | (uint64_t)map[4] << 32 | (uint64_t)map[5] << 40 |
           (uint64_t)map[6] << 48 | (uint64_t)map[7] << 56;
    if (hlen > HEADER_MAX || hlen > size - 8) {
        snprintf(err, errlen, "%s: safetensors header of %llu bytes runs past the end of the "
                 "file (%zu bytes): truncated or not safetensors", j.path,
                 (unsigned long long)hlen, size);
        return -1;
    }
    j.p = (const char *)map + 8;
    j.len = (size_t)hlen;
    data = map + 8 + hlen;
    data_size = size - 8 - hlen;

    if (expect(&j, '{')) {
        return -1;
    }
    if (peek(&j, '}')) {
        j.pos++;
    } else {
        do {
            uint64_t shape_u[CKPT_MAX_DIMS], offs[2];
            int64_t shape[CKPT_MAX_DIMS];
            int ndim = -1, noffs = -1, have_dtype = 0, k;
            size_t namelen, key_pos, end_pos;
            enum ckpt_dtype dt = CKPT_F32;
            char field[64];

            key_pos = j.pos;
            if (parse_string(&j, name, sizeof(name), &namelen) || expect(&j, ':')) {
                goto out;
            }
            if (!strcmp(name, "__metadata__")) {
                if (skip_value(&j, 0)) {
                    goto out;
                }
                continue;
            }
            if (expect(&j, '{')) {
                goto out;
            }
            if (!peek(&j, '}')) {
                do {
                    if (parse_string(&j, field, sizeof(field), NULL) || expect(&j, ':')) {
                        goto out;
                    }
                    if (!strcmp(field, "dtype")) {
                        if (parse_string(&j, dtype, sizeof(dtype), NULL)) {
                            goto out;
                        }
                        have_dtype = 1;
                    } else if (!strcmp(field, "shape")) {
                        if (parse_uint_array(&j, shape_u, CKPT_MAX_DIMS, &ndim)) {
                            goto out;
                        }
                    } else if (!strcmp(field, "data_offsets")) {
                        if (parse_uint_array(&j, offs, 2, &noffs)) {
                            goto out;
                        }
                    } else if (skip_value(&j, 0)) {
                        goto out;
                    }
                } while (peek(&j, ',') && ++j.pos);
            }
            if (expect(&j, '}')) {
                goto out;
            }
            end_pos = j.pos;
            j.pos = key_pos;    /* errors below point at the tensor's key */
            if (!have_dtype || ndim < 0 || noffs != 2) {
                json_fail(&j, "tensor %s: needs dtype, shape and data_offsets", RWKV_ESC(name));
                goto out;
            }
            if (!strcmp(dtype, "F32")) {
                dt = CKPT_F32;
            } else if (!strcmp(dtype, "F16")) {
                dt = CKPT_F16;
            } else if (!strcmp(dtype, "BF16")) {
                dt = CKPT_BF16;
            } else {
                snprintf(err, errlen, "%s: tensor %s: dtype %s not supported (F32, F16 or BF16)",
                         j.path, RWKV_ESC(name), RWKV_ESC(dtype));
                goto out;
            }
            if (offs[0] > offs[1]) {
                snprintf(err, errlen, "%s: tensor %s: data_offsets [%llu, %llu] are reversed",
                         j.path, name, (unsigned long long)offs[0], (unsigned long long)offs[1]);
                goto out;
            }
            if (offs[1] > data_size) {
                snprintf(err, errlen, "%s: tensor %s: data_offsets [%llu, %llu] run past the end "
                         "of the data (%llu bytes): truncated file", j.path, RWKV_ESC(name),
                         (unsigned long long)offs[0], (unsigned long long)offs[1],
                         (unsigned long long)data_size);
                goto out;
            }
            for (k = 0; k < ndim; k++) {
                shape[k] = (int64_t)shape_u[k];
            }
            if (ckpt_numel(ndim, shape, (int64_t)(SIZE_MAX / 8)) < 0) {
                char dims[CKPT_MAX_DIMS * 22 + 2];
                size_t used = 0;

                for (k = 0; k < ndim; k++) {
                    used += (size_t)snprintf(dims + used, sizeof(dims) - used, "%s%llu",
                                             k ? ", " : "", (unsigned long long)shape_u[k]);
                }
                snprintf(err, errlen, "%s: tensor %s: shape [%s] overflows", j.path, name, dims);
                goto out;
            }
            if (ckpt_add(file, name, namelen, dt, ndim, shape, data + offs[0],
                         (size_t)(offs[1] - offs[0]), err, errlen)) {
                goto out;
            }
            if (n_ranges == cap_ranges) {
                size_t cap = cap_ranges ? 2 * cap_ranges : 256;
                struct range *r = realloc(ranges, cap * sizeof(*r));
                if (!r) {
                    snprintf(err, errlen, "%s: out of memory", j.path);
                    goto out;
                }
                ranges = r;
                cap_ranges = cap;
            }
            ranges[n_ranges].begin = offs[0];
            ranges[n_ranges].end = offs[1];
            ranges[n_ranges].name = ckpt_at(file, ckpt_count(file) - 1)->name;
            n_ranges++;
            j.pos = end_pos;
        } while (peek(&j, ',') && ++j.pos);
        if (expect(&j, '}')) {
            goto out;
        }
    }
    skip_ws(&j);
    if (j.pos != j.len) {
        json_fail(&j, "trailing bytes after the header object");
        goto out;
    }
    /* Sorted by start, a range overlaps an earlier one exactly when it
     * starts before the furthest end so far; empty ranges overlap nothing
     * (and must not hide an overlap behind them). */
    if (n_ranges > 1) {
        qsort(ranges, n_ranges, sizeof(*ranges), cmp_range);
    }
    far = SIZE_MAX;     /* the non-empty range that ends last so far */
    for (i = 0; i < n_ranges; i++) {
        if (ranges[i].begin == ranges[i].end) {
            continue;
        }
        if (far != SIZE_MAX && ranges[i].begin < ranges[far].end) {
            snprintf(err, errlen, "%s: tensor %s: data [%llu, %llu] overlaps tensor %s",
                     j.path, RWKV_ESC(ranges[i].name), (unsigned long long)ranges[i].begin,
                     (unsigned long long)ranges[i].end, RWKV_ESC(ranges[far].name));
            goto out;
        }
        if (far == SIZE_MAX || ranges[i].end > ranges[far].end) {
            far = i;
        }
    }
    rc = 0;
out:
    free(ranges);
    return rc;
}
