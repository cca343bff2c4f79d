#!/bin/sh
# test_continue_batch.sh - issue 21 in --batch: /continue after a reply
# cut at max_tokens (plain and --jsonl), and snapshots that survive in
# state files (/save, --state-out, --state-in, a bad snapshots section).
# The demo model, greedy: replies are compared byte for byte.
B=${TOP_BUILDDIR:-.}
CHAT="$B/rwkv-chat"
T="$B/tests/tmp/continue.$$"
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"

mkdir -p "$T" || exit 1
trap 'rm -rf "$T"' EXIT
T=$(cd "$T" && pwd)
export XDG_CONFIG_HOME="$T/config" XDG_DATA_HOME="$T/data" XDG_STATE_HOME="$T/state"
# run NAME [ARGS...] < input: stdout to $T/NAME.out, stderr to $T/NAME.err, status to $T/NAME.rc
run() {
    name=$1; shift
    "$CHAT" --batch -t 1 --greedy "$@" >"$T/$name.out" 2>"$T/$name.err"
    echo $? >"$T/$name.rc"
}
rc() { cat "$T/$1.rc"; }

# --- /continue: the cut reply's line and the rest make the uncut reply -------
printf 'Tell me about ls\n' | run whole --max-tokens 200
printf 'Tell me about ls\n/continue\n/continue\n/set max_tokens 200\n/continue\n' |
    run parts --max-tokens 5
ok "$(test "$(rc whole)" = 0 && test "$(rc parts)" = 0 && test "$(wc -l <"$T/parts.out")" = 4; echo $?)" \
    "a reply cut at 5 tokens, /continue twice, then to its end: four lines, exit 0"
ok "$(test "$(tr -d '\n' <"$T/parts.out")" = "$(tr -d '\n' <"$T/whole.out")" &&
      test "$(head -n 1 "$T/parts.out")" = "ls: list directory contents"; echo $?)" \
    "joined, the lines are the uncut reply ($(head -c 60 "$T/whole.out"))"

printf 'Tell me about ls\n/continue\n' | run verbose --max-tokens 5 -v
ok "$(grep -q ', 5 reply tokens in .*stop: length, context 15 tokens' "$T/verbose.err" &&
      grep -q ', 10 reply tokens in .*tokens/s), stop: length, context 20 tokens' "$T/verbose.err"; echo $?)" \
    "--verbose: the continued reply counts all its tokens (5, then 10) and its tokens/s"

printf '{"role":"user","content":"Tell me about ls"}\n/continue\n' | run jsonl --max-tokens 5 --jsonl
ok "$(test "$(rc jsonl)" = 0 && sed -n 2p "$T/jsonl.out" |
      grep -q '^{"role":"assistant","content":"ls: list directory contents. List information about the","stop_reason":"length","prompt_tokens":10,"reply_tokens":10,"context_tokens":20,'; echo $?)" \
    "--jsonl: /continue's object holds the whole reply so far and all its tokens"

printf 'Tell me about ls\n/continue\n' | run ended --max-tokens 200
ok "$(test "$(rc ended)" = 1 && test "$(wc -l <"$T/ended.err")" = 1 &&
      grep -q '^rwkv-chat: stdin:2: the last reply was not cut at max_tokens: nothing to continue' "$T/ended.err" &&
      cmp -s "$T/ended.out" "$T/whole.out"; echo $?)" \
    "/continue after a reply that ended: exit 1, one line naming the line"
printf '/continue\n' | run none
ok "$(test "$(rc none)" = 1 && grep -q 'stdin:1: the last reply was not cut' "$T/none.err"; echo $?)" \
    "/continue before any reply: the same one line"
printf 'Tell me about ls\n/undo\n/continue\n' | run undone --max-tokens 5
ok "$(test "$(rc undone)" = 1 && grep -q 'stdin:3: the last reply was not cut' "$T/undone.err"; echo $?)" \
    "/continue after /undo: nothing to continue"
