/*
 * bpe.c - byte-level BPE (tokenizer.json): loader, the GPT-2 pre-tokenizer,
 * the merge loop, decoder.
 *
 * Tokens are kept as raw bytes: the byte-level alphabet of the file (each
 * byte shown as a printable character) is undone at load, so a word's
 * bytes start as the one-byte tokens and merge by (left id, right id)
 * through one hash table.
 */
#include "tokenizer/bpe.h"
#include "engine/base/escape.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <json-c/json.h>
#include <utf8proc.h>

#define ABSENT UINT32_MAX
/* Ids above this are surely a damaged file, not a vocabulary. */
#define MAX_ID (1 << 24)
#define EMPTY_KEY UINT64_MAX

/* One merge: the pair (left << 32 | right) becomes result, rank is its
 * line in "merges" (lower merges first). */
struct merge_slot {
    uint64_t key;
    int32_t rank;
    int32_t result;
};

/* An added token, matched in the text before the pre-tokenizer. */
struct added {
    uint32_t offset, length;    /* its bytes in blob */
    int32_t id;
    int level;                  /* 0: in the raw text; 1: in the normalized text */
};

struct bpe_tokenizer {
    int vocab_size;             /* largest id + 1 */
    uint8_t *blob;              /* all token bytes */
    uint32_t *offset;           /* [vocab_size] start of each token in blob */
    uint32_t *length;           /* [vocab_size] its length, ABSENT if absent */
    uint8_t *special;           /* [vocab_size] decodes to nothing */
    int32_t byte_token[256];
    struct merge_slot *merges;  /* open addressing, merge_mask + 1 slots */
    size_t merge_mask;
    struct added *added;        /* longest first: the first match is the longest */
    size_t n_added;
    uint8_t first_byte[2][256]; /* [level][b]: an added token of that level starts with b */
    int nfc;                    /* the normalizer is NFC (else none) */
};

/* Fills err with "PATH: message"; returns NULL for the caller to pass on. */
__attribute__((format(printf, 4, 5)))
static void *fail(const char *path, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!err || !errlen) {
        return NULL;
    }
    n = snprintf(err, errlen, "%s: ", RWKV_ESC(path));
    if (n < 0 || (size_t)n >= errlen) {
        return NULL;
    }
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return NULL;
}

/* --- the byte-level alphabet ------------------------------------------------ */

/* GPT-2 shows byte b as itself when b is printable Latin-1 ('!'..'~',
 * 0xA1..0xAC, 0xAE..0xFF) and as U+0100 + k for the k-th other byte. */
static int byte_is_shown_as_itself(int b)
{
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

/* The byte a character of the alphabet stands for, or -1.  The other
 * bytes, in order: 0x00..0x20, 0x7F..0xA0, 0xAD. */
static int alphabet_byte(int32_t cp)
{
    int32_t k = cp - 256;

    if (cp < 256) {
        return byte_is_shown_as_itself((int)cp) ? (int)cp : -1;
    }
    return k < 33 ? (int)k : k < 67 ? 0x7F + (int)(k - 33) : k == 67 ? 0xAD : -1;
}

/* Decodes a token written in the alphabet into out (room for len bytes);
 * returns the byte count or -1. */
static long alphabet_decode(const char *s, size_t len, uint8_t *out)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0, k = 0;

    while (i < len) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t r = utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - i), &cp);
        int b;

        if (r <= 0 || (b = alphabet_byte(cp)) < 0) {
            return -1;
        }
        out[k++] = (uint8_t)b;
        i += (size_t)r;
    }
    return (long)k;
}

/* --- loading ---------------------------------------------------------------- */

/* Token bytes -> id while loading (merges name tokens by their text). */
struct lookup {
    const uint8_t *blob;
    const uint32_t *offset, *length;
    int32_t *slot;      /* id or -1 */
    size_t mask;
};

