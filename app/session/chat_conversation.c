/*
 * chat_conversation.c - a conversation with an RWKV model: creating it, sending a
 * message (reading its prompt), undo/regen/edit, snapshots, template,
 * system turn and thinking mode.  The reply itself streams in
 * chat_stream.c, the state-file sections are chat_sections.c, and the
 * pieces every chat file uses (clock, buffers, shared states, the
 * transcript) are chat_base.c.
 *
 * What the model sees is exactly what ChatRWKV's API_DEMO_CHAT.py feeds:
 * the template's intro once, then per message "User: MSG\n\nAssistant:"
 * (sequence mode, in pieces of CHAT_PROMPT_CHUNK tokens so that a long
 * prompt can be stopped), then the reply's tokens one by one as they are
 * sampled, including the token that completes "\n\n".  The state after
 * each step is kept, so a message costs only its own tokens.
 *
 * Undo and regenerate never re-feed: every exchange keeps the state before
 * its message and the state (and logits) right after its prompt.  States
 * are shared by reference between the exchange stack and snapshots.
 */
#include "app/session/chat_internal.h"
#include "engine/base/escape.h"
#include "engine/sampling/knobs.h"
#include "engine/load/statefile.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --- templates ---------------------------------------------------------- */

int template_copy(struct chat_template *dst, const struct chat_template *src)
{
    dst->name = strdup(src->name ? src->name : "custom");
    dst->intro = strdup(src->intro ? src->intro : "");
    dst->user = strdup(src->user ? src->user : "User");
    dst->assistant = strdup(src->assistant ? src->assistant : "Assistant");
    dst->system = strdup(src->system ? src->system : "System");
    dst->thinking = src->thinking;
    if (!dst->name || !dst->intro || !dst->user || !dst->assistant || !dst->system) {
        chat_template_free(dst);
        return -1;
    }
    return 0;
}

/* --- feeding ------------------------------------------------------------ */

/* The engine's cancel callback while a prompt is read: the stop poll. */
static int feed_cancel(void *data)
{
    chat *c = data;

    return c->stop_poll(c->stop_ctx);
}

/* Feeds text (tokenised as one piece) into state in pieces of
 * CHAT_PROMPT_CHUNK tokens; the logits after the last token go to logits
 * (may be NULL).  *n_tokens receives the count.  With stoppable set the
 * progress callback is asked before each piece of a longer text, and the
 * stop poll between the engine's layers.  0, -1 with err, or
 * CHAT_INTERRUPTED with state part-fed (the caller restores it). */
static int feed(chat *c, rwkv_state *state, const char *text, size_t len, float *logits,
                int stoppable, size_t *n_tokens, char *err, size_t errlen)
{
    int32_t *ids = NULL;
    size_t n = 0, done, k;
    int rc = 0;

    *n_tokens = 0;
    if (len == 0) {
        return 0;
    }
    if (tokenizer_encode(c->tok, (const uint8_t *)text, len, &ids, &n) < 0) {
        oom(err, errlen);
        return -1;
    }
    if (stoppable && c->stop_poll) {
        rwkv_context_set_cancel(c->ctx, feed_cancel, c);
    }
    for (done = 0; done < n && rc == 0; done += k) {
        k = n - done < CHAT_PROMPT_CHUNK ? n - done : CHAT_PROMPT_CHUNK;
        if (stoppable && c->progress && n > CHAT_PROMPT_CHUNK &&
            c->progress(c->progress_ctx, done, n)) {
            snprintf(err, errlen, "interrupted after %zu of %zu prompt tokens", done, n);
            rc = CHAT_INTERRUPTED;
            break;
        }
        rc = rwkv_eval(c->ctx, state, ids + done, k, done + k == n ? logits : NULL, 0, err,
                       errlen);
        if (rc == RWKV_CANCELLED) {
            snprintf(err, errlen, "interrupted after %zu of %zu prompt tokens", done, n);
            rc = CHAT_INTERRUPTED;
            break;
        }
    }
    rwkv_context_set_cancel(c->ctx, NULL, NULL);
    free(ids);
    if (rc == 0) {
        *n_tokens = n;
    }
    return rc;
}

/* Builds the base state: the tuned state (NULL: none), or the zero state
 * plus the template's intro (a long intro may be stopped by the progress
 * callback: NULL, err "interrupted ..."); then the system turn (system
 * NULL: none). */
