/*
 * test_checkpoint.c - the .pth and safetensors readers: every fixture loads,
 * tensors match bytes this test finds in the files by itself, the same
 * weights read the same from every container, and damaged copies (made
 * here, in a temporary folder) give one-line errors naming the problem.
 */
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/base/crc32.h"
#include "engine/load/checkpoint.h"
#include "engine/rwkv.h"
#include "tests/tap.h"
#include "tests/testutil.h"

struct raw_entry {
    const char *name;
    size_t nlen;
    const unsigned char *data;
    size_t size;
    uint32_t crc;
};

/* Lists a (non-ZIP64, comment-free) zip's entries from its central
 * directory, independently of the reader under test.  torch writes data
 * descriptors, so local headers carry no sizes. */
static size_t raw_entries(const unsigned char *buf, size_t len, struct raw_entry *ent,
                          size_t max)
{
    const unsigned char *eocd = buf + len - 22;
    size_t n, i, pos;

    if (len < 22 || rd32(eocd) != 0x06054b50) {
        return 0;
    }
    n = rd16(eocd + 10);
    pos = rd32(eocd + 16);
    for (i = 0; i < n && i < max; i++) {
        const unsigned char *h = buf + pos, *l;
        ent[i].nlen = rd16(h + 28);
        ent[i].name = (const char *)h + 46;
        ent[i].size = rd32(h + 24);
        ent[i].crc = rd32(h + 16);
        l = buf + rd32(h + 42);
        ent[i].data = l + 30 + rd16(l + 26) + rd16(l + 28);
        pos += 46 + ent[i].nlen + rd16(h + 30) + rd16(h + 32);
    }
    return i;
}

static struct raw_entry entries[8192];

/* Finds a stored zip entry by name; its data and size. */
static const unsigned char *raw_entry(const unsigned char *buf, size_t len, const char *name,
                                      size_t *size)
{
    size_t n = raw_entries(buf, len, entries, 8192), i;

    for (i = 0; i < n; i++) {
        if (entries[i].nlen == strlen(name) && !memcmp(entries[i].name, name, entries[i].nlen)) {
            *size = entries[i].size;
            return entries[i].data;
        }
    }
    return NULL;
}

/* Number of entries whose name contains sub. */
static int count_entries(const unsigned char *buf, size_t len, const char *sub)
{
    size_t n = raw_entries(buf, len, entries, 8192), i;
    int count = 0;

    for (i = 0; i < n; i++) {
        char name[512];
        snprintf(name, sizeof(name), "%.*s", (int)entries[i].nlen, entries[i].name);
        count += strstr(name, sub) != NULL;
    }
    return count;
}

/* Counts tensors of a safetensors file by its header text. */
static int count_safetensors(const unsigned char *buf, size_t len)
{
    uint64_t hlen = rd32(buf) | (uint64_t)rd32(buf + 4) << 32;
    int n = 0;
    long pos = 8;

    while ((pos = find_bytes(buf, 8 + hlen < len ? 8 + hlen : len, (size_t)pos,
                             "\"data_offsets\"", 14)) >= 0) {
        n++;
        pos++;
    }
    return n;
}

static int same_tensor(const struct ckpt_tensor *a, const struct ckpt_tensor *b)
{
    int i;

    if (!a || !b || a->dtype != b->dtype || a->ndim != b->ndim || a->nbytes != b->nbytes) {
        return 0;
    }
    for (i = 0; i < a->ndim; i++) {
        if (a->shape[i] != b->shape[i]) {
            return 0;
        }
    }
    return !memcmp(a->data, b->data, a->nbytes);
}

/* Every tensor of a is in b with the same shape, type and bytes. */
static int same_contents(const ckpt_file *a, const ckpt_file *b, char *why, size_t len)
{
    size_t i;

    if (ckpt_count(a) != ckpt_count(b)) {
        snprintf(why, len, "%zu vs %zu tensors", ckpt_count(a), ckpt_count(b));
        return 0;
    }
    for (i = 0; i < ckpt_count(a); i++) {
        const struct ckpt_tensor *t = ckpt_at(a, i);
        if (!same_tensor(t, ckpt_find(b, t->name))) {
            snprintf(why, len, "tensor %s differs", t->name);
            return 0;
        }
    }
    snprintf(why, len, "%zu tensors", ckpt_count(a));
    return 1;
}

static void test_fixture(const char *rel)
{
    const char *path = shared_path(rel);
    char err[512], sbuf[64];
    unsigned char *buf;
    size_t len, esize = 0, i;
    ckpt_file *f;
    int expect, aligned = 1;

    buf = read_file(path, &len);
    if (!buf) {
        skip("%s not found", rel);
        return;
    }
    f = ckpt_open(path, err, sizeof(err));
    if (!ok(f != NULL, "%s opens", rel)) {
        diag("%s", err);
        free(buf);
        return;
    }
    expect = strstr(rel, ".safetensors") ? count_safetensors(buf, len)
                                         : count_entries(buf, len, "/data/");
    ok((int)ckpt_count(f) == expect, "%s: %zu tensors (expected %d)", rel, ckpt_count(f),
       expect);
    ok(ckpt_file_size(f) == len, "%s: file size %llu", rel,
       (unsigned long long)ckpt_file_size(f));
    for (i = 0; i < ckpt_count(f); i++) {
        const struct ckpt_tensor *t = ckpt_at(f, i);
        if ((uintptr_t)t->data % ckpt_dtype_size(t->dtype) ||
            t->nbytes != (size_t)t->numel * ckpt_dtype_size(t->dtype) ||
            ckpt_find(f, t->name) != t) {
            aligned = 0;
        }
    }
    ok(aligned, "%s: every tensor aligned, sized and found by name", rel);
    ok(ckpt_find(f, "no.such.tensor") == NULL, "%s: unknown name gives NULL", rel);

    if (strstr(rel, ".pth")) {
        /* emb.weight is storage 0 in every fixture: compare with the raw entry */
        const struct ckpt_tensor *emb = ckpt_find(f, "emb.weight");
        char name[256];
        const char *base = strrchr(rel, '/') + 1;
        const unsigned char *raw;

        snprintf(name, sizeof(name), "%.*s/data/0", (int)(strlen(base) - 4), base);
        raw = raw_entry(buf, len, name, &esize);
        ok(emb && raw && emb->nbytes == esize && !memcmp(emb->data, raw, esize) &&
           emb->ndim == 2, "%s: emb.weight (%s) is the bytes of entry %s", rel,
           emb ? ckpt_shape_str(emb->ndim, emb->shape, sbuf, sizeof(sbuf)) : "missing", name);
    }
    ckpt_close(f);
    free(buf);
}

