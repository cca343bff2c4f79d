#!/bin/sh
# test_qa.sh - regression checks for what a QA pass found as a new user:
# the uninstalled build finds its data (README: build/rwkv-chat), a model
# that does not fit the World tokenizer is refused at load, and --state-out
# and /save never replace anything but a regular file (nor lose the
# conversation to a path that cannot be written).
B=${TOP_BUILDDIR:-.}
S=${SHARED_DIR:-../shared}
CHAT="$B/rwkv-chat"
TOOL="$B/rwkv-tool"
T="$B/tests/tmp/qa.$$"
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"

mkdir -p "$T" || exit 1
trap 'rm -rf "$T"' EXIT
T=$(cd "$T" && pwd)
export XDG_CONFIG_HOME="$T/config" XDG_DATA_HOME="$T/data" XDG_STATE_HOME="$T/state"

# one_line FILE: FILE holds exactly one line.
one_line() {
    test "$(wc -l <"$1")" -eq 1
}

# --- the build tree runs without RWKV_CHAT_DATADIR (not installed) ----------
echo "Who are you?" | env -u RWKV_CHAT_DATADIR "$CHAT" --batch --greedy -t 1 --max-tokens 20 \
    >"$T/uninst.out" 2>"$T/uninst.err"
ok "$(test $? = 0 && test -s "$T/uninst.out"; echo $?)" \
    "uninstalled rwkv-chat finds the demo model, vocabulary and prompts $(head -c 200 "$T/uninst.err")"
env -u RWKV_CHAT_DATADIR "$TOOL" models >"$T/models.out" 2>&1
ok "$(grep -q 'rwkv7-tiny-chat' "$T/models.out"; echo $?)" \
    "uninstalled rwkv-tool models lists the demo model"

"$TOOL" models >"$T/models2.out" 2>&1
ok "$(test "$(grep -c 'rwkv7-tiny-chat' "$T/models2.out")" = 1; echo $?)" \
    "with RWKV_CHAT_DATADIR naming the source tree too, the demo model is listed once"

# --- a model without the World vocabulary is refused at load -----------------
if [ -f "$S/fixtures/models/v7.pth" ]; then
    echo hi | "$CHAT" --batch -t 1 --model "$S/fixtures/models/v7.pth" >"$T/vocab.out" 2>"$T/vocab.err"
    rc=$?
    ok "$(test $rc = 1 && test ! -s "$T/vocab.out" && one_line "$T/vocab.err" &&
          grep -q 'v7.pth: vocabulary of 1000 tokens.*World' "$T/vocab.err"; echo $?)" \
        "1000-token model: exit 1, one line naming the file and the World vocabulary ($(cat "$T/vocab.err"))"
else
    skip "fixture v7.pth not found"
fi

# --- batch /edit without text: one error line, not the message as well --------
printf 'hello there\n/edit\n' | "$CHAT" --batch -t 1 --max-tokens 3 >/dev/null 2>"$T/edit.err"
ok "$(test $? = 1 && one_line "$T/edit.err" && grep -q '/edit TEXT' "$T/edit.err"; echo $?)" \
    "batch /edit with no text: exit 1, one line ($(head -c 200 "$T/edit.err"))"

# --- --resume of a session saved with another model says what to do -----------
if [ -f "$S/fixtures/models/v7-world.pth" ]; then
    mkdir -p "$T/rs/rwkv-chat"
    echo hi | "$CHAT" --batch -t 1 --max-tokens 2 --model "$S/fixtures/models/v7-world.pth" \
        --state-out "$T/rs/rwkv-chat/session.state" >/dev/null 2>&1
    echo hi | XDG_STATE_HOME="$T/rs" "$CHAT" --batch -t 1 --max-tokens 2 --resume \
        >"$T/rs.out" 2>"$T/rs.err"
    ok "$(test $? = 1 && test ! -s "$T/rs.out" && one_line "$T/rs.err" &&
          grep -q 'saved with another model.*pass the --model the session was saved with' "$T/rs.err"; echo $?)" \
        "--resume with another model: exit 1, one line saying to pass its --model"
else
    skip "fixture v7-world.pth not found"
fi

# --- an empty file name is a usage error naming the option ----------------------
for o in --state-in --state-out --vocab --config --data-dir; do
    echo hi | "$CHAT" --batch -t 1 --max-tokens 2 "$o" "" >"$T/empty.out" 2>"$T/empty.err"
    ok "$(test $? = 2 && test ! -s "$T/empty.out" &&
          head -1 "$T/empty.err" | grep -q "^rwkv-chat: $o: empty file name\$"; echo $?)" \
        "$o '': exit 2, 'rwkv-chat: $o: empty file name'"
done

# --- --model naming a directory says so --------------------------------------
mkdir -p "$T/modeldir"
echo hi | "$CHAT" --batch -t 1 --model "$T/modeldir" >/dev/null 2>"$T/mdir.err"
ok "$(test $? = 1 && one_line "$T/mdir.err" && grep -q 'modeldir: is a directory' "$T/mdir.err"; echo $?)" \
    "--model DIRECTORY: exit 1, 'is a directory'"

