#!/usr/bin/env bash
# Builds the Debian 12 root filesystem that the system test boots with
# systemd-nspawn, once: the result is a tarball cached in the project's target
# directory, named by this script's hash so that a changed recipe rebuilds it.
# Only debootstrap's output goes in; the test installs leco into a fresh copy.
#
#   scripts/systest-rootfs.sh [CACHE_DIR]   prints the tarball's path
#
# Needs root, debootstrap and network access to the Debian mirror that apt
# already uses on this machine (see ../shared/PLATFORM.md).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-$here/../target/systest}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
key=$(sha256sum "$0" | cut -c1-16)
tarball=$cache/rootfs-bookworm-$key.tar

if [ -s "$tarball" ]; then
  echo "$tarball"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "systest-rootfs: needs root (debootstrap)" >&2
  exit 1
fi
command -v debootstrap >/dev/null || {
  echo "systest-rootfs: debootstrap missing (apt-get install debootstrap systemd-container)" >&2
  exit 1
}

# The mirror apt uses here: the first Debian archive (not the security one)
# named in deb822 sources or a one-line sources.list.
mirror=$(
  {
    awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' /etc/apt/sources.list.d/*.sources 2>/dev/null
    awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/) { print $i; break } }' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
  } | grep -v -e security -e '^$' | head -n1 || true
)
mirror=${mirror:-http://deb.debian.org/debian}

# Remove older recipes' tarballs: one cache entry at a time.
find "$cache" -maxdepth 1 -name 'rootfs-bookworm-*.tar' ! -name "$(basename "$tarball")" -delete

work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "systest-rootfs: debootstrap bookworm from $mirror (about a minute, once)" >&2
# systemd + dbus: the booted system under test; libpam/libnss-systemd:
# DynamicUser and logins; bpftool: to look at loaded programs from inside;
# systemd-resolved: the lookups leco names connections from (never installed
# on the host: only in this root filesystem).
# Everything else the test uses (bash's /dev/tcp, systemd-socket-activate,
# setpriv, useradd, busctl) is already in minbase or systemd.
if ! debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,libpam-systemd,libnss-systemd,bpftool,systemd-resolved \
  bookworm "$work/root" "$mirror" >"$work/log" 2>&1; then
  tail -n 30 "$work/log" >&2
  echo "systest-rootfs: debootstrap failed (full log above, last lines)" >&2
  exit 1
fi
# No caches or apt lists: smaller tarball, nothing the test needs.
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
tar -C "$work/root" --numeric-owner -cf "$work/rootfs.tar" .
mv "$work/rootfs.tar" "$tarball"
echo "$tarball"
