#!/usr/bin/env bash
# Build the real gitlab-runner peers that berth's integration tests drive, from the Go module proxy.
#
# Idempotent, non-interactive, quiet on success. Binaries and the Go module/build caches live
# OUTSIDE the repository (never commit them):
#
#   BERTH_PEERS_DIR        default /var/cache/berth-peers
#   BERTH_PEERS_GOMODCACHE default $BERTH_PEERS_DIR/gomodcache
#   BERTH_PEERS_GOCACHE    default $BERTH_PEERS_DIR/gocache
#
# Peers (custom-executor-contract.md §5):
#   gitlab-runner-19.3.0   pinned by commit 9cbf0074ddb0e2f79d79f44406cafebf09117b64
#   gitlab-runner-16.11.0  pinned by commit 91a27b2a875113abd0e7dfce722e0ec5497b5013
#   gitlab-runner-19.4.0-pre-fc1f1862
#                          the main-branch snapshot the Go module proxy reachable from this
#                          project's machines actually serves (v1.11.1-0.20260903214710-fc1f1862bd91).
#                          executors/custom/ is byte-identical to v19.3.0; built as the 19.x
#                          stand-in when v19.3.0 itself is refused.
#   gitlab-runner-19.4.0-pre-fc1f1862-stubbed
#                          that snapshot, built when the proxy refuses its gitlab.com-hosted
#                          dependencies: those are replaced by the small stubs in stubbed/stubs/
#                          (step-runner, moa, labkit/v2, phrasestream, runner_wrapper/api; none
#                          is on the custom executor's path) and the binary keeps only the custom
#                          and shell executors (stubbed/main.go). Everything berth talks to (the
#                          custom executor, build stages, network client, shells, artifact and
#                          cache helpers) is the runner's own code.
#
# A peer whose module version the proxy refuses is not an error of this script: the refusal is
# final, and the exact error is written to <binary>.unavailable for the tests to report (they
# fail when neither a binary nor such a record exists). The script fails (exit 1, log tail on
# stderr) only when a version the proxy does serve fails to download or build.
set -euo pipefail

PEERS_DIR=${BERTH_PEERS_DIR:-/var/cache/berth-peers}
export GOMODCACHE=${BERTH_PEERS_GOMODCACHE:-$PEERS_DIR/gomodcache}
export GOCACHE=${BERTH_PEERS_GOCACHE:-$PEERS_DIR/gocache}
export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local GOPROXY=${GOPROXY:-https://proxy.golang.org}
export GONOSUMDB= GOPRIVATE=
MOD=gitlab.com/gitlab-org/gitlab-runner
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WRAPPER_API=$MOD/helpers/runner_wrapper/api
# Bump when the recipe changes, so cached binaries are rebuilt.
RECIPE=2

mkdir -p "$PEERS_DIR" "$GOMODCACHE" "$GOCACHE" "$PEERS_DIR/logs"
exec 9>"$PEERS_DIR/.lock"
flock 9

if ! command -v go >/dev/null 2>&1; then
  echo "build-gitlab-runner.sh: the go command is not on PATH" >&2
  exit 1
fi

# The checksum database: use it when reachable, otherwise GOSUMDB=off for these builds only.
if [ -z "${GOSUMDB:-}" ]; then
  if timeout 10 bash -c 'exec 3<>/dev/tcp/sum.golang.org/443' 2>/dev/null; then
    export GOSUMDB=sum.golang.org
  else
    export GOSUMDB=off
  fi
fi

# cached OUT STAMP_TEXT: true when OUT was built by this exact recipe.
cached() {
  [ -x "$1" ] && [ -f "$1.stamp" ] && [ "$(cat "$1.stamp")" = "$2" ] && rm -f "$1.unavailable"
}

# begin NAME OUT STAMP_TEXT: false when OUT is cached; otherwise sets $work and $log (fresh).
begin() {
  cached "$2" "$3" && return 1
  work="$PEERS_DIR/work-$1" log="$PEERS_DIR/logs/build-$1.log"
  rm -rf "$work" && mkdir -p "$work"
  : >"$log"
}

# finish RC NAME WHAT OUT LOG STAMP_TEXT WORK: install a built binary, or classify the failure.
# Returns 0 (installed), 3 (the proxy refused something: recorded in OUT.unavailable), or 1.
finish() {
  local rc=$1 name=$2 what=$3 out=$4 log=$5 want=$6 work=$7
  if [ "$rc" -ne 0 ]; then
    rm -f "$out.tmp"
    if grep -q "This module version is not available" "$log" && ! [ -x "$out" ]; then
      {
        echo "gitlab-runner $name: the Go module proxy ($GOPROXY) refused $what or a module it needs:"
        grep -B1 "This module version is not available" "$log" | grep -v '^--$' | head -n 24
      } >"$out.unavailable"
      rm -rf "$work"
      return 3
    fi
    echo "build-gitlab-runner.sh: building gitlab-runner $name failed; log: $log" >&2
    tail -n 40 "$log" >&2
    return 1
  fi
  mv -f "$out.tmp" "$out"
  echo "$want" >"$out.stamp"
  rm -f "$out.unavailable"
  rm -rf "$work"
}

# build NAME VERSION_FOR_GO VERSION REVISION BRANCH EXTRA_EDITS...
# Returns 0 when built or cached, 3 when the proxy refused the version, 1 on any other failure.
build() {
  local name=$1 gover=$2 version=$3 revision=$4 branch=$5
  shift 5
  local out="$PEERS_DIR/gitlab-runner-$name"
  local want="recipe=$RECIPE module=$MOD@$gover edits=$*"
  begin "$name" "$out" "$want" || return 0
  (
    set -e
    cd "$work"
    go mod init example.invalid/glr-build-"${name//./-}"
    # Resolve the commit to its pseudo-version (reads .info only).
    local resolved
    resolved=$(go list -m -f '{{.Version}}' "$MOD@$gover")
    echo "resolved $MOD@$gover to $resolved"
    # Pre-flight: the runner's gitlab.com-hosted requirements. The proxy reachable here refuses
    # many of them; learning that before `go get` downloads ~1 GiB of others saves CI time.
    local gomod gl_deps
    gomod=$(go mod download -json "$MOD@$resolved" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
    gl_deps=$(awk '/^require[[:space:]]*\(/{r=1;next} r&&/^\)/{r=0} r&&$1 ~ /^gitlab\.com\// && $1 != "'"$WRAPPER_API"'" {print $1"@"$2}' "$gomod")
    if [ -n "$gl_deps" ]; then
      # shellcheck disable=SC2086
      go mod download $gl_deps
    fi
    go get "$MOD@$resolved"
    for edit in "$@"; do
      case $edit in
        get:*) go get "${edit#get:}" ;;
        *) go mod edit "$edit" ;;
      esac
    done
    local p=$MOD/common
    go build -trimpath -o "$out.tmp" \
      -ldflags "-w -X $p.VERSION=$version -X $p.REVISION=$revision -X $p.BRANCH=$branch -X $p.BUILT=unknown" \
      "$MOD"
    "$out.tmp" --version
  ) >>"$log" 2>&1
  finish $? "$name" "$MOD@$gover" "$out" "$log" "$want" "$work"
}

