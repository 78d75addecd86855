#!/usr/bin/env bash
# Install the peers berth's metrics are tested with: Debian's `prometheus` (with promtool) and
# `prometheus-node-exporter`, from apt. Both packages start system services on install; the tests
# start their own on loopback with their own config and storage, so the packaged services are
# disabled and stopped (as setup-host.sh does for docker-registry).
#
# Idempotent, non-interactive; a package that cannot be had fails the run with apt's own error
# (the tests never skip a missing peer: they fail naming the binary).
set -euo pipefail

packages=(prometheus prometheus-node-exporter)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-prometheus.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for unit in prometheus prometheus-node-exporter; do
  systemctl disable --now "$unit" >/dev/null 2>&1 || true
done
# Without systemd, the packages' init scripts may have started the daemons: stop those
# (found by their pid files only; never by name).
for pidfile in /run/prometheus/prometheus.pid /run/prometheus/prometheus-node-exporter.pid; do
  if [ -s "$pidfile" ]; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
  fi
done
for bin in promtool prometheus prometheus-node-exporter; do
  command -v "$bin" >/dev/null || { echo "install-prometheus.sh: $bin is not on PATH after installing ${packages[*]}" >&2; exit 1; }
done
