#!/usr/bin/env bash
# libvirt driver figures (as root, libvirtd + virtlogd running, berth-os built):
#  - bare boot: qemu-system-x86_64 -accel tcg with berth-os's kernel+initrd, the same
#    cidata and a blank data disk, until the forwarded SSH port sends a banner (median)
#  - `berth create -d libvirt` until `docker version` answers through `berth env` (median)
#    and the ratio of the two
#  - memory berth-os uses at idle (free -m over berth ssh) and QEMU's RSS on the host
#  - `berth ls` with 2 running VMs (its output and median wall time)
#  - image size
# Usage: bench/libvirt/bench.sh [RUNS]   (BERTH_BUILD_DIR picks the build, default build/)
# User-mode networking only; every forward is on 127.0.0.1.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${BERTH_BUILD_DIR:-$here/build}
berth="$build/cli/berth"
os=${BERTH_OS_DIR:-$here/image/out}
runs=${1:-3}
for f in "$berth" "$build/agent/berth-agent" "$os/vmlinuz" "$os/initrd"; do
  [ -e "$f" ] || { echo "bench: $f is missing (build berth, berth-agent and image/build.sh first)" >&2; exit 2; }
done
pgrep -x virtlogd >/dev/null || virtlogd -d
pgrep -x libvirtd >/dev/null || libvirtd -d

work=$(mktemp -d /tmp/berth-libvirt-bench-XXXXXX)
export BERTH_STORAGE_PATH="$work/store" HOME="$work/home" DOCKER_CONFIG="$work/home/.docker"
export BERTH_AGENT_BINARY="$build/agent/berth-agent"
unset DOCKER_HOST DOCKER_TLS_VERIFY DOCKER_CERT_PATH DOCKER_CONTEXT
mkdir -p "$HOME"
qemu_pid=
machines=()
cleanup() {
  [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null || true
  for m in "${machines[@]}"; do "$berth" rm -f -y "$m" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
banner() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && head -c 4 <&3" 2>/dev/null; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
secs() { awk -v ms="$1" 'BEGIN {printf "%.1f", ms / 1000}'; }

# --- bare boot: QEMU alone, same kernel, initrd, cidata and a blank data disk ---
ssh-keygen -q -t ed25519 -N '' -C bench -f "$work/client"
ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$work/hostkey"
mkdir "$work/cidata"
printf 'instance-id: bench\nlocal-hostname: bench\n' >"$work/cidata/meta-data"
{
  echo "#cloud-config"
  echo "ssh_authorized_keys:"
  echo "  - $(cat "$work/client.pub")"
  echo "ssh_keys:"
  echo "  ed25519_private: |"
  sed 's/^/    /' "$work/hostkey"
  echo "  ed25519_public: $(cat "$work/hostkey.pub")"
} >"$work/cidata/user-data"
xorriso -as mkisofs -quiet -o "$work/cidata.iso" -V CIDATA -J -r "$work/cidata" 2>/dev/null
bare=()
for i in $(seq "$runs"); do
  qemu-img create -q -f qcow2 "$work/data.qcow2" 5000M
  port=$(free_port)
  t0=$(now_ms)
  qemu-system-x86_64 -accel tcg -machine q35 -m 1024 -nodefaults -display none -vga none \
    -serial "file:$work/bare-$i.log" -device virtio-rng-pci \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=n0,bus=pcie.0,addr=0x10 \
    -drive "file=$work/data.qcow2,if=virtio,format=qcow2" -drive "file=$work/cidata.iso,media=cdrom" \
    -kernel "$os/vmlinuz" -initrd "$os/initrd" -append "$(cat "$os/cmdline")" 2>>"$work/qemu.err" &
  qemu_pid=$!
  until [ "$(banner "$port")" = "SSH-" ]; do
    kill -0 "$qemu_pid" 2>/dev/null || { echo "bench: bare QEMU exited early; see $work/bare-$i.log" >&2; exit 1; }
    (( $(now_ms) - t0 < 180000 )) || { echo "bench: bare boot: no SSH banner in 180 s" >&2; exit 1; }
    sleep 0.1
  done
  bare+=($(( $(now_ms) - t0 )))
  kill "$qemu_pid"; wait "$qemu_pid" 2>/dev/null || true; qemu_pid=
  rm -f "$work/data.qcow2"
done
bare_ms=$(printf '%s\n' "${bare[@]}" | median)

# --- berth create .. docker version ---
created=()
for i in $(seq "$runs"); do
  m=bench$i
  machines+=("$m")
  t0=$(now_ms)
  "$berth" create -q -d libvirt "$m" >"$work/create-$i.log" 2>&1 ||
    { echo "bench: berth create $m failed:" >&2; cat "$work/create-$i.log" >&2; exit 1; }
  (eval "$("$berth" env "$m")" && docker version >/dev/null) ||
    { echo "bench: docker version against $m failed" >&2; exit 1; }
  created+=($(( $(now_ms) - t0 )))
  # keep the last two running for the figures below
  if (( i <= runs - 2 )); then "$berth" rm -y "$m" >/dev/null; fi
done
create_ms=$(printf '%s\n' "${created[@]}" | median)

keep1=bench$((runs - 1)); keep2=bench$runs
mem=$("$berth" ssh "$keep2" free -m | awk '/^Mem:/ {print $3 " MB used of " $2 " MB (" $6 " MB buff/cache)"}')
dom=$("$berth" inspect "$keep2" | sed -n 's/.*"domain": "\(.*\)".*/\1/p')
rss=$(ps -eo rss,comm,args | awk -v d="guest=$dom," '$2 ~ /^qemu-system/ && index($0, d) {printf "%d MB", $1 / 1024}')
ls_times=()
for _ in 1 2 3 4 5; do t0=$(now_ms); "$berth" ls >/dev/null; ls_times+=($(( $(now_ms) - t0 ))); done

echo "bare boot (qemu -accel tcg, berth-os kernel+initrd) to SSH banner: median $(secs "$bare_ms") s over $runs runs ($(printf '%s ' "${bare[@]}")ms)"
echo "berth create -d libvirt .. docker version answers:              median $(secs "$create_ms") s over $runs runs ($(printf '%s ' "${created[@]}")ms; run 1 includes the one-time KVM probe)"
echo "ratio create-to-docker / bare boot-to-SSH: $(awk -v a="$create_ms" -v b="$bare_ms" 'BEGIN {printf "%.2f", a / b}')"
echo "berth-os at idle ($keep2, 1024 MB VM): $mem; QEMU RSS on the host: ${rss:-unknown}"
echo "image: vmlinuz $(du -k "$os/vmlinuz" | cut -f1) KB, initrd $(du -k "$os/initrd" | cut -f1) KB$( [ -f "$os/berth-os.iso" ] && echo ", berth-os.iso $(du -k "$os/berth-os.iso" | cut -f1) KB")"
echo "berth ls with 2 running VMs: median $(printf '%s\n' "${ls_times[@]}" | median) ms over 5 runs:"
"$berth" ls | sed 's/^/  /'
