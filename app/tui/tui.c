/* tui.c - the curses interface: layout, key routing, the loop that streams
 * one token per iteration, signals, and restoring the terminal. */
#include "app/tui/tui.h"
#include "app/tui/tui_internal.h"

#include <ctype.h>
#include <errno.h>
#include <langinfo.h>
#include <locale.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "app/session/commands.h"
#include "app/session/options.h"
#include "app/session/paths.h"

#define SIDE_WIDTH 30           /* the knobs/snapshots column */
#define SIDE_AUTO_COLS 100      /* terminals this wide show it unasked */
#define MIN_ROWS 6
#define MIN_COLS 24
#define ESC_DELAY_MS 25
#define FRAME_SECONDS 0.02      /* redraw at most this often while streaming */

/* Signals only set flags and the loop acts on them; a handler has no
 * context, hence these file-level flags. */
static volatile sig_atomic_t quit_signal;
static volatile sig_atomic_t interrupt_signal;
static volatile sig_atomic_t curses_active;

static void on_quit_signal(int sig)
{
    quit_signal = sig;
}

static void on_interrupt_signal(int sig)
{
    (void)sig;
    interrupt_signal = 1;
}

/* A crash must not leave the terminal in raw mode: restore it, then die of
 * the same signal. */
static void on_fatal_signal(int sig)
{
    if (curses_active) {
        static const char paste_off[] = "\033[?2004l";

        if (write(STDOUT_FILENO, paste_off, sizeof(paste_off) - 1) < 0) {
            /* nothing more to do for a dying process */
        }
        endwin();
        curses_active = 0;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static double now_seconds(void);

static void restore_terminal(void)
{
    if (curses_active) {
        fputs("\033[?2004l", stdout);
        fflush(stdout);
        endwin();
        curses_active = 0;
    }
}

static void fatal(const char *what)
{
    restore_terminal();
    fprintf(stderr, "rwkv-chat: %s\n", what);
    exit(1);
}

/* --- colours ------------------------------------------------------------ */

/* A curses colour from a config name ("cyan", "244", "default"); def if
 * name is NULL or unknown. */
static short colour_number(const char *name, short def)
{
    static const char *const names[] = {
        "black", "red", "green", "yellow", "blue", "magenta", "cyan", "white",
    };
    char *end;
    long n;

    if (!name || !*name) {
        return def;
    }
    if (!strcasecmp(name, "default") || !strcasecmp(name, "none")) {
        return -1;
    }
    for (short i = 0; i < 8; i++) {
        if (!strcasecmp(name, names[i])) {
            return i;
        }
    }
    n = strtol(name, &end, 10);
    if (*end == '\0' && n >= 0 && n < COLORS) {
        return (short)n;
    }
    return def;
}

static void start_colours(struct tui *t)
{
    const struct app_colours *c = t->opts ? &t->opts->colours : NULL;
    short user, assistant, status, accent, error;

    /* NO_COLOR (no-color.org): set and not empty means no colours. */
    if ((c && c->mono) || (getenv("NO_COLOR") && *getenv("NO_COLOR")) || !has_colors() ||
        start_color() != OK) {
        return;
    }
    use_default_colors();
    user = colour_number(c ? c->user : NULL, COLOR_CYAN);
    assistant = colour_number(c ? c->assistant : NULL, COLOR_GREEN);
    status = colour_number(c ? c->status : NULL, COLOR_BLUE);
    accent = colour_number(c ? c->accent : NULL, COLOR_CYAN);
    error = colour_number(c ? c->error : NULL, COLOR_RED);
    init_pair(TUI_COLOUR_STATUS, COLOR_WHITE, status);
    init_pair(TUI_COLOUR_USER, user, -1);
    init_pair(TUI_COLOUR_ASSISTANT, assistant, -1);
    init_pair(TUI_COLOUR_NOTE, COLOR_YELLOW, -1);
    init_pair(TUI_COLOUR_ERROR, error, -1);
    init_pair(TUI_COLOUR_BORDER, accent, -1);
    init_pair(TUI_COLOUR_SELECTED, COLOR_BLACK, accent);
    init_pair(TUI_COLOUR_KEY, COLOR_BLACK, accent);
    init_pair(TUI_COLOUR_DEMO, COLOR_BLACK, COLOR_YELLOW);
    t->has_colour = 1;
}

/* --- layout ------------------------------------------------------------- */

static void place(struct tui_panel *p, int y, int x, int h, int w)
{
    if (h <= 0 || w <= 0) {
        if (p->win) {
            delwin(p->win);
            p->win = NULL;
        }
        p->h = p->w = 0;
        return;
    }
    if (p->win && p->y == y && p->x == x && p->h == h && p->w == w) {
        return;
    }
    if (p->win) {
        delwin(p->win);
    }
    p->win = newwin(h, w, y, x);
    if (!p->win) {
        fatal("cannot create a curses window");
    }
    keypad(p->win, TRUE);
    p->y = y;
    p->x = x;
    p->h = h;
    p->w = w;
}

/* Rows for the input: what its text needs, at most a third of the screen. */
static int input_height(struct tui *t)
{
    int max = (t->rows - 3) / 3 > 1 ? (t->rows - 3) / 3 : 1;
    int rows = tui_input_rows(t, t->cols);

    return rows > max ? max : rows;
}

/* Computes every panel's geometry from the terminal size and the input's
 * height.  Side panels show in wide terminals or while they have focus. */
static void layout(struct tui *t)
{
    int rows = LINES, cols = COLS, input_h, body_h, side_w = 0;

    t->rows = rows;
    t->cols = cols;
    werase(stdscr);     /* the old rule above the input must go */
    if (rows < MIN_ROWS || cols < MIN_COLS) {
        place(t->status, 0, 0, 0, 0);
        place(t->transcript, 0, 0, 0, 0);
        place(t->knobs, 0, 0, 0, 0);
        place(t->snapshots, 0, 0, 0, 0);
        place(t->input, 0, 0, 0, 0);
        place(t->keybar, 0, 0, 0, 0);
        return;
    }
    t->side_shown = cols >= SIDE_AUTO_COLS || t->focus != t->input;
    if (t->side_shown) {
        side_w = cols >= 3 * SIDE_WIDTH ? SIDE_WIDTH : cols / 3;
    }
    input_h = input_height(t);
    body_h = rows - 3 - input_h;

    place(t->status, 0, 0, 1, cols);
    place(t->transcript, 1, 0, body_h, cols - side_w);
    if (side_w > 0) {
        int knobs_h = tui_knobs_rows() < body_h ? tui_knobs_rows() : body_h;
        int snaps_h = body_h - knobs_h;

        place(t->knobs, 1, cols - side_w, knobs_h, side_w);
        place(t->snapshots, 1 + knobs_h, cols - side_w, snaps_h >= 3 ? snaps_h : 0, side_w);
    } else {
        place(t->knobs, 0, 0, 0, 0);
        place(t->snapshots, 0, 0, 0, 0);
    }
    place(t->input, rows - 1 - input_h, 0, input_h, cols);
    place(t->keybar, rows - 1, 0, 1, cols);
    t->relayout = 0;
}

static void draw_panel(struct tui *t, struct tui_panel *p)
{
    if (p->win) {
        p->ops->draw(p, t);
        wnoutrefresh(p->win);
    }
}

/* Draws every panel and puts the cursor in the focused one. */
static void draw(struct tui *t)
{
    if (t->relayout || t->rows != LINES || t->cols != COLS ||
        (t->input->win && input_height(t) != t->input->h)) {
        layout(t);
    }
    if (!t->transcript->win) {
        char line[64];

        /* Short lines, so that a narrow terminal still shows all of it. */
        erase();
        mvaddnstr(0, 0, "terminal too small:", COLS);
        snprintf(line, sizeof line, "at least %dx%d,", MIN_COLS, MIN_ROWS);
        mvaddnstr(1, 0, line, COLS);
        snprintf(line, sizeof line, "this one is %dx%d", COLS, LINES);
        mvaddnstr(2, 0, line, COLS);
        refresh();
        return;
    }
    /* The rule between the conversation and the input line. */
    attron(A_DIM);
    mvhline(t->input->y - 1, 0, ACS_HLINE, t->cols);
    attroff(A_DIM);
    wnoutrefresh(stdscr);
    draw_panel(t, t->status);
    draw_panel(t, t->transcript);
    draw_panel(t, t->knobs);
    draw_panel(t, t->snapshots);
    draw_panel(t, t->keybar);
    draw_panel(t, t->input);
    if (t->focus == t->input && t->input->win) {
        curs_set(1);
        tui_input_place_cursor(t);
    } else {
        curs_set(0);
    }
    doupdate();
}

/* --- replies and commands ---------------------------------------------- */

void tui_start_reply(struct tui *t)
{
    size_t n;
    const char *so_far;

    tui_transcript_sync(t);
    tui_transcript_live_begin(t);
    /* A continued reply shows what it had before it goes on. */
    so_far = chat_reply_so_far(t->chat, CHAT_PART_REASONING, &n);
    tui_transcript_live_append(t, so_far, n, CHAT_PART_REASONING);
    so_far = chat_reply_so_far(t->chat, CHAT_PART_ANSWER, &n);
    tui_transcript_live_append(t, so_far, n, CHAT_PART_ANSWER);
    t->generating = 1;
}

/* The reply ended (stop is a chat_stop, or -1 after an error). */
static void finish_reply(struct tui *t, int stop, const char *err)
{
    t->generating = 0;
    tui_transcript_live_end(t);
    if (stop < 0) {
        tui_transcript_note(t, TUI_NOTE_ERROR, err);
    } else if (stop == CHAT_STOP_INTERRUPT) {
        tui_transcript_note(t, TUI_NOTE_INFO, "reply stopped");
    } else if (stop == CHAT_STOP_LENGTH) {
        tui_transcript_note(t, TUI_NOTE_INFO, "reply cut at max_tokens (/continue goes on; /set max_tokens N)");
    }
}

static void stop_reply(struct tui *t)
{
    if (t->generating) {
        chat_interrupt(t->chat);
        finish_reply(t, CHAT_STOP_INTERRUPT, NULL);
    }
}

/* Generates one token of the reply in progress. */
static void step_reply(struct tui *t)
{
    char err[RWKV_ERRLEN];
    const char *out = NULL;
    size_t len = 0;
    int rc;

    err[0] = '\0';
    rc = chat_step(t->chat, &out, &len, err, sizeof(err));
    if (rc < 0) {
        finish_reply(t, -1, err[0] ? err : "generation failed");
        return;
    }
    if (len > 0) {
        tui_transcript_live_append(t, out, len, chat_step_part(t->chat));
    }
    if (rc != CHAT_STOP_NONE) {
        finish_reply(t, rc, NULL);
    }
}

/* Mouse reporting: only the wheel, and only when asked for (F5), because
 * while it is on the terminal no longer selects text by dragging. */
static void set_mouse(struct tui *t, int on)
{
    t->mouse_on = on;
    mousemask(on ? (BUTTON4_PRESSED
#ifdef BUTTON5_PRESSED
                    | BUTTON5_PRESSED
#endif
                   ) : 0, NULL);
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* /copy: hands text to the terminal's clipboard with OSC 52 (xterm,
 * kitty, iTerm2, WezTerm, tmux with set-clipboard on); a terminal without
 * it ignores the sequence. */
static void copy_to_clipboard(struct tui *t, const char *text)
{
    size_t n = strlen(text), i;

    fputs("\033]52;c;", stdout);
    for (i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)text[i] << 16;
        char out[4];

        v |= i + 1 < n ? (unsigned char)text[i + 1] << 8 : 0;
        v |= i + 2 < n ? (unsigned char)text[i + 2] : 0;
        out[0] = b64[v >> 18 & 63];
        out[1] = b64[v >> 12 & 63];
        out[2] = i + 1 < n ? b64[v >> 6 & 63] : '=';
        out[3] = i + 2 < n ? b64[v & 63] : '=';
        fwrite(out, 1, 4, stdout);
    }
    fputs("\a", stdout);
    fflush(stdout);
    tui_message(t, 0, "the last reply (%zu bytes) is on the clipboard (if the terminal takes "
                "OSC 52)", n);
}

/* A message (or /edit TEXT) whose prompt was stopped: nothing was sent,
 * the line goes back to the input for another try. */
static void prompt_interrupted(struct tui *t, const char *line, const char *err)
{
    char note[RWKV_ERRLEN + 64];

    tui_transcript_sync(t);
    snprintf(note, sizeof(note), "message not sent: %s", err);
    tui_transcript_note(t, TUI_NOTE_INFO, note);
    tui_input_set_text(t, line);
    tui_message(t, 0, "prompt interrupted: the message is back in the input line");
}

/* Runs a slash command; line is also what the input gets back if the
 * command's prompt is stopped. */
static void run_command(struct tui *t, const char *cmd, const char *line)
{
    struct command_result res;
    int rc = commands_run(t->session, cmd, &res);

    if (res.changed & (COMMAND_CHANGED_TRANSCRIPT | COMMAND_CHANGED_TEMPLATE)) {
        tui_transcript_sync(t);
    }
    if (res.action == COMMAND_INTERRUPTED) {
        prompt_interrupted(t, line, res.text ? res.text : "interrupted");
        command_result_free(&res);
        return;
    }
    if (rc < 0 || res.action == COMMAND_ERROR) {
        tui_transcript_note(t, TUI_NOTE_ERROR, res.text ? res.text : "command failed");
        command_result_free(&res);
        return;
    }
    switch (res.action) {
    case COMMAND_QUIT:
        t->quit = 1;
        break;
    case COMMAND_REPLY:
    case COMMAND_CONTINUE:
        tui_start_reply(t);
        break;
    case COMMAND_EDIT:
        tui_input_set_text(t, res.text ? res.text : "");
        tui_message(t, 0, "edit the message and press Enter to send it again");
        break;
    case COMMAND_COPY:
        copy_to_clipboard(t, res.text ? res.text : "");
        break;
    default:
        if (res.text) {
            /* Long output (help, info) goes in the transcript; a mere
             * confirmation too, so the conversation's history shows it. */
            tui_transcript_note(t, strchr(res.text, '\n') ? TUI_NOTE_OUTPUT : TUI_NOTE_INFO,
                                res.text);
        }
        break;
    }
    command_result_free(&res);
}

/* Reads the keys typed while a prompt is read, waiting up to delay_ms for
 * the first: 1 when Ctrl-C, Esc or a signal asks to stop it; other keys
 * are held until it is over. */
static int poll_prompt_keys(struct tui *t, int delay_ms)
{
    int key, next, stop = 0;

    if (quit_signal || interrupt_signal) {
        interrupt_signal = 0;
        return 1;
    }
    wtimeout(stdscr, delay_ms);
    while (!stop && t->n_held < TUI_HELD_KEYS && (key = wgetch(stdscr)) != ERR) {
        wtimeout(stdscr, 0);
        if (key == 3) {
            stop = 1;
        } else if (key == 27 && !t->pasting) {
            /* a lone Esc (curses waited for a sequence); Esc+key is Alt */
            if ((next = wgetch(stdscr)) == ERR) {
                stop = 1;
            } else {
                t->held[t->n_held++] = key;
                if (t->n_held < TUI_HELD_KEYS) {
                    t->held[t->n_held++] = next;
                } else {
                    ungetch(next);
                }
            }
        } else {
            t->held[t->n_held++] = key;
        }
    }
    return stop;
}

/* Between the pieces of a long prompt (the chat's progress callback):
 * shows how far it got and reads the keys typed meanwhile. */
static int prompt_progress(void *ctx, size_t fed, size_t total)
{
    struct tui *t = ctx;
    int stop;

    t->prompt_fed = fed;
    t->prompt_total = total;
    if (quit_signal || interrupt_signal) {
        interrupt_signal = 0;
        return 1;
    }
    stop = poll_prompt_keys(t, t->prompt_delay_ms);
    if (fed == 0 || now_seconds() - t->prompt_drawn >= FRAME_SECONDS) {
        draw(t);
        t->prompt_drawn = now_seconds();
    }
    return stop;
}

/* Between the engine's layers while any prompt is read (the chat's stop
 * poll): Ctrl-C and Esc stop it within a layer.  The keyboard is looked at
 * at most every few milliseconds: a layer of a small model takes less. */
static int prompt_stop_poll(void *ctx)
{
    struct tui *t = ctx;
    double now = now_seconds();

    if (quit_signal || interrupt_signal) {
        return poll_prompt_keys(t, 0);
    }
    if (now - t->prompt_polled < 0.005) {
        return 0;
    }
    t->prompt_polled = now;
    return poll_prompt_keys(t, 0);
}

/* Gives the keys held while a prompt was read back to curses, in order. */
static void release_held_keys(struct tui *t)
{
    while (t->n_held > 0) {
        ungetch(t->held[--t->n_held]);
    }
}

/* Whether text holds a blank line between two lines of text: the chat
 * joins those (to the model a blank line ends a turn). */
static int has_blank_line(const char *text)
{
    const char *p = strchr(text, '\n');

    while (p) {
        const char *q = p + 1;

        while (*q == ' ' || *q == '\t' || *q == '\r') {
            q++;
        }
        if (*q == '\n') {
            while (*q == '\n' || *q == ' ' || *q == '\t' || *q == '\r') {
                q++;
            }
            return *q != '\0';
        }
        p = strchr(q, '\n');
    }
    return 0;
}

void tui_submit(struct tui *t, const char *line)
{
    char err[RWKV_ERRLEN];
    const char *s = line;
    int rc;

    while (*s == ' ' || *s == '\t' || *s == '\n') {
        s++;
    }
    if (!*s) {
        return;
    }
    if (commands_is_command(s)) {
        run_command(t, s, line);    /* /edit TEXT feeds a prompt too */
    } else {
        if (s[0] == '/' && s[1] == '/') {
            s++;    /* "//text" sends "/text" */
        }
        rc = chat_send(t->chat, s, err, sizeof(err));
        if (rc == CHAT_INTERRUPTED) {
            prompt_interrupted(t, line, err);
        } else if (rc < 0) {
            tui_transcript_sync(t);
            tui_transcript_note(t, TUI_NOTE_ERROR, err);
        } else {
            if (has_blank_line(s)) {
                tui_transcript_sync(t);
                tui_transcript_note(t, TUI_NOTE_INFO, "the blank lines of the message were "
                                    "joined: to the model a blank line ends a turn");
            }
            tui_start_reply(t);
        }
    }
    /* The prompt (if any) is over: the status line stops counting it and
     * the keys typed meanwhile are read now. */
    t->prompt_total = 0;
    release_held_keys(t);
}

/* --- keys ---------------------------------------------------------------- */

static void on_ctrl_c(struct tui *t)
{
    if (t->generating) {
        stop_reply(t);
        t->ctrl_c_armed = 0;
        return;
    }
    if (t->focus != t->input) {
        tui_focus(t, t->input);
        return;
    }
    if (!tui_input_empty(t)) {
        tui_input_set_text(t, "");
        return;
    }
    if (t->ctrl_c_armed) {
        t->quit = 1;
        return;
    }
    t->ctrl_c_armed = 1;
    tui_message(t, 0, "press Ctrl-C again to quit (the conversation is saved)");
}

static void on_escape(struct tui *t)
{
    if (t->generating) {
        stop_reply(t);
    } else if (t->focus != t->input) {
        tui_focus(t, t->input);
    } else {
        tui_transcript_scroll(t, 0, 0);
    }
}

static void toggle_focus(struct tui *t, struct tui_panel *p)
{
    tui_focus(t, t->focus == p ? t->input : p);
}

static void handle_mouse(struct tui *t)
{
    MEVENT ev;

    if (getmouse(&ev) != OK) {
        return;
    }
    if (ev.bstate & BUTTON4_PRESSED) {
        tui_transcript_scroll(t, 3, 0);
    }
#ifdef BUTTON5_PRESSED
    if (ev.bstate & BUTTON5_PRESSED) {
        tui_transcript_scroll(t, -3, 0);
    }
#endif
}

static const char key_help[] =
    "Enter               send the message (Alt-Enter: new line)\n"
    "Tab                 complete a command, knob, snapshot, persona or file name\n"
    "Up/Down, Ctrl-R     history (kept between runs), search it\n"
    "emacs keys          Ctrl-A/E/K/U/W/Y, Alt-B/F, Ctrl-arrows\n"
    "PgUp/PgDn, wheel    scroll the conversation (the wheel: where the terminal\n"
    "                    sends it as keys, or after F5)\n"
    "Esc, Ctrl-C         stop the reply (the partial reply is kept), or a long\n"
    "                    message while it is read (it comes back to the input)\n"
    "F2                  sampling knobs: Up/Down pick, Left/Right change\n"
    "F3                  snapshots: Enter restore, n new, b branch, d delete\n"
    "F4                  fold or unfold the think blocks of G1 replies\n"
    "F5                  mouse wheel scrolling on or off (off: drag selects text)\n"
    "/copy, /export FILE copy the last reply, write the conversation as Markdown\n"
    "Ctrl-L              redraw the screen\n"
    "Ctrl-D, Ctrl-C x2   quit (the conversation is saved for --resume)";

static void handle_key(struct tui *t, int key);

#define PASTE_BEGIN "\033[200~"
#define PASTE_END "\033[201~"

/* Bracketed paste: everything up to ESC [ 201 ~ is text, newlines and
 * tabs included, inserted in the input in one go. */
static void paste_key(struct tui *t, int key)
{
    size_t end_len = strlen(PASTE_END);

    if (key == t->key_paste_end && t->key_paste_end) {
        t->paste_len += end_len;    /* as if the bytes had come */
        if (t->paste_len > t->paste_cap) {
            t->paste_cap = t->paste_len;
            t->paste = tui_xrealloc(t->paste, t->paste_cap);
        }
        memcpy(t->paste + t->paste_len - end_len, PASTE_END, end_len);
    } else if (key >= 0 && key <= 0xff) {
        if (t->paste_len == t->paste_cap) {
            t->paste_cap = t->paste_cap ? t->paste_cap * 2 : 256;
            t->paste = tui_xrealloc(t->paste, t->paste_cap);
        }
        t->paste[t->paste_len++] = (char)key;
    }
    if (t->paste_len >= end_len &&
        memcmp(t->paste + t->paste_len - end_len, PASTE_END, end_len) == 0) {
        t->pasting = 0;
        tui_focus(t, t->input);
        tui_input_insert(t, t->paste, t->paste_len - end_len);
        t->paste_len = 0;
    }
}

/* After ESC [: the start of a paste, or a sequence curses does not know,
 * which goes to readline as it came. */
static void escape_bracket(struct tui *t)
{
    char seq[8] = "\033[";
    size_t n = 2;
    int c;

    while (n < 6 && (c = wgetch(stdscr)) != ERR && c >= 0 && c <= 0xff) {
        seq[n++] = (char)c;
        if (!isdigit(c)) {
            break;
        }
    }
    if (n == strlen(PASTE_BEGIN) && memcmp(seq, PASTE_BEGIN, n) == 0) {
        t->pasting = 1;
        t->paste_len = 0;
        return;
    }
    if (t->focus == t->input) {
        tui_input_feed(t, seq, n);
    } else {
        on_escape(t);
        for (size_t i = 1; i < n; i++) {
            handle_key(t, (unsigned char)seq[i]);
        }
    }
}

static void handle_key(struct tui *t, int key)
{
    if (t->pasting) {
        paste_key(t, key);
        return;
    }
    if (key == t->key_paste_begin && t->key_paste_begin) {
        t->pasting = 1;
        t->paste_len = 0;
        return;
    }
    if (key != 3) {
        t->ctrl_c_armed = 0;
    }
    if (key != KEY_RESIZE && key != KEY_MOUSE) {
        t->message[0] = '\0';
    }
    if (key == t->key_ctrl_left && key) {
        key = TUI_KEY_CTRL_LEFT;
    } else if (key == t->key_ctrl_right && key) {
        key = TUI_KEY_CTRL_RIGHT;
    }
    switch (key) {
    case KEY_RESIZE:
        t->relayout = 1;
        tui_transcript_invalidate(t);
        return;
    case 3:     /* Ctrl-C: raw mode delivers it as a key */
        on_ctrl_c(t);
        return;
    case 27: {
        /* curses has already waited ESCDELAY for an escape sequence: a
         * byte right behind the Esc is Alt+byte, nothing means Esc. */
        int next;

        wtimeout(stdscr, 0);
        next = wgetch(stdscr);
        if (next == ERR) {
            on_escape(t);
        } else if (next == '[') {
            escape_bracket(t);
        } else if (t->focus == t->input && next >= 0 && next <= 0xff) {
            t->input->ops->key(t->input, t, TUI_KEY_META | next);
        } else {
            /* Alt means nothing in the side panels: Esc, then the key. */
            on_escape(t);
            handle_key(t, next);
        }
        return;
    }
    case 12:    /* Ctrl-L */
        clearok(curscr, TRUE);
        return;
    case 26:    /* Ctrl-Z: curses' SIGTSTP handler restores the screen */
        raise(SIGTSTP);
        return;
    case KEY_F(1):
        tui_submit(t, "/help");
        tui_transcript_note(t, TUI_NOTE_OUTPUT, key_help);
        return;
    case KEY_F(2):
        toggle_focus(t, t->knobs);
        return;
    case KEY_F(3):
        toggle_focus(t, t->snapshots);
        return;
    case KEY_F(4):
        t->think_folded = !t->think_folded;
        tui_transcript_invalidate(t);
        tui_message(t, 0, "think blocks %s (F4)", t->think_folded ? "folded" : "shown");
        return;
    case KEY_F(5):
        set_mouse(t, !t->mouse_on);
        tui_message(t, 0, t->mouse_on ? "mouse on (F5): the wheel scrolls; Shift-drag selects text"
                                      : "mouse off (F5): drag selects text; PgUp/PgDn scroll");
        return;
    case KEY_F(10):
        t->quit = 1;
        return;
    case KEY_PPAGE:
        tui_transcript_scroll(t, 0, 1);
        return;
    case KEY_NPAGE:
        tui_transcript_scroll(t, 0, -1);
        return;
    case KEY_MOUSE:
        handle_mouse(t);
        return;
    case '\t':
        if (t->focus == t->knobs || t->focus == t->snapshots) {
            tui_focus(t, t->focus == t->knobs ? t->snapshots : t->knobs);
            return;
        }
        break;
    }
    if (t->focus != t->input) {
        t->focus->ops->key(t->focus, t, key);
        return;
    }
    if ((key == '\r' || key == '\n' || key == KEY_ENTER) && t->generating) {
        tui_message(t, 0, "a reply is streaming: Esc stops it, then press Enter");
        return;
    }
    t->input->ops->key(t->input, t, key);
    if (tui_input_eof(t)) {
        t->quit = 1;
    }
}

/* Reads every key already typed (wait_ms: how long to wait for the first
 * one; 0 while a reply streams). */
static int read_keys(struct tui *t, int wait_ms)
{
    int n = 0, key;

    wtimeout(stdscr, wait_ms);
    while (n < 256 && !t->quit && (key = wgetch(stdscr)) != ERR) {
        handle_key(t, key);
        n++;
        wtimeout(stdscr, 0);
    }
    return n;
}

static double now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* --- start and end ---------------------------------------------------------- */

static void install_signals(void)
{
    struct sigaction sa;
    static const int fatal_signals[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT };

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_quit_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGQUIT, &sa, NULL);
    sa.sa_handler = on_interrupt_signal;
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_fatal_signal;
    sa.sa_flags = SA_RESETHAND;
    for (size_t i = 0; i < sizeof(fatal_signals) / sizeof(fatal_signals[0]); i++) {
        sigaction(fatal_signals[i], &sa, NULL);
    }
}

