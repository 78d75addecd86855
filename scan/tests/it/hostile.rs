//! Stores a hostile job wrote: a forged `diff-digest` or DiffID never makes another image's
//! layer scan clean, traversal digests and planted links are refused, a looping `layers.json` fails fast,
//! and a missing, empty or altered layer fails the scan instead of passing it empty.

use std::path::{Path, PathBuf};

use berth_scan::digest::{Algorithm, Digest};
use berth_scan::inventory::Inventory;
use berth_scan::scan::{self, LayerCache};
use berth_scan::source;

use crate::support::{self, LayerSpec};

fn id(n: usize) -> String {
    format!("{n:064x}")
}

/// A containers-storage store at `root`: `layers` are (id, parent, diff-digest, content); the
/// image `localhost/app:latest` tops at `top`.
fn store(root: &Path, layers: &[(String, Option<String>, String, LayerSpec)], top: &str) {
    let mut json = vec![];
    for (lid, parent, diff, spec) in layers {
        let diff_dir = root.join("overlay").join(lid).join("diff");
        std::fs::create_dir_all(&diff_dir).unwrap();
        support::write_tree(&diff_dir, spec);
        let mut j = serde_json::json!({"id": lid, "diff-digest": diff});
        if let Some(p) = parent {
            j["parent"] = serde_json::json!(p);
        }
        json.push(j);
    }
    write_layers(root, &serde_json::json!(json));
    std::fs::create_dir_all(root.join("overlay-images")).unwrap();
    let images =
        serde_json::json!([{"id": id(0x1a9e), "names": ["localhost/app:latest"], "layer": top}]);
    std::fs::write(root.join("overlay-images/images.json"), images.to_string()).unwrap();
}

fn write_layers(root: &Path, json: &serde_json::Value) {
    std::fs::create_dir_all(root.join("overlay-layers")).unwrap();
    std::fs::write(root.join("overlay-layers/layers.json"), json.to_string()).unwrap();
}

fn scan_store(root: &Path, cache: Option<&LayerCache>) -> Result<Inventory, String> {
    let image =
        source::open_containers_storage(root, "localhost/app:latest").map_err(|e| e.to_string())?;
    scan::inventory(&image, cache)
        .map(|(inv, _)| inv)
        .map_err(|e| e.to_string())
}

fn vulnerable() -> LayerSpec {
    vec![(
        "venv/lib/python3.11/site-packages/urllib3-1.26.4.dist-info/METADATA",
        b"Metadata-Version: 2.1\nName: urllib3\nVersion: 1.26.4\n".to_vec(),
    )]
}

#[test]
fn a_forged_diff_digest_does_not_make_another_stores_layer_scan_clean() {
    let d = tempfile::tempdir().unwrap();
    let cache = LayerCache::new(d.path().join("cache"));
    let claimed = support::diff_id(7);
    // The attacker's store: a clean layer claiming the victim layer's DiffID, scanned first.
    let attacker = d.path().join("attacker");
    let clean: LayerSpec = vec![("etc/motd", b"nothing to see\n".to_vec())];
    store(&attacker, &[(id(1), None, claimed.clone(), clean)], &id(1));
    let inv = scan_store(&attacker, Some(&cache)).unwrap();
    assert!(inv.packages.is_empty(), "{:?}", inv.packages);
    // The victim's store: different content under the same claimed DiffID and layer id.
    let victim = d.path().join("victim");
    store(&victim, &[(id(1), None, claimed, vulnerable())], &id(1));
    let inv = scan_store(&victim, Some(&cache)).unwrap();
    let found: Vec<(&str, &str)> = inv
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    assert_eq!(
        found,
        [("urllib3", "1.26.4")],
        "the victim's layer was read, not the attacker's cache entry"
    );
    assert_eq!(scan_store(&victim, Some(&cache)).unwrap(), inv);
}

#[test]
fn a_forged_diff_id_in_an_archive_does_not_make_another_archives_layer_scan_clean() {
    // Both archives' configs claim the same DiffIDs (support::diff_id); only the bytes differ.
    let d = tempfile::tempdir().unwrap();
    let cache = LayerCache::new(d.path().join("cache"));
    let clean: LayerSpec = vec![("etc/motd", b"nothing to see\n".to_vec())];
    let attacker = support::docker_archive_of(d.path(), &[clean], "attacker.tar");
    let (inv, _) = scan::scan_path(&attacker, "attacker", Some(&cache)).unwrap();
    assert!(inv.packages.is_empty(), "{:?}", inv.packages);
    let victim = support::docker_archive_of(d.path(), &[vulnerable()], "victim.tar");
    let (inv, _) = scan::scan_path(&victim, "victim", Some(&cache)).unwrap();
    let names: Vec<&str> = inv.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["urllib3"], "the attacker's cache entry was used");
    // The victim's own second scan is served from the cache, under its own bytes' digest.
    let image = source::open(&victim, "victim").unwrap();
    let key = source::layer_key(&image.layers[0]).unwrap().unwrap();
    assert!(cache.get(&key).is_some());
    assert_eq!(
        scan::scan_path(&victim, "victim", Some(&cache)).unwrap().0,
        inv
    );
}

