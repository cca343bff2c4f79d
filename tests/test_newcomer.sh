#!/bin/sh
# test_newcomer.sh - the smaller things a newcomer's first hour found
# (issue 21, item 8), on the command line: getopt's messages say
# "rwkv-chat:", --complete ends its output with a newline, --greedy with an
# explicit --temperature is refused, a closed stdout in batch is an error
# line (no SIGPIPE death) and --state-out is still written; /export and
# /copy in batch (item 6); /info's weight format, /prompt alone, and /snap
# on a taken name with /snapshots' turns and times (item 4).
B=${TOP_BUILDDIR:-.}
CHAT="$B/rwkv-chat"
T="$B/tests/tmp/newcomer.$$"
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"

mkdir -p "$T" || exit 1
trap 'rm -rf "$T"' EXIT
T=$(cd "$T" && pwd)
export XDG_CONFIG_HOME="$T/config" XDG_DATA_HOME="$T/data" XDG_STATE_HOME="$T/state"

# --- getopt's own errors name the program, not its path ------------------------
"$CHAT" --bogus </dev/null >"$T/bogus.out" 2>"$T/bogus.err"
rc=$?
ok "$(test $rc = 2 && head -n 1 "$T/bogus.err" | grep -qx "rwkv-chat: unrecognized option '--bogus'"; echo $?)" \
    "an unknown option: exit 2, 'rwkv-chat: unrecognized option' ($(head -n 1 "$T/bogus.err"))"
"$CHAT" --model </dev/null >/dev/null 2>"$T/noarg.err"
ok "$(test $? = 2 && head -n 1 "$T/noarg.err" | grep -q "^rwkv-chat: option '--model' requires an argument"; echo $?)" \
    "a missing argument: exit 2, 'rwkv-chat: option ... requires an argument'"

# --- --greedy and an explicit --temperature: refused, not silently overridden --
"$CHAT" --batch --greedy --temperature 0.8 </dev/null >/dev/null 2>"$T/greedy.err"
ok "$(test $? = 2 && grep -q '^rwkv-chat: --greedy and --temperature cannot be combined' "$T/greedy.err"; echo $?)" \
    "--greedy --temperature 0.8: exit 2, says they cannot be combined"
mkdir -p "$T/config/rwkv-chat"
printf 'temperature = 0.9\n' >"$T/config/rwkv-chat/config"
printf '/info\n' | "$CHAT" --batch --greedy -t 1 >/dev/null 2>"$T/greedycfg.err"
ok "$(test $? = 0 && grep -q 'temperature 0 ' "$T/greedycfg.err"; echo $?)" \
    "--greedy over a config file's temperature: accepted, temperature 0"
rm -f "$T/config/rwkv-chat/config"

# --- --complete ends with a newline ----------------------------------------------
printf 'The quick brown fox' | "$CHAT" --complete --seed 3 --max-tokens 6 -t 1 >"$T/comp.out" 2>"$T/comp.err"
ok "$(test $? = 0 && test -s "$T/comp.out" && test "$(tail -c 1 "$T/comp.out" | od -An -c | tr -d ' ')" = '\n' &&
      test "$(wc -l <"$T/comp.out")" -ge 1; echo $?)" \
    "--complete: the output ends with exactly its newline"

# --- a closed stdout in batch: one line, no SIGPIPE, --state-out written ---------
# The reader takes one byte and goes; the replies go on into a closed pipe.
( printf 'hello\ntell me more\nand more\n' |
  "$CHAT" --batch -t 1 --seed 2 --max-tokens 60 --state-out "$T/pipe.state" 2>"$T/pipe.err"
  echo $? >"$T/pipe.rc" ) | head -c 1 >/dev/null
i=0
while [ $i -lt 600 ] && [ ! -s "$T/pipe.rc" ]; do
    sleep 0.1; i=$((i + 1))
done
rc=$(cat "$T/pipe.rc")
ok "$(test "$rc" = 1 && grep -q '^rwkv-chat: stdout: Broken pipe' "$T/pipe.err" &&
      test "$(wc -l <"$T/pipe.err")" -eq 1; echo $?)" \
    "a closed stdout: exit 1 (not SIGPIPE's 141), one line ($rc: $(cat "$T/pipe.err"))"
ok "$(test -s "$T/pipe.state" && printf '/info\n' |
      "$CHAT" --batch -t 1 --state-in "$T/pipe.state" 2>&1 | grep -q 'context: [1-9]'; echo $?)" \
    "and --state-out still holds the conversation so far"
# --- /export FILE.md (issue 21, item 6): Markdown, atomic, never over other files
printf 'Hello there\n/export %s\n' "$T/chat.md" |
    "$CHAT" --batch -t 1 --seed 4 --max-tokens 8 >"$T/exp.out" 2>"$T/exp.err"
