/* test_options.c - rwkv-chat options, config file, knobs, model lookup and
 * slash-command completion. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/session/commands.h"
#include "app/session/config.h"
#include "app/session/models.h"
#include "app/session/options.h"
#include "app/session/paths.h"
#include "engine/sampling/knobs.h"
#include "tap.h"
#include "testutil.h"

/* Writes text to path. */
static void write_text(const char *path, const char *text)
{
    write_file(path, text, strlen(text));
}

static char *tmp(const char *name)
{
    return paths_join(tmpdir, name);
}

/* options_parse on a NULL-terminated list after "rwkv-chat"; stdout and
 * stderr are silenced (usage errors, --help). */
static int parse(struct app_options *o, const char **args)
{
    char *argv[64];
    int argc = 0, rc, saved = dup(2), saved_out = dup(1);
    FILE *null = fopen("/dev/null", "w");

    argv[argc++] = "rwkv-chat";
    while (*args && argc < 63) {
        argv[argc++] = (char *)*args++;
    }
    argv[argc] = NULL;
    fflush(stderr);
    fflush(stdout);
    if (null) {
        dup2(fileno(null), 2);
        dup2(fileno(null), 1);
    }
    rc = options_parse(o, argc, argv);
    fflush(stderr);
    fflush(stdout);
    dup2(saved, 2);
    dup2(saved_out, 1);
    close(saved);
    close(saved_out);
    if (null) {
        fclose(null);
    }
    return rc;
}

static int near(double a, double b)
{
    return fabs(a - b) < 1e-6;
}

