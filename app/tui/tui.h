/*
 * tui.h - the curses interface of rwkv-chat.
 *
 * Panels (transcript, input, status, knobs, snapshots) drawn around a chat
 * session that knows nothing about curses.  Replies stream one token per
 * loop iteration; keys are read between tokens.
 */
#ifndef RWKV_TUI_H
#define RWKV_TUI_H

#include "app/session/session.h"

struct app_options;

/* Runs the interface on the terminal until the user quits, then saves the
 * conversation to s->session_file (one per model) and says where it is.
 * s->label names the model in the status line (a file name).  The
 * terminal is restored on every exit path.  Returns the exit status for main(). */
int tui_run(struct session *s, const struct app_options *opts);

#endif