/* The same weights read the same from .pth, torch 2 .pth and safetensors. */
static void test_same_weights(const char *a_rel, const char *b_rel)
{
    char err[512], why[256];
    ckpt_file *a = ckpt_open(shared_path(a_rel), err, sizeof(err));
    ckpt_file *b = a ? ckpt_open(shared_path(b_rel), err, sizeof(err)) : NULL;

    if (!a || !b) {
        ok(0, "%s and %s open: %s", a_rel, b_rel, err);
    } else {
        ok(same_contents(a, b, why, sizeof(why)), "%s and %s hold the same tensors (%s)", a_rel,
           b_rel, why);
    }
    ckpt_close(a);
    ckpt_close(b);
}

static void test_conversions(void)
{
    static const uint16_t half[] = { 0x3c00, 0xc000, 0x0001, 0x03ff, 0x7bff, 0x7c00, 0x3555,
                                     0x8000 };
    static const float half_want[] = { 1.0f, -2.0f, 5.9604645e-8f, 6.0975552e-5f, 65504.0f,
                                       INFINITY, 0.33325195f, -0.0f };
    static const uint16_t bf[] = { 0x3f80, 0x4049, 0xbf00, 0x7f80 };
    static const float bf_want[] = { 1.0f, 3.140625f, -0.5f, INFINITY };
    static const float f32[] = { 1.5f, -7.25f };
    unsigned char bytes[16];
    float out[8], nan_out;
    uint16_t nan_half = 0x7e00;
    size_t i;
    int good = 1;

    for (i = 0; i < 8; i++) {
        wr16(bytes + 2 * i, half[i]);
    }
    ckpt_to_f32(CKPT_F16, bytes, out, 8);
    for (i = 0; i < 8; i++) {
        if (out[i] != half_want[i] || signbit(out[i]) != signbit(half_want[i])) {
            diag("f16 %04x -> %g, want %g", half[i], out[i], half_want[i]);
            good = 0;
        }
    }
    ok(good, "float16 to float32: normal, subnormal, max, inf, -0 exact");
    wr16(bytes, nan_half);
    ckpt_to_f32(CKPT_F16, bytes, &nan_out, 1);
    ok(isnan(nan_out), "float16 NaN stays NaN");
    for (i = 0; i < 4; i++) {
        wr16(bytes + 2 * i, bf[i]);
    }
    ckpt_to_f32(CKPT_BF16, bytes, out, 4);
    ok(out[0] == bf_want[0] && out[1] == bf_want[1] && out[2] == bf_want[2] &&
       out[3] == bf_want[3], "bfloat16 to float32 exact (%g %g %g %g)", out[0], out[1], out[2],
       out[3]);
    ckpt_to_f32(CKPT_F32, f32, out, 2);
    ok(out[0] == 1.5f && out[1] == -7.25f, "float32 copies");
    ok(ckpt_dtype_size(CKPT_F32) == 4 && ckpt_dtype_size(CKPT_BF16) == 2 &&
       !strcmp(ckpt_dtype_name(CKPT_F16), "float16"), "dtype sizes and names");
}

/* A transposed view (strides 1,128) of a stored matrix reads as its
 * transpose: the strided-copy path. */
static void test_strided(void)
{
    const char *path = shared_path("fixtures/models/v7.pth");
    static const unsigned char stride[] = { 'K', 0x80, 'K', 0x01, 0x86 };
    const struct ckpt_tensor *a, *b;
    unsigned char *buf;
    size_t len;
    long name, pos;
    ckpt_file *orig, *tr;
    char err[512];
    int i, j, good = 1;

    buf = read_file(path, &len);
    if (!buf) {
        skip("v7.pth not found");
        return;
    }
    name = find_bytes(buf, len, 0, "blocks.0.att.key.weight", 23);
    pos = name < 0 ? -1 : find_bytes(buf, len, (size_t)name, stride, sizeof(stride));
    if (pos < 0) {
        ok(0, "stride tuple of blocks.0.att.key.weight found in v7.pth");
        free(buf);
        return;
    }
    buf[pos + 1] = 0x01;
    buf[pos + 3] = 0x80;
    zip_fix_crcs(buf, len);
    write_file(tmp_path("transposed.pth"), buf, len);
    orig = ckpt_open(path, err, sizeof(err));
    tr = ckpt_open(tmp_path("transposed.pth"), err, sizeof(err));
    if (!ok(orig && tr, "checkpoint with a transposed (strided) tensor opens")) {
        diag("%s", err);
    } else {
        const uint16_t *x, *y;
        a = ckpt_find(orig, "blocks.0.att.key.weight");
        b = ckpt_find(tr, "blocks.0.att.key.weight");
        x = a->data;
        y = b->data;
        for (i = 0; i < 128 && good; i++) {
            for (j = 0; j < 128; j++) {
                if (x[i * 128 + j] != y[j * 128 + i]) {
                    good = 0;
                    break;
                }
            }
        }
        ok(good && b->ndim == 2 && b->shape[0] == 128, "strided tensor is copied as the "
           "transpose of the stored matrix");
        ok(same_tensor(ckpt_find(orig, "head.weight"), ckpt_find(tr, "head.weight")),
           "other tensors unaffected");
    }
    ckpt_close(orig);
    ckpt_close(tr);
    free(buf);
}

/* Rewrites a torch zip as ZIP64 (every size and offset in ZIP64 extra
 * fields, ZIP64 end records) under another top-level folder name. */
