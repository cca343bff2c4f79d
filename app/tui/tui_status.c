/* tui_status.c - the status line (model, context, speeds, state size,
 * snapshot) at the top and the key bar at the bottom. */
#include "app/tui/tui_internal.h"

#include <stdarg.h>
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

#define N_SEGMENTS 10

struct segment {
    char text[128];
    int priority;           /* lower goes first when the line is too narrow */
    int shown;
};

static void add(struct segment *seg, int *n, int priority, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add(struct segment *seg, int *n, int priority, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(seg[*n].text, sizeof(seg[*n].text), fmt, ap);
    va_end(ap);
    seg[*n].priority = priority;
    seg[*n].shown = 1;
    (*n)++;
}

#define SEPARATOR " | "

static void status_draw(struct tui_panel *p, struct tui *t)
{
    struct segment seg[N_SEGMENTS];
    int n = 0, col = 0, total;
    const struct chat_stats *st = chat_get_stats(t->chat);
    const char *snap = chat_current_snapshot(t->chat);
    const char *tag = t->demo_model ? " DEMO " : "";
    attr_t base = tui_attr(t, TUI_COLOUR_STATUS, A_REVERSE);

    /* main's label already says "FILE  RWKV-7 0.4M". */
    add(seg, &n, 9, "%s", t->model_label);
    if (t->prompt_total > 0) {
        add(seg, &n, 9, "reading prompt %zu/%zu tokens", t->prompt_fed, t->prompt_total);
    }
    if (chat_tuned_name(t->chat)) {
        const char *name = chat_tuned_name(t->chat), *slash = strrchr(name, '/');

        add(seg, &n, 6, "tuned %s", slash ? slash + 1 : name);
    }
    if (chat_get_template(t->chat)->thinking) {
        add(seg, &n, 6, "think %s", chat_think_name(chat_get_think(t->chat)));
    }
    add(seg, &n, 8, "ctx %zu", st->context_tokens);
    if (st->reply_tokens > 0 && st->reply_seconds > 0) {
        add(seg, &n, 7, "%.1f tok/s", (double)st->reply_tokens / st->reply_seconds);
    } else {
        add(seg, &n, 7, "- tok/s");
    }
    if (st->prompt_tokens > 0 && st->prompt_seconds > 0) {
        add(seg, &n, 5, "prompt %.0f tok/s", (double)st->prompt_tokens / st->prompt_seconds);
    } else {
        add(seg, &n, 5, "prompt - tok/s");
    }
    if (chat_state(t->chat)) {
        char size[32];

        format_bytes(size, sizeof(size),
                     (double)rwkv_state_bytes(chat_state(t->chat)));
        add(seg, &n, 4, "state %s", size);
    }
    add(seg, &n, 6, "snap %s", snap ? snap : "-");

    /* Leave out the least important segments until the line fits. */
    for (;;) {
        int lowest = -1;

        total = (int)strlen(tag) + 1;
        for (int i = 0; i < n; i++) {
            if (seg[i].shown) {
                total += tui_text_width(seg[i].text, strlen(seg[i].text)) +
                         (i ? (int)strlen(SEPARATOR) : 0);
                if (i > 0 && (lowest < 0 || seg[i].priority < seg[lowest].priority)) {
                    lowest = i;
                }
            }
        }
        if (total <= p->w || lowest < 0) {
            break;
        }
        seg[lowest].shown = 0;
    }

    wbkgdset(p->win, ' ' | base);
    werase(p->win);
    wmove(p->win, 0, 0);
    if (*tag) {
        attr_t demo = tui_attr(t, TUI_COLOUR_DEMO, A_BOLD);

        wattron(p->win, demo);
        waddstr(p->win, tag);
        wattroff(p->win, demo);
        col = (int)strlen(tag);
    }
    wattron(p->win, base);
    waddch(p->win, ' ');
    col++;
    for (int i = 0; i < n && col < p->w; i++) {
        if (!seg[i].shown) {
            continue;
        }
        if (i > 0) {
            waddstr(p->win, SEPARATOR);
            col += (int)strlen(SEPARATOR);
        }
        col += tui_text_draw(p->win, seg[i].text, strlen(seg[i].text), p->w - col);
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
    { "F1", "Help" }, { "F2", "Knobs" }, { "F3", "Snaps" }, { "F4", "Think" }, { "F5", "Mouse" },
    { "PgUp", "Scroll" }, { "Tab", "Cmds" }, { "M-Enter", "Newline" }, { "^D", "Quit" },
    { NULL, NULL },
};
static const struct key_hint generating_keys[] = {
    { "Esc", "Stop" }, { "^C", "Stop" }, { "F2", "Knobs" }, { "PgUp", "Scroll" },
    { NULL, NULL },
};
static const struct key_hint knob_keys[] = {
    { "Up/Dn", "Select" }, { "Left/Right", "Change" }, { "Enter", "Type value" },
    { "Esc", "Back" }, { NULL, NULL },
};
/* During a reply Esc stops it, even in the knobs panel: F2 goes back. */
static const struct key_hint knob_generating_keys[] = {
    { "Up/Dn", "Select" }, { "Left/Right", "Change" }, { "Esc", "Stop reply" },
    { "F2", "Back" }, { NULL, NULL },
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
    const char *mode = t->focus == t->input ? t->ask->input_mode_line(t) : NULL;

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
        hints = t->generating ? knob_generating_keys : knob_keys;
    } else if (t->focus == t->snapshots) {
        hints = snapshot_keys;
    } else if (t->generating || t->prompt_total > 0) {
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
