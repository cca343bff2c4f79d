#!/bin/sh
# test_badinput_batch.sh - rwkv-chat --batch against bad input (issue 10):
# invalid UTF-8, 1 MB lines, a state file of another model, and Ctrl-C
# (SIGINT) while loading, while feeding the prompt, during the reply and
# around the --state-out save.  Each case checks the exit status, the exact
# one-line error, and that no input file was modified or lost (checksums).
B=${TOP_BUILDDIR:-.}
S=${SHARED_DIR:-../shared}
CHAT="$B/rwkv-chat"
MODEL="$S/fixtures/models/v7-world.pth"
T="$B/tests/tmp/badinput.$$"
# (tap.sh for wait_pid; this file numbers its own results)
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
n=0
fail=0
ok() { # ok STATUS DESCRIPTION
    n=$((n + 1))
    if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi
}
# same FILE EXPECTED_TEXT: the file holds exactly that text (one line)
same() {
    printf '%s\n' "$2" >"$T/expected"
    if cmp -s "$1" "$T/expected"; then return 0; fi
    echo "# got:  $(head -c 300 "$1" | head -n 2)" >&2
    echo "# want: $(head -c 300 "$T/expected")" >&2
    return 1
}
sums() { cksum "$@" 2>&1; }
# run NAME [ARGS...] < input
run() {
    name=$1; shift
    "$CHAT" --batch --model "$MODEL" -t 1 "$@" >"$T/$name.out" 2>"$T/$name.err"
    echo $? >"$T/$name.rc"
}
rc() { cat "$T/$1.rc"; }

if [ ! -f "$MODEL" ]; then
    echo "1..0 # SKIP $MODEL not found"
    exit 0
fi
if command -v python3 >/dev/null 2>&1; then PY=python3; else PY=; fi
mkdir -p "$T" || exit 1
trap 'rm -rf "$T"' EXIT
SAMPLING="--seed 7 --temperature 1 --top-p 0.9"
# A shell starts background jobs with SIGINT ignored; a user's Ctrl-C finds
# it at its default.  BG runs rwkv-chat the way a terminal would.
if env --default-signal=INT true 2>/dev/null; then
    BG="env --default-signal=INT"
else
    BG=
fi
now() { date +%s.%N; }
model_sum=$(sums "$MODEL")

# --- invalid UTF-8 ---------------------------------------------------------------
printf 'caf\351 \377\376 \300\257 \355\240\200 \364\220\200\200 end\n' >"$T/bad.in"
cp "$T/bad.in" "$T/bad.orig"
run utf8 $SAMPLING --max-tokens 8 <"$T/bad.in"
ok "$(test "$(rc utf8)" = 0 && test ! -s "$T/utf8.err" && test -s "$T/utf8.out"; echo $?)" \
    "invalid UTF-8 message (Latin-1, overlong, surrogate, > U+10FFFF): a reply, exit 0"
printf '{"role":"user","content":"caf\351 \377 ok"}\n' >"$T/badjson.in"
run utf8j $SAMPLING --max-tokens 8 --jsonl <"$T/badjson.in"
if [ -n "$PY" ]; then
    $PY -c 'import json,sys; o=json.loads(open(sys.argv[1],"rb").read().decode("utf-8")); sys.exit(0 if o["role"]=="assistant" else 1)' "$T/utf8j.out" 2>/dev/null
    st=$?
else
    grep -q '"role":"assistant"' "$T/utf8j.out"
    st=$?
fi
ok "$(test "$(rc utf8j)" = 0 && test "$st" = 0; echo $?)" \
    "--jsonl: a JSON string holding invalid UTF-8 is accepted; the reply is valid UTF-8 JSON"
printf '\377\376{"role":"user"}\n' | run utf8k --jsonl --max-tokens 4
ok "$(test "$(rc utf8k)" = 1 && same "$T/utf8k.err" \
    "rwkv-chat: stdin:1: malformed JSON: unexpected character"; echo $?)" \
    "--jsonl: a line starting with invalid UTF-8 bytes: exit 1, exact error"
ok "$(cmp -s "$T/bad.in" "$T/bad.orig"; echo $?)" "the input file is untouched"

