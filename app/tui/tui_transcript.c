/* tui_transcript.c - the conversation panel: turns, notes, the live reply
 * and scrollback.  A reply's think block (G1 models) is an entry of its
 * own before the answer: labelled "think", dimmed, folded to one line by
 * F4. */
#include "app/tui/tui_internal.h"

#include <stdlib.h>
#include <string.h>

enum entry_kind { ENTRY_USER, ENTRY_ASSISTANT, ENTRY_THINK, ENTRY_NOTE };

#define THINK_LABEL "think"
#define THINK_FOLDED "... (thinking folded: F4 shows it)"

/* One block of the transcript with its lines wrapped for the last width. */
struct entry {
    enum entry_kind kind;
    enum tui_note_kind note;
    char *text;
    size_t len;
    struct tui_span *spans;
    size_t n_spans;
};

/* A UI note sits after the turns that existed when it was written. */
struct note {
    size_t anchor;
    enum tui_note_kind kind;
    char *text;
};

struct transcript {
    struct note *notes;
    size_t n_notes;
    struct entry *entries;
    size_t n_entries;
    struct entry live;          /* the reply being streamed */
    int live_active;
    size_t live_cap;
    struct entry live_think;    /* and its think block (empty: none) */
    size_t live_think_cap;
    int wrapped_for;            /* panel width the spans are valid for, or -1 */
    size_t scroll;              /* lines scrolled back from the bottom */
    size_t page;                /* rows of the last draw */
};

#define LABEL_MAX 12

static struct transcript *get(struct tui *t)
{
    return t->transcript->data;
}

static void entry_clear(struct entry *e)
{
    free(e->text);
    free(e->spans);
    e->text = NULL;
    e->spans = NULL;
    e->n_spans = 0;
}

static int label_width(struct tui *t)
{
    const struct chat_template *tpl = chat_get_template(t->chat);
    int a = tui_text_width(tpl->user, strlen(tpl->user));
    int b = tui_text_width(tpl->assistant, strlen(tpl->assistant));
    int w = a > b ? a : b;

    if (tpl->thinking && w < (int)strlen(THINK_LABEL)) {
        w = (int)strlen(THINK_LABEL);
    }

    return w > LABEL_MAX ? LABEL_MAX : w;
}

/* Columns before a turn's text: the right-aligned name and ": ". */
static int turn_indent(struct tui *t)
{
    return label_width(t) + 2;
}

#define NOTE_INDENT 2

/* Text of an entry as shown: replies lose the leading blank the template
 * leaves after "Assistant:"; a folded think block is one line. */
static void entry_text(struct tui *t, const struct entry *e, const char **s, size_t *n)
{
    if (e->kind == ENTRY_THINK && t->think_folded) {
        *s = THINK_FOLDED;
        *n = strlen(THINK_FOLDED);
        return;
    }
    *s = e->text ? e->text : "";
    *n = e->text ? e->len : 0;
    while (*n > 0 && (**s == ' ' || **s == '\n')) {
        (*s)++;
        (*n)--;
    }
}

static void entry_wrap(struct tui *t, struct entry *e, int width)
{
    const char *s;
    size_t n;
    int indent = e->kind == ENTRY_NOTE ? NOTE_INDENT : turn_indent(t);

    free(e->spans);
    entry_text(t, e, &s, &n);
    e->n_spans = tui_text_wrap(s, n, width - indent - 1, e->kind == ENTRY_NOTE, &e->spans);
}

static void wrap_all(struct tui *t, int width)
{
    struct transcript *tr = get(t);

    for (size_t i = 0; i < tr->n_entries; i++) {
        entry_wrap(t, &tr->entries[i], width);
    }
    if (tr->live_active) {
        entry_wrap(t, &tr->live_think, width);
        entry_wrap(t, &tr->live, width);
    }
    tr->wrapped_for = width;
}

/* Display lines of entry i (a blank line separates exchanges); an empty
 * think block has none. */
static size_t entry_lines(const struct entry *e, int first)
{
    if (e->kind == ENTRY_THINK && e->len == 0) {
        return 0;
    }
    return e->n_spans + (e->kind == ENTRY_USER && !first ? 1 : 0);
}

