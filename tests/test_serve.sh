#!/bin/sh
# test_serve.sh - rwkv-chat --serve: /health, /v1/models, chat and text
# completions without streaming, greedy replies equal to --batch --greedy
# (one turn and a conversation), stop strings, every error answer
# (OpenAI error objects with their HTTP status), limits and --api-key.
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/serve_lib.sh"

[ -f "$TSV" ] || skip_all "$TSV not found"

t "the server starts on a free port and prints it" start_server main --max-body-kb 2 \
    --max-tokens-cap 500
ok "$([ "$(req h GET /health)" = 200 ] && [ "$(jget h 'j["status"]')" = ok ]; echo $?)" \
    "GET /health: 200, status ok"
ok "$([ "$(req m GET /v1/models)" = 200 ] &&
      [ "$(jget m 'j["data"][0]["id"]')" = rwkv7-tiny-chat.pth ] &&
      [ "$(jget m 'j["object"]')" = list ]; echo $?)" "GET /v1/models lists the model"

# Greedy replies equal rwkv-chat --batch --greedy: three questions, each
# from the start.
head -3 "$TSV" | cut -f1 >"$T/q"
awk '{ print; print "/reset" }' "$T/q" | "$CHAT" --batch --greedy -t 1 >"$T/want" 2>"$T/berr"
i=0
while read -r q; do
    i=$((i + 1))
    st=$(req r$i POST /v1/chat/completions "$(chat_body -- "$q")")
    jget r$i 'j["choices"][0]["message"]["content"]' >"$T/got$i"
    sed -n "${i}p" "$T/want" >"$T/want$i"
    ok "$([ "$st" = 200 ] && cmp -s "$T/got$i" "$T/want$i"; echo $?)" \
        "greedy reply $i equals --batch --greedy's"
done <"$T/q"
ok "$([ "$(jget r1 'j["object"]')" = chat.completion ] &&
      [ "$(jget r1 'j["choices"][0]["finish_reason"]')" = stop ] &&
      [ "$(jget r1 'j["usage"]["total_tokens"] == j["usage"]["prompt_tokens"] + j["usage"]["completion_tokens"] and j["usage"]["completion_tokens"] > 0')" = True ]
      echo $?)" "a chat.completion with finish_reason stop and usage counts"

# A conversation: the second turn sends the first reply back.
q1=$(sed -n 1p "$T/q") q2=$(sed -n 2p "$T/q")
printf '%s\n%s\n' "$q1" "$q2" | "$CHAT" --batch --greedy -t 1 >"$T/conv" 2>>"$T/berr"
req c1 POST /v1/chat/completions "$(chat_body -- "$q1")" >/dev/null
a1=$(jget c1 'j["choices"][0]["message"]["content"]')
req c2 POST /v1/chat/completions "$(chat_body -- "$q1" "$a1" "$q2")" >/dev/null
jget c2 'j["choices"][0]["message"]["content"]' >"$T/got_conv"
sed -n 2p "$T/conv" >"$T/want_conv"
ok "$(cmp -s "$T/got_conv" "$T/want_conv"; echo $?)" \
    "the second turn of a conversation equals --batch --greedy's second reply"
ok "$([ "$(jget c2 'j["usage"]["prompt_tokens_details"]["cached_tokens"] >= j["usage"]["prompt_tokens"] - 30')" = True ]; echo $?)" \
    "the second turn continues from the first turn's cached state"

# Text completions, max_tokens, stop strings.
st=$(req t1 POST /v1/completions '{"prompt":"The ls command","max_tokens":6,"temperature":0}')
ok "$([ "$st" = 200 ] && [ "$(jget t1 'j["object"]')" = text_completion ] &&
      [ "$(jget t1 'j["choices"][0]["finish_reason"]')" = length ] &&
      [ "$(jget t1 'j["usage"]["completion_tokens"]')" = 6 ] &&
      [ -n "$(jget t1 'j["choices"][0]["text"]')" ]; echo $?)" \
    "/v1/completions stops at max_tokens (finish_reason length, 6 tokens)"
full=$(cat "$T/got1")
stop=$(printf '%s' "$full" | cut -c 10-14)
st=$(req s1 POST /v1/chat/completions "$(chat_body "{\"stop\":[\"$stop\"]}" -- "$q1")")
want=${full%%"$stop"*}
ok "$([ "$st" = 200 ] && [ "$(jget s1 'j["choices"][0]["message"]["content"]')" = "$want" ] &&
      [ "$(jget s1 'j["choices"][0]["finish_reason"]')" = stop ]; echo $?)" \
    "a stop string ends the reply before it"

