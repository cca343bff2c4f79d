/* test_tui_text.c - display width and wrapping of the TUI (app/tui/tui_text.c):
 * CJK two columns, combining marks none, emoji two, malformed UTF-8, word
 * and CJK breaks, hanging indents, and curses agreeing with our widths. */
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/tui/tui_internal.h"
#include "tests/tap.h"

/* tui_text.c's allocation wrapper lives in tui.c; the test brings its own. */
void *tui_xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) {
        abort();
    }
    return p;
}

/* Wraps s at width and joins the lines as "indent:text|indent:text". */
static char *wrapped(const char *s, int width, int columns)
{
    struct tui_span *sp;
    size_t n = tui_text_wrap(s, strlen(s), width, columns, &sp), used = 0;
    char *out = malloc(strlen(s) * 2 + n * 8 + 1);

    for (size_t i = 0; i < n; i++) {
        used += (size_t)sprintf(out + used, "%s%d:%.*s", i ? "|" : "", sp[i].indent,
                                (int)sp[i].len, s + sp[i].off);
    }
    out[used] = '\0';
    free(sp);
    return out;
}

static void check_wrap(const char *s, int width, int columns, const char *want)
{
    char *got = wrapped(s, width, columns), shown[128];
    size_t k = 0;

    /* A TAP description is one line. */
    for (const char *c = s; *c && k + 3 < sizeof(shown); c++) {
        if (*c == '\n') {
            shown[k++] = '\\';
            shown[k++] = 'n';
        } else {
            shown[k++] = *c;
        }
    }
    shown[k] = '\0';
    if (!ok(strcmp(got, want) == 0, "wrap \"%s\" at %d%s", shown, width,
            columns ? " (columns)" : "")) {
        diag("got  %s", got);
        diag("want %s", want);
    }
    free(got);
}

