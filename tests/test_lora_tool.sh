#!/bin/sh
# test_lora_tool.sh - rwkv-tool logits --lora against the LoRA goldens of
# tests/golden/lora (RWKV-PEFT's own merge plus the official rwkv package,
# float32): RWKV-7 with one and with two adapters, RWKV-6, 5.2 and 4, in
# RNN and sequence mode, within 1e-4; and an adapter that does not fit is
# refused with the tensor named.
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
B=${TOP_BUILDDIR:-.}
S=${SHARED_DIR:-../shared}
TOOL="$B/rwkv-tool"
F=$S/fixtures/models
G=${TOP_SRCDIR:-$(dirname "$0")/..}/tests/golden/lora
TMP=$(mktemp -d "${TMPDIR:-/tmp}/test_lora_tool.XXXXXX") || exit 99
trap 'rm -rf "$TMP"' EXIT
# conversion caches of the read-only fixtures go here, not to ~/.cache
XDG_CACHE_HOME="$TMP/xdg"
export XDG_CACHE_HOME

if [ ! -f "$F/v7-fp32.pth" ]; then
    skip_all "model fixtures not found"
fi

# close A.f32 B.f32: same number of floats, all within 1e-4
close() {
    od -An -v -f -w4 "$1" | tr -d ' ' >"$TMP/a" || return 1
    od -An -v -f -w4 "$2" | tr -d ' ' >"$TMP/b" || return 1
    [ -s "$TMP/a" ] && [ "$(wc -l <"$TMP/a")" -eq "$(wc -l <"$TMP/b")" ] ||
        { echo "# sizes differ"; return 1; }
    paste "$TMP/a" "$TMP/b" | awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d }
        END { printf "# max abs diff %g\n", m; exit !(m < 1e-4) }'
}

# golden MODEL GOLDEN [OPTION...]: logits of MODEL.tokens match GOLDEN.logits.f32
golden() {
    model=$1; name=$2; shift 2
    rm -f "$TMP/out.f32"
    "$TOOL" logits "$F/$model.pth" --tokens-file "$F/$model.tokens" -o "$TMP/out.f32" \
        "$@" || return 1
    close "$TMP/out.f32" "$G/$name.logits.f32"
}

# the goldens differ from the base model's own logits (the adapters matter)
t "golden differs from the base model" \
    sh -c "! cmp -s '$G/v7-fp32.lora.logits.f32' '$F/v7-fp32.logits.f32'"
t "v7-fp32 + lora (scale 2), RNN mode" \
    golden v7-fp32 v7-fp32.lora --chunk 1 --lora "$G/v7-fp32.lora.pth:2"
t "v7-fp32 + lora, sequence mode" \
    golden v7-fp32 v7-fp32.lora --lora "$G/v7-fp32.lora.pth:2"
t "v7-fp32 + two adapters in order (2, then 0.5)" \
    golden v7-fp32 v7-fp32.lora-lora2 --chunk 1 --lora "$G/v7-fp32.lora.pth:2" \
    --lora "$G/v7-fp32.lora2.pth:0.5"
t "v6 (bf16 file) + lora at --dtype fp32, RNN mode" \
    golden v6 v6.lora --chunk 1 --dtype fp32 --lora "$G/v6.lora.pth:2"
t "v6 + lora at --dtype fp32, sequence mode" \
    golden v6 v6.lora --dtype fp32 --lora "$G/v6.lora.pth:2"
t "v5.2 + lora at --dtype fp32" golden v5.2 v5.2.lora --dtype fp32 --lora "$G/v5.2.lora.pth:2"
t "v4 (fp16 file) + lora at --dtype fp32" golden v4 v4.lora --dtype fp32 --lora "$G/v4.lora.pth:2"
# far MODEL GOLDEN [OPTION...]: the run succeeds and misses the golden
far() {
    model=$1; name=$2; shift 2
    "$TOOL" logits "$F/$model.pth" --tokens-file "$F/$model.tokens" -o "$TMP/far.f32" \
        "$@" || return 1
    ! close "$TMP/far.f32" "$G/$name.logits.f32"
}
t "scale 1 instead of 2 misses the golden (the scale is applied)" \
    far v7-fp32 v7-fp32.lora --lora "$G/v7-fp32.lora.pth:1"
t "the first adapter alone misses the two-adapter golden" \
    far v7-fp32 v7-fp32.lora-lora2 --lora "$G/v7-fp32.lora.pth:2"

# an adapter for another model: one line naming the adapter and the tensor
"$TOOL" logits "$F/v4.pth" --tokens-file "$F/v4.tokens" -o "$TMP/x.f32" \
    --lora "$G/v7-fp32.lora.pth" >"$TMP/wrong.out" 2>"$TMP/wrong.err"
rc=$?
ok "$(test $rc = 1 && test "$(wc -l <"$TMP/wrong.err")" = 1 &&
      grep -q "v7-fp32.lora.pth: tensor blocks\.[0-9]*\.[a-z_.]*" "$TMP/wrong.err" &&
      test ! -e "$TMP/x.f32"; echo $?)" \
    "a v7 adapter on the v4 model is refused: $(cat "$TMP/wrong.err")"
"$TOOL" logits "$F/v7-fp32.pth" --tokens-file "$F/v7-fp32.tokens" -o "$TMP/x.f32" \
    --lora "$TMP/missing.pth:2" >/dev/null 2>"$TMP/missing.err"
ok "$(test $? = 1 && grep -q "missing.pth" "$TMP/missing.err"; echo $?)" \
    "a missing adapter file is named: $(cat "$TMP/missing.err")"
"$TOOL" logits "$F/v7-fp32.pth" --tokens-file "$F/v7-fp32.tokens" -o "$TMP/x.f32" \
    --lora "$G/v7-fp32.lora.pth:nan" >/dev/null 2>"$TMP/nan.err"
ok "$(test $? = 1 && grep -q "v7-fp32.lora.pth:nan" "$TMP/nan.err"; echo $?)" \
    "a scale that is not a number is part of the file name: $(cat "$TMP/nan.err")"
tap_done
