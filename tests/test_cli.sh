#!/bin/sh
# test_cli.sh - GNU-style --help, --version and usage errors of both programs.
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
B=${TOP_BUILDDIR:-.}
for prog in rwkv-chat rwkv-tool; do
    t "$prog --help exits 0 with usage on stdout" sh -c "'$B/$prog' --help | grep -q '^Usage: $prog'"
    t "$prog --version names the package" sh -c "'$B/$prog' --version | grep -q '^$prog (rwkv-chat) '"
    t "$prog unknown option exits 2" sh -c "'$B/$prog' --no-such-option >/dev/null 2>&1; test \$? -eq 2"
    t "$prog unknown option prints usage on stderr only" sh -c \
        "out=\$('$B/$prog' --no-such-option 2>/dev/null); test -z \"\$out\" && '$B/$prog' --no-such-option 2>&1 | grep -q Usage"
done
tap_done
