/* serve.c - the HTTP side of --serve: routes, authentication, limits,
 * server-sent events; the work is sched.c's, the bodies api.c's. */
#include "app/serve/serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "app/serve/api.h"
#include "app/serve/sched.h"
#include "engine/load/statefile.h"

#define STATE_SECTION "serve"           /* a named state's "sep" byte */

struct server {
    struct api_config api;
    sched *s;
    rwkv_model *model;
    chat *files;                        /* writes downloaded states (chat_save) */
    pthread_mutex_t files_mu;
    const char *api_key;
    size_t max_body;
    size_t max_state_body;              /* a state file upload */
    char tmpdir[256];                   /* state files pass through here */
    atomic_ulong next_id;
};

/* One request's body as it arrives. */
struct request {
    char *body;
    size_t len, cap;
    int too_big;
};

/* A streamed response (server-sent events). */
struct stream {
    struct server *srv;
    struct job *j;
    struct MHD_Connection *conn;
    char id[64];
    long created;
    int include_usage;
    int role_sent;
    size_t text_sent, reasoning_sent;
    int finished;
    char *buf;                          /* events not yet handed to MHD */
    size_t len, off, cap;
};

/* --- responses ----------------------------------------------------------- */

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned status, const char *type,
                                 const char *body, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body,
                                                             MHD_RESPMEM_MUST_COPY);
    enum MHD_Result rc;

    if (!r) {
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* Sends json (malloc'd, freed here; NULL: out of memory, a 500). */
static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned status, char *json)
{
    enum MHD_Result rc;

    if (!json) {
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":"
                                  "\"server_error\",\"param\":null,\"code\":null}}";

        return send_text(conn, 500, "application/json", oom, sizeof oom - 1);
    }
    rc = send_text(conn, status, "application/json", json, strlen(json));
    free(json);
    return rc;
}

static enum MHD_Result send_error(struct MHD_Connection *conn, const struct api_error *e)
{
    return send_json(conn, (unsigned)e->status, api_error_json(e));
}

static enum MHD_Result fail(struct MHD_Connection *conn, int status, const char *type,
                            const char *code, const char *param, const char *message)
{
    struct api_error e;

    api_fail(&e, status, type, code, param, "%s", message);
    return send_error(conn, &e);
}

/* The error code of a failed job: its own, else its HTTP status's. */
static const char *job_error_code(const struct job *j)
{
    return j->code              ? j->code
           : j->status == 404   ? "state_not_found"
           : j->status == 507   ? "insufficient_storage" : NULL;
}

/* The error type of a job's status: the client's (4xx) or the server's. */
static const char *job_error_type(int status)
{
    return status >= 400 && status < 500 ? "invalid_request_error" : "server_error";
}

/* Whether the client of conn has closed its side (it went away). */
static int hung_up(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct pollfd p;

    if (!ci) {
        return 0;
    }
    p.fd = ci->connect_fd;
    p.events = POLLRDHUP;
    p.revents = 0;
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* --- /health, /v1/models ------------------------------------------------- */

static enum MHD_Result health(struct server *srv, struct MHD_Connection *conn)
{
    struct sched_stats st;
    char buf[2048];

    sched_stats(srv->s, &st);
    snprintf(buf, sizeof buf,
             "{\"status\":\"ok\",\"model\":\"%s\",\"parallel\":%d,\"active\":%d,\"queued\":%d,"
             "\"requests\":%llu,\"cancelled\":%llu,\"failed\":%llu,\"tokens_generated\":%llu,"
             "\"prompt_tokens\":%llu,\"prompt_tokens_read\":%llu,"
             "\"cache\":{\"entries\":%zu,\"bytes\":%zu,\"max_bytes\":%zu,\"hits\":%llu,"
             "\"tokens_reused\":%llu},\"states\":%zu,\"states_bytes\":%zu,"
             "\"states_max_bytes\":%zu}",
             srv->api.model_name, st.parallel, st.active, st.queued,
             (unsigned long long)st.requests, (unsigned long long)st.cancelled,
             (unsigned long long)st.failed, (unsigned long long)st.tokens_generated,
             (unsigned long long)st.prompt_tokens, (unsigned long long)st.prompt_tokens_read,
             st.cache_entries, st.cache_bytes, st.cache_max_bytes,
             (unsigned long long)st.cache_hits, (unsigned long long)st.cache_tokens_reused,
             st.states, st.states_bytes, st.states_max_bytes);
    return send_text(conn, 200, "application/json", buf, strlen(buf));
}

/* --- completions ---------------------------------------------------------- */

static int stream_put(struct stream *st, const char *text)
{
    size_t n = strlen(text);

    if (st->len + n + 8 > st->cap) {
        size_t nc = st->cap ? st->cap : 4096;
        char *nb;

        while (nc < st->len + n + 8) {
            nc *= 2;
        }
        if (!(nb = realloc(st->buf, nc))) {
            return -1;
        }
        st->buf = nb;
        st->cap = nc;
    }
    st->len += (size_t)sprintf(st->buf + st->len, "data: %s\n\n", text);
    return 0;
}

/* Adds one event (json malloc'd, freed here). */
static int stream_event(struct stream *st, char *json)
{
    int rc = json ? stream_put(st, json) : -1;

    free(json);
    return rc;
}

/* Waits for more of the job and turns it into events (st->buf empty). */
static int stream_fill(struct stream *st)
{
    struct server *srv = st->srv;
    struct job *j = st->j;
    enum job_kind kind = j->kind;
    int rc = 0;

    st->len = st->off = 0;
    sched_lock(srv->s);
    sched_wait(srv->s, j, st->text_sent, st->reasoning_sent, 100);
    if (kind == JOB_CHAT && !st->role_sent) {
        rc |= stream_event(st, api_chunk_json(&srv->api, kind, st->id, st->created, 1, "", 0, 0,
                                              NULL));
        st->role_sent = 1;
    }
    if (j->reasoning_len > st->reasoning_sent) {
        rc |= stream_event(st, api_chunk_json(&srv->api, kind, st->id, st->created, 0,
                                              j->reasoning + st->reasoning_sent,
                                              j->reasoning_len - st->reasoning_sent, 1, NULL));
        st->reasoning_sent = j->reasoning_len;
    }
    if (j->text_ready > st->text_sent) {
        rc |= stream_event(st, api_chunk_json(&srv->api, kind, st->id, st->created, 0,
                                              j->text + st->text_sent,
                                              j->text_ready - st->text_sent, 0, NULL));
        st->text_sent = j->text_ready;
    }
    if (j->done) {
        if (j->status) {
            struct api_error e;

            api_fail(&e, j->status, job_error_type(j->status),
                     job_error_code(j), NULL, "%s", j->err);
            rc |= stream_event(st, api_error_json(&e));
        } else {
            rc |= stream_event(st, api_chunk_json(&srv->api, kind, st->id, st->created, 0, "", 0,
                                                  0, j->finish ? j->finish : "stop"));
            if (st->include_usage) {
                rc |= stream_event(st, api_usage_json(&srv->api, j, st->id, st->created));
            }
        }
        rc |= stream_put(st, "[DONE]");
        st->finished = 1;
    }
    sched_unlock(srv->s);
    return rc;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    struct stream *st = cls;
    size_t n;

    (void)pos;
    while (st->off == st->len) {
        if (st->finished) {
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        if (hung_up(st->conn)) {
            sched_cancel(st->srv->s, st->j);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (stream_fill(st) < 0) {
            sched_cancel(st->srv->s, st->j);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    n = st->len - st->off < max ? st->len - st->off : max;
    memcpy(out, st->buf + st->off, n);
    st->off += n;
    return (ssize_t)n;
}

/* The response is gone (sent, or the client went away): a job not done
 * is cancelled. */
static void stream_free(void *cls)
{
    struct stream *st = cls;

    job_release(st->srv->s, st->j);
    free(st->buf);
    free(st);
}

static enum MHD_Result completions(struct server *srv, struct MHD_Connection *conn,
                                   enum job_kind kind, struct request *r)
{
    struct api_error e;
    struct job *j = job_new();
    int stream = 0, include_usage = 0;
    char id[64], err[512];
    long created = (long)time(NULL);
    enum MHD_Result rc;
    char *json;

    if (!j) {
        return fail(conn, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (api_parse(&srv->api, kind, r->body, r->len, j, &stream, &include_usage, &e) < 0) {
        job_release(NULL, j);
        return send_error(conn, &e);
    }
    snprintf(id, sizeof id, "%s-%lu", kind == JOB_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long)atomic_fetch_add(&srv->next_id, 1));
    if (sched_submit(srv->s, j, err, sizeof err) < 0) {
        job_release(NULL, j);
        return fail(conn, 503, "server_error", "server_busy", NULL, err);
    }
    if (stream) {
        struct stream *st = calloc(1, sizeof *st);
        struct MHD_Response *resp;

        if (!st) {
            job_release(srv->s, j);
            return fail(conn, 500, "server_error", NULL, NULL, "out of memory");
        }
        st->srv = srv;
        st->j = j;
        st->conn = conn;
        st->created = created;
        st->include_usage = include_usage;
        snprintf(st->id, sizeof st->id, "%s", id);
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st,
                                                 stream_free);
        if (!resp) {
            stream_free(st);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        rc = MHD_queue_response(conn, 200, resp);
        MHD_destroy_response(resp);
        return rc;
    }
    sched_lock(srv->s);
    while (!j->done) {
        sched_wait(srv->s, j, (size_t)-1, (size_t)-1, 100);
        if (!j->done && hung_up(conn)) {
            sched_unlock(srv->s);
            job_release(srv->s, j);
            return MHD_NO;
        }
    }
    if (j->status) {
        api_fail(&e, j->status, job_error_type(j->status),
                 job_error_code(j), NULL, "%s", j->err);
        json = api_error_json(&e);
    } else {
        json = api_response_json(&srv->api, j, id, created);
    }
    sched_unlock(srv->s);
    rc = send_json(conn, j->status ? (unsigned)j->status : 200, json);
    job_release(srv->s, j);
    return rc;
}

/* --- /v1/states ----------------------------------------------------------- */

static enum MHD_Result states_list(struct server *srv, struct MHD_Connection *conn)
{
    char **ids = sched_state_ids(srv->s), *out;
    size_t i, len = 64;

    if (!ids) {
        return fail(conn, 500, "server_error", NULL, NULL, "out of memory");
    }
    for (i = 0; ids[i]; i++) {
        len += strlen(ids[i]) + 48;
    }
    if ((out = malloc(len))) {
        size_t at = (size_t)sprintf(out, "{\"object\":\"list\",\"data\":[");

        for (i = 0; ids[i]; i++) {
            at += (size_t)sprintf(out + at, "%s{\"id\":\"%s\",\"object\":\"state\"}",
                                  i ? "," : "", ids[i]);
        }
        sprintf(out + at, "]}");
    }
    for (i = 0; ids[i]; i++) {
        free(ids[i]);
    }
    free(ids);
    return send_json(conn, 200, out);
}

/* A temporary file name for a state file in the server's directory. */
static void temp_path(struct server *srv, char *path, size_t len)
{
    snprintf(path, len, "%s/%lu.state", srv->tmpdir,
             (unsigned long)atomic_fetch_add(&srv->next_id, 1));
}

/* GET /v1/states/ID: a chat state file (share/state-format.md) that
 * rwkv-chat --state-in continues: the state, the conversation's turns,
 * the template, the knobs and the start of this server. */
static enum MHD_Result state_get(struct server *srv, struct MHD_Connection *conn, const char *id)
{
    rwkv_state *st = rwkv_state_new(srv->model);
    char path[320], err[1024] = "";
    struct chat_turn *turns = NULL;
    size_t n_turns = 0;
    int sep = 0, saved;
    FILE *f = NULL;
    char *data = NULL;
    long size = -1;
    enum MHD_Result rc;

    if (!st) {
        return fail(conn, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (sched_state_get(srv->s, id, st, &sep, &turns, &n_turns) < 0) {
        rwkv_state_free(st);
        snprintf(err, sizeof err, "no state named '%s'", id);
        return fail(conn, 404, "invalid_request_error", "state_not_found", NULL, err);
    }
    temp_path(srv, path, sizeof path);
    pthread_mutex_lock(&srv->files_mu);
    saved = chat_adopt(srv->files, st, turns, n_turns, sep, err, sizeof err) == 0 &&
            chat_save(srv->files, path, err, sizeof err) == 0;
    pthread_mutex_unlock(&srv->files_mu);
    sched_turns_free(turns, n_turns);
    if (saved && (f = fopen(path, "rb")) && fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > 0 &&
        fseek(f, 0, SEEK_SET) == 0 && (data = malloc((size_t)size)) &&
        fread(data, 1, (size_t)size, f) == (size_t)size) {
        struct MHD_Response *r = MHD_create_response_from_buffer((size_t)size, data,
                                                                 MHD_RESPMEM_MUST_FREE);

        data = NULL;
        if (r) {
            MHD_add_response_header(r, "Content-Type", "application/octet-stream");
            rc = MHD_queue_response(conn, 200, r);
            MHD_destroy_response(r);
        } else {
            rc = MHD_NO;
        }
    } else {
        if (!err[0] || size <= 0) {
            snprintf(err, sizeof err, "%s: cannot read back the state file: %s", path,
                     strerror(errno));
        }
        rc = fail(conn, 500, "server_error", NULL, NULL, err);
    }
    if (f) {
        fclose(f);
    }
    free(data);
    unlink(path);
    rwkv_state_free(st);
    return rc;
}

static enum MHD_Result state_put(struct server *srv, struct MHD_Connection *conn, const char *id,
                                 const struct request *r)
{
    rwkv_state *st = rwkv_state_new(srv->model);
    rwkv_statefile *sf = NULL;
    char path[320], err[1024] = "";
    const unsigned char *sep;
    size_t seplen = 0, n_turns = 0;
    struct chat_turn *turns = NULL;
    int owed = 0;
    FILE *f;
    enum MHD_Result rc;

    if (!st) {
        return fail(conn, 500, "server_error", NULL, NULL, "out of memory");
    }
    temp_path(srv, path, sizeof path);
    if (!(f = fopen(path, "wb")) || fwrite(r->body, 1, r->len, f) != r->len || fclose(f) != 0) {
        snprintf(err, sizeof err, "%s: %s", path, strerror(errno));
        rwkv_state_free(st);
        unlink(path);
        return fail(conn, 500, "server_error", NULL, NULL, err);
    }
    sf = rwkv_statefile_load(path, srv->model, err, sizeof err);
    unlink(path);
    if (!sf) {
        const char *why = strstr(err, ": ");
        char msg[1200];

        rwkv_state_free(st);
        snprintf(msg, sizeof msg, "the body is not a state file of this model: %s",
                 why ? why + 2 : err);
        return fail(conn, 400, "invalid_request_error", "invalid_state", NULL, msg);
    }
    /* The newlines owed: a chat file's "chat" section starts with them
     * (u32), files of older servers have a "serve" byte. */
    sep = rwkv_statefile_section(sf, "chat", &seplen);
    if (sep && seplen >= 4) {
        owed = sep[1] == 0 && sep[2] == 0 && sep[3] == 0 && sep[0] <= 2 ? sep[0] : 0;
    } else if ((sep = rwkv_statefile_section(sf, STATE_SECTION, &seplen)) && seplen == 1) {
        owed = *sep <= 2 ? *sep : 0;
    }
    /* Its turns too: a request from it that saves its state adds to them,
     * and a download gives the whole conversation back. */
    if (chat_file_turns(sf, "the body", &turns, &n_turns, err, sizeof err) < 0) {
        char msg[1200];

        snprintf(msg, sizeof msg, "the body is not a state file of this model: %s", err);
        rc = fail(conn, 400, "invalid_request_error", "invalid_state", NULL, msg);
    } else if (rwkv_statefile_get_state(sf, st) != 0) {
        snprintf(err, sizeof err, "out of memory for the state's history");
        rc = fail(conn, 507, "server_error", "insufficient_storage", NULL, err);
    } else if (sched_state_put(srv->s, id, st, owed, turns, n_turns, err, sizeof err) < 0) {
        rc = fail(conn, 507, "server_error", "insufficient_storage", NULL, err);
    } else {
        char body[160];

        snprintf(body, sizeof body, "{\"id\":\"%s\",\"object\":\"state\"}", id);
        rc = send_text(conn, 201, "application/json", body, strlen(body));
    }
    sched_turns_free(turns, n_turns);
    rwkv_statefile_free(sf);
    rwkv_state_free(st);
    return rc;
}

static enum MHD_Result states(struct server *srv, struct MHD_Connection *conn,
                              const char *method, const char *id, const struct request *r)
{
    char err[160];

    if (!api_valid_id(id)) {
        return fail(conn, 400, "invalid_request_error", NULL, NULL,
                    "a state id is 1 to 64 of A-Z a-z 0-9 _ . -");
    }
    if (strcmp(method, "GET") == 0) {
        return state_get(srv, conn, id);
    }
    if (strcmp(method, "PUT") == 0) {
        return state_put(srv, conn, id, r);
    }
    if (strcmp(method, "DELETE") == 0) {
        if (sched_state_delete(srv->s, id) < 0) {
            snprintf(err, sizeof err, "no state named '%s'", id);
            return fail(conn, 404, "invalid_request_error", "state_not_found", NULL, err);
        }
        snprintf(err, sizeof err, "{\"id\":\"%s\",\"object\":\"state\",\"deleted\":true}", id);
        return send_text(conn, 200, "application/json", err, strlen(err));
    }
    return fail(conn, 405, "invalid_request_error", "method_not_allowed", NULL,
                "use GET, PUT or DELETE on /v1/states/ID");
}

/* --- routing -------------------------------------------------------------- */

/* Compares a and b in time that does not depend on where they differ. */
static int same_secret(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), i;
    unsigned char d = la != lb;

    for (i = 0; i < la; i++) {
        d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    }
    return d == 0;
}

static enum MHD_Result route(struct server *srv, struct MHD_Connection *conn, const char *url,
                             const char *method, struct request *r)
{
    int get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;

    if (strcmp(url, "/health") == 0) {
        return get ? health(srv, conn)
                   : fail(conn, 405, "invalid_request_error", "method_not_allowed", NULL,
                          "use GET on /health");
    }
    if (srv->api_key) {
        const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                       MHD_HTTP_HEADER_AUTHORIZATION);

        if (!auth || strncmp(auth, "Bearer ", 7) != 0 || !same_secret(auth + 7, srv->api_key)) {
            return fail(conn, 401, "invalid_request_error", "invalid_api_key", NULL,
                        "a valid API key is required: \"Authorization: Bearer KEY\"");
        }
    }
    if (r->too_big) {
        return fail(conn, 413, "invalid_request_error", "request_too_large", NULL,
                    "the request body is larger than the server accepts (--max-body-kb)");
    }
    if (strcmp(url, "/v1/models") == 0) {
        return get ? send_json(conn, 200, api_models_json(&srv->api, (long)time(NULL)))
                   : fail(conn, 405, "invalid_request_error", "method_not_allowed", NULL,
                          "use GET on /v1/models");
    }
    if (strcmp(url, "/v1/chat/completions") == 0 || strcmp(url, "/v1/completions") == 0) {
        if (!post) {
            return fail(conn, 405, "invalid_request_error", "method_not_allowed", NULL,
                        "use POST");
        }
        return completions(srv, conn, url[4] == 'c' && url[5] == 'h' ? JOB_CHAT
                                                                      : JOB_COMPLETION, r);
    }
    if (strcmp(url, "/v1/states") == 0) {
        return get ? states_list(srv, conn)
                   : fail(conn, 405, "invalid_request_error", "method_not_allowed", NULL,
                          "use GET on /v1/states");
    }
    if (strncmp(url, "/v1/states/", 11) == 0) {
        return states(srv, conn, method, url + 11, r);
    }
    return fail(conn, 404, "invalid_request_error", "not_found", NULL, "no such endpoint");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **con_cls)
{
    struct server *srv = cls;
    struct request *r = *con_cls;

    (void)version;
    if (!r) {
        if (!(r = calloc(1, sizeof *r))) {
            return MHD_NO;
        }
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t limit = strncmp(url, "/v1/states/", 11) == 0 ? srv->max_state_body
                                                            : srv->max_body;

        if (r->too_big || r->len + *upload_size > limit) {
            r->too_big = 1;
        } else {
            if (r->len + *upload_size + 1 > r->cap) {
                size_t nc = r->cap ? r->cap : 4096;
                char *nb;

                while (nc < r->len + *upload_size + 1) {
                    nc *= 2;
                }
                if (!(nb = realloc(r->body, nc))) {
                    return MHD_NO;
                }
                r->body = nb;
                r->cap = nc;
            }
            memcpy(r->body + r->len, upload, *upload_size);
            r->len += *upload_size;
            r->body[r->len] = '\0';
        }
        *upload_size = 0;
        return MHD_YES;
    }
    return route(srv, conn, url, method, r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct request *r = *con_cls;

    (void)cls;
    (void)conn;
    (void)toe;
    if (r) {
        free(r->body);
        free(r);
        *con_cls = NULL;
    }
}

/* --- start and stop ------------------------------------------------------- */

/* The model file's name: the label up to its two spaces. */
static void model_name(const struct session *s, char *buf, size_t len)
{
    const char *sp = strstr(s->label, "  ");
    size_t n = sp ? (size_t)(sp - s->label) : strlen(s->label);

    snprintf(buf, len, "%.*s", (int)n, s->label);
}

int serve_run(struct session *s, const struct app_options *opts)
{
    struct server srv;
    struct sched_config cfg;
    struct addrinfo hints, *ai = NULL;
    struct MHD_Daemon *d;
    const union MHD_DaemonInfo *di;
    sigset_t set;
    char err[RWKV_ERRLEN], name[512], portstr[16];
    const char *host = opts->host ? opts->host : "127.0.0.1";
    const char *tmp = getenv("TMPDIR");
    size_t state_bytes = rwkv_model_info(s->model)->state_floats * sizeof(float);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL;
    rwkv_state *start = NULL;
    struct chat_turn *start_turns = NULL;
    size_t n_start_turns = 0;
    int sig, gai, rc = 0;

    memset(&srv, 0, sizeof srv);
    model_name(s, name, sizeof name);
    srv.model = s->model;
    srv.api_key = opts->api_key;
    srv.max_body = (size_t)opts->max_body_kb * 1024;
    srv.max_state_body = state_bytes + (1u << 20) > srv.max_body ? state_bytes + (1u << 20)
                                                                 : srv.max_body;
    srv.api.tok = s->tok;
    srv.api.tmpl = chat_get_template(s->chat);
    srv.api.system = chat_get_system(s->chat);
    srv.api.think = chat_get_think(s->chat);
    srv.api.defaults = *chat_settings(s->chat);
    srv.api.max_tokens_cap = opts->max_tokens_cap;
    srv.api.model_name = name;
    srv.files = s->chat;
    pthread_mutex_init(&srv.files_mu, NULL);
    /* Where requests start: as the chat would (a conversation --state-in
     * loaded, or the --state-tuned start, or the template's intro). */
    if (opts->state_in) {
        size_t i;

        srv.api.start = API_START_CONVERSATION;
        srv.api.start_sep = chat_owed_newlines(s->chat);
        start = rwkv_state_clone(chat_state(s->chat));
        n_start_turns = chat_turn_count(s->chat);
        start_turns = calloc(n_start_turns + 1, sizeof *start_turns);
        for (i = 0; start_turns && i < n_start_turns; i++) {
            const struct chat_turn *t = chat_turn_at(s->chat, i);

            start_turns[i].role = t->role;
            start_turns[i].text = strdup(t->text);
            start_turns[i].reasoning = t->reasoning ? strdup(t->reasoning) : NULL;
            if (!start_turns[i].text || (t->reasoning && !start_turns[i].reasoning)) {
                break;
            }
        }
        if (!start || !start_turns || i < n_start_turns) {
            fprintf(stderr, "rwkv-chat: out of memory\n");
            rc = 1;
            goto out;
        }
    } else if (chat_tuned_state(s->chat)) {
        srv.api.start = API_START_TUNED;
        if (!(start = rwkv_state_clone(chat_tuned_state(s->chat)))) {
            fprintf(stderr, "rwkv-chat: out of memory\n");
            rc = 1;
            goto out;
        }
    }
    atomic_init(&srv.next_id, 1);
    snprintf(srv.tmpdir, sizeof srv.tmpdir, "%s/rwkv-serve.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(srv.tmpdir)) {
        fprintf(stderr, "rwkv-chat: %s: cannot make a temporary directory: %s\n", srv.tmpdir,
                strerror(errno));
        rc = 1;
        goto out;
    }

    /* The threads started from here (the scheduler, libmicrohttpd's) leave
     * the signals to this one, which waits for them. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    snprintf(portstr, sizeof portstr, "%d", opts->port);
    if ((gai = getaddrinfo(host, portstr, &hints, &ai)) != 0) {
        fprintf(stderr, "rwkv-chat: --host %s: %s\n", host, gai_strerror(gai));
        rmdir(srv.tmpdir);
        rc = 2;
        goto out;
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.model = s->model;
    cfg.tok = s->tok;
    cfg.tmpl = srv.api.tmpl;
    cfg.parallel = opts->parallel;
    cfg.cache_bytes = (size_t)opts->state_cache_mb << 20;
    cfg.states_bytes = (size_t)opts->states_mb << 20;
    cfg.queue_max = 256;
    cfg.n_threads = opts->n_threads;
    cfg.start = start;
    cfg.start_turns = start_turns;
    cfg.n_start_turns = n_start_turns;
    srv.s = sched_new(&cfg, err, sizeof err);
    if (!srv.s) {
        fprintf(stderr, "rwkv-chat: %s\n", err);
        freeaddrinfo(ai);
        rmdir(srv.tmpdir);
        rc = 1;
        goto out;
    }
    srv.api.s = srv.s;
    if (ai->ai_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, &srv,
                         MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)opts->idle_timeout,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, &srv,
                         MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!d) {
        fprintf(stderr, "rwkv-chat: cannot listen on %s port %d: %s (is the port in use? "
                "--port 0 picks a free one)\n", host, opts->port, strerror(errno));
        sched_free(srv.s);
        rmdir(srv.tmpdir);
        rc = 1;
        goto out;
    }
    di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    fprintf(stderr, "rwkv-chat: serving %s on http://%s%s%s:%u/v1\n", name,
            strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
            di ? (unsigned)di->port : (unsigned)opts->port);
    fflush(stderr);
    do {
        if (sigwait(&set, &sig) != 0) {
            break;
        }
    } while (sig == SIGPIPE);
    fprintf(stderr, "rwkv-chat: stopping\n");
    sched_stop(srv.s);
    MHD_stop_daemon(d);
    sched_free(srv.s);
    rmdir(srv.tmpdir);
out:
    pthread_mutex_destroy(&srv.files_mu);
    sched_turns_free(start_turns, n_start_turns);
    rwkv_state_free(start);
    return rc;
}