static void test_command_line(void)
{
    struct app_options o, d;
    char *cfg = tmp("none.conf");

    setenv("XDG_CONFIG_HOME", tmpdir, 1);   /* no config file there */
    options_defaults(&d);
    {
        const char *a[] = { NULL };
        ok(parse(&o, a) == 0 && !o.model && !o.model_from_user && !o.batch &&
           near(o.sampling.temperature, d.sampling.temperature) &&
           near(o.sampling.top_p, d.sampling.top_p) && o.dtype == RWKV_DTYPE_AUTO,
           "no options: sampler defaults, no model (demo), not batch");
        options_free(&o);
    }
    {
        const char *a[] = { "--model", "x.pth", "--prompt", "bare", "--seed", "42",
                            "--max-tokens", "99", "--temperature", "0.7", "--top-p", "0.9",
                            "--top-k", "40", "--min-p", "0.05", "--presence", "0.1",
                            "--frequency", "0.2", "--decay", "0.99", "-t", "3",
                            "--batch", "--verbose", "--state-in", "a", "--state-out", "b",
                            "--vocab", "v.txt", "--data-dir", "/d", NULL };
        ok(parse(&o, a) == 0 && !strcmp(o.model, "x.pth") && o.model_from_user &&
           !strcmp(o.prompt, "bare") && o.seed_set && o.sampling.seed == 42 &&
           o.sampling.max_tokens == 99 && near(o.sampling.temperature, 0.7) &&
           near(o.sampling.top_p, 0.9) && o.sampling.top_k == 40 &&
           near(o.sampling.min_p, 0.05) && near(o.sampling.presence, 0.1) &&
           near(o.sampling.frequency, 0.2) && near(o.sampling.decay, 0.99) &&
           o.n_threads == 3 && o.batch && o.verbose && !strcmp(o.state_in, "a") &&
           !strcmp(o.state_out, "b") && !strcmp(o.vocab, "v.txt") && !strcmp(o.data_dir, "/d"),
           "every value option lands in app_options");
        options_free(&o);
    }
    {
        const char *a[] = { "--lora", "a.pth:2.25", "--lora", "dir:x/b.pth", "--lora",
                            "c.pth:-0.5", "--lora", "d.pth:", NULL };
        ok(parse(&o, a) == 0 && o.n_lora == 4 && !strcmp(o.lora[0].path, "a.pth") &&
           o.lora[0].scale == 2.25f && !strcmp(o.lora[1].path, "dir:x/b.pth") &&
           o.lora[1].scale == 1.0f && !strcmp(o.lora[2].path, "c.pth") &&
           o.lora[2].scale == -0.5f && !strcmp(o.lora[3].path, "d.pth:") &&
           o.lora[3].scale == 1.0f,
           "--lora FILE[:SCALE] repeats, in order; a suffix that is not a number is the name's");
        options_free(&o);
    }
    {
        const char *a[] = { "--lora", ":2", NULL }, *b[] = { "--lora", "a.pth:1e300", NULL };
        int ra = parse(&o, a);

        options_free(&o);
        ok(ra == 0 && parse(&o, b) == 0 && o.n_lora == 1 && !strcmp(o.lora[0].path, "a.pth:1e300"),
           "--lora ':2' is a file name; an out-of-range scale stays part of the name");
        options_free(&o);
    }
    {
        const char *a[] = { "--top-p", "0.9", "--greedy", NULL };
        const char *b[] = { "--temperature", "0.9", "--greedy", NULL };
        const char *c[] = { "--greedy", "--presence", "0.4", NULL };
        const char *d[] = { "--greedy", "--frequency=0", NULL };

        ok(parse(&o, a) == 0 && o.greedy && o.sampling.temperature == 0 &&
           o.sampling.presence == 0 && o.sampling.frequency == 0,
           "--greedy: temperature 0 and no penalties");
        options_free(&o);
        ok(parse(&o, b) == OPTIONS_USAGE, "--greedy with an explicit --temperature is refused");
        options_free(&o);
        ok(parse(&o, c) == OPTIONS_USAGE, "--greedy with an explicit --presence is refused");
        options_free(&o);
        ok(parse(&o, d) == OPTIONS_USAGE, "--greedy with an explicit --frequency is refused");
        options_free(&o);
    }
    {
        const char *a[] = { "--top-k", "5", "--greedy", NULL };
        struct sampler_settings s;

        memset(&s, 0, sizeof(s));
        s.top_p = 0.5f;
        s.decay = 0.9f;
        ok(parse(&o, a) == 0, "--top-k 5 --greedy");
        options_apply_given(&o, &s);
        ok(s.top_k == 5 && s.temperature == 0 && s.presence == 0 && s.frequency == 0 &&
           near(s.top_p, 0.5) && near(s.decay, 0.9),
           "options_apply_given copies only the knobs given on the command line");
        options_free(&o);
    }
    {
        const char *a[] = { "--jsonl", NULL };
        ok(parse(&o, a) == 0 && o.jsonl && o.batch, "--jsonl implies --batch");
        options_free(&o);
    }
    {
        const char *a[] = { "--complete", NULL };
        ok(parse(&o, a) == 0 && o.complete && o.batch, "--complete implies --batch");
        options_free(&o);
    }
    {
        const char *a[] = { "--dtype", "q8", NULL };
        ok(parse(&o, a) == 0 && o.dtype == RWKV_DTYPE_Q8, "--dtype q8");
        options_free(&o);
    }
    {
        static const char *bad[][3] = {
            { "--temperature", "abc", NULL }, { "--temperature", "-1", NULL },
            { "--top-p", "1.5", NULL }, { "--top-k", "-3", NULL }, { "--seed", "-1", NULL },
            { "--max-tokens", "1e3", NULL }, { "--threads", "x", NULL },
            { "--dtype", "fp8", NULL }, { "--no-such-option", NULL, NULL },
            { "extra-argument", NULL, NULL }, { "--model", NULL, NULL },
        };
        size_t i, n_ok = 0;

        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            if (parse(&o, bad[i]) == OPTIONS_USAGE) {
                n_ok++;
            } else {
                diag("not a usage error: %s %s", bad[i][0], bad[i][1] ? bad[i][1] : "");
            }
            options_free(&o);
        }
        ok(n_ok == sizeof(bad) / sizeof(bad[0]), "bad values and unknown options are usage "
           "errors (%zu of %zu)", n_ok, sizeof(bad) / sizeof(bad[0]));
    }
    {
        const char *a[] = { "--complete", "--jsonl", NULL };
        const char *b[] = { "--resume", "--state-in", "x", NULL };
        ok(parse(&o, a) == OPTIONS_USAGE, "--complete with --jsonl is a usage error");
        options_free(&o);
        ok(parse(&o, b) == OPTIONS_USAGE, "--resume with --state-in is a usage error");
        options_free(&o);
    }
    {
        const char *a[] = { "--config", cfg, NULL };
        ok(parse(&o, a) == OPTIONS_ERROR, "--config naming a missing file is an error");
        options_free(&o);
    }
    free(cfg);
}

