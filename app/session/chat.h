/*
 * chat.h - a conversation with an RWKV model, independent of any UI.
 *
 * The TUI and --batch both drive this.  A chat owns the model state after
 * the last fed token, the transcript, the sampler settings, the chat
 * template (persona) and named snapshots.  Feeding is incremental: a new
 * message costs only its own tokens.  Every fallible call returns 0 or -1
 * with one line in err (chat_send also CHAT_INTERRUPTED).
 */
#ifndef RWKV_CHAT_H
#define RWKV_CHAT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "engine/rwkv.h"
#include "app/session/template.h"
#include "engine/sampling/sampler.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/world.h"

enum chat_role { CHAT_USER, CHAT_ASSISTANT };

struct chat_turn {
    enum chat_role role;
    char *text;             /* normalised user text / stripped reply (its answer) */
    char *reasoning;        /* a reply's think block, stripped; NULL when none or empty */
};

enum chat_stop {
    CHAT_STOP_NONE = 0,     /* still generating */
    CHAT_STOP_END,          /* end of the assistant turn ("\n\n") */
    CHAT_STOP_LENGTH,       /* max_tokens reached */
    CHAT_STOP_INTERRUPT,    /* caller stopped it */
    CHAT_STOP_EOS,          /* token 0 (only when not banned) */
};
const char *chat_stop_name(enum chat_stop stop);  /* "end", "length", ... */

/* Snapshots kept at most, and the memory they may hold together (each holds
 * the model state, the sampler's counts and random state, the transcript). */
#define CHAT_SNAPSHOTS_MAX 1000
#define CHAT_SNAPSHOT_BYTES ((size_t)1 << 30)

/* Thinking modes of a thinking template (RWKV-LM's RWKV7-G1x templates):
 * what follows "Assistant:" (and the message) in the prompt. */
enum chat_think {
    CHAT_THINK_AUTO = 0,    /* "Assistant:": the model decides */
    CHAT_THINK_OFF,         /* "Assistant: <think>\n</think": a direct answer */
    CHAT_THINK_ON,          /* "Assistant: <think": it thinks first */
    CHAT_THINK_A_BIT,       /* "MSG (think a bit)" ... " <think": short thinking */
    CHAT_THINK_A_LOT,       /* "MSG (think a lot)" ... " <think": long thinking */
};
/* "auto", "off", "on", "a-bit", "a-lot". */
const char *chat_think_name(enum chat_think mode);
/* Parses those names (also "a_bit", "a_lot"); 0, or -1. */
int chat_think_parse(const char *name, enum chat_think *mode);

/* Timings and counts of the last reply (for the status line and JSONL). */
struct chat_stats {
    size_t prompt_tokens;   /* tokens fed for the last message */
    size_t reply_tokens;
    double prompt_seconds;
    double reply_seconds;
    size_t context_tokens;  /* tokens fed since reset */
};

typedef struct chat chat;

/* The chat borrows model and tok (they must outlive it); the template is
 * copied (NULL: no intro, "User"/"Assistant") and its intro fed at once;
 * s NULL: sampler_defaults.  Token 0 and ids the tokenizer cannot decode
 * are banned.  NULL with err on failure. */
chat *chat_new(rwkv_model *model, const tokenizer *tok, const struct chat_template *t,
               const struct sampler_settings *s, char *err, size_t errlen);
void chat_free(chat *c);

/* Settings are live: changes apply to the next sampled token. */
struct sampler_settings *chat_settings(chat *c);
void chat_settings_changed(chat *c);   /* call after editing settings */
/* Bans (or unbans) a token id; token 0 (end of text) is banned by default,
 * as in ChatRWKV.  0, or -1 with err for an id outside the vocabulary. */
