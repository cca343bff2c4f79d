/* tui_input.c - the input line: GNU readline's callback interface fed from
 * curses keys, drawn by us (readline never touches the terminal). */
#include "app/tui/tui_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "app/session/commands.h"
#include "app/session/paths.h"
#include "engine/base/atomicfile.h"

#define HISTORY_MAX 1000
#define PROMPT "> "
#define PROMPT_WIDTH 2

struct input {
    unsigned char queue[256];   /* bytes waiting for readline */
    size_t q_head, q_len;
    char **lines;               /* accepted with Enter, oldest first */
    size_t n_lines;
    int eof;
    char *history_path;
    int history_failed;         /* said once that it cannot be saved */
    int first_row;              /* first text row shown (long input scrolls) */
    FILE *null_out;
    struct tui *tui;            /* for completion and messages */
};

/* readline's callbacks carry no context pointer, so the one input that is
 * running is kept here for them. */
static struct input *active;

static int queue_pop(void)
{
    int c;

    if (!active || active->q_len == 0) {
        return EOF;
    }
    c = active->queue[active->q_head];
    active->q_head = (active->q_head + 1) % sizeof(active->queue);
    active->q_len--;
    return c;
}

static void queue_push(struct input *in, const char *bytes, size_t n)
{
    for (size_t i = 0; i < n && in->q_len < sizeof(in->queue); i++) {
        in->queue[(in->q_head + in->q_len) % sizeof(in->queue)] = (unsigned char)bytes[i];
        in->q_len++;
    }
}

static int rl_getc_from_queue(FILE *unused)
{
    (void)unused;
    return queue_pop();
}

static int rl_queue_available(void)
{
    return active && active->q_len > 0;
}

/* Drawing happens in the panel's draw; readline only edits the buffer. */
static void rl_redisplay_nothing(void)
{
}

static void rl_prep_nothing(int meta)
{
    (void)meta;
}

static void rl_deprep_nothing(void)
{
}

/* Writes the whole history (at most HISTORY_MAX entries) over the history
 * file, atomically and only if it is a regular file (atomicfile.h: never
 * through a link), in readline's format: each entry after its timestamp
 * line, so multi-line entries read back whole.  A failure is said once in
 * the key bar; the chat goes on. */
static void save_history(struct input *in)
{
    HIST_ENTRY **list = history_list();
    char err[RWKV_ERRLEN];
    atomicfile *af = atomicfile_open(in->history_path, NULL, 0, err, sizeof(err));
    FILE *f = af ? atomicfile_stream(af, err, sizeof(err)) : NULL;

    for (size_t i = 0; f && list && list[i]; i++) {
        if (list[i]->timestamp && list[i]->timestamp[0]) {
            fprintf(f, "%s\n", list[i]->timestamp);
        }
        fprintf(f, "%s\n", list[i]->line);
    }
    if (!f) {
        atomicfile_abort(af);
    } else if (atomicfile_commit(af, err, sizeof(err)) == 0) {
        return;
    }
    if (!in->history_failed) {
        in->history_failed = 1;
        tui_message(in->tui, 1, "history not saved: %s", err);
    }
}

static void rl_line_accepted(char *line)
{
    if (!line) {
        active->eof = 1;
        return;
    }
    if (*line) {
        HIST_ENTRY *last = history_length > 0 ? history_get(history_base + history_length - 1)
                                              : NULL;

        if (!last || strcmp(last->line, line) != 0) {
            add_history(line);
            if (active->history_path) {
                save_history(active);
            }
        }
    }
    active->lines = tui_xrealloc(active->lines, (active->n_lines + 1) * sizeof(char *));
    active->lines[active->n_lines++] = line;
}

/* Alt-Enter: a newline inside the message. */
static int rl_insert_newline(int count, int key)
{
    (void)key;
    for (int i = 0; i < count; i++) {
        rl_insert_text("\n");
    }
    return 0;
}

#define MAX_MATCHES 64

/* Candidates found by commands_complete for the word being completed. */
static const char *matches_found[MAX_MATCHES];
static size_t n_matches_found;

static char *next_match(const char *text, int state)
{
    static size_t i;

    (void)text;
    if (state == 0) {
        i = 0;
    }
    return i < n_matches_found ? strdup(matches_found[i++]) : NULL;
}

