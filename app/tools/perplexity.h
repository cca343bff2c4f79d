/*
 * perplexity.h - rwkv-bench --text: perplexity of each weight format and
 * KL divergence from float32 weights over a text file.
 */
#ifndef RWKV_PERPLEXITY_H
#define RWKV_PERPLEXITY_H

#include "engine/rwkv.h"

struct perplexity_opts {
    const char *model;
    const char *text;           /* the file to score */
    const char *vocab;          /* --vocab, or NULL: the installed World vocabulary */
    enum rwkv_dtype dtype;      /* one format to compare, or RWKV_DTYPE_AUTO: every one */
    int ctx;                    /* tokens per chunk (each chunk from the zero state) */
    int threads;
    int no_cache;
};

/* Scores the text with float32 weights and with each format, and prints
 * one table row per format.  Returns the exit status: 0, or 1 with one
 * line on stderr (unreadable, empty or too short a text; a model whose
 * vocabulary is neither the World one nor bytes). */
int perplexity_run(const struct perplexity_opts *o);

#endif
