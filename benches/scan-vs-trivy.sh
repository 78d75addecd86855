#!/usr/bin/env bash
# berth's scanner against Trivy v0.74.0 and Grype v0.121.2 (built by
# integration/peers/build-scanners.sh), side by side in one hyperfine run per image (-N: no shell
# between hyperfine and a millisecond warm run), cold (empty caches) and warm (caches kept), to a
# CycloneDX SBOM, on three inputs:
#   helper:    docker-archive, debootstrap minbase bookworm + git, ~250 MB, one layer;
#   multi:     docker-archive, ~390 MB, 7 layers: helper + PyPI wheels, node_modules, a Go
#              binary, a Cargo.lock, Maven jars, a whiteout (benches/images/build-multi-ecosystem.sh);
#   multi-oci: the same image as an OCI layout with gzip-compressed layer blobs (~140 MB), plus
#              the decompression floor: every layer blob decompressed once, by `gzip -dc` (the
#              issue's floor) and by `pigz -dc` (zlib, a faster single-stream inflate).
# Trivy only inventories (offline: no vulnerability DB; an empty Java DB so it reads the jars
# without downloading one); berth and Grype match against the same one-record advisory database
# (Grype's built from the OSV record by integration/peers/grype-db-from-osv, Grype's own DB
# builder; Grype runs offline and keeps no cache between runs, so it has one row). Then the package counts (berth and Trivy must
# agree) and peak memory of one cold run each. Run as root after scripts/test-all. Writes
# benches/results/scan-vs-trivy-*.{md,json}, benches/results/scan-vs-trivy.mem.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p berth >/dev/null
BERTH=${CARGO_TARGET_DIR:-$PWD/target}/release/berth
TRIVY=${TRIVY:-${BERTH_PEERS_DIR:-/var/cache/berth-peers}/scanners/trivy}
GRYPE=${GRYPE:-${BERTH_PEERS_DIR:-/var/cache/berth-peers}/scanners/grype}
GRYPE_DB_FROM_OSV=${BERTH_PEERS_DIR:-/var/cache/berth-peers}/scanners/grype-db-from-osv
for peer in "$TRIVY" "$GRYPE" "$GRYPE_DB_FROM_OSV"; do
  [ -x "$peer" ] || { echo "$peer missing: run integration/peers/build-scanners.sh" >&2; exit 1; }
done
command -v pigz >/dev/null || apt-get install -y -qq pigz >/dev/null
work=/var/cache/berth-test/scan-bench
mkdir -p "$work"
if [ ! -s "$work/helper.tar" ]; then
  uid=$(id -u berth-runner)
  runuser -u berth-runner -- env -C / XDG_RUNTIME_DIR=/run/user/$uid HOME=/home/berth-runner CONTAINERS_CONF=/etc/berth/podman/containers/containers.conf \
    podman --root /var/lib/berth/images --runroot /run/user/$uid/berth/base-run --storage-driver overlay \
    save --format docker-archive -o /tmp/berth-bench-helper.tar localhost/berth-helper:latest
  mv /tmp/berth-bench-helper.tar "$work/helper.tar"
fi
# berth scan remembers layer digests only for files no one but the scanning user (root here)
# can write (decision 0006): the archive is root's, as a user's own export is theirs.
chown root:root "$work/helper.tar"
benches/images/build-multi-ecosystem.sh >/dev/null
# An advisory database with one record, so berth runs its whole pipeline.
mkdir -p "$work/osv"
printf '{"id":"CVE-2099-0001","modified":"2026-11-20T00:00:00Z","affected":[{"package":{"ecosystem":"Debian:12","name":"git"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1:2.39.5-0+deb12u9"}]}]}]}' \
  >"$work/osv/CVE-2099-0001.json"
"$BERTH" db update --from "$work/osv" --db "$work/db" >/dev/null
# Grype cannot run without a vulnerability database, nor download one offline: the same record,
# through Grype's own builder, imported as `grype db import` does.
export GRYPE_DB_CACHE_DIR=$work/grype-db GRYPE_DB_AUTO_UPDATE=false GRYPE_DB_VALIDATE_AGE=false \
  GRYPE_CHECK_FOR_APP_UPDATE=false GRYPE_DB_REQUIRE_UPDATE_CHECK=false
rm -rf "$work/grype-db" "$work/grype-built"
"$GRYPE_DB_FROM_OSV" "$work/osv" "$work/grype-built" >/dev/null
"$GRYPE" db import "$work/grype-built/vulnerability.db" >/dev/null
# Trivy's Java DB, empty: jars with pom.properties need no lookup, and offline it cannot fetch one.
mkdir -p "$work/java-db"
python3 - "$work/java-db" <<'PY'
import json, sqlite3, sys, os
db = os.path.join(sys.argv[1], "trivy-java.db")
if not os.path.exists(db):
    c = sqlite3.connect(db)
    c.executescript("""CREATE TABLE artifacts(id INTEGER PRIMARY KEY, group_id TEXT, artifact_id TEXT);
CREATE TABLE indices(artifact_id INTEGER, version TEXT, sha1 BLOB, archive_type TEXT);
CREATE UNIQUE INDEX artifacts_idx ON artifacts(artifact_id, group_id);
CREATE INDEX indices_artifact_idx ON indices(artifact_id);
CREATE UNIQUE INDEX indices_sha1_idx ON indices(sha1);""")
    c.commit()