static uint64_t hash_bytes(const uint8_t *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;

    while (n--) {
        h = (h ^ *s++) * 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static size_t lookup_find(const struct lookup *lk, const uint8_t *s, size_t n)
{
    size_t i = (size_t)hash_bytes(s, n) & lk->mask;

    for (;; i = (i + 1) & lk->mask) {
        int32_t id = lk->slot[i];

        if (id < 0 || (lk->length[id] == n && !memcmp(lk->blob + lk->offset[id], s, n))) {
            return i;
        }
    }
}

static uint64_t hash_pair(uint64_t key)
{
    key ^= key >> 31;
    key *= 0x9E3779B97F4A7C15ull;
    return key ^ (key >> 29);
}

static const struct merge_slot *merge_find(const bpe_tokenizer *tok, int32_t left, int32_t right)
{
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t i = (size_t)hash_pair(key) & tok->merge_mask;

    for (;; i = (i + 1) & tok->merge_mask) {
        const struct merge_slot *m = &tok->merges[i];

        if (m->key == key) {
            return m;
        }
        if (m->key == EMPTY_KEY) {
            return NULL;
        }
    }
}

static const char *json_string_member(struct json_object *o, const char *name)
{
    struct json_object *v;

    return json_object_object_get_ex(o, name, &v) && json_object_is_type(v, json_type_string)
           ? json_object_get_string(v) : NULL;
}

static int json_bool_member(struct json_object *o, const char *name)
{
    struct json_object *v;

    return json_object_object_get_ex(o, name, &v) && json_object_get_boolean(v);
}

/* Checks the pipeline around the model: an NFC normalizer or none, a
 * ByteLevel pre-tokenizer without a prefix space.  0, or -1 with err. */
static int check_pipeline(bpe_tokenizer *tok, const char *path, struct json_object *root,
                          char *err, size_t errlen)
{
    struct json_object *v;
    const char *type;

    if (json_object_object_get_ex(root, "normalizer", &v) && v) {
        type = json_string_member(v, "type");
        if (!type || strcmp(type, "NFC")) {
            fail(path, err, errlen, "normalizer \"%s\" is not supported (only NFC or none)",
                 type ? RWKV_ESC(type) : "?");
            return -1;
        }
        tok->nfc = 1;
    }
    if (!json_object_object_get_ex(root, "pre_tokenizer", &v) || !v ||
        !(type = json_string_member(v, "type")) || strcmp(type, "ByteLevel")) {
        fail(path, err, errlen, "the pre-tokenizer is not ByteLevel: not a byte-level BPE "
             "tokenizer (use a GPT-2 style tokenizer.json such as %s)", BPE_VOCAB_FILE);
        return -1;
    }
    if (json_bool_member(v, "add_prefix_space")) {
        fail(path, err, errlen, "pre-tokenizer: add_prefix_space is not supported");
        return -1;
    }
    {
        struct json_object *re;

        if (json_object_object_get_ex(v, "use_regex", &re) && !json_object_get_boolean(re)) {
            fail(path, err, errlen, "pre-tokenizer: use_regex false is not supported");
            return -1;
        }
    }
    return 0;
}

/* One id from JSON: an integer in 0..MAX_ID. */
static int json_id(struct json_object *v, int32_t *id)
{
    int64_t x;

    if (!v || !json_object_is_type(v, json_type_int)) {
        return -1;
    }
    x = json_object_get_int64(v);
    if (x < 0 || x > MAX_ID) {
        return -1;
    }
    *id = (int32_t)x;
    return 0;
}

/* Reads model.vocab and added_tokens into tok's token tables. */
static int load_tokens(bpe_tokenizer *tok, const char *path, struct json_object *vocab,
                       struct json_object *added, char *err, size_t errlen)
{
    size_t n_added = added ? json_object_array_length(added) : 0, total = 0, i;
    int32_t max_id = -1, id;

    /* Sizes first: the largest id and the bytes of every token. */
    json_object_object_foreach(vocab, key0, val0) {
        if (json_id(val0, &id) < 0) {
            fail(path, err, errlen, "vocabulary token \"%.40s\": id is not a number in 0..%d",
                 RWKV_ESC(key0), MAX_ID);
            return -1;
        }
        max_id = id > max_id ? id : max_id;
        total += strlen(key0);
    }
    for (i = 0; i < n_added; i++) {
        struct json_object *a = json_object_array_get_idx(added, i), *v;
        const char *content = json_string_member(a, "content");

        if (!content || !json_object_object_get_ex(a, "id", &v) || json_id(v, &id) < 0) {
            fail(path, err, errlen, "added token %zu: no content or no id in 0..%d", i, MAX_ID);
            return -1;
        }
        if (!*content) {
            fail(path, err, errlen, "added token %d is empty", (int)id);
            return -1;
        }
        if (json_bool_member(a, "lstrip") || json_bool_member(a, "rstrip") ||
            json_bool_member(a, "single_word")) {
            fail(path, err, errlen, "added token %d: lstrip, rstrip and single_word are not "
                 "supported", (int)id);
            return -1;
        }
        max_id = id > max_id ? id : max_id;
        total += strlen(content);
    }
    if (max_id < 0) {
        fail(path, err, errlen, "the vocabulary is empty");
        return -1;
    }
    tok->vocab_size = max_id + 1;
    tok->blob = malloc(total + 1);
    tok->offset = calloc((size_t)tok->vocab_size, sizeof *tok->offset);
    tok->length = malloc((size_t)tok->vocab_size * sizeof *tok->length);
    tok->special = calloc((size_t)tok->vocab_size, 1);
    tok->added = calloc(n_added + 1, sizeof *tok->added);
    if (!tok->blob || !tok->offset || !tok->length || !tok->special || !tok->added) {
        fail(path, err, errlen, "out of memory");
        return -1;
    }
    for (i = 0; i < (size_t)tok->vocab_size; i++) {
        tok->length[i] = ABSENT;
    }
    total = 0;
    json_object_object_foreach(vocab, key, val) {
        long len;

        json_id(val, &id);
        if (tok->length[id] != ABSENT) {
            fail(path, err, errlen, "vocabulary: id %d appears twice", (int)id);
            return -1;
        }
        if ((len = alphabet_decode(key, strlen(key), tok->blob + total)) < 0) {
            fail(path, err, errlen, "vocabulary token \"%.40s\" (id %d) is not written in the "
                 "byte-level alphabet: not a byte-level BPE tokenizer", RWKV_ESC(key), (int)id);
            return -1;
        }
        tok->offset[id] = (uint32_t)total;
        tok->length[id] = (uint32_t)len;
        total += (size_t)len;
    }
    for (i = 0; i < n_added; i++) {
        struct json_object *a = json_object_array_get_idx(added, i), *v;
        const char *content = json_string_member(a, "content");
        size_t len = strlen(content);
        struct added *t = &tok->added[tok->n_added++];

        json_object_object_get_ex(a, "id", &v);
        json_id(v, &id);
        memcpy(tok->blob + total, content, len);
        tok->offset[id] = (uint32_t)total;
        tok->length[id] = (uint32_t)len;
        tok->special[id] = (uint8_t)json_bool_member(a, "special");
        t->offset = (uint32_t)total;
        t->length = (uint32_t)len;
        t->id = id;
        /* Without a normalizer every added token is matched in the raw text. */
        t->level = tok->nfc && json_bool_member(a, "normalized");
        tok->first_byte[t->level][(uint8_t)content[0]] = 1;
        total += len;
    }
    return 0;
}

static int added_longer_first(const void *a, const void *b)
{
    const struct added *x = a, *y = b;

    return x->length != y->length ? (x->length < y->length ? 1 : -1)
           : (x->id > y->id) - (x->id < y->id);
}

/* Builds the byte table and the merge table from model.merges. */
static int load_merges(bpe_tokenizer *tok, const char *path, struct json_object *merges,
                       char *err, size_t errlen)
{
    size_t n = merges ? json_object_array_length(merges) : 0, i, slots = 16;
    struct lookup lk = { tok->blob, tok->offset, tok->length, NULL, 0 };
    uint8_t *buf = NULL;
    int rc = -1;
    int32_t id;

    while (slots < 2 * (size_t)tok->vocab_size) {
        slots *= 2;
    }
    lk.mask = slots - 1;
    if (!(lk.slot = malloc(slots * sizeof *lk.slot))) {
        fail(path, err, errlen, "out of memory");
        return -1;
    }
    memset(lk.slot, 0xff, slots * sizeof *lk.slot);
    for (id = 0; id < tok->vocab_size; id++) {
        if (tok->length[id] != ABSENT && !tok->special[id]) {
            size_t at = lookup_find(&lk, tok->blob + tok->offset[id], tok->length[id]);

            if (lk.slot[at] < 0) {
                lk.slot[at] = id;
            }
        }
    }
    for (i = 0; i < 256; i++) {
        uint8_t b = (uint8_t)i;

        /* Valid UTF-8 (all the encoder sees) never has C0, C1, F5..FF. */
        if ((tok->byte_token[i] = lk.slot[lookup_find(&lk, &b, 1)]) < 0 &&
            !(b == 0xC0 || b == 0xC1 || b >= 0xF5)) {
            fail(path, err, errlen, "byte 0x%02zX has no token: not a byte-level vocabulary", i);
            goto out;
        }
    }
    for (slots = 16; slots < 2 * n + 2; slots *= 2) {
    }
    tok->merge_mask = slots - 1;
    if (!(tok->merges = malloc(slots * sizeof *tok->merges)) ||
        !(buf = malloc(2 * tok->vocab_size + 1024))) {
        fail(path, err, errlen, "out of memory");
        goto out;
    }
    for (i = 0; i < slots; i++) {
        tok->merges[i].key = EMPTY_KEY;
    }
    for (i = 0; i < n; i++) {
        struct json_object *m = json_object_array_get_idx(merges, i);
        const char *parts[2] = { NULL, NULL }, *space;
        size_t lens[2] = { 0, 0 }, len = 0;
        int32_t ids[2], result;
        uint64_t key;
        size_t at;
        int k;

        if (json_object_is_type(m, json_type_string)) {
            parts[0] = json_object_get_string(m);
            if ((space = strchr(parts[0], ' '))) {
                lens[0] = (size_t)(space - parts[0]);
                parts[1] = space + 1;
                lens[1] = strlen(parts[1]);
            }
        } else if (json_object_is_type(m, json_type_array) && json_object_array_length(m) == 2) {
            for (k = 0; k < 2; k++) {
                struct json_object *p = json_object_array_get_idx(m, (size_t)k);

                parts[k] = json_object_is_type(p, json_type_string) ? json_object_get_string(p)
                                                                     : NULL;
                lens[k] = parts[k] ? strlen(parts[k]) : 0;
            }
        }
        if (!parts[0] || !parts[1] || lens[0] + lens[1] > (size_t)tok->vocab_size * 2 + 1000) {
            fail(path, err, errlen, "merge %zu is not a pair of tokens", i);
            goto out;
        }
        for (k = 0; k < 2; k++) {
            long bl = alphabet_decode(parts[k], lens[k], buf + len);
            int32_t got = bl < 0 ? -1 : lk.slot[lookup_find(&lk, buf + len, (size_t)bl)];

            if (got < 0) {
                fail(path, err, errlen, "merge %zu (\"%.60s\"): \"%.*s\" is not in the "
                     "vocabulary", i, RWKV_ESC(json_object_get_string(m)),
                     (int)(lens[k] > 40 ? 40 : lens[k]), parts[k]);
                goto out;
            }
            ids[k] = got;
            len += (size_t)bl;
        }
        if ((result = lk.slot[lookup_find(&lk, buf, len)]) < 0) {
            fail(path, err, errlen, "merge %zu (\"%.60s\"): the merged token is not in the "
                 "vocabulary", i, RWKV_ESC(json_object_get_string(m)));
            goto out;
        }
        key = (uint64_t)(uint32_t)ids[0] << 32 | (uint32_t)ids[1];
        for (at = (size_t)hash_pair(key) & tok->merge_mask; tok->merges[at].key != EMPTY_KEY &&
             tok->merges[at].key != key; at = (at + 1) & tok->merge_mask) {
        }
        /* A repeated pair keeps its first (lowest) rank, as the library does. */
        if (tok->merges[at].key == EMPTY_KEY) {
            tok->merges[at].key = key;
            tok->merges[at].rank = (int32_t)i;
            tok->merges[at].result = result;
        }
    }
    rc = 0;
out:
    free(buf);
    free(lk.slot);
    return rc;
}

bpe_tokenizer *bpe_load_text(const char *path, const char *text, size_t len, char *err,
                             size_t errlen)
{
    struct json_tokener *jt = json_tokener_new_ex(64);
    struct json_object *root = NULL, *model, *vocab, *merges = NULL, *added = NULL, *v;
    bpe_tokenizer *tok = NULL;
    const char *type;

    if (err && errlen) {
        err[0] = 0;
    }
    if (!jt) {
        return fail(path, err, errlen, "out of memory");
    }
    if (len > INT32_MAX) {
        fail(path, err, errlen, "too large for a tokenizer");
        goto error;
    }
    root = json_tokener_parse_ex(jt, text, (int)len);
    if (!root || json_tokener_get_error(jt) != json_tokener_success ||
        json_tokener_get_parse_end(jt) < len) {
        enum json_tokener_error e = json_tokener_get_error(jt);
        size_t at = json_tokener_get_parse_end(jt);

        fail(path, err, errlen, "not valid JSON at byte %zu (%s)", at,
             e == json_tokener_success ? "text after the end" :
             e == json_tokener_continue ? "truncated" : json_tokener_error_desc(e));
        goto error;
    }
    if (!json_object_is_type(root, json_type_object) ||
        !json_object_object_get_ex(root, "model", &model) ||
        !json_object_is_type(model, json_type_object) ||
        !json_object_object_get_ex(model, "vocab", &vocab) ||
        !json_object_is_type(vocab, json_type_object)) {
        fail(path, err, errlen, "no model.vocab: not a tokenizer.json");
        goto error;
    }
    if ((type = json_string_member(model, "type")) && strcmp(type, "BPE")) {
        fail(path, err, errlen, "model type \"%s\" is not supported (only BPE)", RWKV_ESC(type));
        goto error;
    }
    if (json_object_object_get_ex(model, "dropout", &v) && v &&
        json_object_get_double(v) != 0.0) {
        fail(path, err, errlen, "BPE dropout is not supported");
        goto error;
    }
    if ((json_object_object_get_ex(model, "merges", &merges) &&
         !json_object_is_type(merges, json_type_array)) ||
        (json_object_object_get_ex(root, "added_tokens", &added) && added &&
         !json_object_is_type(added, json_type_array))) {
        fail(path, err, errlen, "model.merges or added_tokens is not a list");
        goto error;
    }
    if (!(tok = calloc(1, sizeof *tok))) {
        fail(path, err, errlen, "out of memory");
        goto error;
    }
    if (check_pipeline(tok, path, root, err, errlen) < 0 ||
        load_tokens(tok, path, vocab, added, err, errlen) < 0 ||
        load_merges(tok, path, merges, err, errlen) < 0) {
        goto error;
    }
    qsort(tok->added, tok->n_added, sizeof *tok->added, added_longer_first);
    json_object_put(root);
    json_tokener_free(jt);
    return tok;
error:
    json_object_put(root);
    json_tokener_free(jt);
    bpe_free(tok);
    return NULL;
}

bpe_tokenizer *bpe_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    bpe_tokenizer *tok;
    char *text;
    size_t got;

    if (!f) {
        return fail(path, err, errlen, "%s", strerror(errno));
    }
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (1L << 30)) {
        fclose(f);
        return fail(path, err, errlen, "not a regular file of at most 1 GiB");
    }
    if (!(text = malloc((size_t)st.st_size + 1))) {
        fclose(f);
        return fail(path, err, errlen, "out of memory");
    }
    got = fread(text, 1, (size_t)st.st_size, f);
    if (got != (size_t)st.st_size || ferror(f)) {
        int e = errno ? errno : EIO;

        fclose(f);
        free(text);
        return fail(path, err, errlen, "%s", strerror(e));
    }
    fclose(f);
    text[got] = 0;
    tok = bpe_load_text(path, text, got, err, errlen);
    free(text);
    return tok;
}

