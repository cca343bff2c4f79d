#!/bin/sh
# test_bench_text.sh - rwkv-bench --text: perplexity and KL divergence from
# float32 on real text with trained models (a byte-level tiny model on the
# text it was trained on, the demo chat model on chat text), and its errors.
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
B=${TOP_BUILDDIR:-.}
S=${SHARED_DIR:-../shared}
D=${TOP_SRCDIR:-.}/tests/data/text
BENCH="$B/rwkv-bench"
TINY=$S/fixtures/trained/tiny-5v2-730K.pth
CHAT=$S/models/rwkv7-tiny-chat.pth
[ -f "$TINY" ] && [ -f "$CHAT" ] || skip_all "trained models not found under $S"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/test_bench_text.XXXXXX") || exit 99
trap 'rm -rf "$TMP"' EXIT
export XDG_CACHE_HOME="$TMP/cache"     # conversion caches: not next to the fixtures

# field OUT FORMAT COLUMN: the first number in a column of FORMAT's row
# (2 PPL, 3 PPL ratio, 4 mean KL, 5 KL 99 %, 6 same top-1 %)
field() {
    awk -F'|' -v f="$2" -v c="$(($3 + 1))" '{ g = $2; gsub(/ /, "", g) }
        g == f { split($c, a, " "); print a[1]; exit }' "$1"
}
# cmp_num A OP EXPR: the number A against the awk expression EXPR, as numbers
cmp_num() { awk -v a="$1" "BEGIN { exit !((a + 0) $2 ($3)) }"; }

# The tiny RWKV-5.2 byte model on the text its prompt comes from.
"$BENCH" "$TINY" --text "$D/genesis.txt" --text-ctx 256 -t 2 >"$TMP/tiny" 2>"$TMP/err"
ok $? "tiny-5v2 on genesis.txt: exit 0"
sed 's/^/# /' "$TMP/tiny"
t "17 chunks of 256 bytes, 127 scored in each: 2159 tokens" \
    grep -q '4425 tokens (bytes); 17 chunks of 256 tokens.*the last 127 predictions of each scored: 2159 tokens' "$TMP/tiny"
t "rows for fp32, bf16, q8 and q4, in that order" \
    test "$(awk -F'|' 'NR > 6 { gsub(/ /, "", $2); printf "%s ", $2 }' "$TMP/tiny")" = "fp32 bf16 q8 q4 "
t "fp32 run again in its own context: KL 0, 99th percentile 0, same top-1 100 %, ratio 1" \
    test "$(field "$TMP/tiny" fp32 4) $(field "$TMP/tiny" fp32 5) $(field "$TMP/tiny" fp32 6) $(field "$TMP/tiny" fp32 3)" \
    = "0.000e+00 0.000e+00 100.00 1.0000"
ppl=$(field "$TMP/tiny" fp32 2)
t "fp32 perplexity $ppl per byte is plausible (between 2 and 20; uniform would be 256)" \
    sh -c "awk -v p='$ppl' 'BEGIN { exit !(p > 2 && p < 20) }'"
kl8=$(field "$TMP/tiny" q8 4); kl4=$(field "$TMP/tiny" q4 4); kl16=$(field "$TMP/tiny" bf16 4)
t "q8's mean KL ($kl8) is under a tenth of q4's ($kl4)" cmp_num "$kl8" '<' "$kl4 / 10"
t "bf16's mean KL ($kl16) is under q8's, and above 0 (fp32 file)" \
    sh -c "awk -v a='$kl16' -v b='$kl8' 'BEGIN { exit !(a > 0 && a < b) }'"
t "q4 costs perplexity: ratio above 1.005" cmp_num "$(field "$TMP/tiny" q4 3)" '>' 1.005
t "q4 agrees with fp32's top-1 less often than q8 does" \
    cmp_num "$(field "$TMP/tiny" q4 6)" '<' "$(field "$TMP/tiny" q8 6)"
t "nothing on stderr" test ! -s "$TMP/err"

# Perplexity measures the fit to the text: the same bytes reversed read far worse.
rev "$D/genesis.txt" >"$TMP/rev.txt"
"$BENCH" "$TINY" --text "$TMP/rev.txt" --text-ctx 256 --dtype q8 >"$TMP/rev" 2>&1
rppl=$(field "$TMP/rev" fp32 2)
t "reversed text: perplexity $rppl is over twice $ppl" cmp_num "$rppl" '>' "2 * $ppl"
t "--dtype q8: fp32 and q8 rows only" \
    test "$(awk -F'|' 'NR > 6 { gsub(/ /, "", $2); printf "%s ", $2 }' "$TMP/rev")" = "fp32 q8 "

