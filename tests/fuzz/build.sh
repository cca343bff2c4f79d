#!/bin/sh
# build.sh - builds the libFuzzer targets (called by `make fuzz`).
#   build.sh SRCDIR BUILDDIR   with FUZZ_CC, FUZZ_CFLAGS, FUZZ_LIBS in the environment.
# The module under test is compiled by clang with coverage and sanitizers;
# what it calls into (the engine for state files) links from the normal
# build's libraries.
set -eu
src=$1
build=$2
cc=${FUZZ_CC:-clang}
# UBSan's pointer-overflow and alignment checks compare raw addresses, and
# libFuzzer feeds every traced comparison back into its mutations: with
# addresses that ASLR changes on every start, no two runs of one seed would
# be alike (make fuzz-ci must be reproducible).  ASan still catches a
# pointer that leaves its object; the sanitizer pass keeps both checks.
flags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
 -fno-sanitize=pointer-overflow,alignment
 -I$src -D_GNU_SOURCE -DFUZZ_DEFAULT_SHARE=\"$src/share\" -DPKGDATADIR=\"/nonexistent\"
 ${FUZZ_CFLAGS:-}"
if ! command -v "$cc" >/dev/null 2>&1; then
    echo "build.sh: $cc not found: apt-get install clang" >&2
    exit 1
fi
mkdir -p "$build/fuzz"
# Every target compiles engine/base/ (escape.c: names in messages) too.
target() { # target NAME HARNESS SOURCES... [-- LINK...]
    name=$1; shift
    srcs="$src/engine/base/escape.c"
    while [ $# -gt 0 ] && [ "$1" != -- ]; do srcs="$srcs $src/$1"; shift; done
    [ $# -gt 0 ] && shift
    echo "  FUZZ     fuzz/$name"
    # shellcheck disable=SC2086
    $cc $flags -o "$build/fuzz/$name" $srcs "$@"
}
CKPT="engine/load/checkpoint.c engine/load/ckpt_open.c engine/load/pth.c engine/load/safetensors.c engine/base/err.c engine/base/half.c
 engine/load/verified.c engine/base/crc32.c engine/base/fileid.c engine/base/atomicfile.c"
target fuzz_pth tests/fuzz/fuzz_pth.c $CKPT
target fuzz_safetensors tests/fuzz/fuzz_pth.c $CKPT
target fuzz_pickle tests/fuzz/fuzz_pickle.c $CKPT
target fuzz_vocab tests/fuzz/fuzz_vocab.c tokenizer/world.c -- ${FUZZ_LIBS:-}
target fuzz_tokenizer tests/fuzz/fuzz_tokenizer.c tokenizer/world.c -- ${FUZZ_LIBS:-}
target fuzz_bpe tests/fuzz/fuzz_bpe.c tokenizer/bpe.c tokenizer/world.c -- ${FUZZ_LIBS:-}
target fuzz_template tests/fuzz/fuzz_template.c app/session/template.c app/session/paths.c -- ${FUZZ_LIBS:-}
# State files: the container (engine/load/statefile.c) and the chat's sections
# (app/session/chat_sections.c) against the model in $FUZZ_MODEL (default: the fixture).
target fuzz_statefile tests/fuzz/fuzz_statefile.c engine/load/statefile.c app/session/chat_conversation.c app/session/chat_base.c app/session/chat_stream.c app/session/chat_sections.c app/session/template.c \
    app/session/paths.c -- "-DFUZZ_DEFAULT_MODEL=\"${FUZZ_MODEL:-${SHARED_DIR:-$src/../shared}/fixtures/models/v7-world.pth}\"" \
    ${FUZZ_LIBS:-}
# The server's request reader (app/serve/api.c api_parse) with the chat's
# normalising and the real vocabulary; the scheduler is a stand-in.
target fuzz_serve_request tests/fuzz/fuzz_serve_request.c app/serve/api.c app/session/chat_conversation.c \
    app/session/chat_base.c app/session/chat_stream.c app/session/chat_sections.c app/session/template.c \
    app/session/paths.c -- ${FUZZ_LIBS:-}
# The --batch reader and JSONL writer (app/cli/batch.c) against a stand-in chat.
target fuzz_jsonl tests/fuzz/fuzz_jsonl.c app/cli/batch.c app/cli/errline.c -- ${FUZZ_LIBS:-}
# Model loading and one forward step, on checkpoints made from fuzzed
# safetensors headers.
target fuzz_model tests/fuzz/fuzz_model.c engine/model/model.c $CKPT -- ${FUZZ_LIBS:-}
# The conversion cache reader, on files sealed with consistent hashes.
target fuzz_convcache tests/fuzz/fuzz_convcache.c engine/load/convcache.c -- ${FUZZ_LIBS:-}
