//! Every image source yields the same inventory, with layers, whiteouts and OS-owned files
//! handled; the per-layer cache is used on the second scan.

use crate::support;

use berth_scan::inventory::{ArtifactKind, Inventory, OsFamily, PkgType};
use berth_scan::scan::{self, LayerCache};
use berth_scan::source;

/// (kind, name, version, layer index) of every package.
fn summary(inv: &Inventory) -> Vec<(PkgType, String, String, Option<usize>)> {
    inv.packages
        .iter()
        .map(|p| {
            (
                p.kind,
                p.name.clone(),
                p.version.clone(),
                p.layer.as_ref().map(|l| l.index),
            )
        })
        .collect()
}

fn expected() -> Vec<(PkgType, String, String, Option<usize>)> {
    let e = |k, n: &str, v: &str, l| (k, n.to_owned(), v.to_owned(), Some(l));
    vec![
        e(PkgType::Deb, "bash", "5.2.15-2+b7", 0),
        e(PkgType::Deb, "curl", "7.88.1-10+deb12u8", 1),
        e(PkgType::Deb, "libc6", "2.36-9+deb12u14", 0),
        e(PkgType::Deb, "python3-pip", "23.0.1+dfsg-1", 0),
        e(PkgType::NodePkg, "minimist", "1.2.0", 0),
        e(PkgType::NodePkg, "nodeapp", "1.0.0", 0),
        // The Cargo.lock's root crate, listed as Trivy 0.74 lists it.
        e(PkgType::Cargo, "app", "0.1.0", 1),
        e(PkgType::Cargo, "smallvec", "1.6.0", 1),
        e(PkgType::PythonPkg, "requests", "2.25.1", 2),
        // re-added unchanged under an opaque dir: still from the layer that first had it
        e(PkgType::PythonPkg, "urllib3", "1.26.4", 1),
    ]
}

fn check_layered(inv: &Inventory) {
    assert_eq!(summary(inv), expected(), "{:#?}", inv.packages);
    let os = inv.os.as_ref().expect("OS detected");
    assert_eq!(
        (&os.family, os.version.as_str()),
        (&OsFamily::Debian, "12.15")
    );
    assert_eq!(inv.artifact.kind, ArtifactKind::ContainerImage);
    assert_eq!(inv.artifact.diff_ids.len(), 3);
    let curl = inv.packages.iter().find(|p| p.name == "curl").unwrap();
    assert_eq!(
        curl.layer.as_ref().unwrap().diff_id.as_deref(),
        Some(support::diff_id(1).as_str())
    );
    let libc = inv.packages.iter().find(|p| p.name == "libc6").unwrap();
    assert_eq!(libc.src_name.as_deref(), Some("glibc"));
    assert!(
        inv.packages.iter().all(|p| p.name != "pip"),
        "pip is owned by python3-pip and not counted twice"
    );
    assert!(
        inv.packages
            .iter()
            .all(|p| p.name != "lodash" && p.name != "Jinja2"),
        "whiteouts apply"
    );
}

#[test]
fn docker_archive() {
    let d = tempfile::tempdir().unwrap();
    let (inv, w) = scan::scan_path(&support::docker_archive(d.path()), "x", None).unwrap();
    assert!(w.is_empty(), "{w:?}");
    check_layered(&inv);
    assert_eq!(inv.artifact.name, "localhost/fixture:latest");
    assert_eq!(inv.artifact.image_id.as_deref(), Some("sha256:cfg0123"));
}

#[test]
fn oci_archive_and_layout() {
    let d = tempfile::tempdir().unwrap();
    let (a, _) = scan::scan_path(&support::oci_archive(d.path()), "x", None).unwrap();
    check_layered(&a);
    let (b, _) = scan::scan_path(&support::oci_layout(d.path()), "x", None).unwrap();
    check_layered(&b);
    assert_eq!(a, b);
    assert_eq!(a.artifact.name, "localhost/fixture:latest");
}

