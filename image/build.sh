#!/usr/bin/env bash
# Builds berth-os, berth's boot image, from Debian 12 packages.
# Usage (as root): image/build.sh [OUTDIR]      (default: image/out)
# Writes OUTDIR/{vmlinuz,vmlinux,initrd,berth-os.iso,cmdline,SHA256SUMS}: vmlinux is vmlinuz
# uncompressed, for QEMU's direct PVH boot (-kernel vmlinux), 3 s faster under TCG. A re-run with the
# same scripts and the same package versions does nothing (OUTDIR/.stamp).
# Downloaded packages and the unpacked kernel are kept in OUTDIR/.cache
# (or $BERTH_OS_CACHE). Nothing is installed into the host except build tools.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=$(realpath -m "${1:-$here/out}")
cache=$(realpath -m "${BERTH_OS_CACHE:-$out/.cache}")
version=${BERTH_OS_VERSION:-$(sed -n 's/^project(berth VERSION \([0-9.]*\).*/\1/p' "$here/../CMakeLists.txt" 2>/dev/null)}
version=${version:-0.0.0}
cmdline="console=ttyS0 quiet"
arch=x86_64-linux-gnu

die() { echo "build.sh: $*" >&2; exit 1; }
log() { echo "build.sh: $*"; }
[ "$(id -u)" = 0 ] || die "run me as root: I install build tools with apt-get and make device nodes"

# Guest userland. Each binary's shared libraries are copied from these packages;
# a library missing here stops the build with its name.
packages=(
  busybox-static dropbear-bin openssh-sftp-server crun iptables e2fsprogs
  tini  # its static build is docker-init (docker run --init)
  libc6 libcrypt1 libtomcrypt1 libtommath1 libgmp10 zlib1g
  libcap2 libseccomp2 libyajl2
  libelogind0  # provides libsystemd.so.0 for crun without libgcrypt/lz4/lzma/zstd (3 MB less)
  libxtables12 libmnl0 libnftnl11 libnetfilter-conntrack3 libnfnetlink0
  libext2fs2 libcom-err2 libblkid1 libuuid1
)
# path in the unpacked packages -> path in the image
binaries=(
  usr/sbin/dropbear:usr/sbin/dropbear
  usr/bin/dropbearkey:usr/bin/dropbearkey
  usr/bin/dropbearconvert:usr/bin/dropbearconvert
  usr/lib/openssh/sftp-server:usr/lib/sftp-server   # where Debian's dropbear looks for it
  usr/bin/crun:usr/bin/crun
  usr/bin/tini-static:usr/bin/docker-init
  usr/sbin/xtables-nft-multi:usr/sbin/xtables-nft-multi
  sbin/mke2fs:usr/sbin/mke2fs
  sbin/e2fsck:usr/sbin/e2fsck
)
links=(  # name -> target, in the image
  usr/sbin/mkfs.ext4:mke2fs usr/sbin/fsck.ext4:e2fsck
  usr/sbin/iptables:xtables-nft-multi usr/sbin/iptables-save:xtables-nft-multi
  usr/sbin/iptables-restore:xtables-nft-multi usr/sbin/ip6tables:xtables-nft-multi
  usr/sbin/ip6tables-save:xtables-nft-multi usr/sbin/ip6tables-restore:xtables-nft-multi
  usr/sbin/iptables-nft:xtables-nft-multi usr/sbin/ip6tables-nft:xtables-nft-multi
)
# iptables extensions for what container networking uses (NAT, port maps, conntrack).
xtables=(
  libxt_standard libxt_tcp libxt_udp libipt_icmp libip6t_icmp6 libxt_conntrack libxt_state
  libxt_addrtype libxt_comment libxt_mark libxt_MARK libxt_connmark libxt_CONNMARK
  libxt_multiport libxt_iprange libxt_physdev libxt_pkttype libxt_limit libxt_mac
  libxt_MASQUERADE libxt_SNAT libxt_DNAT libxt_REDIRECT libxt_CHECKSUM libxt_TCPMSS libxt_tcpmss
  libipt_REJECT libip6t_REJECT libxt_LOG libxt_set
)
# Kernel modules; their dependencies come along through modules.dep.
modules=(
  virtio virtio_ring virtio_pci virtio_pci_modern_dev virtio_pci_legacy_dev
  virtio_net virtio_blk virtio_scsi virtio_rng virtio_console virtio_balloon
  ata_piix ahci sd_mod sr_mod button evdev
  e1000 e1000e
  ext4 crc32c_generic crc32c_intel iso9660 nls_utf8 overlay loop
  9p 9pnet 9pnet_virtio  # host folders (virtio-9p); etc/berth-os/shares loads them
  veth bridge br_netfilter
  vxlan  # overlay networks between cluster members (udp_tunnel comes along)
  nf_tables nft_compat nft_chain_nat nft_nat nft_masq nft_redir nft_ct
  nft_reject_inet nft_reject_ipv4 nft_reject_ipv6 nft_fib_inet nft_fib_ipv4 nft_fib_ipv6 nft_limit
  nf_conntrack nf_nat nf_conntrack_netlink
  x_tables xt_MASQUERADE xt_conntrack xt_state xt_addrtype xt_comment xt_mark xt_nat
  xt_tcpudp xt_multiport xt_REDIRECT xt_physdev xt_CHECKSUM xt_limit ipt_REJECT ip6t_REJECT
)

