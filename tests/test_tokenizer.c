/* test_tokenizer.c - World tokenizer: golden tokenizations, a brute-force
 * reference on random inputs, vocabulary parsing and its errors, decode
 * errors and the streaming UTF-8 decoder split at every byte. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <utf8proc.h>

#include "app/session/paths.h"
#include "tap.h"
#include "tokenizer/world.h"

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

/* xorshift64*: deterministic test data. */
static uint32_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

static int hex_digit(int c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* --- golden files -------------------------------------------------------- */

/* Checks every line "HEX<TAB>IDS" of a fixture: encode gives IDS, decode
 * gives the bytes back. */
static void check_golden(const world_tokenizer *tok, const char *name)
{
    char *data = read_file(shared_path(name), NULL), *line, *save = NULL;
    size_t lines = 0, enc_ok = 0, dec_ok = 0, total_bytes = 0, total_ids = 0;
    int shown = 0;

    if (!data) {
        ok(0, "%s readable", name);
        return;
    }
    for (line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *tab = strchr(line, '\t'), *p, *endp;
        size_t hex_len, n = 0, n_want = 0, n_ids, back_len, i;
        uint8_t *bytes, *back = NULL;
        int32_t *want, *ids;
        char err[WORLD_ERRLEN];

        if (!tab) {
            tab = line + strlen(line);
        }
        hex_len = (size_t)(tab - line);
        bytes = malloc(hex_len / 2 + 1);
        want = malloc((strlen(line) + 1) * sizeof *want);
        for (i = 0; i + 1 < hex_len; i += 2) {
            bytes[n++] = (uint8_t)(hex_digit(line[i]) << 4 | hex_digit(line[i + 1]));
        }
        for (p = *tab ? tab + 1 : tab; *p; p = endp) {
            long v = strtol(p, &endp, 10);

            if (endp == p) {
                break;
            }
            want[n_want++] = (int32_t)v;
        }
        lines++;
        total_bytes += n;
        total_ids += n_want;
        if (world_encode(tok, bytes, n, &ids, &n_ids) == 0 && n_ids == n_want &&
            (n_ids == 0 || !memcmp(ids, want, n_ids * sizeof *ids))) {
            enc_ok++;
        } else if (shown++ < 3) {
            diag("%s line %zu: %zu bytes encode to %zu ids, golden has %zu", name, lines, n,
                 n_ids, n_want);
            for (i = 0; i < n_ids && i < n_want; i++) {
                if (ids[i] != want[i]) {
                    diag("  first difference at id %zu: %d, golden %d", i, (int)ids[i],
                         (int)want[i]);
                    break;
                }
            }
        }
        free(ids);
        if (world_decode(tok, want, n_want, &back, &back_len, err, sizeof err) == 0 &&
            back_len == n && !memcmp(back, bytes, n)) {
            dec_ok++;
        } else if (shown++ < 3) {
            diag("%s line %zu: decode does not give the input back", name, lines);
        }
        free(back);
        free(bytes);
        free(want);
    }
    ok(lines > 0 && enc_ok == lines, "%s: %zu/%zu lines encode to the golden ids "
       "(%zu bytes, %zu ids)", name, enc_ok, lines, total_bytes, total_ids);
    ok(lines > 0 && dec_ok == lines, "%s: %zu/%zu golden id lists decode to the input bytes",
       name, dec_ok, lines);
    free(data);
}

/* --- brute-force reference -------------------------------------------- */

struct ref_token {
    const uint8_t *bytes;
    size_t len;
    int32_t id;
};

static struct ref_token *ref_tokens;
static size_t ref_count, ref_max_len;

static int ref_compare(const void *a, const void *b)
{
    const struct ref_token *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->bytes, y->bytes, n);

    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* A sorted list of all tokens, from world_token. */
static void ref_build(const world_tokenizer *tok)
{
    int32_t id;
    size_t len;

    ref_tokens = malloc((size_t)world_vocab_size(tok) * sizeof *ref_tokens);
    for (id = 1; id < world_vocab_size(tok); id++) {
        const uint8_t *b = world_token(tok, id, &len);

        if (b) {
            ref_tokens[ref_count].bytes = b;
            ref_tokens[ref_count].len = len;
            ref_tokens[ref_count].id = id;
            ref_count++;
            ref_max_len = len > ref_max_len ? len : ref_max_len;
        }
    }
    qsort(ref_tokens, ref_count, sizeof *ref_tokens, ref_compare);
}

/* Greedy longest match the slow way: at each position try every length
 * from the longest down and look it up.  Returns the number of ids. */
static size_t ref_encode(const uint8_t *s, size_t n, int32_t *out)
{
    size_t i = 0, k = 0, len;

    while (i < n) {
        for (len = n - i < ref_max_len ? n - i : ref_max_len; len > 0; len--) {
            struct ref_token key = { s + i, len, 0 }, *hit;

            hit = bsearch(&key, ref_tokens, ref_count, sizeof *ref_tokens, ref_compare);
            if (hit) {
                out[k++] = hit->id;
                i += len;
                break;
            }
        }
        if (len == 0) {
            return (size_t)-1;
        }
    }
    return k;
}

/* Encodes s with both encoders and compares. */
static int same_as_reference(const world_tokenizer *tok, const uint8_t *s, size_t n)
{
    int32_t *want = malloc((n + 1) * sizeof *want), *ids = NULL;
    size_t n_want = ref_encode(s, n, want), n_ids = 0;
    int same = world_encode(tok, s, n, &ids, &n_ids) == 0 && n_ids == n_want &&
               (n_ids == 0 || !memcmp(ids, want, n_ids * sizeof *ids));

    free(want);
    free(ids);
    return same;
}

static void check_against_reference(const world_tokenizer *tok)
{
    static const char *pieces[] = {
        "the", " the", "The ", "\n\n", "\r\n", "    ", "\t", "ing", "tion", ".", ",", "!",
        "\xe4\xb8\xad\xe6\x96\x87", "\xe7\x9a\x84", "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4",
        "\xf0\x9f\x98\x80", "\xe2\x80\x8d", "\xf0\x9f\x91\xa9", "caf\xc3\xa9", "\x00", "\xff",
        "\xc3", "\x80", "\xe4\xb8", "=", "==", "===", "{", "}", "def ", "return ",
    };
    size_t n_pieces = sizeof pieces / sizeof pieces[0];
    uint8_t *buf = malloc(65536);
    size_t trial, n, len, good_random = 0, good_tokens = 0, good_pieces = 0;
    int32_t id;
    int trials = 40;

    for (trial = 0; trial < (size_t)trials; trial++) {
        /* Random bytes, biased towards ASCII so longer tokens occur too. */
        n = 200 + rnd() % 800;
        for (len = 0; len < n; len++) {
            uint32_t r = rnd();

            buf[len] = r % 4 ? (uint8_t)"abcdefghijklmnopqrstuvwxyz "[(r >> 8) % 27]
                             : (uint8_t)(r >> 16);
        }
        good_random += same_as_reference(tok, buf, n);

        /* Concatenated random vocabulary entries (long ones included). */
        for (n = 0; n < 4000;) {
            const uint8_t *b;

            id = 1 + (int32_t)(rnd() % (uint32_t)(world_vocab_size(tok) - 1));
            if ((b = world_token(tok, id, &len)) != NULL) {
                memcpy(buf + n, b, len);
                n += len;
            }
        }
        good_tokens += same_as_reference(tok, buf, n);

        /* Mixed text pieces: words, CJK, emoji, broken UTF-8, NUL. */
        for (n = 0; n < 3000;) {
            const char *p = pieces[rnd() % n_pieces];
            size_t l = *p ? strlen(p) : 1;  /* "\x00" is one NUL byte */

            memcpy(buf + n, p, l);
            n += l;
        }
        good_pieces += same_as_reference(tok, buf, n);
    }
    ok(good_random == (size_t)trials, "random bytes: %zu/%d inputs match the brute-force "
       "longest match", good_random, trials);
    ok(good_tokens == (size_t)trials, "random token concatenations: %zu/%d inputs match the "
       "brute-force longest match", good_tokens, trials);
    ok(good_pieces == (size_t)trials, "mixed text/CJK/emoji/invalid pieces: %zu/%d inputs "
       "match the brute-force longest match", good_pieces, trials);
    free(buf);
}

/* A large input: encode and decode back, and time it. */
static void check_large(const world_tokenizer *tok)
{
    size_t n = 8u << 20, i, n_ids, back_len;
    uint8_t *s = malloc(n), *back = NULL;
    const char *text = "The quick brown fox \xe7\x8b\x90\xe7\x8b\xb8 jumps over "
                       "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 the lazy dog. ";
    size_t tl = strlen(text);
    int32_t *ids = NULL;
    char err[WORLD_ERRLEN];
    double t0, t;
    int rc;

    for (i = 0; i < n; i++) {
        s[i] = (uint8_t)text[i % tl];
    }
    for (i = 0; i < 64; i++) {
        s[rnd() % n] = (uint8_t)(rnd() & 0xFF);
    }
    s[n / 2] = 0;
    t0 = now();
    rc = world_encode(tok, s, n, &ids, &n_ids);
    t = now() - t0;
    ok(rc == 0 && n_ids > n / 8 && n_ids < n, "8 MiB input with NUL and random bytes encodes "
       "to %zu ids (%.0f MB/s, unoptimised builds are slower)", n_ids, n / t / 1e6);
    rc = world_decode(tok, ids, n_ids, &back, &back_len, err, sizeof err);
    ok(rc == 0 && back_len == n && !memcmp(back, s, n), "8 MiB input decodes back exactly");
    free(ids);
    free(back);

    /* Runs where no long token fits: all 0xFF, and a run longer than the
     * longest token. */
    memset(s, 0xFF, 100000);
    rc = world_encode(tok, s, 100000, &ids, &n_ids);
    ok(rc == 0 && n_ids == 100000 && ids[0] == 256 && ids[99999] == 256,
       "100000 bytes 0xff give 100000 ids 256");
    free(ids);
    memset(s, ' ', 100000);
    rc = world_encode(tok, s, 100000, &ids, &n_ids);
    ok(rc == 0 && n_ids == (100000 + 127) / 128 && ids[0] == 65529,
       "100000 spaces give runs of the 128-space token 65529 (%zu ids)", n_ids);
    free(ids);
    free(s);
}

/* --- vocabulary file parsing ------------------------------------------- */

static const char *tmp_dir = "tests/tmp/tokenizer";

/* Writes the 256 one-byte tokens (ids 1..256) then extra, returns the path. */
static const char *write_vocab(const char *name, const char *extra, int skip_byte)
{
    static char path[4][512];
    static int next;
    char *p = path[next++ & 3];
    FILE *f;
    int c;

    snprintf(p, sizeof path[0], "%s/%s", tmp_dir, name);
    f = fopen(p, "wb");
    if (!f) {
        return p;
    }
    for (c = 0; c < 256; c++) {
        if (c != skip_byte) {
            fprintf(f, "%d b'\\x%02x' 1\n", c + 1, c);
        }
    }
    fputs(extra, f);
    fclose(f);
    return p;
}

/* Loads a vocabulary that must fail; checks the message contains want. */
static void expect_load_error(const char *name, const char *extra, int skip_byte,
                              const char *want, const char *what)
{
    char err[WORLD_ERRLEN] = "";
    const char *path = write_vocab(name, extra, skip_byte);
    world_tokenizer *tok = world_load(path, err, sizeof err);

    ok(tok == NULL && strstr(err, want) != NULL && strncmp(err, path, strlen(path)) == 0,
       "%s: error \"%s\"", what, err);
    world_free(tok);
}

/* Checks the bytes of token id. */
static int token_is(const world_tokenizer *tok, int32_t id, const char *bytes, size_t len)
{
    size_t got;
    const uint8_t *b = world_token(tok, id, &got);

    return b && got == len && !memcmp(b, bytes, len);
}

static void check_parsing(void)
{
    char err[WORLD_ERRLEN] = "";
    world_tokenizer *tok;
    const char *path;
    uint8_t *out;
    size_t len;
    int32_t ids[2];

    paths_mkdirs(tmp_dir);

    tok = world_load("tests/tmp/tokenizer/no-such-vocab.txt", err, sizeof err);
    ok(tok == NULL && !strcmp(err, "tests/tmp/tokenizer/no-such-vocab.txt: "
                                   "No such file or directory"),
       "missing vocabulary file: \"%s\"", err);

    /* Every escape Python allows in str and bytes literals. */
    path = write_vocab("escapes.txt",
        "300 '\\a\\b\\f\\v\\0\\12\\101' 7\n"
        "301 '\\x80\\xff' 4\n"
        "302 b'\\x80\\xff\\0\\377' 4\n"
        "303 \"\\\"q'\" 3\n"
        "304 '\\'\\\\' 2\n"
        "305 '\\u00e9\\U0001F600' 6\n"
        "306 b'\\u00e9\\N' 8\n"
        "307 '\\q\\N' 0\n", -1);
    tok = world_load(path, err, sizeof err);
    ok(tok == NULL && strstr(err, ":264: \\N{...} escapes are not supported"),
       "\\N{name} is refused with the line number: \"%s\"", err);
    world_free(tok);
    path = write_vocab("escapes.txt",
        "300 '\\a\\b\\f\\v\\0\\12\\101' 7\n"
        "301 '\\x80\\xff' 4\n"
        "302 b'\\x80\\xff\\0\\377' 4\n"
        "303 \"\\\"q'\" 3\n"
        "304 '\\'\\\\' 2\n"
        "305 '\\u00e9\\U0001F600' 6\n"
        "306 b'\\u00e9\\N' 8\n"
        "307 '\\q\\z \xc3\xa9\xe4\xb8\xad' 10\r\n"
        "\n"
        "310 '\\7771' 3\n", -1);
    tok = world_load(path, err, sizeof err);
    ok(tok != NULL, "vocabulary with every escape loads (%s)", tok ? "ok" : err);
    if (tok) {
        ok(world_vocab_size(tok) == 311, "vocab size is the largest id + 1 (%d)",
           world_vocab_size(tok));
        ok(token_is(tok, 300, "\a\b\f\v\0\nA", 7), "\\a \\b \\f \\v and octal escapes");
        ok(token_is(tok, 301, "\xc2\x80\xc3\xbf", 4), "\\xNN in a str literal is a code "
           "point, encoded as UTF-8");
        ok(token_is(tok, 302, "\x80\xff\0\xff", 4), "\\xNN and octal in a bytes literal are "
           "bytes");
        ok(token_is(tok, 303, "\"q'", 3), "double-quoted literal with \\\"");
        ok(token_is(tok, 304, "'\\", 2), "\\' and \\\\");
        ok(token_is(tok, 305, "\xc3\xa9\xf0\x9f\x98\x80", 6), "\\uNNNN and \\UNNNNNNNN");
        ok(token_is(tok, 306, "\\u00e9\\N", 8), "\\u and \\N are not escapes in bytes");
        ok(token_is(tok, 307, "\\q\\z \xc3\xa9\xe4\xb8\xad", 10), "unknown escapes are kept, "
           "raw UTF-8 copied, CRLF accepted");
        ok(token_is(tok, 310, "\xc7\xbf" "1", 3), "octal escapes take at most 3 digits, "
           "\\777 is U+01FF");
        ok(world_token(tok, 308, &len) == NULL && world_token(tok, 311, &len) == NULL,
           "ids missing from the file have no token");
        ids[0] = 300;
        ids[1] = 309;
        ok(world_decode(tok, ids, 2, &out, &len, err, sizeof err) == -1 && out == NULL &&
           !strcmp(err, "id 309 is not in the vocabulary"),
           "decoding an id missing from the file: \"%s\"", err);
    }
    world_free(tok);

    expect_load_error("unterminated.txt", "300 'ab 2\n", -1, ":257: unterminated string literal",
                      "unterminated literal");
    expect_load_error("length.txt", "300 'ab' 2\n301 'abc' 4\n", -1,
                      ":258: declared length 4, decoded 3 bytes", "declared length mismatch");
    expect_load_error("length-utf8.txt", "300 '\\u4e2d' 1\n", -1,
                      ":257: declared length 1, decoded 3 bytes",
                      "length counts UTF-8 bytes, not characters");
    expect_load_error("noid.txt", "x 'a' 1\n", -1, ":257: expected a token id",
                      "line without an id");
    expect_load_error("nolength.txt", "300 'ab'\n", -1, ":257: expected a space and the length",
                      "line without a length");
    expect_load_error("trailing.txt", "300 'ab' 2 x\n", -1, ":257: unexpected text after",
                      "text after the length");
    expect_load_error("noquote.txt", "300 ab 2\n", -1, ":257: expected a Python string literal",
                      "unquoted token");
    expect_load_error("hex.txt", "300 'a\\x4' 2\n", -1, ":257: truncated \\xXX escape",
                      "truncated \\x escape");
    expect_load_error("u.txt", "300 '\\u12' 2\n", -1, ":257: truncated \\u escape",
                      "truncated \\u escape");
    expect_load_error("surrogate.txt", "300 '\\ud800' 3\n", -1,
                      ":257: \\ud800 is not a code point", "surrogate code point");
    expect_load_error("big.txt", "300 '\\U00110000' 4\n", -1,
                      ":257: \\U00110000 is not a code point", "code point above U+10FFFF");
    expect_load_error("bytes-utf8.txt", "300 b'\xc3\xa9' 2\n", -1,
                      ":257: non-ASCII character in a bytes literal", "raw UTF-8 in bytes");
    expect_load_error("bad-utf8.txt", "300 '\xc3(' 2\n", -1,
                      ":257: invalid UTF-8 in string literal", "invalid UTF-8 in a str literal");
    expect_load_error("octal.txt", "300 b'\\400' 1\n", -1, ":257: octal escape \\400 out of "
                      "range", "bytes octal escape above 0377");
    expect_load_error("dup-id.txt", "300 'ab' 2\n300 'cd' 2\n", -1,
                      ":258: id 300 appears twice (first on line 257)", "duplicate id");
    expect_load_error("dup-bytes.txt", "300 'ab' 2\n301 'ab' 2\n", -1,
                      ":258: id 301 has the same bytes as id 300", "duplicate token bytes");
    expect_load_error("zero.txt", "0 'ab' 2\n", -1, ":257: id 0 is reserved for end of text",
                      "id 0 in the file");
    expect_load_error("empty-token.txt", "300 '' 0\n", -1, ":257: empty token", "empty token");
    expect_load_error("huge-id.txt", "99999999999 'ab' 2\n", -1, ":257: expected a token id",
                      "absurd id");
    expect_load_error("missing-byte.txt", "", 'A', ": no token for byte 0x41",
                      "a byte without a token");
}

/* --- streaming decoder -------------------------------------------------- */

/* The whole-input policy: valid characters as they are, U+FFFD for each
 * byte that does not start a valid character (utf8proc_iterate). */
static size_t reference_clean(const uint8_t *s, size_t n, uint8_t *out)
{
    size_t i = 0, k = 0;

    while (i < n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t r = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &cp);

        if (r > 0) {
            memcpy(out + k, s + i, (size_t)r);
            k += (size_t)r;
            i += (size_t)r;
        } else {
            memcpy(out + k, "\xef\xbf\xbd", 3);
            k += 3;
            i++;
        }
    }
    return k;
}

