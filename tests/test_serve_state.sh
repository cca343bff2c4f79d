#!/bin/sh
# test_serve_state.sh - rwkv-chat --serve keeps states: a turn that extends
# a conversation reads only its new tokens (cached_tokens and the /health
# count of tokens read), the cache stays within --state-cache-mb, and the
# named states: state_save, state_from, download and upload in the state
# file format (an upload keeps the file's turns), delete, refusals of what
# is not a state file, and the named states' budget (--states-mb: 507 past it).
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/serve_lib.sh"

[ -f "$TSV" ] || skip_all "$TSV not found"

t "the server starts" start_server main
q1=$(sed -n 1p "$TSV" | cut -f1) q2=$(sed -n 2p "$TSV" | cut -f1) q3=$(sed -n 3p "$TSV" | cut -f1)

# A conversation of three turns: each reads only what is new.
req t1 POST /v1/chat/completions "$(chat_body -- "$q1")" >/dev/null
a1=$(jget t1 'j["choices"][0]["message"]["content"]')
read0=$(health '["prompt_tokens_read"]')
req t2 POST /v1/chat/completions "$(chat_body -- "$q1" "$a1" "$q2")" >/dev/null
a2=$(jget t2 'j["choices"][0]["message"]["content"]')
read1=$(health '["prompt_tokens_read"]')
p2=$(jget t2 'j["usage"]["prompt_tokens"]')
c2=$(jget t2 'j["usage"]["prompt_tokens_details"]["cached_tokens"]')
p1=$(jget t1 'j["usage"]["prompt_tokens"]')
n1=$(jget t1 'j["usage"]["completion_tokens"]')
ok "$([ "$c2" -ge $((p1 + n1)) ] && [ $((read1 - read0)) = $((p2 - c2)) ]; echo $?)" \
    "turn 2 reads only its new tokens: $((read1 - read0)) of $p2 ($c2 from the cache)"
req t3 POST /v1/chat/completions "$(chat_body -- "$q1" "$a1" "$q2" "$a2" "$q3")" >/dev/null
read2=$(health '["prompt_tokens_read"]')
p3=$(jget t3 'j["usage"]["prompt_tokens"]')
c3=$(jget t3 'j["usage"]["prompt_tokens_details"]["cached_tokens"]')
ok "$([ "$c3" -gt "$p2" ] && [ $((read2 - read1)) = $((p3 - c3)) ] && [ $((p3 - c3)) -lt 40 ]
      echo $?)" "turn 3 reads only its new tokens: $((read2 - read1)) of $p3"
ok "$([ "$(health '["cache"]["hits"]')" -ge 2 ]; echo $?)" "/health counts the cache hits"

# The same conversation from nothing on a server with no cache reads it all.
t "a server with --state-cache-mb 0 starts" start_server nocache --state-cache-mb 0
req n3 POST /v1/chat/completions "$(chat_body -- "$q1" "$a1" "$q2" "$a2" "$q3")" >/dev/null
ok "$([ "$(jget n3 'j["usage"]["prompt_tokens_details"]["cached_tokens"]')" = 0 ] &&
      [ "$(health '["prompt_tokens_read"]')" = "$p3" ] &&
      [ "$(health '["cache"]["entries"]')" = 0 ] &&
      [ "$(jget n3 'j["choices"][0]["message"]["content"]')" = "$(jget t3 'j["choices"][0]["message"]["content"]')" ]
      echo $?)" "--state-cache-mb 0 keeps nothing and reads all $p3 tokens, with the same reply"

# A small cache: many conversations, the bytes stay within the budget.
t "a server with --state-cache-mb 2 starts" start_server small --state-cache-mb 2
for n in 1 2 3 4 5 6; do
    req sm$n POST /v1/completions "{\"prompt\":\"Question $n: what does ls do?\",\"max_tokens\":2}" >/dev/null
done
ok "$([ "$(health '["cache"]["bytes"]')" -le 2097152 ] && [ "$(health '["cache"]["entries"]')" -ge 1 ]
      echo $?)" "--state-cache-mb 2: $(health '["cache"]["entries"]') entries in $(health '["cache"]["bytes"]') bytes"

# Named states.
URL="http://127.0.0.1:$(sed -n 's|.*:\([0-9][0-9]*\)/v1$|\1|p' "$T/main.err")"
st=$(req s1 POST /v1/chat/completions "$(chat_body '{"state_save":"conv-1"}' -- "$q1")")
ok "$([ "$st" = 200 ] && [ "$(jget s1 'j["choices"][0]["message"]["content"]')" = "$a1" ]; echo $?)" \
    "state_save: the reply is as without it"
ok "$([ "$(req list GET /v1/states)" = 200 ] && [ "$(jget list 'j["data"][0]["id"]')" = conv-1 ]; echo $?)" \
    "GET /v1/states lists it"
st=$(req f1 POST /v1/chat/completions "$(chat_body '{"state_from":"conv-1"}' -- "$q2")")
ok "$([ "$st" = 200 ] && [ "$(jget f1 'j["choices"][0]["message"]["content"]')" = "$a2" ] &&
      [ "$(jget f1 'j["usage"]["prompt_tokens"]')" -lt 40 ]; echo $?)" \
    "state_from: the next turn alone continues the conversation (the same reply as with the history)"
st=$(curl -s -o "$T/conv.state" -w '%{http_code}' "$URL/v1/states/conv-1")
ok "$([ "$st" = 200 ] && [ "$(head -c 8 "$T/conv.state")" = RWKVSTAT ]; echo $?)" \
    "GET /v1/states/ID downloads a state file (RWKVSTAT)"
