/* tui_text.c - UTF-8 decoding, display width and wrapping for the TUI. */
#include "app/tui/tui_internal.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <wchar.h>

int32_t tui_text_decode(const char *s, size_t n, size_t *i)
{
    utf8proc_int32_t cp;
    utf8proc_ssize_t len;

    len = utf8proc_iterate((const utf8proc_uint8_t *)s + *i, (utf8proc_ssize_t)(n - *i), &cp);
    if (len <= 0) {
        (*i)++;
        return 0xfffd;
    }
    *i += (size_t)len;
    return cp;
}

/* Control characters are drawn as '?', so they take one column. */
static int is_control(int32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp < 0xa0);
}

int tui_text_cpwidth(int32_t cp)
{
    if (is_control(cp)) {
        return 1;
    }
    return utf8proc_charwidth(cp);
}

/* Whether cp, after the first code point of a cluster, is drawn with it:
 * combining marks (accents, Indic vowel signs, Hangul jamo that join a
 * syllable).  Not drawn: variation selectors, the zero width joiner and
 * what it joins, emoji skin-tone modifiers, the second half of a flag and
 * other format characters.  Terminals disagree on the width of those
 * sequences (one emoji of two columns, or each part on its own), and
 * curses counts each part: drawing only the first keeps every panel where
 * it belongs, in any terminal. */
static int drawn_with_base(int32_t cp)
{
    utf8proc_category_t cat = utf8proc_category(cp);

    if ((cp >= 0xfe00 && cp <= 0xfe0f) || (cp >= 0xe0100 && cp <= 0xe01ef)) {
        return 0;
    }
    if (cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_ME ||
        cat == UTF8PROC_CATEGORY_MC) {
        return 1;
    }
    return utf8proc_charwidth(cp) == 0 && cat != UTF8PROC_CATEGORY_CF &&
           cat != UTF8PROC_CATEGORY_CC;
}

size_t tui_text_cluster(const char *s, size_t n, size_t i, int *width)
{
    utf8proc_int32_t state = 0;
    int32_t first = tui_text_decode(s, n, &i), prev = first;
    int w = tui_text_cpwidth(first);

    /* Controls (drawn as '?', a newline ends a line) stand alone. */
    while (i < n && !is_control(first)) {
        size_t j = i;
        int32_t cp = tui_text_decode(s, n, &j);

        if (is_control(cp) || utf8proc_grapheme_break_stateful(prev, cp, &state)) {
            break;
        }
        if (drawn_with_base(cp)) {
            w += utf8proc_charwidth(cp);
        }
        prev = cp;
        i = j;
    }
    *width = w;
    return i;
}

int tui_text_width(const char *s, size_t n)
{
    size_t i = 0;
    int w = 0, cw;

    while (i < n) {
        i = tui_text_cluster(s, n, i, &cw);
        w += cw;
    }
    return w;
}

size_t tui_text_fit(const char *s, size_t n, int maxw)
{
    size_t i = 0;
    int w = 0;

    while (i < n) {
        int cw;
        size_t j = tui_text_cluster(s, n, i, &cw);

        if (w + cw > maxw) {
            break;
        }
        w += cw;
        i = j;
    }
    return i;
}

struct spans {
    struct tui_span *v;
    size_t n, cap;
};

/* Appends a line s[off..end) drawn after indent blanks, trailing blanks
 * removed. */
static void spans_push(struct spans *sp, const char *s, size_t off, size_t end, int indent)
{
    while (end > off && s[end - 1] == ' ') {
        end--;
    }
    if (sp->n == sp->cap) {
        sp->cap = sp->cap ? sp->cap * 2 : 16;
        sp->v = tui_xrealloc(sp->v, sp->cap * sizeof(*sp->v));
    }
    sp->v[sp->n].off = off;
    sp->v[sp->n].len = end - off;
    sp->v[sp->n].indent = indent;
    sp->n++;
}

/* The widest "label" of a "label: text" line that continues under text. */
#define COLUMN_LABEL_MAX 24

/* Greedy wrap of one paragraph s[start..end) (no '\n' inside), one
 * character (grapheme cluster) at a time: a line never splits one.  A line may
 * break after a run of spaces (the spaces are dropped) or on either side
 * of a wide character, since CJK text has no spaces.  Continuation lines
 * keep the paragraph's leading blanks (lists), or with columns set its
 * second column ("NAME   text"), unless that leaves too little room. */
