#!/usr/bin/env bash
# Installs the oracle tools berth-scan's tests compare against. Idempotent; runs as root on a
# fresh Debian 12 machine (CI=true, no stdin). Downloads are cached under $BERTH_TEST_TOOLS
# (default /var/cache/berth-test), never inside the repository.
#
# What it installs:
#   apt:   dpkg (dpkg --compare-versions), python3-rpm (librpm's labelCompare, run with
#          /usr/bin/python3), rpm (rpm + rpmbuild write a real sqlite rpmdb fixture),
#          python3-venv, a JRE and Maven (only when missing), nodejs/npm
#          (only when missing)
#   PyPI:  packaging (PEP 440 oracle), jsonschema + cyclonedx-python-lib[json-validation]
#          (report schema validation, CycloneDX 1.6 schemas ship in that package), boltdb
#          (writes a synthetic Trivy DB), spdx-tools (pyspdxtools validates SPDX JSON reports)
#          The Trivy and Grype peers are Go builds: integration/peers/build-scanners.sh.
#          -> $BERTH_TEST_TOOLS/venv
#   npm:   semver@7 (npm's own version order) -> $BERTH_TEST_TOOLS/node/node_modules/semver
#   Maven Central: org.apache.maven:maven-artifact (ComparableVersion) via `mvn dependency:copy`
#          -> $BERTH_TEST_TOOLS/maven/maven-artifact.jar
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

TOOLS="${BERTH_TEST_TOOLS:-/var/cache/berth-test}"
MAVEN_ARTIFACT_VERSION="3.9.9"
mkdir -p "$TOOLS"

log() { echo "berth-scan setup: $*" >&2; }

apt_missing=()
need_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed' || apt_missing+=("$1"); }
need_pkg dpkg
need_pkg python3-rpm
need_pkg rpm
need_pkg python3-venv
need_pkg zstd
need_pkg db5.3-util
command -v java >/dev/null 2>&1 || need_pkg default-jre-headless
command -v mvn >/dev/null 2>&1 || need_pkg maven
command -v node >/dev/null 2>&1 || need_pkg nodejs
command -v npm >/dev/null 2>&1 || need_pkg npm
if ((${#apt_missing[@]})); then
    log "apt-get install ${apt_missing[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi
/usr/bin/python3 -c 'import rpm' || { log "python3-rpm did not install"; exit 1; }

# Python oracles and validators.
VENV="$TOOLS/venv"
if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating $VENV"
    /usr/bin/python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import packaging, jsonschema, cyclonedx.validation.json, boltdb, spdx_tools' 2>/dev/null; then
    log "pip install packaging jsonschema cyclonedx-python-lib boltdb==0.0.2 spdx-tools==0.8.5"
    "$VENV/bin/pip" install -q --disable-pip-version-check \
        'packaging>=24' 'jsonschema>=4.20' 'cyclonedx-python-lib[json-validation]>=8' 'boltdb==0.0.2' \
        'spdx-tools==0.8.5'
fi

# npm semver.
NODE_DIR="$TOOLS/node"
if [[ ! -f "$NODE_DIR/node_modules/semver/package.json" ]]; then
    log "npm install semver@7"
    mkdir -p "$NODE_DIR"
    (cd "$NODE_DIR" && npm install --silent --no-audit --no-fund --prefix "$NODE_DIR" semver@7 >/dev/null)
fi

# Maven's ComparableVersion.
MVN_DIR="$TOOLS/maven"
if [[ ! -f "$MVN_DIR/maven-artifact.jar" ]]; then
    log "mvn dependency:copy maven-artifact:$MAVEN_ARTIFACT_VERSION"
    mkdir -p "$MVN_DIR"
    mvn -q -B -Dmaven.repo.local="$MVN_DIR/m2" \
        org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy \
        -Dartifact="org.apache.maven:maven-artifact:$MAVEN_ARTIFACT_VERSION" \
        -DoutputDirectory="$MVN_DIR" -Dmdep.stripVersion=true </dev/null >/dev/null
fi
java -cp "$MVN_DIR/maven-artifact.jar" org.apache.maven.artifact.versioning.ComparableVersion 1.0 1.0.0 >/dev/null

log "oracle tools ready under $TOOLS"