/* While a think block streams, the answer's line is not shown yet. */
static int answer_waits(const struct transcript *tr)
{
    return tr->live.len == 0 && tr->live_think.len > 0;
}

static size_t total_lines(struct transcript *tr)
{
    size_t n = 0;

    for (size_t i = 0; i < tr->n_entries; i++) {
        n += entry_lines(&tr->entries[i], i == 0);
    }
    if (tr->live_active) {
        n += entry_lines(&tr->live_think, 0);
        if (!answer_waits(tr)) {
            n += entry_lines(&tr->live, tr->n_entries == 0);
        }
    }
    return n;
}

static void push_entry(struct transcript *tr, enum entry_kind kind, enum tui_note_kind note,
                       const char *text)
{
    struct entry *e;

    tr->entries = tui_xrealloc(tr->entries, (tr->n_entries + 1) * sizeof(*tr->entries));
    e = &tr->entries[tr->n_entries++];
    memset(e, 0, sizeof(*e));
    e->kind = kind;
    e->note = note;
    e->text = tui_xstrdup(text);
    e->len = strlen(text);
}

void tui_transcript_sync(struct tui *t)
{
    struct transcript *tr = get(t);
    size_t turns = chat_turn_count(t->chat), kept = 0, next_note = 0;
    size_t old_total = total_lines(tr);

    /* Notes written after turns that no longer exist go with them. */
    for (size_t i = 0; i < tr->n_notes; i++) {
        if (tr->notes[i].anchor <= turns) {
            tr->notes[kept++] = tr->notes[i];
        } else {
            free(tr->notes[i].text);
        }
    }
    tr->n_notes = kept;

    for (size_t i = 0; i < tr->n_entries; i++) {
        entry_clear(&tr->entries[i]);
    }
    tr->n_entries = 0;
    for (size_t k = 0; k <= turns; k++) {
        while (next_note < tr->n_notes && tr->notes[next_note].anchor <= k) {
            push_entry(tr, ENTRY_NOTE, tr->notes[next_note].kind, tr->notes[next_note].text);
            next_note++;
        }
        if (k < turns) {
            const struct chat_turn *turn = chat_turn_at(t->chat, k);

            if (turn->role == CHAT_ASSISTANT && turn->reasoning) {
                push_entry(tr, ENTRY_THINK, TUI_NOTE_INFO, turn->reasoning);
            }
            push_entry(tr, turn->role == CHAT_USER ? ENTRY_USER : ENTRY_ASSISTANT,
                       TUI_NOTE_INFO, turn->text ? turn->text : "");
        }
    }
    if (tr->wrapped_for > 0) {
        wrap_all(t, tr->wrapped_for);
    }
    /* A changed conversation is shown from its end. */
    if (total_lines(tr) != old_total) {
        tr->scroll = 0;
    }
}

void tui_transcript_note(struct tui *t, enum tui_note_kind kind, const char *text)
{
    struct transcript *tr = get(t);
    size_t len = strlen(text);
    struct note *n;

    while (len > 0 && text[len - 1] == '\n') {
        len--;
    }
    tr->notes = tui_xrealloc(tr->notes, (tr->n_notes + 1) * sizeof(*tr->notes));
    n = &tr->notes[tr->n_notes++];
    n->anchor = chat_turn_count(t->chat);
    n->kind = kind;
    n->text = tui_xmalloc(len + 1);
    memcpy(n->text, text, len);
    n->text[len] = '\0';
    tui_transcript_sync(t);
    tr->scroll = 0;
}

static void live_entry_begin(struct entry *e, size_t *cap, enum entry_kind kind)
{
    entry_clear(e);
    e->kind = kind;
    *cap = 256;
    e->text = tui_xmalloc(*cap);
    e->text[0] = '\0';
    e->len = 0;
}