static size_t make_zip64(const unsigned char *in, size_t len, unsigned char **outp,
                         const char *old_dir, const char *new_dir)
{
    size_t out_len = 0, cd_start, n_entries, cap = len * 2 + 65536, i;
    unsigned char *out = malloc(cap);
    struct {
        char name[256];
        size_t nlen;
        uint64_t offset, size;
        uint32_t crc;
    } *ent = calloc(8192, sizeof(*ent));

    n_entries = raw_entries(in, len, entries, 8192);
    for (i = 0; i < n_entries; i++) {
        size_t olen = strlen(old_dir), size = entries[i].size;

        ent[i].nlen = (size_t)snprintf(ent[i].name, 256, "%s%.*s", new_dir,
                                       (int)(entries[i].nlen - olen), entries[i].name + olen);
        ent[i].offset = out_len;
        ent[i].size = size;
        ent[i].crc = entries[i].crc;
        /* local header: sizes 0xffffffff with a ZIP64 extra of both sizes */
        memset(out + out_len, 0, 30);
        wr32(out + out_len, 0x04034b50);
        wr16(out + out_len + 4, 45);
        wr32(out + out_len + 14, ent[i].crc);
        wr32(out + out_len + 18, 0xffffffffu);
        wr32(out + out_len + 22, 0xffffffffu);
        wr16(out + out_len + 26, (unsigned)ent[i].nlen);
        wr16(out + out_len + 28, 20);
        memcpy(out + out_len + 30, ent[i].name, ent[i].nlen);
        out_len += 30 + ent[i].nlen;
        wr16(out + out_len, 1);
        wr16(out + out_len + 2, 16);
        wr64(out + out_len + 4, size);
        wr64(out + out_len + 12, size);
        out_len += 20;
        /* no alignment padding: odd offsets exercise the copy path */
        memcpy(out + out_len, entries[i].data, size);
        out_len += size;
    }
    cd_start = out_len;
    for (i = 0; i < n_entries; i++) {
        unsigned char *h = out + out_len;
        memset(h, 0, 46);
        wr32(h, 0x02014b50);
        wr16(h + 4, 45);
        wr16(h + 6, 45);
        wr32(h + 16, ent[i].crc);
        wr32(h + 20, 0xffffffffu);
        wr32(h + 24, 0xffffffffu);
        wr16(h + 28, (unsigned)ent[i].nlen);
        wr16(h + 30, 28);
        wr32(h + 42, 0xffffffffu);
        memcpy(h + 46, ent[i].name, ent[i].nlen);
        h += 46 + ent[i].nlen;
        wr16(h, 1);
        wr16(h + 2, 24);
        wr64(h + 4, ent[i].size);
        wr64(h + 12, ent[i].size);
        wr64(h + 20, ent[i].offset);
        out_len += 46 + ent[i].nlen + 28;
    }
    {
        unsigned char *z = out + out_len;
        size_t cd_size = out_len - cd_start, e64 = out_len;

        memset(z, 0, 56 + 20 + 22);
        wr32(z, 0x06064b50);
        wr64(z + 4, 44);
        wr16(z + 12, 45);
        wr16(z + 14, 45);
        wr64(z + 24, n_entries);
        wr64(z + 32, n_entries);
        wr64(z + 40, cd_size);
        wr64(z + 48, cd_start);
        z += 56;
        wr32(z, 0x07064b50);
        wr64(z + 8, e64);
        wr32(z + 16, 1);
        z += 20;
        wr32(z, 0x06054b50);
        wr16(z + 8, 0xffff);
        wr16(z + 10, 0xffff);
        wr32(z + 12, 0xffffffffu);
        wr32(z + 16, 0xffffffffu);
        out_len += 56 + 20 + 22;
    }
    free(ent);
    *outp = out;
    return out_len;
}

static void test_zip64(void)
{
    const char *path = shared_path("fixtures/models/v7.pth");
    unsigned char *buf, *z64;
    size_t len, zlen;
    ckpt_file *a, *b;
    char err[512], why[256];

    buf = read_file(path, &len);
    if (!buf) {
        skip("v7.pth not found");
        return;
    }
    zlen = make_zip64(buf, len, &z64, "v7/", "archive/");
    write_file(tmp_path("zip64.pth"), z64, zlen);
    a = ckpt_open(path, err, sizeof(err));
    b = ckpt_open(tmp_path("zip64.pth"), err, sizeof(err));
    if (!ok(b != NULL, "ZIP64 checkpoint under folder archive/ opens")) {
        diag("%s", err);
    } else {
        ok(same_contents(a, b, why, sizeof(why)), "ZIP64 copy holds the same tensors (%s)",
           why);
    }
    ckpt_close(a);
    ckpt_close(b);
    free(z64);
    free(buf);
}

/* Opens path expecting failure; checks the error is one line holding the
 * file name and every word in want (NULL-terminated). */
static void expect_error(const char *what, const char *path, const char *const *want)
{
    char err[512];
    ckpt_file *f;
    int good;

    memset(err, 0, sizeof(err));
    f = ckpt_open(path, err, sizeof(err));
    good = f == NULL && strstr(err, path) == err && !strchr(err, '\n');
    for (; good && *want; want++) {
        good = strstr(err, *want) != NULL;
    }
    ok(good, "%s: \"%s\"", what, err);
    ckpt_close(f);
}

#define WANT(...) ((const char *const[]){ __VA_ARGS__, NULL })

/* torch.save of an OrderedDict state dict with its _metadata attribute
 * (made in Python with stand-ins for the torch globals, protocol 2):
 * a = storage 0 [2][3]; b = storage 0 viewed from offset 1 as [3][2] with
 * strides (1, 3); c = float16 storage 1 [4]; big = storage 0 element 7. */
