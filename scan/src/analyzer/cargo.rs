//! Rust: `Cargo.lock` (every package, with the dependency edges the lock records) and
//! `Cargo.toml` (the root crate, its workspace members and the dependencies they declare). With a
//! manifest beside the lock, the scan keeps what Trivy keeps: the crates reachable from the
//! declared `[dependencies]` (target-specific and workspace ones too; dev- and build-only crates
//! drop out), plus the root crate and the workspace members found, as Trivy 0.74 does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
    /// Where it comes from; none for the workspace's own crates (root, members, path crates).
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    dependencies: Vec<String>,
}

/// What a Cargo.toml declares, as far as the scan needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// `name@version` of its `[package]`, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Declared dependencies with their version requirement (path-only ones have none and are
    /// left out, as Trivy leaves them out).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dependencies: BTreeMap<String, String>,
    /// `[workspace] members`, relative to the manifest's directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

#[derive(Deserialize)]
struct RawManifest {
    package: Option<RawPackage>,
    #[serde(default)]
    dependencies: BTreeMap<String, toml::Value>,
    #[serde(default)]
    target: BTreeMap<String, RawTarget>,
    workspace: Option<RawWorkspace>,
}

#[derive(Deserialize)]
struct RawPackage {
    name: String,
    #[serde(default)]
    version: Option<toml::Value>,
}

