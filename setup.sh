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

[ -x configure ] && [ configure -nt configure.ac ] && [ -f Makefile.in ] || autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure
make -j"$(nproc)"

if [ "$start" = yes ] && [ -t 0 ] && [ -t 1 ]; then
    exec ./rwkv-chat
fi
echo "setup.sh: built build/rwkv-chat; start it with: build/rwkv-chat" >&2
