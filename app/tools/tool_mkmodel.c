/*
 * tool_mkmodel.c - rwkv-tool mkmodel: write a random-weight model with the
 * key names, shapes and order of a released RWKV-4, 5.x, 6 or 7
 * checkpoint, in the official .pth (or .safetensors) format, so benchmarks
 * run at real sizes without downloads.
 *
 * Values are drawn in the ranges trained models have (LayerNorm weights
 * near 1, token-shift mixes in [0, 1], decays across their trained range,
 * small LoRA matrices, matrices with sd ~ 1/sqrt(fan-in)), so logits have a
 * standard deviation of a few units and the argmax moves from token to
 * token, as with the test fixtures.
 */
#include <getopt.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/tools/pthwrite.h"
#include "app/tools/tool.h"
#include "engine/base/half.h"

/* How the values of one tensor are drawn. */
enum dist { NORMAL, UNIFORM };

struct spec {
    enum dist dist;
    double a, b;                /* NORMAL: mean, sd; UNIFORM: low, high */
};

/* --follow: the model continues each listed token with the one after it. */
#define FOLLOW_MAX 1024
struct follow {
    int n;                      /* distinct tokens with a successor */
    int32_t token[FOLLOW_MAX], next[FOLLOW_MAX];
};

struct gen {
    uint64_t seed;
    enum ckpt_dtype dtype;
    pthw *w;
    void *buf;                  /* one tensor in the output format */
    size_t bufsize;
    uint64_t n_params;
    const struct follow *follow;    /* NULL: random weights throughout */
    int64_t C;
};

/* splitmix64: seeds the per-tensor generators. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* xoshiro256**: the value stream of one tensor. */
struct rng {
    uint64_t s[4];
};

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s, result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Each tensor's stream depends only on the seed and its name, so the values
 * do not change when other tensors are added or reordered. */
static void rng_seed(struct rng *r, uint64_t seed, const char *name)
{
    uint64_t h = 1469598103934665603ull, x;
    int i;

    for (; *name; name++) {
        h = (h ^ (unsigned char)*name) * 1099511628211ull;
    }
    x = seed ^ h;
    for (i = 0; i < 4; i++) {
        r->s[i] = splitmix64(&x);
    }
}

/* An approximately normal deviate (Irwin-Hall sum of four 16-bit uniforms,
 * unit variance, bounded at +-3.46 sd like a truncated normal init). */
static float rng_normal(struct rng *r)
{
    uint64_t v = rng_next(r);
    double s = (double)(v & 0xffff) + (double)((v >> 16) & 0xffff) +
               (double)((v >> 32) & 0xffff) + (double)(v >> 48);

    return (float)((s / 65536.0 - 2.0) * 1.7320508075688772);
}

static float rng_uniform(struct rng *r)
{
    return (float)((rng_next(r) >> 40) * (1.0 / 16777216.0));
}

/* A --follow model passes the embedding through unchanged (every block's
 * output projections are zero, the LayerNorms plain), token t's embedding
 * is one-hot at dimension k (t the k-th listed token), and the head row of
 * its successor has 10 there: the successor's logit is far above every
 * other, so greedy decoding follows the list. */
enum follow_kind { FOLLOW_RANDOM, FOLLOW_ZERO, FOLLOW_ONE, FOLLOW_EMB, FOLLOW_HEAD };

static enum follow_kind follow_kind(const char *name)
{
    size_t n = strlen(name);

    if (!strcmp(name, "emb.weight")) {
        return FOLLOW_EMB;
    }
    if (!strcmp(name, "head.weight")) {
        return FOLLOW_HEAD;
    }
    if (!strcmp(name, "blocks.0.ln0.weight") || !strcmp(name, "ln_out.weight")) {
        return FOLLOW_ONE;
    }
    if (!strcmp(name, "blocks.0.ln0.bias") || !strcmp(name, "ln_out.bias") ||
        (n > 18 && !strcmp(name + n - 18, "att.output.weight")) ||
        (n > 17 && !strcmp(name + n - 17, "ffn.value.weight"))) {
        return FOLLOW_ZERO;
    }
    return FOLLOW_RANDOM;
}