static void test_config(void)
{
    struct app_options o;
    char err[512], *path = tmp("config"), *dir;
    int rc;

    write_text(path, "# comment\n\nmodel = mymodel\nprompt=bare\ntemperature = 0.5\n"
                     "top_k = 7\nseed = 9\nthreads = 2\ncolour.user = cyan\n"
                     "color.accent = 244\ndtype = bf16\nmax_tokens = \"300\"\n");
    options_defaults(&o);
    rc = config_load(&o, path, err, sizeof(err));
    ok(rc == 0 && !strcmp(o.model, "mymodel") && o.model_from_user &&
       !strcmp(o.prompt, "bare") && near(o.sampling.temperature, 0.5) &&
       o.sampling.top_k == 7 && o.seed_set && o.sampling.seed == 9 && o.n_threads == 2 &&
       !strcmp(o.colours.user, "cyan") && !strcmp(o.colours.accent, "244") &&
       o.dtype == RWKV_DTYPE_BF16 && o.sampling.max_tokens == 300,
       "config file: model, prompt, knobs, threads, dtype and colours (rc %d %s)", rc,
       rc ? err : "");
    options_free(&o);

    /* The command line wins over the config file (default path via XDG). */
    dir = paths_join(tmpdir, "rwkv-chat");
    mkdir(dir, 0700);
    free(path);
    path = paths_join(dir, "config");
    write_text(path, "temperature = 0.5\nmodel = frommconfig\n");
    setenv("XDG_CONFIG_HOME", tmpdir, 1);
    {
        const char *a[] = { "--temperature", "0.25", NULL };
        ok(parse(&o, a) == 0 && near(o.sampling.temperature, 0.25) &&
           !strcmp(o.model, "frommconfig") && !strcmp(o.config_path, path),
           "command line overrides the config file found in XDG_CONFIG_HOME");
        options_free(&o);
    }
    {
        const char *a[] = { "--help", NULL };
        write_text(path, "bogus line\n");
        ok(parse(&o, a) == OPTIONS_EXIT, "--help works even with a broken config file");
        options_free(&o);
    }
    unlink(path);
    free(path);
    rmdir(dir);
    free(dir);

    /* Inline comments, and every key of share/config.example uncommented. */
    path = tmp("inline.conf");
    write_text(path, "top_k = 9   # nine\nprompt = \"a # b\"\n");
    options_defaults(&o);
    rc = config_load(&o, path, err, sizeof(err));
    ok(rc == 0 && o.sampling.top_k == 9 && !strcmp(o.prompt, "a # b"),
       "'#' after white space starts a comment, not inside quotes (%s)", rc ? err : "");
    options_free(&o);
    {
        const char *src = getenv("TOP_SRCDIR");
        char *example = paths_join(src ? src : "..", "share/config.example");
        char *text = read_file(example, NULL), *line, *save = NULL;
        FILE *f = fopen(path, "w");
        int keys = 0;

        for (line = text ? strtok_r(text, "\n", &save) : NULL; line && f;
             line = strtok_r(NULL, "\n", &save)) {
            if (line[0] == '#' && line[1] >= 'a' && line[1] <= 'z') {
                fprintf(f, "%s\n", line + 1);
                keys++;
            }
        }
        if (f) {
            fclose(f);
        }
        options_defaults(&o);
        rc = config_load(&o, path, err, sizeof(err));
        ok(text && keys >= 20 && rc == 0 && o.model && o.colours.error && o.seed_set,
           "every key in share/config.example is accepted (%d keys%s%s)", keys, rc ? ": " : "",
           rc ? err : "");
        {
            /* the example shows each knob at its default (issue 21: it
             * showed max_tokens = 0 where the default is 1000) */
            struct app_options d;
            char want[48], got[48], differ[256] = "";

            options_defaults(&d);
            for (size_t i = 0; i < knob_count(); i++) {
                const struct knob *k = knob_at(i);

                if (k->type == KNOB_SEED) {
                    continue;   /* a new seed every run: the example shows one */
                }
                knob_format(k, &d.sampling, 0, want, sizeof want);
                knob_format(k, &o.sampling, 0, got, sizeof got);
                if (strcmp(want, got) != 0) {
                    size_t used = strlen(differ);

                    snprintf(differ + used, sizeof differ - used, " %s %s (default %s)",
                             k->name, got, want);
                }
            }
            ok(rc == 0 && !differ[0], "share/config.example shows every knob at its default%s",
               differ[0] ? differ : "");
            options_free(&d);
        }
        options_free(&o);
        free(text);
        free(example);
    }
    unlink(path);
    free(path);

    {
        static const struct { const char *text; const char *expect; } bad[] = {
            { "temperature = 0.5\nno equals sign\n", ":2: expected 'key = value'" },
            { "\n\ncolour = red\n", ":3: unknown key 'colour'" },
            { "colour.title = red\n", ":1: unknown colour 'title'" },
            { "flavour = mint\n", ":1: unknown key 'flavour'" },
            { "top_p = 2\n", ":1: top_p: '2' is not a number from 0 to 1" },
            { "model =\n", ":1: model: missing value" },
            { "colour.user = chartreuse\n", ":1: colour.user: 'chartreuse' is not a colour" },
            { " = 3\n", ":1: missing key" },
        };
        size_t i;

        path = tmp("bad.conf");
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            write_text(path, bad[i].text);
            options_defaults(&o);
            err[0] = 0;
            rc = config_load(&o, path, err, sizeof(err));
            ok(rc == -1 && !strncmp(err, path, strlen(path)) && strstr(err, bad[i].expect) &&
               !strchr(err, '\n'), "bad config line: one line \"FILE%s...\" (%s)", bad[i].expect,
               err);
            options_free(&o);
        }
        options_defaults(&o);
        rc = config_load(&o, tmpdir, err, sizeof(err));
        ok(rc == -1, "a directory as config file is an error (%s)", err);
        options_free(&o);
        options_defaults(&o);
        ok(config_load(&o, "/nonexistent/rwkv-chat-config", err, sizeof(err)) == 1,
           "a missing default config file is no error");
        options_free(&o);
        unlink(path);
        free(path);
    }
}

