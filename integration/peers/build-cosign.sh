#!/usr/bin/env bash
# Build cosign, the signing tool berth's image trust is tested against, from the Go module proxy:
#   cosign  github.com/sigstore/cosign/v2  BERTH_COSIGN_VERSION  (default v2.6.5: the last line
#           whose default signatures are the "sigstore attachments" Podman 4.3 verifies)
#
# Idempotent, non-interactive, quiet on success. The binary and the Go caches live OUTSIDE the
# repository: $BERTH_PEERS_DIR/cosign/cosign (+ .stamp), Go caches as go-peers.sh says. When the
# proxy refuses a module the refusal is final: the exact error goes to
# $BERTH_PEERS_DIR/cosign/cosign.unavailable and the tests that need cosign fail with it. Any other
# failure prints the error and exits 1.
set -euo pipefail

PEERS_DIR=${BERTH_PEERS_DIR:-/var/cache/berth-peers}
OUT_DIR=$PEERS_DIR/cosign
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=integration/peers/go-peers.sh
. "$HERE/go-peers.sh"
RECIPE=1
VERSION=${BERTH_COSIGN_VERSION:-v2.6.5}
MOD=github.com/sigstore/cosign/v2

mkdir -p "$OUT_DIR"
exec 9>"$OUT_DIR/.lock"
flock 9
peers_go_env build-cosign.sh
mkdir -p "$GOMODCACHE" "$GOCACHE"
PEERS_SCRIPT=build-cosign.sh PEERS_OUT=$OUT_DIR PEERS_RECIPE=$RECIPE PEERS_VERSION_ARG=version \
  peers_build cosign "$MOD" "$VERSION" "$MOD/cmd/cosign" \
  "-X sigs.k8s.io/release-utils/version.gitVersion=$VERSION"
