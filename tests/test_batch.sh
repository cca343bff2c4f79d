#!/bin/sh
# test_batch.sh - rwkv-chat --batch on the v7-world fixture: determinism,
# state files, JSONL, slash commands, exit statuses and SIGINT.
B=${TOP_BUILDDIR:-.}
S=${SHARED_DIR:-../shared}
CHAT="$B/rwkv-chat"
MODEL="$S/fixtures/models/v7-world.pth"
T="$B/tests/tmp/batch.$$"
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
# run NAME [ARGS...] < input: stdout to $T/NAME.out, stderr to $T/NAME.err, status to $T/NAME.rc
run() {
    name=$1; shift
    "$CHAT" --batch --model "$MODEL" -t 1 "$@" >"$T/$name.out" 2>"$T/$name.err"
    echo $? >"$T/$name.rc"
}
rc() { cat "$T/$1.rc"; }

if [ ! -f "$MODEL" ]; then
    skip_all "$MODEL not found"
fi
if command -v python3 >/dev/null 2>&1; then PY=python3; else PY=; fi
mkdir -p "$T" || exit 1
trap 'rm -rf "$T"' EXIT

SAMPLING="--seed 1234 --temperature 1.0 --top-p 0.9 --max-tokens 24"

# --- determinism ---------------------------------------------------------------
printf 'Hello there.\nWhat is the capital of France?\n' >"$T/two.in"
run a $SAMPLING <"$T/two.in"
run b $SAMPLING <"$T/two.in"
ok "$(test "$(rc a)" = 0 && test "$(rc b)" = 0; echo $?)" "two replies, exit 0"
ok "$(test -s "$T/a.out" && cmp -s "$T/a.out" "$T/b.out"; echo $?)" \
    "same seed, same stdin: identical replies"
ok "$(test ! -s "$T/a.err"; echo $?)" "nothing on stderr without --verbose"

# --- --state-out then --state-in continues like one run ------------------------
printf 'Hello there.\n' | run p1 $SAMPLING --state-out "$T/p1.state"
printf 'What is the capital of France?\n' | run p2 $SAMPLING --state-in "$T/p1.state"
cat "$T/p1.out" "$T/p2.out" >"$T/p12.out"
ok "$(test "$(rc p1)" = 0 && test "$(rc p2)" = 0 && test -s "$T/p1.state"; echo $?)" \
    "--state-out writes a state file, --state-in reads it"
ok "$(cmp -s "$T/a.out" "$T/p12.out"; echo $?)" \
    "--state-out then --state-in continues exactly like an uninterrupted run"
printf 'Hello there.\n/save %s\nWhat is the capital of France?\n' "$T/cmd.state" | run s1 $SAMPLING
ok "$(cmp -s "$T/a.out" "$T/s1.out" && test -s "$T/cmd.state"; echo $?)" \
    "/save writes a state without touching stdout or the conversation"
printf 'What is the capital of France?\n' | run s2 $SAMPLING --state-in "$T/cmd.state"
ok "$(cmp -s "$T/p2.out" "$T/s2.out"; echo $?)" "a /save state continues like --state-out's"

printf '/set\n' | run knobs --state-in "$T/p1.state" --greedy
ok "$(test "$(rc knobs)" = 0 && grep -q '^temperature 0  top_p 0.9 .* presence 0 .* max_tokens 24  seed 1234$' "$T/knobs.err"; echo $?)" \
    "a state brings its knobs (top_p 0.9), options given on the command line win (--greedy)"

# --- multi-line messages and commands ------------------------------------------
printf '"""\nfirst line\nsecond line\n"""\n' | run ml1 --greedy --max-tokens 16
printf '{"role":"user","content":"first line\\nsecond line"}\n' |
    run ml2 --greedy --max-tokens 16 --jsonl
ok "$(test "$(rc ml1)" = 0 && test -s "$T/ml1.out"; echo $?)" '""" block is one message'
if [ -n "$PY" ]; then
    $PY -c 'import json,sys; c=json.loads(open(sys.argv[1]).readline())["content"]; sys.exit(0 if c+"\n"==open(sys.argv[2]).read() else 1)' \
        "$T/ml2.out" "$T/ml1.out"
    ok $? '""" block reply equals the JSONL reply to the same two-line message'
