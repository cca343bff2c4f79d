#!/bin/sh
# test_serve_node.sh - the official openai npm package (tests/node, pinned
# in its package-lock.json and installed by setup.sh with npm ci) drives
# rwkv-chat --serve: models, chat and text completions, streaming, errors,
# a wrong key, an aborted stream, named states.  Skipped only where node
# is not installed.
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
command -v node >/dev/null 2>&1 || skip_all "node not found"
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/serve_lib.sh"
SRC=${TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}

[ -f "$TSV" ] || skip_all "$TSV not found"
if [ ! -f "$SRC/tests/node/node_modules/openai/package.json" ]; then
    echo "not ok 1 - the openai package is installed (run setup.sh, or npm ci in tests/node)"
    echo "1..1"
    exit 1
fi
q=$(sed -n 1p "$TSV" | cut -f1)
want=$(printf '%s\n' "$q" | "$CHAT" --batch --greedy -t 1 2>/dev/null)
start_server main --api-key node-key --max-tokens-cap 1000000 || {
    echo "not ok 1 - the server starts"; echo "1..1"; exit 1; }
SERVE_URL=$URL SERVE_KEY=node-key QUESTION=$q WANT=$want node "$SRC/tests/node/serve.mjs"
