/*
 * tool.h - rwkv-tool subcommands (tool_main.c dispatches; helpers in
 * tool_common.c).  Each takes the arguments after its name
 * (argv[0] is the subcommand name) and returns the exit status: 0 success,
 * 1 runtime error (one line on stderr), 2 usage error.
 */
#ifndef RWKV_TOOL_H
#define RWKV_TOOL_H

#include <stdint.h>

struct tool_command {
    const char *name;
    const char *summary;        /* one line for --help */
    int (*run)(int argc, char **argv);
};

/* Prints "rwkv-tool: " + message + newline to stderr. */
void tool_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The vocabulary path: --vocab value if given, else the installed one.
 * malloc'd, or NULL with an error printed. */
char *tool_vocab_path(const char *option_value);

/* The model file a MODEL argument names, found as rwkv-chat --model finds
 * it (models.h: a path, or a name from 'rwkv-tool models' or models.list).
 * malloc'd, or NULL with an error printed. */
char *tool_model_path(const char *name_or_path);

/* The conversion caches' size limit as rwkv-chat sees it (options.h:
 * RWKV_CHAT_CACHE_MAX, else the config file's cache_max, else 16 GiB), and
 * where it came from (options_cache_limit). */
uint64_t tool_cache_limit(const char **from);
/* The same for rwkv_load_options.cache_max. */
uint64_t tool_load_cache_max(void);

int tool_tokenize(int argc, char **argv);
int tool_detokenize(int argc, char **argv);
int tool_bench(int argc, char **argv);
int tool_info(int argc, char **argv);
int tool_logits(int argc, char **argv);
int tool_models(int argc, char **argv);
int tool_mkmodel(int argc, char **argv);
int tool_pull(int argc, char **argv);
int tool_cache(int argc, char **argv);

#endif
