#!/usr/bin/env bash
# Throughput and latency of the MLflow tracking API (/api/2.0/mlflow/...) on
# SQLite and/or PostgreSQL, driven by wrk on the same machine:
#
#   (a) POST runs/log-metric              requests/s at 8 connections
#   (b) POST runs/log-batch, 1000 points   metric points/s at 8 connections
#   (c) POST runs/search over SEED_RUNS runs (default 100,000), filter
#       "metrics.auc > 0.5", order_by ["metrics.auc DESC"], max_results 100
#       and 1000: latency p50/p90/p99 at 1 connection
#   (d) GET metrics/get-history of a 100,000-point metric: latency at 1 connection
#
#   bench/tracking_bench.sh [--backend sqlite|postgres|both] [--quick] [--keep]
#
#   --backend   which store(s) to measure (default: both)
#   --quick     short smoke run: 3 s rounds, 2,000 seeded runs, a 10,000-point history
#   --keep      keep the data directories (printed at the end) for inspection,
#               e.g. sqlite3 DIR/sqlite/kervan.db 'EXPLAIN QUERY PLAN ...'
#
# Environment (all optional):
#   KERVAN_BIN=build/app/kervan     the server binary
#   KERVAN_BENCH_DIR=/var/tmp       where the data (SQLite file, PostgreSQL
#                                   cluster) goes; must be a real disk, not tmpfs
#   DURATION=10s                    each throughput round, (a) and (b)
#   LAT_DURATION=10s                each latency round, (c) and (d)
#   CONNECTIONS=8                   wrk -c for (a) and (b)
#   WRK_THREADS=2                   wrk -t for (a), (b) and the seeding
#   SEED_RUNS=100000                runs seeded for (c)
#   SEED_CONNECTIONS=16             wrk -c while seeding
#   HISTORY_BATCHES=100             log-batch requests of 1000 points seeding (d)
#   BATCH_KEYS=100                  distinct keys in each 1000-point batch of (b)
#   ONLY=abcd                       which measurements to run (e.g. ONLY=ad)
#   KERVAN_CPU_LOCK=/tmp/kervan-cpu.lock
#                                   each backend's measurements run holding flock
#                                   on this file, so builds on the shared machine
#                                   do not overlap them (released while seeding
#                                   the runs of (c), which is not a measurement,
#                                   so that no hold lasts minutes); empty: no lock. Do not
#                                   wrap the whole script in flock on the same
#                                   file: the inner flock would wait forever.
#
# Every server (kervan, the throwaway PostgreSQL) listens on 127.0.0.1, gets a
# fresh data directory and is stopped on exit (trap). wrk runs on the same
# machine and competes with the server (and PostgreSQL) for the CPUs.
# Needs: wrk, curl, jq; PostgreSQL server binaries for --backend postgres.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
KERVAN_BIN=${KERVAN_BIN:-$ROOT/build/app/kervan}
KERVAN_BENCH_DIR=${KERVAN_BENCH_DIR:-/var/tmp}
LUA=$ROOT/bench/lua
LOCK=${KERVAN_CPU_LOCK-/tmp/kervan-cpu.lock}

BACKENDS=(sqlite postgres)
QUICK=0
KEEP=0
while (($#)); do
  case "$1" in
    --backend)
      (($# >= 2)) || { echo "tracking_bench: --backend needs a value" >&2; exit 2; }
      case "$2" in
        sqlite | postgres) BACKENDS=("$2") ;;
        both) BACKENDS=(sqlite postgres) ;;
        *) echo "tracking_bench: --backend sqlite|postgres|both" >&2; exit 2 ;;
      esac
      shift 2
      ;;
    --backend=*) set -- --backend "${1#--backend=}" "${@:2}" ;;
    --quick) QUICK=1; shift ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: bench/tracking_bench.sh [--backend sqlite|postgres|both] [--quick] [--keep]" >&2; exit 2 ;;
  esac
