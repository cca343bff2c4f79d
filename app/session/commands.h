/*
 * commands.h - the slash commands, shared by the TUI and --batch.
 *
 * commands_run executes one line starting with '/' against a chat and
 * says what the caller should do next; it never prints.  The TUI shows
 * out->text in its transcript, --batch writes it to stderr.
 */
#ifndef RWKV_COMMANDS_H
#define RWKV_COMMANDS_H

#include <stddef.h>

#include "app/session/session.h"

enum command_action {
    COMMAND_SHOW,           /* show out->text (may be NULL: nothing to show) */
    COMMAND_ERROR,          /* out->text is a one-line error; nothing changed */
    COMMAND_QUIT,           /* /quit: leave (the TUI saves the session) */
    COMMAND_REPLY,          /* a reply was started (/regen, /edit TEXT): stream chat_step */
    COMMAND_EDIT,           /* /edit: the last exchange was dropped; put out->text in
                               the input line for re-editing */
    COMMAND_INTERRUPTED,    /* /edit TEXT: the chat's progress callback stopped its
                               prompt; out->text says how far it got; the
                               conversation (last exchange included) is as before */
};

/* What a command changed, so the TUI knows what to redraw. */
#define COMMAND_CHANGED_TRANSCRIPT  1   /* turns added/removed/replaced */
#define COMMAND_CHANGED_SETTINGS    2   /* sampler knobs */
#define COMMAND_CHANGED_SNAPSHOTS   4   /* snapshot list or current snapshot */
#define COMMAND_CHANGED_TEMPLATE    8   /* persona (also resets the transcript) */

struct command_result {
    enum command_action action;
    char *text;             /* malloc'd or NULL; freed by command_result_free */
    int changed;            /* COMMAND_CHANGED_* bits */
    int verbose_only;       /* text is a mere confirmation ("snapshot 'a' taken"):
                               --batch shows it only with --verbose */
};

/* Runs line ("/set temperature 0.7") against s->chat; s->label,
 * s->demo_model and s->lora are for /info.  Returns 0, or -1 when out->action is COMMAND_ERROR or
 * COMMAND_INTERRUPTED.  Free out with command_result_free. */
int commands_run(struct session *s, const char *line, struct command_result *out);
void command_result_free(struct command_result *out);

/* 1 if line is a command (starts with '/', but not "//": a message may
 * start with a slash by doubling it). */
int commands_is_command(const char *line);
/* 1 if line is a command that writes a file (/save FILE). */
int commands_writes_file(const char *line);

/* Command names with their slash ("/help", ...), NULL-terminated. */
extern const char *const commands_names[];
/* The /help text (static). */
const char *commands_help(void);

/* Completion for Tab: for the word ending at line + point, stores up to
 * max candidates (static or chat-owned strings, valid until the chat
 * changes) in matches and returns how many matched in all.  Completes
 * command names for the first word, knob names after "/set", snapshot
 * names after "/restore" and "/delete".
 * *word_start receives the offset of the word being completed. */
size_t commands_complete(const chat *c, const char *line, size_t point, const char **matches,
                         size_t max, size_t *word_start);

#endif
