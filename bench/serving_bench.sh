#!/usr/bin/env bash
# Online inference: Kervan's gateway against the reference design, an XGBoost
# model behind FastAPI + uvicorn (bench/serving/fastapi_app.py). Same model
# (bench/serving/make_model.py: 100 trees, 30 features), same request (one
# row, POST /v1/endpoints/bench/predict, {"instances": [[30 floats]]}), same
# wrk settings, in the same run, both on loopback.
#
#   bench/serving_bench.sh [BUILD_DIR]        (default BUILD_DIR: build-bench)
#
# Environment (all optional):
#   DURATION=10s        wrk duration of each measured round
#   CONNECTIONS=64      wrk -c
#   WRK_THREADS=2       wrk -t
#   ROUNDS=3            measured rounds, alternating the services (the order
#                       flips every round); the median of each is reported
#   UVICORN_WORKERS=2   uvicorn --workers (one Booster per worker, 1 thread each)
#   UVICORN_LOOP=auto   uvicorn --loop   (auto: uvloop if installed, else asyncio)
#   UVICORN_HTTP=auto   uvicorn --http   (auto: httptools if installed, else h11)
#   FASTAPI_HANDLER=async  the route as `async def` (default) or `def` (sync)
#   IO_THREADS=2        kervan server.io_threads
#   KERVAN_SET          extra kervan overrides, space-separated key=value
#   KERVAN_BIN          the kervan binary (default BUILD_DIR/app/kervan)
#   ONLY_BASELINE=1     measure the FastAPI service alone (no kervan needed)
#   RESULTS_DIR=/tmp    where serving_bench.json goes
#   PYTHON=/usr/bin/python3  needs xgboost, sklearn, fastapi, uvicorn (Debian
#                       python3-* packages; a pyenv python3 first in PATH has none)
#
# Before measuring, both services must give the same probability for the row
# as the Booster itself, to 1e-6, or the script fails.
# Prints a markdown table on stdout (progress goes to stderr) and writes the
# same numbers, every round's included, to RESULTS_DIR/serving_bench.json.
# The servers listen on 127.0.0.1 only, are stopped on exit (trap) and every
# wrk run is bounded by its -d (and a timeout), so the script stops by itself.
# wrk runs on the same machine and competes with the servers for the CPUs: on
# a 2-core box the absolute numbers are a floor, the ratios are what compare.
# Needs: wrk, curl, jq.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${1:-$ROOT/build-bench}
KERVAN_BIN=${KERVAN_BIN:-$BUILD_DIR/app/kervan}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-2}
ROUNDS=${ROUNDS:-3}
UVICORN_WORKERS=${UVICORN_WORKERS:-2}
UVICORN_LOOP=${UVICORN_LOOP:-auto}
UVICORN_HTTP=${UVICORN_HTTP:-auto}
FASTAPI_HANDLER=${FASTAPI_HANDLER:-async}
IO_THREADS=${IO_THREADS:-2}
KERVAN_SET=${KERVAN_SET:-}
SAMPLE_PERCENT=${SAMPLE_PERCENT:-10}
ONLY_BASELINE=${ONLY_BASELINE:-0}
RESULTS_DIR=${RESULTS_DIR:-/tmp}
PYTHON=${PYTHON:-/usr/bin/python3}
ENDPOINT=bench
PREDICT_PATH=/v1/endpoints/$ENDPOINT/predict
TOLERANCE=1e-6

die() {
  echo "serving_bench: error: $*" >&2
  exit 1
}
log() { echo "serving_bench: $*" >&2; }

for tool in wrk curl jq; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh installs it)"
done
"$PYTHON" -c 'import xgboost, sklearn, fastapi, uvicorn' 2>/dev/null ||
  die "$PYTHON lacks xgboost/sklearn/fastapi/uvicorn (apt-get install python3-xgboost python3-sklearn python3-fastapi python3-uvicorn)"
if [[ "$ONLY_BASELINE" != 1 ]]; then
  [[ -x "$KERVAN_BIN" ]] || die "$KERVAN_BIN not found (bench/run.sh builds it; ONLY_BASELINE=1 skips kervan)"
fi
mkdir -p "$RESULTS_DIR"

WORK=$(mktemp -d /tmp/kervan-serving-bench.XXXXXX)
KERVAN_PID=""
FASTAPI_PID=""

# stop_pid PID NAME (bench/lib/proc.sh)
source "$ROOT/bench/lib/proc.sh"