done

if ((QUICK)); then
  DURATION=${DURATION:-3s}
  LAT_DURATION=${LAT_DURATION:-3s}
  SEED_RUNS=${SEED_RUNS:-2000}
  HISTORY_BATCHES=${HISTORY_BATCHES:-10}
else
  DURATION=${DURATION:-10s}
  LAT_DURATION=${LAT_DURATION:-10s}
  SEED_RUNS=${SEED_RUNS:-100000}
  HISTORY_BATCHES=${HISTORY_BATCHES:-100}
fi
CONNECTIONS=${CONNECTIONS:-8}
WRK_THREADS=${WRK_THREADS:-2}
SEED_CONNECTIONS=${SEED_CONNECTIONS:-16}
BATCH_KEYS=${BATCH_KEYS:-100}
ONLY=${ONLY:-abcd}
want() { [[ $ONLY == *"$1"* ]]; }
BATCH_POINTS=1000
HISTORY_POINTS=$((HISTORY_BATCHES * 1000))

die() {
  echo "tracking_bench: error: $*" >&2
  exit 1
}
note() { echo "tracking_bench: $*" >&2; }

for tool in wrk curl jq; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh installs it)"
done
[[ -x "$KERVAN_BIN" ]] || die "$KERVAN_BIN not found (cmake --build build --target kervan)"
((SEED_RUNS % WRK_THREADS == 0)) || die "SEED_RUNS must be a multiple of WRK_THREADS"
((1000 % BATCH_KEYS == 0)) || die "BATCH_KEYS must divide 1000"
fs_type=$(stat -f -c %T "$KERVAN_BENCH_DIR") || die "KERVAN_BENCH_DIR=$KERVAN_BENCH_DIR does not exist"
case "$fs_type" in
  tmpfs | ramfs) die "KERVAN_BENCH_DIR=$KERVAN_BENCH_DIR is $fs_type: fsync there is a no-op; pick a disk directory" ;;
esac

WORK=$(mktemp -d "$KERVAN_BENCH_DIR/kervan-tracking-bench.XXXXXX")
chmod 0755 "$WORK"  # the PostgreSQL cluster runs as user postgres when we are root
KERVAN_PID=""
PG_DIR=""

# stop_pid PID NAME (bench/lib/proc.sh)
source "$ROOT/bench/lib/proc.sh"

stop_servers() {
  unlock_cpu
  stop_pid "$KERVAN_PID" kervan
  KERVAN_PID=""
  if [[ -n "$PG_DIR" ]]; then
    "$ROOT/scripts/pg.sh" stop "$PG_DIR" >/dev/null 2>&1 || true
    PG_DIR=""
  fi
}

WRK_PID=""
cleanup() {
  [[ -z "$WRK_PID" ]] || stop_pid "$WRK_PID" wrk
  stop_servers
  if ((KEEP)); then
    note "kept data in $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The CPU lock is held for a whole backend's measurements (warm-ups, seeding
# and the measured rounds together), taken after its servers are up (they
# must not inherit the descriptor) and released before they stop.
lock_cpu() {
  [[ -n "$LOCK" ]] || return 0
  exec 9>>"$LOCK"
  note "waiting for $LOCK"
  flock 9
  note "holding $LOCK"
}
unlock_cpu() {
  [[ -n "$LOCK" ]] || return 0
  flock -u 9 2>/dev/null || true
  exec 9>&-
}

to_ms() {  # wrk latency ("812.00us", "1.20ms", "1.02s", "1.00m") -> milliseconds
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000
    printf "%.2f", n }'
}
secs() { awk -v d="$1" 'BEGIN { n = d + 0; if (d ~ /m$/) n *= 60; print int(n) }'; }

