#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and benchmarks, all inside one dir.
#
#   scripts/pg.sh start DIR   initdb (first time) and start; prints the libpq DSN
#   scripts/pg.sh stop DIR    fast shutdown; safe to repeat
#   scripts/pg.sh dsn DIR     prints the DSN of the server running in DIR
#
# The server listens on 127.0.0.1 only, on a free port picked at start, with
# scram-sha-256 and a random password for superuser "kervan"; its unix socket
# lives in DIR. fsync stays on: benchmarks measure real durability.
# DIR/dsn holds "host=127.0.0.1 port=P user=kervan password=... dbname=postgres".
#
# Run as root (the server then runs as user "postgres", since initdb refuses
# root) or as any other user (the server runs as that user). Needs the Debian
# package postgresql; PG_BIN overrides where its binaries are found.
set -euo pipefail

# The log whose tail explains a failure of the step now running, if any.
ERR_LOG=""

die() {
  echo "pg.sh: error: $*" >&2
  if [[ -n "$ERR_LOG" && -s "$ERR_LOG" ]]; then
    echo "pg.sh: --- last lines of $ERR_LOG ---" >&2
    tail -n 25 "$ERR_LOG" >&2 || true
  fi
  exit 1
}

usage() {
  echo "usage: scripts/pg.sh start|stop|dsn DIR" >&2
  exit 2
}

(($# == 2)) || usage
CMD=$1
[[ -n "$2" ]] || usage
DIR=$(realpath -m -- "$2")
DATA=$DIR/data

find_bin() {
  if [[ -n "${PG_BIN:-}" ]]; then
    [[ -x "$PG_BIN/pg_ctl" ]] || die "PG_BIN=$PG_BIN has no pg_ctl"
    echo "$PG_BIN"
    return
  fi
  # Debian installs each major version under /usr/lib/postgresql/<N>/bin; take the newest.
  local d
  d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  if [[ -x "$d/initdb" ]]; then
    echo "$d"
    return
  fi
  d=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
  [[ -x "$d/initdb" ]] || die "no PostgreSQL server binaries found (apt-get install postgresql)"
  echo "$d"
}

# Runs a command as the cluster's owner.
as_owner() {
  if ((EUID == 0)); then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

running() {
  [[ -f "$DATA/postmaster.pid" ]] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

# shellcheck source=lib/ports.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/ports.sh"

print_dsn() {
  [[ -s "$DIR/dsn" ]] || die "$DIR/dsn is missing"
  cat "$DIR/dsn"
}

start() {
  if running; then
    print_dsn
    return
  fi
  [[ -x "$BIN/postgres" ]] || die "$BIN/postgres not found"
  if ((EUID == 0)); then
    id postgres >/dev/null 2>&1 || die "user postgres does not exist (apt-get install postgresql)"
    command -v runuser >/dev/null || die "runuser not found (package util-linux)"
  fi
  mkdir -p "$DIR" || die "cannot create $DIR"
  if ((EUID == 0)); then
    chown postgres:postgres "$DIR"
    chmod 0700 "$DIR"
    runuser -u postgres -- test -w "$DIR" -a -x "$DIR" ||
      die "user postgres cannot enter $DIR: a parent directory is not searchable by others" \
        "(e.g. /root is 0700); pick a DIR under /tmp"
  fi
  # Unix socket paths are limited to 107 bytes.
  ((${#DIR} + 18 <= 107)) || die "DIR path is too long for a unix socket ($DIR)"
  cd "$DIR"

  if [[ ! -f "$DATA/PG_VERSION" ]]; then
    rm -rf "$DATA" "$DIR/dsn" "$DIR/log" "$DIR/initdb.log"
    local password
    password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    (umask 077 && printf '%s\n' "$password" >"$DIR/pw")
    ((EUID != 0)) || chown postgres:postgres "$DIR/pw"
    ERR_LOG=$DIR/initdb.log
    # --no-sync only skips flushing the new cluster's files once (seconds on
    # a busy disk); the server still runs with fsync=on, so commits and
    # checkpoints are durable as in production.
    if ! as_owner "$BIN/initdb" -D "$DATA" -U kervan --pwfile="$DIR/pw" -A scram-sha-256 \
      -E UTF8 --locale=C --no-sync >"$DIR/initdb.log" 2>&1; then
      rm -f "$DIR/pw"
      die "initdb failed"
    fi
    rm -f "$DIR/pw"
    ((EUID != 0)) || chown postgres:postgres "$DIR/initdb.log"
    # Settings that survive a restart; the port is chosen at each start.
    cat >>"$DATA/postgresql.conf" <<EOF

# scripts/pg.sh: throwaway test cluster
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
fsync = on
synchronous_commit = on
max_connections = 200
EOF
    (umask 077 && printf '%s\n' "$password" >"$DIR/password")
  fi
  [[ -s "$DIR/password" ]] || die "$DIR/password is missing; remove $DIR and start again"

  local port attempt out
  ERR_LOG=$DIR/log
  for attempt in 1 2 3; do
    port=$(free_port)
    if out=$(as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DIR/log" -w -t 30 -o "-p $port" start 2>&1)
    then
      break
    fi
    # Lost a race for the port: try another one; any other failure is fatal.
    if ((attempt == 3)) || ! tail -n 5 "$DIR/log" 2>/dev/null |
      grep -qE 'could not bind|could not create listen socket|Address already in use'; then
      die "server did not start in $DIR: $(tail -n 2 <<<"$out" | tr '\n' ' ')"
    fi
  done

  local dsn
  dsn="host=127.0.0.1 port=$port user=kervan password=$(cat "$DIR/password") dbname=postgres"
  (umask 077 && printf '%s\n' "$dsn" >"$DIR/dsn")
  # End-to-end check: TCP, scram-sha-256 and the password in the DSN.
  PGCONNECT_TIMEOUT=5 "$BIN/psql" -X -At -d "$dsn" -c 'SELECT 1' >/dev/null 2>"$DIR/psql.err" ||
    die "server is up but the DSN does not work: $(cat "$DIR/psql.err")"
  rm -f "$DIR/psql.err"
  echo "pg.sh: PostgreSQL $(cat "$DATA/PG_VERSION") running in $DIR on 127.0.0.1:$port" >&2
  echo "$dsn"
}

stop() {
  if [[ ! -d "$DATA" ]]; then
    echo "pg.sh: no cluster in $DIR" >&2
    return
  fi
  if ! running; then
    echo "pg.sh: not running in $DIR" >&2
    return
  fi
  as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null || die "pg_ctl stop failed"
  echo "pg.sh: stopped $DIR" >&2
}

BIN=$(find_bin)
cd /  # runuser keeps the cwd, which user postgres may not be able to enter
case "$CMD" in
  start) start ;;
  stop) stop ;;
  dsn)
    running || die "no server running in $DIR (scripts/pg.sh start $DIR)"
    print_dsn
    ;;
  *) usage ;;
esac
