#!/usr/bin/env bash
# Install the peers of the fleet tests (shared across hosts):
#
#   minisign         from apt: signs the published advisory database (`berth db publish`) the
#                    way an admin would; the tests verify berth against its real signatures
#   docker-registry  from apt (integration/host/setup-host.sh installs it too): origin and
#                    pull-through mirror of the registry-mirror test
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
