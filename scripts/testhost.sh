#!/usr/bin/env bash
# Throwaway SSH hosts for integration tests (run as root).
#
# Each host is a network namespace berth-th-NAME joined to the root namespace
# by one veth pair (bth<INDEX>h, 10.231.INDEX.1/30 <-> eth0, 10.231.INDEX.2/30;
# no bridge, no default route), plus private mount and UTS namespaces whose
# root is an overlay of / with its upper layer on a tmpfs. sshd runs chrooted
# into that overlay, so whatever a test writes inside (agent binary, /etc/berth,
# hostname) never reaches the real machine and vanishes with the host.
#
#   testhost.sh up NAME INDEX AUTHORIZED_PUBKEY_FILE  prints the host's IP
#   testhost.sh down NAME                             idempotent
#   testhost.sh pids NAME                             "PID ARGS" per process inside
#   testhost.sh exec NAME CMD...                      run CMD inside the host's root
#   testhost.sh rootdir NAME                          /proc/PID/root view of the host's /
#   testhost.sh gc                                    down hosts whose owner died
#
# Exit codes: 0 ok, 1 error, 2 usage, 75 INDEX (or its veth) is taken: pick another.
# BERTH_TESTHOST_OWNER=PID (optional, at `up`) lets `gc` reclaim hosts of dead tests.
set -euo pipefail

readonly STATE_ROOT=/run/berth-testhost
readonly NS_PREFIX=berth-th-
readonly EX_TAKEN=75

