#!/bin/sh
# test_tool_info.sh - rwkv-tool info on every fixture, and its errors.
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
B=${TOP_BUILDDIR:-.}
S=${SHARED_DIR:-../shared}
TOOL="$B/rwkv-tool"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/test_tool_info.XXXXXX") || exit 99
trap 'rm -rf "$TMP"' EXIT

# info_has FILE LINE...: every LINE appears in the output of info FILE
info_has() {
    file=$1; shift
    out=$("$TOOL" info "$file" 2>"$TMP/err") || { cat "$TMP/err"; return 1; }
    for line in "$@"; do
        printf '%s\n' "$out" | grep -qxF -- "$line" || { echo "# missing: $line"; printf '%s\n' "$out" | sed 's/^/# /'; return 1; }
    done
}

M=$S/fixtures/models
T=$S/fixtures/trained
t "v4.pth" info_has "$M/v4.pth" "version:       RWKV-4" "layers:        3" \
    "embedding:     128" "vocab:         1000" "ffn:           512" "stored dtype:  fp16" \
    "parameters:    899712 (899.71 K)" "state:         1920 floats" "extra tensors: 0"
t "v5.2.pth" info_has "$M/v5.2.pth" "version:       RWKV-5.2" "heads:         2 x 64" \
    "ffn:           448" "stored dtype:  bf16" "parameters:    900864 (900.86 K)"
t "v6.pth" info_has "$M/v6.pth" "version:       RWKV-6" "lora ranks:    decay 64, mix 32" \
    "parameters:    1073664 (1.07 M)"
t "v6.safetensors" info_has "$M/v6.safetensors" "version:       RWKV-6" \
    "file size:     2155584 bytes (2.16 MB)"
t "v7.pth" info_has "$M/v7.pth" "version:       RWKV-7" "heads:         2 x 64" \
    "lora ranks:    decay 32, a 32, v 32, gate 32" "file size:     1909805 bytes (1.91 MB)" \
    "state:         25344 floats"
t "v7-fp32.pth" info_has "$M/v7-fp32.pth" "stored dtype:  fp32" "compute dtype: fp32"
t "v7-world.pth" info_has "$M/v7-world.pth" "vocab:         65536" "heads:         1 x 64" \
    "layers:        2" "embedding:     64"
t "v7.torch2.pth" info_has "$M/v7.torch2.pth" "version:       RWKV-7" "layers:        3"
t "v7.safetensors" info_has "$M/v7.safetensors" "version:       RWKV-7" "vocab:         1000"
t "tiny-4v0" info_has "$T/tiny-4v0-660K.pth" "version:       RWKV-4" "layers:        4" \
    "vocab:         256"
t "tiny-5v1 is 5.0 with 8 heads of 8" info_has "$T/tiny-5v1-730K.pth" \
    "version:       RWKV-5.0" "heads:         8 x 8" "layers:        12"
t "tiny-5v2" info_has "$T/tiny-5v2-730K.pth" "version:       RWKV-5.2" "heads:         8 x 8"
t "tiny-7v0" info_has "$T/tiny-7v0-834K.pth" "version:       RWKV-7" "heads:         1 x 64"

fp() { "$TOOL" info "$1" | sed -n 's/^fingerprint: *//p'; }
t "same fingerprint for v7 in .pth, torch2 .pth and safetensors" sh -c \
    "test -n \"\$1\" && test \"\$1\" = \"\$2\" && test \"\$2\" = \"\$3\"" - \
    "$(fp "$M/v7.pth")" "$(fp "$M/v7.torch2.pth")" "$(fp "$M/v7.safetensors")"
bpt() { "$TOOL" info "$@" | sed -n 's/^bytes\/token: *\([0-9]*\).*/\1/p'; }
t "--dtype fp32 doubles the bytes per token of a bf16 model" sh -c \
    "test \$((\$2 * 19 / 10)) -lt \$1" - "$(bpt --dtype fp32 "$M/v7.pth")" "$(bpt "$M/v7.pth")"
t "--dtype fp32 reported as compute dtype" sh -c \
    "'$TOOL' info --dtype fp32 '$M/v7.pth' | grep -qx 'compute dtype: fp32'"

# errors: one line "rwkv-tool: FILE: problem", exit 1; usage errors exit 2
one_error() { # one_error STATUS PATTERN ARGS...
    want=$1; pat=$2; shift 2
    "$TOOL" info "$@" >"$TMP/out" 2>"$TMP/err"
    st=$?
    test $st -eq "$want" && test ! -s "$TMP/out" && grep -q -- "$pat" "$TMP/err" &&
        { test "$want" -eq 2 || test "$(wc -l <"$TMP/err")" -eq 1; } ||
        { echo "# status $st"; sed 's/^/# /' "$TMP/err"; return 1; }
}
head -c 100000 "$M/v7.pth" >"$TMP/cut.pth"
: >"$TMP/empty.pth"
printf 'not a model\n' >"$TMP/text.safetensors"
t "truncated file: exit 1, one line" one_error 1 "^rwkv-tool: $TMP/cut.pth: truncated" "$TMP/cut.pth"
t "empty file: exit 1, one line" one_error 1 "^rwkv-tool: $TMP/empty.pth: empty file" "$TMP/empty.pth"
t "text file: exit 1" one_error 1 "^rwkv-tool: $TMP/text.safetensors: not a model file" "$TMP/text.safetensors"
t "missing file: exit 1" one_error 1 "^rwkv-tool: $TMP/none.pth: No such file" "$TMP/none.pth"
t "no MODEL: exit 2" one_error 2 "missing MODEL"
t "two MODELs: exit 2" one_error 2 "more than one MODEL" "$M/v7.pth" "$M/v6.pth"
t "unknown --dtype: exit 2" one_error 2 "unknown weight format 'fp8'" --dtype fp8 "$M/v7.pth"
t "unknown option: exit 2" one_error 2 "unrecognized option '--frobnicate'" --frobnicate "$M/v7.pth"
t "--help on stdout, exit 0" sh -c "'$TOOL' info --help | grep -q '^Usage: rwkv-tool info'"
t "rwkv-tool --help lists info" sh -c "'$TOOL' --help | grep -q '^  info '"
tap_done
