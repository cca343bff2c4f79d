/* err.c - err_set, the engine's error-message fill (err.h). */
#include <stdio.h>

#include "engine/base/err.h"

void err_vset(char *err, size_t errlen, const char *fmt, va_list ap)
{
    if (!err || !errlen) {
        return;
    }
    vsnprintf(err, errlen, fmt, ap);
}

void err_set(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    err_vset(err, errlen, fmt, ap);
    va_end(ap);
}
