/*
 * err.h - the engine's one way of filling an error message.
 *
 * Every fallible engine call takes a caller buffer err of errlen bytes and
 * fills it with one line (file, object, problem, what to do).  err_set is
 * that fill: it tolerates a NULL or empty buffer and always NUL-terminates.
 */
#ifndef RWKV_BASE_ERR_H
#define RWKV_BASE_ERR_H

#include <stdarg.h>
#include <stddef.h>

/* Formats the message into err (at most errlen bytes); nothing when err is
 * NULL or errlen is 0. */
void err_set(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void err_vset(char *err, size_t errlen, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#endif
