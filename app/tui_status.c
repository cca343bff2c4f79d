/* tui_status.c - the status line (model, context, speeds, state size,
 * snapshot) at the top and the key bar at the bottom. */
#include "app/tui_internal.h"

#include <stdio.h>
#include <string.h>

#include "engine/rwkv.h"

/* "1.5 MB", "12 KB". */
static void format_bytes(char *buf, size_t len, double bytes)
{
    if (bytes >= 1024.0 * 1024.0 * 1024.0) {
        snprintf(buf, len, "%.1f GB", bytes / (1024.0 * 1024.0 * 1024.0));
    } else if (bytes >= 1024.0 * 1024.0) {
        snprintf(buf, len, "%.1f MB", bytes / (1024.0 * 1024.0));
    } else {
        snprintf(buf, len, "%.0f KB", bytes / 1024.0);
    }
}

/* "0.1B", "19M" parameters. */
static void format_params(char *buf, size_t len, double n)
{
    if (n >= 1e9) {
        snprintf(buf, len, "%.1fB", n / 1e9);
    } else {
        snprintf(buf, len, "%.0fM", n / 1e6);
    }
}

#define N_SEGMENTS 8

static void status_draw(struct tui_panel *p, struct tui *t)
{
    char seg[N_SEGMENTS][128];
    int n = 0, col = 0;
    const struct chat_stats *st = chat_get_stats(t->chat);
    const char *snap = chat_current_snapshot(t->chat);
    attr_t base = tui_attr(t, TUI_COLOUR_STATUS, A_REVERSE);

    if (t->info) {
        char params[32];

        format_params(params, sizeof(params), (double)t->info->n_params);
        snprintf(seg[n++], sizeof(seg[0]), "%s  RWKV-%s %s", t->model_label,
                 t->info->version_name, params);
    } else {
        snprintf(seg[n++], sizeof(seg[0]), "%s", t->model_label);
    }
    snprintf(seg[n++], sizeof(seg[0]), "ctx %zu tok", st->context_tokens);
    if (st->reply_tokens > 0 && st->reply_seconds > 0) {
        snprintf(seg[n++], sizeof(seg[0]), "reply %.1f tok/s",
                 (double)st->reply_tokens / st->reply_seconds);
    } else {
        snprintf(seg[n++], sizeof(seg[0]), "reply - tok/s");
    }
    if (st->prompt_tokens > 0 && st->prompt_seconds > 0) {
        snprintf(seg[n++], sizeof(seg[0]), "prompt %.0f tok/s",
                 (double)st->prompt_tokens / st->prompt_seconds);
    } else {
        snprintf(seg[n++], sizeof(seg[0]), "prompt - tok/s");
    }
    if (t->info) {
        char size[32];

        format_bytes(size, sizeof(size), (double)t->info->state_floats * sizeof(float));
        snprintf(seg[n++], sizeof(seg[0]), "state %s", size);
    }
    snprintf(seg[n++], sizeof(seg[0]), "snap %s", snap ? snap : "-");

    wbkgdset(p->win, ' ' | base);
    werase(p->win);
    wmove(p->win, 0, 0);
    wattron(p->win, base);
    if (t->demo_model) {
        attr_t demo = tui_attr(t, TUI_COLOUR_DEMO, A_BOLD);
        const char *tag = " DEMO MODEL ";

        wattron(p->win, demo);
        waddstr(p->win, tag);
        wattroff(p->win, demo);
        wattron(p->win, base);
        col = (int)strlen(tag);
    }
    /* Segments that do not fit are left out from the right. */
    for (int i = 0; i < n; i++) {
        const char *sep = i == 0 ? " " : " | ";
        int w = tui_text_width(seg[i], strlen(seg[i])) + (int)strlen(sep);

        if (col + w > p->w - 1) {
            if (i == 0) {
                waddstr(p->win, sep);
                col += (int)strlen(sep);
                col += tui_text_draw(p->win, seg[i], strlen(seg[i]), p->w - col - 1);
            }
            break;
        }
        waddstr(p->win, sep);
        col += tui_text_draw(p->win, seg[i], strlen(seg[i]), p->w - col) + (int)strlen(sep);
    }
    wattroff(p->win, base);
}

static const struct tui_panel_ops status_ops = {
    .name = "status",
    .draw = status_draw,
    .key = NULL,
    .free = NULL,
};

struct tui_panel *tui_status_new(void)
{
    return tui_panel_new(&status_ops, NULL);
}

struct key_hint {
    const char *key, *what;
};

static const struct key_hint input_keys[] = {
    { "F1", "Help" }, { "F2", "Knobs" }, { "F3", "Snaps" }, { "PgUp", "Scroll" },
    { "Tab", "Cmds" }, { "M-Enter", "Newline" }, { "^D", "Quit" }, { NULL, NULL },
};
static const struct key_hint generating_keys[] = {
    { "Esc", "Stop" }, { "^C", "Stop" }, { "F2", "Knobs" }, { "PgUp", "Scroll" },
    { NULL, NULL },
};
static const struct key_hint knob_keys[] = {
    { "Up/Dn", "Select" }, { "Left/Right", "Change" }, { "Enter", "Type value" },
    { "Esc", "Back" }, { NULL, NULL },
};
static const struct key_hint snapshot_keys[] = {
    { "Enter", "Restore" }, { "n", "New" }, { "b", "Branch" }, { "d", "Delete" },
    { "s", "Save" }, { "l", "Load" }, { "Esc", "Back" }, { NULL, NULL },
};

static void keybar_draw(struct tui_panel *p, struct tui *t)
{
    const struct key_hint *hints = input_keys;
    attr_t key = tui_attr(t, TUI_COLOUR_KEY, A_BOLD);
    int col = 0;

    werase(p->win);
    wmove(p->win, 0, 0);
    const char *mode = t->focus == t->input ? tui_input_mode_line(t) : NULL;

    if (mode) {
        wattron(p->win, A_BOLD);
        tui_text_draw(p->win, mode, strlen(mode), p->w - 1);
        wattroff(p->win, A_BOLD);
        return;
    }
    if (t->message[0]) {
        attr_t a = t->message_is_error ? tui_attr(t, TUI_COLOUR_ERROR, A_BOLD) : A_BOLD;

        wattron(p->win, a);
        tui_text_draw(p->win, t->message, strlen(t->message), p->w - 1);
        wattroff(p->win, a);
        return;
    }
    if (t->focus == t->knobs) {
        hints = knob_keys;
    } else if (t->focus == t->snapshots) {
        hints = snapshot_keys;
    } else if (t->generating) {
        hints = generating_keys;
    }
    for (int i = 0; hints[i].key; i++) {
        int w = (int)(strlen(hints[i].key) + strlen(hints[i].what)) + 2;

        if (col + w > p->w - 1) {
            break;
        }
        wattron(p->win, key);
        waddstr(p->win, hints[i].key);
        wattroff(p->win, key);
        waddch(p->win, ' ');
        waddstr(p->win, hints[i].what);
        waddch(p->win, ' ');
        col += w;
    }
}

static const struct tui_panel_ops keybar_ops = {
    .name = "keybar",
    .draw = keybar_draw,
    .key = NULL,
    .free = NULL,
};

struct tui_panel *tui_keybar_new(void)
{
    return tui_panel_new(&keybar_ops, NULL);
}
