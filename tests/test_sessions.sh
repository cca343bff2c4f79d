#!/bin/sh
# test_sessions.sh - one session per model (issue 21, item 3): the TUI saves
# the conversation in sessions/MODEL.state and says where and how to go on,
# --resume reads the session of the model in use, --resume without --model
# picks the model of the session saved last, the old single session.state
# still loads, and a refusal names the model the session belongs to.
B=${TOP_BUILDDIR:-.}
S=${SHARED_DIR:-../shared}
CHAT="$B/rwkv-chat"
T="$B/tests/tmp/sessions.$$"
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"

world=$S/fixtures/models/v7-world.pth
if [ ! -f "$world" ]; then
    skip_all "$world not found"
fi
mkdir -p "$T" || exit 1
trap 'rm -rf "$T"; [ -n "${sock:-}" ] && tmux -L "$sock" kill-server >/dev/null 2>&1' EXIT
T=$(cd "$T" && pwd)
export XDG_CONFIG_HOME="$T/config" XDG_DATA_HOME="$T/data" XDG_STATE_HOME="$T/state"
SESS=$T/state/rwkv-chat/sessions
world_abs=$(cd "$(dirname "$world")" && pwd)/v7-world.pth

one_line() {
    test "$(wc -l <"$1")" -eq 1
}

# A session of v7-world, as the TUI would leave it (batch writes it through
# --state-out), and one of the demo model saved before it.
mkdir -p "$SESS"
echo "first words" | "$CHAT" --batch -t 1 --max-tokens 2 \
    --state-out "$SESS/rwkv7-tiny-chat.pth.state" >/dev/null 2>&1
touch -d '2 hours ago' "$SESS/rwkv7-tiny-chat.pth.state"
echo "hello world model" | "$CHAT" --batch -t 1 --max-tokens 2 --model "$world" \
    --state-out "$SESS/v7-world.pth.state" >/dev/null 2>&1
ok "$(grep -aq 'v7-world.pth' "$SESS/v7-world.pth.state" &&
      grep -aqF "$world_abs" "$SESS/v7-world.pth.state"; echo $?)" \
    "a state file keeps the model's file name and path"

# --resume without --model: the model of the last session.
printf '/info\n' | "$CHAT" --batch -t 1 --max-tokens 2 --resume --verbose \
    >"$T/last.out" 2>"$T/last.err"
rc=$?
ok "$(test $rc = 0 && grep -q 'the last session .* was with .*v7-world.pth' "$T/last.err" &&
      grep -q 'resumed .*sessions/v7-world.pth.state' "$T/last.err"; echo $?)" \
    "--resume without --model picks the model of the last session (rc $rc: $(tail -c 300 "$T/last.err"))"
ok "$(grep -q '^model: v7-world.pth' "$T/last.err"; echo $?)" "and /info names that model"

# --resume with --model: that model's own session, not the last one.
printf '/info\n' | "$CHAT" --batch -t 1 --max-tokens 2 --resume --verbose \
    --model "$B/../share/models/rwkv7-tiny-chat.pth" >"$T/own.out" 2>"$T/own.err"
rc=$?
if [ -f "$B/../share/models/rwkv7-tiny-chat.pth" ]; then
    ok "$(test $rc = 0 && grep -q 'resumed .*sessions/rwkv7-tiny-chat.pth.state' "$T/own.err"; echo $?)" \
        "--resume --model M reads M's own session (rc $rc: $(tail -c 300 "$T/own.err"))"
else
    skip "demo model not in the build tree's share/"
fi

# A model without a session: one line naming it and what to do.
rm -f "$SESS/rwkv7-tiny-chat.pth.state"
echo hi | "$CHAT" --batch -t 1 --max-tokens 2 --resume --model rwkv7-tiny-chat \
    >"$T/none.out" 2>"$T/none.err"
rc=$?
ok "$(test $rc = 1 && one_line "$T/none.err" &&
      grep -q 'no saved session for rwkv7-tiny-chat.pth' "$T/none.err"; echo $?)" \
    "--resume for a model without a session: exit 1, one line naming it ($(cat "$T/none.err"))"

