#!/bin/sh
# test_tuned_batch.sh - state-tuned starts in rwkv-chat --batch on the v7-world
# fixture: --state-tuned changes the reply, /reset returns to the tuned start,
# /tuned sets and drops it, state files keep it, /info shows it, the config key
# works, and a file that does not fit the model is refused with one line naming
# the tensor.
B=${TOP_BUILDDIR:-.}
S=${SHARED_DIR:-../shared}
CHAT="$B/rwkv-chat"
TOOL="$B/rwkv-tool"
MODEL="$S/fixtures/models/v7-world.pth"
T="$B/tests/tmp/tuned.$$"
. "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
# run NAME [ARGS...] < input: stdout to $T/NAME.out, stderr to $T/NAME.err, status to $T/NAME.rc
run() {
    name=$1; shift
    "$CHAT" --batch --model "$MODEL" -t 1 --greedy --max-tokens 20 "$@" >"$T/$name.out" \
        2>"$T/$name.err"
    echo $? >"$T/$name.rc"
}
rc() { cat "$T/$1.rc"; }

if [ ! -f "$MODEL" ]; then
    skip_all "$MODEL not found"
fi
mkdir -p "$T" || exit 1
trap 'rm -rf "$T"' EXIT

# A random state-tuned start for the v7-world shape (2 layers, 1 head of 64),
# and one for another shape.
"$TOOL" mkmodel --version 7 --layers 2 --embd 64 --time-state --dtype fp32 \
    -o "$T/world.tuned.pth" >/dev/null &&
"$TOOL" mkmodel --version 7 --layers 2 --embd 128 --time-state -o "$T/wide.tuned.pth" >/dev/null
ok $? "rwkv-tool mkmodel --time-state writes state-tuned files"

printf 'Hello there.\n' >"$T/one.in"
run plain <"$T/one.in"
run tuned --state-tuned "$T/world.tuned.pth" <"$T/one.in"
ok "$(test "$(rc plain)" = 0 && test "$(rc tuned)" = 0 && test -s "$T/tuned.out" &&
      ! cmp -s "$T/plain.out" "$T/tuned.out"; echo $?)" "--state-tuned changes the reply"

# /reset goes back to the tuned start: the same message gets the same reply.
printf 'Hello there.\n/reset\nHello there.\n' | run reset --state-tuned "$T/world.tuned.pth"
cat "$T/tuned.out" "$T/tuned.out" >"$T/twice.out"
ok "$(test "$(rc reset)" = 0 && cmp -s "$T/twice.out" "$T/reset.out"; echo $?)" \
    "/reset returns to the tuned start"

# /tuned FILE in the command set does what --state-tuned does; /tuned off drops it.
printf '/tuned %s\nHello there.\n/tuned off\nHello there.\n' "$T/world.tuned.pth" | run cmd
cat "$T/tuned.out" "$T/plain.out" >"$T/cmd.want"
ok "$(test "$(rc cmd)" = 0 && cmp -s "$T/cmd.want" "$T/cmd.out"; echo $?)" \
    "/tuned FILE starts from it, /tuned off goes back to the prompt's intro"

printf '/info\n/tuned\n' | run info --state-tuned "$T/world.tuned.pth"
ok "$(grep -q "^tuned start: $T/world.tuned.pth\$" "$T/info.err" &&
      test "$(grep -c "^tuned start: $T/world.tuned.pth\$" "$T/info.err")" = 2; echo $?)" \
    "/info and /tuned name the tuned start"
printf '/info\n' | run noinfo
ok "$(grep -q '^tuned start: none$' "$T/noinfo.err"; echo $?)" "/info says none without one"

# A state file keeps the tuned start: after --state-in, /reset returns to it.
printf 'Hello there.\n' | run save --state-tuned "$T/world.tuned.pth" --state-out "$T/s.state"
printf '/reset\nHello there.\n/info\n' | run load --state-in "$T/s.state"
ok "$(test "$(rc load)" = 0 && cmp -s "$T/tuned.out" "$T/load.out" &&
      grep -q "^tuned start: $T/world.tuned.pth\$" "$T/load.err"; echo $?)" \
    "a state file restores the tuned start (and its name) for /reset"

# The config file's state_tuned key.
printf 'state_tuned = %s\n' "$T/world.tuned.pth" >"$T/config"
run config --config "$T/config" <"$T/one.in"
ok "$(test "$(rc config)" = 0 && cmp -s "$T/tuned.out" "$T/config.out"; echo $?)" \
    "config key state_tuned"

# A file that does not fit: one line naming the tensor, exit 1; /tuned keeps the chat.
run wide --state-tuned "$T/wide.tuned.pth" <"$T/one.in"
ok "$(test "$(rc wide)" = 1 && test "$(wc -l <"$T/wide.err")" = 1 &&
      grep -q 'wide.tuned.pth: tensor blocks.0.att.time_state: expected 1x64x64, found 2x64x64' \
          "$T/wide.err" && test ! -s "$T/wide.out"; echo $?)" \
    "a tuned file of another shape is refused in one line naming the tensor: $(cat "$T/wide.err")"
printf '/tuned %s\nHello there.\n' "$T/wide.tuned.pth" | run widecmd --state-tuned "$T/world.tuned.pth"
ok "$(test "$(rc widecmd)" = 1 &&
      grep -q '^rwkv-chat: stdin:1: .*wide.tuned.pth: tensor blocks.0.att.time_state: expected' \
          "$T/widecmd.err"; echo $?)" \
    "/tuned with a file that does not fit is an error naming the tensor (batch stops on it)"
run notfile --state-tuned "$MODEL" <"$T/one.in"
ok "$(test "$(rc notfile)" = 1 && grep -q 'tensor blocks.0.att.time_state missing' "$T/notfile.err"; echo $?)" \
    "a model file is not a tuned start"
run empty --state-tuned "" <"$T/one.in"
ok "$(test "$(rc empty)" = 2 && grep -q 'state-tuned: empty file name' "$T/empty.err"; echo $?)" \
    "--state-tuned '' is a usage error"

tap_done
