/*
 * world.c - the RWKV World tokenizer: vocabulary parser, byte trie,
 * greedy longest-match encoder, decoder and streaming UTF-8 decoder.
 *
 * The trie is stored breadth first so that the children of a node are
 * consecutive nodes sorted by byte: a node needs only the index of its
 * first child and a child count, and finding a child scans a few bytes of
 * the label array.  The first two levels are skipped with a table indexed
 * by the first two bytes, which is where the fan-out is widest.
 */
#include "tokenizer/world.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#define NO_TOKEN (-1)
#define UNUSED_ID UINT32_MAX
/* Ids above this are surely a typo in the file, not a vocabulary. */
#define MAX_ID (1 << 24)

struct trie_node {
    uint32_t first;     /* index of the first child */
    int32_t token;      /* id of the token ending here, or NO_TOKEN */
    uint32_t count;     /* number of children */
};

struct world_tokenizer {
    int vocab_size;             /* largest id + 1 */
    uint8_t *blob;              /* all token bytes */
    uint32_t *offset;           /* [vocab_size] start of each token in blob */
    uint32_t *length;           /* [vocab_size] its length, UNUSED_ID if absent */
    struct trie_node *nodes;    /* breadth first, node 0 is the root */
    uint8_t *label;             /* [n_nodes] byte leading into each node */
    uint32_t n_nodes;
    int32_t byte_token[256];    /* the one-byte tokens */
    uint32_t pair[65536];       /* node after bytes (a << 8 | b), 0 if none */
};

/* One vocabulary entry while loading. */
struct entry {
    int32_t id;
    uint32_t offset;
    uint32_t length;
    uint32_t line;
};

/* The trie while it is built: children in sorted singly linked lists. */
struct build_node {
    uint32_t child;     /* first child, 0 if none (node 0 is the root) */
    uint32_t sibling;   /* next sibling with a larger label, 0 if none */
    int32_t token;
    uint8_t label;
};

struct loader {
    const char *path;
    uint32_t line;
    char *err;
    size_t errlen;
};

__attribute__((format(printf, 2, 3)))
static void fail(struct loader *ld, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!ld->err || !ld->errlen) {
        return;
    }
    if (ld->line) {
        n = snprintf(ld->err, ld->errlen, "%s:%u: ", ld->path, (unsigned)ld->line);
    } else {
        n = snprintf(ld->err, ld->errlen, "%s: ", ld->path);
    }
    if (n < 0 || (size_t)n >= ld->errlen) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