# The session file of v7-world planted under the demo model's name: the
# refusal names the model it belongs to.
cp "$SESS/v7-world.pth.state" "$SESS/rwkv7-tiny-chat.pth.state"
touch -d '2 hours ago' "$SESS/rwkv7-tiny-chat.pth.state"
echo hi | "$CHAT" --batch -t 1 --max-tokens 2 --resume --model rwkv7-tiny-chat \
    >"$T/other.out" 2>"$T/other.err"
rc=$?
ok "$(test $rc = 1 && one_line "$T/other.err" &&
      grep -q 'saved with another model.*it belongs to the model v7-world.pth' "$T/other.err"; echo $?)" \
    "a session of another model: exit 1, one line naming the model it belongs to"

# The one session.state of older versions still loads when the model has
# no session of its own.
rm -rf "$SESS"
echo "old words" | "$CHAT" --batch -t 1 --max-tokens 2 --model "$world" \
    --state-out "$T/state/rwkv-chat/session.state" >/dev/null 2>&1
printf '/info\n' | "$CHAT" --batch -t 1 --max-tokens 2 --resume --verbose --model "$world" \
    >"$T/old.out" 2>"$T/old.err"
rc=$?
ok "$(test $rc = 0 && grep -q 'resumed .*rwkv-chat/session.state' "$T/old.err"; echo $?)" \
    "the old single session.state still loads with --resume (rc $rc)"

# A config file's model that is not found: the message names the config file.
mkdir -p "$T/config/rwkv-chat"
printf 'model = no-such-model\n' >"$T/config/rwkv-chat/config"
echo hi | "$CHAT" --batch -t 1 >"$T/cfg.out" 2>"$T/cfg.err"
rc=$?
ok "$(test $rc = 1 && one_line "$T/cfg.err" &&
      grep -q "no-such-model.*model = line of $T/config/rwkv-chat/config" "$T/cfg.err"; echo $?)" \
    "config model = not found: exit 1, the message names the config file ($(cat "$T/cfg.err"))"
echo hi | "$CHAT" --batch -t 1 --model no-such-model >"$T/cmd.out" 2>"$T/cmd.err"
ok "$(test $? = 1 && ! grep -q 'model = line' "$T/cmd.err"; echo $?)" \
    "--model not found: the config file is not blamed"
rm -f "$T/config/rwkv-chat/config"

# The TUI saves the session of its model and says where and how to go on.
if command -v tmux >/dev/null 2>&1; then
    unset TMUX
    sock=rwkvsess-$$
    tmux -L "$sock" -f /dev/null new-session -d -x 120 -y 30 \
        "'$CHAT' -t 1 --model '$world' --max-tokens 3 2>'$T/tui.err'; echo \"EXITED \$?\"; sleep 30"
    i=0
    while [ $i -lt 900 ] && ! tmux -L "$sock" capture-pane -p | grep -q 'type a message'; do
        sleep 0.1; i=$((i + 1))
    done
    tmux -L "$sock" send-keys 'hi there' Enter
    # the reply has ended: the key bar is back and the reply is there (the
    # bar alone is there before Enter is read, and Ctrl-D then quits a chat
    # with nothing said, which names no session)
    i=0
    while [ $i -lt 900 ] && ! tmux -L "$sock" capture-pane -p |
            awk '/Assistant:/ { a = 1 } /^F1 Help/ { f = 1 } END { exit !(a && f) }'; do
        sleep 0.1; i=$((i + 1))
    done
    tmux -L "$sock" send-keys C-d
    i=0
    while [ $i -lt 900 ] && ! tmux -L "$sock" capture-pane -p | grep -q 'EXITED'; do
        sleep 0.1; i=$((i + 1))
    done
    tmux -L "$sock" capture-pane -p -J >"$T/tui.screen"
    ok "$(grep -q 'EXITED 0' "$T/tui.screen" && test -s "$SESS/v7-world.pth.state"; echo $?)" \
        "the TUI saves its model's session in sessions/v7-world.pth.state"
    ok "$(grep -q "conversation with v7-world.pth saved in $SESS/v7-world.pth.state; continue it with: rwkv-chat --resume" "$T/tui.screen"; echo $?)" \
        "on exit it says where the conversation was saved and how to continue it"
    sed 's/^/# /' "$T/tui.screen" | grep -v '^# $' 
    tmux -L "$sock" kill-server >/dev/null 2>&1
else
    skip "tmux not installed"
    skip "tmux not installed"
fi
tap_done
