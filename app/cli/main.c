/* main.c - rwkv-chat: options, the session (session.h), then the TUI or --batch. */
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "app/cli/batch.h"
#include "app/session/blascore.h"
#include "app/cli/errline.h"
#include "app/cli/loadshow.h"
#include "app/session/options.h"
#include "app/session/session.h"
#include "app/serve/serve.h"
#include "app/tui/tui.h"

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
    /* A closed stdout is a write error batch reports (and still writes
     * --state-out), not a silent death. */
    signal(SIGPIPE, SIG_IGN);
    sa.sa_handler = on_term_signal;
    for (i = 0; i < sizeof(term_signals) / sizeof(term_signals[0]); i++) {
        if (sigaction(term_signals[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN) {
            sigaction(term_signals[i], &sa, NULL);
        }
    }
}

/* --verbose lines of the start-up (session.h). */
static void print_note(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "rwkv-chat: %s\n", line);
}

int main(int argc, char **argv)
{
    struct app_options opts;
    struct session s;
    struct loadshow show;
    char err[4096];
    int rc;

    blascore_pick(argv);
    setlocale(LC_ALL, "");
    setlocale(LC_NUMERIC, "C");
    rc = options_parse(&opts, argc, argv);
    if (rc != 0) {
        options_free(&opts);
        return rc == OPTIONS_EXIT ? 0 : rc;
    }
    if (!opts.batch && !opts.serve && !(isatty(STDIN_FILENO) && isatty(STDOUT_FILENO))) {
        opts.batch = 1;
    }
    /* the load's progress: a bar on a terminal (the TUI's screen is blank
     * until then), lines with --batch --verbose into a file */
    loadshow_init(&show, isatty(STDERR_FILENO) && (!opts.batch || opts.verbose),
                  opts.batch && opts.verbose, !opts.no_cache, rwkv_dtype_name(opts.dtype));
    rc = session_open_progress(&s, &opts, print_note, NULL, loadshow_progress, &show, err,
                               sizeof(err));
    loadshow_end(&show);
    if (rc < 0) {
        error_line("%s", err, NULL);
        rc = 1;
    } else if (opts.serve) {
        rc = serve_run(&s, &opts);
    } else if (opts.batch) {
        catch_batch_signals();
        rc = batch_run(&s, &opts, stdin, stdout, &batch_signals);
    } else {
        rc = tui_run(&s, &opts);
        if (rc == 0 && opts.state_out) {
            if (chat_save(s.chat, opts.state_out, err, sizeof(err)) < 0) {
                error_line("%s", err, NULL);
                rc = 1;
            }
        }
    }
    session_close(&s);
    options_free(&opts);
    return rc;
}
