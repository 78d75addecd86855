#!/usr/bin/env bash
# Build BuildKit's buildkitd and buildctl (github.com/moby/buildkit) from the Go module proxy, for
# berth's per-job rootless BuildKit (docs/buildkit-notes.md).
#
# Idempotent, non-interactive, quiet on success. Binaries and the Go module/build caches live
# OUTSIDE the repository (never commit them):
#
#   BERTH_PEERS_DIR         default /var/cache/berth-peers
#   binaries                $BERTH_PEERS_DIR/buildkit/{buildkitd,buildctl} (+ .stamp)
#   BERTH_PEERS_GOMODCACHE  default $BERTH_PEERS_DIR/gomodcache (shared with the other peers)
#   BERTH_PEERS_GOCACHE     default $BERTH_PEERS_DIR/gocache
#   BERTH_BUILDKIT_VERSION  default v0.34.2 (the newest release the proxy served on 2026-11-23)
#
# Static binaries (CGO_ENABLED=0, the tags upstream's Dockerfile uses for buildkitd). buildkitd's
# OCI worker runs the host's `runc` and, rootless, needs `rootlesskit` and `newuidmap`: this
# script apt-get installs the Debian packages rootlesskit, runc and uidmap when they are missing.
#
# When the proxy refuses the module (403 "This module version is not available") the refusal is
# final: the exact error goes to $BERTH_PEERS_DIR/buildkit/buildkit.unavailable and the script
# exits 0. Any other failure prints the error and exits 1.
set -euo pipefail

PEERS_DIR=${BERTH_PEERS_DIR:-/var/cache/berth-peers}
OUT_DIR=$PEERS_DIR/buildkit
VERSION=${BERTH_BUILDKIT_VERSION:-v0.34.2}
MOD=github.com/moby/buildkit
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=integration/peers/go-peers.sh
. "$HERE/go-peers.sh"
# Bump when the recipe changes, so cached binaries are rebuilt.
RECIPE=1
WANT="recipe=$RECIPE module=$MOD@$VERSION"

mkdir -p "$OUT_DIR"
exec 9>"$OUT_DIR/.lock"
flock 9

# Runtime dependencies of a rootless buildkitd (Debian packages): rootlesskit, runc (the OCI
# worker's runtime) and uidmap (newuidmap/newgidmap, used by rootlesskit).
missing=()
command -v rootlesskit >/dev/null 2>&1 || missing+=(rootlesskit)
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || missing+=(runc)
command -v newuidmap >/dev/null 2>&1 || missing+=(uidmap)
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  if ! out=$(apt-get install -y -q "${missing[@]}" 2>&1); then
    if ! out=$({ apt-get update -q && apt-get install -y -q "${missing[@]}"; } 2>&1); then
      echo "build-buildkit.sh: apt-get install -y ${missing[*]} failed:" >&2
      echo "$out" >&2
      exit 1
    fi
  fi
fi

cached() {
  local b
  for b in buildkitd buildctl; do
    [ -x "$OUT_DIR/$b" ] && [ -f "$OUT_DIR/$b.stamp" ] && [ "$(cat "$OUT_DIR/$b.stamp")" = "$WANT" ] || return 1
  done
}
if cached; then
  rm -f "$OUT_DIR/buildkit.unavailable"
  exit 0
fi

peers_go_env build-buildkit.sh
mkdir -p "$GOMODCACHE" "$GOCACHE"

work=$OUT_DIR/work
log=$OUT_DIR/build.log
rm -rf "$work" && mkdir -p "$work"
: >"$log"

set +e
(
  set -e
  cd "$work"
  # Buildkit's go.mod has excludes, so `go install pkg@version` refuses it.
  peers_main_module "$MOD" "$VERSION" buildkit-build
  ldflags="-X $MOD/version.Version=$VERSION -X $MOD/version.Revision=$VERSION -X $MOD/version.Package=$MOD"
  go build -trimpath -ldflags "$ldflags" -o "$work/buildctl" "$MOD/cmd/buildctl"
  go build -trimpath -ldflags "$ldflags" -tags "osusergo netgo static_build seccomp" \
    -o "$work/buildkitd" "$MOD/cmd/buildkitd"
  "$work/buildkitd" --version
  "$work/buildctl" --version
) >>"$log" 2>&1
rc=$?
set -e

if [ "$rc" -ne 0 ]; then
  peers_build_failed build-buildkit.sh "buildkit $MOD@$VERSION" "$log" "$OUT_DIR/buildkit.unavailable" || exit 1
  rm -rf "$work"
  exit 0
fi

for b in buildkitd buildctl; do
  mv -f "$work/$b" "$OUT_DIR/$b"
  echo "$WANT" >"$OUT_DIR/$b.stamp"
done
rm -f "$OUT_DIR/buildkit.unavailable"
rm -rf "$work"
