/*
 * tuned.h - the state-tuned golden check test_rwkv7 and test_rwkv456 share:
 * ../shared/fixtures/tuned/NAME.tuned.pth loaded with rwkv_state_load_tuned
 * puts time_state into the wkv state in the version's orientation (as stored
 * for RWKV-7, transposed for RWKV-5/6), zeroes the token-shift parts, and
 * the logits from that start match the official package's within 1e-4;
 * the other orientation does not match (so the check can tell them apart).
 * Includes tests/tap.h.
 */
#ifndef RWKV_TESTS_TUNED_H
#define RWKV_TESTS_TUNED_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/load/checkpoint.h"
#include "engine/rwkv.h"
#include "tests/evalonce.h"
#include "tests/tap.h"

/* Largest |a - b| of the logits evaluated from start over tokens. */
static double tuned_logits_diff(rwkv_model *m, const rwkv_state *start, const int32_t *tokens,
                                size_t n, const float *golden)
{
    size_t nv = (size_t)rwkv_model_info(m)->n_vocab, i;
    rwkv_state *st = rwkv_state_clone(start);
    float *out = malloc(n * nv * sizeof *out);
    char err[RWKV_ERRLEN];
    double e = 0;

    if (!st || !out || eval_once(m, st, tokens, n, out, 1, err, sizeof err) != 0) {
        diag("eval: %s", st && out ? err : "out of memory");
        e = INFINITY;
    }
    for (i = 0; e != INFINITY && i < n * nv; i++) {
        double d = fabs((double)out[i] - (double)golden[i]);

        e = d > e || d != d ? d : e;
    }
    free(out);
    rwkv_state_free(st);
    return e;
}

/* The check on fixtures/models/MODEL with fixtures/tuned/NAME.*;
 * transposed: whether the version's wkv is time_state.transpose(1, 2). */
static void check_tuned_fixture(const char *model, const char *name, int transposed)
{
    char rel[256], tuned_path[4096], err[RWKV_ERRLEN] = "";
    rwkv_model *m;
    rwkv_state *st = NULL, *other = NULL;
    const struct rwkv_info *info;
    ckpt_file *f = NULL;
    float *golden = NULL, *ts = NULL;
    int32_t *tokens = NULL;
    size_t n = 0, len, C, H, N, per, l, h, i, j;
    char *text, *p, *end;
    int exact = 1;

    snprintf(rel, sizeof rel, "fixtures/models/%s", model);
    m = rwkv_model_load(shared_path(rel), NULL, err, sizeof err);
    snprintf(rel, sizeof rel, "fixtures/tuned/%s.tuned.pth", name);
    snprintf(tuned_path, sizeof tuned_path, "%s", shared_path(rel));
    snprintf(rel, sizeof rel, "fixtures/tuned/%s.tuned.tokens", name);
    text = read_file(shared_path(rel), NULL);
    snprintf(rel, sizeof rel, "fixtures/tuned/%s.tuned.logits.f32", name);
    golden = read_file(shared_path(rel), &len);
    if (!m || !text || !golden) {
        ok(0, "%s: tuned fixture loads (%s)", name, m ? "missing fixture file" : err);
        goto done;
    }
    tokens = malloc((strlen(text) / 2 + 1) * sizeof *tokens);
    for (p = text;; p = end) {
        long v = strtol(p, &end, 10);

        if (end == p) {
            break;
        }
        tokens[n++] = (int32_t)v;
    }
    info = rwkv_model_info(m);
    C = (size_t)info->n_embd;
    H = (size_t)info->n_head;
    N = (size_t)info->head_size;
    per = 2 * C + H * N * N;
    st = rwkv_state_new(m);
    ok(rwkv_state_load_tuned(m, st, tuned_path, err, sizeof err) == 0, "%s: tuned state loads%s%s",
       name, err[0] ? ": " : "", err);
    f = ckpt_open(tuned_path, err, sizeof err);
    ts = malloc(H * N * N * sizeof *ts);
    for (l = 0; f && l < (size_t)info->n_layer; l++) {
        const float *layer = rwkv_state_cdata(st) + l * per;

        snprintf(rel, sizeof rel, "blocks.%zu.att.time_state", l);
        ckpt_to_f32(ckpt_find(f, rel)->dtype, ckpt_find(f, rel)->data, ts, H * N * N);
        for (i = 0; i < C; i++) {
            exact &= layer[i] == 0.0f && layer[C + H * N * N + i] == 0.0f;
        }
        for (h = 0; h < H; h++) {
            for (i = 0; i < N; i++) {
                for (j = 0; j < N; j++) {
                    size_t at = (h * N + i) * N + j, tr = (h * N + j) * N + i;

                    exact &= layer[C + at] == ts[transposed ? tr : at];
                }
            }
        }
    }
    ok(f && exact, "%s: wkv = time_state%s, token-shift parts zero", name,
       transposed ? ".transpose(1, 2)" : " as stored");
    {
        double e = tuned_logits_diff(m, st, tokens, n, golden);

        ok(n * (size_t)info->n_vocab * sizeof(float) == len && e < 1e-4,
           "%s: logits from the tuned start match the official package's (max diff %.3g)", name,
           e);
    }
    /* The other orientation gives other logits: the check above tells. */
    other = rwkv_state_clone(st);
    for (l = 0; other && l < (size_t)info->n_layer; l++) {
        float *wkv = rwkv_state_data(other) + l * per + C;

        for (h = 0; h < H; h++) {
            for (i = 0; i < N; i++) {
                for (j = i + 1; j < N; j++) {
                    float tmp = wkv[(h * N + i) * N + j];

                    wkv[(h * N + i) * N + j] = wkv[(h * N + j) * N + i];
                    wkv[(h * N + j) * N + i] = tmp;
                }
            }
        }
    }
    {
        double e = other ? tuned_logits_diff(m, other, tokens, n, golden) : 0;

        ok(e > 1e-3, "%s: the other orientation does not match (max diff %.3g)", name, e);
    }
done:
    if (f) {
        ckpt_close(f);
    }
    free(ts);
    free(text);
    free(tokens);
    free(golden);
    rwkv_state_free(other);
    rwkv_state_free(st);
    rwkv_model_free(m);
}

#endif
