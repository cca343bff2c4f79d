/* tui_panel.c - what every panel of the curses interface uses: memory that
 * never fails, panel objects, colours, the key bar's message and the focus.
 * It depends on no panel and not on tui.c, so panels use it without using
 * each other (what a panel asks of another goes through t->ask). */
#include "app/tui/tui_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Puts the terminal back before an out-of-memory exit (set by tui.c). */
static void (*restore_on_fatal)(void);

void tui_panel_on_fatal(void (*restore)(void))
{
    restore_on_fatal = restore;
}

static void out_of_memory(void)
{
    if (restore_on_fatal) {
        restore_on_fatal();
    }
    fputs("rwkv-chat: out of memory\n", stderr);
    exit(1);
}

void *tui_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (!p) {
        out_of_memory();
    }
    return p;
}

void *tui_xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) {
        out_of_memory();
    }
    return p;
}

char *tui_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;

    return memcpy(tui_xmalloc(n), s, n);
}

struct tui_panel *tui_panel_new(const struct tui_panel_ops *ops, void *data)
{
    struct tui_panel *p = tui_xmalloc(sizeof(*p));

    memset(p, 0, sizeof(*p));
    p->ops = ops;
    p->data = data;
    return p;
}

void tui_panel_free(struct tui_panel *p)
{
    if (!p) {
        return;
    }
    if (p->win) {
        delwin(p->win);
    }
    if (p->ops->free) {
        p->ops->free(p);
    }
    free(p);
}

void tui_message(struct tui *t, int is_error, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(t->message, sizeof(t->message), fmt, ap);
    va_end(ap);
    /* One line: the key bar has no room for more. */
    for (char *s = t->message; *s; s++) {
        if (*s == '\n' || *s == '\t') {
            *s = ' ';
        }
    }
    t->message_is_error = is_error;
}

attr_t tui_attr(const struct tui *t, enum tui_colour colour, attr_t fallback)
{
    return t->has_colour ? COLOR_PAIR(colour) : fallback;
}

void tui_focus(struct tui *t, struct tui_panel *p)
{
    if (t->focus != p) {
        t->focus = p;
        t->relayout = 1;
    }
}
