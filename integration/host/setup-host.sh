#!/usr/bin/env bash
# Idempotent host setup for berth on Debian 12 from a source checkout: installs rootless Podman,
# its helpers and the test suite's tools (apt), then runs packaging/setup-host, the same setup the
# Debian package's postinst runs as /usr/lib/berth/setup-host (identities, subordinate ids, state
# directories, Podman settings). Never changes shared directories or other users' files. Safe to
# run again.
set -euo pipefail

log() { printf 'setup-host: %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "run as root (it installs packages and creates berth's identities)"; exit 1; }

# What berth runs (the package's Depends) and what only the tests and benchmarks use
# (buildah, rootlesskit, busybox-static, debootstrap, docker-registry, hyperfine, git, ...).
packages=(podman buildah runc conmon fuse-overlayfs slirp4netns uidmap catatonit skopeo busybox-static
          rootlesskit debootstrap docker-registry hyperfine git iproute2 procps ca-certificates)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# docker-registry starts itself as a system service on install; tests start their own on loopback.
systemctl disable --now docker-registry >/dev/null 2>&1 || true

exec "$(dirname "${BASH_SOURCE[0]}")/../../packaging/setup-host"