/* Persona names for /prompt (chat_template_names), read at each Tab. */
static char *next_persona(const char *text, int state)
{
    static char **names;
    static size_t i;
    size_t len = strlen(text);

    if (state == 0) {
        chat_template_names_free(names);
        names = chat_template_names();
        i = 0;
    }
    while (names && names[i]) {
        const char *name = names[i++];

        if (!strncmp(name, text, len)) {
            return strdup(name);
        }
    }
    return NULL;
}

/* Tab completes what commands.h completes (command names, knob and
 * snapshot names), persona names after /prompt and file names after the
 * commands that take a file (/save, /load, /export); nothing in a
 * message. */
static char **rl_complete_line(const char *text, int start, int end)
{
    size_t word_start, n;

    (void)start;
    rl_attempted_completion_over = 1;
    if (!active || !rl_line_buffer) {
        return NULL;
    }
    switch (commands_complete_hint(rl_line_buffer, (size_t)end)) {
    case COMMAND_COMPLETE_FILE:
        rl_filename_completion_desired = 1;
        return rl_completion_matches(text, rl_filename_completion_function);
    case COMMAND_COMPLETE_PERSONA:
        return rl_completion_matches(text, next_persona);
    default:
        break;
    }
    n = commands_complete(active->tui->chat, rl_line_buffer, (size_t)end, matches_found,
                          MAX_MATCHES, &word_start);
    n_matches_found = n < MAX_MATCHES ? n : MAX_MATCHES;
    if (n_matches_found == 0) {
        return NULL;
    }
    return rl_completion_matches(text, next_match);
}

/* Several matches: listed in the key bar instead of on the terminal. */
static void rl_show_matches(char **matches, int n, int max_len)
{
    char buf[256];
    size_t used = 0;

    (void)max_len;
    buf[0] = '\0';
    for (int i = 1; i <= n && used + 2 < sizeof(buf); i++) {
        int k = snprintf(buf + used, sizeof(buf) - used, "%s%s", i > 1 ? "  " : "", matches[i]);

        if (k < 0) {
            break;
        }
        used += (size_t)k;
    }
    if (active) {
        tui_message(active->tui, 0, "%s", buf);
    }
}

int tui_input_start(struct tui *t)
{
    struct input *in = t->input->data;
    char *dir = paths_state_dir();

    active = in;
    in->tui = t;
    in->null_out = fopen("/dev/null", "w");
    rl_readline_name = "rwkv-chat";
    rl_instream = stdin;
    rl_outstream = in->null_out ? in->null_out : stderr;
    rl_getc_function = rl_getc_from_queue;
    rl_input_available_hook = rl_queue_available;
    rl_redisplay_function = rl_redisplay_nothing;
    rl_prep_term_function = rl_prep_nothing;
    rl_deprep_term_function = rl_deprep_nothing;
    rl_catch_signals = 0;
    rl_catch_sigwinch = 0;
    rl_change_environment = 0;
    rl_attempted_completion_function = rl_complete_line;
    rl_completer_word_break_characters = " \t\n";
    rl_completion_display_matches_hook = rl_show_matches;
    rl_sort_completion_matches = 0;

    /* Multi-line messages survive in the history file. */
    history_write_timestamps = 1;
    history_comment_char = '#';     /* timestamps are written only with it */
    history_multiline_entries = 1;
    using_history();
    stifle_history(HISTORY_MAX);
    if (dir && paths_mkdirs(dir) == 0) {
        in->history_path = paths_join(dir, "history");
        read_history(in->history_path);     /* none yet: made by the first line */
    }
    free(dir);

    rl_callback_handler_install("", rl_line_accepted);
    /* Bytes above 127 are text (UTF-8), never Meta keys, in any locale. */
    rl_variable_bind("input-meta", "on");
    rl_variable_bind("convert-meta", "off");
    rl_variable_bind("output-meta", "on");
    rl_variable_bind("bell-style", "none");
    rl_variable_bind("enable-bracketed-paste", "off");
    rl_variable_bind("show-all-if-ambiguous", "on");
    rl_variable_bind("editing-mode", "emacs");
    rl_bind_keyseq("\033\r", rl_insert_newline);
    rl_bind_keyseq("\033\n", rl_insert_newline);
    rl_bind_keyseq("\033[1;5C", rl_forward_word);
    rl_bind_keyseq("\033[1;5D", rl_backward_word);
    rl_bind_keyseq("\033[H", rl_beg_of_line);
    rl_bind_keyseq("\033[F", rl_end_of_line);
    rl_bind_keyseq("\033[3~", rl_delete);
    return 0;
}

