#!/usr/bin/env bash
# The floor: the same Podman operations as one berth job, by hand with the CLI, as the runner user:
# a per-job store over the shared base store, a pod, helper and job containers, seven
# `podman exec` stage runs, then removal of the pod and the store.
set -euo pipefail
USER_NAME=${BERTH_RUNNER_USER:-berth-runner}
IMAGE=${IMAGE:-localhost/busybox:latest}
HELPER=${HELPER:-localhost/berth-helper:latest}
uid=$(id -u "$USER_NAME")
key=floor$$
# The store user's own scratch directory (berth's jobs/ is root's); same file system as the store.
J=/var/lib/berth/cache/.floor-$key R=/run/user/$uid/berth/$key
runuser -u "$USER_NAME" -- env -C / HOME="$(getent passwd "$USER_NAME" | cut -d: -f6)" \
  CONTAINERS_CONF=/etc/berth/podman/containers/containers.conf \
  XDG_RUNTIME_DIR=/run/user/$uid bash -euo pipefail -c '
J=$1 R=$2 IMAGE=$3 HELPER=$4 key=$5
mkdir -p "$J/storage" "$J/builds" "$R/run" "$R/tmp"
P="podman --root $J/storage --runroot $R/run --tmpdir $R/tmp --storage-driver overlay --storage-opt overlay.imagestore=/var/lib/berth/images --cgroup-manager cgroupfs --events-backend file"
$P pod create --name "$key" >/dev/null
$P run -d --pod "$key" --name "$key-helper" -v "$J/builds:/builds" --entrypoint "" "$HELPER" sleep infinity >/dev/null
$P run -d --pod "$key" --name "$key-job" -v "$J/builds:/builds" "$IMAGE" sleep 100000 >/dev/null
for c in helper helper job job helper helper helper; do
  echo true | $P exec -i "$key-$c" sh -s
done
$P pod rm -f -t 0 "$key" >/dev/null
$P unshare sh -c "umount -l $J/storage/overlay 2>/dev/null; rm -rf $J"
# podman unshare leaves a fresh store skeleton behind, its user's own files.
rm -rf "$J" "$R"
' _ "$J" "$R" "$IMAGE" "$HELPER" "$key"
