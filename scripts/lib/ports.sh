# Sourced by scripts that start throwaway servers on loopback.
# Requires the caller to define die().

port_in_use() {
  if command -v ss >/dev/null 2>&1; then
    [[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

# Prints a TCP port on 127.0.0.1 that nothing listens on, from a random base.
free_port() {
  local base=$((20000 + RANDOM % 30000)) p i
  for ((i = 0; i < 200; i++)); do
    p=$((base + i))
    if ! port_in_use "$p"; then
      echo "$p"
      return
    fi
  done
  die "no free TCP port found in $base..$((base + 199))"
}
