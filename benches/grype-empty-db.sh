#!/usr/bin/env bash
# An empty Grype v6 vulnerability database for the scanner benchmark: Grype refuses to run
# without one ("failed to load vulnerability db: database does not exist") and offline it cannot
# download one. Builds benches/grype-empty-db/main.go against Grype's own DB package (the
# version build-scanners.sh builds, from the Go module proxy) and writes the database to
# DIR/6 (Grype's GRYPE_DB_CACHE_DIR=DIR layout). Idempotent.
#   benches/grype-empty-db.sh DIR
set -euo pipefail
dir=${1:?usage: benches/grype-empty-db.sh DIR}
[ -s "$dir/6/vulnerability.db" ] && [ -s "$dir/6/import.json" ] && exit 0
PEERS_DIR=${BERTH_PEERS_DIR:-/var/cache/berth-peers}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=integration/peers/go-peers.sh
. "$HERE/../integration/peers/go-peers.sh"
peers_go_env grype-empty-db.sh
GRYPE_VERSION=${BERTH_GRYPE_VERSION:-v0.121.2}
bin=$PEERS_DIR/scanners/grype-empty-db-$GRYPE_VERSION
if [ ! -x "$bin" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  cp "$HERE/grype-empty-db/main.go" "$work/"
  (cd "$work" && peers_main_module github.com/anchore/grype "$GRYPE_VERSION" grype-empty-db &&
    go build -trimpath -o "$bin" .)
fi
"$bin" "$dir/6"
