# Sourced by the peer build scripts: the Go environment for building peers from the Go module
# proxy into a cache outside the repository. (integration/fake-gitlab/peers/build-gitlab-runner.sh
# repeats these lines and can source this file instead.)
#
#   peers_go_env NAME   export GOMODCACHE/GOCACHE (under $PEERS_DIR unless BERTH_PEERS_GOMODCACHE
#                       or BERTH_PEERS_GOCACHE say otherwise), GOFLAGS=-mod=mod, CGO_ENABLED=0,
#                       GOTOOLCHAIN=local, GOPROXY, and GOSUMDB: sum.golang.org when reachable,
#                       otherwise off. Exits 1 (with NAME in the message) when go is missing.
#   peers_main_module MOD VERSION NAME
#                       in the current directory, a throw-away main module named NAME with MOD's
#                       own go.mod and go.sum (so its replace and exclude directives apply, which
#                       `go install pkg@version` refuses) plus a requirement on MOD@VERSION.
#   peers_build_failed SCRIPT WHAT LOG RECORD
#                       after a failed build of WHAT: when LOG shows the proxy's final refusal,
#                       writes it to RECORD and returns 0 (the tests that need the peer fail
#                       with it); otherwise prints the end of LOG and returns 1.
#   peers_refused LOG   true when LOG shows the proxy's final refusal (403 "This module version
#                       is not available."); prints those lines.

peers_go_env() {
  export GOMODCACHE=${BERTH_PEERS_GOMODCACHE:-$PEERS_DIR/gomodcache}
  export GOCACHE=${BERTH_PEERS_GOCACHE:-$PEERS_DIR/gocache}
  export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local GOPROXY=${GOPROXY:-https://proxy.golang.org}
  export GONOSUMDB= GOPRIVATE= GOWORK=off
  export PATH=$PATH:/usr/local/go/bin
  if ! command -v go >/dev/null 2>&1; then
    echo "$1: the go command is not on PATH (nor in /usr/local/go/bin)" >&2
    exit 1
  fi
  if [ -z "${GOSUMDB:-}" ]; then
    if timeout 10 bash -c 'exec 3<>/dev/tcp/sum.golang.org/443' 2>/dev/null; then
      export GOSUMDB=sum.golang.org
    else
      export GOSUMDB=off
    fi
  fi
}

peers_refused() {
  grep -q "This module version is not available" "$1" &&
    grep -B1 "This module version is not available" "$1" | grep -v '^--$' | head -n 24
}

peers_main_module() {
  local mod=$1 version=$2 name=$3 json dir
  if ! json=$(go mod download -json "$mod@$version"); then
    go mod download "$mod@$version" # prints the error unescaped
    return 1
  fi
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json")
  [ -n "$dir" ] && [ -f "$dir/go.mod" ] || return 1
  sed "s|^module .*|module example.invalid/$name|" "$dir/go.mod" >go.mod
  cp "$dir/go.sum" go.sum
  chmod u+w go.mod go.sum
  go mod edit -require="$mod@$version"
}

peers_build_failed() {
  local script=$1 what=$2 log=$3 record=$4 refused
  if refused=$(peers_refused "$log"); then
    {
      echo "$what: the Go module proxy ($GOPROXY) refused it or a module it needs:"
      echo "$refused"
    } >"$record"
    return 0
  fi
  echo "$script: building $what failed (log: $log):" >&2
  tail -n 40 "$log" >&2
  return 1
}

#   peers_build NAME MODULE VERSION PACKAGE LDFLAGS [GOEXPERIMENT] [SOURCE]
#                       builds PACKAGE of MODULE@VERSION statically into $PEERS_OUT/NAME (with
#                       NAME.stamp; skipped when the stamp matches $PEERS_RECIPE and the module),
#                       in a throw-away main module (peers_main_module), and runs it with
#                       $PEERS_VERSION_ARG. SOURCE: a directory of this repository whose .go files
#                       are the main package (PACKAGE is then "."); their digest is part of the
#                       stamp. A final refusal of the proxy goes to $PEERS_OUT/NAME.unavailable
#                       (peers_build_failed, naming $PEERS_SCRIPT).
peers_build() {
  local name=$1 mod=$2 version=$3 pkg=$4 ldflags=$5 experiment=${6:-} src=${7:-}
  local want="recipe=$PEERS_RECIPE module=$mod@$version"
  if [ -n "$src" ]; then
    want="$want source=$(cat "$src"/*.go | sha256sum | cut -d' ' -f1)"
  fi
  if [ -x "$PEERS_OUT/$name" ] && [ "$(cat "$PEERS_OUT/$name.stamp" 2>/dev/null)" = "$want" ]; then
    rm -f "$PEERS_OUT/$name.unavailable"
    return 0
  fi
  local work=$PEERS_OUT/work-$name log=$PEERS_OUT/$name.build.log rc
  rm -rf "$work" && mkdir -p "$work"
  : >"$log"
  set +e
  (
    set -e
    cd "$work"
    peers_main_module "$mod" "$version" "$name-build"
    if [ -n "$src" ]; then cp "$src"/*.go .; fi
    GOEXPERIMENT=$experiment go build -trimpath -ldflags "-s -w $ldflags" -o "$work/$name" "$pkg"
    "$work/$name" "$PEERS_VERSION_ARG"
  ) >>"$log" 2>&1
  rc=$?
  set -e
  if [ "$rc" -ne 0 ]; then
    peers_build_failed "$PEERS_SCRIPT" "$mod@$version" "$log" "$PEERS_OUT/$name.unavailable" || return 1
    rm -rf "$work"
    return 0
  fi
  mv -f "$work/$name" "$PEERS_OUT/$name"
  echo "$want" >"$PEERS_OUT/$name.stamp"
  rm -f "$PEERS_OUT/$name.unavailable"
  rm -rf "$work"
}
