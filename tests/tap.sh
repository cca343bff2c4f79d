# tests/tap.sh - TAP output (and wait_pid) for the shell tests, sourced by
# each of them:
#     . "${TOP_SRCDIR:-$(dirname "$0")/..}/tests/tap.sh"
# Results are numbered as they come; tap_done prints the plan last and
# exits 1 if any test failed.
tap_n=0
tap_failed=0

# tap_result STATUS DESCRIPTION: one numbered "ok" or "not ok" line.
tap_result() {
    tap_n=$((tap_n + 1))
    if [ "$1" -eq 0 ]; then
        echo "ok $tap_n - $2"
    else
        echo "not ok $tap_n - $2"
        tap_failed=1
    fi
}

# t DESCRIPTION COMMAND...: passes when COMMAND exits 0.
t() {
    tap_desc=$1
    shift
    if "$@"; then
        tap_result 0 "$tap_desc"
    else
        tap_result 1 "$tap_desc"
    fi
}

# ok STATUS DESCRIPTION: passes when STATUS (an exit status) is 0.
ok() {
    tap_result "$1" "$2"
}

# skip REASON: one skipped test.
skip() {
    tap_n=$((tap_n + 1))
    echo "ok $tap_n # SKIP $1"
}

# skip_all REASON: the whole file is skipped; exits.
skip_all() {
    echo "1..0 # SKIP $1"
    exit 0
}

# wait_pid PID SECONDS: waits for a background process; kills it (status
# 999, returns 1) if it outlives SECONDS.  Leaves its status in $status.
wait_pid() {
    wait_pid_i=0
    while kill -0 "$1" 2>/dev/null && [ $wait_pid_i -lt $(($2 * 10)) ]; do
        sleep 0.1
        wait_pid_i=$((wait_pid_i + 1))
    done
    if kill -0 "$1" 2>/dev/null; then
        kill -KILL "$1" 2>/dev/null
        wait "$1" 2>/dev/null
        status=999
        return 1
    fi
    wait "$1"
    status=$?
    return 0
}

# tap_done: the plan, then exit 0 if every test passed.
tap_done() {
    echo "1..$tap_n"
    exit $tap_failed
}