/// The digest and file of layer `i` of the fixture OCI layout.
fn layer_blob(layout: &Path, i: usize) -> (String, PathBuf) {
    let blobs = layout.join("blobs/sha256");
    let read = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let index = read(layout.join("index.json"));
    let manifest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest = read(blobs.join(manifest.trim_start_matches("sha256:")));
    let layer = manifest["layers"][i]["digest"].as_str().unwrap().to_owned();
    let blob = blobs.join(layer.trim_start_matches("sha256:"));
    (layer, blob)
}

#[test]
fn an_altered_oci_blob_fails_instead_of_being_scanned() {
    let d = tempfile::tempdir().unwrap();
    let layout = support::oci_layout(d.path());
    let (layer, blob) = layer_blob(&layout, 1);
    // Same name, other content: an empty tar (which would scan clean).
    std::fs::write(&blob, vec![0_u8; 1024]).unwrap();
    let err = scan::scan_path(&layout, "x", None).unwrap_err().to_string();
    assert!(
        err.contains("not the") && err.contains(&layer) && err.contains("layer 1"),
        "{err}"
    );
    let cache = LayerCache::new(d.path().join("cache"));
    let err = scan::scan_path(&layout, "x", Some(&cache))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&layer), "{err}");
}

#[test]
fn a_layer_blob_that_is_not_a_file_fails_the_scan() {
    let d = tempfile::tempdir().unwrap();
    let layout = support::oci_layout(d.path());
    let (_, blob) = layer_blob(&layout, 0);
    std::fs::remove_file(&blob).unwrap();
    // A FIFO would block a reader forever; a directory reads as nothing.
    nix::unistd::mkfifo(&blob, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let err = scan::scan_path(&layout, "x", None).unwrap_err().to_string();
    assert!(err.contains("not a regular file"), "{err}");
    std::fs::remove_file(&blob).unwrap();
    std::fs::create_dir(&blob).unwrap();
    let err = scan::scan_path(&layout, "x", None).unwrap_err().to_string();
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn an_empty_layer_blob_fails_the_scan() {
    let d = tempfile::tempdir().unwrap();
    let layout = d.path().join("layout");
    let empty = Digest::of(Algorithm::Sha256, b"");
    let config = serde_json::json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [support::diff_id(0)]}})
    .to_string();
    let config_digest = Digest::of(Algorithm::Sha256, config.as_bytes());
    let manifest = serde_json::json!({"schemaVersion": 2,
        "config": {"digest": config_digest.to_string(), "size": config.len()},
        "layers": [{"digest": empty.to_string(), "size": 0}]})
    .to_string();
    let manifest_digest = Digest::of(Algorithm::Sha256, manifest.as_bytes());
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    for (digest, body) in [
        (&empty, String::new()),
        (&config_digest, config),
        (&manifest_digest, manifest),
    ] {
        std::fs::write(layout.join(digest.blob_path()), body).unwrap();
    }
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"digest": manifest_digest.to_string()}]});
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    let err = scan::scan_path(&layout, "x", None).unwrap_err().to_string();
    assert!(err.contains("empty") && err.contains("layer 0"), "{err}");
}

#[test]
fn a_traversal_digest_is_refused_before_it_names_a_file() {
    let d = tempfile::tempdir().unwrap();
    let layout = support::oci_layout(d.path());
    // What `blobs/sha256/../../../secret` would reach from the layout.
    std::fs::write(
        d.path().join("secret"),
        r#"{"schemaVersion":2,"layers":[]}"#,
    )
    .unwrap();
    for evil in ["sha256:../../../secret", "sha256:../../../../etc/passwd"] {
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"digest": evil}]});
        std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
        let err = scan::scan_path(&layout, "x", None).unwrap_err().to_string();
        assert!(
            err.contains("manifest digest is malformed") && err.contains("64 lowercase hex digits"),
            "{err}"
        );
        assert!(!err.contains("passwd") && !err.contains("secret"), "{err}");
    }
}

/// How opening beneath a handle refuses a link: ELOOP on the way, ENOTDIR where a directory
/// was wanted, or a type check on what was opened.
fn refused_link(err: &str) -> bool {
    ["symbolic link", "Not a directory", "not a regular file"]
        .iter()
        .any(|m| err.contains(m))
}