void bpe_free(bpe_tokenizer *tok)
{
    if (!tok) {
        return;
    }
    free(tok->blob);
    free(tok->offset);
    free(tok->length);
    free(tok->special);
    free(tok->merges);
    free(tok->added);
    free(tok);
}

int bpe_vocab_size(const bpe_tokenizer *tok)
{
    return tok->vocab_size;
}

/* --- encoding --------------------------------------------------------------- */

/* Words seen before in one long input: their ids, direct-mapped by hash. */
#define CACHE_SLOTS 4096
#define CACHE_WORD 22
#define CACHE_IDS 10
#define CACHE_FROM 4096         /* inputs shorter than this have no cache */
struct cache_entry {
    uint8_t len;                /* 0: empty (a word is never empty) */
    uint8_t n_ids;
    uint8_t word[CACHE_WORD];
    int32_t ids[CACHE_IDS];
};

/* What one bpe_encode call works in. */
struct encoder {
    struct cache_entry *cache;  /* NULL: none */
    const bpe_tokenizer *tok;
    int32_t *ids;
    size_t n_ids, cap;
    /* The merge loop's scratch, grown to the longest word. */
    struct symbol {
        int32_t id, prev, next;
    } *sym;
    struct candidate {
        int32_t rank, pos;
    } *heap;
    size_t sym_cap, heap_cap;
    int failed;
};