/* ncursesw draws UTF-8 only in a UTF-8 locale, and the World tokenizer
 * reads UTF-8 throughout: take one if the environment names none.
 * Readline sets LC_CTYPE again from the environment (LC_ALL, LC_CTYPE,
 * LANG) for every line it reads, and under "C" takes each byte of a
 * UTF-8 character for a Meta key ("wörld" became "wrrrrrrld"): the
 * variable that decides is set to the same locale. */
static void want_utf8_locale(void)
{
    static const char *const utf8[] = { "C.UTF-8", "C.utf8", "en_US.UTF-8" };
    const char *cs, *all;

    if (!setlocale(LC_ALL, "")) {
        setlocale(LC_ALL, "C");
    }
    cs = nl_langinfo(CODESET);
    if (!cs || strcasecmp(cs, "UTF-8") != 0) {
        for (size_t i = 0; i < sizeof(utf8) / sizeof(utf8[0]); i++) {
            if (setlocale(LC_CTYPE, utf8[i])) {
                all = getenv("LC_ALL");
                setenv(all && *all ? "LC_ALL" : "LC_CTYPE", utf8[i], 1);
                break;
            }
        }
    }
    setlocale(LC_NUMERIC, "C");
}

static int start_curses(struct tui *t)
{
    const char *term = getenv("TERM");

    if (!newterm(term && *term ? term : "xterm", stdout, stdin)) {
        fprintf(stderr, "rwkv-chat: cannot use terminal type '%s': set TERM to your terminal's "
                "(e.g. xterm-256color), or use --batch\n", term ? term : "");
        return -1;
    }
    if (!tigetstr("cup") || tigetstr("cup") == (char *)-1) {
        /* A terminal that cannot move the cursor (TERM=dumb) cannot show panels. */
        endwin();
        fprintf(stderr, "rwkv-chat: terminal type '%s' cannot move the cursor: set TERM to your "
                "terminal's (e.g. xterm-256color), or use --batch\n", term ? term : "");
        return -1;
    }
    curses_active = 1;
    atexit(restore_terminal);
    set_escdelay(ESC_DELAY_MS);
    raw();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    start_colours(t);
    set_mouse(t, 0);
    mouseinterval(0);
    t->key_paste_begin = key_defined(PASTE_BEGIN) > 0 ? key_defined(PASTE_BEGIN) : 0;
    t->key_paste_end = key_defined(PASTE_END) > 0 ? key_defined(PASTE_END) : 0;
    /* Ask for bracketed paste, so pasted lines are not sent one by one. */
    fputs("\033[?2004h", stdout);
    fflush(stdout);
    t->key_ctrl_left = key_defined("\033[1;5D") > 0 ? key_defined("\033[1;5D") : 0;
    t->key_ctrl_right = key_defined("\033[1;5C") > 0 ? key_defined("\033[1;5C") : 0;
    return 0;
}