void tui_input_stop(struct tui *t)
{
    struct input *in = t->input->data;

    rl_callback_handler_remove();
    clear_history();
    if (in->null_out) {
        fclose(in->null_out);
        in->null_out = NULL;
    }
    rl_outstream = stdout;
    active = NULL;
}

/* Feeds queued bytes to readline; it reads them through rl_getc_function. */
static void feed(struct input *in, const char *bytes, size_t n)
{
    queue_push(in, bytes, n);
    while (in->q_len > 0) {
        rl_callback_read_char();
    }
}

static int input_key(struct tui_panel *p, struct tui *t, int key)
{
    struct input *in = p->data;
    const char *seq = NULL;
    char c;

    (void)t;
    if (key & TUI_KEY_META) {
        char two[2] = { '\033', (char)(key & 0xff) };

        feed(in, two, 2);
        return 1;
    }
    switch (key) {
    case KEY_LEFT: seq = "\033[D"; break;
    case KEY_RIGHT: seq = "\033[C"; break;
    case KEY_UP: seq = "\033[A"; break;
    case KEY_DOWN: seq = "\033[B"; break;
    case KEY_HOME: seq = "\033[H"; break;
    case KEY_END: seq = "\033[F"; break;
    case KEY_DC: seq = "\033[3~"; break;
    case KEY_BACKSPACE: seq = "\177"; break;
    case KEY_ENTER: seq = "\r"; break;
    case TUI_KEY_CTRL_LEFT: seq = "\033[1;5D"; break;
    case TUI_KEY_CTRL_RIGHT: seq = "\033[1;5C"; break;
    default:
        if (key < 0 || key > 0xff) {
            return 0;
        }
        c = (char)key;
        feed(in, &c, 1);
        return 1;
    }
    feed(in, seq, strlen(seq));
    return 1;
}

/* Walks the edited text as laid out in avail columns, calling fn for each
 * row (byte range) and noting the row and column of byte offset point. */
static int layout(const char *s, size_t n, int avail, size_t point, int *prow, int *pcol,
                  void (*fn)(void *ctx, int row, size_t off, size_t len), void *ctx)
{
    size_t i = 0, row_start = 0;
    int row = 0, col = 0;

    if (avail < 2) {
        avail = 2;
    }
    while (i < n) {
        size_t j;
        int w;

        if (i == point) {
            *prow = row;
            *pcol = col;
        }
        if (s[i] == '\n') {
            if (fn) {
                fn(ctx, row, row_start, i - row_start);
            }
            row++;
            col = 0;
            row_start = ++i;
            continue;
        }
        /* One character (grapheme cluster) at a time, as it is drawn; a
         * cursor inside one (before an emoji's skin-tone modifier) shows
         * after it. */
        j = tui_text_cluster(s, n, i, &w);
        if (col + w > avail) {
            if (fn) {
                fn(ctx, row, row_start, i - row_start);
            }
            row++;
            col = 0;
            row_start = i;
        }
        col += w;
        if (point > i && point < j) {
            *prow = row;
            *pcol = col;
        }
        i = j;
    }
    if (point >= n) {
        *prow = row;
        *pcol = col;
        if (col >= avail) {     /* the cursor sits past a full row */
            *prow = row + 1;
            *pcol = 0;
        }
    }
    if (fn) {
        fn(ctx, row, row_start, n - row_start);
    }
    return (*prow > row ? *prow : row) + 1;
}

int tui_input_rows(struct tui *t, int w)
{
    int r = 0, c = 0;

    (void)t;
    return layout(rl_line_buffer ? rl_line_buffer : "", rl_line_buffer ? (size_t)rl_end : 0,
                  w - PROMPT_WIDTH - 1, (size_t)rl_point, &r, &c, NULL, NULL);
}

struct draw_ctx {
    WINDOW *win;
    const char *s;
    int first, h, avail;
};

static void draw_row(void *ctx, int row, size_t off, size_t len)
{
    struct draw_ctx *d = ctx;

    if (row < d->first || row >= d->first + d->h) {
        return;
    }
    wmove(d->win, row - d->first, PROMPT_WIDTH);
    tui_text_draw(d->win, d->s + off, len, d->avail);
}

