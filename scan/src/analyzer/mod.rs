//! Analyzers: each recognises the files it reads and turns their bytes into packages, OS facts
//! or lists of files owned by OS packages. They never touch the filesystem themselves.

pub mod apk;
pub mod binary;
pub mod cargo;
pub mod dpkg;
pub mod jar;
pub mod npm;
pub mod os;
pub mod python;
pub mod rpm;
pub mod rpmdb_formats;

use serde::{Deserialize, Serialize};

use crate::inventory::Package;

/// Bumped whenever an analyzer's output changes; part of the per-layer cache key.
pub const ANALYZER_VERSION: u32 = 9;

/// Largest file an analyzer reads; bigger files are skipped with a warning.
pub const MAX_FILE: u64 = 256 << 20;

/// Which analyzer handles a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// os-release, debian_version, alpine-release.
    Os,
    /// dpkg status / status.d.
    DpkgStatus,
    /// dpkg `info/*.md5sums` and `status.d/*.md5sums`: the files a package installed.
    DpkgMd5sums,
    /// apk installed.
    Apk,
    /// rpm database: SQLite, Berkeley DB or NDB.
    RpmDb,
    /// Python METADATA / PKG-INFO.
    Python,
    /// package.json.
    Npm,
    /// Cargo.lock.
    CargoLock,
    /// Cargo.toml (only to learn the root crate's name).
    CargoToml,
    /// An ELF executable (Go build info, cargo-auditable `.dep-v0`).
    Binary,
    /// A Java archive.
    Jar,
}

/// True for names of Java archives, which are sniffed for the zip magic.
pub fn maybe_archive(path: &str) -> bool {
    [".jar", ".war", ".ear", ".par"]
        .iter()
        .any(|e| path.ends_with(e))
}

/// Chooses an analyzer from a file's first bytes: ELF executables and zip-based archives.
pub fn sniff(path: &str, magic: &[u8]) -> Option<Kind> {
    match magic {
        [0x7f, b'E', b'L', b'F', ..] => Some(Kind::Binary),
        [b'P', b'K', 3, 4, ..] if maybe_archive(path) => Some(Kind::Jar),
        _ => None,
    }
}

/// OS facts from one file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsFacts {
    /// os-release `ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// os-release `VERSION_ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// A precise version from a release file (debian_version, alpine-release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precise_version: Option<String>,
}

/// What one file yielded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileResult {
    /// Packages declared by the file (their `path` is the file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<Package>,
    /// OS facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<OsFacts>,
    /// Files owned by OS packages (relative paths).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owned: Vec<String>,
    /// What a Cargo.toml declares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cargo_manifest: Option<cargo::Manifest>,
    /// A Cargo.lock's dependency edges, `name@version` → `name@version`s.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub cargo_edges: cargo::Edges,
    /// A Cargo.lock's own crates (no `source`): root, workspace members, path crates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cargo_local: Vec<String>,
    /// What the file held that the analyzer could not use (said in the scan's warnings).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The analyzer for `path` (relative, no leading `/`), if any.
pub fn wants(path: &str) -> Option<Kind> {
    let base = path.rsplit('/').next().unwrap_or(path);
    match path {
        "etc/os-release" | "usr/lib/os-release" | "etc/debian_version" | "etc/alpine-release" => {
            return Some(Kind::Os);
        }
        "var/lib/dpkg/status" => return Some(Kind::DpkgStatus),
        "lib/apk/db/installed" => return Some(Kind::Apk),
        "var/lib/rpm/rpmdb.sqlite"
        | "usr/lib/sysimage/rpm/rpmdb.sqlite"
        | "var/lib/rpm/Packages"
        | "usr/lib/sysimage/rpm/Packages"
        | "var/lib/rpm/Packages.db"
        | "usr/lib/sysimage/rpm/Packages.db" => {
            return Some(Kind::RpmDb);
        }
        _ => {}
    }
    // Installed files come from `*.md5sums`, as Trivy 0.74 reads them (it does not read
    // `*.list`, which also names directories and links).
    if let Some(rest) = path.strip_prefix("var/lib/dpkg/status.d/") {
        return (!rest.contains('/')).then(|| {
            if rest.ends_with(".md5sums") {
                Kind::DpkgMd5sums
            } else {
                Kind::DpkgStatus
            }
        });
    }
    if let Some(rest) = path.strip_prefix("var/lib/dpkg/info/") {
        return (!rest.contains('/') && rest.ends_with(".md5sums")).then_some(Kind::DpkgMd5sums);
    }
    let parent = path.rsplit('/').nth(1).unwrap_or_default();
    match base {
        "METADATA" if parent.ends_with(".dist-info") => Some(Kind::Python),
        "PKG-INFO" if parent.ends_with(".egg-info") || parent == "EGG-INFO" => Some(Kind::Python),
        "package.json" => Some(Kind::Npm),
        "Cargo.lock" => Some(Kind::CargoLock),
        "Cargo.toml" => Some(Kind::CargoToml),
        _ if base.ends_with(".egg-info") => Some(Kind::Python),
        _ => None,
    }
}

