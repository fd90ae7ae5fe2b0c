#!/usr/bin/env bash
# Builds the Release benchmark tree and runs every benchmark: the event log on
# SQLite and on a throwaway PostgreSQL (durable appends, 1/8/64 appenders,
# latency percentiles, raw fdatasync cost, a NOT DURABLE /dev/shm reference),
# then the HTTP comparison with nginx. docs/performance.md records results.
#
#   bench/run.sh [--no-pg] [--no-http]
#
# Environment (all optional):
#   BUILD_DIR=build-bench     the Release build tree
#   KERVAN_BENCH_DIR=/var/tmp where durable data goes (SQLite files, the
#                             PostgreSQL cluster); must be a real disk, not tmpfs
#   MIN_TIME=3                --benchmark_min_time (seconds) per benchmark run
#   RESULTS_DIR               where raw outputs go (default BUILD_DIR/results)
# HTTP settings (DURATION, CONNECTIONS, ...) pass through to bench/http_bench.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
export KERVAN_BENCH_DIR=${KERVAN_BENCH_DIR:-/var/tmp}
MIN_TIME=${MIN_TIME:-3}
RESULTS_DIR=${RESULTS_DIR:-$BUILD_DIR/results}
WITH_PG=1
WITH_HTTP=1
for arg in "$@"; do
  case "$arg" in
    --no-pg) WITH_PG=0 ;;
    --no-http) WITH_HTTP=0 ;;
    *) echo "usage: bench/run.sh [--no-pg] [--no-http]" >&2; exit 2 ;;
  esac
done

die() {
  echo "run.sh: error: $*" >&2
  exit 1
}

fs_type=$(stat -f -c %T "$KERVAN_BENCH_DIR") || die "KERVAN_BENCH_DIR=$KERVAN_BENCH_DIR does not exist"
case "$fs_type" in
  tmpfs | ramfs) die "KERVAN_BENCH_DIR=$KERVAN_BENCH_DIR is $fs_type: fsync there is a no-op; pick a disk directory" ;;
esac

echo "== build (Release) in $BUILD_DIR"
# g++ 12 at -O3 raises false-positive -Wrestrict / -Wmaybe-uninitialized in
# app/cli.cc (std::string operator+, std::optional<json>), which -Werror turns
# into a failed Release build; keep them as warnings here.
cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  "-DCMAKE_CXX_FLAGS=-Wno-error=restrict -Wno-error=maybe-uninitialized" >/dev/null
mkdir -p "$RESULTS_DIR"
if ! cmake --build "$BUILD_DIR" --target event_log_bench kervan >"$RESULTS_DIR/build.log" 2>&1; then
  tail -n 40 "$RESULTS_DIR/build.log" >&2
  die "build failed (full log: $RESULTS_DIR/build.log)"
fi

echo "== machine"
echo "date:    $(date -u +%FT%TZ)"
echo "commit:  $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min; other work on the machine skews every figure)"
echo "cpus:    $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "kernel:  $(uname -r)"
echo "disk:    $KERVAN_BENCH_DIR on $(df --output=source "$KERVAN_BENCH_DIR" | tail -n 1) ($fs_type)"

PG_DIR=""
cleanup() {
  if [[ -n "$PG_DIR" ]]; then
    "$ROOT/scripts/pg.sh" stop "$PG_DIR" || true
    rm -rf "$PG_DIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

unset KERVAN_BENCH_PG_DSN
if ((WITH_PG)); then
  echo "== PostgreSQL (throwaway, fsync=on, synchronous_commit=on)"
  PG_DIR=$(mktemp -d "$KERVAN_BENCH_DIR/kervan-bench-pg.XXXXXX")
  chmod 0755 "$PG_DIR"
  KERVAN_BENCH_PG_DSN=$("$ROOT/scripts/pg.sh" start "$PG_DIR")
  export KERVAN_BENCH_PG_DSN
fi

echo "== event log (min_time ${MIN_TIME}s per run)"
"$BUILD_DIR/bench/event_log_bench" --benchmark_min_time="$MIN_TIME" \
  --benchmark_counters_tabular=true \
  --benchmark_out="$RESULTS_DIR/event_log_bench.json" --benchmark_out_format=json |
  tee "$RESULTS_DIR/event_log_bench.txt"

if command -v jq >/dev/null; then
  echo
  echo "== event log summary (events/s; latency of one Append or statement in microseconds)"
  printf '%-58s %11s %9s %9s %9s %10s\n' benchmark events/s p50_us p99_us p99.9_us ev/commit
  jq -r '.benchmarks[] | select(.error_occurred != true) |
      select(.items_per_second != null or .p50_us != null) |
      [.name, (.items_per_second // "-"), (.p50_us // "-"), (.p99_us // "-"), (.p999_us // "-"),
       (.events_per_commit // "-")] | @tsv' \
    "$RESULTS_DIR/event_log_bench.json" |
    awk -F'\t' '
      function num(v, fmt) { return v == "-" ? "-" : sprintf(fmt, v) }
      { printf "%-58s %11s %9s %9s %9s %10s\n", $1, num($2, "%.0f"), num($3, "%.1f"),
               num($4, "%.1f"), num($5, "%.1f"), num($6, "%.1f") }'
fi

if ((WITH_HTTP)); then
  echo
  echo "== HTTP: kervan vs nginx"
  "$ROOT/bench/http_bench.sh" "$BUILD_DIR" | tee "$RESULTS_DIR/http_bench.txt"
fi
echo
echo "run.sh: raw results in $RESULTS_DIR"