static void emit(struct encoder *e, int32_t id)
{
    if (e->n_ids == e->cap) {
        size_t cap = e->cap * 2 + 64;
        int32_t *grown = realloc(e->ids, cap * sizeof *grown);

        if (!grown) {
            e->failed = 1;
            return;
        }
        e->ids = grown;
        e->cap = cap;
    }
    e->ids[e->n_ids++] = id;
}

static int candidate_before(const struct candidate *a, const struct candidate *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(struct candidate *h, size_t *n, struct candidate c)
{
    size_t i = (*n)++;

    while (i > 0 && candidate_before(&c, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

static struct candidate heap_pop(struct candidate *h, size_t *n)
{
    struct candidate top = h[0], last = h[--*n];
    size_t i = 0, c;

    while ((c = 2 * i + 1) < *n) {
        if (c + 1 < *n && candidate_before(&h[c + 1], &h[c])) {
            c++;
        }
        if (!candidate_before(&h[c], &last)) {
            break;
        }
        h[i] = h[c];
        i = c;
    }
    if (*n) {
        h[i] = last;
    }
    return top;
}

/* Offers the pair starting at symbol pos to the heap if it merges. */
static void offer(struct encoder *e, size_t *n_heap, int32_t pos)
{
    const struct merge_slot *m;
    int32_t next = e->sym[pos].next;

    if (next >= 0 && (m = merge_find(e->tok, e->sym[pos].id, e->sym[next].id))) {
        struct candidate c = { m->rank, pos };

        heap_push(e->heap, n_heap, c);
    }
}

/* BPE on one word: start from its bytes, repeatedly merge the pair of
 * lowest rank (the leftmost among equals), as the tokenizers library's
 * Word::merge_all does. */
static void encode_word(struct encoder *e, const uint8_t *s, size_t n)
{
    size_t i, n_heap = 0;
    int32_t pos;

    if (n == 1) {
        emit(e, e->tok->byte_token[s[0]]);
        return;
    }
    if (n > e->sym_cap) {
        size_t cap = n + n / 2 + 32;
        struct symbol *sym = realloc(e->sym, cap * sizeof *sym);
        struct candidate *heap = sym ? realloc(e->heap, 2 * cap * sizeof *heap) : NULL;

        if (sym) {
            e->sym = sym;
        }
        if (!heap) {
            e->failed = 1;
            return;
        }
        e->heap = heap;
        e->sym_cap = cap;
        e->heap_cap = 2 * cap;
    }
    for (i = 0; i < n; i++) {
        e->sym[i].id = e->tok->byte_token[s[i]];
        e->sym[i].prev = (int32_t)i - 1;
        e->sym[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (i = 0; i + 1 < n; i++) {
        offer(e, &n_heap, (int32_t)i);
    }
    /* Each merge pops one candidate and offers at most two: the heap grows
     * below when it must. */
    while (n_heap > 0) {
        struct candidate c = heap_pop(e->heap, &n_heap);
        const struct merge_slot *m;
        struct symbol *a = &e->sym[c.pos], *b;

        if (a->id < 0 || a->next < 0) {
            continue;
        }
        b = &e->sym[a->next];
        if (!(m = merge_find(e->tok, a->id, b->id)) || m->rank != c.rank) {
            continue;   /* stale: one side merged since */
        }
        a->id = m->result;
        a->next = b->next;
        if (b->next >= 0) {
            e->sym[b->next].prev = c.pos;
        }
        b->id = -1;
        if (n_heap + 2 > e->heap_cap) {
            struct candidate *heap = realloc(e->heap, 2 * e->heap_cap * sizeof *heap);

            if (!heap) {
                e->failed = 1;
                return;
            }
            e->heap = heap;
            e->heap_cap *= 2;
        }
        if (a->prev >= 0) {
            offer(e, &n_heap, a->prev);
        }
        offer(e, &n_heap, c.pos);
    }
    for (pos = 0; pos >= 0; pos = e->sym[pos].next) {
        emit(e, e->sym[pos].id);
    }
}

enum { LETTER, NUMBER, SPACE, OTHER };

/* The pre-tokenizer's classes: \p{L}, \p{N}, \s (as Oniguruma, which the
 * tokenizers library uses, defines it: U+0009..U+000D, U+0085 and the
 * Z categories) and the rest. */
static int class_of(int32_t cp)
{
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') {
            return LETTER;
        }
        if (cp >= '0' && cp <= '9') {
            return NUMBER;
        }
        return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) ? SPACE : OTHER;
    }
    if (cp == 0x85) {
        return SPACE;
    }
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
        return LETTER;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return NUMBER;
    case UTF8PROC_CATEGORY_ZS: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP:
        return SPACE;
    default:
        return OTHER;
    }
}

/* Class of the character at s[i] (valid UTF-8); *len its byte count. */
static int class_at(const uint8_t *s, size_t n, size_t i, size_t *len)
{
    int32_t cp;

    if (s[i] < 0x80) {
        *len = 1;
        return class_of(s[i]);
    }
    *len = (size_t)utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &cp);
    return class_of(cp);
}

/* The end of the word starting at s[i]: the GPT-2 pattern
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * with its alternatives tried in order. */
static size_t word_end(const uint8_t *s, size_t n, size_t i)
{
    size_t len, j, last;
    int c, run;

    if (s[i] == '\'' && i + 1 < n) {
        uint8_t a = s[i + 1], b = i + 2 < n ? s[i + 2] : 0;

        if (a == 's' || a == 't' || a == 'm' || a == 'd') {
            return i + 2;
        }
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) {
            return i + 3;
        }
    }
    c = class_at(s, n, i, &len);
    j = i;
    run = c;
    if (s[i] == ' ' && i + 1 < n) {
        int next = class_at(s, n, i + 1, &len);

        if (next != SPACE) {
            run = next;
            j = i + 1;
        }
    }
    if (run != SPACE) {
        while (j < n && class_at(s, n, j, &len) == run) {
            j += len;
        }
        return j;
    }
    /* A run of spaces: up to the end of the text; else all but its last
     * character (which then leads the next word), or the one character. */
    last = j;
    while (j < n && class_at(s, n, j, &len) == SPACE) {
        last = j;
        j += len;
    }
    return j == n || last == i ? j : last;
}

