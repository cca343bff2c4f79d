/* tool_main.c - rwkv-tool: the companion for scripts and diagnostics. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/session/blascore.h"
#include "app/session/paths.h"
#include "app/tools/tool.h"
#include "tokenizer/world.h"

static const struct tool_command commands[] = {
    { "tokenize", "print the token ids of the bytes on stdin", tool_tokenize },
    { "detokenize", "write the bytes of the token ids on stdin", tool_detokenize },
    { "bench", "measure the speed of a component (bench tokenizer FILE)", tool_bench },
    { "mkmodel", "write a random-weight model of a released shape (.pth/.safetensors)",
      tool_mkmodel },
    { "info", "describe a model file: version, sizes, parameters, bytes per token",
      tool_info },
    { "models", "list the models --model NAME finds, with version, size and parameters",
      tool_models },
    { "pull", "download a model (a known NAME or a URL) into the models folder",
      tool_pull },
    { "cache", "list or clear the conversion caches (cache list, cache clear)", tool_cache },
    { "logits", "write the raw logits (and final state) of a token list", tool_logits },
    { NULL, NULL, NULL },
};

static void usage(FILE *f)
{
    const struct tool_command *c;

    fprintf(f, "Usage: rwkv-tool COMMAND [OPTION]... [ARG]...\n"
               "Scripting and diagnostic companion of rwkv-chat.\n\n"
               "Commands:\n");
    for (c = commands; c->name; c++) {
        fprintf(f, "  %-12s %s\n", c->name, c->summary);
    }
    fprintf(f, "\nOptions:\n"
               "  -h, --help     display this help and exit\n"
               "  -V, --version  output version information and exit\n\n"
               "Run 'rwkv-tool COMMAND --help' for the options of a command.\n");
}

int main(int argc, char **argv)
{
    const struct tool_command *c;

    blascore_pick(argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("rwkv-tool (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
        return 0;
    }
    for (c = commands; c->name; c++) {
        if (!strcmp(argv[1], c->name)) {
            int i;

            /* No subcommand takes an empty argument; a script's unset variable gives one. */
            for (i = 2; i < argc; i++) {
                if (!argv[i][0] && i > 2 && argv[i - 1][0] == '-') {
                    tool_error("%s: %s: empty value", c->name, argv[i - 1]);
                    return 2;
                } else if (!argv[i][0]) {
                    tool_error("%s: argument %d is empty", c->name, i - 1);
                    return 2;
                }
            }
            return c->run(argc - 1, argv + 1);
        }
    }
    if (argv[1][0] == '-') {
        tool_error("unrecognized option '%s'", argv[1]);
    } else {
        tool_error("unknown command '%s'", argv[1]);
    }
    usage(stderr);
    return 2;
}
