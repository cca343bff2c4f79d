#!/bin/sh
# test_serve_history.sh - rwkv-chat --serve with an RWKV-7b model, whose
# state keeps every token it read (at most RWKV_HISTORY_MAX; lowered to 40
# here by the test hook RWKV_CHAT_TEST_HISTORY_MAX): a prompt past the
# bound is refused at once (400 context_length_exceeded, nothing read); a
# reply that reaches it ends with that error (400 unstreamed, an error
# event after its text when streamed); the server goes on serving.
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/serve_lib.sh"
TOOL="$B/rwkv-tool"

"$TOOL" mkmodel --version 7b --layers 1 --embd 32 --head-size 16 -o "$T/b.pth" >/dev/null
ok $? "rwkv-tool mkmodel --version 7b makes a small RWKV-7b model"
RWKV_CHAT_TEST_HISTORY_MAX=40
export RWKV_CHAT_TEST_HISTORY_MAX
t "a server with it starts" start_server b7 --model "$T/b.pth"
# body N MAX STREAM: a greedy completion of N " a" tokens.
body() {
    python3 -c 'import json, sys
print(json.dumps({"prompt": " a" * int(sys.argv[1]), "max_tokens": int(sys.argv[2]),
                  "temperature": 0, "stream": sys.argv[3] == "1"}))' "$@"
}

st=$(req long POST /v1/completions "$(body 60 4 0)")
ok "$([ "$st" = 400 ] && [ "$(jget long 'j["error"]["code"]')" = context_length_exceeded ] &&
      [ "$(jget long 'j["error"]["type"]')" = invalid_request_error ] &&
      jget long 'j["error"]["message"]' | grep -q 'would hold 60 tokens, more than the 40' &&
      [ "$(health '["prompt_tokens_read"]')" = 0 ]; echo $?)" \
    "a prompt past the bound: 400 context_length_exceeded at once, nothing read"
st=$(req full POST /v1/completions "$(body 30 20 0)")
ok "$([ "$st" = 400 ] && [ "$(jget full 'j["error"]["code"]')" = context_length_exceeded ] &&
      jget full 'j["error"]["message"]' | grep -q 'holds the 40 tokens' &&
      [ "$(health '["tokens_generated"]')" -ge 9 ]; echo $?)" \
    "a reply that reaches the bound: 400 context_length_exceeded"
st=$(req fs POST /v1/completions "$(body 30 20 1)")
ok "$([ "$st" = 200 ] && python3 - "$T/fs" <<'PY'
import json, sys
ev = [l[6:] for l in open(sys.argv[1]).read().split("\n") if l.startswith("data: ")]
js = [json.loads(e) for e in ev[:-1]]
text = "".join(c["choices"][0]["text"] for c in js if "choices" in c)
ok = ev[-1] == "[DONE]" and text and "error" in js[-1] and \
     js[-1]["error"]["code"] == "context_length_exceeded"
sys.exit(0 if ok else 1)
PY
      echo $?)" "streamed: the reply's text, then an error event (context_length_exceeded), then [DONE]"
st=$(req short POST /v1/completions "$(body 5 3 0)")
ok "$([ "$st" = 200 ] && [ "$(jget short 'j["usage"]["completion_tokens"]')" = 3 ]; echo $?)" \
    "the server goes on: a short request is answered"

tap_done
