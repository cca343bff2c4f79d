/* sched.c - the scheduler thread: prompts in pieces, generation in batches. */
#include "app/serve/sched.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/serve/cache.h"
#include "app/session/chat.h"

enum slot_phase { SLOT_FREE, SLOT_PREFILL, SLOT_GEN };

/* One conversation being served: its prompt's progress, then its chat. */
struct slot {
    enum slot_phase phase;
    struct job *job;
    chat *c;                    /* generates the reply (chat_begin_at) */
    rwkv_state *state;          /* the prompt's state while it is read */
    float *logits;
    size_t pos;                 /* prompt tokens in state */
    size_t piece;               /* the piece pos is in */
    int32_t *gen;               /* tokens generated */
    size_t n_gen, cap_gen;
    char *raw;                  /* their bytes */
    size_t raw_len, raw_cap;
    int fed;                    /* this round's step fed a token */
    int stepped;
};

struct named {
    char id[SERVE_ID_MAX + 1];
    rwkv_state *state;
    int sep;
    struct chat_turn *turns;
    size_t n_turns;
    size_t bytes;               /* what it holds (named_bytes) */
};

struct sched {
    struct sched_config cfg;
    const struct rwkv_info *info;
    rwkv_context *ctx;
    state_cache *cache;
    struct slot *slots;
    rwkv_state **batch_states;
    int32_t *batch_tokens;
    float *batch_logits;
    pthread_t thread;
    int started;
    /* under mu */
    pthread_mutex_t mu;
    pthread_cond_t work_cv;     /* the scheduler: a job came, or stop */
    pthread_cond_t out_cv;      /* HTTP threads: some job has more */
    struct job *queue, *queue_tail;
    size_t queued;
    int active;
    int stop;
    struct sched_stats stats;
    struct named *named;
    size_t n_named;
    size_t named_bytes;         /* the sum of their bytes */
};

struct job *job_new(void)
{
    struct job *j = calloc(1, sizeof *j);

    if (j) {
        j->refs = 1;
        atomic_init(&j->cancelled, 0);
    }
    return j;
}

static void job_free(struct job *j)
{
    size_t i;

    free(j->tokens);
    free(j->piece_end);
    free(j->prefix);
    free(j->hist_tokens);
    sched_turns_free(j->turns, j->n_turns);
    for (i = 0; i < j->n_stops; i++) {
        free(j->stops[i]);
    }
    free(j->text);
    free(j->reasoning);
    free(j);
}

/* Drops a reference under s->mu. */
static void unref_locked(sched *s, struct job *j)
{
    if (--j->refs > 0) {
        return;
    }
    (void)s;
    job_free(j);
}

void job_release(sched *s, struct job *j)
{
    if (!j) {
        return;
    }
    if (!s) {
        job_free(j);
        return;
    }
    pthread_mutex_lock(&s->mu);
    if (!j->done) {
        atomic_store(&j->cancelled, 1);
        pthread_cond_signal(&s->work_cv);
    }
    unref_locked(s, j);
    pthread_mutex_unlock(&s->mu);
}

