#!/usr/bin/env bash
# The scanner benchmark's multi-ecosystem image (~390 MB, 7 layers), rebuilt from public
# registries only: the helper image's root filesystem (debootstrap --variant=minbase bookworm +
# git, from integration/images/build-test-images.sh), then one layer each of Python wheels from
# PyPI, node_modules from npm, a Go binary with module build info (BuildKit's buildctl from
# integration/peers/build-buildkit.sh), a Rust workspace's Cargo.lock (berth's own, without its Cargo.toml), Java jars
# from Maven Central, and a layer that deletes a file of an earlier one (a whiteout).
# Writes $CACHE/scan-bench/multi.tar (docker-archive, ~390 MB) and, from it, a gzip-compressed
# OCI layout of the same image, $CACHE/scan-bench/multi-oci-gz/ (every layer blob gzip -6, as
# registries serve them). Idempotent; run as root after scripts/test-all (it needs
# $CACHE/helper.tar and BuildKit's buildctl; scan-bench/ is created here). Benchmarks only: CI
# never builds it.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${BERTH_TEST_CACHE:-/var/cache/berth-test}
OUT=$CACHE/scan-bench/multi.tar
OCI=$CACHE/scan-bench/multi-oci-gz
mkdir -p "$CACHE/scan-bench"

# The OCI layout: the docker-archive's layers gzip-compressed, its config as is, an OCI manifest
# and index naming them by digest. Built by hand (no skopeo in Debian's minimal set needed).
oci_layout() {
  [ -s "$OCI/index.json" ] && return 0
  local tmp
  tmp=$(mktemp -d "$CACHE/scan-bench/oci-XXXXXX")
  tar -xf "$OUT" -C "$tmp/"
  mkdir -p "$tmp/out/blobs/sha256"
  python3 - "$tmp" "$tmp/out" <<'PY'
import hashlib, json, os, shutil, subprocess, sys
src, out = sys.argv[1], sys.argv[2]
blobs = os.path.join(out, "blobs", "sha256")
def put(data_path):
    h = hashlib.sha256()
    with open(data_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    d = h.hexdigest()
    shutil.move(data_path, os.path.join(blobs, d))
    return "sha256:" + d, os.path.getsize(os.path.join(blobs, d))
m = json.load(open(os.path.join(src, "manifest.json")))[0]
layers = []
for i, rel in enumerate(m["Layers"]):
    gz = os.path.join(out, f"layer{i}.gz")
    with open(os.path.realpath(os.path.join(src, rel)), "rb") as f, open(gz, "wb") as g:
        subprocess.run(["gzip", "-6", "-n", "-c"], stdin=f, stdout=g, check=True)
    digest, size = put(gz)
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                   "digest": digest, "size": size})
cfg = os.path.join(out, "config.json")
shutil.copyfile(os.path.join(src, m["Config"]), cfg)
cdigest, csize = put(cfg)
man = os.path.join(out, "manifest.json")
json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                      "digest": cdigest, "size": csize},
           "layers": layers}, open(man, "w"))
mdigest, msize = put(man)
json.dump({"schemaVersion": 2, "manifests": [{
    "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdigest, "size": msize,
    "annotations": {"org.opencontainers.image.ref.name": "localhost/scan-bench-multi:latest"}}]},
    open(os.path.join(out, "index.json"), "w"))
json.dump({"imageLayoutVersion": "1.0.0"}, open(os.path.join(out, "oci-layout"), "w"))
PY
  rm -rf "$OCI"
  mv "$tmp/out" "$OCI"
  rm -rf "$tmp"
}
if [ -s "$OUT" ]; then
  oci_layout
  exit 0
fi
[ -s "$CACHE/helper.tar" ] || { echo "missing $CACHE/helper.tar: run scripts/test-all first" >&2; exit 1; }
BUILDCTL=${BERTH_PEERS_DIR:-/var/cache/berth-peers}/buildkit/buildctl
[ -x "$BUILDCTL" ] || { echo "missing $BUILDCTL: run integration/peers/build-buildkit.sh" >&2; exit 1; }
work=$(mktemp -d "$CACHE/multi-XXXXXX")
trap 'rm -rf "$work"' EXIT
ctx=$work/ctx
mkdir -p "$ctx/py" "$ctx/node" "$ctx/go" "$ctx/rust" "$ctx/java"

# Python: wheels with their dist-info, as `pip install --target` lays them out.
python3 -m pip install --quiet --no-compile --target "$ctx/py" \
  'numpy==1.26.4' 'requests==2.31.0' 'urllib3==1.26.18' 'flask==2.3.3' \
  'jinja2==3.1.2' 'cryptography==41.0.7' 'pyyaml==6.0.1' 'setuptools==68.2.2'
# npm: an app with a lockfile's worth of packages.
printf '{"name":"bench-app","version":"1.0.0","private":true}\n' >"$ctx/node/package.json"
(cd "$ctx/node" && npm install --silent --no-audit --no-fund \
  express@4.18.2 lodash@4.17.20 moment@2.29.1 axios@0.21.1 minimist@1.2.5 >/dev/null)
cp "$BUILDCTL" "$ctx/go/buildctl"
cp Cargo.lock "$ctx/rust/"
for jar in \
  org/apache/logging/log4j/log4j-core/2.14.1/log4j-core-2.14.1.jar \
  org/apache/logging/log4j/log4j-api/2.14.1/log4j-api-2.14.1.jar \
  com/fasterxml/jackson/core/jackson-databind/2.9.10/jackson-databind-2.9.10.jar \
  org/apache/commons/commons-text/1.9/commons-text-1.9.jar \
  com/google/guava/guava/31.1-jre/guava-31.1-jre.jar; do
  curl -fsSL "https://repo1.maven.org/maven2/$jar" -o "$ctx/java/$(basename "$jar")"
done
cat >"$ctx/Containerfile" <<'CF'
FROM localhost/scan-bench-base:latest
COPY py /usr/local/lib/python3.11/dist-packages
COPY node /srv/app
COPY go/buildctl /usr/local/bin/buildctl
COPY rust /src/berth
COPY java /opt/java/lib
RUN rm -rf /usr/share/doc/git
CF
podman image exists localhost/scan-bench-base:latest ||
  podman import --change 'CMD ["/bin/bash"]' "$CACHE/helper.tar" localhost/scan-bench-base:latest >/dev/null
podman build -q --no-cache -t localhost/scan-bench-multi:latest "$ctx" >/dev/null
podman save --format docker-archive -o "$work/multi.tar" localhost/scan-bench-multi:latest
mv "$work/multi.tar" "$OUT"
oci_layout
ls -l "$OUT" "$OCI/blobs/sha256"