struct shared *make_base(chat *c, const struct chat_template *t, const struct shared *tuned,
                                const char *system, size_t *n_tokens, char *err, size_t errlen)
{
    rwkv_state *st = tuned ? rwkv_state_clone(tuned->state) : rwkv_state_new(c->model);
    struct shared *s;
    size_t n = 0;

    *n_tokens = 0;
    if (!st) {
        oom(err, errlen);
        return NULL;
    }
    if (!tuned && feed(c, st, t->intro, strlen(t->intro), NULL, 1, n_tokens, err, errlen) < 0) {
        rwkv_state_free(st);
        return NULL;
    }
    if (system) {
        const char *name = t->system ? t->system : "System";
        char *turn = malloc(strlen(name) + strlen(system) + 8);
        int rc;

        if (!turn) {
            rwkv_state_free(st);
            oom(err, errlen);
            return NULL;
        }
        rc = feed(c, st, turn, (size_t)sprintf(turn, "%s: %s\n\n", name, system), NULL, 1, &n,
                  err, errlen);
        free(turn);
        if (rc < 0) {
            rwkv_state_free(st);
            return NULL;
        }
        *n_tokens += n;
    }
    s = calloc(1, sizeof *s);
    if (!s) {
        rwkv_state_free(st);
        oom(err, errlen);
        return NULL;
    }
    s->refs = 1;
    s->state = st;
    return s;
}

/* --- exchanges ---------------------------------------------------------- */

static void exchange_release(struct exchange *e)
{
    unref(e->before);
    unref(e->prompted);
}

void exchanges_clear(chat *c)
{
    while (c->n_ex > 0) {
        exchange_release(&c->ex[--c->n_ex]);
    }
}

/* Copies an exchange stack, taking references. */
static struct exchange *exchanges_copy(const struct exchange *src, size_t n)
{
    struct exchange *e = malloc((n ? n : 1) * sizeof *e);
    size_t i;

    if (!e) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        e[i] = src[i];
        shared_ref(e[i].before);
        shared_ref(e[i].prompted);
    }
    return e;
}

/* --- lifetime ----------------------------------------------------------- */

/* ChatRWKV counts tokens that decode to a piece of " \t0123456789" with
 * weight 0 (pip utils.py PIPELINE.generate); ids the tokenizer cannot
 * decode are banned. */
static void configure_vocab(chat *c)
{
    static const char digits[] = " \t0123456789";
    int32_t id, n_tok = tokenizer_vocab_size(c->tok);

    for (id = 1; id < c->n_vocab; id++) {
        size_t len = 0;
        const uint8_t *b = id < n_tok ? tokenizer_token(c->tok, id, &len) : NULL;

        if (!b || len == 0) {
            sampler_ban(c->smp, id, 1);
        } else if (len < sizeof digits && memmem(digits, sizeof digits - 1, b, len)) {
            sampler_set_count_weight(c->smp, id, 0.0f);
        }
    }
}

chat *chat_new(rwkv_model *model, const tokenizer *tok, const struct chat_template *t,
               const struct sampler_settings *s, char *err, size_t errlen)
{
    const struct rwkv_info *info = rwkv_model_info(model);
    struct chat_template bare = { "bare", "", "User", "Assistant", "System", 0 };
    size_t state_bytes;
    chat *c = calloc(1, sizeof *c);

    if (!c) {
        oom(err, errlen);
        return NULL;
    }
    c->model = model;
    c->ctx = rwkv_context_new(model, 0, err, errlen);
    if (!c->ctx) {
        free(c);
        return NULL;
    }
    c->tok = tok;
    c->n_vocab = info->n_vocab;
    if (s) {
        c->settings = *s;
    } else {
        sampler_defaults(&c->settings);
    }
    c->seeded = c->settings.seed;
    c->smp = sampler_new(c->n_vocab, &c->settings);
    c->state = rwkv_state_new(model);
    c->logits = malloc((size_t)c->n_vocab * sizeof(float));
    if (!c->smp || !c->state || !c->logits || template_copy(&c->tmpl, t ? t : &bare) < 0) {
        oom(err, errlen);
        chat_free(c);
        return NULL;
    }
    configure_vocab(c);
    c->base = make_base(c, &c->tmpl, NULL, NULL, &c->base_tokens, err, errlen);
    if (!c->base) {
        chat_free(c);
        return NULL;
    }
    state_bytes = 2 * info->state_floats * sizeof(float) + (size_t)c->n_vocab * sizeof(float);
    c->undo_limit = UNDO_BUDGET / (state_bytes ? state_bytes : 1);
    c->undo_limit = c->undo_limit < UNDO_MIN ? UNDO_MIN
                  : c->undo_limit > UNDO_MAX ? UNDO_MAX : c->undo_limit;
    chat_reset(c);
    return c;
}

void snapshot_release(struct snapshot *s)
{
    size_t i;

    free(s->name);
    unref(s->state);
    unref(s->base);
    unref(s->tuned);
    free(s->tuned_name);
    free(s->system);
    transcript_free(&s->tr);
    free(s->smp_state);
    chat_template_free(&s->tmpl);
    for (i = 0; i < s->n_ex; i++) {
        exchange_release(&s->ex[i]);
    }
    free(s->ex);
}