# --- NUL bytes (issue 17) --------------------------------------------------------
# A NUL byte would end the C string: the line is refused, never cut short.
printf 'Hi.\nabc\000def\nnever read\n' >"$T/nul.in"
run nul $SAMPLING --max-tokens 2 --state-out "$T/nul.state" <"$T/nul.in"
printf 'Hi.\n' | run nulref $SAMPLING --max-tokens 2 --state-out "$T/nulref.state"
ok "$(test "$(rc nul)" = 1 && same "$T/nul.err" \
    "rwkv-chat: stdin:2: NUL byte at byte 4: the line is refused" &&
    cmp -s "$T/nul.out" "$T/nulref.out" && test -s "$T/nulref.out" && test ! -e "$T/nul.state"; echo $?)" \
    "a line holding a NUL byte: exit 1, exact error naming the line; the line before it answered, no --state-out (as for any input error)"
printf '"""\nab\n\000cd\n"""\n' | run nulblock --max-tokens 2
ok "$(test "$(rc nulblock)" = 1 && same "$T/nulblock.err" \
    "rwkv-chat: stdin:3: NUL byte at byte 1: the line is refused" && test ! -s "$T/nulblock.out"; echo $?)" \
    "a NUL byte inside a \"\"\" block: exit 1, exact error naming its line, nothing sent"
printf '/set temperature 0.5\000x\n' | run nulcmd --max-tokens 2
ok "$(test "$(rc nulcmd)" = 1 && same "$T/nulcmd.err" \
    "rwkv-chat: stdin:1: NUL byte at byte 21: the line is refused"; echo $?)" \
    "a /command holding a NUL byte: exit 1, exact error, not run"
printf '{"role":"user","content":"abc\000def"}\n' | run nulj --jsonl --max-tokens 2
ok "$(test "$(rc nulj)" = 1 && same "$T/nulj.err" \
    "rwkv-chat: stdin:1: NUL byte at byte 30: the line is refused" && test ! -s "$T/nulj.out"; echo $?)" \
    "--jsonl: a raw NUL byte in the line: exit 1, exact error, nothing sent"
printf '{"role":"user","content":"Hi."}\n{"role":"user","content":"abc\\u0000def"}\n' |
    run nulu --jsonl $SAMPLING --max-tokens 2
ok "$(test "$(rc nulu)" = 1 && same "$T/nulu.err" \
    "rwkv-chat: stdin:2: \"content\" holds a NUL character (\\u0000): the message is refused" &&
    test "$(wc -l <"$T/nulu.out")" = 1; echo $?)" \
    "--jsonl: \\u0000 in \"content\": exit 1, exact error naming line 2, only line 1 answered"
printf 'abc\000def' | run nulc --complete --verbose --max-tokens 1
printf 'abc' | run nulc2 --complete --verbose --max-tokens 1
ok "$(test "$(rc nulc)" = 0 && test "$(rc nulc2)" = 0 &&
    test "$(sed -n 's/.* \([0-9]*\) prompt tokens.*/\1/p' "$T/nulc.err")" -gt \
         "$(sed -n 's/.* \([0-9]*\) prompt tokens.*/\1/p' "$T/nulc2.err")"; echo $?)" \
    "--complete: a NUL byte is part of the prompt (more prompt tokens than the text before it)"

# --- errors name the input line (issue 17) -------------------------------------------
printf 'Hi.\n"""\n"""\n' | run emptyblock $SAMPLING --max-tokens 2
ok "$(test "$(rc emptyblock)" = 1 && same "$T/emptyblock.err" "rwkv-chat: stdin:2: empty message"; echo $?)" \
    "an empty \"\"\" block: exit 1, the error names the line the block starts on"
printf '{"role":"user","content":""}\n' | run emptyj --jsonl --max-tokens 2
ok "$(test "$(rc emptyj)" = 1 && same "$T/emptyj.err" "rwkv-chat: stdin:1: empty message"; echo $?)" \
    "--jsonl: empty \"content\": exit 1, the error names the line"

