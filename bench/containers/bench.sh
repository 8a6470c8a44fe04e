#!/usr/bin/env bash
# Container figures in one berth-os VM (libvirt, TCG), as root after scripts/setup.sh:
#  - `docker run --rm busybox true` through berth-agent (timed on the host, CLI included) vs
#    `crun run` of a bundle with the same rootfs directly in the guest: medians and their ratio;
#    also `--network none`, to show what the bridge network costs, and the default seccomp
#    profile against `--security-opt seccomp=unconfined`
#  - `docker version` latency, the floor any docker command pays (CLI start, mTLS round trip)
#  - `docker ps -a` latency with 100 created (not started) containers
#  - docker cp throughput (MiB/s) of a 64 MiB file into and out of a running container
#  - pull throughput (MB/s) from a docker-registry on the host's 127.0.0.1 (the guest's 10.0.2.2)
#  - berth-agent's RSS at idle (VmRSS from /proc in the guest), fresh and after the runs above
#  - published ports on 127.0.0.1 through the port forwarder, native (QEMU hostfwd) and over SSH:
#    time to the first answer after `docker run`, a 32 MiB download, small GET latency
#  - `docker stats --no-stream` latency with 20 running containers, and what 20 health checks
#    every second cost berth-agent (its CPU time over 60 s from /proc/PID/stat, with and without)
# Usage: bench/containers/bench.sh [RUNS]   (default 15; BERTH_BUILD_DIR picks the build,
#        BERTH_AGENT_BINARY the agent to upload). Prints one figure per line.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${BERTH_BUILD_DIR:-$here/build}
berth=${BERTH_BINARY:-$build/cli/berth}
agent=${BERTH_AGENT_BINARY:-$build/agent/berth-agent}
runs=${1:-15}
name=bench-ctr
for f in "$berth" "$agent" "$here/image/out/vmlinuz"; do
  [ -e "$f" ] || { echo "bench: $f is missing (build berth, berth-agent and image/build.sh first)" >&2; exit 2; }
done
for tool in docker skopeo docker-registry jq curl; do
  command -v "$tool" >/dev/null || { echo "bench: needs $tool" >&2; exit 2; }
done
pgrep -x virtlogd >/dev/null || virtlogd -d
pgrep -x libvirtd >/dev/null || libvirtd -d

