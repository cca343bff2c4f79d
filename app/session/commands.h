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
    COMMAND_CONTINUE,       /* /continue: the last reply goes on: stream chat_step; what
                               it had (chat_reply_so_far) was shown already */
    COMMAND_EDIT,           /* /edit: the last exchange was dropped; put out->text in
                               the input line for re-editing */
    COMMAND_COPY,           /* /copy: put out->text (the last reply) on the clipboard
                               (the TUI, through the terminal) */
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

/* How a command takes its argument (the rest of the line, trimmed). */
enum command_args {
    COMMAND_ARGS_NONE,      /* "/reset x" is refused: "takes no argument" */
    COMMAND_ARGS_NEEDED,    /* "/save" alone is refused: "needs <arg_what>" */
    COMMAND_ARGS_OPTIONAL,  /* the command itself says what no argument means */
    COMMAND_ARGS_ANY,       /* ignored (/help) */
};

/* What Tab completes as the command's first argument. */
enum command_complete {
    COMMAND_COMPLETE_NONE,
    COMMAND_COMPLETE_KNOB,      /* knob names (engine/sampling/knobs.h) */
    COMMAND_COMPLETE_SNAPSHOT,  /* the chat's snapshot names */
    COMMAND_COMPLETE_PERSONA,   /* persona names (chat_template_names): the front end */
    COMMAND_COMPLETE_FILE,      /* file names: the front end (readline's) */
};

/* command_info.flags */
#define COMMAND_IN_BATCH            1   /* works in --batch (every command does today;
                                           bare /edit is refused there by batch.c) */
#define COMMAND_WHILE_STREAMING     2   /* may run while a reply streams (none may
                                           today: the TUI takes no Enter then) */
#define COMMAND_WRITES_FILE         4   /* writes a file (commands_writes_file) */

struct command_result;
/* One slash command.  The table drives commands_run, /help,
 * commands_complete and commands_writes_file; tests/test_commands checks
 * it against /help and share/rwkv-chat.1. */
struct command_info {
    const char *name;           /* "/save" */
    const char *alias;          /* another name ("/?", "/exit") or NULL; not in /help */
    const char *args;           /* synopsis for /help ("FILE", "[KNOB [VALUE]]") or "" */
    const char *help;           /* /help's one line */
    enum command_args arg_kind;
    const char *arg_what;       /* COMMAND_ARGS_NEEDED: "a file name" */
    int flags;                  /* COMMAND_IN_BATCH, ... */
    enum command_complete complete;
    /* cmd: the name as typed; args: the trimmed rest.  0, or -1 with
     * out->action COMMAND_ERROR or COMMAND_INTERRUPTED. */
    int (*run)(struct session *s, const char *cmd, char *args, struct command_result *out);
};

/* The command table, in /help's order; *count receives its length. */
const struct command_info *commands_table(size_t *count);
/* The /help text, made from the table (malloc'd; NULL if out of memory). */
char *commands_help_text(void);

/* Completion for Tab: for the word ending at line + point, stores up to
 * max candidates (static or chat-owned strings, valid until the chat
 * changes) in matches and returns how many matched in all.  Completes
 * command names for the first word, knob names after "/set", snapshot
 * names after "/restore" and "/delete".
 * *word_start receives the offset of the word being completed. */
size_t commands_complete(const chat *c, const char *line, size_t point, const char **matches,
                         size_t max, size_t *word_start);
/* What the word ending at line + point is completed from: the hint of
 * the command whose first argument it is, or COMMAND_COMPLETE_NONE.
 * commands_complete finds nothing for COMMAND_COMPLETE_PERSONA and
 * COMMAND_COMPLETE_FILE: the front end lists those itself. */
enum command_complete commands_complete_hint(const char *line, size_t point);

#endif