static float follow_value(const struct gen *g, enum follow_kind kind, size_t i)
{
    int64_t row = (int64_t)(i / (size_t)g->C), col = (int64_t)(i % (size_t)g->C);
    int k;

    switch (kind) {
    case FOLLOW_ONE:
        return 1.0f;
    case FOLLOW_EMB:
        for (k = 0; k < g->follow->n; k++) {
            if (g->follow->token[k] == row) {
                return col == k ? 1.0f : 0.0f;
            }
        }
        return 0.0f;
    case FOLLOW_HEAD:
        return col < g->follow->n && g->follow->next[col] == row ? 10.0f : 0.0f;
    default:
        return 0.0f;
    }
}

/* Parses --follow's ids ("5 9 12", commas allowed) into f; 0, or -1 after
 * saying why. */
static int parse_follow(const char *s, struct follow *f, long vocab, long embd)
{
    int32_t prev = -1;
    char *end;
    int k;

    f->n = 0;
    for (;;) {
        long v;

        while (*s == ' ' || *s == ',' || *s == '\t' || *s == '\n') {
            s++;
        }
        if (!*s) {
            break;
        }
        errno = 0;
        v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v >= vocab) {
            tool_error("mkmodel: --follow: '%.20s' is not a token id below %ld", s, vocab);
            return -1;
        }
        s = end;
        if (prev >= 0) {
            for (k = 0; k < f->n && f->token[k] != prev; k++) {
            }
            if (k < f->n && f->next[k] != (int32_t)v) {
                tool_error("mkmodel: --follow: token %d is followed by %d and by %ld: a "
                           "token's successor must be the same each time", prev, f->next[k], v);
                return -1;
            }
            if (k == f->n) {
                if (f->n == FOLLOW_MAX || f->n == embd) {
                    tool_error("mkmodel: --follow: more than %ld tokens with a successor "
                               "(--embd)", f->n == embd ? embd : (long)FOLLOW_MAX);
                    return -1;
                }
                f->token[f->n] = prev;
                f->next[f->n++] = (int32_t)v;
            }
        }
        prev = (int32_t)v;
    }
    if (f->n == 0) {
        tool_error("mkmodel: --follow needs at least two token ids");
        return -1;
    }
    return 0;
}

/* Draws one tensor's values, converts them to the output format and hands
 * them to the writer. */
static int gen_tensor(struct gen *g, const char *name, int ndim, const int64_t *shape,
                      struct spec sp)
{
    char err[512];
    struct rng r;
    size_t n = 1, i, esize = g->dtype == CKPT_F32 ? 4 : 2;
    enum follow_kind kind;
    int d;

    for (d = 0; d < ndim; d++) {
        n *= (size_t)shape[d];
    }
    if (n * esize > g->bufsize) {
        void *p = realloc(g->buf, n * esize);

        if (!p) {
            tool_error("out of memory for tensor %s", name);
            return -1;
        }
        g->buf = p;
        g->bufsize = n * esize;
    }
    rng_seed(&r, g->seed, name);
    kind = g->follow ? follow_kind(name) : FOLLOW_RANDOM;
    for (i = 0; i < n; i++) {
        float v = sp.dist == NORMAL ? (float)(sp.a + sp.b * rng_normal(&r))
                                    : (float)(sp.a + (sp.b - sp.a) * rng_uniform(&r));

        if (kind != FOLLOW_RANDOM) {
            v = follow_value(g, kind, i);
        }

        if (g->dtype == CKPT_F32) {
            ((float *)g->buf)[i] = v;
        } else if (g->dtype == CKPT_BF16) {
            ((uint16_t *)g->buf)[i] = half_f32_to_bf16(v);
        } else {
            ((uint16_t *)g->buf)[i] = half_f32_to_f16(v);
        }
    }
    g->n_params += n;
    if (pthw_write(g->w, g->buf, err, sizeof err)) {
        tool_error("%s", err);
        return -1;
    }
    return 0;
}

/* The shape of the model to write. */
struct arch {
    int version, minor;         /* 4, 5.0 / 5.1 / 5.2, 6, 7 */
    int L, C, V, H, N, F;       /* layers, n_embd, vocab, heads x head size, ffn */
    int d_decay, d_aaa, d_mv, d_gate;   /* RWKV-7 LoRA ranks */
    int d_mix;                  /* RWKV-6 token-shift LoRA rank (d_decay: its decay rank) */
};

