/* tui_knobs.c - the sampling-knobs panel: arrow keys change a setting and
 * the chat applies it from the next token. */
#include "app/tui/tui_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sampling/knobs.h"

struct knobs_state {
    size_t selected;
};

/* The rows of engine/sampling/knobs.h's table: the option's name as the label, its
 * step, range and display format. */
int tui_knobs_rows(void)
{
    return (int)knob_count() + 2;
}

/* Shortens an ASCII value wider than room to its start and end around
 * "..": a long seed "18446744073709551615" in 14 columns is
 * "184467..551615" (/info shows it whole).  Nothing fits below 5. */
static void abbreviate(char *value, int room)
{
    int n = (int)strlen(value), head, tail;

    if (n <= room) {
        return;
    }
    if (room < 5) {
        value[0] = '\0';
        return;
    }
    head = (room - 2) / 2;
    tail = room - 2 - head;
    memmove(value + head + 2, value + n - tail, (size_t)tail + 1);
    value[head] = '.';
    value[head + 1] = '.';
}

static void knobs_draw(struct tui_panel *p, struct tui *t)
{
    struct knobs_state *ks = p->data;
    const struct sampler_settings *s = chat_settings(t->chat);
    int focused = t->focus == p;
    attr_t border = focused ? tui_attr(t, TUI_COLOUR_USER, A_BOLD) : A_DIM;

    werase(p->win);
    wattron(p->win, border);
    box(p->win, 0, 0);
    mvwaddstr(p->win, 0, 2, " Knobs F2 ");
    wattroff(p->win, border);
    for (size_t i = 0; i < knob_count() && (int)i + 1 < p->h - 1; i++) {
        const struct knob *k = knob_at(i);
        char value[32];
        int inner = p->w - 2;
        attr_t a = focused && i == ks->selected ? tui_attr(t, TUI_COLOUR_SELECTED, A_REVERSE)
                                                : A_NORMAL;
        int vw;

        knob_display(k, s, value, sizeof(value));
        wattron(p->win, a);
        wmove(p->win, (int)i + 1, 1);
        for (int c = 0; c < inner; c++) {
            waddch(p->win, ' ');
        }
        mvwaddnstr(p->win, (int)i + 1, 2, k->option, inner - 2);
        abbreviate(value, inner - (int)strlen(k->option) - 3);
        vw = (int)strlen(value);
        if (vw > 0 && inner - vw >= (int)strlen(k->option) + 3) {
            mvwaddstr(p->win, (int)i + 1, inner - vw, value);
        }
        wattroff(p->win, a);
    }
}

static int knobs_key(struct tui_panel *p, struct tui *t, int key)
{
    struct knobs_state *ks = p->data;
    int steps = 0;

    switch (key) {
    case KEY_UP:
    case 'k':
        ks->selected = ks->selected > 0 ? ks->selected - 1 : knob_count() - 1;
        return 1;
    case KEY_DOWN:
    case 'j':
        ks->selected = (ks->selected + 1) % knob_count();
        return 1;
    case KEY_LEFT:
    case 'h':
    case '-':
        steps = -1;
        break;
    case KEY_RIGHT:
    case 'l':
    case '+':
        steps = 1;
        break;
    case KEY_SLEFT:
        steps = -10;
        break;
    case KEY_SRIGHT:
        steps = 10;
        break;
    case '\r':
    case '\n':
    case KEY_ENTER: {
        char line[64];

        snprintf(line, sizeof(line), "/set %s ", knob_at(ks->selected)->name);
        tui_focus(t, t->input);
        t->ask->set_input_text(t, line);
        return 1;
    }
    default:
        return 0;
    }
    knob_step(knob_at(ks->selected), chat_settings(t->chat), steps);
    chat_settings_changed(t->chat);
    return 1;
}

static void knobs_free(struct tui_panel *p)
{
    free(p->data);
}

static const struct tui_panel_ops knobs_ops = {
    .name = "knobs",
    .draw = knobs_draw,
    .key = knobs_key,
    .free = knobs_free,
};

struct tui_panel *tui_knobs_new(void)
{
    struct knobs_state *ks = tui_xmalloc(sizeof(*ks));

    ks->selected = 0;
    return tui_panel_new(&knobs_ops, ks);
}
