#!/usr/bin/env bash
# Idempotent host setup for berth on Debian 12: installs rootless Podman and its helpers, creates the
# unprivileged runner user with large subuid/subgid ranges, and writes the Podman settings that
# ../shared/reference/host-podman.md measured as necessary. Safe to run again at any time.
set -euo pipefail

RUNNER_USER=${BERTH_RUNNER_USER:-berth-runner}
STATE_DIR=${BERTH_STATE_DIR:-/var/lib/berth}
SUBID_COUNT=${BERTH_SUBID_COUNT:-1000000}

log() { printf 'setup-host: %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "run as root (it installs packages and creates $RUNNER_USER)"; exit 1; }

packages=(podman buildah runc conmon fuse-overlayfs slirp4netns uidmap catatonit busybox-static
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

if ! id -u "$RUNNER_USER" >/dev/null 2>&1; then
  log "creating user $RUNNER_USER"
  useradd --system --create-home --home-dir "/home/$RUNNER_USER" --shell /bin/bash "$RUNNER_USER"
fi
uid=$(id -u "$RUNNER_USER")

# One large, non-overlapping subordinate range so nested user namespaces (builds in jobs) fit.
ensure_subid() {
  local file=$1
  touch "$file"
  grep -q "^$RUNNER_USER:" "$file" && return 0
  local start=100000 end
  while read -r line; do
    IFS=: read -r _ s c <<<"$line"
    [ -n "${c:-}" ] || continue
    end=$((s + c))
    [ "$end" -gt "$start" ] && start=$end
  done <"$file"
  echo "$RUNNER_USER:$start:$SUBID_COUNT" >>"$file"
}
ensure_subid /etc/subuid
ensure_subid /etc/subgid

# slirp4netns needs the tun device; Debian's container images ship it 0660 root.
if [ ! -e /dev/net/tun ]; then mkdir -p /dev/net; mknod /dev/net/tun c 10 200; fi
chmod 0666 /dev/net/tun

runtime_dir=/run/user/$uid
install -d -m 0700 -o "$RUNNER_USER" -g "$RUNNER_USER" /run/user "$runtime_dir" 2>/dev/null ||
  { install -d -m 0755 /run/user; install -d -m 0700 -o "$RUNNER_USER" -g "$RUNNER_USER" "$runtime_dir"; }

home=$(getent passwd "$RUNNER_USER" | cut -d: -f6)
conf=$home/.config/containers
install -d -m 0700 -o "$RUNNER_USER" -g "$RUNNER_USER" "$home/.config" "$conf"
hard_nofile=$(ulimit -Hn)
nofile=$(( hard_nofile < 1048576 ? hard_nofile : 1048576 ))
cat >"$conf/containers.conf" <<CONF
# Written by berth's setup-host.sh. crun refuses hybrid cgroups; rlimits must fit the hard limit.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
cat >"$conf/storage.conf" <<CONF
# Written by berth's setup-host.sh. Without an explicit driver rootless Podman falls back to vfs.
[storage]
driver = "overlay"
CONF
chown "$RUNNER_USER:$RUNNER_USER" "$conf/containers.conf" "$conf/storage.conf"

install -d -m 0755 -o "$RUNNER_USER" -g "$RUNNER_USER" "$STATE_DIR"
install -d -m 0700 -o "$RUNNER_USER" -g "$RUNNER_USER" "$STATE_DIR/jobs" "$STATE_DIR/cache"
install -d -m 0755 -o "$RUNNER_USER" -g "$RUNNER_USER" "$STATE_DIR/images"
log "ok: user $RUNNER_USER (uid $uid), state in $STATE_DIR"
