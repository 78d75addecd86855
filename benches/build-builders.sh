#!/usr/bin/env bash
# Image builds through each berth builder (nested podman, the build socket, per-job rootless
# BuildKit), side by side in one hyperfine run, against the floor (rootful `podman build` on the
# host) and against a DinD-style builder (a fresh privileged dockerd in a container, Debian's
# docker.io, classic builder like the socket's). Run as root after scripts/test-all set the host
# up (BuildKit from integration/peers/build-buildkit.sh).
# The same small and medium Containerfiles (benches/contexts/) are built with --no-cache.
# Writes benches/results/build-builders.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p berth >/dev/null
BERTH=$PWD/target/release/berth
work=$(mktemp -d /tmp/custom-executorXXXXXX)
dind=dind-builds-$$
trap '"$BERTH" cleanup >/dev/null 2>&1 || true; benches/dind/dind.sh stop "$dind"; rm -rf "$work"' EXIT
BUILDKIT=${BERTH_PEERS_DIR:-/var/cache/berth-peers}/buildkit
printf 'buildkitd = "%s"\n' "$BUILDKIT/buildkitd" >"$work/berth.toml"
export BERTH_CONFIG=$work/berth.toml
printf '{"id": %d, "token": "t", "image": {"name": "localhost/build-tools:latest"}, "job_info": {"project_id": 1}}' \
  "$(( $(date +%s) % 100000000 ))" >"$work/response.json"
export JOB_RESPONSE_FILE=$work/response.json BUILD_EXIT_CODE_FILE=$work/bec TMPDIR=$work \
  BUILD_FAILURE_EXIT_CODE=1 SYSTEM_FAILURE_EXIT_CODE=2 CUSTOM_ENV_CI_RUNNER_SHORT_TOKEN=benchb \
  CUSTOM_ENV_CI_PROJECT_DIR=/builds/bench/project
"$BERTH" prepare >/dev/null 2>&1
# The contexts reach the job through its /builds directory.
key=$("$BERTH" config | sed -n 's/.*"BERTH_JOB_KEY":"\([^"]*\)".*/\1/p')
mkdir -p "/var/lib/berth/jobs/$key/builds/ctx" && cp -r benches/contexts/* "/var/lib/berth/jobs/$key/builds/ctx/"
chown -R berth-runner:berth-runner "/var/lib/berth/jobs/$key/builds/ctx"
# BuildKit resolves FROM through an OCI layout of the base image (no registry here).
uid=$(id -u berth-runner)
runuser -u berth-runner -- env -C / XDG_RUNTIME_DIR=/run/user/$uid HOME=/home/berth-runner CONTAINERS_CONF=/etc/berth/podman/containers/containers.conf TMPDIR=/run/user/$uid/berth \
  podman --root /var/lib/berth/images --runroot /run/user/$uid/berth/base-run --storage-driver overlay \
  image save --format oci-dir -o "/var/lib/berth/jobs/$key/builds/ctx/busybox-oci" localhost/busybox:latest >/dev/null
cp "$BUILDKIT/buildctl" "/var/lib/berth/jobs/$key/builds/ctx/buildctl"
digest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' \
  "/var/lib/berth/jobs/$key/builds/ctx/busybox-oci/index.json")
chown -R berth-runner:berth-runner "/var/lib/berth/jobs/$key/builds/ctx"
chmod -R a+rwX "/var/lib/berth/jobs/$key/builds/ctx"
script() { printf '#!/usr/bin/env bash\nset -e\ncd /builds/ctx/%s\n%s\n' "$1" "$2" >"$work/$3"; }
for size in small medium; do
  script "$size" 'podman build -q --no-cache -t localhost/bench:nested . >/dev/null' "nested-$size"
  script "$size" 'DOCKER_BUILDKIT=0 docker build -q --no-cache -f Containerfile -t localhost/bench:socket . >/dev/null' "socket-$size"
  script "$size" "/builds/ctx/buildctl build --frontend dockerfile.v0 --local context=. --local dockerfile=. --opt filename=Containerfile --no-cache --oci-layout base=/builds/ctx/busybox-oci --opt context:busybox=oci-layout://base@$digest --output type=oci,dest=/tmp/out.tar >/dev/null 2>&1" "buildkit-$size"
done
# The floor: rootful podman on the host, with busybox in root's store.
podman image exists localhost/busybox:latest 2>/dev/null ||
  podman import --change 'CMD ["/bin/sh"]' /var/cache/berth-test/busybox.tar localhost/busybox:latest >/dev/null
# DinD starts empty: the base image goes in once, as a registry pull would put it there.
benches/dind/build-dind-image.sh
DIND_MOUNTS="-v $PWD/benches/contexts:/ctx:ro -v /var/cache/berth-test/busybox.tar:/busybox.tar:ro" \
  benches/dind/dind.sh start "$dind"
podman exec "$dind" docker import /busybox.tar busybox:latest >/dev/null
dind_build() { echo "podman exec -e DOCKER_BUILDKIT=0 $dind docker build -q --no-cache -f /ctx/$1/Containerfile -t bench:dind /ctx/$1"; }
mkdir -p benches/results
hyperfine --warmup 1 --runs "${RUNS:-8}" \
  --export-markdown benches/results/build-builders.md --export-json benches/results/build-builders.json \
  -n "small: rootful podman build (floor)" "podman build -q --no-cache -t localhost/bench:floor benches/contexts/small" \
  -n "small: nested podman in the job" "$BERTH run $work/nested-small build_script" \
  -n "small: docker CLI via build socket" "$BERTH run $work/socket-small build_script" \
  -n "small: buildctl via per-job rootless BuildKit" "$BERTH run $work/buildkit-small build_script" \
  -n "small: DinD (privileged dockerd, classic builder)" "$(dind_build small)" \
  -n "medium: rootful podman build (floor)" "podman build -q --no-cache -t localhost/bench:floor benches/contexts/medium" \
  -n "medium: nested podman in the job" "$BERTH run $work/nested-medium build_script" \
  -n "medium: docker CLI via build socket" "$BERTH run $work/socket-medium build_script" \
  -n "medium: buildctl via per-job rootless BuildKit" "$BERTH run $work/buildkit-medium build_script" \
  -n "medium: DinD (privileged dockerd, classic builder)" "$(dind_build medium)"