static const unsigned char ordered_pickle[] =
    "\x80\x02\x63\x63\x6f\x6c\x6c\x65\x63\x74\x69\x6f\x6e\x73\x0a\x4f"
    "\x72\x64\x65\x72\x65\x64\x44\x69\x63\x74\x0a\x71\x00\x29\x52\x71"
    "\x01\x28\x58\x01\x00\x00\x00\x61\x71\x02\x63\x74\x6f\x72\x63\x68"
    "\x2e\x5f\x75\x74\x69\x6c\x73\x0a\x5f\x72\x65\x62\x75\x69\x6c\x64"
    "\x5f\x74\x65\x6e\x73\x6f\x72\x5f\x76\x32\x0a\x71\x03\x28\x28\x58"
    "\x07\x00\x00\x00\x73\x74\x6f\x72\x61\x67\x65\x71\x04\x63\x74\x6f"
    "\x72\x63\x68\x0a\x46\x6c\x6f\x61\x74\x53\x74\x6f\x72\x61\x67\x65"
    "\x0a\x71\x05\x58\x01\x00\x00\x00\x30\x71\x06\x58\x03\x00\x00\x00"
    "\x63\x70\x75\x71\x07\x4b\x08\x74\x71\x08\x51\x4b\x00\x4b\x02\x4b"
    "\x03\x86\x71\x09\x4b\x03\x4b\x01\x86\x71\x0a\x89\x68\x00\x29\x52"
    "\x71\x0b\x74\x71\x0c\x52\x71\x0d\x58\x01\x00\x00\x00\x62\x71\x0e"
    "\x68\x03\x28\x28\x68\x04\x68\x05\x68\x06\x68\x07\x4b\x08\x74\x71"
    "\x0f\x51\x4b\x01\x4b\x03\x4b\x02\x86\x71\x10\x4b\x01\x4b\x03\x86"
    "\x71\x11\x89\x68\x00\x29\x52\x71\x12\x74\x71\x13\x52\x71\x14\x58"
    "\x01\x00\x00\x00\x63\x71\x15\x68\x03\x28\x28\x68\x04\x63\x74\x6f"
    "\x72\x63\x68\x0a\x48\x61\x6c\x66\x53\x74\x6f\x72\x61\x67\x65\x0a"
    "\x71\x16\x58\x01\x00\x00\x00\x31\x71\x17\x68\x07\x4b\x04\x74\x71"
    "\x18\x51\x4b\x00\x4b\x04\x85\x71\x19\x4b\x01\x85\x71\x1a\x89\x68"
    "\x00\x29\x52\x71\x1b\x74\x71\x1c\x52\x71\x1d\x58\x03\x00\x00\x00"
    "\x62\x69\x67\x71\x1e\x68\x03\x28\x28\x68\x04\x68\x05\x68\x06\x68"
    "\x07\x4b\x08\x74\x71\x1f\x51\x4b\x07\x68\x1a\x68\x1a\x89\x68\x00"
    "\x29\x52\x71\x20\x74\x71\x21\x52\x71\x22\x75\x7d\x71\x23\x58\x09"
    "\x00\x00\x00\x5f\x6d\x65\x74\x61\x64\x61\x74\x61\x71\x24\x68\x00"
    "\x29\x52\x71\x25\x28\x58\x00\x00\x00\x00\x71\x26\x7d\x71\x27\x58"
    "\x07\x00\x00\x00\x76\x65\x72\x73\x69\x6f\x6e\x71\x28\x4b\x01\x73"
    "\x58\x05\x00\x00\x00\x6c\x61\x79\x65\x72\x71\x29\x7d\x71\x2a\x68"
    "\x28\x4b\x02\x73\x75\x73\x62\x2e";

static void test_ordered_dict(void)
{
    static const float s0[8] = { 0, 1, 2, 3, 4, 5, 6, 7 };
    static const unsigned char s1[8] = { 0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38, 0x00, 0x00 };
    const char *names[] = { "my model/data.pkl", "my model/byteorder", "my model/data/0",
                            "my model/data/1" };
    const void *data[] = { ordered_pickle, "little", s0, s1 };
    size_t sizes[] = { sizeof(ordered_pickle), 6, sizeof(s0), sizeof(s1) };
    const struct ckpt_tensor *a, *b, *c, *big;
    char err[512];
    ckpt_file *f;
    float cf[4];

    write_zip(tmp_path("ordered.pth"), 4, names, data, sizes);
    f = ckpt_open(tmp_path("ordered.pth"), err, sizeof(err));
    if (!ok(f != NULL, "OrderedDict state dict with _metadata (BUILD) under 'my model/' opens")) {
        diag("%s", err);
        return;
    }
    a = ckpt_find(f, "a");
    b = ckpt_find(f, "b");
    c = ckpt_find(f, "c");
    big = ckpt_find(f, "big");
    ok(ckpt_count(f) == 4 && a && b && c && big, "4 tensors, _metadata is not one");
    ok(a && a->ndim == 2 && a->shape[0] == 2 && a->shape[1] == 3 &&
       !memcmp(a->data, s0, 24), "a = [[0 1 2] [3 4 5]]");
    if (b) {
        const float *x = b->data;
        ok(b->ndim == 2 && b->shape[0] == 3 && b->shape[1] == 2 && x[0] == 1 && x[1] == 4 &&
           x[2] == 2 && x[3] == 5 && x[4] == 3 && x[5] == 6,
           "b = strided view from offset 1 = [[1 4] [2 5] [3 6]] (got %g %g %g %g %g %g)",
           x[0], x[1], x[2], x[3], x[4], x[5]);
    }
    if (c) {
        ckpt_to_f32(c->dtype, c->data, cf, 4);
        ok(c->dtype == CKPT_F16 && c->numel == 4 && cf[0] == 1 && cf[1] == -2 &&
           cf[2] == 0.5f && cf[3] == 0, "c = float16 [1 -2 0.5 0]");
    }
    ok(big && big->numel == 1 && ((const float *)big->data)[0] == 7,
       "big = last element of the shared storage");
    ckpt_close(f);

    {
        /* {'p': nn.Parameter(tensor of 8 floats)}, written by hand */
        static const char param[] =
            "\x80\x02" "}" "(" "X\x01\x00\x00\x00" "p"
            "ctorch._utils\n_rebuild_parameter\n"
            "ctorch._utils\n_rebuild_tensor_v2\n"
            "((" "X\x07\x00\x00\x00" "storage" "ctorch\nFloatStorage\n"
            "X\x01\x00\x00\x00" "0" "X\x03\x00\x00\x00" "cpu" "K\x08" "t" "Q"
            "K\x00" "K\x08\x85" "K\x01\x85" "\x89" "ccollections\nOrderedDict\n" ")R" "tR"
            "\x88" "ccollections\nOrderedDict\n" ")R" "\x87" "R" "u" ".";
        const char *pnames[] = { "archive/data.pkl", "archive/data/0" };
        const void *pdata[] = { param, s0 };
        size_t psizes[] = { sizeof(param) - 1, sizeof(s0) };

        write_zip(tmp_path("param.pth"), 2, pnames, pdata, psizes);
        f = ckpt_open(tmp_path("param.pth"), err, sizeof(err));
        ok(f && ckpt_count(f) == 1 && (a = ckpt_find(f, "p")) && a->numel == 8 &&
           !memcmp(a->data, s0, 32), "nn.Parameter (_rebuild_parameter) reads as its tensor%s%s",
           f ? "" : ": ", f ? "" : err);
        ckpt_close(f);
    }
    {
        char *dbl = malloc(sizeof(ordered_pickle));
        long pos = find_bytes(ordered_pickle, sizeof(ordered_pickle), 0, "FloatStorage\n", 13);

        memcpy(dbl, ordered_pickle, sizeof(ordered_pickle));
        memcpy(dbl + pos - 6, "torch\nShortStorage\n", 19);
        data[0] = dbl;
        write_zip(tmp_path("double.pth"), 4, names, data, sizes);
        expect_error("int16 storage", tmp_path("double.pth"),
                     WANT("tensor type torch.ShortStorage not supported"));
        data[0] = ordered_pickle;
        free(dbl);
    }
    data[1] = "big\0\0\0";
    write_zip(tmp_path("bigendian.pth"), 4, names, data, sizes);
    expect_error("big-endian checkpoint", tmp_path("bigendian.pth"),
                 WANT("byteorder", "only little-endian"));
}