die() { echo "testhost: $*" >&2; exit 1; }
usage() { sed -n '11,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

check_name() {
  [[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$ ]] || die "invalid host name '$1': use 1-40 of [A-Za-z0-9_-]"
}
ns_of() { echo "${NS_PREFIX}$1"; }
state_of() { echo "$STATE_ROOT/$1"; }
ns_exists() { [[ -e /run/netns/$(ns_of "$1") ]]; }

# The sshd pid that holds the host's mount namespace, if it is alive.
sshd_pid() {
  local f pid
  f="$(state_of "$1")/sshd.pid"
  [[ -r $f ]] || return 1
  pid=$(<"$f")
  [[ -n $pid && -d /proc/$pid ]] || return 1
  echo "$pid"
}

# Every pid whose mount namespace has inode $1.
pids_in_mntns() {
  local want=$1 ino path
  while read -r ino path; do
    if [[ $ino == "$want" ]]; then path=${path#/proc/}; echo "${path%%/*}"; fi
  done < <(stat -L -c '%i %n' /proc/[0-9]*/ns/mnt 2>/dev/null || true)
}

host_pids() {
  local name=$1 mntns
  {
    if ns_exists "$name"; then ip netns pids "$(ns_of "$name")" 2>/dev/null || true; fi
    mntns="$(state_of "$name")/mntns"
    if [[ -s $mntns ]]; then pids_in_mntns "$(<"$mntns")"; fi
  } | sort -un
}

FAILED_UP_NAME=""
undo_failed_up() {
  local rc=$?
  if [[ $rc -ne 0 && -n $FAILED_UP_NAME ]]; then
    cmd_down "$FAILED_UP_NAME" >/dev/null 2>&1 || true
  fi
  exit "$rc"
}

cmd_up() {
  [[ $# -eq 3 ]] || usage
  local name=$1 index=$2 keyfile=$3
  check_name "$name"
  if ! [[ $index =~ ^[0-9]+$ ]] || (( index < 1 || index > 254 )); then
    die "INDEX must be 1..254, got '$index'"
  fi
  [[ -r $keyfile ]] || die "cannot read public key file '$keyfile'"
  ssh-keygen -l -f "$keyfile" >/dev/null 2>&1 || die "'$keyfile' is not an SSH public key"

  local ns state ip veth
  ns=$(ns_of "$name")
  state=$(state_of "$name")
  ip="10.231.$index.2"
  veth="bth${index}h"

  mkdir -p "$STATE_ROOT"
  chmod 0700 "$STATE_ROOT"
  {
    flock 9
    if ns_exists "$name" || [[ -e $state ]]; then
      die "host '$name' is already up (or half torn down); run '$0 down $name' first"
    fi
    local claim="$STATE_ROOT/index-$index"
    if [[ -e $claim ]]; then
      local holder
      holder=$(<"$claim")
      if ns_exists "$holder" || [[ -e $(state_of "$holder") ]]; then
        echo "testhost: index $index is used by host '$holder'" >&2
        exit $EX_TAKEN
      fi
      rm -f "$claim"   # its host is gone
    fi
    if ip link show "$veth" >/dev/null 2>&1; then
      echo "testhost: interface $veth already exists" >&2
      exit $EX_TAKEN
    fi
    echo "$name" >"$claim"
    mkdir -m 0700 "$state" "$state/mnt"
    echo "$index" >"$state/index"
    echo "${BERTH_TESTHOST_OWNER:-}" >"$state/owner"
    ip netns add "$ns"
  } 9>"$STATE_ROOT/.lock"

  # From here on, any failure tears the half-made host down.
  FAILED_UP_NAME=$name
  trap undo_failed_up EXIT

  ip link add "$veth" type veth peer name eth0 netns "$ns"
  sysctl -qw "net.ipv6.conf.$veth.disable_ipv6=1"
  ip addr add "10.231.$index.1/30" dev "$veth"
  ip link set "$veth" up
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  ip -n "$ns" addr add "$ip/30" dev eth0
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up

  # Runs in the new netns + private mount/UTS namespaces, then becomes sshd,
  # which keeps the namespaces alive for as long as the host is up.
  # shellcheck disable=SC2016  # expanded by the inner bash
  local inner='
    set -euo pipefail
    name=$1 state=$2 keyfile=$3 ip=$4
    echo $$ >"$state/sshd.pid"
    stat -L -c %i /proc/self/ns/mnt >"$state/mntns"
    hostname "$name"
    mnt=$state/mnt
    mount -t tmpfs -o mode=0755 berth-testhost "$mnt"
    mkdir "$mnt/upper" "$mnt/work" "$mnt/root"
    root=$mnt/root
    mount -t overlay -o "lowerdir=/,upperdir=$mnt/upper,workdir=$mnt/work" berth-testhost "$root"
    mount -t proc proc "$root/proc"
    mount -t sysfs -o ro sysfs "$root/sys"
    mount --rbind /dev "$root/dev"
    mount -t tmpfs -o mode=0755 tmpfs "$root/run"
    mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
    mkdir -p -m 0755 "$root/run/sshd"
    echo "$name" >"$root/etc/hostname"
    rm -f "$root"/etc/ssh/ssh_host_*
    chroot "$root" ssh-keygen -A >/dev/null
    # A plain root account, as on a fresh server: this machine'"'"'s own shell
    # start-up files (pyenv and the like) would slow and serialize every command.
    printf "%s\n" "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" >"$root/root/.bashrc"
    cp "$root/root/.bashrc" "$root/root/.profile"
    rm -f "$root/root/.bash_profile" "$root/root/.bash_login"
    install -d -m 0700 "$root/root/.ssh"
    install -m 0600 "$keyfile" "$root/root/.ssh/authorized_keys"
    exec chroot "$root" /usr/sbin/sshd -D -e \
      -o ListenAddress="$ip" -o UsePAM=no -o PidFile=none \
      -o PermitRootLogin=prohibit-password -o PasswordAuthentication=no \
      -o KbdInteractiveAuthentication=no -o X11Forwarding=no \
      -o MaxStartups=64:30:128 -o MaxSessions=64
  '
  setsid ip netns exec "$ns" unshare --mount --uts --propagation private \
    bash -c "$inner" testhost "$name" "$state" "$keyfile" "$ip" \
    </dev/null >"$state/sshd.log" 2>&1 &
  local child=$!

  # Ready when sshd sends its banner (5 s at most).
  local i banner
  for ((i = 0; i < 100; i++)); do
    # shellcheck disable=SC2016
    if banner=$(timeout 1 bash -c 'exec 3<>/dev/tcp/$0/22 && head -c 4 <&3' "$ip" 2>/dev/null) \
        && [[ $banner == SSH- ]]; then
      trap - EXIT
      echo "$ip"
      return 0
    fi
    kill -0 "$child" 2>/dev/null || break
    sleep 0.05
  done
  echo "testhost: sshd for '$name' did not answer on $ip:22; its log:" >&2
  sed 's/^/  /' "$state/sshd.log" >&2 || true
  exit 1
}

cmd_down() {
  [[ $# -eq 1 ]] || usage
  local name=$1 ns state index="" veth="" i pids
  check_name "$name"
  ns=$(ns_of "$name")
  state=$(state_of "$name")
  [[ -r $state/index ]] && index=$(<"$state/index") && veth="bth${index}h"

  for ((i = 0; i < 100; i++)); do
    pids=$(host_pids "$name")
    [[ -z $pids ]] && break
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.05
  done
  [[ -z $(host_pids "$name") ]] || die "processes of host '$name' survived SIGKILL: $(host_pids "$name" | tr '\n' ' ')"

  if ns_exists "$name"; then
    ip netns del "$ns"
  fi
  if [[ -n $veth ]]; then
    # The veth goes with the namespace, asynchronously; make sure.
    for ((i = 0; i < 40; i++)); do
      ip link show "$veth" >/dev/null 2>&1 || break
      sleep 0.05
    done
    ip link del "$veth" 2>/dev/null || true
  fi
  if [[ -d $state ]]; then
    # $state/mnt only ever had mounts inside the host's own mount namespace.
    rmdir "$state/mnt" 2>/dev/null || true
    rm -rf "$state"
  fi
  if [[ -n $index ]]; then
    local claim="$STATE_ROOT/index-$index"
    if [[ -e $claim && $(<"$claim") == "$name" ]]; then rm -f "$claim"; fi
  fi
  return 0
}

cmd_pids() {
  [[ $# -eq 1 ]] || usage
  check_name "$1"
  local p
  for p in $(host_pids "$1"); do
    local args
    args=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) || continue
    echo "$p ${args% }"
  done
}

cmd_exec() {
  [[ $# -ge 2 ]] || usage
  local name=$1 pid
  shift
  check_name "$name"
  pid=$(sshd_pid "$name") || die "host '$name' is not up"
  exec nsenter --target "$pid" --mount --uts --net --root --wd \
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"
}

cmd_rootdir() {
  [[ $# -eq 1 ]] || usage
  check_name "$1"
  local pid
  pid=$(sshd_pid "$1") || die "host '$1' is not up"
  echo "/proc/$pid/root"
}

cmd_gc() {
  [[ $# -eq 0 ]] || usage
  local d name owner
  for d in "$STATE_ROOT"/*/; do
    [[ -d $d ]] || continue
    name=$(basename "$d")
    owner=$(cat "$d/owner" 2>/dev/null || true)
    if [[ -n $owner && ! -d /proc/$owner ]]; then
      cmd_down "$name" || true
    fi
  done
}

[[ $(id -u) -eq 0 ]] || die "must run as root"
[[ $# -ge 1 ]] || usage
cmd=$1
shift
case $cmd in
  up) cmd_up "$@" ;;
  down) cmd_down "$@" ;;
  pids) cmd_pids "$@" ;;
  exec) cmd_exec "$@" ;;
  rootdir) cmd_rootdir "$@" ;;
  gc) cmd_gc "$@" ;;
  *) usage ;;
esac
