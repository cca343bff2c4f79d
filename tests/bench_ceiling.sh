#!/bin/sh
# tests/bench_ceiling.sh BEFORE_BUILD AFTER_BUILD [ROUNDS] - generation
# against the memory-bandwidth ceiling (BENCHMARKS.md; not a test).
#
#   MODELS="v7-0.1B.pth v7-0.4B.pth" tests/bench_ceiling.sh OLD/build build
#
# Single-stream generation (tg64) of each model in MODELS (paths, e.g.
# random weights at the released shapes made with `rwkv-tool mkmodel`),
# bf16/q8/q4, 1 and 2 threads, two builds (directories holding rwkv-bench;
# give the same one twice to measure one), interleaved config by config.
# The ceiling is the bytes read per token over the read bandwidth.
# The read bandwidth is measured once per thread count (rwkv-bench's own
# measure: 1 GiB, best of 5, that many threads) and given to both builds, so
# the "% of ceiling" columns of the two builds divide by the same number.
# Prints one markdown table: tok/s (median of the repeats; the median of
# ROUNDS rounds' medians when ROUNDS > 1) and % of ceiling per build.
# About 5 minutes with ROUNDS=1 on a quiet 2-core machine.
set -eu
B=${1:?usage: MODELS="A.pth B.pth" bench_ceiling.sh BEFORE_BUILD AFTER_BUILD [ROUNDS]}
A=${2:?usage: MODELS="A.pth B.pth" bench_ceiling.sh BEFORE_BUILD AFTER_BUILD [ROUNDS]}
ROUNDS=${3:-1}
MODELS=${MODELS:?MODELS: the model files to run, e.g. made with rwkv-tool mkmodel --version 7 --layers 12 --embd 768}
REPS=${REPS:-3}
for m in $MODELS; do
    [ -f "$m" ] || { echo "bench_ceiling.sh: no model $m" >&2; exit 1; }
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

first=$(echo $MODELS | cut -d' ' -f1)
for t in 1 2; do
    "$B/rwkv-bench" "$first" -t $t -p 0 -n 0 | sed -n 's/^machine: read bandwidth \([0-9.]*\) GB.*/\1/p' > "$TMP/bw$t"
done
echo "read bandwidth (GB/s): 1 thread $(cat "$TMP/bw1"), 2 threads $(cat "$TMP/bw2"); load: $(cut -d' ' -f1-3 /proc/loadavg)"

# one run: prints "tok/s pct MB/token"
one() {
    "$1/rwkv-bench" "$2" --dtype "$3" -t "$4" -p 0 -n 64 -r "$REPS" --bandwidth "$(cat "$TMP/bw$4")" >"$TMP/out" ||
        { echo "bench_ceiling.sh: $1/rwkv-bench $2 --dtype $3 -t $4 failed:" >&2; cat "$TMP/out" >&2; exit 1; }
    awk '/MB read per token/ { for (i = 1; i <= NF; i++) if ($i == "MB") mb = $(i - 1) }
             / tg64 / { split($0, f, "|"); split(f[4], s, " "); sub(/ *%.*/, "", f[6]); gsub(/ /, "", f[6]);
                        print s[1], f[6], mb }' "$TMP/out"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

for r in $(seq 1 "$ROUNDS"); do
    for m in $MODELS; do
        for d in bf16 q8 q4; do
            for t in 1 2; do
                key=$(basename "$m")_${d}_$t
                one "$B" "$m" $d $t >> "$TMP/B_$key"
                one "$A" "$m" $d $t >> "$TMP/A_$key"
            done
        done
    done
done

echo
echo "| model | format | threads | MB/token | before tok/s | before % of ceiling | after tok/s | after % of ceiling | after / before |"
echo "|---|---|---|---|---|---|---|---|---|"
for m in $MODELS; do
    for d in bf16 q8 q4; do
        for t in 1 2; do
            key=$(basename "$m")_${d}_$t
            bt=$(cut -d' ' -f1 "$TMP/B_$key" | median); bp=$(cut -d' ' -f2 "$TMP/B_$key" | median)
            at=$(cut -d' ' -f1 "$TMP/A_$key" | median); ap=$(cut -d' ' -f2 "$TMP/A_$key" | median)
            mb=$(head -1 "$TMP/A_$key" | cut -d' ' -f3)
            echo "| $(basename "$m") | $d | $t | $mb | $bt | $bp % | $at | $ap % | $(echo "$at $bt" | awk '{ printf "%.2f", $1 / $2 }') |"
        done
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