work=$(mktemp -d /tmp/berth-containers-bench-XXXXXX)
export BERTH_STORAGE_PATH="$work/store" HOME="$work/home" DOCKER_CONFIG="$work/home/.docker"
export BERTH_AGENT_BINARY="$agent"
unset DOCKER_HOST DOCKER_TLS_VERIFY DOCKER_CERT_PATH DOCKER_CONTEXT
mkdir -p "$HOME"
registry_pid=
created=
cleanup() {
  [ -n "$created" ] && "$berth" rm -f -y "$name" >/dev/null 2>&1 || true
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "n/a"; else print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
time_runs() {  # N command...: median wall ms
  local n=$1; shift
  for _ in $(seq "$n"); do
    local t0; t0=$(now_ms); "$@" >/dev/null; echo $(( $(now_ms) - t0 ))
  done | median
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
vm() { "$berth" ssh "$name" "$1"; }
rss_kb() { vm 'awk "/^VmRSS/ {print \$2}" /proc/$(cat /run/berth-agent.pid)/status'; }

# --- the registry and the images ---
port=$(free_port)
mkdir -p "$work/registry"
cat >"$work/registry/config.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$work/registry/config.yml" >"$work/registry/log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/v2/" && break; sleep 0.1; done
"$here/scripts/make-test-image.sh" "$work/busybox.tar" busybox:latest >/dev/null

# A bigger image for the pull figure: one layer of 32 MiB of random bytes (incompressible,
# so the bytes on the wire are about the layer's size).
big="$work/big"
mkdir -p "$big/src/data" "$big/archive"
head -c $((32 << 20)) /dev/urandom >"$big/src/data/random.bin"
tar --owner=0 --group=0 --numeric-owner -C "$big/src" -cf "$big/layer.tar" data
big_sha=$(sha256sum "$big/layer.tar" | cut -d' ' -f1)
mkdir -p "$big/archive/$big_sha" && mv "$big/layer.tar" "$big/archive/$big_sha/layer.tar"
jq -cn --arg d "sha256:$big_sha" '{architecture: "amd64", os: "linux", config: {Cmd: ["sh"]},
  rootfs: {type: "layers", diff_ids: [$d]}}' >"$big/config.json"
big_config=$(sha256sum "$big/config.json" | cut -d' ' -f1).json
mv "$big/config.json" "$big/archive/$big_config"
jq -cn --arg c "$big_config" --arg l "$big_sha/layer.tar" '[{Config: $c, RepoTags: ["big:latest"], Layers: [$l]}]' \
  >"$big/archive/manifest.json"
tar -C "$big/archive" -cf "$work/big.tar" manifest.json "$big_config" "$big_sha"
skopeo copy --quiet "docker-archive:$work/big.tar" "docker://127.0.0.1:$port/big:latest" --dest-tls-verify=false
wire_bytes=$(skopeo inspect --raw --tls-verify=false "docker://127.0.0.1:$port/big:latest" |
  jq '[.layers[].size] | add + 0')

# --- the VM ---
"$berth" create -q -d libvirt --libvirt-cpus 2 --engine-insecure-registry "10.0.2.2:$port" "$name" >/dev/null
created=1
eval "$("$berth" env --shell bash "$name")"
sleep 5
echo "berth-agent idle RSS, fresh: $(rss_kb) KiB"
docker load -q -i "$work/busybox.tar" >/dev/null

# --- docker run vs crun run ---
docker run --rm busybox true >/dev/null  # warm-up
run_ms=$(time_runs "$runs" docker run --rm busybox true)
run_none_ms=$(time_runs "$runs" docker run --rm --network none busybox true)
# What the default seccomp profile costs: runs with it and unconfined, interleaved
# so that drift in the VM hits both alike.
seccomp_on=() seccomp_off=()
for _ in $(seq "$runs"); do
  t0=$(now_ms); docker run --rm busybox true >/dev/null; seccomp_on+=($(( $(now_ms) - t0 )))
  t0=$(now_ms); docker run --rm --security-opt seccomp=unconfined busybox true >/dev/null
  seccomp_off+=($(( $(now_ms) - t0 )))
done
# The same rootfs as a plain bundle in the guest (crun spec's defaults, args ["true"]).
layer=$(tar -xOf "$work/busybox.tar" manifest.json | jq -r '.[0].Layers[0]')
tar -xOf "$work/busybox.tar" "$layer" >"$work/layer.tar"
"$berth" scp "$work/layer.tar" "$name:/var/lib/berth/bench-layer.tar" >/dev/null
vm 'set -e; b=/var/lib/berth/bench-bundle; rm -rf $b; mkdir -p $b/rootfs; tar -xf /var/lib/berth/bench-layer.tar -C $b/rootfs
cd $b && crun spec && sed -i -e "s/\"terminal\": true/\"terminal\": false/" -e "s/\"sh\"\$/\"true\"/" config.json
crun run -b $b bench-warm >/dev/null' >/dev/null
# Timed in the guest from /proc/uptime (10 ms resolution).
crun_ms=$(vm "i=0; while [ \$i -lt $runs ]; do a=\$(cut -d' ' -f1 /proc/uptime); crun run -b /var/lib/berth/bench-bundle bench-\$i >/dev/null; b=\$(cut -d' ' -f1 /proc/uptime); echo \"\$a \$b\"; i=\$((i+1)); done" |
  awk '{print int(($2 - $1) * 1000 + 0.5)}' | median)
echo "docker version (the CLI's start and one mTLS round trip, the floor of any docker command): median $(time_runs "$runs" docker version) ms over $runs runs"
echo "docker run --rm busybox true (host CLI -> agent -> crun): median $run_ms ms over $runs runs"
echo "docker run --rm --network none busybox true: median $run_none_ms ms over $runs runs"
echo "seccomp: docker run --rm busybox true with the default profile: median $(printf '%s\n' "${seccomp_on[@]}" | median) ms; --security-opt seccomp=unconfined: median $(printf '%s\n' "${seccomp_off[@]}" | median) ms ($runs runs each, interleaved)"
echo "crun run of the same rootfs in the guest: median $crun_ms ms over $runs runs"
echo "docker run / crun run: $(awk -v a="$run_ms" -v b="$crun_ms" 'BEGIN {printf "%.2f", a / b}')x"

# --- docker ps with 100 containers ---
for i in $(seq 100); do docker create busybox true >/dev/null; done
echo "docker ps -a with 100 created (not started) containers: median $(time_runs "$runs" docker ps -a) ms over $runs runs ($(docker ps -a -q | wc -l) listed)"
echo "docker ps (none running) beside them: median $(time_runs "$runs" docker ps) ms over $runs runs"

# --- docker cp throughput: a 64 MiB file into and out of a running container ---
head -c $((64 << 20)) /dev/urandom >"$work/cp.bin"
docker run -d --name cp-bench busybox sleep 3600 >/dev/null
cp_in=() cp_out=()
for _ in 1 2 3; do
  t0=$(now_ms); docker cp -q "$work/cp.bin" cp-bench:/tmp/cp.bin; cp_in+=($(( $(now_ms) - t0 )))
  rm -f "$work/cp.out"; t0=$(now_ms); docker cp -q cp-bench:/tmp/cp.bin "$work/cp.out"; cp_out+=($(( $(now_ms) - t0 )))
done
cmp -s "$work/cp.bin" "$work/cp.out" || echo "bench: warning: the file copied out differs" >&2
mib_s() { awk -v ms="$1" 'BEGIN {printf "%.1f", 64 / (ms / 1000)}'; }
cp_in_ms=$(printf '%s\n' "${cp_in[@]}" | median)
cp_out_ms=$(printf '%s\n' "${cp_out[@]}" | median)
echo "docker cp of a 64 MiB file into a running container: median $cp_in_ms ms over 3 copies, $(mib_s "$cp_in_ms") MiB/s"
echo "docker cp of a 64 MiB file out of a running container: median $cp_out_ms ms over 3 copies, $(mib_s "$cp_out_ms") MiB/s"
docker rm -f cp-bench >/dev/null
rm -f "$work/cp.bin" "$work/cp.out"

# --- pull throughput ---
pulls=()
for _ in 1 2 3; do
  docker rmi -f "10.0.2.2:$port/big:latest" >/dev/null 2>&1 || true
  t0=$(now_ms)
  docker pull -q "10.0.2.2:$port/big:latest" >/dev/null
  pulls+=($(( $(now_ms) - t0 )))
done
pull_ms=$(printf '%s\n' "${pulls[@]}" | median)
echo "docker pull of a one-layer image, $((wire_bytes / 1024)) KiB on the wire, from the host's registry: median $pull_ms ms over 3 pulls, $(awk -v b="$wire_bytes" -v ms="$pull_ms" 'BEGIN {printf "%.1f", b / 1e6 / (ms / 1000)}') MB/s"

sleep 5
echo "berth-agent idle RSS after the runs above (100 containers kept): $(rss_kb) KiB"

# --- published ports through berth's forwarder: first the native QEMU hostfwd
# (libvirt's default), then SSH direct-tcpip (BERTH_FORWARD_NATIVE=0) ---
docker rm -f $(docker ps -aq) >/dev/null 2>&1 || true
forward_figures() {  # VIA: what `berth forward --status` should say
  local via=$1 fport t0 t_run speeds=() lat=()
  fport=$(free_port)
  t0=$(now_ms)
  docker run -d --name fwd-bench -p "$fport:80" busybox sh -c \
    'mkdir -p /www && head -c 33554432 /dev/urandom >/www/blob && echo ok >/www/ok && exec httpd -f -p 80 -h /www' >/dev/null
  t_run=$(now_ms)
  until curl -sf -o /dev/null "http://127.0.0.1:$fport/ok"; do sleep 0.02; done
  echo "published port ($via): docker run returned -> first answer on 127.0.0.1:$fport after $(( $(now_ms) - t_run )) ms (docker run itself $(( t_run - t0 )) ms)"
  "$berth" forward --status "$name" | grep -q " $via " || echo "bench: warning: the forward did not go via $via" >&2
  for _ in 1 2 3; do
    speeds+=($(curl -sf -o /dev/null -w '%{speed_download}' "http://127.0.0.1:$fport/blob"))
  done
  echo "32 MiB download through the forwarder ($via): median $(printf '%s\n' "${speeds[@]}" | median | awk '{printf "%.1f", $1 / 1048576}') MiB/s over 3 downloads"
  for _ in $(seq "$runs"); do
    lat+=($(curl -sf -o /dev/null -w '%{time_total}' "http://127.0.0.1:$fport/ok" | awk '{print int($1 * 1000000)}'))
  done
  echo "small HTTP GET through the forwarder ($via; new TCP connection each): median $(printf '%s\n' "${lat[@]}" | median | awk '{printf "%.1f", $1 / 1000}') ms over $runs"
  docker rm -f fwd-bench >/dev/null
}
forward_figures qemu
"$berth" forward --off "$name" >/dev/null
BERTH_FORWARD_NATIVE=0 "$berth" forward "$name" >/dev/null
forward_figures ssh

# --- docker stats and health checks, 20 running containers ---
docker rm -f $(docker ps -aq) >/dev/null 2>&1 || true
for i in $(seq 20); do docker run -d --name "idle-$i" busybox sleep 100000 >/dev/null; done
docker stats --no-stream >/dev/null  # warm-up
echo "docker stats --no-stream with 20 running containers (20 streams at once): median $(time_runs "$runs" docker stats --no-stream) ms over $runs runs"
# The agent's CPU ticks (utime+stime), and with its reaped children (the probes' crun exec).
agent_ticks() { vm 'awk "{print \$14 + \$15, \$14 + \$15 + \$16 + \$17}" /proc/$(cat /run/berth-agent.pid)/stat'; }
agent_cpu_over() {  # SECONDS: "self children+self" CPU seconds of the agent over that time
  local a b hz=100  # /proc counts in USER_HZ, 100 on Linux (berth-os has no getconf)
  a=$(agent_ticks); sleep "$1"; b=$(agent_ticks)
  echo "$a $b" | awk -v hz="$hz" '{printf "%.2f %.2f\n", ($3 - $1) / hz, ($4 - $2) / hz}'
}
read -r idle_self idle_all < <(agent_cpu_over 60)
docker rm -f $(docker ps -aq) >/dev/null 2>&1 || true
for i in $(seq 20); do
  docker run -d --name "hc-$i" --health-cmd true --health-interval 1s busybox sleep 100000 >/dev/null
done
sleep 10
docker events --filter event=exec_die --format '{{.Actor.ID}}' >"$work/probes" &
events_pid=$!
read -r hc_self hc_all < <(agent_cpu_over 60)
kill "$events_pid" 2>/dev/null; wait "$events_pid" 2>/dev/null || true
probes=$(wc -l <"$work/probes")
healthy=$(docker ps --filter health=healthy -q | wc -l)
echo "berth-agent CPU over 60 s, 20 running containers without health checks: ${idle_self} s (${idle_all} s with its children)"
echo "berth-agent CPU over 60 s, 20 health checks every 1 s ($probes probes, $healthy/20 healthy): ${hc_self} s itself, ${hc_all} s with the probes' crun exec; $(awk -v a="$hc_self" -v b="$idle_self" -v n="$probes" 'BEGIN {printf "%.2f", n ? (a - b) / n * 1000 : 0}') ms of agent CPU per probe"
docker rm -f $(docker ps -aq) >/dev/null 2>&1 || true
