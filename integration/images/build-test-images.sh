#!/usr/bin/env bash
# Builds the test images without any registry and imports them into berth's shared base store:
#   localhost/busybox:latest       busybox-static plus applet links (2 MB)
#   localhost/berth-helper:latest  debootstrap minbase bookworm with git, git-lfs and CA certificates
#   localhost/entrypoint-test:latest busybox with an ENTRYPOINT that wraps the command
#   localhost/bad-entrypoint:latest  busybox whose ENTRYPOINT ignores its command
#   localhost/tcp-service:latest   busybox that listens on an EXPOSEd port (a service)
#   localhost/build-tools:latest   debootstrap minbase bookworm with podman, buildah, curl, docker CLI
# Root filesystems are cached under $BERTH_TEST_CACHE (default /var/cache/berth-test) so reruns
# take seconds. Idempotent; run as root after integration/host/setup-host.sh.
set -euo pipefail
RUNNER_USER=${BERTH_RUNNER_USER:-berth-runner}
STATE_DIR=${BERTH_STATE_DIR:-/var/lib/berth}
CACHE=${BERTH_TEST_CACHE:-/var/cache/berth-test}
MIRROR=${BERTH_DEBIAN_MIRROR:-http://deb.debian.org/debian}
log() { printf 'build-test-images: %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "run as root"; exit 1; }
install -d -m 0755 "$CACHE"
# htpasswd (bcrypt) for the authenticated loopback registry in the pull tests.
command -v htpasswd >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq apache2-utils >/dev/null; }
uid=$(id -u "$RUNNER_USER")
[ -d "/run/user/$uid" ] || install -d -m 0700 -o "$RUNNER_USER" -g "$RUNNER_USER" "/run/user/$uid"
install -d -m 0700 -o "$RUNNER_USER" -g "$RUNNER_USER" "/run/user/$uid/berth"

podman_base() {
  runuser -u "$RUNNER_USER" -- env -C / XDG_RUNTIME_DIR="/run/user/$uid" HOME="$(getent passwd "$RUNNER_USER" | cut -d: -f6)" \
    CONTAINERS_CONF=/etc/berth/podman/containers/containers.conf podman --root "$STATE_DIR/images" --runroot "/run/user/$uid/berth/base-run" --storage-driver overlay \
    --cgroup-manager cgroupfs --events-backend file "$@"
}
have_image() { podman_base image exists "$1" 2>/dev/null; }

busybox_root() {
  local dir=$1
  rm -rf "$dir"; mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp" "$dir/root"
  chmod 1777 "$dir/tmp"
  cp /bin/busybox "$dir/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
  done
  mkdir -p "$dir/usr/bin"; ln -sf /bin/env "$dir/usr/bin/env"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
}

import_tar() { # name tar [--change ...]
  local name=$1 tar=$2; shift 2
  local args=()
  for c in "$@"; do args+=(--change "$c"); done
  chmod 0644 "$tar"
  podman_base import "${args[@]}" "$tar" "$name" >/dev/null
  log "imported $name"
}

if ! have_image localhost/busybox:latest || ! have_image localhost/tcp-service:latest; then
  busybox_root "$CACHE/busybox-root"
  tar -C "$CACHE/busybox-root" -cf "$CACHE/busybox.tar" .
  have_image localhost/busybox:latest || import_tar localhost/busybox:latest "$CACHE/busybox.tar" 'CMD ["/bin/sh"]'
  have_image localhost/entrypoint-test:latest || {
    cp -a "$CACHE/busybox-root" "$CACHE/ep-root"
    printf '#!/bin/sh\nexport FROM_ENTRYPOINT=yes\nexec "$@"\n' >"$CACHE/ep-root/entrypoint.sh"
    chmod 0755 "$CACHE/ep-root/entrypoint.sh"
    tar -C "$CACHE/ep-root" -cf "$CACHE/ep.tar" . && rm -rf "$CACHE/ep-root"
    import_tar localhost/entrypoint-test:latest "$CACHE/ep.tar" 'ENTRYPOINT ["/entrypoint.sh"]' 'CMD ["/bin/sh"]'
  }
  have_image localhost/bad-entrypoint:latest ||
    import_tar localhost/bad-entrypoint:latest "$CACHE/busybox.tar" 'ENTRYPOINT ["/bin/false"]'
  have_image localhost/tcp-service:latest ||
    import_tar localhost/tcp-service:latest "$CACHE/busybox.tar" 'EXPOSE 8080/tcp' \
      'CMD ["/bin/sh", "-c", "mkdir -p /www && echo service-says-hello > /www/index.html && exec httpd -f -p 8080 -h /www"]'
fi

if ! have_image localhost/berth-helper:latest; then
  if [ ! -s "$CACHE/helper.tar" ]; then
    log "debootstrap minbase bookworm with git (about a minute)"
    rm -rf "$CACHE/helper-root"
    debootstrap --variant=minbase --include=git,git-lfs,ca-certificates,curl bookworm "$CACHE/helper-root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
      { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
    rm -rf "$CACHE/helper-root/var/cache/apt/archives/"*.deb "$CACHE/helper-root/var/lib/apt/lists/"*
    tar -C "$CACHE/helper-root" -cf "$CACHE/helper.tar.tmp" . && mv "$CACHE/helper.tar.tmp" "$CACHE/helper.tar"
    rm -rf "$CACHE/helper-root"
  fi
  import_tar localhost/berth-helper:latest "$CACHE/helper.tar" 'CMD ["/bin/bash"]'
fi

if ! have_image localhost/build-tools:latest; then
  if [ ! -s "$CACHE/build-tools.tar" ]; then
    log "debootstrap minbase bookworm with podman, buildah, curl and the docker CLI (a few minutes)"
    rm -rf "$CACHE/bt-root" "$CACHE/docker-deb"
    debootstrap --variant=minbase --include=podman,buildah,netavark,slirp4netns,fuse-overlayfs,uidmap,ca-certificates,curl \
      bookworm "$CACHE/bt-root" "$MIRROR" >"$CACHE/debootstrap-bt.log" 2>&1 ||
      { tail -20 "$CACHE/debootstrap-bt.log" >&2; exit 1; }
    # Only the docker CLI from Debian's docker.io, not its daemon.
    mkdir -p "$CACHE/docker-deb" && chmod 0777 "$CACHE/docker-deb"
    (cd "$CACHE/docker-deb" && { apt-get download -qq docker.io >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get download -qq docker.io >/dev/null; }; })
    dpkg-deb --fsys-tarfile "$CACHE"/docker-deb/docker.io_*.deb | tar -x -C "$CACHE/docker-deb" ./usr/bin/docker
    install -m 0755 "$CACHE/docker-deb/usr/bin/docker" "$CACHE/bt-root/usr/local/bin/docker"
    rm -rf "$CACHE/bt-root/var/cache/apt/archives/"*.deb "$CACHE/bt-root/var/lib/apt/lists/"* "$CACHE/docker-deb"
    tar -C "$CACHE/bt-root" -cf "$CACHE/build-tools.tar.tmp" . && mv "$CACHE/build-tools.tar.tmp" "$CACHE/build-tools.tar"
    rm -rf "$CACHE/bt-root"
  fi
  import_tar localhost/build-tools:latest "$CACHE/build-tools.tar" 'CMD ["/bin/bash"]'
fi

# Podman builds its pod infra image on first use; build it once in the base store so that every
# job store finds it read-only instead of building its own copy.
if ! podman_base image exists "localhost/podman-pause:$(podman_base version --format '{{.Client.Version}}')-0" 2>/dev/null; then
  podman_base pod create --name berth-seed-pause >/dev/null && podman_base pod rm -f berth-seed-pause >/dev/null
  log "built the pod infra image"
fi
log "ok"
