#!/bin/sh
# tests/bench_prompts.sh BEFORE_BUILD AFTER_BUILD [ROUNDS] - prompt reading
# (pp512, 2 threads) of two builds, alternating within each round
# (BENCHMARKS.md; not a test).
#
#   MODELS=DIR tests/bench_prompts.sh OLD/build build
#
# DIR holds v6-0.1B.pth, v7-0.1B.pth, v6-0.4B.pth, v7-0.4B.pth (random
# weights at the released shapes: rwkv-tool mkmodel, or ../shared/peers).
# CASES (model:format:kernels, kernels "best" or a set rwkv-bench --kernels
# takes) picks the rows; the default is bf16, q8 and q4 on the CPU's best
# set.  The table gives the median of ROUNDS (default 3) tok/s; the first
# pass only warms the conversion and page caches.  Give the same build twice
# to measure one.
set -eu
B=${1:?usage: MODELS=DIR bench_prompts.sh BEFORE_BUILD AFTER_BUILD [ROUNDS]}
A=${2:?usage: MODELS=DIR bench_prompts.sh BEFORE_BUILD AFTER_BUILD [ROUNDS]}
R=${3:-3}
M=${MODELS:?MODELS: the folder of v6-0.1B.pth, v7-0.1B.pth, v6-0.4B.pth, v7-0.4B.pth}
CASES=${CASES:-"v6-0.1B:bf16:best v7-0.1B:bf16:best v6-0.4B:bf16:best v7-0.4B:bf16:best
v6-0.1B:q8:best v7-0.1B:q8:best v6-0.4B:q8:best v7-0.4B:q8:best
v6-0.1B:q4:best v7-0.1B:q4:best v6-0.4B:q4:best v7-0.4B:q4:best"}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
run() { # build model format kernels -> tok/s
    ks=""; [ "$4" = best ] || ks="--kernels $4"
    "$1/rwkv-bench" "$M/$2.pth" --dtype "$3" $ks -t 2 -p 512 -n 0 -r 1 --bandwidth 20 >"$T/out" 2>&1 ||
        { echo "bench_prompts.sh: $1/rwkv-bench $M/$2.pth --dtype $3 $ks failed:" >&2; cat "$T/out" >&2; exit 1; }
    awk -F'|' '/pp512/ { split($4, a, " "); print a[1] }' "$T/out"
}
for c in $CASES; do
    IFS=: read m d k <<E
$c
E
    run "$A" "$m" "$d" "$k" >/dev/null
done
i=1
while [ $i -le "$R" ]; do
    for c in $CASES; do
        IFS=: read m d k <<E
$c
E
        run "$B" "$m" "$d" "$k" >> "$T/$m.$d.$k.before"
        run "$A" "$m" "$d" "$k" >> "$T/$m.$d.$k.after"
    done
    i=$((i + 1))
done
med() { sort -g "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "pp512, 2 threads, tok/s, median of $R alternating rounds; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| model | format | kernels | before | after | after/before |"
echo "|---|---|---|---:|---:|---:|"
for c in $CASES; do
    IFS=: read m d k <<E
$c
E
    b=$(med "$T/$m.$d.$k.before"); a=$(med "$T/$m.$d.$k.after")
    echo "| $m | $d | $k | $b | $a | $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2fx", a / b }') |"
done
