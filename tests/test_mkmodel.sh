#!/bin/sh
# test_mkmodel.sh - rwkv-tool mkmodel writes .pth and .safetensors files the
# loader reads like released ones (shapes, LoRA ranks of the released sizes,
# formats), deterministically per seed; and its usage and runtime errors.
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
B=${TOP_BUILDDIR:-.}
TOOL="$B/rwkv-tool"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/test_mkmodel.XXXXXX") || exit 99
trap 'rm -rf "$TMP"' EXIT

# info_has FILE LINE...: every LINE appears in the output of rwkv-tool info FILE
info_has() {
    file=$1; shift
    out=$("$TOOL" info "$file" 2>"$TMP/err") || { sed 's/^/# /' "$TMP/err"; return 1; }
    for line in "$@"; do
        printf '%s\n' "$out" | grep -qxF -- "$line" || {
            echo "# missing: $line"; printf '%s\n' "$out" | sed 's/^/# /'; return 1; }
    done
}

mk() {
    "$TOOL" mkmodel "$@" >"$TMP/out" 2>"$TMP/err" || { sed 's/^/# /' "$TMP/err"; return 1; }
}

t "mkmodel writes a small bf16 .pth" mk --version 7 --layers 3 --embd 128 --vocab 1000 \
    -o "$TMP/s.pth"
t "it loads as RWKV-7 with the fixture's shapes" info_has "$TMP/s.pth" \
    "version:       RWKV-7" "layers:        3" "embedding:     128" "heads:         2 x 64" \
    "vocab:         1000" "ffn:           512" "lora ranks:    decay 32, a 32, v 32, gate 32" \
    "stored dtype:  bf16" "parameters:    943616 (943.62 K)" "extra tensors: 0"
t "the same model as .safetensors" mk --layers 3 --embd 128 --vocab 1000 \
    -o "$TMP/s.safetensors"
t "the .safetensors loads with the same parameters" info_has "$TMP/s.safetensors" \
    "version:       RWKV-7" "parameters:    943616 (943.62 K)" "stored dtype:  bf16"
t "0.1B width: LoRA ranks 64/64/32/128 as released" mk --layers 2 --embd 768 --vocab 64 \
    -o "$TMP/w768.pth"
t "  read back" info_has "$TMP/w768.pth" "lora ranks:    decay 64, a 64, v 32, gate 128" \
    "heads:         12 x 64" "ffn:           3072"
t "0.4B width: gate rank 128 (the release's exception)" mk --layers 2 --embd 1024 --vocab 64 \
    -o "$TMP/w1024.safetensors"
t "  read back" info_has "$TMP/w1024.safetensors" \
    "lora ranks:    decay 64, a 64, v 32, gate 128"
t "fp16 output" mk --layers 1 --embd 64 --vocab 50 --dtype fp16 -o "$TMP/h.pth"
t "  stored dtype fp16" info_has "$TMP/h.pth" "stored dtype:  fp16"
t "fp32 output" mk --layers 1 --embd 64 --vocab 50 --dtype fp32 -o "$TMP/f.pth"
t "  stored dtype fp32" info_has "$TMP/f.pth" "stored dtype:  fp32"
# (same file name: the name is the zip archive's folder)
mkdir -p "$TMP/d1" "$TMP/d2" "$TMP/d3"
t "same seed: identical files" sh -c "'$TOOL' mkmodel --layers 1 --embd 64 --vocab 50 --seed 7 \
    -o '$TMP/d1/m.pth' >/dev/null && '$TOOL' mkmodel --layers 1 --embd 64 --vocab 50 --seed 7 \
    -o '$TMP/d2/m.pth' >/dev/null && cmp -s '$TMP/d1/m.pth' '$TMP/d2/m.pth'"
t "another seed: other weights" sh -c "'$TOOL' mkmodel --layers 1 --embd 64 --vocab 50 \
    --seed 8 -o '$TMP/d3/m.pth' >/dev/null && ! cmp -s '$TMP/d1/m.pth' '$TMP/d3/m.pth'"
t "no temporary file left behind" sh -c "! ls '$TMP' | grep -q '\\.tmp\$'"

# usage errors exit 2, runtime errors 1 with one "rwkv-tool: " line
status() { # status WANT ARGS...: mkmodel ARGS exits WANT
    want=$1; shift
    "$TOOL" mkmodel "$@" >/dev/null 2>"$TMP/err"
    got=$?
    [ "$got" -eq "$want" ] || { echo "# exit $got, want $want"; sed 's/^/# /' "$TMP/err"; return 1; }
    [ "$want" -eq 0 ] || grep -q '^rwkv-tool: ' "$TMP/err" || [ "$want" -eq 2 ]
}
t "--help exits 0" status 0 --help
t "--embd not a multiple of 64: usage error" status 2 --layers 1 --embd 100 -o "$TMP/x.pth"
t "--version 5: not supported, usage error" status 2 --version 5 --layers 1 --embd 64 \
    -o "$TMP/x.pth"
t "no output file: usage error" status 2 --layers 1 --embd 64
t "bad --dtype: usage error" status 2 --layers 1 --embd 64 --dtype q3 -o "$TMP/x.pth"
t "unwritable directory: runtime error" status 1 --layers 1 --embd 64 -o "$TMP/no/such/x.pth"
tap_done