# --dtype gives the figures of the full run for that format.
"$BENCH" "$TINY" --text "$D/genesis.txt" --text-ctx 256 --dtype q4 -t 1 >"$TMP/q4" 2>&1
t "--dtype q4 on one thread: the q4 row of the full run" \
    test "$(grep '^| q4 ' "$TMP/q4")" = "$(grep '^| q4 ' "$TMP/tiny")"

# The demo chat model (bf16 file, World tokenizer) on chat text.
head -c 3000 "$D/chat-manpages.txt" >"$TMP/chat.txt"
"$BENCH" "$CHAT" --text "$TMP/chat.txt" --text-ctx 256 >"$TMP/chat" 2>&1
ok $? "chat model on chat text: exit 0"
sed 's/^/# /' "$TMP/chat"
t "World tokenizer, 3 chunks of 256 tokens" grep -q 'tokens (World tokenizer); 3 chunks of 256' "$TMP/chat"
t "bf16 on a bf16 file is float32's weights: KL 0, same top-1 100 %" \
    test "$(field "$TMP/chat" bf16 4) $(field "$TMP/chat" bf16 6)" = "0.000e+00 100.00"
cppl=$(field "$TMP/chat" fp32 2)
t "fp32 perplexity $cppl per token is plausible (between 1 and 20; uniform would be 65536)" \
    sh -c "awk -v p='$cppl' 'BEGIN { exit !(p > 1 && p < 20) }'"
kl8=$(field "$TMP/chat" q8 4); kl4=$(field "$TMP/chat" q4 4)
t "q8's mean KL ($kl8) is under a tenth of q4's ($kl4), and above 0" \
    sh -c "awk -v a='$kl8' -v b='$kl4' 'BEGIN { exit !(a > 0 && a < b / 10) }'"
# The same text read by the byte-level model: the two tokenizers disagree on the count.
"$BENCH" "$TINY" --text "$TMP/chat.txt" --text-ctx 256 --dtype q8 >"$TMP/chatb" 2>&1
t "a byte model counts the same text in bytes (3000 tokens)" grep -q '3000 bytes, 3000 tokens (bytes)' "$TMP/chatb"

# Errors: one line on stderr naming the file, exit 1 (2 for bad usage).
err1() { # err1 STATUS PATTERN COMMAND...: exits with STATUS, one stderr line matching PATTERN
    want=$1; pat=$2; shift 2
    "$@" >"$TMP/out" 2>"$TMP/err"
    st=$?
    [ "$st" -eq "$want" ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q -- "$pat" "$TMP/err" ||
        { echo "# status $st:"; sed 's/^/# /' "$TMP/err"; return 1; }
}
: >"$TMP/empty.txt"
printf 'abc' >"$TMP/short.txt"
t "missing file" err1 1 "^rwkv-bench: $TMP/nope.txt: No such file or directory$" \
    "$BENCH" "$TINY" --text "$TMP/nope.txt"
t "empty file" err1 1 "empty.txt: empty file: no text to score" "$BENCH" "$TINY" --text "$TMP/empty.txt"
t "a directory" err1 1 "$TMP: not a regular file" "$BENCH" "$TINY" --text "$TMP"
t "3 bytes are too few tokens" err1 1 "short.txt: only 3 tokens; --text needs at least 8" \
    "$BENCH" "$TINY" --text "$TMP/short.txt"
t "a model of neither vocabulary" err1 1 "v7.pth: a vocabulary of 1000 tokens" \
    "$BENCH" "$S/fixtures/models/v7.pth" --text "$D/genesis.txt"
t "--text-ctx 4 is refused" err1 2 "bad --text-ctx '4'" "$BENCH" "$TINY" --text "$D/genesis.txt" --text-ctx 4
t "a missing vocabulary" err1 1 "nowhere.txt" "$BENCH" "$CHAT" --text "$TMP/chat.txt" --vocab "$TMP/nowhere.txt"
t "nothing on stdout for an error" test ! -s "$TMP/out"
tap_done
