/*
 * batch.h - rwkv-chat without a terminal UI: messages on stdin, replies on
 * stdout, for scripts and pipes.
 */
#ifndef RWKV_BATCH_H
#define RWKV_BATCH_H

#include <signal.h>
#include <stdio.h>

#include "app/session/options.h"
#include "app/session/session.h"

#define BATCH_EXIT_INTERRUPTED 130

/* What batch_run shares with the caller's signal handlers.  The caller's
 * SIGINT handler sets interrupted: it stops the reply in progress, or the
 * prompt being fed (that message is then dropped), or the read of stdin.
 * Its SIGTERM and SIGHUP handler (not installed where they are ignored, as
 * under nohup) must, while saving is set, only store the signal in
 * deferred; otherwise restore the default action and raise the signal
 * again, so that rwkv-chat dies of it at once (signal() and raise() are
 * async-signal-safe).  batch_run sets saving while it writes a state file
 * and raises a deferred signal, under its default action, once the file is
 * renamed into place. */
struct batch_signals {
    volatile sig_atomic_t interrupted;
    volatile sig_atomic_t saving;
    volatile sig_atomic_t deferred;
};

/* Runs the conversation of session s (or, with opts->complete, one raw completion) over
 * in, writing replies to out flushed per token; diagnostics and command
 * output go to stderr.  Writes opts->state_out at the end, also after
 * SIGINT (SIGTERM and SIGHUP end rwkv-chat as described above: a state
 * file being written is finished, none is begun).  Returns the exit
 * status: 0, 1 (runtime error, one line on stderr) or
 * BATCH_EXIT_INTERRUPTED. */
int batch_run(struct session *s, const struct app_options *opts, FILE *in, FILE *out,
              struct batch_signals *signals);

#endif