/* Saves the conversation in the model's session file for --resume
 * (chat_save writes atomically) and says where and how to go on. */
static void save_session(struct tui *t)
{
    char err[RWKV_ERRLEN];
    const char *path = t->session->session_file;
    char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;

    if (slash) {
        *slash = '\0';
    }
    if (chat_turn_count(t->chat) == 0 && access(path, F_OK) == 0) {
        /* Nothing was said: keep the conversation saved last time. */
    } else if (!dir || paths_mkdirs(dir) < 0) {
        fprintf(stderr, "rwkv-chat: session not saved for --resume: cannot create %s: %s\n",
                dir ? dir : "the state directory", strerror(errno));
        t->exit_status = 1;
    } else if (chat_save(t->chat, path, err, sizeof(err)) < 0) {
        fprintf(stderr, "rwkv-chat: %s\n", err);
        t->exit_status = 1;
    } else if (chat_turn_count(t->chat) > 0) {
        /* It is now the last session, which --resume alone picks. */
        printf("rwkv-chat: conversation with %s saved in %s; continue it with: "
               "rwkv-chat --resume\n", chat_model_name(t->chat), path);
    }
    free(dir);
}

static void welcome(struct tui *t)
{
    char text[512];

    if (t->demo_model) {
        tui_transcript_note(t, TUI_NOTE_INFO, OPTIONS_DEMO_NOTICE);
    }
    if (chat_turn_count(t->chat) > 0) {
        snprintf(text, sizeof(text), "resumed: %zu turns", chat_turn_count(t->chat));
        tui_transcript_note(t, TUI_NOTE_INFO, text);
    } else {
        tui_transcript_note(t, TUI_NOTE_INFO,
                            "Type a message and press Enter. /help (or F1) lists the commands, "
                            "F2 opens the sampling knobs, F3 the snapshots; Ctrl-D quits.");
    }
}

