#!/usr/bin/env bash
# Small-JSON GET throughput of the kervan HTTP server, side by side with nginx
# serving the same bytes, both on loopback, both driven by the same wrk
# settings in the same run.
#
#   bench/http_bench.sh [BUILD_DIR]        (default BUILD_DIR: build-bench)
#
# Environment (all optional):
#   DURATION=10s     wrk duration of each measured round
#   CONNECTIONS=64   wrk -c
#   WRK_THREADS=2    wrk -t
#   IO_THREADS=2     kervan server.io_threads; nginx gets as many workers
#   ROUNDS=3         measured rounds, alternating kervan/nginx; the median is reported
#   KERVAN_BIN       the kervan binary (default BUILD_DIR/app/kervan)
#
# The servers listen on 127.0.0.1 only, are stopped on exit (trap) and every
# wrk run is bounded by its -d (and a timeout), so the script stops by itself.
# wrk runs on the same machine and competes with the server for the CPUs: on
# a 2-core box the absolute numbers are a floor, the ratio is what compares.
# Needs: wrk, curl, nginx (Debian nginx-light; scripts/setup.sh installs them).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${1:-$ROOT/build-bench}
KERVAN_BIN=${KERVAN_BIN:-$BUILD_DIR/app/kervan}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-2}
IO_THREADS=${IO_THREADS:-2}
ROUNDS=${ROUNDS:-3}
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}

die() {
  echo "http_bench: error: $*" >&2
  exit 1
}

for tool in wrk curl; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh installs it)"
done
[[ -x "$NGINX_BIN" ]] || die "$NGINX_BIN not found (apt-get install nginx-light)"
[[ -x "$KERVAN_BIN" ]] || die "$KERVAN_BIN not found (bench/run.sh builds it)"

WORK=$(mktemp -d /tmp/kervan-http-bench.XXXXXX)
KERVAN_PID=""
NGINX_PID=""

# stop_pid PID NAME (bench/lib/proc.sh)
source "$ROOT/bench/lib/proc.sh"

cleanup() {
  stop_pid "$KERVAN_PID" kervan
  # nginx runs with 'daemon off', so $NGINX_PID is its master; SIGTERM is a fast stop.
  stop_pid "$NGINX_PID" nginx
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=../scripts/lib/ports.sh
source "$ROOT/scripts/lib/ports.sh"

wait_http() {  # url, name, pid, log files to show on failure...
  local url=$1 name=$2 pid=$3 i
  shift 3
  for ((i = 0; i < 200; i++)); do
    curl -fsS -m 2 -H "$AUTH_HEADER" -o /dev/null "$url" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$@" >&2 2>/dev/null; die "$name exited during start-up"; }
    sleep 0.1
  done
  tail -n 20 "$@" >&2 2>/dev/null
  die "$name did not answer $url within 20 s"
}

# --- kervan -----------------------------------------------------------------
mkdir -p "$WORK/kervan"
"$KERVAN_BIN" server --data-dir "$WORK/kervan" --port 0 --ready-file "$WORK/kervan/port" \
  --set server.address=127.0.0.1 --set server.io_threads="$IO_THREADS" \
  --set server.access_log=false --set log.level=warn >"$WORK/kervan.log" 2>&1 &
KERVAN_PID=$!
for ((i = 0; i < 200; i++)); do
  [[ -s "$WORK/kervan/port" ]] && break
  kill -0 "$KERVAN_PID" 2>/dev/null || { tail -n 20 "$WORK/kervan.log" >&2; die "kervan exited during start-up"; }
  sleep 0.1
done
[[ -s "$WORK/kervan/port" ]] || die "kervan wrote no ready file within 20 s"
# Every API route needs a token: the bootstrap admin's. Both servers get the
# same header, so the requests are the same size; nginx ignores it.
AUTH_HEADER="Authorization: Bearer $(tr -d '[:space:]' <"$WORK/kervan/admin.token")"
KERVAN_URL="http://127.0.0.1:$(tr -d '[:space:]' <"$WORK/kervan/port")/api/v1/version"
wait_http "$KERVAN_URL" kervan "$KERVAN_PID" "$WORK/kervan.log"

BODY=$(curl -fsS -m 5 -H "$AUTH_HEADER" "$KERVAN_URL")
SQUOTE="'"
BACKSLASH=$'\\'
[[ "$BODY" != *"$SQUOTE"* && "$BODY" != *"$BACKSLASH"* ]] ||
  die "body has characters nginx's return '...' would need escaped: $BODY"

# --- nginx, serving the same bytes --------------------------------------------
NGX=$WORK/nginx
mkdir -p "$NGX/tmp"

write_nginx_conf() {  # port
  cat >"$NGX/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes $IO_THREADS;
pid $NGX/nginx.pid;
error_log $NGX/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_timeout 65;
  keepalive_requests 100000000;
  client_body_temp_path $NGX/tmp/body;
  proxy_temp_path $NGX/tmp/proxy;
  fastcgi_temp_path $NGX/tmp/fastcgi;
  uwsgi_temp_path $NGX/tmp/uwsgi;
  scgi_temp_path $NGX/tmp/scgi;
  server {
    listen 127.0.0.1:$1;
    location = /v {
      default_type application/json;
      return 200 '$BODY';
    }
  }
}
EOF
}

