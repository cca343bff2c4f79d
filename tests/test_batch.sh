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
printf '{"role":"assistant","content":"x"}\n' | run jrole --jsonl
ok "$(test "$(rc jrole)" = 1 && grep -q 'stdin:1: role must be "user" or "system"' "$T/jrole.err"; echo $?)" \
    "role other than user or system: exit 1"
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
# The random fixture model ends its reply by itself after a thousand or so
# tokens, which a fast CPU reaches within a second: when the reply ended
# before the signal came (stop reason "end"; the signal then ends the wait
# for the next line), try again sooner.
mkfifo "$T/fifo"
for delay in 1 0.5 0.25 0.1; do
    rm -f "$T/int.state"
    "$CHAT" --batch --model "$MODEL" -t 1 --jsonl --seed 9 --temperature 1 --top-p 1 --max-tokens 0 \
        --state-out "$T/int.state" <"$T/fifo" >"$T/int.out" 2>"$T/int.err" &
    pid=$!
    exec 3>"$T/fifo"
    printf '{"role":"user","content":"Write a very long story."}\n' >&3
    sleep $delay
    kill -INT $pid 2>/dev/null
    wait $pid
    echo $? >"$T/int.rc"
    exec 3>&-
    if ! grep -q '"stop_reason":"end"' "$T/int.out"; then
        break
    fi
done
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

# --- signals while a long prompt is read or stdout is blocked ---------------------
# A shell starts background jobs with SIGINT ignored; BG runs rwkv-chat the
# way a terminal would.
# (INT, HUP and TERM as the defaults: a CI run under nohup would otherwise
# pass SIGHUP on ignored, which rwkv-chat rightly keeps)
if env --default-signal=INT,HUP,TERM true 2>/dev/null; then BG="env --default-signal=INT,HUP,TERM"; else BG=; fi
# RWKV_CHAT_BATCH_PROMPT_DELAY_MS (a test hook) pauses before each piece of
# a long prompt, and --verbose says when the first piece is read: a signal
# sent after that line lands in the prompt, however fast the machine.
SLOW="env RWKV_CHAT_BATCH_PROMPT_DELAY_MS=1000"
READING='^rwkv-chat: reading a prompt of [0-9]+ tokens in pieces of 512$'
NOT_SENT='rwkv-chat: stdin:2: message not sent: interrupted after [0-9]+ of [0-9]+ prompt tokens \(the conversation is as before it\)'
# the lines --verbose adds
VERBOSE='^rwkv-chat: .*(load: |RWKV-7, |conversion cache: |prompt tokens in |reading a prompt of |state saved to )'
# wait_for FILE REGEX SECONDS: waits until a line of FILE matches.
wait_for() {
    i=0
    while ! grep -Eq "$2" "$1" 2>/dev/null && [ $i -lt $(($3 * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    grep -Eq "$2" "$1" 2>/dev/null
}
# blocked_on_pipe PID pipe_read|pipe_write: the process waits to read or
# write a pipe (Linux: [anon_]pipe_read, [anon_]pipe_write; older kernels
# say pipe_wait for both)
blocked_on_pipe() {
    case "$(cat /proc/$1/wchan 2>/dev/null)" in *"$2"|pipe_wait) return 0 ;; esac
    return 1
}
# quiet FILE: FILE less the --verbose lines
quiet() { grep -Ev "$VERBOSE" "$1"; }
# A message of about 3000 tokens (6 pieces).
awk 'BEGIN { for (i = 0; i < 3000; i++) printf "%s ", (i % 3 ? "river" : "stone"); print "" }' >"$T/long.in"
printf 'Hello there.\n' | run first $SAMPLING --state-out "$T/first.state"

# long_run NAME SIGNAL [FIRST-LINE-PREFIX]: "Hello there.", then the long
# message (after the prefix, e.g. "/edit ") through a FIFO; SIGNAL once its
# prompt is being read.  Status in $T/NAME.rc.
long_run() {
    mkfifo "$T/$1.fifo"
    $SLOW $BG "$CHAT" --batch --verbose --model "$MODEL" -t 1 $SAMPLING --state-out "$T/$1.state" \
        <"$T/$1.fifo" >"$T/$1.out" 2>"$T/$1.err" &
    pid=$!
    exec 5>"$T/$1.fifo"
    { printf 'Hello there.\n%s' "$3"; cat "$T/long.in"; } >&5
    wait_for "$T/$1.err" "$READING" 30
    kill -"$2" $pid
    wait_pid $pid 30
    echo $status >"$T/$1.rc"
    exec 5>&-
}

long_run longint INT
ok "$(test "$(rc longint)" = 130 && quiet "$T/longint.err" | grep -Eqx "$NOT_SENT" &&
      test "$(quiet "$T/longint.err" | wc -l)" = 1; echo $?)" \
    "SIGINT while a long message is read: exit 130, one line saying it was not sent ($(rc longint): $(quiet "$T/longint.err"))"
ok "$(cmp -s "$T/first.out" "$T/longint.out" && cmp -s "$T/first.state" "$T/longint.state"; echo $?)" \
    "SIGINT while a long message is read: --state-out is byte for byte the state without it"

long_run editint INT '/edit '
ok "$(test "$(rc editint)" = 130 && quiet "$T/editint.err" | grep -Eqx "$NOT_SENT" &&
      test "$(quiet "$T/editint.err" | wc -l)" = 1; echo $?)" \
    "SIGINT while /edit TEXT's long prompt is read: exit 130, one line saying it was not sent ($(rc editint): $(quiet "$T/editint.err"))"