# --- non-finite and out-of-range knobs in --jsonl (json-c reads NaN, Infinity) ---
good=0
for case in 'temperature NaN' 'temperature Infinity' 'temperature -Infinity' 'temperature 11' \
            'top_p NaN' 'top_p 1.5' 'decay -Infinity' 'max_tokens NaN' 'max_tokens 2.5' 'top_k -1'; do
    k=${case% *}; v=${case#* }
    printf '{"role":"user","content":"hi","%s":%s}\n' "$k" "$v" | run jknob --jsonl --max-tokens 4
    case $k in
    temperature) want='a number from 0 to 10' ;;
    top_p) want='a number from 0 to 1' ;;
    decay) want='a number from 0 to 1' ;;
    max_tokens) want='a whole number from 0 to 1000000000' ;;
    top_k) want='a whole number from 0 to 1048576' ;;
    esac
    if test "$(rc jknob)" = 1 && test ! -s "$T/jknob.out" &&
        same "$T/jknob.err" "rwkv-chat: stdin:1: \"$k\" must be $want"; then
        good=$((good + 1))
    else
        echo "# $case: status $(rc jknob)"
    fi
done
ok "$(test "$good" = 10; echo $?)" \
    "--jsonl: NaN, Infinity and out-of-range knobs refused with the knob's range, nothing sent ($good of 10)"

# --- 1 MB lines -------------------------------------------------------------------
head -c 1048576 /dev/zero | tr '\0' 'x' >"$T/x1m"
{ printf '/'; cat "$T/x1m"; echo; } >"$T/cmd1m.in"
run cmd1m <"$T/cmd1m.in"
printf "rwkv-chat: stdin:1: unknown command '/%s...' (/help lists them)\n" \
    "$(head -c 39 "$T/x1m")" >"$T/cmd1m.want"
ok "$(test "$(rc cmd1m)" = 1 && cmp -s "$T/cmd1m.err" "$T/cmd1m.want" && test ! -s "$T/cmd1m.out"; echo $?)" \
    "a 1 MB unknown /command: exit 1, one line quoting its first 40 bytes"
{ printf '{"role":"user","content":"'; cat "$T/x1m"; echo; } | run json1m --jsonl
ok "$(test "$(rc json1m)" = 1 && same "$T/json1m.err" \
    "rwkv-chat: stdin:1: malformed JSON: unexpected end of line"; echo $?)" \
    "--jsonl: a 1 MB unterminated string: exit 1, exact error"
{ echo '{"role":"user","content":"Hi."}'; printf '{"role":"user","content":"hi"}'; cat "$T/x1m"; echo; } | run json1m2 --jsonl --max-tokens 2 $SAMPLING
ok "$(test "$(rc json1m2)" = 1 && same "$T/json1m2.err" \
    "rwkv-chat: stdin:2: malformed JSON: text after the object"; echo $?)" \
    "--jsonl: 1 MB of text after the object: exit 1, exact error naming line 2"
# a 100 kB message is fed (about 100k tokens) and replied to
head -c 102400 /dev/zero | tr '\0' 'y' >"$T/y100k"
{ cat "$T/y100k"; echo; } >"$T/msg100k.in"
run msg100k $SAMPLING --max-tokens 3 --state-out "$T/msg100k.state" <"$T/msg100k.in"
ok "$(test "$(rc msg100k)" = 0 && test ! -s "$T/msg100k.err" && test -s "$T/msg100k.state"; echo $?)" \
    "a 100 kB one-line message: fed, replied, state saved, exit 0"

# --- config files that are not text files (issue 17) --------------------------------
mkfifo "$T/config.fifo"
printf 'Hi.\n' | run cfifo --config "$T/config.fifo" --max-tokens 2
ok "$(test "$(rc cfifo)" = 1 && same "$T/cfifo.err" \
    "rwkv-chat: $T/config.fifo: a FIFO, not a config file" && test ! -s "$T/cfifo.out"; echo $?)" \
    "--config naming a FIFO nobody writes to: exit 1 at once, exact error (no wait)"
printf 'Hi.\n' | run czero --config /dev/zero --max-tokens 2
ok "$(test "$(rc czero)" = 1 && same "$T/czero.err" \
    "rwkv-chat: /dev/zero: a character device, not a config file"; echo $?)" \
    "--config /dev/zero: exit 1 at once, exact error"
printf 'x\n' >"$T/notadir"
printf 'Hi.\n' | XDG_CONFIG_HOME="$T/notadir" run cnodir $SAMPLING --max-tokens 2
ok "$(test "$(rc cnodir)" = 0 && test -s "$T/cnodir.out" && same "$T/cnodir.err" \
    "rwkv-chat: warning: $T/notadir/rwkv-chat/config: Not a directory (config file skipped)"; echo $?)" \
    "a default config that cannot be opened: --batch still replies, one warning, exit 0"

