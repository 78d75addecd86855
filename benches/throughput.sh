#!/usr/bin/env bash
# Throughput: N queued jobs through the real gitlab-runner (`gitlab-runner run`, a config.toml
# with `concurrent` = 1, 2 and 4 and one [[runners]]) against the fake GitLab
# (integration/fake-gitlab, `fake-gitlab-queue`), per executor:
#
#   shell           the runner's shell executor (no isolation: the floor)
#   berth           berth as the custom executor (rootless Podman per job; busybox job image)
#   docker-podman   GitLab's Docker executor on a rootless `podman system service` socket of a
#                   throw-away unprivileged user (removed afterwards)
#   docker-dockerd  GitLab's Docker executor on Debian's docker.io dockerd (own data root and
#                   socket, removed afterwards)
#
# Per mode and concurrency: jobs per minute (succeeded jobs over the time from the first job
# handed out to the last final update; a failed job is counted and its error kept, not hidden),
# p50/p95 of prepare time (the runner's `prepare_executor` trace section, from the per-line
# timestamps of FF_TIMESTAMPS=true: the same measure for every executor), p50/p95 of each job's
# time from hand-out to final update, wall time, and a leftover check after every run (berth: no
# job directory, lease, process or pod of the run's jobs and no process of an unleased job
# identity; docker: no container of the run).
#
# Runners: shell and berth use the test peer (integration/fake-gitlab/peers/build-gitlab-runner.sh);
# the docker modes the same source with the Docker executor
# (integration/fake-gitlab/peers/build-gitlab-runner-docker.sh) and its helper image, imported
# into each engine (no registry here). Run as root after scripts/test-all.
#
#   N=12 CONCURRENCY="1 2 4" MODES="shell berth docker-podman docker-dockerd" benches/throughput.sh
#
# Writes benches/results/throughput.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-12}
CONCURRENCY=${CONCURRENCY:-1 2 4}
MODES=${MODES:-shell berth docker-podman docker-dockerd}
PEERS=${BERTH_PEERS_DIR:-/var/cache/berth-peers}
STATE=${BERTH_STATE_DIR:-/var/lib/berth}
TEST_CACHE=${BERTH_TEST_CACHE:-/var/cache/berth-test}
RUNNER=$PEERS/gitlab-runner-19.4.0-pre-fc1f1862-stubbed
DOCKER_RUNNER=$PEERS/gitlab-runner-19.4.0-pre-fc1f1862-docker
HELPER_TAR=$PEERS/gitlab-runner-helper-19.4.0-pre-fc1f1862.tar
HELPER_IMAGE=localhost/gitlab-runner-helper:bench
JOB_IMAGE=localhost/busybox:latest
BENCH_USER=berth-thru
PODMAN_CONF=/etc/berth/podman/containers/containers.conf
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
log() { printf 'throughput: %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { log "run as root"; exit 1; }

integration/fake-gitlab/peers/build-gitlab-runner.sh
[ -x "$RUNNER" ] || { log "no runner peer: $(cat "$RUNNER.unavailable" 2>/dev/null)"; exit 1; }
case " $MODES " in *" docker-"*)
  integration/fake-gitlab/peers/build-gitlab-runner-docker.sh ;;
esac
# PROFILE=dev for a quick trial; the figures are from release builds.
PROFILE=${PROFILE:-release}
profile_dir=$PROFILE && [ "$PROFILE" = dev ] && profile_dir=debug
cargo build --profile "$PROFILE" --locked -p berth-fake-gitlab --bin fake-gitlab-queue >/dev/null
QUEUE=$CARGO_TARGET_DIR/$profile_dir/fake-gitlab-queue
BERTH=$CARGO_TARGET_DIR/$profile_dir/berth
case " $MODES " in *" berth "*)
  cargo build --profile "$PROFILE" --locked -p berth --bin berth >/dev/null ;;
esac

