/* tui_knobs.c - the sampling-knobs panel: arrow keys change a setting and
 * the chat applies it from the next token. */
#include "app/tui_internal.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sampler.h"

enum knob_type { KNOB_FLOAT, KNOB_INT, KNOB_SEED };

struct knob {
    const char *label;      /* shown in the panel */
    const char *set_name;   /* the /set name */
    enum knob_type type;
    size_t offset;          /* in struct sampler_settings */
    double step, min, max;
    const char *format;     /* for KNOB_FLOAT */
};

#define KNOB(f) offsetof(struct sampler_settings, f)

static const struct knob knobs[] = {
    { "temperature", "temperature", KNOB_FLOAT, KNOB(temperature), 0.05, 0, 5, "%.2f" },
    { "top-p", "top_p", KNOB_FLOAT, KNOB(top_p), 0.05, 0, 1, "%.2f" },
    { "top-k", "top_k", KNOB_INT, KNOB(top_k), 1, 0, 1000000, NULL },
    { "min-p", "min_p", KNOB_FLOAT, KNOB(min_p), 0.01, 0, 1, "%.2f" },
    { "presence", "presence", KNOB_FLOAT, KNOB(presence), 0.05, -5, 5, "%.2f" },
    { "frequency", "frequency", KNOB_FLOAT, KNOB(frequency), 0.05, -5, 5, "%.2f" },
    { "decay", "decay", KNOB_FLOAT, KNOB(decay), 0.001, 0, 1, "%.3f" },
    { "max tokens", "max_tokens", KNOB_INT, KNOB(max_tokens), 50, 0, 1000000, NULL },
    { "seed", "seed", KNOB_SEED, KNOB(seed), 1, 0, 0, NULL },
};
#define N_KNOBS (sizeof(knobs) / sizeof(knobs[0]))

struct knobs_state {
    size_t selected;
};

int tui_knobs_rows(void)
{
    return (int)N_KNOBS + 2;
}

static void knob_format(const struct knob *k, const struct sampler_settings *s, char *buf,
                        size_t len)
{
    const char *base = (const char *)s + k->offset;

    switch (k->type) {
    case KNOB_FLOAT:
        snprintf(buf, len, k->format, (double)*(const float *)base);
        break;
    case KNOB_INT:
        if (*(const int *)base == 0) {
            snprintf(buf, len, "off");
        } else {
            snprintf(buf, len, "%d", *(const int *)base);
        }
        break;
    case KNOB_SEED:
        snprintf(buf, len, "%llu", (unsigned long long)*(const uint64_t *)base);
        break;
    }
}

/* Moves knob k by steps, rounded to its step and clamped to its range. */
static void knob_change(const struct knob *k, struct sampler_settings *s, int steps)
{
    char *base = (char *)s + k->offset;

    switch (k->type) {
    case KNOB_FLOAT: {
        double v = (double)*(float *)base + steps * k->step;

        v = round(v / k->step) * k->step;
        v = v < k->min ? k->min : v > k->max ? k->max : v;
        *(float *)base = (float)v;
        break;
    }
    case KNOB_INT: {
        double v = (double)*(int *)base + steps * k->step;

        v = v < k->min ? k->min : v > k->max ? k->max : v;
        *(int *)base = (int)v;
        break;
    }
    case KNOB_SEED: {
        uint64_t *v = (uint64_t *)base;

        *v = steps < 0 && *v < (uint64_t)-steps ? 0 : *v + (uint64_t)(int64_t)steps;
        break;
    }
    }
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
    for (size_t i = 0; i < N_KNOBS && (int)i + 1 < p->h - 1; i++) {
        char value[32];
        int inner = p->w - 2;
        attr_t a = focused && i == ks->selected ? tui_attr(t, TUI_COLOUR_SELECTED, A_REVERSE)
                                                : A_NORMAL;
        int vw;

        knob_format(&knobs[i], s, value, sizeof(value));
        vw = (int)strlen(value);
        wattron(p->win, a);
        wmove(p->win, (int)i + 1, 1);
        for (int c = 0; c < inner; c++) {
            waddch(p->win, ' ');
        }
        mvwaddnstr(p->win, (int)i + 1, 2, knobs[i].label, inner - 2);
        if (inner - vw >= (int)strlen(knobs[i].label) + 3) {
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
        ks->selected = ks->selected > 0 ? ks->selected - 1 : N_KNOBS - 1;
        return 1;
    case KEY_DOWN:
    case 'j':
        ks->selected = (ks->selected + 1) % N_KNOBS;
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

        snprintf(line, sizeof(line), "/set %s ", knobs[ks->selected].set_name);
        tui_focus(t, t->input);
        tui_input_set_text(t, line);
        return 1;
    }
    default:
        return 0;
    }
    knob_change(&knobs[ks->selected], chat_settings(t->chat), steps);
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
