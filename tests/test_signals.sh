#!/bin/sh
# test_signals.sh - signals against rwkv-chat (issue 10).
#  1. SIGINT, SIGTERM and SIGHUP at random moments while rwkv-chat --batch
#     saves a 250 kB state file over and over (/save between messages): the file
#     is always the old or a new complete one, never torn (it loads), and
#     no temporary file is left behind.
#  2. The TUI, run from a shell in a tmux pane, killed with SIGTERM or
#     SIGHUP: afterwards the pane's terminal modes are restored (stty shows
#     echo and icanon) and the shell runs commands.
B=${TOP_BUILDDIR:-.}
S=${SHARED_DIR:-../shared}
CHAT="$B/rwkv-chat"
MODEL="$S/fixtures/models/v7-world.pth"
n=0
fail=0
ok() { # ok STATUS DESCRIPTION
    n=$((n + 1))
    if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi
}
if [ ! -f "$MODEL" ]; then
    echo "1..0 # SKIP $MODEL not found"
    exit 0
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/test_signals.XXXXXX") || exit 1
XDG_CONFIG_HOME=$work/config XDG_DATA_HOME=$work/data XDG_STATE_HOME=$work/state
export XDG_CONFIG_HOME XDG_DATA_HOME XDG_STATE_HOME
unset TMUX
sock=rwkvsig-$$
T="tmux -L $sock -f /dev/null"
cleanup() {
    command -v tmux >/dev/null 2>&1 && $T kill-server >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
# Background jobs of a script start with SIGINT ignored; undo that.
if env --default-signal=INT true 2>/dev/null; then BG="env --default-signal=INT"; else BG=; fi

# --- 1. signals during saves -----------------------------------------------------
F=$work/conv.state
printf 'Hello.\n' | "$CHAT" --batch --model "$MODEL" -t 1 --seed 1 --max-tokens 2 \
    --state-out "$F" >/dev/null 2>&1
# The runs start from a conversation with a 200 kB message, so that every
# save writes that much and a signal often lands in one.
awk 'BEGIN { for (i = 0; i < 40000; i++) printf "%s ", (i % 3 ? "word" : "stone"); print "" }' |
    "$CHAT" --batch --model "$MODEL" -t 1 --seed 1 --max-tokens 2 \
    --state-out "$work/big.state" >/dev/null 2>&1
i=0
while [ $i -lt 200 ]; do
    printf 'Go on %d.\n/save %s\n' $i "$F"
    i=$((i + 1))
done >"$work/saves.in"
good=0
runs=0
torn=0
for sig in INT TERM HUP; do
    for delay in 0.1 0.2 0.3 0.4 0.5; do
        $BG "$CHAT" --batch --model "$MODEL" -t 1 --seed 2 --max-tokens 1 \
            --state-in "$work/big.state" <"$work/saves.in" \
            >/dev/null 2>"$work/saves.err" &
        pid=$!
        sleep $delay
        kill -$sig $pid 2>/dev/null
        wait $pid 2>/dev/null
        status=$?
        runs=$((runs + 1))
        if "$CHAT" --batch --model "$MODEL" -t 1 --state-in "$F" </dev/null >/dev/null \
            2>"$work/load.err"; then
            good=$((good + 1))
        else
            torn=$((torn + 1))
            echo "# SIG$sig after ${delay}s (status $status): $(head -c 200 "$work/load.err")"
        fi
    done
done
ok "$(test $good = $runs; echo $?)" \
    "SIGINT/SIGTERM/SIGHUP at $runs moments of a run saving 200 times: the file always loads ($torn torn)"
left=$(find "$work" -maxdepth 1 -name '.conv.state.*.tmp' | wc -l)
ok "$(test "$left" = 0; echo $?)" \
    "no temporary (.FILE.XXXXXXXX.tmp) left behind: a signal during a save lets it finish ($left left)"

# --- 2. the terminal after SIGTERM / SIGHUP ---------------------------------------
if ! command -v tmux >/dev/null 2>&1; then
    echo "ok $((n + 1)) # SKIP tmux not installed"
    n=$((n + 1))
    echo "1..$n"
    exit $fail
fi
LC_ALL=C.UTF-8
export LC_ALL
# screen and wait_for of the TUI tests' harness (they use $T above)
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tmux.sh"
for sig in TERM HUP; do
    s=s$sig
    # (the server of the previous round may still be exiting after its
    # last session was killed: try again for a moment)
    tries=0
    until $T new-session -d -s $s -x 100 -y 30 "sh" 2>/dev/null; do
        tries=$((tries + 1))
        [ $tries -lt 20 ] || break
        sleep 0.1
    done
    [ $tries -lt 20 ] || { ok 1 "tmux session"; continue; }
    $T send-keys -t $s "stty -a >$work/before.$sig; sh -c 'echo \$\$ >$work/pid.$sig; exec $CHAT --model $MODEL -t 1 --seed 1'; echo EXITED-\$?" Enter
    wait_for $s "v7-world.pth" 20
    sleep 0.3
    kill -$sig "$(cat "$work/pid.$sig")"
    wait_for $s "EXITED-" 10
    $T send-keys -t $s "stty -a >$work/after.$sig; echo STTY-\$((40 + 2))" Enter
    wait_for $s "STTY-42" 10
    after=$(tr '\n' ' ' <"$work/after.$sig")
    case " $after " in
    *" -echo "* | *" -icanon "*) modes=1 ;;
    *" echo "*" icanon "* | *" icanon "*" echo "*) modes=0 ;;
    *) modes=1 ;;
    esac
    ok $modes "after SIG$sig the pane's terminal has echo and icanon back"
    ok "$(cmp -s "$work/before.$sig" "$work/after.$sig"; echo $?)" \
        "after SIG$sig stty -a reads exactly as before rwkv-chat started"
    $T send-keys -t $s "echo ANSWER-\$((6 * 7))" Enter
    wait_for $s "ANSWER-42" 5
    ok $? "after SIG$sig the shell in the pane runs commands"
    $T kill-session -t $s 2>/dev/null
done

echo "1..$n"
exit $fail