work=$(mktemp -d /var/tmp/berth-throughput.XXXXXX)
chmod 0755 "$work"
engine_pid="" bench_uid="" dockerd_root=/var/tmp/berth-thru-docker dockerd_exec=/run/berth-thru-docker
stop_engines() {
  if [ -n "$engine_pid" ]; then
    kill "$engine_pid" 2>/dev/null || true
    wait "$engine_pid" 2>/dev/null || true
    engine_pid=""
  fi
  if [ -n "$bench_uid" ]; then
    pkill -KILL -u "$bench_uid" 2>/dev/null || true
    # The user's rootless store has files of its subordinate ids: remove it inside its namespace.
    runuser -u "$BENCH_USER" -- env -C / XDG_RUNTIME_DIR="/run/user/$bench_uid" HOME="$work/home" \
      podman unshare rm -rf "$work/home/.local/share/containers" 2>/dev/null || true
    # Only the throw-away user's own processes (its service, pause and slirp processes).
    pkill -KILL -u "$bench_uid" 2>/dev/null || true
    for _ in $(seq 1 100); do pgrep -u "$bench_uid" >/dev/null || break; sleep 0.05; done
    userdel "$BENCH_USER" || log "userdel $BENCH_USER failed: remove it by hand"
    rm -rf "/run/user/$bench_uid"
    bench_uid=""
  fi
  if [ -d "$dockerd_exec" ] || [ -d "$dockerd_root" ]; then
    # dockerd leaves its default network namespace (and any overlay) mounted.
    findmnt -rn -o TARGET | grep -E "^($dockerd_exec|$dockerd_root)/" | sort -r | xargs -r umount || true
    rm -rf "$dockerd_root" "$dockerd_exec" || log "could not remove $dockerd_root or $dockerd_exec"
  fi
}
# Run copies: another build may replace a peer while this runs, and a job whose runner binary
# was replaced cannot mount it into berth's helper (the path reads "... (deleted)").
install -m 0755 "$RUNNER" "$work/gitlab-runner-custom-shell" && RUNNER=$work/gitlab-runner-custom-shell
if [ -x "$DOCKER_RUNNER" ]; then
  install -m 0755 "$DOCKER_RUNNER" "$work/gitlab-runner-docker" && DOCKER_RUNNER=$work/gitlab-runner-docker
fi
# KEEP=1 keeps the work directory (configs, runner logs, job traces) for a look afterwards.
trap 'stop_engines; [ -n "${KEEP:-}" ] && log "kept $work" || rm -rf "$work"' EXIT
case " $MODES " in *" docker-dockerd "*)
  command -v dockerd >/dev/null || {
    apt-get install -y -qq --no-install-recommends docker.io >"$work/docker-apt.log" 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker.io >"$work/docker-apt.log" 2>&1; } ||
      { log "apt-get could not install docker.io:"; tail -20 "$work/docker-apt.log" >&2; exit 1; }
  } ;;
esac

# Engines for the Docker executor. Each sets $host, the runner's `host` for [runners.docker].
start_podman_socket() {
  useradd --system --no-create-home --home-dir "$work/home" --shell /usr/sbin/nologin "$BENCH_USER"
  bench_uid=$(id -u "$BENCH_USER")
  usermod --add-subuids 20000000-20999999 --add-subgids 20000000-20999999 "$BENCH_USER"
  install -d -o "$BENCH_USER" -m 0700 "$work/home" "$work/home/.config" "$work/home/.config/containers" "/run/user/$bench_uid"
  # overlay as berth's stores use it (a new rootless user may otherwise get vfs: a full copy of
  # the helper image per container).
  printf '[storage]\ndriver = "overlay"\n' >"$work/home/.config/containers/storage.conf"
  as_bench() {
    runuser -u "$BENCH_USER" -- env -C / XDG_RUNTIME_DIR="/run/user/$bench_uid" HOME="$work/home" \
      CONTAINERS_CONF="$PODMAN_CONF" "$@"
  }
  as_bench podman import -q --change 'CMD ["/usr/bin/gitlab-runner-helper"]' "$HELPER_TAR" "$HELPER_IMAGE" >/dev/null
  as_bench podman import -q --change 'CMD ["/bin/sh"]' "$TEST_CACHE/busybox.tar" "$JOB_IMAGE" >/dev/null
  local sock=/run/user/$bench_uid/podman.sock
  as_bench podman system service --time 0 "unix://$sock" >"$work/podman-service.log" 2>&1 &
  engine_pid=$!
  for _ in $(seq 1 200); do [ -S "$sock" ] && break; sleep 0.05; done
  [ -S "$sock" ] || { cat "$work/podman-service.log" >&2; return 1; }
  host=unix://$sock
}
start_dockerd() {
  mkdir -p "$dockerd_root" "$dockerd_exec"
  local sock=$dockerd_exec/docker.sock
  dockerd --data-root "$dockerd_root" --exec-root "$dockerd_exec" --pidfile "$dockerd_exec/pid" \
    -H "unix://$sock" --iptables=false >"$work/dockerd.log" 2>&1 &
  engine_pid=$!
  for _ in $(seq 1 300); do docker -H "unix://$sock" version >/dev/null 2>&1 && break; sleep 0.05; done
  docker -H "unix://$sock" version >/dev/null 2>&1 || { tail -20 "$work/dockerd.log" >&2; return 1; }
  docker -H "unix://$sock" import --change 'CMD ["/usr/bin/gitlab-runner-helper"]' "$HELPER_TAR" "$HELPER_IMAGE" >/dev/null
  docker -H "unix://$sock" import --change 'CMD ["/bin/sh"]' "$TEST_CACHE/busybox.tar" "$JOB_IMAGE" >/dev/null
  host=unix://$sock
}

