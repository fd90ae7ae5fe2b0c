#!/usr/bin/env bash
# The published npm MLflow client (tests/clients/mlflow-js, package `mlflow`
# pinned in its package-lock.json) against a real Kervan server:
#
#   starts the already built `kervan server` (build/app/kervan, or KERVAN_BIN)
#   on a free loopback port with a fresh temporary data dir (SQLite), reads
#   the bootstrap admin token, installs the client with `npm ci` if its
#   node_modules is missing, runs `node --test` with MLFLOW_TRACKING_URI and
#   MLFLOW_TRACKING_TOKEN set, stops the server and exits non-zero when any
#   of that fails. Builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CLIENT_DIR=$ROOT/tests/clients/mlflow-js

die() {
  echo "test_mlflow_client: $*" >&2
  exit 1
}

KERVAN=${KERVAN_BIN:-$ROOT/build/app/kervan}
[[ -x "$KERVAN" ]] || die "no kervan binary at $KERVAN (build it first: cmake --build build --target kervan)"
command -v node >/dev/null || die "node not found (bash scripts/setup.sh installs it)"
command -v npm >/dev/null || die "npm not found (bash scripts/setup.sh installs it)"

DATA=$(mktemp -d /tmp/kervan-mlflow-js.XXXXXX)
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
  fi
  rm -rf "$DATA"
}
trap cleanup EXIT

# The server's configuration comes from its defaults only: the caller's
# KERVAN_* variables (tokens, test DSNs) are not passed on.
unset_args=()
while IFS= read -r name; do
  unset_args+=(-u "$name")
done < <(env | sed -n 's/^\(KERVAN_[A-Za-z0-9_]*\)=.*/\1/p')

env "${unset_args[@]}" "$KERVAN" server --data-dir "$DATA" --port 0 \
  --ready-file "$DATA/port" 2>"$DATA/server.log" &
SERVER_PID=$!
for _ in $(seq 1 150); do
  [[ -s "$DATA/port" ]] && break
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
if [[ ! -s "$DATA/port" ]]; then
  echo "test_mlflow_client: the server did not start; its log:" >&2
  tail -n 20 "$DATA/server.log" >&2
  exit 1
fi
[[ -s "$DATA/admin.token" ]] || die "the server wrote no $DATA/admin.token"
URL="http://127.0.0.1:$(cat "$DATA/port")"
echo "kervan server up at $URL (log: $DATA/server.log)"

if [[ ! -d "$CLIENT_DIR/node_modules" ]]; then
  echo "installing the npm client (npm ci in $CLIENT_DIR)"
  (cd "$CLIENT_DIR" && npm ci --no-audit --no-fund)
fi

status=0
(cd "$CLIENT_DIR" &&
  MLFLOW_TRACKING_URI="$URL" MLFLOW_TRACKING_TOKEN="$(head -n 1 "$DATA/admin.token")" \
    node --test) || status=$?
if ((status != 0)); then
  echo "test_mlflow_client: FAILED (node --test exit $status); the server log's tail:" >&2
  tail -n 20 "$DATA/server.log" >&2
fi
exit "$status"
