#!/usr/bin/env bash
# Boots berth-os under QEMU/TCG and checks what berth relies on. Three boots share one data disk:
#   1. vmlinuz+initrd, cidata on an IDE CD-ROM, blank data disk: SSH with the pinned host key,
#      hostname from meta-data, /var/lib/berth on the formatted disk, crun, modules, iptables,
#      SFTP; ACPI poweroff
#   2. vmlinux (PVH entry)+initrd, cidata on a virtio disk: the files written in boot 1 are
#      still there, /etc/local.d ran; ACPI poweroff
#   3. berth-os.iso as the boot CD: SSH answers, the file is there; poweroff from inside
# Usage (as root): image/test-boot.sh OUTDIR [PORT]
# Network: QEMU user-mode networking only, one forward on 127.0.0.1:PORT.
set -euo pipefail

out=$(realpath "${1:?usage: test-boot.sh OUTDIR [PORT]}")
for f in vmlinuz vmlinux initrd cmdline berth-os.iso; do [ -f "$out/$f" ] || { echo "test-boot: $out/$f is missing; run image/build.sh $out" >&2; exit 2; }; done

tools=(qemu-system-x86 openssh-client xorriso)
missing=()
for p in "${tools[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ -n "${2:-}" ]; then port=$2; else
  port=$((20000 + RANDOM % 20000))
  while ! port_free $port; do port=$((20000 + RANDOM % 20000)); done
fi