int chat_ban(chat *c, int32_t id, int banned, char *err, size_t errlen);
const struct chat_template *chat_get_template(const chat *c);
/* Switches persona: new template, conversation reset. */
int chat_set_template(chat *c, const struct chat_template *t, char *err, size_t errlen);
/* Sets the system turn fed at the start ("System: TEXT\n\n" after the
 * intro or the tuned start; TEXT normalised like a message); NULL or
 * empty: none.  The conversation is reset.  0, or -1 with err (nothing
 * changed). */
int chat_set_system(chat *c, const char *text, char *err, size_t errlen);
const char *chat_get_system(const chat *c);    /* NULL when none */
/* The thinking mode of the next messages (used by thinking templates). */
void chat_set_think(chat *c, enum chat_think mode);
enum chat_think chat_get_think(const chat *c);

/* Normalises text the way ChatRWKV does (strip; runs of newlines -> one
 * "\n").  Returns malloc'd text. */
char *chat_normalize(const char *text);

/* Prompts are fed in pieces of this many tokens, so that a long one can
 * be stopped.  RWKV is exact in pieces, and pieces the size of the
 * engine's own (RWKV_SEQ_CHUNK) give results bit-identical to one
 * rwkv_eval and cost nothing extra. */
#define CHAT_PROMPT_CHUNK RWKV_SEQ_CHUNK
/* chat_send / chat_send_raw: the progress callback stopped the prompt. */
#define CHAT_INTERRUPTED (-2)
/* Asked before each piece of a prompt longer than one piece, with the
 * tokens fed so far and the prompt's total; nonzero stops the prompt. */
typedef int (*chat_progress_fn)(void *ctx, size_t fed, size_t total);
/* Sets (fn NULL: removes) the callback of chat_send and chat_send_raw. */
void chat_set_progress(chat *c, chat_progress_fn fn, void *ctx);
/* Asked often while any prompt is read (between the engine's layers:
 * keep it cheap), whatever its length; nonzero stops the prompt at once
 * (within one layer over one piece), with the same outcome as a stop by
 * the progress callback: CHAT_INTERRUPTED, and the conversation rolled
 * back to before the message. */
typedef int (*chat_stop_fn)(void *ctx);
/* Sets (fn NULL: removes) that callback. */
void chat_set_stop_poll(chat *c, chat_stop_fn fn, void *ctx);

/* Starts a reply to user_text: records the turn, feeds
 * "USER: MSG\n\nASSISTANT:" (normalised MSG, in pieces of
 * CHAT_PROMPT_CHUNK tokens) and prepares generation.  A reply still in
 * progress is first ended as interrupted.  "empty message" if nothing is
 * left after normalising.  Returns 0, -1 with err, or CHAT_INTERRUPTED
 * (err says how far it got) when the progress callback stopped the
 * prompt: the message is dropped and state, transcript and undo stack are
 * as before it. */
int chat_send(chat *c, const char *user_text, char *err, size_t errlen);
/* Raw completion: feeds prompt bytes as they are (no template).  The
 * reply is not stripped (a leading space stays); it still ends at "\n\n"
 * (not included), max_tokens, an interrupt or token 0.  Returns as
 * chat_send. */
int chat_send_raw(chat *c, const char *prompt, size_t len, char *err, size_t errlen);
/* Generates one token.  *out and *out_len receive the printable bytes (complete
 * UTF-8 characters; may be empty) valid until the next call.  Returns
 * CHAT_STOP_NONE while the reply goes on, the stop reason when it ended,
 * or -1 on error.  After a stop the reply is in the transcript and the
 * state is consistent.  The bytes handed out over a whole reply are
 * exactly the transcript's reply text: leading and trailing whitespace is
 * held back (trailing until something follows it), and the "\n\n" that
 * ends the turn is never shown (it stays in the model's context). */
int chat_step(chat *c, const char **out, size_t *out_len, char *err, size_t errlen);
/* Which part of the reply the bytes of the last chat_step belong to.  With
 * a thinking template a reply that opens with "<think" is its think block
 * (the reasoning, stripped, without the tags) and then the answer after
 * "</think>"; each chat_step hands out bytes of one part only, and the
 * bytes of each part over a whole reply are exactly the turn's reasoning
 * and text.  Inside a think block "\n\n" does not end the turn; after
 * it, the first "\n\n" once the answer has begun does. */
