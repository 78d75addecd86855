#!/usr/bin/env bash
# One job until it can build through every berth builder, then gone: config, prepare (with the
# per-job rootless BuildKit configured), one stage that waits for buildctl, the build socket and
# nested podman to answer, cleanup. With BUILDERS=none: the same job with every builder switched
# off and a stage that does nothing (the job's own cost, to subtract). Run as root after
# scripts/test-all.
set -euo pipefail
BERTH=${BERTH:-$(dirname "$0")/../target/release/berth}
BUILDKIT=${BERTH_PEERS_DIR:-/var/cache/berth-peers}/buildkit
tmp=$(mktemp -d /tmp/custom-executorXXXXXX)
trap 'rm -rf "$tmp"' EXIT
if [ "${BUILDERS:-all}" = none ]; then
  printf 'nested_builds = false\nbuild_socket = "off"\n' >"$tmp/berth.toml"
else
  printf 'buildkitd = "%s"\n' "$BUILDKIT/buildkitd" >"$tmp/berth.toml"
fi
printf '{"id": %d, "token": "t", "image": {"name": "localhost/build-tools:latest"}, "job_info": {"project_id": 1}}' \
  "$(( $(date +%s%N) % 1000000000 ))" >"$tmp/response.json"
export BERTH_CONFIG=$tmp/berth.toml JOB_RESPONSE_FILE=$tmp/response.json BUILD_EXIT_CODE_FILE=$tmp/bec \
  TMPDIR=$tmp BUILD_FAILURE_EXIT_CODE=1 SYSTEM_FAILURE_EXIT_CODE=2 CUSTOM_ENV_CI_RUNNER_SHORT_TOKEN=ready
"$BERTH" config >/dev/null
"$BERTH" prepare >/dev/null 2>&1
key=$("$BERTH" config | sed -n 's/.*"BERTH_JOB_KEY":"\([^"]*\)".*/\1/p')
if [ "${BUILDERS:-all}" = none ]; then
  printf '#!/usr/bin/env bash\ntrue\n' >"$tmp/script"
else
  install -m 0755 "$BUILDKIT/buildctl" "/var/lib/berth/jobs/$key/builds/buildctl"
  printf '#!/usr/bin/env bash\nset -e\nuntil /builds/buildctl debug workers >/dev/null 2>&1; do sleep 0.02; done\ndocker version >/dev/null\npodman info >/dev/null\n' >"$tmp/script"
fi
"$BERTH" run "$tmp/script" build_script >/dev/null
"$BERTH" cleanup >/dev/null
