/* fuzz_serve_request.c - the server's request reader (app/serve/api.c
 * api_parse): a /v1/chat/completions or /v1/completions body into a
 * validated job, with the real World vocabulary.  The first byte picks the
 * endpoint, the template (plain or thinking), the think mode and where
 * requests start; the rest is the body.  A body is refused with an OpenAI
 * error object (a 4xx or 500 status, one line of message, valid JSON) or
 * read into a job whose pieces cover its tokens in order. */
#include <string.h>

#include <json-c/json.h>

#include "app/serve/api.h"
#include "tests/fuzz/fuzz.h"
#include "tokenizer/tokenizer.h"

static tokenizer *tok;
static int n_vocab;

/* api_parse asks the scheduler for a named state's owed newlines only
 * when it has one (api_config.s); this harness has none. */
int sched_state_get(sched *s, const char *id, rwkv_state *state, int *sep,
                    struct chat_turn **turns, size_t *n_turns)
{
    (void)s;
    (void)id;
    (void)state;
    (void)sep;
    (void)turns;
    (void)n_turns;
    __builtin_trap();
}

void sched_turns_free(struct chat_turn *turns, size_t n)
{
    size_t i;

    for (i = 0; turns && i < n; i++) {
        free(turns[i].text);
        free(turns[i].reasoning);
    }
    free(turns);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[4096], err[512];

    (void)argc;
    (void)argv;
    snprintf(path, sizeof path, "%s/rwkv_vocab_v20230424.txt", fuzz_share_dir());
    tok = tokenizer_load(path, err, sizeof err);
    if (!tok) {
        fprintf(stderr, "fuzz_serve_request: %s (set FUZZ_SHARE to the source tree's share/)\n",
                err);
        exit(1);
    }
    n_vocab = 65536;
    return 0;
}

static void job_clear(struct job *j)
{
    size_t i;

    free(j->tokens);
    free(j->piece_end);
    free(j->prefix);
    free(j->hist_tokens);
    sched_turns_free(j->turns, j->n_turns);
    for (i = 0; i < j->n_stops; i++) {
        free(j->stops[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char plain_name[] = "default", g1_name[] = "g1", user[] = "User",
                assistant[] = "Assistant", system[] = "System",
                intro[] = "User: hi\n\nAssistant: Hello.\n\n", none[] = "";
    struct chat_template plain = { plain_name, intro, user, assistant, NULL, 0 };
    struct chat_template g1 = { g1_name, none, user, assistant, system, 1 };
    struct api_config a;
    struct api_error e;
    struct job j;
    enum job_kind kind;
    int stream = -1, usage = -1, rc;
    size_t i;
    uint8_t mode;

    if (size < 1) {
        return 0;
    }
    mode = data[0];
    memset(&a, 0, sizeof a);
    a.tok = tok;
    a.tmpl = mode & 2 ? &g1 : &plain;
    a.system = mode & 4 ? "Be brief.\n\n  Please." : NULL;
    a.think = (enum chat_think)((mode >> 3) % 5);
    sampler_defaults(&a.defaults);
    a.max_tokens_cap = 4096;
    a.model_name = "fuzz.pth";
    a.start = (enum api_start)((mode >> 6) % 3);
    a.start_sep = (mode >> 6) % 3;
    kind = mode & 1 ? JOB_COMPLETION : JOB_CHAT;
    memset(&j, 0, sizeof j);
    memset(&e, 0, sizeof e);
    rc = api_parse(&a, kind, (const char *)data + 1, size - 1, &j, &stream, &usage, &e);
    if (rc < 0) {
        char *json = api_error_json(&e);
        json_object *back;

        /* A refusal: an HTTP error status, one line naming what is wrong. */
        if ((e.status != 400 && e.status != 404 && e.status != 500) || !e.message[0] ||
            strchr(e.message, '\n') || !e.type) {
            __builtin_trap();
        }
        if (json) {
            back = json_tokener_parse(json);
            if (!back || !json_object_is_type(back, json_type_object)) {
                __builtin_trap();
            }
            json_object_put(back);
            free(json);
        }
    } else {
        /* A job: pieces in order ending at the last token, ids in the
         * vocabulary, knobs within the cap, stops within their limits. */
        if (j.n_tokens == 0 || j.n_pieces == 0 || j.piece_end[j.n_pieces - 1] != j.n_tokens ||
            (stream != 0 && stream != 1) || (usage != 0 && usage != 1) || j.kind != kind ||
            j.settings.max_tokens < 1 || j.settings.max_tokens > a.max_tokens_cap ||
            j.n_stops > SERVE_STOPS_MAX || (j.hist_tokens && j.n_hist == 0) ||
            (j.prefix && !a.tmpl->thinking)) {
            __builtin_trap();
        }
        for (i = 0; i < j.n_pieces; i++) {
            if (j.piece_end[i] == 0 || (i > 0 && j.piece_end[i] <= j.piece_end[i - 1])) {
                __builtin_trap();
            }
        }
        for (i = 0; i < j.n_tokens; i++) {
            if (j.tokens[i] < 0 || j.tokens[i] >= n_vocab) {
                __builtin_trap();
            }
        }
        for (i = 0; i < j.n_stops; i++) {
            if (!j.stops[i][0] || strlen(j.stops[i]) > SERVE_STOP_BYTES) {
                __builtin_trap();
            }
        }
        for (i = 0; i < j.n_turns; i++) {
            if (!j.turns[i].text || (j.turns[i].role == CHAT_USER && !j.turns[i].text[0])) {
                __builtin_trap();
            }
        }
    }
    job_clear(&j);
    return 0;
}
