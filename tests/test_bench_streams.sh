#!/bin/sh
# test_bench_streams.sh - rwkv-bench --streams: one row per stream count
# (one stream always, first), aggregate tok/s through rwkv_eval_batch, the
# speed-up line; bad counts are usage errors.  No timed assertions: the
# figures are only checked to be there and positive.
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
B=${TOP_BUILDDIR:-.}
S=${SHARED_DIR:-../shared}
F=$S/fixtures/models
TMP=$(mktemp -d "${TMPDIR:-/tmp}/test_bench_streams.XXXXXX") || exit 99
trap 'rm -rf "$TMP"' EXIT

if [ ! -f "$F/v7.pth" ]; then
    skip_all "model fixtures not found"
fi

for m in v7.pth v5.2.pth; do
    "$B/rwkv-bench" "$F/$m" --streams 3,2 -p 0 -n 4 -r 2 --bandwidth 10 --no-reexec -t 2 \
        >"$TMP/out" 2>&1
    ok "$(test $? = 0 &&
          grep -Eq '\| tg4 x1 stream +\| +[0-9.]+ \(' "$TMP/out" &&
          grep -Eq '\| tg4 x3 streams +\| +[0-9.]+ \(' "$TMP/out" &&
          grep -Eq '\| tg4 x2 streams +\| +[0-9.]+ \(' "$TMP/out" &&
          grep -Eq '^streams: .*against one stream: 3: [0-9.]+x 2: [0-9.]+x$' "$TMP/out"
          echo $?)" "$m: --streams 3,2 prints one stream, three and two, and the speed-ups"
done
"$B/rwkv-bench" "$F/v7.pth" --streams 1,1 -p 0 -n 2 -r 1 --bandwidth 10 --no-reexec \
    >"$TMP/one" 2>&1
ok "$(test $? = 2 && grep -q "bad --streams '1,1'" "$TMP/one"; echo $?)" \
    "--streams with no count above one is a usage error"
for bad in 0 x 513 2,,x ""; do
    "$B/rwkv-bench" "$F/v7.pth" --streams "$bad" -p 0 -n 2 -r 1 --bandwidth 10 \
        --no-reexec >"$TMP/bad" 2>&1
    ok "$(test $? = 2 && grep -q "bad --streams" "$TMP/bad"; echo $?)" \
        "--streams '$bad' refused"
done
"$B/rwkv-bench" --help >"$TMP/help" 2>&1
ok "$(grep -q -- '--streams N\[,M...\]' "$TMP/help"; echo $?)" "--help lists --streams"
tap_done
