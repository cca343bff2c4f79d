/*
 * tui_internal.h - what the panels of the curses interface share.
 *
 * struct tui is the whole interface: the chat it drives, the panels and
 * the layout.  Each panel is a file (tui_transcript.c, tui_input.c,
 * tui_status.c, tui_knobs.c, tui_snapshots.c) with a small vtable; tui.c
 * lays them out, routes keys and runs the loop.  Panels never do I/O or
 * computation themselves: they draw what the chat holds and call chat.h.
 * Panels use tui_panel.c and tui_text.c, never tui.c or one another: what
 * a panel needs from another panel it asks through t->ask, which tui.c
 * fills in.
 */
#ifndef RWKV_TUI_INTERNAL_H
#define RWKV_TUI_INTERNAL_H

#include <curses.h>
#include <stddef.h>
#include <stdint.h>

#include "app/session/chat.h"

struct tui;
struct tui_panel;

/* A panel: a window plus what it does to draw itself and take keys. */
struct tui_panel_ops {
    const char *name;
    /* Draws into p->win (already sized by the layout); no refresh. */
    void (*draw)(struct tui_panel *p, struct tui *t);
    /* Handles key (a curses key code or a byte); 1 if taken. */
    int (*key)(struct tui_panel *p, struct tui *t, int key);
    void (*free)(struct tui_panel *p);
};

struct tui_panel {
    const struct tui_panel_ops *ops;
    WINDOW *win;            /* NULL while hidden */
    int y, x, h, w;         /* geometry from the last layout */
    void *data;             /* the panel's own state */
};

/* Colour pairs (attributes fall back to bold/reverse without colour). */
enum tui_colour {
    TUI_COLOUR_STATUS = 1,
    TUI_COLOUR_USER,
    TUI_COLOUR_ASSISTANT,
    TUI_COLOUR_NOTE,
    TUI_COLOUR_ERROR,
    TUI_COLOUR_BORDER,
    TUI_COLOUR_SELECTED,
    TUI_COLOUR_KEY,
    TUI_COLOUR_DEMO,
};

/* Keys beyond curses' codes: Alt+byte, and Ctrl-arrows (whose curses codes
 * are only known at run time). */
#define TUI_KEY_META 0x100000
enum { TUI_KEY_CTRL_LEFT = 0x200001, TUI_KEY_CTRL_RIGHT };

enum tui_note_kind { TUI_NOTE_INFO, TUI_NOTE_ERROR, TUI_NOTE_OUTPUT };

/* What a panel asks of another panel, through tui.c (t->ask). */
struct tui_requests {
    /* The input: replaces the edited text (cursor at its end). */
    void (*set_input_text)(struct tui *t, const char *text);
    /* The input: what readline asks for instead of a line, or NULL. */
    const char *(*input_mode_line)(struct tui *t);
    /* The transcript: adds a UI note after the current turns. */
    void (*transcript_note)(struct tui *t, enum tui_note_kind kind, const char *text);
    /* The transcript: re-reads the chat's turns. */
    void (*transcript_sync)(struct tui *t);
};

/* Keys typed while a prompt is read wait here (beyond that many they wait
 * in the terminal, and Ctrl-C is seen only after them). */
#define TUI_HELD_KEYS 128

struct tui {
    chat *chat;
    struct session *session;
    const struct app_options *opts;
    const char *model_label;
    const struct tui_requests *ask;     /* panel to panel, via tui.c */
    int demo_model;                 /* the bundled demo model is in use */
    int has_colour;

    struct tui_panel *status;       /* top line */
    struct tui_panel *transcript;
    struct tui_panel *knobs;        /* side column, top */
    struct tui_panel *snapshots;    /* side column, bottom */
    struct tui_panel *input;
    struct tui_panel *keybar;       /* bottom line: keys and messages */
    struct tui_panel *focus;        /* input, knobs or snapshots */

    /* curses codes for keys only known at run time (0: none). */
    int key_ctrl_left, key_ctrl_right, key_paste_begin, key_paste_end;

    int rows, cols;
    int side_shown;                 /* the side column is laid out */
    int relayout;                   /* geometry must be recomputed */

    int generating;                 /* a reply is streaming */
    int think_folded;               /* think blocks shown as one line (F4) */
    int mouse_on;                   /* the wheel is read as mouse events (F5); off by
                                       default, so that the terminal's drag-select works */
    size_t prompt_fed, prompt_total;    /* a long prompt being read (total 0: none) */
    double prompt_drawn;            /* when its progress was last drawn */
    int held[TUI_HELD_KEYS];        /* keys typed while a prompt was read */
    int n_held;
    int token_delay_ms;             /* tests: wait this long for keys between tokens */
    double prompt_polled;           /* when the stop poll last read the keys */
    int prompt_delay_ms;            /* tests: and between pieces of a prompt */
    int ctrl_c_armed;               /* a second Ctrl-C at an empty prompt quits */
    int pasting;                    /* inside a bracketed paste */
    char *paste;                    /* the pasted bytes so far */
    size_t paste_len, paste_cap;
    int quit;
    int exit_status;
    char message[256];              /* transient line in the key bar */
    int message_is_error;
};

/* --- tui_panel.c: what every panel uses ------------------------------- */
/* Memory that never fails: out of memory restores the terminal (with the
 * function given to tui_panel_on_fatal) and exits 1. */
