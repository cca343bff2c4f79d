/*
 * chat_base.c - what every file of the chat module uses: the clock, byte
 * buffers, states shared by reference, and the transcript.
 */
#include "app/session/chat_internal.h"
double chat_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int chat_is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* Grows *buf (capacity *cap) to hold need bytes; 0 or -1. */
int reserve(char **buf, size_t *cap, size_t need)
{
    char *nb;
    size_t nc;

    if (need <= *cap) {
        return 0;
    }
    nc = *cap ? *cap : 256;
    while (nc < need) {
        nc *= 2;
    }
    nb = realloc(*buf, nc);
    if (!nb) {
        return -1;
    }
    *buf = nb;
    *cap = nc;
    return 0;
}

void oom(char *err, size_t errlen)
{
    snprintf(err, errlen, "out of memory");
}

/* --- shared states ------------------------------------------------------ */

struct shared *shared_new(const rwkv_state *st, const float *logits, int n_vocab)
{
    struct shared *s = calloc(1, sizeof *s);

    if (!s) {
        return NULL;
    }
    s->refs = 1;
    s->state = rwkv_state_clone(st);
    if (logits) {
        s->logits = malloc((size_t)n_vocab * sizeof(float));
        if (s->logits) {
            memcpy(s->logits, logits, (size_t)n_vocab * sizeof(float));
        }
    }
    if (!s->state || (logits && !s->logits)) {
        rwkv_state_free(s->state);
        free(s->logits);
        free(s);
        return NULL;
    }
    return s;
}

struct shared *shared_ref(struct shared *s)
{
    if (s) {
        s->refs++;
    }
    return s;
}

void unref(struct shared *s)
{
    if (s && --s->refs == 0) {
        rwkv_state_free(s->state);
        free(s->logits);
        free(s);
    }
}

/* --- transcript --------------------------------------------------------- */

void transcript_truncate(struct transcript *tr, size_t n)
{
    while (tr->n > n) {
        tr->n--;
        free(tr->turns[tr->n].text);
        free(tr->turns[tr->n].reasoning);
    }
}

void transcript_free(struct transcript *tr)
{
    transcript_truncate(tr, 0);
    free(tr->turns);
    tr->turns = NULL;
    tr->cap = 0;
}

/* Appends a turn with a copy of text[0..len-1]. */
int transcript_add(struct transcript *tr, enum chat_role role, const char *text, size_t len)
{
    char *t;

    if (tr->n == tr->cap) {
        size_t nc = tr->cap ? tr->cap * 2 : 16;
        struct chat_turn *nt = realloc(tr->turns, nc * sizeof *nt);

        if (!nt) {
            return -1;
        }
        tr->turns = nt;
        tr->cap = nc;
    }
    t = malloc(len + 1);
    if (!t) {
        return -1;
    }
    memcpy(t, text, len);
    t[len] = '\0';
    tr->turns[tr->n].role = role;
    tr->turns[tr->n].text = t;
    tr->turns[tr->n].reasoning = NULL;
    tr->n++;
    return 0;
}

/* Sets the last turn's reasoning to a copy of text[0..len-1] (len 0:
 * none); 0 or -1. */
int transcript_set_reasoning(struct transcript *tr, const char *text, size_t len)
{
    struct chat_turn *t = &tr->turns[tr->n - 1];

    free(t->reasoning);
    t->reasoning = NULL;
    if (len == 0) {
        return 0;
    }
    t->reasoning = malloc(len + 1);
    if (!t->reasoning) {
        return -1;
    }
    memcpy(t->reasoning, text, len);
    t->reasoning[len] = '\0';
    return 0;
}

int transcript_copy(struct transcript *dst, const struct transcript *src)
{
    size_t i;

    memset(dst, 0, sizeof *dst);
    for (i = 0; i < src->n; i++) {
        const char *r = src->turns[i].reasoning;

        if (transcript_add(dst, src->turns[i].role, src->turns[i].text,
                           strlen(src->turns[i].text)) < 0 ||
            transcript_set_reasoning(dst, r ? r : "", r ? strlen(r) : 0) < 0) {
            transcript_free(dst);
            return -1;
        }
    }
    return 0;
}
