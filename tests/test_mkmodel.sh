#!/bin/sh
# test_mkmodel.sh - rwkv-tool mkmodel writes .pth and .safetensors files the
# loader reads like released ones (RWKV-4, 5.x, 6 and 7: shapes, LoRA ranks of
# the released sizes, formats), deterministically per seed, with finite,
# non-degenerate logits; and its usage and runtime errors.
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
B=${TOP_BUILDDIR:-.}
TOOL="$B/rwkv-tool"
CHAT="$B/rwkv-chat"
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

# RWKV-4, 5.x and 6 at odd sizes (C 100 has no heads; C 192 is 3 heads of
# 64; vocab 1001), each as .pth and .safetensors from the same seed.
# logits_ok F32 N_VOCAB: every logit finite, each row spread over more than
# a few units (the weights are realistic, not degenerate)
logits_ok() {
    od -An -v -f "$1" | awk -v V="$2" '
        { for (i = 1; i <= NF; i++) {
              if ($i !~ /^-?[0-9.]+(e[-+]?[0-9]+)?$/) { print "# not finite: " $i; bad = 1; exit }
              if (n % V == 0) { lo = $i; hi = $i }
              if ($i < lo) lo = $i; if ($i > hi) hi = $i
              n++
              if (n % V == 0 && hi - lo < 4) { print "# row " n / V ": spread " hi - lo; bad = 1; exit }
          } }
        END { if (!bad && (n == 0 || n % V)) { print "# " n " values"; bad = 1 } exit bad }'
}
echo "1 5 1000 17 42 3 3 3 777 12 0 999" >"$TMP/tokens"
logits() { # logits MODEL OUT
    "$TOOL" logits "$1" --tokens-file "$TMP/tokens" -o "$2" -j 1 2>"$TMP/err" ||
        { sed 's/^/# /' "$TMP/err"; return 1; }
}
for spec in "4 100 - 400 RWKV-4" "5 192 3 672 RWKV-5.2" "6 192 3 672 RWKV-6"; do
    set -- $spec
    v=$1 C=$2 H=$3 F=$4 name=$5
    if [ "$H" = - ]; then heads="heads:         - (RWKV-4 has none)"
    else heads="heads:         $H x 64"; fi
    t "$name: L3 C$C .pth" mk --version "$v" --layers 3 --embd "$C" --vocab 1001 --seed 11 \
        -o "$TMP/v$v.pth"
    t "$name: the same model as .safetensors" mk --version "$v" --layers 3 --embd "$C" \
        --vocab 1001 --seed 11 -o "$TMP/v$v.safetensors"
    for ext in pth safetensors; do
        t "  $ext reads back as $name L3 C$C" info_has "$TMP/v$v.$ext" "version:       $name" \
            "layers:        3" "embedding:     $C" "$heads" "vocab:         1001" \
            "ffn:           $F" "stored dtype:  bf16" "extra tensors: 0"
    done
    t "  its logits are finite and spread" \
        eval 'logits "$TMP/v$v.pth" "$TMP/v$v.a" && logits_ok "$TMP/v$v.a" 1001'
    t "  .pth and .safetensors give the same logits" \
        eval 'logits "$TMP/v$v.safetensors" "$TMP/v$v.b" && cmp "$TMP/v$v.a" "$TMP/v$v.b"'
    mkdir -p "$TMP/v$v-1" "$TMP/v$v-2" "$TMP/v$v-3"
    t "  same seed: identical files" eval 'mk --version $v --layers 2 --embd $C --vocab 50 \
        --seed 7 -o "$TMP/v$v-1/m.pth" && mk --version $v --layers 2 --embd $C --vocab 50 \
        --seed 7 -o "$TMP/v$v-2/m.pth" && cmp "$TMP/v$v-1/m.pth" "$TMP/v$v-2/m.pth"'
    t "  another seed: other weights" eval 'mk --version $v --layers 2 --embd $C --vocab 50 \
        --seed 8 -o "$TMP/v$v-3/m.pth" && ! cmp -s "$TMP/v$v-1/m.pth" "$TMP/v$v-3/m.pth"'
done
t "RWKV-6: LoRA ranks of the released 1.6B / 3B (mix 32, decay 64)" info_has "$TMP/v6.pth" \
    "lora ranks:    decay 64, mix 32" "parameters:    2090112 (2.09 M)"
t "RWKV-6 at C 4096 (7B, 14B): ranks 64 and 128" mk --version 6 --layers 1 --embd 4096 \
    --vocab 16 -o "$TMP/w4096.safetensors"
