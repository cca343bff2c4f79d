/*
 * tool_mkmodel.c - rwkv-tool mkmodel: write a random-weight model with the
 * key names, shapes and order of a released RWKV-4, 5.x, 6, 7, 7a, 7b or 8
 * checkpoint, in the official .pth (or .safetensors) format, so benchmarks
 * run at real sizes without downloads.  The tensors, their stored shapes,
 * order and value ranges are the engine's own tables (engine/model/versions.h:
 * rwkv_version.written), the ones the loader checks files against.
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
#include "engine/model/versions.h"

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
    int dea_q, dea_k;           /* RWKV-7b: DEA query/key width, compact key/value width */
};

/* LoRA ranks of the released RWKV-7 models: RWKV-LM's suggestion
 * max(32, round(k * C^p / 32) * 32), with the gate rank 128 at C = 1024. */
static int lora_rank(double k, double p, int C)
{
    int r = (int)lround(k * pow(C, p) / 32.0) * 32;

    return r < 32 ? 32 : r;
}

/* The sizes of m as the engine's shape symbols name them. */
static struct rwkv_dims dims_of(const struct arch *m)
{
    struct rwkv_dims d = { m->C, m->V, m->F, m->H, m->N, m->d_decay, m->d_aaa, m->d_mv,
                           m->d_gate, m->d_mix, m->dea_q, m->dea_k };

    return d;
}

/* How the values of tensor sp are drawn at sizes d. */
static struct spec value_spec(const struct rwkv_tensor_spec *sp, const struct rwkv_dims *d)
{
    const struct rwkv_init *in = &sp->init;
    double b = in->b;

    if (in->dist == 'U') {
        return (struct spec){ UNIFORM, in->a, in->b };
    }
    if (in->per) {
        double x = (double)rwkv_dim_value(d, in->per + 1, strlen(in->per + 1));

        b = in->per[0] == '*' ? in->b * (1.0 / sqrt(x)) : in->b / sqrt(x);
    }
    return (struct spec){ NORMAL, in->a, b };
}

/* Declares (g->w not begun) or writes tensor sp of layer l. */
static int one_tensor(struct gen *g, const struct rwkv_tensor_spec *sp, const struct rwkv_dims *d,
                      int l, int declare)
{
    const char *shape = sp->stored ? sp->stored : sp->shape;
    int64_t dims[3] = { 0, 0, 0 };
    char name[128], e[512];
    int nd = 0;

    snprintf(name, sizeof name, sp->name, l);
    if (!strncmp(shape, "v:", 2)) {
        shape += 2;
    }
    for (const char *p = shape; *p && *p != '|' && nd < 3;) {
        size_t len = strcspn(p, ",|");

        dims[nd++] = rwkv_dim_value(d, p, len);
        p += len + (p[len] == ',');
    }
    if (declare) {
        if (pthw_declare(g->w, name, g->dtype, nd, dims, e, sizeof e) != 0) {
            tool_error("%s", e);
            return -1;
        }
        return 0;
    }
    return gen_tensor(g, name, nd, dims, value_spec(sp, d));
}

/* Declares or writes every tensor of the version's table (its released
 * files' layout), in their order: the once-only tensors before the first
 * per-layer one, then each layer's, then the rest. */
static int walk_table(struct gen *g, const struct arch *m,
                      const struct rwkv_tensor_spec *table, int declare)
{
    const struct rwkv_tensor_spec *sp, *first_layer = NULL;
    struct rwkv_dims d = dims_of(m);

    for (sp = table; sp->name; sp++) {
        if (sp->scope != RWKV_GLOBAL && !first_layer) {
            first_layer = sp;
        }
        if (sp->scope == RWKV_GLOBAL && !first_layer && one_tensor(g, sp, &d, 0, declare)) {
            return -1;
        }
    }
    for (int l = 0; l < m->L; l++) {
        for (sp = first_layer; sp && sp->name; sp++) {
            if (sp->scope == RWKV_GLOBAL || (sp->scope == RWKV_FIRST_LAYER && l > 0) ||
                (sp->scope == RWKV_LATER_LAYERS && l == 0)) {
                continue;
            }
            if (one_tensor(g, sp, &d, l, declare)) {
                return -1;
            }
        }
    }
    for (sp = first_layer; sp && sp->name; sp++) {
        if (sp->scope == RWKV_GLOBAL && one_tensor(g, sp, &d, 0, declare)) {
            return -1;
        }
    }
    return 0;
}

/* The model: the table of its version's released files. */
static int model_walk(struct gen *g, const struct arch *m, int declare)
{
    const struct rwkv_version *v = rwkv_version_of(m->version, m->minor);

    return walk_table(g, m, v->written[m->minor - v->minor_first], declare);
}