ok "$(cmp -s "$T/first.out" "$T/editint.out" && cmp -s "$T/first.state" "$T/editint.state"; echo $?)" \
    "SIGINT during /edit TEXT: the exchange it would replace is kept (state byte for byte as before)"

# SIGTERM there: rwkv-chat dies of it at once, says nothing, writes no state.
long_run longterm TERM
ok "$(test "$(rc longterm)" = 143 && test -z "$(quiet "$T/longterm.err")" &&
      test ! -e "$T/longterm.state" && test -z "$(find "$T" -name '.longterm.state.*.tmp')"; echo $?)" \
    "SIGTERM while a long message is read: status 143 at once, nothing said, no state file ($(rc longterm): $(quiet "$T/longterm.err"))"
long_run longhup HUP
ok "$(test "$(rc longhup)" = 129 && test -z "$(quiet "$T/longhup.err")" && test ! -e "$T/longhup.state"; echo $?)" \
    "SIGHUP likewise: status 129, no state file (got $(rc longhup))"

# --complete: the same for a raw prompt.
$SLOW $BG "$CHAT" --batch --verbose --model "$MODEL" -t 1 --complete <"$T/long.in" >/dev/null \
    2>"$T/longcomp.err" &
pid=$!
wait_for "$T/longcomp.err" "$READING" 30
kill -INT $pid
wait_pid $pid 30
ok "$(test "$status" = 130 && quiet "$T/longcomp.err" |
      grep -Eqx 'rwkv-chat: stdin: prompt not sent: interrupted after [0-9]+ of [0-9]+ prompt tokens' &&
      test "$(quiet "$T/longcomp.err" | wc -l)" = 1; echo $?)" \
    "--complete: SIGINT while the prompt is read: exit 130, says it was not sent ($status: $(quiet "$T/longcomp.err"))"

# A signal while stdin is still open: it does not wait for the rest of the
# input, and what was read of a line or block is dropped.  (rwkv-chat has
# read the first bytes once it waits for more: its handlers are set before
# the first read.)
# open_run NAME SIGNAL TEXT [ARGS...]: writes TEXT, keeps stdin open, sends
# SIGNAL once rwkv-chat waits for more.  Status in $T/NAME.rc.
open_run() {
    name=$1 sig=$2 text=$3
    shift 3
    mkfifo "$T/$name.fifo"
    $BG "$CHAT" --batch --model "$MODEL" -t 1 "$@" <"$T/$name.fifo" >"$T/$name.out" \
        2>"$T/$name.err" &
    pid=$!
    exec 5>"$T/$name.fifo"
    printf "$text" >&5
    i=0
    while ! blocked_on_pipe $pid pipe_read && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    kill -$sig $pid
    wait_pid $pid 10
    echo $status >"$T/$name.rc"
    exec 5>&-
}
open_run compINT INT 'The first part of a prompt' --complete
open_run compTERM TERM 'The first part of a prompt' --complete
ok "$(test "$(rc compINT)" = 130 && test ! -s "$T/compINT.out" && test ! -s "$T/compINT.err" &&
      test "$(rc compTERM)" = 143 && test ! -s "$T/compTERM.err"; echo $?)" \
    "--complete: SIGINT (130) and SIGTERM (143) while stdin is still open end it at once (got $(rc compINT), $(rc compTERM))"
