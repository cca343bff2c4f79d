#!/bin/sh
# test_includes.sh - no two modules of app/, engine/ and tokenizer/ use each
# other, directly or around a loop.
#
# A module is a .c file and the .h of the same path (engine/load/lora.c and
# engine/load/lora.h are module engine/load/lora).  Module A uses module B when
#   - a file of A (A.c or A.h) includes B.h, directly or through headers
#     that belong to no module (interface headers such as engine/rwkv.h or
#     engine/model/versions.h, which are read as if their text were in the
#     includer), or
#   - A's object file refers to a function or variable that B's object
#     file defines (headers implemented by several files, such as rwkv.h,
#     lead to whichever file implements what A calls).
# A cycle in that graph (A uses B uses ... uses A) is a circle of files
# that cannot be understood, tested or replaced one at a time.
#
# app/, engine/ and tokenizer/ must have none.
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
SRC=${TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
B=${TOP_BUILDDIR:-.}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/test_includes.XXXXXX") || exit 99
trap 'rm -rf "$TMP"' EXIT

# include_edges ROOT DIR...: "A B" lines, module A includes a header of
# module B (interface headers expanded).
include_edges() {
    root=$1
    shift
    (cd "$root" && find "$@" -name '*.[ch]' | sort) > "$TMP/files"
    # every include "x/y.h" of every file: "FILE HEADER"
    while read -r f; do
        sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$root/$f" |
            while read -r h; do echo "$f $h"; done
    done < "$TMP/files" > "$TMP/incs"
    awk -v root="$root" '
        FILENAME == ARGV[1] { present[$1] = 1; next }
        { inc[$1] = inc[$1] " " $2 }
        function module_of(f,   m) {
            m = f; sub(/\.[ch]$/, "", m)
            return (m ".c") in present ? m : ""
        }
        # visit header h from module a: a module header is an edge, an
        # interface header is read through
        function visit(a, h,   m, n, i, parts) {
            if (!(h in present) || (a SUBSEP h) in seen) { return }
            seen[a, h] = 1
            m = module_of(h)
            if (m != "") { if (m != a) { print a, m }; return }
            n = split(inc[h], parts, " ")
            for (i = 1; i <= n; i++) { visit(a, parts[i]) }
        }
        END {
            for (f in present) {
                a = module_of(f)
                if (a == "") { continue }
                n = split(inc[f], parts, " ")
                for (i = 1; i <= n; i++) { visit(a, parts[i]) }
            }
        }' "$TMP/files" "$TMP/incs" | sort -u
}

# symbol_edges BUILDDIR: "A B" lines, A's object refers to a symbol B's
# object defines (objects of app/, engine/, tokenizer/ in BUILDDIR whose
# .c is in the source tree; an automake prefix such as libapp_a- is dropped).
symbol_edges() {
    (cd "$1" && find app engine tokenizer -name '*.o' 2>/dev/null) | while read -r o; do
        d=${o%/*}
        b=${o##*/}
        b=${b%.o}
        # an object whose source is gone (left in the build tree by a
        # move or a removal) is no module of the tree
        [ -f "$SRC/$d/${b##*-}.c" ] || continue
        echo "$d/${b##*-} $1/$o"
    done | sort -u -k1,1 > "$TMP/objs"
    while read -r m o; do nm -g --defined-only "$o" | awk -v m="$m" 'NF == 3 { print $3, m }'
    done < "$TMP/objs" | sort -u > "$TMP/defs"
    while read -r m o; do nm -u "$o" | awk -v m="$m" '{ print $NF, m }'
    done < "$TMP/objs" | sort -u > "$TMP/uses"
    join "$TMP/uses" "$TMP/defs" | awk '$2 != $3 { print $2, $3 }' | sort -u
}

# cycles: reads "A B" edges, prints each cycle (strongly connected set of
# two or more modules) as one line of its modules, sorted.
cycles() {
    awk '
        { adj[$1] = adj[$1] " " $2; node[$1] = 1; node[$2] = 1 }
        # reach[a, b]: b reachable from a (depth-first from every node)
        function walk(start, v,   n, i, parts) {
            n = split(adj[v], parts, " ")
            for (i = 1; i <= n; i++) {
                if (!((start SUBSEP parts[i]) in reach)) {
                    reach[start, parts[i]] = 1
                    walk(start, parts[i])
                }
            }
        }
        END {
            for (v in node) { walk(v, v) }
            for (v in node) {
                if (v in done || !((v SUBSEP v) in reach)) { continue }
                line = ""
                for (w in node) {
                    if ((v SUBSEP w) in reach && (w SUBSEP v) in reach) {
                        done[w] = 1
                        line = line " " w
                    }
                }
                print line
            }
        }' | while read -r line; do
        echo "$line" | tr ' ' '\n' | sort | tr '\n' ' ' | sed 's/ $//'
        echo
    done | sort
}

# --- the checker itself, on made-up trees and graphs -------------------------
mkdir -p "$TMP/fake/lib"
printf '#include "lib/b.h"\n' > "$TMP/fake/lib/a.c"
printf '#include "lib/iface.h"\n' > "$TMP/fake/lib/a.h"
printf '#include "lib/a.h"\n' > "$TMP/fake/lib/b.c"
: > "$TMP/fake/lib/b.h"
printf '#include "lib/c.h"\n' > "$TMP/fake/lib/iface.h"
printf '#include "lib/b.h"\n' > "$TMP/fake/lib/c.c"
: > "$TMP/fake/lib/c.h"
include_edges "$TMP/fake" lib > "$TMP/fake.edges"
t "checker: include edges, through an interface header (a.h -> iface.h -> c.h)" \
    test "$(tr '\n' ';' < "$TMP/fake.edges")" = "lib/a lib/b;lib/a lib/c;lib/b lib/a;lib/c lib/b;"
t "checker: finds the loop a -> c -> b -> a as one cycle" \
    test "$(cycles < "$TMP/fake.edges")" = "lib/a lib/b lib/c"
t "checker: no cycle in a chain" test -z "$(printf 'x y\ny z\nx z\n' | cycles)"
t "checker: two separate cycles" \
    test "$(printf 'p q\nq p\nr s\ns t\nt r\np r\n' | cycles | tr '\n' ';')" = "p q;r s t;"

# --- the tree ---------------------------------------------------------------
include_edges "$SRC" app engine tokenizer > "$TMP/edges"
ok $? "include graph of app/, engine/, tokenizer/ ($(wc -l < "$TMP/edges") edges)"
# model.o, or libengine_a-model.o when the library has flags of its own
if { [ -f "$B/engine/model/model.o" ] || [ -f "$B/engine/model/libengine_a-model.o" ]; } &&
    command -v nm >/dev/null 2>&1; then
    symbol_edges "$B" >> "$TMP/edges"
    t "symbol graph from the objects in $B" test -s "$TMP/edges"
else
    skip "no objects in $B (build first) or no nm: symbol graph not checked"
fi
sort -u "$TMP/edges" | cycles > "$TMP/cycles"

# engine/ and tokenizer/: strict.  A cycle through them fails, whatever else
# it passes through.
grep -E '(^| )(engine|tokenizer)/' "$TMP/cycles" > "$TMP/lib_cycles"
if [ -s "$TMP/lib_cycles" ]; then
    sed 's/^/# cycle: /' "$TMP/lib_cycles"
fi
t "engine/ and tokenizer/: no modules that use each other, directly or in a loop" \
    test ! -s "$TMP/lib_cycles"

# app/: strict too.
grep -vE '(^| )(engine|tokenizer)/' "$TMP/cycles" > "$TMP/app_cycles"
if [ -s "$TMP/app_cycles" ]; then
    sed 's/^/# cycle: /' "$TMP/app_cycles"
fi
t "app/: no modules that use each other, directly or in a loop" \
    test ! -s "$TMP/app_cycles"
tap_done
