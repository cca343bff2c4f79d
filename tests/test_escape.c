/* test_escape.c - rwkv_escape: names from files shown on one line, visibly,
 * with their head and tail kept when too long. */
#include "engine/base/escape.h"
#include "tests/tap.h"

/* 1 if s holds no byte below 0x20 and no DEL. */
static int printable(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f) {
            return 0;
        }
    }
    return 1;
}

static void same(const char *in, size_t inlen, const char *want, const char *what)
{
    char out[RWKV_ESCAPE_LEN];

    rwkv_escape(out, sizeof out, in, inlen);
    if (!ok(strcmp(out, want) == 0, "%s", what)) {
        diag("got \"%s\", want \"%s\"", out, want);
    }
}

int main(void)
{
    char out[RWKV_ESCAPE_LEN], small[32], big[600], again[RWKV_ESCAPE_LEN];
    size_t i;

    same("blocks.0.att.key.weight", 23, "blocks.0.att.key.weight", "a plain name is unchanged");
    same("a\nb\r\tc", 6, "a\\nb\\r\\tc", "newline, return and tab are \\n \\r \\t");
    same("\x1b[31mred", 8, "\\x1b[31mred", "an escape sequence shows its ESC as \\x1b");
    same("a\0b\x7f", 4, "a\\x00b\\x7f", "NUL and DEL are \\x00 and \\x7f");
    same("caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80", 14, "caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80",
         "valid UTF-8 (2, 3 and 4 bytes) is kept");
    same("\xff\xfe", 2, "\\xff\\xfe", "bytes that are never UTF-8 are \\xHH");
    same("\xc3", 1, "\\xc3", "a truncated sequence is \\xHH");
    same("\xc0\xaf", 2, "\\xc0\\xaf", "an overlong '/' is two \\xHH");
    same("\xed\xa0\x80", 3, "\\xed\\xa0\\x80", "an encoded surrogate is three \\xHH");
    same("\xf4\x90\x80\x80", 4, "\\xf4\\x90\\x80\\x80", "a code point above U+10FFFF is \\xHH");
    same("\xc2\x9b" "31m", 5, "\\u009b31m", "a C1 CSI (U+009B) is \\u009b");
    same("a\xe2\x80\xae" "b\xe2\x80\xa8", 8, "a\\u202eb\\u2028",
         "a right-to-left override and a line separator are \\uHHHH");
    same("C:\\x1b", 6, "C:\\x1b", "a backslash stays, so escaping twice changes nothing");

    /* too long: head and tail kept around "...", within the room given */
    for (i = 0; i < 300; i++) {
        big[i] = (char)('a' + i % 26);
    }
    memcpy(big + 300 - 7, ".weight", 7);
    rwkv_escape(out, sizeof out, big, 300);
    ok(strlen(out) == sizeof out - 1 && strncmp(out, big, 10) == 0 && strstr(out, "...") &&
       strcmp(out + strlen(out) - 7, ".weight") == 0,
       "a 300-byte name fits %zu bytes as head...tail (%zu)", sizeof out, strlen(out));

    /* a long run of newlines: every piece stays whole */
    memset(big, '\n', 300);
    rwkv_escape(small, sizeof small, big, 300);
    ok(strlen(small) < sizeof small && printable(small) && strstr(small, "...") &&
       strncmp(small, "\\n\\n", 4) == 0 && strcmp(small + strlen(small) - 2, "\\n") == 0 &&
       !strstr(small, "\\."),
       "300 newlines cut at whole escapes: \"%s\"", small);
    {
        int cut = 0;

        for (i = 0; small[i]; i++) {
            if (small[i] == '\\' && small[i + 1] != 'n') {
                cut = 1;
            }
        }
        ok(!cut, "no escape is split by the cut");
    }

    /* escaping what was escaped changes nothing, even when capped */
    for (i = 0; i < 300; i++) {
        big[i] = (char)(i * 37 + 1);
    }
    rwkv_escape(out, sizeof out, big, 300);
    ok(printable(out) && strlen(out) < sizeof out, "300 arbitrary bytes: one printable line");
    rwkv_escape_str(again, sizeof again, out);
    ok(strcmp(out, again) == 0, "escaping the escaped name again gives the same text");

    /* the macros, several in one call */
    snprintf(big, sizeof big, "%s: tensor %s: bad", RWKV_ESC("dir/a\nb.pth"),
             RWKV_ESCN("x\x1b[31my", 7));
    ok(strcmp(big, "dir/a\\nb.pth: tensor x\\x1b[31my: bad") == 0,
       "RWKV_ESC and RWKV_ESCN in one message: \"%s\"", big);

    rwkv_escape(small, 4, "abcdef", 6);
    ok(strcmp(small, "...") == 0, "room for nothing but \"...\"");
    rwkv_escape(small, 1, "abcdef", 6);
    ok(small[0] == '\0', "room for the NUL only");
    return tap_done();
}