# config_toml MODE CONCURRENT URL TOKEN DIR [DOCKER_HOST]
config_toml() {
  local mode=$1 concurrent=$2 url=$3 token=$4 dir=$5 host=${6:-}
  cat <<TOML
concurrent = $concurrent
check_interval = 1

[[runners]]
  name = "throughput-$mode"
  url = "$url"
  token = "$token"
  shell = "bash"
TOML
  case $mode in
  shell)
    printf '  executor = "shell"\n  builds_dir = "%s/builds"\n  cache_dir = "%s/cache"\n' "$dir" "$dir" ;;
  berth)
    printf '  executor = "custom"\n  builds_dir = "/builds"\n  cache_dir = "/cache"\n' ;;
  docker-*)
    printf '  executor = "docker"\n' ;;
  esac
  printf '  [runners.feature_flags]\n    FF_TIMESTAMPS = true\n'
  case $mode in
  berth)
    printf '  [runners.custom]\n'
    for stage in config prepare run cleanup; do
      printf '    %s_exec = "%s"\n    %s_args = ["--config", "%s/berth.toml", "%s"]\n' \
        "$stage" "$BERTH" "$stage" "$dir" "$stage"
    done
    printf '    graceful_kill_timeout = 10\n    force_kill_timeout = 5\n' ;;
  docker-*)
    cat <<TOML
  [runners.docker]
    host = "$host"
    image = "$JOB_IMAGE"
    helper_image = "$HELPER_IMAGE"
    pull_policy = ["if-not-present"]
    network_mode = "host"
    disable_cache = true
TOML
    ;;
  esac
}

# leftovers MODE FIRST_ID DOCKER_HOST: prints what the run left behind, one line each.
leftovers() {
  local mode=$1 first=$2 host=${3:-} id
  case $mode in
  berth)
    for ((id = first; id < first + N; id++)); do
      for d in "$STATE/jobs/j$id-"*; do [ -e "$d" ] && echo "job directory $d"; done
      grep -l "^j$id-" "$STATE/leases/"* 2>/dev/null | sed 's/^/lease /' || true
      pgrep -a -f -- "j$id-" | sed "s/^/process /" || true
    done
    # A job identity nobody leases owns no process. Processes berth ended may stay zombies for
    # a moment, until the runner's exit hands them to init: give the reaping up to 5 s.
    local user found
    for _ in $(seq 1 100); do
      found=""
      for user in $(getent passwd | cut -d: -f1 | grep '^berth-job-'); do
        [ -e "$STATE/leases/$user" ] || [ -e "$STATE/leases/${user#berth-}" ] && continue
        found+=$(ps -u "$user" -o pid=,stat=,args= | sed "s/^/process of unleased $user: /")
      done
      [ -z "$found" ] && break
      sleep 0.05
    done
    [ -z "$found" ] || echo "$found" ;;
  docker-*)
    docker -H "$host" ps -aq --filter label=com.gitlab.gitlab-runner.job.id | sed 's/^/container /' ;;
  esac
}