fi
printf '"""\nnever closed\n' | run mlbad --greedy
ok "$(test "$(rc mlbad)" = 1 && grep -q 'stdin:1:' "$T/mlbad.err"; echo $?)" \
    'unclosed """ block: exit 1 naming its line'

# Greedy replies compared byte for byte (a reply may span lines).
G="--greedy --max-tokens 16"
printf 'Hello there.\n' | run r1 $G
printf 'Hello there.\nTell me more.\n' | run r12 $G
tail -c +$(($(wc -c <"$T/r1.out") + 1)) "$T/r12.out" >"$T/r2.out"
printf 'Hello there.\n/snap start\nTell me more.\n/restore start\nTell me more.\n' | run snap $G
cat "$T/r12.out" "$T/r2.out" >"$T/snap.want"
ok "$(test "$(rc snap)" = 0 && test -s "$T/r2.out" && cmp -s "$T/snap.out" "$T/snap.want"; echo $?)" \
    "/snap then /restore: the same message gets the same greedy reply"
printf 'Hello there.\n/undo\nHello there.\n' | run undo $G
cat "$T/r1.out" "$T/r1.out" >"$T/twice.want"
ok "$(test "$(rc undo)" = 0 && cmp -s "$T/undo.out" "$T/twice.want"; echo $?)" \
    "/undo drops the exchange: the repeated message gets the same reply"
printf 'Hello there.\n/regen\n' | run regen $G
ok "$(test "$(rc regen)" = 0 && cmp -s "$T/regen.out" "$T/twice.want"; echo $?)" \
    "/regen streams the reply again (greedy: the same)"
printf 'Hello there.\n/edit Tell me more.\n' | run edit $G
printf 'Tell me more.\n' | run edit2 $G
cat "$T/r1.out" "$T/edit2.out" >"$T/edit.want"
ok "$(test "$(rc edit)" = 0 && cmp -s "$T/edit.out" "$T/edit.want"; echo $?)" \
    "/edit TEXT replaces the last message and replies to it"
printf 'Hello there.\n/reset\nHello there.\n' | run reset $G
ok "$(test "$(rc reset)" = 0 && cmp -s "$T/reset.out" "$T/twice.want"; echo $?)" \
    "/reset starts the conversation again"
printf '/set temperature 0\n/set presence 0\n/set frequency 0\nHello there.\n' |
    run set --max-tokens 16
ok "$(test "$(rc set)" = 0 && cmp -s "$T/set.out" "$T/r1.out"; echo $?)" \
    "/set temperature 0 and no penalties equals --greedy"
printf '/info\n/help\n/snapshots\n' | run info
ok "$(test "$(rc info)" = 0 && test ! -s "$T/info.out" && grep -q '^model: v7-world.pth' "$T/info.err" &&
      grep -q '^/restore NAME' "$T/info.err"; echo $?)" \
    "/info and /help write to stderr, never stdout"
printf '/quit\nHello there.\n' | run quit
ok "$(test "$(rc quit)" = 0 && test ! -s "$T/quit.out"; echo $?)" "/quit stops reading"
printf '//hello\n' | run slash --greedy --max-tokens 4
ok "$(test "$(rc slash)" = 0 && test -s "$T/slash.out"; echo $?)" "//text is a message, not a command"
printf 'Hello there.\n/frobnicate\nHello again.\n' | run badcmd $G
ok "$(test "$(rc badcmd)" = 1 && cmp -s "$T/badcmd.out" "$T/r1.out" &&
      grep -q "stdin:2: unknown command '/frobnicate'" "$T/badcmd.err"; echo $?)" \
    "unknown command: exit 1 naming the line, replies before it kept"
printf '/set warmth 3\n' | run badset
ok "$(test "$(rc badset)" = 1 && grep -q "unknown knob 'warmth'" "$T/badset.err"; echo $?)" \
    "/set of an unknown knob: exit 1"
printf '/load %s\n' "$T/no-such.state" | run badload
ok "$(test "$(rc badload)" = 1 && test "$(wc -l <"$T/badload.err")" -eq 1; echo $?)" \
    "/load of a missing file: exit 1 with one line"

