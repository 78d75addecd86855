#!/usr/bin/env bash
# One trivial job through the real gitlab-runner (the v19 peer built by
# integration/fake-gitlab/peers/build-gitlab-runner.sh) and the fake GitLab, side by side in one
# hyperfine run: berth as the custom executor versus the runner's shell executor (no isolation,
# the floor). Each run is a whole `gitlab-runner run-single --max-builds 1`: job request, all
# stages, cleanup, final PUT. Run as root after scripts/test-all.
# Writes benches/results/runner-executors.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p berth -p berth-fake-gitlab --example runner_bench >/dev/null
mkdir -p benches/results
hyperfine --warmup 1 --runs "${RUNS:-10}" \
  --export-markdown benches/results/runner-executors.md --export-json benches/results/runner-executors.json \
  -n "gitlab-runner + shell executor (floor)" "target/release/examples/runner_bench shell" \
  -n "gitlab-runner + berth" "target/release/examples/runner_bench berth $PWD/target/release/berth"