printf '' | run empty0 $SAMPLING --state-out "$T/empty0.state"
open_run jpart INT '{"role":"user","con' --jsonl $SAMPLING --state-out "$T/jpart.state"
ok "$(test "$(rc jpart)" = 130 && test ! -s "$T/jpart.out" && test ! -s "$T/jpart.err" &&
      cmp -s "$T/jpart.state" "$T/empty0.state"; echo $?)" \
    "--jsonl: SIGINT in the middle of a line drops it: 130, no 'malformed JSON', state as without it (got $(rc jpart): $(head -c 200 "$T/jpart.err"))"
open_run bpart INT '"""\nfirst line\nsecond li' $SAMPLING --state-out "$T/bpart.state"
ok "$(test "$(rc bpart)" = 130 && test ! -s "$T/bpart.out" && test ! -s "$T/bpart.err" &&
      cmp -s "$T/bpart.state" "$T/empty0.state"; echo $?)" \
    "SIGINT inside an open \"\"\" block drops it: 130, nothing sent, state as without it (got $(rc bpart): $(head -c 200 "$T/bpart.err"))"

# A signal while a reply waits for a reader that does not read: SIGINT
# stops it (130, no I/O error, state written), SIGTERM ends it (143).  The
# reader shrinks the pipe to 4 kB (Linux F_SETPIPE_SZ) so that it fills
# quickly, and reads nothing until $T/drain$sig exists.
if [ -n "$PY" ]; then
    for sig in INT TERM; do
        mkfifo "$T/out$sig.fifo" "$T/in$sig.fifo"
        $BG "$CHAT" --batch --model "$MODEL" -t 1 --seed 9 --temperature 1 --top-p 1 \
            --max-tokens 0 --state-out "$T/out$sig.state" <"$T/in$sig.fifo" >"$T/out$sig.fifo" \
            2>"$T/out$sig.err" &
        pid=$!
        $PY -c '
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
try:
    fcntl.fcntl(fd, 1031, 4096)     # F_SETPIPE_SZ
except OSError:
    pass
while not os.path.exists(sys.argv[2]):
    time.sleep(0.05)
while os.read(fd, 65536):
    pass' "$T/out$sig.fifo" "$T/drain$sig" &
        reader=$!
        exec 5>"$T/in$sig.fifo"
        i=0
        while [ $i -lt 40 ]; do echo 'Write a very long story.'; i=$((i + 1)); done >&5
        # until the pipe is full and the write blocks (or 20 s)
        i=0
        while ! blocked_on_pipe $pid pipe_write && [ $i -lt 200 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        [ $i -lt 200 ] || echo "# $sig: the reply did not block on stdout ($(cat /proc/$pid/wchan 2>/dev/null))"
        kill -$sig $pid
        sleep 0.2
        : >"$T/drain$sig"
        wait_pid $pid 20
        eval "st_$sig=\$status"
        wait $reader
        exec 5>&-
    done
    ok "$(test "$st_INT" = 130 && test ! -s "$T/outINT.err" && test -s "$T/outINT.state"; echo $?)" \
        "SIGINT while stdout is blocked: exit 130, no I/O error, state written (got $st_INT: $(head -c 200 "$T/outINT.err"))"
    ok "$(test "$st_TERM" = 143 && test ! -s "$T/outTERM.err" && test ! -e "$T/outTERM.state"; echo $?)" \
        "SIGTERM while stdout is blocked: status 143 at once, nothing said, no state (got $st_TERM: $(head -c 200 "$T/outTERM.err"))"
else
    skip "python3 missing: SIGINT while stdout is blocked"
    skip "python3 missing: SIGTERM while stdout is blocked"
fi

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