static void test_damaged_pth(void)
{
    const char *path = shared_path("fixtures/models/v7.pth");
    unsigned char *buf, *copy;
    size_t len, i;
    const char *p;

    buf = read_file(path, &len);
    if (!buf) {
        skip("v7.pth not found");
        return;
    }
    write_file(tmp_path("empty.pth"), "", 0);
    expect_error("empty file", tmp_path("empty.pth"), WANT("empty"));

    write_file(tmp_path("half.pth"), buf, len / 2);
    expect_error("truncated .pth", tmp_path("half.pth"), WANT("truncated"));

    write_file(tmp_path("tail-cut.pth"), buf, len - 10);
    expect_error(".pth missing its last bytes", tmp_path("tail-cut.pth"), WANT("truncated"));

    /* a zip with entries but no data.pkl */
    copy = malloc(len);
    memcpy(copy, buf, len);
    for (i = 0; i + 8 <= len; i++) {
        if (!memcmp(copy + i, "data.pkl", 8)) {
            memcpy(copy + i, "data.txt", 8);
        }
    }
    write_file(tmp_path("notckpt.zip"), copy, len);
    free(copy);
    expect_error("zip that is not a checkpoint", tmp_path("notckpt.zip"),
                 WANT("not a PyTorch checkpoint", "data.pkl"));

    p = patched("global.pth", buf, len, NULL, "torch._utils\n_rebuild_tensor_v2\n",
                "os\nsystem\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n", 32, 0);
    expect_error("pickle with a foreign GLOBAL", p,
                 WANT("data.pkl offset 23", "refusing foreign GLOBAL os.system"));

    p = patched("opcode.pth", buf, len, NULL, "\x80\x02}", "\x80\x02]", 3, 0);
    expect_error("pickle with a disallowed opcode (EMPTY_LIST)", p,
                 WANT("data.pkl offset 2", "opcode 0x5d not allowed"));

    /* storage offset 0 -> 16 elements: head.weight's view runs past its entry */
    p = patched("offset.pth", buf, len, "head.weight", "QK\x00", "QK\x10", 3, 0);
    expect_error("tensor data running past its entry", p,
                 WANT("tensor head.weight", "runs past the end of entry v7/data/101"));

    /* storage size 128000 -> 128001 elements: more than the entry holds */
    p = patched("storage.pth", buf, len, "emb.weight", "J\x00\xf4\x01\x00", "J\x01\xf4\x01\x00",
                5, 0);
    expect_error("storage larger than its entry", p,
                 WANT("tensor emb.weight", "runs past the end of entry v7/data/0"));

    /* shape (128,) -> (129,): the view needs one element more than stored */
    p = patched("bigshape.pth", buf, len, "ln_out.weight", "K\x80\x85", "K\x81\x85", 3, 0);
    expect_error("tensor shape larger than its storage", p,
                 WANT("tensor ln_out.weight", "runs past the end of entry v7/data/99"));

    /* legacy pickle and random bytes */
    write_file(tmp_path("legacy.pth"), "\x80\x02\x8a\x0al\xfc\x9c" "F\xf9 j\xa8" "P\x19.", 16);
    expect_error("legacy torch pickle", tmp_path("legacy.pth"), WANT("legacy"));
    write_file(tmp_path("text.pth"), "hello, this is not a model\n", 27);
    expect_error("text file", tmp_path("text.pth"), WANT("not a model file"));
    expect_error("missing file", tmp_path("nonexistent.pth"), WANT("No such file"));
    free(buf);
}

static void put_safetensors(const char *name, const char *header, const void *data,
                            size_t dlen)
{
    size_t hlen = strlen(header), len = 8 + hlen + dlen;
    unsigned char *b = malloc(len);

    wr64(b, hlen);
    memcpy(b + 8, header, hlen);
    memcpy(b + 8 + hlen, data, dlen);
    write_file(tmp_path(name), b, len);
    free(b);
}

