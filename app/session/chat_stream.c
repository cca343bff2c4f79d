/*
 * chat_stream.c - one reply as it is generated: sampling a token, feeding
 * it back, the think block, the stop rules (the turn's "\n\n", max_tokens,
 * token 0, an interrupt), and the bytes chat_step hands out.  chat_conversation.c starts
 * a reply (chat_begin_reply) once the prompt is read; everything after
 * that is here.
 */
#include "app/session/chat_internal.h"

void chat_settings_changed(chat *c)
{
    sampler_configure(c->smp, &c->settings);
    if (c->settings.seed != c->seeded) {
        sampler_seed(c->smp, c->settings.seed);
        c->seeded = c->settings.seed;
    }
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
        while (i < c->reply_len && chat_is_space(c->reply[i])) {
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
            while (base < c->reply_len && chat_is_space(c->reply[base])) {
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

    while (limit > c->pushed && chat_is_space(c->reply[limit - 1])) {
        limit--;
    }
    if (c->shown_len == seg_start && c->stream.n_held == 0) {
        while (c->pushed < limit && chat_is_space(c->reply[c->pushed])) {
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

/* Keeps where the stream stands (everything certain pushed, nothing
 * flushed) for chat_continue. */
static void keep_cut_point(chat *c)
{
    c->cut_at.pushed = c->pushed;
    c->cut_at.scanned = c->scanned;
    c->cut_at.end_at = c->end_at;
    c->cut_at.think_state = (int)c->think_state;
    c->cut_at.think_from = c->think_from;
    c->cut_at.think_to = c->think_to;
    c->cut_at.think_scanned = c->think_scanned;
    c->cut_at.reasoning_done = c->reasoning_done;
    c->cut_at.shown_split = c->shown_split;
    c->cut_at.shown_len = c->shown_len;
    c->cut_at.stream = c->stream;
}

/* Ends the reply: the transcript gets what was shown.  A reply cut at
 * max_tokens first keeps where its stream stood, so that chat_continue
 * can take it up as if it had never stopped. */
static void finish(chat *c, enum chat_stop stop, size_t *from)
{
    size_t start = c->shown_len, dummy, split;
    int rc = 0, keep = 0;

    c->cut = 0;
    if (stop == CHAT_STOP_LENGTH && (rc = emit(c, 0, &dummy)) == 0) {
        keep_cut_point(c);
        keep = 1;
    }
    if (rc < 0 || emit(c, 1, &dummy) < 0) {
        keep = 0;
        if (from) {
            *from = c->shown_len;
        }
    } else if (from) {
        *from = start;
    }
    /* Out of memory loses the turn (or its reasoning); the state stays
     * consistent. */
    split = reasoning_bytes(c);
    if (transcript_add(&c->tr, CHAT_ASSISTANT, c->shown ? c->shown + split : "",
                       c->shown_len - split) == 0) {
        transcript_set_reasoning(&c->tr, c->shown, split);
        c->cut = keep;
    }
    if (stop == CHAT_STOP_END) {
        c->sep = 0;
    } else {
        c->sep = c->reply_len > 0 && c->reply[c->reply_len - 1] == '\n' ? 1 : 2;
    }
    c->stats.reply_seconds = chat_now() - c->reply_started;
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
void chat_begin_reply(chat *c, int raw, const char *prefix)
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
    c->continued_from = 0;
    c->cut = 0;
    c->reply_started = chat_now();
}

int chat_continue(chat *c, char *err, size_t errlen)
{
    if (c->generating) {
        snprintf(err, errlen, "a reply is being generated");
        return -1;
    }
    if (!c->cut || c->tr.n == 0 || c->tr.turns[c->tr.n - 1].role != CHAT_ASSISTANT) {
        snprintf(err, errlen, "the last reply was not cut at max_tokens: nothing to continue "
                 "(/continue goes on only right after \"reply cut at max_tokens\")");
        return -1;
    }
    /* The reply goes back to where the stream stood before its end; the
     * state and logits are still those after its last token. */
    transcript_truncate(&c->tr, c->tr.n - 1);
    c->pushed = c->cut_at.pushed;
    c->scanned = c->cut_at.scanned;
    c->end_at = c->cut_at.end_at;
    c->think_state = c->cut_at.think_state;
    c->think_from = c->cut_at.think_from;
    c->think_to = c->cut_at.think_to;
    c->think_scanned = c->cut_at.think_scanned;
    c->reasoning_done = c->cut_at.reasoning_done;
    c->shown_split = c->cut_at.shown_split;
    c->shown_len = c->cut_at.shown_len;
    c->stream = c->cut_at.stream;
    c->part = CHAT_PART_ANSWER;
    c->pending = 0;
    c->cut = 0;
    c->sep = 0;
    c->continued_from = c->stats.reply_tokens;
    /* The reply's time so far counts, not the pause before /continue. */
    c->reply_started = chat_now() - c->stats.reply_seconds;
    atomic_store(&c->interrupt_req, 0);
    c->generating = 1;
    /* The conversation moves past the current snapshot, as a message does. */
    free(c->current);
    c->current = NULL;
    return 0;
}

const char *chat_reply_so_far(const chat *c, enum chat_part part, size_t *len)
{
    size_t split = reasoning_bytes(c);

    if (!c->generating || !c->shown) {
        *len = 0;
        return "";
    }
    if (part == CHAT_PART_REASONING) {
        *len = split;
        return c->shown;
    }
    *len = c->shown_len - split;
    return c->shown + split;
}

/* The first half of a step: what ends the reply before a token, or the
 * token sampled (its bytes already in c->reply).  1: *token is to be fed
 * into c->state with its logits into c->logits; 0: no token (c->step_stop
 * says why); -1 with err (the reply is finished). */
static int step_sample(chat *c, int32_t *token, char *err, size_t errlen)
{
    const struct sampler_settings *s = &c->settings;
    const uint8_t *bytes;
    size_t blen = 0;

    c->step_stop = CHAT_STOP_NONE;
    if (atomic_load(&c->interrupt_req)) {
        c->step_stop = CHAT_STOP_INTERRUPT;
        return 0;
    }
    if (s->max_tokens > 0 && c->stats.reply_tokens - c->continued_from >= (size_t)s->max_tokens) {
        c->step_stop = CHAT_STOP_LENGTH;
        return 0;
    }
    /* Settings are live even if the caller forgot chat_settings_changed. */
    chat_settings_changed(c);
    *token = sampler_sample(c->smp, c->logits);
    if (*token == SAMPLER_NONFINITE) {
        snprintf(err, errlen, "the model produced NaN/Inf logits: nothing to sample (a "
                 "damaged model, state file or state-tuned file?)");
        finish(c, CHAT_STOP_INTERRUPT, NULL);
        return -1;
    }
    if (*token < 0) {
        snprintf(err, errlen, "every token is banned: nothing to sample");
        finish(c, CHAT_STOP_INTERRUPT, NULL);
        return -1;
    }
    if (*token == 0) {
        c->step_stop = CHAT_STOP_EOS;
        return 0;
    }
    sampler_accept(c->smp, *token);
    bytes = tokenizer_token(c->tok, *token, &blen);
    if (reserve(&c->reply, &c->reply_cap, c->reply_len + blen + 1) < 0) {
        oom(err, errlen);
        finish(c, CHAT_STOP_INTERRUPT, NULL);
        return -1;
    }
    if (bytes && blen) {
        memcpy(c->reply + c->reply_len, bytes, blen);
        c->reply_len += blen;
    }
    return 1;
}

/* The second half of a step, after the sampled token (fed set) was fed:
 * the end of the turn, the length limit, and the bytes to hand out. */
static int step_finish(chat *c, int fed, const char **out, size_t *out_len, char *err,
                       size_t errlen)
{
    const struct sampler_settings *s = &c->settings;
    size_t from = c->shown_len, n, split;
    int stop = c->step_stop;

    if (fed) {
        c->stats.reply_tokens++;
        c->stats.context_tokens++;
        if (reply_end(c) >= 0) {
            stop = CHAT_STOP_END;
        } else if (s->max_tokens > 0 &&
                   c->stats.reply_tokens - c->continued_from >= (size_t)s->max_tokens) {
            stop = CHAT_STOP_LENGTH;
        }
    }
    if (stop != CHAT_STOP_NONE) {
        finish(c, stop, &from);
    } else if (emit(c, 0, &from) < 0) {
        oom(err, errlen);
        finish(c, CHAT_STOP_INTERRUPT, NULL);
        return -1;
    } else {
        c->stats.reply_seconds = chat_now() - c->reply_started;
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
    return stop;
}

static int step(chat *c, const char **out, size_t *out_len, char *err, size_t errlen)
{
    int32_t token = 0;
    int r = step_sample(c, &token, err, errlen);

    if (r < 0) {
        return -1;
    }
    if (r == 1 && rwkv_eval(c->ctx, c->state, &token, 1, c->logits, 0, err, errlen) < 0) {
        finish(c, CHAT_STOP_INTERRUPT, NULL);
        return -1;
    }
    return step_finish(c, r == 1, out, out_len, err, errlen);
}

/* The pending answer bytes of a step that ended the reasoning. */
static int step_pending(chat *c, const char **out, size_t *out_len, char *err, size_t errlen)
{
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

int chat_step(chat *c, const char **out, size_t *out_len, char *err, size_t errlen)
{
    int rc;

    *out = "";
    *out_len = 0;
    if (c->pending) {
        return step_pending(c, out, out_len, err, errlen);
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

int chat_step_token(chat *c, int32_t *token, char *err, size_t errlen)
{
    int r;

    c->step_fed = 0;
    if (c->pending) {
        return 0;
    }
    if (!c->generating) {
        snprintf(err, errlen, "no reply in progress");
        return -1;
    }
    r = step_sample(c, token, err, errlen);
    c->step_fed = r == 1;
    return r;
}

int chat_step_fed(chat *c, const char **out, size_t *out_len, char *err, size_t errlen)
{
    *out = "";
    *out_len = 0;
    if (c->pending) {
        return step_pending(c, out, out_len, err, errlen);
    }
    return step_finish(c, c->step_fed, out, out_len, err, errlen);
}

rwkv_state *chat_eval_state(chat *c)
{
    return c->state;
}

float *chat_eval_logits(chat *c)
{
    return c->logits;
}

enum chat_part chat_step_part(const chat *c)
{
    return c->part;
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
