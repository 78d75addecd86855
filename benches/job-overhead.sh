#!/usr/bin/env bash
# Whole-job executor overhead, side by side in one hyperfine run: berth versus the floor (the same
# Podman operations by hand). Run as root after scripts/test-all or scripts/demo set the host up.
# Writes benches/results/job-overhead.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p berth >/dev/null
mkdir -p benches/results
hyperfine --warmup 2 --runs "${RUNS:-15}" \
  --export-markdown benches/results/job-overhead.md --export-json benches/results/job-overhead.json \
  -n berth "benches/noop-job-berth.sh" \
  -n podman-cli-floor "benches/noop-job-podman-cli.sh"