# --- an address-space limit (issue 17) ---------------------------------------------
# OpenBLAS 0.3.21 retried its 128 MiB buffer allocation forever under ulimit -v:
# each run must end by itself (timeout is only a guard against a hang) with a
# reply, or with status 1 and a one-line message.
if ldd "$CHAT" 2>/dev/null | grep -q libasan; then
    skip_limits="AddressSanitizer build: it reserves terabytes of address space"
else
    skip_limits=
fi
printf 'Hello there, how are you today? Tell me something.\n' >"$T/limit.in"
for lim in 300000 150000; do
    for which in demo fixture; do
        if [ -n "$skip_limits" ]; then
            n=$((n + 1))
            echo "ok $n # SKIP $skip_limits"
            continue
        fi
        if [ $which = demo ]; then m=; else m="--model $MODEL"; fi
        (ulimit -v $lim && exec timeout 60 "$CHAT" --batch $m -t 2 --seed 1 --max-tokens 4) \
            <"$T/limit.in" >"$T/limit.out" 2>"$T/limit.err"
        st=$?
        ok "$( { test $st = 0 && test -s "$T/limit.out" && test ! -s "$T/limit.err"; } ||
               { test $st = 1 && test "$(wc -l <"$T/limit.err")" = 1; }; echo $?)" \
            "ulimit -v $lim, $which model, 2 threads: ends by itself with a reply or one message (status $st: $(head -c 200 "$T/limit.err"))"
    done
done

# --- a state file of another model -----------------------------------------------
printf 'Hi.\n' | "$CHAT" --batch -t 1 --max-tokens 1 --state-out "$T/demo.state" >/dev/null 2>&1
demo_sum=$(sums "$T/demo.state")
run swap --state-in "$T/demo.state" </dev/null
# describe MODEL: "RWKV-7, 2 layers x 64, vocab 65536, fingerprint ..." from rwkv-tool info
describe() {
    "$B/rwkv-tool" info "$1" 2>/dev/null | awk -F': *' '
        $1 == "version" { v = $2 } $1 == "layers" { l = $2 } $1 == "embedding" { e = $2 }
        $1 == "vocab" { n = $2 } $1 == "fingerprint" { f = $2 }
        END { printf "%s, %s layers x %s, vocab %s, fingerprint %s", v, l, e, n, f }'
}
demo_model=$("$CHAT" --batch --verbose -t 1 --max-tokens 1 </dev/null 2>&1 |
    sed -n 's/^rwkv-chat: \(.*rwkv7-tiny-chat.pth\): RWKV.*/\1/p' | head -n 1)
ok "$(test "$(rc swap)" = 1 && same "$T/swap.err" "rwkv-chat: $T/demo.state: saved with another model ($(describe "$demo_model")), not this one ($(describe "$MODEL")); it belongs to the model rwkv7-tiny-chat.pth"; echo $?)" \
    "--state-in of the demo model's state with v7-world.pth: exit 1, exact error naming the model it belongs to"
ok "$(test "$(sums "$T/demo.state")" = "$demo_sum"; echo $?)" "the refused state file is untouched"
run swapout --state-in "$T/demo.state" --state-out "$T/demo.state" </dev/null
ok "$(test "$(rc swapout)" = 1 && test "$(sums "$T/demo.state")" = "$demo_sum"; echo $?)" \
    "refused --state-in FILE with --state-out FILE: exit 1, FILE not overwritten"
: >"$T/empty.state"
run empty --state-in "$T/empty.state" </dev/null
ok "$(test "$(rc empty)" = 1 && same "$T/empty.err" \
    "rwkv-chat: $T/empty.state: not an rwkv-chat state file (no RWKVSTAT magic)"; echo $?)" \
    "--state-in of an empty file: exit 1, exact error"

# --- Ctrl-C while loading -----------------------------------------------------------
# The vocabulary is a FIFO nobody writes: rwkv-chat waits inside the loader.
mkfifo "$T/vocab.fifo"
cp "$T/msg100k.state" "$T/keep.state"
keep_sum=$(sums "$T/keep.state")
if [ -n "$BG" ]; then
    $BG "$CHAT" --batch --model "$MODEL" -t 1 --vocab "$T/vocab.fifo" --state-out "$T/keep.state" \
        </dev/null >"$T/load.out" 2>"$T/load.err" &
    pid=$!
    sleep 0.5
    kill -INT $pid
    wait_pid $pid 10
    ok "$(test "$status" = 130 && test ! -s "$T/load.out"; echo $?)" \
        "SIGINT while loading: rwkv-chat ends by SIGINT (status $status), prints nothing"
