#!/bin/sh
# run.sh - runs the fuzz targets built by `make fuzz`.
#
#   run.sh --ci SRCDIR BUILDDIR [TARGET...]       (make fuzz-ci; CI)
#       For each target: replays its committed inputs (tests/fuzz/corpus/NAME
#       and tests/fuzz/regress/TARGET-*) once each, leak checks on; then
#       fuzzes from those inputs alone with a fixed seed and a fixed number
#       of runs.  Nothing depends on time, on an earlier run or on the order
#       a directory lists its files, so the same tree gives the same lines
#       (runs, coverage, corpus size) every time.
#       FUZZ_SEED (default 1) and FUZZ_RUNS (default: each target's count
#       below) change that search.
#
#   run.sh SRCDIR BUILDDIR SECONDS [TARGET...]     (make fuzz-long)
#       Open-ended fuzzing, SECONDS per target, from the committed inputs
#       and the corpus BUILDDIR/fuzz/corpus-TARGET that earlier runs grew.
#       A finding is copied to tests/fuzz/regress/TARGET-found-HASH (rename
#       it, fix the bug, note it in FUZZING.md) and fails the run.
#
# Each target prints one line "TARGET: ..., no finding" or "TARGET: FAILED ...".
set -u
mode=long
if [ "${1:-}" = --ci ]; then
    mode=ci
    shift
fi
src=$1
build=$2
shift 2
if [ "$mode" = long ]; then
    secs=$1
    shift
fi
# Default: every target build.sh made.
targets=${*:-$(cd "$build/fuzz" 2>/dev/null && for f in fuzz_*; do [ -x "$f" ] && [ -f "$f" ] && echo "$f"; done)}
if [ -z "$targets" ]; then
    echo "run.sh: no fuzz targets in $build/fuzz: run make fuzz" >&2
    exit 1
fi
export FUZZ_SHARE="$src/share"
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LC_ALL=C
mkdir -p "$build/fuzz/artifacts"
failed=0

# The CI run count of a target: about 30 s each on a slow machine
# (FUZZING.md has the rates), the whole pass well under ten minutes.
ci_runs() {
    case $1 in
    fuzz_pth | fuzz_safetensors) echo 300000 ;;
    fuzz_pickle) echo 80000 ;;
    fuzz_vocab) echo 30000 ;;
    fuzz_tokenizer) echo 10000 ;;
    fuzz_bpe) echo 40000 ;;
    fuzz_template) echo 800000 ;;
    fuzz_statefile) echo 15000 ;;
    fuzz_jsonl) echo 90000 ;;
    fuzz_model) echo 30000 ;;
    fuzz_convcache) echo 1500000 ;;
    fuzz_serve_request) echo 40000 ;;
    *) echo 20000 ;;
    esac
}

# Flags a target needs to be reproducible.  fuzz_jsonl: with comparison
# tracing on, two runs of one seed part ways after a few hundred inputs
# (seen with ASLR off too; the values it traces differ from run to run),
# so its CI run does without the comparison-guided mutations.
ci_flags() {
    case $1 in
    fuzz_jsonl) echo "-use_cmp=0 -use_memmem=0" ;;
    esac
}

# The committed inputs of target $1, one path a line, in byte order.
committed() {
    seeds="$src/tests/fuzz/corpus/${1#fuzz_}"
    { [ -d "$seeds" ] && find "$seeds" -type f
      find "$src/tests/fuzz/regress" -type f -name "$1-*"; } 2>/dev/null | sort
}

# A regression input must belong to a target, or it would never be replayed.
if [ "$mode" = ci ] && [ $# -eq 0 ]; then
    for f in "$src"/tests/fuzz/regress/*; do
        [ -f "$f" ] || continue
        t=${f##*/}
        t=${t%%-*}
        if [ ! -x "$build/fuzz/$t" ]; then
            echo "$t: FAILED: ${f#"$src"/} names no fuzz target (TARGET-NAME)"
            failed=1
        fi
    done
fi

