#!/bin/sh
# test_loadshow.sh - the model's load is shown (issue 21, item 1): with
# --batch --verbose each step on stderr (the CRC-32 check of a first start,
# reading, converting "first start only", writing the cache; the next start
# checks nothing and reads the cache instead), none
# without --verbose; in the TUI a bar on the terminal while the weights
# convert, gone once the chat starts.
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"

B=${TOP_BUILDDIR:-.}
SRC=${TOP_SRCDIR:-$(dirname "$0")/..}
CHAT="$B/rwkv-chat"
work=$(mktemp -d "${TMPDIR:-/tmp}/test_loadshow.XXXXXX") || exit 1
XDG_CONFIG_HOME=$work/config XDG_DATA_HOME=$work/data XDG_STATE_HOME=$work/state
XDG_CACHE_HOME=$work/cache
export XDG_CONFIG_HOME XDG_DATA_HOME XDG_STATE_HOME XDG_CACHE_HOME
unset TMUX
sock=rwkvload-$$
T="tmux -L $sock -f /dev/null"
cleanup() {
    command -v tmux >/dev/null 2>&1 && $T kill-server >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
model=$work/tiny.pth
cp "$SRC/share/models/rwkv7-tiny-chat.pth" "$model"

run() { # run ERRFILE OPTION...: one message in batch mode
    f=$1
    shift
    echo "Hello." | "$CHAT" --batch --model "$model" -t 1 --max-tokens 2 "$@" >/dev/null 2>"$f"
}

run "$work/e1" --verbose --dtype q8
ok $? "batch --verbose --dtype q8, first start: runs"
grep -q "^rwkv-chat: load: reading the weights$" "$work/e1" &&
    grep -q "^rwkv-chat: load: reading the weights: done in [0-9.]* s$" "$work/e1"
ok $? "it says it reads the weights, and when that is done"
grep -q "^rwkv-chat: load: converting the weights to q8 (first start only: the result is cached)$" "$work/e1"
ok $? "it says it converts to q8, the first start only"
grep -q "^rwkv-chat: load: writing the conversion cache for the next start: done in" "$work/e1"
ok $? "it says it writes the conversion cache"
# the first start reads the whole file for its zip CRC-32s (a fresh
# XDG_CACHE_HOME holds no record that it passed): the first step shown
sed -n 1p "$work/e1" | grep -qx "rwkv-chat: load: checking the file's CRC-32s (first start only)" &&
    grep -q "^rwkv-chat: load: checking the file's CRC-32s (first start only): done in [0-9.]* s$" "$work/e1"
ok $? "the first start says it checks the file's CRC-32s first, and when that is done" ||
    sed 's/^/# /' "$work/e1"
test -d "$XDG_CACHE_HOME/rwkv-chat/verified" && test -n "$(ls "$XDG_CACHE_HOME/rwkv-chat/verified")"
ok $? "and records that the file passed"
run "$work/e2" --verbose --dtype q8
grep -q "^rwkv-chat: load: reading the converted weights from the cache" "$work/e2" &&
    ! grep -q "converting" "$work/e2"
ok $? "the next start reads the cache and converts nothing"
! grep -q "CRC-32" "$work/e2"
ok $? "the next start checks no CRC-32 (the record vouches for the file)"
run "$work/e3" --verbose --dtype q8 --no-cache
grep -q "^rwkv-chat: load: converting the weights to q8$" "$work/e3" && ! grep -q "first start" "$work/e3"
ok $? "with --no-cache it converts every time, and does not say 'first start only'"
grep -qx "rwkv-chat: load: checking the file's CRC-32s" "$work/e3"
ok $? "with --no-cache it checks the CRC-32s every time, and says so"
run "$work/e4" --dtype q4
ok "$(test $? = 0 && ! grep -q "load:" "$work/e4" && ! grep -q "%" "$work/e4"; echo $?)" \
   "without --verbose batch says nothing of the load"

# The TUI: a bar while the weights convert (each report waits 30 ms here,
# RWKV_CHAT_LOAD_DELAY_MS, so that the screen can be read), then the chat.
if ! command -v tmux >/dev/null 2>&1; then
    skip "tmux not installed"
    skip "tmux not installed"
    skip "tmux not installed"
    skip "tmux not installed"
else
    LC_ALL=C.UTF-8
    export LC_ALL
    $T new-session -d -s s -x 120 -y 30 \
        "env RWKV_CHAT_LOAD_DELAY_MS=30 $CHAT --model $model --dtype fp16 -t 1; echo \"EXITED \$?\"; sleep 30"
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
    wait_screen "converting the weights to fp16 \(first start only: the result is cached\) \[#*\.*\] +[0-9]+%" 30
    ok $? "TUI: a bar while the weights convert: $(screen | grep -o 'converting.*%' | head -n 1)"
    wait_screen "tiny.pth" 60 && ! screen | grep -q "converting the weights"
    ok $? "TUI: the chat starts and the bar is gone"
    $T send-keys -t s C-d
    # A first start in the TUI (a fresh XDG_CACHE_HOME): the CRC-32 check
    # has its bar too (each report waits 300 ms here: a check reports every
    # 8 MiB), then the chat.
    $T new-session -d -s v -x 120 -y 30 \
        "env XDG_CACHE_HOME=$work/cache2 RWKV_CHAT_LOAD_DELAY_MS=300 $CHAT --model $model -t 1; echo \"EXITED \$?\"; sleep 30"
    screen() { $T capture-pane -p -t v; }
    wait_screen "checking the file's CRC-32s \(first start only\) \[#*\.*\] +[0-9]+%" 30
    ok $? "TUI, first start: a bar while the CRC-32s are checked: $(screen | grep -o 'checking.*%' | head -n 1)"
    wait_screen "tiny.pth" 60 && ! screen | grep -q "checking the file"
    ok $? "TUI: the chat starts and the bar is gone"
    $T send-keys -t v C-d
fi
tap_done
