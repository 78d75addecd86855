#!/usr/bin/env bash
# Build OPA, the peer berth's admission policies (regorus) are compared with, from the Go module
# proxy, statically:
#   OPA  github.com/open-policy-agent/opa  BERTH_OPA_VERSION  (default v1.22.3)
#
# Idempotent, non-interactive, quiet on success. The binary and the Go caches live OUTSIDE the
# repository: $BERTH_PEERS_DIR/opa/opa (+ .stamp), Go caches as go-peers.sh says. When the proxy
# refuses a module the refusal is final: the exact error goes to $BERTH_PEERS_DIR/opa/opa.unavailable
# and the tests that need OPA fail with it. Any other failure prints the error and exits 1.
set -euo pipefail

PEERS_DIR=${BERTH_PEERS_DIR:-/var/cache/berth-peers}
OUT_DIR=$PEERS_DIR/opa
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=integration/peers/go-peers.sh
. "$HERE/go-peers.sh"
RECIPE=1
VERSION=${BERTH_OPA_VERSION:-v1.22.3}
MOD=github.com/open-policy-agent/opa

mkdir -p "$OUT_DIR"
exec 9>"$OUT_DIR/.lock"
flock 9
peers_go_env build-opa.sh
mkdir -p "$GOMODCACHE" "$GOCACHE"
PEERS_SCRIPT=build-opa.sh PEERS_OUT=$OUT_DIR PEERS_RECIPE=$RECIPE PEERS_VERSION_ARG=version \
  peers_build opa "$MOD" "$VERSION" "$MOD" "-X $MOD/v1/version.Version=${VERSION#v}"
