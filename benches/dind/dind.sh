#!/usr/bin/env bash
# A DinD-style builder as GitLab users run it: a fresh privileged dockerd in its own container,
# its data on a fresh host directory. `dind.sh start NAME` returns once dockerd answers;
# `dind.sh stop NAME` removes container and data.
# Rootful Podman here cannot raise RLIMIT_NOFILE/NPROC beyond the host's hard limits (no
# CAP_SYS_RESOURCE in this sandbox), so the limits are given explicitly.
set -euo pipefail
name=$2
data=/var/tmp/dind-bench-$name
case $1 in
start)
  rm -rf "$data" && mkdir -p "$data"
  podman run -d --name "$name" --privileged --ulimit nofile=16384:16384 --ulimit nproc=32768:32768 \
    -v "$data:/var/lib/docker" ${DIND_MOUNTS:-} localhost/dind-bench:latest dockerd --iptables=false >/dev/null
  for _ in $(seq 1 300); do
    podman exec "$name" docker version >/dev/null 2>&1 && exit 0
    sleep 0.05
  done
  podman logs "$name" >&2; exit 1 ;;
stop)
  podman rm -f -t 0 "$name" >/dev/null 2>&1 || true
  rm -rf "$data" ;;
esac
