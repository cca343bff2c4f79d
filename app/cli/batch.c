/* batch.c - --batch: messages from stdin, streamed replies to stdout. */
#include "app/cli/batch.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "app/session/commands.h"
#include "app/cli/errline.h"
#include "engine/sampling/knobs.h"

/* Where a reply goes while it streams.  In chat mode the reply is written
 * stripped, like the transcript: leading white space is dropped and
 * trailing white space is held until more text follows it. */
struct sink {
    FILE *f;
    int raw;                /* --complete / --jsonl: write bytes as they come */
    int started;
    char *held;             /* white space not yet written */
    size_t n_held, cap_held;
    char *all;              /* everything generated (--jsonl content) */
    size_t n_all, cap_all;
    int write_error;
    int write_errno;        /* errno of the first failed write */
};

struct batch {
    struct session *session;
    chat *c;                /* session->chat */
    const struct app_options *opts;
    const char *model_label;
    FILE *in, *out;
    struct batch_signals *sig;
    long prompt_delay_ms;
    long lineno;
    long msg_line;          /* where the message being handled started */
    int quit;
    int out_failed;         /* stdout could not be written (a closed pipe): stop, but save */
};

/* Whether a signal asked batch to stop. */
static int stopping(const struct batch *b)
{
    return b->sig->interrupted || b->sig->deferred;
}

/* A state file is about to be written: SIGTERM and SIGHUP wait for it. */
static void save_begin(struct batch *b)
{
    b->sig->saving = 1;
    atomic_signal_fence(memory_order_seq_cst);
}

/* The file is written (or failed): a SIGTERM or SIGHUP that came
 * meanwhile is raised again under its default action. */