static void test_safetensors_small(void)
{
    float data[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    char err[512];
    const struct ckpt_tensor *t;
    ckpt_file *f;

    put_safetensors("ok.safetensors",
                    "{\"__metadata__\":{\"format\":\"pt\",\"n\":\"\\u00e9\\ud83d\\ude00\"},"
                    " \"a\\u002eb\" : {\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                    "\"c\":{\"shape\":[],\"dtype\":\"F32\",\"data_offsets\":[16,20]},"
                    "\"h\":{\"dtype\":\"F16\",\"shape\":[6],\"data_offsets\":[20,32]}}  ",
                    data, sizeof(data));
    f = ckpt_open(tmp_path("ok.safetensors"), err, sizeof(err));
    if (!ok(f != NULL, "hand-made safetensors opens (escapes, metadata, scalar, spaces)")) {
        diag("%s", err);
    } else {
        t = ckpt_find(f, "a.b");
        ok(t && t->ndim == 2 && t->shape[1] == 2 && ((const float *)t->data)[3] == 4.0f,
           "tensor a.b [2][2] = 1 2 3 4");
        t = ckpt_find(f, "c");
        ok(t && t->ndim == 0 && t->numel == 1 && ((const float *)t->data)[0] == 5.0f,
           "scalar c = 5");
        t = ckpt_find(f, "h");
        ok(t && t->dtype == CKPT_F16 && t->numel == 6, "float16 tensor h of 6");
    }
    ckpt_close(f);

    /* Headers that must be refused, each over the same 32 bytes of data. */
    const struct {
        const char *file, *header, *what;
        const char *const *want;
    } bad[] = {
        { "overlap.safetensors",
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
          "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
          "safetensors with overlapping tensors", WANT("tensor b", "overlaps tensor a") },
        { "dtype.safetensors",
          "{\"a\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}",
          "safetensors with an integer tensor", WANT("tensor a", "dtype I64 not supported") },
        { "past.safetensors",
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[16],\"data_offsets\":[0,64]}}",
          "safetensors tensor past the end of the data", WANT("tensor a", "past the end") },
        { "shape.safetensors",
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}",
          "safetensors shape contradicting its byte range",
          WANT("tensor a", "shape 3 of float32 needs 12 bytes, data has 16") },
        { "json.safetensors",
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},}",
          "safetensors with a trailing comma", WANT("header offset") },
        { "neg.safetensors",
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}",
          "safetensors with a negative dimension", WANT("header offset", "non-negative integer") },
        { "dup.safetensors",
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
          "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
          "safetensors with a name twice", WANT("tensor a appears twice") },
        { "ctrl.safetensors",
          "{\"a\\u000a\\u001b[2Jb\":{\"dtype\":\"F32\",\"shape\":[2],"
          "\"data_offsets\":[0,8]}}",
          "tensor name with a newline and an escape sequence",
          WANT("tensor 0", "control characters") },
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        put_safetensors(bad[i].file, bad[i].header, data, sizeof(data));
        expect_error(bad[i].what, tmp_path(bad[i].file), bad[i].want);
    }
    {
        unsigned char hdr[16] = { 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, '{', '}' };
        write_file(tmp_path("hlen.safetensors"), hdr, sizeof(hdr));
        expect_error("safetensors header length past the end", tmp_path("hlen.safetensors"),
                     WANT("header", "runs past the end of the file"));
    }
}

static void test_damaged_safetensors(void)
{
    const char *path = shared_path("fixtures/models/v7.safetensors");
    unsigned char *buf;
    size_t len;

    buf = read_file(path, &len);
    if (!buf) {
        skip("v7.safetensors not found");
        return;
    }
    write_file(tmp_path("cut.safetensors"), buf, len - 100);
    expect_error("truncated safetensors", tmp_path("cut.safetensors"),
                 WANT("tensor ", "run past the end of the data", "truncated"));
    write_file(tmp_path("cut-header.safetensors"), buf, 200);
    expect_error("safetensors cut inside the header", tmp_path("cut-header.safetensors"),
                 WANT("header", "truncated"));
    free(buf);
}

/* Random damage (seeded, so reproducible): 1-4 bytes changed and now and
 * then a truncation; every copy must open or fail with one line naming the
 * file.  Under the sanitizer build this also checks every bound. */
static void test_mutations(const char *what, const char *path, int iters, unsigned seed)
{
    unsigned char *buf, *copy;
    size_t len, i;
    int it, opened = 0, good = 1;
    char err[512];

    buf = read_file(path, &len);
    if (!buf) {
        skip("%s not found", path);
        return;
    }
    copy = malloc(len);
    srand(seed);
    for (it = 0; it < iters; it++) {
        int n = 1 + rand() % 4, j;
        size_t cut = rand() % 8 == 0 ? (size_t)rand() % len : len;
        ckpt_file *f;

        memcpy(copy, buf, len);
        for (j = 0; j < n; j++) {
            size_t pos = (size_t)rand() % len;
            int r = rand() % 4;
            copy[pos] = r == 0 ? 0xff : r == 1 ? 0 : r == 2 ? (unsigned char)rand()
                      : (unsigned char)(copy[pos] + 1);
        }
        write_file(tmp_path("mutant"), copy, cut);
        err[0] = '\0';
        f = ckpt_open(tmp_path("mutant"), err, sizeof(err));
        if (f) {
            unsigned sum = 0;
            opened++;
            for (i = 0; i < ckpt_count(f); i++) {
                const struct ckpt_tensor *t = ckpt_at(f, i);
                size_t b;
                for (b = 0; b < t->nbytes; b++) {
                    sum += ((const unsigned char *)t->data)[b];
                }
            }
            (void)sum;
            ckpt_close(f);
        } else if (strstr(err, tmp_path("mutant")) != err || strchr(err, '\n')) {
            diag("mutant %d: \"%s\"", it, err);
            good = 0;
        }
    }
    ok(good, "%s: %d damaged copies open or fail with one line naming the file (%d opened)",
       what, iters, opened);
    free(copy);
    free(buf);
}

/* ------------------------------------------------------------ CRC-32 --- */

/* Bit by bit, straight from the definition (reflected 0xEDB88320). */
static uint32_t crc_bitwise(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;

    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++) {
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        }
    }
    return ~c;
}

static void test_crc32(void)
{
    static const char fox[] = "The quick brown fox jumps over the lazy dog";
    size_t n = 1 << 20, i, split_ok = 1, align_ok = 1;
    unsigned char *buf = malloc(n + 8);
    uint32_t x = 12345, whole;

    ok(crc32_update(0, "", 0) == 0 && crc32_update(0, "123456789", 9) == 0xcbf43926u &&
       crc32_update(0, fox, sizeof(fox) - 1) == 0x414fa339u &&
       crc32_update(0, "a", 1) == 0xe8b7be43u,
       "CRC-32 of the known vectors (\"\", \"123456789\" = cbf43926, the fox = 414fa339, "
       "\"a\" = e8b7be43)");
    for (i = 0; i < n + 8; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (unsigned char)(x >> 16);
    }
    whole = crc32_update(0, buf, n);
    for (i = 0; i < 64; i++) {
        size_t cut = (i * 7919 + 13) % n;
        if (crc32_update(crc32_update(0, buf, cut), buf + cut, n - cut) != whole) {
            split_ok = 0;
        }
    }
    for (i = 0; i < 8; i++) {
        if (crc32_update(0, buf + i, 1000 + i) != crc_bitwise(buf + i, 1000 + i)) {
            align_ok = 0;
        }
    }
    ok(whole == crc_bitwise(buf, n) && split_ok && align_ok,
       "CRC-32 of 1 MiB of noise equals the bitwise definition, in any two pieces and from "
       "any alignment");
    free(buf);
}

