#!/usr/bin/env bash
# Install the peer `berth exec` is compared with: gitlab-ci-local (firecow/gitlab-ci-local, npm),
# plus the rsync it shells out to for every job.
#
#   gitlab-ci-local  BERTH_GITLAB_CI_LOCAL_VERSION (default 4.65.1, the newest whose engines
#                    field admits this machine's Node 20), npm --prefix
#                    $BERTH_PEERS_DIR/gitlab-ci-local; the binary is
#                    $BERTH_PEERS_DIR/gitlab-ci-local/bin/gitlab-ci-local (+ .stamp)
#   rsync            from apt, only when missing
#
# Idempotent, non-interactive, serialised with flock, quiet on success: with --print-path it
# prints the binary's path and nothing else. A peer that cannot be had fails the run: the exact
# npm or apt error goes to stderr and the script exits 1 (there is no .unavailable record, the
# tests never skip gitlab-ci-local).
set -euo pipefail

PEERS_DIR=${BERTH_PEERS_DIR:-/var/cache/berth-peers}
VERSION=${BERTH_GITLAB_CI_LOCAL_VERSION:-4.65.1}
PREFIX=$PEERS_DIR/gitlab-ci-local
BIN=$PREFIX/bin/gitlab-ci-local
# Bump when the recipe changes, so the cached install is redone.
RECIPE=1
print_path=false
case "${1:-}" in
  "") ;;
  --print-path) print_path=true ;;
  *) echo "install-gitlab-ci-local.sh: unknown argument '$1' (the only one is --print-path)" >&2; exit 2 ;;
esac

mkdir -p "$PREFIX"
exec 9>"$PREFIX/.lock"
flock 9

fail() { # MESSAGE LOG
  echo "install-gitlab-ci-local.sh: $1 (log: $2):" >&2
  tail -n 40 "$2" >&2
  exit 1
}

if ! command -v rsync >/dev/null 2>&1; then
  log=$PREFIX/apt.log
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rsync; } \
    >"$log" 2>&1 || fail "apt-get could not install rsync" "$log"
  command -v rsync >/dev/null 2>&1 || fail "apt-get ran but rsync is still not on PATH" "$log"
  rm -f "$log"
fi

for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "install-gitlab-ci-local.sh: $tool is not on PATH" >&2; exit 1; }
done

want="recipe=$RECIPE gitlab-ci-local@$VERSION node=$(node --version)"
if ! { [ -x "$BIN" ] && [ "$(cat "$PREFIX/.stamp" 2>/dev/null)" = "$want" ]; }; then
  log=$PREFIX/npm.log
  rm -rf "${PREFIX:?}/lib" "${PREFIX:?}/bin" "${PREFIX:?}/.stamp"
  # --engine-strict: a version that does not run on this Node is refused here, not at first use.
  npm install --global --prefix "$PREFIX" --engine-strict --no-audit --no-fund --no-update-notifier \
    --loglevel=error "gitlab-ci-local@$VERSION" >"$log" 2>&1 ||
    fail "npm could not install gitlab-ci-local@$VERSION" "$log"
  got=$("$BIN" --version 2>>"$log") || fail "the installed $BIN does not run" "$log"
  [ "$got" = "$VERSION" ] || { echo "$BIN --version says '$got', not $VERSION" >>"$log"; fail "wrong version installed" "$log"; }
  echo "$want" >"$PREFIX/.stamp"
  rm -f "$log"
fi
if $print_path; then echo "$BIN"; fi
