/*
 * tool_mkmodel.c - rwkv-tool mkmodel: write a random-weight model with the
 * key names and shapes of a released RWKV-7 checkpoint, in the official
 * .pth (or .safetensors) format, so benchmarks run at real sizes without
 * downloads.
 *
 * Values are drawn in the ranges trained models have (LayerNorm weights
 * near 1, token-shift mixes in [0, 1], decays across their trained range,
 * small LoRA matrices, matrices with sd ~ 1/sqrt(fan-in)), so logits have a
 * standard deviation of a few units and the argmax moves from token to
 * token, as with the test fixtures.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/pthwrite.h"
#include "app/tool.h"

/* How the values of one tensor are drawn. */
enum dist { NORMAL, UNIFORM };

struct spec {
    enum dist dist;
    double a, b;                /* NORMAL: mean, sd; UNIFORM: low, high */
};

struct gen {
    uint64_t seed;
    enum ckpt_dtype dtype;
    pthw *w;
    void *buf;                  /* one tensor in the output format */
    size_t bufsize;
    uint64_t n_params;
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

/* Draws one tensor's values, converts them to the output format and hands
 * them to the writer. */
static int gen_tensor(struct gen *g, const char *name, int ndim, const int64_t *shape,
                      struct spec sp)
{
    char err[512];
    struct rng r;
    size_t n = 1, i, esize = g->dtype == CKPT_F32 ? 4 : 2;
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
    for (i = 0; i < n; i++) {
        float v = sp.dist == NORMAL ? (float)(sp.a + sp.b * rng_normal(&r))
                                    : (float)(sp.a + (sp.b - sp.a) * rng_uniform(&r));

        if (g->dtype == CKPT_F32) {
            ((float *)g->buf)[i] = v;
        } else if (g->dtype == CKPT_BF16) {
            ((uint16_t *)g->buf)[i] = ckpt_f32_to_bf16(v);
        } else {
            ((uint16_t *)g->buf)[i] = ckpt_f32_to_f16(v);
        }
    }
    g->n_params += n;
    if (pthw_write(g->w, g->buf, err, sizeof err)) {
        tool_error("%s", err);
        return -1;
    }
    return 0;
}

/* The tensors of an RWKV-7 ("x070") checkpoint, in the order the released
 * files list them; the same walk declares them (g->w not begun) and then
 * writes them. */
struct v7 {
    int L, C, V, H;
    int d_decay, d_aaa, d_mv, d_gate;
};

/* LoRA ranks of the released RWKV-7 models: RWKV-LM's suggestion
 * max(32, round(k * C^p / 32) * 32), with the gate rank 128 at C = 1024. */
static int lora_rank(double k, double p, int C)
{
    int r = (int)lround(k * pow(C, p) / 32.0) * 32;

    return r < 32 ? 32 : r;
}

static int v7_walk(struct gen *g, const struct v7 *m, int declare)
{
    const int64_t C = m->C;
    const double sc = 1.0 / sqrt((double)C);
    char name[128];
    int l, i;

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
        T(2, m->H, 64, 0, NRM(0, 0.2));
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
#undef T
#undef NAME
#undef NRM
#undef UNI
}

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: rwkv-tool mkmodel --version 7 --layers L --embd C [OPTION]... -o FILE\n"
        "Write a random-weight RWKV model with the key names and shapes of the\n"
        "released checkpoints, as a PyTorch .pth (or FILE.safetensors).\n\n"
        "  --version N     RWKV version (7)\n"
        "  --layers L      number of blocks\n"
        "  --embd C        embedding size (a multiple of 64: head size 64)\n"
        "  --vocab V       vocabulary size (default 65536)\n"
        "  --dtype D       bf16 (default), fp16 or fp32\n"
        "  --seed N        random seed (default 1)\n"
        "  -o, --output F  output file (.pth or .safetensors)\n"
        "  -h, --help      display this help and exit\n\n"
        "Released shapes: 0.1B --layers 12 --embd 768; 0.4B 24/1024; 1.5B 24/2048;\n"
        "2.9B 32/2560.\n");
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

int tool_mkmodel(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "version", required_argument, NULL, 'v' },
        { "layers", required_argument, NULL, 'l' },
        { "embd", required_argument, NULL, 'c' },
        { "vocab", required_argument, NULL, 'V' },
        { "dtype", required_argument, NULL, 'd' },
        { "seed", required_argument, NULL, 's' },
        { "output", required_argument, NULL, 'o' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    long version = 7, layers = 0, embd = 0, vocab = 65536, seed = 1;
    const char *out = NULL, *dtype = "bf16";
    struct gen g = { 0 };
    struct v7 m;
    char err[512];
    int c, rc = 1;

    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'v':
            if (parse_int(optarg, 4, 7, &version)) {
                tool_error("mkmodel: bad --version '%s'", optarg);
                return 2;
            }
            break;
        case 'l':
            if (parse_int(optarg, 1, 4096, &layers)) {
                tool_error("mkmodel: bad --layers '%s'", optarg);
                return 2;
            }
            break;
        case 'c':
            if (parse_int(optarg, 64, 65536, &embd) || embd % 64) {
                tool_error("mkmodel: bad --embd '%s' (a multiple of 64)", optarg);
                return 2;
            }
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
    if (version != 7) {
        tool_error("mkmodel: --version %ld is not supported (only 7)", version);
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
    m.H = m.C / 64;
    m.d_decay = lora_rank(1.8, 0.5, m.C);
    m.d_aaa = lora_rank(1.8, 0.5, m.C);
    m.d_mv = lora_rank(1.3, 0.5, m.C);
    m.d_gate = m.C == 1024 ? 128 : lora_rank(0.6, 0.8, m.C);
    g.seed = (uint64_t)seed;
    if (!(g.w = pthw_new(out, pthw_format_for(out), err, sizeof err))) {
        tool_error("%s", err);
        return 1;
    }
    if (v7_walk(&g, &m, 1) != 0) {
        goto done;
    }
    if (pthw_begin(g.w, err, sizeof err) != 0) {
        tool_error("%s", err);
        goto done;
    }
    if (v7_walk(&g, &m, 0) != 0) {
        goto done;
    }
    if (pthw_finish(g.w, err, sizeof err) != 0) {
        tool_error("%s", err);
        goto done;
    }
    printf("%s: RWKV-7 L%d C%d V%d %s, LoRA %d/%d/%d/%d, %llu parameters\n", out, m.L, m.C,
           m.V, dtype, m.d_decay, m.d_aaa, m.d_mv, m.d_gate, (unsigned long long)g.n_params);
    rc = 0;
done:
    pthw_free(g.w);
    free(g.buf);
    return rc;
}