static int hex_value(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Reads exactly digits hex digits at p; -1 if any is missing. */
static long read_hex(const char *p, const char *end, int digits)
{
    long v = 0;
    int i, h;

    for (i = 0; i < digits; i++) {
        if (p + i >= end || (h = hex_value((unsigned char)p[i])) < 0) {
            return -1;
        }
        v = v * 16 + h;
    }
    return v;
}

/* Appends code point cp to out as UTF-8, the way Python's
 * str.encode("utf-8") does; -1 for surrogates and out-of-range values,
 * which Python refuses to encode. */
static int put_code_point(long cp, uint8_t **out)
{
    uint8_t *o = *out;

    if (cp < 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return -1;
    }
    if (cp < 0x80) {
        *o++ = (uint8_t)cp;
    } else if (cp < 0x800) {
        *o++ = (uint8_t)(0xC0 | (cp >> 6));
        *o++ = (uint8_t)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (uint8_t)(0xE0 | (cp >> 12));
        *o++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (uint8_t)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (uint8_t)(0xF0 | (cp >> 18));
        *o++ = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        *o++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (uint8_t)(0x80 | (cp & 0x3F));
    }
    *out = o;
    return 0;
}

/* Decodes the Python str or bytes literal starting at *pp (b'..', '..',
 * "..") into out, which has room for the literal's own length (no escape
 * decodes to more bytes than it is written with).  Leaves *pp after the
 * closing quote.  Returns the decoded length, or -1 with the error set. */
static long parse_literal(struct loader *ld, const char **pp, const char *end, uint8_t *out)
{
    const char *p = *pp;
    uint8_t *o = out;
    int is_bytes = 0;
    char quote;

    if (p < end && (*p == 'b' || *p == 'B')) {
        is_bytes = 1;
        p++;
    }
    if (p >= end || (*p != '\'' && *p != '"')) {
        fail(ld, "expected a Python string literal after the id");
        return -1;
    }
    quote = *p++;
    if (p + 1 < end && p[0] == quote && p[1] == quote) {
        fail(ld, "triple-quoted string literals are not supported");
        return -1;
    }
    for (;;) {
        unsigned char c;

        if (p >= end) {
            fail(ld, "unterminated string literal");
            return -1;
        }
        c = (unsigned char)*p;
        if (c == (unsigned char)quote) {
            p++;
            break;
        }
        if (c >= 0x80) {
            utf8proc_int32_t cp;
            utf8proc_ssize_t r;

            if (is_bytes) {
                fail(ld, "non-ASCII character in a bytes literal");
                return -1;
            }
            r = utf8proc_iterate((const utf8proc_uint8_t *)p, end - p, &cp);
            if (r < 0) {
                fail(ld, "invalid UTF-8 in string literal");
                return -1;
            }
            memcpy(o, p, (size_t)r);
            o += r;
            p += r;
            continue;
        }
        if (c != '\\') {
            *o++ = c;
            p++;
            continue;
        }
        /* An escape sequence (Python language reference, "String and
         * Bytes literals"). */
        if (p + 1 >= end) {
            fail(ld, "unterminated string literal");
            return -1;
        }
        c = (unsigned char)p[1];
        p += 2;
        switch (c) {
        case '\\': *o++ = '\\'; break;
        case '\'': *o++ = '\''; break;
        case '"':  *o++ = '"'; break;
        case 'a':  *o++ = '\a'; break;
        case 'b':  *o++ = '\b'; break;
        case 'f':  *o++ = '\f'; break;
        case 'n':  *o++ = '\n'; break;
        case 'r':  *o++ = '\r'; break;
        case 't':  *o++ = '\t'; break;
        case 'v':  *o++ = '\v'; break;
        case '0': case '1': case '2': case '3':
        case '4': case '5': case '6': case '7': {
            long v = c - '0';
            int k;

            for (k = 1; k < 3 && p < end && *p >= '0' && *p <= '7'; k++) {
                v = v * 8 + (*p++ - '0');
            }
            if (is_bytes) {
                if (v > 0xFF) {
                    fail(ld, "octal escape \\%lo out of range in a bytes literal", v);
                    return -1;
                }
                *o++ = (uint8_t)v;
            } else {
                put_code_point(v, &o);
            }
            break;
        }
        case 'x': {
            long v = read_hex(p, end, 2);

            if (v < 0) {
                fail(ld, "truncated \\xXX escape");
                return -1;
            }
            p += 2;
            if (is_bytes) {
                *o++ = (uint8_t)v;
            } else {
                put_code_point(v, &o);
            }
            break;
        }
        case 'u':
        case 'U': {
            int digits = c == 'u' ? 4 : 8;
            long v;

            if (is_bytes) {
                /* Not an escape in bytes: kept as written. */
                *o++ = '\\';
                *o++ = c;
                break;
            }
            v = read_hex(p, end, digits);
            if (v < 0) {
                fail(ld, "truncated \\%c escape (needs %d hex digits)", c, digits);
                return -1;
            }
            if (put_code_point(v, &o) < 0) {
                fail(ld, "\\%c%.*s is not a code point that UTF-8 can encode",
                     c, digits, p);
                return -1;
            }
            p += digits;
            break;
        }
        case 'N':
            if (!is_bytes) {
                fail(ld, "\\N{...} escapes are not supported");
                return -1;
            }
            /* fall through */
        default:
            /* Python keeps unknown escapes as written. */
            *o++ = '\\';
            p--;
            break;
        }
    }
    *pp = p;
    return o - out;
}

/* Reads a decimal number at *pp; -1 if there is none or it exceeds max. */
static long parse_number(const char **pp, const char *end, long max)
{
    const char *p = *pp;
    long v = 0;

    if (p >= end || *p < '0' || *p > '9') {
        return -1;
    }
    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + (*p++ - '0');
        if (v > max) {
            return -1;
        }
    }
    *pp = p;
    return v;
}