/* LoRA ranks of the released RWKV-7 models: RWKV-LM's suggestion
 * max(32, round(k * C^p / 32) * 32), with the gate rank 128 at C = 1024. */
static int lora_rank(double k, double p, int C)
{
    int r = (int)lround(k * pow(C, p) / 32.0) * 32;

    return r < 32 ? 32 : r;
}

/* T declares (g->w not begun) or writes the next tensor, named in `name`;
 * the walks below run once to declare and once to write. */
#define T(nd, s0, s1, s2, sp) do { \
        int64_t shape_[3] = { (s0), (s1), (s2) }; \
        char e_[512]; \
        if (declare ? pthw_declare(g->w, name, g->dtype, (nd), shape_, e_, sizeof e_) != 0 \
                    : gen_tensor(g, name, (nd), shape_, (sp)) != 0) { \
            if (declare) { \
                tool_error("%s", e_); \
            } \
            return -1; \
        } \
    } while (0)
#define NAME(...) snprintf(name, sizeof name, __VA_ARGS__)
#define NRM(mean, sd) ((struct spec){ NORMAL, (mean), (sd) })
#define UNI(lo, hi) ((struct spec){ UNIFORM, (lo), (hi) })

/* The tensors of a state-tuned start for a model of this shape (5.x, 6, 7):
 * blocks.N.att.time_state, [H, N, N], as state tuning saves them. */
static int time_state_walk(struct gen *g, const struct arch *m, int declare)
{
    char name[128];
    int l;

    for (l = 0; l < m->L; l++) {
        NAME("blocks.%d.att.time_state", l);
        T(3, m->H, m->N, m->N, NRM(0, 0.5));
    }
    return 0;
}

/* The tensors of an RWKV-7 ("x070") checkpoint, in the order the released
 * files list them. */
static int v7_walk(struct gen *g, const struct arch *m, int declare)
{
    const int64_t C = m->C;
    const double sc = 1.0 / sqrt((double)C);
    char name[128];
    int l, i;

    NAME("emb.weight");
    T(2, m->V, C, 0, NRM(0, 1));
    for (l = 0; l < m->L; l++) {
        static const char *const mix[] = { "x_r", "x_w", "x_k", "x_v", "x_a", "x_g" };
        const double rd = 0.566 / sqrt((double)m->d_decay), ra = 0.566 / sqrt((double)m->d_aaa);
        const double rv = 0.566 / sqrt((double)m->d_mv), rg = 0.566 / sqrt((double)m->d_gate);
        const double r1 = 1.13 * sc;

        if (l == 0) {
            NAME("blocks.0.ln0.weight");
            T(1, C, 0, 0, UNI(0.8, 1.2));
            NAME("blocks.0.ln0.bias");
            T(1, C, 0, 0, NRM(0, 0.05));
        }
        NAME("blocks.%d.ln1.weight", l);
        T(1, C, 0, 0, UNI(0.8, 1.2));
        NAME("blocks.%d.ln1.bias", l);
        T(1, C, 0, 0, NRM(0, 0.05));
        NAME("blocks.%d.ln2.weight", l);
        T(1, C, 0, 0, UNI(0.8, 1.2));
        NAME("blocks.%d.ln2.bias", l);
        T(1, C, 0, 0, NRM(0, 0.05));
        for (i = 0; i < 6; i++) {
            NAME("blocks.%d.att.%s", l, mix[i]);
            T(3, 1, 1, C, UNI(0, 1));
        }
        NAME("blocks.%d.att.w0", l);
        T(3, 1, 1, C, UNI(-6, 1));
        NAME("blocks.%d.att.r_k", l);
        T(2, m->H, m->N, 0, NRM(0, 0.2));
        NAME("blocks.%d.att.w1", l);
        T(2, C, m->d_decay, 0, NRM(0, r1));
        NAME("blocks.%d.att.w2", l);
        T(2, m->d_decay, C, 0, NRM(0, rd));
        NAME("blocks.%d.att.a1", l);
        T(2, C, m->d_aaa, 0, NRM(0, r1));
        NAME("blocks.%d.att.a2", l);
        T(2, m->d_aaa, C, 0, NRM(0, ra));
        NAME("blocks.%d.att.a0", l);
        T(3, 1, 1, C, UNI(-0.8, 0.8));
        NAME("blocks.%d.att.g1", l);
        T(2, C, m->d_gate, 0, NRM(0, r1));
        NAME("blocks.%d.att.g2", l);
        T(2, m->d_gate, C, 0, NRM(0, rg));
        if (l > 0) {
            NAME("blocks.%d.att.v2", l);
            T(2, m->d_mv, C, 0, NRM(0, rv));
            NAME("blocks.%d.att.v1", l);
            T(2, C, m->d_mv, 0, NRM(0, r1));
            NAME("blocks.%d.att.v0", l);
            T(3, 1, 1, C, NRM(0.5, 0.5));
        }
        NAME("blocks.%d.att.k_k", l);
        T(3, 1, 1, C, UNI(0.5, 1.2));
        NAME("blocks.%d.att.k_a", l);
        T(3, 1, 1, C, UNI(0.5, 1.5));
        NAME("blocks.%d.att.receptance.weight", l);
        T(2, C, C, 0, NRM(0, sc));
        NAME("blocks.%d.att.key.weight", l);
        T(2, C, C, 0, NRM(0, sc));
        NAME("blocks.%d.att.value.weight", l);
        T(2, C, C, 0, NRM(0, sc));
        NAME("blocks.%d.att.output.weight", l);
        T(2, C, C, 0, NRM(0, sc));
        NAME("blocks.%d.att.ln_x.weight", l);
        T(1, C, 0, 0, UNI(0.5, 1.5));
        NAME("blocks.%d.att.ln_x.bias", l);
        T(1, C, 0, 0, NRM(0, 0.05));
        NAME("blocks.%d.ffn.x_k", l);
        T(3, 1, 1, C, UNI(0, 1));
        NAME("blocks.%d.ffn.key.weight", l);
        T(2, 4 * C, C, 0, NRM(0, sc));
        NAME("blocks.%d.ffn.value.weight", l);
        T(2, C, 4 * C, 0, NRM(0, 0.5 / sqrt(4.0 * (double)C)));
    }
    NAME("ln_out.weight");
    T(1, C, 0, 0, UNI(0.8, 1.2));
    NAME("ln_out.bias");
    T(1, C, 0, 0, NRM(0, 0.05));
    NAME("head.weight");
    T(2, m->V, C, 0, NRM(0, 3 * sc));
    return 0;
}

