#!/usr/bin/env bash
# Regenerate what gitlab-ci-local (the peer of integration/peers/install-gitlab-ci-local.sh) says
# about each fixture under integration/exec-fixtures/<name>/:
#
#   gitlab-ci-local.list.json   stdout of `gitlab-ci-local --list-json` (the JSON array)
#   gitlab-ci-local.list-json.prefix.txt
#                               what --list-json printed on stdout before the JSON, if anything
#   gitlab-ci-local.list.txt    stdout of `gitlab-ci-local --list --no-color`
#   gitlab-ci-local.error.txt   instead of both, when gitlab-ci-local refuses the fixture: its exit
#                               code and stderr
#
# Each fixture is listed in a fresh git repository made by make-fixture-repo.sh, the same way
# every time, so that berth's parity tests can rebuild the identical repository.
#
# Usage: record-gitlab-ci-local.sh [NAME...]   (no NAME: every fixture). Quiet on success.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GCL=$("$HERE/../peers/install-gitlab-ci-local.sh" --print-path)
work=$(mktemp -d /tmp/berth-exec-fixtures.XXXXXX)
trap 'rm -rf "$work"' EXIT

export GIT_AUTHOR_NAME="Berth Fixture" GIT_AUTHOR_EMAIL="fixture@example.invalid" \
  GIT_COMMITTER_NAME="Berth Fixture" GIT_COMMITTER_EMAIL="fixture@example.invalid" \
  GIT_AUTHOR_DATE="2026-01-01T00:00:00Z" GIT_COMMITTER_DATE="2026-01-01T00:00:00Z" \
  GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1

make_repo() { "$HERE/make-fixture-repo.sh" "$@"; }

if [ $# -eq 0 ]; then
  mapfile -t names < <(cd "$HERE" && find . -mindepth 2 -maxdepth 2 -name .gitlab-ci.yml | cut -d/ -f2 | sort)
  set -- "${names[@]}"
fi
for name in "$@"; do
  src=$HERE/$name
  [ -f "$src/.gitlab-ci.yml" ] || { echo "record-gitlab-ci-local.sh: $src/.gitlab-ci.yml does not exist" >&2; exit 1; }
  repo=$work/$name
  make_repo "$src" "$repo" "$name"
  mkdir -p "$work/home-$name"
  rm -f "$src"/gitlab-ci-local.*
  # gitlab-ci-local refuses an absolute --cwd: it runs in the repository instead.
  common=(--home "$work/home-$name" --no-color)
  if (cd "$repo" && "$GCL" "${common[@]}" --list-json) >"$work/$name.json" 2>"$work/$name.err"; then
    # gitlab-ci-local prints some warnings on stdout ahead of the JSON (overriding a predefined
    # variable does): the JSON goes to .list.json, what came before it to .list-json.prefix.txt.
    awk '/^\[/ { json = 1 } json' "$work/$name.json" >"$src/gitlab-ci-local.list.json"
    awk '/^\[/ { exit } { print }' "$work/$name.json" >"$work/$name.prefix"
    if [ -s "$work/$name.prefix" ]; then mv "$work/$name.prefix" "$src/gitlab-ci-local.list-json.prefix.txt"; fi
    (cd "$repo" && "$GCL" "${common[@]}" --list) >"$src/gitlab-ci-local.list.txt" 2>"$work/$name.err"
  else
    rc=$?
    {
      echo "gitlab-ci-local --list-json exited $rc; stderr:"
      # The repository's temporary path would make every recording differ.
      sed "s|$repo|<fixture>|g" "$work/$name.err"
    } >"$src/gitlab-ci-local.error.txt"
  fi
done