/* Parses one line "ID LITERAL LENGTH" into e, writing the token bytes at
 * blob + e->offset.  0, or -1 with the error set. */
static int parse_line(struct loader *ld, const char *p, const char *end,
                      uint8_t *blob, struct entry *e)
{
    long id, len, decoded;

    if (end > p && end[-1] == '\r') {
        end--;
    }
    if ((id = parse_number(&p, end, MAX_ID)) < 0) {
        fail(ld, "expected a token id (a number up to %d) at the start of the line", MAX_ID);
        return -1;
    }
    if (id == 0) {
        fail(ld, "id 0 is reserved for end of text");
        return -1;
    }
    if (p >= end || *p != ' ') {
        fail(ld, "expected a space after the id");
        return -1;
    }
    p++;
    decoded = parse_literal(ld, &p, end, blob + e->offset);
    if (decoded < 0) {
        return -1;
    }
    if (p >= end || *p != ' ') {
        fail(ld, "expected a space and the length after the string literal");
        return -1;
    }
    p++;
    if ((len = parse_number(&p, end, 1L << 30)) < 0) {
        fail(ld, "expected the token length after the string literal");
        return -1;
    }
    if (p != end) {
        fail(ld, "unexpected text after the length");
        return -1;
    }
    if (len != decoded) {
        fail(ld, "declared length %ld, decoded %ld bytes", len, decoded);
        return -1;
    }
    if (decoded == 0) {
        fail(ld, "empty token");
        return -1;
    }
    e->id = (int32_t)id;
    e->length = (uint32_t)decoded;
    return 0;
}

/* Reads a whole file into malloc'd memory. */
static char *slurp(struct loader *ld, size_t *size)
{
    FILE *f = fopen(ld->path, "rb");
    char *data = NULL, *grown;
    size_t cap = 0, n = 0, got;

    if (!f) {
        fail(ld, "%s", strerror(errno));
        return NULL;
    }
    for (;;) {
        if (cap - n < 65536) {
            cap = cap ? cap * 2 : (size_t)1 << 20;
            if (!(grown = realloc(data, cap))) {
                fail(ld, "out of memory");
                goto error;
            }
            data = grown;
        }
        got = fread(data + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            break;
        }
    }
    if (ferror(f)) {
        fail(ld, "%s", strerror(errno ? errno : EIO));
        goto error;
    }
    fclose(f);
    *size = n;
    return data;
error:
    free(data);
    fclose(f);
    return NULL;
}

/* Finds or adds the child of build node parent with the given label. */
static uint32_t build_child(struct build_node *b, uint32_t *n_nodes, uint32_t parent,
                            uint8_t label)
{
    uint32_t *link = &b[parent].child, x;

    while (*link && b[*link].label < label) {
        link = &b[*link].sibling;
    }
    if (*link && b[*link].label == label) {
        return *link;
    }
    x = (*n_nodes)++;
    b[x].child = 0;
    b[x].sibling = *link;
    b[x].token = NO_TOKEN;
    b[x].label = label;
    *link = x;
    return x;
}

/* Builds the breadth-first trie and the pair table from the entries.
 * 0, or -1 with the error set (duplicate tokens, missing bytes). */
