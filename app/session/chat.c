/*
 * chat.c - a conversation with an RWKV model: turns, streaming, stop rules,
 * undo/regen and snapshots (its state-file sections: chat_sections.c).
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

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* Grows *buf (capacity *cap) to hold need bytes; 0 or -1. */
int reserve(char **buf, size_t *cap, size_t need)
{
    char *nb;
    size_t nc;

    if (need <= *cap) {
        return 0;
    }
    nc = *cap ? *cap : 256;
    while (nc < need) {
        nc *= 2;
    }
    nb = realloc(*buf, nc);
    if (!nb) {
        return -1;
    }
    *buf = nb;
    *cap = nc;
    return 0;
}

void oom(char *err, size_t errlen)
{
    snprintf(err, errlen, "out of memory");
}

/* --- shared states ------------------------------------------------------ */

static struct shared *share(const rwkv_state *st, const float *logits, int n_vocab)
{
    struct shared *s = calloc(1, sizeof *s);

    if (!s) {
        return NULL;
    }
    s->refs = 1;
    s->state = rwkv_state_clone(st);
    if (logits) {
        s->logits = malloc((size_t)n_vocab * sizeof(float));
        if (s->logits) {
            memcpy(s->logits, logits, (size_t)n_vocab * sizeof(float));
        }
    }
    if (!s->state || (logits && !s->logits)) {
        rwkv_state_free(s->state);
        free(s->logits);
        free(s);
        return NULL;
    }
    return s;
}

static struct shared *ref(struct shared *s)
{
    if (s) {
        s->refs++;
    }
    return s;
}

void unref(struct shared *s)
{
    if (s && --s->refs == 0) {
        rwkv_state_free(s->state);
        free(s->logits);
        free(s);
    }
}

/* --- transcript --------------------------------------------------------- */

static void transcript_truncate(struct transcript *tr, size_t n)
{
    while (tr->n > n) {
        tr->n--;
        free(tr->turns[tr->n].text);
        free(tr->turns[tr->n].reasoning);
    }
}

void transcript_free(struct transcript *tr)
{
    transcript_truncate(tr, 0);
    free(tr->turns);
    tr->turns = NULL;
    tr->cap = 0;
}

/* Appends a turn with a copy of text[0..len-1]. */
int transcript_add(struct transcript *tr, enum chat_role role, const char *text, size_t len)
{
    char *t;

    if (tr->n == tr->cap) {
        size_t nc = tr->cap ? tr->cap * 2 : 16;
        struct chat_turn *nt = realloc(tr->turns, nc * sizeof *nt);

        if (!nt) {
            return -1;
        }
        tr->turns = nt;
        tr->cap = nc;
    }
    t = malloc(len + 1);
    if (!t) {
        return -1;
    }
    memcpy(t, text, len);
    t[len] = '\0';
    tr->turns[tr->n].role = role;
    tr->turns[tr->n].text = t;
    tr->turns[tr->n].reasoning = NULL;
    tr->n++;
    return 0;
}

/* Sets the last turn's reasoning to a copy of text[0..len-1] (len 0:
 * none); 0 or -1. */
static int transcript_set_reasoning(struct transcript *tr, const char *text, size_t len)
{
    struct chat_turn *t = &tr->turns[tr->n - 1];

    free(t->reasoning);
    t->reasoning = NULL;
    if (len == 0) {
        return 0;
    }
    t->reasoning = malloc(len + 1);
    if (!t->reasoning) {
        return -1;
    }
    memcpy(t->reasoning, text, len);
    t->reasoning[len] = '\0';
    return 0;
}

static int transcript_copy(struct transcript *dst, const struct transcript *src)
{
    size_t i;

    memset(dst, 0, sizeof *dst);
    for (i = 0; i < src->n; i++) {
        const char *r = src->turns[i].reasoning;

        if (transcript_add(dst, src->turns[i].role, src->turns[i].text,
                           strlen(src->turns[i].text)) < 0 ||
            transcript_set_reasoning(dst, r ? r : "", r ? strlen(r) : 0) < 0) {
            transcript_free(dst);
            return -1;
        }
    }
    return 0;
}

/* --- templates ---------------------------------------------------------- */

static int template_copy(struct chat_template *dst, const struct chat_template *src)
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

