#!/usr/bin/env bash
# A clean Debian 12 (bookworm) root for the package tests (integration/tests/package.rs): made
# once with `debootstrap --variant=minbase` from deb.debian.org and kept as a tarball outside the
# repository; each test unpacks a fresh copy of it. Prints the tarball's path.
#
#   BERTH_PEERS_DIR  default /var/cache/berth-peers
#   tarball          $BERTH_PEERS_DIR/debian-root/bookworm-minbase.tar (+ .stamp)
#
# Idempotent and quiet on success. Needs debootstrap (setup-host.sh installs it) and the network
# to deb.debian.org; without either it fails with debootstrap's own error.
set -euo pipefail

PEERS_DIR=${BERTH_PEERS_DIR:-/var/cache/berth-peers}
OUT_DIR=$PEERS_DIR/debian-root
TARBALL=$OUT_DIR/bookworm-minbase.tar
MIRROR=${BERTH_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Bump when the recipe changes, so a cached root is made again.
RECIPE=1
WANT="recipe=$RECIPE suite=bookworm variant=minbase mirror=$MIRROR"

log() { printf 'debian-root: %s\n' "$*" >&2; }

mkdir -p "$OUT_DIR"
exec 9>"$OUT_DIR/.lock"
flock 9

if [ -s "$TARBALL" ] && [ "$(cat "$TARBALL.stamp" 2>/dev/null)" = "$WANT" ]; then
  echo "$TARBALL"
  exit 0
fi
command -v debootstrap >/dev/null || { log "debootstrap is missing (fix: integration/host/setup-host.sh installs it)"; exit 1; }

work=$(mktemp -d "$OUT_DIR/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
log "debootstrap --variant=minbase bookworm from $MIRROR (a few minutes)"
start=$SECONDS
if ! debootstrap --variant=minbase bookworm "$work/root" "$MIRROR" >"$work/log" 2>&1; then
  log "debootstrap failed:"
  tail -n 20 "$work/log" >&2
  [ -f "$work/root/debootstrap/debootstrap.log" ] && tail -n 20 "$work/root/debootstrap/debootstrap.log" >&2
  exit 1
fi
# A clean root has no downloaded packages and no package lists; the tests bring their own.
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
tar -C "$work/root" --numeric-owner -cf "$work/root.tar" .
mv "$work/root.tar" "$TARBALL"
echo "$WANT" >"$TARBALL.stamp"
log "made $TARBALL in $((SECONDS - start)) s"
echo "$TARBALL"
