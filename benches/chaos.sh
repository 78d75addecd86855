#!/usr/bin/env bash
# Chaos: JOBS whole jobs (default 300) through the berth binary as gitlab-runner drives them,
# PAR at a time (default 2), each killed with SIGKILL at a random point: the berth process of
# prepare, run or cleanup, the job's Podman service, a conmon, the container's main process, or
# the "runner" (the shell driving the job, with berth under it). Then `berth reap` and a census of
# everything a job can leave behind: processes of the job identities, job directories, leases,
# mounts and directories under /run/berth/jobs, cgroups, files in the identities' runtime
# directories. Exits 1 when anything is left. Run as root after scripts/test-all set the host up.
#
#   JOBS=300 PAR=2 benches/chaos.sh
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-300}
PAR=${PAR:-2}
BERTH=${BERTH:-$PWD/target/debug/berth}
IMAGE=${IMAGE:-localhost/busybox:latest}
[ -x "$BERTH" ] || cargo build --locked -p berth >/dev/null
work=$(mktemp -d /tmp/berth-chaosXXXXXX)
trap 'rm -rf "$work"' EXIT
# A short grace so the final reap takes jobs killed before their state file existed.
printf 'reap_grace = 1\n' >"$work/berth.toml"
export BERTH_CONFIG=$work/berth.toml
kinds=(none prepare run cleanup service conmon container runner)
declare -A tally=()

one_job() {
  local n=$1 kind=$2 dir=$work/job$n
  mkdir -p "$dir"
  chmod 700 "$dir"
  printf '{"id": %d, "token": "t", "image": {"name": "%s"}, "job_info": {"project_id": %d}, "services": null}' \
    "$((900000 + n))" "$IMAGE" "$((n % 5))" >"$dir/response.json"
  printf '#!/usr/bin/env bash\nsleep 0.$((RANDOM %% 5))\n' >"$dir/script"
  (
    export JOB_RESPONSE_FILE=$dir/response.json BUILD_EXIT_CODE_FILE=$dir/bec TMPDIR=$dir \
      BUILD_FAILURE_EXIT_CODE=1 SYSTEM_FAILURE_EXIT_CODE=2 CUSTOM_ENV_CI_RUNNER_SHORT_TOKEN=chaos \
      CUSTOM_ENV_CI_JOB_ID=$((900000 + n)) BERTH_JOB_KEY=j$((900000 + n))-chaos
    "$BERTH" config >/dev/null
    "$BERTH" prepare >/dev/null 2>&1 || true
    for stage in get_sources build_script after_script; do
      "$BERTH" run "$dir/script" "$stage" >/dev/null 2>&1 || true
    done
    "$BERTH" cleanup >/dev/null 2>&1 || true
  ) &
  local runner=$!
  local delay=$((RANDOM % 1500))
  sleep "$((delay / 1000)).$(printf %03d $((delay % 1000)))"
  local key=j$((900000 + n))-chaos identity victim=""
  identity=$(grep -lx "$key" /var/lib/berth/leases/* 2>/dev/null | head -1 | xargs -r basename || true)
  case $kind in
    prepare | run | cleanup) victim=$(pgrep -P "$runner" -f "berth $kind" | head -1 || true) ;;
    service) [ -n "$identity" ] && victim=$(pgrep -u "$identity" -f "$key.*system service" | head -1 || true) ;;
    conmon) [ -n "$identity" ] && victim=$(pgrep -u "$identity" -x conmon | head -1 || true) ;;
    container) [ -n "$identity" ] && victim=$(pgrep -u "$identity" -f '^sh -c d=/.berth' | head -1 || true) ;;
    runner) victim=$runner; pkill -9 -P "$runner" 2>/dev/null || true ;;
  esac
  [ -n "$victim" ] && kill -9 "$victim" 2>/dev/null || true
  wait "$runner" 2>/dev/null || true
  echo "$kind${victim:+ (killed)}"
}

start=$(date +%s)
for ((n = 0; n < JOBS; n += PAR)); do
  for ((p = 0; p < PAR && n + p < JOBS; p++)); do
    kind=${kinds[RANDOM % ${#kinds[@]}]}
    one_job "$((n + p))" "$kind" >"$work/out$((n + p))" &
  done
  wait
done
for f in "$work"/out*; do
  k=$(cat "$f"); tally[$k]=$(( ${tally[$k]:-0} + 1 ))
done
sleep 2 # past reap_grace for directories made in the last second
"$BERTH" reap >"$work/reap.log" 2>&1 || echo "berth reap exited $? (see below)"

left=0
report() { if [ -n "$2" ]; then echo "LEFT $1:"; echo "$2" | sed 's/^/  /'; left=1; fi; }
job_uids=$(getent passwd | awk -F: '$1 ~ /^berth-job-/ {print $3}')
# Every live process (zombies hold nothing but a pid, which only their parent can take) whose
# uid is a job identity's or in one of their subordinate ranges.
owned=$( { for uid in $job_uids; do echo "$uid $((uid + 1))"; done
           awk -F: '$1 ~ /^berth-job-/ {print $2, $2 + $3}' /etc/subuid; } )
procs=$(ps -eo pid=,uid=,stat=,args= | awk -v ranges="$owned" '
  BEGIN { n = split(ranges, r, /[ \n]+/) }
  $3 !~ /^Z/ { for (i = 1; i < n; i += 2) if ($2 >= r[i] && $2 < r[i + 1]) { print; break } }')
report "processes of job identities" "$(echo "$procs" | sed '/^\s*$/d')"
report "job directories" "$(ls /var/lib/berth/jobs 2>/dev/null | grep chaos || true)"
report "leases" "$(grep -l chaos /var/lib/berth/leases/* 2>/dev/null || true)"
report "per-job mount directories" "$(ls /run/berth/jobs 2>/dev/null | grep chaos || true)"
report "mounts" "$(grep ' /run/berth/jobs/' /proc/self/mountinfo || true)"
report "cgroups" "$(ls -d /sys/fs/cgroup/*/berth/*chaos* 2>/dev/null || true)"
for uid in $job_uids; do
  report "files in /run/user/$uid" "$(ls -A /run/user/"$uid" 2>/dev/null || true)"
done
echo "chaos: $JOBS jobs in $(( $(date +%s) - start )) s; kill points:"
for k in "${!tally[@]}"; do printf '  %-22s %s\n' "$k" "${tally[$k]}"; done | sort
if [ "$left" -ne 0 ]; then
  echo "--- berth reap said:"; cat "$work/reap.log"
  exit 1
fi
echo "chaos: nothing left behind"
