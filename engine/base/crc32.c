/* crc32.c - zip's CRC-32 by slicing-by-8 (crc32.h). */
#include <string.h>

#include "engine/base/crc32.h"

/* table[0] is the byte-at-a-time table; table[k][b] is the CRC of byte b
 * followed by k zero bytes, so eight table lookups consume eight bytes. */
struct crc32_tables {
    uint32_t t[8][256];
};

/* Filled once before main (a constructor) and only read after that, so
 * threads share them without a lock. */
static struct crc32_tables tables;

__attribute__((constructor))
static void crc32_init(void)
{
    uint32_t c;
    int i, k;

    for (i = 0; i < 256; i++) {
        c = (uint32_t)i;
        for (k = 0; k < 8; k++) {
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        tables.t[0][i] = c;
    }
    for (i = 0; i < 256; i++) {
        for (k = 1; k < 8; k++) {
            tables.t[k][i] = (tables.t[k - 1][i] >> 8) ^ tables.t[0][tables.t[k - 1][i] & 0xff];
        }
    }
}

uint32_t crc32_update(uint32_t crc, const void *data, size_t n)
{
    const uint32_t (*t)[256] = tables.t;
    const unsigned char *p = data;
    uint32_t c = ~crc;
    uint64_t v;

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (n >= 8) {
        memcpy(&v, p, 8);
        v ^= c;
        c = t[7][v & 0xff] ^ t[6][(v >> 8) & 0xff] ^ t[5][(v >> 16) & 0xff] ^
            t[4][(v >> 24) & 0xff] ^ t[3][(v >> 32) & 0xff] ^ t[2][(v >> 40) & 0xff] ^
            t[1][(v >> 48) & 0xff] ^ t[0][v >> 56];
        p += 8;
        n -= 8;
    }
#else
    (void)v;
#endif
    while (n--) {
        c = t[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    }
    return ~c;
}