/* A LayerNorm's weight (near 1) and bias (near 0). */
static int norm_pair(struct gen *g, int declare, const char *prefix, int64_t C, double lo,
                     double hi)
{
    char name[128];

    NAME("%s.weight", prefix);
    T(1, C, 0, 0, UNI(lo, hi));
    NAME("%s.bias", prefix);
    T(1, C, 0, 0, NRM(0, 0.05));
    return 0;
}

/* The time mix of RWKV-4 ("RWKV_TimeMix"): a decay and a bonus per channel,
 * both [C], with w = -exp(time_decay) per token in log space. */
static int v4_att(struct gen *g, const struct arch *m, int declare, int l)
{
    static const char *const mix[] = { "k", "v", "r" };
    static const char *const lin[] = { "key", "value", "receptance", "output" };
    const int64_t C = m->C;
    const double sc = 1.0 / sqrt((double)C);
    char name[128];
    int i;

    NAME("blocks.%d.att.time_decay", l);
    T(1, C, 0, 0, UNI(-5, 3));
    NAME("blocks.%d.att.time_first", l);
    T(1, C, 0, 0, UNI(-2, 1));
    for (i = 0; i < 3; i++) {
        NAME("blocks.%d.att.time_mix_%s", l, mix[i]);
        T(3, 1, 1, C, UNI(0, 1));
    }
    for (i = 0; i < 4; i++) {
        NAME("blocks.%d.att.%s.weight", l, lin[i]);
        T(2, C, C, 0, NRM(0, sc));
    }
    return 0;
}

/* The time mix of RWKV-5.x ("RWKV_Tmix_x052" and its 5.0 / 5.1 forerunners):
 * decay w = exp(-exp(time_decay)) per channel [H][N] (5.2) or per head [H]
 * (5.0, 5.1); bonus u = time_faaaa (5.1, 5.2) or exp(time_first) (5.0). */