static void wrap_paragraph(struct spans *sp, const char *s, size_t start, size_t end, int width,
                           int columns)
{
    size_t i = start, line = start, brk = 0;
    int col = 0, brk_col = 0, have_brk = 0, indent = 0, lead = 0, room = width;

    while (start + (size_t)lead < end && s[start + lead] == ' ') {
        lead++;
    }
    if (columns) {
        /* "NAME   text" or "label: text": continuation lines start under
         * the text, after the first run of two spaces or the first ": ",
         * whichever comes first (a label's ": " only within
         * COLUMN_LABEL_MAX columns: later it is the text's own). */
        const char *from = s + start + lead;
        size_t rest = end - start - (size_t)lead;
        const char *gap = memmem(from, rest, "  ", 2), *colon = memmem(from, rest, ": ", 2);

        if (colon && (!gap || colon < gap) &&
            tui_text_width(from, (size_t)(colon - from)) <= COLUMN_LABEL_MAX) {
            gap = colon + 1;
        }
        if (gap) {
            size_t after = (size_t)(gap - s);

            while (after < end && s[after] == ' ') {
                after++;
            }
            if (after < end) {
                lead = tui_text_width(s + start, after - start);
            }
        }
    }
    if (lead > width / 2) {
        lead = 0;
    }
    while (i < end) {
        int w;
        size_t j = tui_text_cluster(s, end, i, &w), at = i;
        int32_t cp = tui_text_decode(s, end, &at);
        int wide = tui_text_cpwidth(cp) == 2;

        if (cp == ' ' && i > line) {
            if (col + w > room) {
                spans_push(sp, s, line, i, indent);
                while (i < end && s[i] == ' ') {
                    i++;
                }
                line = i;
                col = 0;
                have_brk = 0;
                indent = lead;
                room = width - lead;
                continue;
            }
            col += w;
            i = j;
            brk = i;
            brk_col = col;
            have_brk = 1;
            continue;
        }
        if (wide && i > line) {
            brk = i;
            brk_col = col;
            have_brk = 1;
        }
        if (col + w > room && col > 0) {
            if (have_brk && brk > line) {
                spans_push(sp, s, line, brk, indent);
                line = brk;
                col -= brk_col;
                have_brk = 0;
            } else {
                spans_push(sp, s, line, i, indent);
                line = i;
                col = 0;
                have_brk = 0;
            }
            indent = lead;
            room = width - lead;
            continue;
        }
        col += w;
        i = j;
        if (wide) {
            brk = i;
            brk_col = col;
            have_brk = 1;
        }
    }
    spans_push(sp, s, line, end, indent);
}

size_t tui_text_wrap(const char *s, size_t n, int width, int columns, struct tui_span **out)
{
    struct spans sp = { NULL, 0, 0 };
    size_t start = 0;

    if (width < 2) {
        width = 2;
    }
    for (;;) {
        const char *nl = memchr(s + start, '\n', n - start);
        size_t end = nl ? (size_t)(nl - s) : n;

        wrap_paragraph(&sp, s, start, end, width, columns);
        if (!nl) {
            break;
        }
        start = end + 1;
    }
    *out = sp.v;
    return sp.n;
}

int tui_text_draw(WINDOW *win, const char *s, size_t n, int maxw)
{
    size_t i = 0;
    int used = 0;

    while (i < n) {
        int w, k = 0;
        size_t j = tui_text_cluster(s, n, i, &w), at = i;
        int32_t cp = tui_text_decode(s, n, &at);
        wchar_t wc[8];
        int fits, unsure = 0;

        if (used + w > maxw) {
            break;
        }
        i = j;
        if (is_control(cp)) {
            waddch(win, cp == '\t' ? ' ' : '?');
            used += w;
            continue;
        }
        if (w == 0 && used == 0) {
            continue;       /* combining marks with nothing to combine with */
        }
        /* Keep our column count and the terminal's in step: a character
         * that curses (wcwidth) measures differently is drawn as '?'s. */
        wc[k++] = (wchar_t)cp;
        fits = wcwidth(wc[0]) == tui_text_cpwidth(cp);
        while (at < j) {
            int32_t mark = tui_text_decode(s, j, &at);

            if (!drawn_with_base(mark)) {
                continue;
            }
            if (wcwidth((wchar_t)mark) != utf8proc_charwidth(mark)) {
                unsure += utf8proc_charwidth(mark);     /* '?'s after it */
            } else if (k < (int)(sizeof(wc) / sizeof(wc[0]))) {
                wc[k++] = (wchar_t)mark;
            }
        }
        if (fits) {
            waddnwstr(win, wc, k);
        } else {
            unsure = w;
        }
        for (int c = 0; c < unsure; c++) {
            waddch(win, '?');
        }
        used += w;
    }
    return used;
}

void tui_text_draw_padded(WINDOW *win, const char *s, int width)
{
    int used = tui_text_draw(win, s, strlen(s), width);

    for (; used < width; used++) {
        waddch(win, ' ');
    }
}
