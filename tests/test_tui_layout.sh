#!/bin/sh
# test_tui_layout.sh - what the TUI shows at common widths (issue 21,
# item 8), driven in a private tmux server with the v7-world fixture:
# /help and /info at 80, 100 and 132 columns wrap each row once, greedily,
# continuing under its text (no row broken mid-paragraph into a ragged
# line); the knobs panel's seed row shows a 20-digit seed at 80 columns;
# the "N more lines" line of a scrolled-back transcript hides no text.
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tmux.sh"

B=${TOP_BUILDDIR:-.}
model=${SHARED_DIR:-../shared}/fixtures/models/v7-world.pth
if [ ! -f "$model" ]; then
    skip_all "$model not found"
fi
tmux_setup test_tui_layout

SEED=18446744073709551615
prog="$B/rwkv-chat --model $model --seed $SEED"
# start SESSION COLUMNS ROWS [OPTION...]: rwkv-chat in a new session.
start() {
    s=$1 x=$2 y=$3
    shift 3
    $T new-session -d -s "$s" -x "$x" -y "$y" \
        "$prog $*; echo \"EXITED \$?\"; sleep 30" || return 1
}

# What /help and /info say, one row a line, as batch mode prints them.
# (on standard error, where batch mode writes what commands say)
printf '/help\n/info\n' | $prog --batch 2>&1 >/dev/null | sed -n '/^\/help /,/^knobs: /p' >"$work/rows"
grep -q "^/set \[KNOB \[VALUE\]\]  " "$work/rows" && grep -q "^knobs: " "$work/rows"
ok $? "batch /help and /info give the rows the TUI wraps"

# transcript SESSION: the transcript's rows of the screen, the side panels
# cut off, as "EDGE|TEXT" (EDGE: the transcript's width, the column where a
# side panel starts or the window's width).
transcript() {
    cols=$($T display -p -t "$1" '#{window_width}')
    screen "$1" | awk -v cols="$cols" '
        NR == 1 { next }
        /^\342\224\200\342\224\200/ { exit }
        {
            edge = cols
            for (k = 1; k <= 3; k++) {
                box = k == 1 ? "\342\224\202" : k == 2 ? "\342\224\214" : "\342\224\224"
                p = index($0, box)
                if (p > 0 && p - 1 < edge) { edge = p - 1 }
            }
            line = substr($0, 1, edge)
            sub(/ +$/, "", line)
            print edge "|" line
        }'
}

# check_rows FILE: each row of /help and /info (from "/help" to "knobs:")
# on the screen: it starts at column 2 after "- " or two blanks, its
# continuation lines start under its text (after the row's first two
# spaces or its "label: "), a continuation's first word did not fit on the
# line before (greedy: no line broken early), and the row's lines joined
# are the row batch mode prints.  Prints "#" lines about what is wrong.
check_rows() {
    awk -v rowsfile="$work/rows" '
        function norm(s) { gsub(/ +/, " ", s); sub(/^ /, "", s); sub(/ $/, "", s); return s }
        function textcol(s,   g, c, rest) {
            # the column where a row text starts: after the first run of
            # two spaces or the first "label: ", whichever comes first
            rest = substr(s, 3)
            g = index(rest, "  "); c = index(rest, ": ")
            if (c > 0 && (g == 0 || c < g) && c - 1 <= 24) { g = c + 1 }
            if (g == 0) { return 2 }
            g += 2 + 1
            while (substr(s, g, 1) == " ") { g++ }
            return g - 1
        }
        function finish() {
            if (cur == "") { return }
            want = rows[nrow++]
            if (norm(cur) != norm(want)) {
                printf "# row \"%s\"\n#   shown as \"%s\"\n", want, cur; bad++
            }
            cur = ""
        }
        BEGIN { while ((getline l < rowsfile) > 0) { rows[n++] = l } }
        {
            edge = substr($0, 1, index($0, "|") - 1) + 0
            line = substr($0, index($0, "|") + 1)
        }
        !started && line !~ /^- \/help  / { next }
        { started = 1 }
        line ~ /^[-!] [^ ]/ || line ~ /^  [^ ]/ {
            if (done) { exit }
            finish()
            cur = substr(line, 3); col = textcol(line); prev = line
            if (line ~ /^  knobs: |^- knobs: /) { last = 1 }
            next
        }
        line ~ /^   / {
            ind = match(line, /[^ ]/) - 1
            if (cur == "") { printf "# a continuation with no row: \"%s\"\n", line; bad++; next }
            if (ind != col) {
                printf "# \"%s\" continues at column %d, not under its text (column %d)\n", line, ind, col; bad++
            }
            word = substr(line, ind + 1); sub(/ .*/, "", word)
            if (length(prev) + 1 + length(word) <= edge - 1) {
                printf "# \"%s\" broken early: \"%s\" fitted on \"%s\" (width %d)\n", cur, word, prev, edge; bad++
            }
            cur = cur " " substr(line, ind + 1); prev = line
            next
        }
        { if (last) { done = 1 } }
        END {
            finish()
            if (nrow != n) { printf "# %d rows shown of %d\n", nrow, n; bad++ }
            exit bad > 0
        }' "$1"
}