void chat_free(chat *c)
{
    size_t i;

    if (!c) {
        return;
    }
    rwkv_context_free(c->ctx);
    exchanges_clear(c);
    free(c->ex);
    for (i = 0; i < c->n_snaps; i++) {
        snapshot_release(&c->snaps[i]);
    }
    free(c->snaps);
    transcript_free(&c->tr);
    chat_template_free(&c->tmpl);
    sampler_free(c->smp);
    rwkv_state_free(c->state);
    unref(c->tuned);
    free(c->tuned_name);
    free(c->system);
    free(c->model_path);
    unref(c->base);
    free(c->logits);
    free(c->reply);
    free(c->shown);
    free(c->out);
    free(c->current);
    free(c);
}

/* --- small accessors ---------------------------------------------------- */

const char *chat_stop_name(enum chat_stop stop)
{
    switch (stop) {
    case CHAT_STOP_NONE:
        return "none";
    case CHAT_STOP_END:
        return "end";
    case CHAT_STOP_LENGTH:
        return "length";
    case CHAT_STOP_INTERRUPT:
        return "interrupt";
    case CHAT_STOP_EOS:
        return "eos";
    }
    return "?";
}

struct sampler_settings *chat_settings(chat *c)
{
    return &c->settings;
}

int chat_ban(chat *c, int32_t id, int banned, char *err, size_t errlen)
{
    if (id < 0 || id >= c->n_vocab) {
        snprintf(err, errlen, "token %ld is outside the vocabulary (0..%d)", (long)id,
                 c->n_vocab - 1);
        return -1;
    }
    sampler_ban(c->smp, id, banned);
    return 0;
}

const struct chat_template *chat_get_template(const chat *c)
{
    return &c->tmpl;
}

size_t chat_turn_count(const chat *c)
{
    return c->tr.n;
}

const struct chat_turn *chat_turn_at(const chat *c, size_t i)
{
    return i < c->tr.n ? &c->tr.turns[i] : NULL;
}

const struct chat_stats *chat_get_stats(const chat *c)
{
    return &c->stats;
}

int chat_generating(const chat *c)
{
    return c->generating;
}

const float *chat_logits(const chat *c)
{
    return c->logits;
}

const rwkv_state *chat_state(const chat *c)
{
    return c->state;
}

void set_current(chat *c, const char *name)
{
    free(c->current);
    c->current = name ? strdup(name) : NULL;
}

/* --- normalisation ------------------------------------------------------ */

char *chat_normalize(const char *text)
{
    size_t len = strlen(text), i, o = 0, start = 0, end = len;
    char *out = malloc(len + 1);

    if (!out) {
        return NULL;
    }
    while (start < end && chat_is_space(text[start])) {
        start++;
    }
    while (end > start && chat_is_space(text[end - 1])) {
        end--;
    }
    for (i = start; i < end; i++) {
        char ch = text[i];

        if (ch == '\r' && i + 1 < end && text[i + 1] == '\n') {
            continue;           /* CRLF -> LF, as run_rnn does */
        }
        if (ch == '\n' && o > 0 && out[o - 1] == '\n') {
            continue;           /* runs of newlines -> one */
        }
        out[o++] = ch;
    }
    out[o] = '\0';
    return out;
}

