#!/usr/bin/env bash
# `berth exec` against gitlab-ci-local 4.65.1 (integration/peers/install-gitlab-ci-local.sh) in
# its two modes, side by side in one hyperfine run, wall time of a whole pipeline:
#   berth exec                      rootless Podman through the real gitlab-runner;
#   gitlab-ci-local shell mode      --force-shell-executor: every job on the host, no isolation
#                                   and no services (it cannot run them without Docker: the
#                                   service job runs without its service and skips the probe);
#   gitlab-ci-local Docker mode     Debian's docker.io (installed when missing), a dockerd of
#                                   its own on a private socket, stopped at the end.
# The pipeline is benches/exec/pipeline/.gitlab-ci.yml: five jobs with needs, artifacts, a cache
# and one service (localhost/tcp-service). There is no registry: the Docker mode's images come
# from berth's base store (podman save | docker load), and gitlab-ci-local's helper and wait
# images are built locally (berth-helper + the host's rsync; busybox + benches/exec/wait-for-it.sh).
# Each runner has its own git repository made from the fixture, kept between runs, so caches
# are warm after the warm-up for all of them.
#
# Run as root after scripts/test-all (test images in the base store). Writes
# benches/results/exec.{md,json}. EXEC_BENCH_RUNNERS (default "berth gcl-shell gcl-docker")
# selects runners; the results name the ones that ran.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNNERS=${EXEC_BENCH_RUNNERS:-berth gcl-shell gcl-docker}
GCL=$(integration/peers/install-gitlab-ci-local.sh --print-path)
work=/var/cache/berth-test/exec-bench
mkdir -p "$work" benches/results
wants() { case " $RUNNERS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# A git repository per runner, made from the fixture once (gitlab-ci-local needs a commit).
repo() {
  local dir=$work/$1
  if [ ! -d "$dir/.git" ]; then
    rm -rf "$dir" && mkdir -p "$dir"
    cp -a benches/exec/pipeline/. "$dir/"
    git -C "$dir" init -q -b main
    git -C "$dir" -c user.name=bench -c user.email=bench@example.invalid add -A
    git -C "$dir" -c user.name=bench -c user.email=bench@example.invalid commit -q -m bench
  fi
  echo "$dir"
}

uid=$(id -u berth-runner)
podman_base() {
  runuser -u berth-runner -- env -C / XDG_RUNTIME_DIR="/run/user/$uid" HOME=/home/berth-runner \
    CONTAINERS_CONF=/etc/berth/podman/containers/containers.conf \
    podman --root /var/lib/berth/images --runroot "/run/user/$uid/berth/base-run" --storage-driver overlay "$@"
}

commands=()
if wants berth; then
  cargo build --release --locked -p berth >/dev/null
  BERTH=${CARGO_TARGET_DIR:-$ROOT/target}/release/berth
  dir=$(repo berth)
  # berth exec runs the real gitlab-runner: the peer scripts/test-all builds.
  peers=${BERTH_PEERS_DIR:-/var/cache/berth-peers}
  runner=""
  for candidate in gitlab-runner-19.3.0 gitlab-runner-19.4.0-pre-fc1f1862 gitlab-runner-19.4.0-pre-fc1f1862-stubbed; do
    [ -x "$peers/$candidate" ] && { runner=$peers/$candidate; break; }
  done
  [ -n "$runner" ] || { echo "exec.sh: no gitlab-runner peer in $peers: run integration/fake-gitlab/peers/build-gitlab-runner.sh" >&2; exit 1; }
  printf 'stop_grace = 2\ngitlab_runner_binary = "%s"\n' "$runner" >"$work/berth.toml"
  commands+=(-n "berth exec" "cd $dir && $BERTH --config $work/berth.toml exec --quiet")
fi
if wants gcl-shell; then
  dir=$(repo gcl-shell)
  # The shell mode still asks Docker for a network when a job has services: this repository's
  # .gitlab-ci-local.yml (gitlab-ci-local merges it over .gitlab-ci.yml) takes the service away.
  printf 'service:\n  services: []\n  variables:\n    BENCH_SERVICE: "no"\n' >"$dir/.gitlab-ci-local.yml"
  commands+=(-n "gitlab-ci-local shell mode (no service)"
    "cd $dir && $GCL --quiet --no-color --force-shell-executor")
fi

docker_pid=
# docker_build TAG CONTEXT: the classic builder (docker.io's BuildKit would want a frontend image).
docker_build() {
  DOCKER_BUILDKIT=0 docker build -q -t "$1" "$2" >"$work/docker-build.log" 2>&1 ||
    { echo "exec.sh: docker build $1 failed:" >&2; cat "$work/docker-build.log" >&2; exit 1; }
}
stop_dockerd() { if [ -n "$docker_pid" ]; then kill "$docker_pid" 2>/dev/null || true; wait "$docker_pid" 2>/dev/null || true; fi; }
trap stop_dockerd EXIT
if wants gcl-docker; then
  if ! command -v dockerd >/dev/null; then
    apt-get install -y -qq --no-install-recommends docker.io >"$work/docker-apt.log" 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker.io >"$work/docker-apt.log" 2>&1; } ||
      { echo "exec.sh: apt-get could not install docker.io:" >&2; tail -20 "$work/docker-apt.log" >&2; exit 1; }
  fi
  export DOCKER_HOST=unix://$work/docker.sock
  mkdir -p "$work/docker-data" "$work/docker-exec"
  # Its own daemon, state and socket: nothing of another Docker on the host is touched.
  dockerd --data-root "$work/docker-data" --exec-root "$work/docker-exec" --pidfile "$work/dockerd.pid" \
    -H "$DOCKER_HOST" --iptables=false >"$work/dockerd.log" 2>&1 &
  docker_pid=$!
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "exec.sh: dockerd did not start (log $work/dockerd.log):" >&2; tail -20 "$work/dockerd.log" >&2; exit 1; }
  for image in localhost/busybox:latest localhost/tcp-service:latest localhost/berth-helper:latest; do
    docker image inspect "$image" >/dev/null 2>&1 && continue
    podman_base save --format docker-archive "$image" 2>"$work/podman-save.log" | docker load -q >/dev/null ||
      { echo "exec.sh: podman save $image | docker load failed:" >&2; cat "$work/podman-save.log" >&2; exit 1; }
  done
  if ! docker image inspect localhost/gcl-util:bench >/dev/null 2>&1; then
    ctx=$work/gcl-util && rm -rf "$ctx" && mkdir -p "$ctx/root/usr/bin"
    cp /usr/bin/rsync "$ctx/root/usr/bin/"
    # Into /usr/lib: the helper's /lib is merged-usr's symlink, which a COPY of root/lib would replace.
    mkdir -p "$ctx/root/usr/lib/x86_64-linux-gnu"
    for lib in $(ldd /usr/bin/rsync | awk '/=> \// { print $3 }'); do
      cp -L "$lib" "$ctx/root/usr/lib/x86_64-linux-gnu/"
    done
    printf 'FROM localhost/berth-helper:latest\nCOPY root/ /\n' >"$ctx/Dockerfile"
    docker_build localhost/gcl-util:bench "$ctx"
  fi
  if ! docker image inspect localhost/gcl-wait:bench >/dev/null 2>&1; then
    ctx=$work/gcl-wait && rm -rf "$ctx" && mkdir -p "$ctx"
    cp benches/exec/wait-for-it.sh "$ctx/"
    printf 'FROM localhost/busybox:latest\nCOPY wait-for-it.sh /wait-for-it.sh\nENTRYPOINT ["/wait-for-it.sh"]\n' >"$ctx/Dockerfile"
    docker_build localhost/gcl-wait:bench "$ctx"
  fi
  dir=$(repo gcl-docker)
  commands+=(-n "gitlab-ci-local Docker mode"
    "cd $dir && DOCKER_HOST=$DOCKER_HOST $GCL --quiet --no-color --pull-policy if-not-present --helper-image localhost/gcl-util:bench --wait-image localhost/gcl-wait:bench")
fi
[ ${#commands[@]} -gt 0 ] || { echo "exec.sh: EXEC_BENCH_RUNNERS='$RUNNERS' names none of berth, gcl-shell, gcl-docker" >&2; exit 2; }

hyperfine --warmup 1 --runs "${RUNS:-10}" \
  --export-markdown benches/results/exec.md --export-json benches/results/exec.json \
  "${commands[@]}"
