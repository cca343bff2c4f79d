#!/bin/sh
# test_lora_tool.sh - rwkv-tool logits --lora against the LoRA goldens of
# tests/golden/lora (RWKV-PEFT's own merge plus the official rwkv package,
# float32): RWKV-7 with one and with two adapters, RWKV-6, 5.2 and 4, in
# RNN and sequence mode, within 1e-4; an adapter that does not fit is
# refused with the tensor named; rwkv-chat --batch and rwkv-bench take
# --lora (a zero adapter changes nothing, a large one changes the reply,
# --verbose and /info say so).
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
# rwkv-chat --batch on the World fixture (n_embd 64) with hand-made
# safetensors adapters: blocks.0.att.key.lora_A [1][64], lora_B [64][1],
# every byte FILL (NUL: all zeros; '@': every value 3.0)
mk_adapter() {
    json='{"blocks.0.att.key.lora_A":{"dtype":"F32","shape":[1,64],"data_offsets":[0,256]},'
    json=$json'"blocks.0.att.key.lora_B":{"dtype":"F32","shape":[64,1],"data_offsets":[256,512]}}'
    { printf "\\$(printf %03o "${#json}")\\000\\000\\000\\000\\000\\000\\000"
      printf '%s' "$json"
      head -c 512 /dev/zero | tr '\000' "$2"; } >"$1"
}
CHAT="$B/rwkv-chat"
W=$F/v7-world.pth
mk_adapter "$TMP/zero.safetensors" '\000'
mk_adapter "$TMP/big.safetensors" '@'
# chat NAME [OPTION...]: one greedy question, then /info (its text goes to
# stderr in batch mode); NAME.out, NAME.err, NAME.rc
chat() {
    name=$1; shift
    printf 'Hello there.\n/info\n' | "$CHAT" --batch --model "$W" --greedy --max-tokens 8 -t 1 \
        "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
    echo $? >"$TMP/$name.rc"
}
chat plain
chat zero --verbose --lora "$TMP/zero.safetensors"
chat big --lora "$TMP/big.safetensors:2"
ok "$(test "$(cat "$TMP/plain.rc")$(cat "$TMP/zero.rc")$(cat "$TMP/big.rc")" = 000 &&
      test -s "$TMP/plain.out" && cmp -s "$TMP/plain.out" "$TMP/zero.out"; echo $?)" \
    "rwkv-chat --batch --lora: an all-zero adapter gives the same reply"
ok "$(test -s "$TMP/big.out" && ! cmp -s "$TMP/plain.out" "$TMP/big.out"; echo $?)" \
    "rwkv-chat --batch --lora: a large adapter changes the reply"
ok "$(grep -q "^rwkv-chat: 1 LoRA adapter merged at load\$" "$TMP/zero.err" &&
      grep -q "^lora: .*big.safetensors (scale 2)\$" "$TMP/big.err" &&
      ! grep -q "^lora:" "$TMP/plain.err"; echo $?)" \
    "--verbose says the adapter was merged; /info lists it with its scale"
chat wrong --lora "$G/v7-fp32.lora.pth"
ok "$(test "$(cat "$TMP/wrong.rc")" = 1 && test "$(wc -l <"$TMP/wrong.err")" = 1 &&
      grep -q "v7-fp32.lora.pth: tensor blocks\.[0-9]*\.[a-z_.]*.* is .* but the model's" \
          "$TMP/wrong.err" && test ! -s "$TMP/wrong.out"; echo $?)" \
    "rwkv-chat refuses an adapter for another model: $(cat "$TMP/wrong.err")"
# a state saved with an adapter belongs to the merged model
printf 'Hi.\n' | "$CHAT" --batch --model "$W" --greedy --max-tokens 4 -t 1 \
    --lora "$TMP/zero.safetensors" --state-out "$TMP/s.state" >/dev/null 2>&1
printf 'Hi.\n' | "$CHAT" --batch --model "$W" --greedy --max-tokens 4 -t 1 \
    --state-in "$TMP/s.state" >/dev/null 2>"$TMP/nolora.err"
rc1=$?
printf 'Hi.\n' | "$CHAT" --batch --model "$W" --greedy --max-tokens 4 -t 1 \
    --state-in "$TMP/s.state" --lora "$TMP/zero.safetensors" >/dev/null 2>&1
rc2=$?
ok "$(test $rc1 = 1 && grep -q "saved with another model" "$TMP/nolora.err" && test $rc2 = 0;
      echo $?)" "a state saved with an adapter loads with it, and is refused without it"
printf 'x\n' | "$CHAT" --batch --model "$W" --lora "" >/dev/null 2>"$TMP/empty.err"
ok "$(test $? = 2 && grep -q -- "--lora: '': no adapter file named" "$TMP/empty.err"; echo $?)" \
    "--lora '' is a usage error"

# rwkv-bench: the adapter is merged before timing, or the model refused
"$B/rwkv-bench" "$F/v7-fp32.pth" --lora "$G/v7-fp32.lora.pth:2" -p 4 -n 4 -r 1 \
    --bandwidth 10 --no-reexec -t 1 >"$TMP/bench.out" 2>&1
ok "$(test $? = 0 && grep -q "^lora: 1 adapter merged at load" "$TMP/bench.out"; echo $?)" \
    "rwkv-bench --lora merges the adapter"
"$B/rwkv-bench" "$F/v4.pth" --lora "$G/v7-fp32.lora.pth" -p 4 -n 4 -r 1 --bandwidth 10 \
    --no-reexec -t 1 >"$TMP/bench2.out" 2>&1
ok "$(test $? != 0 && grep -q "v7-fp32.lora.pth: tensor" "$TMP/bench2.out"; echo $?)" \
    "rwkv-bench --lora refuses an adapter for another model"
tap_done
