# tests/serve_lib.sh - what the test_serve*.sh tests share, sourced after
# tap.sh: starting rwkv-chat --serve on a free port, requests with curl,
# fields of JSON answers with python3.
B=${TOP_BUILDDIR:-.}
S=${SHARED_DIR:-../shared}
CHAT="$B/rwkv-chat"
TSV="$S/models/greedy.tsv"

command -v curl >/dev/null 2>&1 || skip_all "curl not found"
command -v python3 >/dev/null 2>&1 || skip_all "python3 not found"

T="$B/tests/tmp/$(basename "$0" .sh).$$"
mkdir -p "$T" || exit 1
SERVERS=
cleanup() {
    for p in $SERVERS; do
        kill "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    rm -rf "$T"
}
trap cleanup EXIT

# start_server NAME OPTION...: starts rwkv-chat --serve --port 0 (any free
# port: tests run in parallel) and waits for the address it prints.  Sets
# PORT and URL; returns 1 if it did not start.
start_server() {
    name=$1
    shift
    "$CHAT" --serve --port 0 -t 1 "$@" 2>"$T/$name.err" &
    pid=$!
    SERVERS="$SERVERS $pid"
    i=0
    PORT=
    while [ $i -lt 600 ] && [ -z "$PORT" ] && kill -0 "$pid" 2>/dev/null; do
        PORT=$(sed -n 's|.*serving .* on http://.*:\([0-9][0-9]*\)/v1$|\1|p' "$T/$name.err")
        [ -n "$PORT" ] || sleep 0.1
        i=$((i + 1))
    done
    URL="http://127.0.0.1:$PORT"
    [ -n "$PORT" ]
}

# req OUT METHOD PATH [BODY [CURL OPTION...]]: the HTTP status on stdout,
# the body in $T/OUT.
req() {
    out=$1 method=$2 path=$3
    shift 3
    body=${1-}
    [ $# -gt 0 ] && shift
    if [ -n "$body" ]; then
        curl -s -o "$T/$out" -w '%{http_code}' -X "$method" -H 'Content-Type: application/json' \
            --data-binary "$body" "$@" "$URL$path"
    else
        curl -s -o "$T/$out" -w '%{http_code}' -X "$method" "$@" "$URL$path"
    fi
}

# jget FILE EXPR: a Python expression over the JSON in $T/FILE (as j).
jget() {
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); v=eval(sys.argv[2]); print(v if not isinstance(v,(dict,list)) else json.dumps(v))' "$T/$1" "$2" 2>/dev/null
}

# sse_text FILE: the content (or text) of a stream's chunks, joined;
# "BAD" when a line is neither an event nor blank or [DONE] is not last.
sse_text() {
    python3 - "$T/$1" <<'PY'
import json, sys
lines = open(sys.argv[1], encoding="utf-8").read().split("\n")
events = [l[6:] for l in lines if l.startswith("data: ")]
if any(l and not l.startswith("data: ") for l in lines) or not events or events[-1] != "[DONE]":
    print("BAD"); sys.exit()
out = []
for e in events[:-1]:
    c = json.loads(e)
    for ch in c.get("choices", []):
        out.append(ch.get("delta", {}).get("content") or ch.get("text") or "")
print("".join(out))
PY
}

# chat_body [FIELDS] -- MESSAGE...: a greedy chat request, alternating
# user and assistant messages (json.dumps quoting).
chat_body() {
    python3 - "$@" <<'PY'
import json, sys
args = sys.argv[1:]
extra = {}
if "--" in args:
    k = args.index("--")
    extra = json.loads(args[0]) if k else {}
    args = args[k + 1:]
msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": m} for i, m in enumerate(args)]
body = {"messages": msgs, "temperature": 0, "presence_penalty": 0, "frequency_penalty": 0}
body.update(extra)
print(json.dumps(body))
PY
}

# health FIELD: a number of /health.
health() {
    req health GET /health >/dev/null
    jget health "j$1"
}

# wait_idle: until /health says no request is active or queued.
wait_idle() {
    i=0
    while [ $i -lt 600 ]; do
        req health GET /health >/dev/null
        [ "$(jget health 'j["active"] + j["queued"]')" = 0 ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}
