#!/bin/sh
# test_variants_tool.sh - rwkv-tool on the RWKV-7 family's variants: logits
# of the random-weight models of tests/golden/variants match the official
# code's goldens within 1e-4 in RNN, sequence and chunked mode (and the
# final state); q8 and q4 load and run; mkmodel --version 7a / 7b / 8
# write models that info names RWKV-7a / RWKV-7b / RWKV-8.
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
B=${TOP_BUILDDIR:-.}
GOLDEN=${TOP_SRCDIR:-$(dirname "$0")/..}/tests/golden/variants
TOOL="$B/rwkv-tool"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/test_variants_tool.XXXXXX") || exit 99
trap 'rm -rf "$TMP"' EXIT
# A copy: the tool keeps conversion caches beside the model, not in the sources.
G=$TMP/golden
mkdir "$G" && cp "$GOLDEN"/* "$G"/ || exit 99

# close A.f32 B.f32 [TOL]: same number of floats, all within TOL (1e-4)
close() {
    od -An -v -f -w4 "$1" | tr -d ' ' >"$TMP/a" || return 1
    od -An -v -f -w4 "$2" | tr -d ' ' >"$TMP/b" || return 1
    [ "$(wc -l <"$TMP/a")" -eq "$(wc -l <"$TMP/b")" ] || { echo "# sizes differ"; return 1; }
    paste "$TMP/a" "$TMP/b" | awk -v tol="${3:-1e-4}" '{ d = $1 - $2; if (d < 0) d = -d;
        if (d > m) m = d } END { printf "# max abs diff %g\n", m; exit !(m < tol) }'
}

# logits NAME [OPTION...]: logits and state of NAME.tokens match the goldens
logits() {
    name=$1; shift
    rm -f "$TMP/out.f32" "$TMP/state.f32"
    "$TOOL" logits "$G/$name.pth" --tokens-file "$G/$name.tokens" -o "$TMP/out.f32" \
        --state-out "$TMP/state.f32" "$@" || return 1
    close "$TMP/out.f32" "$G/$name.logits.f32" && close "$TMP/state.f32" "$G/$name.state.f32"
}

# runs NAME DTYPE: a quantised load runs, its logits finite and near the goldens
runs() {
    rm -f "$TMP/out.f32"
    "$TOOL" logits "$G/$1.pth" --tokens-file "$G/$1.tokens" -o "$TMP/out.f32" \
        --dtype "$2" --chunk 1 || return 1
    ! od -An -v -f -w4 "$TMP/out.f32" | grep -qi 'nan\|inf' && close "$TMP/out.f32" \
        "$G/$1.logits.f32" 8
}

# info_has FILE LINE...: every LINE appears in the output of rwkv-tool info FILE
info_has() {
    file=$1; shift
    out=$("$TOOL" info "$file" 2>"$TMP/err") || { sed 's/^/# /' "$TMP/err"; return 1; }
    for line in "$@"; do
        printf '%s\n' "$out" | grep -qxF -- "$line" || {
            echo "# missing: $line"; printf '%s\n' "$out" | sed 's/^/# /'; return 1; }
    done
}

for v in v7a v7b v8; do
    t "$v RNN mode (--chunk 1)" logits $v --chunk 1
    t "$v sequence mode" logits $v
    t "$v --chunk 5" logits $v --chunk 5
    t "$v --chunk 7 --dtype fp32, one thread" logits $v --chunk 7 --dtype fp32 --threads 1
    t "$v at q8 runs" runs $v q8
    t "$v at q4 runs" runs $v q4
done

mk() {
    "$TOOL" mkmodel "$@" >"$TMP/out" 2>"$TMP/err" || { sed 's/^/# /' "$TMP/err"; return 1; }
}
t "mkmodel --version 7a" mk --version 7a --layers 2 --embd 96 --head-size 32 --vocab 300 \
    -o "$TMP/a.pth"
t "  it says so" grep -q "RWKV-7a L2 C96 V300" "$TMP/out"
t "  info: RWKV-7a, its sizes, no extra tensors" info_has "$TMP/a.pth" \
    "version:       RWKV-7a" "heads:         3 x 32" "vocab:         300" \
    "ffn:           384" "extra tensors: 0"
t "mkmodel --version 7b" mk --version 7b --layers 2 --embd 80 --head-size 16 --vocab 97 \
    -o "$TMP/b.pth"
t "  it says so" grep -q "RWKV-7b L2 C80 V97" "$TMP/out"
t "  info: RWKV-7b, its sizes, no extra tensors" info_has "$TMP/b.pth" \
    "version:       RWKV-7b" "heads:         5 x 16" "vocab:         97" \
    "ffn:           320" "extra tensors: 0"
printf '5 96 0 3 3 40 7 1 88 12 60 2 9\n' >"$TMP/b.tokens"
t "  it runs in sequence, RNN and chunked mode alike" sh -c "\"$TOOL\" logits \"$TMP/b.pth\" \
    --tokens-file \"$TMP/b.tokens\" -o \"$TMP/bs.f32\" && \"$TOOL\" logits \"$TMP/b.pth\" \
    --tokens-file \"$TMP/b.tokens\" -o \"$TMP/br.f32\" --chunk 1 && \"$TOOL\" logits \
    \"$TMP/b.pth\" --tokens-file \"$TMP/b.tokens\" -o \"$TMP/bc.f32\" --chunk 4"
t "  (RNN within 1e-4)" close "$TMP/bs.f32" "$TMP/br.f32"
t "  (chunks of 4 within 1e-4)" close "$TMP/bs.f32" "$TMP/bc.f32"
t "mkmodel --version 8 (.safetensors)" mk --version 8 --layers 2 --embd 64 --head-size 16 \
    --vocab 100 -o "$TMP/h.safetensors"
t "  info: RWKV-8" info_has "$TMP/h.safetensors" "version:       RWKV-8" \
    "heads:         4 x 16" "extra tensors: 0"
printf '1 2 3 99 0 7\n' >"$TMP/t.tokens"
t "  it runs in sequence and RNN mode alike" sh -c "\"$TOOL\" logits \"$TMP/h.safetensors\" \
    --tokens-file \"$TMP/t.tokens\" -o \"$TMP/s.f32\" && \"$TOOL\" logits \
    \"$TMP/h.safetensors\" --tokens-file \"$TMP/t.tokens\" -o \"$TMP/r.f32\" --chunk 1"
t "  (within 1e-4)" close "$TMP/s.f32" "$TMP/r.f32"
t "an unknown --version is refused with the list" sh -c "! \"$TOOL\" mkmodel --version 7c \
    --layers 1 --embd 64 -o \"$TMP/x.pth\" 2>\"$TMP/err\" && grep -q '7a, 7b or 8' \"$TMP/err\""
t "--follow stays plain RWKV-7" sh -c "! \"$TOOL\" mkmodel --version 7a --follow 1,2 \
    --layers 1 --embd 64 -o \"$TMP/x.pth\" 2>/dev/null"
tap_done
