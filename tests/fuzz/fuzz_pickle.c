/* fuzz_pickle.c - the unpickler alone: the input is data.pkl, wrapped in a
 * stored zip with storages "0".."3" of 64 bytes each, so the zip layer
 * always accepts and every input reaches the unpickler. */
#include <string.h>

#include "engine/load/checkpoint.h"
#include "tests/fuzz/fuzz.h"

static uint8_t *out;
static size_t out_len, out_cap;
static struct { size_t off; const char *name; size_t size; } entries[8];
static int n_entries;

static void put(const void *p, size_t n)
{
    if (out_len + n > out_cap) {
        out_cap = (out_len + n) * 2;
        out = realloc(out, out_cap);
    }
    memcpy(out + out_len, p, n);
    out_len += n;
}

static void put16(unsigned v) { uint8_t b[2] = { v & 255, v >> 8 }; put(b, 2); }
static void put32(uint32_t v) { put16(v & 0xffff); put16(v >> 16); }

static uint32_t crc32(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++) {
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
        }
    }
    return ~c;
}

static void entry(const char *name, const uint8_t *data, size_t size)
{
    uint32_t crc = crc32(data, size);
    entries[n_entries].off = out_len;
    entries[n_entries].name = name;
    entries[n_entries].size = size;
    n_entries++;
    put32(0x04034b50); put16(20); put16(0); put16(0); put16(0); put16(0);
    put32(crc); put32((uint32_t)size); put32((uint32_t)size);
    put16((unsigned)strlen(name)); put16(0);
    put(name, strlen(name));
    put(data, size);
    (void)crc;
}

static void finish(void)
{
    size_t cd = out_len;
    for (int i = 0; i < n_entries; i++) {
        const char *name = entries[i].name;
        const uint8_t *data = out + entries[i].off + 30 + strlen(name);
        put32(0x02014b50); put16(20); put16(20); put16(0); put16(0); put16(0); put16(0);
        put32(crc32(data, entries[i].size)); put32((uint32_t)entries[i].size);
        put32((uint32_t)entries[i].size); put16((unsigned)strlen(name)); put16(0); put16(0);
        put16(0); put16(0); put32(0); put32((uint32_t)entries[i].off);
        put(name, strlen(name));
    }
    size_t cd_size = out_len - cd;
    put32(0x06054b50); put16(0); put16(0); put16((unsigned)n_entries); put16((unsigned)n_entries);
    put32((uint32_t)cd_size); put32((uint32_t)cd); put16(0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t storage[64];
    static const char *names[] = { "archive/data/0", "archive/data/1", "archive/data/2",
                                   "archive/data/3" };
    char path[64], err[512];
    ckpt_file *f;
    int fd;

    out_len = 0;
    n_entries = 0;
    entry("archive/data.pkl", data, size);
    for (int i = 0; i < 4; i++) {
        entry(names[i], storage, sizeof storage);
    }
    finish();
    fd = fuzz_memfile(out, out_len, path, sizeof path);
    if (fd < 0) {
        return 0;
    }
    f = ckpt_open(path, err, sizeof err);
    if (f) {
        ckpt_close(f);
    }
    close(fd);
    return 0;
}