/// Runs the analyzer for `kind` over a file's bytes.
pub fn analyze(kind: Kind, path: &str, data: &[u8]) -> Result<FileResult, String> {
    // Only text formats are decoded: decoding every binary the sniffer hands over (executables,
    // jars, rpm databases) cost most of a cold scan.
    let text = || String::from_utf8_lossy(data);
    match kind {
        Kind::Os => Ok(FileResult {
            os: Some(os::parse(path, &text())),
            ..FileResult::default()
        }),
        Kind::DpkgStatus => {
            let (packages, dropped) = dpkg::parse_status(&text(), path);
            Ok(FileResult {
                packages,
                warnings: dropped.warning(path).into_iter().collect(),
                ..FileResult::default()
            })
        }
        Kind::DpkgMd5sums => Ok(FileResult {
            owned: dpkg::parse_md5sums(&text()),
            ..FileResult::default()
        }),
        Kind::Apk => {
            let (packages, owned) = apk::parse_installed(&text(), path);
            Ok(FileResult {
                packages,
                owned,
                ..FileResult::default()
            })
        }
        Kind::Python => Ok(FileResult {
            packages: python::parse_metadata(&text(), path).into_iter().collect(),
            ..FileResult::default()
        }),
        Kind::Npm => Ok(FileResult {
            packages: npm::parse_package_json(data, path).into_iter().collect(),
            ..FileResult::default()
        }),
        Kind::CargoLock => {
            let (packages, cargo_edges, cargo_local) = cargo::parse_lock(&text(), path)?;
            Ok(FileResult {
                packages,
                cargo_edges,
                cargo_local,
                ..FileResult::default()
            })
        }
        Kind::RpmDb => {
            let (packages, owned) = rpm::parse_db(data, path)?;
            Ok(FileResult {
                packages,
                owned,
                ..FileResult::default()
            })
        }
        Kind::CargoToml => Ok(FileResult {
            cargo_manifest: cargo::parse_manifest(&text()),
            ..FileResult::default()
        }),
        Kind::Binary => Ok(FileResult {
            packages: binary::parse(data, path),
            ..FileResult::default()
        }),
        Kind::Jar => Ok(FileResult {
            packages: jar::parse(data, path),
            ..FileResult::default()
        }),
    }
}

/// Splits RFC 822-style stanzas (dpkg, apk use blank-line separated blocks).
pub(crate) fn stanzas(text: &str) -> impl Iterator<Item = &str> {
    text.split("\n\n").filter(|s| !s.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Truncated and corrupted inputs never panic any analyzer.
    #[test]
    fn garbage_never_panics() {
        let kinds = [
            Kind::Os,
            Kind::DpkgStatus,
            Kind::DpkgMd5sums,
            Kind::Apk,
            Kind::RpmDb,
            Kind::Python,
            Kind::Npm,
            Kind::CargoLock,
            Kind::CargoToml,
            Kind::Binary,
            Kind::Jar,
        ];
        let seeds: [&[u8]; 6] = [
            b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00>\x00\x01\x00\x00\x00",
            b"PK\x03\x04\x14\x00\x00\x00\x08\x00",
            b"SQLite format 3\x00\x10\x00\x01\x01",
            b"Package: x\nVersion:\n\nP:\nV:1\nR:a\n",
            b"{\"name\": 1, \"version\": [",
            b"[[package]]\nname = \"a\"\n",
        ];
        let mut x: u64 = 0xfeed_f00d_dead_beef;
        for seed in seeds {
            for len in 0..seed.len() + 64 {
                let mut data: Vec<u8> = seed.iter().copied().take(len).collect();
                while data.len() < len {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    data.push(x.to_le_bytes()[0]);
                }
                for k in kinds {
                    let _ = analyze(k, "some/path", &data);
                }
            }
        }
    }

    #[test]
    fn routing() {
        assert_eq!(wants("var/lib/dpkg/status"), Some(Kind::DpkgStatus));
        assert_eq!(wants("var/lib/dpkg/status.d/base"), Some(Kind::DpkgStatus));
        assert_eq!(
            wants("var/lib/dpkg/status.d/base.md5sums"),
            Some(Kind::DpkgMd5sums)
        );
        assert_eq!(
            wants("var/lib/dpkg/info/libc6:amd64.md5sums"),
            Some(Kind::DpkgMd5sums)
        );
        assert_eq!(wants("var/lib/dpkg/info/libc6:amd64.list"), None);
        assert_eq!(
            wants("usr/lib/python3/dist-packages/pip-23.0.1.dist-info/METADATA"),
            Some(Kind::Python)
        );
        assert_eq!(
            wants("app/node_modules/express/package.json"),
            Some(Kind::Npm)
        );
        assert_eq!(wants("app/rust/Cargo.lock"), Some(Kind::CargoLock));
        assert_eq!(wants("etc/passwd"), None);
    }
}
