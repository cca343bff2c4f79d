/*
 * escape.h - names from files and paths, made safe to put in a message.
 *
 * A tensor name, a zip entry, a name in a state file or a file name is
 * whatever bytes the file (or the directory) holds: a newline would split
 * a one-line message, an escape sequence would drive the terminal.
 * rwkv_escape copies such a name with every control byte shown as \n, \r,
 * \t or \xHH, every byte of invalid UTF-8 as \xHH, C1 controls, line
 * separators and bidirectional overrides as \uHHHH; printable ASCII and
 * valid UTF-8 stay as they are.  A backslash stays a backslash, so
 * escaping an escaped name changes nothing.  What does not fit keeps its
 * head and its tail around "...", so the words after the name in a
 * message are never cut.  Never prints; any module may use it.
 */
#ifndef RWKV_ESCAPE_H
#define RWKV_ESCAPE_H

#include <stddef.h>

/* Room for one name in a message, NUL included: three of them and the
 * words around them fit in RWKV_ERRLEN (512). */
#define RWKV_ESCAPE_LEN 128

/* Writes in[0..inlen) escaped to out, NUL-terminated, at most outlen
 * bytes (NUL included); returns out. */
char *rwkv_escape(char *out, size_t outlen, const void *in, size_t inlen);
/* The same for a NUL-terminated string. */
char *rwkv_escape_str(char *out, size_t outlen, const char *in);

/* For message arguments: the escaped name lives in a temporary array until
 * the end of the enclosing block.
 *   snprintf(err, errlen, "%s: tensor %s: ...", RWKV_ESC(path), RWKV_ESCN(name, len)); */
#define RWKV_ESC(s) rwkv_escape_str((char[RWKV_ESCAPE_LEN]){0}, RWKV_ESCAPE_LEN, (s))
#define RWKV_ESCN(s, n) rwkv_escape((char[RWKV_ESCAPE_LEN]){0}, RWKV_ESCAPE_LEN, (s), (n))

#endif
