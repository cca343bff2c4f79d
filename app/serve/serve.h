/*
 * serve.h - rwkv-chat --serve: an OpenAI-compatible HTTP API on GNU
 * libmicrohttpd (README and rwkv-chat(1) list the endpoints).
 */
#ifndef RWKV_SERVE_H
#define RWKV_SERVE_H

#include "app/session/options.h"
#include "app/session/session.h"

/* Serves s's model until SIGINT or SIGTERM; prints its own messages (the
 * address it listens on, errors) on stderr.  Returns the exit status. */
int serve_run(struct session *s, const struct app_options *opts);

#endif
