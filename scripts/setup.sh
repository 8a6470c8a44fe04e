#!/usr/bin/env bash
# Installs what berth needs to build and test (Debian 12, as root) and builds it.
# Usage: scripts/setup.sh [BUILD_DIR]   (default: build)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}

packages=(
  build-essential cmake ninja-build pkg-config git
  libssh-dev libcurl4-openssl-dev nlohmann-json3-dev libcli11-dev googletest libgtest-dev libgmock-dev
  libssl-dev libboost1.81-dev libfmt-dev
  openssh-server openssh-client iproute2 curl openssl procps util-linux jq zsh fish tcsh
  libvirt-dev libvirt-daemon-system qemu-system-x86 qemu-utils xorriso libisofs-dev libxml2-dev
  python3 python3-yaml libarchive-dev libnl-3-dev libnl-route-3-dev libzstd-dev liblz4-dev libacl1-dev zlib1g-dev
  liblzma-dev libbz2-dev nettle-dev clang docker-registry skopeo sshfs docker-compose python3-docker vde2
  etcd-server etcd-client
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# etcd-server's package may start a local etcd: berth only uploads the binary
# to cluster members, so keep the service off.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now etcd >/dev/null 2>&1 || true; fi
pgrep -x etcd >/dev/null 2>&1 && { service etcd stop >/dev/null 2>&1 || true; }

# The docker CLI is berth's client. Debian's docker.io brings one; berth never
# needs its daemon, so keep that stopped.
if ! command -v docker >/dev/null 2>&1; then
  echo "setup: installing the docker CLI (docker.io; its daemon stays off)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends docker.io
  rm -f /usr/sbin/policy-rc.d
  systemctl disable --now docker.service docker.socket >/dev/null 2>&1 || true
fi

# libvirtd and virtlogd (no systemd needed). libvirt's `default` network must
# never start on this machine: drop its autostart link before the daemon reads it.
rm -f /etc/libvirt/qemu/networks/autostart/default.xml
# /dev/kvm as udev leaves it (group kvm, 0660). Closed to QEMU's user, it makes
# libvirtd probe QEMU again on every domain define (30-50 s each).
if [[ -c /dev/kvm ]] && getent group kvm >/dev/null && [[ $(stat -c '%G %a' /dev/kvm) != "kvm 660" ]]; then
  echo "setup: /dev/kvm was $(stat -c '%a %G' /dev/kvm); giving it udev's group kvm, mode 0660"
  chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi
pgrep -x virtlogd >/dev/null || virtlogd -d
pgrep -x libvirtd >/dev/null || libvirtd -d
for _ in $(seq 50); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.2; done

# berth-os, the default image of the VM drivers (skipped when up to date).
"$here/image/build.sh" "$here/image/out"

# BERTH_TARGETS limits the build (quickstart: only berth and berth-agent).
cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release ${BERTH_CMAKE_ARGS:-}
# shellcheck disable=SC2086
cmake --build "$build" -j"$(nproc)" ${BERTH_TARGETS:+--target $BERTH_TARGETS}
echo "setup: built $build/cli/berth and $build/agent/berth-agent"