/* Feeds s in pieces ending at the cut positions and flushes; checks that
 * every piece of output is valid UTF-8. */
static size_t stream_pieces(const uint8_t *s, size_t n, const size_t *cuts, size_t n_cuts,
                            uint8_t *out, int *valid)
{
    struct world_stream st;
    uint8_t piece[3 * (64 + 8)];
    size_t k = 0, from = 0, c, w;

    world_stream_init(&st);
    *valid = 1;
    for (c = 0; c <= n_cuts; c++) {
        size_t to = c < n_cuts ? cuts[c] : n;

        w = world_stream_push(&st, s + from, to - from, piece);
        *valid &= utf8proc_decompose(piece, (utf8proc_ssize_t)w, NULL, 0, 0) >= 0;
        memcpy(out + k, piece, w);
        k += w;
        from = to;
    }
    w = world_stream_flush(&st, piece);
    *valid &= utf8proc_decompose(piece, (utf8proc_ssize_t)w, NULL, 0, 0) >= 0;
    memcpy(out + k, piece, w);
    return k + w;
}

static void check_stream(const world_tokenizer *tok)
{
    static const struct {
        const char *name;
        const char *s;
    } cases[] = {
        { "CJK", "\xe4\xb8\xad\xe6\x96\x87 \xe6\xb5\x8b\xe8\xaf\x95\xe3\x80\x82" },
        { "Korean", "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 ok" },
        { "emoji", "a\xf0\x9f\x98\x80" "b\xf0\x9f\x8e\x89" },
        { "ZWJ family", "\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7"
                        "\xe2\x80\x8d\xf0\x9f\x91\xa6!" },
        { "flag + skin tone", "\xf0\x9f\x87\xab\xf0\x9f\x87\xb7\xf0\x9f\x91\x8b\xf0\x9f\x8f\xbd" },
        { "lone continuation", "a\x80\xbf" "b" },
        { "truncated 3-byte", "\xe4\xb8" "A\xe4" },
        { "truncated 4-byte at end", "x\xf0\x9f\x98" },
        { "overlong", "\xc0\xaf\xe0\x80\xaf\xf0\x80\x80\xaf" },
        { "surrogate", "\xed\xa0\x80\xed\xbf\xbf" },
        { "out of range", "\xf4\x90\x80\x80\xf5\x80\xff\xfe" },
        { "max code point", "\xf4\x8f\xbf\xbf\xef\xbf\xbf" },
        { "mixed", "\xe4\xb8\xad\xff\xe6\x96\x87\xc3\xa9\xc3\xf0\x9f\x98\x80\xe2\x80" },
    };
    size_t n_cases = sizeof cases / sizeof cases[0], ci, cut, a, b, n, k, want_len;
    uint8_t want[512], got[512];
    int valid, all_valid;
    struct world_stream st;
    uint8_t out[64];

    for (ci = 0; ci < n_cases; ci++) {
        const uint8_t *s = (const uint8_t *)cases[ci].s;
        size_t bad = 0, cuts[64];

        n = strlen(cases[ci].s);
        want_len = reference_clean(s, n, want);
        all_valid = 1;
        /* One cut at each byte boundary. */
        for (cut = 0; cut <= n; cut++) {
            cuts[0] = cut;
            k = stream_pieces(s, n, cuts, 1, got, &valid);
            bad += k != want_len || memcmp(got, want, k);
            all_valid &= valid;
        }
        /* Two cuts anywhere. */
        for (a = 0; a <= n; a++) {
            for (b = a; b <= n; b++) {
                cuts[0] = a;
                cuts[1] = b;
                k = stream_pieces(s, n, cuts, 2, got, &valid);
                bad += k != want_len || memcmp(got, want, k);
                all_valid &= valid;
            }
        }
        /* Byte at a time: a cut at every boundary at once. */
        for (a = 0; a < n; a++) {
            cuts[a] = a + 1;
        }
        k = stream_pieces(s, n, cuts, n, got, &valid);
        bad += k != want_len || memcmp(got, want, k);
        all_valid &= valid;
        ok(bad == 0 && all_valid, "stream %s: split at every byte boundary gives the "
           "whole-input decoding (%zu mismatches)", cases[ci].name, bad);
    }

    /* Random byte soup (UTF-8 pieces, continuation bytes, leads, ASCII)
     * cut at random places. */
    {
        static const uint8_t soup[] = { 'a', ' ', 0x00, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf,
                                        0xc0, 0xc2, 0xdf, 0xe0, 0xe4, 0xed, 0xef, 0xf0,
                                        0xf4, 0xf5, 0xff };
        size_t trial, bad = 0, cuts[64], n_cuts;
        uint8_t s[48];

        all_valid = 1;
        for (trial = 0; trial < 3000; trial++) {
            n = 1 + rnd() % sizeof s;
            for (a = 0; a < n; a++) {
                s[a] = soup[rnd() % sizeof soup];
            }
            for (n_cuts = 0, a = 1; a < n; a++) {
                if (rnd() % 3 == 0) {
                    cuts[n_cuts++] = a;
                }
            }
            want_len = reference_clean(s, n, want);
            k = stream_pieces(s, n, cuts, n_cuts, got, &valid);
            bad += k != want_len || memcmp(got, want, k);
            all_valid &= valid;
        }
        ok(bad == 0 && all_valid, "stream: 3000 random byte soups cut at random places give "
           "the whole-input decoding (%zu mismatches)", bad);
    }

    /* Exact output of the policy. */
    world_stream_init(&st);
    k = world_stream_push(&st, (const uint8_t *)"a\xe4\xb8", 3, out);
    ok(k == 1 && out[0] == 'a' && st.n_held == 2, "partial character is held");
    k = world_stream_push(&st, (const uint8_t *)"\xad", 1, out);
    ok(k == 3 && !memcmp(out, "\xe4\xb8\xad", 3) && st.n_held == 0,
       "the next byte completes it");
    k = world_stream_push(&st, (const uint8_t *)"\xf0\x9f", 2, out);
    ok(k == 0 && st.n_held == 2, "start of an emoji is held");
    k = world_stream_flush(&st, out);
    ok(k == 6 && !memcmp(out, "\xef\xbf\xbd\xef\xbf\xbd", 6) && st.n_held == 0,
       "flush turns each held byte into U+FFFD");
    k = world_stream_push(&st, (const uint8_t *)"\xe4" "b", 2, out);
    ok(k == 4 && !memcmp(out, "\xef\xbf\xbd" "b", 4), "broken sequence becomes U+FFFD at once");

    /* Token by token, as a chat prints them. */
    {
        const char *text = "\xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x8c\xe4\xb8\x96\xe7\x95\x8c "
                           "\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb \xed\x95\x9c\xea\xb5\xad";
        int32_t *ids;
        size_t n_ids, i, len, pieces_valid = 1;
        uint8_t buf[3 * (128 + 8)];

        n = strlen(text);
        world_encode(tok, (const uint8_t *)text, n, &ids, &n_ids);
        world_stream_init(&st);
        k = 0;
        for (i = 0; i < n_ids; i++) {
            const uint8_t *b = world_token(tok, ids[i], &len);
            size_t w = world_stream_push(&st, b, len, buf);

            pieces_valid &= utf8proc_decompose(buf, (utf8proc_ssize_t)w, NULL, 0, 0) >= 0;
            memcpy(got + k, buf, w);
            k += w;
        }
        k += world_stream_flush(&st, got + k);
        ok(k == n && !memcmp(got, text, n) && pieces_valid, "%zu tokens of CJK, emoji and "
           "Korean stream back as whole characters", n_ids);
        free(ids);
    }
}

