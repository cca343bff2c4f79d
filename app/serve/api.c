/* api.c - OpenAI-compatible request parsing and response building. */
#include "app/serve/api.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "engine/base/escape.h"

int api_fail(struct api_error *e, int status, const char *type, const char *code,
             const char *param, const char *fmt, ...)
{
    va_list ap;

    e->status = status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* obj as compact JSON text, malloc'd; obj is released. */
static char *to_text(json_object *obj)
{
    char *t = NULL;

    if (obj) {
        const char *s = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN |
                                                            JSON_C_TO_STRING_NOSLASHESCAPE);
        t = s ? strdup(s) : NULL;
        json_object_put(obj);
    }
    return t;
}

char *api_error_json(const struct api_error *e)
{
    json_object *root = json_object_new_object(), *err = json_object_new_object();

    json_object_object_add(err, "message", json_object_new_string(e->message));
    json_object_object_add(err, "type", json_object_new_string(e->type));
    json_object_object_add(err, "param", e->param[0] ? json_object_new_string(e->param) : NULL);
    json_object_object_add(err, "code", e->code ? json_object_new_string(e->code) : NULL);
    json_object_object_add(root, "error", err);
    return to_text(root);
}

int api_valid_id(const char *id)
{
    size_t n = strlen(id);

    return n > 0 && n <= SERVE_ID_MAX &&
           strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

/* --- pieces of a prompt -------------------------------------------------- */

struct pieces {
    int32_t *tokens;
    size_t n, cap;
    size_t *end;
    size_t n_end, cap_end;
};

/* Appends text, tokenized on its own (the chat feeds each turn so), as a
 * piece.  0, or -1 when out of memory. */
static int piece_add(const struct api_config *a, struct pieces *p, const char *text, size_t len)
{
    int32_t *ids = NULL;
    size_t n = 0;
    void *grown;

    if (len == 0) {
        return 0;
    }
    if (tokenizer_encode(a->tok, (const uint8_t *)text, len, &ids, &n) < 0) {
        return -1;
    }
    if (p->n + n > p->cap) {
        size_t nc = p->cap ? p->cap : 256;

        while (nc < p->n + n) {
            nc *= 2;
        }
        if (!(grown = realloc(p->tokens, nc * sizeof *p->tokens))) {
            free(ids);
            return -1;
        }
        p->tokens = grown;
        p->cap = nc;
    }
    if (p->n_end == p->cap_end) {
        size_t nc = p->cap_end ? 2 * p->cap_end : 16;

        if (!(grown = realloc(p->end, nc * sizeof *p->end))) {
            free(ids);
            return -1;
        }
        p->end = grown;
        p->cap_end = nc;
    }
    memcpy(p->tokens + p->n, ids, n * sizeof *ids);
    p->n += n;
    p->end[p->n_end++] = p->n;
    free(ids);
    return 0;
}

/* A turn "NAME: TEXT\n\n" (more after it: tail), with sep newlines before. */
static int turn_add(const struct api_config *a, struct pieces *p, int sep, const char *name,
                    const char *text, const char *tail)
{
    size_t len = strlen(name) + strlen(text) + strlen(tail) + 8;
    char *buf = malloc(len);
    int rc;

    if (!buf) {
        return -1;
    }
    len = (size_t)snprintf(buf, len, "%s%s: %s%s", sep == 2 ? "\n\n" : sep == 1 ? "\n" : "",
                           name, text, tail);
    rc = piece_add(a, p, buf, len);
    free(buf);
    return rc;
}

/* --- reading fields ------------------------------------------------------ */

/* A message's content: a string, or an array of {"type":"text","text"}
 * parts joined; NULL (e filled) for anything else.  malloc'd. */
static char *content_text(json_object *content, size_t i, struct api_error *e)
{
    char param[64];
    size_t k, n, len = 0;
    char *out;

    snprintf(param, sizeof param, "messages[%zu].content", i);
    if (!content || json_object_is_type(content, json_type_null)) {
        return strdup("");
    }
    if (json_object_is_type(content, json_type_string)) {
        return strdup(json_object_get_string(content));
    }
    if (!json_object_is_type(content, json_type_array)) {
        api_fail(e, 400, "invalid_request_error", "invalid_type", param,
                 "%s must be a string or an array of text parts", param);
        return NULL;
    }
    n = json_object_array_length(content);
    out = calloc(1, 1);
    for (k = 0; out && k < n; k++) {
        json_object *part = json_object_array_get_idx(content, k), *type, *text;
        const char *t;
        char *grown;

        if (!json_object_object_get_ex(part, "type", &type) ||
            strcmp(json_object_get_string(type), "text") != 0 ||
            !json_object_object_get_ex(part, "text", &text) ||
            !json_object_is_type(text, json_type_string)) {
            free(out);
            api_fail(e, 400, "invalid_request_error", "invalid_type", param,
                     "%s: only text parts ({\"type\":\"text\",\"text\":...}) are understood",
                     param);
            return NULL;
        }
        t = json_object_get_string(text);
        if (!(grown = realloc(out, len + strlen(t) + 1))) {
            free(out);
            out = NULL;
            break;
        }
        out = grown;
        memcpy(out + len, t, strlen(t) + 1);
        len += strlen(t);
    }
    if (!out) {
        api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    return out;
}

/* Strips leading and trailing white space in place. */
static char *strip(char *s)
{
    size_t n;

    while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') {
        s++;
    }
    n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t' || s[n - 1] == '\r')) {
        s[--n] = '\0';
    }
    return s;
}