enum chat_part { CHAT_PART_ANSWER = 0, CHAT_PART_REASONING };
enum chat_part chat_step_part(const chat *c);

/* Continues the last reply where max_tokens cut it: the same reply goes
 * on (chat_step, the same stop rules, max_tokens more tokens), and when
 * it stops the transcript's last turn is the whole reply; its tokens and
 * time add to the reply's in chat_stats.  Only right after the cut:
 * anything that changes the state (a message, /undo, /regen, /restore,
 * /load, /reset) ends that chance.  0, or -1 with err ("the last reply
 * was not cut at max_tokens ..."). */
int chat_continue(chat *c, char *err, size_t errlen);
/* The reply in progress as handed out so far (a continued reply's
 * earlier part included): its reasoning or its answer; "" when none. */
const char *chat_reply_so_far(const chat *c, enum chat_part part, size_t *len);

/* For a front end that advances many chats in one rwkv_eval_batch (the
 * server).  chat_begin_at starts a reply from an outside state and its
 * logits (the transcript and undo steps are cleared; raw and prefix as in
 * chat_send_raw / a thinking template's prefix).  A step is then cut in
 * two: chat_step_token returns 1 with *token, which the caller feeds into
 * chat_eval_state(c) with the logits into chat_eval_logits(c); 0 when
 * there is no token to feed; -1 with err (the reply is over).  After 1 or
 * 0 the caller calls chat_step_fed, which returns what chat_step does.
 * chat_step_token + feeding + chat_step_fed equals one chat_step. */
int chat_begin_at(chat *c, const rwkv_state *state, const float *logits, int raw,
                  const char *prefix, char *err, size_t errlen);
int chat_step_token(chat *c, int32_t *token, char *err, size_t errlen);
int chat_step_fed(chat *c, const char **out, size_t *out_len, char *err, size_t errlen);
rwkv_state *chat_eval_state(chat *c);
float *chat_eval_logits(chat *c);
/* Ends the reply in progress as interrupted (partial reply kept).  Called
 * between chat_step calls it ends the reply at once; called while a
 * chat_step runs (another thread) the reply ends when that step returns. */
void chat_interrupt(chat *c);
/* Async-signal-safe: only asks the next chat_step to end the reply as
 * interrupted (it returns CHAT_STOP_INTERRUPT without generating). */
void chat_request_stop(chat *c);
int chat_generating(const chat *c);
/* The logits after the last fed token (n_vocab floats): what the next
 * token is sampled from while a reply is in progress. */
const float *chat_logits(const chat *c);
/* The model state after the last fed token. */
const rwkv_state *chat_state(const chat *c);

/* Transcript. */
size_t chat_turn_count(const chat *c);
const struct chat_turn *chat_turn_at(const chat *c, size_t i);
const struct chat_stats *chat_get_stats(const chat *c);

/* Conversation operations (cheap: snapshot copies, no re-feeding).  Each
 * exchange keeps the state before its message and after its prompt; the
 * oldest are dropped past a memory budget (512 MiB of states, at least 2
 * exchanges).  A reply in progress is ended as interrupted first. */
void chat_reset(chat *c);              /* back to the template's intro */
int chat_undo(chat *c, char *err, size_t errlen);       /* drop last exchange */
int chat_regen(chat *c, char *err, size_t errlen);      /* redo last reply */
/* Drops the last exchange and returns its user text (malloc'd) for editing. */
char *chat_edit_last(chat *c, char *err, size_t errlen);
/* Replaces the last exchange's message with user_text and starts the reply
 * to it (chat_edit_last then chat_send, as one operation).  Returns as
 * chat_send; on any failure (CHAT_INTERRUPTED included) the last exchange
 * is kept: state, transcript, undo stack and counts are as before. */
int chat_edit_send(chat *c, const char *user_text, char *err, size_t errlen);