static void save_end(struct batch *b)
{
    int sig;

    atomic_signal_fence(memory_order_seq_cst);
    b->sig->saving = 0;
    atomic_signal_fence(memory_order_seq_cst);
    if ((sig = b->sig->deferred) != 0) {
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

/* The chat's progress callback: stops a long prompt on a signal.  With
 * --verbose the first piece of a long prompt says how long it is. */
static int prompt_progress(void *ctx, size_t fed, size_t total)
{
    struct batch *b = ctx;

    if (fed == 0 && b->opts->verbose) {
        fprintf(stderr, "rwkv-chat: reading a prompt of %zu tokens in pieces of %d\n", total,
                CHAT_PROMPT_CHUNK);
    }
    if (b->prompt_delay_ms > 0 && !stopping(b)) {
        struct timespec ts = { b->prompt_delay_ms / 1000, (b->prompt_delay_ms % 1000) * 1000000L };

        nanosleep(&ts, NULL);   /* a signal cuts it short */
    }
    return stopping(b);
}

/* The chat's stop poll: a signal stops any prompt within a layer. */
static int prompt_stop_poll(void *ctx)
{
    return stopping(ctx);
}

static int grow(char **buf, size_t *cap, size_t need)
{
    char *nb;
    size_t ncap = *cap ? *cap : 64;

    if (need <= *cap) {
        return 0;
    }
    while (ncap < need) {
        ncap *= 2;
    }
    if (!(nb = realloc(*buf, ncap))) {
        return -1;
    }
    *buf = nb;
    *cap = ncap;
    return 0;
}

/* Records a failed write (the first one's errno). */
static void sink_failed(struct sink *s)
{
    if (!s->write_error) {
        s->write_error = 1;
        s->write_errno = errno ? errno : EIO;
    }
}

static int sink_put(struct sink *s, const char *bytes, size_t n)
{
    size_t i;

    if (s->all) {
        if (grow(&s->all, &s->cap_all, s->n_all + n + 1) < 0) {
            return -1;
        }
        memcpy(s->all + s->n_all, bytes, n);
        s->n_all += n;
        s->all[s->n_all] = 0;
    }
    if (!s->f) {
        return 0;
    }
    if (s->raw) {
        if (n && fwrite(bytes, 1, n, s->f) != n) {
            sink_failed(s);
        }
    } else {
        for (i = 0; i < n; i++) {
            if (isspace((unsigned char)bytes[i])) {
                if (!s->started) {
                    continue;
                }
                if (grow(&s->held, &s->cap_held, s->n_held + 1) < 0) {
                    return -1;
                }
                s->held[s->n_held++] = bytes[i];
                continue;
            }
            s->started = 1;
            if (s->n_held && fwrite(s->held, 1, s->n_held, s->f) != s->n_held) {
                sink_failed(s);
            }
            s->n_held = 0;
            if (putc(bytes[i], s->f) == EOF) {
                sink_failed(s);
            }
        }
    }
    if (fflush(s->f) != 0) {
        sink_failed(s);
    }
    return 0;
}

/* Ends the reply: the stripped reply is followed by one newline. */
/* Ends a reply's output with a newline (--complete's too, so that a shell
 * prompt does not follow the text on its line). */
static void sink_end(struct sink *s)
{
    if (s->f) {
        if (putc('\n', s->f) == EOF || fflush(s->f) != 0) {
            sink_failed(s);
        }
    }
}

static void sink_free(struct sink *s)
{
    free(s->held);
    free(s->all);
}

/* Prints "rwkv-chat: stdin:LINE: message"; returns 1, the exit status. */
static int input_error(long lineno, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int input_error(long lineno, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "rwkv-chat: stdin:%ld: ", lineno);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

/* A write that a signal cut short (EINTR, no SA_RESTART) while batch
 * stops is the interrupt, not an I/O error: the error is forgotten (what
 * stdio held is lost with the rest of the stopped reply). */
static int write_interrupted(const struct batch *b, FILE *f, int err)
{
    if (err == EINTR && stopping(b)) {
        clearerr(f);
        return 1;
    }
    return 0;
}

/* A think block in plain batch output: on stderr, as it streams, between
 * a line "<think>" and a line "</think>" (stdout keeps the answers). */
static void reasoning_put(int *open, const char *bytes, size_t n)
{
    if (!*open) {
        fputs("<think>\n", stderr);
        *open = 1;
    }
    fwrite(bytes, 1, n, stderr);
}

static void reasoning_end(int *open)
{
    if (*open) {
        fputs("\n</think>\n", stderr);
        *open = 0;
    }
}

/* Streams the reply started by chat_send/chat_regen into s until it stops.
 * Returns the stop reason, or -1 with err filled. */
static int stream_reply(struct batch *b, struct sink *s, char *err, size_t errlen)
{
    const char *bytes;
    size_t n;
    int stop, thinking = 0;

    for (;;) {
        if (stopping(b)) {
            reasoning_end(&thinking);
            chat_interrupt(b->c);
            return CHAT_STOP_INTERRUPT;
        }
        stop = chat_step(b->c, &bytes, &n, err, errlen);
        if (stop < 0) {
            reasoning_end(&thinking);
            return -1;
        }
        if (n && chat_step_part(b->c) == CHAT_PART_REASONING) {
            if (s->f) {
                reasoning_put(&thinking, bytes, n);
            }
            n = 0;
        } else if (n || stop != CHAT_STOP_NONE) {
            reasoning_end(&thinking);
        }
        if (n && sink_put(s, bytes, n) < 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        if (s->write_error) {
            if (write_interrupted(b, s->f, s->write_errno)) {
                s->write_error = 0;
                chat_interrupt(b->c);
                return CHAT_STOP_INTERRUPT;
            }
            /* Nobody reads the rest: end the reply where it was cut, so
             * that --state-out can still keep the conversation. */
            chat_interrupt(b->c);
            b->out_failed = 1;
            snprintf(err, errlen, "stdout: %s", strerror(s->write_errno));
            return -1;
        }
        if (stop != CHAT_STOP_NONE) {
            return stop;
        }
    }
}

/* The stop reason as --jsonl reports it (issue 8: "interrupted"). */
static const char *stop_reason(int stop)
{
    return stop == CHAT_STOP_INTERRUPT ? "interrupted" : chat_stop_name((enum chat_stop)stop);
}

static void verbose_stats(struct batch *b, int stop)
{
    const struct chat_stats *st = chat_get_stats(b->c);

    if (!b->opts->verbose) {
        return;
    }
    fprintf(stderr, "rwkv-chat: %zu prompt tokens in %.2f s, %zu reply tokens in %.2f s "
            "(%.1f tokens/s), stop: %s, context %zu tokens\n", st->prompt_tokens,
            st->prompt_seconds, st->reply_tokens, st->reply_seconds,
            st->reply_seconds > 0 ? (double)st->reply_tokens / st->reply_seconds : 0.0,
            stop_reason(stop), st->context_tokens);
}

/* Copies text into a malloc'd string that is valid UTF-8: each byte that
 * does not start a well-formed sequence becomes U+FFFD. */
static char *valid_utf8(const char *text, size_t len, size_t *out_len)
{
    const unsigned char *p = (const unsigned char *)text;
    char *out = malloc(len * 3 + 1), *o = out;
    size_t i = 0, k, need;
    unsigned cp, min;

    if (!out) {
        return NULL;
    }
    while (i < len) {
        unsigned char c = p[i];

        if (c < 0x80) {
            *o++ = (char)c;
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1, cp = c & 0x1f, min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2, cp = c & 0x0f, min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3, cp = c & 0x07, min = 0x10000;
        } else {
            need = 0, cp = 0, min = 1;
        }
        for (k = 1; need && k <= need; k++) {
            if (i + k >= len || (p[i + k] & 0xc0) != 0x80) {
                break;
            }
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if (need && k > need && cp >= min && cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff)) {
            memcpy(o, p + i, need + 1);
            o += need + 1;
            i += need + 1;
        } else {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    *o = 0;
    *out_len = (size_t)(o - out);
    return out;
}

/* Writes the JSONL object of the reply that just ended. */
static int write_json_reply(struct batch *b, struct sink *s, int stop, char *err, size_t errlen)
{
    const struct chat_stats *st = chat_get_stats(b->c);
    size_t n_turns = chat_turn_count(b->c), len;
    const struct chat_turn *last = n_turns ? chat_turn_at(b->c, n_turns - 1) : NULL;
    const char *content = s->all ? s->all : "";
    struct json_object *obj;
    const char *text;
    char *clean;

    /* The transcript holds the reply as the conversation keeps it
     * (stripped); the streamed bytes are the fallback. */
    if (last && last->role == CHAT_ASSISTANT && last->text) {
        content = last->text;
    }
    if (!(clean = valid_utf8(content, strlen(content), &len))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    obj = json_object_new_object();
    json_object_object_add(obj, "role", json_object_new_string("assistant"));
    json_object_object_add(obj, "content", json_object_new_string_len(clean, (int)len));
    if (last && last->role == CHAT_ASSISTANT && last->reasoning) {
        size_t rlen;
        char *r = valid_utf8(last->reasoning, strlen(last->reasoning), &rlen);

        if (!r) {
            snprintf(err, errlen, "out of memory");
            json_object_put(obj);
            free(clean);
            return -1;
        }
        json_object_object_add(obj, "reasoning", json_object_new_string_len(r, (int)rlen));
        free(r);
    }
    json_object_object_add(obj, "stop_reason",
                           json_object_new_string(stop_reason(stop)));
    json_object_object_add(obj, "prompt_tokens", json_object_new_int64((int64_t)st->prompt_tokens));
    json_object_object_add(obj, "reply_tokens", json_object_new_int64((int64_t)st->reply_tokens));
    json_object_object_add(obj, "context_tokens",
                           json_object_new_int64((int64_t)st->context_tokens));
    json_object_object_add(obj, "prompt_seconds", json_object_new_double(st->prompt_seconds));
    json_object_object_add(obj, "reply_seconds", json_object_new_double(st->reply_seconds));
    json_object_object_add(obj, "tokens_per_second",
                           json_object_new_double(st->reply_seconds > 0
                                                  ? (double)st->reply_tokens / st->reply_seconds
                                                  : 0.0));
    text = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN |
                                               JSON_C_TO_STRING_NOSLASHESCAPE);
    errno = 0;
    if ((fprintf(b->out, "%s\n", text) < 0 || fflush(b->out) != 0) &&
        !write_interrupted(b, b->out, errno)) {
        b->out_failed = 1;
        snprintf(err, errlen, "stdout: %s", strerror(errno ? errno : EIO));
        json_object_put(obj);
        free(clean);
        return -1;
    }
    json_object_put(obj);
    free(clean);
    return 0;
}

/* Streams the reply just started (continued: /continue's, whose earlier
 * part was written already) and reports it.  Returns 0, 1 on error
 * (printed) or BATCH_EXIT_INTERRUPTED. */
static int finish_reply(struct batch *b, int continued)
{
    struct sink s;
    char err[RWKV_ERRLEN];
    int stop;

    memset(&s, 0, sizeof(s));
    if (b->opts->jsonl) {
        s.f = NULL;
        s.all = malloc(1);
        if (s.all) {
            s.all[0] = 0;
            s.cap_all = 1;
        }
    } else {
        s.f = b->out;
        s.raw = b->opts->complete;
        /* The rest of a reply keeps its leading white space: the cut
         * reply's line and this one, joined, are the whole reply. */
        s.started = continued;
    }
    stop = stream_reply(b, &s, err, sizeof(err));
    if (stop < 0) {
        if (b->out_failed) {
            error_line("%s: the reply was cut there%s", err,
                       b->opts->state_out ? "; the conversation is still saved to --state-out"
                                          : "");
        } else if (b->opts->complete) {
            error_line("stdin: %s", err, NULL);
        } else {
            input_error(b->msg_line, "%s", err);
        }
        sink_free(&s);
        return 1;
    }
    if (b->opts->jsonl) {
        if (write_json_reply(b, &s, stop, err, sizeof(err)) < 0) {
            error_line("%s", err, NULL);
            sink_free(&s);
            return 1;
        }
    } else {
        sink_end(&s);
        if (s.write_error && !write_interrupted(b, s.f, s.write_errno)) {
            b->out_failed = 1;
            error_line("stdout: %s", strerror(s.write_errno), NULL);
            sink_free(&s);
            return 1;
        }
    }
    sink_free(&s);
    verbose_stats(b, stop);
    return stop == CHAT_STOP_INTERRUPT || stopping(b) ? BATCH_EXIT_INTERRUPTED : 0;
}

/* Reports a message whose prompt a signal stopped (the conversation is as
 * before it); returns the exit status. */
static int prompt_interrupted(const struct batch *b, const char *err)
{
    if (b->opts->complete) {
        error_line("stdin: prompt not sent: %s", err, NULL);
    } else {
        input_error(b->msg_line, "message not sent: %s (the conversation is as before it)", err);
    }
    return BATCH_EXIT_INTERRUPTED;
}

/* Sends one user message and streams the reply. */
static int send_message(struct batch *b, const char *text)
{
    char err[RWKV_ERRLEN];
    int rc = chat_send(b->c, text, err, sizeof(err));

    if (rc == CHAT_INTERRUPTED) {
        return prompt_interrupted(b, err);
    }
    if (rc < 0) {
        return input_error(b->msg_line, "%s", err);
    }
    return finish_reply(b, 0);
}

/* Runs a slash command.  Its text goes to stderr: info always, mere
 * confirmations only with --verbose. */
static int run_command(struct batch *b, const char *line)
{
    struct command_result r;
    int rc = 0, saves = commands_writes_file(line);

    if (saves) {
        save_begin(b);
    }
    rc = commands_run(b->session, line, &r);
    if (saves) {
        save_end(b);
    }
    if (rc < 0) {
        if (r.action == COMMAND_INTERRUPTED) {
            rc = prompt_interrupted(b, r.text ? r.text : "interrupted");
        } else {
            rc = input_error(b->lineno, "%s", r.text ? r.text : "error");
            if (stopping(b)) {
                rc = BATCH_EXIT_INTERRUPTED;    /* a signal stopped it (/load's intro) */
            }
        }
        command_result_free(&r);
        return rc;
    }
    /* /edit's text is the message for the TUI's input line, not a report. */
    if (r.text && r.action != COMMAND_EDIT && r.action != COMMAND_COPY &&
        (!r.verbose_only || b->opts->verbose)) {
        fprintf(stderr, "%s\n", r.text);
    }
    switch (r.action) {
    case COMMAND_QUIT:
        b->quit = 1;
        break;
    case COMMAND_REPLY:
    case COMMAND_CONTINUE:
        rc = finish_reply(b, r.action == COMMAND_CONTINUE);
        break;
    case COMMAND_EDIT:
        rc = input_error(b->lineno, "/edit needs the new text in batch mode (/edit TEXT)");
        break;
    case COMMAND_COPY:
        rc = input_error(b->lineno, "/copy copies through the terminal, in the chat; in batch "
                         "mode the replies are on standard output");
        break;
    default:
        break;
    }
    command_result_free(&r);
    return rc;
}

/* Reads one line without its newline into *line; -1 at end of input, on
 * a read error, or when a signal cut the read short (glibc's getline then
 * returns the part read so far: it is dropped). */
static ssize_t read_line(struct batch *b, char **line, size_t *cap)
{
    ssize_t n = getline(line, cap, b->in);

    if (n < 0 || (ferror(b->in) && stopping(b))) {
        return -1;
    }
    b->lineno++;
    if (n > 0 && (*line)[n - 1] == '\n') {
        (*line)[--n] = 0;
    }
    if (n > 0 && (*line)[n - 1] == '\r') {
        (*line)[--n] = 0;
    }
    return n;
}

/* A line holding a NUL byte is refused, never cut short there (a C
 * string would end at it and the rest be lost unsaid): 1 after printing
 * the error, 0 if there is none. */
static int refuse_nul(long lineno, const char *line, size_t n)
{
    const char *nul = memchr(line, 0, n);

    if (!nul) {
        return 0;
    }
    input_error(lineno, "NUL byte at byte %zu: the line is refused", (size_t)(nul - line) + 1);
    return 1;
}

static int is_blank(const char *s)
{
    while (isspace((unsigned char)*s)) {
        s++;
    }
    return !*s;
}

/* Handles one JSONL line: a message object. */
static int json_message(struct batch *b, const char *line)
{
    struct json_tokener *tok = json_tokener_new();
    struct json_object *obj, *v;
    struct sampler_settings saved, *s = chat_settings(b->c);
    enum json_tokener_error jerr;
    const char *content, *role = "user";
    int rc, changed = 0;
    size_t i;

    if (!tok) {
        return input_error(b->lineno, "out of memory");
    }
    if (b->lineno == 1 && !strncmp(line, "\xEF\xBB\xBF", 3)) {
        line += 3;      /* a UTF-8 byte order mark, as some editors write */
    }
    obj = json_tokener_parse_ex(tok, line, (int)strlen(line));
    jerr = json_tokener_get_error(tok);
    if (line[strspn(line, " \t\r")] != '{' &&
        (jerr == json_tokener_success || jerr == json_tokener_continue)) {
        /* null, 5, "text", [...]: valid or not, not a message. */
        json_object_put(obj);
        json_tokener_free(tok);
        return input_error(b->lineno, "expected a JSON object {\"role\":\"user\",\"content\":...}");
    }
    if (!obj || jerr != json_tokener_success ||
        !is_blank(line + json_tokener_get_parse_end(tok))) {
        input_error(b->lineno, "malformed JSON: %s",
                jerr == json_tokener_success ? (obj ? "text after the object" : "expected an object")
                : jerr == json_tokener_continue ? "unexpected end of line"
                : json_tokener_error_desc(jerr));
        json_object_put(obj);
        json_tokener_free(tok);
        return 1;
    }
    json_tokener_free(tok);
    if (!json_object_is_type(obj, json_type_object)) {
        json_object_put(obj);
        return input_error(b->lineno, "expected a JSON object {\"role\":\"user\",\"content\":...}");
    }
    if (json_object_object_get_ex(obj, "role", &v)) {
        role = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
        if (strcmp(role, "user") != 0 && strcmp(role, "system") != 0) {
            json_object_put(obj);
            return input_error(b->lineno, "role must be \"user\" or \"system\"");
        }
    }
    if (!json_object_object_get_ex(obj, "content", &v) || !json_object_is_type(v, json_type_string)) {
        json_object_put(obj);
        return input_error(b->lineno, "\"content\" must be a string");
    }
    content = json_object_get_string(v);
    if (strlen(content) != (size_t)json_object_get_string_len(v)) {
        json_object_put(obj);
        return input_error(b->lineno, "\"content\" holds a NUL character (\\u0000): "
                           "the message is refused");
    }
    if (!strcmp(role, "system")) {
        /* The system turn: the conversation starts again with it (no reply). */
        char err[RWKV_ERRLEN];

        rc = chat_set_system(b->c, content, err, sizeof(err)) < 0
             ? input_error(b->lineno, "%s", err) : 0;
        json_object_put(obj);
        return rc;
    }
    saved = *s;
    /* Knobs for this message only (not the seed: setting it back would
     * restart the conversation's random stream). */
    for (i = 0; i < knob_count(); i++) {
        const struct knob *k = knob_at(i);
        char why[160], what[96];

        if (k->type == KNOB_SEED || !json_object_object_get_ex(obj, k->name, &v)) {
            continue;
        }
        if (!(json_object_is_type(v, json_type_int) ||
              (k->type == KNOB_REAL && json_object_is_type(v, json_type_double))) ||
            knob_set(k, s, json_object_is_type(v, json_type_int)
                           ? (double)json_object_get_int64(v) : json_object_get_double(v),
                     why, sizeof why) < 0) {
            *s = saved;
            json_object_put(obj);
            knob_describe(k, what, sizeof what);
            return input_error(b->lineno, "\"%s\" must be %s", k->name, what);
        }
        changed = 1;
    }
    if (changed) {
        chat_settings_changed(b->c);
    }
    rc = send_message(b, content);
    if (changed) {
        *chat_settings(b->c) = saved;
        chat_settings_changed(b->c);
    }
    json_object_put(obj);
    return rc;
}

/* Collects a """ block (the opening line was just read) into *msg.
 * 0, -1 after printing the error, or -2 when a signal stopped it. */
static int read_block(struct batch *b, char **line, size_t *cap, char **msg)
{
    long start = b->lineno;
    size_t len = 0, n, mcap = 0;
    ssize_t r;

    *msg = NULL;
    while ((r = read_line(b, line, cap)) >= 0 && !stopping(b)) {
        if (!strcmp(*line, "\"\"\"")) {
            if (!*msg && !(*msg = strdup(""))) {
                input_error(start, "out of memory");
                return -1;
            }
            return 0;
        }
        n = (size_t)r;
        if (refuse_nul(b->lineno, *line, n)) {
            free(*msg);
            *msg = NULL;
            return -1;
        }
        if (grow(msg, &mcap, len + n + 2) < 0) {
            free(*msg);
            *msg = NULL;
            input_error(start, "out of memory");
            return -1;
        }
        if (len) {
            (*msg)[len++] = '\n';
        }
        memcpy(*msg + len, *line, n);
        len += n;
        (*msg)[len] = 0;
    }
    free(*msg);
    *msg = NULL;
    if (stopping(b)) {
        return -2;
    }
    input_error(start, "\"\"\" block not closed before the end of input");
    return -1;
}

static int run_chat(struct batch *b)
{
    char *line = NULL, *msg;
    size_t cap = 0;
    ssize_t n;
    int rc = 0, r;

    while (!b->quit && rc == 0 && !stopping(b)) {
        errno = 0;
        if ((n = read_line(b, &line, &cap)) < 0) {
            if (ferror(b->in) && !stopping(b)) {
                error_line("stdin: %s", strerror(errno), NULL);
                rc = 1;
            }
            break;
        }
        if (stopping(b)) {
            break;      /* a signal came while the line was read */
        }
        b->msg_line = b->lineno;
        if (refuse_nul(b->lineno, line, (size_t)n)) {
            rc = 1;
            break;
        }
        if (is_blank(line)) {
            continue;
        }
        if (commands_is_command(line)) {
            rc = run_command(b, line);
        } else if (b->opts->jsonl) {
            rc = json_message(b, line);
        } else if (!strcmp(line, "\"\"\"")) {
            r = read_block(b, &line, &cap, &msg);
            if (r == -2) {
                break;
            }
            if (r < 0) {
                rc = 1;
                break;
            }
            rc = send_message(b, msg);
            free(msg);
        } else {
            /* "//text" is a message starting with '/'. */
            rc = send_message(b, line[0] == '/' ? line + 1 : line);
        }
    }
    free(line);
    if (rc == 0 && stopping(b)) {
        rc = BATCH_EXIT_INTERRUPTED;
    }
    return rc;
}

/* --complete: the whole of stdin is the prompt. */
static int run_complete(struct batch *b)
{
    char *text = NULL, err[RWKV_ERRLEN];
    size_t len = 0, cap = 0, n;
    int rc;

    for (;;) {
        if (grow(&text, &cap, len + 65536) < 0) {
            free(text);
            error_line("out of memory", NULL, NULL);
            return 1;
        }
        n = fread(text + len, 1, cap - len, b->in);
        len += n;
        /* A signal cuts fread short (n may be > 0); another would block. */
        if (n == 0 || stopping(b)) {
            break;
        }
    }
    if (stopping(b)) {
        free(text);
        return BATCH_EXIT_INTERRUPTED;
    }
    if (ferror(b->in)) {
        free(text);
        error_line("stdin: %s", strerror(errno), NULL);
        return 1;
    }
    if (len == 0) {
        free(text);
        error_line("--complete: empty prompt on stdin", NULL, NULL);
        return 1;
    }
    rc = chat_send_raw(b->c, text, len, err, sizeof(err));
    free(text);
    if (rc == CHAT_INTERRUPTED) {
        return prompt_interrupted(b, err);
    }
    if (rc < 0) {
        error_line("%s", err, NULL);
        return 1;
    }
    return finish_reply(b, 0);
}

int batch_run(struct session *s, const struct app_options *opts, FILE *in, FILE *out,
              struct batch_signals *signals)
{
    chat *c = s->chat;
    const char *delay = getenv("RWKV_CHAT_BATCH_PROMPT_DELAY_MS");
    struct batch b;
    char err[RWKV_ERRLEN];
    int rc;

    memset(&b, 0, sizeof(b));
    b.session = s;
    b.c = c;
    b.opts = opts;
    b.model_label = s->label;
    b.in = in;
    b.out = out;
    b.sig = signals;
    /* A test hook: a pause before each piece of a long prompt, so that a
     * test's signal surely lands while the prompt is fed. */
    b.prompt_delay_ms = delay ? atol(delay) : 0;
    chat_set_progress(c, prompt_progress, &b);
    chat_set_stop_poll(c, prompt_stop_poll, &b);
    rc = opts->complete ? run_complete(&b) : run_chat(&b);
    /* A closed stdout ends the run, but the conversation so far is kept. */
    if ((rc == 0 || rc == BATCH_EXIT_INTERRUPTED || b.out_failed) && opts->state_out) {
        save_begin(&b);
        if (chat_save(c, opts->state_out, err, sizeof(err)) < 0) {
            error_line("%s", err, NULL);
            rc = 1;
        }
        save_end(&b);
        if (rc != 1 && opts->verbose) {
            fprintf(stderr, "rwkv-chat: state saved to %s\n", opts->state_out);
        }
    }
    chat_set_progress(c, NULL, NULL);
    chat_set_stop_poll(c, NULL, NULL);
    return rc;
}
