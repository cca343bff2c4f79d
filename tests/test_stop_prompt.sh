#!/bin/sh
# test_stop_prompt.sh - Ctrl-C while a prompt is read stops it within a
# layer, not at the end of a 512-token piece (issue 21, item 2).  A model
# made by rwkv-tool mkmodel (12 layers, n_embd 512) is slow enough that one
# piece of a prompt takes seconds here; the signal (batch) or the key (TUI)
# comes once the first piece has begun, and the stop must say that none of
# it was read ("interrupted after 0 of N"): the old code finished the piece
# first and said "512 of N".  The conversation is rolled back to before the
# message: the state written afterwards is the one without it.
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"

B=${TOP_BUILDDIR:-.}
CHAT="$B/rwkv-chat"
TOOL="$B/rwkv-tool"
work=$(mktemp -d "${TMPDIR:-/tmp}/test_stop_prompt.XXXXXX") || exit 1
XDG_CONFIG_HOME=$work/config XDG_DATA_HOME=$work/data XDG_STATE_HOME=$work/state
XDG_CACHE_HOME=$work/cache
export XDG_CONFIG_HOME XDG_DATA_HOME XDG_STATE_HOME XDG_CACHE_HOME
unset TMUX
sock=rwkvstop-$$
T="tmux -L $sock -f /dev/null"
cleanup() {
    command -v tmux >/dev/null 2>&1 && $T kill-server >/dev/null 2>&1
    [ -n "$KEEP" ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
# Background jobs of a script start with SIGINT ignored; undo that.
if env --default-signal=INT true 2>/dev/null; then BG="env --default-signal=INT"; else BG=; fi

model=$work/slow.pth
"$TOOL" mkmodel --version 7 --layers 12 --embd 512 --seed 5 -o "$model" >/dev/null ||
    { echo "Bail out! rwkv-tool mkmodel failed"; exit 1; }
awk 'BEGIN { for (i = 0; i < 1500; i++) printf "%s ", (i % 3 ? "river" : "stone"); print "THE-END" }' \
    >"$work/long.txt"

# wait_text FILE EXTENDED-REGEX SECONDS: polls FILE until it matches.
wait_text() {
    i=0
    while [ "$i" -lt $(($3 * 20)) ]; do
        grep -Eq -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
        i=$((i + 1))
    done
    return 1
}

# --- batch: SIGINT inside the first piece --------------------------------------
{ echo "Hello."; cat "$work/long.txt"; } >"$work/in.txt"
$BG "$CHAT" --batch --verbose --model "$model" -t 1 --seed 3 --max-tokens 2 \
    --state-out "$work/stopped.state" <"$work/in.txt" >"$work/out.txt" 2>"$work/err.txt" &
pid=$!
wait_text "$work/err.txt" "reading a prompt of [0-9]+ tokens" 60
ok $? "batch: the long message's first piece begins"
kill -INT $pid
wait_pid $pid 60
ok "$(test "$status" = 130; echo $?)" "batch: SIGINT ends the run with status 130 ($status)"
grep -Eqx 'rwkv-chat: stdin:2: message not sent: interrupted after 0 of [0-9]+ prompt tokens \(the conversation is as before it\)' \
    "$work/err.txt"
ok $? "batch: stopped inside the first 512-token piece, not after it: $(grep 'not sent' "$work/err.txt")"
# The same conversation without the long message.
echo "Hello." | "$CHAT" --batch --model "$model" -t 1 --seed 3 --max-tokens 2 \
    --state-out "$work/clean.state" >"$work/clean.out" 2>/dev/null
cmp -s "$work/out.txt" "$work/clean.out"
ok $? "batch: the reply to the first message is as without the long one"
for f in stopped clean; do
    echo "Go on." | "$CHAT" --batch --model "$model" -t 1 --seed 9 --greedy --max-tokens 6 \
        --state-in "$work/$f.state" >"$work/$f.next" 2>"$work/$f.next.err"
done
test -s "$work/stopped.next" && cmp -s "$work/stopped.next" "$work/clean.next"
ok $? "batch: the state saved after the stop continues exactly as the one that never had the message"

# --- TUI: Ctrl-C inside the first piece ------------------------------------------
if ! command -v tmux >/dev/null 2>&1; then
    skip "tmux not installed"
else
    LC_ALL=C.UTF-8
    export LC_ALL
    $T new-session -d -s s -x 100 -y 30 \
        "$CHAT --model $model -t 1 --seed 3 --max-tokens 4; echo \"EXITED \$?\"; sleep 30"
    screen() { $T capture-pane -p -t s; }
    wait_screen() {
        i=0
        while [ "$i" -lt $(($2 * 20)) ]; do
            screen | grep -Eq -- "$1" && return 0
            sleep 0.05
            i=$((i + 1))
        done
        return 1
    }
    wait_screen "slow.pth" 60
    ctx0=$(screen | head -1 | grep -Eo "ctx [0-9]+")
    $T load-buffer "$work/long.txt"
    $T paste-buffer -p -t s
    wait_screen "THE-END" 20
    $T send-keys -t s Enter
    wait_screen "reading prompt 0/[0-9]+ tokens" 30
    ok $? "TUI: the long message's first piece begins"
    $T send-keys -t s C-c
    wait_screen "message not sent: interrupted after [0-9]+ of [0-9]+ prompt tokens" 30
    screen | grep -Eq "message not sent: interrupted after 0 of [0-9]+ prompt tokens"
    ok $? "TUI: Ctrl-C stops inside the first piece: $(screen | grep -Eo 'interrupted after [0-9]+ of [0-9]+')"
    screen | head -1 | grep -q "$ctx0 " && screen | grep -q "THE-END" && ! screen | grep -q "User: "
    ok $? "TUI: context as before ($ctx0), the message back in the input line, not in the transcript"
    $T send-keys -t s C-c
    $T send-keys -t s C-d
fi
tap_done
