/*
 * fuzz.h - helpers for the libFuzzer targets: the readers under test take
 * paths, so each input is handed over as an in-memory file.
 */
#ifndef RWKV_FUZZ_H
#define RWKV_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Writes data to a fresh memfd; fills path with its /proc name.  Returns
 * the fd (close it after use) or -1. */
static int fuzz_memfile(const uint8_t *data, size_t size, char *path, size_t pathlen)
{
    int fd = memfd_create("fuzz", 0);
    size_t off = 0;

    if (fd < 0) {
        return -1;
    }
    while (off < size) {
        ssize_t n = write(fd, data + off, size - off);
        if (n <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)n;
    }
    snprintf(path, pathlen, "/proc/self/fd/%d", fd);
    return fd;
}

/* The source tree's share/ (set FUZZ_SHARE, else the build passes it). */
static const char *fuzz_share_dir(void)
{
    const char *d = getenv("FUZZ_SHARE");
#ifdef FUZZ_DEFAULT_SHARE
    return d ? d : FUZZ_DEFAULT_SHARE;
#else
    return d ? d : "share";
#endif
}

#endif
