#!/bin/sh
# setup.sh - installs rwkv-chat's Debian build dependencies, builds it in
# build/, and (on a terminal) starts it.  Safe to run again: every step is
# idempotent.  Options: --no-start (just build), --no-install (skip apt).
set -eu
top=$(cd "$(dirname "$0")" && pwd)
cd "$top"
start=yes
install=yes
for a in "$@"; do
    case $a in
    --no-start) start=no ;;
    --no-install) install=no ;;
    *) echo "setup.sh: unknown option '$a' (use --no-start, --no-install)" >&2; exit 2 ;;
    esac
done

PACKAGES="build-essential autoconf automake pkg-config libncurses-dev libreadline-dev
libopenblas-dev libutf8proc-dev libjson-c-dev libcurl4-openssl-dev libmicrohttpd-dev curl tmux clang valgrind"
# tests/test_serve_node.sh drives the server with the openai npm package: Debian's node and npm
# unless a node is installed already (from NodeSource, say).
command -v node >/dev/null 2>&1 || PACKAGES="$PACKAGES nodejs npm"

if [ "$install" = yes ]; then
    missing=
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        sudo=
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        echo "setup.sh: installing$missing" >&2
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
        # shellcheck disable=SC2086
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
    fi
fi

# The openai package the node test uses, as pinned in tests/node/package-lock.json.
if command -v npm >/dev/null 2>&1 && [ -f tests/node/package-lock.json ] &&
   ! [ tests/node/node_modules/.package-lock.json -nt tests/node/package-lock.json ]; then
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error) ||
        echo "setup.sh: npm ci in tests/node failed: tests/test_serve_node.sh will fail" >&2
fi

[ -x configure ] && [ configure -nt configure.ac ] && [ -f Makefile.in ] || autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure
make -j"$(nproc)"

if [ "$start" = yes ] && [ -t 0 ] && [ -t 1 ]; then
    exec ./rwkv-chat
fi
echo "setup.sh: built build/rwkv-chat; start it with: build/rwkv-chat" >&2