static int v5_att(struct gen *g, const struct arch *m, int declare, int l)
{
    static const char *const mix[] = { "k", "v", "r", "g" };
    static const char *const lin[] = { "receptance", "key", "value", "output", "gate" };
    const int64_t C = m->C;
    const double sc = 1.0 / sqrt((double)C);
    const int gated = m->minor >= 1;
    const int nd = m->minor == 2 ? 2 : 1;
    const int64_t d0 = m->H, d1 = m->minor == 2 ? m->N : 0;
    char name[128];
    int i;

    for (i = 0; i < 3 + gated; i++) {
        NAME("blocks.%d.att.time_mix_%s", l, mix[i]);
        T(3, 1, 1, C, UNI(0, 1));
    }
    NAME("blocks.%d.att.time_decay", l);
    T(nd, d0, d1, 0, UNI(-6, 1));
    if (m->minor == 0) {
        NAME("blocks.%d.att.time_first", l);
        T(1, m->H, 0, 0, UNI(-3, 0));
    } else {
        NAME("blocks.%d.att.time_faaaa", l);
        T(nd, d0, d1, 0, UNI(-0.3, 1));
    }
    for (i = 0; i < 4 + gated; i++) {
        NAME("blocks.%d.att.%s.weight", l, lin[i]);
        T(2, C, C, 0, NRM(0, sc));
    }
    NAME("blocks.%d.att.ln_x", l);
    return norm_pair(g, declare, name, C, 0.5, 1.5);
}

/* The time mix of RWKV-6 ("RWKV_Tmix_x060"): the data-dependent token shift
 * (time_maa_x, time_maa_w1 [C][5 D], time_maa_w2 [5][D][C]) and the decay
 * LoRA (time_decay_w1 [C][Dd], time_decay_w2 [Dd][C]) around
 * w = exp(-exp(time_decay + lora)). */
static int v6_att(struct gen *g, const struct arch *m, int declare, int l)
{
    static const char *const mix[] = { "x", "w", "k", "v", "r", "g" };
    static const char *const lin[] = { "receptance", "key", "value", "output", "gate" };
    const int64_t C = m->C;
    const double sc = 1.0 / sqrt((double)C), r1 = 1.13 * sc;
    char name[128];
    int i;

    for (i = 0; i < 6; i++) {
        NAME("blocks.%d.att.time_maa_%s", l, mix[i]);
        T(3, 1, 1, C, UNI(0, 1));
    }
    NAME("blocks.%d.att.time_maa_w1", l);
    T(2, C, 5 * m->d_mix, 0, NRM(0, r1));
    NAME("blocks.%d.att.time_maa_w2", l);
    T(3, 5, m->d_mix, C, NRM(0, 0.3 / sqrt((double)m->d_mix)));
    NAME("blocks.%d.att.time_decay", l);
    T(3, 1, 1, C, UNI(-6, 0.5));
    NAME("blocks.%d.att.time_decay_w1", l);
    T(2, C, m->d_decay, 0, NRM(0, r1));
    NAME("blocks.%d.att.time_decay_w2", l);
    T(2, m->d_decay, C, 0, NRM(0, 0.566 / sqrt((double)m->d_decay)));
    NAME("blocks.%d.att.time_faaaa", l);
    T(2, m->H, m->N, 0, UNI(-0.3, 1));
    for (i = 0; i < 5; i++) {
        NAME("blocks.%d.att.%s.weight", l, lin[i]);
        T(2, C, C, 0, NRM(0, sc));
    }
    NAME("blocks.%d.att.ln_x", l);
    return norm_pair(g, declare, name, C, 0.5, 1.5);
}

/* The tensors of an RWKV-4, 5.x or 6 checkpoint in the order torch.save
 * lists the training code's state dict (RWKV-LM): per block ln1, ln2,
 * (ln0), then each module's parameters before its sub-modules.  All in one
 * dtype, vectors included, as in the released files (RWKV-4 World keeps
 * time_decay and time_first in bf16 too) and the fixtures. */
