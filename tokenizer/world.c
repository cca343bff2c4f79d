/*
 * world.c - the RWKV World tokenizer: vocabulary parser, byte trie,
 * greedy longest-match encoder, decoder and streaming UTF-8 decoder.
 *
 * The trie lives in one array of 32-bit words so that a step of the
 * longest-match walk touches one place in memory: each node with children
 * has a block holding its children's labels and, per child, a record
 * (token id, block of the child).  The first two bytes are looked up in a
 * table (which holds their records), where the fan-out is widest.
 */
#include "tokenizer/world.h"
#include "engine/base/escape.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <utf8proc.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define NO_TOKEN (-1)
#define ABSENT UINT32_MAX      /* length of an id missing from the file */
/* Ids above this are surely a typo in the file, not a vocabulary. */
#define MAX_ID (1 << 24)

/*
 * Block of a node with n children (word offsets into the arena):
 *   [0]       n | lo << 16 | hi << 24 (smallest and largest child label)
 *   n <= SCAN_CHILDREN: ceil(n / 4) words of labels in ascending order,
 *             then one record per child in the same order;
 *   n > SCAN_CHILDREN: one record per label lo..hi, NO_CHILD where absent.
 * A record is two words: the child's token id (or NO_TOKEN) and the
 * offset of the child's block (0 if the child has no children).
 * Offset 0 is never a block or a record, so 0 means none.
 */
#define SCAN_CHILDREN 16
#define NO_CHILD ((uint32_t)-2)
#define NO_PAIR (-3)

/* A record outside the arena: the pair table's copy of the records of
 * the depth-2 nodes, token NO_PAIR where no token starts with the pair. */
struct trie_record {
    int32_t token;
    uint32_t block;
};

struct world_tokenizer {
    int vocab_size;             /* largest id + 1 */
    uint8_t *blob;              /* all token bytes */
    uint32_t *offset;           /* [vocab_size] start of each token in blob */
    uint32_t *length;           /* [vocab_size] its length, ABSENT if absent */
    uint32_t *arena;            /* trie blocks, see above */
    int32_t byte_token[256];    /* the one-byte tokens */
    struct trie_record pair[65536]; /* the node after bytes (a << 8 | b) */
};

/* One vocabulary entry while loading. */
struct entry {
    int32_t id;
    uint32_t offset;
    uint32_t length;
    uint32_t line;
};

/* The trie while it is built: children in singly linked lists sorted by
 * descending label, so that entries given in ascending order (as in the
 * World vocabulary) add each new child at the head. */
struct build_node {
    uint32_t child;     /* first child, 0 if none (node 0 is the root) */
    uint32_t sibling;   /* next sibling with a smaller label, 0 if none */
    int32_t token;
    uint8_t label;
};

/* Longest prefix remembered between consecutive entries while building. */
#define PATH_CACHE 256

struct loader {
    const char *path;
    uint32_t line;
    char *err;
    size_t errlen;
};

/* Fills the caller's error buffer: "PATH:LINE: message", or "PATH: message"
 * for the file as a whole. */
__attribute__((format(printf, 2, 3)))
static void fail(struct loader *ld, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!ld->err || !ld->errlen) {
        return;
    }
    if (ld->line) {
        n = snprintf(ld->err, ld->errlen, "%s:%u: ", RWKV_ESC(ld->path), (unsigned)ld->line);
    } else {
        n = snprintf(ld->err, ld->errlen, "%s: ", RWKV_ESC(ld->path));
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
    struct stat st;

    if (!f) {
        fail(ld, "%s", strerror(errno));
        return NULL;
    }
    /* Room for the whole file in one read when its size is known. */
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size < (1L << 30)) {
        cap = (size_t)st.st_size + 65536;
        if (!(data = malloc(cap))) {
            fail(ld, "out of memory");
            goto error;
        }
    }
    for (;;) {
        if (cap - n < 65536) {
            if (cap >= (size_t)1 << 30) {
                fail(ld, "too large for a vocabulary");
                goto error;
            }
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

/* The record of the child of the node with block blk reached by byte c,
 * or 0 if there is none. */
static inline uint32_t find_record(const uint32_t *arena, uint32_t blk, uint8_t c)
{
    uint32_t header = arena[blk], n = header & 0xFFFF;
    uint32_t lo = (header >> 16) & 0xFF, hi = header >> 24;

    if (n <= SCAN_CHILDREN) {
        const uint8_t *labels = (const uint8_t *)(arena + blk + 1);
        uint32_t k;
#ifdef __SSE2__
        /* Compare c with 16 labels at once (the arena is padded), keep the
         * matches among the real children. */
        __m128i v = _mm_loadu_si128((const __m128i *)labels);
        unsigned match = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8((char)c)));

        match &= (1u << n) - 1;
        if (!match) {
            return 0;
        }
        k = (uint32_t)__builtin_ctz(match);
#else
        for (k = 0; k < n && labels[k] != c; k++) {
        }
        if (k == n) {
            return 0;
        }
#endif
        return blk + 1 + (n + 3) / 4 + 2 * k;
    }
    if (c < lo || c > hi || arena[blk + 1 + 2 * (c - lo)] == NO_CHILD) {
        return 0;
    }
    return blk + 1 + 2 * (c - lo);
}