/* Records a new exchange and feeds its prompt. */
static int start_exchange(chat *c, const char *turn_text, size_t turn_len, const char *fed,
                          size_t fed_len, int raw, const char *prefix, char *err, size_t errlen)
{
    struct exchange e;
    double t0;
    size_t n = 0;
    int rc;

    c->cut = 0;                     /* the prompt changes the state and logits */
    memset(&e, 0, sizeof e);
    e.before = shared_new(c->state, NULL, c->n_vocab);
    if (!e.before) {
        oom(err, errlen);
        return -1;
    }
    e.n_turns = c->tr.n;
    e.context_tokens = c->stats.context_tokens;
    e.sep = c->sep;
    e.raw = raw;
    e.prefix = prefix;
    t0 = chat_now();
    rc = feed(c, c->state, fed, fed_len, c->logits, 1, &n, err, errlen);
    if (rc < 0 || n == 0) {
        if (n == 0 && !err[0]) {
            snprintf(err, errlen, "nothing to feed");
        }
        /* An interrupted prompt leaves nothing behind: the state before it. */
        rwkv_state_copy(c->state, e.before->state);
        unref(e.before);
        return rc == CHAT_INTERRUPTED ? CHAT_INTERRUPTED : -1;
    }
    e.prompt_tokens = n;
    e.prompt_seconds = chat_now() - t0;
    e.prompted = shared_new(c->state, c->logits, c->n_vocab);
    if (!e.prompted || transcript_add(&c->tr, CHAT_USER, turn_text, turn_len) < 0) {
        rwkv_state_copy(c->state, e.before->state);
        exchange_release(&e);
        oom(err, errlen);
        return -1;
    }
    if (c->n_ex == c->cap_ex) {
        size_t nc = c->cap_ex ? c->cap_ex * 2 : 16;
        struct exchange *ne = realloc(c->ex, nc * sizeof *ne);

        if (!ne) {
            transcript_truncate(&c->tr, e.n_turns);
            rwkv_state_copy(c->state, e.before->state);
            exchange_release(&e);
            oom(err, errlen);
            return -1;
        }
        c->ex = ne;
        c->cap_ex = nc;
    }
    if (c->n_ex >= c->undo_limit) {
        /* Oldest exchange falls off the undo stack. */
        exchange_release(&c->ex[0]);
        memmove(c->ex, c->ex + 1, (c->n_ex - 1) * sizeof *c->ex);
        c->n_ex--;
    }
    c->ex[c->n_ex++] = e;
    c->sep = 0;
    c->stats.prompt_tokens = n;
    c->stats.prompt_seconds = e.prompt_seconds;
    c->stats.context_tokens += n;
    set_current(c, NULL);
    chat_begin_reply(c, raw, prefix);
    return 0;
}

int chat_send(chat *c, const char *user_text, char *err, size_t errlen)
{
    const char *suffix = "", *prefix = "";
    char *msg, *fed;
    size_t ml, fl;
    int rc;

    settle(c);
    err[0] = '\0';
    msg = chat_normalize(user_text);
    if (!msg) {
        oom(err, errlen);
        return -1;
    }
    ml = strlen(msg);
    if (ml == 0) {
        free(msg);
        snprintf(err, errlen, "empty message");
        return -1;
    }
    /* A thinking template's mode: a suffix to the message (the effort newer
     * G1 files read) and what follows "Assistant:". */
    if (c->tmpl.thinking) {
        switch (c->think) {
        case CHAT_THINK_AUTO:
            break;
        case CHAT_THINK_OFF:
            prefix = " <think>\n</think";
            break;
        case CHAT_THINK_ON:
            prefix = " <think";
            break;
        case CHAT_THINK_A_BIT:
            suffix = " (think a bit)";
            prefix = " <think";
            break;
        case CHAT_THINK_A_LOT:
            suffix = " (think a lot)";
            prefix = " <think";
            break;
        }
    }
    fed = malloc(ml + strlen(c->tmpl.user) + strlen(c->tmpl.assistant) + strlen(suffix) +
                 strlen(prefix) + 16);
    if (!fed) {
        free(msg);
        oom(err, errlen);
        return -1;
    }
    /* "\n\n" first if the last reply did not end its turn. */
    fl = (size_t)sprintf(fed, "%s%s: %s%s\n\n%s:%s",
                         c->sep == 2 ? "\n\n" : c->sep == 1 ? "\n" : "", c->tmpl.user, msg,
                         suffix, c->tmpl.assistant, prefix);
    rc = start_exchange(c, msg, ml, fed, fl, 0, *prefix ? prefix : NULL, err, errlen);
    free(fed);
    free(msg);
    return rc;
}

int chat_send_raw(chat *c, const char *prompt, size_t len, char *err, size_t errlen)
{
    settle(c);
    err[0] = '\0';
    if (len == 0) {
        snprintf(err, errlen, "empty prompt");
        return -1;
    }
    return start_exchange(c, prompt, len, prompt, len, 1, NULL, err, errlen);
}

int chat_begin_at(chat *c, const rwkv_state *state, const float *logits, int raw,
                  const char *prefix, char *err, size_t errlen)
{
    settle(c);
    err[0] = '\0';
    if (rwkv_state_floats(state) != rwkv_state_floats(c->state)) {
        snprintf(err, errlen, "a state of another model");
        return -1;
    }
    if (rwkv_state_copy(c->state, state) != 0) {
        snprintf(err, errlen, "out of memory for the state's history");
        return -1;
    }
    memcpy(c->logits, logits, (size_t)c->n_vocab * sizeof(float));
    transcript_truncate(&c->tr, 0);
    exchanges_clear(c);
    set_current(c, NULL);
    c->sep = 0;
    c->stats.prompt_tokens = 0;
    chat_begin_reply(c, raw, prefix && *prefix ? prefix : NULL);
    return 0;
}

void chat_set_progress(chat *c, chat_progress_fn fn, void *ctx)
{
    c->progress = fn;
    c->progress_ctx = ctx;
}

