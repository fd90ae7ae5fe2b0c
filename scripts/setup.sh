#!/usr/bin/env bash
# Installs every build, test and benchmark dependency from Debian packages.
# Idempotent: a second run installs nothing new. Run as root (or via sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git lld
  libboost-dev libboost-system-dev libboost-program-options-dev
  nlohmann-json3-dev libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev
  libsqlite3-dev sqlite3 libpq-dev libssl-dev libpugixml-dev libsimdjson-dev libjemalloc-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  postgresql prometheus prometheus-alertmanager wrk nginx-light curl jq clang-format procps
  slurm-wlm munge
  python3-sklearn python3-scipy python3-xgboost libxgboost-dev python3-fastapi python3-uvicorn
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm run the test S3 server (scripts/s3.sh). Any working install
# will do (e.g. one from NodeSource); Debian's packages only when missing.
for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    [[ $tool == node ]] && missing+=(nodejs) || missing+=(npm)
  fi
done
# kubectl renders and reads the Kubernetes executor's manifests in tests. Any
# kubectl will do (Debian's kubernetes-client conflicts with a newer one
# installed from Kubernetes' own packages, so only when none is on PATH).
command -v kubectl >/dev/null || missing+=(kubernetes-client)

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts services on install where it can; we start our own throwaway
# servers on loopback, so stop any that came up.
for svc in nginx postgresql prometheus slurmctld slurmd munge; do
  command -v service >/dev/null && $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
echo "setup: done"