/* FNV-1a 64 over (id, length, bytes) of every token, in id order. */
static uint64_t vocabulary_hash(const world_tokenizer *tok, size_t *total)
{
    uint64_t h = 0xcbf29ce484222325ull;
    int32_t id;
    size_t len, k;

    *total = 0;
    for (id = 1; id < world_vocab_size(tok); id++) {
        const uint8_t *b = world_token(tok, id, &len);
        uint8_t head[8];

        if (!b) {
            continue;
        }
        for (k = 0; k < 4; k++) {
            head[k] = (uint8_t)((uint32_t)id >> (8 * k));
            head[4 + k] = (uint8_t)((uint32_t)len >> (8 * k));
        }
        for (k = 0; k < 8; k++) {
            h = (h ^ head[k]) * 0x100000001b3ull;
        }
        for (k = 0; k < len; k++) {
            h = (h ^ b[k]) * 0x100000001b3ull;
        }
        *total += len;
    }
    return h;
}

int main(void)
{
    char err[WORLD_ERRLEN] = "";
    char *path = paths_find_data(WORLD_VOCAB_FILE);
    world_tokenizer *tok = NULL;
    double t0, best = 1e9, t;
    int i;
    size_t len;
    uint8_t *out = NULL;
    int32_t ids[3] = { 1, 70000, 2 };
    uint64_t hash;

    ok(path != NULL, "vocabulary found through RWKV_CHAT_DATADIR");
    if (!path) {
        return tap_done();
    }
    for (i = 0; i < 3; i++) {
        world_free(tok);
        t0 = now();
        tok = world_load(path, err, sizeof err);
        t = now() - t0;
        best = t < best ? t : best;
        if (!tok) {
            break;
        }
    }
    ok(tok != NULL, "World vocabulary loads (%s)", tok ? "no error" : err);
    if (!tok) {
        return tap_done();
    }
    /* Speed is measured by rwkv-tool bench tokenizer, not asserted here. */
    diag("vocabulary loaded in %.1f ms (best of 3)", best * 1e3);
    ok(world_vocab_size(tok) == 65530, "vocab size 65530 (%d)", world_vocab_size(tok));
    /* The figure comes from Python: eval() of each literal, str encoded as
     * UTF-8, hashed the same way. */
    hash = vocabulary_hash(tok, &len);
    ok(hash == 0x5051c95515dafe6eull && len == 373358, "all 65529 tokens decode as Python's "
       "eval() does (FNV-1a %016llx, %zu bytes)", (unsigned long long)hash, len);
    ok(world_token(tok, 0, &len) != NULL && len == 0, "token 0 (end of text) has no bytes");
    ok(world_token(tok, -1, &len) == NULL && world_token(tok, 65530, &len) == NULL,
       "ids -1 and 65530 have no token");
    ok(token_is(tok, 1, "\0", 1) && token_is(tok, 129, "\x80", 1) &&
       token_is(tok, 2423, "\xc2\x80", 2) && token_is(tok, 9804, "\xe2\x80\x82", 3) &&
       token_is(tok, 379, "\"'", 2) && token_is(tok, 93, "\\", 1) &&
       token_is(tok, 3043, "\xe5\x8a", 2) && token_is(tok, 261, "\n\n", 2),
       "sample tokens: \\x00, b'\\x80', '\\x80' (UTF-8), '\\u2002', '\"\\'', '\\\\', bytes pair, "
       "'\\n\\n'");

    check_golden(tok, "fixtures/tokenizer/cases.tsv");
    check_golden(tok, "fixtures/tokenizer/corpus.tsv");

    ok(world_decode(tok, ids, 3, &out, &len, err, sizeof err) == -1 && out == NULL &&
       !strcmp(err, "id 70000 out of range (vocabulary has 65530 ids)"),
       "decoding id 70000: \"%s\"", err);
    ids[1] = -1;
    ok(world_decode(tok, ids, 3, &out, &len, err, sizeof err) == -1 &&
       !strcmp(err, "id -1 out of range (vocabulary has 65530 ids)"),
       "decoding id -1: \"%s\"", err);
    ids[1] = 0;
    ok(world_decode(tok, ids, 3, &out, &len, err, sizeof err) == 0 && len == 2 &&
       out[0] == 0 && out[1] == 1, "id 0 decodes to nothing");
    free(out);

    ref_build(tok);
    check_against_reference(tok);
    check_large(tok);
    check_parsing();
    check_stream(tok);

    free(ref_tokens);
    world_free(tok);
    free(path);
    return tap_done();
}
