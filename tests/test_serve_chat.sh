#!/bin/sh
# test_serve_chat.sh - rwkv-chat --serve starts and continues conversations as
# the chat does: from a --state-tuned start (greedy replies equal
# rwkv-chat --batch --greedy --state-tuned), from a conversation --state-in
# loaded; a downloaded named state is a chat state file that
# rwkv-chat --state-in continues; and a thinking template's reply (a model
# made with rwkv-tool mkmodel --follow, as in test_g1.sh) is cached, so that
# the next turn reads only its new tokens and replies as the chat does.
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/serve_lib.sh"
TOOL="$B/rwkv-tool"
WORLD="$S/fixtures/models/v7-world.pth"

[ -f "$WORLD" ] || skip_all "$WORLD not found"

# json MESSAGE...: a greedy chat body of at most 20 tokens (alternating roles).
json() { chat_body '{"max_tokens":20}' -- "$@"; }
# batch NAME OPTION... < input: rwkv-chat --batch --greedy, 20 tokens a reply.
batch() {
    name=$1
    shift
    "$CHAT" --batch --greedy -t 1 --max-tokens 20 "$@" >"$T/$name.out" 2>"$T/$name.err"
}
content() { jget "$1" 'j["choices"][0]["message"]["content"]'; }

# --- a state-tuned start ----------------------------------------------------
# A random state-tuned start of the v7-world fixture's shape (2 layers, one
# head of 64), as test_tuned_batch.sh makes it.
"$TOOL" mkmodel --version 7 --layers 2 --embd 64 --time-state --dtype fp32 \
    -o "$T/world.tuned.pth" >/dev/null
ok $? "rwkv-tool mkmodel --time-state writes a state-tuned start"
printf 'Hello there.\nWhat does ls do?\n' >"$T/two.in"
batch tuned --model "$WORLD" --state-tuned "$T/world.tuned.pth" <"$T/two.in"
batch plain --model "$WORLD" <"$T/two.in"
t "a server with --state-tuned starts" start_server tuned --model "$WORLD" \
    --state-tuned "$T/world.tuned.pth"
req tu1 POST /v1/chat/completions "$(json 'Hello there.')" >/dev/null
ok "$([ "$(content tu1)" = "$(sed -n 1p "$T/tuned.out")" ] &&
      [ "$(content tu1)" != "$(sed -n 1p "$T/plain.out")" ]; echo $?)" \
    "greedy reply equals --batch --greedy --state-tuned's (and differs from the intro's)"
req tu2 POST /v1/chat/completions "$(chat_body '{"max_tokens":20,"state_save":"tu"}' -- \
    'Hello there.')" >/dev/null
req tu3 POST /v1/chat/completions "$(chat_body '{"max_tokens":20,"state_from":"tu"}' -- \
    'What does ls do?')" >/dev/null
ok "$([ "$(content tu3)" = "$(sed -n 2p "$T/tuned.out")" ]; echo $?)" \
    "its second turn (state_from) equals the chat's second reply"

# --- a downloaded state continues in rwkv-chat --state-in -------------------
st=$(curl -s -o "$T/tu.state" -w '%{http_code}' "$URL/v1/states/tu")
ok "$([ "$st" = 200 ] && [ "$(head -c 8 "$T/tu.state")" = RWKVSTAT ]; echo $?)" \
    "GET /v1/states/ID downloads it"
printf 'What does ls do?\n' | batch resumed --model "$WORLD" --state-in "$T/tu.state"
ok "$([ -s "$T/resumed.out" ] && [ "$(cat "$T/resumed.out")" = "$(sed -n 2p "$T/tuned.out")" ]
      echo $?)" "rwkv-chat --state-in continues the downloaded conversation with the same reply"
ok "$(python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); sys.exit(not (b"Hello there." in d and sys.argv[2].encode() in d and b"transcript" in d))' \
      "$T/tu.state" "$(content tu2)"; echo $?)" \
    "its transcript holds the message and the server's reply"

# --- a server started from a saved conversation (--state-in) ----------------
t "a server with --state-in starts" start_server statein --model "$WORLD" \
    --state-in "$T/tu.state"
req si1 POST /v1/chat/completions "$(json 'What does ls do?')" >/dev/null
ok "$([ "$(content si1)" = "$(sed -n 2p "$T/tuned.out")" ]; echo $?)" \
    "--state-in: a request continues the loaded conversation as the chat does"

# --- a thinking template's turns are cached ---------------------------------
ids() {
    for piece in "$@"; do
        id=$(printf "$piece" | "$TOOL" tokenize) || return 1
        printf '%s ' "$id"
    done
}
G1="$T/rwkv7-g1x-0.1b-20250101-ctx8192.pth"
chain=$(ids ':' ' <' 'think' '>' '\n' 'The' ' user' ' wants' ' files' '.' '\n\n' 'Use' ' ls' \
    '</' 'th' 'ink' '>`' 'ls' '`' ' lists' ' them' '.' '\n\n') &&
"$TOOL" mkmodel --version 7 --layers 1 --embd 64 --follow "$chain" -o "$G1" >/dev/null
ok $? "rwkv-tool mkmodel --follow makes a model that thinks"
for mode in on auto; do
    printf 'How do I list files?\nAnd hidden ones?\n' |
        batch g1$mode --model "$G1" --think $mode --max-tokens 40
    t "a server with the g1 template, --think $mode, starts" start_server g1$mode \
        --model "$G1" --think $mode
    req g${mode}1 POST /v1/chat/completions "$(chat_body '{"max_tokens":40}' -- \
        'How do I list files?')" >/dev/null
    a1=$(content g${mode}1)
    read0=$(health '["prompt_tokens_read"]')
    req g${mode}2 POST /v1/chat/completions "$(chat_body '{"max_tokens":40}' -- \
        'How do I list files?' "$a1" 'And hidden ones?')" >/dev/null
    read1=$(health '["prompt_tokens_read"]')
    p2=$(jget g${mode}2 'j["usage"]["prompt_tokens"]')
    c2=$(jget g${mode}2 'j["usage"]["prompt_tokens_details"]["cached_tokens"]')
    new=$(printf 'User: And hidden ones?\n\nAssistant:' | "$TOOL" tokenize | wc -w)
    ok "$([ "$(jget g${mode}1 'j["choices"][0]["message"]["reasoning_content"]')" = \
            'The user wants files.

Use ls' ] && [ "$a1" = '`ls` lists them.' ] &&
          [ $((read1 - read0)) = $((p2 - c2)) ] && [ $((p2 - c2)) -le $((new + 3)) ]
          echo $?)" "--think $mode: turn 2 reads only its new tokens ($((p2 - c2)) of $p2)"
    ok "$([ "$(content g${mode}2)" = "$(sed -n 2p "$T/g1$mode.out")" ]; echo $?)" \
        "--think $mode: turn 2 replies as the chat's second turn: $(content g${mode}2)"
done

tap_done
