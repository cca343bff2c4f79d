/* tui_text.c - UTF-8 decoding, display width and wrapping for the TUI. */
#include "app/tui_internal.h"

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

int tui_text_width(const char *s, size_t n)
{
    size_t i = 0;
    int w = 0;

    while (i < n) {
        w += tui_text_cpwidth(tui_text_decode(s, n, &i));
    }
    return w;
}

size_t tui_text_fit(const char *s, size_t n, int maxw)
{
    size_t i = 0;
    int w = 0;

    while (i < n) {
        size_t j = i;
        int cw = tui_text_cpwidth(tui_text_decode(s, n, &j));

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

/* Greedy wrap of one paragraph s[start..end) (no '\n' inside).  A line may
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
        /* "NAME   text": continuation lines start under the text. */
        const char *gap = memmem(s + start + lead, end - start - (size_t)lead, "  ", 2);

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
        size_t j = i;
        int32_t cp = tui_text_decode(s, end, &j);
        int w = tui_text_cpwidth(cp);

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
        if (w == 2 && i > line) {
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
        if (w == 2) {
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
        int32_t cp = tui_text_decode(s, n, &i);
        int w = tui_text_cpwidth(cp);
        wchar_t wc = (wchar_t)cp;

        if (used + w > maxw) {
            break;
        }
        if (is_control(cp)) {
            wc = cp == '\t' ? L' ' : L'?';
        } else if (w == 0 && used == 0) {
            continue;       /* a combining mark with nothing to combine with */
        }
        /* Keep our column count and the terminal's in step: a character
         * that curses (wcwidth) measures differently is drawn as '?'s. */
        if (!is_control(cp) && wcwidth(wc) != w) {
            for (int k = 0; k < w; k++) {
                waddch(win, '?');
            }
        } else {
            waddnwstr(win, &wc, 1);
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