/* Appends a turn (a copy of text) to j's messages; NULL when out of memory. */
static struct chat_turn *add_turn(struct job *j, enum chat_role role, const char *text)
{
    struct chat_turn *grown = realloc(j->turns, (j->n_turns + 1) * sizeof *grown), *t;

    if (!grown) {
        return NULL;
    }
    j->turns = grown;
    t = &grown[j->n_turns];
    t->role = role;
    t->reasoning = NULL;
    if (!(t->text = strdup(text))) {
        return NULL;
    }
    j->n_turns++;
    return t;
}

/* The chat's turns as pieces: the intro and system turn (unless the
 * request starts from a named state), then each message as the chat
 * feeds it: "User: MSG\n\nAssistant:" and the reply " TEXT\n\n". */
static int render_chat(const struct api_config *a, json_object *messages, int sep,
                       int from_state, struct pieces *p, struct job *j, struct api_error *e)
{
    struct chat_turn *turn;
    char *hist_turn = NULL;
    const struct chat_template *t = a->tmpl;
    const char *sysname = t->system ? t->system : "System";
    size_t i, n = json_object_array_length(messages);
    int have_system = 0, rc = 0;
    const char *suffix = "", *pre = "";

    if (n == 0) {
        return api_fail(e, 400, "invalid_request_error", NULL, "messages",
                        "messages must hold at least one message");
    }
    if (t->thinking) {
        switch (a->think) {
        case CHAT_THINK_AUTO:
            break;
        case CHAT_THINK_OFF:
            pre = " <think>\n</think";
            break;
        case CHAT_THINK_ON:
            pre = " <think";
            break;
        case CHAT_THINK_A_BIT:
            suffix = " (think a bit)";
            pre = " <think";
            break;
        case CHAT_THINK_A_LOT:
            suffix = " (think a lot)";
            pre = " <think";
            break;
        }
    }
    if (!from_state && a->start == API_START_INTRO && t->intro[0] &&
        piece_add(a, p, t->intro, strlen(t->intro)) < 0) {
        return api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    for (i = 0; i < n && rc == 0; i++) {
        json_object *m = json_object_array_get_idx(messages, i), *role, *content = NULL;
        char param[64], *text, *norm;
        const char *r;
        int last = i + 1 == n;

        snprintf(param, sizeof param, "messages[%zu].role", i);
        if (!json_object_is_type(m, json_type_object) ||
            !json_object_object_get_ex(m, "role", &role) ||
            !json_object_is_type(role, json_type_string)) {
            return api_fail(e, 400, "invalid_request_error", NULL, param,
                            "messages[%zu] must be an object with a string role", i);
        }
        r = json_object_get_string(role);
        json_object_object_get_ex(m, "content", &content);
        if (!(text = content_text(content, i, e))) {
            return -1;
        }
        if (strcmp(r, "system") == 0 || strcmp(r, "developer") == 0) {
            norm = chat_normalize(text);
            if (norm && norm[0]) {
                rc = turn_add(a, p, sep, sysname, norm, "\n\n");
                sep = 0;
            }
            have_system = 1;
            free(norm);
        } else if (strcmp(r, "user") == 0) {
            json_object *next = last ? NULL : json_object_array_get_idx(messages, i + 1), *nr;
            int answered = next && json_object_object_get_ex(next, "role", &nr) &&
                           strcmp(json_object_get_string(nr), "assistant") == 0;
            size_t tl;
            char *tail;

            if (!have_system && !from_state && a->start != API_START_CONVERSATION && a->system) {
                char *sys = chat_normalize(a->system);

                if (sys && sys[0]) {
                    rc = turn_add(a, p, 0, sysname, sys, "\n\n");
                }
                free(sys);
                have_system = 1;
            }
            norm = chat_normalize(text);
            if (!norm || !norm[0]) {
                free(norm);
                free(text);
                snprintf(param, sizeof param, "messages[%zu].content", i);
                return api_fail(e, 400, "invalid_request_error", NULL, param,
                                "messages[%zu] is empty", i);
            }
            tl = strlen(t->assistant) + strlen(suffix) + strlen(pre) + 8;
            if (!(tail = malloc(tl))) {
                rc = -1;
            } else {
                snprintf(tail, tl, "%s\n\n%s%s%s", last ? suffix : "",
                         last || answered ? t->assistant : "", last || answered ? ":" : "",
                         last ? pre : "");
                rc = turn_add(a, p, sep, t->user, norm, tail);
                free(tail);
            }
            if (rc == 0 && last && (*suffix || *pre)) {
                /* A follow-up sends this turn back as an answered one:
                 * "USER: MSG\n\nASSISTANT:", without the think prefix. */
                size_t hl = strlen(t->user) + strlen(norm) + strlen(t->assistant) + 16;

                if (!(hist_turn = malloc(hl))) {
                    rc = -1;
                } else {
                    snprintf(hist_turn, hl, "%s%s: %s\n\n%s:",
                             sep == 2 ? "\n\n" : sep == 1 ? "\n" : "", t->user, norm,
                             t->assistant);
                }
            }
            if (rc == 0 && (turn = add_turn(j, CHAT_USER, norm)) == NULL) {
                rc = -1;
            }
            sep = 0;
            have_system = 1;
            free(norm);
        } else if (strcmp(r, "assistant") == 0) {
            char *body = strip(text);
            size_t bl = strlen(body) + 4;
            char *reply = malloc(bl);

            if (last) {
                free(reply);
                free(text);
                return api_fail(e, 400, "invalid_request_error", NULL, "messages",
                                "the last message must be the user's");
            }
            if (!reply) {
                rc = -1;
            } else {
                rc = piece_add(a, p, reply, (size_t)snprintf(reply, bl, " %s\n\n", body));
                free(reply);
            }
            if (rc == 0 && (turn = add_turn(j, CHAT_ASSISTANT, body)) == NULL) {
                rc = -1;
            }
        } else {
            free(text);
            return api_fail(e, 400, "invalid_request_error", NULL, param,
                            "messages[%zu]: role '%s' is not supported (system, user, "
                            "assistant)", i, RWKV_ESC(r));
        }
        if (rc == 0 && last && strcmp(r, "user") != 0) {
            free(text);
            return api_fail(e, 400, "invalid_request_error", NULL, "messages",
                            "the last message must be the user's");
        }
        free(text);
    }
    if (rc == 0 && hist_turn) {
        struct pieces h = { 0 };
        size_t before = p->n_end >= 2 ? p->end[p->n_end - 2] : 0;

        rc = piece_add(a, &h, hist_turn, strlen(hist_turn));
        if (rc == 0 && !(j->hist_tokens = malloc((before + h.n) * sizeof *j->hist_tokens))) {
            rc = -1;
        }
        if (rc == 0) {
            memcpy(j->hist_tokens, p->tokens, before * sizeof *j->hist_tokens);
            memcpy(j->hist_tokens + before, h.tokens, h.n * sizeof *j->hist_tokens);
            j->n_hist = before + h.n;
        }
        free(h.tokens);
        free(h.end);
    }
    free(hist_turn);
    if (rc < 0) {
        return api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (*pre && !(j->prefix = strdup(pre))) {
        return api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    return 0;
}

/* The sampling fields and the knobs they set. */
static const struct { const char *field, *knob; } sampling_fields[] = {
    { "temperature", "temperature" }, { "top_p", "top_p" }, { "top_k", "top_k" },
    { "min_p", "min_p" }, { "presence_penalty", "presence" },
    { "frequency_penalty", "frequency" }, { "max_tokens", "max_tokens" },
    { "max_completion_tokens", "max_tokens" }, { "seed", "seed" },
};

static int read_sampling(const struct api_config *a, json_object *root, struct job *j,
                         struct api_error *e)
{
    size_t i;
    int max_given = 0;
    char why[256];

    j->settings = a->defaults;
    for (i = 0; i < sizeof sampling_fields / sizeof sampling_fields[0]; i++) {
        const struct knob *k = knob_find(sampling_fields[i].knob);
        const char *f = sampling_fields[i].field;
        json_object *v;
        int rc;

        if (!json_object_object_get_ex(root, f, &v) || json_object_is_type(v, json_type_null)) {
            continue;
        }
        if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double)) {
            return api_fail(e, 400, "invalid_request_error", "invalid_type", f,
                            "%s must be a number", f);
        }
        if (k->type == KNOB_SEED) {
            char text[32];

            if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0) {
                return api_fail(e, 400, "invalid_request_error", "invalid_value", f,
                                "%s must be a whole number >= 0", f);
            }
            snprintf(text, sizeof text, "%lld", (long long)json_object_get_int64(v));
            rc = knob_parse(k, &j->settings, text, why, sizeof why);
            j->seed_given = 1;
        } else {
            rc = knob_set(k, &j->settings, json_object_get_double(v), why, sizeof why);
        }
        if (rc < 0) {
            return api_fail(e, 400, "invalid_request_error", "invalid_value", f, "%s: %s", f,
                            why);
        }
        if (k == knob_find("max_tokens")) {
            max_given = 1;
        }
    }
    if (!max_given) {
        if (j->settings.max_tokens <= 0 || j->settings.max_tokens > a->max_tokens_cap) {
            j->settings.max_tokens = a->max_tokens_cap;
        }
    } else if (j->settings.max_tokens < 1 || j->settings.max_tokens > a->max_tokens_cap) {
        return api_fail(e, 400, "invalid_request_error", "invalid_value", "max_tokens",
                        "max_tokens must be from 1 to %d (the server's --max-tokens-cap)",
                        a->max_tokens_cap);
    }
    return 0;
}

