#!/usr/bin/env bash
# make-fixture-repo.sh FIXTURE_DIR REPO_DIR NAME: the git repository of one fixture, made the same
# way every time (record-gitlab-ci-local.sh and berth's parity tests both use it):
#   - branch main, one commit of the fixture's files (all but expected.json, gitlab-ci-local.*,
#     README.md and changes/), fixed author and dates;
#   - remote origin git@gitlab.example.com:berth/<name>.git (never contacted), with
#     refs/remotes/origin/main at that commit and origin/HEAD pointing to it (default branch main);
#   - when the fixture has a changes/ directory, its files are copied over the tree and committed
#     as a second commit on main: origin/main stays at the first, so `rules:changes` sees exactly
#     the files under changes/ as changed.
set -euo pipefail
src=$1 repo=$2 name=$3
export GIT_AUTHOR_NAME="Berth Fixture" GIT_AUTHOR_EMAIL="fixture@example.invalid" \
  GIT_COMMITTER_NAME="Berth Fixture" GIT_COMMITTER_EMAIL="fixture@example.invalid" \
  GIT_AUTHOR_DATE="2026-01-01T00:00:00Z" GIT_COMMITTER_DATE="2026-01-01T00:00:00Z" \
  GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
mkdir -p "$repo"
(cd "$src" && find . -mindepth 1 -maxdepth 1 ! -name expected.json ! -name 'gitlab-ci-local.*' \
  ! -name changes ! -name README.md -exec cp -a {} "$repo/" \;)
git -C "$repo" init -q -b main
git -C "$repo" config user.name "$GIT_AUTHOR_NAME"
git -C "$repo" config user.email "$GIT_AUTHOR_EMAIL"
git -C "$repo" add -A
git -C "$repo" commit -q -m "fixture $name"
git -C "$repo" remote add origin "git@gitlab.example.com:berth/$name.git"
git -C "$repo" update-ref refs/remotes/origin/main HEAD
git -C "$repo" symbolic-ref refs/remotes/origin/HEAD refs/remotes/origin/main
if [ -d "$src/changes" ]; then
  cp -a "$src/changes/." "$repo/"
  git -C "$repo" add -A
  git -C "$repo" commit -q -m "fixture $name: changes"
fi