# --- JSONL ---------------------------------------------------------------------
cat >"$T/j.in" <<'EOF'
{"role":"user","content":"Hello there."}

{"role":"user","content":"What is the capital of France?"}
EOF
run j $SAMPLING --jsonl <"$T/j.in"
ok "$(test "$(rc j)" = 0 && test "$(wc -l <"$T/j.out")" -eq 2; echo $?)" \
    "--jsonl: one object per reply (blank lines skipped)"
if [ -n "$PY" ]; then
    $PY - "$T/j.out" "$T/a.out" <<'EOF'
import json, sys
objs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
for o in objs:
    assert o["role"] == "assistant"
    assert isinstance(o["content"], str)
    assert o["stop_reason"] in ("end", "length"), o["stop_reason"]
    assert o["prompt_tokens"] > 0 and 0 < o["reply_tokens"] <= 24
    assert o["context_tokens"] >= o["prompt_tokens"] + o["reply_tokens"]
    assert o["prompt_seconds"] >= 0 and o["reply_seconds"] >= 0 and o["tokens_per_second"] >= 0
plain = open(sys.argv[2], encoding="utf-8").read()
assert plain == "".join(o["content"] + "\n" for o in objs), (plain, objs)
EOF
    ok $? "JSONL parses back: content, token counts, stop reason, timings; same replies as plain"
    cat >"$T/jx.in" <<'EOF'
{"role":"user","content":"quote \" backslash \\ tab \t nul-free control \u0001 and \u00e9\u4e2d\ud83d\ude00","temperature":0,"max_tokens":5}
{"content":"second, no role"}
EOF
    run jx --seed 5 --jsonl <"$T/jx.in"
    $PY - "$T/jx.out" <<'EOF'
import json, sys
objs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
assert len(objs) == 2
assert objs[0]["reply_tokens"] <= 5
assert objs[0]["stop_reason"] in ("end", "length")
EOF
    ok $? "JSONL escapes in input; per-message temperature and max_tokens"
else
    skip "python3 not found"
    skip "python3 not found"
fi
printf '{"role":"user","content":"Hello there."}\n{"role":"user","content":\n' |
    run jbad --jsonl --max-tokens 4
ok "$(test "$(rc jbad)" = 1 && grep -q 'stdin:2: malformed JSON' "$T/jbad.err" &&
      test "$(wc -l <"$T/jbad.err")" -eq 1 && test "$(wc -l <"$T/jbad.out")" -eq 1; echo $?)" \
    "malformed JSON line: exit 1, one line naming line 2, earlier reply kept"
printf '{"role":"system","content":"x"}\n' | run jrole --jsonl
ok "$(test "$(rc jrole)" = 1 && grep -q 'stdin:1:' "$T/jrole.err"; echo $?)" "role other than user: exit 1"
printf '{"role":"user","content":5}\n' | run jcontent --jsonl
ok "$(test "$(rc jcontent)" = 1 && grep -q 'content' "$T/jcontent.err"; echo $?)" \
    "content not a string: exit 1"
printf '[1,2]\n' | run jarray --jsonl
ok "$(test "$(rc jarray)" = 1 && grep -q 'stdin:1:' "$T/jarray.err"; echo $?)" "not an object: exit 1"

# --- --complete ----------------------------------------------------------------
printf 'The quick brown fox' | run c1 --complete --seed 3 --max-tokens 12
printf 'The quick brown fox' | run c2 --complete --seed 3 --max-tokens 12
ok "$(test "$(rc c1)" = 0 && test -s "$T/c1.out" && cmp -s "$T/c1.out" "$T/c2.out"; echo $?)" \
    "--complete: deterministic continuation of the whole of stdin"
printf '' | run c3 --complete
ok "$(test "$(rc c3)" = 1; echo $?)" "--complete with empty stdin: exit 1"

