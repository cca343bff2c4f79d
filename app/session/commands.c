/* commands.c - the slash commands, implemented once for the TUI and --batch. */
#include "app/session/commands.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/base/atomicfile.h"
#include "engine/base/escape.h"
#include "engine/sampling/knobs.h"

static const struct command_info *command_find(const char *line);

int commands_is_command(const char *line)
{
    return line[0] == '/' && line[1] != '/';
}

int commands_writes_file(const char *line)
{
    while (isspace((unsigned char)*line)) {
        line++;
    }
    const struct command_info *ci = command_find(line);

    return ci && (ci->flags & COMMAND_WRITES_FILE);
}

void command_result_free(struct command_result *out)
{
    free(out->text);
    out->text = NULL;
}

/* Sets out->text to a formatted message (allocation failure: no text). */
static void vsay(struct command_result *out, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void vsay(struct command_result *out, const char *fmt, va_list ap)
{
    char *s = NULL;

    if (vasprintf(&s, fmt, ap) < 0) {
        s = NULL;
    }
    free(out->text);
    out->text = s;
}

static void say(struct command_result *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void say(struct command_result *out, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsay(out, fmt, ap);
    va_end(ap);
}

/* say(), and the command fails: returns -1. */
static int fail(struct command_result *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int fail(struct command_result *out, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsay(out, fmt, ap);
    va_end(ap);
    out->action = COMMAND_ERROR;
    out->changed = 0;
    return -1;
}

/* "~/x" -> "$HOME/x" (malloc'd); other paths copied. */
static char *expand_home(const char *path)
{
    const char *home = getenv("HOME");
    char *p;

    if (path[0] == '~' && path[1] == '/' && home && *home) {
        if (asprintf(&p, "%s%s", home, path + 1) < 0) {
            return NULL;
        }
        return p;
    }
    return strdup(path);
}

/* Appends formatted text to a growing string *s. */
static void append(char **s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void append(char **s, const char *fmt, ...)
{
    va_list ap;
    char *add = NULL, *joined;

    va_start(ap, fmt);
    if (vasprintf(&add, fmt, ap) < 0) {
        add = NULL;
    }
    va_end(ap);
    if (!add) {
        return;
    }
    if (!*s) {
        *s = add;
        return;
    }
    if (asprintf(&joined, "%s%s", *s, add) >= 0) {
        free(*s);
        *s = joined;
    }
    free(add);
}

static char *knobs_text(const struct sampler_settings *s)
{
    char *text = NULL, value[64];
    size_t i;

    for (i = 0; i < knob_count(); i++) {
        knob_format(knob_at(i), s, 0, value, sizeof(value));
        append(&text, "%s%s %s", i ? "  " : "", knob_at(i)->name, value);
    }
    return text;
}

static void info(const struct session *s, struct command_result *out)
{
    chat *c = s->chat;
    const struct chat_stats *st = chat_get_stats(c);
    const struct chat_template *t = chat_get_template(c);
    const char *snap = chat_current_snapshot(c);
    char *text = NULL, *knobs;

    append(&text, "model: %s\n", s->label[0] ? s->label : "?");
    if (s->tok) {
        append(&text, "tokenizer: %s, %d ids\n", tokenizer_describe(s->tok),
               tokenizer_vocab_size(s->tok));
    }
    if (s->demo_model) {
        append(&text, "%s\n", OPTIONS_DEMO_NOTICE);
    }
    append(&text, "prompt: %s\n", t && t->name ? t->name : "?");
    append(&text, "tuned start: %s\n", chat_tuned_name(c) ? chat_tuned_name(c) : "none");
    for (int i = 0; i < s->n_lora; i++) {
        append(&text, "%s%s (scale %g)%s", i ? ", " : "lora: ", RWKV_ESC(s->lora[i].path),
               (double)s->lora[i].scale, i + 1 == s->n_lora ? "\n" : "");
    }
    append(&text, "system: %s\n", chat_get_system(c) ? chat_get_system(c) : "none");
    append(&text, "think: %s%s\n", chat_think_name(chat_get_think(c)),
           t && t->thinking ? "" : " (not used: the template has no thinking)");
    append(&text, "context: %zu tokens, %zu turns\n", st->context_tokens, chat_turn_count(c));
    if (st->reply_tokens > 0 || st->prompt_tokens > 0) {
        append(&text, "last reply: %zu prompt tokens", st->prompt_tokens);
        if (st->prompt_seconds > 0) {
            append(&text, " (%.1f tokens/s)", (double)st->prompt_tokens / st->prompt_seconds);
        }
        append(&text, ", %zu reply tokens", st->reply_tokens);
        if (st->reply_seconds > 0) {
            append(&text, " (%.1f tokens/s)", (double)st->reply_tokens / st->reply_seconds);
        }
        append(&text, "\n");
    }
    append(&text, "snapshots: %zu%s%s%s\n", chat_snapshot_count(c), snap ? " (current: " : "",
           snap ? snap : "", snap ? ")" : "");
    knobs = knobs_text(chat_settings(c));
    append(&text, "knobs: %s", knobs ? knobs : "");
    free(knobs);
    free(out->text);
    out->text = text;
}

static int set_knob(chat *c, char *args, struct command_result *out)
{
    struct sampler_settings *s = chat_settings(c);
    char *name = args, *value, err[256], buf[256];

    if (!*args) {
        out->text = knobs_text(s);
        return 0;
    }
    for (value = name; *value && !isspace((unsigned char)*value); value++) {
    }
    if (*value) {
        *value++ = 0;
        while (isspace((unsigned char)*value)) {
            value++;
        }
    }
    if (!*value) {
        const struct knob *k = knob_find(name);

        if (!k) {
            knob_list(buf, sizeof(buf));
            return fail(out, "unknown knob '%s' (knobs: %s)", name, buf);
        }
        knob_format(k, s, 0, buf, sizeof(buf));
        say(out, "%s %s", k->name, buf);
        return 0;
    }
    if (options_set_knob(s, name, value, err, sizeof(err)) < 0) {
        return fail(out, "%s", err);
    }
    chat_settings_changed(c);
    out->changed = COMMAND_CHANGED_SETTINGS;
    out->verbose_only = 1;
    say(out, "%s set to %s", name, value);
    return 0;
}

static int snapshots(chat *c, struct command_result *out)
{
    const char *cur = chat_current_snapshot(c);
    char *text = NULL;
    size_t i, n = chat_snapshot_count(c);

    if (n == 0) {
        say(out, "no snapshots (take one with /snap NAME)");
        return 0;
    }
    for (i = 0; i < n; i++) {
        const char *name = chat_snapshot_name(c, i);
        time_t when = chat_snapshot_time(c, i);
        struct tm tm;
        char at[32] = "";

        if (when && localtime_r(&when, &tm)) {
            strftime(at, sizeof at, "%Y-%m-%d %H:%M", &tm);
        }
        append(&text, "%s%s%s  %zu turn%s%s%s", i ? "\n" : "", name,
               cur && !strcmp(cur, name) ? " (current)" : "", chat_snapshot_turns(c, i),
               chat_snapshot_turns(c, i) == 1 ? "" : "s", *at ? ", taken " : "", at);
    }
    out->text = text;
    return 0;
}

/* The handlers: cmd is the name as typed ("/load"), args the trimmed
 * rest of the line (checked against the entry's arg kind already).
 * Each returns 0, or -1 through fail(). */
static int cmd_help(struct session *s, const char *cmd, char *args, struct command_result *out)
{
    (void)s, (void)cmd, (void)args;
    if (!(out->text = commands_help_text())) {
        return fail(out, "out of memory");
    }
    return 0;
}

static int cmd_reset(struct session *s, const char *cmd, char *args, struct command_result *out)
{
    (void)cmd, (void)args;
    chat_reset(s->chat);
    out->changed = COMMAND_CHANGED_TRANSCRIPT | COMMAND_CHANGED_SNAPSHOTS;
    out->verbose_only = 1;
    say(out, "conversation reset");
    return 0;
}

static int cmd_regen(struct session *s, const char *cmd, char *args, struct command_result *out)
{
    char err[RWKV_ERRLEN];

    (void)cmd, (void)args;
    if (chat_regen(s->chat, err, sizeof(err)) < 0) {
        return fail(out, "%s", err);
    }
    out->action = COMMAND_REPLY;
    out->changed = COMMAND_CHANGED_TRANSCRIPT;
    return 0;
}

static int cmd_continue(struct session *s, const char *cmd, char *args,
                        struct command_result *out)
{
    char err[RWKV_ERRLEN];

    (void)cmd, (void)args;
    if (chat_continue(s->chat, err, sizeof(err)) < 0) {
        return fail(out, "%s", err);
    }
    out->action = COMMAND_CONTINUE;
    out->changed = COMMAND_CHANGED_TRANSCRIPT;
    return 0;
}

static int cmd_undo(struct session *s, const char *cmd, char *args, struct command_result *out)
{
    char err[RWKV_ERRLEN];

    (void)cmd, (void)args;
    if (chat_undo(s->chat, err, sizeof(err)) < 0) {
        return fail(out, "%s", err);
    }
    out->changed = COMMAND_CHANGED_TRANSCRIPT;
    out->verbose_only = 1;
    say(out, "last exchange removed");
    return 0;
}

static int cmd_edit(struct session *s, const char *cmd, char *args, struct command_result *out)
{
    chat *c = s->chat;
    char err[RWKV_ERRLEN], *text;
    int rc;

    (void)cmd;
    if (!*args) {
        if (!(text = chat_edit_last(c, err, sizeof(err)))) {
            return fail(out, "%s", err);
        }
        out->changed = COMMAND_CHANGED_TRANSCRIPT;
        out->action = COMMAND_EDIT;
        out->text = text;
        return 0;
    }
    /* One operation: on failure the last exchange is still there. */
    rc = chat_edit_send(c, args, err, sizeof(err));
    if (rc == CHAT_INTERRUPTED) {
        rc = fail(out, "%s", err);
        out->action = COMMAND_INTERRUPTED;
        return rc;
    }
    if (rc < 0) {
        return fail(out, "%s", err);
    }
    out->changed = COMMAND_CHANGED_TRANSCRIPT;
    out->action = COMMAND_REPLY;
    return 0;
}

/* /save and /load. */
static int cmd_file(struct session *s, const char *cmd, char *args, struct command_result *out)
{
    chat *c = s->chat;
    char err[RWKV_ERRLEN], *path;

    if (!(path = expand_home(args))) {
        return fail(out, "out of memory");
    }
    if (cmd[1] == 's' ? chat_save(c, path, err, sizeof(err))
                      : chat_load(c, path, err, sizeof(err))) {
        int rc = fail(out, "%s", err);

        free(path);
        return rc;
    }
    if (cmd[1] == 'l') {
        out->changed = COMMAND_CHANGED_TRANSCRIPT | COMMAND_CHANGED_SETTINGS |
                       COMMAND_CHANGED_SNAPSHOTS | COMMAND_CHANGED_TEMPLATE;
    }
    out->verbose_only = 1;
    say(out, "%s %s", cmd[1] == 's' ? "saved to" : "loaded", path);
    free(path);
    return 0;
}

/* /snap, /restore and /delete. */
static int cmd_snap(struct session *s, const char *cmd, char *args, struct command_result *out)
{
    chat *c = s->chat;
    char err[RWKV_ERRLEN], numbered[RWKV_ERRLEN];

    /* /snap X when X exists: ..., never a silent replacement. */
    if (cmd[1] == 's' && chat_snapshot_exists(c, args)) {
        for (int k = 2; k < CHAT_SNAPSHOTS_MAX + 2; k++) {
            snprintf(numbered, sizeof numbered, "%s-%d", args, k);
            if (!chat_snapshot_exists(c, numbered)) {
                break;
            }
        }
        if (chat_snapshot_take(c, numbered, err, sizeof(err)) < 0) {
            return fail(out, "%s", err);
        }
        out->changed = COMMAND_CHANGED_SNAPSHOTS;
        say(out, "snapshot '%s' exists: this one is '%s' (/delete %s first to reuse the name)",
            args, numbered, args);
        return 0;
    }
    if (cmd[1] == 's' ? chat_snapshot_take(c, args, err, sizeof(err))
        : cmd[1] == 'r' ? chat_snapshot_restore(c, args, err, sizeof(err))
                        : chat_snapshot_delete(c, args, err, sizeof(err))) {
        return fail(out, "%s", err);
    }
    out->changed = COMMAND_CHANGED_SNAPSHOTS;
    if (cmd[1] == 'r') {
        out->changed |= COMMAND_CHANGED_TRANSCRIPT | COMMAND_CHANGED_SETTINGS;
    }
    out->verbose_only = 1;
    say(out, "snapshot '%s' %s", args,
        cmd[1] == 's' ? "taken" : cmd[1] == 'r' ? "restored" : "deleted");
    return 0;
}

static int cmd_snapshots(struct session *s, const char *cmd, char *args,
                         struct command_result *out)
{
    (void)cmd, (void)args;
    return snapshots(s->chat, out);
}

static int cmd_set(struct session *s, const char *cmd, char *args, struct command_result *out)
{
    (void)cmd;
    return set_knob(s->chat, args, out);
}

static int cmd_prompt(struct session *s, const char *cmd, char *args, struct command_result *out)
{
    chat *c = s->chat;
    char err[RWKV_ERRLEN];
    struct chat_template t;

    (void)cmd;
    if (!*args) {
        /* The personas there are, the current one marked. */
        const struct chat_template *cur = chat_get_template(c);
        char **names = chat_template_names(), *text = NULL;

        if (!names) {
            return fail(out, "out of memory");
        }
        append(&text, "personas (/prompt NAME switches; the conversation starts again):");
        for (size_t i = 0; names[i]; i++) {
            append(&text, "\n  %s%s", names[i],
                   cur && cur->name && !strcmp(cur->name, names[i]) ? " (current)" : "");
        }
        chat_template_names_free(names);
        free(out->text);
        out->text = text;
        return 0;
    }
    memset(&t, 0, sizeof(t));
    if (chat_template_load(&t, args, err, sizeof(err)) < 0) {
        return fail(out, "%s", err);
    }
    if (chat_set_template(c, &t, err, sizeof(err)) < 0) {
        chat_template_free(&t);
        return fail(out, "%s", err);
    }
    chat_template_free(&t);
    out->changed = COMMAND_CHANGED_TEMPLATE | COMMAND_CHANGED_TRANSCRIPT |
                   COMMAND_CHANGED_SNAPSHOTS;
    out->verbose_only = 1;
    say(out, "prompt '%s'; conversation reset", args);
    return 0;
}

static int cmd_system(struct session *s, const char *cmd, char *args, struct command_result *out)
{
    chat *c = s->chat;
    char err[RWKV_ERRLEN];

    (void)cmd;
    if (!*args) {
        say(out, "system: %s", chat_get_system(c) ? chat_get_system(c) : "none");
        return 0;
    }
    if (chat_set_system(c, strcmp(args, "off") ? args : NULL, err, sizeof(err)) < 0) {
        return fail(out, "%s", err);
    }
    out->changed = COMMAND_CHANGED_TRANSCRIPT | COMMAND_CHANGED_SNAPSHOTS;
    out->verbose_only = 1;
    say(out, "system %s; conversation reset", strcmp(args, "off") ? "set" : "off");
    return 0;
}

static int cmd_think(struct session *s, const char *cmd, char *args, struct command_result *out)
{
    chat *c = s->chat;
    const struct chat_template *t = chat_get_template(c);
    enum chat_think mode;

    (void)cmd;
    if (*args && chat_think_parse(args, &mode) < 0) {
        return fail(out, "/think: unknown mode '%s' (auto, off, on, a-bit, a-lot)", args);
    }
    if (*args) {
        chat_set_think(c, mode);
        out->changed = COMMAND_CHANGED_SETTINGS;
        out->verbose_only = t && t->thinking;
    }
    say(out, "think: %s%s", chat_think_name(chat_get_think(c)),
        t && t->thinking ? "" : " (not used: the template has no thinking; /prompt g1)");
    return 0;
}

static int cmd_tuned(struct session *s, const char *cmd, char *args, struct command_result *out)
{
    chat *c = s->chat;
    char err[RWKV_ERRLEN], *path;

    (void)cmd;
    if (!*args) {
        say(out, "tuned start: %s", chat_tuned_name(c) ? chat_tuned_name(c) : "none");
        return 0;
    }
    path = strcmp(args, "off") ? expand_home(args) : NULL;
    if (strcmp(args, "off") && !path) {
        return fail(out, "out of memory");
    }
    if (chat_load_tuned_state(c, path, err, sizeof(err)) < 0) {
        int rc = fail(out, "%s", err);

        free(path);
        return rc;
    }
    out->changed = COMMAND_CHANGED_TRANSCRIPT | COMMAND_CHANGED_SNAPSHOTS;
    out->verbose_only = 1;
    say(out, "tuned start %s; conversation reset", path ? path : "off");
    free(path);
    return 0;
}

/* The last reply (its answer, without the think block), or NULL. */
static const struct chat_turn *last_reply(const chat *c)
{
    size_t n = chat_turn_count(c);

    while (n > 0) {
        const struct chat_turn *t = chat_turn_at(c, --n);

        if (t->role == CHAT_ASSISTANT) {
            return t;
        }
    }
    return NULL;
}

static int cmd_copy(struct session *s, const char *cmd, char *args, struct command_result *out)
{
    const struct chat_turn *t = last_reply(s->chat);

    (void)cmd, (void)args;
    if (!t) {
        return fail(out, "/copy: no reply to copy yet");
    }
    if (!(out->text = strdup(t->text))) {
        return fail(out, "out of memory");
    }
    out->action = COMMAND_COPY;
    return 0;
}

/* What /export may replace: an earlier export (its first line), never
 * notes or any other file. */
#define EXPORT_MAGIC "<!-- rwkv-chat conversation -->\n"
static const struct atomicfile_kind export_kind = {
    "rwkv-chat export", EXPORT_MAGIC, sizeof(EXPORT_MAGIC) - 1,
    "choose another name for the export, or remove that file first"
};

/* Appends text as Markdown paragraphs: its lines as they are, each ending
 * in two spaces so that a single newline stays a line break. */
static void append_markdown(char **md, const char *text)
{
    const char *p = text;

    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);

        append(md, "%.*s%s", (int)n, p, nl && nl[1] && nl[1] != '\n' && n ? "  \n" : "\n");
        p += n + (nl != NULL);
    }
}

/* /export FILE.md: the transcript as Markdown, written atomically. */
static int cmd_export(struct session *s, const char *cmd, char *args, struct command_result *out)
{
    chat *c = s->chat;
    const struct chat_template *tm = chat_get_template(c);
    char err[RWKV_ERRLEN], *path, *md = NULL;
    size_t i, n = chat_turn_count(c);
    int rc;

    (void)cmd;
    if (n == 0) {
        return fail(out, "/export: nothing said yet");
    }
    if (!(path = expand_home(args))) {
        return fail(out, "out of memory");
    }
    append(&md, "%s# Conversation with %s\n", EXPORT_MAGIC,
           chat_model_name(c) ? chat_model_name(c) : s->label);
    if (chat_get_system(c)) {
        append(&md, "\n**%s:** ", tm && tm->system ? tm->system : "System");
        append_markdown(&md, chat_get_system(c));
    }
    for (i = 0; i < n; i++) {
        const struct chat_turn *t = chat_turn_at(c, i);
        int user = t->role == CHAT_USER;

        append(&md, "\n### %s\n\n", user ? (tm && tm->user ? tm->user : "User")
                                         : (tm && tm->assistant ? tm->assistant : "Assistant"));
        if (t->reasoning) {
            append(&md, "<details><summary>thinking</summary>\n\n");
            append_markdown(&md, t->reasoning);
            append(&md, "\n</details>\n\n");
        }
        append_markdown(&md, t->text);
    }
    if (!md) {
        free(path);
        return fail(out, "out of memory");
    }
    rc = atomicfile_write(path, &export_kind, 0, md, strlen(md), err, sizeof err);
    free(md);
    if (rc < 0) {
        rc = fail(out, "%s", err);
        free(path);
        return rc;
    }
    out->verbose_only = 1;
    say(out, "exported %zu turns to %s", n, path);
    free(path);
    return 0;
}

static int cmd_info(struct session *s, const char *cmd, char *args, struct command_result *out)
{
    (void)cmd, (void)args;
    info(s, out);
    return 0;
}

static int cmd_quit(struct session *s, const char *cmd, char *args, struct command_result *out)
{
    (void)s, (void)cmd, (void)args;
    out->action = COMMAND_QUIT;
    return 0;
}

/* The commands, in /help's order.  /help, Tab completion and
 * commands_writes_file read this table; tests/test_commands checks that
 * share/rwkv-chat.1 documents every entry. */
static const struct command_info table[] = {
    { "/help", "/?", "", "this list", COMMAND_ARGS_ANY, NULL,
      COMMAND_IN_BATCH, COMMAND_COMPLETE_NONE, cmd_help },
    { "/reset", NULL, "", "start the conversation again", COMMAND_ARGS_NONE, NULL,
      COMMAND_IN_BATCH, COMMAND_COMPLETE_NONE, cmd_reset },
    { "/regen", NULL, "", "generate the last reply again", COMMAND_ARGS_NONE, NULL,
      COMMAND_IN_BATCH, COMMAND_COMPLETE_NONE, cmd_regen },
    { "/continue", NULL, "", "go on with the last reply where max_tokens cut it",
      COMMAND_ARGS_NONE, NULL, COMMAND_IN_BATCH, COMMAND_COMPLETE_NONE, cmd_continue },
    { "/undo", NULL, "", "drop the last exchange (message and reply)", COMMAND_ARGS_NONE,
      NULL, COMMAND_IN_BATCH, COMMAND_COMPLETE_NONE, cmd_undo },
    /* In batch mode only "/edit TEXT": bare /edit is refused by batch.c. */
    { "/edit", NULL, "[TEXT]", "re-edit the last message (or replace it with TEXT) and regenerate",
      COMMAND_ARGS_OPTIONAL, NULL, COMMAND_IN_BATCH, COMMAND_COMPLETE_NONE, cmd_edit },
    { "/save", NULL, "FILE", "save the conversation state to FILE", COMMAND_ARGS_NEEDED,
      "a file name", COMMAND_IN_BATCH | COMMAND_WRITES_FILE, COMMAND_COMPLETE_FILE, cmd_file },
    { "/load", NULL, "FILE", "load a conversation state from FILE", COMMAND_ARGS_NEEDED,
      "a file name", COMMAND_IN_BATCH, COMMAND_COMPLETE_FILE, cmd_file },
    { "/snap", NULL, "NAME", "take a snapshot of the conversation", COMMAND_ARGS_NEEDED,
      "a snapshot name", COMMAND_IN_BATCH, COMMAND_COMPLETE_NONE, cmd_snap },
    { "/restore", NULL, "NAME", "go back to a snapshot", COMMAND_ARGS_NEEDED,
      "a snapshot name", COMMAND_IN_BATCH, COMMAND_COMPLETE_SNAPSHOT, cmd_snap },
    { "/snapshots", NULL, "", "list the snapshots", COMMAND_ARGS_NONE, NULL,
      COMMAND_IN_BATCH, COMMAND_COMPLETE_NONE, cmd_snapshots },
    { "/delete", NULL, "NAME", "delete a snapshot", COMMAND_ARGS_NEEDED, "a snapshot name",
      COMMAND_IN_BATCH, COMMAND_COMPLETE_SNAPSHOT, cmd_snap },
    { "/set", NULL, "[KNOB [VALUE]]", "show or change a sampling knob (/set alone lists them)",
      COMMAND_ARGS_OPTIONAL, NULL, COMMAND_IN_BATCH, COMMAND_COMPLETE_KNOB, cmd_set },
    { "/prompt", NULL, "[NAME]",
      "list the personas, or switch to NAME (prompts/NAME.txt); resets the conversation",
      COMMAND_ARGS_OPTIONAL, NULL, COMMAND_IN_BATCH, COMMAND_COMPLETE_PERSONA, cmd_prompt },
    { "/system", NULL, "[TEXT|off]", "show, set or drop the system turn; resets the conversation",
      COMMAND_ARGS_OPTIONAL, NULL, COMMAND_IN_BATCH, COMMAND_COMPLETE_NONE, cmd_system },
    { "/think", NULL, "[MODE]", "show or set G1 thinking: auto, off, on, a-bit, a-lot",
      COMMAND_ARGS_OPTIONAL, NULL, COMMAND_IN_BATCH, COMMAND_COMPLETE_NONE, cmd_think },
    { "/tuned", NULL, "[FILE|off]",
      "show, set or drop the state-tuned start; resets the conversation",
      COMMAND_ARGS_OPTIONAL, NULL, COMMAND_IN_BATCH, COMMAND_COMPLETE_NONE, cmd_tuned },
    { "/export", NULL, "FILE", "write the conversation to FILE as Markdown",
      COMMAND_ARGS_NEEDED, "a file name", COMMAND_IN_BATCH | COMMAND_WRITES_FILE,
      COMMAND_COMPLETE_FILE, cmd_export },
    { "/copy", NULL, "", "copy the last reply to the clipboard (through the terminal)",
      COMMAND_ARGS_NONE, NULL, 0, COMMAND_COMPLETE_NONE, cmd_copy },
    { "/info", NULL, "", "model, context and settings", COMMAND_ARGS_NONE, NULL,
      COMMAND_IN_BATCH, COMMAND_COMPLETE_NONE, cmd_info },
    { "/quit", "/exit", "", "leave", COMMAND_ARGS_NONE, NULL, COMMAND_IN_BATCH,
      COMMAND_COMPLETE_NONE, cmd_quit },
};

#define N_COMMANDS (sizeof(table) / sizeof(table[0]))

const struct command_info *commands_table(size_t *count)
{
    *count = N_COMMANDS;
    return table;
}

/* The entry whose name or alias is the first word of line (up to white
 * space), or NULL. */
static const struct command_info *command_find(const char *line)
{
    size_t len = 0, i;

    while (line[len] && !isspace((unsigned char)line[len])) {
        len++;
    }
    for (i = 0; i < N_COMMANDS; i++) {
        if ((strlen(table[i].name) == len && !strncmp(table[i].name, line, len)) ||
            (table[i].alias && strlen(table[i].alias) == len &&
             !strncmp(table[i].alias, line, len))) {
            return &table[i];
        }
    }
    return NULL;
}

char *commands_help_text(void)
{
    char *text = NULL, usage[64];
    size_t i;
    int column = 0;

    /* two spaces at least after the widest usage: the TUI continues a
     * wrapped line under the text after the first two spaces */
    for (i = 0; i < N_COMMANDS; i++) {
        int n = snprintf(usage, sizeof(usage), "%s%s%s", table[i].name,
                         *table[i].args ? " " : "", table[i].args);

        column = n > column ? n : column;
    }
    for (i = 0; i < N_COMMANDS; i++) {
        snprintf(usage, sizeof(usage), "%s%s%s", table[i].name, *table[i].args ? " " : "",
                 table[i].args);
        append(&text, "%-*s  %s\n", column, usage, table[i].help);
    }
    append(&text, "A message starting with / is written with //.");
    return text;
}

int commands_run(struct session *s, const char *line, struct command_result *out)
{
    const struct command_info *ci;
    char *copy, *cmd, *args, *end;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    out->action = COMMAND_SHOW;
    if (!(copy = strdup(line))) {
        return fail(out, "out of memory");
    }
    /* Split "/cmd   args  " into cmd and trimmed args. */
    end = copy + strlen(copy);
    while (end > copy && isspace((unsigned char)end[-1])) {
        *--end = 0;
    }
    cmd = copy;
    while (isspace((unsigned char)*cmd)) {
        cmd++;
    }
    for (args = cmd; *args && !isspace((unsigned char)*args); args++) {
    }
    if (*args) {
        *args++ = 0;
        while (isspace((unsigned char)*args)) {
            args++;
        }
    }

    if (!(ci = command_find(cmd))) {
        /* Quote at most 40 bytes (a whole character) of a runaway name. */
        int n = (int)strlen(cmd);

        if (n > 40) {
            n = 40;
            while (n > 1 && ((unsigned char)cmd[n] & 0xc0) == 0x80) {
                n--;
            }
        }
        rc = fail(out, "unknown command '%.*s%s' (/help lists them)", n, cmd,
                  cmd[n] ? "..." : "");
    } else if (ci->arg_kind == COMMAND_ARGS_NONE && *args) {
        rc = fail(out, "%s takes no argument", cmd);
    } else if (ci->arg_kind == COMMAND_ARGS_NEEDED && !*args) {
        rc = fail(out, "%s needs %s", cmd, ci->arg_what);
    } else {
        rc = ci->run(s, cmd, args, out);
    }
    free(copy);
    return rc;
}

/* Adds the candidates among names that start with word. */
static size_t complete_from(const char *const *names, size_t n_names, const char *word,
                            size_t word_len, const char **matches, size_t max)
{
    size_t i, count = 0;

    for (i = 0; i < n_names; i++) {
        if (!strncmp(names[i], word, word_len)) {
            if (count < max) {
                matches[count] = names[i];
            }
            count++;
        }
    }
    return count;
}

enum command_complete commands_complete_hint(const char *line, size_t point)
{
    size_t start = point, first_end = 0, i;
    enum command_complete hint = COMMAND_COMPLETE_NONE;

    while (start > 0 && !isspace((unsigned char)line[start - 1])) {
        start--;
    }
    if (line[0] != '/' || start == 0) {
        return COMMAND_COMPLETE_NONE;
    }
    while (line[first_end] && !isspace((unsigned char)line[first_end])) {
        first_end++;
    }
    /* Only the first argument is completed. */
    for (i = first_end; i < start; i++) {
        if (!isspace((unsigned char)line[i])) {
            return COMMAND_COMPLETE_NONE;
        }
    }
    /* What follows the command: its entry's completion hint.  An alias
     * completes nothing, as before the table. */
    for (i = 0; i < N_COMMANDS; i++) {
        if (strlen(table[i].name) == first_end && !strncmp(line, table[i].name, first_end)) {
            hint = table[i].complete;
        }
    }
    return hint;
}

size_t commands_complete(const chat *c, const char *line, size_t point, const char **matches,
                         size_t max, size_t *word_start)
{
    size_t start = point, n, i;
    const char **snaps;
    enum command_complete hint;

    while (start > 0 && !isspace((unsigned char)line[start - 1])) {
        start--;
    }
    *word_start = start;
    if (line[0] != '/') {
        return 0;
    }
    if (start == 0) {
        const char *names[N_COMMANDS];

        for (n = 0; n < N_COMMANDS; n++) {
            names[n] = table[n].name;
        }
        return complete_from(names, n, line, point, matches, max);
    }
    hint = commands_complete_hint(line, point);
    if (hint == COMMAND_COMPLETE_KNOB) {
        const char *names[32];

        for (n = 0; n < knob_count() && n < sizeof(names) / sizeof(names[0]); n++) {
            names[n] = knob_at(n)->name;
        }
        return complete_from(names, n, line + start, point - start, matches, max);
    }
    if (hint == COMMAND_COMPLETE_SNAPSHOT) {
        if (!c) {
            return 0;
        }
        n = chat_snapshot_count(c);
        if (!(snaps = malloc(sizeof(*snaps) * (n ? n : 1)))) {
            return 0;
        }
        for (i = 0; i < n; i++) {
            snaps[i] = chat_snapshot_name(c, i);
        }
        n = complete_from(snaps, n, line + start, point - start, matches, max);
        free(snaps);
        return n;
    }
    return 0;
}
