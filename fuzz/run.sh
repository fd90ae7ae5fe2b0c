#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (g++ has no libFuzzer) and runs
# each for N seconds (default 60) from its seed corpus. Not part of CI's
# time budget; run before changing a parser.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-60}
OUT=build-fuzz
mkdir -p "$OUT"
# Only what the targets use (clang 14 cannot build metrics.cc: lambdas capturing
# structured bindings are C++20 that clang supports from 16).
CORE=(src/core/error.cc src/core/json.cc src/core/state_machine.cc src/core/time.cc)
clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -Isrc \
  fuzz/request_body_fuzz.cc "${CORE[@]}" -lfmt -lcrypto -o "$OUT/request_body_fuzz"
mkdir -p "$OUT/corpus/request_body"
"$OUT/request_body_fuzz" -max_total_time="$SECONDS_PER_TARGET" -max_len=4096 \
  "$OUT/corpus/request_body" fuzz/corpus/request_body

clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -Isrc \
  fuzz/filter_fuzz.cc src/core/filter.cc src/core/error.cc -lfmt -o "$OUT/filter_fuzz"
mkdir -p "$OUT/corpus/filter"
"$OUT/filter_fuzz" -max_total_time="$SECONDS_PER_TARGET" -max_len=512 \
  "$OUT/corpus/filter" fuzz/corpus/filter
