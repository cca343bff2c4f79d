#!/bin/sh
# test_convcache_cli.sh - the conversion cache seen from rwkv-chat:
# --dtype q8 writes MODEL.q8.rwkvcache beside a writable model and reads
# it next time (--verbose says which), the replies are the same either
# way, and --no-cache neither writes nor reads one.
B=${TOP_BUILDDIR:-.}
S=${SHARED_DIR:-../shared}
CHAT="$B/rwkv-chat"
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
CACHE="$T/m.pth.q8.rwkvcache"
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
ok "$(test "$(cat "$T/first.rc")" = 0 && test -s "$CACHE" &&
      grep -q "conversion cache: written $CACHE" "$T/first.err"; echo $?)" \
    "first start at q8: cache written beside the model"
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
    "--no-cache with a cache beside the model: not read (no 'conversion cache: used'), not rewritten"
run quiet
ok "$(test ! -s "$T/quiet.err"; echo $?)" "nothing on stderr without --verbose"
tap_done
