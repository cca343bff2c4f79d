# tmux.sh - the harness of the TUI tests, sourced after tap.sh.
#
# tmux_setup NAME skips the test where tmux is missing, then makes a
# private tmux server ($T: the tmux command for it, whether or not make
# check itself runs inside tmux) and a scratch folder $work holding the
# XDG config, data and state folders; both go at exit.  Wide characters
# need a UTF-8 locale, in tmux as in rwkv-chat: LC_ALL is C.UTF-8.
#
#   screen SESSION                 the visible text
#   wait_for SESSION ERE [SECONDS] polls the screen until it matches
#                                  (10 s by default; prints it if not)
#   keys SESSION KEY...            tmux key names
#   type_text SESSION TEXT         literal text
#
# The reply is streaming while the key bar starts with $STREAMING (it
# offers to stop it); it has ended when the bar is back to $IDLE.
# Every wait polls capture-pane with a deadline; nothing sleeps blindly.

tmux_setup() {
    if ! command -v tmux >/dev/null 2>&1; then
        skip_all "tmux not installed"
    fi
    unset TMUX
    LC_ALL=C.UTF-8
    export LC_ALL
    work=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX") || exit 1
    XDG_CONFIG_HOME=$work/config XDG_DATA_HOME=$work/data XDG_STATE_HOME=$work/state
    export XDG_CONFIG_HOME XDG_DATA_HOME XDG_STATE_HOME
    T="tmux -L $1-$$ -f /dev/null"
    trap tmux_cleanup EXIT
    trap 'exit 1' INT TERM HUP
}
tmux_cleanup() {
    $T kill-server >/dev/null 2>&1
    rm -rf "$work"
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
