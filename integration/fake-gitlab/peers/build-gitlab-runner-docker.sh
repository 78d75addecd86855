#!/usr/bin/env bash
# Build the gitlab-runner stand-in WITH its Docker executor, and its helper image, for the
# throughput comparison (benches/throughput.sh). Separate from build-gitlab-runner.sh (the test
# peer, custom and shell executors only), whose recipe it borrows: the same main-branch snapshot
# from the Go module proxy, the same stubs for the gitlab.com modules the proxy refuses
# (stubbed/stubs/), plus the Docker executor (executors/docker and the moby client it imports).
#
#   $BERTH_PEERS_DIR/gitlab-runner-19.4.0-pre-fc1f1862-docker   runner: shell, custom, docker
#   $BERTH_PEERS_DIR/gitlab-runner-helper-19.4.0-pre-fc1f1862   helper binary (same source)
#   $BERTH_PEERS_DIR/gitlab-runner-helper-19.4.0-pre-fc1f1862.tar
#                          helper image root: /var/cache/berth-test/helper.tar (debootstrap
#                          bookworm with git, git-lfs, CA certificates; made by
#                          integration/images/build-test-images.sh) plus the helper binary and
#                          the gitlab-runner-build entry script; load it with
#                          `podman import` / `docker import` (no registry here).
#
# Idempotent (stamps), quiet on success, serialised with the peers' flock. A module version the
# proxy refuses is recorded in <binary>.unavailable with the proxy's exact error (exit 3); any
# other failure exits 1 with the log tail. Run Go at low priority: nice -n 15.
set -euo pipefail

PEERS_DIR=${BERTH_PEERS_DIR:-/var/cache/berth-peers}
MOD=gitlab.com/gitlab-org/gitlab-runner
WRAPPER_API=$MOD/helpers/runner_wrapper/api
SNAPSHOT=v1.11.1-0.20260903214710-fc1f1862bd91
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HELPER_ROOT_TAR=${BERTH_HELPER_ROOT_TAR:-/var/cache/berth-test/helper.tar}
NAME=19.4.0-pre-fc1f1862-docker
OUT=$PEERS_DIR/gitlab-runner-$NAME
HELPER=$PEERS_DIR/gitlab-runner-helper-19.4.0-pre-fc1f1862
RECIPE=1

# shellcheck source=integration/peers/go-peers.sh
. "$HERE/../../peers/go-peers.sh"
peers_go_env build-gitlab-runner-docker.sh
mkdir -p "$PEERS_DIR" "$GOMODCACHE" "$GOCACHE" "$PEERS_DIR/logs"
exec 9>"$PEERS_DIR/.lock"
flock 9
[ -s "$HELPER_ROOT_TAR" ] || {
  echo "build-gitlab-runner-docker.sh: $HELPER_ROOT_TAR missing: run integration/images/build-test-images.sh" >&2
  exit 1
}

want="recipe=$RECIPE module=$MOD@$SNAPSHOT stubs=$(cd "$HERE" && find stubbed docker -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16) root=$(stat -c %s-%Y "$HELPER_ROOT_TAR")"
if [ -x "$OUT" ] && [ -x "$HELPER" ] && [ -s "$HELPER.tar" ] && [ "$(cat "$OUT.stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi

work=$PEERS_DIR/work-$NAME log=$PEERS_DIR/logs/build-$NAME.log
rm -rf "$work" && mkdir -p "$work/runner" "$work/helper" "$work/root"
: >"$log"
set +e
(
  set -e
  # The test peer's stubs suffice: the Docker executor's packages name nothing else of the
  # refused modules (its other requirements, the moby client among them, the proxy serves).
  cp -a "$HERE/stubbed/stubs" "$work/stubs"
  gomod() {
    cat <<GOMOD
module example.invalid/glr-build-$1

go 1.26.5

require (
	$MOD $SNAPSHOT
	gitlab.com/ajwalker/phrasestream v0.0.0-20250306164532-3b0af7cb1452
	$WRAPPER_API v0.1.1
	gitlab.com/gitlab-org/labkit/v2 v2.29.2
	gitlab.com/gitlab-org/moa v0.0.0-20260427132849-fad5ad756fe7
	gitlab.com/gitlab-org/step-runner v0.44.0
)

replace (
	gitlab.com/ajwalker/phrasestream => $work/stubs/gitlab.com/ajwalker/phrasestream
	$WRAPPER_API => $work/stubs/$WRAPPER_API
	gitlab.com/gitlab-org/labkit/v2 => $work/stubs/gitlab.com/gitlab-org/labkit/v2
	gitlab.com/gitlab-org/moa => $work/stubs/gitlab.com/gitlab-org/moa
	gitlab.com/gitlab-org/step-runner => $work/stubs/gitlab.com/gitlab-org/step-runner
)

exclude github.com/moby/moby v28.5.2+incompatible
GOMOD
  }
  p=$MOD/common
  ldflags="-w -X $p.VERSION=19.4.0~pre.fc1f1862.docker -X $p.REVISION=fc1f1862 -X $p.BRANCH=main -X $p.BUILT=unknown"
  # The test peer's main, plus the Docker executor it leaves room for.
  cp "$HERE/stubbed/main.go" "$HERE/docker/executor.go" "$work/runner/"
  gomod runner >"$work/runner/go.mod"
  cp "$HERE/docker/helper/main.go" "$work/helper/main.go"
  gomod helper >"$work/helper/go.mod"
  (cd "$work/runner" && go build -trimpath -o "$OUT.tmp" -ldflags "$ldflags" . && "$OUT.tmp" --version)
  (cd "$work/helper" && go build -trimpath -o "$HELPER.tmp" -ldflags "$ldflags" . && "$HELPER.tmp" --version)
  # The helper image root, as dockerfiles/runner-helper/Dockerfile lays it out (binary in
  # /usr/bin) plus the gitlab-runner-build entry the executor injects (umask 0000, then bash).
  tar -C "$work/root" -xf "$HELPER_ROOT_TAR"
  install -m 0755 "$HELPER.tmp" "$work/root/usr/bin/gitlab-runner-helper"
  printf '#!/bin/bash\numask 0000\nexec /bin/bash\n' >"$work/root/usr/bin/gitlab-runner-build"
  chmod 0755 "$work/root/usr/bin/gitlab-runner-build"
  tar -C "$work/root" -cf "$HELPER.tar.tmp" .
) >>"$log" 2>&1
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
  rm -f "$OUT.tmp" "$HELPER.tmp" "$HELPER.tar.tmp"
  if grep -q "This module version is not available" "$log"; then
    {
      echo "gitlab-runner $NAME: the Go module proxy ($GOPROXY) refused a module the Docker executor needs:"
      grep -B1 "This module version is not available" "$log" | grep -v '^--$' | head -n 24
    } >"$OUT.unavailable"
    rm -rf "$work"
    cat "$OUT.unavailable" >&2
    exit 3
  fi
  echo "build-gitlab-runner-docker.sh: build failed; log: $log" >&2
  tail -n 40 "$log" >&2
  exit 1
fi
mv -f "$OUT.tmp" "$OUT"
mv -f "$HELPER.tmp" "$HELPER"
mv -f "$HELPER.tar.tmp" "$HELPER.tar"
echo "$want" >"$OUT.stamp"
rm -f "$OUT.unavailable"
rm -rf "$work"