static int read_stops(json_object *root, struct job *j, struct api_error *e)
{
    json_object *v, *item;
    size_t i, n;

    if (!json_object_object_get_ex(root, "stop", &v) || json_object_is_type(v, json_type_null)) {
        return 0;
    }
    n = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 1;
    if ((!json_object_is_type(v, json_type_array) && !json_object_is_type(v, json_type_string)) ||
        n > SERVE_STOPS_MAX) {
        return api_fail(e, 400, "invalid_request_error", NULL, "stop",
                        "stop must be a string or an array of at most %d strings",
                        SERVE_STOPS_MAX);
    }
    for (i = 0; i < n; i++) {
        const char *s;

        item = json_object_is_type(v, json_type_array) ? json_object_array_get_idx(v, i) : v;
        if (!json_object_is_type(item, json_type_string)) {
            return api_fail(e, 400, "invalid_request_error", NULL, "stop",
                            "stop must hold strings");
        }
        s = json_object_get_string(item);
        if (!s[0] || strlen(s) > SERVE_STOP_BYTES) {
            return api_fail(e, 400, "invalid_request_error", NULL, "stop",
                            "a stop string must have 1 to %d bytes", SERVE_STOP_BYTES);
        }
        if (!(j->stops[j->n_stops] = strdup(s))) {
            return api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        }
        j->n_stops++;
    }
    return 0;
}

