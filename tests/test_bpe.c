/* test_bpe.c - the byte-level BPE tokenizer (20B_tokenizer.json): goldens
 * from the reference implementation, round trips, invalid UTF-8, special
 * tokens, the streaming decoder on split characters, load errors, and the
 * choice of tokenizer from a vocabulary size or a file. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "tap.h"
#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/world.h"

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

/* xorshift64*: deterministic test data. */
static uint32_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

static const char *src_path(const char *rel)
{
    static char buf[4][4096];
    static int next;
    const char *dir = getenv("TOP_SRCDIR");
    char *b = buf[next++ & 3];

    snprintf(b, sizeof buf[0], "%s/%s", dir ? dir : ".", rel);
    return b;
}

static int hex_digit(int c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

static int is_valid_utf8(const uint8_t *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t r = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &cp);

        if (r <= 0) {
            return 0;
        }
        i += (size_t)r;
    }
    return 1;
}

/* decode(encode(s)) == NFC(s) for valid UTF-8 s without special tokens
 * (== s when s is already NFC). */
static int round_trips(const bpe_tokenizer *tok, const uint8_t *s, size_t n)
{
    utf8proc_uint8_t *nfc = NULL;
    utf8proc_ssize_t nfc_len;
    int32_t *ids = NULL;
    uint8_t *back = NULL;
    size_t n_ids, back_len;
    char err[BPE_ERRLEN];
    int good;

    nfc_len = n ? utf8proc_map(s, (utf8proc_ssize_t)n, &nfc, UTF8PROC_STABLE | UTF8PROC_COMPOSE)
                : 0;
    good = nfc_len >= 0 && bpe_encode(tok, s, n, &ids, &n_ids) == 0 &&
           bpe_decode(tok, ids, n_ids, &back, &back_len, err, sizeof err) == 0 &&
           back_len == (size_t)nfc_len && (n == 0 || !memcmp(back, nfc, back_len));
    free(nfc);
    free(ids);
    free(back);
    return good;
}

static void check_golden(const bpe_tokenizer *tok)
{
    const char *name = src_path("tests/golden/bpe/20b.txt");
    char *data = read_file(name, NULL), *line, *save = NULL;
    size_t lines = 0, enc_ok = 0, trips = 0, trips_ok = 0, invalid = 0, invalid_ok = 0;
    size_t total_bytes = 0, total_ids = 0;
    int shown = 0;

    if (!data) {
        ok(0, "%s readable", name);
        return;
    }
    for (line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *tab = strchr(line, '\t'), *p, *endp, err[BPE_ERRLEN];
        size_t hex_len, n = 0, n_want = 0, n_ids = 0, i, back_len;
        uint8_t *bytes, *back = NULL;
        int32_t *want, *ids = NULL;

        if (!tab) {
            continue;
        }
        hex_len = (size_t)(tab - line);
        bytes = malloc(hex_len / 2 + 1);
        want = malloc((strlen(line) + 1) * sizeof *want);
        for (i = 0; i + 1 < hex_len; i += 2) {
            bytes[n++] = (uint8_t)(hex_digit(line[i]) << 4 | hex_digit(line[i + 1]));
        }
        for (p = tab + 1; *p; p = endp) {
            long v = strtol(p, &endp, 10);

            if (endp == p) {
                break;
            }
            want[n_want++] = (int32_t)v;
        }
        lines++;
        total_bytes += n;
        total_ids += n_want;
        if (bpe_encode(tok, bytes, n, &ids, &n_ids) == 0 && n_ids == n_want &&
            !memcmp(ids, want, n_ids * sizeof *ids)) {
            enc_ok++;
        } else if (shown++ < 3) {
            diag("golden line %zu: %.60s... gives %zu ids, want %zu", lines, line, n_ids, n_want);
        }
        if (!is_valid_utf8(bytes, n)) {
            /* Invalid bytes became U+FFFD: the decoding is valid UTF-8
             * holding at least one. */
            invalid++;
            invalid_ok += ids && bpe_decode(tok, ids, n_ids, &back, &back_len, err,
                                            sizeof err) == 0 &&
                          is_valid_utf8(back, back_len) &&
                          memmem(back, back_len, "\xEF\xBF\xBD", 3) != NULL;
        } else if (!memmem(bytes, n, "<|endoftext|>", 13) && !memmem(bytes, n, "<|padding|>", 11)) {
            trips++;
            trips_ok += round_trips(tok, bytes, n);
        }
        free(back);
        free(ids);
        free(bytes);
        free(want);
    }
    free(data);
    ok(lines >= 600 && enc_ok == lines, "20b.txt: %zu/%zu lines (%zu bytes, %zu ids) encode to "
       "the reference's ids", enc_ok, lines, total_bytes, total_ids);
    ok(trips > 400 && trips_ok == trips, "20b.txt: decode(encode(x)) == NFC(x) for %zu/%zu "
       "valid lines", trips_ok, trips);
    ok(invalid > 50 && invalid_ok == invalid, "20b.txt: %zu/%zu lines with invalid UTF-8 "
       "decode to valid UTF-8 with U+FFFD", invalid_ok, invalid);
}