static void input_draw(struct tui_panel *p, struct tui *t)
{
    struct input *in = p->data;
    const char *s = rl_line_buffer ? rl_line_buffer : "";
    size_t n = rl_line_buffer ? (size_t)rl_end : 0;
    int avail = p->w - PROMPT_WIDTH - 1;
    int prow = 0, pcol = 0, rows;
    struct draw_ctx d = { p->win, s, 0, p->h, avail };
    attr_t prompt = t->focus == p && !t->generating ? tui_attr(t, TUI_COLOUR_USER, 0) | A_BOLD
                                                    : A_DIM;

    werase(p->win);
    rows = layout(s, n, avail, (size_t)rl_point, &prow, &pcol, NULL, NULL);
    /* Keep the cursor's row in view. */
    if (prow < in->first_row) {
        in->first_row = prow;
    } else if (prow >= in->first_row + p->h) {
        in->first_row = prow - p->h + 1;
    }
    if (in->first_row > rows - p->h) {
        in->first_row = rows - p->h > 0 ? rows - p->h : 0;
    }
    d.first = in->first_row;
    wattron(p->win, prompt);
    for (int r = 0; r < p->h; r++) {
        mvwaddstr(p->win, r, 0, r + in->first_row == 0 ? PROMPT : ". ");
    }
    wattroff(p->win, prompt);
    layout(s, n, avail, (size_t)rl_point, &prow, &pcol, draw_row, &d);
    if (n == 0 && t->focus == p) {
        const char *hint = t->generating ? "replying... Esc or Ctrl-C stops"
                                         : "type a message, /help for commands";

        wattron(p->win, A_DIM);
        mvwaddnstr(p->win, 0, PROMPT_WIDTH, hint, avail > 0 ? avail : 0);
        wattroff(p->win, A_DIM);
    }
    wmove(p->win, prow - in->first_row, PROMPT_WIDTH + pcol);
}

void tui_input_place_cursor(struct tui *t)
{
    struct input *in = t->input->data;
    const char *s = rl_line_buffer ? rl_line_buffer : "";
    size_t n = rl_line_buffer ? (size_t)rl_end : 0;
    int prow = 0, pcol = 0;

    if (!t->input->win) {
        return;
    }
    layout(s, n, t->input->w - PROMPT_WIDTH - 1, (size_t)rl_point, &prow, &pcol, NULL, NULL);
    wmove(t->input->win, prow - in->first_row, PROMPT_WIDTH + pcol);
    wnoutrefresh(t->input->win);
}

void tui_input_insert(struct tui *t, const char *text, size_t n)
{
    char *clean = tui_xmalloc(n + 1);
    size_t k = 0;

    (void)t;
    for (size_t i = 0; i < n; i++) {
        if (text[i] == '\r') {
            clean[k++] = '\n';
            if (i + 1 < n && text[i + 1] == '\n') {
                i++;
            }
        } else if (text[i] != '\0') {
            clean[k++] = text[i];
        }
    }
    clean[k] = '\0';
    rl_insert_text(clean);
    free(clean);
}

void tui_input_feed(struct tui *t, const char *bytes, size_t n)
{
    feed(t->input->data, bytes, n);
}

void tui_input_set_text(struct tui *t, const char *text)
{
    (void)t;
    rl_replace_line(text, 1);
    rl_point = rl_end;
}

int tui_input_empty(struct tui *t)
{
    (void)t;
    return !rl_line_buffer || rl_end == 0;
}

char *tui_input_take_line(struct tui *t)
{
    struct input *in = t->input->data;
    char *line;

    if (in->n_lines == 0) {
        return NULL;
    }
    line = in->lines[0];
    memmove(in->lines, in->lines + 1, (in->n_lines - 1) * sizeof(char *));
    in->n_lines--;
    return line;
}

const char *tui_input_mode_line(struct tui *t)
{
    (void)t;
    /* Our prompt is "": anything readline displays instead is a mode. */
    return rl_display_prompt && *rl_display_prompt ? rl_display_prompt : NULL;
}

int tui_input_eof(struct tui *t)
{
    return ((struct input *)t->input->data)->eof;
}

static void input_free(struct tui_panel *p)
{
    struct input *in = p->data;

    for (size_t i = 0; i < in->n_lines; i++) {
        free(in->lines[i]);
    }
    free(in->lines);
    free(in->history_path);
    free(in);
}

static const struct tui_panel_ops input_ops = {
    .name = "input",
    .draw = input_draw,
    .key = input_key,
    .free = input_free,
};

struct tui_panel *tui_input_new(void)
{
    struct input *in = tui_xmalloc(sizeof(*in));

    memset(in, 0, sizeof(*in));
    return tui_panel_new(&input_ops, in);
}
