#!/bin/sh
# test_tui.sh - drives the real rwkv-chat TUI in a private tmux server with
# the v7-world fixture: streaming, knobs, snapshots, /save and --resume,
# resizing mid-reply, wide characters, stopping a reply or a long prompt and
# quitting.
# Every wait polls capture-pane with a deadline; nothing sleeps blindly.
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tmux.sh"

B=${TOP_BUILDDIR:-.}
model=${SHARED_DIR:-../shared}/fixtures/models/v7-world.pth
if [ ! -f "$model" ]; then
    skip_all "$model not found"
fi

tmux_setup test_tui
# The crash test must not leave a core file.
ulimit -c 0 2>/dev/null
# Replies wait this long for keys between tokens, so a test can watch one
# stream and act in the middle of it.
RWKV_CHAT_TUI_TOKEN_DELAY_MS=40
export RWKV_CHAT_TUI_TOKEN_DELAY_MS

prog="$B/rwkv-chat --model $model --seed 11 --max-tokens 48"
# start SESSION [OPTION...]: rwkv-chat in a new 100x30 session; its exit
# status is printed when it ends.
start() {
    s=$1
    shift
    $T new-session -d -s "$s" -x 100 -y 30 \
        "sh -c 'echo \$\$ >$work/pid.$s; exec $prog $*'; echo \"EXITED \$?\"; sleep 30" ||
        return 1
}
# wait_gone SESSION EXTENDED-REGEX [SECONDS]: polls until it no longer matches.
wait_gone() {
    i=0
    limit=$(( ${3:-10} * 10 ))
    while [ "$i" -lt "$limit" ]; do
        if ! screen "$1" | grep -Eq -- "$2"; then
            return 0
        fi
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

start a
wait_for a "v7-world.pth" 20
ok $? "the status line names the model"
screen a | head -1 | grep -q "RWKV-7"
ok $? "the status line shows the model version"

# 1. A message and a reply seen while it streams.
type_text a "Hello there"
keys a Enter
wait_for a "$STREAMING"
streaming=$?
wait_for a "Assistant: ." 5
partial=$(screen a)
echo "$partial" | grep -Eq "$STREAMING"
ok $(( streaming + $? )) "the reply is drawn while it streams"
wait_for a "$IDLE" 20
ok $? "the reply ends and the input comes back"
screen a | grep -q "User: Hello there"
ok $? "the user turn is in the transcript"
screen a | head -1 | grep -Eq "\| [0-9.]+ tok/s"
ok $? "the status line shows the reply speed"
screen a | head -1 | grep -Eq "ctx [1-9][0-9]* "
ok $? "the status line counts the context"

# 2. Temperature up one step in the knobs panel, seen there and in /info.
keys a F2
wait_for a "Left/Right Change" 5
keys a Right
wait_for a "temperature +1\.05" 5
ok $? "Right arrow in the knobs panel raises the temperature"
keys a Escape
wait_for a "$IDLE" 5
type_text a "/info"
keys a Enter
wait_for a "knobs: temperature 1\.05" 5
ok $? "/info shows the new temperature"

# 2b. The panel's temperature stops where /set's does (one knob table).
keys a F2
wait_for a "Left/Right Change" 5
keys a S-Right S-Right S-Right S-Right S-Right S-Right S-Right S-Right S-Right S-Right \
    S-Right S-Right S-Right S-Right S-Right S-Right S-Right S-Right S-Right S-Right
wait_for a "temperature +10\.00" 5
ok $? "Shift-Right stops the panel's temperature at 10.00, /set's maximum"
keys a Escape
wait_for a "$IDLE" 5
type_text a "/set temperature 10.01"
keys a Enter
wait_for a "temperature: '10\.01' is not a number from 0 to 10" 5
ok $? "/set refuses 10.01 with the range the panel stops at"
type_text a "/set temperature 1.05"
keys a Enter
wait_for a "$IDLE" 5

# 3. A snapshot, one more exchange, then restoring it from the panel.
type_text a "/snap before"
keys a Enter
wait_for a "snapshot 'before' taken" 5
ok $? "/snap takes a snapshot"
type_text a "Another message"
keys a Enter
wait_for a "User: Another message" 5 && wait_for a "$IDLE" 20
ok $? "the conversation goes on after the snapshot"
keys a F3
wait_for a "Enter Restore" 5
keys a Enter
wait_for a "restored snapshot before" 5
restored=$?
screen a | grep -q "Another message"
[ $? -ne 0 ] && [ $restored -eq 0 ]
ok $? "restoring the snapshot takes the transcript back"
screen a | head -1 | grep -q "snap before"
ok $? "the status line names the current snapshot"
keys a b
wait_for a "branched before\.1 from snapshot before" 5
ok $? "b in the snapshots panel branches from the selected snapshot"
screen a | head -1 | grep -q "snap before\.1"
ok $? "the branch becomes the current snapshot"
keys a Down d
wait_gone a "│[ *] before\.1 " 5
ok $? "d in the snapshots panel deletes the selected snapshot"
keys a Escape
wait_for a "$IDLE" 5

# 4. Wide characters: CJK (2 columns), emoji (2), a combining accent (0).
wide="你好世界😀 cafe$(printf '\314\201')!"
wide_extra=4    # 5 wide characters, one combining mark: +5 -1 columns
type_text a "$wide"
wait_for a "^> 你好世界" 5
cursor=$($T display -p -t a '#{cursor_x}')
# "> " + 4 CJK + emoji + " cafe\xcc\x81!" = 2 + 8 + 2 + 6 = 18 columns
[ "$cursor" = 18 ]
ok $? "the input cursor sits after the wide characters (column $cursor, want 18)"
keys a Enter
wait_for a "User: 你好世界" 5
line=$(screen a | grep "User: 你好世界" | head -1)
left=${line%%│*}
chars=$(printf '%s' "$left" | wc -m)
width=$((chars + wide_extra))
[ "$width" -eq 70 ]
ok $? "the side panel stays aligned beside CJK and emoji (column $width, want 70)"
wait_for a "$IDLE" 20

# 4b. Under LC_ALL=C, the bytes of UTF-8 typed in are text, not Meta keys
# (readline took each for M-r: "wörld" became "wrrrrrrld").
$T new-session -d -s l -x 100 -y 30 "env LC_ALL=C XDG_STATE_HOME=$work/state-l $prog; echo \"EXITED \$?\"; sleep 30"
wait_for l "v7-world.pth" 20
type_text l "wörld 你好"
wait_for l "^> wörld 你好" 5
ok $? "LC_ALL=C: typed UTF-8 reaches the input line whole"
keys l Enter
wait_for l "User: wörld 你好" 5
ok $? "LC_ALL=C: the message is sent whole"
wait_for l "$IDLE" 20

# 4c. (the same session) An emoji with a skin-tone modifier, wrapped: one
# character of two columns, never split across rows; the modifier is not
# drawn (terminals disagree on the width of the pair), so every row of the
# side panel stays where it is (issue 17).
type_text l "xx$(printf '\360\237\221\215\360\237\217\275%.0s' $(seq 1 40))"
keys l Enter
wait_for l "User: xx" 5 && wait_for l "$IDLE" 20
knob_rows=$(screen l | grep -cE '│ (temperature|top-p|top-k|min-p|presence|frequency|decay|max-tokens|seed) ')
border=$(screen l | grep -E '│ (temperature|top-p|top-k|min-p|presence|frequency|decay|max-tokens|seed) ' |
    while IFS= read -r line; do left=${line%%│ [a-z]*}; printf '%s\n' "$left" | wc -L; done | sort -u)
[ "$knob_rows" = 9 ] && [ "$border" = 70 ] && ! screen l | grep -q "$(printf '\360\237\217\275')"
ok $? "wrapped emoji with skin-tone modifiers: all 9 knob rows in place at column 70 ($knob_rows rows, columns $(echo $border))"
type_text l "/quit"
keys l Enter
wait_for l "EXITED 0" 10
ok $? "LC_ALL=C: rwkv-chat quits normally"

# 5. Resizing the window in the middle of a reply.
type_text a "Tell me a long story"
keys a Enter
wait_for a "$STREAMING"
$T resize-window -t a -x 60 -y 20
wait_for a "^─{60}$" 5
ok $? "the screen is redrawn at the new size mid-reply"
wait_for a "$IDLE" 20
ok $? "the reply goes on to its end after the resize"
$T resize-window -t a -x 80 -y 24
wait_for a "^─{80}$" 5
screen a | grep -q "Knobs F2"
[ $? -ne 0 ]
ok $? "at 80x24 the side panels make room for the conversation"
keys a F2
wait_for a "Knobs F2" 5
ok $? "F2 brings the knobs panel in at 80x24"
keys a Escape
wait_gone a "Knobs F2" 5
ok $? "Esc takes it away again"
$T resize-window -t a -x 300 -y 100
wait_for a "^─{300}$" 5
ok $? "a 300x100 terminal is used whole"
$T resize-window -t a -x 100 -y 30
wait_for a "^─{100}$" 5
ok $? "and 100x30 again"

# 6. Esc stops a reply; the partial reply stays.
type_text a "One more"
keys a Enter
wait_for a "$STREAMING" && wait_for a "Assistant: ." 5
keys a Escape
wait_for a "reply stopped" 5
ok $? "Esc stops the reply"
wait_for a "$IDLE" 5
ok $? "the input is back after stopping"

# 7. Scrollback with the mouse wheel (X10 mouse reports, as tmux sends
# them), /help, Tab completion and Alt-Enter.
type_text a "/help"
keys a Enter
wait_for a "/restore NAME" 5
ok $? "/help lists the commands"
# Mouse reporting is off until F5 (so that drag-select works).
keys a F5
wait_for a "mouse on \(F5\)" 5
$T send-keys -t a -l "$(printf '\033[M`!!')"
wait_for a "more lines \(PgDn\)" 5
ok $? "the mouse wheel scrolls the transcript back (after F5)"
keys a F5
wait_for a "mouse off \(F5\)" 5
keys a NPage
wait_gone a "more lines \(PgDn\)" 5
ok $? "PgDn scrolls to the end again"
type_text a "/rest"
keys a Tab
wait_for a "^> /restore *$" 5
ok $? "Tab completes a slash command"
keys a C-c
type_text a "first line"
keys a M-Enter
type_text a "second line"
wait_for a "^\. second line" 5
ok $? "Alt-Enter starts a new line in the input"
keys a C-c
$T set-buffer "$(printf 'pasted one\npasted two')"
$T paste-buffer -p -t a
wait_for a "^\. pasted two" 5
ok $? "a bracketed paste of two lines stays in the input as two lines"
keys a C-c
wait_for a "^> type a message" 5

# 8. /save, then quit with Ctrl-C twice: the session is saved for --resume.
type_text a "/save $work/conv.state"
keys a Enter
wait_for a "saved to" 5
[ $? -eq 0 ] && [ -s "$work/conv.state" ]
ok $? "/save writes a state file"
keys a C-c
wait_for a "Ctrl-C again" 5
ok $? "a first Ctrl-C at an empty prompt asks for a second"
keys a C-c
wait_for a "EXITED 0" 10
ok $? "a second Ctrl-C quits with status 0"
[ -s "$XDG_STATE_HOME/rwkv-chat/sessions/v7-world.pth.state" ]
ok $? "quitting saved the session"
grep -q "Tell me a long story" "$XDG_STATE_HOME/rwkv-chat/history" 2>/dev/null
ok $? "the input history was written"

chmod 600 "$XDG_STATE_HOME/rwkv-chat/history"
start b --resume
wait_for b "User: Hello there" 20
ok $? "--resume shows the old transcript"
screen b | grep -q "Another message"
[ $? -ne 0 ]
ok $? "--resume continues from the restored branch"
keys b Up
wait_for b "^> /save " 5
ok $? "the history persists across runs (Up recalls the last line)"
keys b C-u
type_text b "/quit"
keys b Enter
wait_for b "EXITED 0" 10
ok $? "/quit quits with status 0"
grep -q "^/quit$" "$XDG_STATE_HOME/rwkv-chat/history" &&
    grep -q "Tell me a long story" "$XDG_STATE_HOME/rwkv-chat/history" &&
    [ "$(stat -c %a "$XDG_STATE_HOME/rwkv-chat/history")" = 600 ] &&
    [ -z "$(find "$XDG_STATE_HOME/rwkv-chat" -name '*.tmp')" ]
ok $? "the history file is rewritten whole, keeps its mode 600, no temporary left"

start c --state-in "$work/conv.state"
wait_for c "User: One more" 20
ok $? "--state-in of the /save file shows its transcript"
keys c C-d
wait_for c "EXITED 0" 10
ok $? "Ctrl-D at an empty prompt quits"

# 9. SIGTERM: the terminal is restored and the session still saved.
rm -f "$XDG_STATE_HOME/rwkv-chat/sessions/v7-world.pth.state"
start d
wait_for d "v7-world.pth" 20
kill -TERM "$(cat "$work/pid.d")"
wait_for d "EXITED 143" 10
ok $? "SIGTERM ends rwkv-chat with status 143"
[ -s "$XDG_STATE_HOME/rwkv-chat/sessions/v7-world.pth.state" ]
ok $? "the session is saved on SIGTERM"

ok $(( $($T display -p -t d '#{alternate_on}') )) "the terminal is restored after SIGTERM"

# 10. A crash (SIGSEGV) still gives the terminal back.
start e
wait_for e "v7-world.pth" 20
kill -SEGV "$(cat "$work/pid.e")"
wait_for e "EXITED 139" 10
ok $? "SIGSEGV ends rwkv-chat by that signal"
ok $(( $($T display -p -t e '#{alternate_on}') )) "the terminal is restored after a crash"

# 11. Without --model: the bundled demo model, and a plain notice saying so.
prog="$B/rwkv-chat --seed 11"
start f
wait_for f "tiny demo model: knows a little about Debian" 20
ok $? "the demo model notice is shown when no model is given"
screen f | head -1 | grep -q "DEMO .*rwkv7-tiny-chat"
ok $? "the status line marks the demo model"
keys f C-d
wait_for f "EXITED 0" 10

# 12. A long pasted message: the status line counts its prompt tokens,
# Ctrl-C (or Esc) stops it, the message comes back to the input line, the
# conversation is as before and the next message gets its reply.  Prompts
# wait 500 ms for keys between pieces here, so the test can act mid-way.
prog="env RWKV_CHAT_TUI_PROMPT_DELAY_MS=500 $B/rwkv-chat --model $model --seed 11 --max-tokens 8"
start g
wait_for g "v7-world.pth" 20
ctx0=$(screen g | head -1 | grep -Eo "ctx [0-9]+")
awk 'BEGIN { for (i = 0; i < 3000; i++) printf "%s ", (i % 3 ? "river" : "stone"); printf "THE-END" }' \
    >"$work/long.txt"
$T load-buffer "$work/long.txt"
$T paste-buffer -p -t g
wait_for g "THE-END" 20
keys g Enter
wait_for g "reading prompt [0-9]+/[0-9]+ tokens" 10
ok $? "a long message: the status line shows 'reading prompt N/M tokens'"
keys g C-c
wait_for g "message not sent: interrupted after [0-9]+ of [0-9]+ prompt tokens" 10
ok $? "Ctrl-C stops the long prompt and says the message was not sent"
wait_gone g "reading prompt" 5 && screen g | head -1 | grep -q "$ctx0 "
ok $? "the status line is back, the context as before ($ctx0)"
screen g | grep -q "THE-END" && ! screen g | grep -q "User: "
ok $? "the message is back in the input line, not in the transcript"
keys g C-c
wait_for g "^> type a message" 5
type_text g "Hello there"
keys g Enter
wait_for g "User: Hello there" 10 && wait_for g "Assistant: ." 10 && wait_for g "$IDLE" 20
ok $? "the next message gets its reply"
$T paste-buffer -p -t g
wait_for g "THE-END" 20
keys g Enter
wait_for g "reading prompt [0-9]+/[0-9]+ tokens" 10
keys g Escape
wait_for g "^> .*THE-END|^\. .*THE-END" 10 && [ "$(screen g | grep -c "message not sent")" = 2 ]
ok $? "Esc stops a long prompt too"
keys g C-c
wait_for g "^> type a message" 5
# /edit TEXT with a long text: Ctrl-C stops its prompt, the line comes back
# to the input and the exchange it would have replaced stays.
ctx1=$(screen g | head -1 | grep -Eo "ctx [0-9]+")
type_text g "/edit "
$T paste-buffer -p -t g
wait_for g "THE-END" 20
keys g Enter
wait_for g "reading prompt [0-9]+/[0-9]+ tokens" 10
keys g C-c
wait_for g "^> .*THE-END|^\. .*THE-END" 10 && [ "$(screen g | grep -c "message not sent")" = 3 ] &&
    wait_gone g "reading prompt" 5 && screen g | head -1 | grep -q "$ctx1 " &&
    screen g | grep -q "User: Hello there"
ok $? "Ctrl-C stops /edit TEXT's long prompt: the status line is back, context ($ctx1) and last exchange kept"
keys g C-a
wait_for g "^> /edit stone river" 5
ok $? "the /edit line is back in the input line"
keys g C-c
wait_for g "^> type a message" 5
keys g C-d
wait_for g "EXITED 0" 10
ok $? "and rwkv-chat quits normally afterwards"

# G1: a think block (from a model made with rwkv-tool mkmodel --follow, whose
# greedy reply is " <think>\nThe user wants files.\n\nUse ls</think>`ls` lists
# them.\n\n") is shown apart from the answer, labelled and dimmed, and F4
# folds and unfolds it.
g1model=$work/rwkv7-g1x-0.1b-20250101-ctx8192.pth
chain=""
for piece in ':' ' <' 'think' '>' '\n' 'The' ' user' ' wants' ' files' '.' '\n\n' 'Use' ' ls' \
    '</' 'th' 'ink' '>`' 'ls' '`' ' lists' ' them' '.' '\n\n'; do
    chain="$chain $(printf "$piece" | "$B/rwkv-tool" tokenize)"
done
"$B/rwkv-tool" mkmodel --version 7 --layers 1 --embd 64 --follow "$chain" -o "$g1model" >/dev/null
prog="$B/rwkv-chat --model $g1model --greedy --max-tokens 40"
start k --system "'Be brief.'"
wait_for k "think auto" 20
ok $? "G1 model: the status line shows the think mode"
type_text k "How do I list files?"
keys k Enter
wait_for k '^Assistant: `ls` lists them\. ' 20 && wait_for k "$IDLE" 20 &&
    screen k | grep -Eq "^ +think: The user wants files\. " &&
    screen k | grep -A3 "think: The user" | grep -Eq "^ +Use ls( |\$)"
ok $? "the think block, blank line and all, is shown apart from the answer"
$T capture-pane -e -p -t k | grep "The user wants files" | grep -q "$(printf '\033')\[2m"
ok $? "the think block is dimmed"
keys k F4
wait_for k "think: \.\.\. \(thinking folded: F4 shows it\)" 5 && ! screen k | grep -q "Use ls" &&
    screen k | grep -q '^Assistant: `ls` lists them\. '
ok $? "F4 folds the think block to one line"
keys k F4
wait_for k "^ +think: The user wants files\. " 5
ok $? "F4 unfolds it again"
keys k C-d
wait_for k "EXITED 0" 10

tap_done