static int v456_walk(struct gen *g, const struct arch *m, int declare)
{
    const int64_t C = m->C, F = m->F;
    const double sc = 1.0 / sqrt((double)C);
    const char *mixk = m->version == 6 ? "time_maa_k" : "time_mix_k";
    const char *mixr = m->version == 6 ? "time_maa_r" : "time_mix_r";
    char name[128], prefix[64];
    int l, rc;

    NAME("emb.weight");
    T(2, m->V, C, 0, NRM(0, 1));
    for (l = 0; l < m->L; l++) {
        snprintf(prefix, sizeof prefix, "blocks.%d.ln1", l);
        if (norm_pair(g, declare, prefix, C, 0.8, 1.2) != 0) {
            return -1;
        }
        snprintf(prefix, sizeof prefix, "blocks.%d.ln2", l);
        if (norm_pair(g, declare, prefix, C, 0.8, 1.2) != 0) {
            return -1;
        }
        if (l == 0 && norm_pair(g, declare, "blocks.0.ln0", C, 0.8, 1.2) != 0) {
            return -1;
        }
        rc = m->version == 4 ? v4_att(g, m, declare, l)
           : m->version == 5 ? v5_att(g, m, declare, l)
           : v6_att(g, m, declare, l);
        if (rc != 0) {
            return -1;
        }
        NAME("blocks.%d.ffn.%s", l, mixk);
        T(3, 1, 1, C, UNI(0, 1));
        NAME("blocks.%d.ffn.%s", l, mixr);
        T(3, 1, 1, C, UNI(0, 1));
        NAME("blocks.%d.ffn.key.weight", l);
        T(2, F, C, 0, NRM(0, sc));
        NAME("blocks.%d.ffn.receptance.weight", l);
        T(2, C, C, 0, NRM(0, sc));
        NAME("blocks.%d.ffn.value.weight", l);
        T(2, C, F, 0, NRM(0, 0.5 / sqrt((double)F)));
    }
    if (norm_pair(g, declare, "ln_out", C, 0.8, 1.2) != 0) {
        return -1;
    }
    NAME("head.weight");
    T(2, m->V, C, 0, NRM(0, 3 * sc));
    return 0;
}
#undef T
#undef NAME
#undef NRM
#undef UNI

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: rwkv-tool mkmodel --version V --layers L --embd C [OPTION]... -o FILE\n"
        "Write a random-weight RWKV model with the key names, shapes and order of\n"
        "the released checkpoints, as a PyTorch .pth (or FILE.safetensors).\n\n"
        "  --version V     RWKV version: 4, 5 (= 5.2), 5.0, 5.1, 5.2, 6 or 7 (default 7)\n"
        "  --layers L      number of blocks\n"
        "  --embd C        embedding size (5.x, 6, 7: a multiple of the head size)\n"
        "  --head-size N   head size for 5.x, 6 and 7 (default 64, as released)\n"
        "  --vocab V       vocabulary size (default 65536, World; RWKV-4 Pile: 50277)\n"
        "  --dtype D       bf16 (default), fp16 or fp32\n"
        "  --seed N        random seed (default 1)\n"
        "  --follow IDS    RWKV-7: weights that make greedy decoding continue each\n"
        "                  token id in IDS with the one after it (for tests)\n"
        "  --time-state    write a random state-tuned start for a model of that shape\n"
        "                  instead (blocks.N.att.time_state; 5.x, 6 and 7)\n"
        "  -o, --output F  output file (.pth or .safetensors)\n"
        "  -h, --help      display this help and exit\n\n"
        "Released shapes (--layers/--embd):\n"
        "  RWKV-7:   0.1B 12/768, 0.4B 24/1024, 1.5B 24/2048, 2.9B 32/2560\n"
        "  RWKV-6:   1.6B 24/2048, 3B 32/2560, 7B 32/4096, 14B 61/4096\n"
        "  RWKV-5.2: 0.4B 24/1024, 1.5B 24/2048, 3B 32/2560, 7B 32/4096\n"
        "  RWKV-4:   0.1B 12/768, 0.4B 24/1024, 1.5B 24/2048, 3B 32/2560, 7B 32/4096,\n"
        "            14B 40/5120 (Pile)\n"
        "FFN width 4 C (RWKV-4, 5.0, 5.1, 7) or 3.5 C rounded down to a multiple of 32\n"
        "(5.2, 6). RWKV-6 LoRA ranks: token shift 32, decay 64 (64 and 128 from C\n"
        "4096). RWKV-7 LoRA ranks as released for each width.\n");
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);

    if (!*s || *end || v < lo || v > hi) {
        return -1;
    }
    *out = v;
    return 0;
}