void tui_transcript_live_begin(struct tui *t)
{
    struct transcript *tr = get(t);

    live_entry_begin(&tr->live, &tr->live_cap, ENTRY_ASSISTANT);
    live_entry_begin(&tr->live_think, &tr->live_think_cap, ENTRY_THINK);
    tr->live_active = 1;
    if (tr->wrapped_for > 0) {
        entry_wrap(t, &tr->live_think, tr->wrapped_for);
        entry_wrap(t, &tr->live, tr->wrapped_for);
    }
    tr->scroll = 0;
}

void tui_transcript_live_append(struct tui *t, const char *bytes, size_t n, enum chat_part part)
{
    struct transcript *tr = get(t);
    struct entry *e = part == CHAT_PART_REASONING ? &tr->live_think : &tr->live;
    size_t *cap = part == CHAT_PART_REASONING ? &tr->live_think_cap : &tr->live_cap;
    size_t before = total_lines(tr);

    if (!tr->live_active || n == 0) {
        return;
    }
    if (e->len + n + 1 > *cap) {
        while (e->len + n + 1 > *cap) {
            *cap *= 2;
        }
        e->text = tui_xrealloc(e->text, *cap);
    }
    memcpy(e->text + e->len, bytes, n);
    e->len += n;
    e->text[e->len] = '\0';
    if (tr->wrapped_for > 0) {
        entry_wrap(t, e, tr->wrapped_for);
        /* Someone reading back stays where they are. */
        if (tr->scroll > 0 && total_lines(tr) > before) {
            tr->scroll += total_lines(tr) - before;
        }
    }
}

void tui_transcript_live_end(struct tui *t)
{
    struct transcript *tr = get(t);

    entry_clear(&tr->live);
    entry_clear(&tr->live_think);
    tr->live_think.len = 0;
    tr->live_active = 0;
    tui_transcript_sync(t);
}

void tui_transcript_scroll(struct tui *t, int lines, int pages)
{
    struct transcript *tr = get(t);
    long step = lines + (long)pages * (long)(tr->page > 2 ? tr->page - 2 : 1);
    long s = (long)tr->scroll + step;
    long max = (long)total_lines(tr) - (long)tr->page;

    if (max < 0) {
        max = 0;
    } else if (max > 0) {
        max++;      /* scrolled back, a row less shows text (transcript_draw) */
    }
    if (s > max) {
        s = max;
    }
    if (s < 0) {
        s = 0;
    }
    tr->scroll = (size_t)s;
}

void tui_transcript_invalidate(struct tui *t)
{
    get(t)->wrapped_for = -1;
}

/* Draws line k of entry e on row y. */
static void draw_line(struct tui *t, WINDOW *win, int y, int width, const struct entry *e, size_t k,
                      int live)
{
    const char *s;
    size_t n;
    int col = 0;

    entry_text(t, e, &s, &n);
    wmove(win, y, 0);
    if (e->kind == ENTRY_NOTE) {
        enum tui_colour c = e->note == TUI_NOTE_ERROR ? TUI_COLOUR_ERROR
                            : e->note == TUI_NOTE_INFO ? TUI_COLOUR_NOTE : 0;
        attr_t a = c ? tui_attr(t, c, e->note == TUI_NOTE_ERROR ? A_BOLD : A_DIM) : A_NORMAL;

        waddstr(win, k == 0 ? (e->note == TUI_NOTE_ERROR ? "! " : "- ") : "  ");
        wmove(win, y, NOTE_INDENT + e->spans[k].indent);
        wattron(win, a);
        tui_text_draw(win, s + e->spans[k].off, e->spans[k].len,
                      width - NOTE_INDENT - e->spans[k].indent);
        wattroff(win, a);
        return;
    }

    const struct chat_template *tpl = chat_get_template(t->chat);
    int lw = label_width(t);
    int user = e->kind == ENTRY_USER, think = e->kind == ENTRY_THINK;
    attr_t label = think ? tui_attr(t, TUI_COLOUR_NOTE, A_DIM)
                         : tui_attr(t, user ? TUI_COLOUR_USER : TUI_COLOUR_ASSISTANT, 0) | A_BOLD;

    if (k == 0) {
        const char *name = think ? THINK_LABEL : user ? tpl->user : tpl->assistant;
        size_t fit = tui_text_fit(name, strlen(name), lw);
        int nw = tui_text_width(name, fit);

        for (; col < lw - nw; col++) {
            waddch(win, ' ');
        }
        wattron(win, label);
        tui_text_draw(win, name, fit, lw);
        waddch(win, ':');
        wattroff(win, label);
        waddch(win, ' ');
    }
    wmove(win, y, lw + 2 + e->spans[k].indent);
    attr_t body = user ? tui_attr(t, TUI_COLOUR_USER, A_BOLD)
                  : think ? tui_attr(t, TUI_COLOUR_NOTE, A_DIM) | A_DIM : A_NORMAL;

    wattron(win, body);
    col = e->spans[k].indent;
    col += tui_text_draw(win, s + e->spans[k].off, e->spans[k].len, width - lw - 2 - col);
    wattroff(win, body);
    if (live && k + 1 == e->n_spans && lw + 2 + col < width) {
        wattron(win, A_DIM);
        waddch(win, '_');
        wattroff(win, A_DIM);
    }
}

