/*
 * crc32.h - the CRC-32 of zip files (ISO-HDLC: reflected polynomial
 * 0xEDB88320, initial and final value 0xFFFFFFFF), table-driven eight bytes
 * at a time (slicing-by-8).  Used to check and to write .pth entries.
 */
#ifndef RWKV_BASE_CRC32_H
#define RWKV_BASE_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* The CRC-32 of p[0..n) continuing from crc (0 to start):
 * crc32_update(crc32_update(0, a, na), b, nb) is the CRC of a then b. */
uint32_t crc32_update(uint32_t crc, const void *p, size_t n);

#endif
