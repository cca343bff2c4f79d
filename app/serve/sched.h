/*
 * sched.h - the server's scheduler: one thread owns the evaluation
 * context and advances every active conversation together.
 *
 * HTTP threads fill a job (the prompt's tokens in pieces, the sampling
 * settings) and submit it; up to `parallel` jobs run at once, the rest
 * wait in order.  Each round, a job still reading its prompt reads one
 * piece of it (starting from the longest cached prefix, cache.h), and the
 * jobs that generate sample their next tokens, which are fed in one
 * rwkv_eval_batch call.  What a job produces is read under sched_lock;
 * sched_wait sleeps until there is more.  A job whose HTTP side goes away
 * is cancelled and stops at the next round.  Named states (the server's
 * /v1/states) live here too.  Never prints.
 */
#ifndef RWKV_SERVE_SCHED_H
#define RWKV_SERVE_SCHED_H

#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

#include "app/session/chat.h"
#include "app/session/template.h"
#include "engine/rwkv.h"
#include "engine/sampling/knobs.h"
#include "tokenizer/tokenizer.h"

#define SERVE_STOPS_MAX 4       /* stop strings of one request */
#define SERVE_STOP_BYTES 256    /* bytes of one stop string */
#define SERVE_ID_MAX 64         /* bytes of a state id: [A-Za-z0-9_.-] */
#define SERVE_STATES_MAX 256    /* named states kept */

enum job_kind { JOB_CHAT, JOB_COMPLETION };

struct job {
    /* Filled before sched_submit, read-only afterwards. */
    enum job_kind kind;
    int32_t *tokens;            /* the whole prompt (malloc'd) */
    size_t n_tokens;
    size_t *piece_end;          /* piece i is tokens[piece_end[i-1] .. piece_end[i]) */
    size_t n_pieces;
    char *prefix;               /* fed after "Assistant:" (thinking templates), or NULL */
    int32_t *hist_tokens;       /* the prompt as a follow-up sends it back (a thinking
                                   template's last turn without its think prefix), or
                                   NULL: tokens */
    size_t n_hist;
    struct chat_turn *turns;    /* the request's messages (normalised), for a named state */
    size_t n_turns;
    struct sampler_settings settings;
    int seed_given;
    char *stops[SERVE_STOPS_MAX];
    size_t n_stops;
    char from_id[SERVE_ID_MAX + 1];     /* start from this named state ("": no) */
    char save_id[SERVE_ID_MAX + 1];     /* save the state after the reply ("": no) */

    /* Written by the scheduler, read under sched_lock. */
    char *text;                 /* the answer so far (stop strings cut off) */
    size_t text_len, text_cap;
    size_t text_ready;          /* bytes of text no stop string can take back */
    char *reasoning;            /* a thinking template's think block */
    size_t reasoning_len, reasoning_cap;
    size_t prompt_tokens, cached_tokens, completion_tokens;
    int done;
    int status;                 /* 0, or the HTTP status of err */
    const char *code;           /* err's OpenAI error code when it has its own, or NULL */
    char err[512];
    const char *finish;         /* "stop" or "length" */

    /* Private to sched.c. */
    atomic_int cancelled;
    int refs;
    struct job *next;
};

/* A new empty job (one reference, the caller's); NULL when out of memory. */
struct job *job_new(void);

struct sched_config {
    rwkv_model *model;
    const tokenizer *tok;
    const struct chat_template *tmpl;
    int parallel;               /* jobs generated at once */
    size_t cache_bytes;         /* the state cache's budget */
    size_t states_bytes;        /* the named states' budget */
    const rwkv_state *start;    /* where a request starts (NULL: all zeros) */
    const struct chat_turn *start_turns;        /* the conversation start holds */
    size_t n_start_turns;
    size_t queue_max;           /* jobs that may wait */
    int n_threads;              /* of the evaluation context; 0: default */
};

typedef struct sched sched;

/* Starts the scheduler thread.  NULL with err on failure. */
sched *sched_new(const struct sched_config *cfg, char *err, size_t errlen);
/* Stops the thread: jobs in flight or waiting end as cancelled, and
 * later submissions are refused.  The other calls stay valid. */
void sched_stop(sched *s);
/* sched_stop, then frees it all (no HTTP thread may use s any more). */
void sched_free(sched *s);

/* Queues j (the scheduler takes a reference).  0, or -1 with err when the
 * queue is full (503). */
int sched_submit(sched *s, struct job *j, char *err, size_t errlen);
/* Asks j to stop (a client went away); it ends at the next round. */
void sched_cancel(sched *s, struct job *j);
/* Drops the caller's reference; a job not done yet is cancelled. */
void job_release(sched *s, struct job *j);

void sched_lock(sched *s);
void sched_unlock(sched *s);
/* Under sched_lock: sleeps until j is done, has more than text_seen ready
 * bytes or more than reasoning_seen bytes of reasoning, or ms passed. */
void sched_wait(sched *s, const struct job *j, size_t text_seen, size_t reasoning_seen,
                int ms);

struct sched_stats {
    int parallel, active, queued;
    uint64_t requests, cancelled, failed;
    uint64_t tokens_generated, prompt_tokens, prompt_tokens_read;
    size_t cache_entries, cache_bytes, cache_max_bytes;
    uint64_t cache_hits, cache_tokens_reused;
    size_t states, states_bytes, states_max_bytes;
};
void sched_stats(sched *s, struct sched_stats *st);

/* Named states: a copy of the state after a job (its save_id), or one
 * uploaded, with the conversation's turns.  sep: "\n" bytes a chat owes
 * before its next turn (the reply did not end its turn).  They hold at
 * most states_bytes together (the state, the turns' text) and
 * SERVE_STATES_MAX of them.  get: 0, -1 when there is no such id, or -2
 * when out of memory for the copies; turns (when not NULL) receives a
 * malloc'd copy (sched_turns_free).
 * put: 0, or -1 with err (past the budget or the count: 507, out of
 * memory).  delete: 0 or -1. */
int sched_state_get(sched *s, const char *id, rwkv_state *state, int *sep,
                    struct chat_turn **turns, size_t *n_turns);
int sched_state_put(sched *s, const char *id, const rwkv_state *state, int sep,
                    const struct chat_turn *turns, size_t n_turns, char *err, size_t errlen);
void sched_turns_free(struct chat_turn *turns, size_t n);
int sched_state_delete(sched *s, const char *id);
/* The ids, a NULL-terminated malloc'd array of malloc'd strings (free
 * each and the array); NULL when out of memory. */
char **sched_state_ids(sched *s);

#endif
