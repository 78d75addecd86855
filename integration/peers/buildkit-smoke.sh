#!/usr/bin/env bash
# Prove a per-job rootless BuildKit on this host, with the exact commands berth will use
# (docs/buildkit-notes.md), and print how long each step took.
#
# Runs as root; everything BuildKit-related runs as the unprivileged runner user:
#   start    rootlesskit --state-dir=J/rk --net=host buildkitd --root J/root
#              --addr unix://J/buildkitd.sock ... --oci-worker-snapshotter=overlayfs
#   ready    buildctl --addr unix://J/buildkitd.sock debug workers   (polled every 10 ms)
#   build    FROM scratch + COPY; then FROM a local busybox OCI layout (named context) + COPY + RUN
#   push     to a loopback docker-registry (Debian package docker-registry), when installed
#   stop     SIGTERM to rootlesskit (it forwards the signal to buildkitd)
#   cleanup  unshare --map-auto --map-root-user rm -rf J   (files of non-root image users belong
#            to subordinate uids: a plain rm as the runner user fails with Permission denied)
#
#   BERTH_PEERS_DIR     where build-buildkit.sh put buildkit/{buildkitd,buildctl}
#                       (default /var/cache/berth-peers)
#   BERTH_RUNNER_USER   default berth-runner (needs /etc/subuid and /etc/subgid ranges)
#
# Exit 0 and a timing summary when everything worked; otherwise the failing step's error, exit 1.
set -euo pipefail

PEERS_DIR=${BERTH_PEERS_DIR:-/var/cache/berth-peers}
BK=$PEERS_DIR/buildkit
USER_NAME=${BERTH_RUNNER_USER:-berth-runner}
RUID=$(id -u "$USER_NAME")
AS=(runuser -u "$USER_NAME" -- env XDG_RUNTIME_DIR=/run/user/$RUID HOME="$(getent passwd "$USER_NAME" | cut -d: -f6)"
  PATH="$BK:/usr/sbin:/usr/bin:/sbin:/bin")

for b in buildkitd buildctl; do
  [ -x "$BK/$b" ] || { echo "buildkit-smoke.sh: $BK/$b is missing: run build-buildkit.sh" >&2; exit 1; }
done
command -v rootlesskit >/dev/null || { echo "buildkit-smoke.sh: rootlesskit is not installed" >&2; exit 1; }
[ -d "/run/user/$RUID" ] || install -d -m 0700 -o "$USER_NAME" -g "$(id -g "$USER_NAME")" "/run/user/$RUID"

cd /
T=$(mktemp -d /tmp/berth-bk-smoke.XXXXXX)
chown "$USER_NAME:" "$T"
chmod 0755 "$T"
J=$T/job # the per-job directory: state, socket, BuildKit root
REG_PID= RK_PID= RU_PID=

cleanup() {
  set +e
  [ -n "$RK_PID" ] && kill -TERM "$RK_PID" 2>/dev/null
  [ -n "$RU_PID" ] && wait "$RU_PID" 2>/dev/null
  [ -n "$REG_PID" ] && kill -TERM "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null
  "${AS[@]}" unshare --map-auto --map-root-user rm -rf "$T"
  rm -rf "$T"
}
trap cleanup EXIT

now() { date +%s%N; }
ms() { echo $((($2 - $1) / 1000000)); }
fail() {
  echo "buildkit-smoke.sh: $1" >&2
  [ -f "$2" ] && grep -v -e 'fsverity' -e '^[[:space:]]' "$2" | tail -n 20 >&2
  exit 1
}
bctl() { "${AS[@]}" buildctl --addr "unix://$J/buildkitd.sock" "$@"; }

# Build contexts (readable by the runner user).
mkdir -p "$T/ctx-scratch" "$T/ctx-busybox" "$T/ctx-base"
echo "hello from berth" >"$T/ctx-scratch/hello.txt"
printf 'FROM scratch\nCOPY hello.txt /hello.txt\n' >"$T/ctx-scratch/Containerfile"
cp "$T/ctx-scratch/hello.txt" "$T/ctx-busybox/"
printf 'FROM busybox\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt >/copied.txt && mkdir -p /home/u && chown 1000:1000 /home/u && chmod 700 /home/u\n' \
  >"$T/ctx-busybox/Containerfile"
cp /bin/busybox "$T/ctx-base/busybox"
printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n' >"$T/ctx-base/Containerfile"
chown -R "$USER_NAME:" "$T"/ctx-*
"${AS[@]}" mkdir -p "$J"

# Start.
t0=$(now)
"${AS[@]}" rootlesskit --state-dir="$J/rk" --net=host \
  buildkitd --root "$J/root" --addr "unix://$J/buildkitd.sock" --otel-socket-path "$J/otel.sock" \
  --oci-worker=true --containerd-worker=false --oci-worker-snapshotter=overlayfs --cdi-disabled \
  >"$T/buildkitd.log" 2>&1 </dev/null &