/* Reads "4", "5", "5.0", "5.1", "5.2", "6" or "7"; "5" is 5.2. */
static int parse_version(const char *s, struct arch *m)
{
    static const struct {
        const char *name;
        int version, minor;
    } names[] = {
        { "4", 4, 0 }, { "5", 5, 2 }, { "5.0", 5, 0 }, { "5.1", 5, 1 }, { "5.2", 5, 2 },
        { "6", 6, 0 }, { "7", 7, 0 },
    };
    size_t i;

    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!strcmp(s, names[i].name)) {
            m->version = names[i].version;
            m->minor = names[i].minor;
            return 0;
        }
    }
    return -1;
}

/* "4", "5.2", "6": the version as the loader names it. */
static const char *version_name(const struct arch *m)
{
    static const char *const v5[] = { "5.0", "5.1", "5.2" };

    return m->version == 4 ? "4" : m->version == 5 ? v5[m->minor]
         : m->version == 6 ? "6" : "7";
}

/* Fills the sizes that follow from version, C and head size; a usage error
 * (printed) gives -1. */
static int derive_sizes(struct arch *m, int head_size_set)
{
    if (m->version == 4) {
        if (head_size_set) {
            tool_error("mkmodel: --head-size does not apply to RWKV-4 (it has no heads)");
            return -1;
        }
        m->H = m->N = 0;
    } else {
        if (m->C % m->N != 0) {
            tool_error("mkmodel: --embd %d is not a multiple of the head size %d (RWKV-%s "
                       "splits it into heads)", m->C, m->N, version_name(m));
            return -1;
        }
        m->H = m->C / m->N;
    }
    if ((m->version == 5 && m->minor == 2) || m->version == 6) {
        m->F = (int)((m->C * 7L / 2) / 32 * 32);
        if (m->F == 0) {
            tool_error("mkmodel: --embd %d is too small for RWKV-%s (its FFN width, 3.5 C "
                       "rounded down to a multiple of 32, would be 0)", m->C, version_name(m));
            return -1;
        }
    } else {
        m->F = 4 * m->C;
    }
    if (m->version == 6) {
        m->d_mix = m->C >= 4096 ? 64 : 32;
        m->d_decay = m->C >= 4096 ? 128 : 64;
    } else if (m->version == 7) {
        m->d_decay = lora_rank(1.8, 0.5, m->C);
        m->d_aaa = lora_rank(1.8, 0.5, m->C);
        m->d_mv = lora_rank(1.3, 0.5, m->C);
        m->d_gate = m->C == 1024 ? 128 : lora_rank(0.6, 0.8, m->C);
    }
    return 0;
}