/* Named in-memory snapshots: state, transcript, template, settings,
 * sampler (random state and counts) and the undo stack.  Taking one under
 * an existing name replaces it; refused while a reply is generated, and
 * past CHAT_SNAPSHOTS_MAX snapshots or CHAT_SNAPSHOT_BYTES of them.
 * Restoring one branches the conversation from there.  State files keep
 * them (all but their undo stacks): chat_load replaces the snapshots with
 * the file's. */
int chat_snapshot_take(chat *c, const char *name, char *err, size_t errlen);
int chat_snapshot_restore(chat *c, const char *name, char *err, size_t errlen);
int chat_snapshot_delete(chat *c, const char *name, char *err, size_t errlen);
size_t chat_snapshot_count(const chat *c);
const char *chat_snapshot_name(const chat *c, size_t i);
size_t chat_snapshot_turns(const chat *c, size_t i);   /* transcript turns it holds */
time_t chat_snapshot_time(const chat *c, size_t i);    /* when it was taken */
int chat_snapshot_exists(const chat *c, const char *name);
const char *chat_current_snapshot(const chat *c);  /* NULL if none */

/* State files (format in share/state-format.md): atomic save (refused
 * while a reply is generated); load refuses another model, a
 * truncated/corrupt file or a newer version with one line and then
 * changes nothing.  The undo stack is not saved; the snapshots are (a
 * file from before they were kept leaves those in memory as they are). */
int chat_save(chat *c, const char *path, char *err, size_t errlen);
int chat_load(chat *c, const char *path, char *err, size_t errlen);
/* Starts from a state-tuned initial state file (.pth time_state,
 * rwkv_state_load_tuned): it replaces the template's intro (as in
 * ChatRWKV) and the conversation is reset to it; /reset returns to it and
 * state files keep it.  path NULL: back to the template's intro.  On
 * failure (a file that does not fit the model: err names the tensor)
 * nothing changes. */
int chat_load_tuned_state(chat *c, const char *path, char *err, size_t errlen);
/* The file the tuned start came from, or NULL when there is none. */
const char *chat_tuned_name(const chat *c);
/* The tuned start's state (what replaces the intro), or NULL. */
const rwkv_state *chat_tuned_state(const chat *c);
/* The "\n" bytes (0 to 2) owed before the next message because the last
 * reply did not end its turn. */
int chat_owed_newlines(const chat *c);
/* Makes c the conversation turns[0..n) (texts and reasoning copied) whose
 * state after it is state, with sep "\n" bytes owed before the next
 * message; template, settings, start and system stay c's, the undo steps
 * are cleared (the server writes its named states with chat_save so).
 * 0, or -1 with err (nothing changed). */
int chat_adopt(chat *c, const rwkv_state *state, const struct chat_turn *turns, size_t n,
               int sep, char *err, size_t errlen);
/* The turns of a state file's transcript (texts and reasoning, read as
 * chat_load reads them) into *turns (n of them; the caller frees each
 * text and reasoning, then the array); a file without a transcript (a
 * state file of an older server) has none.  0, or -1 with err (name in it)
 * for a corrupt section. */
struct rwkv_statefile;
int chat_file_turns(const struct rwkv_statefile *sf, const char *name, struct chat_turn **turns,
                    size_t *n, char *err, size_t errlen);
/* The model's file (path NULL: none).  State files chat_save writes keep
 * its name ("rwkv7-g1a-1.5b.pth", the "model" section) and path
 * ("model_path"); chat_load names the model of a file another model
 * saved.  0, or -1 out of memory. */
int chat_set_model_file(chat *c, const char *path);
const char *chat_model_name(const chat *c);   /* the file name; NULL when not set */
/* The model a state file records: its file name (the "model" section) or,
 * with want_path, its path ("model_path"), into out; "" when the file does
 * not say (files from before it was kept, or not a state file). */
void chat_file_model(const char *path, int want_path, char *out, size_t outlen);

#endif
