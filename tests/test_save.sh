#!/bin/sh
# test_save.sh - what a save may replace (engine/base/atomicfile.h): only a
# state file or a new name, never the model, a text file or a symbolic
# link; the mode of a replaced file is kept; a long name saves; a failed
# save names the file, not its temporary, and leaves the old file.
B=${TOP_BUILDDIR:-.}
CHAT="$B/rwkv-chat"
T="$B/tests/tmp/save.$$"
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"

mkdir -p "$T" || exit 1
trap 'rm -rf "$T"' EXIT
T=$(cd "$T" && pwd)
export XDG_CONFIG_HOME="$T/config" XDG_DATA_HOME="$T/data" XDG_STATE_HOME="$T/state"
DEMO=$(cd "${TOP_SRCDIR:-$(dirname "$0")/..}/share/models" && pwd)/rwkv7-tiny-chat.pth
umask 022

one_line() {
    test "$(wc -l <"$1")" -eq 1
}

# no_temporaries: nothing named like a temporary is left in $T.
no_temporaries() {
    test -z "$(find "$T" -maxdepth 1 -name '*.tmp*')"
}

# --- --state-out over a text file: refused before any reply ------------------
printf 'my notes\n' >"$T/notes.txt"
echo hi | "$CHAT" --batch -t 1 --max-tokens 3 --state-out "$T/notes.txt" >"$T/n.out" 2>"$T/n.err"
rc=$?
ok "$(test $rc = 1 && test ! -s "$T/n.out" && one_line "$T/n.err" &&
      grep -q "notes.txt: exists and is not a state file, not replacing it: choose another name" "$T/n.err" &&
      test "$(cat "$T/notes.txt")" = "my notes"; echo $?)" \
    "--state-out over a text file: exit 1 before any reply, one line, the file kept: $(cat "$T/n.err")"

# --- /save over the model in use: refused, the model byte-identical ----------
cp "$DEMO" "$T/model.pth"
printf 'hi\n/save %s\n' "$T/model.pth" | "$CHAT" --batch -t 1 --max-tokens 3 --model "$T/model.pth" \
    >"$T/m.out" 2>"$T/m.err"
rc=$?
ok "$(test $rc = 1 && one_line "$T/m.err" && grep -q "model.pth: exists and is not a state file" "$T/m.err" &&
      cmp -s "$DEMO" "$T/model.pth"; echo $?)" \
    "/save over the model: exit 1, one line, the model byte-identical: $(cat "$T/m.err")"
rm -f "$T/model.pth"

# --- a state file is replaced, keeping its mode -------------------------------
echo hi | "$CHAT" --batch -t 1 --max-tokens 3 --seed 1 --state-out "$T/a.state" >/dev/null 2>"$T/a.err"
ok "$(test $? = 0 && test "$(head -c 8 "$T/a.state")" = RWKVSTAT &&
      test "$(stat -c %a "$T/a.state")" = 644; echo $?)" \
    "a new state file gets 0666 & ~umask (644) $(head -c 200 "$T/a.err")"
chmod 600 "$T/a.state"
printf 'hello\n/save %s\n' "$T/a.state" | "$CHAT" --batch -t 1 --max-tokens 3 --seed 2 \
    --state-in "$T/a.state" >/dev/null 2>"$T/a2.err"
ok "$(test $? = 0 && test "$(stat -c %a "$T/a.state")" = 600 && no_temporaries; echo $?)" \
    "/save over a 600 state file: replaced, still 600, no temporary left $(head -c 200 "$T/a2.err")"

# --- a symbolic link at the target is refused; what it points to is kept -----
cp "$T/a.state" "$T/real.state"
ln -s real.state "$T/link.state"
echo hi | "$CHAT" --batch -t 1 --max-tokens 3 --state-out "$T/link.state" >"$T/l.out" 2>"$T/l.err"
rc=$?
ok "$(test $rc = 1 && test ! -s "$T/l.out" && one_line "$T/l.err" && grep -q 'symbolic link' "$T/l.err" &&
      test -L "$T/link.state" && cmp -s "$T/a.state" "$T/real.state"; echo $?)" \
    "--state-out onto a symlink: exit 1, one line, the link and its target kept: $(cat "$T/l.err")"
