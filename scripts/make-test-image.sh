#!/usr/bin/env bash
# Builds a small busybox image as a docker-archive tarball (what `docker save`
# writes and `docker load` / `skopeo ... docker-archive:` read), offline and
# reproducibly: the same busybox .deb gives the same bytes, hence the same
# image ID and layer digest.
#
# Usage: scripts/make-test-image.sh OUT.tar [name:tag]      (default busybox:latest)
#
# The busybox binary comes from Debian's busybox-static package: the .deb that
# image/build.sh already downloaded (image/out/.cache/debs), else
# `apt-get download busybox-static` into $BERTH_CACHE_DIR/debs
# (default ~/.cache/berth/debs). The host's own busybox is never used.
#
# The image: linux/amd64, Cmd ["sh"], one layer with /bin/busybox and a
# symlink per applet in /bin (sh, echo, true, cat, sleep, wget, nc, nslookup,
# ping, ip, hostname, id, ls, httpd, ...), /etc/passwd and /etc/group with root
# and nobody, and the usual empty directories (/tmp is 1777).
set -euo pipefail

usage() { echo "usage: $0 OUT.tar [name:tag]" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 ]] || usage
out=$1
ref=${2:-busybox:latest}
[[ $ref == *:* ]] || ref="$ref:latest"
here=$(cd "$(dirname "$0")/.." && pwd)

# Fixed timestamps make the tarballs reproducible.
epoch=${SOURCE_DATE_EPOCH:-1704067200}  # 2024-01-01
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)

find_deb() {
  local dir
  for dir in "$here/image/out/.cache/debs" "${BERTH_CACHE_DIR:-$HOME/.cache/berth}/debs"; do
    compgen -G "$dir/busybox-static_*_amd64.deb" >/dev/null || continue
    # The newest version if several are cached.
    ls -1 "$dir"/busybox-static_*_amd64.deb | sort -V | tail -n 1
    return 0
  done
  return 1
}

deb=$(find_deb || true)
if [[ -z $deb ]]; then
  cache="${BERTH_CACHE_DIR:-$HOME/.cache/berth}/debs"
  mkdir -p "$cache"
  (cd "$cache" && apt-get download busybox-static:amd64 >&2) || {
    echo "$0: cannot download busybox-static (try: apt-get update)" >&2
    exit 1
  }
  deb=$(find_deb) || { echo "$0: apt-get download gave no busybox-static .deb" >&2; exit 1; }
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-test-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$deb" "$work/deb"
bb="$work/deb/bin/busybox"
[[ -x $bb ]] || { echo "$0: $deb holds no /bin/busybox" >&2; exit 1; }

# The root file system of the single layer.
root="$work/root"
mkdir -p "$root"/{bin,dev,etc,home,proc,root,sys,tmp,usr/bin,usr/sbin,var/www,var/spool/mail}
chmod 0755 "$root" "$root"/{bin,dev,etc,home,proc,sys,usr,usr/bin,usr/sbin,var,var/www,var/spool,var/spool/mail}
chmod 0700 "$root/root"
chmod 1777 "$root/tmp"
install -m 0755 "$bb" "$root/bin/busybox"
# Every applet the binary has, as /bin/<applet> -> busybox (as the official image does).
mapfile -t applets < <("$bb" --list | LC_ALL=C sort -u)
for applet in "${applets[@]}"; do
  [[ $applet == busybox || $applet == */* || -z $applet ]] && continue
  ln -s busybox "$root/bin/$applet"
done
for needed in sh echo true cat sleep wget nc nslookup ping ip hostname id ls httpd; do
  [[ -L $root/bin/$needed ]] || { echo "$0: busybox in $deb lacks '$needed'" >&2; exit 1; }
done
printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/home:/bin/false' >"$root/etc/passwd"
printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' 'nobody:x:65534:' >"$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group"

# tar with fixed order, owners and times.
det_tar() { # DIR OUTFILE
  # Entries named like docker's ("bin/busybox", not "./bin/busybox"), sorted.
  (cd "$1" && LC_ALL=C find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
    LC_ALL=C tar --no-recursion -T - --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
      --format=gnu --no-acls --no-xattrs --no-selinux -cf "$2")
}
det_tar "$root" "$work/layer.tar"
layer_sha=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)

# Image config: compact JSON with a fixed key order.
config=$(jq -cn --arg created "$created" --arg diff "sha256:$layer_sha" --arg bbver "$(basename "$deb")" '{
  architecture: "amd64",
  config: {
    Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    Cmd: ["sh"]
  },
  created: $created,
  history: [
    {created: $created, created_by: ("berth scripts/make-test-image.sh: " + $bbver)},
    {created: $created, created_by: "CMD [\"sh\"]", empty_layer: true}
  ],
  os: "linux",
  rootfs: {type: "layers", diff_ids: [$diff]}
}')
config_sha=$(printf '%s' "$config" | sha256sum | cut -d' ' -f1)

archive="$work/archive"
mkdir -p "$archive/$layer_sha"
mv "$work/layer.tar" "$archive/$layer_sha/layer.tar"
printf '1.0' >"$archive/$layer_sha/VERSION"
printf '%s' "$config" >"$archive/$config_sha.json"
jq -cn --arg cfg "$config_sha.json" --arg ref "$ref" --arg layer "$layer_sha/layer.tar" \
  '[{Config: $cfg, RepoTags: [$ref], Layers: [$layer]}]' | tr -d '\n' >"$archive/manifest.json"
repo=${ref%:*}
tag=${ref##*:}
jq -cn --arg repo "$repo" --arg tag "$tag" --arg id "$layer_sha" '{($repo): {($tag): $id}}' | tr -d '\n' \
  >"$archive/repositories"
find "$archive" -type d -exec chmod 0755 {} +
find "$archive" -type f -exec chmod 0644 {} +

mkdir -p "$(dirname "$out")"
det_tar "$archive" "$work/image.tar"
mv "$work/image.tar" "$out"
echo "$out: $ref sha256:$config_sha ($(du -k "$out" | cut -f1) KiB, layer sha256:$layer_sha)"