# CPU seconds (user + system) used so far by the kervan server and, on
# PostgreSQL, by the postmaster and all its children (the backends).
clk_tck=$(getconf CLK_TCK)
cpu_ticks_of() {  # pids... -> summed utime+stime ticks
  local t=0 pid f
  for pid in "$@"; do
    f=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    f=${f##*) }  # fields after "(comm) "; utime, stime are fields 14, 15 (here 12, 13)
    read -r -a a <<<"$f"
    t=$((t + a[11] + a[12]))
  done
  echo "$t"
}
pg_pids() {
  [[ -n "$PG_DIR" && -f "$PG_DIR/data/postmaster.pid" ]] || return 0
  local pm
  pm=$(head -n 1 "$PG_DIR/data/postmaster.pid")
  echo "$pm"
  pgrep -P "$pm" || true
}
cpu_snapshot() { echo "$(cpu_ticks_of "$KERVAN_PID") $(cpu_ticks_of $(pg_pids))"; }
# "kervan X%, postgres Y%" of one CPU between two snapshots over WALL seconds.
cpu_usage() {  # "k0 p0" "k1 p1" wall_s
  read -r k0 p0 <<<"$1"
  read -r k1 p1 <<<"$2"
  awk -v k=$((k1 - k0)) -v p=$((p1 - p0)) -v hz="$clk_tck" -v w="$3" -v pg="${PG_DIR:+1}" 'BEGIN {
    if (w <= 0) w = 1
    s = sprintf("kervan %.0f%%", 100 * k / hz / w)
    if (pg) s = s sprintf(", postgres %.0f%%", 100 * p / hz / w)
    print s " of one CPU" }'
}

# --- servers -------------------------------------------------------------------

start_server() {  # backend
  local backend=$1 dir=$WORK/$1 i
  mkdir -p "$dir"
  local args=(server --data-dir "$dir" --port 0 --ready-file "$dir/port"
    --set server.address=127.0.0.1 --set server.access_log=false
    --set log.events=false --set log.level=warn)
  if [[ $backend == postgres ]]; then
    PG_DIR=$WORK/pg
    mkdir -p "$PG_DIR"
    chmod 0755 "$PG_DIR"
    local dsn
    dsn=$("$ROOT/scripts/pg.sh" start "$PG_DIR") || die "PostgreSQL did not start"
    args+=(--set store.backend=postgres --set "store.postgres.dsn=$dsn")
  fi
  "$KERVAN_BIN" "${args[@]}" >"$WORK/kervan-$backend.log" 2>&1 &
  KERVAN_PID=$!
  for ((i = 0; i < 300; i++)); do
    [[ -s "$dir/port" ]] && break
    kill -0 "$KERVAN_PID" 2>/dev/null || { tail -n 20 "$WORK/kervan-$backend.log" >&2; die "kervan exited during start-up"; }
    sleep 0.1
  done
  [[ -s "$dir/port" ]] || die "kervan wrote no ready file within 30 s"
  BASE="http://127.0.0.1:$(tr -d '[:space:]' <"$dir/port")"
  API=$BASE/api/2.0/mlflow
  AUTH="Authorization: Bearer $(tr -d '[:space:]' <"$dir/admin.token")"
  DATA_DIR=$dir
}

api() {  # METHOD path [json] -> response body; dies on a non-2xx answer
  local out code body=${3-}
  [[ -n "$body" ]] || body='{}'
  out=$(mktemp "$WORK/resp.XXXXXX")
  if [[ $1 == GET ]]; then
    code=$(curl -sS -m 600 -o "$out" -w '%{http_code}' -H "$AUTH" "$API/$2")
  else
    code=$(curl -sS -m 600 -o "$out" -w '%{http_code}' -H "$AUTH" -H 'Content-Type: application/json' \
      -X "$1" --data-binary "$body" "$API/$2")
  fi
  if [[ $code != 2* ]]; then
    head -c 500 "$out" >&2
    rm -f "$out"
    die "$1 $2 answered $code"
  fi
  cat "$out"
  rm -f "$out"
}
api_file() {  # path file -> POST the file's JSON
  curl -sS -m 600 -f -o /dev/null -H "$AUTH" -H 'Content-Type: application/json' \
    --data-binary "@$2" "$API/$1" || die "POST $1 failed"
}

