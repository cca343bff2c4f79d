#!/bin/sh
# test_g1.sh - the RWKV-7 G1 chat format in rwkv-chat --batch, on a model made
# with rwkv-tool mkmodel --follow, whose greedy reply after "<think" is a think
# block with a blank line inside, then an answer, then "\n\n" and more (it would
# go on with "Use ls..." if nothing stopped it).  Checks the g1 template chosen
# from the file name, the System turn, the think block (stderr in plain batch
# output, "reasoning" in JSONL) and the stop after the answer.
B=${TOP_BUILDDIR:-.}
CHAT="$B/rwkv-chat"
TOOL="$B/rwkv-tool"
T="$B/tests/tmp/g1.$$"
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
mkdir -p "$T" || exit 1
trap 'rm -rf "$T"' EXIT
MODEL="$T/rwkv7-g1x-0.1b-20250101-ctx8192.pth"

# ids TEXT...: the token id of each TEXT (each must be one token)
ids() {
    for piece in "$@"; do
        id=$(printf "$piece" | "$TOOL" tokenize) || return 1
        case $id in *' '*) echo "# '$piece' is not one token: $id" >&2; return 1;; esac
        printf '%s ' "$id"
    done
}
count() { printf "$1" | "$TOOL" tokenize | wc -w; }

# After "Assistant:" (":") or "Assistant: <think" ("think"): " <think>\nThe user
# wants files.\n\nUse ls</think>`ls` lists them.\n\n" and, were it not stopped,
# "Use ls..." again.
chain=$(ids ':' ' <' 'think' '>' '\n' 'The' ' user' ' wants' ' files' '.' '\n\n' 'Use' ' ls' \
    '</' 'th' 'ink' '>`' 'ls' '`' ' lists' ' them' '.' '\n\n') &&
"$TOOL" mkmodel --version 7 --layers 1 --embd 64 --follow "$chain" -o "$MODEL" >/dev/null
ok $? "rwkv-tool mkmodel --follow makes the test model"

# run NAME [ARGS...] < input: stdout to $T/NAME.out, stderr to $T/NAME.err, status to $T/NAME.rc
run() {
    name=$1; shift
    "$CHAT" --batch --model "$MODEL" -t 1 --greedy --max-tokens 40 "$@" >"$T/$name.out" \
        2>"$T/$name.err"
    echo $? >"$T/$name.rc"
}
rc() { cat "$T/$1.rc"; }

printf 'How do I list files?\n' >"$T/q.in"
run think --system 'Be brief.' --think on --verbose <"$T/q.in"
printf '%s\n' '`ls` lists them.' >"$T/think.want"
printf '<think>\nThe user wants files.\n\nUse ls\n</think>\n' >"$T/think.errwant"
ok "$(test "$(rc think)" = 0 && cmp -s "$T/think.want" "$T/think.out"; echo $?)" \
    "stdout has the answer only: $(cat "$T/think.out")"
ok "$(grep -v '^rwkv-chat: ' "$T/think.err" | cmp -s "$T/think.errwant" -; echo $?)" \
    "the think block, blank line inside, goes to stderr between <think> and </think>"
# The reply stops at the "\n\n" after the answer: the chain's tokens from ">" on.
reply_tokens=$(set -- $chain; shift 3; echo $#)
ok "$(grep -q "$reply_tokens reply tokens in .* stop: end," "$T/think.err"; echo $?)" \
    "the blank line inside the think block does not stop it, the one after the answer does ($reply_tokens tokens)"

# The G1 text, token for token: the System turn, then the turn with "<think".
sys_tokens=$(count 'System: Be brief.\n\n')
prompt_tokens=$(count 'User: How do I list files?\n\nAssistant: <think')
printf '{"role":"system","content":"Be brief."}\n{"role":"user","content":"How do I list files?"}\n' |
    run jsonl --jsonl --think on
ok "$(test "$(rc jsonl)" = 0 && test "$(wc -l <"$T/jsonl.out")" = 1 &&
      grep -qF '"content":"`ls` lists them.","reasoning":"The user wants files.\n\nUse ls","stop_reason":"end","prompt_tokens":'"$prompt_tokens"',"reply_tokens":'"$reply_tokens"',"context_tokens":'"$((sys_tokens + prompt_tokens + reply_tokens))"',' \
          "$T/jsonl.out"; echo $?)" \
    "JSONL: system role, \"reasoning\" apart from \"content\", the G1 prompt's exact tokens ($(cut -c1-160 "$T/jsonl.out"))"

printf '/info\n' | run info --system 'Be brief.'
ok "$(grep -q '^prompt: g1$' "$T/info.err" && grep -q '^system: Be brief\.$' "$T/info.err" &&
      grep -q '^think: auto$' "$T/info.err"; echo $?)" \
    "a rwkv7-g1x-... file gets the g1 template; /info shows system and think"

# auto: the model opens the think block itself after "Assistant:".
run auto <"$T/q.in"
ok "$(cmp -s "$T/think.want" "$T/auto.out" && grep -q '^<think>$' "$T/auto.err"; echo $?)" \
    "--think auto (default): a think block the model opens itself is found too"

# off: "<think>\n</think" is fed; the reply is the direct answer.
run off --think off <"$T/q.in"
ok "$(test "$(cat "$T/off.out")" = 'The user wants files.' && ! grep -q think "$T/off.err"; echo $?)" \
    "--think off: a direct answer, no think block: $(cat "$T/off.out")"
printf '/think off\nHow do I list files?\n/think\n' | run cmd --think on
ok "$(test "$(cat "$T/cmd.out")" = 'The user wants files.' &&
      grep -q '^think: off$' "$T/cmd.err"; echo $?)" "/think off, /think shows the mode"
printf '/think lots\n' | run badthink
ok "$(test "$(rc badthink)" = 1 && grep -q "unknown mode 'lots'" "$T/badthink.err"; echo $?)" \
    "/think with an unknown mode is an error"
run badopt --think lots <"$T/q.in"
ok "$(test "$(rc badopt)" = 2 && grep -q "think: unknown mode 'lots'" "$T/badopt.err"; echo $?)" \
    "--think with an unknown mode is a usage error"

# Another template: no think block; ChatRWKV's first blank line ends the turn.
run plain --prompt bare <"$T/q.in"
printf '<think>\nThe user wants files.\n' >"$T/plain.want"
ok "$(cmp -s "$T/plain.want" "$T/plain.out" && ! grep -q '<think>' "$T/plain.err"; echo $?)" \
    "a template without thinking keeps the old rule"

tap_done
