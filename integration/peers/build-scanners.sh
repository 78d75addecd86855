#!/usr/bin/env bash
# Build the scanners berth-scan is compared with, from the Go module proxy, statically:
#   Trivy  github.com/aquasecurity/trivy  BERTH_TRIVY_VERSION  (default v0.74.0)
#   Grype  github.com/anchore/grype       BERTH_GRYPE_VERSION  (default v0.121.2)
#   grype-db-from-osv  integration/peers/grype-db-from-osv, against the same Grype module: writes a
#                      Grype v6 DB from OSV records with Grype's own DB builder (the parity tests
#                      run Grype offline on it)
#
# Idempotent, non-interactive, quiet on success. Binaries and the Go caches live OUTSIDE the
# repository:
#
#   BERTH_PEERS_DIR   default /var/cache/berth-peers
#   binaries          $BERTH_PEERS_DIR/scanners/{trivy,grype,grype-db-from-osv} (+ .stamp)
#   Go caches         as integration/peers/go-peers.sh says (shared with the other peers)
#
# Trivy needs encoding/json/v2, which Go 1.26 offers behind GOEXPERIMENT=jsonv2 (as Trivy's own
# goreleaser.yml builds it). Each is built in a throw-away main module holding the scanner's own go.mod and go.sum (their
# replace and exclude directives apply only there) plus a requirement on the scanner itself.
# When the proxy refuses a module (403 "This module version is not available") the refusal is
# final: the exact error goes to $BERTH_PEERS_DIR/scanners/NAME.unavailable, the script goes on
# and the tests that need that peer fail with it. Any other failure prints the error and exits 1.
set -euo pipefail

PEERS_DIR=${BERTH_PEERS_DIR:-/var/cache/berth-peers}
OUT_DIR=$PEERS_DIR/scanners
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=integration/peers/go-peers.sh
. "$HERE/go-peers.sh"
# Bump when the recipe changes, so cached binaries are rebuilt.
RECIPE=2

mkdir -p "$OUT_DIR"
exec 9>"$OUT_DIR/.lock"
flock 9

# build NAME MODULE VERSION PACKAGE LDFLAGS [GOEXPERIMENT] [SOURCE]: go-peers.sh's peers_build.
build() {
  PEERS_SCRIPT=build-scanners.sh PEERS_OUT=$OUT_DIR PEERS_RECIPE=$RECIPE PEERS_VERSION_ARG=--version \
    peers_build "$@"
}

peers_go_env build-scanners.sh
mkdir -p "$GOMODCACHE" "$GOCACHE"

TRIVY_VERSION=${BERTH_TRIVY_VERSION:-v0.74.0}
GRYPE_VERSION=${BERTH_GRYPE_VERSION:-v0.121.2}
build trivy github.com/aquasecurity/trivy "$TRIVY_VERSION" github.com/aquasecurity/trivy/cmd/trivy \
  "-X github.com/aquasecurity/trivy/pkg/version/app.ver=${TRIVY_VERSION#v}" jsonv2
build grype github.com/anchore/grype "$GRYPE_VERSION" github.com/anchore/grype/cmd/grype \
  "-X main.version=${GRYPE_VERSION#v}"
build grype-db-from-osv github.com/anchore/grype "$GRYPE_VERSION" . "" "" "$HERE/grype-db-from-osv"
