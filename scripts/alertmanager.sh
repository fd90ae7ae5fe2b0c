#!/usr/bin/env bash
# A throwaway Prometheus Alertmanager for tests and local runs, all inside one dir.
#
#   scripts/alertmanager.sh start DIR [WEBHOOK_URL]   start; prints the base URL
#   scripts/alertmanager.sh stop DIR                  stop by PID; safe to repeat
#   scripts/alertmanager.sh url DIR                   prints the base URL of the one running in DIR
#
# It listens on 127.0.0.1 only, on a free port picked at start, with
# clustering disabled; its state (silences, notification log) lives in DIR/data.
# The config (DIR/alertmanager.yml, rewritten at each start) groups by
# alertname with group_wait and group_interval of 1s, so a posted alert
# reaches the receiver about a second later; an alert posted without endsAt
# resolves after resolve_timeout (30s); repeat_interval is 1h, so a test sees
# one notification per change. With WEBHOOK_URL the receiver posts each group
# there (webhook_configs, send_resolved: true); without it, the receiver
# drops notifications (alerts are still kept and served by the API).
# DIR/url holds "http://127.0.0.1:PORT", DIR/pid the PID, DIR/log the log.
#
# Needs the Debian package prometheus-alertmanager; ALERTMANAGER_BIN
# overrides the binary.
set -euo pipefail

# The log whose tail explains a failure of the step now running, if any.
ERR_LOG=""

die() {
  echo "alertmanager.sh: error: $*" >&2
  if [[ -n "$ERR_LOG" && -s "$ERR_LOG" ]]; then
    echo "alertmanager.sh: --- last lines of $ERR_LOG ---" >&2
    tail -n 25 "$ERR_LOG" >&2 || true
  fi
  exit 1
}

usage() {
  echo "usage: scripts/alertmanager.sh start DIR [WEBHOOK_URL] | stop DIR | url DIR" >&2
  exit 2
}

(($# >= 2)) || usage
CMD=$1
[[ -n "$2" ]] || usage
DIR=$(realpath -m -- "$2")
WEBHOOK_URL=${3:-}
if [[ "$CMD" == start ]]; then
  (($# <= 3)) || usage
else
  (($# == 2)) || usage
fi

BIN=${ALERTMANAGER_BIN:-/usr/bin/prometheus-alertmanager}

# shellcheck source=lib/ports.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/ports.sh"

# The PID in DIR/pid, if that process is alive and is an Alertmanager.
running_pid() {
  local pid
  [[ -s "$DIR/pid" ]] || return 1
  pid=$(<"$DIR/pid")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # A recycled PID must not be mistaken for ours.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--storage.path=$DIR/data" || return 1
  echo "$pid"
}

print_url() {
  [[ -s "$DIR/url" ]] || die "$DIR/url is missing"
  cat "$DIR/url"
}

write_config() {
  local receiver
  if [[ -n "$WEBHOOK_URL" ]]; then
    [[ "$WEBHOOK_URL" =~ ^https?://[^[:space:]\'\"]+$ ]] ||
      die "WEBHOOK_URL must be an http(s) URL without quotes or spaces: $WEBHOOK_URL"
    receiver="    webhook_configs:
      - url: '$WEBHOOK_URL'
        send_resolved: true
        max_alerts: 0"
  else
    receiver="    # no WEBHOOK_URL given: notifications go nowhere"
  fi
  cat >"$DIR/alertmanager.yml" <<EOF
# Written by scripts/alertmanager.sh at each start.
global:
  resolve_timeout: 30s
route:
  receiver: kervan
  group_by: ['alertname']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: kervan
$receiver
EOF
  if [[ -x /usr/bin/amtool ]]; then
    /usr/bin/amtool check-config "$DIR/alertmanager.yml" >"$DIR/check.log" 2>&1 ||
      {
        ERR_LOG=$DIR/check.log
        die "the generated config does not pass amtool check-config"
      }
    rm -f "$DIR/check.log"
  fi
}

start() {
  if running_pid >/dev/null; then
    print_url
    return
  fi
  [[ -x "$BIN" ]] || die "$BIN not found (apt-get install prometheus-alertmanager)"
  command -v curl >/dev/null || die "curl not found"
  mkdir -p "$DIR/data" || die "cannot create $DIR"
  rm -f "$DIR/url" "$DIR/pid"
  write_config

  local port attempt pid i url
  ERR_LOG=$DIR/log
  for attempt in 1 2 3; do
    port=$(free_port)
    url="http://127.0.0.1:$port"
    : >"$DIR/log"
    "$BIN" \
      --config.file="$DIR/alertmanager.yml" \
      --storage.path="$DIR/data" \
      --web.listen-address="127.0.0.1:$port" \
      --web.external-url="$url" \
      --cluster.listen-address= \
      --log.level=info \
      </dev/null >>"$DIR/log" 2>&1 &
    pid=$!
    echo "$pid" >"$DIR/pid"
    for ((i = 0; i < 150; i++)); do  # 15 s
      if ! kill -0 "$pid" 2>/dev/null; then
        break
      fi
      if curl -fsS -o /dev/null --max-time 1 "$url/-/ready" 2>/dev/null; then
        echo "$url" >"$DIR/url"
        echo "alertmanager.sh: Alertmanager running in $DIR on 127.0.0.1:$port (pid $pid)" >&2
        echo "$url"
        return
      fi
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      rm -f "$DIR/pid"
      die "Alertmanager did not answer $url/-/ready within 15 s"
    fi
    wait "$pid" 2>/dev/null || true
    rm -f "$DIR/pid"
    # Lost a race for the port: try another one; any other failure is fatal.
    if ((attempt == 3)) || ! grep -qE 'address already in use' "$DIR/log"; then
      die "Alertmanager exited during start"
    fi
  done
}

stop() {
  local pid i
  if ! pid=$(running_pid); then
    rm -f "$DIR/pid"
    echo "alertmanager.sh: not running in $DIR" >&2
    return
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do  # 10 s, then SIGKILL
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.1
  fi
  rm -f "$DIR/pid"
  echo "alertmanager.sh: stopped $DIR" >&2
}

case "$CMD" in
  start) start ;;
  stop) stop ;;
  url)
    running_pid >/dev/null || die "no Alertmanager running in $DIR (scripts/alertmanager.sh start $DIR)"
    print_url
    ;;
  *) usage ;;
esac