/* Finds or adds the child of build node parent with the given label. */
static uint32_t build_child(struct build_node *b, uint32_t *n_nodes, uint32_t parent,
                            uint8_t label)
{
    uint32_t *link = &b[parent].child, x;

    while (*link && b[*link].label > label) {
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

/* Words of the block of a node with n children, labels lo..hi. */
static uint32_t block_words(uint32_t n, uint32_t lo, uint32_t hi)
{
    if (n <= SCAN_CHILDREN) {
        return 1 + (n + 3) / 4 + 2 * n;
    }
    return 1 + 2 * (hi - lo + 1);
}

/* Builds the arena and the pair table from the entries.  0, or -1 with
 * the error set (duplicate tokens, bytes without a token). */
static int build_trie(struct loader *ld, world_tokenizer *tok, const struct entry *entries,
                      size_t n_entries, size_t total_bytes)
{
    struct build_node *b;
    uint32_t *order = NULL, *stack = NULL, *block = NULL, path[PATH_CACHE + 1];
    uint32_t n_build = 257, words = 1, n_stack = 0, head, tail, x, c;
    const uint8_t *prev = NULL;
    size_t i, k, prev_len = 0;
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
        b[1 + c].sibling = c > 0 ? c : 0;   /* descending: 255 first */
    }
    b[0].token = NO_TOKEN;
    b[0].child = 256;

    for (i = 0; i < n_entries; i++) {
        const uint8_t *s = tok->blob + entries[i].offset;
        size_t len = entries[i].length, common = 0;

        /* Resume from the prefix shared with the previous entry. */
        if (prev) {
            size_t limit = len < prev_len ? len : prev_len;

            limit = limit < PATH_CACHE ? limit : PATH_CACHE;
            while (common < limit && s[common] == prev[common]) {
                common++;
            }
        }
        if (common == 0) {
            path[1] = 1 + s[0];
            common = 1;
        }
        x = path[common];
        for (k = common; k < len; k++) {
            x = build_child(b, &n_build, x, s[k]);
            if (k + 1 <= PATH_CACHE) {
                path[k + 1] = x;
            }
        }
        prev = s;
        prev_len = len;
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

    /* A block for every node with children, in depth-first order from the
     * one-byte nodes, which keeps the blocks of a subtree together. */
    order = malloc(n_build * sizeof *order);
    stack = malloc(n_build * sizeof *stack);
    block = calloc(n_build, sizeof *block);
    if (!order || !stack || !block) {
        fail(ld, "out of memory");
        goto out;
    }
    tail = 0;
    for (c = 0; c < 256; c++) {
        stack[n_stack++] = 256 - c;
    }
    while (n_stack) {
        uint32_t from = stack[--n_stack], n = 0, lo = 0, hi;

        order[tail++] = from;
        if (!b[from].child) {
            continue;
        }
        hi = b[b[from].child].label;
        for (x = b[from].child; x; x = b[x].sibling) {
            stack[n_stack++] = x;
            lo = b[x].label;
            n++;
        }
        block[from] = words;
        words += block_words(n, lo, hi);
    }
    if (!(tok->arena = calloc((size_t)words + 4, sizeof *tok->arena))) {
        fail(ld, "out of memory");
        goto out;
    }
    for (head = 0; head < tail; head++) {
        uint32_t from = order[head], n = 0, lo = 0, hi, children[256];
        uint32_t *w = tok->arena + block[from], *record;

        if (!b[from].child) {
            continue;
        }
        for (x = b[from].child; x; x = b[x].sibling) {
            children[n++] = x;      /* descending */
        }
        hi = b[children[0]].label;
        lo = b[children[n - 1]].label;
        w[0] = n | lo << 16 | hi << 24;
        if (n <= SCAN_CHILDREN) {
            uint8_t *labels = (uint8_t *)(w + 1);

            record = w + 1 + (n + 3) / 4;
            for (k = 0; k < n; k++) {
                x = children[n - 1 - k];
                labels[k] = b[x].label;
                record[2 * k] = (uint32_t)b[x].token;
                record[2 * k + 1] = block[x];
            }
        } else {
            record = w + 1;
            for (k = 0; k <= hi - lo; k++) {
                record[2 * k] = NO_CHILD;
            }
            for (k = 0; k < n; k++) {
                x = children[k];
                record[2 * (b[x].label - lo)] = (uint32_t)b[x].token;
                record[2 * (b[x].label - lo) + 1] = block[x];
            }
        }
    }

    /* The pair table holds the records of the depth-2 nodes. */
    for (x = 0; x < 65536; x++) {
        tok->pair[x].token = NO_PAIR;
        tok->pair[x].block = 0;
    }
    for (c = 0; c < 256; c++) {
        uint32_t blk = block[1 + c];

        for (x = blk ? b[1 + c].child : 0; x; x = b[x].sibling) {
            uint32_t r = find_record(tok->arena, blk, b[x].label);

            tok->pair[c << 8 | b[x].label].token = (int32_t)tok->arena[r];
            tok->pair[c << 8 | b[x].label].block = tok->arena[r + 1];
        }
    }
    rc = 0;
out:
    free(order);
    free(stack);
    free(block);
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
        tok->length[i] = ABSENT;
    }
    tok->offset[0] = 0;
    tok->length[0] = 0;
    for (i = 0; i < n_entries; i++) {
        const struct entry *e = &entries[i];

        if (tok->length[e->id] != ABSENT) {
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
    free(tok->arena);
    free(tok);
}

int world_vocab_size(const world_tokenizer *tok)
{
    return tok->vocab_size;
}

/* Greedy longest match (the official TRIE_TOKENIZER): at each position
 * take the longest vocabulary entry that prefixes the remaining bytes. */
int world_encode(const world_tokenizer *tok, const uint8_t *bytes, size_t n,
                 int32_t **ids, size_t *n_ids)
{
    const uint32_t *arena = tok->arena;
    size_t cap = n / 3 + 16, k = 0, i = 0;
    int32_t *out = malloc(cap * sizeof *out);

    *ids = NULL;
    *n_ids = 0;
    if (!out) {
        return -1;
    }
    while (i < n) {
        const struct trie_record *pair;
        int32_t best;
        size_t best_len, j;
        uint32_t x, blk;

        if (k == cap) {
            int32_t *grown;

            cap = cap + cap / 2 + (n - i) / 4 + 16;
            if (!(grown = realloc(out, cap * sizeof *out))) {
                free(out);
                return -1;
            }
            out = grown;
        }
        if (i + 1 == n || (pair = &tok->pair[bytes[i] << 8 | bytes[i + 1]])->token == NO_PAIR) {
            out[k++] = tok->byte_token[bytes[i]];
            i++;
            continue;
        }
        best = pair->token;
        best_len = 2;
        if (best == NO_TOKEN) {
            best = tok->byte_token[bytes[i]];
            best_len = 1;
        }
        /* Follow the child blocks while the bytes match. */
        for (j = i + 2, blk = pair->block; blk && j < n; j++) {
            if (!(x = find_record(arena, blk, bytes[j]))) {
                break;
            }
            if ((int32_t)arena[x] != NO_TOKEN) {
                best = (int32_t)arena[x];
                best_len = j + 1 - i;
            }
            blk = arena[x + 1];
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
    if (id < 0 || id >= tok->vocab_size || tok->length[id] == ABSENT) {
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
        if (tok->length[ids[i]] == ABSENT) {
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

    if (n == 0) {
        return 0;
    }
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
