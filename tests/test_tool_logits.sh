#!/bin/sh
# test_tool_logits.sh - rwkv-tool logits against the golden files (RNN mode,
# sequence mode, chunks, --state-out), and its usage and runtime errors.
n=0
fail=0
t() { # t DESCRIPTION COMMAND...
    desc=$1; shift
    n=$((n + 1))
    if "$@"; then echo "ok $n - $desc"; else echo "not ok $n - $desc"; fail=1; fi
}
B=${TOP_BUILDDIR:-.}
S=${SHARED_DIR:-../shared}
TOOL="$B/rwkv-tool"
M=$S/fixtures/models
TMP=$(mktemp -d "${TMPDIR:-/tmp}/test_tool_logits.XXXXXX") || exit 99
trap 'rm -rf "$TMP"' EXIT

# close A.f32 B.f32: same number of floats, all within 1e-4
close() {
    od -An -v -f -w4 "$1" | tr -d ' ' >"$TMP/a" || return 1
    od -An -v -f -w4 "$2" | tr -d ' ' >"$TMP/b" || return 1
    [ "$(wc -l <"$TMP/a")" -eq "$(wc -l <"$TMP/b")" ] || { echo "# sizes differ"; return 1; }
    paste "$TMP/a" "$TMP/b" | awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d }
        END { printf "# max abs diff %g\n", m; exit !(m < 1e-4) }'
}

# logits MODEL NAME [OPTION...]: logits (and state) of NAME.tokens match the goldens
logits() {
    model=$1; name=$2; shift 2
    rm -f "$TMP/out.f32" "$TMP/state.f32"
    "$TOOL" logits "$M/$model" --tokens-file "$M/$name.tokens" -o "$TMP/out.f32" \
        --state-out "$TMP/state.f32" "$@" || return 1
    close "$TMP/out.f32" "$M/$name.logits.f32" && close "$TMP/state.f32" "$M/$name.state.f32"
}

t "v7.pth sequence mode" logits v7.pth v7
t "v7.pth RNN mode (--chunk 1)" logits v7.pth v7 --chunk 1
t "v7.pth --chunk 5" logits v7.pth v7 --chunk 5
t "v7-fp32.pth --chunk 7 --dtype fp32" logits v7-fp32.pth v7-fp32 --chunk 7 --dtype fp32
t "v7-world.pth, one thread" logits v7-world.pth v7-world --threads 1
# tuned MODEL NAME [OPTION...]: from the state-tuned start tuned/NAME.tuned.pth,
# the logits of NAME.tuned.tokens match the official package's (RWKV-7 uses the
# time_state as stored, RWKV-6 its transpose: see the manifest)
T=$S/fixtures/tuned
tuned() {
    model=$1; name=$2; shift 2
    rm -f "$TMP/out.f32"
    "$TOOL" logits "$M/$model" --state-tuned "$T/$name.tuned.pth" \
        --tokens-file "$T/$name.tuned.tokens" -o "$TMP/out.f32" "$@" || return 1
    close "$TMP/out.f32" "$T/$name.tuned.logits.f32"
}
t "v7-fp32.pth --state-tuned (time_state as stored)" tuned v7-fp32.pth v7-fp32
t "v7-fp32.pth --state-tuned, RNN mode" tuned v7-fp32.pth v7-fp32 --chunk 1
t "v6.pth --state-tuned (time_state transposed)" tuned v6.pth v6
t "v6.pth --state-tuned, --chunk 5" tuned v6.pth v6 --chunk 5
t "no temporary files left" test -z "$(ls "$TMP" | grep '\.tmp$')"

# expect_fail STATUS TEXT COMMAND...: exits with STATUS, stderr mentions TEXT
expect_fail() {
    want=$1; text=$2; shift 2
    "$@" >/dev/null 2>"$TMP/err"
    got=$?
    [ "$got" -eq "$want" ] || { echo "# exit $got, wanted $want"; return 1; }
    grep -qF -- "$text" "$TMP/err" || { sed 's/^/# /' "$TMP/err"; return 1; }
}
printf '1 2 x3\n' >"$TMP/bad.tokens"
printf '1 2 1000\n' >"$TMP/range.tokens"
: >"$TMP/empty.tokens"
t "--help" sh -c "\"$TOOL\" logits --help | grep -q -- --tokens-file"
t "missing MODEL is a usage error" expect_fail 2 "missing MODEL" "$TOOL" logits -o "$TMP/o"
t "missing --tokens-file" expect_fail 2 "--tokens-file" "$TOOL" logits "$M/v7.pth" -o "$TMP/o"
t "bad --chunk" expect_fail 2 "--chunk" "$TOOL" logits "$M/v7.pth" \
    --tokens-file "$M/v7.tokens" -o "$TMP/o" --chunk two