#[derive(Deserialize)]
struct RawTarget {
    #[serde(default)]
    dependencies: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
struct RawWorkspace {
    #[serde(default)]
    members: Vec<String>,
    #[serde(default)]
    dependencies: BTreeMap<String, toml::Value>,
}

/// Parses a Cargo.toml (None: not one).
pub fn parse_manifest(text: &str) -> Option<Manifest> {
    let raw: RawManifest = toml::from_str(text).ok()?;
    let mut dependencies = BTreeMap::new();
    let tables = std::iter::once(&raw.dependencies)
        .chain(raw.target.values().map(|t| &t.dependencies))
        .chain(raw.workspace.iter().map(|w| &w.dependencies));
    for table in tables {
        for (name, spec) in table {
            let requirement = match spec {
                toml::Value::String(v) => Some(v.clone()),
                toml::Value::Table(t) => {
                    t.get("version").and_then(|v| v.as_str()).map(str::to_owned)
                }
                _ => None,
            };
            if let Some(r) = requirement {
                dependencies.insert(name.clone(), r);
            }
        }
    }
    Some(Manifest {
        package: raw.package.map(|p| {
            let version = p
                .version
                .as_ref()
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            format!("{}@{version}", p.name)
        }),
        dependencies,
        members: raw.workspace.map(|w| w.members).unwrap_or_default(),
    })
}

/// A lock's dependency edges: for each `name@version`, the `name@version`s it depends on.
pub type Edges = BTreeMap<String, Vec<String>>;

/// A Cargo.lock: its packages, their dependency edges, and the `name@version`s of the
/// workspace's own crates (no `source`).
pub fn parse_lock(text: &str, path: &str) -> Result<(Vec<Package>, Edges, Vec<String>), String> {
    let lock: Lock = toml::from_str(text).map_err(|e| format!("{path}: not a Cargo.lock: {e}"))?;
    let mut versions: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in &lock.package {
        versions.entry(&p.name).or_default().push(&p.version);
    }
    // An entry is `name`, `name version` or `name version (source)`; the name alone is used
    // only where the lock holds a single version of it.
    let resolve = |dep: &str| -> Option<String> {
        let mut parts = dep.split_whitespace();
        let name = parts.next()?;
        match parts.next() {
            Some(version) => Some(format!("{name}@{version}")),
            None => match versions.get(name).map(Vec::as_slice) {
                Some([only]) => Some(format!("{name}@{only}")),
                _ => None,
            },
        }
    };
    let edges = lock
        .package
        .iter()
        .map(|p| {
            let deps = p.dependencies.iter().filter_map(|d| resolve(d)).collect();
            (format!("{}@{}", p.name, p.version), deps)
        })
        .collect();
    let local = lock
        .package
        .iter()
        .filter(|p| p.source.is_none())
        .map(|p| format!("{}@{}", p.name, p.version))
        .collect();
    let packages = lock
        .package
        .into_iter()
        .map(|p| Package::new(PkgType::Cargo, p.name, p.version, path))
        .collect();
    Ok((packages, edges, local))
}

/// Whether `version` satisfies a Cargo requirement (`1.2` means `^1.2`, as in Cargo).
fn satisfies(version: &str, requirement: &str) -> bool {
    match (
        semver::Version::parse(version),
        semver::VersionReq::parse(requirement),
    ) {
        (Ok(v), Ok(r)) => r.matches(&v),
        _ => false,
    }
}

/// The `name@version`s of a lock the scan keeps, given the root manifest beside it and the
/// manifests of its workspace members (those found): the crates reachable from the declared
/// dependencies (root declarations win over members'), and, as Trivy 0.74 lists them, the root
/// crate and the members found among the lock's own crates (`local`, those without a source).
pub fn kept(
    packages: &[Package],
    edges: &Edges,
    local: &[String],
    root: &Manifest,
    members: &[&Manifest],
) -> std::collections::BTreeSet<String> {
    let mut declared: BTreeMap<&str, &str> = BTreeMap::new();
    for m in members {
        for (name, req) in &m.dependencies {
            declared.insert(name, req);
        }
    }
    for (name, req) in &root.dependencies {
        declared.insert(name, req);
    }
    let mut keep = std::collections::BTreeSet::new();
    let mut stack: Vec<String> = declared
        .iter()
        .filter_map(|(name, req)| {
            packages
                .iter()
                .find(|p| p.name == *name && satisfies(&p.version, req))
                .map(|p| format!("{}@{}", p.name, p.version))
        })
        .collect();
    while let Some(id) = stack.pop() {
        if keep.insert(id.clone()) {
            stack.extend(edges.get(&id).into_iter().flatten().cloned());
        }
    }
    // The root crate and the members whose manifests were found, by name: a member's version
    // may be inherited from the workspace (`version.workspace = true`), which only the lock
    // spells out.
    let own_names: Vec<&str> = std::iter::once(root)
        .chain(members.iter().copied())
        .filter_map(|m| m.package.as_deref())
        .filter_map(|id| id.split_once('@').map(|(name, _)| name))
        .collect();
    keep.extend(
        local
            .iter()
            .filter(|id| {
                id.split_once('@')
                    .is_some_and(|(name, _)| own_names.contains(&name))
            })
            .cloned(),
    );
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = "version = 3\n\n\
[[package]]\nname = \"app\"\nversion = \"0.1.0\"\ndependencies = [\"serde\", \"rand 0.8.5\", \"tempfile\", \"member\"]\n\n\
[[package]]\nname = \"member\"\nversion = \"0.2.0\"\ndependencies = [\"smallvec\"]\n\n\
[[package]]\nname = \"serde\"\nversion = \"1.0.200\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n\
[[package]]\nname = \"rand\"\nversion = \"0.7.3\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n\
[[package]]\nname = \"rand\"\nversion = \"0.8.5\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\ndependencies = [\"libc\"]\n\n\
[[package]]\nname = \"libc\"\nversion = \"0.2.150\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n\
[[package]]\nname = \"smallvec\"\nversion = \"1.6.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n\
[[package]]\nname = \"tempfile\"\nversion = \"3.8.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n";

    #[test]
    fn lock_edges_resolve_names_and_versions() {
        let (packages, edges, local) = parse_lock(LOCK, "app/Cargo.lock").unwrap();
        assert_eq!(local, ["app@0.1.0", "member@0.2.0"]);
        assert_eq!(packages.len(), 8);
        assert_eq!(
            edges["app@0.1.0"],
            [
                "serde@1.0.200",
                "rand@0.8.5",
                "tempfile@3.8.0",
                "member@0.2.0"
            ]
        );
        assert!(parse_lock("[[package]]\nname = 1\n", "x").is_err());
    }

    #[test]
    fn only_what_declared_dependencies_reach_is_kept() {
        let (packages, edges, local) = parse_lock(LOCK, "Cargo.lock").unwrap();
        let root = parse_manifest(
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\n\
             [workspace]\nmembers = [\"member\"]\n\
             [dependencies]\nserde = { version = \"1\", features = [\"derive\"] }\nmember = { path = \"member\" }\n\
             [target.'cfg(unix)'.dependencies]\nrand = \"0.8\"\n\
             [dev-dependencies]\ntempfile = \"3\"\n",
        )
        .unwrap();
        assert_eq!(root.package.as_deref(), Some("app@0.1.0"));
        assert_eq!(root.members, ["member"]);
        let member = parse_manifest(
            "[package]\nname = \"member\"\nversion = \"0.2.0\"\n[dependencies]\nsmallvec = \"1.6\"\n",
        )
        .unwrap();
        let kept: Vec<String> = kept(&packages, &edges, &local, &root, &[&member])
            .into_iter()
            .collect();
        // tempfile is dev-only, rand 0.7 is not the one required; the workspace's own crates
        // (app, member) stay.
        assert_eq!(
            kept,
            [
                "app@0.1.0",
                "libc@0.2.150",
                "member@0.2.0",
                "rand@0.8.5",
                "serde@1.0.200",
                "smallvec@1.6.0"
            ]
        );
        assert_eq!(parse_manifest("not toml ["), None);
    }
}