static int build_trie(struct loader *ld, world_tokenizer *tok, const struct entry *entries,
                      size_t n_entries, size_t total_bytes)
{
    struct build_node *b;
    uint32_t *queue = NULL, *final_index = NULL;
    uint32_t n_build = 257, head, tail, next, x, c;
    size_t i, k;
    int rc = -1;

    /* Nodes: root, the 256 one-byte nodes, one per further byte at most. */
    b = malloc((total_bytes + 257) * sizeof *b);
    if (!b) {
        fail(ld, "out of memory");
        return -1;
    }
    memset(b, 0, 257 * sizeof *b);
    for (c = 0; c < 256; c++) {
        b[1 + c].label = (uint8_t)c;
        b[1 + c].token = NO_TOKEN;
        b[1 + c].sibling = c < 255 ? 2 + c : 0;
    }
    b[0].token = NO_TOKEN;
    b[0].child = 1;

    for (i = 0; i < n_entries; i++) {
        const uint8_t *s = tok->blob + entries[i].offset;

        x = 1 + s[0];
        for (k = 1; k < entries[i].length; k++) {
            x = build_child(b, &n_build, x, s[k]);
        }
        if (b[x].token != NO_TOKEN) {
            ld->line = entries[i].line;
            fail(ld, "id %d has the same bytes as id %d", (int)entries[i].id, (int)b[x].token);
            goto out;
        }
        b[x].token = entries[i].id;
    }
    for (c = 0; c < 256; c++) {
        if (b[1 + c].token == NO_TOKEN) {
            ld->line = 0;
            fail(ld, "no token for byte 0x%02x (every byte needs one)", (unsigned)c);
            goto out;
        }
        tok->byte_token[c] = b[1 + c].token;
    }

    /* Breadth-first renumbering: children of a node become consecutive. */
    queue = malloc(n_build * sizeof *queue);
    final_index = malloc(n_build * sizeof *final_index);
    tok->nodes = malloc(n_build * sizeof *tok->nodes);
    tok->label = malloc(n_build);
    if (!queue || !final_index || !tok->nodes || !tok->label) {
        fail(ld, "out of memory");
        goto out;
    }
    queue[0] = 0;
    final_index[0] = 0;
    tail = 1;
    for (head = 0; head < tail; head++) {
        uint32_t from = queue[head], n = 0;
        struct trie_node *node = &tok->nodes[head];

        node->first = tail;
        node->token = b[from].token;
        tok->label[head] = b[from].label;
        for (next = b[from].child; next; next = b[next].sibling) {
            final_index[next] = tail;
            queue[tail++] = next;
            n++;
        }
        node->count = n;
    }
    tok->n_nodes = tail;

    /* Depth 2 is reached through the pair table. */
    memset(tok->pair, 0, sizeof tok->pair);
    for (c = 0; c < 256; c++) {
        const struct trie_node *one = &tok->nodes[1 + c];

        for (k = 0; k < one->count; k++) {
            x = one->first + (uint32_t)k;
            tok->pair[c << 8 | tok->label[x]] = x;
        }
    }
    rc = 0;
out:
    free(queue);
    free(final_index);
    free(b);
    return rc;
}

world_tokenizer *world_load(const char *path, char *err, size_t errlen)
{
    struct loader ld = { path, 0, err, errlen };
    world_tokenizer *tok = NULL;
    struct entry *entries = NULL;
    size_t size, n_entries = 0, cap_entries, total = 0, i;
    uint32_t *first_line = NULL;
    char *data, *p, *end, *eol;
    int32_t max_id = 0;

    if (err && errlen) {
        err[0] = 0;
    }
    if (!(data = slurp(&ld, &size))) {
        return NULL;
    }
    tok = calloc(1, sizeof *tok);
    cap_entries = 1024;
    entries = malloc(cap_entries * sizeof *entries);
    if (!tok || !entries || !(tok->blob = malloc(size + 1))) {
        fail(&ld, "out of memory");
        goto error;
    }
    end = data + size;
    for (p = data; p < end; p = eol + 1) {
        struct entry *e;

        ld.line++;
        if (!(eol = memchr(p, '\n', (size_t)(end - p)))) {
            eol = end;
        }
        if (eol == p || (eol == p + 1 && *p == '\r')) {
            continue;
        }
        if (n_entries == cap_entries) {
            struct entry *grown = realloc(entries, 2 * cap_entries * sizeof *entries);

            if (!grown) {
                fail(&ld, "out of memory");
                goto error;
            }
            entries = grown;
            cap_entries *= 2;
        }
        e = &entries[n_entries];
        e->offset = (uint32_t)total;
        e->line = ld.line;
        if (parse_line(&ld, p, eol, tok->blob, e) < 0) {
            goto error;
        }
        total += e->length;
        if (e->id > max_id) {
            max_id = e->id;
        }
        n_entries++;
    }
    ld.line = 0;
    free(data);
    data = NULL;

    tok->vocab_size = max_id + 1;
    tok->offset = malloc((size_t)tok->vocab_size * sizeof *tok->offset);
    tok->length = malloc((size_t)tok->vocab_size * sizeof *tok->length);
    first_line = malloc((size_t)tok->vocab_size * sizeof *first_line);
    if (!tok->offset || !tok->length || !first_line) {
        fail(&ld, "out of memory");
        goto error;
    }
    for (i = 0; i < (size_t)tok->vocab_size; i++) {
        tok->length[i] = UNUSED_ID;
    }
    tok->offset[0] = 0;
    tok->length[0] = 0;
    for (i = 0; i < n_entries; i++) {
        const struct entry *e = &entries[i];

        if (tok->length[e->id] != UNUSED_ID) {
            ld.line = e->line;
            fail(&ld, "id %d appears twice (first on line %u)", (int)e->id,
                 (unsigned)first_line[e->id]);
            goto error;
        }
        tok->offset[e->id] = e->offset;
        tok->length[e->id] = e->length;
        first_line[e->id] = e->line;
    }
    if (build_trie(&ld, tok, entries, n_entries, total) < 0) {
        goto error;
    }
    free(first_line);
    free(entries);
    return tok;
error:
    free(first_line);
    free(data);
    free(entries);
    world_free(tok);
    return NULL;
}