void chat_set_stop_poll(chat *c, chat_stop_fn fn, void *ctx)
{
    c->stop_poll = fn;
    c->stop_ctx = ctx;
}

/* --- conversation operations -------------------------------------------- */

void chat_reset(chat *c)
{
    rwkv_state *fresh = NULL;

    settle(c);
    c->cut = 0;
    /* A new state gives a long RWKV-7b history's memory back.  Without the
     * memory for one the copy reuses the old state's arrays: they hold the
     * base already (the state went on from it), so it cannot fail. */
    if (rwkv_state_history(c->state) > rwkv_state_history(c->base->state)) {
        fresh = rwkv_state_clone(c->base->state);
    }
    if (fresh) {
        rwkv_state_free(c->state);
        c->state = fresh;
    } else {
        (void)rwkv_state_copy(c->state, c->base->state);
    }
    transcript_truncate(&c->tr, 0);
    exchanges_clear(c);
    memset(&c->stats, 0, sizeof c->stats);
    c->stats.context_tokens = c->base_tokens;
    c->sep = 0;
    sampler_reset_counts(c->smp);
    set_current(c, NULL);
}

int chat_set_template(chat *c, const struct chat_template *t, char *err, size_t errlen)
{
    struct chat_template copy;
    struct shared *base;
    size_t n;

    settle(c);
    if (template_copy(&copy, t) < 0) {
        oom(err, errlen);
        return -1;
    }
    base = make_base(c, &copy, c->tuned, c->system, &n, err, errlen);
    if (!base) {
        chat_template_free(&copy);
        return -1;
    }
    chat_template_free(&c->tmpl);
    c->tmpl = copy;
    unref(c->base);
    c->base = base;
    c->base_tokens = n;
    chat_reset(c);
    return 0;
}

int chat_set_system(chat *c, const char *text, char *err, size_t errlen)
{
    char *sys = NULL;
    struct shared *base;
    size_t n;

    settle(c);
    if (text && !(sys = chat_normalize(text))) {
        oom(err, errlen);
        return -1;
    }
    if (sys && !*sys) {
        free(sys);
        sys = NULL;
    }
    base = make_base(c, &c->tmpl, c->tuned, sys, &n, err, errlen);
    if (!base) {
        free(sys);
        return -1;
    }
    free(c->system);
    c->system = sys;
    unref(c->base);
    c->base = base;
    c->base_tokens = n;
    chat_reset(c);
    return 0;
}

const char *chat_get_system(const chat *c)
{
    return c->system;
}

void chat_set_think(chat *c, enum chat_think mode)
{
    c->think = mode;
}

enum chat_think chat_get_think(const chat *c)
{
    return c->think;
}

static const char *const think_names[] = { "auto", "off", "on", "a-bit", "a-lot" };

const char *chat_think_name(enum chat_think mode)
{
    return (unsigned)mode < sizeof think_names / sizeof think_names[0] ? think_names[mode] : "?";
}

int chat_think_parse(const char *name, enum chat_think *mode)
{
    size_t i;

    for (i = 0; i < sizeof think_names / sizeof think_names[0]; i++) {
        const char *a = think_names[i];
        size_t k;

        for (k = 0; a[k] && (name[k] == a[k] || (a[k] == '-' && name[k] == '_')); k++) {
        }
        if (!a[k] && !name[k]) {
            *mode = (enum chat_think)i;
            return 0;
        }
    }
    return -1;
}

/* Takes the last exchange off into *e: state, context count and separator
 * as they were before it.  The caller releases *e (or puts it back) and
 * deals with the transcript's turns from e->n_turns on. */
static void pop_exchange(chat *c, struct exchange *e)
{
    *e = c->ex[--c->n_ex];
    c->cut = 0;
    rwkv_state_copy(c->state, e->before->state);
    c->stats.context_tokens = e->context_tokens;
    c->sep = e->sep;
    set_current(c, NULL);
}

int chat_undo(chat *c, char *err, size_t errlen)
{
    struct exchange e;

    settle(c);
    if (c->n_ex == 0) {
        snprintf(err, errlen, c->tr.n ? "nothing more to undo (older exchanges are not kept)"
                                      : "nothing to undo");
        return -1;
    }
    pop_exchange(c, &e);
    transcript_truncate(&c->tr, e.n_turns);
    exchange_release(&e);
    return 0;
}

int chat_regen(chat *c, char *err, size_t errlen)
{
    struct exchange *e;

    settle(c);
    if (c->n_ex == 0) {
        snprintf(err, errlen, "no reply to regenerate");
        return -1;
    }
    e = &c->ex[c->n_ex - 1];
    rwkv_state_copy(c->state, e->prompted->state);
    memcpy(c->logits, e->prompted->logits, (size_t)c->n_vocab * sizeof(float));
    transcript_truncate(&c->tr, e->n_turns + 1);
    c->stats.context_tokens = e->context_tokens + e->prompt_tokens;
    c->stats.prompt_tokens = 0;
    c->stats.prompt_seconds = 0;
    c->sep = 0;
    set_current(c, NULL);
    chat_begin_reply(c, e->raw, e->prefix);
    return 0;
}

