#!/bin/sh
# tests/bench_streams.sh BEFORE_BUILD AFTER_BUILD - aggregate generation of
# 4 and 8 concurrent streams (rwkv_eval_batch) against one stream, 2
# threads, for two builds measured alternately (before, after, before,
# after...), then the same through the HTTP server (4 streams against 1).
# BENCHMARKS.md; not a test.
#
#   MODEL=v7-0.1B.pth tests/bench_streams.sh OLD/build build   (~5-6 min quiet)
#
# BEFORE_BUILD / AFTER_BUILD: build directories holding rwkv-bench and
# rwkv-chat (the same one twice measures one).  MODEL: the model (e.g.
# rwkv-tool mkmodel --version 7 --layers 12 --embd 768 -o v7-0.1B.pth);
# ROUNDS (default 2) the alternations; SERVE=0 skips the server
# part, BENCH=0 the rwkv-bench part.  Each rwkv-bench cell is the median
# over the rounds of rwkv-bench's own figures (each already the median of its -r repeats, one stream and N
# streams interleaved); each server cell the median over the rounds of one
# timed run (a fresh server per build, 128 tokens per stream, temperature 1,
# the prompt's state already cached by a warm-up request).
set -u
A=${1:?usage: MODEL=M.pth bench_streams.sh BEFORE_BUILD AFTER_BUILD}
B=${2:?usage: MODEL=M.pth bench_streams.sh BEFORE_BUILD AFTER_BUILD}
M=${MODEL:?MODEL: the model file, e.g. rwkv-tool mkmodel --version 7 --layers 12 --embd 768 -o v7-0.1B.pth}
R=${ROUNDS:-2}
SERVE=${SERVE:-1}
BENCH=${BENCH:-1}
for d in "$A" "$B"; do
    [ -x "$d/rwkv-bench" ] || { echo "no $d/rwkv-bench: build it first" >&2; exit 1; }
done
[ -f "$M" ] || { echo "bench_streams.sh: no $M: make it with $B/rwkv-tool mkmodel --version 7 --layers 12 --embd 768 -o $M" >&2; exit 1; }
T=$(mktemp -d) || exit 1
trap 'for f in "$T"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done; rm -rf "$T"' EXIT INT TERM
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); before: $A ($(git -C "$A/.." log --oneline -1 2>/dev/null | cut -c1-60))"
echo "# after: $B ($(git -C "$B/.." log --oneline -1 2>/dev/null | cut -c1-60))"
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs, load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
# One rwkv-bench run: "TG1 TG4 TG8" tok/s (x1 stream, x4, x8 streams).
# --bandwidth skips the bandwidth measurement (only the "of ceiling"
# column uses it); q8/q4 convert at load (--no-cache: the model's folder
# may be read-only, and a cache would differ between the builds).
one() { # one BUILD DTYPE
    "$1/rwkv-bench" "$M" --dtype "$2" --no-cache --bandwidth 10 -t 2 -p 0 -n 48 -r 3 \
        --streams 4,8 2>/dev/null |
        awk -F'|' '/ x1 stream / { a = $4 } / x4 streams / { b = $4 } / x8 streams / { c = $4 }
                   END { split(a, x, " "); split(b, y, " "); split(c, z, " "); print x[1], y[1], z[1] }'
}
for r in $(seq "$R"); do
    [ "$BENCH" = 1 ] || break
    for d in bf16 q8 q4; do
        one "$A" $d >> "$T/before.$d"
        one "$B" $d >> "$T/after.$d"
    done
done
med() { # med FILE COLUMN
    cut -d' ' -f"$2" "$1" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
[ "$BENCH" = 1 ] && {
echo "# load after rwkv-bench: $(cut -d' ' -f1-3 /proc/loadavg); medians of $R alternating rounds"
echo
echo "| dtype | build  | 1 stream tok/s | 4 streams tok/s | 4 vs 1 | 8 streams tok/s | 8 vs 1 |"
echo "|-------|--------|----------------|-----------------|--------|-----------------|--------|"
for d in bf16 q8 q4; do
    for b in before after; do
        s1=$(med "$T/$b.$d" 1); s4=$(med "$T/$b.$d" 2); s8=$(med "$T/$b.$d" 3)
        awk -v d=$d -v b=$b -v s1="$s1" -v s4="$s4" -v s8="$s8" 'BEGIN {
            printf "| %-5s | %-6s | %14.1f | %15.1f | %5.2fx | %15.1f | %5.2fx |\n",
                   d, b, s1, s4, (s1 > 0 ? s4 / s1 : 0), s8, (s1 > 0 ? s8 / s1 : 0) }'
    done
done
}
[ "$SERVE" = 1 ] || exit 0
command -v python3 >/dev/null 2>&1 || { echo "no python3: server part skipped" >&2; exit 0; }

# The server: 1 stream and 4 concurrent streams of /v1/completions, bf16.
serve_start() { # serve_start NAME BUILD: prints the port
    RWKV_CHAT_DATADIR="$2/../share:$2/.." "$2/rwkv-chat" --serve --port 0 --model "$M" \
        --parallel 4 -t 2 >/dev/null 2>"$T/$1.err" &
    echo $! >"$T/$1.pid"
    i=0
    while [ $i -lt 1200 ]; do
        p=$(sed -n 's|.*serving .* on http://.*:\([0-9][0-9]*\)/v1$|\1|p' "$T/$1.err")
        [ -n "$p" ] && { echo "$p"; return 0; }
        kill -0 "$(cat "$T/$1.pid")" 2>/dev/null || break
        sleep 0.1; i=$((i + 1))
    done
    cat "$T/$1.err" >&2; return 1
}
PA=$(serve_start before "$A") && PB=$(serve_start after "$B") || exit 1
python3 - "$PA" "$PB" "$R" <<'PY'
import json, sys, threading, time, urllib.request, statistics
ports = {"before": int(sys.argv[1]), "after": int(sys.argv[2])}
rounds = int(sys.argv[3])
N = 128
def gen(port, out, i):
    body = {"prompt": "Once upon a time", "max_tokens": N, "temperature": 1.0, "seed": i,
            "stream": True}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions",
                                 json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        out[i] = r.read().count(b"data: {")
def run(port, k):
    out = {}
    ts = [threading.Thread(target=gen, args=(port, out, i)) for i in range(k)]
    t0 = time.perf_counter()
    for t in ts: t.start()
    for t in ts: t.join()
    return sum(out.values()) / (time.perf_counter() - t0)
for p in ports.values():
    run(p, 1)               # warm-up: the prompt's state goes into the cache
res = {(b, k): [] for b in ports for k in (1, 4)}
for _ in range(rounds):
    for b, p in ports.items():
        for k in (1, 4):
            res[(b, k)].append(run(p, k))
print("\n# the server (rwkv-chat --serve --parallel 4 -t 2, bf16): 128 tokens per stream, "
      "medians of %d alternating rounds" % rounds)
print("| build  | 1 stream tok/s | 4 streams tok/s | 4 vs 1 |")
print("|--------|----------------|-----------------|--------|")
for b in ports:
    s1, s4 = statistics.median(res[(b, 1)]), statistics.median(res[(b, 4)])
    print("| %-6s | %14.1f | %15.1f | %5.2fx |" % (b, s1, s4, s4 / s1))
PY
echo "# load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
