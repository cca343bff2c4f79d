#!/bin/sh
# test_tui_newcomer.sh - what a newcomer's first hour found in the TUI
# (issue 21), driven in a private tmux server with the v7-world fixture:
# "terminal too small" says the minimum, mouse reporting off until F5, the
# knobs panel's key bar during a reply, /copy (OSC 52) and /export, NO_COLOR
# and theme = mono, the weight format in the status line, /prompt alone and
# Tab completion of persona and file names, a note when a message's blank
# lines are joined.
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tmux.sh"

B=${TOP_BUILDDIR:-.}
model=${SHARED_DIR:-../shared}/fixtures/models/v7-world.pth
if [ ! -f "$model" ]; then
    skip_all "$model not found"
fi
tmux_setup test_tui_newcomer
RWKV_CHAT_TUI_TOKEN_DELAY_MS=40
export RWKV_CHAT_TUI_TOKEN_DELAY_MS

prog="$B/rwkv-chat --model $model --seed 11 --max-tokens 24"
# start SESSION [OPTION...]: rwkv-chat in a new 100x30 session.
start() {
    s=$1
    shift
    $T new-session -d -s "$s" -x 100 -y 30 \
        "$prog $*; echo \"EXITED \$?\"; sleep 30" || return 1
}

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

# --- mouse reporting off by default (drag selects text); F5 toggles it --------
$T set-option -g set-clipboard on
[ "$($T display -p -t a '#{mouse_any_flag}#{mouse_standard_flag}#{mouse_button_flag}')" = 000 ]
ok $? "mouse reporting is off at the start, so the terminal's drag-select works"
keys a F5
wait_for a "mouse on \(F5\)" 5
on=$?
[ "$($T display -p -t a '#{mouse_standard_flag}#{mouse_button_flag}#{mouse_any_flag}')" != 000 ]
ok $(( on + $? )) "F5 turns it on (the wheel scrolls) and says so"
keys a F5
wait_for a "mouse off \(F5\)" 5
on=$?
[ "$($T display -p -t a '#{mouse_any_flag}#{mouse_standard_flag}#{mouse_button_flag}')" = 000 ]
ok $(( on + $? )) "F5 again turns it off"

# --- the knobs panel during a reply: Esc stops the reply, F2 goes back -------
type_text a "Tell me a long story please"
keys a Enter
wait_for a "$STREAMING" 10
keys a F2
wait_for a "Esc Stop reply +F2 Back" 5
ok $? "the knobs panel's key bar during a reply says Esc stops it and F2 goes back"
keys a F2
wait_for a "$IDLE" 30
ok $? "the reply ends"

# --- /copy: the last reply through OSC 52 (tmux keeps it as a buffer) -------
$T delete-buffer >/dev/null 2>&1
type_text a "/copy"
keys a Enter
wait_for a "is on the clipboard" 5
ok $? "/copy says the last reply is on the clipboard"
type_text a "/export $work/chat.md"
keys a Enter
wait_for a "exported 2 turns" 5
ok $? "/export FILE.md writes the conversation"
reply=$(awk '/^### Assistant$/ { getline; getline; print; exit }' "$work/chat.md" | sed 's/  $//')
i=0
while [ $i -lt 50 ] && [ -z "$($T show-buffer 2>/dev/null)" ]; do
    sleep 0.1; i=$((i + 1))
done
[ -n "$reply" ] && [ "$($T show-buffer 2>/dev/null | head -n 1)" = "$reply" ]
ok $? "the terminal received the last reply ($($T show-buffer 2>/dev/null | head -c 60))"

# --- NO_COLOR: no colour at all (a monochrome screen) ------------------------
$T new-session -d -s nc -x 100 -y 30 \
    "NO_COLOR=1 $prog; echo \"EXITED \$?\"; sleep 30"