/* Offset of entry suffix's data in the plain zip b; 0 if absent. */
static size_t entry_data(const unsigned char *b, size_t len, const char *suffix, size_t *size)
{
    struct raw_entry e[512];
    size_t n = raw_entries(b, len, e, 512), i;

    for (i = 0; i < n; i++) {
        if (e[i].nlen >= strlen(suffix) &&
            !memcmp(e[i].name + e[i].nlen - strlen(suffix), suffix, strlen(suffix))) {
            *size = e[i].size;
            return (size_t)(e[i].data - b);
        }
    }
    return 0;
}

static int file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* Flips bit 0 of byte off of path in place (same inode), its mtime put
 * back; waits for the ctime to move so that the change can be seen. */
static void flip_in_place(const char *path, size_t off)
{
    struct stat before, after;
    struct timespec times[2];
    unsigned char c;
    int fd = open(path, O_RDWR);

    stat(path, &before);
    if (fd < 0 || pread(fd, &c, 1, (off_t)off) != 1) {
        diag("cannot read %s", path);
    }
    c ^= 1;
    if (fd < 0 || pwrite(fd, &c, 1, (off_t)off) != 1) {
        diag("cannot write %s", path);
    }
    if (fd >= 0) {
        close(fd);
    }
    times[0].tv_sec = 0;
    times[0].tv_nsec = UTIME_OMIT;
    times[1] = before.st_mtim;
    for (int i = 0; i < 1000; i++) {
        struct timespec ms = { 0, 1000000 };

        utimensat(AT_FDCWD, path, times, 0);
        stat(path, &after);
        if (after.st_ctim.tv_sec != before.st_ctim.tv_sec ||
            after.st_ctim.tv_nsec != before.st_ctim.tv_nsec) {
            break;
        }
        nanosleep(&ms, NULL);
    }
}

/* Damaged downloads: a flipped byte in a tensor's entry or in data.pkl
 * is refused naming the entry; two entries of one name are refused. */
static void test_crc_damage(void)
{
    const char *src = shared_path("fixtures/models/v7.pth");
    const char *p = tmp_path("crc.pth");
    unsigned char *buf, *copy;
    size_t len, off, size;
    char err[512], want[512];
    ckpt_file *f;

    buf = read_file(src, &len);
    if (!buf || !(off = entry_data(buf, len, "/data/12", &size)) || size < 2) {
        skip("v7.pth has no entry data/12");
        free(buf);
        return;
    }
    copy = malloc(len);
    f = ckpt_open(src, err, sizeof err);
    ok(f && ckpt_checked_bytes(f) > (uint64_t)len / 2,
       "v7.pth opens with its CRCs checked (%llu bytes)",
       f ? (unsigned long long)ckpt_checked_bytes(f) : 0ULL);
    ckpt_close(f);

    memcpy(copy, buf, len);
    copy[off + size / 2] ^= 0x01;
    write_file(p, copy, len);
    f = ckpt_open(p, err, sizeof err);
    snprintf(want, sizeof want, "%s: zip entry v7/data/12: CRC-32 mismatch (damaged "
             "download?): download it again", p);
    ok(!f && !strcmp(err, want), "a flipped bit in a tensor: \"%s\"", err);
    ckpt_close(f);

    /* the same file with that entry's CRC made to match opens */
    zip_fix_crcs(copy, len);
    write_file(p, copy, len);
    f = ckpt_open(p, err, sizeof err);
    ok(f != NULL, "the same bytes with their CRC written to match open (a changed weight, "
       "not damage)");
    ckpt_close(f);

    /* a flipped bit in the pickle's key string: it still parses */
    memcpy(copy, buf, len);
    off = entry_data(buf, len, "data.pkl", &size);
    {
        long at = find_bytes(buf + off, size, 0, "emb.weight", 10);
        if (at >= 0) {
            copy[off + (size_t)at] ^= 0x01;
        }
        write_file(p, copy, len);
        f = ckpt_open(p, err, sizeof err);
        snprintf(want, sizeof want, "%s: zip entry v7/data.pkl: CRC-32 mismatch (damaged "
                 "download?): download it again", p);
        ok(at >= 0 && !f && !strcmp(err, want), "a flipped bit in data.pkl: \"%s\"", err);
        ckpt_close(f);
        /* and one that breaks the pickle: the CRC is named, not the pickle */
        memcpy(copy, buf, len);
        copy[off + size - 1] ^= 0x20;    /* the final STOP */
        write_file(p, copy, len);
        f = ckpt_open(p, err, sizeof err);
        ok(!f && !strcmp(err, want), "a flipped bit in data.pkl's STOP: \"%s\"", err);
        ckpt_close(f);
    }

    /* CRCs of 0 (torch.save with compute_crc32 off) are not checked */
    memcpy(copy, buf, len);
    copy[entry_data(buf, len, "/data/12", &size) + size / 2] ^= 0x01;
    {
        size_t eocd = len - 22, pos = rd32(copy + eocd + 16), n = rd16(copy + eocd + 10), i;

        for (i = 0; i < n; i++) {
            size_t lh = rd32(copy + pos + 42);
            wr32(copy + pos + 16, 0);
            wr32(copy + lh + 14, 0);
            pos += 46 + rd16(copy + pos + 28) + rd16(copy + pos + 30) + rd16(copy + pos + 32);
        }
    }
    write_file(p, copy, len);
    f = ckpt_open(p, err, sizeof err);
    ok(f && ckpt_checked_bytes(f) == 0, "a zip whose CRCs are all 0 (none recorded) opens "
       "unchecked");
    ckpt_close(f);

    /* two entries of one name */
    {
        static const float a[4] = { 1, 2, 3, 4 }, b[4] = { 5, 6, 7, 8 };
        static const char pk[] =
            "\x80\x02}X\x01\x00\x00\x00" "a" "ctorch._utils\n_rebuild_tensor_v2\n"
            "((X\x07\x00\x00\x00" "storage" "ctorch\nFloatStorage\n"
            "X\x01\x00\x00\x00" "0" "X\x03\x00\x00\x00" "cpu" "K\x04tQK\x00K\x04\x85K\x01\x85"
            "\x89" "ccollections\nOrderedDict\n)R" "tRs.";
        const char *names[] = { "archive/data.pkl", "archive/data/0", "archive/data/0" };
        const void *data[] = { pk, a, b };
        size_t sizes[] = { sizeof(pk) - 1, sizeof(a), sizeof(b) };

        write_zip(p, 2, names, data, sizes);
        f = ckpt_open(p, err, sizeof err);
        ok(f != NULL, "a hand-made zip of one tensor opens (%s)", f ? "ok" : err);
        ckpt_close(f);
        write_zip(p, 3, names, data, sizes);
        f = ckpt_open(p, err, sizeof err);
        snprintf(want, sizeof want, "%s: zip holds two entries named archive/data/0: damaged "
                 "or tampered with", p);
        ok(!f && !strcmp(err, want), "two entries named archive/data/0: \"%s\"", err);
        ckpt_close(f);
    }
    free(copy);
    free(buf);
}