void sched_cancel(sched *s, struct job *j)
{
    pthread_mutex_lock(&s->mu);
    atomic_store(&j->cancelled, 1);
    pthread_cond_signal(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
}

void sched_lock(sched *s)
{
    pthread_mutex_lock(&s->mu);
}

void sched_unlock(sched *s)
{
    pthread_mutex_unlock(&s->mu);
}

void sched_wait(sched *s, const struct job *j, size_t text_seen, size_t reasoning_seen, int ms)
{
    struct timespec ts;

    if (j->done || j->text_ready > text_seen || j->reasoning_len > reasoning_seen) {
        return;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    ts.tv_sec += ms / 1000 + ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&s->out_cv, &s->mu, &ts);
}

int sched_submit(sched *s, struct job *j, char *err, size_t errlen)
{
    pthread_mutex_lock(&s->mu);
    if (s->stop) {
        pthread_mutex_unlock(&s->mu);
        snprintf(err, errlen, "the server is stopping");
        return -1;
    }
    if (s->queued >= s->cfg.queue_max) {
        pthread_mutex_unlock(&s->mu);
        snprintf(err, errlen, "the server is busy: %zu requests are waiting; try again later",
                 s->queued);
        return -1;
    }
    j->refs++;
    j->next = NULL;
    if (s->queue_tail) {
        s->queue_tail->next = j;
    } else {
        s->queue = j;
    }
    s->queue_tail = j;
    s->queued++;
    s->stats.prompt_tokens += j->n_tokens;
    pthread_cond_signal(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* --- ending a job ------------------------------------------------------- */

/* Ends slot's job under s->mu: done (finish, or status and err), the
 * scheduler's reference dropped, the slot free. */
static void end_locked(sched *s, struct slot *sl, const char *finish, int status,
                       const char *err)
{
    struct job *j = sl->job;

    j->done = 1;
    j->finish = finish;
    j->text_ready = j->text_len;
    if (status) {
        j->status = status;
        snprintf(j->err, sizeof j->err, "%s", err);
        s->stats.failed++;
    } else if (atomic_load(&j->cancelled)) {
        s->stats.cancelled++;
    } else {
        s->stats.requests++;
    }
    unref_locked(s, j);
    sl->job = NULL;
    sl->phase = SLOT_FREE;
    s->active--;
    pthread_cond_broadcast(&s->out_cv);
}

static void end_job(sched *s, struct slot *sl, const char *finish, int status, const char *err)
{
    if (sl->c && chat_generating(sl->c)) {
        chat_interrupt(sl->c);
    }
    pthread_mutex_lock(&s->mu);
    end_locked(s, sl, finish, status, err);
    pthread_mutex_unlock(&s->mu);
}

/* end_job for a conversation that would pass its state's history bound. */
static void end_job_too_long(sched *s, struct slot *sl, const char *err)
{
    sl->job->code = "context_length_exceeded";
    end_job(s, sl, NULL, 400, err);
}

/* --- named states ------------------------------------------------------- */

void sched_turns_free(struct chat_turn *turns, size_t n)
{
    size_t i;

    for (i = 0; turns && i < n; i++) {
        free(turns[i].text);
        free(turns[i].reasoning);
    }
    free(turns);
}

/* Appends copies of src[0..n) to *dst (*n_dst turns); 0, or -1 when out
 * of memory (*dst as before). */
static int turns_append(struct chat_turn **dst, size_t *n_dst, const struct chat_turn *src,
                        size_t n)
{
    struct chat_turn *grown;
    size_t i;

    if (n == 0) {
        return 0;
    }
    if (!(grown = realloc(*dst, (*n_dst + n) * sizeof *grown))) {
        return -1;
    }
    *dst = grown;
    for (i = 0; i < n; i++) {
        struct chat_turn *t = &grown[*n_dst + i];

        t->role = src[i].role;
        t->text = strdup(src[i].text ? src[i].text : "");
        t->reasoning = src[i].reasoning ? strdup(src[i].reasoning) : NULL;
        if (!t->text || (src[i].reasoning && !t->reasoning)) {
            free(t->text);
            free(t->reasoning);
            while (i > 0) {
                i--;
                free(grown[*n_dst + i].text);
                free(grown[*n_dst + i].reasoning);
            }
            return -1;
        }
    }
    *n_dst += n;
    return 0;
}

/* The memory a named state holds: the state and the turns' text. */
static size_t named_bytes(const rwkv_state *state, const struct chat_turn *turns, size_t n)
{
    size_t b = sizeof(struct named) + rwkv_state_bytes(state), i;

    for (i = 0; i < n; i++) {
        b += sizeof *turns + strlen(turns[i].text) + 1 +
             (turns[i].reasoning ? strlen(turns[i].reasoning) + 1 : 0);
    }
    return b;
}

static struct named *find_named(sched *s, const char *id)
{
    size_t i;

    for (i = 0; i < s->n_named; i++) {
        if (strcmp(s->named[i].id, id) == 0) {
            return &s->named[i];
        }
    }
    return NULL;
}

int sched_state_get(sched *s, const char *id, rwkv_state *state, int *sep,
                    struct chat_turn **turns, size_t *n_turns)
{
    struct named *n;
    int rc = 0;

    if (turns) {
        *turns = NULL;
        *n_turns = 0;
    }
    pthread_mutex_lock(&s->mu);
    n = find_named(s, id);
    if (!n) {
        rc = -1;
    } else {
        if (state && rwkv_state_copy(state, n->state) != 0) {
            rc = -2;        /* no memory for an RWKV-7b history */
        }
        if (sep) {
            *sep = n->sep;
        }
        if (turns && turns_append(turns, n_turns, n->turns, n->n_turns) < 0) {
            rc = -2;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int sched_state_put(sched *s, const char *id, const rwkv_state *state, int sep,
                    const struct chat_turn *turns, size_t n_turns, char *err, size_t errlen)
{
    struct named *n, *grown;
    rwkv_state *copy = rwkv_state_clone(state);
    struct chat_turn *tc = NULL;
    size_t n_tc = 0, bytes = named_bytes(state, turns, n_turns), others;

    if (!copy || turns_append(&tc, &n_tc, turns, n_turns) < 0) {
        rwkv_state_free(copy);
        snprintf(err, errlen, "out of memory for state '%s'", id);
        return -1;
    }
    pthread_mutex_lock(&s->mu);
    n = find_named(s, id);
    others = s->named_bytes - (n ? n->bytes : 0);
    if (others + bytes > s->cfg.states_bytes) {
        pthread_mutex_unlock(&s->mu);
        rwkv_state_free(copy);
        sched_turns_free(tc, n_tc);
        snprintf(err, errlen, "the named states would hold %zu KiB, more than --states-mb "
                 "allows (%zu KiB): delete one first", (others + bytes) >> 10,
                 s->cfg.states_bytes >> 10);
        return -1;
    }
    if (n) {
        rwkv_state_free(n->state);
        sched_turns_free(n->turns, n->n_turns);
    } else if (s->n_named >= SERVE_STATES_MAX) {
        pthread_mutex_unlock(&s->mu);
        rwkv_state_free(copy);
        sched_turns_free(tc, n_tc);
        snprintf(err, errlen, "%d states are kept already: delete one first", SERVE_STATES_MAX);
        return -1;
    } else if (!(grown = realloc(s->named, (s->n_named + 1) * sizeof *grown))) {
        pthread_mutex_unlock(&s->mu);
        rwkv_state_free(copy);
        sched_turns_free(tc, n_tc);
        snprintf(err, errlen, "out of memory for state '%s'", id);
        return -1;
    } else {
        s->named = grown;
        n = &s->named[s->n_named++];
        snprintf(n->id, sizeof n->id, "%s", id);
    }
    n->state = copy;
    n->sep = sep;
    n->turns = tc;
    n->n_turns = n_tc;
    n->bytes = bytes;
    s->named_bytes = others + bytes;
    s->stats.states = s->n_named;
    s->stats.states_bytes = s->named_bytes;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int sched_state_delete(sched *s, const char *id)
{
    struct named *n;

    pthread_mutex_lock(&s->mu);
    n = find_named(s, id);
    if (n) {
        rwkv_state_free(n->state);
        sched_turns_free(n->turns, n->n_turns);
        s->named_bytes -= n->bytes;
        *n = s->named[--s->n_named];
        s->stats.states = s->n_named;
        s->stats.states_bytes = s->named_bytes;
    }
    pthread_mutex_unlock(&s->mu);
    return n ? 0 : -1;
}

char **sched_state_ids(sched *s)
{
    char **ids;
    size_t i;

    pthread_mutex_lock(&s->mu);
    ids = calloc(s->n_named + 1, sizeof *ids);
    for (i = 0; ids && i < s->n_named; i++) {
        if (!(ids[i] = strdup(s->named[i].id))) {
            while (i > 0) {
                free(ids[--i]);
            }
            free(ids);
            ids = NULL;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return ids;
}

void sched_stats(sched *s, struct sched_stats *st)
{
    pthread_mutex_lock(&s->mu);
    *st = s->stats;
    st->parallel = s->cfg.parallel;
    st->active = s->active;
    st->queued = (int)s->queued;
    pthread_mutex_unlock(&s->mu);
}

/* --- reading prompts ---------------------------------------------------- */

/* The cache's figures, copied for sched_stats (the cache is the thread's). */
static void cache_stats_update(sched *s)
{
    struct state_cache_stats cs;

    state_cache_stats(s->cache, &cs);
    pthread_mutex_lock(&s->mu);
    s->stats.cache_entries = cs.entries;
    s->stats.cache_bytes = cs.bytes;
    s->stats.cache_max_bytes = cs.max_bytes;
    s->stats.cache_hits = cs.hits;
    s->stats.cache_tokens_reused = cs.tokens_reused;
    pthread_mutex_unlock(&s->mu);
}

/* Hands the read prompt to the slot's chat: generation starts. */
static void start_reply(sched *s, struct slot *sl)
{
    struct job *j = sl->job;
    struct sampler_settings *cs = chat_settings(sl->c);
    uint64_t seed = cs->seed;
    char err[RWKV_ERRLEN];

    if (chat_begin_at(sl->c, sl->state, sl->logits, j->kind == JOB_COMPLETION, j->prefix, err,
                      sizeof err) < 0) {
        end_job(s, sl, NULL, 500, err);
        return;
    }
    *cs = j->settings;
    if (j->seed_given) {
        /* The chat re-seeds only on a change: the same seed twice must
         * give the same draws, so it changes twice. */
        cs->seed = ~j->settings.seed;
        chat_settings_changed(sl->c);
        cs->seed = j->settings.seed;
    } else {
        cs->seed = seed;
    }
    chat_settings_changed(sl->c);
    sl->n_gen = 0;
    sl->raw_len = 0;
    sl->phase = SLOT_GEN;
}

/* Whether more tokens would take state (RWKV-7b) past the tokens its
 * history may hold: then err says so. */
static int prompt_too_long(const sched *s, const rwkv_state *state, size_t more, char *err,
                           size_t errlen)
{
    size_t max = s->info->history_max, n = rwkv_state_history(state) + more;

    if (!max || n <= max) {
        return 0;
    }
    snprintf(err, errlen, "the conversation would hold %zu tokens, more than the %zu an RWKV-7b "
             "state keeps: start a new one", n, max);
    return 1;
}

/* Reads one piece of the slot's prompt (at most RWKV_SEQ_CHUNK tokens,
 * cut where one rwkv_eval of the whole piece would cut it, so that the
 * state is bit-identical to the chat's). */
static void prefill_step(sched *s, struct slot *sl)
{
    struct job *j = sl->job;
    char err[RWKV_ERRLEN];
    size_t ps, pe, k;
    int piece_done;

    if (atomic_load(&j->cancelled)) {
        end_job(s, sl, NULL, 0, NULL);
        return;
    }
    if (sl->pos == 0 && sl->piece == 0) {
        size_t start = 0;

        if (j->from_id[0]) {
            int got = sched_state_get(s, j->from_id, sl->state, NULL, NULL, NULL);

            if (got == -2) {
                snprintf(err, sizeof err, "out of memory for state '%s'", j->from_id);
                end_job(s, sl, NULL, 507, err);
                return;
            }
            if (got < 0) {
                snprintf(err, sizeof err, "no state named '%s'", j->from_id);
                end_job(s, sl, NULL, 404, err);
                return;
            }
        } else {
            start = state_cache_lookup(s->cache, j->tokens, j->n_tokens, sl->state, sl->logits);
            if (start == 0 && s->cfg.start) {
                if (rwkv_state_copy(sl->state, s->cfg.start) != 0) {
                    end_job(s, sl, NULL, 507, "out of memory for the state's history");
                    return;
                }
            } else if (start == 0) {
                rwkv_state_reset(sl->state);
            }
            cache_stats_update(s);
        }
        pthread_mutex_lock(&s->mu);
        j->cached_tokens = start;
        pthread_mutex_unlock(&s->mu);
        if (prompt_too_long(s, sl->state, j->n_tokens - start, err, sizeof err)) {
            /* Refused before anything is read: the model would refuse the
             * piece that passes the bound, after reading all before it. */
            end_job_too_long(s, sl, err);
            return;
        }
        sl->pos = start;
        while (sl->piece < j->n_pieces && j->piece_end[sl->piece] <= sl->pos) {
            sl->piece++;
        }
    }
    if (sl->pos < j->n_tokens) {
        ps = sl->piece == 0 ? 0 : j->piece_end[sl->piece - 1];
        pe = j->piece_end[sl->piece];
        k = RWKV_SEQ_CHUNK - (sl->pos - ps) % RWKV_SEQ_CHUNK;
        if (k > pe - sl->pos) {
            k = pe - sl->pos;
        }
        piece_done = sl->pos + k == pe;
        if (rwkv_eval(s->ctx, sl->state, j->tokens + sl->pos, k, piece_done ? sl->logits : NULL,
                      0, err, sizeof err) < 0) {
            end_job(s, sl, NULL, 500, err);
            return;
        }
        sl->pos += k;
        pthread_mutex_lock(&s->mu);
        s->stats.prompt_tokens_read += k;
        pthread_mutex_unlock(&s->mu);
        if (piece_done) {
            sl->piece++;
            /* The first piece (the template's intro) is shared by every
             * conversation: kept on its own too. */
            if (sl->piece == 1 && sl->pos < j->n_tokens && !j->from_id[0]) {
                state_cache_put(s->cache, j->tokens, sl->pos, sl->state, sl->logits);
            }
        }
    }
    if (sl->pos == j->n_tokens) {
        if (!j->from_id[0]) {
            state_cache_put(s->cache, j->tokens, j->n_tokens, sl->state, sl->logits);
            cache_stats_update(s);
        }
        start_reply(s, sl);
    }
}

/* --- generating --------------------------------------------------------- */

static int grow(void **buf, size_t *cap, size_t need, size_t size)
{
    size_t nc = *cap ? *cap : 64;
    void *nb;

    if (need <= *cap) {
        return 0;
    }
    while (nc < need) {
        nc *= 2;
    }
    if (!(nb = realloc(*buf, nc * size))) {
        return -1;
    }
    *buf = nb;
    *cap = nc;
    return 0;
}

/* Appends a step's bytes to the job (under s->mu) and looks for its stop
 * strings in the answer; 1 when one was found (the answer is cut before
 * it), -1 when out of memory. */
static int take_output(struct job *j, int reasoning, const char *bytes, size_t n)
{
    size_t i, from, longest = 0, cut = (size_t)-1;
    const char *p;

    if (reasoning) {
        if (grow((void **)&j->reasoning, &j->reasoning_cap, j->reasoning_len + n + 1, 1) < 0) {
            return -1;
        }
        memcpy(j->reasoning + j->reasoning_len, bytes, n);
        j->reasoning_len += n;
        j->reasoning[j->reasoning_len] = '\0';
        return 0;
    }
    if (grow((void **)&j->text, &j->text_cap, j->text_len + n + 1, 1) < 0) {
        return -1;
    }
    memcpy(j->text + j->text_len, bytes, n);
    j->text_len += n;
    j->text[j->text_len] = '\0';
    for (i = 0; i < j->n_stops; i++) {
        size_t len = strlen(j->stops[i]);

        longest = len > longest ? len : longest;
        from = j->text_len - n >= len ? j->text_len - n - len + 1 : 0;
        p = memmem(j->text + from, j->text_len - from, j->stops[i], len);
        if (p && (size_t)(p - j->text) < cut) {
            cut = (size_t)(p - j->text);
        }
    }
    if (cut != (size_t)-1) {
        j->text_len = cut;
        j->text[cut] = '\0';
        j->text_ready = cut;
        return 1;
    }
    /* Bytes that may be the start of a stop string are held back, and a
     * held-back end never splits a UTF-8 character. */
    j->text_ready = j->text_len >= longest ? j->text_len - (longest ? longest - 1 : 0) : 0;
    while (j->text_ready > 0 && j->text_ready < j->text_len &&
           ((unsigned char)j->text[j->text_ready] & 0xC0) == 0x80) {
        j->text_ready--;
    }
    return 0;
}

/* Keeps the state after slot's reply under its job's save_id, with the
 * conversation's turns (those of the state it started from, the
 * request's, the reply); 0, or -1 when the job ended with a 507. */
static int save_named(sched *s, struct slot *sl, int stop)
{
    struct job *j = sl->job;
    struct chat_turn *turns = NULL, reply;
    size_t n = 0;
    char err[RWKV_ERRLEN];
    int sep = stop == CHAT_STOP_END ? 0
            : sl->raw_len > 0 && sl->raw[sl->raw_len - 1] == '\n' ? 1 : 2, rc = 0;

    if (j->kind == JOB_COMPLETION) {
        sep = 0;
    } else {
        reply.role = CHAT_ASSISTANT;
        reply.text = j->text ? j->text : "";
        reply.reasoning = j->reasoning_len > 0 ? j->reasoning : NULL;
        if ((j->from_id[0] ? sched_state_get(s, j->from_id, NULL, NULL, &turns, &n)
                           : turns_append(&turns, &n, s->cfg.start_turns,
                                          s->cfg.n_start_turns)) < 0 ||
            turns_append(&turns, &n, j->turns, j->n_turns) < 0 ||
            turns_append(&turns, &n, &reply, 1) < 0) {
            rc = -1;
            snprintf(err, sizeof err, "out of memory for state '%s'", j->save_id);
        }
    }
    if (rc == 0) {
        rc = sched_state_put(s, j->save_id, chat_eval_state(sl->c), sep, turns, n, err,
                             sizeof err);
    }
    sched_turns_free(turns, n);
    if (rc < 0) {
        end_job(s, sl, NULL, 507, err);
    }
    return rc;
}

/* The reply is over (stop: the chat's reason, or CHAT_STOP_INTERRUPT for a
 * stop string): the state is kept where asked, and in the cache under the
 * tokens a follow-up request will send, then the job ends. */
static void finish_reply(sched *s, struct slot *sl, int stop, const char *finish)
{
    struct job *j = sl->job;
    chat *c = sl->c;
    int32_t *key = NULL, *ids = NULL;
    size_t n_ids = 0;

    if (chat_generating(c)) {
        chat_interrupt(c);
    }
    if (j->save_id[0] && save_named(s, sl, stop) < 0) {
        return;
    }
    if (!j->from_id[0]) {
        const int32_t *hist = j->hist_tokens ? j->hist_tokens : j->tokens;
        size_t n_hist = j->hist_tokens ? j->n_hist : j->n_tokens;
        int thinking = j->prefix || j->reasoning_len > 0;

        /* The next request sends the reply back as its text: it is read
         * as the piece " TEXT\n\n", whose tokens key the state.  Without
         * a think block the state must be that piece's exactly; a
         * thinking reply's state keeps its think block, as the chat's
         * does, and continues from there. */
        if (j->kind == JOB_CHAT && stop == CHAT_STOP_END && (j->text_len > 0 || !thinking) &&
            sl->raw_len >= j->text_len + 2 &&
            memcmp(sl->raw + sl->raw_len - j->text_len - 2, j->text, j->text_len) == 0 &&
            memcmp(sl->raw + sl->raw_len - 2, "\n\n", 2) == 0 &&
            (thinking || (sl->raw_len == j->text_len + 3 && sl->raw[0] == ' '))) {
            char *piece = malloc(j->text_len + 4);

            if (piece) {
                piece[0] = ' ';
                memcpy(piece + 1, j->text, j->text_len);
                memcpy(piece + 1 + j->text_len, "\n\n", 2);
                if (tokenizer_encode(s->cfg.tok, (const uint8_t *)piece, j->text_len + 3, &ids,
                                     &n_ids) < 0) {
                    n_ids = 0;
                }
                free(piece);
            }
        } else if (j->kind == JOB_COMPLETION && sl->n_gen > 0) {
            ids = malloc(sl->n_gen * sizeof *ids);
            if (ids) {
                memcpy(ids, sl->gen, sl->n_gen * sizeof *ids);
                n_ids = sl->n_gen;
            }
        }
        if (n_ids > 0 && (key = malloc((n_hist + n_ids) * sizeof *key))) {
            memcpy(key, hist, n_hist * sizeof *key);
            memcpy(key + n_hist, ids, n_ids * sizeof *key);
            state_cache_put(s->cache, key, n_hist + n_ids, chat_eval_state(c),
                            chat_eval_logits(c));
            cache_stats_update(s);
        }
        free(key);
        free(ids);
    }
    end_job(s, sl, finish, 0, NULL);
}

/* Whether state (RWKV-7b) holds as many tokens as its history may: then
 * err says so. */
static int full_history(const sched *s, const rwkv_state *state, char *err, size_t errlen)
{
    const struct rwkv_info *info = s->info;

    if (!info->history_max || rwkv_state_history(state) < info->history_max) {
        return 0;
    }
    snprintf(err, errlen, "the conversation holds the %zu tokens an RWKV-7b state keeps: "
             "start a new one", info->history_max);
    return 1;
}

/* One round: each prompt being read reads a piece; each reply being
 * generated samples a token, and all those tokens are fed in one batch. */
static void round_run(sched *s)
{
    int i, nb = 0, np = s->cfg.parallel;
    size_t n_vocab = (size_t)s->info->n_vocab;
    char err[RWKV_ERRLEN];

    for (i = 0; i < np; i++) {
        if (s->slots[i].phase == SLOT_PREFILL) {
            prefill_step(s, &s->slots[i]);
        }
    }
    for (i = 0; i < np; i++) {
        struct slot *sl = &s->slots[i];
        int32_t token = 0;
        int r;

        sl->stepped = 0;
        if (sl->phase != SLOT_GEN) {
            continue;
        }
        if (atomic_load(&sl->job->cancelled)) {
            end_job(s, sl, NULL, 0, NULL);
            continue;
        }
        r = chat_step_token(sl->c, &token, err, sizeof err);
        if (r < 0) {
            end_job(s, sl, NULL, 500, err);
            continue;
        }
        if (r == 1 && full_history(s, chat_eval_state(sl->c), err, sizeof err)) {
            /* Refused alone: in the batch it would fail everyone's step. */
            end_job_too_long(s, sl, err);
            continue;
        }
        sl->stepped = 1;
        sl->fed = r == 1;
        if (sl->fed) {
            if (grow((void **)&sl->gen, &sl->cap_gen, sl->n_gen + 1, sizeof *sl->gen) == 0) {
                sl->gen[sl->n_gen++] = token;
            }
            s->batch_states[nb] = chat_eval_state(sl->c);
            s->batch_tokens[nb] = token;
            nb++;
        }
    }
    if (nb > 0) {
        if (rwkv_eval_batch(s->ctx, s->batch_states, s->batch_tokens, (size_t)nb,
                            s->batch_logits, err, sizeof err) < 0) {
            for (i = 0; i < np; i++) {
                if (s->slots[i].stepped) {
                    end_job(s, &s->slots[i], NULL, 500, err);
                }
            }
            return;
        }
        nb = 0;
        for (i = 0; i < np; i++) {
            if (s->slots[i].stepped && s->slots[i].fed) {
                memcpy(chat_eval_logits(s->slots[i].c), s->batch_logits + (size_t)nb * n_vocab,
                       n_vocab * sizeof(float));
                nb++;
            }
        }
    }
    for (i = 0; i < np; i++) {
        struct slot *sl = &s->slots[i];
        const char *out;
        size_t n, blen = 0;
        int rc, hit;

        if (!sl->stepped) {
            continue;
        }
        if (sl->fed && sl->n_gen > 0) {
            const uint8_t *b = tokenizer_token(s->cfg.tok, sl->gen[sl->n_gen - 1], &blen);

            if (b && grow((void **)&sl->raw, &sl->raw_cap, sl->raw_len + blen + 1, 1) == 0) {
                memcpy(sl->raw + sl->raw_len, b, blen);
                sl->raw_len += blen;
            }
        }
        rc = chat_step_fed(sl->c, &out, &n, err, sizeof err);
        if (rc < 0) {
            end_job(s, sl, NULL, 500, err);
            continue;
        }
        pthread_mutex_lock(&s->mu);
        hit = take_output(sl->job, chat_step_part(sl->c) == CHAT_PART_REASONING, out, n);
        if (sl->fed) {
            sl->job->completion_tokens++;
            s->stats.tokens_generated++;
        }
        pthread_cond_broadcast(&s->out_cv);
        pthread_mutex_unlock(&s->mu);
        if (hit < 0) {
            end_job(s, sl, NULL, 500, "out of memory");
        } else if (hit) {
            finish_reply(s, sl, CHAT_STOP_INTERRUPT, "stop");
        } else if (rc > 0) {
            finish_reply(s, sl, rc, rc == CHAT_STOP_LENGTH ? "length" : "stop");
        }
    }
}

/* Gives free slots the jobs that wait (under s->mu). */
static void admit_locked(sched *s)
{
    int i;

    for (i = 0; i < s->cfg.parallel && s->queue; i++) {
        struct slot *sl = &s->slots[i];
        struct job *j;

        if (sl->phase != SLOT_FREE) {
            continue;
        }
        j = s->queue;
        s->queue = j->next;
        if (!s->queue) {
            s->queue_tail = NULL;
        }
        s->queued--;
        sl->job = j;
        sl->phase = SLOT_PREFILL;
        sl->pos = 0;
        sl->piece = 0;
        s->active++;
    }
}

static void *sched_thread(void *arg)
{
    sched *s = arg;
    int i;

    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && !s->queue && s->active == 0) {
            pthread_cond_wait(&s->work_cv, &s->mu);
        }
        if (s->stop) {
            break;
        }
        admit_locked(s);
        pthread_mutex_unlock(&s->mu);
        round_run(s);
        pthread_mutex_lock(&s->mu);
    }
    /* Stopping: what runs or waits ends as cancelled. */
    for (i = 0; i < s->cfg.parallel; i++) {
        if (s->slots[i].phase != SLOT_FREE) {
            atomic_store(&s->slots[i].job->cancelled, 1);
            end_locked(s, &s->slots[i], NULL, 0, NULL);
        }
    }
    while (s->queue) {
        struct job *j = s->queue;

        s->queue = j->next;
        atomic_store(&j->cancelled, 1);
        j->done = 1;
        unref_locked(s, j);
    }
    s->queue_tail = NULL;
    s->queued = 0;
    pthread_cond_broadcast(&s->out_cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* --- lifetime ----------------------------------------------------------- */

sched *sched_new(const struct sched_config *cfg, char *err, size_t errlen)
{
    sched *s = calloc(1, sizeof *s);
    size_t np = (size_t)cfg->parallel, n_vocab;
    int i;

    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    s->info = rwkv_model_info(cfg->model);
    n_vocab = (size_t)s->info->n_vocab;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work_cv, NULL);
    pthread_cond_init(&s->out_cv, NULL);
    s->ctx = rwkv_context_new(cfg->model, cfg->n_threads, err, errlen);
    if (!s->ctx) {
        sched_free(s);
        return NULL;
    }
    s->cache = state_cache_new(cfg->model, cfg->cache_bytes);
    s->slots = calloc(np, sizeof *s->slots);
    s->batch_states = calloc(np, sizeof *s->batch_states);
    s->batch_tokens = calloc(np, sizeof *s->batch_tokens);
    s->batch_logits = malloc(np * n_vocab * sizeof(float));
    if (!s->cache || !s->slots || !s->batch_states || !s->batch_tokens || !s->batch_logits) {
        snprintf(err, errlen, "out of memory");
        sched_free(s);
        return NULL;
    }
    for (i = 0; i < cfg->parallel; i++) {
        struct slot *sl = &s->slots[i];

        sl->c = chat_new(cfg->model, cfg->tok, cfg->tmpl, NULL, err, errlen);
        if (!sl->c) {
            sched_free(s);
            return NULL;
        }
        sl->state = rwkv_state_new(cfg->model);
        sl->logits = malloc(n_vocab * sizeof(float));
        if (!sl->state || !sl->logits) {
            snprintf(err, errlen, "out of memory");
            sched_free(s);
            return NULL;
        }
    }
    s->stats.parallel = cfg->parallel;
    s->stats.cache_max_bytes = cfg->cache_bytes;
    s->stats.states_max_bytes = cfg->states_bytes;
    /* it runs the forward passes: a stack as large as the engine's workers' */
    pthread_attr_t attr;
    size_t stack;
    int have_attr = pthread_attr_init(&attr) == 0, rc;

    if (have_attr && pthread_attr_getstacksize(&attr, &stack) == 0 && stack < ((size_t)1 << 20)) {
        (void)pthread_attr_setstacksize(&attr, (size_t)1 << 20);
    }
    rc = pthread_create(&s->thread, have_attr ? &attr : NULL, sched_thread, s);
    if (have_attr) {
        pthread_attr_destroy(&attr);
    }
    if (rc != 0) {
        errno = rc;
        snprintf(err, errlen, "cannot start the scheduler thread: %s", strerror(errno));
        sched_free(s);
        return NULL;
    }
    s->started = 1;
    return s;
}

void sched_stop(sched *s)
{
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        pthread_cond_signal(&s->work_cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
        s->started = 0;
    }
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_mutex_unlock(&s->mu);
}

void sched_free(sched *s)
{
    int i;
    size_t k;

    if (!s) {
        return;
    }
    sched_stop(s);
    for (i = 0; s->slots && i < s->cfg.parallel; i++) {
        if (s->slots[i].c) {
            chat_free(s->slots[i].c);
        }
        rwkv_state_free(s->slots[i].state);
        free(s->slots[i].logits);
        free(s->slots[i].gen);
        free(s->slots[i].raw);
    }
    for (k = 0; k < s->n_named; k++) {
        rwkv_state_free(s->named[k].state);
        sched_turns_free(s->named[k].turns, s->named[k].n_turns);
    }
    free(s->named);
    free(s->slots);
    free(s->batch_states);
    free(s->batch_tokens);
    free(s->batch_logits);
    state_cache_free(s->cache);
    if (s->ctx) {
        rwkv_context_free(s->ctx);
    }
    pthread_cond_destroy(&s->out_cv);
    pthread_cond_destroy(&s->work_cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
