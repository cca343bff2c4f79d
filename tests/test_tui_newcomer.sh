#!/bin/sh
# test_tui_newcomer.sh - what a newcomer's first hour found in the TUI
# (issue 21), driven in a private tmux server with the v7-world fixture:
# "terminal too small" says the minimum, ...
# Every wait polls capture-pane with a deadline; nothing sleeps blindly.
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"

if ! command -v tmux >/dev/null 2>&1; then
    skip_all "tmux not installed"
fi
B=${TOP_BUILDDIR:-.}
model=${SHARED_DIR:-../shared}/fixtures/models/v7-world.pth
if [ ! -f "$model" ]; then
    skip_all "$model not found"
fi
unset TMUX
LC_ALL=C.UTF-8
export LC_ALL
work=$(mktemp -d "${TMPDIR:-/tmp}/test_tui_newcomer.XXXXXX") || exit 1
XDG_CONFIG_HOME=$work/config XDG_DATA_HOME=$work/data XDG_STATE_HOME=$work/state
export XDG_CONFIG_HOME XDG_DATA_HOME XDG_STATE_HOME
RWKV_CHAT_TUI_TOKEN_DELAY_MS=40
export RWKV_CHAT_TUI_TOKEN_DELAY_MS
sock=rwkvnew-$$
T="tmux -L $sock -f /dev/null"
cleanup() {
    $T kill-server >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

prog="$B/rwkv-chat --model $model --seed 11 --max-tokens 24"
# start SESSION [OPTION...]: rwkv-chat in a new 100x30 session.
start() {
    s=$1
    shift
    $T new-session -d -s "$s" -x 100 -y 30 \
        "$prog $*; echo \"EXITED \$?\"; sleep 30" || return 1
}
screen() {
    $T capture-pane -p -t "$1"
}
wait_for() {
    i=0
    limit=$(( ${3:-10} * 10 ))
    while [ "$i" -lt "$limit" ]; do
        if screen "$1" | grep -Eq -- "$2"; then
            return 0
        fi
        sleep 0.1
        i=$((i + 1))
    done
    echo "# timed out waiting for /$2/ in:" >&2
    screen "$1" | sed 's/^/#   /' >&2
    return 1
}
keys() {
    s=$1
    shift
    $T send-keys -t "$s" "$@"
}
type_text() {
    $T send-keys -t "$1" -l -- "$2"
}
STREAMING='^Esc Stop'
IDLE='^F1 Help'

start a
wait_for a "$IDLE" 30
ok $? "the chat starts"

# --- "terminal too small" says the minimum and the size it has ---------------
$T resize-window -t a -x 20 -y 5
wait_for a "at least 24x6" 5
ok $? "a 20x5 terminal: 'terminal too small', 'at least 24x6'"
screen a | grep -q "this one is 20x5"
ok $? "and the size it has"
$T resize-window -t a -x 100 -y 30
wait_for a "$IDLE" 5
ok $? "back to 100x30: the chat is drawn again"

keys a C-d
wait_for a "EXITED 0" 10
ok $? "Ctrl-D quits"
tap_done
