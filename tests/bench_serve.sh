#!/bin/sh
# bench_serve.sh - rwkv-chat --serve figures for BENCHMARKS.md's "HTTP server"
# section (make bench-serve; not a test):
#  (a) the second turn of a ~4000-token conversation on a server with the
#      state cache against the same request on one without it (which
#      re-reads the history), and the new message alone for scale;
#  (b) aggregate generation tok/s of 4 concurrent streams against 1;
#  (c) 8 clients x 25 requests: failures, and the server's RSS over time.
# Usage: bench_serve.sh SRCDIR BUILDDIR [MODEL]   (MODEL: or $BENCH_SERVE_MODEL;
# default the bundled demo model).  About 4-5 minutes with a 0.1B model on 2 cores.
set -eu
SRC=$1
BUILD=$2
MODEL=${3:-${BENCH_SERVE_MODEL:-}}
CHAT="$BUILD/rwkv-chat"
TOOL="$BUILD/rwkv-tool"
export RWKV_CHAT_DATADIR="$SRC/share:$SRC"
command -v python3 >/dev/null 2>&1 || { echo "bench_serve.sh: python3 is needed" >&2; exit 1; }
[ -x "$CHAT" ] && [ -x "$TOOL" ] || { echo "bench_serve.sh: build rwkv-chat and rwkv-tool first" >&2; exit 1; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench-serve.XXXXXX")
trap 'for f in "$TMP"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done; rm -rf "$TMP"' EXIT INT TERM

start() {   # start NAME OPTIONS...: prints the port
    name=$1; shift
    "$CHAT" --serve --port 0 ${MODEL:+--model "$MODEL"} "$@" >/dev/null 2>"$TMP/$name.err" &
    echo $! >"$TMP/$name.pid"
    i=0
    while [ $i -lt 1200 ]; do
        p=$(sed -n 's|.*serving .* on http://.*:\([0-9][0-9]*\)/v1$|\1|p' "$TMP/$name.err")
        [ -n "$p" ] && { echo "$p"; return 0; }
        kill -0 "$(cat "$TMP/$name.pid")" 2>/dev/null || break
        sleep 0.1; i=$((i + 1))
    done
    cat "$TMP/$name.err" >&2; return 1
}

PA=$(start cached --parallel 4)
PB=$(start nocache --parallel 4 --state-cache-mb 0)
PC=$(start load --parallel 4 --state-cache-mb 64)
echo "model: ${MODEL:-the bundled demo model}  ($(nproc) CPUs, $(date -u '+%F %H:%M UTC'))"
python3 -u - "$PA" "$PB" "$PC" "$(cat "$TMP/load.pid")" "$TOOL" <<'PY'
import json, subprocess, sys, threading, time, urllib.request
pa, pb, pc, pid, tool = sys.argv[1:6]
def post(port, path, body, stream=False):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        data = r.read()
        return r.status, (data if stream else json.loads(data))

def health(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health") as r:
        return json.loads(r.read())

def count(text):
    out = subprocess.run([tool, "tokenize"], input=text.encode(), capture_output=True,
                         check=True).stdout
    return len(out.split())

# (a) a first message of about 3 950 tokens (the template and the reply make
# the conversation about 4 000 at turn 2), then a short second turn.
words = ("The quick brown fox jumps over the lazy dog while the old man reads a long story "
         "about rivers, mountains and the people who lived beside them. ")
n = 19000
for _ in range(3):
    u1 = (words * (n // len(words) + 1))[:n]
    n = int(n * 3950 / max(count(u1), 1))
g = {"temperature": 0, "presence_penalty": 0, "frequency_penalty": 0, "max_tokens": 16}
st, r1 = post(pa, "/v1/chat/completions", dict(g, messages=[{"role": "user", "content": u1}]))
a1 = r1["choices"][0]["message"]["content"]
turn2 = dict(g, messages=[{"role": "user", "content": u1}, {"role": "assistant", "content": a1},
                          {"role": "user", "content": "Summarise that in one sentence."}])
res = {}
for rep in range(3):
    for name, port in (("cached", pa), ("nocache", pb)):
        t0 = time.perf_counter()
        st, r2 = post(port, "/v1/chat/completions", turn2)
        dt = time.perf_counter() - t0
        res.setdefault(name, []).append((dt, r2["usage"]))
    # the cached server must meet turn 2 fresh each time: a new question
    turn2["messages"][-1]["content"] += " Please."
alone = dict(g, messages=[{"role": "user", "content": "Summarise that in one sentence."}])
for rep in range(3):
    t0 = time.perf_counter()
    st, r3 = post(pb, "/v1/chat/completions", alone)
    res.setdefault("alone", []).append((time.perf_counter() - t0, r3["usage"]))
print("\n(a) second turn of a conversation of about %d tokens (16 new tokens generated)" %
      round(res["cached"][0][1]["prompt_tokens"], -2))
print("| server | prompt tokens | read | from cache | turn 2 time (best of 3) |")
print("|---|---|---|---|---|")
names = {"cached": "state cache (default)", "nocache": "--state-cache-mb 0 (re-reads)",
         "alone": "the new message alone, no history"}
for name in ("cached", "nocache", "alone"):
    dt, u = min(res[name], key=lambda x: x[0])
    c = u["prompt_tokens_details"]["cached_tokens"]
    print(f"| {names[name]} | {u['prompt_tokens']} | {u['prompt_tokens'] - c} | {c} | {dt:.2f} s |")

# (b) aggregate generation: 1 stream vs 4 concurrent.
N = 128
def gen(port, out, i):
    body = {"prompt": "Once upon a time", "max_tokens": N, "temperature": 1.0, "seed": i,
            "stream": True}
    st, data = post(port, "/v1/completions", body, stream=True)
    out[i] = data.count(b"data: {")
print("\n(b) aggregate generation, %d tokens per stream (completions, temperature 1)" % N)
print("| streams | wall time | aggregate tok/s | vs 1 stream |")
print("|---|---|---|---|")
base = None
for k in (1, 4, 1, 4):
    out = {}
    ts = [threading.Thread(target=gen, args=(pa, out, i)) for i in range(k)]
    g0 = health(pa)["tokens_generated"]
    t0 = time.perf_counter()
    for t in ts: t.start()
    for t in ts: t.join()
    dt = time.perf_counter() - t0
    toks = health(pa)["tokens_generated"] - g0
    rate = toks / dt
    if k == 1: base = rate
    print(f"| {k} | {dt:.2f} s | {rate:.1f} | {rate / base:.2f}x |")

# (c) 8 clients x 25 requests, RSS sampled.
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
samples, fails, done = [], [], []
stop = threading.Event()
def sampler():
    while not stop.is_set():
        samples.append(rss()); time.sleep(0.5)
def client(c):
    for i in range(25):
        body = {"messages": [{"role": "user", "content": f"Client {c} question {i}: what does ls do?"}],
                "max_tokens": 24, "stream": i % 2 == 0}
        try:
            st, _ = post(pc, "/v1/chat/completions", body, stream=body["stream"])
            (done if st == 200 else fails).append(st)
        except Exception as e:
            fails.append(str(e))
sm = threading.Thread(target=sampler); sm.start()
t0 = time.perf_counter()
cs = [threading.Thread(target=client, args=(c,)) for c in range(8)]
for t in cs: t.start()
for t in cs: t.join()
dt = time.perf_counter() - t0
stop.set(); sm.join()
q = len(samples) // 4 or 1
print("\n(c) 8 clients x 25 requests (24 tokens each, half streamed; --state-cache-mb 64)")
print(f"| requests ok | failed | wall time | RSS first quarter max | RSS last quarter max | RSS max |")
print("|---|---|---|---|---|---|")
print(f"| {len(done)} | {len(fails)} | {dt:.1f} s | {max(samples[:q])} MiB | {max(samples[-q:])} MiB | {max(samples)} MiB |")
h = health(pc)
print(f"\n/health after: requests {h['requests']}, failed {h['failed']}, cancelled {h['cancelled']}, "
      f"cache {h['cache']['entries']} entries / {h['cache']['bytes'] >> 20} MiB")
PY