cleanup() {
  stop_pid "$KERVAN_PID" kervan
  # uvicorn's supervisor stops its worker processes on SIGTERM.
  stop_pid "$FASTAPI_PID" uvicorn
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=../scripts/lib/ports.sh
source "$ROOT/scripts/lib/ports.sh"

# Both services get the same headers, so the requests are the same size:
# kervan needs the bootstrap admin's token, FastAPI ignores it.
AUTH_HEADER="Authorization: Bearer none"
JSON_HEADER="Content-Type: application/json"

predict_once() {  # base url -> the response body (fails on non-2xx)
  curl -fsS -m 5 -H "$AUTH_HEADER" -H "$JSON_HEADER" --data-binary @"$WORK/row.json" "$1$PREDICT_PATH"
}

wait_predict() {  # base url, name, pid, log files to show on failure...
  local url=$1 name=$2 pid=$3 i
  shift 3
  for ((i = 0; i < 300; i++)); do
    predict_once "$url" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$@" >&2 2>/dev/null; die "$name exited during start-up"; }
    sleep 0.1
  done
  tail -n 20 "$@" >&2 2>/dev/null
  die "$name did not answer POST $url$PREDICT_PATH within 30 s"
}

# --- the model and the request --------------------------------------------------
"$PYTHON" "$ROOT/bench/serving/make_model.py" --out "$WORK/model.json" --row-out "$WORK/row.json" >&2
BODY=$(<"$WORK/row.json")  # the exact bytes curl sends, less the newline
# The Booster's own answer for the row: both services must agree with it.
REF_PRED=$(MODEL="$WORK/model.json" ROW="$WORK/row.json" "$PYTHON" -c '
import json, os, numpy as np, xgboost as xgb
b = xgb.Booster(params={"nthread": 1}, model_file=os.environ["MODEL"])
x = np.array(json.load(open(os.environ["ROW"]))["instances"], dtype=np.float32)
print(repr(float(b.inplace_predict(x)[0])))')
VERSIONS=$("$PYTHON" -c '
import importlib.util, json, fastapi, pydantic, sklearn, uvicorn, xgboost
have = lambda m: importlib.util.find_spec(m) is not None
print(json.dumps({"python": __import__("platform").python_version(), "xgboost": xgboost.__version__,
                  "sklearn": sklearn.__version__, "fastapi": fastapi.__version__,
                  "pydantic": pydantic.VERSION, "uvicorn": uvicorn.__version__,
                  "uvloop": have("uvloop"), "httptools": have("httptools")}))')
LOOP_IMPL=$UVICORN_LOOP
[[ "$LOOP_IMPL" == auto ]] && LOOP_IMPL=$(jq -r 'if .uvloop then "uvloop" else "asyncio" end' <<<"$VERSIONS")
HTTP_IMPL=$UVICORN_HTTP
[[ "$HTTP_IMPL" == auto ]] && HTTP_IMPL=$(jq -r 'if .httptools then "httptools" else "h11" end' <<<"$VERSIONS")

# --- the reference: FastAPI + uvicorn -------------------------------------------
# The free port can be taken between the check and uvicorn's bind (uvicorn then
# exits): start again on another port.
FASTAPI_UP=0
for _ in 1 2 3; do
  FASTAPI_PORT=$(free_port)
  FASTAPI_URL="http://127.0.0.1:$FASTAPI_PORT"
  MODEL_PATH="$WORK/model.json" ENDPOINT_NAME="$ENDPOINT" FASTAPI_HANDLER="$FASTAPI_HANDLER" \
    OMP_NUM_THREADS=1 PYTHONDONTWRITEBYTECODE=1 \
    "$PYTHON" -m uvicorn fastapi_app:app --app-dir "$ROOT/bench/serving" \
    --host 127.0.0.1 --port "$FASTAPI_PORT" --workers "$UVICORN_WORKERS" \
    --loop "$UVICORN_LOOP" --http "$UVICORN_HTTP" \
    --log-level warning --no-access-log >"$WORK/fastapi.log" 2>&1 &
  FASTAPI_PID=$!
  for ((i = 0; i < 300; i++)); do
    if predict_once "$FASTAPI_URL" >/dev/null 2>&1; then
      FASTAPI_UP=1
      break
    fi
    kill -0 "$FASTAPI_PID" 2>/dev/null || break
    sleep 0.1
  done
  ((FASTAPI_UP)) && break
  stop_pid "$FASTAPI_PID" uvicorn
  FASTAPI_PID=""
  grep -qs "already in use" "$WORK/fastapi.log" || break
done
if ((!FASTAPI_UP)); then
  tail -n 20 "$WORK/fastapi.log" >&2 2>/dev/null
  die "the FastAPI service did not start"
fi

# ==== KERVAN ==================================================================
# start_kervan_and_deploy: starts `kervan server` on a config written to
# $WORK, deploys $WORK/model.json as endpoint "bench" and waits until
# POST $KERVAN_URL/v1/endpoints/bench/predict answers. Sets KERVAN_PID,
# KERVAN_URL (base URL, no path) and AUTH_HEADER.
start_kervan() {
  mkdir -p "$WORK/kervan"
  cat >"$WORK/kervan.yaml" <<EOF
# written by bench/serving_bench.sh
data_dir: $WORK/kervan
log:
  level: warn
  events: false
server:
  address: 127.0.0.1
  port: 0            # any free port; the bound one goes to --ready-file
  io_threads: $IO_THREADS
  access_log: false
EOF
  local extra=() kv
  for kv in $KERVAN_SET; do extra+=(--set "$kv"); done
  "$KERVAN_BIN" server --config "$WORK/kervan.yaml" --ready-file "$WORK/kervan/port" \
    "${extra[@]}" >"$WORK/kervan.log" 2>&1 &
  KERVAN_PID=$!
  local i
  for ((i = 0; i < 200; i++)); do
    [[ -s "$WORK/kervan/port" ]] && break
    kill -0 "$KERVAN_PID" 2>/dev/null || { tail -n 20 "$WORK/kervan.log" >&2; die "kervan exited during start-up"; }
    sleep 0.1
  done
  [[ -s "$WORK/kervan/port" ]] || die "kervan wrote no ready file within 20 s"
  KERVAN_URL="http://127.0.0.1:$(tr -d '[:space:]' <"$WORK/kervan/port")"
  # Every API route needs a token: the bootstrap admin's (auth cannot be
  # turned off). FastAPI gets the same header.
  KERVAN_TOKEN=$(tr -d '[:space:]' <"$WORK/kervan/admin.token")
  AUTH_HEADER="Authorization: Bearer $KERVAN_TOKEN"
}

deploy_model() {
  # Register the file as a version of model "bench" (no gate: DeploymentReady
  # at once) and deploy it; the first deployment of an endpoint goes live
  # without a rollout.
  local k=(env KERVAN_URL="$KERVAN_URL" KERVAN_TOKEN="$KERVAN_TOKEN" "$KERVAN_BIN")
  { "${k[@]}" model create "$ENDPOINT" >&2 &&
    "${k[@]}" version register "$ENDPOINT" --artifact-uri "file://$WORK/model.json" >&2 &&
    "${k[@]}" deploy "$ENDPOINT" --version 1 --endpoint "$ENDPOINT" --sample-percent "$SAMPLE_PERCENT" >&2; } ||
    { tail -n 20 "$WORK/kervan.log" >&2; die "deploying the model on kervan failed"; }
}

start_kervan_and_deploy() {
  start_kervan
  deploy_model
  wait_predict "$KERVAN_URL" kervan "$KERVAN_PID" "$WORK/kervan.log"
}
# ==============================================================================

SERVICES=(fastapi)
if [[ "$ONLY_BASELINE" != 1 ]]; then
  start_kervan_and_deploy
  SERVICES=(kervan fastapi)
fi
declare -A URL=([fastapi]=$FASTAPI_URL)
if [[ "$ONLY_BASELINE" != 1 ]]; then URL[kervan]=$KERVAN_URL; fi

# --- same answer -------------------------------------------------------------------
declare -A PRED
for s in "${SERVICES[@]}"; do
  resp=$(predict_once "${URL[$s]}") || die "$s: POST $PREDICT_PATH failed"
  jq -e '(.predictions | type == "array" and length == 1) and (.predictions[0] | type == "number")' \
    <<<"$resp" >/dev/null || die "$s: unexpected answer: $resp"
  PRED[$s]=$(jq -r '.predictions[0]' <<<"$resp")
  awk -v a="${PRED[$s]}" -v b="$REF_PRED" -v t="$TOLERANCE" \
    'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t) }' ||
    die "$s predicts ${PRED[$s]} for the row, the Booster $REF_PRED (tolerance $TOLERANCE)"
done
if [[ "$ONLY_BASELINE" != 1 ]]; then
  awk -v a="${PRED[kervan]}" -v b="${PRED[fastapi]}" -v t="$TOLERANCE" \
    'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t) }' ||
    die "kervan predicts ${PRED[kervan]}, FastAPI ${PRED[fastapi]} (tolerance $TOLERANCE)"
fi
log "predictions for the row agree (Booster $REF_PRED):$(for s in "${SERVICES[@]}"; do printf ' %s %s' "$s" "${PRED[$s]}"; done)"

CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
log "$(date -u +%FT%TZ) on $(nproc) CPUs ($CPU_MODEL)"
log "uvicorn --workers $UVICORN_WORKERS (loop $LOOP_IMPL, http $HTTP_IMPL, $FASTAPI_HANDLER route);" \
  "wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION --latency on the same machine (competes for the CPUs)"

# --- wrk -----------------------------------------------------------------------------
to_us() {  # wrk latency ("812.00us", "1.20ms", "1.02s", "1.50m") -> microseconds
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n *= 1; else if (v ~ /ms$/) n *= 1e3; else if (v ~ /s$/) n *= 1e6
    else if (v ~ /m$/) n *= 6e7; else if (v ~ /h$/) n *= 3.6e9; else exit 1
    printf "%.0f", n }'
}

dur_s=$(awk -v d="$DURATION" 'BEGIN { n = d + 0; if (d ~ /m$/) n *= 60; else if (d ~ /h$/) n *= 3600; print int(n) }')

# Runs wrk against base url $1, saves its output in $2, prints "rps p50_us p99_us".
run_wrk() {
  timeout --foreground $((dur_s + 30)) wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
    -H "$AUTH_HEADER" -H "$JSON_HEADER" -s "$ROOT/bench/lua/post_json.lua" "$1" -- "$PREDICT_PATH" "$BODY" \
    >"$2" 2>&1 || { cat "$2" >&2; die "wrk failed against $1"; }
  # An error answer is cheaper than a prediction: any makes the round void.
  if grep -q 'Non-2xx' "$2"; then
    cat "$2" >&2
    die "non-2xx answers from $1"
  fi
  if grep -q 'Socket errors' "$2"; then
    log "warning: $(grep 'Socket errors' "$2" | tr -s ' ') ($1)"
  fi
  local rps p50 p99
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$2")
  p50=$(awk '$1 == "50%" { print $2 }' "$2")
  p99=$(awk '$1 == "99%" { print $2 }' "$2")
  [[ -n "$rps" && -n "$p50" && -n "$p99" ]] || { cat "$2" >&2; die "cannot parse wrk output"; }
  p50=$(to_us "$p50") || die "unknown latency unit in $2"
  p99=$(to_us "$p99") || die "unknown latency unit in $2"
  echo "$rps $p50 $p99"
}

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# Warm-up: connections, caches, CPU frequency, and every uvicorn worker up.
for s in "${SERVICES[@]}"; do
  DURATION=3s run_wrk "${URL[$s]}" "$WORK/warm-$s.txt" >/dev/null
done

for s in "${SERVICES[@]}"; do : >"$WORK/$s.res"; done
for ((r = 1; r <= ROUNDS; r++)); do
  order=("${SERVICES[@]}")
  if ((r % 2 == 0 && ${#SERVICES[@]} == 2)); then order=("${SERVICES[1]}" "${SERVICES[0]}"); fi
  line="round $r:"
  for s in "${order[@]}"; do
    res=$(run_wrk "${URL[$s]}" "$WORK/wrk-$s-$r.txt")
    echo "$res" >>"$WORK/$s.res"
    read -r rps p50 p99 <<<"$res"
    line+=$(printf ' %s %.0f req/s (p50 %s us, p99 %s us) |' "$s" "$rps" "$p50" "$p99")
  done
  log "${line% |}"
done

col() { awk -v c="$1" '{ print $c }' "$2" | median; }
declare -A RPS P50 P99
for s in "${SERVICES[@]}"; do
  RPS[$s]=$(col 1 "$WORK/$s.res")
  P50[$s]=$(col 2 "$WORK/$s.res")
  P99[$s]=$(col 3 "$WORK/$s.res")
done
RPS_RATIO=null
P99_RATIO=null
if [[ "$ONLY_BASELINE" != 1 ]]; then
  RPS_RATIO=$(awk -v k="${RPS[kervan]}" -v f="${RPS[fastapi]}" 'BEGIN { printf "%.2f", k / f }')
  P99_RATIO=$(awk -v k="${P99[kervan]}" -v f="${P99[fastapi]}" 'BEGIN { printf "%.2f", f / k }')
fi

# --- report ----------------------------------------------------------------------------
RESULTS_FILE=$RESULTS_DIR/serving_bench.json
service_json() {  # name -> {"req_per_s", "p50_us", "p99_us", "prediction", "rounds": [...]}
  jq -n --argjson rps "${RPS[$1]}" --argjson p50 "${P50[$1]}" --argjson p99 "${P99[$1]}" \
    --argjson pred "${PRED[$1]}" --rawfile rounds "$WORK/$1.res" '
    { req_per_s: $rps, p50_us: $p50, p99_us: $p99, prediction: $pred,
      rounds: [ $rounds | split("\n")[] | select(length > 0) | split(" ") | map(tonumber)
                | { req_per_s: .[0], p50_us: .[1], p99_us: .[2] } ] }'
}
services_json='{}'
for s in "${SERVICES[@]}"; do
  services_json=$(jq -c --arg s "$s" --argjson v "$(service_json "$s")" '. + {($s): $v}' <<<"$services_json")
done
jq -n \
  --arg date "$(date -u +%FT%TZ)" --argjson cpus "$(nproc)" --arg cpu "$CPU_MODEL" \
  --arg duration "$DURATION" --argjson connections "$CONNECTIONS" --argjson wrk_threads "$WRK_THREADS" \
  --argjson rounds "$ROUNDS" --argjson workers "$UVICORN_WORKERS" --arg loop "$LOOP_IMPL" \
  --arg http "$HTTP_IMPL" --arg handler "$FASTAPI_HANDLER" --argjson io_threads "$IO_THREADS" \
  --argjson only_baseline "$([[ "$ONLY_BASELINE" == 1 ]] && echo true || echo false)" \
  --argjson versions "$VERSIONS" --argjson ref "$REF_PRED" --argjson row "$BODY" \
  --argjson services "$services_json" --argjson rps_ratio "$RPS_RATIO" --argjson p99_ratio "$P99_RATIO" '
  { date: $date, cpus: $cpus, cpu_model: $cpu, only_baseline: $only_baseline,
    wrk: { duration: $duration, connections: $connections, threads: $wrk_threads, rounds: $rounds,
           path: "'"$PREDICT_PATH"'", body: $row },
    model: { kind: "xgboost binary:logistic, 100 trees, max_depth 4, 30 features (sklearn breast cancer)",
             booster_prediction: $ref },
    fastapi: { uvicorn_workers: $workers, loop: $loop, http: $http, handler: $handler, versions: $versions },
    kervan: { io_threads: $io_threads },
    results: $services,
    ratios: { kervan_over_fastapi_req_per_s: $rps_ratio, fastapi_p99_over_kervan_p99: $p99_ratio } }' \
  >"$RESULTS_FILE"

echo "### Online inference: Kervan vs FastAPI + uvicorn + xgboost"
echo
echo "$(date -u +%F), $(nproc) CPUs ($CPU_MODEL); one-row POST $PREDICT_PATH;" \
  "wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION on the same machine; median of $ROUNDS rounds."
echo "FastAPI $(jq -r .fastapi <<<"$VERSIONS"), uvicorn $(jq -r .uvicorn <<<"$VERSIONS")" \
  "--workers $UVICORN_WORKERS (loop $LOOP_IMPL, http $HTTP_IMPL, $FASTAPI_HANDLER route)," \
  "xgboost $(jq -r .xgboost <<<"$VERSIONS"); kervan io_threads=$IO_THREADS."
echo
echo "| service | req/s | p50 (us) | p99 (us) |"
echo "|---|---:|---:|---:|"
for s in "${SERVICES[@]}"; do
  name=$s
  [[ "$s" == fastapi ]] && name="FastAPI + uvicorn ($UVICORN_WORKERS workers)"
  [[ "$s" == kervan ]] && name="Kervan"
  printf '| %s | %.0f | %.0f | %.0f |\n' "$name" "${RPS[$s]}" "${P50[$s]}" "${P99[$s]}"
done
if [[ "$ONLY_BASELINE" != 1 ]]; then
  echo
  echo "Throughput kervan/fastapi: **${RPS_RATIO}x**; p99 fastapi/kervan: **${P99_RATIO}x**."
fi
echo
echo "Results: $RESULTS_FILE"
