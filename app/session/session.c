/* session.c - the start-up of one conversation, shared by every front end. */
#include "app/session/session.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/session/blascore.h"
#include "app/session/models.h"
#include "app/session/options.h"
#include "app/session/paths.h"
#include "engine/rwkv.h"
#include "engine/load/statefile.h"
#include "tokenizer/tokenizer.h"

/* Formats one line into err; returns -1. */
static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Says one --verbose line through the front end's callback. */
static void note(session_note_fn fn, void *arg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void note(session_note_fn fn, void *arg, const char *fmt, ...)
{
    char line[4096];
    va_list ap;

    if (!fn) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fn(arg, line);
}

/* "rwkv7-tiny-chat.pth  RWKV-7 18.2M fp32": what the status line and
 * /info show, the weight format in use (--dtype) last. */
static void make_label(char *buf, size_t len, const char *path, const struct rwkv_info *info)
{
    const char *base = strrchr(path, '/');
    const char *dtype = rwkv_dtype_name(info->compute_dtype);
    double p = (double)info->n_params;

    base = base ? base + 1 : path;
    if (p >= 1e9) {
        snprintf(buf, len, "%s  RWKV-%s %.1fB %s", base, info->version_name, p / 1e9, dtype);
    } else if (p >= 1e6) {
        snprintf(buf, len, "%s  RWKV-%s %.1fM %s", base, info->version_name, p / 1e6, dtype);
    } else {
        snprintf(buf, len, "%s  RWKV-%s %.1fK %s", base, info->version_name, p / 1e3, dtype);
    }
}

/* --data-dir: searched before $RWKV_CHAT_DATADIR and $(pkgdatadir). */
static int add_data_dir(const char *dir)
{
    const char *old = getenv("RWKV_CHAT_DATADIR");
    struct stat st;
    char *v;
    int rc;

    /* A mistyped directory would otherwise be searched, silently, in vain. */
    if (stat(dir, &st) < 0) {
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    if (old && *old) {
        if (asprintf(&v, "%s:%s", dir, old) < 0) {
            return -1;
        }
    } else if (!(v = strdup(dir))) {
        return -1;
    }
    rc = setenv("RWKV_CHAT_DATADIR", v, 1);
    free(v);
    return rc;
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Caches beside the model, where earlier versions wrote them (now they
 * are in $XDG_CACHE_HOME/rwkv-chat): never read, so say they can go. */
static void note_old_caches(session_note_fn nf, void *na, const char *model_path)
{
    static const enum rwkv_dtype formats[] = { RWKV_DTYPE_Q8, RWKV_DTYPE_Q4, RWKV_DTYPE_F32,
                                               RWKV_DTYPE_F16, RWKV_DTYPE_BF16 };
    char path[4096];
    struct stat st;

    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        if (snprintf(path, sizeof path, "%s.%s.rwkvcache", model_path,
                     rwkv_dtype_name(formats[i])) < (int)sizeof path &&
            stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            note(nf, na, "%s: an old conversion cache, no longer used (caches are kept in "
                 "~/.cache/rwkv-chat now; 'rwkv-tool cache list'): delete it to free %.0f MB",
                 path, (double)st.st_size / 1e6);
        }
    }
}

/* Loads the vocabulary, the model and the template, and makes the chat. */
static int set_up(struct session *s, struct app_options *opts, session_note_fn nf, void *na,
                  rwkv_load_progress_fn pf, void *pa, char *err, size_t errlen)
{
    char *model_path, *vocab_path;
    struct rwkv_load_options load = { opts->dtype, opts->n_threads,
                                      opts->no_cache ? RWKV_CACHE_MODE_OFF : RWKV_CACHE_MODE_ON,
                                      options_load_cache_max(opts), 0, 0 };
    /* Test hook: the programs' tests reach an RWKV-7b state's history
     * bound in a few tokens (a whole number; the engine ignores one out of
     * its range). */
    const char *hook = getenv("RWKV_CHAT_TEST_HISTORY_MAX");
    const struct rwkv_info *info;
    struct chat_template t;
    const char *prompt;
    double t0, load_seconds;

    if (hook && *hook >= '0' && *hook <= '9') {
        char *end;
        unsigned long long v = strtoull(hook, &end, 10);

        load.history_max = *end ? 0 : (size_t)v;
    }
    model_path = opts->model ? models_find(opts->model, err, errlen)
                             : models_find_demo(err, errlen);
    if (!model_path) {
        if (opts->model_in_config) {
            size_t used = strlen(err);

            snprintf(err + used, errlen - used, " (the model = line of %s)",
                     opts->config_path ? opts->config_path : "the config file");
        }
        return -1;
    }
    /* --vocab is read before the model (a wrong file fails fast); without
     * it, the model's vocabulary size says which tokenizer it needs. */
    if (opts->vocab && !(s->tok = tokenizer_load(opts->vocab, err, errlen))) {
        free(model_path);
        return -1;
    }
    t0 = now();
    if (!(s->model = rwkv_model_load_progress(model_path, &load, opts->lora, opts->n_lora, pf, pa,
                                              err, errlen))) {
        free(model_path);
        return -1;
    }
    load_seconds = now() - t0;
    info = rwkv_model_info(s->model);
    if (!s->tok) {
        const char *file = tokenizer_file_for_vocab(info->n_vocab);

        if (!file) {
            fail(err, errlen, "%s: vocabulary of %d tokens: no known tokenizer has that many "
                 "(World models have 65536, Pile models 50277 or 50304): pass --vocab PATH",
                 model_path, info->n_vocab);
            free(model_path);
            return -1;
        }
        if (!(vocab_path = paths_find_data(file))) {
            char *dirs = paths_data_dirs(file);

            fail(err, errlen, "vocabulary %s not found (looked in %s): reinstall rwkv-chat or "
                 "pass --vocab PATH", file, dirs ? dirs : "");
            free(dirs);
            free(model_path);
            return -1;
        }
        s->tok = tokenizer_load(vocab_path, err, errlen);
        free(vocab_path);
        if (!s->tok) {
            free(model_path);
            return -1;
        }
    }
    if (info->n_vocab < tokenizer_vocab_size(s->tok)) {
        /* The wrong tokenizer: the model's first reply would fail on an unknown id. */
        fail(err, errlen, "%s: vocabulary of %d tokens, fewer than the %d of the %s tokenizer: "
             "use a model made for it, or another --vocab", model_path, info->n_vocab,
             tokenizer_vocab_size(s->tok), tokenizer_describe(s->tok));
        free(model_path);
        return -1;
    }
    {
        const char *base = strrchr(model_path, '/');

        if (!strcmp(base ? base + 1 : model_path, OPTIONS_DEMO_MODEL)) {
            opts->model_from_user = 0;
        }
    }
    s->demo_model = !opts->model_from_user;
    s->lora = opts->lora;
    s->n_lora = opts->n_lora;
    make_label(s->label, sizeof(s->label), model_path, info);
    {
        const char *base = strrchr(model_path, '/');

        s->session_file = paths_session_file(base ? base + 1 : model_path);
        if (!s->session_file) {
            free(model_path);
            return fail(err, errlen, "out of memory");
        }
    }
    if (opts->verbose) {
        const struct rwkv_cache_info *ci = rwkv_model_cache(s->model);

        note(nf, na, "%s: RWKV-%s, %d layers, n_embd %d, %llu parameters, %s weights (%s "
             "kernels, OpenBLAS core %s), loaded in %.2f s; tokenizer: %s, %d ids", model_path,
             info->version_name, info->n_layer, info->n_embd, (unsigned long long)info->n_params,
             rwkv_dtype_name(info->compute_dtype), rwkv_kernels_name(), blascore_name(),
             load_seconds, tokenizer_describe(s->tok), tokenizer_vocab_size(s->tok));
        if (info->n_lora > 0) {
            note(nf, na, "%d LoRA adapter%s merged at load", info->n_lora,
                 info->n_lora == 1 ? "" : "s");
        }
        if (ci->result == RWKV_CACHE_USED || ci->result == RWKV_CACHE_WRITTEN) {
            note(nf, na, "conversion cache: %s %s (%.2f s)",
                 ci->result == RWKV_CACHE_USED ? "used" : "written", ci->path, ci->seconds);
        } else if (ci->result == RWKV_CACHE_NOT_WRITTEN) {
            note(nf, na, "conversion cache: not written: %s", ci->reason);
        }
        note_old_caches(nf, na, model_path);
        if (!opts->model_from_user) {
            note(nf, na, "%s", OPTIONS_DEMO_NOTICE);
        }
    }
    /* The demo model was trained on bare "User: ...\n\nAssistant:" turns
     * from the zero state; G1 files (rwkv7-g1x-...) get the G1 format;
     * other real models the default persona. */
    prompt = opts->prompt ? opts->prompt : !opts->model_from_user ? "bare"
             : chat_template_for_model(model_path) ? chat_template_for_model(model_path)
             : "default";
    memset(&t, 0, sizeof(t));
    if (chat_template_load(&t, prompt, err, errlen) < 0) {
        free(model_path);
        return -1;
    }
    s->chat = chat_new(s->model, s->tok, &t, &opts->sampling, err, errlen);
    chat_template_free(&t);
    if (s->chat) {
        /* The file's whole path, so that --resume finds it from anywhere. */
        char *full = realpath(model_path, NULL);

        if (chat_set_model_file(s->chat, full ? full : model_path) < 0) {
            free(full);
            free(model_path);
            return fail(err, errlen, "out of memory");
        }
        free(full);
    }
    free(model_path);
    if (s->chat && opts->think >= 0) {
        chat_set_think(s->chat, (enum chat_think)opts->think);
    }
    if (!s->chat || (opts->state_tuned && chat_load_tuned_state(s->chat, opts->state_tuned, err,
                                                                errlen) < 0) ||
        (opts->system && chat_set_system(s->chat, opts->system, err, errlen) < 0)) {
        return -1;
    }
    return 0;
}

/* --state-in / --resume: continue a saved conversation. */
static int load_state(struct session *s, const struct app_options *opts, session_note_fn nf,
                      void *na, char *err, size_t errlen)
{
    char *path;
    int rc = 0;

    if (opts->state_in) {
        return chat_load(s->chat, opts->state_in, err, errlen) < 0 ? -1 : 0;
    }
    if (!opts->resume) {
        return 0;
    }
    /* The model's own session; failing that, the one session file of
     * rwkv-chat before sessions were kept per model. */
    path = strdup(s->session_file);
    if (path && access(path, F_OK) != 0) {
        char *old = paths_old_session_file();

        if (old && access(old, F_OK) == 0) {
            free(path);
            path = old;
        } else {
            free(old);
        }
    }
    if (!path) {
        rc = fail(err, errlen, "out of memory");
    } else if (access(path, F_OK) != 0) {
        rc = fail(err, errlen, "--resume: no saved session for %s (%s: %s): start without "
                  "--resume, or pass the --model of a saved session", chat_model_name(s->chat),
                  path, strerror(errno));
    } else if (chat_load(s->chat, path, err, errlen) < 0) {
        size_t n = strlen(err);

        snprintf(err + n, errlen - n, " (--resume: pass the --model the session was saved "
                 "with, or start afresh without --resume)");
        rc = -1;
    } else if (opts->verbose) {
        note(nf, na, "resumed %s", path);
    }
    free(path);
    return rc;
}

int session_open(struct session *s, struct app_options *opts, session_note_fn note_fn,
                 void *note_arg, char *err, size_t errlen)
{
    return session_open_progress(s, opts, note_fn, note_arg, NULL, NULL, err, errlen);
}

int session_open_progress(struct session *s, struct app_options *opts, session_note_fn note_fn,
                          void *note_arg, rwkv_load_progress_fn progress, void *progress_arg,
                          char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    if (!opts->verbose) {
        note_fn = NULL;
    }
    if (!opts->seed_set) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        opts->sampling.seed = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
                              ((uint64_t)getpid() << 32);
    }
    if (opts->data_dir && add_data_dir(opts->data_dir) < 0) {
        return fail(err, errlen, "--data-dir: %s: %s", opts->data_dir, strerror(errno));
    }
    /* --state-out is written when the conversation ends: refuse a path
     * that cannot be written now (or holds something that is not a state
     * file), rather than lose the conversation then. */
    if (opts->state_out) {
        char why[RWKV_ERRLEN];

        if (rwkv_statefile_check_target(opts->state_out, why, sizeof(why)) < 0) {
            return fail(err, errlen, "--state-out: %s", why);
        }
    }
    /* --resume without --model: the model of the session saved last. */
    if (opts->resume && (!opts->model || opts->model_in_config)) {
        char *last = paths_last_session();
        char model[4096];

        if (last) {
            chat_file_model(last, 1, model, sizeof model);
            if (!*model || access(model, R_OK) != 0) {
                chat_file_model(last, 0, model, sizeof model);
            }
            if (*model) {
                free(opts->model);
                if (!(opts->model = strdup(model))) {
                    free(last);
                    return fail(err, errlen, "out of memory");
                }
                opts->model_from_user = 1;
                opts->model_in_config = 0;
                note(note_fn, note_arg, "--resume: the last session (%s) was with %s", last,
                     model);
            }
            free(last);
        }
    }
    if (set_up(s, opts, note_fn, note_arg, progress, progress_arg, err, errlen) < 0) {
        return -1;
    }
    if (opts->state_in || opts->resume) {
        if (load_state(s, opts, note_fn, note_arg, err, errlen) < 0) {
            return -1;
        }
        /* The state brings its own knobs; the command line still wins. */
        options_apply_given(opts, chat_settings(s->chat));
        chat_settings_changed(s->chat);
        if (opts->think_given) {
            chat_set_think(s->chat, (enum chat_think)opts->think);
        }
    }
    return 0;
}

void session_close(struct session *s)
{
    chat_free(s->chat);
    free(s->session_file);
    rwkv_model_free(s->model);
    tokenizer_free(s->tok);
    memset(s, 0, sizeof(*s));
}