# Errors: status, type, param.
err_case() {
    name=$1 want=$2 param=$3 method=$4 path=$5 body=$6
    st=$(req "$name" "$method" "$path" "$body")
    ok "$([ "$st" = "$want" ] && [ -n "$(jget "$name" 'j["error"]["message"]')" ] &&
          [ "$(jget "$name" 'j["error"]["type"]')" = invalid_request_error ] &&
          [ "$(jget "$name" 'j["error"]["param"]')" = "$param" ]; echo $?)" \
        "$name: HTTP $want, an error object (param $param)"
}
err_case bad_json 400 None POST /v1/chat/completions '{"messages": ['
err_case not_object 400 None POST /v1/chat/completions '[1,2]'
err_case no_messages 400 messages POST /v1/chat/completions '{"model":"x"}'
err_case temp_type 400 temperature POST /v1/chat/completions \
    '{"messages":[{"role":"user","content":"hi"}],"temperature":"hot"}'
err_case temp_range 400 temperature POST /v1/chat/completions \
    '{"messages":[{"role":"user","content":"hi"}],"temperature":1000}'
err_case top_k_whole 400 top_k POST /v1/chat/completions \
    '{"messages":[{"role":"user","content":"hi"}],"top_k":2.5}'
err_case max_zero 400 max_tokens POST /v1/chat/completions \
    '{"messages":[{"role":"user","content":"hi"}],"max_tokens":0}'
err_case max_cap 400 max_tokens POST /v1/completions '{"prompt":"a","max_tokens":501}'
err_case seed_neg 400 seed POST /v1/completions '{"prompt":"a","seed":-1}'
err_case last_assistant 400 messages POST /v1/chat/completions \
    '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"x"}]}'
err_case bad_role 400 'messages[0].role' POST /v1/chat/completions \
    '{"messages":[{"role":"tool","content":"hi"}]}'
# A role with control bytes (tests/fuzz/regress/fuzz_serve_request-role-newline)
# is named escaped: the message stays one line.
err_case role_escaped 400 'messages[0].role' POST /v1/chat/completions \
    '{"messages":[{"role":"u\n\u001b[31m","content":"hi"}]}'
ok "$(jget role_escaped 'j["error"]["message"]' | grep -q "role 'u.n.x1b.31m' is not supported" &&
      [ "$(jget role_escaped 'j["error"]["message"]' | wc -l)" = 1 ]; echo $?)" \
    "a role with a newline and an escape is shown escaped, on one line"
err_case empty_msg 400 'messages[0].content' POST /v1/chat/completions \
    '{"messages":[{"role":"user","content":"  \n "}]}'
err_case stop_many 400 stop POST /v1/completions '{"prompt":"a","stop":["a","b","c","d","e"]}'
err_case n_two 400 n POST /v1/completions '{"prompt":"a","n":2}'
err_case no_prompt 400 prompt POST /v1/completions '{"prompt":""}'
err_case bad_id 400 state_from POST /v1/completions '{"prompt":"a","state_from":"../x"}'
err_case no_state 404 state_from POST /v1/completions '{"prompt":"a","state_from":"nope"}'
err_case no_path 404 None GET /v1/nothing ''
err_case wrong_method 405 None GET /v1/chat/completions ''
big=$(python3 -c 'print("{\"prompt\":\"" + "x" * 4000 + "\"}")')
err_case too_big 413 None POST /v1/completions "$big"
ok "$([ "$(req after GET /health)" = 200 ] && [ "$(jget after 'j["failed"]')" = 0 ] &&
      [ "$(req r_again POST /v1/chat/completions "$(chat_body -- "$q1")")" = 200 ] &&
      [ "$(jget r_again 'j["choices"][0]["message"]["content"]')" = "$full" ]; echo $?)" \
    "after the bad requests the server answers as before"

# --api-key: every endpoint but /health needs the key.
t "a server with --api-key starts" start_server keyed --api-key s3cret
ok "$([ "$(req k0 GET /v1/models)" = 401 ] &&
      [ "$(jget k0 'j["error"]["code"]')" = invalid_api_key ]; echo $?)" \
    "--api-key: no key is refused with 401 invalid_api_key"
ok "$([ "$(req k1 GET /v1/models '' -H 'Authorization: Bearer wrong')" = 401 ] &&
      [ "$(req k1b POST /v1/completions '{"prompt":"a"}' -H 'Authorization: Bearer s3cre')" = 401 ]
      echo $?)" "--api-key: a wrong key is refused with 401"
ok "$([ "$(req k2 GET /v1/models '' -H 'Authorization: Bearer s3cret')" = 200 ] &&
      [ "$(req k3 POST /v1/completions '{"prompt":"a","max_tokens":2}' -H 'Authorization: Bearer s3cret')" = 200 ] &&
      [ "$(req k4 GET /health)" = 200 ]; echo $?)" \
    "--api-key: the right key is let in; /health needs none"

# Options.
"$CHAT" --serve --port 70000 >/dev/null 2>"$T/opt.err"
ok "$([ $? = 2 ] && grep -q "port.*0 to 65535" "$T/opt.err"; echo $?)" "--port 70000 is a usage error"
"$CHAT" --serve --batch >/dev/null 2>"$T/opt2.err"
ok "$([ $? = 2 ] && grep -q "cannot be combined" "$T/opt2.err"; echo $?)" "--serve --batch is a usage error"
"$CHAT" --help | grep -q -- '--state-cache-mb'
ok $? "--help lists the server's options"

tap_done
