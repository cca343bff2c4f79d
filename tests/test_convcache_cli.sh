#!/bin/sh
# test_convcache_cli.sh - the conversion cache seen from rwkv-chat and
# rwkv-tool: --dtype q8 writes HASH-MODEL.q8.rwkvcache in
# $XDG_CACHE_HOME/rwkv-chat (never beside the model) and reads it next time
# (--verbose says which), the replies are the same either way, --no-cache
# neither writes nor reads one, an old cache beside the model is ignored
# (--verbose says so), and rwkv-tool cache list|clear (issue 21, item 7);
# the size limit from --cache-max, RWKV_CHAT_CACHE_MAX or the config file's
# cache_max (in that order), shown by cache list and obeyed by rwkv-chat and
# rwkv-tool.
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
XDG_CONFIG_HOME="$T/config"
export XDG_CACHE_HOME XDG_CONFIG_HOME
unset RWKV_CHAT_CACHE_MAX
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
      grep -q "^2 caches, .* in $T/xdg/rwkv-chat (limit 16G: the default)$" "$T/list.out"; echo $?)" \
    "cache list: both caches, the total, the directory and the limit (16G, the default)"
head -n 1 "$T/list.out" | grep -q -- "-m.pth.q4.rwkvcache$"
ok $? "cache list: the most recently used first"
RWKV_CHAT_CACHE_MAX=1G "$TOOL" cache list | tail -n 1 | grep -q "(limit 1G: RWKV_CHAT_CACHE_MAX)$"
ok $? "cache list: the limit follows RWKV_CHAT_CACHE_MAX, and says so"
mkdir -p "$XDG_CONFIG_HOME/rwkv-chat"
echo "cache_max = 1536M" >"$XDG_CONFIG_HOME/rwkv-chat/config"
"$TOOL" cache list | tail -n 1 | grep -q "(limit 1536M: cache_max in the config file)$"
ok $? "cache list: the limit follows the config file's cache_max, and says so"
RWKV_CHAT_CACHE_MAX=1G "$TOOL" cache list | tail -n 1 | grep -q "(limit 1G: RWKV_CHAT_CACHE_MAX)$"
ok $? "cache list: RWKV_CHAT_CACHE_MAX wins over the config file"
rm -f "$XDG_CONFIG_HOME/rwkv-chat/config"
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

# The limit at work: a cache written past it removes the least recently
# used others (never the new one).  The q8 cache is there (written after
# clear); each cache of this model is well over 1K.
caches() { # caches: the formats cached, sorted, on one line
    ls "$T"/xdg/rwkv-chat/ | sed -n 's/.*-m\.pth\.\(.*\)\.rwkvcache$/\1/p' | sort | tr '\n' ' '
}
echo "cache_max = 1K" >"$XDG_CONFIG_HOME/rwkv-chat/config"
run lim1 --dtype q4 --verbose
ok "$(test "$(cat "$T/lim1.rc")" = 0 && test "$(caches)" = "q4 "; echo $?)" \
    "config cache_max = 1K: writing the q4 cache removes the q8 one ($(caches))"
run lim2 --dtype q8 --cache-max 1G
ok "$(test "$(cat "$T/lim2.rc")" = 0 && test "$(caches)" = "q4 q8 "; echo $?)" \
    "--cache-max 1G wins over the config file's 1K: both caches kept ($(caches))"
RWKV_CHAT_CACHE_MAX=1G "$TOOL" info --dtype fp16 "$T/m.pth" >/dev/null 2>"$T/info.err"
ok "$(test $? = 0 && test "$(caches)" = "fp16 q4 q8 "; echo $?)" \
    "RWKV_CHAT_CACHE_MAX=1G wins over the config file: rwkv-tool info --dtype fp16 keeps all three"
"$TOOL" info --dtype fp32 "$T/m.pth" >/dev/null 2>"$T/info.err"
ok "$(test $? = 0 && test "$(caches)" = "fp32 "; echo $?)" \
    "rwkv-tool info follows the config file's cache_max too: only the new fp32 cache left ($(caches))"
echo "cache_max = lots" >"$XDG_CONFIG_HOME/rwkv-chat/config"
run badconf
ok "$(test "$(cat "$T/badconf.rc")" = 1 &&
      grep -q "config:1: cache_max: 'lots' is not a size (bytes, or with a K, M or G suffix)" "$T/badconf.err"; echo $?)" \
    "config cache_max = lots: the config error names the line"
rm -f "$XDG_CONFIG_HOME/rwkv-chat/config"
run badopt --cache-max 12X
ok "$(test "$(cat "$T/badopt.rc")" = 2 &&
      grep -q "^rwkv-chat: --cache-max: '12X' is not a size" "$T/badopt.err"; echo $?)" \
    "--cache-max 12X: a usage error"
tap_done
