#!/bin/sh
# test_tool_tokenize.sh - rwkv-tool tokenize / detokenize against the golden
# tokenizations, the byte-exact round trip, and their errors.
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
B=${TOP_BUILDDIR:-.}
TOOL=$B/rwkv-tool
FIX=${SHARED_DIR:-../shared}/fixtures/tokenizer
TMP=$B/tests/tmp/tool_tokenize
mkdir -p "$TMP"
LC_ALL=C
export LC_ALL

# hex2bin HEX: writes the bytes (portable: printf with octal escapes).
hex2bin() {
    printf "$(printf '%s' "$1" | awk '{
        for (i = 1; i < length($0); i += 2) {
            printf "\\%03o", index("0123456789abcdef", substr($0, i, 1)) * 16 - 17 + \
                             index("0123456789abcdef", substr($0, i + 1, 1))
        }
    }')"
}
bin2hex() {
    od -An -v -tx1 | tr -d ' \n'
}

# Every golden line: tokenize prints the ids, detokenize gives the bytes back.
check_file() { # check_file TSV
    bad_enc=0; bad_dec=0; lines=0
    while IFS="$(printf '\t')" read -r hex ids; do
        lines=$((lines + 1))
        hex2bin "$hex" > "$TMP/in"
        got=$("$TOOL" tokenize < "$TMP/in")
        [ "$got" = "$ids" ] || { bad_enc=$((bad_enc + 1)); [ $bad_enc -le 2 ] && echo "# line $lines: got '$got'"; }
        back=$(printf '%s\n' "$ids" | "$TOOL" detokenize | bin2hex)
        [ "$back" = "$hex" ] || bad_dec=$((bad_dec + 1))
    done < "$1"
    echo "# $1: $lines lines, $bad_enc encode and $bad_dec decode mismatches"
    [ $lines -gt 0 ] && [ $bad_enc -eq 0 ] && [ $bad_dec -eq 0 ]
}
t "tokenize and detokenize reproduce cases.tsv" check_file "$FIX/cases.tsv"

# corpus.tsv: the last line is the whole document; one process for it.
whole() {
    tail -n 1 "$FIX/corpus.tsv" > "$TMP/whole.tsv"
    check_file "$TMP/whole.tsv"
}
t "tokenize and detokenize reproduce the whole corpus document" whole

roundtrip() { # all 256 bytes, twice, with NUL: tokenize | detokenize is the identity
    i=0; hex=""
    while [ $i -lt 256 ]; do hex="$hex$(printf '%02x' $i)"; i=$((i + 1)); done
    hex2bin "$hex$hex" > "$TMP/bytes"
    "$TOOL" tokenize < "$TMP/bytes" | "$TOOL" detokenize > "$TMP/back" && cmp -s "$TMP/bytes" "$TMP/back"
}
t "tokenize | detokenize is the identity on all 256 bytes" roundtrip

t "empty input gives an empty line" sh -c "test \"\$(printf '' | '$TOOL' tokenize)\" = ''"
t "detokenize accepts ids over several lines and tabs" sh -c \
    "test \"\$(printf '  45\n\t40213 34\n' | '$TOOL' detokenize)\" = ', world!'"
t "--vocab names the vocabulary" sh -c \
    "RWKV_CHAT_DATADIR=/nonexistent; export RWKV_CHAT_DATADIR; test \"\$(printf 'Hello' | '$TOOL' tokenize --vocab '$TOP_SRCDIR/share/rwkv_vocab_v20230424.txt')\" = '33155'"

# errors
out_of_range() {
    msg=$(echo "1 70000 2" | "$TOOL" detokenize 2>&1 >/dev/null)
    rc=$?
    echo "# $msg"
    [ $rc -eq 1 ] && [ "$msg" = "rwkv-tool: id 70000 out of range (vocabulary has 65530 ids)" ]
}
t "detokenize: out-of-range id is one error line, exit 1" out_of_range
not_a_number() {
    msg=$(echo "1 x2 3" | "$TOOL" detokenize 2>&1 >/dev/null)
    rc=$?
    [ $rc -eq 1 ] && [ "$msg" = "rwkv-tool: stdin: 'x2' is not a token id" ]
}
t "detokenize: a word that is not an id is an error, exit 1" not_a_number
missing_vocab() {
    msg=$(printf 'a' | "$TOOL" tokenize --vocab "$TMP/none.txt" 2>&1 >/dev/null)
    rc=$?
    echo "# $msg"
    [ $rc -eq 1 ] && [ "$msg" = "rwkv-tool: $TMP/none.txt: No such file or directory" ]
}
t "missing --vocab file is one error line, exit 1" missing_vocab
bad_vocab() {
    printf "1 'a' 2\n" > "$TMP/bad.txt"
    msg=$(printf 'a' | "$TOOL" tokenize --vocab "$TMP/bad.txt" 2>&1 >/dev/null)
    rc=$?
    [ $rc -eq 1 ] && [ "$msg" = "rwkv-tool: $TMP/bad.txt:1: declared length 2, decoded 1 bytes" ]
}
t "malformed vocabulary names file and line, exit 1" bad_vocab
t "tokenize --help exits 0" sh -c "'$TOOL' tokenize --help | grep -q '^Usage: rwkv-tool tokenize'"
t "detokenize --help exits 0" sh -c "'$TOOL' detokenize --help | grep -q '^Usage: rwkv-tool detokenize'"
t "tokenize with an unknown option exits 2" sh -c "'$TOOL' tokenize --bogus </dev/null 2>/dev/null; test \$? -eq 2"
t "tokenize with an argument exits 2" sh -c "'$TOOL' tokenize file </dev/null 2>/dev/null; test \$? -eq 2"
t "bench without a benchmark exits 2" sh -c "'$TOOL' bench 2>/dev/null; test \$? -eq 2"
t "bench --help lists tokenizer" sh -c "'$TOOL' bench --help | grep -q tokenizer"
bench() {
    hex2bin "$(tail -n 1 "$FIX/corpus.tsv" | cut -f 1)" > "$TMP/corpus.txt"
    "$TOOL" bench tokenizer --seconds 0.05 "$TMP/corpus.txt" > "$TMP/bench.out" || return 1
    cat "$TMP/bench.out" | sed 's/^/# /'
    grep -q '^encode: [0-9.]* MB/s' "$TMP/bench.out" && grep -q 'load [0-9.]* ms' "$TMP/bench.out"
}
t "bench tokenizer prints load time and MB/s" bench

tap_done