# --- build tools on the host ------------------------------------------------------------
host_tools=(binutils kmod cpio zstd xz-utils xorriso isolinux syslinux-common)
updated=no
apt_update() { [ $updated = yes ] || { apt-get update -qq; updated=yes; }; }
missing=()
for p in "${host_tools[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing build tools: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt_update
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- package versions -------------------------------------------------------------------
candidates() {  # prints "name version" for each package apt can install
  apt-cache policy "$@" 2>/dev/null | awk '/^[^ ].*:$/ {sub(/:$/, ""); n=$0} /Candidate:/ && $2 != "(none)" {print n, $2}'
}
kernel_candidate() {
  local v; v=$(candidates linux-image-amd64 | awk '{print $2}')
  [ -n "$v" ] && apt-cache show "linux-image-amd64=$v" | sed -n 's/^Depends: \(linux-image-[^ ,]*\).*/\1/p' | head -1
}
kernel_pkg=$(kernel_candidate || true)
if [ -z "$kernel_pkg" ] || [ "$(candidates "${packages[@]}" | wc -l)" -ne ${#packages[@]} ]; then
  apt_update
  kernel_pkg=$(kernel_candidate || true)
fi
[ -n "$kernel_pkg" ] || die "apt cannot find linux-image-amd64; check /etc/apt/sources.list"
declare -A ver=()
while read -r n v; do ver[$n]=$v; done < <(candidates "${packages[@]}" "$kernel_pkg")
for p in "${packages[@]}" "$kernel_pkg"; do
  [ -n "${ver[$p]:-}" ] || die "apt has no installable version of $p; run apt-get update or check the Debian 12 sources"
done
kver=${kernel_pkg#linux-image-}
manifest=$(for p in "$kernel_pkg" "${packages[@]}"; do echo "$p=${ver[$p]}"; done)

# --- up to date? ----------------------------------------------------------------------
stamp=$( {
  echo "$manifest"; echo "version=$version"; echo "cmdline=$cmdline"
  cd "$here" && find build.sh init rootfs -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  find rootfs -print0 | LC_ALL=C sort -z | xargs -0 stat -c '%n %a'
} | sha256sum | cut -d' ' -f1)
if [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$stamp" ] &&
   (cd "$out" && sha256sum --quiet -c SHA256SUMS >/dev/null 2>&1); then
  log "berth-os $version is up to date in $out"
  exit 0
fi

# --- download and unpack --------------------------------------------------------------
mkdir -p "$out" "$cache/debs"
deb_of() { local f; f=$(ls "$cache/debs/${1}_${2//:/%3a}_"*.deb 2>/dev/null | head -1); echo "$f"; }
wanted=()
for p in "$kernel_pkg" "${packages[@]}"; do [ -n "$(deb_of "$p" "${ver[$p]}")" ] || wanted+=("$p=${ver[$p]}"); done
if ((${#wanted[@]})); then
  log "downloading ${#wanted[@]} packages"
  (cd "$cache/debs" && apt-get -o APT::Sandbox::User=root download -qq "${wanted[@]}" >/dev/null) ||
    die "apt-get download failed for: ${wanted[*]}"
fi

work=$(mktemp -d "$cache/work.XXXXXX")
trap 'rm -rf "$work"' EXIT
x=$work/pkgs root=$work/root
mkdir -p "$x"
for p in "${packages[@]}"; do dpkg-deb -x "$(deb_of "$p" "${ver[$p]}")" "$x"; done

kx=$cache/kernel-$kver-${ver[$kernel_pkg]}
if [ ! -f "$kx/.done" ]; then
  log "unpacking $kernel_pkg ${ver[$kernel_pkg]}"
  rm -rf "$cache"/kernel-*
  mkdir -p "$kx"
  dpkg-deb -x "$(deb_of "$kernel_pkg" "${ver[$kernel_pkg]}")" "$kx"
  depmod -b "$kx" "$kver"
  touch "$kx/.done"
fi

# --- root filesystem ------------------------------------------------------------------
log "assembling the root filesystem"
mkdir -p "$root"/usr/{bin,sbin,lib/$arch,lib64,local/bin} "$root"/{dev,proc,sys,run,mnt,newroot}
mkdir -p "$root"/etc/{berth,local.d,dropbear} "$root"/var/{lib/berth,log,empty} "$root"/tmp "$root"/root/.ssh
for d in bin sbin lib lib64; do ln -s usr/$d "$root/$d"; done
ln -s ../run "$root/var/run"
ln -s /tmp "$root/var/tmp"
chmod 1777 "$root/tmp"
chmod 0700 "$root/root" "$root/root/.ssh" "$root/etc/dropbear"
mknod -m 600 "$root/dev/console" c 5 1
mknod -m 666 "$root/dev/null" c 1 3

elf_needed() { readelf -d "$1" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
declare -A have_lib=()
copy_libs() {  # copies the shared libraries $1 needs, recursively
  local lib src
  for lib in $(elf_needed "$1"); do
    [ -z "${have_lib[$lib]:-}" ] || continue
    src=
    for d in "$x/lib/$arch" "$x/usr/lib/$arch"; do [ -e "$d/$lib" ] && { src=$d/$lib; break; }; done
    [ -n "$src" ] || die "$lib (needed by ${1#"$x"/}) is in none of the guest packages; add its package to packages=()"
    have_lib[$lib]=1
    cp -L "$src" "$root/usr/lib/$arch/$lib"
    copy_libs "$root/usr/lib/$arch/$lib"
  done
}
for b in "${binaries[@]}"; do
  src=$x/${b%%:*} dst=$root/${b#*:}
  [ -e "$src" ] || die "${b%%:*} is in none of the guest packages"
  mkdir -p "$(dirname "$dst")"
  cp -L "$src" "$dst"
  copy_libs "$dst"
done
mkdir -p "$root/usr/lib/$arch/xtables"
for e in "${xtables[@]}"; do
  cp "$x/usr/lib/$arch/xtables/$e.so" "$root/usr/lib/$arch/xtables/"
  copy_libs "$root/usr/lib/$arch/xtables/$e.so"
done
ln -s ../lib/$arch/ld-linux-x86-64.so.2 "$root/usr/lib64/ld-linux-x86-64.so.2"
[ -e "$root/usr/lib/$arch/ld-linux-x86-64.so.2" ] || die "the dynamic loader was not copied"
for l in "${links[@]}"; do ln -s "${l#*:}" "$root/${l%%:*}"; done
cp "$x/etc/mke2fs.conf" "$root/etc/"

# busybox provides every other command; real binaries above take precedence
cp "$x/bin/busybox" "$root/usr/bin/busybox"
for a in $("$root/usr/bin/busybox" --list-full); do
  case $a in */*) ;; *) continue ;; esac  # linuxrc
  a=${a#/}; a=usr/${a#usr/}
  [ -e "$root/$a" ] || [ -L "$root/$a" ] || ln -s /usr/bin/busybox "$root/$a"
done

# our files
cp -a "$here/rootfs/." "$root/"
install -m 0755 "$here/init" "$root/init"
chmod 0755 "$root"/etc/berth-os/{boot,sshd,local,shutdown,shares,udhcpc.script} "$root"/etc/acpi/PWRF/*
chmod 0640 "$root/etc/shadow"
cat >"$root/etc/os-release" <<EOF
NAME="berth-os"
ID=berth-os
VERSION="$version"
VERSION_ID=$version
PRETTY_NAME="berth-os $version"
BUILD_ID="debian12-linux-${ver[$kernel_pkg]}"
EOF
ln -s ../../etc/os-release "$root/usr/lib/os-release"
echo "$version" >"$root/etc/berth-os/version"

# kernel modules: the list above plus what they depend on
mdir=lib/modules/$kver
declare -A want=()
for m in "${modules[@]}"; do
  deps=$(modprobe -d "$kx" -S "$kver" --show-depends "$m" 2>/dev/null | sed -n "s|^insmod $kx/$mdir/||p") ||
    die "kernel module $m is not in $kernel_pkg"
  for f in $deps; do want[$f]=1; done
done
for f in "${!want[@]}"; do
  mkdir -p "$root/usr/$mdir/$(dirname "$f")"
  cp "$kx/$mdir/$f" "$root/usr/$mdir/$f"
done
cp "$kx/$mdir"/modules.{order,builtin,builtin.modinfo} "$root/usr/$mdir/"
depmod -b "$root" "$kver"
log "$(find "$root/usr/$mdir" -name '*.ko' | wc -l) kernel modules"

# reproducible archive: fixed owners and times
find "$root" -exec touch -h -d @0 {} +
log "packing the initrd"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) |
  zstd -q -19 -T0 --check >"$work/initrd"
cp "$kx/boot/vmlinuz-$kver" "$work/vmlinuz"
# The same kernel uncompressed: QEMU boots this ELF through its PVH entry point and skips
# the real-mode setup and the xz decompression, 3 s under TCG.
off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$work/vmlinuz" | awk -F: 'NR == 1 {print $1}')
[ -n "$off" ] || die "vmlinuz-$kver holds no xz payload; cannot make vmlinux"
xz -dc --single-stream < <(tail -c +$((off + 1)) "$work/vmlinuz") >"$work/vmlinux"  # tail gets SIGPIPE
readelf -n "$work/vmlinux" | grep -q '(0x00000012)' || die "vmlinux-$kver has no PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY)"
echo "$cmdline" >"$work/cmdline"

# --- ISO ---------------------------------------------------------------------------------
log "making the ISO"
iso=$work/iso
mkdir -p "$iso/isolinux" "$iso/boot"
cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$iso/isolinux/"
cp "$work/vmlinuz" "$work/initrd" "$iso/boot/"
cat >"$iso/isolinux/isolinux.cfg" <<EOF
serial 0 115200
default berth-os
prompt 0
timeout 1
label berth-os
  kernel /boot/vmlinuz
  append initrd=/boot/initrd $cmdline
EOF
find "$iso" -exec touch -h -d @0 {} +
xorriso -as mkisofs -quiet -o "$work/berth-os.iso" -V BERTH_OS -J -r \
  -isohybrid-mbr /usr/lib/ISOLINUX/isohdpfx.bin -c isolinux/boot.cat -b isolinux/isolinux.bin \
  -no-emul-boot -boot-load-size 4 -boot-info-table "$iso" 2>/dev/null

for f in vmlinuz vmlinux initrd berth-os.iso cmdline; do mv -f "$work/$f" "$out/$f"; done
(cd "$out" && sha256sum vmlinuz vmlinux initrd berth-os.iso cmdline >SHA256SUMS)
echo "$manifest" >"$out/packages.txt"
echo "$stamp" >"$out/.stamp"
log "berth-os $version in $out: vmlinuz $(stat -c %s "$out/vmlinuz") B, vmlinux $(stat -c %s "$out/vmlinux") B, initrd $(stat -c %s "$out/initrd") B, berth-os.iso $(stat -c %s "$out/berth-os.iso") B"
