#!/usr/bin/env bash
# A recording custom-executor driver for harness tests (contract §6). It runs each stage script
# on the host with bash and appends one record per call to $BERTH_FAKE_DRIVER_LOG:
#   op=<config|prepare|run|cleanup|exit|signal> <TAB> argc=N <TAB> t=<unix time> <TAB> arg=... <TAB> env:NAME=value ...
# Values have tabs and newlines escaped as \t and \n.
#
# Knobs (inherited from gitlab-runner's environment):
#   BERTH_FAKE_DRIVER_LOG           record file (required)
#   BERTH_FAKE_DRIVER_ROOT          host dir holding builds/ and cache/ (default: $PWD)
#   BERTH_FAKE_DRIVER_CONFIG_JSON   config stdout (default: builds/cache under ROOT, driver info)
#   BERTH_FAKE_DRIVER_CONFIG_EXIT   config exit code (default 0)
#   BERTH_FAKE_DRIVER_PREPARE_EXIT  prepare exit code (default 0; 2 = SYSTEM_FAILURE)
#   BERTH_FAKE_DRIVER_RECORD_VARS   extra variable names to record, space separated
# run: a script exiting N != 0 makes the driver write N to $BUILD_EXIT_CODE_FILE (when the
# runner sets it) and exit $BUILD_FAILURE_EXIT_CODE, as berth does.
set -u
op=${1:-}
[ $# -gt 0 ] && shift
log=${BERTH_FAKE_DRIVER_LOG:?BERTH_FAKE_DRIVER_LOG is not set}
root=${BERTH_FAKE_DRIVER_ROOT:-$PWD}

esc() {
  local v=${1//$'\t'/\\t}
  printf '%s' "${v//$'\n'/\\n}"
}

record() {
  local line="" f
  for f in "$@"; do
    line+="${line:+$'\t'}$(esc "$f")"
  done
  printf '%s\n' "$line" >>"$log"
}

vars=(PWD TMPDIR BUILD_FAILURE_EXIT_CODE SYSTEM_FAILURE_EXIT_CODE BUILD_EXIT_CODE_FILE JOB_RESPONSE_FILE
  CUSTOM_ENV_CI_JOB_STATUS CUSTOM_ENV_CI_JOB_ID CUSTOM_ENV_CI_BUILDS_DIR CUSTOM_ENV_CI_PROJECT_DIR
  CUSTOM_ENV_CI_JOB_TIMEOUT CUSTOM_ENV_CI_JOB_IMAGE CUSTOM_ENV_CI_RUNNER_VERSION CUSTOM_ENV_CI_JOB_SERVICES
  CUSTOM_ENV_GIT_STRATEGY ${BERTH_FAKE_DRIVER_RECORD_VARS:-})
fields=("op=$op" "argc=$#" "t=${EPOCHREALTIME:-}")
for a in "$@"; do fields+=("arg=$a"); done
for v in "${vars[@]}"; do
  if [ -n "${!v+x}" ]; then fields+=("env:$v=${!v}"); fi
done
record "${fields[@]}"

trap 'record "op=signal" "sig=TERM" "stage=${stage:-$op}"' TERM

case $op in
  config)
    if [ -n "${BERTH_FAKE_DRIVER_CONFIG_JSON+x}" ]; then
      printf '%s' "$BERTH_FAKE_DRIVER_CONFIG_JSON"
    else
      printf '{"builds_dir":"%s/builds","cache_dir":"%s/cache","builds_dir_is_shared":false,"driver":{"name":"recording-driver","version":"1.0"}}' "$root" "$root"
    fi
    exit "${BERTH_FAKE_DRIVER_CONFIG_EXIT:-0}"
    ;;
  prepare)
    echo "recording-driver: prepare"
    exit "${BERTH_FAKE_DRIVER_PREPARE_EXIT:-0}"
    ;;
  run)
    script=$1 stage=$2
    # In the foreground, so $? is the script's own status; the TERM trap (the runner signals the
    # whole process group) runs once the script has exited.
    bash "$script"
    rc=$?
    record "op=exit" "stage=$stage" "rc=$rc" "t=${EPOCHREALTIME:-}"
    if [ "$rc" -ne 0 ]; then
      if [ -n "${BUILD_EXIT_CODE_FILE:-}" ]; then
        printf '%d\n' "$rc" >"$BUILD_EXIT_CODE_FILE"
      fi
      exit "${BUILD_FAILURE_EXIT_CODE:-1}"
    fi
    exit 0
    ;;
  cleanup)
    record "op=cleanup-done" "t=${EPOCHREALTIME:-}"
    exit 0
    ;;
  *)
    echo "recording-driver: unknown operation '$op'" >&2
    exit "${SYSTEM_FAILURE_EXIT_CODE:-2}"
    ;;
esac
