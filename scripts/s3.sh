#!/usr/bin/env bash
# A throwaway S3-compatible server (s3rver) for tests, all inside one dir.
#
#   scripts/s3.sh start DIR      start (installing s3rver first if needed); prints the endpoint
#   scripts/s3.sh stop DIR       stop; safe to repeat
#   scripts/s3.sh endpoint DIR   prints the endpoint of the server running in DIR
#
# The server listens on 127.0.0.1 only, on a free port picked at start, and
# has one bucket, "kervan-test". Credentials: access key S3RVER, secret S3RVER
# (s3rver checks the access key but not the signature; the signing code is
# unit-tested against AWS's published vectors instead).
# DIR/endpoint holds "http://127.0.0.1:PORT"; objects live under DIR/data.
#
# s3rver is the npm package pinned in scripts/s3rver/package-lock.json; it is
# installed with `npm ci` into scripts/s3rver/node_modules (git-ignored) the
# first time. Needs node and npm (scripts/setup.sh installs them if missing).
set -euo pipefail

BUCKET=kervan-test
ACCESS_KEY=S3RVER
SECRET_KEY=S3RVER

# The log whose tail explains a failure of the step now running, if any.
ERR_LOG=""

die() {
  echo "s3.sh: error: $*" >&2
  if [[ -n "$ERR_LOG" && -s "$ERR_LOG" ]]; then
    echo "s3.sh: --- last lines of $ERR_LOG ---" >&2
    tail -n 25 "$ERR_LOG" >&2 || true
  fi
  exit 1
}

usage() {
  echo "usage: scripts/s3.sh start|stop|endpoint DIR" >&2
  exit 2
}

(($# == 2)) || usage
CMD=$1
[[ -n "$2" ]] || usage
DIR=$(realpath -m -- "$2")
PKG=$(cd "$(dirname "${BASH_SOURCE[0]}")/s3rver" && pwd)
BIN=$PKG/node_modules/s3rver/bin/s3rver.js

# shellcheck source=lib/ports.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/ports.sh"

running() {
  [[ -s "$DIR/pid" ]] && kill -0 "$(cat "$DIR/pid")" 2>/dev/null
}

print_endpoint() {
  [[ -s "$DIR/endpoint" ]] || die "$DIR/endpoint is missing"
  cat "$DIR/endpoint"
}

install() {
  command -v node >/dev/null || die "node not found (bash scripts/setup.sh installs it)"
  command -v npm >/dev/null || die "npm not found (bash scripts/setup.sh installs it)"
  if [[ -f "$BIN" ]]; then
    return
  fi
  echo "s3.sh: installing s3rver (npm ci in $PKG)" >&2
  mkdir -p "$DIR"
  ERR_LOG=$DIR/npm.log
  (cd "$PKG" && npm ci --no-audit --no-fund >"$ERR_LOG" 2>&1) || die "npm ci failed"
  [[ -f "$BIN" ]] || die "npm ci did not install $BIN"
  ERR_LOG=""
}

# Whether the bucket answers a signed ListObjectsV2 (curl signs with SigV4).
bucket_ready() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
    --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
    "http://127.0.0.1:$1/$BUCKET?list-type=2" 2>/dev/null) || return 1
  [[ "$code" == 200 ]]
}

start() {
  if running; then
    print_endpoint
    return
  fi
  install
  command -v curl >/dev/null || die "curl not found (bash scripts/setup.sh installs it)"
  mkdir -p "$DIR/data" || die "cannot create $DIR"
  rm -f "$DIR/pid" "$DIR/endpoint"
  local port attempt i pid
  ERR_LOG=$DIR/log
  for attempt in 1 2 3; do
    port=$(free_port)
    # setsid: the server outlives this script and ignores the caller's
    # terminal signals; `stop` ends it by its pid.
    setsid node "$BIN" -d "$DIR/data" -a 127.0.0.1 -p "$port" \
      --configure-bucket "$BUCKET" </dev/null >"$DIR/log" 2>&1 &
    pid=$!
    echo "$pid" >"$DIR/pid"
    for ((i = 0; i < 150; i++)); do
      if bucket_ready "$port"; then
        printf 'http://127.0.0.1:%s\n' "$port" >"$DIR/endpoint"
        echo "s3.sh: s3rver running in $DIR on 127.0.0.1:$port (bucket $BUCKET)" >&2
        print_endpoint
        return
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$DIR/pid"
    # Lost a race for the port: try another one; any other failure is fatal.
    if ((attempt == 3)) || ! grep -q 'EADDRINUSE' "$DIR/log" 2>/dev/null; then
      die "s3rver did not become ready in $DIR"
    fi
  done
}

stop() {
  if ! running; then
    echo "s3.sh: not running in $DIR" >&2
    rm -f "$DIR/pid"
    return
  fi
  local pid i
  pid=$(cat "$DIR/pid")
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/pid"
  echo "s3.sh: stopped $DIR" >&2
}

case "$CMD" in
  start) start ;;
  stop) stop ;;
  endpoint)
    running || die "no server running in $DIR (scripts/s3.sh start $DIR)"
    print_endpoint
    ;;
  *) usage ;;
esac