t=$(mktemp -d "$out/.test-boot.XXXXXX")
qemu_pid=
cleanup() {
  if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then kill "$qemu_pid"; wait "$qemu_pid" 2>/dev/null || true; fi
  [ -n "${reader_pid:-}" ] && kill "$reader_pid" 2>/dev/null || true
  mkdir -p "$out/test-boot-logs" && cp "$t"/*.log "$out/test-boot-logs/" 2>/dev/null || true
  rm -rf "$t"
}
trap cleanup EXIT

passed=0 failed=0
ok() { echo "PASS $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }
check() {  # check NAME COMMAND...: passes when COMMAND succeeds
  local name=$1; shift
  if "$@"; then ok "$name"; else bad "$name"; fi
}

# --- keys and cidata ---
ssh-keygen -q -t ed25519 -N '' -C berth-os-test-client -f "$t/client"
ssh-keygen -q -t ed25519 -N '' -C berth-os-test-host -f "$t/hostkey"
echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$t/hostkey.pub")" >"$t/known_hosts"
hostname=berth-test-$RANDOM
mkdir "$t/cidata"
printf 'instance-id: iid-%s\nlocal-hostname: %s\n' "$hostname" "$hostname" >"$t/cidata/meta-data"
{
  echo "#cloud-config"
  echo "ssh_authorized_keys:"
  echo "  - $(cat "$t/client.pub")"
  echo "ssh_keys:"
  echo "  ed25519_private: |"
  sed 's/^/    /' "$t/hostkey"
  echo "  ed25519_public: $(cat "$t/hostkey.pub")"
} >"$t/cidata/user-data"
xorriso -as mkisofs -quiet -o "$t/cidata.iso" -V CIDATA -J -r "$t/cidata" 2>/dev/null
truncate -s 4G "$t/data.img"

ssh_opts=(-o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$t/known_hosts"
          -o ConnectTimeout=5 -o LogLevel=ERROR -i "$t/client")
vm() { ssh "${ssh_opts[@]}" -p "$port" root@127.0.0.1 "$@"; }
sftp_put() { sftp -q -b - "${ssh_opts[@]}" -P "$port" root@127.0.0.1 <<<"put $1 $2" >/dev/null; }
banner() { (exec 3<>"/dev/tcp/127.0.0.1/$port" && IFS= read -r -t 0.5 line <&3 && [[ $line == SSH-* ]]) 2>/dev/null; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}'; }

boot() {  # boot NAME cdrom|virtio [extra qemu args]: starts QEMU, returns when SSH answers (or fails)
  local name=$1 cidata_as=$2; shift 2
  local cd_args
  if [ "$cidata_as" = virtio ]; then cd_args=(-drive "file=$t/cidata.iso,if=virtio,format=raw,readonly=on")
  else cd_args=(-drive "file=$t/cidata.iso,media=cdrom,index=1"); fi
  rm -f "$t/mon.in" "$t/mon.out"
  mkfifo "$t/mon.in" "$t/mon.out"
  start=$(date +%s.%N)
  qemu-system-x86_64 -accel tcg -m 512 -nodefaults -display none -vga none \
    -serial "file:$t/$name.log" -monitor "pipe:$t/mon" \
    -device virtio-rng-pci \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=n0 \
    -drive "file=$t/data.img,if=virtio,format=raw" "${cd_args[@]}" "$@" &
  qemu_pid=$!
  cat "$t/mon.out" >"$t/$name-monitor.log" &
  reader_pid=$!
  local deadline=$(( $(date +%s) + 180 ))
  # A fresh connection each time: QEMU holds a connection made before the guest listens
  # and retries it with backoff, which would hide the moment sshd comes up.
  until banner && vm true 2>/dev/null; do
    if ! kill -0 "$qemu_pid" 2>/dev/null; then bad "$name: QEMU exited before SSH answered"; tail -20 "$t/$name.log"; return 1; fi
    if [ "$(date +%s)" -ge $deadline ]; then
      bad "$name: no SSH within 180 s"; tail -20 "$t/$name.log"; stop_vm
      return 1
    fi
    sleep 0.2
  done
  ready=$(since "$start")
  ok "$name: SSH with the pinned host key after $ready s"
  times+=("$name (cidata on $cidata_as): $ready s from QEMU start to SSH (guest uptime then: $(vm "cut -d' ' -f1 /proc/uptime") s)")
  return 0
}
stop_vm() {  # kills QEMU after a failed boot so the next one gets the port
  [ -n "$qemu_pid" ] || return 0
  kill "$qemu_pid" 2>/dev/null || true
  wait "$qemu_pid" 2>/dev/null || true
  qemu_pid=
}

wait_exit() {  # wait_exit NAME: QEMU must exit within 20 s
  local name=$1 t0 i=0
  t0=$(date +%s.%N)
  while kill -0 "$qemu_pid" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
  if kill -0 "$qemu_pid" 2>/dev/null; then
    bad "$name: QEMU still running 20 s after poweroff"; kill "$qemu_pid"
  else
    ok "$name: clean poweroff, QEMU exited after $(since "$t0") s"
  fi
  wait "$qemu_pid" 2>/dev/null || true
  qemu_pid=
  kill "$reader_pid" 2>/dev/null || true
}
powerdown() { echo system_powerdown >"$t/mon.in"; wait_exit "$1"; }

times=()
token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
kernel=(-kernel "$out/vmlinuz" -initrd "$out/initrd" -append "$(cat "$out/cmdline")")

# --- boot 1 ---
if boot boot1 cdrom "${kernel[@]}"; then
  check "boot1: hostname is $hostname" test "$(vm hostname)" = "$hostname"
  check "boot1: /etc/os-release says ID=berth-os" vm grep -qx ID=berth-os /etc/os-release
  check "boot1: /var/lib/berth is the ext4 data disk" vm "mount | grep -q '^/dev/vda on /var/lib/berth type ext4'"
  check "boot1: write a file on the data disk" vm "echo $token >/var/lib/berth/persist-test"
  check "boot1: add an /etc/local.d start script" vm 'printf "#!/bin/sh\necho ran >/run/local-d-ran\n" >/etc/local.d/test.start && chmod +x /etc/local.d/test.start'
  check "boot1: crun --version" vm "crun --version | grep -q '^crun version'"
  check "boot1: modprobe overlay veth bridge" vm "modprobe overlay && modprobe veth && modprobe bridge && lsmod | grep -q '^bridge'"
  check "boot1: crun runs a container" vm 'set -e; b=/tmp/bundle; rm -rf $b; mkdir -p $b/rootfs/bin; cp /bin/busybox $b/rootfs/bin/
      cd $b && crun spec && sed -i "s/\"terminal\": true/\"terminal\": false/; s/\"sh\"/\"\/bin\/busybox\", \"echo\", \"container-ok\"/" config.json
      crun run -b $b t1 | grep -q container-ok'
  check "boot1: iptables (nft) NAT rule" vm "iptables -t nat -A POSTROUTING -s 172.30.0.0/16 ! -o eth0 -j MASQUERADE && iptables -t nat -S POSTROUTING | grep -q MASQUERADE"
  check "boot1: veth pair" vm "ip link add bt0 type veth peer name bt1 && ip link del bt0"
  head -c 3000000 /dev/urandom >"$t/upload"
  check "boot1: sftp upload to /usr/local/bin" sftp_put "$t/upload" /usr/local/bin/upload-test
  check "boot1: uploaded file intact" test "$(vm sha256sum /usr/local/bin/upload-test | cut -d' ' -f1)" = "$(sha256sum "$t/upload" | cut -d' ' -f1)"
  mem=$(vm free -m | awk '/^Mem:/ {print $3 " MiB used of " $2 " MiB"}')
  echo "boot1: idle memory: $mem"
  vm dmesg >"$t/boot1-dmesg.log" 2>&1 || true
  powerdown boot1
else stop_vm; fi

# --- boot 2: the uncompressed kernel through QEMU's PVH entry ---
if boot boot2 virtio -kernel "$out/vmlinux" -initrd "$out/initrd" -append "$(cat "$out/cmdline")"; then
  check "boot2: the file written in boot 1 survived" test "$(vm cat /var/lib/berth/persist-test)" = "$token"
  check "boot2: /usr/local/bin kept the upload" vm test -s /usr/local/bin/upload-test
  check "boot2: /etc/local.d/test.start ran at boot" vm test -f /run/local-d-ran
  check "boot2: hostname is $hostname" test "$(vm hostname)" = "$hostname"
  mem=$(vm free -m | awk '/^Mem:/ {print $3 " MiB used of " $2 " MiB"}')
  echo "boot2: idle memory: $mem"
  powerdown boot2
else stop_vm; fi

# --- boot 3: the ISO ---
if boot boot3 cdrom -cdrom "$out/berth-os.iso" -boot d; then
  check "boot3 (ISO): the file is still there" test "$(vm cat /var/lib/berth/persist-test)" = "$token"
  vm poweroff >/dev/null 2>&1 || true
  wait_exit "boot3 (poweroff from inside)"
else stop_vm; fi

echo
printf '%s\n' "${times[@]}"
echo "test-boot: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