t "  read back" info_has "$TMP/w4096.safetensors" "lora ranks:    decay 128, mix 64" \
    "ffn:           14336" "heads:         64 x 64"
t "RWKV-6 with --head-size 32" mk --version 6 --layers 1 --embd 96 --head-size 32 --vocab 50 \
    -o "$TMP/h32.pth"
t "  3 heads of 32" info_has "$TMP/h32.pth" "heads:         3 x 32" "ffn:           320"
t "RWKV-5.0 (no gate, per-head decay and time_first)" mk --version 5.0 --layers 2 --embd 128 \
    --vocab 50 -o "$TMP/v50.pth"
t "  read back as 5.0" info_has "$TMP/v50.pth" "version:       RWKV-5.0" "heads:         2 x 64" \
    "ffn:           512" "extra tensors: 0"
t "  finite logits" eval 'echo "1 2 3 49" >"$TMP/t50" && "$TOOL" logits "$TMP/v50.pth" \
    --tokens-file "$TMP/t50" -o "$TMP/v50.f32" -j 1 && logits_ok "$TMP/v50.f32" 50'
t "RWKV-5.1 (gate, per-head decay and time_faaaa)" mk --version 5.1 --layers 2 --embd 128 \
    --vocab 50 -o "$TMP/v51.safetensors"
t "  read back as 5.1" info_has "$TMP/v51.safetensors" "version:       RWKV-5.1" \
    "extra tensors: 0"
t "RWKV-4 fp16, as the Pile models" mk --version 4 --layers 1 --embd 64 --vocab 50 \
    --dtype fp16 -o "$TMP/v4h.pth"
t "  stored dtype fp16" info_has "$TMP/v4h.pth" "stored dtype:  fp16"
# a medium model of each version answers in the chat program
for v in 4 5 6; do
    mk --version $v --layers 4 --embd 256 -o "$TMP/med$v.pth" || echo "# mkmodel failed"
    t "RWKV-$v L4 C256: rwkv-chat --batch --greedy replies" eval 'printf "Hello.\n" |
        "$CHAT" --batch --model "$TMP/med$v.pth" -t 1 --greedy --max-tokens 4 \
        >"$TMP/chat.out" 2>"$TMP/err" && test -s "$TMP/chat.out" ||
        { sed "s/^/# /" "$TMP/err"; false; }'
    rm -f "$TMP/med$v.pth"
done

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
t "--version 9: not supported, usage error" status 2 --version 9 --layers 1 --embd 64 \
    -o "$TMP/x.pth"
t "--version 5.3: usage error" status 2 --version 5.3 --layers 1 --embd 64 -o "$TMP/x.pth"
t "RWKV-6 --embd 100: not a multiple of the head size" status 2 --version 6 --layers 1 \
    --embd 100 -o "$TMP/x.pth"
t "  says so in one line" grep -qxF \
    "rwkv-tool: mkmodel: --embd 100 is not a multiple of the head size 64 (RWKV-6 splits it into heads)" \
    "$TMP/err"
t "RWKV-5.2 --embd 96 --head-size 64: usage error" status 2 --version 5 --layers 1 --embd 96 \
    -o "$TMP/x.pth"
t "--head-size with RWKV-4: usage error" status 2 --version 4 --head-size 64 --layers 1 \
    --embd 64 -o "$TMP/x.pth"
t "  says so" grep -q "RWKV-4 (it has no heads)" "$TMP/err"
t "--head-size 0: usage error" status 2 --version 6 --head-size 0 --layers 1 --embd 64 \
    -o "$TMP/x.pth"
t "RWKV-6 --embd 8: FFN width 0, usage error" status 2 --version 6 --head-size 8 --layers 1 \
    --embd 8 -o "$TMP/x.pth"
t "--embd 0: usage error" status 2 --version 4 --layers 1 --embd 0 -o "$TMP/x.pth"
t "--help lists the versions and released shapes" sh -c "'$TOOL' mkmodel --help |
    grep -q 'RWKV-6:   1.6B 24/2048'"
t "no output file left by the usage errors" test ! -e "$TMP/x.pth"
t "no output file: usage error" status 2 --layers 1 --embd 64
t "bad --dtype: usage error" status 2 --layers 1 --embd 64 --dtype q3 -o "$TMP/x.pth"
t "unwritable directory: runtime error" status 1 --layers 1 --embd 64 -o "$TMP/no/such/x.pth"
tap_done