/* The record of a verified file: the second open skips the check, a file
 * changed since (in place, mtime put back) is checked again. */
static void test_crc_record(void)
{
    const char *p = tmp_path("rec.pth"), *dir = tmp_path("rec-cache");
    unsigned char *buf;
    size_t len, off, size;
    char err[512], want[512], record[600];
    struct stat st;
    ckpt_file *f;
    uint64_t first, second;

    buf = read_file(shared_path("fixtures/models/v7.pth"), &len);
    if (!buf || !(off = entry_data(buf, len, "/data/12", &size))) {
        skip("v7.pth has no entry data/12");
        free(buf);
        return;
    }
    write_file(p, buf, len);
    stat(p, &st);
    snprintf(record, sizeof record, "%s/verified/%llx-%llx", dir, (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    f = ckpt_open_checked(p, dir, err, sizeof err);
    first = f ? ckpt_checked_bytes(f) : 0;
    ckpt_close(f);
    ok(f && first > len / 2 && file_exists(record),
       "first open: CRCs checked (%llu bytes), record written (%s)",
       (unsigned long long)first, record);
    f = ckpt_open_checked(p, dir, err, sizeof err);
    second = f ? ckpt_checked_bytes(f) : 1;
    ckpt_close(f);
    ok(f && second == 0, "second open: the record vouches for the file, nothing checked");
    f = ckpt_open(p, err, sizeof err);
    ok(f && ckpt_checked_bytes(f) == first, "without a record directory: checked every time");
    ckpt_close(f);

    flip_in_place(p, off + size / 2);
    f = ckpt_open_checked(p, dir, err, sizeof err);
    snprintf(want, sizeof want, "%s: zip entry v7/data/12: CRC-32 mismatch (damaged "
             "download?): download it again", p);
    ok(!f && !strcmp(err, want), "damaged in place after it was verified (mtime put back): "
       "checked again and refused (\"%s\")", err);
    ckpt_close(f);

    /* the record of a file of other contents is not taken for this one */
    flip_in_place(p, off + size / 2);
    f = ckpt_open_checked(p, dir, err, sizeof err);
    ok(f && ckpt_checked_bytes(f) == first, "repaired in place: checked again (%llu bytes)",
       f ? (unsigned long long)ckpt_checked_bytes(f) : 0ULL);
    ckpt_close(f);
    free(buf);
}

/* rwkv_model_load keeps its records in $XDG_CACHE_HOME/rwkv-chat. */
static void test_crc_record_model(void)
{
    const char *p = tmp_path("model-rec.pth");
    struct rwkv_load_options lo = { RWKV_DTYPE_AUTO, 1, RWKV_CACHE_MODE_ON };
    char err[RWKV_ERRLEN], record[600];
    unsigned char *buf;
    size_t len, off, size;
    struct stat st;
    rwkv_model *m;

    buf = read_file(shared_path("fixtures/models/v7.pth"), &len);
    if (!buf || !(off = entry_data(buf, len, "/data/12", &size))) {
        skip("v7.pth has no entry data/12");
        free(buf);
        return;
    }
    write_file(p, buf, len);
    setenv("XDG_CACHE_HOME", tmp_path("xdg"), 1);
    stat(p, &st);
    snprintf(record, sizeof record, "%s/rwkv-chat/verified/%llx-%llx", tmp_path("xdg"),
             (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
    m = rwkv_model_load(p, &lo, err, sizeof err);
    ok(m && file_exists(record), "a model load records the verified file in "
       "$XDG_CACHE_HOME/rwkv-chat/verified (%s)", m ? record : err);
    rwkv_model_free(m);
    flip_in_place(p, off + size / 2);
    m = rwkv_model_load(p, &lo, err, sizeof err);
    ok(!m && strstr(err, "zip entry v7/data/12: CRC-32 mismatch"),
       "and refuses it once damaged in place (%s)", m ? "(loaded)" : err);
    rwkv_model_free(m);
    free(buf);
}

int main(void)
{
    static const char *fixtures[] = {
        "fixtures/models/v4.pth", "fixtures/models/v5.2.pth", "fixtures/models/v6.pth",
        "fixtures/models/v7.pth", "fixtures/models/v7-fp32.pth",
        "fixtures/models/v7-world.pth", "fixtures/models/v7.torch2.pth",
        "fixtures/models/v7.safetensors", "fixtures/models/v6.safetensors",
        "fixtures/trained/tiny-4v0-660K.pth", "fixtures/trained/tiny-5v1-730K.pth",
        "fixtures/trained/tiny-5v2-730K.pth", "fixtures/trained/tiny-7v0-834K.pth",
    };
    size_t i;

    if (tmpdir_make("test_checkpoint") != 0) {
        return 99;
    }
    for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
        test_fixture(fixtures[i]);
    }
    test_same_weights("fixtures/models/v7.pth", "fixtures/models/v7.safetensors");
    test_same_weights("fixtures/models/v7.pth", "fixtures/models/v7.torch2.pth");
    test_same_weights("fixtures/models/v6.pth", "fixtures/models/v6.safetensors");
    test_conversions();
    test_strided();
    test_zip64();
    test_ordered_dict();
    test_damaged_pth();
    test_safetensors_small();
    test_damaged_safetensors();
    test_crc32();
    test_crc_damage();
    test_crc_record();
    test_crc_record_model();
    test_mutations("small .pth (OrderedDict, strided view, two storages)",
                   tmp_path("ordered.pth"), 600, 1);
    test_mutations("small safetensors", tmp_path("ok.safetensors"), 400, 2);
    tmpdir_remove();
    return tap_done();
}