machine="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r)"
date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
results=()
next_id=$(( ($(date +%s) % 100000) * 1000 ))
for mode in $MODES; do
  host=""
  runner=$RUNNER image=$JOB_IMAGE
  case $mode in
  shell) image="" ;;
  docker-podman) runner=$DOCKER_RUNNER; start_podman_socket ;;
  docker-dockerd) runner=$DOCKER_RUNNER; start_dockerd ;;
  esac
  for c in $CONCURRENCY; do
    dir=$work/$mode-c$c
    mkdir -p "$dir"
    printf 'network = "host"\n' >"$dir/berth.toml"
    first=$next_id next_id=$((next_id + N))
    token=glrt-thru$first
    load_before=$(cut -d' ' -f1 /proc/loadavg)
    mkdir -p "$dir/traces"
    "$QUEUE" --jobs "$N" --first-id "$first" --url-file "$dir/url" --traces-dir "$dir/traces" ${image:+--image "$image"} \
      >"$dir/summary.json" 2>"$dir/queue.log" &
    queue_pid=$!
    for _ in $(seq 1 200); do [ -s "$dir/url" ] && break; sleep 0.05; done
    config_toml "$mode" "$c" "$(cat "$dir/url")" "$token" "$dir" "$host" >"$dir/config.toml"
    mkdir -p "$dir/wd"
    log "$mode, concurrent = $c: $N jobs"
    setsid /usr/bin/time -v -o "$dir/time.txt" "$runner" run --config "$dir/config.toml" \
      --working-directory "$dir/wd" >"$dir/runner.log" 2>&1 &
    runner_group=$!
    queue_rc=0
    wait "$queue_pid" || queue_rc=$?
    # Every job has its final update: stop the runner (SIGQUIT: finish jobs, then exit).
    pkill -QUIT -P "$runner_group" 2>/dev/null || true
    for _ in $(seq 1 200); do kill -0 "$runner_group" 2>/dev/null || break; sleep 0.05; done
    kill -KILL -- "-$runner_group" 2>/dev/null || true
    wait "$runner_group" 2>/dev/null || true
    if [ "$queue_rc" -ne 0 ]; then
      log "$mode, concurrent = $c failed:"; tail -30 "$dir/queue.log" >&2; tail -30 "$dir/runner.log" >&2
      exit 1
    fi
    left=$(leftovers "$mode" "$first" "$host")
    [ -z "$left" ] || { log "$mode, concurrent = $c left:"; echo "$left" >&2; }
    # In the JSON only: the runner and the children it reaped (`/usr/bin/time -v`), which leaves
    # out whatever detaches (conmon, the engines' daemons), so it does not compare executors.
    cpu=$(awk -F': ' '/User time/{u=$2} /System time/{s=$2} END{print u+s}' "$dir/time.txt")
    results+=("$(jq -c --arg mode "$mode" --argjson c "$c" --argjson cpu "$cpu" --arg left "$left" \
      --arg load "$load_before" --arg runner "$("$runner" --version | head -1)" \
      '{mode: $mode, concurrent: $c, runner: $runner, load_before: ($load|tonumber), runner_tree_cpu_seconds: $cpu, leftovers: ($left|split("\n")|map(select(. != ""))), jobs, succeeded, wall_seconds, jobs_per_minute, prepare_p50, prepare_p95, total_p50, total_p95, per_job}' \
      "$dir/summary.json")")
  done
  stop_engines
done

mkdir -p benches/results
printf '%s\n' "${results[@]}" | jq -s --arg machine "$machine" --arg date "$date" --argjson n "$N" \
  --arg command "N=$N CONCURRENCY=\"$CONCURRENCY\" MODES=\"$MODES\" benches/throughput.sh" \
  '{command: $command, machine: $machine, date: $date, jobs_per_run: $n, runs: .}' >benches/results/throughput.json
{
  echo "Command: \`N=$N CONCURRENCY=\"$CONCURRENCY\" MODES=\"$MODES\" benches/throughput.sh\`"
  echo
  echo "Machine: $machine; $date. Shared with other builds while it ran (load average before each run in the table)."
  echo
  echo '| executor | concurrent | succeeded | jobs/min | wall [s] | prepare p50 [ms] | prepare p95 [ms] | job p50 [s] | job p95 [s] | load before | leftovers |'
  echo '|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|'
  jq -r '.runs[] | "| \(.mode) | \(.concurrent) | \(.succeeded)/\(.jobs) | \(.jobs_per_minute*10|round/10) | \(.wall_seconds*100|round/100) | \(.prepare_p50*10000|round/10) | \(.prepare_p95*10000|round/10) | \(.total_p50*100|round/100) | \(.total_p95*100|round/100) | \(.load_before) | \(if (.leftovers|length) == 0 then "none" else (.leftovers|join("; ")) end) |"' \
    benches/results/throughput.json
  echo
  echo 'jobs/min counts succeeded jobs over the wall time (first job handed out to last final update).'
  echo "Prepare is the runner's \`prepare_executor\` trace section (for berth: \`berth config\` + \`berth prepare\`)."
  jq -r '.runs[] | select(.succeeded < .jobs) | "\n\(.mode), concurrent = \(.concurrent): " + ([.per_job[] | select(.failure) | "job \(.id): \(.failure)"] | join("; "))' \
    benches/results/throughput.json
} >benches/results/throughput.md
cat benches/results/throughput.md
