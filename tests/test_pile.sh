#!/bin/sh
# test_pile.sh - a Pile model (vocabulary 50277 or 50304) chats in --batch with
# the GPT-NeoX 20B BPE tokenizer chosen from its vocabulary size.  The RWKV-4
# model is made with rwkv-tool mkmodel --follow so that its greedy reply is a
# known list of BPE ids: the text on stdout is their BPE decoding (CJK and an
# emoji split across tokens included), which the World tokenizer would not give.
B=${TOP_BUILDDIR:-.}
S=${TOP_SRCDIR:-$(dirname "$0")/..}
CHAT="$B/rwkv-chat"
TOOL="$B/rwkv-tool"
T="$B/tests/tmp/pile.$$"
. "$S/tests/tap.sh"
mkdir -p "$T" || exit 1
trap 'rm -rf "$T"' EXIT
BPE="$S/share/20B_tokenizer.json"
MODEL="$T/RWKV-4-Pile-test.pth"

# rwkv-tool with the BPE: ids and back.
ids=$(printf 'Hello world' | "$TOOL" tokenize --vocab "$BPE")
ok "$(test "$ids" = "12092 1533"; echo $?)" "rwkv-tool tokenize --vocab 20B_tokenizer.json: 'Hello world' is 12092 1533 ($ids)"
back=$(printf '12092 1533' | "$TOOL" detokenize --vocab "$BPE")
ok "$(test "$back" = "Hello world"; echo $?)" "rwkv-tool detokenize --vocab 20B_tokenizer.json gives it back ($back)"

# After "Assistant:" the model says " Hello, world! 中文😀 café." and a blank line.
reply=' Hello, world! 中文😀 café.'
chain=$(printf ':%s\n\n' "$reply" | "$TOOL" tokenize --vocab "$BPE") &&
"$TOOL" mkmodel --version 4 --layers 2 --embd 64 --vocab 50277 --follow "$chain" -o "$MODEL" >/dev/null
ok $? "rwkv-tool mkmodel --version 4 --vocab 50277 --follow makes a Pile model"
n_reply=$(($(echo $chain | wc -w) - 1))

printf 'Hi there\n' | "$CHAT" --batch --model "$MODEL" -t 1 --greedy --max-tokens 40 --verbose \
    >"$T/chat.out" 2>"$T/chat.err"
rc=$?
printf '%s\n' "${reply# }" >"$T/chat.want"
ok "$(test $rc = 0 && cmp -s "$T/chat.want" "$T/chat.out"; echo $?)" \
    "--batch: the reply is the BPE decoding of the model's tokens ($(cat "$T/chat.out"))"
ok "$(grep -q 'RWKV-4, .*; tokenizer: BPE (20B_tokenizer.json), 50277 ids$' "$T/chat.err"; echo $?)" \
    "--verbose says the 20B BPE was chosen ($(grep -o 'tokenizer: .*' "$T/chat.err"))"
ok "$(grep -q " $n_reply reply tokens in .* stop: end" "$T/chat.err"; echo $?)" \
    "the reply is the $n_reply tokens of the chain and stops at the blank line"
world=$(printf '%s' "$chain" | "$TOOL" detokenize 2>/dev/null)
ok "$(test "$world" != ":$reply" ; echo $?)" "(the World tokenizer would decode those ids otherwise)"

printf '/info\n' | "$CHAT" --batch --model "$MODEL" -t 1 >/dev/null 2>"$T/info.err"
ok "$(grep -q '^tokenizer: BPE (20B_tokenizer.json), 50277 ids$' "$T/info.err"; echo $?)" \
    "/info names the tokenizer ($(grep '^tokenizer' "$T/info.err"))"

printf '{"role":"user","content":"Hi there"}\n' |
    "$CHAT" --batch --jsonl --model "$MODEL" -t 1 --greedy --max-tokens 40 >"$T/jsonl.out" 2>&1
ok "$(grep -qF '"content":"Hello, world! 中文😀 café.","stop_reason":"end"' "$T/jsonl.out" &&
      grep -qF "\"reply_tokens\":$n_reply," "$T/jsonl.out"; echo $?)" \
    "JSONL: the same reply ($(cut -c1-120 "$T/jsonl.out"))"

# The padded size (50304) picks the BPE too; its extra rows are never sampled.
"$TOOL" mkmodel --version 4 --layers 1 --embd 32 --vocab 50304 -o "$T/pad.pth" >/dev/null &&
printf 'Hello\n/info\n' | "$CHAT" --batch --model "$T/pad.pth" -t 1 --seed 3 --max-tokens 30 \
    >"$T/pad.out" 2>"$T/pad.err"
rc=$?
ok "$(test $rc = 0 && grep -q '^tokenizer: BPE (20B_tokenizer.json), 50277 ids$' "$T/pad.err" &&
      iconv -f UTF-8 -t UTF-8 "$T/pad.out" >/dev/null; echo $?)" \
    "a random 50304-row model chats through the BPE, in valid UTF-8 (rc $rc)"

# The World vocabulary given by hand does not fit a Pile model: one line.
printf 'Hi\n' | "$CHAT" --batch --model "$MODEL" -t 1 --vocab "$S/share/rwkv_vocab_v20230424.txt" \
    >"$T/world.out" 2>"$T/world.err"
rc=$?
ok "$(test $rc = 1 && test ! -s "$T/world.out" && test "$(wc -l <"$T/world.err")" = 1 &&
      grep -q 'vocabulary of 50277 tokens, fewer than the 65530 of the World (trie, rwkv_vocab_v20230424.txt) tokenizer' "$T/world.err"; echo $?)" \
    "--vocab World with a Pile model: exit 1, one line ($(cat "$T/world.err"))"

# A broken tokenizer.json given by --vocab: one line naming the file.
printf '{"model": {"vocab": ' >"$T/bad.json"
printf 'Hi\n' | "$CHAT" --batch --model "$MODEL" -t 1 --vocab "$T/bad.json" >/dev/null 2>"$T/bad.err"
rc=$?
ok "$(test $rc = 1 && test "$(wc -l <"$T/bad.err")" = 1 && grep -q 'bad.json: not valid JSON at byte' "$T/bad.err"; echo $?)" \
    "a truncated tokenizer.json: exit 1, one line ($(cat "$T/bad.err"))"

tap_done