/* Sets knob k to text through the command line, the config file and /set's
 * options_set_knob: how many of the three accepted it (0 or 3 if they agree). */
static int accepted_everywhere(const struct knob *k, const char *text)
{
    struct app_options o;
    struct sampler_settings s;
    char opt[96], line[160], err[256], *path = tmp("limit.conf");
    const char *a[] = { opt, NULL };
    int n = 0, r;

    snprintf(opt, sizeof(opt), "--%s=%s", k->option, text);
    n += parse(&o, a) == 0;
    options_free(&o);
    snprintf(line, sizeof(line), "%s = %s\n", k->name, text);
    write_text(path, line);
    options_defaults(&o);
    r = config_load(&o, path, err, sizeof(err));
    n += r == 0;
    options_free(&o);
    unlink(path);
    free(path);
    sampler_defaults(&s);
    n += options_set_knob(&s, k->name, text, err, sizeof(err)) == 0;
    return n;
}

/* One table, one check: every way of setting a knob takes its whole range
 * and nothing past it, never NaN or infinity, and the TUI panel's arrow
 * keys stop at the same ends. */
static void test_knob_limits(void)
{
    size_t i, n_ends = 0, n_real = 0, n_nonfinite = 0, n_json = 0, n_panel = 0;

    for (i = 0; i < knob_count(); i++) {
        const struct knob *k = knob_at(i);
        struct sampler_settings s;
        char lo[48], hi[48], below[48], above[48], why[160];
        int good;

        if (k->type == KNOB_SEED) {
            continue;
        }
        snprintf(lo, sizeof lo, "%.17g", k->min);
        snprintf(hi, sizeof hi, "%.17g", k->max);
        snprintf(below, sizeof below, "%.17g", k->min - (k->type == KNOB_WHOLE ? 1 : 0.01));
        snprintf(above, sizeof above, "%.17g", k->max + (k->type == KNOB_WHOLE ? 1 : 0.01));
        if (accepted_everywhere(k, lo) == 3 && accepted_everywhere(k, hi) == 3 &&
            accepted_everywhere(k, below) == 0 && accepted_everywhere(k, above) == 0) {
            n_ends++;
        } else {
            diag("%s: [%s, %s] not taken everywhere, or %s / %s accepted somewhere", k->name, lo,
                 hi, below, above);
        }
        if (k->type == KNOB_REAL) {
            n_real++;
            good = accepted_everywhere(k, "nan") == 0 && accepted_everywhere(k, "inf") == 0 &&
                   accepted_everywhere(k, "-inf") == 0;
            n_nonfinite += good;
        }
        /* --jsonl's path: knob_set from a number. */
        sampler_defaults(&s);
        n_json += knob_set(k, &s, k->max, why, sizeof why) == 0 &&
                  knob_set(k, &s, k->max + 1, why, sizeof why) < 0 &&
                  knob_set(k, &s, k->min - 1, why, sizeof why) < 0 &&
                  knob_set(k, &s, NAN, why, sizeof why) < 0 &&
                  knob_set(k, &s, INFINITY, why, sizeof why) < 0;
        /* The panel: far past either end, it stops at the ends. */
        sampler_defaults(&s);
        knob_step(k, &s, 1 << 30);
        knob_format(k, &s, 1, hi, sizeof hi);
        knob_step(k, &s, -(1 << 30));
        knob_format(k, &s, 1, lo, sizeof lo);
        n_panel += strtod(hi, NULL) == (k->type == KNOB_REAL ? (double)(float)k->max : k->max) &&
                   strtod(lo, NULL) == (k->type == KNOB_REAL ? (double)(float)k->min : k->min);
    }
    ok(n_ends == knob_count() - 1, "command line, config and /set take each knob's whole range "
       "and refuse past both ends (%zu of %zu knobs)", n_ends, knob_count() - 1);
    ok(n_real > 0 && n_nonfinite == n_real, "nan, inf and -inf refused by every surface for every "
       "real-valued knob (%zu of %zu)", n_nonfinite, n_real);
    ok(n_json == knob_count() - 1, "--jsonl's numbers: the same range, NaN and infinity refused "
       "(%zu of %zu)", n_json, knob_count() - 1);
    ok(n_panel == knob_count() - 1, "the TUI panel's steps stop at the same ends (%zu of %zu)",
       n_panel, knob_count() - 1);
    {
        const struct knob *t = knob_find("temperature");

        ok(t && t->max == 10 && t->min == 0, "temperature's range is 0 to 10 for every surface");
    }
    {
        struct sampler_settings s;
        char err[256];

        sampler_defaults(&s);
        ok(knob_check_all(&s, err, sizeof err) == 0, "the defaults pass the check");
        s.top_p = NAN;
        ok(knob_check_all(&s, err, sizeof err) < 0 && strstr(err, "top_p") &&
           strstr(err, "nan") && strstr(err, "not a number from 0 to 1"),
           "a NaN knob is named by the check (%s)", err);
        sampler_defaults(&s);
        s.top_k = -3;
        ok(knob_check_all(&s, err, sizeof err) < 0 && strstr(err, "top_k"),
           "an out-of-range whole knob is named (%s)", err);
    }
}