/* "state_from" / "state_save": a valid id into out ("" when absent). */
static int read_id(json_object *root, const char *field, char *out, struct api_error *e)
{
    json_object *v;

    out[0] = '\0';
    if (!json_object_object_get_ex(root, field, &v) || json_object_is_type(v, json_type_null)) {
        return 0;
    }
    if (!json_object_is_type(v, json_type_string) || !api_valid_id(json_object_get_string(v))) {
        return api_fail(e, 400, "invalid_request_error", NULL, field,
                        "%s must be 1 to %d of A-Z a-z 0-9 _ . -", field, SERVE_ID_MAX);
    }
    snprintf(out, SERVE_ID_MAX + 1, "%s", json_object_get_string(v));
    return 0;
}

static int read_bool(json_object *obj, const char *field, int *out, struct api_error *e)
{
    json_object *v;

    if (!obj || !json_object_object_get_ex(obj, field, &v) ||
        json_object_is_type(v, json_type_null)) {
        return 0;
    }
    if (!json_object_is_type(v, json_type_boolean)) {
        return api_fail(e, 400, "invalid_request_error", "invalid_type", field,
                        "%s must be true or false", field);
    }
    *out = json_object_get_boolean(v);
    return 0;
}

int api_parse(const struct api_config *a, enum job_kind kind, const char *body, size_t len,
              struct job *j, int *stream, int *include_usage, struct api_error *e)
{
    enum json_tokener_error jerr = json_tokener_success;
    json_tokener *tk = json_tokener_new();
    json_object *root = NULL, *v, *opts = NULL;
    struct pieces p = { 0 };
    int sep = 0, rc = -1;