void world_free(world_tokenizer *tok)
{
    if (!tok) {
        return;
    }
    free(tok->blob);
    free(tok->offset);
    free(tok->length);
    free(tok->nodes);
    free(tok->label);
    free(tok);
}

int world_vocab_size(const world_tokenizer *tok)
{
    return tok->vocab_size;
}

/* The child of node x reached by byte c, or 0 if there is none. */
static inline uint32_t find_child(const world_tokenizer *tok, const struct trie_node *node,
                                  uint8_t c)
{
    const uint8_t *labels = tok->label + node->first;
    uint32_t lo = 0, hi = node->count;

    if (hi <= 8) {
        for (; lo < hi; lo++) {
            if (labels[lo] == c) {
                return node->first + lo;
            }
        }
        return 0;
    }
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;

        if (labels[mid] < c) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < node->count && labels[lo] == c ? node->first + lo : 0;
}

/* Greedy longest match (the official TRIE_TOKENIZER): at each position
 * take the longest vocabulary entry that prefixes the remaining bytes. */
int world_encode(const world_tokenizer *tok, const uint8_t *bytes, size_t n,
                 int32_t **ids, size_t *n_ids)
{
    size_t cap = n / 3 + 16, k = 0, i = 0;
    int32_t *out = malloc(cap * sizeof *out);

    *ids = NULL;
    *n_ids = 0;
    if (!out) {
        return -1;
    }
    while (i < n) {
        int32_t best;
        size_t best_len, j;
        uint32_t x;

        if (k == cap) {
            int32_t *grown;

            cap = cap + cap / 2 + (n - i) / 4 + 16;
            if (!(grown = realloc(out, cap * sizeof *out))) {
                free(out);
                return -1;
            }
            out = grown;
        }
        if (i + 1 == n || !(x = tok->pair[bytes[i] << 8 | bytes[i + 1]])) {
            out[k++] = tok->byte_token[bytes[i]];
            i++;
            continue;
        }
        best = tok->nodes[x].token;
        best_len = 2;
        if (best == NO_TOKEN) {
            best = tok->byte_token[bytes[i]];
            best_len = 1;
        }
        for (j = i + 2; j < n && tok->nodes[x].count; j++) {
            if (!(x = find_child(tok, &tok->nodes[x], bytes[j]))) {
                break;
            }
            if (tok->nodes[x].token != NO_TOKEN) {
                best = tok->nodes[x].token;
                best_len = j + 1 - i;
            }
        }
        out[k++] = best;
        i += best_len;
    }
    *ids = out;
    *n_ids = k;
    return 0;
}

const uint8_t *world_token(const world_tokenizer *tok, int32_t id, size_t *len)
{
    if (id < 0 || id >= tok->vocab_size || tok->length[id] == UNUSED_ID) {
        if (len) {
            *len = 0;
        }
        return NULL;
    }
    if (len) {
        *len = tok->length[id];
    }
    return tok->blob + tok->offset[id];
}

