/* main.c - rwkv-chat: options, model and chat set-up, then the TUI or --batch. */
#include <errno.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/batch.h"
#include "app/blascore.h"
#include "app/chat.h"
#include "app/models.h"
#include "app/options.h"
#include "app/paths.h"
#include "app/tui.h"
#include "engine/rwkv.h"
#include "engine/statefile.h"
#include "tokenizer/world.h"

/* Shared with batch_run's loop (see batch.h): a handler has no context,
 * hence a file-level variable. */
static struct batch_signals batch_signals;

/* SIGINT in batch mode: batch checks the flag between tokens, pieces of a
 * prompt and reads. */
static void on_sigint(int sig)
{
    (void)sig;
    batch_signals.interrupted = 1;
}

/* SIGTERM and SIGHUP in batch mode: die of the signal at once, unless a
 * state file is being written; batch raises it again once it is renamed. */
static void on_term_signal(int sig)
{
    if (batch_signals.saving) {
        batch_signals.deferred = sig;
        return;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Installs the batch-mode handlers: no SA_RESTART, so that a blocked read
 * returns.  SIGTERM and SIGHUP stay ignored where they are (nohup). */
static void catch_batch_signals(void)
{
    static const int term_signals[] = { SIGTERM, SIGHUP };
    struct sigaction sa, old;
    size_t i;

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_term_signal;
    for (i = 0; i < sizeof(term_signals) / sizeof(term_signals[0]); i++) {
        if (sigaction(term_signals[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN) {
            sigaction(term_signals[i], &sa, NULL);
        }
    }
}

static void error_line(const char *fmt, const char *a, const char *b)
{
    fputs("rwkv-chat: ", stderr);
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
}

/* "rwkv7-tiny-chat.pth  RWKV-7 18.2M": what the status line and /info show. */
static void make_label(char *buf, size_t len, const char *path, const struct rwkv_info *info)
{
    const char *base = strrchr(path, '/');
    double p = (double)info->n_params;

    base = base ? base + 1 : path;
    if (p >= 1e9) {
        snprintf(buf, len, "%s  RWKV-%s %.1fB", base, info->version_name, p / 1e9);
    } else if (p >= 1e6) {
        snprintf(buf, len, "%s  RWKV-%s %.1fM", base, info->version_name, p / 1e6);
    } else {
        snprintf(buf, len, "%s  RWKV-%s %.1fK", base, info->version_name, p / 1e3);
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

/* Loads the vocabulary, the model and the template, and makes the chat.
 * Returns the exit status (0 on success, with *out_* set). */
static int set_up(struct app_options *opts, rwkv_model **out_model, world_tokenizer **out_tok,
                  chat **out_chat, char *label, size_t label_len)
{
    char err[2048], *model_path, *vocab_path;
    struct rwkv_load_options load = { opts->dtype, opts->n_threads,
                                      opts->no_cache ? RWKV_CACHE_MODE_OFF : RWKV_CACHE_MODE_ON };
    const struct rwkv_info *info;
    struct chat_template t;
    const char *prompt;
    world_tokenizer *tok;
    rwkv_model *model;
    double t0;
    chat *c;

    model_path = opts->model ? models_find(opts->model, err, sizeof(err))
                             : models_find_demo(err, sizeof(err));
    if (!model_path) {
        error_line("%s", err, NULL);
        return 1;
    }
    if (opts->vocab) {
        vocab_path = strdup(opts->vocab);
    } else if (!(vocab_path = paths_find_data(WORLD_VOCAB_FILE))) {
        char *dirs = paths_data_dirs(WORLD_VOCAB_FILE);

        error_line("vocabulary not found (looked in %s): reinstall rwkv-chat or pass --vocab PATH",
                   dirs ? dirs : "", NULL);
        free(dirs);
        free(model_path);
        return 1;
    }
    if (!(tok = world_load(vocab_path, err, sizeof(err)))) {
        error_line("%s", err, NULL);
        free(vocab_path);
        free(model_path);
        return 1;
    }
    free(vocab_path);
    t0 = now();
    if (!(model = rwkv_model_load_lora(model_path, &load, opts->lora, opts->n_lora, err,
                                       sizeof(err)))) {
        error_line("%s", err, NULL);
        world_free(tok);
        free(model_path);
        return 1;
    }
    info = rwkv_model_info(model);
    if (info->n_vocab < world_vocab_size(tok)) {
        /* Not a World model: its first reply would fail on an unknown id. */
        fprintf(stderr, "rwkv-chat: %s: vocabulary of %d tokens, not the %d of the World "
                "tokenizer: use an RWKV World model\n", model_path, info->n_vocab,
                world_vocab_size(tok));
        rwkv_model_free(model);
        world_free(tok);
        free(model_path);
        return 1;
    }
    {
        const char *base = strrchr(model_path, '/');

        if (!strcmp(base ? base + 1 : model_path, OPTIONS_DEMO_MODEL)) {
            opts->model_from_user = 0;
        }
    }
    make_label(label, label_len, model_path, info);
    if (opts->verbose) {
        fprintf(stderr, "rwkv-chat: %s: RWKV-%s, %d layers, n_embd %d, %llu parameters, %s "
                "weights (%s kernels, OpenBLAS core %s), loaded in %.2f s\n", model_path,
                info->version_name, info->n_layer, info->n_embd,
                (unsigned long long)info->n_params, rwkv_dtype_name(info->compute_dtype),
                rwkv_kernels_name(), blascore_name(), now() - t0);
        if (info->n_lora > 0) {
            fprintf(stderr, "rwkv-chat: %d LoRA adapter%s merged at load\n", info->n_lora,
                    info->n_lora == 1 ? "" : "s");
        }
        {
            const struct rwkv_cache_info *ci = rwkv_model_cache(model);

            if (ci->result == RWKV_CACHE_USED || ci->result == RWKV_CACHE_WRITTEN) {
                fprintf(stderr, "rwkv-chat: conversion cache: %s %s (%.2f s)\n",
                        ci->result == RWKV_CACHE_USED ? "used" : "written", ci->path,
                        ci->seconds);
            } else if (ci->result == RWKV_CACHE_NOT_WRITTEN) {
                fprintf(stderr, "rwkv-chat: conversion cache: not written: %s\n", ci->reason);
            }
        }
        if (!opts->model_from_user) {
            fprintf(stderr, "rwkv-chat: %s\n", OPTIONS_DEMO_NOTICE);
        }
    }
    /* The demo model was trained on bare "User: ...\n\nAssistant:" turns
     * from the zero state; G1 files (rwkv7-g1x-...) get the G1 format;
     * other real models the default persona. */
    prompt = opts->prompt ? opts->prompt : !opts->model_from_user ? "bare"
             : chat_template_for_model(model_path) ? chat_template_for_model(model_path)
             : "default";
    free(model_path);
    memset(&t, 0, sizeof(t));
    if (chat_template_load(&t, prompt, err, sizeof(err)) < 0) {
        error_line("%s", err, NULL);
        rwkv_model_free(model);
        world_free(tok);
        return 1;
    }
    c = chat_new(model, tok, &t, &opts->sampling, err, sizeof(err));
    chat_template_free(&t);
    if (c && opts->think >= 0) {
        chat_set_think(c, (enum chat_think)opts->think);
    }
    if (!c || (opts->state_tuned && chat_load_tuned_state(c, opts->state_tuned, err,
                                                          sizeof(err)) < 0) ||
        (opts->system && chat_set_system(c, opts->system, err, sizeof(err)) < 0)) {
        error_line("%s", err, NULL);
        chat_free(c);
        rwkv_model_free(model);
        world_free(tok);
        return 1;
    }
    *out_model = model;
    *out_tok = tok;
    *out_chat = c;
    return 0;
}

/* --state-in / --resume: continue a saved conversation. */
static int load_state(chat *c, const struct app_options *opts)
{
    char err[RWKV_ERRLEN], *dir, *path;
    int rc = 0;

    if (opts->state_in) {
        if (chat_load(c, opts->state_in, err, sizeof(err)) < 0) {
            error_line("%s", err, NULL);
            return 1;
        }
        return 0;
    }
    if (!opts->resume) {
        return 0;
    }
    dir = paths_state_dir();
    path = dir ? paths_join(dir, "session.state") : NULL;
    if (!path) {
        error_line("out of memory", NULL, NULL);
        rc = 1;
    } else if (access(path, F_OK) != 0) {
        error_line("--resume: no saved session (%s: %s)", path, strerror(errno));
        rc = 1;
    } else if (chat_load(c, path, err, sizeof(err)) < 0) {
        error_line("%s (--resume: pass the --model the session was saved with, or start afresh "
                   "without --resume)", err, NULL);
        rc = 1;
    } else if (opts->verbose) {
        fprintf(stderr, "rwkv-chat: resumed %s\n", path);
    }
    free(path);
    free(dir);
    return rc;
}

/* --state-out is written when the conversation ends: refuse a path that
 * cannot be written now (or holds something that is not a state file),
 * rather than lose the conversation then. */
static int check_state_out(const char *path)
{
    char err[RWKV_ERRLEN];

    if (rwkv_statefile_check_target(path, err, sizeof(err)) < 0) {
        error_line("--state-out: %s", err, NULL);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct app_options opts;
    world_tokenizer *tok = NULL;
    rwkv_model *model = NULL;
    char label[512];
    chat *c = NULL;
    int rc;

    blascore_pick(argv);
    setlocale(LC_ALL, "");
    setlocale(LC_NUMERIC, "C");
    rc = options_parse(&opts, argc, argv);
    if (rc != 0) {
        options_free(&opts);
        return rc == OPTIONS_EXIT ? 0 : rc;
    }
    if (!opts.seed_set) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        opts.sampling.seed = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
                             ((uint64_t)getpid() << 32);
    }
    if (opts.data_dir && add_data_dir(opts.data_dir) < 0) {
        error_line("--data-dir: %s: %s", opts.data_dir, strerror(errno));
        options_free(&opts);
        return 1;
    }
    if (!opts.batch && !(isatty(STDIN_FILENO) && isatty(STDOUT_FILENO))) {
        opts.batch = 1;
    }
    rc = opts.state_out ? check_state_out(opts.state_out) : 0;
    if (rc == 0) {
        rc = set_up(&opts, &model, &tok, &c, label, sizeof(label));
    }
    if (rc == 0 && (opts.state_in || opts.resume)) {
        rc = load_state(c, &opts);
        if (rc == 0) {
            /* The state brings its own knobs; the command line still wins. */
            options_apply_given(&opts, chat_settings(c));
            chat_settings_changed(c);
            if (opts.think_given) {
                chat_set_think(c, (enum chat_think)opts.think);
            }
        }
    }
    if (rc == 0 && opts.batch) {
        catch_batch_signals();
        rc = batch_run(c, &opts, label, stdin, stdout, &batch_signals);
    } else if (rc == 0) {
        rc = tui_run(c, &opts, label);
        if (rc == 0 && opts.state_out) {
            char err[RWKV_ERRLEN];

            if (chat_save(c, opts.state_out, err, sizeof(err)) < 0) {
                error_line("%s", err, NULL);
                rc = 1;
            }
        }
    }
    chat_free(c);
    rwkv_model_free(model);
    world_free(tok);
    options_free(&opts);
    return rc;
}
