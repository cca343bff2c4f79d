/* fuzz_jsonl.c - the --batch input reader and JSONL writer (app/cli/batch.c)
 * on arbitrary stdin.  batch.c's line parser (json_message) is static and
 * sends each message, so the whole batch_run is driven here against a
 * stand-in chat: its "reply" echoes the message back in pieces of 1 to 3
 * bytes (invalid UTF-8 included), and slash commands only say "ok".
 * Nothing is generated and no file is written.
 *
 * The first input byte picks the mode (plain, --jsonl, --complete); in
 * --jsonl mode every line written to stdout must be a JSON object whose
 * bytes are valid UTF-8. */
#include <json.h>
#include <string.h>

#include "app/cli/batch.h"
#include "app/session/commands.h"
#include "tests/fuzz/fuzz.h"

/* ------------------------------------------------- the stand-in chat --- */

static char *reply;
static size_t reply_len, reply_pos;
static int generating;
static struct chat_turn last_turn;
static size_t n_turns;
static struct sampler_settings settings;
static struct chat_stats stats;

int chat_send(chat *c, const char *text, char *err, size_t errlen)
{
    (void)c;
    if (!*text) {
        snprintf(err, errlen, "empty message");
        return -1;
    }
    free(reply);
    reply = strdup(text);
    reply_len = strlen(text);
    reply_pos = 0;
    generating = 1;
    return 0;
}

int chat_send_raw(chat *c, const char *prompt, size_t len, char *err, size_t errlen)
{
    (void)c;
    (void)err;
    (void)errlen;
    free(reply);
    reply = malloc(len + 1);
    memcpy(reply, prompt, len);
    reply[len] = 0;
    reply_len = len;
    reply_pos = 0;
    generating = 1;
    return 0;
}

int chat_step(chat *c, const char **out, size_t *out_len, char *err, size_t errlen)
{
    size_t n = 1 + reply_pos % 3;

    (void)c;
    (void)err;
    (void)errlen;
    if (!generating) {
        *out = "";
        *out_len = 0;
        return CHAT_STOP_END;
    }
    if (n > reply_len - reply_pos) {
        n = reply_len - reply_pos;
    }
    *out = reply + reply_pos;
    *out_len = n;
    reply_pos += n;
    stats.reply_tokens++;
    if (reply_pos < reply_len) {
        return CHAT_STOP_NONE;
    }
    generating = 0;
    free(last_turn.text);
    last_turn.role = CHAT_ASSISTANT;
    last_turn.text = strdup(reply);
    n_turns = 2;
    return settings.max_tokens == 1 ? CHAT_STOP_LENGTH : CHAT_STOP_END;
}

/* The stand-in never thinks aloud: every byte is the answer. */
enum chat_part chat_step_part(const chat *c)
{
    (void)c;
    return CHAT_PART_ANSWER;
}

/* A system message is taken and forgotten (nothing is generated from it). */
int chat_set_system(chat *c, const char *text, char *err, size_t errlen)
{
    (void)c;
    (void)text;
    (void)err;
    (void)errlen;
    return 0;
}

void chat_interrupt(chat *c)
{
    (void)c;
    generating = 0;
}

void chat_set_progress(chat *c, chat_progress_fn fn, void *ctx)
{
    (void)c;
    (void)fn;
    (void)ctx;
}

void chat_set_stop_poll(chat *c, chat_stop_fn fn, void *ctx)
{
    (void)c;
    (void)fn;
    (void)ctx;
}

struct sampler_settings *chat_settings(chat *c)
{
    (void)c;
    return &settings;
}

void chat_settings_changed(chat *c)
{
    (void)c;
}

const char *chat_stop_name(enum chat_stop stop)
{
    return stop == CHAT_STOP_END ? "end" : stop == CHAT_STOP_LENGTH ? "length" : "other";
}

size_t chat_turn_count(const chat *c)
{
    (void)c;
    return n_turns;
}

const struct chat_turn *chat_turn_at(const chat *c, size_t i)
{
    (void)c;
    return i + 1 == n_turns ? &last_turn : NULL;
}

const struct chat_stats *chat_get_stats(const chat *c)
{
    (void)c;
    return &stats;
}

int chat_save(chat *c, const char *path, char *err, size_t errlen)
{
    (void)c;
    (void)path;
    (void)err;
    (void)errlen;
    return 0;
}

int commands_is_command(const char *line)
{
    return line[0] == '/' && line[1] != '/';
}

int commands_writes_file(const char *line)
{
    (void)line;
    return 0;
}

int commands_run(struct session *s, const char *line, struct command_result *out)
{
    (void)s;
    memset(out, 0, sizeof(*out));
    out->action = !strcmp(line, "/quit") ? COMMAND_QUIT : COMMAND_SHOW;
    out->text = strdup("ok");
    return 0;
}

void command_result_free(struct command_result *out)
{
    free(out->text);
    out->text = NULL;
}

/* ------------------------------------------------------------ checks --- */

static int utf8_ok(const unsigned char *p, size_t n)
{
    size_t i = 0, k, need;
    unsigned cp, min;

    while (i < n) {
        unsigned char c = p[i];
        if (c < 0x80) {
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
            return 0;
        }
        for (k = 1; k <= need; k++) {
            if (i + k >= n || (p[i + k] & 0xc0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return 0;
        }
        i += need + 1;
    }
    return 1;
}

static void check_jsonl(const char *out, size_t len)
{
    const char *line = out, *end = out + len;

    if (!utf8_ok((const unsigned char *)out, len)) {
        __builtin_trap();
    }
    while (line < end) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        struct json_tokener *tok = json_tokener_new();
        struct json_object *obj;

        if (!nl) {
            __builtin_trap();   /* every object ends its line */
        }
        obj = json_tokener_parse_ex(tok, line, (int)(nl - line));
        if (!obj || !json_object_is_type(obj, json_type_object) ||
            json_tokener_get_parse_end(tok) != (size_t)(nl - line)) {
            __builtin_trap();
        }
        json_object_put(obj);
        json_tokener_free(tok);
        line = nl + 1;
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* batch.c reports bad lines on stderr: keep the fuzzer's log readable
     * (sanitizer reports write to fd 2 directly and still show). */
    stderr = fopen("/dev/null", "w");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct app_options opts;
    struct session session;
    struct batch_signals signals;
    char *out = NULL;
    size_t out_len = 0;
    FILE *in, *outf;
    int dummy, mode;

    if (size < 1) {
        return 0;
    }
    mode = data[0] % 3;
    memset(&opts, 0, sizeof(opts));
    memset((void *)&signals, 0, sizeof(signals));
    opts.batch = 1;
    opts.jsonl = mode == 1;
    opts.complete = mode == 2;
    opts.verbose = (data[0] >> 2) & 1;
    settings.max_tokens = (data[0] >> 3) & 1;
    n_turns = 0;
    generating = 0;
    in = fmemopen(size > 1 ? (void *)(data + 1) : (void *)"", size > 1 ? size - 1 : 1, "r");
    outf = open_memstream(&out, &out_len);
    if (!in || !outf) {
        abort();
    }
    if (size == 1) {
        fgetc(in);  /* fmemopen needs a buffer: read its byte so the input is empty */
    }
    memset(&session, 0, sizeof(session));
    session.chat = (chat *)&dummy;
    snprintf(session.label, sizeof(session.label), "fuzz.pth  RWKV-7 1K");
    (void)batch_run(&session, &opts, in, outf, &signals);
    fclose(in);
    fclose(outf);
    if (opts.jsonl) {
        check_jsonl(out, out_len);
    }
    free(out);
    return 0;
}
