//! Rust: `Cargo.lock` (registry and git dependencies; local path crates such as the root are
//! left out, as Trivy does).

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
    #[serde(default)]
    source: Option<String>,
}

/// Parses a Cargo.lock.
pub fn parse_lock(text: &str, path: &str) -> Result<Vec<Package>, String> {
    let lock: Lock = toml::from_str(text).map_err(|e| format!("{path}: not a Cargo.lock: {e}"))?;
    Ok(lock
        .package
        .into_iter()
        .filter(|p| p.source.is_some())
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
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].name, "smallvec");
        assert!(parse_lock("[[package]]\nname = 1\n", "x").is_err());
    }
}