void *tui_xmalloc(size_t n);
void *tui_xrealloc(void *p, size_t n);
char *tui_xstrdup(const char *s);
void tui_panel_on_fatal(void (*restore)(void));
struct tui_panel *tui_panel_new(const struct tui_panel_ops *ops, void *data);
void tui_panel_free(struct tui_panel *p);
/* Shows a transient line in the key bar until the next key. */
void tui_message(struct tui *t, int is_error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Moves the keyboard focus (p is input, knobs or snapshots). */
void tui_focus(struct tui *t, struct tui_panel *p);
/* Colour pair attribute, or fallback when the terminal has no colour. */
attr_t tui_attr(const struct tui *t, enum tui_colour colour, attr_t fallback);

/* --- tui.c ----------------------------------------------------------- */
/* Runs a submitted line: a slash command or a message to the model. */
void tui_submit(struct tui *t, const char *line);
/* Starts streaming the reply prepared by chat_send/chat_regen. */
void tui_start_reply(struct tui *t);

/* --- tui_text.c: UTF-8 and display width ------------------------------- */
struct tui_span {
    size_t off, len;        /* bytes of one display line */
    int indent;             /* blank columns before it (a wrapped line keeps
                               its paragraph's indentation) */
};
/* Decodes the code point at s[*i] (n bytes in all), advancing *i;
 * malformed bytes decode to U+FFFD one byte at a time. */
int32_t tui_text_decode(const char *s, size_t n, size_t *i);
/* Columns a code point takes (utf8proc_charwidth; controls count 1 as
 * they are shown as '?', a tab as a blank). */
int tui_text_cpwidth(int32_t cp);
/* The end of the character that starts at s[i]: an extended grapheme
 * cluster (a letter and its accents, an emoji and its skin-tone modifier,
 * a ZWJ sequence, a flag), never split by wrapping; *width gets its
 * columns as tui_text_draw draws it (its first code point and its
 * combining marks; the rest of an emoji sequence is not drawn, since
 * terminals disagree on its width). */
size_t tui_text_cluster(const char *s, size_t n, size_t i, int *width);
/* Columns of s[0..n). */
int tui_text_width(const char *s, size_t n);
/* Splits s into lines at most width columns wide, at '\n', after spaces
 * or next to wide (CJK) characters, else anywhere; continuation lines are
 * indented like their paragraph's first line, or, with columns set, like
 * the text after its first run of two blanks (help and /info output).
 * *spans is malloc'd (caller frees); returns the count (at least 1). */
size_t tui_text_wrap(const char *s, size_t n, int width, int columns, struct tui_span **spans);
/* Draws s[0..n) at the cursor of win within maxw columns; returns the
 * columns used.  Characters the terminal would measure differently from
 * utf8proc are replaced so columns stay aligned. */
int tui_text_draw(WINDOW *win, const char *s, size_t n, int maxw);
/* Draws s padded with blanks (or cut) to exactly width columns. */
void tui_text_draw_padded(WINDOW *win, const char *s, int width);
/* Byte length of the longest prefix of s that fits in maxw columns. */
size_t tui_text_fit(const char *s, size_t n, int maxw);

/* --- panels (called by tui.c only) -------------------------------------- */

struct tui_panel *tui_transcript_new(void);
/* Re-reads the chat's turns (after a command changed the conversation). */
void tui_transcript_sync(struct tui *t);
/* Adds a UI note (command output, error, notice) after the current turns. */
void tui_transcript_note(struct tui *t, enum tui_note_kind kind, const char *text);
/* The reply being streamed: begin, append bytes, end (then sync). */
void tui_transcript_live_begin(struct tui *t);
/* Appends streamed bytes of the part (chat_step_part) they belong to. */
void tui_transcript_live_append(struct tui *t, const char *bytes, size_t n, enum chat_part part);
void tui_transcript_live_end(struct tui *t);
/* Scrolls by lines (positive: back in time); page = +-1 for a page. */
void tui_transcript_scroll(struct tui *t, int lines, int pages);
/* Drops the wrapped lines (after a resize). */
void tui_transcript_invalidate(struct tui *t);

struct tui_panel *tui_input_new(void);
/* Installs readline's callback interface and loads the history. */
int tui_input_start(struct tui *t);
/* Saves the history and removes the readline handler. */
void tui_input_stop(struct tui *t);
/* Rows the input wants for its text at width w (at least 1). */
int tui_input_rows(struct tui *t, int w);
/* Puts the terminal cursor where the input's cursor is. */
void tui_input_place_cursor(struct tui *t);
/* Inserts text at the cursor as it is (pasted text: newlines stay,
 * CR LF and CR become LF). */
void tui_input_insert(struct tui *t, const char *text, size_t n);
/* Feeds bytes to readline as if typed (an escape sequence curses did not
 * decode). */
void tui_input_feed(struct tui *t, const char *bytes, size_t n);
/* Replaces the edited text and puts the cursor at its end. */
void tui_input_set_text(struct tui *t, const char *text);
/* Whether the edited line is empty. */
int tui_input_empty(struct tui *t);
/* The oldest line accepted with Enter and not yet taken (malloc'd), or NULL. */
char *tui_input_take_line(struct tui *t);
/* What readline is asking for instead of a line ("(reverse-i-search)`x': ",
 * "(arg: 4) "), or NULL. */
const char *tui_input_mode_line(struct tui *t);
/* 1 once Ctrl-D was pressed at an empty line. */
int tui_input_eof(struct tui *t);

struct tui_panel *tui_status_new(void);
struct tui_panel *tui_keybar_new(void);
struct tui_panel *tui_knobs_new(void);
struct tui_panel *tui_snapshots_new(void);
/* Side panels' preferred height (rows including their frame). */
int tui_knobs_rows(void);

#endif
