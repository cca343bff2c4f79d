#!/bin/sh
# test_tool_models_names.sh - every name 'rwkv-tool models' lists is a MODEL
# that 'rwkv-tool info' and 'rwkv-tool logits' take, found the way
# rwkv-chat --model finds it (issue 21, item 8), run from a directory that
# holds no model so that only the search can find them.
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
B=${TOP_BUILDDIR:-.}
S=${SHARED_DIR:-../shared}
case $B in /*) ;; *) B=$PWD/$B ;; esac
case $S in /*) ;; *) S=$PWD/$S ;; esac
TOOL="$B/rwkv-tool"
M=$S/fixtures/models
TMP=$(mktemp -d "${TMPDIR:-/tmp}/test_tool_models_names.XXXXXX") || exit 99
trap 'rm -rf "$TMP"' EXIT
XDG_DATA_HOME=$TMP/data
export XDG_DATA_HOME
D=$XDG_DATA_HOME/rwkv-chat/models
mkdir -p "$D" "$TMP/cwd" || exit 99
cp "$M/v7.pth" "$M/v6.safetensors" "$D/" || exit 99
cp "$M/v7-world.pth" "$D/world-small.pth" || exit 99
cd "$TMP/cwd" || exit 99

"$TOOL" models >"$TMP/list" 2>"$TMP/list.err"
ok $? "rwkv-tool models runs"
awk 'NR > 1 { print $1 }' "$TMP/list" >"$TMP/names"
for want in v7.pth v6.safetensors world-small.pth; do
    grep -qxF "$want" "$TMP/names"
    ok $? "rwkv-tool models lists $want"
done

echo 1 2 3 >"$TMP/tokens"
for name in $(cat "$TMP/names"); do
    path=$(awk -v n="$name" 'NR > 1 && $1 == n { print $NF; exit }' "$TMP/list")
    out=$("$TOOL" info "$name" 2>"$TMP/err")
    rc=$?
    printf '%s\n' "$out" | grep -qxF "file:          $path"
    ok $((rc + $?)) "rwkv-tool info $name: loads the listed file" ||
        sed 's/^/# /' "$TMP/err"
    "$TOOL" logits "$name" --tokens-file "$TMP/tokens" -o "$TMP/byname.f32" 2>"$TMP/err" &&
        "$TOOL" logits "$path" --tokens-file "$TMP/tokens" -o "$TMP/bypath.f32" &&
        cmp -s "$TMP/byname.f32" "$TMP/bypath.f32"
    ok $? "rwkv-tool logits $name: the logits of the listed file" ||
        sed 's/^/# /' "$TMP/err"
done

# A name without its extension, as rwkv-chat --model takes it.
"$TOOL" info world-small >"$TMP/out" 2>"$TMP/err"
grep -qxF "file:          $D/world-small.pth" "$TMP/out"
ok $? "rwkv-tool info world-small: the extension is optional, as for --model"

# A path still works, relative ones included.
cp "$M/v7.pth" "$TMP/cwd/local.pth"
"$TOOL" info ./local.pth >"$TMP/out" 2>"$TMP/err" &&
    grep -qxF "file:          ./local.pth" "$TMP/out"
ok $? "rwkv-tool info ./local.pth: a path is a path"

# An unknown name: one line naming where it looked, status 1, for both.
"$TOOL" info no-such-model >"$TMP/out" 2>"$TMP/err"
rc=$?
[ "$rc" -eq 1 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] &&
    grep -qF "rwkv-tool: model 'no-such-model' not found: looked for no-such-model, no-such-model.pth, no-such-model.safetensors in $D" "$TMP/err"
ok $? "rwkv-tool info no-such-model: status 1, one line naming the places looked in" ||
    sed 's/^/# /' "$TMP/err"
"$TOOL" logits no-such-model --tokens-file "$TMP/tokens" -o "$TMP/x.f32" 2>"$TMP/err"
rc=$?
[ "$rc" -eq 1 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && [ ! -e "$TMP/x.f32" ] &&
    grep -qF "rwkv-tool: model 'no-such-model' not found: looked for" "$TMP/err"
ok $? "rwkv-tool logits no-such-model: status 1, one line, no output file" ||
    sed 's/^/# /' "$TMP/err"

tap_done