    *stream = 0;
    *include_usage = 0;
    j->kind = kind;
    if (!tk) {
        return api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (len > 0) {
        root = json_tokener_parse_ex(tk, body, (int)len);
        jerr = json_tokener_get_error(tk);
    }
    json_tokener_free(tk);
    if (!root || jerr != json_tokener_success || !json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        return api_fail(e, 400, "invalid_request_error", NULL, NULL,
                        "the body must be a JSON object%s%s", jerr != json_tokener_success ? ": " : "",
                        jerr != json_tokener_success ? json_tokener_error_desc(jerr) : "");
    }
    if (json_object_object_get_ex(root, "n", &v) && !json_object_is_type(v, json_type_null) &&
        (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) != 1)) {
        api_fail(e, 400, "invalid_request_error", NULL, "n", "only n = 1 is supported");
        goto out;
    }
    json_object_object_get_ex(root, "stream_options", &opts);
    if (read_bool(root, "stream", stream, e) < 0 ||
        read_bool(opts, "include_usage", include_usage, e) < 0 ||
        read_sampling(a, root, j, e) < 0 || read_stops(root, j, e) < 0 ||
        read_id(root, "state_from", j->from_id, e) < 0 ||
        read_id(root, "state_save", j->save_id, e) < 0) {
        goto out;
    }
    if (!j->from_id[0] && a->start == API_START_CONVERSATION) {
        sep = a->start_sep;
    }
    if (j->from_id[0] && a->s && sched_state_get(a->s, j->from_id, NULL, &sep, NULL, NULL) < 0) {
        api_fail(e, 404, "invalid_request_error", "state_not_found", "state_from",
                 "no state named '%s'", j->from_id);
        goto out;
    }
    if (kind == JOB_CHAT) {
        if (!json_object_object_get_ex(root, "messages", &v) ||
            !json_object_is_type(v, json_type_array)) {
            api_fail(e, 400, "invalid_request_error", NULL, "messages",
                     "messages must be an array of messages");
            goto out;
        }
        if (render_chat(a, v, sep, j->from_id[0] != 0, &p, j, e) < 0) {
            goto out;
        }
    } else {
        const char *prompt = NULL;

        if (json_object_object_get_ex(root, "prompt", &v)) {
            if (json_object_is_type(v, json_type_array) && json_object_array_length(v) == 1) {
                v = json_object_array_get_idx(v, 0);
            }
            if (json_object_is_type(v, json_type_string)) {
                prompt = json_object_get_string(v);
            }
        }
        if (!prompt || !prompt[0]) {
            api_fail(e, 400, "invalid_request_error", NULL, "prompt",
                     "prompt must be a non-empty string");
            goto out;
        }
        if (piece_add(a, &p, prompt, strlen(prompt)) < 0) {
            api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
            goto out;
        }
    }
    j->tokens = p.tokens;
    j->n_tokens = p.n;
    j->piece_end = p.end;
    j->n_pieces = p.n_end;
    j->prompt_tokens = p.n;
    p.tokens = NULL;
    p.end = NULL;
    rc = 0;
out:
    free(p.tokens);
    free(p.end);
    json_object_put(root);
    return rc;
}

/* --- responses ----------------------------------------------------------- */

