#!/usr/bin/env bash
# Cross-machine figures of a two-member berth cluster (libvirt, TCG, one VDE
# segment), as root after scripts/setup.sh:
#  - container-to-container TCP throughput (MiB/s, 64 MiB through busybox nc) and
#    round-trip latency (median of busybox ping) across machines on an overlay
#    network, against the same pair on one machine's bridge network
#  - the time from `docker run` on one machine until its name resolves on the other
# Usage: bench/cluster/bench.sh [RUNS]   (default 5). Prints one figure per line.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${BERTH_BUILD_DIR:-$here/build}
berth=${BERTH_BINARY:-$build/cli/berth}
runs=${1:-5}
for f in "$berth" "$build/agent/berth-agent" "$here/image/out/vmlinuz"; do
  [ -e "$f" ] || { echo "bench: $f is missing (build berth, berth-agent and image/build.sh first)" >&2; exit 2; }
done
for tool in docker vde_switch etcd; do
  command -v "$tool" >/dev/null || { echo "bench: needs $tool" >&2; exit 2; }
done
pgrep -x virtlogd >/dev/null || virtlogd -d
pgrep -x libvirtd >/dev/null || libvirtd -d

work=$(mktemp -d /tmp/berth-cluster-bench-XXXXXX)
export BERTH_STORAGE_PATH="$work/store" HOME="$work/home" DOCKER_CONFIG="$work/home/.docker"
unset DOCKER_HOST DOCKER_TLS_VERIFY DOCKER_CERT_PATH DOCKER_CONTEXT
mkdir -p "$HOME"
made=()
cleanup() {
  for m in "${made[@]}"; do "$berth" rm -f -y "$m" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "n/a"; else print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
on() { local m=$1; shift; (eval "$("$berth" env --shell bash "$m")"; docker "$@"); }

"$here/scripts/make-test-image.sh" "$work/busybox.tar" busybox:latest >/dev/null
for m in bca bcb; do
  t0=$(now_ms)
  "$berth" create -q -d libvirt --libvirt-no-share --no-forward --cluster benchlab "$m" >/dev/null
  made+=("$m")
  echo "berth create --cluster benchlab $m: $(( $(now_ms) - t0 )) ms"
  on "$m" load -q -i "$work/busybox.tar" >/dev/null
done
on bca network create -d overlay --subnet 10.77.0.0/24 benchnet >/dev/null
on bca network create benchbr >/dev/null

# throughput and latency from a client container on $1 (network $2) to the server container $3
pair() {
  local client=$1 net=$2 target=$3 label=$4
  local mib=64 ms t0 base
  # busybox's date has no %N: time on the host, less a container that only starts.
  t0=$(now_ms); on "$client" run --rm --network "$net" busybox:latest true >/dev/null; base=$(( $(now_ms) - t0 ))
  t0=$(now_ms)
  on "$client" run --rm --network "$net" busybox:latest sh -c \
    "dd if=/dev/zero bs=1M count=$mib 2>/dev/null | nc $target 5001" >/dev/null
  ms=$(( $(now_ms) - t0 - base ))
  echo "$label TCP throughput: $(awk -v m="$mib" -v t="$ms" 'BEGIN {printf "%.1f", m / (t / 1000)}') MiB/s ($mib MiB in $ms ms)"
  local rtt
  rtt=$(on "$client" run --rm --network "$net" busybox:latest ping -c "$((runs * 4))" -i 0.2 "$target" |
    awk -F'time=' '/time=/ {split($2, a, " "); print a[1]}' | median)
  echo "$label round trip (ping, median of $((runs * 4))): $rtt ms"
}
sink='while true; do nc -l -p 5001 >/dev/null; done'
on bca run -d --name srv-overlay --network benchnet busybox:latest sh -c "$sink" >/dev/null
on bca run -d --name srv-bridge --network benchbr busybox:latest sh -c "$sink" >/dev/null
# the server's name must resolve on bcb before the client there dials it
on bcb run --rm --network benchnet busybox:latest sh -c \
  "i=0; until nslookup srv-overlay >/dev/null 2>&1; do i=\$((i+1)); [ \$i -gt 300 ] && exit 1; sleep 0.2; done"
pair bcb benchnet srv-overlay "overlay, across machines"
pair bca benchbr srv-bridge "bridge, one machine"

# docker run on bca until bcb's kernel has the container's neighbour entry (the
# watch's work), and until its name resolves in a new container on bcb (which
# adds that container's start and busybox nslookup's retries)
entry=(); times=()
for i in $(seq "$runs"); do
  t0=$(now_ms)
  on bca run -d --name "resolve$i" --network benchnet busybox:latest sleep 600 >/dev/null
  ip=$(on bca inspect -f '{{(index .NetworkSettings.Networks "benchnet").IPAddress}}' "resolve$i")
  for _ in $(seq 300); do
    "$berth" ssh bcb ip neigh show | grep -q "^$ip " && break
    sleep 0.05
  done
  entry+=($(( $(now_ms) - t0 )))
  on bcb run --rm --network benchnet busybox:latest sh -c \
    "i=0; while ! nslookup resolve$i >/dev/null 2>&1; do i=\$((i+1)); [ \$i -gt 300 ] && exit 1; sleep 0.1; done"
  times+=($(( $(now_ms) - t0 )))
done
echo "docker run on one member until the other member's kernel has its neighbour entry (median of $runs): $(printf '%s\n' "${entry[@]}" | median) ms"
echo "docker run on one member until its name resolves on another (run + a resolving container, median of $runs): $(printf '%s\n' "${times[@]}" | median) ms"