int world_decode(const world_tokenizer *tok, const int32_t *ids, size_t n,
                 uint8_t **out, size_t *out_len, char *err, size_t errlen)
{
    size_t total = 0, i, len;
    uint8_t *o;

    *out = NULL;
    *out_len = 0;
    for (i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->vocab_size) {
            snprintf(err, errlen, "id %ld out of range (vocabulary has %d ids)",
                     (long)ids[i], tok->vocab_size);
            return -1;
        }
        if (tok->length[ids[i]] == UNUSED_ID) {
            snprintf(err, errlen, "id %ld is not in the vocabulary", (long)ids[i]);
            return -1;
        }
        total += tok->length[ids[i]];
    }
    if (!(o = malloc(total + 1))) {
        snprintf(err, errlen, "out of memory decoding %zu ids", n);
        return -1;
    }
    *out = o;
    for (i = 0; i < n; i++) {
        len = tok->length[ids[i]];
        memcpy(o, tok->blob + tok->offset[ids[i]], len);
        o += len;
    }
    *o = 0;
    *out_len = total;
    return 0;
}

/* --- streaming UTF-8 ------------------------------------------------------ */

static const uint8_t replacement[3] = { 0xEF, 0xBF, 0xBD };    /* U+FFFD */

/* Whether the n (< 4) bytes at s start a character that more bytes could
 * complete.  Asks utf8proc about completions padded with the lowest and
 * highest continuation bytes, which between them satisfy every
 * second-byte range (E0 A0.., ED ..9F, F0 90.., F4 ..8F). */
static int is_partial_character(const uint8_t *s, size_t n)
{
    static const uint8_t pads[2] = { 0x80, 0xBF };
    uint8_t buf[4];
    utf8proc_int32_t cp;
    size_t total, k;
    int p;

    for (p = 0; p < 2; p++) {
        for (total = n + 1; total <= 4; total++) {
            memcpy(buf, s, n);
            for (k = n; k < total; k++) {
                buf[k] = pads[p];
            }
            if (utf8proc_iterate(buf, (utf8proc_ssize_t)total, &cp) == (utf8proc_ssize_t)total) {
                return 1;
            }
        }
    }
    return 0;
}

/* Writes the characters of s[0..n) to out: valid characters as they are,
 * U+FFFD for each byte that does not start one.  When hold is set, stops
 * before a trailing partial character and returns its start in *used. */
static size_t clean_utf8(const uint8_t *s, size_t n, int hold, uint8_t *out, size_t *used)
{
    uint8_t *o = out;
    size_t i = 0;

    while (i < n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t r;

        if (s[i] < 0x80) {
            *o++ = s[i++];
            continue;
        }
        r = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (r > 0) {
            memcpy(o, s + i, (size_t)r);
            o += r;
            i += (size_t)r;
            continue;
        }
        if (hold && n - i < 4 && is_partial_character(s + i, n - i)) {
            break;
        }
        memcpy(o, replacement, 3);
        o += 3;
        i++;
    }
    *used = i;
    return (size_t)(o - out);
}

void world_stream_init(struct world_stream *s)
{
    memset(s, 0, sizeof *s);
}

size_t world_stream_push(struct world_stream *s, const uint8_t *in, size_t n, uint8_t *out)
{
    uint8_t join[8];
    size_t written = 0, used, take, rest;

    /* First finish the held character with up to 4 new bytes. */
    if (s->n_held) {
        take = n < 4 ? n : 4;
        memcpy(join, s->held, (size_t)s->n_held);
        memcpy(join + s->n_held, in, take);
        written = clean_utf8(join, (size_t)s->n_held + take, 1, out, &used);
        if (used < (size_t)s->n_held) {
            /* Still partial: all of in was taken and held. */
            memmove(s->held, join + used, (size_t)s->n_held + take - used);
            s->n_held = (int)((size_t)s->n_held + take - used);
            return written;
        }
        in += used - (size_t)s->n_held;
        n -= used - (size_t)s->n_held;
        s->n_held = 0;
    }
    written += clean_utf8(in, n, 1, out + written, &used);
    rest = n - used;
    memcpy(s->held, in + used, rest);
    s->n_held = (int)rest;
    return written;
}

size_t world_stream_flush(struct world_stream *s, uint8_t *out)
{
    size_t used, written;

    written = clean_utf8(s->held, (size_t)s->n_held, 0, out, &used);
    s->n_held = 0;
    return written;
}
