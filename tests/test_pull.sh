#!/bin/sh
# test_pull.sh - rwkv-tool pull against a local HTTP server the test starts
# (tests/pull_server.py; never the internet): a known name downloaded into
# the models folder and found by rwkv-chat --model NAME; a download cut
# short resumed with a Range request; a corrupted download refused and not
# installed; a server that ignores Range; an unknown name; bad addresses;
# rwkv-chat without a model pointing at rwkv-tool pull (issue 21, item 5).
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"

B=${TOP_BUILDDIR:-.}
SRC=${TOP_SRCDIR:-$(dirname "$0")/..}
TOOL="$B/rwkv-tool"
CHAT="$B/rwkv-chat"
if ! command -v python3 >/dev/null 2>&1; then
    skip_all "python3 not installed"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/test_pull.XXXXXX") || exit 1
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    [ -n "$KEEP" ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
XDG_DATA_HOME=$work/data XDG_CONFIG_HOME=$work/config XDG_STATE_HOME=$work/state
XDG_CACHE_HOME=$work/cache
export XDG_DATA_HOME XDG_CONFIG_HOME XDG_STATE_HOME XDG_CACHE_HOME
models=$work/data/rwkv-chat/models

# The served files: the demo model under several names.
mkdir -p "$work/www" "$work/share"
demo=$SRC/share/models/rwkv7-tiny-chat.pth
for f in tiny cut bad norange plain; do cp "$demo" "$work/www/$f.pth"; done
size=$(wc -c <"$demo" | tr -d ' ')
sha=$(python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$demo")
python3 "$SRC/tests/pull_server.py" "$work/www" "$work/port" "$work/log" \
    --cut cut.pth:1000000 --corrupt bad.pth --no-range norange.pth &
server=$!
i=0
while [ ! -s "$work/port" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
port=$(cat "$work/port" 2>/dev/null)
[ -n "$port" ] || { echo "Bail out! the test server did not start"; exit 1; }
url=http://127.0.0.1:$port
# The known names of this test, in the format of share/models.list.
for f in tiny cut bad; do
    echo "$f-model $f-model-v1.pth $size $sha $url/$f.pth"
done >"$work/share/models.list"
RWKV_CHAT_DATADIR=$work/share:${RWKV_CHAT_DATADIR:-$SRC/share}
export RWKV_CHAT_DATADIR

# 1. a known name: downloaded, checked, installed where --model finds it
"$TOOL" pull tiny-model >"$work/out" 2>"$work/err"
ok $? "pull NAME: exit 0"
cmp -s "$demo" "$models/tiny-model-v1.pth" && [ ! -e "$models/tiny-model-v1.pth.part" ]
ok $? "the file is the served one, in the models folder, no .part left"
grep -qx "$models/tiny-model-v1.pth" "$work/out" && grep -q "SHA-256 checked" "$work/err"
ok $? "stdout names the installed file; stderr says the SHA-256 was checked"
echo "Hello." | "$CHAT" --batch --model tiny-model-v1 -t 1 --max-tokens 2 >/dev/null 2>"$work/chat.err"
ok $? "rwkv-chat --model FILE-NAME finds the pulled model $(head -n 1 "$work/chat.err" | head -c 200)"
echo "Hello." | "$CHAT" --batch --model tiny-model -t 1 --max-tokens 2 >/dev/null 2>"$work/chat.err"
ok $? "rwkv-chat --model NAME (the pull name) finds it too $(head -n 1 "$work/chat.err" | head -c 200)"
"$TOOL" pull tiny-model >/dev/null 2>"$work/err"
ok "$(test $? = 0 && grep -q "already there" "$work/err"; echo $?)" "pulling it again: already there"

# 2. a connection cut after 1000000 bytes: .part kept, the next run resumes
"$TOOL" pull cut-model >/dev/null 2>"$work/err"
st=$?
ok "$(test $st = 1 && [ ! -e "$models/cut-model-v1.pth" ] &&
      [ "$(wc -c <"$models/cut-model-v1.pth.part" | tr -d ' ')" = 1000000 ]; echo $?)" \
   "a cut download fails (status $st), not installed, the 1000000 bytes kept in .part"
grep -q "run the same command again to resume" "$work/err"
ok $? "it says how to resume: $(tail -n 1 "$work/err")"
"$TOOL" pull cut-model >/dev/null 2>"$work/err"
st=$?
ok "$(test $st = 0 && cmp -s "$demo" "$models/cut-model-v1.pth" &&
      [ ! -e "$models/cut-model-v1.pth.part" ]; echo $?)" \
   "the second run completes it (status $st): the file is whole and checked"
grep -q "GET /cut.pth bytes=1000000-" "$work/log" && grep -q "resumed at byte 1000000" "$work/err"
ok $? "it asked for the rest only (Range: bytes=1000000-)"

# 3. a corrupted download: refused, removed, not installed
"$TOOL" pull bad-model >/dev/null 2>"$work/err"
st=$?
ok "$(test $st = 1 && [ ! -e "$models/bad-model-v1.pth" ] && [ ! -e "$models/bad-model-v1.pth.part" ]; echo $?)" \
   "a corrupted download is refused (status $st), nothing installed, no .part left"
grep -q "not the published file (SHA-256 [0-9a-f]*, expected $sha)" "$work/err"
ok $? "the refusal names the SHA-256: $(tail -n 1 "$work/err" | head -c 300)"

# 4. a server that ignores Range: the stale .part is started over
mkdir -p "$work/dl"
head -c 5000 /dev/urandom >"$work/dl/norange.pth.part"
"$TOOL" pull --dir "$work/dl" --sha256 "$sha" "$url/norange.pth" >/dev/null 2>"$work/err"
ok "$(test $? = 0 && cmp -s "$demo" "$work/dl/norange.pth"; echo $?)" \
   "pull URL --dir: a server that cannot send a range: started over, right file"
"$TOOL" pull --dir "$work/dl" "$url/plain.pth?download=1" >/dev/null 2>"$work/err"
ok "$(test $? = 0 && cmp -s "$demo" "$work/dl/plain.pth" && grep -q "size checked" "$work/err"; echo $?)" \
   "pull URL without a digest: saved under the address's file name, the size checked"
"$TOOL" pull --dir "$work/dl" --sha256 "$(echo "$sha" | tr 0-9a-f 1-9a-f0)" "$url/tiny.pth" \
    >/dev/null 2>"$work/err"
ok "$(test $? = 1 && [ ! -e "$work/dl/tiny.pth" ] && [ ! -e "$work/dl/tiny.pth.part" ]; echo $?)" \
   "pull URL --sha256 of another file: refused, nothing left"

# 5. unknown names and bad addresses
before=$(ls "$models" | wc -l)
"$TOOL" pull no-such-model >/dev/null 2>"$work/err"
ok "$(test $? = 1 && grep -q "unknown model 'no-such-model'.*rwkv-tool pull --list" "$work/err"; echo $?)" \
   "an unknown name: status 1, points at pull --list"
"$TOOL" pull "$url/missing.pth" >/dev/null 2>"$work/err"
ok "$(test $? = 1 && grep -q "404" "$work/err" && [ ! -e "$models/missing.pth.part" ]; echo $?)" \
   "a URL the server does not have: status 1, the 404 named, nothing left: $(tail -n 1 "$work/err" | head -c 200)"
"$TOOL" pull "ftp://127.0.0.1/x.pth" >/dev/null 2>"$work/err"
ok "$(test $? = 1 && grep -q "only http:// and https://" "$work/err"; echo $?)" "an ftp:// address is refused"
"$TOOL" pull "http://127.0.0.1:1/x.pth" >/dev/null 2>"$work/err"
ok "$(test $? = 1 && [ ! -e "$models/x.pth.part" ]; echo $?)" \
   "a server that is not there: status 1, nothing left: $(tail -n 1 "$work/err" | head -c 200)"
"$TOOL" pull "$url/" >/dev/null 2>"$work/err"
ok "$(test $? = 1 && grep -q "no file name" "$work/err"; echo $?)" "an address without a file name is refused"
ok "$(test "$(ls "$models" | wc -l)" = "$before"; echo $?)" "none of these left a file in the models folder"
"$TOOL" pull >/dev/null 2>&1
ok "$(test $? = 2; echo $?)" "pull without an argument: usage error"
"$TOOL" pull --list >"$work/list" 2>&1
ok "$(test $? = 0 && grep -q "^tiny-model .*tiny-model-v1.pth" "$work/list"; echo $?)" "pull --list lists the known names"
RWKV_CHAT_DATADIR=$SRC/share "$TOOL" pull --list >"$work/list" 2>&1
ok "$(test $? = 0 && grep -q "^g1-1.5b .*rwkv7-g1-1.5b-20250429-ctx4096.pth" "$work/list"; echo $?)" \
   "the shipped list knows the RWKV-7 G1 and World releases"

# 6. rwkv-chat with no model and no demo says how to get one (a copy of the
# binary, which does not look in the source tree as the build tree's does)
mkdir -p "$work/empty" "$work/bin"
cp "$CHAT" "$work/bin/rwkv-chat"
if RWKV_CHAT_DATADIR=$work/empty "$work/bin/rwkv-chat" --batch </dev/null >/dev/null 2>"$work/err"; then
    skip "an installed demo model is found"
else
    grep -q "rwkv-tool pull" "$work/err"
    ok $? "no model and no demo: the error says how to get one: $(tail -n 1 "$work/err" | head -c 300)"
fi
tap_done