/* A state-tuned start (--time-state): one tensor per layer,
 * blocks.N.att.time_state, [H, N, N], as state tuning saves them. */
static int time_state_walk(struct gen *g, const struct arch *m, int declare)
{
    static const struct rwkv_tensor_spec table[] = {
        { "blocks.%d.att.time_state", RWKV_LAYER, "H,N,N", NULL, RWKV_N(0, 0.5, NULL) },
        { NULL, 0, NULL, NULL, RWKV_U(0, 0) }
    };

    return walk_table(g, m, table, declare);
}

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: rwkv-tool mkmodel --version V --layers L --embd C [OPTION]... -o FILE\n"
        "Write a random-weight RWKV model with the key names, shapes and order of\n"
        "the released checkpoints, as a PyTorch .pth (or FILE.safetensors).\n\n"
        "  --version V     RWKV version: 4, 5 (= 5.2), 5.0, 5.1, 5.2, 6, 7, 7a (DeepEmbed),\n"
        "                  7b (DEA) or 8 (Heron rc00) (default 7)\n"
        "  --layers L      number of blocks\n"
        "  --embd C        embedding size (5.x, 6, 7: a multiple of the head size)\n"
        "  --head-size N   head size for 5.x, 6 and 7 (default 64, as released)\n"
        "  --vocab V       vocabulary size (default 65536, World; RWKV-4 Pile: 50277)\n"
        "  --dtype D       bf16 (default), fp16 or fp32\n"
        "  --seed N        random seed (default 1)\n"
        "  --follow IDS    RWKV-7 and 4: weights that make greedy decoding continue each\n"
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
        "FFN width 4 C (RWKV-4, 5.0, 5.1, 7, 7a, 7b, 8) or 3.5 C rounded down to a\n"
        "multiple of 32 (5.2, 6). RWKV-6 LoRA ranks: token shift 32, decay 64 (64 and 128 from C\n"
        "4096). RWKV-7 LoRA ranks as released for each width. RWKV-7b: DEA queries and\n"
        "keys of C/2, compact keys and values of 32.\n");
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

/* Reads "4", "5", "5.0", "5.1", "5.2", "6", "7", "7a", "7b" or "8"; "5" is 5.2. */
static int parse_version(const char *s, struct arch *m)
{
    static const struct {
        const char *name;
        int version, minor;
    } names[] = {
        { "4", 4, 0 }, { "5", 5, 2 }, { "5.0", 5, 0 }, { "5.1", 5, 1 }, { "5.2", 5, 2 },
        { "6", 6, 0 }, { "7", 7, 0 }, { "7a", 7, 1 }, { "7b", 7, 2 }, { "8", 8, 0 },
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

/* "4", "5.2", "7a": the version as the loader names it. */
static const char *version_name(const struct arch *m)
{
    static const char *const v5[] = { "5.0", "5.1", "5.2" };

    return m->version == 4 ? "4" : m->version == 5 ? v5[m->minor]
         : m->version == 6 ? "6" : m->version == 8 ? "8" : m->minor == 1 ? "7a"
         : m->minor == 2 ? "7b" : "7";
}

/* RWKV-7 and the variants that keep its time mix (7a, 8). */
static int rwkv7_family(const struct arch *m)
{
    return m->version == 7 || m->version == 8;
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
    } else if (rwkv7_family(m)) {
        m->d_decay = lora_rank(1.8, 0.5, m->C);
        m->d_aaa = lora_rank(1.8, 0.5, m->C);
        m->d_mv = lora_rank(1.3, 0.5, m->C);
        m->d_gate = m->C == 1024 ? 128 : lora_rank(0.6, 0.8, m->C);
        if (m->minor == 2) {
            m->dea_q = m->C / 2 > 0 ? m->C / 2 : 1;
            m->dea_k = 32;
        }
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
                tool_error("mkmodel: bad --version '%s' (4, 5, 5.0, 5.1, 5.2, 6, 7, 7a, 7b or 8)",
                           optarg);
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
        if ((m.version != 7 && m.version != 4) || m.minor != 0 || time_state) {
            tool_error("mkmodel: --follow makes RWKV-7 and RWKV-4 models (--version 7 or 4, "
                       "no --time-state)");
            return 2;
        }
        if (parse_follow(follow_ids, &follow, vocab, embd) < 0) {
            return 2;
        }
        g.follow = &follow;
    }
    g.C = m.C;
    walk = time_state ? time_state_walk : model_walk;
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
    } else if (rwkv7_family(&m)) {
        printf("%s: RWKV-%s L%d C%d V%d %s, LoRA %d/%d/%d/%d, %llu parameters\n", out,
               version_name(&m), m.L, m.C, m.V, dtype, m.d_decay, m.d_aaa, m.d_mv, m.d_gate,
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
