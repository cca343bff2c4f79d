/*
 * loadshow.h - shows a model's load (rwkv.h's progress steps) on stderr:
 * a bar redrawn in place on a terminal (the TUI before it starts, and
 * --batch --verbose on a terminal), one line per step otherwise (--batch
 * --verbose into a file).
 */
#ifndef RWKV_LOADSHOW_H
#define RWKV_LOADSHOW_H

#include "engine/rwkv.h"

struct loadshow {
    int bar;                    /* draw a bar (stderr is a terminal) */
    int lines;                  /* else a line per step */
    int cached;                 /* conversions are cached: "first start only" */
    const char *dtype;          /* the format converted to */
    int step;                   /* the step being shown; -1 none yet */
    int done_said;              /* lines: the step's end was said */
    int drawn_on_line;          /* the bar is on the terminal's line */
    double drawn;               /* when the bar was last drawn */
    double step_started;
    long delay_ms;              /* tests: RWKV_CHAT_LOAD_DELAY_MS, a pause per report */
};

/* Nothing is shown when neither bar nor lines is set. */
void loadshow_init(struct loadshow *l, int bar, int lines, int cached, const char *dtype);
/* The load's progress callback (arg: a struct loadshow). */
void loadshow_progress(void *arg, enum rwkv_load_step step, uint64_t done, uint64_t total);
/* After the load: clears the bar from the terminal's line. */
void loadshow_end(struct loadshow *l);

#endif