# --- exit statuses -------------------------------------------------------------
printf 'Hello there.\n' | run other $SAMPLING --state-out "$T/other.state"
printf 'Hello.\n' | "$CHAT" --batch -t 1 --state-in "$T/other.state" >"$T/wrong.out" 2>"$T/wrong.err"
echo $? >"$T/wrong.rc"
ok "$(test "$(rc wrong)" = 1 && test ! -s "$T/wrong.out" && test "$(wc -l <"$T/wrong.err")" -eq 1; echo $?)" \
    "state file of a different model (v7-world into the demo model): exit 1, one line ($(cat "$T/wrong.err"))"
head -c 100 "$T/other.state" >"$T/trunc.state"
printf 'Hello.\n' | run trunc --state-in "$T/trunc.state"
ok "$(test "$(rc trunc)" = 1 && test "$(wc -l <"$T/trunc.err")" -eq 1; echo $?)" "truncated state file: exit 1"
printf 'Hello.\n' | run nostate --state-in "$T/no-such.state"
ok "$(test "$(rc nostate)" = 1; echo $?)" "missing --state-in file: exit 1"
printf 'Hello.\n' | "$CHAT" --batch --model no-such-model-anywhere >"$T/nomodel.out" 2>"$T/nomodel.err"
echo $? >"$T/nomodel.rc"
ok "$(test "$(rc nomodel)" = 1 && test ! -s "$T/nomodel.out" && grep -q 'looked for' "$T/nomodel.err" &&
      test "$(wc -l <"$T/nomodel.err")" -eq 1; echo $?)" "missing model: exit 1, one line naming where it looked"
printf 'Hello.\n' | run usage --temperature hot
ok "$(test "$(rc usage)" = 2 && test ! -s "$T/usage.out" && grep -q Usage "$T/usage.err"; echo $?)" \
    "bad option value: exit 2, usage on stderr"
printf 'Hello.\n' | run usage2 --complete --jsonl
ok "$(test "$(rc usage2)" = 2; echo $?)" "--complete with --jsonl: exit 2"
printf 'Hello there.\n' | run verbose --verbose $G
ok "$(test "$(rc verbose)" = 0 && grep -q 'RWKV-7' "$T/verbose.err" && grep -q 'tokens/s' "$T/verbose.err" &&
      cmp -s "$T/verbose.out" "$T/r1.out"; echo $?)" "--verbose: diagnostics on stderr, stdout unchanged"
printf 'Hello.\n' | "$CHAT" --batch --verbose --max-tokens 1 >/dev/null 2>"$T/demo.err"
ok "$(grep -q 'tiny demo model: knows a little about Debian commands' "$T/demo.err"; echo $?)" \
    "--verbose with no --model says the demo model is in use"

# --- SIGINT --------------------------------------------------------------------
mkfifo "$T/fifo"
"$CHAT" --batch --model "$MODEL" -t 1 --jsonl --seed 9 --temperature 1 --top-p 1 --max-tokens 0 \
    --state-out "$T/int.state" <"$T/fifo" >"$T/int.out" 2>"$T/int.err" &
pid=$!
exec 3>"$T/fifo"
printf '{"role":"user","content":"Write a very long story."}\n' >&3
sleep 1
kill -INT $pid
wait $pid
echo $? >"$T/int.rc"
exec 3>&-
ok "$(test "$(rc int)" = 130; echo $?)" "SIGINT mid-reply: exit 130 (got $(rc int))"
if [ -n "$PY" ]; then
    $PY -c 'import json,sys; o=json.loads(open(sys.argv[1]).read()); sys.exit(0 if o["stop_reason"]=="interrupted" and o["reply_tokens"]>0 else 1)' "$T/int.out"
    ok $? "SIGINT: the JSON object is finished with stop reason \"interrupted\""
else
    grep -q '"stop_reason":"interrupted"' "$T/int.out"
    ok $? "SIGINT: the JSON object is finished with stop reason \"interrupted\""
fi
ok "$(test -s "$T/int.state"; echo $?)" "SIGINT: --state-out is written"
printf 'Hello.\n' | run afterint --state-in "$T/int.state" --max-tokens 4
ok "$(test "$(rc afterint)" = 0; echo $?)" "the state saved on SIGINT loads and the chat goes on"