int main(void)
{
    const char *mixed = "你好😀 cafe\xcc\x81";
    size_t i = 0;

    setlocale(LC_ALL, "C.UTF-8");

    ok(tui_text_cpwidth('a') == 1, "ASCII takes one column");
    ok(tui_text_cpwidth(0x4f60) == 2, "CJK ideograph takes two columns");
    ok(tui_text_cpwidth(0xac00) == 2, "Hangul syllable takes two columns");
    ok(tui_text_cpwidth(0x0301) == 0, "combining acute accent takes none");
    ok(tui_text_cpwidth(0x1f600) == 2, "emoji takes two columns");
    ok(tui_text_cpwidth(0xff01) == 2, "fullwidth punctuation takes two columns");
    ok(tui_text_cpwidth('\t') == 1 && tui_text_cpwidth(0x7f) == 1,
       "control characters take one column (drawn as '?')");
    ok(tui_text_width(mixed, strlen(mixed)) == 11, "width of \"%s\" is 11 (got %d)", mixed,
       tui_text_width(mixed, strlen(mixed)));

    ok(tui_text_decode("\xff\xfe", 2, &i) == 0xfffd && i == 1,
       "a malformed byte decodes to U+FFFD and advances one byte");
    ok(tui_text_width("\xe4\xbd", 2) == 2, "a truncated sequence is two replacement characters");
    ok(tui_text_fit("你好", 6, 3) == 3, "fit: one CJK character in three columns");
    ok(tui_text_fit("ab你", 5, 3) == 2, "fit: a wide character never straddles the edge");

    /* Characters of several code points (issue 17): one cluster each,
     * as wide as what is drawn of them. */
    {
        static const struct {
            const char *s, *what;
            int width;
        } one[] = {
            { "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd", "thumbs up with a skin-tone modifier", 2 },
            { "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7",
              "a ZWJ family", 2 },
            { "\xe2\x9d\xa4\xef\xb8\x8f", "a heart with VS16", 1 },
            { "\xf0\x9f\x87\xba\xf0\x9f\x87\xb8", "a flag (two regional indicators)", 1 },
            { "e\xcc\x81\xcc\xa3", "e with two combining marks", 1 },
            { "\xe0\xa4\x95\xe0\xa4\xbe", "Devanagari ka with its vowel sign", 1 },
        };

        for (size_t k = 0; k < sizeof(one) / sizeof(one[0]); k++) {
            int w = -1;
            size_t len = strlen(one[k].s), end = tui_text_cluster(one[k].s, len, 0, &w);

            ok(end == len && w == one[k].width && tui_text_width(one[k].s, len) == w,
               "%s: one character of %d columns (end %zu of %zu, width %d)", one[k].what,
               one[k].width, end, len, w);
        }
        {
            int w1 = -1, w2 = -1;
            size_t e1 = tui_text_cluster("\r\n", 2, 0, &w1), e2 = tui_text_cluster("\r\n", 2, 1, &w2);

            ok(e1 == 1 && e2 == 2 && w1 == 1 && w2 == 1, "CR and LF stay two characters");
        }
        ok(tui_text_fit("ab\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd", 10, 3) == 2,
           "fit: an emoji with its modifier does not fit in one column, and is not split");
        ok(tui_text_fit("ab\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd", 10, 4) == 10,
           "fit: an emoji with its modifier fits in two columns");
    }
    check_wrap("xx\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbdyy", 4, 0,
               "0:xx\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd|0:yy");
    check_wrap("x\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd", 4, 0,
               "0:x\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd|0:\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd");
    check_wrap("ab\xe4\xbd\xa0" "e\xcc\x81", 3, 0, "0:ab|0:\xe4\xbd\xa0" "e\xcc\x81");
    check_wrap("hello world foo", 11, 0, "0:hello world|0:foo");
    check_wrap("hello   world", 7, 0, "0:hello|0:world");
    check_wrap("abcdefghij", 4, 0, "0:abcd|0:efgh|0:ij");
    check_wrap("你好世界你好", 5, 0, "0:你好|0:世界|0:你好");
    check_wrap("abc 你好世界", 7, 0, "0:abc 你|0:好世界");
    check_wrap("😀😀😀", 4, 0, "0:😀😀|0:😀");
    check_wrap("cafe\xcc\x81 cafe\xcc\x81", 5, 0, "0:cafe\xcc\x81|0:cafe\xcc\x81");
    check_wrap("a\n\nb", 10, 0, "0:a|0:|0:b");
    check_wrap("", 10, 0, "0:");
    check_wrap("  - one two three", 10, 0, "0:  - one|2:two|2:three");
    check_wrap("/x   does a thing", 12, 1, "0:/x   does a|5:thing");
    check_wrap("/x   does a thing", 12, 0, "0:/x   does a|0:thing");
    /* "label: text" (/info) continues under its text; a ": " past the
     * label width, or after the first two spaces, is the text's own */
    check_wrap("key: one two three", 10, 1, "0:key: one|5:two|5:three");
    check_wrap("knobs: top_p 0.3  top_k 0", 16, 1, "0:knobs: top_p 0.3|7:top_k 0");
    check_wrap("abcdefghijklmnopqrstuvwxyz: a b", 30, 1, "0:abcdefghijklmnopqrstuvwxyz: a|0:b");
    check_wrap("/x   does: a thing", 12, 1, "0:/x   does: a|5:thing");

    /* curses must count the same columns as we do, or panels drift. */
    FILE *out = fopen("/dev/null", "w"), *in = fopen("/dev/null", "r");
    SCREEN *scr = out && in ? newterm("xterm", out, in) : NULL;

    if (!scr) {
        skip("no xterm terminfo entry to draw with");
        skip("no xterm terminfo entry to draw with");
        skip("no xterm terminfo entry to draw with");
    } else {
        WINDOW *w = newwin(1, 40, 0, 0);
        int used = tui_text_draw(w, mixed, strlen(mixed), 40);

        ok(used == 11 && getcurx(w) == 11, "curses puts the cursor where our widths say (%d, %d)",
           used, getcurx(w));
        wmove(w, 0, 0);
        used = tui_text_draw(w, "ab你好", strlen("ab你好"), 5);
        ok(used == 4 && getcurx(w) == 4, "drawing stops before a wide character that would not fit");
        {
            const char *emoji = "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd ok \xf0\x9f\x91\xa8\xe2\x80\x8d"
                                "\xf0\x9f\x91\xa9 \xe2\x9d\xa4\xef\xb8\x8f \xf0\x9f\x87\xba\xf0\x9f\x87\xb8 "
                                "\xe0\xa4\x95\xe0\xa4\xbe!";
            int want = tui_text_width(emoji, strlen(emoji));

            wmove(w, 0, 0);
            used = tui_text_draw(w, emoji, strlen(emoji), 40);
            ok(used == want && want == 15 && getcurx(w) == want,
               "emoji sequences, flags and vowel signs: curses puts the cursor where our widths "
               "say (%d, %d, want 15)", used, getcurx(w));
        }
        delwin(w);
        endwin();
        delscreen(scr);
    }
    if (out) {
        fclose(out);
    }
    if (in) {
        fclose(in);
    }
    return tap_done();
}