else
    n=$((n + 1))
    echo "ok $n # SKIP env --default-signal missing: background jobs ignore SIGINT"
fi
ok "$(test "$(sums "$T/keep.state")" = "$keep_sum"; echo $?)" \
    "SIGINT while loading: the --state-out file is untouched"

# --- Ctrl-C while feeding a long prompt ---------------------------------------------
# (100 kB: the prompt is fed in pieces of 512 tokens; SIGINT stops it
# within one piece and the message is not sent.  The test hook
# RWKV_CHAT_BATCH_PROMPT_DELAY_MS pauses before each piece, and --verbose
# says when the first is read: the signal is sent after that line.)
cp "$T/msg100k.in" "$T/feed.in"
cp "$T/keep.state" "$T/feed.state"
run nofeed $SAMPLING --max-tokens 50 --state-out "$T/nofeed.state" </dev/null
env RWKV_CHAT_BATCH_PROMPT_DELAY_MS=1000 $BG "$CHAT" --batch --verbose --model "$MODEL" -t 1 \
    $SAMPLING --max-tokens 50 --state-out "$T/feed.state" <"$T/feed.in" >"$T/feed.out" 2>"$T/feed.err" &
pid=$!
i=0
while ! grep -q '^rwkv-chat: reading a prompt of' "$T/feed.err" && [ $i -lt 300 ]; do
    sleep 0.1
    i=$((i + 1))
done
kill -INT $pid
t0=$(now)
wait_pid $pid 60
echo "# exit $(echo "$(now) - $t0" | bc 2>/dev/null) s after SIGINT"
grep -v '^rwkv-chat: .*\(load: \|RWKV-7, \|conversion cache: \|reading a prompt of \|state saved to \)' \
    "$T/feed.err" >"$T/feed.quiet"
ok "$(test "$status" = 130 && test ! -s "$T/feed.out" && test "$(wc -l <"$T/feed.quiet")" = 1 &&
      grep -qx 'rwkv-chat: stdin:1: message not sent: interrupted after [0-9]* of [0-9]* prompt tokens (the conversation is as before it)' "$T/feed.quiet"; echo $?)" \
    "SIGINT while feeding a 100 kB message: exit 130 (got $status), one line saying it was not sent ($(head -c 200 "$T/feed.quiet"))"
ok "$(test "$(rc nofeed)" = 0 && cmp -s "$T/feed.state" "$T/nofeed.state"; echo $?)" \
    "SIGINT while feeding: --state-out is byte for byte the state of a run without the message"
run feedload --state-in "$T/feed.state" --max-tokens 2 $SAMPLING </dev/null
ok "$(test "$(rc feedload)" = 0; echo $?)" \
    "SIGINT while feeding: the --state-out file is a complete state file that loads"

# --- Ctrl-C while /load reads a state file's intro (issue 17 item 5) -----------------
# Loading rebuilds the /reset base by feeding the saved template's intro: a
# long one is read in pieces, and SIGINT stops it like a long prompt.
i=0
while [ $i -lt 400 ]; do printf 'The shell reads each line, then runs it. '; i=$((i + 1)); done >"$T/long.txt"
run longsave --prompt "$T/long.txt" $SAMPLING --max-tokens 2 --state-out "$T/long.state" </dev/null
printf '/load %s\nHello.\n' "$T/long.state" >"$T/load.in"
env RWKV_CHAT_BATCH_PROMPT_DELAY_MS=1000 $BG "$CHAT" --batch --verbose --model "$MODEL" -t 1 \
    $SAMPLING --max-tokens 4 <"$T/load.in" >"$T/load.out" 2>"$T/load.err" &
pid=$!
i=0
while ! grep -q '^rwkv-chat: reading a prompt of' "$T/load.err" && [ $i -lt 300 ]; do
    sleep 0.1
    i=$((i + 1))
done
kill -INT $pid
wait_pid $pid 60
grep -v '^rwkv-chat: .*\(load: \|RWKV-7, \|conversion cache: \|reading a prompt of \)' \
    "$T/load.err" >"$T/load.quiet"