/* options_parse like parse(), stderr to errpath. */
static int parse_err(struct app_options *o, const char **args, const char *errpath)
{
    char *argv[64];
    int argc = 0, rc, saved = dup(2), fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    argv[argc++] = "rwkv-chat";
    while (*args && argc < 63) {
        argv[argc++] = (char *)*args++;
    }
    argv[argc] = NULL;
    fflush(stderr);
    if (fd >= 0) {
        dup2(fd, 2);
        close(fd);
    }
    rc = options_parse(o, argc, argv);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    return rc;
}

/* Config files that are not plain text files (issue 17): never waited
 * on, never read without bound, never silently cut. */
static void test_config_files(void)
{
    struct app_options o;
    char err[512], *path = tmp("odd.conf"), *fifo = tmp("fifo.conf"), *notdir = tmp("notadir");
    char *big, *text = NULL, *want;
    int rc;

    /* /dev/zero: refused at once (without the type check the line limit
     * would still stop it after 4096 bytes). */
    options_defaults(&o);
    rc = config_load(&o, "/dev/zero", err, sizeof(err));
    ok(rc == -1 && !strcmp(err, "/dev/zero: a character device, not a config file"),
       "/dev/zero as config: refused (%s)", err);
    options_free(&o);
    options_defaults(&o);
    rc = config_load(&o, "/dev/null", err, sizeof(err));
    ok(rc == 0, "/dev/null as config: no settings, no error (rc %d)", rc);
    options_free(&o);

    /* A FIFO nobody writes to: an open without O_NONBLOCK would wait
     * forever (the alarm ends the test then). */
    ok(mkfifo(fifo, 0600) == 0, "made a FIFO");
    alarm(30);
    options_defaults(&o);
    rc = config_load(&o, fifo, err, sizeof(err));
    alarm(0);
    ok(rc == -1 && strstr(err, ": a FIFO, not a config file") && !strncmp(err, fifo, strlen(fifo)),
       "a FIFO as config: refused without waiting (%s)", err);
    options_free(&o);

    /* A line without end, and 1 MB of NUL bytes, as regular files. */
    big = malloc(1 << 20);
    memset(big, 'x', 1 << 20);
    memcpy(big, "prompt = ", 9);
    write_file(path, big, 1 << 20);
    options_defaults(&o);
    rc = config_load(&o, path, err, sizeof(err));
    ok(rc == -1 && strstr(err, ":1: line longer than 4096 bytes") && !o.prompt,
       "a 1 MB line: refused naming the line (%s)", err);
    options_free(&o);
    memset(big, 0, 1 << 20);
    write_file(path, big, 1 << 20);
    options_defaults(&o);
    rc = config_load(&o, path, err, sizeof(err));
    ok(rc == -1 && strstr(err, ":1: NUL byte at byte 1 of the line"),
       "1 MB of NUL bytes: refused naming the line (%s)", err);
    options_free(&o);
    free(big);
    /* A line of exactly 4096 bytes is fine. */
    big = malloc(4097 + 1);
    memset(big, 'a', 4096);
    memcpy(big, "prompt=", 7);
    big[4096] = '\n';
    big[4097] = 0;
    write_text(path, big);
    options_defaults(&o);
    rc = config_load(&o, path, err, sizeof(err));
    ok(rc == 0 && o.prompt && strlen(o.prompt) == 4096 - 7,
       "a line of 4096 bytes is read whole (rc %d)", rc);
    options_free(&o);
    free(big);

    /* NUL bytes inside a line: an error naming file and line, never a
     * value cut short. */
    write_file(path, "top_k = 9\nprompt = ab\0cd\n", 25);
    options_defaults(&o);
    rc = config_load(&o, path, err, sizeof(err));
    if (asprintf(&want, "%s:2: NUL byte at byte 12 of the line", path) < 0) {
        want = NULL;
    }
    ok(rc == -1 && want && !strcmp(err, want) && !o.prompt, "NUL byte in line 2: '%s'", err);
    free(want);
    options_free(&o);

    /* A UTF-8 byte order mark is not part of the first key. */
    write_text(path, "\xEF\xBB\xBFtop_k = 7\nseed = 3\n");
    options_defaults(&o);
    rc = config_load(&o, path, err, sizeof(err));
    ok(rc == 0 && o.sampling.top_k == 7 && o.sampling.seed == 3,
       "a UTF-8 BOM before the first key is skipped (%s)", rc ? err : "ok");
    options_free(&o);
    write_text(path, "top_k = 7\n\xEF\xBB\xBFseed = 3\n");
    options_defaults(&o);
    rc = config_load(&o, path, err, sizeof(err));
    ok(rc == -1 && strstr(err, ":2: unknown key"), "a BOM elsewhere is not skipped (%s)", err);
    options_free(&o);

    /* A default config that cannot be opened (here: a path through a
     * regular file; as a user, also a ~/.config without permission) is
     * skipped with a warning; named with --config it is an error. */
    write_text(notdir, "not a directory\n");
    setenv("XDG_CONFIG_HOME", notdir, 1);
    {
        const char *a[] = { "--temperature", "0.25", NULL };
        char *errpath = tmp("parse.err");

        int one_line;

        rc = parse_err(&o, a, errpath);
        text = read_file(errpath, NULL);
        one_line = text && strchr(text, '\n') == text + strlen(text) - 1;
        if (one_line) {
            text[strlen(text) - 1] = 0;
        }
        ok(rc == 0 && near(o.sampling.temperature, 0.25) && one_line &&
           !strncmp(text, "rwkv-chat: warning: ", 20) &&
           strstr(text, "Not a directory (config file skipped)"),
           "unreadable default config: one warning, the options still apply (%s)", text ? text : "");
        free(text);
        options_free(&o);
        free(errpath);
    }
    {
        char *named = paths_join(notdir, "config");
        const char *a[] = { "--config", named, NULL };

        ok(parse(&o, a) == OPTIONS_ERROR, "the same file named with --config: an error");
        options_free(&o);
        free(named);
    }
    if (geteuid() != 0) {
        char *dir = tmp("locked"), *errpath = tmp("parse2.err");
        const char *a[] = { NULL };

        mkdir(dir, 0700);
        chmod(dir, 0);
        setenv("XDG_CONFIG_HOME", dir, 1);
        rc = parse_err(&o, a, errpath);
        text = read_file(errpath, NULL);
        ok(rc == 0 && text && strstr(text, "Permission denied (config file skipped)"),
           "a config dir without permission: skipped with a warning (%s)", text ? text : "");
        free(text);
        options_free(&o);
        chmod(dir, 0700);
        free(dir);
        free(errpath);
    } else {
        skip("running as root: permissions do not stop reading");
    }
    unsetenv("XDG_CONFIG_HOME");
    unlink(path);
    unlink(fifo);
    unlink(notdir);
    free(path);
    free(fifo);
    free(notdir);
}