# Signal rootlesskit itself, never runuser: runuser answers SIGTERM by sleeping 2 s and then
# SIGKILLing its child ("Session terminated, killing shell... ...killed.").
RU_PID=$!
until bctl debug workers >/dev/null 2>&1; do
  kill -0 "$RU_PID" 2>/dev/null || fail "buildkitd exited before it was ready:" "$T/buildkitd.log"
  [ $(($(now) - t0)) -lt 30000000000 ] || fail "buildkitd not ready after 30 s:" "$T/buildkitd.log"
  sleep 0.01
done
t1=$(now)
RK_PID=$(pgrep -P "$RU_PID" -x rootlesskit) || fail "no rootlesskit process under runuser $RU_PID" /dev/null

# FROM scratch.
bctl build --progress=plain --frontend dockerfile.v0 --local context="$T/ctx-scratch" \
  --local dockerfile="$T/ctx-scratch" --opt filename=Containerfile \
  --output type=oci,dest="$J/scratch.tar" >"$T/b1.log" 2>&1 || fail "FROM scratch build failed:" "$T/b1.log"
t2=$(now)

# A busybox base image as an OCI layout directory (built here from /bin/busybox, so the script
# needs no image store); berth would export it from its base store instead.
bctl build --progress=plain --frontend dockerfile.v0 --local context="$T/ctx-base" \
  --local dockerfile="$T/ctx-base" --opt filename=Containerfile \
  --output type=oci,tar=false,dest="$T/busybox-layout" >"$T/b2.log" 2>&1 || fail "busybox base build failed:" "$T/b2.log"
digest=$(grep -o '"digest":"sha256:[0-9a-f]*"' "$T/busybox-layout/index.json" | head -n 1 | cut -d'"' -f4)
t3=$(now)

# FROM busybox (the local layout as the named context "busybox") + COPY + RUN.
bctl build --progress=plain --frontend dockerfile.v0 --local context="$T/ctx-busybox" \
  --local dockerfile="$T/ctx-busybox" --opt filename=Containerfile \
  --oci-layout base="$T/busybox-layout" --opt context:busybox="oci-layout://base@$digest" \
  --output type=oci,dest="$J/busybox.tar" >"$T/b3.log" 2>&1 || fail "FROM busybox build failed:" "$T/b3.log"
t4=$(now)

# Push to a loopback registry.
push="skipped (docker-registry not installed)"
if command -v docker-registry >/dev/null; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$T/registry"
  printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
    "$T/registry/data" "$port" >"$T/registry/config.yml"
  chown -R "$USER_NAME:" "$T/registry"
  "${AS[@]}" docker-registry serve "$T/registry/config.yml" >"$T/registry.log" 2>&1 &
  REG_PID=$!
  until curl -fs "http://127.0.0.1:$port/v2/" >/dev/null; do
    kill -0 "$REG_PID" 2>/dev/null || fail "docker-registry did not start:" "$T/registry.log"
    sleep 0.05
  done
  t5=$(now)
  bctl build --progress=plain --frontend dockerfile.v0 --local context="$T/ctx-busybox" \
    --local dockerfile="$T/ctx-busybox" --opt filename=Containerfile \
    --oci-layout base="$T/busybox-layout" --opt context:busybox="oci-layout://base@$digest" \
    --output "type=image,name=127.0.0.1:$port/berth/smoke:1,push=true,registry.insecure=true" \
    >"$T/b4.log" 2>&1 || fail "push to the loopback registry failed:" "$T/b4.log"
  curl -fs "http://127.0.0.1:$port/v2/berth/smoke/tags/list" | grep -q '"1"' || fail "the pushed tag is not in the registry" /dev/null
  push="$(ms "$t5" "$(now)") ms (cached build + push)"
fi

# Stop, then check nothing is left.
t6=$(now)
kill -TERM "$RK_PID"
wait "$RU_PID" 2>/dev/null || true # buildkitd exits 1 after "got SIGTERM/SIGINT, forcing shutdown"
RK_PID= RU_PID=
t7=$(now)
left=$(pgrep -u "$USER_NAME" -f "$J/" || true)
[ -z "$left" ] || fail "processes left after stop: $left" /dev/null
! grep -q " $J" /proc/self/mountinfo || fail "mounts left under $J" /dev/null

# Cleanup inside a user namespace (the build left /home/u owned by subordinate uid 1000).
"${AS[@]}" unshare --map-auto --map-root-user rm -rf "$J"
t8=$(now)
[ ! -e "$J" ] || fail "$J is still there after cleanup" /dev/null

echo "buildkit-smoke: $("$BK/buildkitd" --version)"
echo "  ready           $(ms "$t0" "$t1") ms"
echo "  FROM scratch    $(ms "$t1" "$t2") ms"
echo "  busybox base    $(ms "$t2" "$t3") ms"
echo "  FROM busybox    $(ms "$t3" "$t4") ms (COPY + RUN, cold job cache)"
echo "  push            $push"
echo "  stop            $(ms "$t6" "$t7") ms"
echo "  cleanup         $(ms "$t7" "$t8") ms"
