#!/bin/sh
# test_serve_stream.sh - rwkv-chat --serve streaming: server-sent events
# that add up to the non-streamed reply and end with [DONE], usage in the
# stream, concurrent requests (batched, --parallel 2 with one waiting)
# each equal to its reply alone, and a client killed mid-stream stopping
# its generation (the /health counters say so).
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/serve_lib.sh"

[ -f "$TSV" ] || skip_all "$TSV not found"

t "the server starts" start_server main --parallel 2 --max-tokens-cap 1000000
q1=$(sed -n 1p "$TSV" | cut -f1)

req plain POST /v1/chat/completions "$(chat_body -- "$q1")" >/dev/null
want=$(jget plain 'j["choices"][0]["message"]["content"]')
st=$(req sse POST /v1/chat/completions "$(chat_body '{"stream":true}' -- "$q1")" -N)
ok "$([ "$st" = 200 ] && [ "$(sse_text sse)" = "$want" ]; echo $?)" \
    "stream: the chunks' content equals the non-streamed reply, then data: [DONE]"
first=$(grep -m1 '^data: ' "$T/sse" | cut -c7-)
last=$(grep '^data: {' "$T/sse" | tail -1 | cut -c7-)
ok "$(printf '%s' "$first" | python3 -c 'import json,sys; c=json.load(sys.stdin); assert c["object"]=="chat.completion.chunk" and c["choices"][0]["delta"]["role"]=="assistant"' 2>/dev/null; echo $?)" \
    "stream: the first chunk gives the role"
ok "$(printf '%s' "$last" | python3 -c 'import json,sys; c=json.load(sys.stdin); assert c["choices"][0]["finish_reason"]=="stop"' 2>/dev/null; echo $?)" \
    "stream: the last chunk gives finish_reason"
ok "$(curl -s -D "$T/hdr" -o /dev/null -N -H 'Content-Type: application/json' --data-binary "$(chat_body '{"stream":true,"max_tokens":2}' -- "$q1")" "$URL/v1/chat/completions"; grep -qi '^content-type: text/event-stream' "$T/hdr"; echo $?)" \
    "stream: Content-Type text/event-stream"

st=$(req usage POST /v1/completions '{"prompt":"The cp command","max_tokens":5,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}' -N)
ok "$([ "$st" = 200 ] && [ "$(sse_text usage)" != BAD ] &&
      grep '^data: {' "$T/usage" | tail -1 | cut -c7- |
      python3 -c 'import json,sys; c=json.load(sys.stdin); assert c["choices"]==[] and c["usage"]["completion_tokens"]==5' 2>/dev/null
      echo $?)" "stream: include_usage ends with a usage chunk (5 completion tokens)"
req tplain POST /v1/completions '{"prompt":"The cp command","max_tokens":5,"temperature":0}' >/dev/null
ok "$([ "$(sse_text usage)" = "$(jget tplain 'j["choices"][0]["text"]')" ]; echo $?)" \
    "stream: a text completion's chunks equal the non-streamed text"

# Three greedy requests at once with --parallel 2: two are generated
# together (one batch per token), the third waits; each equals its reply
# asked alone.
i=0
for n in 2 3 4; do
    q=$(sed -n "${n}p" "$TSV" | cut -f1)
    req alone$n POST /v1/chat/completions "$(chat_body -- "$q")" >/dev/null
    req conc$n POST /v1/chat/completions "$(chat_body '{"stream":true}' -- "$q")" -N >/dev/null &
    eval "p$n=\$!"
done
wait "$p2" "$p3" "$p4"
same=0
for n in 2 3 4; do
    [ "$(sse_text conc$n)" = "$(jget alone$n 'j["choices"][0]["message"]["content"]')" ] || same=1
done
ok $same "three concurrent streams (--parallel 2) each equal the reply asked alone"

# Cancellation: a completion of up to 1000000 tokens; curl is killed
# after its first chunks, and the server stops that generation.
t "the server is idle before the cancellation test" wait_idle
gen0=$(health '["tokens_generated"]')
curl -s -N -H 'Content-Type: application/json' \
    --data-binary '{"prompt":"The ls command","max_tokens":1000000,"stream":true}' \
    "$URL/v1/completions" >"$T/long" 2>/dev/null &
cpid=$!
i=0
while [ $i -lt 600 ] && [ "$(grep -c '^data: ' "$T/long" 2>/dev/null)" -lt 3 ]; do
    sleep 0.1
    i=$((i + 1))
done
ok "$([ "$(health '["active"]')" = 1 ]; echo $?)" "the long generation is running"
kill "$cpid"
wait "$cpid" 2>/dev/null
t "after the client is killed no request is active" wait_idle
ok "$([ "$(health '["cancelled"]')" = 1 ]; echo $?)" "/health counts one cancelled generation"
gen1=$(health '["tokens_generated"]')
ok "$([ $((gen1 - gen0)) -lt 1000000 ] && [ $((gen1 - gen0)) -ge 3 ]; echo $?)" \
    "it stopped early: $((gen1 - gen0)) of 1000000 tokens generated"
gen2=$(health '["tokens_generated"]')
ok "$([ "$gen2" = "$gen1" ]; echo $?)" "no token is generated after it stopped"
ok "$([ "$(req after POST /v1/chat/completions "$(chat_body -- "$q1")")" = 200 ] &&
      [ "$(jget after 'j["choices"][0]["message"]["content"]')" = "$want" ]; echo $?)" \
    "the server answers as before after the cancellation"

# A non-streamed request whose client goes away is cancelled too.
curl -s -H 'Content-Type: application/json' \
    --data-binary '{"prompt":"The ls command","max_tokens":1000000}' \
    "$URL/v1/completions" >/dev/null 2>&1 &
cpid=$!
i=0
while [ $i -lt 600 ] && [ "$(health '["active"]')" != 1 ]; do
    sleep 0.1
    i=$((i + 1))
done
kill "$cpid"
wait "$cpid" 2>/dev/null
t "a non-streamed request whose client is killed ends" wait_idle
ok "$([ "$(health '["cancelled"]')" = 2 ]; echo $?)" "/health counts it cancelled"

tap_done