#[test]
fn planted_links_in_a_store_are_never_followed() {
    let d = tempfile::tempdir().unwrap();
    // Another job's layer, outside the hostile store.
    let elsewhere = d.path().join("other-job/diff");
    support::write_tree(&elsewhere, &vulnerable());
    let root = d.path().join("store");
    store(&root, &[(id(1), None, support::diff_id(1), vec![])], &id(1));
    let diff = root.join("overlay").join(id(1)).join("diff");
    std::fs::remove_dir_all(&diff).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &diff).unwrap();
    let err = scan_store(&root, None).unwrap_err();
    assert!(refused_link(&err) && err.contains(&id(1)), "{err}");
    // A link to the other layer's directory one level up is refused just the same.
    std::fs::remove_file(&diff).unwrap();
    std::fs::remove_dir_all(root.join("overlay").join(id(1))).unwrap();
    std::os::unix::fs::symlink(d.path().join("other-job"), root.join("overlay").join(id(1)))
        .unwrap();
    let err = scan_store(&root, None).unwrap_err();
    assert!(
        refused_link(&err) && err.contains("cannot be read"),
        "{err}"
    );
    // A file in a layer that is a link is a link, not the file it names.
    std::fs::remove_file(root.join("overlay").join(id(1))).unwrap();
    let site = root
        .join("overlay")
        .join(id(1))
        .join("diff/venv/lib/python3.11/site-packages/urllib3-1.26.4.dist-info");
    std::fs::create_dir_all(&site).unwrap();
    std::os::unix::fs::symlink(
        elsewhere.join("venv/lib/python3.11/site-packages/urllib3-1.26.4.dist-info/METADATA"),
        site.join("METADATA"),
    )
    .unwrap();
    assert!(scan_store(&root, None).unwrap().packages.is_empty());
    // An OCI layer blob planted as a link to a file outside the layout.
    let layout = support::oci_layout(d.path());
    let outside = d.path().join("outside.tar");
    std::fs::write(&outside, support::layer_tar(&vulnerable())).unwrap();
    let (_, blob) = layer_blob(&layout, 0);
    std::fs::remove_file(&blob).unwrap();
    std::os::unix::fs::symlink(&outside, &blob).unwrap();
    let err = scan::scan_path(&layout, "x", None).unwrap_err().to_string();
    assert!(refused_link(&err), "{err}");
}

#[test]
fn an_input_that_is_a_link_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let layout = support::oci_layout(d.path());
    let link = d.path().join("layout-link");
    std::os::unix::fs::symlink(&layout, &link).unwrap();
    let err = scan::scan_path(&link, "x", None).unwrap_err().to_string();
    assert!(err.contains("symbolic link"), "{err}");
    assert!(scan::scan_path(&layout, "x", None).is_ok());
}

#[test]
fn a_looping_layer_chain_fails_fast() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("store");
    store(
        &root,
        &[
            (id(1), Some(id(2)), support::diff_id(1), vec![]),
            (id(2), Some(id(1)), support::diff_id(2), vec![]),
        ],
        &id(1),
    );
    let started = std::time::Instant::now();
    let err = scan_store(&root, None).unwrap_err();
    assert!(err.contains("loops") && err.contains(&id(1)), "{err}");
    // A layer that is its own parent.
    write_layers(
        &root,
        &serde_json::json!([{"id": id(1), "parent": id(1), "diff-digest": support::diff_id(1)}]),
    );
    let err = scan_store(&root, None).unwrap_err();
    assert!(err.contains("loops"), "{err}");
    // A chain longer than any real image.
    let long: Vec<serde_json::Value> = (1..=600)
        .map(|n| serde_json::json!({"id": id(n), "parent": id(n + 1)}))
        .collect();
    write_layers(&root, &serde_json::json!(long));
    let err = scan_store(&root, None).unwrap_err();
    assert!(err.contains("longer than 512 layers"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_missing_layer_fails_the_scan_naming_image_and_layer() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("store");
    store(
        &root,
        &[
            (id(1), None, support::diff_id(1), vulnerable()),
            (id(2), Some(id(1)), support::diff_id(2), vec![]),
        ],
        &id(2),
    );
    let diff: PathBuf = root.join("overlay").join(id(1)).join("diff");
    std::fs::remove_dir_all(&diff).unwrap();
    let err = scan_store(&root, None).unwrap_err();
    assert!(
        err.contains(&id(1)) && err.contains("localhost/app:latest") && err.contains("rebuild"),
        "{err}"
    );
    // A layer listed without an entry in layers.json.
    write_layers(
        &root,
        &serde_json::json!([{"id": id(2), "parent": id(1), "diff-digest": support::diff_id(2)}]),
    );
    let err = scan_store(&root, None).unwrap_err();
    assert!(err.contains("missing from layers.json"), "{err}");
    // A malformed id in layers.json never becomes a path.
    write_layers(
        &root,
        &serde_json::json!([{"id": id(2), "parent": "../../../etc", "diff-digest": support::diff_id(2)}]),
    );
    let err = scan_store(&root, None).unwrap_err();
    assert!(err.contains("id is malformed"), "{err}");
}

#[test]
fn oversized_store_documents_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("store");
    store(&root, &[(id(1), None, support::diff_id(1), vec![])], &id(1));
    // Sparse: 65 MiB of nothing.
    let f = std::fs::File::create(root.join("overlay-layers/layers.json")).unwrap();
    f.set_len(65 << 20).unwrap();
    let err = scan_store(&root, None).unwrap_err();
    assert!(err.contains("larger than"), "{err}");
}