# The free port can be taken between the check and nginx's bind (nginx then
# retries the bind for a few seconds and exits): start again on another port.
NGINX_UP=0
for _ in 1 2 3; do
  NGINX_PORT=$(free_port)
  write_nginx_conf "$NGINX_PORT"
  : >"$NGX/error.log"
  "$NGINX_BIN" -p "$NGX" -e "$NGX/error.log" -c "$NGX/nginx.conf" >"$NGX/stdout.log" 2>&1 &
  NGINX_PID=$!
  NGINX_URL="http://127.0.0.1:$NGINX_PORT/v"
  for ((i = 0; i < 200; i++)); do
    if curl -fsS -m 2 -H "$AUTH_HEADER" -o /dev/null "$NGINX_URL" 2>/dev/null; then
      NGINX_UP=1
      break
    fi
    kill -0 "$NGINX_PID" 2>/dev/null || break
    sleep 0.1
  done
  ((NGINX_UP)) && break
  stop_pid "$NGINX_PID" nginx
  NGINX_PID=""
  grep -qs "Address already in use" "$NGX/error.log" "$NGX/stdout.log" || break
done
if ((!NGINX_UP)); then
  tail -n 20 "$NGX/stdout.log" "$NGX/error.log" >&2 2>/dev/null
  die "nginx did not start"
fi

NGINX_BODY=$(curl -fsS -m 5 -H "$AUTH_HEADER" "$NGINX_URL")
[[ "$NGINX_BODY" == "$BODY" ]] || die "nginx body differs from kervan's: $NGINX_BODY"

sizes() {  # url -> "header_bytes body_bytes"
  curl -fsS -m 5 -H "$AUTH_HEADER" -o /dev/null -w '%{size_header} %{size_download}' "$1"
}
read -r K_HDR K_BODY <<<"$(sizes "$KERVAN_URL")"
read -r N_HDR N_BODY <<<"$(sizes "$NGINX_URL")"
((K_BODY == N_BODY)) || die "body sizes differ: kervan $K_BODY, nginx $N_BODY"

echo "http_bench: $(date -u +%FT%TZ) on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'))"
echo "http_bench: body $K_BODY bytes: $BODY"
echo "http_bench: response headers: kervan $K_HDR bytes, nginx $N_HDR bytes"
echo "http_bench: kervan io_threads=$IO_THREADS, nginx worker_processes=$IO_THREADS;" \
  "wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION --latency on the same machine (competes for the CPUs)"

# --- wrk --------------------------------------------------------------------
to_ms() {  # wrk latency ("812.00us", "1.20ms", "1.02s") -> milliseconds
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000
    printf "%.3f", n }'
}

dur_s=$(awk -v d="$DURATION" 'BEGIN { n = d + 0; if (d ~ /m$/) n *= 60; print int(n) }')

# Runs wrk against $1, saves its output in $2, prints "rps p50_ms p99_ms".
run_wrk() {
  timeout --foreground $((dur_s + 30)) wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" -H "$AUTH_HEADER" --latency "$1" >"$2" 2>&1 ||
    { cat "$2" >&2; die "wrk failed against $1"; }
  if grep -qE 'Non-2xx|Socket errors' "$2"; then
    echo "http_bench: warning: $(grep -E 'Non-2xx|Socket errors' "$2" | tr -s ' ') ($1)" >&2
  fi
  local rps p50 p99
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$2")
  p50=$(awk '$1 == "50%" { print $2 }' "$2")
  p99=$(awk '$1 == "99%" { print $2 }' "$2")
  [[ -n "$rps" && -n "$p50" && -n "$p99" ]] || { cat "$2" >&2; die "cannot parse wrk output"; }
  echo "$rps $(to_ms "$p50") $(to_ms "$p99")"
}

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# Warm-up: connections, caches, CPU frequency.
DURATION=2s run_wrk "$KERVAN_URL" "$WORK/warm-k.txt" >/dev/null
DURATION=2s run_wrk "$NGINX_URL" "$WORK/warm-n.txt" >/dev/null

: >"$WORK/kervan.res"
: >"$WORK/nginx.res"
for ((r = 1; r <= ROUNDS; r++)); do
  k=$(run_wrk "$KERVAN_URL" "$WORK/wrk-k-$r.txt")
  n=$(run_wrk "$NGINX_URL" "$WORK/wrk-n-$r.txt")
  echo "$k" >>"$WORK/kervan.res"
  echo "$n" >>"$WORK/nginx.res"
  read -r kr kp50 kp99 <<<"$k"
  read -r nr np50 np99 <<<"$n"
  printf 'round %d: kervan %10.0f req/s (p50 %s ms, p99 %s ms) | nginx %10.0f req/s (p50 %s ms, p99 %s ms)\n' \
    "$r" "$kr" "$kp50" "$kp99" "$nr" "$np50" "$np99"
done

col() { awk -v c="$1" '{ print $c }' "$2" | median; }
K_RPS=$(col 1 "$WORK/kervan.res"); K_P50=$(col 2 "$WORK/kervan.res"); K_P99=$(col 3 "$WORK/kervan.res")
N_RPS=$(col 1 "$WORK/nginx.res"); N_P50=$(col 2 "$WORK/nginx.res"); N_P99=$(col 3 "$WORK/nginx.res")
RATIO=$(awk -v k="$K_RPS" -v n="$N_RPS" 'BEGIN { printf "%.2f", k / n }')
MET=$(awk -v r="$RATIO" 'BEGIN { print (r >= 0.5) ? "MET" : "NOT MET" }')

echo "RESULT kervan GET /api/v1/version: $(printf '%.0f' "$K_RPS") req/s, latency p50 $K_P50 ms, p99 $K_P99 ms (median of $ROUNDS)"
echo "RESULT nginx  GET /v (same body):   $(printf '%.0f' "$N_RPS") req/s, latency p50 $N_P50 ms, p99 $N_P99 ms (median of $ROUNDS)"
echo "RESULT ratio kervan/nginx = $RATIO (target >= 0.50: $MET)"
