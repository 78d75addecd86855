#!/usr/bin/env bash
# Idempotent host setup for berth on Debian 12: installs rootless Podman and its helpers, creates the
# store identity and BERTH_JOB_SLOTS job identities with disjoint subuid/subgid ranges, and writes
# the Podman settings that docs/reference/host-podman.md measured as necessary (once, into
# /etc/berth/podman). Never changes shared directories or other users' files. Safe to run again.
set -euo pipefail

RUNNER_USER=${BERTH_RUNNER_USER:-berth-runner}
STATE_DIR=${BERTH_STATE_DIR:-/var/lib/berth}
SUBID_COUNT=${BERTH_SUBID_COUNT:-1000000}
JOB_SLOTS=${BERTH_JOB_SLOTS:-8}
JOB_USER_PREFIX=${BERTH_JOB_USER_PREFIX:-berth-job-}

log() { printf 'setup-host: %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "run as root (it installs packages and creates $RUNNER_USER)"; exit 1; }

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

# The store identity owns the shared base store and the kept caches; each job identity runs one
# job at a time (berth leases them) and owns nothing else. None has a login shell; job
# identities have no home either (berth gives each job a home inside its own directory).
ensure_user() {
  local name=$1 home=$2
  id -u "$name" >/dev/null 2>&1 && return 0
  log "creating user $name"
  if [ "$home" = /nonexistent ]; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$name"
  else
    useradd --system --create-home --home-dir "$home" --shell /usr/sbin/nologin "$name"
  fi
}
ensure_user "$RUNNER_USER" "/home/$RUNNER_USER"
job_users=()
for ((n = 0; n < JOB_SLOTS; n++)); do
  job_users+=("$JOB_USER_PREFIX$n")
  ensure_user "$JOB_USER_PREFIX$n" /nonexistent
done
uid=$(id -u "$RUNNER_USER")

# One large range per identity, disjoint from every other range in the file, so that nested user
# namespaces (builds in jobs) fit and no two identities' containers share a host id.
ensure_subid() {
  local file=$1 user=$2
  touch "$file"
  grep -q "^$user:" "$file" && return 0
  local start=100000 end
  while read -r line; do
    IFS=: read -r _ s c <<<"$line"
    [ -n "${c:-}" ] || continue
    end=$((s + c))
    [ "$end" -gt "$start" ] && start=$end
  done <"$file"
  echo "$user:$start:$SUBID_COUNT" >>"$file"
}
for user in "$RUNNER_USER" "${job_users[@]}"; do
  ensure_subid /etc/subuid "$user"
  ensure_subid /etc/subgid "$user"
done

# slirp4netns needs the tun device; Debian's container images ship it 0660 root.
if [ ! -e /dev/net/tun ]; then mkdir -p /dev/net; mknod /dev/net/tun c 10 200; fi
chmod 0666 /dev/net/tun

# /run/user is shared with every other user of the host: made when missing, never re-owned or
# re-moded. berth makes each identity's /run/user/UID itself.
[ -d /run/user ] || install -d -m 0755 -o root -g root /run/user

# berth's Podman settings for every identity, where no job identity can change them
# (XDG_CONFIG_HOME=/etc/berth/podman). Written once; an admin's edits are kept.
conf=/etc/berth/podman/containers
install -d -m 0755 /etc/berth /etc/berth/podman "$conf"
hard_nofile=$(ulimit -Hn)
nofile=$(( hard_nofile < 1048576 ? hard_nofile : 1048576 ))
if [ ! -e "$conf/containers.conf" ]; then
  cat >"$conf/containers.conf" <<CONF
# Written by berth's setup-host.sh (kept when edited). crun refuses hybrid cgroups; rlimits must
# fit the hard limit.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
fi
if [ ! -e "$conf/storage.conf" ]; then
  cat >"$conf/storage.conf" <<CONF
# Written by berth's setup-host.sh (kept when edited). Without an explicit driver rootless Podman
# falls back to vfs.
[storage]
driver = "overlay"
CONF
fi
chmod 0644 "$conf/containers.conf" "$conf/storage.conf"

# State: root's directories, with the store identity's store and caches inside. Job identities
# reach the base store only through the read-only idmapped view berth mounts for each.
install -d -m 0755 -o root -g root "$STATE_DIR"
chown root:root "$STATE_DIR"; chmod 0755 "$STATE_DIR"
for d in images cache buildkit-cache scan-cache; do
  install -d -m 0700 -o "$RUNNER_USER" -g "$RUNNER_USER" "$STATE_DIR/$d"
done
install -d -m 0711 -o root -g root "$STATE_DIR/jobs"
chown root:root "$STATE_DIR/jobs"; chmod 0711 "$STATE_DIR/jobs"
install -d -m 0700 -o root -g root "$STATE_DIR/leases"
install -d -m 0755 -o root -g root "$STATE_DIR/locks" "$STATE_DIR/image-use"
for lock in pull.lock gc.lock; do
  [ -e "$STATE_DIR/locks/$lock" ] || install -m 0644 /dev/null "$STATE_DIR/locks/$lock"
done
log "ok: store identity $RUNNER_USER (uid $uid), ${#job_users[@]} job identities ($JOB_USER_PREFIX*), state in $STATE_DIR"
