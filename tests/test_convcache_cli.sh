#!/bin/sh
# test_convcache_cli.sh - the conversion cache seen from rwkv-chat and
# rwkv-tool: --dtype q8 writes HASH-MODEL.q8.rwkvcache in
# $XDG_CACHE_HOME/rwkv-chat (never beside the model) and reads it next time
# (--verbose says which), the replies are the same either way, --no-cache
# neither writes nor reads one, an old cache beside the model is ignored
# (--verbose says so), and rwkv-tool cache list|clear (issue 21, item 7).
B=${TOP_BUILDDIR:-.}
S=${SHARED_DIR:-../shared}
CHAT="$B/rwkv-chat"
TOOL="$B/rwkv-tool"
T="$B/tests/tmp/convcache_cli.$$"
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"

if [ ! -f "$S/fixtures/models/v7-world.pth" ]; then
    skip_all "v7-world.pth fixture not found"
fi
mkdir -p "$T/xdg" || exit 1
trap 'rm -rf "$T"' EXIT
cp "$S/fixtures/models/v7-world.pth" "$T/m.pth" || exit 1
XDG_CACHE_HOME="$T/xdg"
export XDG_CACHE_HOME
OLD="$T/m.pth.q8.rwkvcache"
# run NAME [ARGS...]: one question at --dtype q8, greedy
run() {
    name=$1; shift
    printf 'Hello there.\n' | "$CHAT" --batch --model "$T/m.pth" -t 1 --dtype q8 --greedy \
        --max-tokens 12 "$@" >"$T/$name.out" 2>"$T/$name.err"
    echo $? >"$T/$name.rc"
}

run off --no-cache --verbose
ok "$(test "$(cat "$T/off.rc")" = 0 && test ! -e "$CACHE" && test -z "$(ls "$T/xdg")"; echo $?)" \
    "--no-cache: replies, no cache file written"
ok "$(! grep -q "conversion cache" "$T/off.err"; echo $?)" "--no-cache --verbose: no cache line"
run first --verbose
CACHE=$(ls "$T"/xdg/rwkv-chat/*-m.pth.q8.rwkvcache 2>/dev/null)
ok "$(test "$(cat "$T/first.rc")" = 0 && test -s "$CACHE" && test ! -e "$OLD" &&
      grep -q "conversion cache: written $CACHE" "$T/first.err"; echo $?)" \
    "first start at q8: cache written in \$XDG_CACHE_HOME/rwkv-chat, not beside the model"
run second --verbose
ok "$(grep -q "conversion cache: used $CACHE" "$T/second.err"; echo $?)" \
    "second start: cache used"
ok "$(test -s "$T/off.out" && cmp -s "$T/off.out" "$T/first.out" && cmp -s "$T/off.out" "$T/second.out"; echo $?)" \
    "same replies converted, writing the cache and reading it"
cache_sum=$(cksum <"$CACHE")
run off2 --no-cache --verbose
ok "$(test "$(cat "$T/off2.rc")" = 0 && ! grep -q "conversion cache: used" "$T/off2.err" &&
      ! grep -q "conversion cache" "$T/off2.err" && cmp -s "$T/off.out" "$T/off2.out" &&
      test "$(cksum <"$CACHE")" = "$cache_sum"; echo $?)" \
    "--no-cache with a cache: not read (no 'conversion cache: used'), not rewritten"
run quiet
ok "$(test ! -s "$T/quiet.err"; echo $?)" "nothing on stderr without --verbose"

# An old cache beside the model (earlier versions wrote there): ignored,
# --verbose says it can be deleted; it is not removed.
printf 'old cache' >"$OLD"
run old --verbose
ok "$(grep -q "conversion cache: used $CACHE" "$T/old.err" &&
      grep -q "$OLD: an old conversion cache, no longer used" "$T/old.err" &&
      test "$(cat "$OLD")" = "old cache"; echo $?)" \
    "an old cache beside the model: not read, left alone, --verbose says it can be deleted"
run old_quiet
ok "$(test ! -s "$T/old_quiet.err"; echo $?)" "and nothing about it without --verbose"
rm -f "$OLD"

# rwkv-tool cache list|clear
run q4 --dtype q4
"$TOOL" cache list >"$T/list.out" 2>"$T/list.err"
ok "$(test $? = 0 && grep -q -- "-m.pth.q8.rwkvcache$" "$T/list.out" &&
      grep -q -- "-m.pth.q4.rwkvcache$" "$T/list.out" &&
      grep -q "^2 caches, .* in $T/xdg/rwkv-chat (limit 17.2 GB)$" "$T/list.out"; echo $?)" \
    "cache list: both caches, the total, the directory and the limit"
head -n 1 "$T/list.out" | grep -q -- "-m.pth.q4.rwkvcache$"
ok $? "cache list: the most recently used first"
RWKV_CHAT_CACHE_MAX=1G "$TOOL" cache list | tail -n 1 | grep -q "(limit 1.1 GB)$"
ok $? "cache list: the limit follows RWKV_CHAT_CACHE_MAX"
"$TOOL" cache clear >"$T/clear.out" 2>&1
ok "$(test $? = 0 && grep -q "^removed 2 caches" "$T/clear.out" &&
      test -z "$(ls "$T"/xdg/rwkv-chat/*.rwkvcache 2>/dev/null)" &&
      test -e "$T/m.pth"; echo $?)" "cache clear: removes them (the model stays)"
"$TOOL" cache list | grep -q "^0 caches"
ok $? "cache list after clear: none"
run after --verbose
ok "$(grep -q "conversion cache: written" "$T/after.err" && cmp -s "$T/off.out" "$T/after.out"; echo $?)" \
    "after clear the next start converts again, same replies"
"$TOOL" cache frobnicate >/dev/null 2>&1
ok "$(test $? = 2; echo $?)" "cache with an unknown action: usage error"
env -u XDG_CACHE_HOME -u HOME "$TOOL" cache list >/dev/null 2>"$T/nohome.err"
ok "$(test $? = 1 && grep -q "no cache directory" "$T/nohome.err"; echo $?)" \
    "cache list without XDG_CACHE_HOME or HOME: a runtime error"
tap_done