/* Feeds text (tokenised as one piece) into state in pieces of
 * CHAT_PROMPT_CHUNK tokens; the logits after the last token go to logits
 * (may be NULL).  *n_tokens receives the count.  With stoppable set the
 * progress callback is asked before each piece of a longer text.  0, -1
 * with err, or CHAT_INTERRUPTED with state part-fed (the caller restores
 * it). */
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
    if (world_encode(c->tok, (const uint8_t *)text, len, &ids, &n) < 0) {
        oom(err, errlen);
        return -1;
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
    }
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
        ref(e[i].before);
        ref(e[i].prompted);
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
    int32_t id, n_tok = world_vocab_size(c->tok);

    for (id = 1; id < c->n_vocab; id++) {
        size_t len = 0;
        const uint8_t *b = id < n_tok ? world_token(c->tok, id, &len) : NULL;

        if (!b || len == 0) {
            sampler_ban(c->smp, id, 1);
        } else if (len < sizeof digits && memmem(digits, sizeof digits - 1, b, len)) {
            sampler_set_count_weight(c->smp, id, 0.0f);
        }
    }
}

chat *chat_new(rwkv_model *model, const world_tokenizer *tok, const struct chat_template *t,
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

static void snapshot_release(struct snapshot *s)
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

void chat_settings_changed(chat *c)
{
    sampler_configure(c->smp, &c->settings);
    if (c->settings.seed != c->seeded) {
        sampler_seed(c->smp, c->settings.seed);
        c->seeded = c->settings.seed;
    }
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
    while (start < end && is_space(text[start])) {
        start++;
    }
    while (end > start && is_space(text[end - 1])) {
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

/* --- generation --------------------------------------------------------- */

/* Follows a thinking template's reply through its think block: whether
 * it opens with "<think" (after white space) and where "</think>" closes
 * it.  final: no more bytes come (an undecided opening is no block). */
static void think_scan(chat *c, int final)
{
    static const char open[] = "<think", close[] = "</think>";
    size_t i = 0, avail;
    const char *p;

    if (c->think_state == THINK_UNDECIDED) {
        while (i < c->reply_len && is_space(c->reply[i])) {
            i++;
        }
        avail = c->reply_len - i;
        if (avail == 0) {
            c->think_state = final ? THINK_NONE : THINK_UNDECIDED;
        } else if (memcmp(c->reply + i, open, avail < 6 ? avail : 6) != 0) {
            c->think_state = THINK_NONE;
        } else if (avail >= 7) {
            c->think_state = THINK_OPEN;
            c->think_from = i + 6 + (c->reply[i + 6] == '>');
            c->think_scanned = c->think_from;
        } else if (final) {
            c->think_state = THINK_NONE;
        }
    }
    if (c->think_state == THINK_OPEN) {
        size_t from = c->think_scanned >= c->think_from + 7 ? c->think_scanned - 7 : c->think_from;

        p = memmem(c->reply + from, c->reply_len - from, close, 8);
        c->think_scanned = c->reply_len;
        if (p) {
            c->think_state = THINK_CLOSED;
            c->think_to = (size_t)(p - c->reply);
        }
    }
}

/* Position of the "\n\n" that ends the turn, or -1.  Only the bytes added
 * since the last call (and the one before them) are searched.  A raw
 * completion has no turns: it never ends at a blank line.  In a thinking
 * reply a think block's blank lines do not count, nor those between
 * "</think>" and the answer. */
static long reply_end(chat *c)
{
    const char *p;
    size_t from, base = 0;

    if (c->raw || c->end_at >= 0) {
        return c->end_at;
    }
    if (c->thinking) {
        think_scan(c, 0);
        if (c->think_state == THINK_UNDECIDED || c->think_state == THINK_OPEN) {
            return -1;
        }
        if (c->think_state == THINK_CLOSED) {
            base = c->think_to + 8;
            while (base < c->reply_len && is_space(c->reply[base])) {
                base++;
            }
            if (base == c->reply_len) {
                return -1;
            }
        }
    }
    if (c->reply_len < base + 2) {
        return -1;
    }
    from = c->scanned > base + 1 ? c->scanned - 1 : base;
    p = memmem(c->reply + from, c->reply_len - from, "\n\n", 2);
    c->scanned = c->reply_len;
    c->end_at = p ? (long)(p - c->reply) : -1;
    return c->end_at;
}

/* Pushes c->reply[c->pushed..limit) into the stream decoder, stripped:
 * trailing white space is held back and, while c->shown has nothing past
 * seg_start (the start of this part), leading white space skipped. */
static int push_stripped(chat *c, size_t limit, size_t seg_start)
{
    size_t n;

    while (limit > c->pushed && is_space(c->reply[limit - 1])) {
        limit--;
    }
    if (c->shown_len == seg_start && c->stream.n_held == 0) {
        while (c->pushed < limit && is_space(c->reply[c->pushed])) {
            c->pushed++;
        }
    }
    if (limit > c->pushed) {
        n = limit - c->pushed;
        if (reserve(&c->shown, &c->shown_cap, c->shown_len + 3 * (n + 8) + 1) < 0) {
            return -1;
        }
        c->shown_len += world_stream_push(&c->stream, (const uint8_t *)c->reply + c->pushed, n,
                                          (uint8_t *)c->shown + c->shown_len);
        c->pushed = limit;
    }
    return 0;
}

static int flush_stream(chat *c)
{
    if (reserve(&c->shown, &c->shown_cap, c->shown_len + 8 * 3 + 1) < 0) {
        return -1;
    }
    c->shown_len += world_stream_flush(&c->stream, (uint8_t *)c->shown + c->shown_len);
    return 0;
}

/* Bytes at the end of the reply that may begin "</think>" (held back). */
static size_t partial_close(const chat *c)
{
    size_t k;

    for (k = 7; k > 0; k--) {
        if (c->reply_len >= c->think_from + k &&
            !memcmp(c->reply + c->reply_len - k, "</think>", k)) {
            return k;
        }
    }
    return 0;
}

/* The think block's part of emit: reasoning up to "</think>" (or all of it
 * when final), then c->pushed moves past the tag to the answer. */
static int emit_reasoning(chat *c, int final)
{
    size_t limit;

    if (c->pushed < c->think_from) {
        c->pushed = c->think_from;
    }
    limit = c->think_state == THINK_CLOSED ? c->think_to : c->reply_len - partial_close(c);
    if (push_stripped(c, limit, 0) < 0) {
        return -1;
    }
    if (c->think_state == THINK_CLOSED || final) {
        if (flush_stream(c) < 0) {
            return -1;
        }
        c->reasoning_done = 1;
        c->shown_split = c->shown_len;
        c->pushed = c->think_state == THINK_CLOSED ? c->think_to + 8 : c->reply_len;
    }
    return 0;
}

/* Pushes reply bytes up to what is certain into the stream decoder and
 * appends its output to c->shown; *from receives where this call's output
 * starts in c->shown.  Chat replies are stripped: leading whitespace is
 * skipped and trailing whitespace held back until something follows it
 * (it may be the end of the turn).  Raw completions hold back only a
 * trailing "\n".  A thinking reply's think block comes first (stripped on
 * its own), its tags left out.  final: the reply is over (flush). */
static int emit(chat *c, int final, size_t *from)
{
    long e = reply_end(c);
    size_t limit = e >= 0 ? (size_t)e : c->reply_len, n;

    *from = c->shown_len;
    if (c->thinking && !c->raw) {
        think_scan(c, final);
        if (c->think_state == THINK_UNDECIDED) {
            return 0;
        }
        if (c->think_state != THINK_NONE && !c->reasoning_done && emit_reasoning(c, final) < 0) {
            return -1;
        }
        if (c->think_state == THINK_OPEN && !final) {
            return 0;
        }
        if (push_stripped(c, limit, c->shown_split) < 0) {
            return -1;
        }
        return final ? flush_stream(c) : 0;
    }
    if (c->raw) {
        if (!final && limit > 0 && c->reply[limit - 1] == '\n') {
            limit--;
        }
        if (limit > c->pushed) {
            n = limit - c->pushed;
            if (reserve(&c->shown, &c->shown_cap, c->shown_len + 3 * (n + 8) + 1) < 0) {
                return -1;
            }
            c->shown_len += world_stream_push(&c->stream, (const uint8_t *)c->reply + c->pushed,
                                              n, (uint8_t *)c->shown + c->shown_len);
            c->pushed = limit;
        }
    } else if (push_stripped(c, limit, 0) < 0) {
        return -1;
    }
    return final ? flush_stream(c) : 0;
}

/* Bytes of c->shown that are reasoning so far. */
static size_t reasoning_bytes(const chat *c)
{
    if (c->reasoning_done) {
        return c->shown_split;
    }
    return c->thinking && (c->think_state == THINK_OPEN || c->think_state == THINK_CLOSED)
           ? c->shown_len : 0;
}

/* Ends the reply: the transcript gets what was shown. */
static void finish(chat *c, enum chat_stop stop, size_t *from)
{
    size_t dummy, split;

    if (emit(c, 1, from ? from : &dummy) < 0 && from) {
        *from = c->shown_len;
    }
    /* Out of memory loses the turn (or its reasoning); the state stays
     * consistent. */
    split = reasoning_bytes(c);
    if (transcript_add(&c->tr, CHAT_ASSISTANT, c->shown ? c->shown + split : "",
                       c->shown_len - split) == 0) {
        transcript_set_reasoning(&c->tr, c->shown, split);
    }
    if (stop == CHAT_STOP_END) {
        c->sep = 0;
    } else {
        c->sep = c->reply_len > 0 && c->reply[c->reply_len - 1] == '\n' ? 1 : 2;
    }
    c->stats.reply_seconds = now() - c->reply_started;
    c->generating = 0;
}

/* Finishes a reply left in progress as interrupted. */
void settle(chat *c)
{
    if (c->generating) {
        finish(c, CHAT_STOP_INTERRUPT, NULL);
    }
}

/* Starts generating from the current state and logits; prefix: what the
 * prompt fed after "Assistant:" (NULL: none), the start of the reply as
 * far as the think block goes. */
static void begin_reply(chat *c, int raw, const char *prefix)
{
    size_t plen = prefix ? strlen(prefix) : 0;

    c->generating = 1;
    c->raw = raw;
    atomic_store(&c->interrupt_req, 0);
    c->reply_len = 0;
    c->thinking = !raw && c->tmpl.thinking;
    c->think_state = THINK_UNDECIDED;
    c->think_from = c->think_to = c->think_scanned = 0;
    c->reasoning_done = 0;
    c->shown_split = 0;
    c->part = CHAT_PART_ANSWER;
    c->pending = 0;
    if (c->thinking && plen && reserve(&c->reply, &c->reply_cap, plen + 1) == 0) {
        memcpy(c->reply, prefix, plen);
        c->reply_len = plen;
    }
    c->pushed = 0;
    c->scanned = 0;
    c->end_at = -1;
    c->shown_len = 0;
    world_stream_init(&c->stream);
    sampler_reset_counts(c->smp);
    c->stats.reply_tokens = 0;
    c->stats.reply_seconds = 0;
    c->reply_started = now();
}

/* Records a new exchange and feeds its prompt. */
static int start_exchange(chat *c, const char *turn_text, size_t turn_len, const char *fed,
                          size_t fed_len, int raw, const char *prefix, char *err, size_t errlen)
{
    struct exchange e;
    double t0;
    size_t n = 0;
    int rc;

    memset(&e, 0, sizeof e);
    e.before = share(c->state, NULL, c->n_vocab);
    if (!e.before) {
        oom(err, errlen);
        return -1;
    }
    e.n_turns = c->tr.n;
    e.context_tokens = c->stats.context_tokens;
    e.sep = c->sep;
    e.raw = raw;
    e.prefix = prefix;
    t0 = now();
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
    e.prompt_seconds = now() - t0;
    e.prompted = share(c->state, c->logits, c->n_vocab);
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
    begin_reply(c, raw, prefix);
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

static int step(chat *c, const char **out, size_t *out_len, char *err, size_t errlen)
{
    const struct sampler_settings *s = &c->settings;
    size_t from = c->shown_len, blen = 0, n, split;
    const uint8_t *bytes;
    int32_t token;
    enum chat_stop stop = CHAT_STOP_NONE;

    if (atomic_load(&c->interrupt_req)) {
        stop = CHAT_STOP_INTERRUPT;
    } else if (s->max_tokens > 0 && c->stats.reply_tokens >= (size_t)s->max_tokens) {
        stop = CHAT_STOP_LENGTH;
    } else {
        /* Settings are live even if the caller forgot chat_settings_changed. */
        chat_settings_changed(c);
        token = sampler_sample(c->smp, c->logits);
        if (token == SAMPLER_NONFINITE) {
            snprintf(err, errlen, "the model produced NaN/Inf logits: nothing to sample (a "
                     "damaged model, state file or state-tuned file?)");
            finish(c, CHAT_STOP_INTERRUPT, NULL);
            return -1;
        }
        if (token < 0) {
            snprintf(err, errlen, "every token is banned: nothing to sample");
            finish(c, CHAT_STOP_INTERRUPT, NULL);
            return -1;
        }
        if (token == 0) {
            stop = CHAT_STOP_EOS;
        } else {
            sampler_accept(c->smp, token);
            bytes = world_token(c->tok, token, &blen);
            if (reserve(&c->reply, &c->reply_cap, c->reply_len + blen + 1) < 0) {
                oom(err, errlen);
                finish(c, CHAT_STOP_INTERRUPT, NULL);
                return -1;
            }
            if (bytes && blen) {
                memcpy(c->reply + c->reply_len, bytes, blen);
                c->reply_len += blen;
            }
            if (rwkv_eval(c->ctx, c->state, &token, 1, c->logits, 0, err, errlen) < 0) {
                finish(c, CHAT_STOP_INTERRUPT, NULL);
                return -1;
            }
            c->stats.reply_tokens++;
            c->stats.context_tokens++;
            if (reply_end(c) >= 0) {
                stop = CHAT_STOP_END;
            } else if (s->max_tokens > 0 && c->stats.reply_tokens >= (size_t)s->max_tokens) {
                stop = CHAT_STOP_LENGTH;
            }
        }
    }
    if (stop != CHAT_STOP_NONE) {
        finish(c, stop, &from);
    } else if (emit(c, 0, &from) < 0) {
        oom(err, errlen);
        finish(c, CHAT_STOP_INTERRUPT, NULL);
        return -1;
    } else {
        c->stats.reply_seconds = now() - c->reply_started;
    }
    /* A step's bytes are of one part: what crosses from the reasoning into
     * the answer goes out in two calls (the stop with the second). */
    split = reasoning_bytes(c);
    c->part = from < split ? CHAT_PART_REASONING : CHAT_PART_ANSWER;
    if (from < split && split < c->shown_len) {
        c->pending = 1;
        c->pending_from = split;
        c->pending_stop = (int)stop;
        stop = CHAT_STOP_NONE;
        n = split - from;
    } else {
        n = c->shown_len - from;
    }
    /* Hand out this step's bytes (copied: c->shown may move next time). */
    if (reserve(&c->out, &c->out_cap, n + 1) < 0) {
        oom(err, errlen);
        return -1;
    }
    if (n) {
        memcpy(c->out, c->shown + from, n);
    }
    c->out[n] = '\0';
    *out = c->out;
    *out_len = n;
    return (int)stop;
}

int chat_step(chat *c, const char **out, size_t *out_len, char *err, size_t errlen)
{
    int rc;

    *out = "";
    *out_len = 0;
    if (c->pending) {
        /* The answer's first bytes, after a step that ended the reasoning. */
        size_t n = c->shown_len - c->pending_from;

        c->pending = 0;
        c->part = CHAT_PART_ANSWER;
        if (reserve(&c->out, &c->out_cap, n + 1) < 0) {
            oom(err, errlen);
            return -1;
        }
        memcpy(c->out, c->shown + c->pending_from, n);
        c->out[n] = '\0';
        *out = c->out;
        *out_len = n;
        return c->pending_stop;
    }
    if (!c->generating) {
        snprintf(err, errlen, "no reply in progress");
        return -1;
    }
    atomic_store(&c->in_step, 1);
    rc = step(c, out, out_len, err, errlen);
    atomic_store(&c->in_step, 0);
    return rc;
}

enum chat_part chat_step_part(const chat *c)
{
    return c->part;
}

void chat_set_progress(chat *c, chat_progress_fn fn, void *ctx)
{
    c->progress = fn;
    c->progress_ctx = ctx;
}

void chat_request_stop(chat *c)
{
    atomic_store(&c->interrupt_req, 1);
}

void chat_interrupt(chat *c)
{
    atomic_store(&c->interrupt_req, 1);
    if (!atomic_load(&c->in_step) && c->generating) {
        finish(c, CHAT_STOP_INTERRUPT, NULL);
    }
}

/* --- conversation operations -------------------------------------------- */

void chat_reset(chat *c)
{
    settle(c);
    rwkv_state_copy(c->state, c->base->state);
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
    begin_reply(c, e->raw, e->prefix);
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
    after = share(c->state, NULL, c->n_vocab);
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
static size_t snapshot_bytes(const struct snapshot *s)
{
    size_t n = sizeof *s + strlen(s->name) + rwkv_state_floats(s->state->state) * sizeof(float) +
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
    s.state = share(c->state, NULL, c->n_vocab);
    s.base = ref(c->base);
    s.tuned = ref(c->tuned);
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
    if (!smp || !ex || (s->tuned_name && !tuned_name) || (s->system && !system) ||
        transcript_copy(&tr, &s->tr) < 0 || template_copy(&tmpl, &s->tmpl) < 0) {
        size_t i;

        free(tuned_name);
        free(system);
        sampler_free(smp);
        for (i = 0; ex && i < s->n_ex; i++) {
            exchange_release(&ex[i]);
        }
        free(ex);
        transcript_free(&tr);
        oom(err, errlen);
        return -1;
    }
    rwkv_state_copy(c->state, s->state->state);
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
    c->base = ref(s->base);
    unref(c->tuned);
    c->tuned = ref(s->tuned);
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
