/*
 * batch.h - rwkv-chat without a terminal UI: messages on stdin, replies on
 * stdout, for scripts and pipes.
 */
#ifndef RWKV_BATCH_H
#define RWKV_BATCH_H

#include <signal.h>
#include <stdio.h>

#include "app/chat.h"
#include "app/options.h"

#define BATCH_EXIT_INTERRUPTED 130

/* Runs the conversation (or, with opts->complete, one raw completion) over
 * in, writing replies to out flushed per token; diagnostics and command
 * output go to stderr.  *interrupted is set by the caller's SIGINT handler:
 * it stops the reply in progress, or the prompt being fed (that message is
 * then dropped).  Writes opts->state_out at the end (also when
 * interrupted).  While it runs, SIGTERM and SIGHUP (unless ignored) stop
 * the work at the next token or piece of prompt, a save in progress is
 * finished, and the signal is raised again on return (no state_out).
 * Returns the exit status: 0, 1 (runtime error, one line on stderr) or
 * BATCH_EXIT_INTERRUPTED. */
int batch_run(chat *c, const struct app_options *opts, const char *model_label, FILE *in,
              FILE *out, volatile sig_atomic_t *interrupted);

#endif