json.dump({"Version": 1, "NextUpdate": "2099-01-01T00:00:00Z", "UpdatedAt": "2026-11-23T00:00:00Z",
           "DownloadedAt": "2026-11-23T00:00:00Z"}, open(os.path.join(sys.argv[1], "metadata.json"), "w"))
PY
trivy_cache() { rm -rf "$1" && mkdir -p "$1" && cp -r "$work/java-db" "$1/"; }
mkdir -p benches/results
: >benches/results/scan-vs-trivy.mem.txt
oci=$work/multi-oci-gz
# The OCI layout's layer blobs, in manifest order.
blobs=$(python3 - "$oci" <<'PY'
import json, os, sys
d = sys.argv[1]
blob = lambda dg: os.path.join(d, "blobs", *dg.split(":"))
m = json.load(open(blob(json.load(open(os.path.join(d, "index.json")))["manifests"][0]["digest"])))
print(" ".join(blob(l["digest"]) for l in m["layers"]))
PY
)
for image in helper multi multi-oci; do
  case $image in
    multi-oci) input=$oci grype_input=oci-dir:$oci ;;
    *) input=$work/$image.tar grype_input=docker-archive:$work/$image.tar ;;
  esac
  berth_scan="$BERTH scan --input $input --db $work/db -f cyclonedx -o /dev/null"
  trivy_scan="$TRIVY image --input $input --format cyclonedx -o /dev/null --quiet --offline-scan --skip-java-db-update"
  grype_scan="$GRYPE $grype_input -o cyclonedx-json=/dev/null -q"
  floors=()
  if [ "$image" = multi-oci ]; then
    floors=(-n "$image: floor, gzip -dc every layer blob" --prepare true "sh -c 'for b in $blobs; do gzip -dc \$b; done >/dev/null'"
      -n "$image: floor, pigz -dc every layer blob" --prepare true "sh -c 'for b in $blobs; do pigz -dc \$b; done >/dev/null'")
  fi
  trivy_cache "$work/trivy-warm-$image"
  rm -rf "$work/berth-warm-$image"
  hyperfine -N --warmup 1 --runs "${RUNS:-5}" \
    --export-markdown "benches/results/scan-vs-trivy-$image.md" \
    --export-json "benches/results/scan-vs-trivy-$image.json" \
    "${floors[@]}" \
    -n "$image: berth cold" --prepare "rm -rf $work/berth-cache" "$berth_scan --cache-dir $work/berth-cache" \
    -n "$image: trivy cold" --prepare "bash -c 'rm -rf $work/trivy-cache && mkdir -p $work/trivy-cache && cp -r $work/java-db $work/trivy-cache/'" \
    "$trivy_scan --cache-dir $work/trivy-cache" \
    -n "$image: grype (no cache)" --prepare true "$grype_scan" \
    -n "$image: berth warm" --prepare true "$berth_scan --cache-dir $work/berth-warm-$image" \
    -n "$image: trivy warm" --prepare true "$trivy_scan --cache-dir $work/trivy-warm-$image"
  rm -rf "$work/berth-cache"; trivy_cache "$work/trivy-cache"
  $BERTH scan --input "$input" --db "$work/db" -f cyclonedx -o "$work/$image.berth.cdx.json" --cache-dir "$work/berth-cache"
  $TRIVY image --input "$input" --format cyclonedx -o "$work/$image.trivy.cdx.json" --quiet --offline-scan \
    --skip-java-db-update --cache-dir "$work/trivy-cache"
  $GRYPE "$grype_input" -o "cyclonedx-json=$work/$image.grype.cdx.json" -q
  python3 - "$image" "$work/$image".{berth,trivy,grype}.cdx.json <<'PY' | tee -a benches/results/scan-vs-trivy.mem.txt
import json, sys
purls = lambda p: {c["purl"] for c in json.load(open(p)).get("components", []) if c.get("purl")}
b, t, g = (purls(p) for p in sys.argv[2:5])
print(f"{sys.argv[1]}: berth {len(b)} packages, trivy {len(t)}, grype {len(g)}; "
      f"only berth (vs trivy) {sorted(b - t)[:5]}, only trivy {sorted(t - b)[:5]}")
PY
  {
    rm -rf "$work/berth-cache"; trivy_cache "$work/trivy-cache"
    /usr/bin/time -f "$image: berth cold: peak RSS %M KiB, %e s" $berth_scan --cache-dir "$work/berth-cache"
    /usr/bin/time -f "$image: trivy cold: peak RSS %M KiB, %e s" $trivy_scan --cache-dir "$work/trivy-cache"
    /usr/bin/time -f "$image: grype: peak RSS %M KiB, %e s" $grype_scan
    /usr/bin/time -f "$image: berth warm: peak RSS %M KiB, %e s" $berth_scan --cache-dir "$work/berth-warm-$image"
    /usr/bin/time -f "$image: trivy warm: peak RSS %M KiB, %e s" $trivy_scan --cache-dir "$work/trivy-warm-$image"
  } 2>&1 | grep "peak RSS" | tee -a benches/results/scan-vs-trivy.mem.txt
done