printf 'hi\n/save %s\n' "$T/link.state" | "$CHAT" --batch -t 1 --max-tokens 3 >/dev/null 2>"$T/l2.err"
rc=$?
ok "$(test $rc = 1 && one_line "$T/l2.err" && grep -q 'link.state: is a symbolic link' "$T/l2.err" &&
      test -L "$T/link.state" && cmp -s "$T/a.state" "$T/real.state"; echo $?)" \
    "/save onto a symlink: exit 1, one line, the link and its target kept"

# --- a 255-byte file name saves -------------------------------------------------
long=$(printf '%0255d' 0)
echo hi | "$CHAT" --batch -t 1 --max-tokens 3 --state-out "$T/$long" >/dev/null 2>"$T/long.err"
ok "$(test $? = 0 && test "$(head -c 8 "$T/$long")" = RWKVSTAT && no_temporaries; echo $?)" \
    "a state file with a 255-byte name saves $(head -c 200 "$T/long.err")"
rm -f "$T/$long"

# --- a failed save: the old file kept, the message names it, not a temporary --
cp "$T/a.state" "$T/keep.state"
(
    ulimit -f 4 2>/dev/null || exit 3      # 2 KiB: the state does not fit
    trap '' XFSZ
    printf 'hi\n/save %s\n' "$T/keep.state" | "$CHAT" --batch -t 1 --max-tokens 3 >/dev/null 2>"$T/f.err"
)
rc=$?
if [ $rc = 3 ]; then
    skip "ulimit -f not available"
else
    ok "$(test $rc = 1 && one_line "$T/f.err" && grep -q 'keep.state: cannot save' "$T/f.err" &&
          ! grep -q '\.tmp' "$T/f.err" && cmp -s "$T/a.state" "$T/keep.state" && no_temporaries; echo $?)" \
        "a save that fails half way: exit 1, the old file intact, the message names the file: $(cat "$T/f.err")"
fi

# --- the session saved at quit follows the same rule ---------------------------
# The demo model's session file planted as a link to another file: quitting
# says so (exit 1)
# and neither the link nor the file it points to changes.
if command -v tmux >/dev/null 2>&1; then
    sock=rwkvsave-$$
    mkdir -p "$T/sess/rwkv-chat/sessions"
    printf 'precious\n' >"$T/victim.txt"
    ln -s "$T/victim.txt" "$T/sess/rwkv-chat/sessions/rwkv7-tiny-chat.pth.state"
    tmux -L "$sock" -f /dev/null new-session -d -x 100 -y 30 \
        "XDG_STATE_HOME='$T/sess' '$CHAT' -t 1 --seed 1 --max-tokens 3 2>'$T/sess.err'; echo \$? >'$T/sess.rc'; sleep 30"
    i=0
    while [ $i -lt 300 ] && ! tmux -L "$sock" capture-pane -p | grep -q 'type a message'; do
        sleep 0.1; i=$((i + 1))
    done
    tmux -L "$sock" send-keys 'hi' Enter
    i=0
    while [ $i -lt 300 ] && ! tmux -L "$sock" capture-pane -p | grep -q 'Assistant:'; do
        sleep 0.1; i=$((i + 1))
    done
    sleep 1
    tmux -L "$sock" send-keys '/quit' Enter
    i=0
    while [ $i -lt 300 ] && [ ! -s "$T/sess.rc" ]; do
        sleep 0.1; i=$((i + 1))
    done
    tmux -L "$sock" kill-server >/dev/null 2>&1
    ok "$(test "$(cat "$T/sess.rc" 2>/dev/null)" = 1 && one_line "$T/sess.err" &&
          grep -q 'rwkv7-tiny-chat.pth.state: is a symbolic link' "$T/sess.err" &&
          test -L "$T/sess/rwkv-chat/sessions/rwkv7-tiny-chat.pth.state" && test "$(cat "$T/victim.txt")" = precious; echo $?)" \
        "TUI quit with the session file planted as a link: exit 1, one line, the link's target untouched ($(cat "$T/sess.err" 2>/dev/null))"
else
    skip "tmux not installed"
fi

tap_done
