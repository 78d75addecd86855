#!/usr/bin/env bash
# Install the peers of the fleet tests (shared across hosts):
#
#   minisign         from apt: signs the published advisory database (`berth db publish`) the
#                    way an admin would; the tests verify berth against its real signatures
#   docker-registry  from apt (integration/host/setup-host.sh installs it too): origin and
#                    pull-through mirror of the registry-mirror test
#   moto_server      from PyPI into $BERTH_PEERS_DIR/moto (a venv): the S3 server of the
#                    distributed-cache test (two runner hosts share a cache through it)
#
# Idempotent and non-interactive; apt only runs when something is missing. A peer that cannot
# be had fails the run with apt's error (the tests never skip).
set -euo pipefail

missing=()
command -v minisign >/dev/null || missing+=(minisign)
command -v docker-registry >/dev/null || missing+=(docker-registry)
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# moto's S3 server (PyPI, moto[server]) in a venv of its own: the distributed cache's S3 in the
# runner tests. Pinned; reinstalled when the pin changes.
MOTO_VERSION=${BERTH_MOTO_VERSION:-5.1.4}
MOTO_DIR=${BERTH_PEERS_DIR:-/var/cache/berth-peers}/moto
if [ "$(cat "$MOTO_DIR/.stamp" 2>/dev/null)" != "moto[server]==$MOTO_VERSION" ]; then
  rm -rf "$MOTO_DIR"
  python3 -m venv "$MOTO_DIR"
  "$MOTO_DIR/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  "$MOTO_DIR/bin/moto_server" --help >/dev/null
  echo "moto[server]==$MOTO_VERSION" >"$MOTO_DIR/.stamp"
fi