char *chat_edit_last(chat *c, char *err, size_t errlen)
{
    char *text;

    settle(c);
    if (c->n_ex == 0) {
        snprintf(err, errlen, "no message to edit");
        return NULL;
    }
    text = strdup(c->tr.turns[c->ex[c->n_ex - 1].n_turns].text);
    if (!text) {
        oom(err, errlen);
        return NULL;
    }
    if (chat_undo(c, err, errlen) < 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* Replaces the last exchange's message with user_text and starts its
 * reply; on any failure the last exchange, transcript, state and counts are
 * put back as they were. */
int chat_edit_send(chat *c, const char *user_text, char *err, size_t errlen)
{
    struct exchange e;
    struct shared *after;
    struct chat_turn *tail;
    struct chat_stats stats;
    char *current = NULL;
    size_t n_tail, i;
    int sep, rc;

    settle(c);
    err[0] = '\0';
    if (c->n_ex == 0) {
        snprintf(err, errlen, "no message to edit");
        return -1;
    }
    n_tail = c->tr.n - c->ex[c->n_ex - 1].n_turns;
    after = shared_new(c->state, NULL, c->n_vocab);
    tail = malloc((n_tail ? n_tail : 1) * sizeof *tail);
    if (!after || !tail || (c->current && !(current = strdup(c->current)))) {
        unref(after);
        free(tail);
        free(current);
        oom(err, errlen);
        return -1;
    }
    stats = c->stats;
    sep = c->sep;
    /* chat_undo, keeping what it would free. */
    pop_exchange(c, &e);
    memcpy(tail, c->tr.turns + e.n_turns, n_tail * sizeof *tail);
    c->tr.n = e.n_turns;
    rc = chat_send(c, user_text, err, errlen);
    if (rc < 0) {
        /* chat_send failed before recording anything: the slots are free. */
        c->ex[c->n_ex++] = e;
        memcpy(c->tr.turns + c->tr.n, tail, n_tail * sizeof *tail);
        c->tr.n += n_tail;
        rwkv_state_copy(c->state, after->state);
        c->stats = stats;
        c->sep = sep;
        free(c->current);
        c->current = current;
    } else {
        exchange_release(&e);
        for (i = 0; i < n_tail; i++) {
            free(tail[i].text);
            free(tail[i].reasoning);
        }
        free(current);
    }
    unref(after);
    free(tail);
    return rc;
}

/* --- snapshots ---------------------------------------------------------- */

static struct snapshot *find_snapshot(const chat *c, const char *name)
{
    size_t i;

    for (i = 0; i < c->n_snaps; i++) {
        if (!strcmp(c->snaps[i].name, name)) {
            return &c->snaps[i];
        }
    }
    return NULL;
}

/* The memory a snapshot holds of its own: the state, the sampler's state,
 * the transcript and template copies (the undo history it points to is
 * shared with the chat). */
size_t snapshot_bytes(const struct snapshot *s)
{
    size_t n = sizeof *s + strlen(s->name) + rwkv_state_bytes(s->state->state) +
               s->smp_len + s->n_ex * sizeof *s->ex, i;

    for (i = 0; i < s->tr.n; i++) {
        n += sizeof s->tr.turns[i] + strlen(s->tr.turns[i].text) + 1;
    }
    n += strlen(s->tmpl.name) + strlen(s->tmpl.intro) + strlen(s->tmpl.user) +
         strlen(s->tmpl.assistant) + 4;
    return n;
}

int chat_snapshot_take(chat *c, const char *name, char *err, size_t errlen)
{
    struct snapshot s, *old;

    if (!name || !*name) {
        snprintf(err, errlen, "a snapshot needs a name");
        return -1;
    }
    if (c->generating) {
        snprintf(err, errlen, "a reply is being generated: stop it before taking a snapshot");
        return -1;
    }
    memset(&s, 0, sizeof s);
    s.name = strdup(name);
    s.state = shared_new(c->state, NULL, c->n_vocab);
    s.base = shared_ref(c->base);
    s.tuned = shared_ref(c->tuned);
    s.tuned_name = c->tuned_name ? strdup(c->tuned_name) : NULL;
    s.smp_state = malloc(sampler_state_size(c->smp));
    s.smp_len = s.smp_state ? sampler_state_save(c->smp, s.smp_state) : 0;
    s.system = c->system ? strdup(c->system) : NULL;
    s.think = c->think;
    s.ex = exchanges_copy(c->ex, c->n_ex);
    s.n_ex = s.ex ? c->n_ex : 0;
    s.settings = c->settings;
    s.seeded = c->seeded;
    s.stats = c->stats;
    s.sep = c->sep;
    s.taken = time(NULL);
    if (!s.name || !s.state || !s.smp_state || !s.ex || (c->tuned_name && !s.tuned_name) ||
        (c->system && !s.system) ||
        transcript_copy(&s.tr, &c->tr) < 0 ||
        template_copy(&s.tmpl, &c->tmpl) < 0) {
        snapshot_release(&s);
        oom(err, errlen);
        return -1;
    }
    s.bytes = snapshot_bytes(&s);
    old = find_snapshot(c, name);
    if (!old && c->n_snaps >= CHAT_SNAPSHOTS_MAX) {
        snapshot_release(&s);
        snprintf(err, errlen, "%d snapshots already, the most kept: delete one (/delete NAME) or "
                 "take it again under an existing name", CHAT_SNAPSHOTS_MAX);
        return -1;
    }
    if (c->snap_bytes - (old ? old->bytes : 0) + s.bytes > CHAT_SNAPSHOT_BYTES) {
        snprintf(err, errlen, "snapshots would hold more than %d MiB (this one %.1f MB): delete "
                 "some (/delete NAME)", (int)(CHAT_SNAPSHOT_BYTES >> 20), s.bytes / 1e6);
        snapshot_release(&s);
        return -1;
    }
    c->snap_bytes += s.bytes;
    if (old) {
        c->snap_bytes -= old->bytes;
        snapshot_release(old);
        *old = s;
    } else {
        if (c->n_snaps == c->cap_snaps) {
            /* Doubling: growing by one left a trail of freed arrays that
             * cost more than the snapshots' own bytes. */
            size_t cap = c->cap_snaps ? 2 * c->cap_snaps : 8;
            struct snapshot *ns = realloc(c->snaps, cap * sizeof *ns);

            if (!ns) {
                c->snap_bytes -= s.bytes;
                snapshot_release(&s);
                oom(err, errlen);
                return -1;
            }
            c->snaps = ns;
            c->cap_snaps = cap;
        }
        c->snaps[c->n_snaps++] = s;
    }
    set_current(c, name);
    return 0;
}

int chat_snapshot_restore(chat *c, const char *name, char *err, size_t errlen)
{
    struct snapshot *s = find_snapshot(c, name);
    struct transcript tr;
    struct chat_template tmpl;
    struct exchange *ex;
    sampler *smp;
    char *tuned_name, *system;

    if (!s) {
        snprintf(err, errlen, "no snapshot named '%s'", name);
        return -1;
    }
    settle(c);
    smp = sampler_clone(c->smp);
    if (smp && sampler_state_load(smp, s->smp_state, s->smp_len) < 0) {
        sampler_free(smp);
        smp = NULL;
    }
    if (smp) {
        sampler_configure(smp, &s->settings);
    }
    tuned_name = s->tuned_name ? strdup(s->tuned_name) : NULL;
    system = s->system ? strdup(s->system) : NULL;
    ex = exchanges_copy(s->ex, s->n_ex);
    tr.turns = NULL;
    tr.n = tr.cap = 0;
    tmpl.name = tmpl.intro = tmpl.user = tmpl.assistant = tmpl.system = NULL;
    /* the state last: a snapshot read from a file may hold a longer RWKV-7b
     * history than this chat's state ever did, and a copy that fails leaves
     * the state as it was */
    if (!smp || !ex || (s->tuned_name && !tuned_name) || (s->system && !system) ||
        transcript_copy(&tr, &s->tr) < 0 || template_copy(&tmpl, &s->tmpl) < 0 ||
        rwkv_state_copy(c->state, s->state->state) != 0) {
        size_t i;

        free(tuned_name);
        free(system);
        sampler_free(smp);
        for (i = 0; ex && i < s->n_ex; i++) {
            exchange_release(&ex[i]);
        }
        free(ex);
        transcript_free(&tr);
        chat_template_free(&tmpl);
        oom(err, errlen);
        return -1;
    }
    c->cut = 0;
    transcript_free(&c->tr);
    c->tr = tr;
    chat_template_free(&c->tmpl);
    c->tmpl = tmpl;
    sampler_free(c->smp);
    c->smp = smp;
    exchanges_clear(c);
    free(c->ex);
    c->ex = ex;
    c->n_ex = c->cap_ex = s->n_ex;
    if (c->cap_ex == 0) {
        c->cap_ex = 1;
    }
    unref(c->base);
    c->base = shared_ref(s->base);
    unref(c->tuned);
    c->tuned = shared_ref(s->tuned);
    free(c->tuned_name);
    c->tuned_name = tuned_name;
    free(c->system);
    c->system = system;
    c->think = s->think;
    c->settings = s->settings;
    c->seeded = s->seeded;
    c->stats = s->stats;
    c->sep = s->sep;
    set_current(c, name);
    return 0;
}

int chat_snapshot_delete(chat *c, const char *name, char *err, size_t errlen)
{
    struct snapshot *s = find_snapshot(c, name);
    size_t i;

    if (!s) {
        snprintf(err, errlen, "no snapshot named '%s'", name);
        return -1;
    }
    i = (size_t)(s - c->snaps);
    c->snap_bytes -= s->bytes;
    snapshot_release(s);
    memmove(c->snaps + i, c->snaps + i + 1, (c->n_snaps - i - 1) * sizeof *c->snaps);
    c->n_snaps--;
    if (c->current && !strcmp(c->current, name)) {
        set_current(c, NULL);
    }
    return 0;
}

size_t chat_snapshot_count(const chat *c)
{
    return c->n_snaps;
}

const char *chat_snapshot_name(const chat *c, size_t i)
{
    return i < c->n_snaps ? c->snaps[i].name : NULL;
}

size_t chat_snapshot_turns(const chat *c, size_t i)
{
    return i < c->n_snaps ? c->snaps[i].tr.n : 0;
}

time_t chat_snapshot_time(const chat *c, size_t i)
{
    return i < c->n_snaps ? c->snaps[i].taken : 0;
}

int chat_snapshot_exists(const chat *c, const char *name)
{
    size_t i;

    for (i = 0; i < c->n_snaps; i++) {
        if (!strcmp(c->snaps[i].name, name)) {
            return 1;
        }
    }
    return 0;
}

const char *chat_current_snapshot(const chat *c)
{
    return c->current;
}
int chat_load_tuned_state(chat *c, const char *path, char *err, size_t errlen)
{
    struct shared *tuned = NULL, *base;
    char *name = NULL;
    size_t n;

    if (path) {
        tuned = calloc(1, sizeof *tuned);
        name = strdup(path);
        if (!tuned || !name || !(tuned->state = rwkv_state_new(c->model))) {
            free(tuned);
            free(name);
            oom(err, errlen);
            return -1;
        }
        tuned->refs = 1;
        if (rwkv_state_load_tuned(c->model, tuned->state, path, err, errlen) < 0) {
            unref(tuned);
            free(name);
            return -1;
        }
    }
    settle(c);
    base = make_base(c, &c->tmpl, tuned, c->system, &n, err, errlen);
    if (!base) {
        unref(tuned);
        free(name);
        return -1;
    }
    unref(c->tuned);
    c->tuned = tuned;
    free(c->tuned_name);
    c->tuned_name = name;
    unref(c->base);
    c->base = base;
    c->base_tokens = n;
    chat_reset(c);
    return 0;
}

const char *chat_tuned_name(const chat *c)
{
    return c->tuned_name;
}

const rwkv_state *chat_tuned_state(const chat *c)
{
    return c->tuned ? c->tuned->state : NULL;
}

int chat_owed_newlines(const chat *c)
{
    return c->sep;
}

int chat_adopt(chat *c, const rwkv_state *state, const struct chat_turn *turns, size_t n,
               int sep, char *err, size_t errlen)
{
    struct transcript tr = { 0 };
    size_t i;

    settle(c);
    if (rwkv_state_floats(state) != rwkv_state_floats(c->state) || sep < 0 || sep > 2) {
        snprintf(err, errlen, "a state of another model");
        return -1;
    }
    for (i = 0; i < n; i++) {
        const char *r = turns[i].reasoning;

        if (transcript_add(&tr, turns[i].role, turns[i].text, strlen(turns[i].text)) < 0 ||
            transcript_set_reasoning(&tr, r ? r : "", r ? strlen(r) : 0) < 0) {
            transcript_free(&tr);
            oom(err, errlen);
            return -1;
        }
    }
    if (rwkv_state_copy(c->state, state) != 0) {
        transcript_free(&tr);
        snprintf(err, errlen, "out of memory for the state's history");
        return -1;
    }
    transcript_free(&c->tr);
    c->tr = tr;
    exchanges_clear(c);
    set_current(c, NULL);
    c->sep = sep;
    return 0;
}

int chat_set_model_file(chat *c, const char *path)
{
    char *copy = NULL;

    if (path && !(copy = strdup(path))) {
        return -1;
    }
    free(c->model_path);
    c->model_path = copy;
    c->model_name = copy && strrchr(copy, '/') ? strrchr(copy, '/') + 1 : copy;
    return 0;
}

const char *chat_model_name(const chat *c)
{
    return c->model_name;
}