rm -f "$build/fuzz/ci-seconds"
for t in $targets; do
    bin="$build/fuzz/$t"
    log="$build/fuzz/$t.log"
    if [ ! -x "$bin" ]; then
        echo "run.sh: $bin missing: run make fuzz" >&2
        failed=1
        continue
    fi
    list="$build/fuzz/$t.inputs"
    committed "$t" >"$list"
    n_inputs=$(wc -l <"$list")
    tr '\n' ',' <"$list" | sed 's/,$//' >"$list.csv"
    seed_arg=
    [ "$n_inputs" -gt 0 ] && seed_arg="-seed_inputs=@$list.csv"
    if [ "$mode" = long ]; then
        work="$build/fuzz/corpus-$t"
        mkdir -p "$work"
        rm -f "$build/fuzz/artifacts/$t-"*
        # shellcheck disable=SC2086
        "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
            -print_final_stats=1 -artifact_prefix="$build/fuzz/artifacts/$t-" $seed_arg \
            "$work" >"$log" 2>&1
        rc=$?
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
        if [ "$rc" -eq 0 ]; then
            echo "$t: ${secs}s, ${runs:-?} runs, no finding"
            continue
        fi
        echo "$t: FAILED (exit $rc), see $log"
        tail -n 30 "$log"
        for a in "$build/fuzz/artifacts/$t-"*; do
            [ -f "$a" ] || continue
            keep="$src/tests/fuzz/regress/$t-found-$(cksum <"$a" | cut -d' ' -f1)"
            cp "$a" "$keep" &&
                echo "$t: the input is now ${keep#"$src"/}: rename it, fix the bug," \
                    "add it to FUZZING.md"
        done
        failed=1
        continue
    fi

    # --ci: the committed inputs once each (a crash, leak or one-line
    # violation fails), then a fixed search from them.
    rc=0
    if [ "$n_inputs" -gt 0 ]; then
        # shellcheck disable=SC2046
        "$bin" -timeout=300 -rss_limit_mb=0 -malloc_limit_mb=2048 \
            -artifact_prefix="$build/fuzz/artifacts/$t-replay-" $(cat "$list") \
            >"$build/fuzz/$t.replay.log" 2>&1 || rc=$?
    fi
    if [ "$rc" -ne 0 ]; then
        echo "$t: FAILED replaying its $n_inputs committed inputs (exit $rc)," \
            "see $build/fuzz/$t.replay.log"
        tail -n 30 "$build/fuzz/$t.replay.log"
        failed=1
        continue
    fi
    runs=${FUZZ_RUNS:-$(ci_runs "$t")}
    seed=${FUZZ_SEED:-1}
    # No corpus directory: libFuzzer reads the inputs in the list's order
    # and writes nothing back.  No time limit, no reload, no allocator
    # purge, no RSS watcher: nothing runs on a clock.  Leaks are checked in
    # the replay above and by the sanitizer pass; here LeakSanitizer's
    # conservative scan could miss a leak in one run and see it in the next.
    start=$(date +%s)
    # shellcheck disable=SC2086
    "$bin" -seed="$seed" -runs="$runs" $seed_arg $(ci_flags "$t") -max_len=65536 -timeout=300 \
        -rss_limit_mb=0 -malloc_limit_mb=2048 -reload=0 -purge_allocator_interval=-1 \
        -detect_leaks=0 -print_final_stats=1 -artifact_prefix="$build/fuzz/artifacts/$t-" \
        >"$log" 2>&1
    rc=$?
    echo "$t $(($(date +%s) - start))" >>"$build/fuzz/ci-seconds"
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)
    cov=$(echo "$done_line" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$done_line" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    corp=$(echo "$done_line" | sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p')
    executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    if [ "$rc" -eq 0 ]; then
        echo "$t: $n_inputs committed inputs replayed; seed $seed, ${executed:-?} runs:" \
            "cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}, no finding"
    else
        echo "$t: FAILED (exit $rc) in the seed $seed run of $runs," \
            "see $log and $build/fuzz/artifacts/"
        tail -n 30 "$log"
        failed=1
    fi
done
exit $failed
