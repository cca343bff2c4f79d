/* errline.c - the one error_line of rwkv-chat (main.c, batch.c). */
#include "app/cli/errline.h"

#include <stdio.h>

void error_line(const char *fmt, const char *a, const char *b)
{
    fputs("rwkv-chat: ", stderr);
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
}