# build_stubbed NAME MODULE_VERSION VERSION REVISION BRANCH
# Same return codes as `build`.
build_stubbed() {
  local name=$1 gover=$2 version=$3 revision=$4 branch=$5
  local out="$PEERS_DIR/gitlab-runner-$name"
  local want
  want="recipe=$RECIPE module=$MOD@$gover stubs=$(cd "$HERE/stubbed" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
  begin "$name" "$out" "$want" || return 0
  (
    set -e
    cd "$work"
    cp "$HERE/stubbed/main.go" .
    local stubs="$HERE/stubbed/stubs" p=$MOD/common
    cat >go.mod <<GOMOD
module example.invalid/glr-build-stubbed

go 1.26.5

require (
	$MOD $gover
	gitlab.com/ajwalker/phrasestream v0.0.0-20250306164532-3b0af7cb1452
	$WRAPPER_API v0.1.1
	gitlab.com/gitlab-org/labkit/v2 v2.29.2
	gitlab.com/gitlab-org/moa v0.0.0-20260427132849-fad5ad756fe7
	gitlab.com/gitlab-org/step-runner v0.44.0
)

replace (
	gitlab.com/ajwalker/phrasestream => $stubs/gitlab.com/ajwalker/phrasestream
	$WRAPPER_API => $stubs/$WRAPPER_API
	gitlab.com/gitlab-org/labkit/v2 => $stubs/gitlab.com/gitlab-org/labkit/v2
	gitlab.com/gitlab-org/moa => $stubs/gitlab.com/gitlab-org/moa
	gitlab.com/gitlab-org/step-runner => $stubs/gitlab.com/gitlab-org/step-runner
)

exclude github.com/moby/moby v28.5.2+incompatible
GOMOD
    go build -trimpath -o "$out.tmp" \
      -ldflags "-w -X $p.VERSION=$version -X $p.REVISION=$revision -X $p.BRANCH=$branch -X $p.BUILT=unknown" .
    "$out.tmp" --version
  ) >>"$log" 2>&1
  finish $? "$name" "$MOD@$gover with stubs" "$out" "$log" "$want" "$work"
}

# `build` is called outside any `||` list so that `set -e` holds inside its subshell.
set +e
status=0
build 19.3.0 9cbf0074ddb0e2f79d79f44406cafebf09117b64 19.3.0 9cbf0074 v19.3.0 \
  -exclude=github.com/moby/moby@v28.5.2+incompatible
rc19=$?
[ "$rc19" -eq 1 ] && status=1

build 16.11.0 91a27b2a875113abd0e7dfce722e0ec5497b5013 16.11.0 91a27b2a v16.11.0 \
  -replace=github.com/moby/spdystream=github.com/gravitational/spdystream@v0.0.0-20230511100431-ddc12af7b31d
[ "$?" -eq 1 ] && status=1

if [ "$rc19" -ne 0 ]; then
  snapshot=v1.11.1-0.20260903214710-fc1f1862bd91
  build 19.4.0-pre-fc1f1862 "$snapshot" 19.4.0~pre.fc1f1862 fc1f1862 main \
    -exclude=github.com/moby/moby@v28.5.2+incompatible
  rcpre=$?
  [ "$rcpre" -eq 1 ] && status=1
  if [ "$rcpre" -eq 3 ]; then
    build_stubbed 19.4.0-pre-fc1f1862-stubbed "$snapshot" 19.4.0~pre.fc1f1862.stubbed fc1f1862 main
    [ "$?" -eq 1 ] && status=1
  fi
else
  rm -f "$PEERS_DIR"/gitlab-runner-19.4.0-pre-fc1f1862*.unavailable
fi
exit "$status"