ok "$(test $? = 0 && head -n 1 "$T/chat.md" | grep -qx '<!-- rwkv-chat conversation -->' &&
      grep -qx '# Conversation with rwkv7-tiny-chat.pth' "$T/chat.md" &&
      grep -qx '### User' "$T/chat.md" && grep -qx 'Hello there' "$T/chat.md" &&
      grep -qx '### Assistant' "$T/chat.md" &&
      grep -qxF "$(head -n 1 "$T/exp.out")" "$T/chat.md"; echo $?)" \
    "/export: the transcript as Markdown, headed by the model, each turn under its speaker"
printf 'my notes\n' >"$T/notes.md"
printf 'Hello there\n/export %s\n' "$T/notes.md" |
    "$CHAT" --batch -t 1 --seed 4 --max-tokens 8 >/dev/null 2>"$T/notes.err"
ok "$(test $? = 1 && grep -q 'notes.md: exists and is not a rwkv-chat export, not replacing it' "$T/notes.err" &&
      test "$(cat "$T/notes.md")" = "my notes"; echo $?)" \
    "/export over another file: refused with one line, the file untouched"
printf 'Again\n/export %s\n' "$T/chat.md" |
    "$CHAT" --batch -t 1 --seed 4 --max-tokens 8 >/dev/null 2>&1
ok "$(test $? = 0 && grep -qx 'Again' "$T/chat.md" && ! grep -q 'Hello there' "$T/chat.md"; echo $?)" \
    "/export replaces an earlier export"
printf '/export %s\n' "$T/empty.md" | "$CHAT" --batch -t 1 >/dev/null 2>"$T/empty.err"
ok "$(test $? = 1 && grep -q 'nothing said yet' "$T/empty.err" && test ! -e "$T/empty.md"; echo $?)" \
    "/export of an empty conversation: refused, no file"
printf 'Hi\n/copy\n' | "$CHAT" --batch -t 1 --max-tokens 4 >/dev/null 2>"$T/copy.err"
ok "$(test $? = 1 && grep -q '/copy copies through the terminal' "$T/copy.err"; echo $?)" \
    "/copy in batch mode: an error saying it works in the chat"
# --- /info names the weight format; /prompt alone lists the personas -------
printf '/info\n/prompt\n' | "$CHAT" --batch -t 1 >/dev/null 2>"$T/info.err"
ok "$(test $? = 0 && grep -q '^model: rwkv7-tiny-chat.pth  RWKV-7 [0-9.]*M bf16$' "$T/info.err"; echo $?)" \
    "/info shows the weight format ($(head -n 1 "$T/info.err"))"
ok "$(grep -q '^personas (/prompt NAME switches' "$T/info.err" &&
      grep -q '^  bare (current)$' "$T/info.err" && grep -q '^  default$' "$T/info.err"; echo $?)" \
    "/prompt alone lists the personas, the current one marked"
printf '/info\n' | "$CHAT" --batch -t 1 --dtype q8 --no-cache >/dev/null 2>"$T/q8.err"
ok "$(grep -q '^model: rwkv7-tiny-chat.pth  RWKV-7 [0-9.]*M q8$' "$T/q8.err"; echo $?)" \
    "--dtype q8: /info says q8"

# --- /snap X twice numbers the second; /snapshots shows turns and time (item 4)
printf 'Hi\n/snap a\nMore\n/snap a\n/snap a\n/snapshots\n' |
    "$CHAT" --batch -t 1 --max-tokens 3 >/dev/null 2>"$T/snap.err"
ok "$(test $? = 0 && grep -q "snapshot 'a' exists: this one is 'a-2'" "$T/snap.err" &&
      grep -q "snapshot 'a' exists: this one is 'a-3'" "$T/snap.err"; echo $?)" \
    "/snap X when X exists: numbered X-2, then X-3, and says so"
ok "$(grep -Eq '^a  2 turns, taken [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}$' "$T/snap.err" &&
      grep -Eq '^a-2  4 turns, taken ' "$T/snap.err" && grep -Eq '^a-3( \(current\))?  4 turns, taken ' "$T/snap.err"; echo $?)" \
    "/snapshots lists each with its turns and when it was taken"
printf 'Hi\n/snap a\nMore\n/snap a\n/restore a\n/info\n' |
    "$CHAT" --batch -t 1 --max-tokens 3 >/dev/null 2>"$T/snap2.err"
ok "$(grep -q '^context: .* 2 turns' "$T/snap2.err"; echo $?)" \
    "the first 'a' was kept: restoring it gives its 2 turns"
tap_done