# --- JSONL: a value that is not an object is named as such; a BOM is skipped ----
for v in null 5 '"text"'; do
    printf '%s\n' "$v" | "$CHAT" --jsonl -t 1 --max-tokens 2 >/dev/null 2>"$T/jv.err"
    ok "$(test $? = 1 && one_line "$T/jv.err" && grep -q 'stdin:1: expected a JSON object' "$T/jv.err"; echo $?)" \
        "--jsonl line '$v': exit 1, 'expected a JSON object'"
done
printf '\357\273\277{"role":"user","content":"hi"}\n' | "$CHAT" --jsonl -t 1 --max-tokens 2 \
    >"$T/bom.out" 2>"$T/bom.err"
ok "$(test $? = 0 && grep -q '"role":"assistant"' "$T/bom.out"; echo $?)" \
    "--jsonl input starting with a UTF-8 byte order mark is read $(head -c 200 "$T/bom.err")"

# --- a mistyped --data-dir is an error, not a silent no-op ---------------------
echo hi | "$CHAT" --batch -t 1 --max-tokens 3 --data-dir "$T/no-such-dir" >"$T/dd.out" 2>"$T/dd.err"
ok "$(test $? = 1 && test ! -s "$T/dd.out" && one_line "$T/dd.err" &&
      grep -q -- "--data-dir: .*no-such-dir: No such file or directory" "$T/dd.err"; echo $?)" \
    "--data-dir naming a missing directory: exit 1, one line"

# --- --state-out that cannot be written is refused before the conversation --
echo hi | "$CHAT" --batch -t 1 --max-tokens 3 --state-out "$T/no/such/dir/x.state" \
    >"$T/nodir.out" 2>"$T/nodir.err"
rc=$?
ok "$(test $rc = 1 && test ! -s "$T/nodir.out" && one_line "$T/nodir.err" &&
      grep -q 'x.state: cannot write into' "$T/nodir.err"; echo $?)" \
    "--state-out into a missing directory: exit 1 before any reply, one line"

# --- never replace something that is not a regular file ----------------------
# (a FIFO stands for /dev/null here: renaming over a device replaces it)
if mkfifo "$T/fifo" 2>/dev/null; then
    echo hi | "$CHAT" --batch -t 1 --max-tokens 3 --state-out "$T/fifo" >"$T/fifo.out" 2>"$T/fifo.err"
    rc=$?
    ok "$(test $rc = 1 && test -p "$T/fifo" && one_line "$T/fifo.err"; echo $?)" \
        "--state-out onto a FIFO: exit 1, one line, the FIFO is left alone"
    printf 'hi\n/save %s\n' "$T/fifo" | "$CHAT" --batch -t 1 --max-tokens 3 \
        >"$T/fsave.out" 2>"$T/fsave.err"
    rc=$?
    ok "$(test $rc = 1 && test -p "$T/fifo" && one_line "$T/fsave.err" &&
          grep -q 'not a regular file' "$T/fsave.err"; echo $?)" \
        "/save onto a FIFO: exit 1, 'not a regular file', the FIFO is left alone"
else
    skip "mkfifo failed"
    skip "mkfifo failed"
fi
mkdir -p "$T/adir"
printf 'hi\n/save %s\n' "$T/adir" | "$CHAT" --batch -t 1 --max-tokens 3 >/dev/null 2>"$T/dsave.err"
ok "$(test $? = 1 && test -d "$T/adir" && one_line "$T/dsave.err"; echo $?)" \
    "/save onto a directory: exit 1, one line"

# (a symbolic link at the target is refused: tests/test_save.sh)
ok "$(ls "$T" | grep -q '\.tmp'; test $? = 1; echo $?)" "no temporary files are left behind"

# --- rwkv-tool: an empty argument (a script's unset variable) is a usage error --
"$TOOL" info "" >/dev/null 2>"$T/te1.err"
ok "$(test $? = 2 && one_line "$T/te1.err" && grep -q '^rwkv-tool: info: argument 1 is empty$' "$T/te1.err"; echo $?)" \
    "rwkv-tool info '': exit 2, 'argument 1 is empty'"
echo hi | "$TOOL" tokenize --vocab "" >/dev/null 2>"$T/te2.err"
ok "$(test $? = 2 && one_line "$T/te2.err" && grep -q '^rwkv-tool: tokenize: --vocab: empty value$' "$T/te2.err"; echo $?)" \
    "rwkv-tool tokenize --vocab '': exit 2, '--vocab: empty value'"

# --- rwkv-tool models: usage errors name the program ---------------------------
"$TOOL" models --bogus >/dev/null 2>"$T/mbogus.err"
ok "$(test $? = 2 && head -1 "$T/mbogus.err" | grep -q "^rwkv-tool: models: unrecognized option '--bogus'"; echo $?)" \
    "rwkv-tool models --bogus: exit 2, 'rwkv-tool: models: unrecognized option'"

