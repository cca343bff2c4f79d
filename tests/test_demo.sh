#!/bin/sh
# test_demo.sh - the bundled demo model is the default, and greedy decoding
# with no penalties reproduces the official package's replies in
# $SHARED_DIR/models/greedy.tsv (QUESTION<TAB>REPLY, "\n" escaped).
B=${TOP_BUILDDIR:-.}
S=${SHARED_DIR:-../shared}
CHAT="$B/rwkv-chat"
TSV="$S/models/greedy.tsv"
T="$B/tests/tmp/demo.$$"
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"

if [ ! -f "$TSV" ]; then
    skip_all "$TSV not found"
fi
mkdir -p "$T" || exit 1
trap 'rm -rf "$T"' EXIT

# One conversation: each question from the zero state (/reset between).
awk -F '\t' '{ print $1; print "/reset" }' "$TSV" >"$T/in"
awk -F '\t' '{ r = $2; gsub(/\\n/, "\n", r); print r }' "$TSV" >"$T/want"
nq=$(wc -l <"$TSV")

# No --model: the bundled demo model.
"$CHAT" --batch --greedy -t 1 <"$T/in" >"$T/out" 2>"$T/err"
ok $? "rwkv-chat --batch --greedy on the bundled model exits 0 $(head -c 200 "$T/err")"
ok "$(cmp -s "$T/out" "$T/want"; echo $?)" "all $nq greedy replies match greedy.tsv exactly"
if ! cmp -s "$T/out" "$T/want"; then
    diff "$T/want" "$T/out" | sed 's/^/# /' | head -20
fi

# The same through --jsonl, one TAP line per question.
if command -v python3 >/dev/null 2>&1; then
    python3 - "$TSV" "$T/jin" <<'PY'
import json, sys
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for line in open(sys.argv[1], encoding="utf-8"):
        q = line.rstrip("\n").split("\t")[0]
        f.write(json.dumps({"role": "user", "content": q}) + "\n/reset\n")
PY
    "$CHAT" --batch --jsonl --greedy -t 1 <"$T/jin" >"$T/jout" 2>"$T/jerr"
    ok $? "--jsonl run exits 0"
    python3 - "$TSV" "$T/jout" >"$T/tap" <<'PY'
import json, sys
want = [l.rstrip("\n").split("\t", 1) for l in open(sys.argv[1], encoding="utf-8")]
got = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
for i, (q, r) in enumerate(want):
    r = r.replace("\\n", "\n")
    g = got[i] if i < len(got) else {"content": None, "stop_reason": None}
    good = g["content"] == r and g["stop_reason"] == "end"
    print("%s greedy reply to %r (stop %s)" % ("PASS" if good else "FAIL", q, g["stop_reason"]))
    if not good:
        print("#   want %r" % r)
        print("#   got  %r" % g["content"])
PY
    while IFS= read -r line; do
        case $line in
        PASS*) ok 0 "${line#PASS }";;
        FAIL*) ok 1 "${line#FAIL }";;
        *) echo "$line";;
        esac
    done <"$T/tap"
fi

# /info says plainly that this is the demo model.
printf '/info\n' | "$CHAT" --batch >"$T/info.out" 2>"$T/info.err"
ok "$(test ! -s "$T/info.out" && grep -q 'rwkv7-tiny-chat.pth' "$T/info.err" &&
      grep -q 'tiny demo model: knows a little about Debian commands; load a real RWKV-7 World model with --model PATH' "$T/info.err"; echo $?)" \
    "/info names the demo model and says what it is"

# rwkv-tool models lists it with version and parameter count.
"$B/rwkv-tool" models >"$T/models.out" 2>"$T/models.err"
ok "$(grep -q '^rwkv7-tiny-chat.pth  *7  *18\.[0-9]M ' "$T/models.out"; echo $?)" \
    "rwkv-tool models lists the demo model: RWKV-7, 18.xM parameters: $(grep tiny "$T/models.out")"
# A model by bare name from $XDG_DATA_HOME/rwkv-chat/models.
mkdir -p "$T/xdg/rwkv-chat/models"
ln -s "$S/fixtures/models/v7-world.pth" "$T/xdg/rwkv-chat/models/mine.pth"
printf '/info\n' | XDG_DATA_HOME="$T/xdg" "$CHAT" --batch --model mine >/dev/null 2>"$T/mine.err"
ok "$(grep -q '^model: mine.pth' "$T/mine.err" && ! grep -q 'tiny demo' "$T/mine.err"; echo $?)" \
    "--model NAME finds NAME.pth in \$XDG_DATA_HOME/rwkv-chat/models"
XDG_DATA_HOME="$T/xdg" "$B/rwkv-tool" models >"$T/models2.out" 2>&1
ok "$(sed -n 2p "$T/models2.out" | grep -q '^mine.pth  *7 '; echo $?)" \
    "rwkv-tool models lists the user's models first"
XDG_DATA_HOME="$T/xdg" "$CHAT" --batch --model nothing-here </dev/null >/dev/null 2>"$T/missing.err"
rc=$?
ok "$(test $rc = 1 && grep -q "$T/xdg/rwkv-chat/models" "$T/missing.err" &&
      grep -q 'share/models' "$T/missing.err"; echo $?)" "a missing model names every place it looked"

tap_done
