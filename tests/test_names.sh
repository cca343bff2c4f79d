#!/bin/sh
# test_names.sh - file names holding a newline and a terminal escape
# sequence reach rwkv-tool's output escaped (issue 23): every listing and
# every message stays one line, with no raw control byte.
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
B=${TOP_BUILDDIR:-.}
S=${SHARED_DIR:-../shared}
TOOL="$B/rwkv-tool"
T=$(mktemp -d "${TMPDIR:-/tmp}/test_names.XXXXXX") || exit 99
trap 'rm -rf "$T"' EXIT

NL='
'
ESC=$(printf '\033')
BAD="a${NL}${ESC}[31mb"            # a, newline, ESC [31m, b
SHOWN='a\n\x1b[31mb'                # how messages must show it

# plain FILE: no byte below 0x20 but the line ends, and no DEL
plain() {
    ! LC_ALL=C grep -q "$(printf '[\001-\010\013-\037\177]')" "$1"
}

M="$T/xdg/rwkv-chat/models"
mkdir -p "$M"
cp "$S/fixtures/models/v7.pth" "$M/${BAD}.pth"
: >"$M/${BAD}-empty.pth"
XDG_DATA_HOME="$T/xdg" "$TOOL" models >"$T/models.out" 2>"$T/models.err"
ok "$(grep -F "${SHOWN}.pth " "$T/models.out" | grep -qF "  $M/${SHOWN}.pth" &&
      plain "$T/models.out"; echo $?)" \
    "rwkv-tool models lists a model named a\\n\\x1b[31mb.pth escaped, on one line"
ok "$(grep -qF "$M/${SHOWN}-empty.pth: empty file (0 bytes), not a model" "$T/models.err" &&
      test "$(wc -l <"$T/models.err")" -eq 1 && plain "$T/models.err"; echo $?)" \
    "rwkv-tool models: the error about an empty a\\n\\x1b[31mb-empty.pth is one escaped line"
ok "$(test "$(grep -cF "$SHOWN" "$T/models.out")" -eq 2 &&
      test "$(grep -c "^a" "$T/models.out")" -eq 2; echo $?)" \
    "rwkv-tool models: one line per model, the odd names included"

# rwkv-tool info and tokenize on files whose names hold the same bytes
: >"$T/${BAD}.pth"
"$TOOL" info "$T/${BAD}.pth" >/dev/null 2>"$T/info.err"
ok "$(grep -qF "$T/${SHOWN}.pth: empty file (0 bytes), not a model" "$T/info.err" &&
      test "$(wc -l <"$T/info.err")" -eq 1 && plain "$T/info.err"; echo $?)" \
    "rwkv-tool info: the error names a\\n\\x1b[31mb.pth escaped, on one line"
printf 'garbage\n' >"$T/${BAD}.txt"
"$TOOL" tokenize --vocab "$T/${BAD}.txt" </dev/null >/dev/null 2>"$T/vocab.err"
ok "$(grep -qF "$T/${SHOWN}.txt:1: " "$T/vocab.err" &&
      test "$(wc -l <"$T/vocab.err")" -eq 1 && plain "$T/vocab.err"; echo $?)" \
    "a vocabulary named a\\n\\x1b[31mb.txt: the error names it escaped, on one line"
tap_done