#[test]
fn containers_storage_reads_layers_in_place() {
    let d = tempfile::tempdir().unwrap();
    let root = support::containers_storage(d.path());
    let image = source::open_containers_storage(&root, "localhost/fixture:latest").unwrap();
    let (inv, _) = scan::inventory(&image, None).unwrap();
    check_layered(&inv);
    assert!(
        source::open_containers_storage(&root, "fixture").is_ok(),
        "short names resolve"
    );
    let err = source::open_containers_storage(&root, "nope").unwrap_err();
    assert!(err.to_string().contains("podman images"), "{err}");
}

#[test]
fn rootfs_directory_has_no_layers() {
    let d = tempfile::tempdir().unwrap();
    let (inv, _) = scan::scan_path(&support::rootfs(d.path()), "rootfs", None).unwrap();
    assert_eq!(inv.artifact.kind, ArtifactKind::Filesystem);
    let no_layers: Vec<_> = expected()
        .into_iter()
        .map(|(k, n, v, _)| (k, n, v, None))
        .collect();
    assert_eq!(summary(&inv), no_layers);
}

#[test]
fn layer_cache_is_keyed_by_content_digest() {
    let d = tempfile::tempdir().unwrap();
    let img = support::docker_archive(d.path());
    let cache = LayerCache::new(d.path().join("cache"));
    let (first, _) = scan::scan_path(&img, "x", Some(&cache)).unwrap();
    assert_eq!(
        std::fs::read_dir(d.path().join("cache")).unwrap().count(),
        3,
        "one entry per layer"
    );
    // Tamper with the cached result of layer 2 (as only berth could, under the digest of the
    // layer's bytes): the next scan must use it instead of the tar.
    let image = source::open(&img, "x").unwrap();
    let key = source::layer_key(&image.layers[2])
        .unwrap()
        .expect("tar layers have a key");
    assert!(
        cache.get(&key).is_some(),
        "the entry is keyed by the computed digest"
    );
    let mut r = cache.get(&key).unwrap();
    let fr = r.files.values_mut().next().unwrap();
    fr.packages[0].version = "9.9.9".into();
    cache.put(&key, &r).unwrap();
    let (second, _) = scan::scan_path(&img, "x", Some(&cache)).unwrap();
    assert_ne!(first, second);
    assert!(second.packages.iter().any(|p| p.version == "9.9.9"));
}

#[test]
fn bad_inputs_name_the_fix() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("junk.tar");
    std::fs::write(
        &p,
        b"definitely not a tar archive, just some bytes that are long enough to matter....",
    )
    .unwrap();
    let err = scan::scan_path(&p, "x", None).unwrap_err().to_string();
    assert!(err.contains("junk.tar"), "{err}");
    let missing = scan::scan_path(&d.path().join("missing"), "x", None)
        .unwrap_err()
        .to_string();
    assert!(missing.contains("missing"), "{missing}");
}

#[test]
fn overlay_diff_dirs_with_opaque_xattr() {
    // Layer 1 has site-packages with Jinja2; layer 2 replaces the directory (opaque by xattr,
    // as kernel overlayfs writes it) with only requests.
    let d = tempfile::tempdir().unwrap();
    let l1 = d.path().join("l1");
    let l2 = d.path().join("l2");
    let sp = "venv/lib/python3.11/site-packages";
    for (root, pkg) in [(&l1, "Jinja2-2.11.2"), (&l2, "requests-2.25.1")] {
        let meta = root.join(sp).join(format!("{pkg}.dist-info"));
        std::fs::create_dir_all(&meta).unwrap();
        let (name, version) = pkg.split_once('-').unwrap();
        std::fs::write(
            meta.join("METADATA"),
            format!("Name: {name}\nVersion: {version}\n"),
        )
        .unwrap();
    }
    xattr::set(l2.join(sp), "trusted.overlay.opaque", b"y").unwrap();
    let layer = |p: &std::path::Path, i: usize| source::Layer {
        diff_id: Some(support::diff_id(i)),
        data: source::LayerData::Dir(p.to_owned()),
    };
    let image = source::Image {
        artifact: Default::default(),
        layers: vec![layer(&l1, 0), layer(&l2, 1)],
    };
    let (inv, _) = scan::inventory(&image, None).unwrap();
    let names: Vec<&str> = inv.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["requests"]);
}

