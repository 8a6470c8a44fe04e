#!/usr/bin/env bash
# The Debian package end to end: builds it (the deb target), installs it on this machine,
# makes a libvirt VM with the installed /usr/bin/berth (no build tree on PATH, a private
# store), points docker at it, then removes the VM and the package, also on failure.
# Usage: package_test.sh BUILDDIR     (root, libvirtd, the docker CLI, image/out built)
#        BERTH_DEB_PREBUILT=1: the deb target was built already
set -euo pipefail
build=$1
name=pkgtest
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $* ($SECONDS s)"; }

[ "$(id -u)" = 0 ] || skip "needs root (installs a package)"
command -v virsh >/dev/null && virsh -c qemu:///system version >/dev/null 2>&1 || skip "libvirtd is not running"
command -v docker >/dev/null || skip "no docker CLI"
if dpkg-query -W -f '${Status}' berth 2>/dev/null | grep -q installed; then
  skip "a berth package is already installed; this test would replace and remove it"
fi

if [[ ${BERTH_DEB_PREBUILT:-} != 1 ]]; then  # ctest builds it first (it_package_deb)
  step "building the package"
  cmake --build "$build" --target deb
fi
deb=$(ls -t "$build"/berth_*_amd64.deb | head -1)
echo "$deb: $(stat -c %s "$deb") bytes"

step "checking its fields and files"
fields=$(dpkg-deb -f "$deb" Package Version Architecture Depends Recommends Suggests)
echo "$fields"
grep -q '^Depends:.*libc6' <<<"$fields" || fail "Depends has no shared libraries (shlibdeps)"
grep -q '^Depends:.*openssh-client' <<<"$fields" || fail "Depends lacks openssh-client"
grep -q '^Depends:.*libcurl4' <<<"$fields" || fail "Depends lacks libcurl4 (opened by every command that talks to an agent)"
grep -q '^Depends:.*libvirt' <<<"$fields" && fail "Depends has libvirt: berth opens it only for the libvirt driver"
grep -q '^Recommends: libvirt0, libvirt-daemon-system, qemu-system-x86, qemu-utils, libxml2$' <<<"$fields" || fail "wrong Recommends"
grep -q '^Suggests: etcd-server, vde2$' <<<"$fields" || fail "wrong Suggests"
files=$(dpkg-deb -c "$deb" | awk '{print $6}')
for f in ./usr/bin/berth ./usr/lib/berth/berth-agent ./usr/share/berth/os/vmlinuz ./usr/share/berth/os/initrd \
         ./usr/share/berth/os/cmdline ./usr/share/berth/os/berth-os.iso \
         ./usr/share/bash-completion/completions/berth ./usr/share/zsh/vendor-completions/_berth \
         ./usr/share/fish/vendor_completions.d/berth.fish \
         ./usr/share/man/man1/berth.1.gz ./usr/share/man/man1/berth-create.1.gz ./usr/share/man/man1/berth-rm.1.gz; do
  grep -qx "$f" <<<"$files" || fail "the package lacks $f"
done

tmp=$(mktemp -d /tmp/berth-pkgtest.XXXXXX)
installed=no
cleanup() {
  local rc=$?
  set +e
  if [ -x /usr/bin/berth ] && [ -d "$tmp/store" ]; then
    BERTH_STORAGE_PATH="$tmp/store" /usr/bin/berth rm -f -y "$name" >/dev/null 2>&1
  fi
  [ $installed = yes ] && dpkg -r berth >/dev/null 2>&1
  rm -rf "$tmp"
  exit $rc
}
trap cleanup EXIT

step "installing it"
apt-get install -y --no-install-recommends "$deb"
installed=yes
[ -x /usr/bin/berth ] || fail "no /usr/bin/berth after the install"

# The user's view: system PATH only (docker lives in /usr/local/bin), no BERTH_* from the build.
user_env=(env -i HOME="$tmp/home" PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
          BERTH_STORAGE_PATH="$tmp/store" TERM=dumb)
mkdir -p "$tmp/home"
cd "$tmp"
as_user() { "${user_env[@]}" bash -c "$1"; }
[ "$(as_user 'command -v berth')" = /usr/bin/berth ] || fail "berth on PATH is $(as_user 'command -v berth'), not /usr/bin/berth"

step "berth create (installed berth, default libvirt driver)"
as_user "berth create --libvirt-no-share --no-forward $name"
as_user "berth inspect $name" >"$tmp/inspect.json"
grep -q '"image": *"/usr/share/berth/os"' "$tmp/inspect.json" || { cat "$tmp/inspect.json"; fail "the VM did not boot the packaged berth-os"; }

step "docker version through berth env"
out=$(as_user "eval \"\$(berth env $name)\" && docker version")
echo "$out"
grep -q '^Server' <<<"$out" || fail "docker version shows no server"

step "berth rm"
as_user "berth rm -f -y $name"
[ -z "$(as_user 'berth ls -q')" ] || fail "berth ls still lists machines after rm"

step "man pages and completions"
if command -v man >/dev/null; then
  page=$(as_user 'man -w berth-create')
  [ "$page" = /usr/share/man/man1/berth-create.1.gz ] || fail "man -w berth-create gave '$page'"
  as_user 'MANWIDTH=80 man berth-create' | grep -q -- '--libvirt-no-share' || fail "berth-create(1) lacks --libvirt-no-share"
fi
[ -f /usr/share/bash-completion/completions/berth ] || fail "no bash completion"
grep -q 'complete .*berth' /usr/share/bash-completion/completions/berth || fail "the bash completion registers nothing"

step "removing the package"
dpkg -r berth
installed=no
[ ! -e /usr/bin/berth ] && [ ! -e /usr/lib/berth/berth-agent ] && [ ! -e /usr/share/berth/os/vmlinuz ] ||
  fail "dpkg -r left berth's files behind"
echo "PASS ($SECONDS s)"