static json_object *usage(const struct job *j)
{
    json_object *u = json_object_new_object(), *d = json_object_new_object();

    json_object_object_add(u, "prompt_tokens", json_object_new_int64((int64_t)j->prompt_tokens));
    json_object_object_add(u, "completion_tokens",
                           json_object_new_int64((int64_t)j->completion_tokens));
    json_object_object_add(u, "total_tokens",
                           json_object_new_int64((int64_t)(j->prompt_tokens +
                                                           j->completion_tokens)));
    json_object_object_add(d, "cached_tokens", json_object_new_int64((int64_t)j->cached_tokens));
    json_object_object_add(u, "prompt_tokens_details", d);
    return u;
}

static json_object *head(const struct api_config *a, const char *id, const char *object,
                         long created)
{
    json_object *r = json_object_new_object();

    json_object_object_add(r, "id", json_object_new_string(id));
    json_object_object_add(r, "object", json_object_new_string(object));
    json_object_object_add(r, "created", json_object_new_int64(created));
    json_object_object_add(r, "model", json_object_new_string(a->model_name));
    return r;
}

char *api_response_json(const struct api_config *a, const struct job *j, const char *id,
                        long created)
{
    json_object *r, *choices = json_object_new_array(), *c = json_object_new_object();

    json_object_object_add(c, "index", json_object_new_int(0));
    if (j->kind == JOB_CHAT) {
        json_object *m = json_object_new_object();

        r = head(a, id, "chat.completion", created);
        json_object_object_add(m, "role", json_object_new_string("assistant"));
        json_object_object_add(m, "content", json_object_new_string_len(j->text ? j->text : "",
                                                                         (int)j->text_len));
        if (j->reasoning_len) {
            json_object_object_add(m, "reasoning_content",
                                   json_object_new_string_len(j->reasoning,
                                                              (int)j->reasoning_len));
        }
        json_object_object_add(c, "message", m);
    } else {
        r = head(a, id, "text_completion", created);
        json_object_object_add(c, "text", json_object_new_string_len(j->text ? j->text : "",
                                                                      (int)j->text_len));
        json_object_object_add(c, "logprobs", NULL);
    }
    json_object_object_add(c, "finish_reason",
                           json_object_new_string(j->finish ? j->finish : "stop"));
    json_object_array_add(choices, c);
    json_object_object_add(r, "choices", choices);
    json_object_object_add(r, "usage", usage(j));
    return to_text(r);
}

char *api_chunk_json(const struct api_config *a, enum job_kind kind, const char *id,
                     long created, int role, const char *text, size_t n, int reasoning,
                     const char *finish)
{
    json_object *r, *choices = json_object_new_array(), *c = json_object_new_object();

    json_object_object_add(c, "index", json_object_new_int(0));
    if (kind == JOB_CHAT) {
        json_object *d = json_object_new_object();

        r = head(a, id, "chat.completion.chunk", created);
        if (role) {
            json_object_object_add(d, "role", json_object_new_string("assistant"));
        }
        if (n || role) {
            json_object_object_add(d, reasoning ? "reasoning_content" : "content",
                                   json_object_new_string_len(text, (int)n));
        }
        json_object_object_add(c, "delta", d);
    } else {
        r = head(a, id, "text_completion", created);
        json_object_object_add(c, "text", json_object_new_string_len(text, (int)n));
        json_object_object_add(c, "logprobs", NULL);
    }
    json_object_object_add(c, "finish_reason", finish ? json_object_new_string(finish) : NULL);
    json_object_array_add(choices, c);
    json_object_object_add(r, "choices", choices);
    return to_text(r);
}

char *api_usage_json(const struct api_config *a, const struct job *j, const char *id,
                     long created)
{
    json_object *r = head(a, id, j->kind == JOB_CHAT ? "chat.completion.chunk"
                                                    : "text_completion", created);

    json_object_object_add(r, "choices", json_object_new_array());
    json_object_object_add(r, "usage", usage(j));
    return to_text(r);
}

char *api_models_json(const struct api_config *a, long created)
{
    json_object *r = json_object_new_object(), *data = json_object_new_array(),
                *m = json_object_new_object();

    json_object_object_add(m, "id", json_object_new_string(a->model_name));
    json_object_object_add(m, "object", json_object_new_string("model"));
    json_object_object_add(m, "created", json_object_new_int64(created));
    json_object_object_add(m, "owned_by", json_object_new_string("rwkv-chat"));
    json_object_array_add(data, m);
    json_object_object_add(r, "object", json_object_new_string("list"));
    json_object_object_add(r, "data", data);
    return to_text(r);
}
