#!/bin/sh
# test_rwkv456_tool.sh - rwkv-tool info and rwkv-tool logits on the RWKV-4,
# 5.x and 6 fixtures: version names, and logits / --state-out against the
# official goldens (within 1e-4) in RNN mode, sequence mode and chunks.
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
B=${TOP_BUILDDIR:-.}
S=${SHARED_DIR:-../shared}
TOOL="$B/rwkv-tool"
F=$S/fixtures
TMP=$(mktemp -d "${TMPDIR:-/tmp}/test_rwkv456_tool.XXXXXX") || exit 99
trap 'rm -rf "$TMP"' EXIT

# version FILE NAME: rwkv-tool info says "version: RWKV-NAME"
version() {
    "$TOOL" info "$1" >"$TMP/info" || return 1
    grep -q "^version: *RWKV-$2\$" "$TMP/info" || { sed 's/^/# /' "$TMP/info"; return 1; }
}

# close A.f32 B.f32: same number of floats, all within 1e-4
close() {
    od -An -v -f -w4 "$1" | tr -d ' ' >"$TMP/a" || return 1
    od -An -v -f -w4 "$2" | tr -d ' ' >"$TMP/b" || return 1
    [ -s "$TMP/a" ] && [ "$(wc -l <"$TMP/a")" -eq "$(wc -l <"$TMP/b")" ] ||
        { echo "# sizes differ"; return 1; }
    paste "$TMP/a" "$TMP/b" | awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d }
        END { printf "# max abs diff %g\n", m; exit !(m < 1e-4) }'
}

# logits DIR FILE NAME [OPTION...]: logits and state of NAME.tokens match the goldens
logits() {
    dir=$F/$1; file=$2; name=$3; shift 3
    rm -f "$TMP/out.f32" "$TMP/state.f32"
    "$TOOL" logits "$dir/$file" --tokens-file "$dir/$name.tokens" -o "$TMP/out.f32" \
        --state-out "$TMP/state.f32" "$@" || return 1
    close "$TMP/out.f32" "$dir/$name.logits.f32" && close "$TMP/state.f32" "$dir/$name.state.f32"
}

t "info: v4.pth is RWKV-4" version "$F/models/v4.pth" 4
t "info: v5.2.pth is RWKV-5.2" version "$F/models/v5.2.pth" 5.2
t "info: v6.pth is RWKV-6" version "$F/models/v6.pth" 6
t "info: v6.safetensors is RWKV-6" version "$F/models/v6.safetensors" 6
t "info: tiny-4v0-660K.pth is RWKV-4" version "$F/trained/tiny-4v0-660K.pth" 4
t "info: tiny-5v1-730K.pth is RWKV-5.0" version "$F/trained/tiny-5v1-730K.pth" 5.0
t "info: tiny-5v2-730K.pth is RWKV-5.2" version "$F/trained/tiny-5v2-730K.pth" 5.2

t "logits: v4.pth sequence mode" logits models v4.pth v4
t "logits: v4.pth RNN mode (--chunk 1)" logits models v4.pth v4 --chunk 1
t "logits: v5.2.pth sequence mode" logits models v5.2.pth v5.2
t "logits: v5.2.pth --chunk 5 --dtype fp32" logits models v5.2.pth v5.2 --chunk 5 --dtype fp32
t "logits: v6.pth sequence mode" logits models v6.pth v6
t "logits: v6.pth RNN mode (--chunk 1)" logits models v6.pth v6 --chunk 1
t "logits: v6.safetensors --chunk 7, one thread" logits models v6.safetensors v6 --chunk 7 \
    --threads 1
t "logits: tiny-4v0-660K.pth sequence mode" logits trained tiny-4v0-660K.pth tiny-4v0-660K
t "logits: tiny-5v1-730K.pth --chunk 7" logits trained tiny-5v1-730K.pth tiny-5v1-730K --chunk 7
t "logits: tiny-5v2-730K.pth RNN mode (--chunk 1)" logits trained tiny-5v2-730K.pth \
    tiny-5v2-730K --chunk 1

tap_done