int tool_mkmodel(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "version", required_argument, NULL, 'v' },
        { "layers", required_argument, NULL, 'l' },
        { "embd", required_argument, NULL, 'c' },
        { "head-size", required_argument, NULL, 'n' },
        { "vocab", required_argument, NULL, 'V' },
        { "dtype", required_argument, NULL, 'd' },
        { "seed", required_argument, NULL, 's' },
        { "output", required_argument, NULL, 'o' },
        { "time-state", no_argument, NULL, 'T' },
        { "follow", required_argument, NULL, 'F' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    long layers = 0, embd = 0, vocab = 65536, seed = 1, head_size = 64;
    const char *out = NULL, *dtype = "bf16";
    struct gen g = { 0 };
    struct arch m = { .version = 7 };
    char err[512];
    int c, rc = 1, head_size_set = 0, time_state = 0;
    int (*walk)(struct gen *, const struct arch *, int);
    const char *follow_ids = NULL;
    static struct follow follow;

    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'v':
            if (parse_version(optarg, &m)) {
                tool_error("mkmodel: bad --version '%s' (4, 5, 5.0, 5.1, 5.2, 6 or 7)", optarg);
                return 2;
            }
            break;
        case 'l':
            if (parse_int(optarg, 1, 4096, &layers)) {
                tool_error("mkmodel: bad --layers '%s' (1 to 4096)", optarg);
                return 2;
            }
            break;
        case 'c':
            if (parse_int(optarg, 1, 65536, &embd)) {
                tool_error("mkmodel: bad --embd '%s' (1 to 65536)", optarg);
                return 2;
            }
            break;
        case 'n':
            if (parse_int(optarg, 1, 1024, &head_size)) {
                tool_error("mkmodel: bad --head-size '%s' (1 to 1024)", optarg);
                return 2;
            }
            head_size_set = 1;
            break;
        case 'V':
            if (parse_int(optarg, 1, 1 << 24, &vocab)) {
                tool_error("mkmodel: bad --vocab '%s'", optarg);
                return 2;
            }
            break;
        case 'd':
            dtype = optarg;
            break;
        case 's':
            if (parse_int(optarg, 0, 0x7fffffff, &seed)) {
                tool_error("mkmodel: bad --seed '%s'", optarg);
                return 2;
            }
            break;
        case 'o':
            out = optarg;
            break;
        case 'T':
            time_state = 1;
            break;
        case 'F':
            follow_ids = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || !out || !layers || !embd) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(dtype, "bf16")) {
        g.dtype = CKPT_BF16;
    } else if (!strcmp(dtype, "fp16") || !strcmp(dtype, "f16")) {
        g.dtype = CKPT_F16;
    } else if (!strcmp(dtype, "fp32") || !strcmp(dtype, "f32")) {
        g.dtype = CKPT_F32;
    } else {
        tool_error("mkmodel: bad --dtype '%s' (bf16, fp16 or fp32)", dtype);
        return 2;
    }
    m.L = (int)layers;
    m.C = (int)embd;
    m.V = (int)vocab;
    m.N = (int)head_size;
    if (derive_sizes(&m, head_size_set) != 0) {
        return 2;
    }
    if (time_state && m.version == 4) {
        tool_error("mkmodel: RWKV-4 has no wkv state: --time-state needs 5.x, 6 or 7");
        return 2;
    }
    if (follow_ids) {
        if (m.version != 7 || time_state) {
            tool_error("mkmodel: --follow makes RWKV-7 models (--version 7, no --time-state)");
            return 2;
        }
        if (parse_follow(follow_ids, &follow, vocab, embd) < 0) {
            return 2;
        }
        g.follow = &follow;
    }
    g.C = m.C;
    walk = time_state ? time_state_walk : m.version == 7 ? v7_walk : v456_walk;
    g.seed = (uint64_t)seed;
    if (!(g.w = pthw_new(out, pthw_format_for(out), err, sizeof err))) {
        tool_error("%s", err);
        return 1;
    }
    if (walk(&g, &m, 1) != 0) {
        goto done;
    }
    if (pthw_begin(g.w, err, sizeof err) != 0) {
        tool_error("%s", err);
        goto done;
    }
    if (walk(&g, &m, 0) != 0) {
        goto done;
    }
    if (pthw_finish(g.w, err, sizeof err) != 0) {
        tool_error("%s", err);
        goto done;
    }
    if (time_state) {
        printf("%s: state-tuned start for RWKV-%s L%d, heads %dx%d, %s\n", out,
               version_name(&m), m.L, m.H, m.N, dtype);
    } else if (m.version == 7) {
        printf("%s: RWKV-7 L%d C%d V%d %s, LoRA %d/%d/%d/%d, %llu parameters\n", out, m.L,
               m.C, m.V, dtype, m.d_decay, m.d_aaa, m.d_mv, m.d_gate,
               (unsigned long long)g.n_params);
    } else if (m.version == 6) {
        printf("%s: RWKV-6 L%d C%d V%d %s, heads %dx%d, ffn %d, LoRA mix %d decay %d, "
               "%llu parameters\n", out, m.L, m.C, m.V, dtype, m.H, m.N, m.F, m.d_mix,
               m.d_decay, (unsigned long long)g.n_params);
    } else if (m.version == 5) {
        printf("%s: RWKV-%s L%d C%d V%d %s, heads %dx%d, ffn %d, %llu parameters\n", out,
               version_name(&m), m.L, m.C, m.V, dtype, m.H, m.N, m.F,
               (unsigned long long)g.n_params);
    } else {
        printf("%s: RWKV-4 L%d C%d V%d %s, ffn %d, %llu parameters\n", out, m.L, m.C, m.V,
               dtype, m.F, (unsigned long long)g.n_params);
    }
    rc = 0;
done:
    pthw_free(g.w);
    free(g.buf);
    return rc;
}
