/* loadshow.c - the model's load on stderr (loadshow.h). */
#include "app/cli/loadshow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

/* Seconds between two drawings of the bar. */
#define REDRAW_SECONDS 0.1

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* What a step is called: "converting the weights to q4 (first start only)". */
static void step_name(const struct loadshow *l, enum rwkv_load_step step, char *buf, size_t len)
{
    switch (step) {
    case RWKV_LOAD_VERIFY:
        snprintf(buf, len, "checking the file's CRC-32s%s",
                 l->cached ? " (first start only)" : "");
        break;
    case RWKV_LOAD_READ:
        snprintf(buf, len, "reading the weights");
        break;
    case RWKV_LOAD_CACHE_READ:
        snprintf(buf, len, "reading the converted weights from the cache");
        break;
    case RWKV_LOAD_CONVERT:
        snprintf(buf, len, "converting the weights to %s%s", l->dtype,
                 l->cached ? " (first start only: the result is cached)" : "");
        break;
    case RWKV_LOAD_CACHE_WRITE:
        snprintf(buf, len, "writing the conversion cache for the next start");
        break;
    default:
        snprintf(buf, len, "loading");
        break;
    }
}

void loadshow_init(struct loadshow *l, int bar, int lines, int cached, const char *dtype)
{
    const char *delay = getenv("RWKV_CHAT_LOAD_DELAY_MS");

    memset(l, 0, sizeof *l);
    l->bar = bar;
    l->lines = !bar && lines;
    l->cached = cached;
    l->dtype = dtype;
    l->step = -1;
    l->delay_ms = delay ? atol(delay) : 0;
}

void loadshow_progress(void *arg, enum rwkv_load_step step, uint64_t done, uint64_t total)
{
    struct loadshow *l = arg;
    char name[128], bar[33];
    int new_step = (int)step != l->step, pct;

    if (!l->bar && !l->lines) {
        return;
    }
    step_name(l, step, name, sizeof name);
    pct = total == 0 ? 100 : done >= total ? 100 : (int)(done * 100 / total);
    if (new_step) {
        l->step = (int)step;
        l->done_said = 0;
        l->step_started = now();
        if (l->lines) {
            fprintf(stderr, "rwkv-chat: load: %s\n", name);
        }
    }
    if (l->lines && done == total && !l->done_said) {
        fprintf(stderr, "rwkv-chat: load: %s: done in %.2f s\n", name, now() - l->step_started);
        l->done_said = 1;
    }
    if (l->bar && (new_step || done == total || now() - l->drawn >= REDRAW_SECONDS)) {
        struct winsize ws;
        int fill = pct * 20 / 100, cols = 80, room;

        if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
            cols = ws.ws_col;
        }
        memset(bar, '#', (size_t)fill);
        memset(bar + fill, '.', (size_t)(20 - fill));
        bar[20] = '\0';
        /* one line, never wrapped: "\r" must reach its start again */
        room = cols - 1 - (int)strlen("rwkv-chat:  [####################] 100%");
        fprintf(stderr, "\r\033[Krwkv-chat: %.*s [%s] %3d%%", room > 0 ? room : 0, name, bar,
                pct);
        fflush(stderr);
        l->drawn = now();
        l->drawn_on_line = 1;
    }
    if (l->delay_ms > 0) {
        struct timespec ts = { l->delay_ms / 1000, (l->delay_ms % 1000) * 1000000L };

        nanosleep(&ts, NULL);
    }
}

void loadshow_end(struct loadshow *l)
{
    if (l->drawn_on_line) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
    l->step = -1;
    l->drawn_on_line = 0;
}