create_experiment() { api POST experiments/create "{\"name\":\"$1\"}" | jq -r .experiment_id; }
create_run() { api POST runs/create "{\"experiment_id\":\"$1\"}" | jq -r .run.info.run_id; }

# --- wrk -------------------------------------------------------------------------

# run_wrk NAME THREADS CONNS DURATION URL [wrk args...]: output in $WORK/NAME.txt;
# prints "rps p50 p90 p99 non2xx"; warns on errors.
run_wrk() {
  local name=$1 t=$2 c=$3 d=$4 url=$5 out=$WORK/$1.txt
  shift 5
  timeout --foreground $(($(secs "$d") + 60)) \
    wrk -t"$t" -c"$c" -d"$d" --timeout 30s --latency -H "$AUTH" \
    -H 'Content-Type: application/json' "$url" "$@" >"$out" 2>&1 ||
    { cat "$out" >&2; die "wrk ($name) failed"; }
  local rps p50 p90 p99 bad
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
  p50=$(awk '$1 == "50%" { print $2 }' "$out")
  p90=$(awk '$1 == "90%" { print $2 }' "$out")
  p99=$(awk '$1 == "99%" { print $2 }' "$out")
  [[ -n "$rps" && -n "$p50" && -n "$p99" ]] || { cat "$out" >&2; die "cannot parse wrk output ($name)"; }
  bad=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
  if grep -qE 'Non-2xx|Socket errors' "$out"; then
    note "warning: $name: $(grep -E 'Non-2xx|Socket errors' "$out" | tr -s ' ' | tr '\n' ' ')"
  fi
  echo "$rps $(to_ms "$p50") $(to_ms "$p90") $(to_ms "$p99") ${bad:-0}"
}

