#!/bin/sh
# run.sh - runs every fuzz target for SECONDS each (called by `make fuzz-run`).
#   run.sh SRCDIR BUILDDIR SECONDS [TARGET...]
# Seeds come from tests/fuzz/corpus/TARGET (the repository's) and new inputs
# accumulate in BUILDDIR/fuzz/corpus-TARGET.  A crash leaves its input in
# BUILDDIR/fuzz/artifacts and makes the run fail; turn it into a regression
# test under tests/fuzz/regress/.
set -u
src=$1
build=$2
secs=$3
shift 3
# Default: every target build.sh made.
targets=${*:-$(cd "$build/fuzz" 2>/dev/null && for f in fuzz_*; do [ -x "$f" ] && [ -f "$f" ] && echo "$f"; done)}
if [ -z "$targets" ]; then
    echo "run.sh: no fuzz targets in $build/fuzz: run make fuzz" >&2
    exit 1
fi
export FUZZ_SHARE="$src/share"
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
mkdir -p "$build/fuzz/artifacts"
failed=0
for t in $targets; do
    bin="$build/fuzz/$t"
    if [ ! -x "$bin" ]; then
        echo "run.sh: $bin missing: run make fuzz" >&2
        failed=1
        continue
    fi
    seeds="$src/tests/fuzz/corpus/${t#fuzz_}"
    [ -d "$seeds" ] || seeds=
    work="$build/fuzz/corpus-$t"
    mkdir -p "$work"
    log="$build/fuzz/$t.log"
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="$build/fuzz/artifacts/$t-" \
        "$work" $seeds >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    if [ "$rc" -eq 0 ]; then
        echo "$t: ${secs}s, ${runs:-?} runs, no finding"
    else
        echo "$t: FAILED (exit $rc), see $log and $build/fuzz/artifacts/"
        tail -n 30 "$log"
        failed=1
    fi
done
exit $failed