/* What panels ask of each other, answered by the panel concerned. */
static const struct tui_requests requests = {
    .set_input_text = tui_input_set_text,
    .input_mode_line = tui_input_mode_line,
    .transcript_note = tui_transcript_note,
    .transcript_sync = tui_transcript_sync,
};

int tui_run(struct session *s, const struct app_options *opts)
{
    struct tui tui, *t = &tui;
    double last_frame = 0;

    memset(t, 0, sizeof(*t));
    t->session = s;
    t->chat = s->chat;
    t->opts = opts;
    t->model_label = s->label;
    t->demo_model = s->demo_model;
    t->ask = &requests;
    tui_panel_on_fatal(restore_terminal);
    /* The test suite slows replies down to watch them stream. */
    if (getenv("RWKV_CHAT_TUI_TOKEN_DELAY_MS")) {
        t->token_delay_ms = atoi(getenv("RWKV_CHAT_TUI_TOKEN_DELAY_MS"));
    }
    if (getenv("RWKV_CHAT_TUI_PROMPT_DELAY_MS")) {
        t->prompt_delay_ms = atoi(getenv("RWKV_CHAT_TUI_PROMPT_DELAY_MS"));
    }
    want_utf8_locale();
    install_signals();
    if (start_curses(t) < 0) {
        return 1;
    }
    t->status = tui_status_new();
    t->transcript = tui_transcript_new();
    t->knobs = tui_knobs_new();
    t->snapshots = tui_snapshots_new();
    t->input = tui_input_new();
    t->keybar = tui_keybar_new();
    t->focus = t->input;
    t->relayout = 1;
    chat_set_progress(t->chat, prompt_progress, t);
    chat_set_stop_poll(t->chat, prompt_stop_poll, t);
    tui_input_start(t);
    tui_transcript_sync(t);
    welcome(t);

    while (!t->quit) {
        if (quit_signal) {
            t->exit_status = 128 + quit_signal;
            break;
        }
        if (interrupt_signal) {
            interrupt_signal = 0;
            on_ctrl_c(t);
            continue;
        }
        if (!t->generating) {
            char *line = tui_input_take_line(t);

            if (line) {
                tui_submit(t, line);
                free(line);
                continue;
            }
            draw(t);
            read_keys(t, 250);
            continue;
        }
        /* Streaming: draw now and then, read keys, one token. */
        if (now_seconds() - last_frame >= FRAME_SECONDS) {
            draw(t);
            last_frame = now_seconds();
        }
        if (read_keys(t, t->token_delay_ms) > 0) {
            last_frame = 0;
        }
        if (t->generating && !t->quit) {
            step_reply(t);
        }
    }

    stop_reply(t);
    chat_set_progress(t->chat, NULL, NULL);
    chat_set_stop_poll(t->chat, NULL, NULL);
    tui_input_stop(t);
    restore_terminal();
    save_session(t);
    tui_panel_free(t->status);
    tui_panel_free(t->transcript);
    tui_panel_free(t->knobs);
    tui_panel_free(t->snapshots);
    tui_panel_free(t->input);
    tui_panel_free(t->keybar);
    free(t->paste);
    return t->exit_status;
}