# measured step with the server's CPU: "rps p50 p90 p99 non2xx" in $RES, usage in $CPU
measure() {
  local s0 s1 t0 t1
  s0=$(cpu_snapshot)
  t0=$(date +%s.%N)
  RES=$(run_wrk "$@")
  t1=$(date +%s.%N)
  s1=$(cpu_snapshot)
  CPU=$(cpu_usage "$s0" "$s1" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
}

SUMMARY=$WORK/summary.tsv
: >"$SUMMARY"
record() {  # backend, what, measured, target, met
  printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$SUMMARY"
}
verdict() {  # value op target -> MET / NOT MET
  awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { ok = (op == ">=") ? v >= t : v <= t; print ok ? "met" : "NOT MET" }'
}

SEED_FILTER="metrics.auc >= 0 and params.lr = '0.01' and tags.team = 'bench'"
count_seeded() {  # experiment id -> runs matching SEED_FILTER (pages of 25,000)
  local count=0 token="" page n
  while :; do
    page=$(api POST runs/search "$(jq -cn --arg e "$1" --arg f "$SEED_FILTER" --arg t "$token" \
      '{experiment_ids: [$e], filter: $f, max_results: 25000} + (if $t == "" then {} else {page_token: $t} end)')")
    n=$(jq '.runs | length' <<<"$page")
    count=$((count + n))
    token=$(jq -r '.next_page_token // ""' <<<"$page")
    [[ -n "$token" && $n -gt 0 ]] || break
  done
  echo "$count"
}

# --- one backend ---------------------------------------------------------------------

bench_backend() {
  local backend=$1
  echo
  echo "== $backend"
  start_server "$backend"
  note "$backend: server on $BASE, data in $DATA_DIR${PG_DIR:+, PostgreSQL in $PG_DIR}"
  lock_cpu

  local exp runs=() i
  exp=$(create_experiment "bench-write")
  if want a; then
  # (a) log-metric: 8 runs, round robin.
  for ((i = 0; i < 8; i++)); do runs+=("$(create_run "$exp")"); done
  run_wrk warm-a-$backend "$WRK_THREADS" "$CONNECTIONS" 2s "$API/runs/log-metric" \
    -s "$LUA/log_metric.lua" -- "${runs[@]}" >/dev/null
  measure a-$backend "$WRK_THREADS" "$CONNECTIONS" "$DURATION" "$API/runs/log-metric" \
    -s "$LUA/log_metric.lua" -- "${runs[@]}"
  read -r rps p50 p90 p99 bad <<<"$RES"
  printf '(a) log-metric   wrk -t%s -c%s -d%s: %8.0f req/s   p50 %s ms  p90 %s ms  p99 %s ms  non-2xx %s  [%s]\n' \
    "$WRK_THREADS" "$CONNECTIONS" "$DURATION" "$rps" "$p50" "$p90" "$p99" "$bad" "$CPU"
  record "$backend" "(a) log-metric, $CONNECTIONS conns" "$(printf '%.0f req/s (p50 %s ms, p99 %s ms)' "$rps" "$p50" "$p99")" \
    ">= 10,000 req/s" "$( ((bad == 0)) && verdict "$rps" ">=" 10000 || echo "NOT MET (errors)")"
  fi

  if want b; then
  # (b) log-batch: 1000 points per request, 8 runs round robin.
  local bruns=()
  for ((i = 0; i < 8; i++)); do bruns+=("$(create_run "$exp")"); done
  run_wrk warm-b-$backend "$WRK_THREADS" "$CONNECTIONS" 2s "$API/runs/log-batch" \
    -s "$LUA/log_batch.lua" -- "$BATCH_POINTS" "$BATCH_KEYS" "${bruns[@]}" >/dev/null
  measure b-$backend "$WRK_THREADS" "$CONNECTIONS" "$DURATION" "$API/runs/log-batch" \
    -s "$LUA/log_batch.lua" -- "$BATCH_POINTS" "$BATCH_KEYS" "${bruns[@]}"
  read -r rps p50 p90 p99 bad <<<"$RES"
  local pps
  pps=$(awk -v r="$rps" -v n="$BATCH_POINTS" 'BEGIN { printf "%.0f", r * n }')
  printf '(b) log-batch    wrk -t%s -c%s -d%s: %8.0f req/s = %s points/s (%s keys x %s steps)   p50 %s ms  p99 %s ms  non-2xx %s  [%s]\n' \
    "$WRK_THREADS" "$CONNECTIONS" "$DURATION" "$rps" "$pps" "$BATCH_KEYS" $((BATCH_POINTS / BATCH_KEYS)) "$p50" "$p99" "$bad" "$CPU"
  record "$backend" "(b) log-batch 1000 points, $CONNECTIONS conns" \
    "$(printf "%'.0f points/s (%.0f req/s, p50 %s ms)" "$pps" "$rps" "$p50")" ">= 1,000,000 points/s" \
    "$( ((bad == 0)) && verdict "$pps" ">=" 1000000 || echo "NOT MET (errors)")"
  fi

  if want c; then
  # Seed SEED_RUNS runs, each with metric auc, param lr and tag team.
  local sexp per s0 s1 t0 t1 seed_s out
  sexp=$(create_experiment "bench-search")
  per=$((SEED_RUNS / WRK_THREADS))
  out=$WORK/seed-$backend.txt
  unlock_cpu  # seeding is not measured; keep each hold of the lock short
  s0=$(cpu_snapshot)
  t0=$(date +%s.%N)
  # wrk runs for its whole -d even when every thread has stopped: wait for
  # each thread's line in the done file, then stop it with SIGINT.
  : >"$WORK/seed-done"
  wrk -t"$WRK_THREADS" -c"$SEED_CONNECTIONS" -d$((SEED_RUNS / 50 + 60))s --timeout 30s \
    -H "$AUTH" -H 'Content-Type: application/json' "$API/runs/create" \
    -s "$LUA/seed_runs.lua" -- "$sexp" "$per" "$WORK/seed-done" >"$out" 2>&1 &
  WRK_PID=$!
  while kill -0 "$WRK_PID" 2>/dev/null; do
    if (($(wc -l <"$WORK/seed-done") >= WRK_THREADS)); then
      kill -INT "$WRK_PID" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  wait "$WRK_PID" || { cat "$out" >&2; WRK_PID=""; die "seeding failed"; }
  WRK_PID=""
  t1=$(date +%s.%N)
  s1=$(cpu_snapshot)
  seed_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  local seedline
  seedline=$(grep '^SEED created' "$out") || { cat "$out" >&2; die "seeding printed no SEED line"; }
  printf 'seed: %s runs (create + log-batch each) in %s s = %.0f runs/s; %s  [%s]\n' "$SEED_RUNS" "$seed_s" \
    "$(awk -v n="$SEED_RUNS" -v s="$seed_s" 'BEGIN { print n / s }')" "$seedline" \
    "$(cpu_usage "$s0" "$s1" "$seed_s")"
  grep -E 'SEED first error|Socket errors|Non-2xx' "$out" >&2 || true
  # Verify with a search: every seeded run carries the metric, the param and
  # the tag. Runs lost to a failed request are topped up with curl.
  local count missing v0 v1
  v0=$(date +%s.%N)
  count=$(count_seeded "$sexp")
  v1=$(date +%s.%N)
  printf 'seed check: runs/search "%s" counted %s runs (pages of 25000, %.1f s)\n' "$SEED_FILTER" "$count" \
    "$(awk -v a="$v0" -v b="$v1" 'BEGIN { print b - a }')"
  missing=$((SEED_RUNS - count))
  if ((missing > 0)); then
    note "$backend: topping up $missing runs with curl"
    for ((i = 0; i < missing; i++)); do
      local rid
      rid=$(api POST runs/create "{\"experiment_id\":\"$sexp\",\"tags\":[{\"key\":\"team\",\"value\":\"bench\"}]}" | jq -r .run.info.run_id)
      api POST runs/log-batch "{\"run_id\":\"$rid\",\"metrics\":[{\"key\":\"auc\",\"value\":0.$RANDOM,\"timestamp\":1700000000000,\"step\":0}],\"params\":[{\"key\":\"lr\",\"value\":\"0.01\"}]}" >/dev/null
    done
    count=$(count_seeded "$sexp")
    printf 'seed check after topping up %s runs: %s runs\n' "$missing" "$count"
  fi
  ((count == SEED_RUNS)) || die "seeded $count runs, expected $SEED_RUNS"
  lock_cpu

  # (c) search latency, 1 connection.
  local mr body
  for mr in 100 1000; do
    body=$(jq -cn --arg e "$sexp" --argjson m "$mr" \
      '{experiment_ids: [$e], filter: "metrics.auc > 0.5", order_by: ["metrics.auc DESC"], max_results: $m}')
    n=$(api POST runs/search "$body" | jq '.runs | length')
    ((n > 0 && n <= mr)) || die "search returned $n runs (max_results $mr)"
    ((n == mr)) || note "search returned $n runs, fewer than max_results $mr (few runs seeded)"
    run_wrk warm-c$mr-$backend 1 1 2s "$API/runs/search" -s "$LUA/post_json.lua" -- /api/2.0/mlflow/runs/search "$body" >/dev/null
    measure c$mr-$backend 1 1 "$LAT_DURATION" "$API/runs/search" -s "$LUA/post_json.lua" -- /api/2.0/mlflow/runs/search "$body"
    read -r rps p50 p90 p99 bad <<<"$RES"
    printf '(c) search max_results=%-4s over %s runs, wrk -c1 -d%s: p50 %s ms  p90 %s ms  p99 %s ms  (%.1f req/s, non-2xx %s)  [%s]\n' \
      "$mr" "$SEED_RUNS" "$LAT_DURATION" "$p50" "$p90" "$p99" "$rps" "$bad" "$CPU"
    record "$backend" "(c) search $SEED_RUNS runs, max_results $mr" "p50 $p50 ms (p90 $p90, p99 $p99)" "p50 <= 20 ms" \
      "$( ((bad == 0)) && verdict "$p50" "<=" 20 || echo "NOT MET (errors)")"
  done
  fi

  if want d; then
  # (d) metric history: HISTORY_BATCHES x 1000 points, one run, key "loss".
  local hrun f b
  hrun=$(create_run "$exp")
  t0=$(date +%s.%N)
  for ((b = 0; b < HISTORY_BATCHES; b++)); do
    f=$WORK/hist.json
    awk -v run="$hrun" -v b="$b" 'BEGIN {
      printf "{\"run_id\":\"%s\",\"metrics\":[", run
      for (i = 0; i < 1000; i++) {
        s = b * 1000 + i
        printf "%s{\"key\":\"loss\",\"value\":%.6f,\"timestamp\":%d,\"step\":%d}", (i ? "," : ""), 1 / (s + 1), 1700000000000 + s, s
      }
      printf "]}" }' >"$f"
    api_file runs/log-batch "$f"
  done
  t1=$(date +%s.%N)
  local hurl="$API/metrics/get-history?run_id=$hrun&metric_key=loss" bytes
  bytes=$(curl -sS -m 600 -H "$AUTH" "$hurl" | tee "$WORK/hist-resp.json" | wc -c)
  n=$(jq '.metrics | length' "$WORK/hist-resp.json")
  rm -f "$WORK/hist-resp.json"
  ((n == HISTORY_POINTS)) || die "get-history returned $n points, expected $HISTORY_POINTS"
  printf 'history seed: %s log-batch requests of 1000 points in %.1f s; response %s points, %s bytes\n' \
    "$HISTORY_BATCHES" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$n" "$bytes"
  run_wrk warm-d-$backend 1 1 2s "$hurl" >/dev/null
  measure d-$backend 1 1 "$LAT_DURATION" "$hurl"
  read -r rps p50 p90 p99 bad <<<"$RES"
  printf '(d) get-history %s points, wrk -c1 -d%s: p50 %s ms  p90 %s ms  p99 %s ms  (%.1f req/s, non-2xx %s)  [%s]\n' \
    "$HISTORY_POINTS" "$LAT_DURATION" "$p50" "$p90" "$p99" "$rps" "$bad" "$CPU"
  record "$backend" "(d) get-history $HISTORY_POINTS points" "p50 $p50 ms (p90 $p90, p99 $p99)" "p50 <= 50 ms" \
    "$( ((bad == 0)) && verdict "$p50" "<=" 50 || echo "NOT MET (errors)")"
  fi

  if ((KEEP)); then
    note "$backend: run ids: history ${hrun:-}; experiment ids: write $exp, search ${sexp:-}"
  fi
  stop_servers
}

echo "tracking_bench: $(date -u +%FT%TZ) on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "tracking_bench: $KERVAN_BIN ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')); data on $KERVAN_BENCH_DIR ($fs_type)"
echo "tracking_bench: wrk and the server(s) share the same $(nproc) CPUs; CPU lock: ${LOCK:-none}"
((QUICK)) && echo "tracking_bench: --quick: smoke run, the figures are not comparable with the targets"

for backend in "${BACKENDS[@]}"; do
  bench_backend "$backend"
done

echo
echo "== summary"
printf '%-9s %-44s %-46s %-22s %s\n' backend measurement result target verdict
awk -F'\t' '{ printf "%-9s %-44s %-46s %-22s %s\n", $1, $2, $3, $4, $5 }' "$SUMMARY"
