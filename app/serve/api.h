/*
 * api.h - the OpenAI-compatible bodies: a request's JSON into a job (the
 * chat template's turns as pieces of tokens, the sampling fields checked
 * by the knob table), and a job's results into responses, stream chunks
 * and error objects.  Never prints.
 */
#ifndef RWKV_SERVE_API_H
#define RWKV_SERVE_API_H

#include <stddef.h>

#include "app/serve/sched.h"
#include "app/session/chat.h"

/* Where a request without state_from starts: the template's intro is
 * read; a state-tuned start replaces it (--state-tuned); or a saved
 * conversation continues (--state-in: no intro, no system turn, its owed
 * newlines first). */
enum api_start { API_START_INTRO, API_START_TUNED, API_START_CONVERSATION };

/* What requests are read against. */
struct api_config {
    const tokenizer *tok;
    const struct chat_template *tmpl;
    const char *system;                 /* --system, or NULL */
    enum chat_think think;              /* --think */
    struct sampler_settings defaults;   /* the options' knobs */
    int max_tokens_cap;
    const char *model_name;
    sched *s;                           /* for the sep of a named state (NULL: 0) */
    enum api_start start;
    int start_sep;                      /* API_START_CONVERSATION: "\n" bytes owed */
};

/* An OpenAI error object: {"error":{"message","type","param","code"}}. */
struct api_error {
    int status;                 /* HTTP status */
    const char *type;           /* "invalid_request_error", ... */
    const char *code;           /* NULL: null */
    char param[64];             /* "": null */
    char message[768];
};

/* Fills e (status, type, code, param "" or a field name); returns -1. */
int api_fail(struct api_error *e, int status, const char *type, const char *code,
             const char *param, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* The error object as JSON text (malloc'd; NULL when out of memory). */
char *api_error_json(const struct api_error *e);

/* Reads a /v1/chat/completions (JOB_CHAT) or /v1/completions body into
 * j, and whether the client asked for a stream (and usage in it).  0, or
 * -1 with e filled. */
int api_parse(const struct api_config *a, enum job_kind kind, const char *body, size_t len,
              struct job *j, int *stream, int *include_usage, struct api_error *e);

/* The whole response of a finished job (read under sched_lock). */
char *api_response_json(const struct api_config *a, const struct job *j, const char *id,
                        long created);
/* One stream chunk: text (n bytes) as content, or as reasoning_content;
 * role: the chat's first chunk (role "assistant"); finish: the last
 * chunk's reason, or NULL. */
char *api_chunk_json(const struct api_config *a, enum job_kind kind, const char *id,
                     long created, int role, const char *text, size_t n, int reasoning,
                     const char *finish);
/* The usage chunk that ends a stream with include_usage. */
char *api_usage_json(const struct api_config *a, const struct job *j, const char *id,
                     long created);
/* GET /v1/models. */
char *api_models_json(const struct api_config *a, long created);

/* Whether id is a valid state id ([A-Za-z0-9_.-], 1 to SERVE_ID_MAX). */
int api_valid_id(const char *id);

#endif
