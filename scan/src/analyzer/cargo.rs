//! Rust: `Cargo.lock` (every package, as Trivy lists them) and `Cargo.toml`, whose
//! `[package] name` marks the root crate that the scan then leaves out, as Trivy does.

use serde::Deserialize;

use crate::inventory::{Package, PkgType};

#[derive(Deserialize)]
struct Lock {
    #[serde(default)]
    package: Vec<LockPkg>,
}

#[derive(Deserialize)]
struct LockPkg {
    name: String,
    version: String,
}

#[derive(Deserialize)]
struct Manifest {
    package: Option<ManifestPackage>,
}

#[derive(Deserialize)]
struct ManifestPackage {
    name: String,
}

/// The `[package] name` of a Cargo.toml, if it has one.
pub fn manifest_name(text: &str) -> Option<String> {
    toml::from_str::<Manifest>(text)
        .ok()?
        .package
        .map(|p| p.name)
}

/// Parses a Cargo.lock.
pub fn parse_lock(text: &str, path: &str) -> Result<Vec<Package>, String> {
    let lock: Lock = toml::from_str(text).map_err(|e| format!("{path}: not a Cargo.lock: {e}"))?;
    Ok(lock
        .package
        .into_iter()
        .map(|p| Package::new(PkgType::Cargo, p.name, p.version, path))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockfile() {
        let lock = "version = 3\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\ndependencies = [\"smallvec\"]\n\n\
[[package]]\nname = \"smallvec\"\nversion = \"1.6.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n";
        let p = parse_lock(lock, "app/Cargo.lock").unwrap();
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["app", "smallvec"]);
        assert_eq!(
            manifest_name("[package]\nname = \"app\"\nversion = \"0.1.0\"\n").as_deref(),
            Some("app")
        );
        assert_eq!(manifest_name("[workspace]\nmembers = []\n"), None);
        assert!(parse_lock("[[package]]\nname = 1\n", "x").is_err());
    }
}
