/* errline.h - how rwkv-chat's command-line front end says an error. */
#ifndef RWKV_ERRLINE_H
#define RWKV_ERRLINE_H

/* Prints "rwkv-chat: " + fmt (with up to two string arguments) + newline
 * on stderr. */
void error_line(const char *fmt, const char *a, const char *b);

#endif
