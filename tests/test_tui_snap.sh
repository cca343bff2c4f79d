#!/bin/sh
# test_tui_snap.sh - issue 21 in the TUI, driven in a private tmux server
# with the demo model (greedy): /continue after "reply cut at max_tokens"
# (the same reply grows in place, whole it is the uncut reply), /snap on a
# taken name and /snapshots' turns and times, and snapshots that survive
# quitting (--resume) and a state file (--state-in).
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tmux.sh"

B=${TOP_BUILDDIR:-.}
tmux_setup test_tui_snap
# Slow enough replies that a test sees one while it streams.
RWKV_CHAT_TUI_TOKEN_DELAY_MS=100
export RWKV_CHAT_TUI_TOKEN_DELAY_MS

prog="$B/rwkv-chat --greedy --max-tokens 5"
# start SESSION [OPTION...]: rwkv-chat in a new 100x30 session.
start() {
    s=$1
    shift
    $T new-session -d -s "$s" -x 100 -y 30 \
        "$prog $*; echo \"EXITED \$?\"; sleep 30" || return 1
}
# command SESSION TEXT: types a line and presses Enter.
command() {
    type_text "$1" "$2"
    keys "$1" Enter
}
# say SESSION TEXT: sends a message (or a command that replies) and waits
# for its reply to stream and end.
say() {
    command "$1" "$2"
    wait_for "$1" "$STREAMING" 10 && wait_for "$1" "$IDLE" 30
}
# last_reply FILE.md: the last assistant turn of an /export.
last_reply() {
    awk '/^### Assistant$/ { getline; getline; r = $0 } END { print r }' "$1" | sed 's/  $//'
}
uncut=$(printf 'Tell me about ls\n' | $B/rwkv-chat --batch --greedy --max-tokens 200 2>/dev/null)

start a
wait_for a "$IDLE" 30
ok $? "the chat starts"

# --- /continue -----------------------------------------------------------------
command a "Tell me about ls"
wait_for a "reply cut at max_tokens \(/continue goes on; /set max_tokens N\)" 10
ok $? "a reply cut at max_tokens says that /continue goes on"
screen a | grep -Eq "^Assistant: ls: list directory contents +│"
ok $? "the cut reply: 'ls: list directory contents'"
wait_for a "$IDLE" 5
command a "/continue"
wait_for a "^Assistant: ls: list directory contents\. List information about the +│" 10
ok $? "/continue appends to the same reply"
wait_for a "$IDLE" 5
[ "$(screen a | grep -c 'Assistant:')" = 1 ] && [ "$(screen a | grep -c 'reply cut at max_tokens')" = 1 ]
ok $? "one assistant turn; the first cut's note went with it, the second cut has its own"
screen a | head -n 1 | grep -Eq "\| ctx 20 \| [0-9.]+ tok/s \|"
ok $? "the status line counts the continued tokens (ctx 20) and their tok/s"

command a "/set max_tokens 200"
wait_for a "$IDLE" 5
command a "/continue"
wait_for a "$STREAMING" 10
streaming=$?
screen a | grep -Eq "^Assistant: ls: list directory contents\. List information about the"
ok $((streaming + $?)) "while it streams, the reply so far stays where it was and grows"
wait_for a "$IDLE" 30
command a "/export $work/whole.md"
wait_for a "exported 2 turns" 5
[ -n "$uncut" ] && [ "$(last_reply "$work/whole.md")" = "$uncut" ]
ok $? "continued to its end, the reply is the uncut reply ($(last_reply "$work/whole.md" | head -c 50))"
command a "/continue"
wait_for a "the last reply was not cut at max_tokens: nothing to continue" 5
ok $? "/continue after a reply that ended says there is nothing to continue"

# --- /snap on a taken name; /snapshots with turns and times -------------------------
command a "/snap one"
wait_for a "$IDLE" 5
command a "/snap one"
wait_for a "snapshot 'one' exists: this one is 'one-2' \(/delete one first to" 5
ok $? "/snap on a taken name numbers the new one and says so"
say a "What about cp"
command a "/snap two"
wait_for a "│\* two +│" 5
ok $? "the snapshots panel lists the new one as current"
command a "/snapshots"
wait_for a "^- one  2 turns, taken [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}" 5
first=$?
screen a | grep -Eq "^  one-2  2 turns, taken [0-9]{4}-" &&
    screen a | grep -Eq "^  two \(current\)  4 turns, taken [0-9]{4}-"
ok $((first + $?)) "/snapshots shows each one's turns and when it was taken"

# --- snapshots survive quitting: --resume brings them back ------------------------
command a "/restore one"
wait_for a "$IDLE" 5
say a "What about rm"
command a "/export $work/before.md"
wait_for a "exported 4 turns" 5
before=$(last_reply "$work/before.md")
command a "/save $work/three.state"
wait_for a "$IDLE" 5
keys a C-d
wait_for a "EXITED 0" 10
ok $? "Ctrl-D quits"
[ -s "$XDG_STATE_HOME/rwkv-chat/sessions/rwkv7-tiny-chat.pth.state" ]
ok $? "the session is saved"

start b --resume
wait_for b "$IDLE" 30
wait_for b "│  one-2 +│" 5 && screen b | grep -Eq "│  two +│" && screen b | grep -Eq "│  one +│"
ok $? "--resume: the snapshots panel lists the three snapshots again"
command b "/snapshots"
wait_for b "^  two  4 turns, taken [0-9]{4}-" 5
ok $? "/snapshots after --resume: their turns and times"
command b "/restore one"
wait_for b "$IDLE" 5
say b "What about rm"
command b "/export $work/after.md"
wait_for b "exported 4 turns" 5
[ -n "$before" ] && [ "$(last_reply "$work/after.md")" = "$before" ] ||
    sed 's/^/# /' "$work/before.md" "$work/after.md"
ok $? "restoring one after --resume gives the same greedy reply as before quitting ($before)"
keys b C-d
wait_for b "EXITED 0" 10

# --- and --state-in of a /save file --------------------------------------------------
start c --state-in "$work/three.state"
wait_for c "$IDLE" 30
command c "/snapshots"
wait_for c "^  one-2  2 turns, taken " 5 && screen c | grep -Eq "^- one  2 turns"
ok $? "--state-in: /snapshots lists the file's snapshots"
command c "/restore one"
wait_for c "$IDLE" 5
say c "What about rm"
command c "/export $work/after2.md"
wait_for c "exported 4 turns" 5
[ -n "$before" ] && [ "$(last_reply "$work/after2.md")" = "$before" ]
ok $? "restoring one from the file gives the same greedy reply"
keys c C-d
wait_for c "EXITED 0" 10

tap_done
