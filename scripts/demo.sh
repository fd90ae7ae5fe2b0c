#!/usr/bin/env bash
# The main job (README command 1): builds Kervan, starts a server on the
# embedded defaults (SQLite in a temporary data dir), walks a model version
# through its lifecycle with the CLI — legal transitions, a refused illegal
# one, a manual intervention with a reason — then prints the timeline read
# back from the server's event log and verifies the audit hash chain.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
# An expected failure: show it, and stop the demo if it unexpectedly succeeds.
refused() {
  printf '$ %s\n' "$*"
  if "$@"; then echo "demo: expected this to be refused" >&2; exit 1; fi
}

say "Installing dependencies and building"
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target kervan
KERVAN="$ROOT/build/app/kervan"
kervan() { "$KERVAN" "$@"; }

DATA=$(mktemp -d /tmp/kervan-demo.XXXXXX)
SERVER_PID=""
stop_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
  fi
}
trap 'stop_server; rm -rf "$DATA"' EXIT

say "Starting kervan server (config/dev.yaml: SQLite in $DATA)"
"$KERVAN" server --config config/dev.yaml --data-dir "$DATA" --port 0 \
  --ready-file "$DATA/port" 2>"$DATA/server.log" &
SERVER_PID=$!
for _ in $(seq 1 100); do [[ -s "$DATA/port" ]] && break; sleep 0.1; done
if [[ ! -s "$DATA/port" ]]; then
  echo "demo: server did not start; its log:" >&2
  tail -n 20 "$DATA/server.log" >&2
  exit 1
fi
export KERVAN_URL="http://127.0.0.1:$(cat "$DATA/port")"
echo "server up at $KERVAN_URL (JSON logs in $DATA/server.log)"
run curl -sf "$KERVAN_URL/readyz"; echo

say "The model_version lifecycle, as declared"
run kervan lifecycles model_version

say "Registering two model versions (actor: the training pipeline)"
export KERVAN_ACTOR=pipeline:credit-train
run kervan entity create model_version --id credit-risk-v1 \
  --data '{"run_id":"run-0193","metrics":{"auc":0.91}}'
run kervan entity create model_version --id credit-risk-v2 \
  --data '{"run_id":"run-0194","metrics":{"auc":0.83}}'

say "Validation: v1 passes its checks, v2 fails the AUC gate"
export KERVAN_ACTOR=system:registry
run kervan entity transition model_version credit-risk-v1 validate
run kervan entity transition model_version credit-risk-v1 pass \
  --data '{"checks":{"metrics.auc >= 0.85":true},"seen":{"metrics.auc":0.91}}'
run kervan entity transition model_version credit-risk-v2 validate
run kervan entity transition model_version credit-risk-v2 fail \
  --data '{"checks":{"metrics.auc >= 0.85":false},"seen":{"metrics.auc":0.83}}'

say "An illegal transition is refused with the allowed ones listed (HTTP 409)"
refused kervan entity transition model_version credit-risk-v1 validate

say "A manual intervention without a reason is refused (HTTP 400)"
export KERVAN_ACTOR=alice
refused kervan entity transition model_version credit-risk-v2 approve

say "... and accepted with one; the reason is part of the audit trail"
run kervan entity transition model_version credit-risk-v2 approve \
  --reason "Risk committee override: AUC 0.83 acceptable for the pilot segment (ticket RISK-112)"

run kervan entity list model_version

say "Timeline, read back from the server's event log"
run kervan events list

say "Audit: recompute the hash chain"
run kervan audit verify

say "Stopping the server (SIGTERM: in-flight requests finish, nothing acknowledged is lost)"
stop_server
grep -o '"message":"[^"]*stopped[^"]*"' "$DATA/server.log" | tail -n 1
echo
echo "demo complete."