#[test]
fn oci_index_skips_attestations() {
    let d = tempfile::tempdir().unwrap();
    let layout = support::oci_layout(d.path());
    let path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let image = index["manifests"][0].clone();
    let attestation = serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{:064x}", 0xdead), "size": 1, "platform": {"os": "unknown", "architecture": "unknown"},
        "annotations": {"vnd.docker.reference.type": "attestation-manifest"}});
    index["manifests"] = serde_json::json!([attestation, image]);
    std::fs::write(&path, index.to_string()).unwrap();
    let (inv, _) = scan::scan_path(&layout, "x", None).unwrap();
    check_layered(&inv);
}

#[test]
fn truncated_archives_fail_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let full = std::fs::read(support::docker_archive(d.path())).unwrap();
    let oci = std::fs::read(support::oci_archive(d.path())).unwrap();
    for data in [&full, &oci] {
        for cut in [
            10,
            512,
            1024,
            4096,
            data.len() / 3,
            data.len() / 2,
            data.len() - 700,
        ] {
            let p = d.path().join("cut.tar");
            std::fs::write(&p, &data[..cut]).unwrap();
            // An error or a partial inventory, never a panic.
            let _ = scan::scan_path(&p, "x", None);
        }
    }
}

#[test]
fn containers_storage_with_an_additional_image_store() {
    // The base image's layers live in a shared read-only store; the job's store holds only the
    // top layer and the image, as after a build in a per-job store.
    let d = tempfile::tempdir().unwrap();
    let (shared, job) = (d.path().join("shared"), d.path().join("job"));
    let layers = support::layers();
    let id = |i: usize| format!("{:064x}", 0x1a7e + i);
    let mut shared_layers = vec![];
    for (i, l) in layers.iter().enumerate().take(2) {
        support::write_tree(&shared.join("overlay").join(id(i)).join("diff"), l);
        let mut j = serde_json::json!({"id": id(i), "diff-digest": support::diff_id(i)});
        if i > 0 {
            j["parent"] = serde_json::json!(id(i - 1));
        }
        shared_layers.push(j);
    }
    support::write_tree(&job.join("overlay").join(id(2)).join("diff"), &layers[2]);
    for (root, layer_json, images) in [
        (
            &shared,
            serde_json::json!(shared_layers),
            serde_json::json!([{"id": format!("{:064x}", 0xba5e), "names": ["localhost/base:latest"], "layer": id(1)}]),
        ),
        (
            &job,
            serde_json::json!([{"id": id(2), "parent": id(1), "diff-digest": support::diff_id(2)}]),
            serde_json::json!([{"id": format!("{:064x}", 0x1a9e), "names": ["localhost/fixture:latest"], "layer": id(2)}]),
        ),
    ] {
        std::fs::create_dir_all(root.join("overlay-layers")).unwrap();
        std::fs::write(
            root.join("overlay-layers/layers.json"),
            layer_json.to_string(),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("overlay-images")).unwrap();
        std::fs::write(root.join("overlay-images/images.json"), images.to_string()).unwrap();
    }
    let image = source::open_containers_storage_in(
        &[job.as_path(), shared.as_path()],
        "localhost/fixture:latest",
    )
    .unwrap();
    let (inv, _) = scan::inventory(&image, None).unwrap();
    check_layered(&inv);
    assert!(
        source::open_containers_storage(&job, "localhost/fixture:latest").is_err(),
        "the base layers are only in the shared store"
    );
}