printf 'Tell me about ls\n/snap s\n/save %s\n/continue\n' "$T/cut.state" | run snapsave --max-tokens 5
ok "$(test "$(rc snapsave)" = 0 && test "$(sed -n 2p "$T/snapsave.out")" = "$(sed -n 2p "$T/parts.out")"; echo $?)" \
    "/snap and /save in between: /continue still goes on the same"

# --- snapshots survive in state files ------------------------------------------
# Two snapshots, each continued before the file is left ...
printf 'Tell me about ls\n/snap one\nWhat about cp\n/snap two\n/save %s\n/restore one\nWhat about rm\n/restore two\nWhat about rm\n' \
    "$T/two.state" | run before --max-tokens 30 --state-out "$T/out.state"
tail -n 2 "$T/before.out" >"$T/before.want"
ok "$(test "$(rc before)" = 0 && test -s "$T/two.state" && test -s "$T/out.state" && test "$(wc -l <"$T/before.out")" = 4; echo $?)" \
    "a conversation with two snapshots saved by /save and --state-out"
# ... and after it: --state-in lists both, and each continues the same.
printf '/snapshots\n/restore one\nWhat about rm\n/restore two\nWhat about rm\n' |
    run after --max-tokens 30 --state-in "$T/two.state"
ok "$(test "$(rc after)" = 0 && grep -Eq '^one  2 turns, taken [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}$' "$T/after.err" &&
      grep -Eq '^two  4 turns, taken ' "$T/after.err"; echo $?)" \
    "--state-in: /snapshots lists both, with their turns and times"
ok "$(cmp -s "$T/after.out" "$T/before.want"; echo $?)" \
    "restoring each gives the greedy reply it gave before the file was left"
printf '/snapshots\n/restore one\nWhat about rm\n' | run after2 --max-tokens 30 --state-in "$T/out.state"
ok "$(test "$(rc after2)" = 0 && grep -q '^one ' "$T/after2.err" && grep -q '^two ' "$T/after2.err" &&
      test "$(cat "$T/after2.out")" = "$(head -n 1 "$T/before.want")"; echo $?)" \
    "--state-out keeps them too"
printf '/snap mine\n/load %s\n/snapshots\n' "$T/two.state" | run loaded
ok "$(test "$(rc loaded)" = 0 && grep -q '^one ' "$T/loaded.err" && ! grep -q '^mine ' "$T/loaded.err"; echo $?)" \
    "/load: the file's snapshots replace those in memory"

# A damaged snapshots section: one line, exit 1 (python3 rewrites the file).
if command -v python3 >/dev/null 2>&1; then
    python3 - "$T/two.state" "$T/bad.state" <<'EOF'
import struct, sys
d = bytearray(open(sys.argv[1], 'rb').read())
n = struct.unpack_from('<I', d, 24)[0]
for i in range(n):
    e = 128 + 32 * i
    if d[e:e + 16].rstrip(b'\0') == b'snapshots':
        off, size = struct.unpack_from('<QQ', d, e + 16)
        struct.pack_into('<I', d, off + 4, 0xffffff)    # the first name's length
h = 0xcbf29ce484222325
for b in d[:-8]:
    h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
struct.pack_into('<Q', d, len(d) - 8, h)
open(sys.argv[2], 'wb').write(d)
EOF
    printf 'Hello\n' | run bad --state-in "$T/bad.state"
    ok "$(test "$(rc bad)" = 1 && test "$(wc -l <"$T/bad.err")" = 1 &&
          grep -q "bad.state: corrupt 'snapshots' section$" "$T/bad.err" && test ! -s "$T/bad.out"; echo $?)" \
        "--state-in with a damaged snapshots section: exit 1, one line ($(cat "$T/bad.err"))"
    printf '/snap mine\n/load %s\n/snapshots\n' "$T/bad.state" | run badload
    ok "$(test "$(rc badload)" = 1 && grep -q "corrupt 'snapshots' section" "$T/badload.err"; echo $?)" \
        "/load of it: exit 1, one line"
else
    skip "python3 not installed"
    skip "python3 not installed"
fi

tap_done