/* Encodes s; compares with the ids. */
static int encodes_to(const bpe_tokenizer *tok, const char *s, size_t n, const int32_t *want,
                      size_t n_want)
{
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int good = bpe_encode(tok, (const uint8_t *)s, n, &ids, &n_ids) == 0 && n_ids == n_want &&
               (n_ids == 0 || !memcmp(ids, want, n_ids * sizeof *ids));

    free(ids);
    return good;
}

/* Encodes s and decodes it again; compares with want. */
static int decodes_to(const bpe_tokenizer *tok, const char *s, size_t n, const char *want,
                      size_t want_len)
{
    int32_t *ids = NULL;
    uint8_t *back = NULL;
    size_t n_ids, back_len = 0;
    char err[BPE_ERRLEN];
    int good = bpe_encode(tok, (const uint8_t *)s, n, &ids, &n_ids) == 0 &&
               bpe_decode(tok, ids, n_ids, &back, &back_len, err, sizeof err) == 0 &&
               back_len == want_len && !memcmp(back, want, want_len);

    free(ids);
    free(back);
    return good;
}

static void check_behaviour(const bpe_tokenizer *tok)
{
    static const int32_t eot[] = { 0 }, eot_pad[] = { 89, 0, 1, 90 };
    static const int32_t two_fffd[] = { 66, 42481, 67 };   /* "a", U+FFFD U+FFFD, "b" */
    size_t len = 99, n_ids;
    const uint8_t *b;
    int32_t *ids = NULL, bad[2] = { 50277, -1 };
    uint8_t *out = NULL;
    char err[BPE_ERRLEN];

    ok(bpe_vocab_size(tok) == 50277, "vocabulary size is 50277 (%d)", bpe_vocab_size(tok));
    ok(encodes_to(tok, "<|endoftext|>", 13, eot, 1), "\"<|endoftext|>\" in the text is id 0");
    ok(encodes_to(tok, "x<|endoftext|><|padding|>y", 26, eot_pad, 4),
       "special tokens are cut out of the text around them");
    b = bpe_token(tok, 0, &len);
    ok(b != NULL && len == 0, "end of text (id 0) is a token with no bytes");
    b = bpe_token(tok, 1, &len);
    ok(b != NULL && len == 0, "<|padding|> (id 1) decodes to nothing");
    b = bpe_token(tok, 50276, &len);
    ok(b && len == 2 && !memcmp(b, "  ", 2), "id 50276 is the added token of two spaces");
    ok(bpe_token(tok, 50277, &len) == NULL && bpe_token(tok, -1, &len) == NULL,
       "ids outside the vocabulary have no bytes");
    ok(bpe_decode(tok, bad, 1, &out, &len, err, sizeof err) == -1 && out == NULL &&
       strstr(err, "id 50277 out of range"), "decoding an unknown id fails: %s", err);
    ok(encodes_to(tok, "a\x80\x81" "b", 4, two_fffd, 3),
       "each invalid byte becomes U+FFFD before tokenizing");
    ok(decodes_to(tok, "x\xE2\x82 y", 5, "x\xEF\xBF\xBD y", 6),
       "a truncated character is one U+FFFD (maximal subpart)");
    ok(decodes_to(tok, "\xED\xA0\x80", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD", 9),
       "an encoded surrogate is three U+FFFD");
    ok(decodes_to(tok, "cafe\xCC\x81", 6, "caf\xC3\xA9", 5), "text is normalized to NFC");
    ok(bpe_encode(tok, (const uint8_t *)"", 0, &ids, &n_ids) == 0 && ids && n_ids == 0,
       "empty input: no ids");
    free(ids);

    /* Random valid UTF-8 from every plane (no surrogates): round trips. */
    {
        size_t trial, good = 0;
        uint8_t s[256];

        for (trial = 0; trial < 2000; trial++) {
            size_t n = 0;

            while (n < 200) {
                uint32_t r = rnd() % 8;
                int32_t cp = r < 3 ? (int32_t)(rnd() % 128) : r < 5 ? (int32_t)(rnd() % 0x800)
                             : r < 7 ? (int32_t)(rnd() % 0x10000) : (int32_t)(rnd() % 0x110000);

                if ((cp >= 0xD800 && cp < 0xE000)) {
                    continue;
                }
                n += (size_t)utf8proc_encode_char(cp, s + n);
            }
            good += round_trips(tok, s, n);
        }
        ok(good == 2000, "2000 random valid UTF-8 texts: decode(encode(x)) == NFC(x) (%zu)",
           good);
    }

    /* One long word: the merge loop is not quadratic enough to matter and
     * gives the bytes back. */
    {
        size_t n = 1 << 20, i, back_len;
        uint8_t *s = malloc(n), *back = NULL;
        int rc;

        for (i = 0; i < n; i++) {
            s[i] = (uint8_t)"abcdefghijklmnopqrstuvwxyz"[rnd() % 26];
        }
        rc = bpe_encode(tok, s, n, &ids, &n_ids);
        ok(rc == 0 && n_ids > n / 8 && n_ids < n && bpe_decode(tok, ids, n_ids, &back, &back_len,
                                                              err, sizeof err) == 0 &&
           back_len == n && !memcmp(back, s, n), "a 1 MiB word of letters encodes and decodes "
           "back (%zu ids)", n_ids);
        free(ids);
        free(back);
        free(s);
    }
}

/* Streams the tokens of s through the World stream, cutting every token's
 * bytes at each position in turn; the output is s and never holds a partial
 * character. */
static void check_stream(const bpe_tokenizer *tok)
{
    static const char *const texts[] = {
        "\xe4\xb8\xad\xe6\x96\x87\xe7\x9a\x84\xe5\x88\x86\xe8\xaf\x8d \xe6\xb5\x8b\xe8\xaf\x95",
        "emoji \xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd and a family "
        "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7",
        "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d "
        "\xd8\xa7\xd9\x84\xd8\xb9\xd8\xb1\xd8\xa8\xd9\x8a\xd8\xa9",
    };
    size_t t;

    for (t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        const uint8_t *s = (const uint8_t *)texts[t];
        size_t n = strlen(texts[t]), n_ids, i, split_tokens = 0, bad = 0, shift;
        int32_t *ids = NULL;
        int all_valid = 1;

        if (bpe_encode(tok, s, n, &ids, &n_ids) < 0) {
            ok(0, "stream text %zu encodes", t);
            continue;
        }
        for (i = 0; i < n_ids; i++) {
            size_t len;
            const uint8_t *b = bpe_token(tok, ids[i], &len);

            split_tokens += !is_valid_utf8(b, len);
        }
        /* shift 0: whole tokens; shift k: each token cut after its k-th byte. */
        for (shift = 0; shift < 4; shift++) {
            struct world_stream st;
            uint8_t out[1024], piece[64];
            size_t k = 0, w;

            world_stream_init(&st);
            for (i = 0; i < n_ids; i++) {
                size_t len, cut;
                const uint8_t *b = bpe_token(tok, ids[i], &len);

                cut = shift && shift < len ? shift : len;
                w = world_stream_push(&st, b, cut, piece);
                all_valid &= is_valid_utf8(piece, w);
                memcpy(out + k, piece, w);
                k += w;
                w = world_stream_push(&st, b + cut, len - cut, piece);
                all_valid &= is_valid_utf8(piece, w);
                memcpy(out + k, piece, w);
                k += w;
            }
            k += world_stream_flush(&st, out + k);
            bad += k != n || memcmp(out, s, n);
        }
        ok(split_tokens > 0 && bad == 0 && all_valid, "stream text %zu: %zu of %zu tokens end "
           "inside a character; streamed whole and cut, the output is the text, in whole "
           "characters", t, split_tokens, n_ids);
        free(ids);
    }
}

/* A small tokenizer.json; bad_merge etc. change one part. */
static void expect_error(const char *what, const char *json, const char *want)
{
    char err[BPE_ERRLEN];
    bpe_tokenizer *tok = bpe_load_text("t.json", json, strlen(json), err, sizeof err);

    ok(tok == NULL && strstr(err, want) && !strncmp(err, "t.json: ", 8), "%s: %s", what, err);
    bpe_free(tok);
}

/* The 256 one-byte tokens (byte-level alphabet) as JSON members, ids 0..255. */
static char *alphabet_vocab(void)
{
    char *s = malloc(256 * 24), *p = s;
    int b, k = 0;

    for (b = 0; b < 256; b++) {
        int shown = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        int32_t cp = shown ? b : 256 + k++;
        uint8_t u[4];
        size_t n = (size_t)utf8proc_encode_char(cp, u);

        if (cp == '"' || cp == '\\') {
            p += sprintf(p, "\"\\%c\":%d,", (char)cp, b);
        } else {
            p += sprintf(p, "\"%.*s\":%d,", (int)n, (const char *)u, b);
        }
    }
    *p = 0;
    return s;
}

static void check_loading(void)
{
    char *alpha = alphabet_vocab(), json[16384], err[BPE_ERRLEN];
    const char *pipe = "\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\","
                       "\"add_prefix_space\":false}";
    bpe_tokenizer *tok;

    /* A working one: "a b" and "ab c" merge; ties go to the leftmost pair. */
    snprintf(json, sizeof json, "{%s,\"added_tokens\":[{\"id\":259,\"content\":\"<s>\","
             "\"special\":true,\"normalized\":false}],\"model\":{\"type\":\"BPE\",\"vocab\":{%s"
             "\"ab\":256,\"abc\":257,\"aa\":258},\"merges\":[\"a b\",\"ab c\",[\"a\",\"a\"]]}}",
             pipe, alpha);
    tok = bpe_load_text("t.json", json, strlen(json), err, sizeof err);
    ok(tok != NULL, "a small tokenizer.json loads (%s)", tok ? "ok" : err);
    if (tok) {
        static const int32_t abc[] = { 257, 32, 256, 97 }, aaa[] = { 258, 97 };
        static const int32_t special[] = { 97, 259, 98 };

        ok(bpe_vocab_size(tok) == 260, "its vocabulary size is the largest id + 1");
        ok(encodes_to(tok, "abc aba", 7, abc, 4), "merges apply by rank within words");
        ok(encodes_to(tok, "aaa", 3, aaa, 2), "equal ranks merge the leftmost pair first");
        ok(encodes_to(tok, "a<s>b", 5, special, 3), "an added token is cut out of the text");
        bpe_free(tok);
    }

    expect_error("not JSON", "vocab 1 2 3", "not valid JSON at byte");
    expect_error("truncated JSON", "{\"model\":{\"vocab\":{\"a\":0", "truncated");
    expect_error("no vocabulary", "{\"model\":{}}", "no model.vocab: not a tokenizer.json");
    snprintf(json, sizeof json, "{%s,\"model\":{\"type\":\"WordPiece\",\"vocab\":{%s\"x\":999}}}",
             pipe, alpha);
    expect_error("another model type", json, "model type \"WordPiece\" is not supported");
    snprintf(json, sizeof json, "{\"pre_tokenizer\":{\"type\":\"Whitespace\"},\"model\":{\"vocab\":"
             "{%s\"x\":999}}}", alpha);
    expect_error("another pre-tokenizer", json, "the pre-tokenizer is not ByteLevel");
    snprintf(json, sizeof json, "{\"normalizer\":{\"type\":\"NFKC\"},\"pre_tokenizer\":{\"type\":"
             "\"ByteLevel\"},\"model\":{\"vocab\":{%s\"x\":999}}}", alpha);
    expect_error("another normalizer", json, "normalizer \"NFKC\" is not supported");
    snprintf(json, sizeof json, "{%s,\"model\":{\"vocab\":{%s\"ab\":256},\"merges\":[\"a zz\"]}}",
             pipe, alpha);
    expect_error("merge of a token not in the vocabulary", json,
                 "merge 0 (\"a zz\"): \"zz\" is not in the vocabulary");
    snprintf(json, sizeof json, "{%s,\"model\":{\"vocab\":{%s\"ab\":256},\"merges\":[\"b a\"]}}",
             pipe, alpha);
    expect_error("merge whose result is not in the vocabulary", json,
                 "merge 0 (\"b a\"): the merged token is not in the vocabulary");
    snprintf(json, sizeof json, "{%s,\"model\":{\"vocab\":{\"a\":0,\"b\":1}}}", pipe);
    expect_error("a vocabulary without every byte", json, "byte 0x00 has no token");
    snprintf(json, sizeof json, "{%s,\"model\":{\"vocab\":{%s\"\\u4e2d\":256}}}", pipe, alpha);
    expect_error("a token outside the byte-level alphabet", json,
                 "is not written in the byte-level alphabet");
    snprintf(json, sizeof json, "{%s,\"added_tokens\":[{\"id\":300,\"content\":\"x\","
             "\"lstrip\":true}],\"model\":{\"vocab\":{%s\"ab\":256}}}", pipe, alpha);
    expect_error("lstrip", json, "added token 300: lstrip, rstrip and single_word are not "
                 "supported");
    free(alpha);

    tok = bpe_load("tests/tmp/no-such-tokenizer.json", err, sizeof err);
    ok(tok == NULL && !strcmp(err, "tests/tmp/no-such-tokenizer.json: No such file or directory"),
       "a missing file: %s", err);
}

static void check_choice(void)
{
    char err[TOKENIZER_ERRLEN];
    tokenizer *t;

    ok(!strcmp(tokenizer_file_for_vocab(50277), BPE_VOCAB_FILE) &&
       !strcmp(tokenizer_file_for_vocab(50304), BPE_VOCAB_FILE),
       "vocabulary sizes 50277 and 50304 (Pile) pick %s", BPE_VOCAB_FILE);
    ok(!strcmp(tokenizer_file_for_vocab(65536), WORLD_VOCAB_FILE),
       "vocabulary size 65536 picks the World vocabulary");
    ok(tokenizer_file_for_vocab(1000) == NULL && tokenizer_file_for_vocab(50276) == NULL,
       "other sizes pick none");
    t = tokenizer_load(src_path("share/" BPE_VOCAB_FILE), err, sizeof err);
    ok(t && tokenizer_kind(t) == TOKENIZER_BPE && tokenizer_vocab_size(t) == 50277 &&
       !strcmp(tokenizer_describe(t), "BPE (20B_tokenizer.json)"), "tokenizer_load reads a "
       "tokenizer.json as BPE (%s)", t ? tokenizer_describe(t) : err);
    tokenizer_free(t);
    t = tokenizer_load(src_path("share/" WORLD_VOCAB_FILE), err, sizeof err);
    ok(t && tokenizer_kind(t) == TOKENIZER_WORLD && tokenizer_vocab_size(t) == 65530,
       "tokenizer_load reads the World vocabulary as World (%s)",
       t ? tokenizer_describe(t) : err);
    tokenizer_free(t);
    t = tokenizer_load("tests/tmp/no-such-vocab", err, sizeof err);
    ok(!t && strstr(err, "no-such-vocab: No such file or directory"), "a missing file: %s", err);
}

int main(void)
{
    char err[BPE_ERRLEN];
    bpe_tokenizer *tok = bpe_load(src_path("share/" BPE_VOCAB_FILE), err, sizeof err);

    ok(tok != NULL, "share/%s loads (%s)", BPE_VOCAB_FILE, tok ? "ok" : err);
    if (tok) {
        check_golden(tok);
        check_behaviour(tok);
        check_stream(tok);
        bpe_free(tok);
    }
    check_loading();
    check_choice();
    return tap_done();
}