for cols in 80 100 132; do
    s=w$cols
    start "$s" "$cols" 60
    wait_for "$s" "$IDLE" 30 || { ok 1 "$cols columns: the chat starts"; continue; }
    type_text "$s" "/help"
    keys "$s" Enter
    type_text "$s" "/info"
    keys "$s" Enter
    # /info's last row (the knobs panel shows the seed too: not a sign)
    wait_for "$s" "knobs: temperature" 5
    transcript "$s" >"$work/t$cols"
    check_rows "$work/t$cols"
    ok $? "$cols columns: each row of /help and /info wraps once, greedily, under its text" ||
        sed 's/^/#   /' "$work/t$cols"
    keys "$s" C-d
done

# --- the seed row of the knobs panel at 80 columns -----------------------------
start k 80 24
wait_for k "$IDLE" 30
keys k F2
wait_for k "seed +[0-9.]+ " 5
row=$(screen k | grep -o "seed  *[0-9.]* " | head -n 1 | sed 's/^seed *//; s/ *$//')
head=${row%%..*} tail=${row##*..}
case $SEED in "$head"*"$tail") good=0 ;; *) good=1 ;; esac
[ -n "$head" ] && [ -n "$tail" ] && [ "$head" != "$row" ]
ok $((good + $?)) "80 columns: the seed row shows seed $SEED abbreviated around '..' ($row)"
keys k Escape
type_text k "/set seed 42"
keys k Enter
keys k F2
wait_for k "seed +42 " 5
ok $? "80 columns: a short seed is shown whole"
$T resize-window -t k -x 132 -y 30
keys k Escape
type_text k "/set seed $SEED"
keys k Enter
wait_for k "seed +$SEED " 5
ok $? "132 columns: the long seed is shown whole"
keys k C-d

# --- "N more lines" never covers text ------------------------------------------
# A long reply, seen whole in a tall window; then a short one, scrolled back
# a page and two: the rows above "N more lines" are the full transcript's
# lines that come N before its end, each whole, and the last row is the
# "N more lines" line alone.
start r 80 70 --seed 7 --max-tokens 250
wait_for r "$IDLE" 30
type_text r "Tell me a long story"
keys r Enter
wait_for r "reply cut at max_tokens" 60
wait_for r "$IDLE" 10
rows_of() { # rows_of SESSION: the transcript's rows, trailing blanks cut
    screen "$1" | awk 'NR == 1 { next } /^\342\224\200\342\224\200/ { exit } { sub(/ +$/, ""); print }'
}
rows_of r | awk '{ a[NR] = $0 } $0 != "" { n = NR } END { for (i = 1; i <= n; i++) print a[i] }' \
    >"$work/full"
total=$(wc -l <"$work/full")
[ "$total" -gt 20 ] && [ "$total" -lt 66 ]
ok $? "a long reply of $total lines, whole in a 70-row window"
$T resize-window -t r -x 80 -y 10
# the TUI has redrawn for 10 rows: its separator is on row 8
i=0
sep=$(printf '\342\224\200\342\224\200')
while [ "$i" -lt 50 ] && ! screen r | sed -n 8p | grep -q "^$sep"; do
    sleep 0.1
    i=$((i + 1))
done
more_count() {
    screen r | sed -n 's/.* \([0-9][0-9]*\) more lines (PgDn) *$/\1/p' | tail -n 1
}
# scroll_back N: PgUp until "M more lines" shows an M other than N (a key
# that arrives before the TUI has seen the new size may scroll nothing).
scroll_back() {
    tries=0
    while [ "$tries" -lt 5 ]; do
        keys r PPage
        i=0
        while [ "$i" -lt 20 ]; do
            c=$(more_count)
            if [ -n "$c" ] && [ "$c" != "$1" ]; then
                return 0
            fi
            sleep 0.1
            i=$((i + 1))
        done
        tries=$((tries + 1))
    done
    return 1
}
N=
for pages in 1 2; do
    scroll_back "$N"
    rows_of r >"$work/view"
    n=$(wc -l <"$work/view")
    more=$(tail -n 1 "$work/view")
    N=$(printf '%s\n' "$more" | sed -n 's/^ *\([0-9][0-9]*\) more lines (PgDn)$/\1/p')
    [ -n "$N" ]
    ok $? "PgUp (view $pages): the last row is the 'N more lines' line alone: '$more'"
    head -n $((n - 1)) "$work/view" >"$work/shown"
    head -n $((total - N)) "$work/full" | tail -n $((n - 1)) >"$work/want"
    cmp -s "$work/shown" "$work/want"
    ok $? "PgUp (view $pages): the $((n - 1)) rows above it are the lines that end $N before the last, whole" ||
        diff "$work/want" "$work/shown" | sed 's/^/# /'
done
for i in 1 2 3 4 5 6 7 8 9 10; do
    keys r NPage
done
wait_for r "reply cut at max_tokens" 5
! screen r | grep -q "more lines (PgDn)"
ok $? "PgDn back to the end: no 'more lines' line, the last line shown"
keys r C-d
tap_done
