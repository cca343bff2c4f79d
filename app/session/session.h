/*
 * session.h - one conversation made ready for a front end.
 *
 * session_open does the whole start-up that any front end (the TUI,
 * --batch, a future server) needs: the random seed, --data-dir, the model
 * (found by name or path, loaded), the vocabulary, the chat template, the
 * chat itself, the state-tuned start and --state-in / --resume.  It never
 * prints: a failure is one line in err, and what --verbose would say comes
 * through the note callback, in order; the front end prints both.
 */
#ifndef RWKV_SESSION_H
#define RWKV_SESSION_H

#include <stddef.h>

#include "app/session/chat.h"
#include "app/session/options.h"

struct session {
    rwkv_model *model;
    tokenizer *tok;
    chat *chat;
    char label[512];        /* "rwkv7-tiny-chat.pth  RWKV-7 18.2M fp32": status line, /info */
    int demo_model;         /* the bundled demo model is loaded */
    const struct rwkv_lora *lora;   /* the adapters merged at load (opts' list) */
    int n_lora;
    /* The model's session file (paths_session_file): --resume reads it,
     * the TUI saves the conversation there when it quits. */
    char *session_file;
};

/* Receives one line of what --verbose shows (without "rwkv-chat: "). */
typedef void (*session_note_fn)(void *arg, const char *line);

/* Opens the session opts describes (opts was filled by options_parse;
 * session_open sets opts->sampling.seed when no seed was given and
 * opts->model_from_user to 0 for the demo model).  note (may be NULL) is
 * called only when opts->verbose.  Returns 0, or -1 with one line in err;
 * either way s is to be closed with session_close. */
int session_open(struct session *s, struct app_options *opts, session_note_fn note,
                 void *note_arg, char *err, size_t errlen);
/* session_open telling the model's load progress to progress (rwkv.h;
 * NULL: none) whatever opts->verbose: the front end decides what to show. */
int session_open_progress(struct session *s, struct app_options *opts, session_note_fn note,
                          void *note_arg, rwkv_load_progress_fn progress, void *progress_arg,
                          char *err, size_t errlen);
void session_close(struct session *s);

#endif