t "unknown option" expect_fail 2 "unrecognized option" "$TOOL" logits --frob "$M/v7.pth"
t "not a token id" expect_fail 1 "'x3' is not a token id" "$TOOL" logits "$M/v7.pth" \
    --tokens-file "$TMP/bad.tokens" -o "$TMP/o"
t "empty token file" expect_fail 1 "no token ids" "$TOOL" logits "$M/v7.pth" \
    --tokens-file "$TMP/empty.tokens" -o "$TMP/o"
t "token past the vocabulary" expect_fail 1 "out of range" "$TOOL" logits "$M/v7.pth" \
    --tokens-file "$TMP/range.tokens" -o "$TMP/o"
printf 'mine\n' >"$TMP/victim"
ln -sf victim "$TMP/link.f32"
t "-o onto a symbolic link: refused, the file it points to kept" sh -c "
    ! \"$TOOL\" logits \"$M/v7.pth\" --tokens-file \"$M/v7.tokens\" -o \"$TMP/link.f32\" 2>\"$TMP/err\" &&
    grep -q 'link.f32: is a symbolic link' \"$TMP/err\" && test -L \"$TMP/link.f32\" &&
    test \"\$(cat \"$TMP/victim\")\" = mine"
t "a tuned file of another shape is refused, naming the tensor" expect_fail 1 \
    "v7-fp32.tuned.pth: tensor blocks.0.att.time_state: expected 1x64x64, found 2x64x64" \
    "$TOOL" logits "$M/v7-world.pth" --state-tuned "$T/v7-fp32.tuned.pth" \
    --tokens-file "$M/v7.tokens" -o "$TMP/o"
t "a model file is not a tuned state" expect_fail 1 "time_state missing" \
    "$TOOL" logits "$M/v7.pth" --state-tuned "$M/v7.pth" --tokens-file "$M/v7.tokens" -o "$TMP/o"
t "RWKV-4 has no state to tune" expect_fail 1 "RWKV-4 models have no wkv state to tune" \
    "$TOOL" logits "$M/v4.pth" --state-tuned "$T/v6.tuned.pth" --tokens-file "$M/v4.tokens" \
    -o "$TMP/o"
t "failed run leaves no output" test ! -e "$TMP/o" -a ! -e "$TMP/o.tmp"
t "missing model file" expect_fail 1 "rwkv-tool: " "$TOOL" logits "$TMP/nope.pth" \
    --tokens-file "$M/v7.tokens" -o "$TMP/o"

# -o onto a pipe or device (/dev/null, /dev/stdout) writes into it in place: a
# rename over it would replace it (a FIFO stands in for /dev/null here).
fifo_out() {
    mkfifo "$TMP/fifo" || return 1
    cat "$TMP/fifo" >"$TMP/fifo.data" &
    reader=$!
    "$TOOL" logits "$M/v7.pth" --tokens-file "$M/v7.tokens" -o "$TMP/fifo"
    rc=$?
    if [ "$rc" -ne 0 ] || [ ! -p "$TMP/fifo" ]; then
        kill "$reader" 2>/dev/null    # its open() of the FIFO never returns
        echo "# exit $rc, or the FIFO was replaced"
        return 1
    fi
    wait "$reader"
    "$TOOL" logits "$M/v7.pth" --tokens-file "$M/v7.tokens" -o "$TMP/regular" || return 1
    cmp -s "$TMP/fifo.data" "$TMP/regular" || { echo "# the FIFO's reader got other bytes"; return 1; }
}
t "-o onto a FIFO writes the logits through it and leaves it a FIFO" fifo_out

echo "1..$n"
exit $fail
