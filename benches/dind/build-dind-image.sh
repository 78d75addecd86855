#!/usr/bin/env bash
# The DinD-style comparison's image: the build-tools root filesystem (debootstrap minbase
# bookworm, from integration/images/build-test-images.sh) plus dockerd, containerd, runc and tini
# from Debian's own packages, imported into root's (rootful) Podman store as
# localhost/dind-bench:latest. Benchmarks only; berth never runs anything privileged.
# Idempotent; run as root after scripts/test-all.
set -euo pipefail
CACHE=${BERTH_TEST_CACHE:-/var/cache/berth-test}
podman image exists localhost/dind-bench:latest && exit 0
[ -s "$CACHE/build-tools.tar" ] || { echo "missing $CACHE/build-tools.tar: run scripts/test-all first" >&2; exit 1; }
work=$(mktemp -d "$CACHE/dind-XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 0777 "$work"
(cd "$work" && { apt-get download -qq docker.io containerd runc tini >/dev/null 2>&1 ||
  { apt-get update -qq && apt-get download -qq docker.io containerd runc tini >/dev/null; }; })
mkdir "$work/root" "$work/debs"
tar -C "$work/root" -xf "$CACHE/build-tools.tar"
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/debs"; done
# Only usr/ and etc/: the packages' ./lib would replace merged-/usr's lib -> usr/lib symlink.
cp -a "$work/debs/usr/." "$work/root/usr/"
cp -a "$work/debs/etc/." "$work/root/etc/"
tar -C "$work/root" -cf "$work/dind.tar" .
podman import --change 'CMD ["/bin/bash"]' "$work/dind.tar" localhost/dind-bench:latest >/dev/null