static void transcript_draw(struct tui_panel *p, struct tui *t)
{
    struct transcript *tr = p->data;
    size_t total, first, line = 0;
    int row = 0, rows;

    if (tr->wrapped_for != p->w) {
        wrap_all(t, p->w);
    }
    werase(p->win);
    tr->page = (size_t)p->h;
    total = total_lines(tr);
    /* scrolled back, the last row is the "N more lines" line's own: it
     * never covers text */
    rows = p->h;
    if (total <= (size_t)p->h) {
        tr->scroll = 0;
    } else if (tr->scroll > 0 && p->h > 1) {
        rows = p->h - 1;
    }
    if (total > (size_t)rows && tr->scroll > total - (size_t)rows) {
        tr->scroll = total - (size_t)rows;
    }
    first = total > (size_t)rows ? total - (size_t)rows - tr->scroll : 0;
    for (size_t i = 0; i <= tr->n_entries + 1 && row < rows; i++) {
        const struct entry *e;
        int live = i >= tr->n_entries;

        if (live && !tr->live_active) {
            break;
        }
        e = i == tr->n_entries ? &tr->live_think : live ? &tr->live : &tr->entries[i];
        if ((e->kind == ENTRY_THINK && e->len == 0) || (e == &tr->live && answer_waits(tr))) {
            continue;
        }
        if (e->kind == ENTRY_USER && i > 0) {
            if (line >= first) {
                row++;
            }
            line++;
        }
        for (size_t k = 0; k < e->n_spans && row < rows; k++, line++) {
            if (line >= first) {
                /* The cursor goes at the end of what streams now. */
                int cursor = live && t->generating && k + 1 == e->n_spans &&
                             (e == &tr->live) == (tr->live.len > 0 || tr->live_think.len == 0);

                draw_line(t, p->win, row++, p->w, e, k, cursor);
            }
        }
    }
    if (tr->scroll > 0) {
        char more[64];
        int len = snprintf(more, sizeof(more), " %zu more lines (PgDn) ", tr->scroll);

        wattron(p->win, A_REVERSE);
        mvwaddstr(p->win, p->h - 1, p->w > len ? p->w - len : 0, more);
        wattroff(p->win, A_REVERSE);
    }
}

static void transcript_free(struct tui_panel *p)
{
    struct transcript *tr = p->data;

    for (size_t i = 0; i < tr->n_entries; i++) {
        entry_clear(&tr->entries[i]);
    }
    for (size_t i = 0; i < tr->n_notes; i++) {
        free(tr->notes[i].text);
    }
    entry_clear(&tr->live);
    entry_clear(&tr->live_think);
    free(tr->entries);
    free(tr->notes);
    free(tr);
}

static const struct tui_panel_ops transcript_ops = {
    .name = "transcript",
    .draw = transcript_draw,
    .key = NULL,
    .free = transcript_free,
};

struct tui_panel *tui_transcript_new(void)
{
    struct transcript *tr = tui_xmalloc(sizeof(*tr));

    memset(tr, 0, sizeof(*tr));
    tr->wrapped_for = -1;
    return tui_panel_new(&transcript_ops, tr);
}