st=$(curl -s -o "$T/put" -w '%{http_code}' -X PUT --data-binary "@$T/conv.state" "$URL/v1/states/copy.2")
ok "$([ "$st" = 201 ]; echo $?)" "PUT /v1/states/ID uploads it (201)"
req f2 POST /v1/chat/completions "$(chat_body '{"state_from":"copy.2"}' -- "$q2")" >/dev/null
ok "$([ "$(jget f2 'j["choices"][0]["message"]["content"]')" = "$a2" ]; echo $?)" \
    "the uploaded copy continues the conversation the same way"
# The upload keeps the file's turns: a state saved from it holds the whole
# conversation (the uploaded turns, then the new ones).
has() { # has FILE TEXT...: every TEXT's UTF-8 bytes are in FILE
    python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); sys.exit(0 if all(t.encode() in d for t in sys.argv[2:]) else 1)' "$@"
}
req f3 POST /v1/chat/completions "$(chat_body '{"state_from":"copy.2","state_save":"copy.3"}' -- "$q2")" >/dev/null
st=$(curl -s -o "$T/copy3.state" -w '%{http_code}' "$URL/v1/states/copy.3")
ok "$([ "$st" = 200 ] && has "$T/conv.state" "$q1" "$a1" && has "$T/copy3.state" "$q1" "$a1" "$q2" "$a2"
      echo $?)" "PUT keeps the file's turns: a state saved from the upload downloads with all four"
cp "$T/conv.state" "$T/bad.state"
printf 'X' | dd of="$T/bad.state" bs=1 seek=200 conv=notrunc 2>/dev/null
st=$(curl -s -o "$T/bad" -w '%{http_code}' -X PUT --data-binary "@$T/bad.state" "$URL/v1/states/bad")
ok "$([ "$st" = 400 ] && [ "$(jget bad 'j["error"]["code"]')" = invalid_state ]; echo $?)" \
    "a damaged state file is refused (400 invalid_state)"
st=$(curl -s -o "$T/bad2" -w '%{http_code}' -X PUT --data-binary 'hello' "$URL/v1/states/bad")
ok "$([ "$st" = 400 ] && [ "$(req nb GET /v1/states/bad)" = 404 ]; echo $?)" \
    "a body that is no state file is refused and nothing is kept"
st=$(curl -s -o "$T/other" -w '%{http_code}' -X PUT --data-binary "@$S/models/README.md" "$URL/v1/states/bad")
ok "$([ "$st" = 400 ]; echo $?)" "a text file is refused"
ok "$([ "$(req d1 DELETE /v1/states/conv-1)" = 200 ] && [ "$(req d2 GET /v1/states/conv-1)" = 404 ] &&
      [ "$(req d3 DELETE /v1/states/conv-1)" = 404 ] &&
      [ "$(req d4 POST /v1/chat/completions "$(chat_body '{"state_from":"conv-1"}' -- "$q2")")" = 404 ]
      echo $?)" "DELETE /v1/states/ID: gone (404 after)"
ok "$([ "$(req d5 POST /v1/states/x '{}')" = 405 ] && [ "$(req d6 GET '/v1/states/a%2Fb')" = 400 ]; echo $?)" \
    "/v1/states/ID: a wrong method (405) or id (400)"

# Named states have their own budget (--states-mb): past it a save is
# refused with 507 and nothing grows; a delete makes room again.
t "a server with --states-mb 1 starts" start_server capped --states-mb 1
codes=
for n in 0 1 2 3 4 5 6 7 8 9 10 11; do
    codes="$codes $(curl -s -o "$T/cap$n" -w '%{http_code}' -X PUT --data-binary "@$T/conv.state" \
        "$URL/v1/states/s$n")"
done
kept=$(health '["states"]')
ok "$(echo "$codes" | grep -q '^ 201 .*201 507 .*507$' && [ "$kept" -ge 1 ] && [ "$kept" -lt 12 ] &&
      [ "$(health '["states_bytes"]')" -le 1048576 ] &&
      [ "$(health '["states_max_bytes"]')" = 1048576 ] &&
      [ "$(jget cap11 'j["error"]["code"]')" = insufficient_storage ]; echo $?)" \
    "--states-mb 1: $kept states kept in $(health '["states_bytes"]') bytes, the rest refused (507)"
st=$(req cs POST /v1/chat/completions "$(chat_body '{"state_save":"one-more"}' -- "$q1")")
ok "$([ "$st" = 507 ] && [ "$(jget cs 'j["error"]["code"]')" = insufficient_storage ] &&
      [ "$(req cs2 GET /v1/states/one-more)" = 404 ] && [ "$(health '["states"]')" = "$kept" ]
      echo $?)" "state_save past the budget: 507, nothing kept"
ok "$([ "$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary "@$T/conv.state" "$URL/v1/states/s0")" = 201 ] &&
      [ "$(req cd DELETE /v1/states/s1)" = 200 ] &&
      [ "$(req cs3 POST /v1/chat/completions "$(chat_body '{"state_save":"one-more"}' -- "$q1")")" = 200 ] &&
      [ "$(health '["states"]')" = "$kept" ] && [ "$(health '["states_bytes"]')" -le 1048576 ]
      echo $?)" "replacing a state fits; after a delete a new one fits again"
"$CHAT" --serve --states-mb -1 >/dev/null 2>"$T/opt.err"
ok "$([ $? = 2 ] && grep -q 'states-mb' "$T/opt.err"; echo $?)" "--states-mb -1 is a usage error"

tap_done