static void test_knobs(void)
{
    struct sampler_settings s;
    char err[256], buf[64];
    size_t i, n_ok = 0;

    sampler_defaults(&s);
    ok(options_set_knob(&s, "top-p", "0.5", err, sizeof(err)) == 0 && near(s.top_p, 0.5),
       "knob names accept '-' for '_'");
    ok(options_set_knob(&s, "warmth", "1", err, sizeof(err)) == -1 && strstr(err, "warmth"),
       "unknown knob is refused (%s)", err);
    ok(options_set_knob(&s, "decay", "1.5", err, sizeof(err)) == -1, "decay above 1 is refused");
    for (i = 0; i < knob_count(); i++) {
        knob_format(knob_at(i), &s, 0, buf, sizeof(buf));
        if (options_set_knob(&s, knob_at(i)->name, buf, err, sizeof(err)) == 0) {
            n_ok++;
        }
    }
    ok(n_ok == i && i == 9, "every knob's printed value reads back (%zu of %zu)", n_ok, i);
    options_set_knob(&s, "seed", "18446744073709551615", err, sizeof(err));
    ok(s.seed == UINT64_MAX, "seed takes the whole 64-bit range");
    test_knob_limits();
}

static void test_models(void)
{
    char err[2048], *home = tmp("data"), *mdir, *p, *want, *dirs;
    struct models_entry *list;
    size_t n, i;
    int seen_a = 0, seen_demo = 0;

    setenv("XDG_DATA_HOME", home, 1);
    mdir = paths_join(home, "rwkv-chat/models");
    paths_mkdirs(mdir);
    want = paths_join(mdir, "alpha.pth");
    write_text(want, "not really a model");
    p = models_find("alpha", err, sizeof(err));
    ok(p && !strcmp(p, want), "bare name found as NAME.pth in $XDG_DATA_HOME/rwkv-chat/models");
    free(p);
    p = models_find("alpha.pth", err, sizeof(err));
    ok(p && !strcmp(p, want), "bare name with extension found too");
    free(p);
    p = models_find(want, err, sizeof(err));
    ok(p && !strcmp(p, want), "a path is taken as it is");
    free(p);
    p = models_find("rwkv7-tiny-chat", err, sizeof(err));
    ok(p && strstr(p, "/models/rwkv7-tiny-chat.pth"), "demo model found by name in the data "
       "dirs (%s)", p ? p : err);
    free(p);
    p = models_find_demo(err, sizeof(err));
    ok(p && strstr(p, "/models/" OPTIONS_DEMO_MODEL), "demo model found");
    free(p);
    p = models_find("no-such-model", err, sizeof(err));
    ok(!p && strstr(err, "no-such-model.pth") && strstr(err, mdir) &&
       strstr(err, PKGDATADIR "/models") && !strchr(err, '\n'),
       "missing model: one line naming every place looked (%s)", err);
    free(p);
    p = models_find("/nonexistent/dir/m.pth", err, sizeof(err));
    ok(!p && strstr(err, "/nonexistent/dir/m.pth"), "missing path: error names it (%s)", err);
    ok(models_list(&list, &n, &dirs) == 0, "models_list");
    for (i = 0; i < n; i++) {
        seen_a |= !strcmp(list[i].name, "alpha.pth") && i == 0;
        seen_demo |= !strcmp(list[i].name, OPTIONS_DEMO_MODEL);
    }
    ok(seen_a && seen_demo && dirs && strstr(dirs, mdir) == dirs,
       "listing: the user's models first, then the installed demo (%s)", dirs ? dirs : "");
    models_list_free(list, n);
    free(dirs);
    unlink(want);
    free(want);
    free(mdir);
    free(home);
}