wait_for nc "$IDLE" 30
$T capture-pane -e -p -t nc >"$work/nc.screen"
! grep -Eq $(printf '\033')'\[([0-9;]*;)?(3[0-7]|4[0-7]|38;5|48;5)[;m]' "$work/nc.screen"
ok $? "NO_COLOR=1: the screen holds no colour"
$T capture-pane -e -p -t a >"$work/colour.screen"
grep -Eq $(printf '\033')'\[([0-9;]*;)?(3[0-7]|4[0-7]|38;5|48;5)[;m]' "$work/colour.screen"
ok $? "without it the screen has colours (the check above can fail)"
keys nc C-d
wait_for nc "EXITED 0" 10
mkdir -p "$XDG_CONFIG_HOME/rwkv-chat"
printf 'theme = mono\n' >"$XDG_CONFIG_HOME/rwkv-chat/config"
$T new-session -d -s mono -x 100 -y 30 "$prog; echo \"EXITED \$?\"; sleep 30"
wait_for mono "$IDLE" 30
$T capture-pane -e -p -t mono >"$work/mono.screen"
! grep -Eq $(printf '\033')'\[([0-9;]*;)?(3[0-7]|4[0-7]|38;5|48;5)[;m]' "$work/mono.screen"
ok $? "theme = mono in the config file: no colour either"
keys mono C-d
wait_for mono "EXITED 0" 10
rm -f "$XDG_CONFIG_HOME/rwkv-chat/config"

# --- the weight format in the status line and /info ------------------------
screen a | head -1 | grep -q "v7-world.pth  RWKV-7 [0-9.]*M bf16"
ok $? "the status line shows the weight format ($(screen a | head -1 | cut -c1-60))"

# --- /prompt alone lists the personas; Tab completes persona and file names --
type_text a "/prompt"
keys a Enter
wait_for a "personas \(/prompt NAME switches" 5
ok $? "/prompt alone lists the personas"
screen a | grep -Eq "^ *default \(current\)|^ *translator"
ok $? "each on its line, the current one marked"
type_text a "/prompt transl"
keys a Tab
wait_for a "^> /prompt translator *$" 5
ok $? "Tab completes a persona name after /prompt"
keys a C-u
mkdir -p "$work/files"
: >"$work/files/conversation-one.state"
type_text a "/load $work/files/conv"
keys a Tab
wait_for a "conversation-one.state *$" 5
ok $? "Tab completes a file name after /load"
keys a C-u
type_text a "/save $work/files/conv"
keys a Tab
wait_for a "^> /save .*conversation-one.state *$" 5
ok $? "Tab completes a file name after /save"
keys a C-u
keys a C-u

# --- a pasted message with blank lines: the joining is said ------------------
$T set-buffer "$(printf 'first paragraph\n\nsecond paragraph')"
$T paste-buffer -p -t a
wait_for a "^\. second paragraph" 5
keys a Enter
wait_for a "blank lines of the message were joined" 10
ok $? "a message with blank lines: a note says they were joined"
wait_for a "$IDLE" 30
type_text a "one line only"
keys a Enter
wait_for a "$IDLE" 30
[ "$(screen a | grep -c 'blank lines of the message were joined')" -le 1 ]
ok $? "a message without blank lines gets no such note"

# --- Esc in the knobs panel during a reply does what its key bar says -----------
# after_user TEXT REGEX [PANEL]: REGEX is on a line after the message TEXT,
# and the key bar says the chat is idle (the bar alone may be read before
# Enter is), or with PANEL the knobs panel has the keys
after_user() {
    i=0
    while [ "$i" -lt 300 ]; do
        screen a | awk -v u="User: $1" -v r="$2" -v bar="${3:+^Up/Dn Select}" '
            index($0, u) { seen = 1; found = 0 } seen && $0 ~ r { found = 1 }
            $0 ~ (bar == "" ? "^F1 Help" : bar) { idle = 1 } END { exit !(found && idle) }' &&
            return 0
        sleep 0.1
        i=$((i + 1))
    done
    echo "# timed out waiting for /$2/ after '$1' in:" >&2
    screen a | sed 's/^/#   /' >&2
    return 1
}
after_user "one line only" "reply cut at max_tokens"
# (a reply long enough to be stopped however slow the machine: 2000 tokens
# at 40 ms each)
type_text a "/set max_tokens 2000"
keys a Enter
type_text a "Tell me another long story please"
keys a Enter
wait_for a "$STREAMING" 10
keys a F2
wait_for a "Esc Stop reply +F2 Back" 5
keys a Escape
after_user "Tell me another long story please" "reply stopped" panel
ok $? "Esc in the knobs panel during a reply stops the reply, as its key bar says"
keys a F2
wait_for a "$IDLE" 10

keys a C-d
wait_for a "EXITED 0" 10
ok $? "Ctrl-D quits"
tap_done
