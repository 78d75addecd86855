#!/usr/bin/env bash
# One DinD-style builder until it can build, then gone (the comparison for ready-berth.sh).
set -euo pipefail
name=dind-ready-$$
"$(dirname "$0")/dind/dind.sh" start "$name"
"$(dirname "$0")/dind/dind.sh" stop "$name"