ok "$(test "$(rc longsave)" = 0 && test "$status" = 130 && test ! -s "$T/load.out" &&
      test "$(wc -l <"$T/load.quiet")" = 1 &&
      grep -qx "rwkv-chat: stdin:1: $T/long.state: reading the saved intro: interrupted after [0-9]* of [0-9]* prompt tokens; nothing changed" "$T/load.quiet"; echo $?)" \
    "SIGINT while /load reads a long saved intro: exit 130 (got $status), one line, the next message not sent ($(head -c 200 "$T/load.quiet"))"

# --- Ctrl-C during the reply (plain text) --------------------------------------------
mkfifo "$T/in.fifo"
cp "$T/keep.state" "$T/reply.state"
$BG "$CHAT" --batch --model "$MODEL" -t 1 --seed 3 --temperature 1 --top-p 1 --max-tokens 0 \
    --state-out "$T/reply.state" <"$T/in.fifo" >"$T/reply.out" 2>"$T/reply.err" &
pid=$!
exec 3>"$T/in.fifo"
printf 'Tell me a very long story.\n' >&3
sleep 1
kill -INT $pid
wait_pid $pid 20
exec 3>&-
ok "$(test "$status" = 130 && test -s "$T/reply.out" && test ! -s "$T/reply.err"; echo $?)" \
    "SIGINT during the reply: exit 130 (got $status), partial reply on stdout, no error"
ok "$(test "$(sums "$T/reply.state")" != "$keep_sum"; echo $?)" \
    "SIGINT during the reply: --state-out replaced the old file"
run replyload --state-in "$T/reply.state" --max-tokens 2 $SAMPLING </dev/null
ok "$(test "$(rc replyload)" = 0; echo $?)" "the state saved after SIGINT loads"

# --- Ctrl-C at random moments, the save included -------------------------------------
# Each run either finishes (0), or stops (130) before or after its save; the
# --state-out file is then the old one or a complete new one, never torn.
printf 'One.\nTwo.\nThree.\n' >"$T/three.in"
cp "$T/keep.state" "$T/rand.state"
good=0
runs=0
for delay in 0 0.01 0.03 0.05 0.08 0.12 0.16 0.2 0.25 0.3 0.4 0.5; do
    before=$(sums "$T/rand.state")
    $BG "$CHAT" --batch --model "$MODEL" -t 1 $SAMPLING --max-tokens 6 --state-out "$T/rand.state" \
        <"$T/three.in" >"$T/rand.out" 2>"$T/rand.err" &
    pid=$!
    sleep $delay
    kill -INT $pid 2>/dev/null
    wait_pid $pid 20
    runs=$((runs + 1))
    after=$(sums "$T/rand.state")
    if [ "$status" != 0 ] && [ "$status" != 130 ]; then
        echo "# delay $delay: status $status: $(head -c 200 "$T/rand.err")"
        continue
    fi
    # a signal while a message's prompt is read stops it (any length,
    # issue 21): that one line, and status 130, is the only stderr allowed
    if [ -s "$T/rand.err" ] && { [ "$status" != 130 ] || [ "$(wc -l <"$T/rand.err")" != 1 ] ||
        ! grep -Eqx 'rwkv-chat: stdin:[0-9]+: message not sent: interrupted after 0 of [0-9]+ prompt tokens \(the conversation is as before it\)' "$T/rand.err"; }; then
        echo "# delay $delay: stderr: $(head -c 200 "$T/rand.err")"
        continue
    fi
    if [ "$after" != "$before" ]; then
        "$CHAT" --batch --model "$MODEL" -t 1 --state-in "$T/rand.state" </dev/null \
            >/dev/null 2>"$T/rand.load" || {
            echo "# delay $delay: new state file does not load: $(head -c 200 "$T/rand.load")"
            continue
        }
    fi
    good=$((good + 1))
done
ok "$(test "$good" = "$runs"; echo $?)" \
    "SIGINT at $runs moments from start-up to exit: each ends with 0 or 130, no error, state file old or new and loading ($good good)"
ok "$(test -z "$(find "$T" -name '*.tmp*')"; echo $?)" "no temporary files left behind"
ok "$(test "$(sums "$MODEL")" = "$model_sum"; echo $?)" "the model file is untouched"

echo "1..$n"
exit $fail
