/* tui_snapshots.c - the snapshots panel: list, take, restore, branch,
 * delete, and save/load through the slash commands. */
#include "app/tui/tui_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct snapshots_state {
    size_t selected;
    size_t first;           /* first listed row (long lists scroll) */
};

static void snapshots_draw(struct tui_panel *p, struct tui *t)
{
    struct snapshots_state *ss = p->data;
    size_t n = chat_snapshot_count(t->chat);
    const char *current = chat_current_snapshot(t->chat);
    int focused = t->focus == p;
    int rows = p->h - 2, inner = p->w - 2;
    attr_t border = focused ? tui_attr(t, TUI_COLOUR_USER, A_BOLD) : A_DIM;

    if (ss->selected >= n) {
        ss->selected = n > 0 ? n - 1 : 0;
    }
    if (rows > 0 && ss->selected >= ss->first + (size_t)rows) {
        ss->first = ss->selected - (size_t)rows + 1;
    }
    if (ss->selected < ss->first) {
        ss->first = ss->selected;
    }
    werase(p->win);
    wattron(p->win, border);
    box(p->win, 0, 0);
    mvwaddstr(p->win, 0, 2, " Snapshots F3 ");
    wattroff(p->win, border);
    if (n == 0 && rows > 0) {
        wattron(p->win, A_DIM);
        mvwaddnstr(p->win, 1, 2, focused ? "none: n takes one" : "none", inner - 2);
        wattroff(p->win, A_DIM);
    }
    for (int r = 0; r < rows && ss->first + (size_t)r < n; r++) {
        size_t i = ss->first + (size_t)r;
        const char *name = chat_snapshot_name(t->chat, i);
        int is_current = current && strcmp(current, name) == 0;
        attr_t a = focused && i == ss->selected ? tui_attr(t, TUI_COLOUR_SELECTED, A_REVERSE)
                                                : A_NORMAL;

        wattron(p->win, a);
        wmove(p->win, r + 1, 1);
        waddstr(p->win, is_current ? "* " : "  ");
        tui_text_draw_padded(p->win, name, inner - 2);
        wattroff(p->win, a);
    }
}

/* A name for a branch of base: "base.1", "base.2", ... not yet taken. */
static char *branch_name(struct tui *t, const char *base)
{
    size_t len = strlen(base) + 24;
    char *name = tui_xmalloc(len);

    for (unsigned k = 1;; k++) {
        size_t i, n = chat_snapshot_count(t->chat);

        snprintf(name, len, "%s.%u", base, k);
        for (i = 0; i < n; i++) {
            if (strcmp(chat_snapshot_name(t->chat, i), name) == 0) {
                break;
            }
        }
        if (i == n) {
            return name;
        }
    }
}

static void prefill(struct tui *t, const char *text)
{
    tui_focus(t, t->input);
    t->ask->set_input_text(t, text);
}

static int snapshots_key(struct tui_panel *p, struct tui *t, int key)
{
    struct snapshots_state *ss = p->data;
    size_t n = chat_snapshot_count(t->chat);
    char err[RWKV_ERRLEN], note[512];
    char *name;

    switch (key) {
    case KEY_UP:
    case 'k':
        if (ss->selected > 0) {
            ss->selected--;
        }
        return 1;
    case KEY_DOWN:
    case 'j':
        if (ss->selected + 1 < n) {
            ss->selected++;
        }
        return 1;
    case 'n':
        prefill(t, "/snap ");
        return 1;
    case 's':
        prefill(t, "/save ");
        return 1;
    case 'l':
        prefill(t, "/load ");
        return 1;
    case '\r':
    case '\n':
    case KEY_ENTER:
    case 'r':
    case 'b':
    case 'd':
        break;
    default:
        return 0;
    }
    if (n == 0) {
        tui_message(t, 1, "no snapshots yet: n takes one");
        return 1;
    }
    if (t->generating) {
        tui_message(t, 1, "a reply is streaming: Esc stops it first");
        return 1;
    }
    name = tui_xstrdup(chat_snapshot_name(t->chat, ss->selected));
    if (key == 'd') {
        if (chat_snapshot_delete(t->chat, name, err, sizeof(err)) != 0) {
            tui_message(t, 1, "%s", err);
        } else {
            tui_message(t, 0, "deleted snapshot %s", name);
        }
        free(name);
        return 1;
    }
    if (chat_snapshot_restore(t->chat, name, err, sizeof(err)) != 0) {
        tui_message(t, 1, "%s", err);
        free(name);
        return 1;
    }
    t->ask->transcript_sync(t);
    if (key == 'b') {
        char *branch = branch_name(t, name);

        if (chat_snapshot_take(t->chat, branch, err, sizeof(err)) != 0) {
            tui_message(t, 1, "%s", err);
        } else {
            snprintf(note, sizeof(note), "branched %s from snapshot %s", branch, name);
            t->ask->transcript_note(t, TUI_NOTE_INFO, note);
        }
        free(branch);
    } else {
        snprintf(note, sizeof(note), "restored snapshot %s", name);
        t->ask->transcript_note(t, TUI_NOTE_INFO, note);
    }
    free(name);
    return 1;
}

static void snapshots_free(struct tui_panel *p)
{
    free(p->data);
}

static const struct tui_panel_ops snapshots_ops = {
    .name = "snapshots",
    .draw = snapshots_draw,
    .key = snapshots_key,
    .free = snapshots_free,
};

struct tui_panel *tui_snapshots_new(void)
{
    struct snapshots_state *ss = tui_xmalloc(sizeof(*ss));

    memset(ss, 0, sizeof(*ss));
    return tui_panel_new(&snapshots_ops, ss);
}
