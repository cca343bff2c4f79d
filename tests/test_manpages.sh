#!/bin/sh
# test_manpages.sh - the manual pages (issue 21): rwkv-tool(1) exists,
# describes every command 'rwkv-tool --help' lists, renders without
# warnings, and 'make install' installs it beside rwkv-chat(1), whose SEE
# ALSO names it; rwkv-chat(1)'s KEYS section and the README's "First steps".
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"

B=${TOP_BUILDDIR:-.}
SRC=${TOP_SRCDIR:-$(dirname "$0")/..}
page=$SRC/share/rwkv-tool.1
work=$(mktemp -d "${TMPDIR:-/tmp}/test_manpages.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT

test -s "$page"
ok $? "share/rwkv-tool.1 exists"
commands=$("$B/rwkv-tool" --help | awk '/^Commands:/ { on = 1; next } /^$/ { on = 0 } on { print $1 }')
missing=
for c in $commands; do
    grep -q "^\.SS $c\b" "$page" || missing="$missing $c"
done
ok "$(test -n "$commands" && test -z "$missing"; echo $?)" \
   "every rwkv-tool command has its section ($(echo $commands)); missing:${missing:- none}"
for c in $commands; do
    grep -q "^\.B rwkv-tool $c\$" "$page" || missing="$missing $c"
done
ok "$(test -z "$missing"; echo $?)" "and its line in the SYNOPSIS (missing:${missing:- none})"
if command -v man >/dev/null 2>&1; then
    for p in rwkv-tool rwkv-chat; do
        MANWIDTH=100 man --warnings -l "$SRC/share/$p.1" >"$work/$p.txt" 2>"$work/$p.warn"
        ok "$(test -s "$work/$p.txt" && test ! -s "$work/$p.warn"; echo $?)" \
           "$p.1 renders without warnings $(head -c 200 "$work/$p.warn")"
    done
else
    skip "man not installed"
    skip "man not installed"
fi
sed -n '/^\.SH SEE ALSO/,$p' "$SRC/share/rwkv-chat.1" | grep -q '^\.BR rwkv-tool (1)'
ok $? "rwkv-chat(1)'s SEE ALSO names rwkv-tool(1)"
make -s -C "$B" install-man DESTDIR="$work/inst" >/dev/null 2>&1
ok "$(find "$work/inst" -name rwkv-tool.1 | grep -q "/man1/rwkv-tool.1$" &&
      find "$work/inst" -name rwkv-chat.1 | grep -q "/man1/rwkv-chat.1$"; echo $?)" \
   "make install puts rwkv-tool.1 and rwkv-chat.1 in man1"

# The newcomer's documents (issue 21, item 8): rwkv-chat.1 has a KEYS
# section naming the keys the TUI's key bars show, the README a "First
# steps" section (keys, help, quitting, saving and --resume, where models
# go), and share/config.example shows max_tokens at its default (test_options
# checks every knob's value there against the defaults).
keys_sec=$(sed -n '/^\.SH KEYS/,/^\.SH /p' "$SRC/share/rwkv-chat.1" | sed 's/\\-/-/g; s/^\.[A-Z]* //')
missing=
for k in F1 F2 F3 F4 F5 PgUp PgDn Tab Alt-Enter Esc Ctrl-C Ctrl-D Enter Up Down; do
    printf '%s\n' "$keys_sec" | grep -q -- "$k" || missing="$missing $k"
done
ok "$(test -n "$keys_sec" && test -z "$missing"; echo $?)" \
   "rwkv-chat.1 has a KEYS section with every key of the key bars (missing:${missing:- none})"
steps=$(sed -n '/^## First steps/,/^## /p' "$SRC/README.md")
missing=
for w in Enter Esc /help F1 Ctrl-D /quit '/save FILE' '--resume' '~/.local/share/rwkv-chat/models' \
         'rwkv-tool' 'man rwkv-chat'; do
    printf '%s\n' "$steps" | grep -qF -- "$w" || missing="$missing $w"
done
ok "$(test -n "$steps" && test -z "$missing"; echo $?)" \
   "README.md has a 'First steps' section: keys, help, quitting, saving, --resume, models (missing:${missing:- none})"
tap_done