# --- the TUI says so, and exits 1, when it cannot save the session ------------
if command -v tmux >/dev/null 2>&1; then
    unset TMUX
    sock=rwkvqa-$$
    echo x >"$T/notadir"
    tmux -L "$sock" -f /dev/null new-session -d -x 100 -y 30 \
        "XDG_STATE_HOME='$T/notadir' '$CHAT' -t 1 --seed 1 2>'$T/tui.err'; echo \$? >'$T/tui.rc'; sleep 30"
    i=0
    while [ $i -lt 100 ] && ! tmux -L "$sock" capture-pane -p | grep -q 'type a message'; do
        sleep 0.1; i=$((i + 1))
    done
    tmux -L "$sock" send-keys 'hi' Enter
    i=0
    while [ $i -lt 100 ] && ! tmux -L "$sock" capture-pane -p | grep -q 'Assistant:'; do
        sleep 0.1; i=$((i + 1))
    done
    sleep 1
    tmux -L "$sock" send-keys '/quit' Enter
    i=0
    while [ $i -lt 100 ] && [ ! -s "$T/tui.rc" ]; do
        sleep 0.1; i=$((i + 1))
    done
    tmux -L "$sock" kill-server >/dev/null 2>&1
    ok "$(test "$(cat "$T/tui.rc" 2>/dev/null)" = 1 && one_line "$T/tui.err" &&
          grep -q 'session not saved' "$T/tui.err"; echo $?)" \
        "TUI quit with an unusable state directory: exit 1, 'session not saved' ($(cat "$T/tui.err" 2>/dev/null))"
    # Quitting an empty conversation keeps the session saved before it.
    mkdir -p "$T/keep/rwkv-chat/sessions"
    echo hi | "$CHAT" --batch -t 1 --max-tokens 2 \
        --state-out "$T/keep/rwkv-chat/sessions/rwkv7-tiny-chat.pth.state" >/dev/null 2>&1
    cp "$T/keep/rwkv-chat/sessions/rwkv7-tiny-chat.pth.state" "$T/keep.orig"
    tmux -L "$sock" -f /dev/null new-session -d -x 100 -y 30 \
        "XDG_STATE_HOME='$T/keep' '$CHAT' -t 1 2>'$T/keep.err'; echo \$? >'$T/keep.rc'; sleep 30"
    i=0
    while [ $i -lt 100 ] && ! tmux -L "$sock" capture-pane -p | grep -q 'type a message'; do
        sleep 0.1; i=$((i + 1))
    done
    tmux -L "$sock" send-keys '/quit' Enter
    i=0
    while [ $i -lt 100 ] && [ ! -s "$T/keep.rc" ]; do
        sleep 0.1; i=$((i + 1))
    done
    tmux -L "$sock" kill-server >/dev/null 2>&1
    ok "$(test "$(cat "$T/keep.rc" 2>/dev/null)" = 0 &&
          cmp -s "$T/keep.orig" "$T/keep/rwkv-chat/sessions/rwkv7-tiny-chat.pth.state"; echo $?)" \
        "TUI quit with nothing said: the session saved before is kept for --resume"

    # TERM=dumb cannot draw panels: one line saying what to do, exit 1.
    tmux -L "$sock" -f /dev/null new-session -d -x 100 -y 30 \
        "TERM=dumb '$CHAT' -t 1 2>'$T/dumb.err'; echo \$? >'$T/dumb.rc'; sleep 30"
    i=0
    while [ $i -lt 100 ] && [ ! -s "$T/dumb.rc" ]; do
        sleep 0.1; i=$((i + 1))
    done
    tmux -L "$sock" kill-server >/dev/null 2>&1
    ok "$(test "$(cat "$T/dumb.rc" 2>/dev/null)" = 1 && one_line "$T/dumb.err" &&
          grep -q "'dumb' cannot move the cursor.*--batch" "$T/dumb.err"; echo $?)" \
        "TUI with TERM=dumb: exit 1, one line suggesting TERM or --batch"
else
    skip "tmux not installed"
    skip "tmux not installed"
    skip "tmux not installed"
fi

# --- rwkv-tool mkmodel never replaces a device or FIFO ----------------------
if mkfifo "$T/mkfifo" 2>/dev/null; then
    "$TOOL" mkmodel --version 7 --layers 1 --embd 64 --vocab 16 -o "$T/mkfifo" \
        >/dev/null 2>"$T/mk.err"
    ok "$(test $? = 1 && one_line "$T/mk.err" && grep -q 'not a regular file' "$T/mk.err" &&
          test -p "$T/mkfifo"; echo $?)" \
        "mkmodel onto a FIFO: exit 1, 'not a regular file', the FIFO is left alone"
else
    skip "mkfifo failed"
fi

tap_done
