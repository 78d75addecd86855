//! Odd images, as `docker save`, GNU tar and careless tools write them: a duplicate layer stored
//! as a link to its first copy, a link that loops or leads nowhere, a GNU sparse file in a layer,
//! and a dpkg database with garbage in it. Each gives its packages or a clear error.

use std::path::{Path, PathBuf};

use berth_scan::scan;

use crate::support::{self, LayerSpec};

/// One entry of the outer archive.
enum Entry {
    Data(Vec<u8>),
    Symlink(&'static str),
    HardLink(&'static str),
}

/// A docker-archive whose manifest lists `layers` (entry names) and whose entries are `entries`.
fn archive(dir: &Path, name: &str, layers: &[&str], entries: Vec<(&str, Entry)>) -> PathBuf {
    let mut b = tar::Builder::new(Vec::new());
    for (path, entry) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        match entry {
            Entry::Data(body) => {
                h.set_size(body.len() as u64);
                b.append_data(&mut h, path, body.as_slice()).unwrap();
            }
            Entry::Symlink(target) | Entry::HardLink(target) => {
                h.set_entry_type(if matches!(entry, Entry::Symlink(_)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
        }
    }
    let ids: Vec<String> = (0..layers.len()).map(support::diff_id).collect();
    let config = serde_json::json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": ids}});
    let manifest = serde_json::json!([{"Config": "config.json",
        "RepoTags": ["localhost/odd:latest"], "Layers": layers}]);
    for (path, body) in [("config.json", config), ("manifest.json", manifest)] {
        let body = body.to_string().into_bytes();
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        b.append_data(&mut h, path, body.as_slice()).unwrap();
    }
    let path = dir.join(name);
    std::fs::write(&path, b.into_inner().unwrap()).unwrap();
    path
}

fn packages(input: &Path) -> Result<Vec<String>, String> {
    scan::scan_path(input, "odd", None)
        .map(|(inv, _)| {
            let mut names: Vec<String> = inv.packages.into_iter().map(|p| p.name).collect();
            names.sort();
            names
        })
        .map_err(|e| e.to_string())
}

fn base_layer() -> LayerSpec {
    support::layers().remove(0)
}

#[test]
fn a_duplicate_layer_saved_as_a_link_to_its_first_copy_is_read_through_it() {
    let d = tempfile::tempdir().unwrap();
    let layer = support::layer_tar(&base_layer());
    let copies = archive(
        d.path(),
        "copies.tar",
        &["one/layer.tar", "two/layer.tar"],
        vec![
            ("one/layer.tar", Entry::Data(layer.clone())),
            ("two/layer.tar", Entry::Data(layer.clone())),
        ],
    );
    for (name, link) in [
        ("symlink.tar", Entry::Symlink("../one/layer.tar")),
        ("absolute.tar", Entry::Symlink("/one/layer.tar")),
        ("hardlink.tar", Entry::HardLink("one/layer.tar")),
    ] {
        let linked = archive(
            d.path(),
            name,
            &["one/layer.tar", "two/layer.tar"],
            vec![
                ("one/layer.tar", Entry::Data(layer.clone())),
                ("two/layer.tar", link),
            ],
        );
        let found = packages(&linked).unwrap();
        assert!(!found.is_empty(), "{name}: no packages");
        assert_eq!(found, packages(&copies).unwrap(), "{name}");
    }
}

#[test]
fn a_layer_link_that_loops_leads_nowhere_or_escapes_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let cases = [
        (
            "loop.tar",
            vec![
                ("a/layer.tar", Entry::Symlink("../b/layer.tar")),
                ("b/layer.tar", Entry::Symlink("../a/layer.tar")),
            ],
            "symlink loop",
        ),
        (
            "dangling.tar",
            vec![("a/layer.tar", Entry::Symlink("../gone/layer.tar"))],
            "which the archive does not hold",
        ),
        (
            "escape.tar",
            vec![("a/layer.tar", Entry::Symlink("../../etc/passwd"))],
            "above the archive's root",
        ),
    ];
    for (name, entries, says) in cases {
        let input = archive(d.path(), name, &["a/layer.tar"], entries);
        let err = packages(&input).expect_err(name);
        assert!(err.contains(says), "{name}: {err}");
        assert!(!err.contains("containers-storage"), "{name}: {err}");
    }
}

#[test]
#[expect(
    clippy::disallowed_methods,
    reason = "GNU tar writes the sparse fixture; a test tool, not a child of berth"
)]
fn a_gnu_sparse_dpkg_status_in_a_layer_is_read() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\n",
    )
    .unwrap();
    let status = root.join("var/lib/dpkg/status");
    std::fs::write(
        &status,
        "Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b7\n\n",
    )
    .unwrap();
    // A hole after the text: GNU tar stores the file as a sparse entry.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&status)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let layer = d.path().join("layer.tar");
    let tar = std::process::Command::new("tar")
        .args(["--format=gnu", "--sparse", "-C"])
        .arg(&root)
        .arg("-cf")
        .arg(&layer)
        .args(["etc", "var"])
        .output()
        .expect("GNU tar");
    assert!(tar.status.success(), "{tar:?}");
    let mut sparse = tar::Archive::new(std::fs::File::open(&layer).unwrap());
    assert!(
        sparse
            .entries()
            .unwrap()
            .any(|e| e.unwrap().header().entry_type() == tar::EntryType::GNUSparse),
        "GNU tar wrote no sparse entry; the test would prove nothing"
    );
    let input = archive(
        d.path(),
        "sparse.tar",
        &["layer.tar"],
        vec![("layer.tar", Entry::Data(std::fs::read(&layer).unwrap()))],
    );
    assert_eq!(packages(&input).unwrap(), ["bash"]);
}

#[test]
fn a_dpkg_status_with_garbage_keeps_its_packages_and_says_what_it_dropped() {
    let d = tempfile::tempdir().unwrap();
    let layer: LayerSpec = vec![
        ("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n".into()),
        (
            "var/lib/dpkg/status",
            b"Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b7\n\n\x00\x7fELF\xff\xfe garbage\n\nPackage: curl\nStatus: install ok installed\nVersion: 7.88.1-10+deb12u8\n".to_vec(),
        ),
    ];
    let input = support::docker_archive_of(d.path(), &[layer], "garbage.tar");
    let (inv, warnings) = scan::scan_path(&input, "garbage", None).unwrap();
    let mut names: Vec<&str> = inv.packages.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["bash", "curl"]);
    let warning = warnings
        .iter()
        .find(|w| w.contains("var/lib/dpkg/status"))
        .unwrap_or_else(|| panic!("no warning names the status file: {warnings:?}"));
    assert!(
        warning.contains("1 stanza(s)") && warning.contains("1 line(s)"),
        "{warning}"
    );
    assert!(
        !warning.contains("ELF"),
        "the warning echoes the file's bytes: {warning}"
    );
}
