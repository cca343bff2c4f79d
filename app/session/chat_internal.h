/*
 * chat_internal.h - what the files of the chat module share.  They call
 * each other one way only: chat_conversation.c and chat_sections.c
 * (state-file sections) use chat_stream.c (a reply as it streams), and all
 * three use chat_base.c (clock, buffers, shared states, transcript).
 * chat.h, the public API, belongs to no one file: it is implemented by
 * all of them.  Not for use outside app/session/chat_*.c.
 */
#ifndef RWKV_CHAT_INTERNAL_H
#define RWKV_CHAT_INTERNAL_H

#include "app/session/chat.h"
#include "engine/base/escape.h"
#include "engine/sampling/knobs.h"
#include "engine/load/statefile.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define UNDO_BUDGET ((size_t)512 << 20) /* bytes of states kept for undo */
#define UNDO_MIN 2
#define UNDO_MAX 1000
#define CHAT_KNOBS_MAX 65536            /* bytes of a state file's knobs section */

/* A state (and optionally the logits after it), shared by reference. */
struct shared {
    int refs;
    rwkv_state *state;
    float *logits;                  /* NULL when not kept */
};

struct exchange {
    struct shared *before;          /* state before the message */
    struct shared *prompted;        /* after the prompt, with logits */
    size_t n_turns;                 /* transcript length before the message */
    size_t context_tokens;          /* context before the message */
    size_t prompt_tokens;
    double prompt_seconds;
    int sep;                        /* separator owed before the message */
    int raw;
    const char *prefix;             /* what the prompt fed after "Assistant:" */
};

struct transcript {
    struct chat_turn *turns;
    size_t n, cap;
};

struct snapshot {
    char *name;
    struct shared *state;
    struct shared *base;
    struct transcript tr;
    struct sampler_settings settings;
    uint64_t seeded;
    void *smp_state;                /* sampler_state_save: counts, bans, random state */
    size_t smp_len;
    size_t bytes;                   /* what this snapshot holds (snapshot_bytes) */
    struct chat_template tmpl;
    struct shared *tuned;
    char *tuned_name;
    char *system;
    enum chat_think think;
    struct exchange *ex;
    size_t n_ex;
    struct chat_stats stats;
    int sep;
    time_t taken;                   /* when it was taken (wall clock) */
};

struct chat {
    rwkv_model *model;
    rwkv_context *ctx;          /* this conversation's evaluation context */
    const tokenizer *tok;
    int n_vocab;
    struct chat_template tmpl;
    struct sampler_settings settings;
    uint64_t seeded;                /* seed the sampler was last seeded with */
    sampler *smp;
    rwkv_state *state;              /* after the last fed token */
    float *logits;                  /* after the last fed token, when generating */
    struct shared *base;            /* after the intro (or the tuned state) */
    size_t base_tokens;
    struct shared *tuned;           /* state-tuned start (replaces the intro), or NULL */
    char *tuned_name;               /* the file it came from (NULL when none) */
    char *system;                   /* the system turn's text, or NULL */
    enum chat_think think;          /* thinking mode of the next messages */
    char *model_path;               /* the model's file, for state files (or NULL) */
    const char *model_name;         /* its last component */
    struct transcript tr;
    struct exchange *ex;
    size_t n_ex, cap_ex, undo_limit;
    struct snapshot *snaps;
    size_t n_snaps;
    size_t cap_snaps;
    size_t snap_bytes;              /* the sum of their bytes */
    char *current;                  /* current snapshot name */
    chat_progress_fn progress;      /* asked between pieces of a prompt */
    void *progress_ctx;
    chat_stop_fn stop_poll;         /* asked between layers while a prompt is read */
    void *stop_ctx;
    struct chat_stats stats;
    /* "\n" bytes owed before the next "User:" because the last reply did
     * not end with "\n\n" (interrupted, cut at max_tokens, token 0). */
    int sep;
    /* the reply being generated */
    int generating, raw;
    atomic_int interrupt_req, in_step;
    char *reply;                    /* bytes of the sampled tokens */
    size_t reply_len, reply_cap;
    size_t pushed;                  /* reply bytes given to the stream */
    size_t scanned;                 /* reply bytes searched for "\n\n" */
    long end_at;                    /* where "\n\n" starts, or -1 */
    /* A thinking template's reply: c->reply starts with the prefix the
     * prompt fed after "Assistant:", and a think block is found in it. */
    int thinking;
    enum { THINK_UNDECIDED, THINK_NONE, THINK_OPEN, THINK_CLOSED } think_state;
    size_t think_from;              /* reasoning starts (after "<think>") */
    size_t think_to;                /* where "</think>" starts */
    size_t think_scanned;           /* reply bytes searched for "</think>" */
    int reasoning_done;             /* all of the reasoning is in c->shown */
    size_t shown_split;             /* c->shown bytes that are reasoning */
    enum chat_part part;            /* of the bytes chat_step handed out last */
    int pending;                    /* a step crossed into the answer: */
    size_t pending_from;            /* c->shown bytes from here go out next */
    int pending_stop;               /* with this stop */
    struct world_stream stream;
    char *shown;                    /* bytes emitted (the transcript text) */
    size_t shown_len, shown_cap;
    char *out;                      /* what chat_step hands out */
    size_t out_cap;
    double reply_started;
    int step_stop;                  /* step_sample's stop when it fed nothing */
    int step_fed;                   /* chat_step_token gave a token to feed */
    size_t continued_from;          /* reply tokens before a /continue (max_tokens counts
                                       from here) */
    /* The last reply was cut at max_tokens and nothing has touched the
     * state since: chat_continue can go on from cut_at, where the
     * stream stood before the reply's final flush. */
    int cut;
    struct {
        size_t pushed, scanned, think_from, think_to, think_scanned, shown_split, shown_len;
        long end_at;
        int think_state, reasoning_done;
        struct world_stream stream;
    } cut_at;
};


/* chat_base.c */
double chat_now(void);
int chat_is_space(char ch);
int reserve(char **buf, size_t *cap, size_t need);
void oom(char *err, size_t errlen);
struct shared *shared_new(const rwkv_state *st, const float *logits, int n_vocab);
struct shared *shared_ref(struct shared *s);
void unref(struct shared *s);
void transcript_truncate(struct transcript *tr, size_t n);
void transcript_free(struct transcript *tr);
int transcript_add(struct transcript *tr, enum chat_role role, const char *text, size_t len);
int transcript_set_reasoning(struct transcript *tr, const char *text, size_t len);
int transcript_copy(struct transcript *dst, const struct transcript *src);

/* chat_stream.c */
void chat_begin_reply(chat *c, int raw, const char *prefix);
void settle(chat *c);

/* chat_conversation.c, for chat_sections.c */
int template_copy(struct chat_template *dst, const struct chat_template *src);
void snapshot_release(struct snapshot *s);
size_t snapshot_bytes(const struct snapshot *s);
struct shared *make_base(chat *c, const struct chat_template *t, const struct shared *tuned,
                          const char *system, size_t *n_tokens, char *err, size_t errlen);
void exchanges_clear(chat *c);
void set_current(chat *c, const char *name);

#endif