# SIGINT while a long message is read: the message is dropped, the state
# saved is exactly the one without it.  The first reply comes back before
# the 1.2 MB message (seconds to feed) is written, so the signal lands in
# its prompt.
$PY -c '
import sys
w = ["river", "stone", "cloud", "paper", "light", "green"]
sys.stdout.write(" ".join(w[(i * 7 + i // 5) % 6] for i in range(200000)) + "\n")' >"$T/long.in" 2>/dev/null ||
    awk 'BEGIN { for (i = 0; i < 200000; i++) printf "%s ", (i % 2 ? "river" : "stone"); print "" }' >"$T/long.in"
printf 'Hello there.\n' | run first $SAMPLING --state-out "$T/first.state"
mkfifo "$T/fifo3"
"$CHAT" --batch --model "$MODEL" -t 1 $SAMPLING --state-out "$T/longint.state" \
    <"$T/fifo3" >"$T/longint.out" 2>"$T/longint.err" &
pid=$!
exec 5>"$T/fifo3"
printf 'Hello there.\n' >&5
i=0
while [ ! -s "$T/longint.out" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
cat "$T/long.in" >&5
sleep 0.5
kill -INT $pid
wait $pid
echo $? >"$T/longint.rc"
exec 5>&-
ok "$(test "$(rc longint)" = 130 &&
      grep -Eqx 'rwkv-chat: stdin:2: message not sent: interrupted after [0-9]+ of [0-9]+ prompt tokens \(the conversation is as before it\)' "$T/longint.err" &&
      test "$(wc -l <"$T/longint.err")" = 1; echo $?)" \
    "SIGINT while a long message is read: exit 130, one line saying it was not sent ($(cat "$T/longint.err"))"
ok "$(cmp -s "$T/first.out" "$T/longint.out" && cmp -s "$T/first.state" "$T/longint.state"; echo $?)" \
    "SIGINT while a long message is read: --state-out is byte for byte the state without it"

# SIGTERM there: rwkv-chat dies of it as before, writes no state.
"$CHAT" --batch --model "$MODEL" -t 1 $SAMPLING --state-out "$T/longterm.state" \
    <"$T/long.in" >/dev/null 2>"$T/longterm.err" &
pid=$!
sleep 0.5
kill -TERM $pid
wait $pid
echo $? >"$T/longterm.rc"
ok "$(test "$(rc longterm)" = 143 && test ! -e "$T/longterm.state" &&
      test -z "$(find "$T" -name 'longterm.state.tmp*')"; echo $?)" \
    "SIGTERM while a long message is read: status 143, no state file, no temporary (got $(rc longterm))"

# --complete: the same for a raw prompt.
"$CHAT" --batch --model "$MODEL" -t 1 --complete <"$T/long.in" >/dev/null 2>"$T/longcomp.err" &
pid=$!
sleep 0.5
kill -INT $pid
wait $pid
echo $? >"$T/longcomp.rc"
ok "$(test "$(rc longcomp)" = 130 &&
      grep -Eqx 'rwkv-chat: stdin: prompt not sent: interrupted after [0-9]+ of [0-9]+ prompt tokens' "$T/longcomp.err"; echo $?)" \
    "--complete: SIGINT while the prompt is read: exit 130, says it was not sent ($(cat "$T/longcomp.err"))"

# Streaming: an endless reply shows up on stdout while it is being generated.
mkfifo "$T/fifo2"
"$CHAT" --batch --model "$MODEL" -t 1 --seed 9 --temperature 1 --top-p 1 --max-tokens 0 \
    <"$T/fifo2" >"$T/stream.out" 2>"$T/stream.err" &
pid=$!
exec 4>"$T/fifo2"
printf 'Write a very long story.\n' >&4
i=0
while [ ! -s "$T/stream.out" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
size1=$(wc -c <"$T/stream.out")
sleep 0.5
size2=$(wc -c <"$T/stream.out")
kill -INT $pid
wait $pid
echo $? >"$T/stream.rc"
exec 4>&-
ok "$(test "$size1" -gt 0 && test "$size2" -gt "$size1" && test "$(rc stream)" = 130; echo $?)" \
    "replies stream: stdout grows token by token before the reply ends ($size1 then $size2 bytes)"

tap_done