static void test_completion(void)
{
    const char *m[20];
    size_t n, start;

    n = commands_complete(NULL, "/s", 2, m, 20, &start);
    ok(n == 5 && start == 0, "\"/s\" completes to /save /snap /snapshots /set /system (%zu)",
       n);
    n = commands_complete(NULL, "/he", 3, m, 20, &start);
    ok(n == 1 && !strcmp(m[0], "/help"), "\"/he\" completes to /help");
    n = commands_complete(NULL, "/set te", 7, m, 20, &start);
    ok(n == 1 && !strcmp(m[0], "temperature") && start == 5, "\"/set te\" completes the knob");
    n = commands_complete(NULL, "/set top", 8, m, 20, &start);
    ok(n == 2, "\"/set top\" has two candidates (top_p, top_k)");
    n = commands_complete(NULL, "hello /s", 8, m, 20, &start);
    ok(n == 0, "no completion inside a message");
    ok(commands_is_command("/reset") && !commands_is_command("//x") &&
       !commands_is_command("x"), "commands_is_command: '/' yes, '//' and text no");
}

int main(void)
{
    if (tmpdir_make("test_options") != 0) {
        return 99;
    }
    test_command_line();
    test_config();
    test_config_files();
    test_knobs();
    test_models();
    test_completion();
    tmpdir_remove();
    return tap_done();
}