/* Pre-tokenizes normalized text and encodes each word (a word's ids
 * depend on its bytes alone, so a cached word is the same ids). */
static void encode_words(struct encoder *e, const uint8_t *s, size_t n)
{
    size_t i = 0, end, len, before;

    while (i < n && !e->failed) {
        struct cache_entry *c = NULL;

        end = word_end(s, n, i);
        len = end - i;
        if (e->cache && len > 1 && len <= CACHE_WORD) {
            c = &e->cache[hash_bytes(s + i, len) & (CACHE_SLOTS - 1)];
            if (c->len == len && !memcmp(c->word, s + i, len)) {
                for (before = 0; before < c->n_ids; before++) {
                    emit(e, c->ids[before]);
                }
                i = end;
                continue;
            }
        }
        before = e->n_ids;
        encode_word(e, s + i, len);
        if (c && !e->failed && e->n_ids - before <= CACHE_IDS) {
            c->len = (uint8_t)len;
            c->n_ids = (uint8_t)(e->n_ids - before);
            memcpy(c->word, s + i, len);
            memcpy(c->ids, e->ids + before, c->n_ids * sizeof *c->ids);
        }
        i = end;
    }
}

static void encode_level(struct encoder *e, const uint8_t *s, size_t n, int level);

/* Appends n bytes to a growing buffer; -1 out of memory. */
static int append(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *s, size_t n)
{
    if (n == 0) {
        return 0;
    }
    if (*len + n > *cap) {
        size_t c = (*len + n) * 2 + 64;
        uint8_t *grown = realloc(*buf, c);

        if (!grown) {
            return -1;
        }
        *buf = grown;
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    return 0;
}

/* NFC of s: only the non-ASCII runs (with the ASCII character before each,
 * which may be the base of a combining mark) go through utf8proc.  Cutting
 * before an ASCII character never changes the result: it is a starter that
 * ends any reordering and is the second half of no composition.  Returns
 * malloc'd text in *out, or -1 out of memory. */
static int nfc(const uint8_t *s, size_t n, uint8_t **out, size_t *out_len)
{
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0, i = 0, j, k, from;

    while (i < n) {
        utf8proc_uint8_t *norm = NULL;
        utf8proc_ssize_t r;

        for (j = i; j < n && s[j] < 0x80; j++) {
        }
        from = j > i && j < n ? j - 1 : j;
        if (append(&buf, &len, &cap, s + i, from - i) < 0) {
            goto oom;
        }
        if (j == n) {
            break;
        }
        for (k = j; k < n && s[k] >= 0x80; k++) {
        }
        r = utf8proc_map(s + from, (utf8proc_ssize_t)(k - from), &norm,
                         UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        /* (only UTF8PROC_ERROR_NOMEM: the text is valid UTF-8) */
        if (r < 0 || append(&buf, &len, &cap, norm, (size_t)r) < 0) {
            free(norm);
            goto oom;
        }
        free(norm);
        i = k;
    }
    *out = buf;
    *out_len = len;
    return 0;
oom:
    free(buf);
    return -1;
}

/* Text between the added tokens of one level: normalized (level 0, with a
 * normalizer) and searched for the next level's tokens, or pre-tokenized. */
static void encode_plain(struct encoder *e, const uint8_t *s, size_t n, int level)
{
    uint8_t *norm = NULL;
    size_t len = 0, i;

    if (level == 1 || !e->tok->nfc) {
        encode_words(e, s, n);
        return;
    }
    for (i = 0; i < n && s[i] < 0x80; i++) {
    }
    if (i == n) {
        encode_level(e, s, n, 1);     /* ASCII is its own NFC */
        return;
    }
    if (nfc(s, n, &norm, &len) < 0) {
        e->failed = 1;
        return;
    }
    encode_level(e, norm, len, 1);
    free(norm);
}

/* Cuts out the added tokens of one level, leftmost and then longest first;
 * encodes what lies between them. */
static void encode_level(struct encoder *e, const uint8_t *s, size_t n, int level)
{
    const bpe_tokenizer *tok = e->tok;
    size_t i = 0, start = 0, k;

    while (i < n) {
        const struct added *hit = NULL;

        if (tok->first_byte[level][s[i]]) {
            for (k = 0; k < tok->n_added; k++) {
                const struct added *a = &tok->added[k];

                if (a->level == level && a->length <= n - i &&
                    !memcmp(tok->blob + a->offset, s + i, a->length)) {
                    hit = a;
                    break;
                }
            }
        }
        if (!hit) {
            i++;
            continue;
        }
        if (start < i) {
            encode_plain(e, s + start, i - start, level);
        }
        emit(e, hit->id);
        i += hit->length;
        start = i;
    }
    if (start < n) {
        encode_plain(e, s + start, n - start, level);
    }
}

/* Length of the maximal prefix of s (n > 0 bytes) that begins a valid
 * character: the whole character, or the bytes to drop as one U+FFFD
 * (negated).  WHATWG's and Python's "maximal subpart" rule. */
static long utf8_step(const uint8_t *s, size_t n)
{
    uint8_t b = s[0], lo = 0x80, hi = 0xBF;
    size_t need, k;

    if (b < 0x80) {
        return 1;
    }
    if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        lo = b == 0xE0 ? 0xA0 : 0x80;
        hi = b == 0xED ? 0x9F : 0xBF;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        lo = b == 0xF0 ? 0x90 : 0x80;
        hi = b == 0xF4 ? 0x8F : 0xBF;
    } else {
        return -1;
    }
    for (k = 1; k <= need; k++) {
        if (k >= n || s[k] < lo || s[k] > hi) {
            return -(long)k;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    return (long)need + 1;
}

int bpe_encode(const bpe_tokenizer *tok, const uint8_t *bytes, size_t n, int32_t **ids,
               size_t *n_ids)
{
    struct encoder e;
    uint8_t *clean = NULL;
    size_t i = 0;
    long step;

    memset(&e, 0, sizeof e);
    e.tok = tok;
    *ids = NULL;
    *n_ids = 0;
    /* Invalid UTF-8 becomes U+FFFD first: the text the model saw was a str. */
    while (i < n && (step = utf8_step(bytes + i, n - i)) > 0) {
        i += (size_t)step;
    }
    if (i < n) {
        size_t k = i;

        if (!(clean = malloc(3 * n))) {
            return -1;
        }
        memcpy(clean, bytes, i);
        while (i < n) {
            if ((step = utf8_step(bytes + i, n - i)) > 0) {
                memcpy(clean + k, bytes + i, (size_t)step);
                k += (size_t)step;
                i += (size_t)step;
            } else {
                memcpy(clean + k, "\xEF\xBF\xBD", 3);
                k += 3;
                i += (size_t)-step;
            }
        }
        bytes = clean;
        n = k;
    }
    /* (Without the memory for a cache, encode without one.) */
    e.cache = n >= CACHE_FROM ? calloc(CACHE_SLOTS, sizeof *e.cache) : NULL;
    encode_level(&e, bytes, n, 0);
    free(e.cache);
    free(clean);
    free(e.sym);
    free(e.heap);
    if (e.failed) {
        free(e.ids);
        return -1;
    }
    if (!e.ids && !(e.ids = malloc(sizeof *e.ids))) {
        return -1;
    }
    *ids = e.ids;
    *n_ids = e.n_ids;
    return 0;
}

/* --- decoding --------------------------------------------------------------- */

const uint8_t *bpe_token(const bpe_tokenizer *tok, int32_t id, size_t *len)
{
    if (id < 0 || id >= tok->vocab_size || tok->length[id] == ABSENT) {
        if (len) {
            *len = 0;
        }
        return NULL;
    }
    if (len) {
        *len = tok->special[id] ? 0 : tok->length[id];
    }
    return tok->blob + tok->offset[id];
}

int bpe_decode(const bpe_tokenizer *tok, const int32_t *ids, size_t n, uint8_t **out,
               size_t *out_len, char *err, size_t errlen)
{
    size_t total = 0, i, len;
    const uint8_t *b;
    uint8_t *o;

    *out = NULL;
    *out_len = 0;
    for (i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->vocab_size) {
            snprintf(err, errlen, "id %ld out of range (vocabulary has %d ids)", (long)ids[i],
                     tok->vocab_size);
            return -1;
        }
        if (!bpe_token(tok, ids[i], &len)) {
            snprintf(err, errlen, "id %ld is not in the vocabulary", (long)ids[i]);
            return -1;
        }
        total += len;
    }
    if (!(o = malloc(total + 1))) {
        snprintf(err, errlen, "out of memory decoding %zu ids", n);
        return -1;
    }
    *out = o;
    for (i = 0; i < n; i++) {
        b = bpe_token(tok, ids[i], &len);
        memcpy(o, b, len);
        o += len;
    }
    *o = 0;
    *out_len = total;
    return 0;
}
