#!/usr/bin/env bash
# Time until a job can build, side by side in one hyperfine run: a whole berth job whose nested
# podman, build socket and per-job rootless BuildKit all answer (prepare + one stage + cleanup)
# against a fresh privileged dockerd in a container (DinD-style, Debian's docker.io), started
# until it answers and removed. The same berth job with every builder off is measured too: the
# difference is what the builders cost a job. Run as root after scripts/test-all.
# Writes benches/results/builder-ready.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p berth >/dev/null
benches/dind/build-dind-image.sh
mkdir -p benches/results
hyperfine --warmup 1 --runs "${RUNS:-10}" \
  --export-markdown benches/results/builder-ready.md --export-json benches/results/builder-ready.json \
  -n "berth job: every builder answers (prepare, stage, cleanup)" benches/ready-berth.sh \
  -n "berth job: no builders (prepare, stage, cleanup)" "BUILDERS=none benches/ready-berth.sh" \
  -n "DinD: fresh privileged dockerd answers (start, remove)" benches/ready-dind.sh
