#!/usr/bin/env bash
# One no-op job through berth exactly as gitlab-runner drives it: config, prepare, the seven run
# stages a job with cache and artifacts runs, cleanup. Run as root (berth drops to berth-runner).
set -euo pipefail
BERTH=${BERTH:-$(dirname "$0")/../target/release/berth}
IMAGE=${IMAGE:-localhost/busybox:latest}
tmp=$(mktemp -d /tmp/custom-executorXXXXXX)
trap 'rm -rf "$tmp"' EXIT
printf '{"id": %d, "token": "t", "image": {"name": "%s"}, "job_info": {"project_id": 1}}' \
  "$(( $(date +%s%N) % 1000000000 ))" "$IMAGE" >"$tmp/response.json"
printf '#!/usr/bin/env bash\ntrue\n' >"$tmp/script"
export JOB_RESPONSE_FILE=$tmp/response.json BUILD_EXIT_CODE_FILE=$tmp/bec TMPDIR=$tmp \
  BUILD_FAILURE_EXIT_CODE=1 SYSTEM_FAILURE_EXIT_CODE=2 CUSTOM_ENV_CI_RUNNER_SHORT_TOKEN=bench
"$BERTH" config >/dev/null
"$BERTH" prepare 2>/dev/null
for stage in prepare_script get_sources build_script after_script archive_cache \
  upload_artifacts_on_success cleanup_file_variables; do
  "$BERTH" run "$tmp/script" "$stage"
done
"$BERTH" cleanup
