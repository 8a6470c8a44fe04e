#!/usr/bin/env bash
# Benchmarks of the berth CLI (as root, after scripts/setup.sh):
#  - time to create+provision a generic host (netns SSH host from scripts/testhost.sh)
#  - median wall time of `berth ls` over 50 stored machines, half of them unreachable
#  - median wall time of `berth env`, and of env, url, inspect, active, config and ls -q to 0.01 ms
# Prints one line per figure.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${BERTH_BUILD_DIR:-$here/build}
berth="$build/cli/berth"
work=$(mktemp -d /tmp/berth-bench-XXXXXX)
export BERTH_STORAGE_PATH="$work/store" HOME="$work/home" DOCKER_CONFIG="$work/docker"
mkdir -p "$HOME"
cleanup() {
  "$berth" rm -f bench0 >/dev/null 2>&1 || true
  "$here/scripts/testhost.sh" down bench >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
time_runs() {  # N command...
  local n=$1; shift
  for _ in $(seq "$n"); do
    local t0; t0=$(now_ms); "$@" >/dev/null; echo $(( $(now_ms) - t0 ))
  done | median
}

ssh-keygen -q -t ed25519 -N '' -f "$work/key"
ip=$("$here/scripts/testhost.sh" up bench 210 "$work/key.pub")

t0=$(now_ms)
"$berth" create -q -d generic --generic-ip-address "$ip" --generic-ssh-key "$work/key" bench0 >/dev/null
echo "create+provision a generic host: $(( $(now_ms) - t0 )) ms"

# 49 more records: 24 more on the same reachable host, 25 whose SSH port refuses.
src="$BERTH_STORAGE_PATH/machines/bench0"
for i in $(seq 1 49); do
  dst="$BERTH_STORAGE_PATH/machines/bench$i"
  mkdir -m 700 "$dst"
  cp -p "$src"/*.pem "$dst"/
  if (( i <= 24 )); then
    jq --arg n "bench$i" --arg d "$dst" '.name=$n | .tls.ca_cert=($d+"/ca.pem") | .tls.client_cert=($d+"/cert.pem") | .tls.client_key=($d+"/key.pem")' \
      "$src/config.json" > "$dst/config.json"
  else
    jq --arg n "bench$i" '.name=$n | .driver_state.ip_address="127.0.0.1" | .driver_state.ssh_port=1' \
      "$src/config.json" > "$dst/config.json"
  fi
  chmod 600 "$dst/config.json"
done
running=$("$berth" ls --filter state=Running -q | wc -l)
echo "berth ls: 50 machines ($running running, $((50 - running)) unreachable): median $(time_runs 11 "$berth" ls) ms over 11 runs"
echo "berth env: median $(time_runs 31 "$berth" env bench0) ms over 31 runs"
# The commands shell prompts and scripts run: the process's whole life, timed
# with bash's EPOCHREALTIME (no fork of date inside the interval).
fast_median() {  # N command...
  local n=$1; shift
  for _ in $(seq "$n"); do
    local t0=$EPOCHREALTIME; "$@" >/dev/null; local t1=$EPOCHREALTIME
    echo "$(( (${t1/./} - ${t0/./}) ))"
  done | median | awk '{printf "%.2f", $1 / 1000}'
}
export DOCKER_HOST=$("$berth" url bench0)
for cmd in "env bench0" "url bench0" "inspect bench0" "active" "config bench0" "ls -q"; do
  # shellcheck disable=SC2086
  echo "berth $cmd: median $(fast_median 101 "$berth" $cmd) ms over 101 runs"
done
