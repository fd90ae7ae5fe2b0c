# Shared by the load-generator scripts (bench/*_bench.sh); source it.

# stop_pid PID NAME: SIGTERM, then SIGKILL if it is still alive after 10 s;
# reaps it. Says on stderr when it had to kill.
stop_pid() {
  local pid=$1 i
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$(basename "$0" .sh): $2 (pid $pid) ignored SIGTERM; killing" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
