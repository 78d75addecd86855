//! The inventory: what an image or directory contains (OS, packages, their layers), and how
//! each package maps to an advisory ecosystem, a version order and a purl.

use serde::{Deserialize, Serialize};

use crate::version::Scheme;
use crate::version::pep440::normalize_name;

/// What kind of thing was scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// A container image (layers known).
    #[default]
    ContainerImage,
    /// A root filesystem directory (no layers).
    Filesystem,
}

/// The scanned artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Artifact {
    /// Image reference or path as the user named it.
    pub name: String,
    /// Image or filesystem.
    pub kind: ArtifactKind,
    /// Image config digest, when known.
    pub image_id: Option<String>,
    /// Layer DiffIDs, bottom first.
    pub diff_ids: Vec<String>,
    /// The CycloneDX SBOM read, when the scan read one (CycloneDX VEX names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bom: Option<BomId>,
}

/// Which BOM a CycloneDX SBOM scan read: the `serialNumber` and `version` that a CycloneDX VEX
/// document's BOM-Links must name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BomId {
    /// `urn:uuid:…`.
    pub serial: String,
    /// The BOM's version.
    pub version: u64,
}

/// OS families berth maps to advisory ecosystems.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OsFamily {
    /// Debian.
    Debian,
    /// Ubuntu.
    Ubuntu,
    /// Alpine Linux.
    Alpine,
    /// Wolfi / Chainguard.
    Wolfi,
    /// Red Hat Enterprise Linux.
    Redhat,
    /// CentOS.
    Centos,
    /// Rocky Linux.
    Rocky,
    /// AlmaLinux.
    Alma,
    /// Fedora.
    Fedora,
    /// Something else (os-release `ID`).
    Other(String),
}

impl OsFamily {
    /// Maps an os-release `ID` to a family.
    pub fn from_id(id: &str) -> Self {
        match id.trim().to_ascii_lowercase().as_str() {
            "debian" => Self::Debian,
            "ubuntu" => Self::Ubuntu,
            "alpine" => Self::Alpine,
            "wolfi" | "chainguard" => Self::Wolfi,
            "rhel" | "redhat" => Self::Redhat,
            "centos" => Self::Centos,
            "rocky" => Self::Rocky,
            "almalinux" | "alma" => Self::Alma,
            "fedora" => Self::Fedora,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The lowercase name Trivy uses for the family.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Debian => "debian",
            Self::Ubuntu => "ubuntu",
            Self::Alpine => "alpine",
            Self::Wolfi => "wolfi",
            Self::Redhat => "redhat",
            Self::Centos => "centos",
            Self::Rocky => "rocky",
            Self::Alma => "alma",
            Self::Fedora => "fedora",
            Self::Other(s) => s,
        }
    }
}

/// The detected operating system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Os {
    /// Family.
    pub family: OsFamily,
    /// Full version, e.g. "12.15" or "3.19.1".
    pub version: String,
}

impl Os {
    /// The major version ("12" of "12.15").
    pub fn major(&self) -> &str {
        self.version.split('.').next().unwrap_or(&self.version)
    }

    /// major.minor ("3.19" of "3.19.1").
    pub fn major_minor(&self) -> String {
        self.version
            .split('.')
            .take(2)
            .collect::<Vec<_>>()
            .join(".")
    }

    /// `family:version` for GitLab's `operating_system` field (e.g. `debian:12.15`).
    pub fn gitlab_name(&self) -> String {
        format!("{}:{}", self.family.as_str(), self.version)
    }
}

/// Where a package was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum PkgType {
    /// dpkg database.
    Deb,
    /// apk database.
    Apk,
    /// rpm database.
    Rpm,
    /// Python dist-info / egg-info.
    PythonPkg,
    /// node_modules package.json.
    NodePkg,
    /// Cargo.lock.
    Cargo,
    /// cargo-auditable binary.
    RustBinary,
    /// Go binary build info.
    GoBinary,
    /// Java archive.
    Jar,
}

impl PkgType {
    /// OS package (as opposed to a language package).
    pub fn is_os(self) -> bool {
        matches!(self, Self::Deb | Self::Apk | Self::Rpm)
    }

    /// The Trivy result `Type` for language packages.
    pub fn trivy_type(self) -> &'static str {
        match self {
            Self::Deb => "debian",
            Self::Apk => "alpine",
            Self::Rpm => "redhat",
            Self::PythonPkg => "python-pkg",
            Self::NodePkg => "node-pkg",
            Self::Cargo => "cargo",
            Self::RustBinary => "rustbinary",
            Self::GoBinary => "gobinary",
            Self::Jar => "jar",
        }
    }
}

/// Identifies a layer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LayerRef {
    /// Position, bottom layer = 0.
    pub index: usize,
    /// The layer's DiffID, when known.
    pub diff_id: Option<String>,
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Name as installed (Maven: `group:artifact`).
    pub name: String,
    /// Version as installed (deb/rpm: with epoch when non-zero).
    pub version: String,
    /// Source package name (deb source, apk origin, rpm source rpm name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_name: Option<String>,
    /// Source package version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_version: Option<String>,
    /// Where it was found.
    pub kind: PkgType,
    /// The file that declared it, relative to the image root (no leading `/`).
    pub path: String,
    /// The layer that introduced it, when layers are known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<LayerRef>,
    /// Architecture, for OS packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// Declared licenses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<String>,
    /// An OS package from outside the distribution (an rpm whose vendor is not the OS's, a deb
    /// from a known third-party maintainer): the OS's advisories do not describe it and the
    /// files it installed stay open to language analyzers (Trivy 0.74's rule).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub third_party: bool,
    /// Its `bom-ref`, when it came from a CycloneDX SBOM (CycloneDX VEX may name it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bom_ref: Option<String>,
}

impl Package {
    /// A new package with only the required fields set.
    pub fn new(
        kind: PkgType,
        name: impl Into<String>,
        version: impl Into<String>,
        path: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            src_name: None,
            src_version: None,
            kind,
            path: path.into(),
            layer: None,
            arch: None,
            licenses: Vec::new(),
            third_party: false,
            bom_ref: None,
        }
    }

    /// Sets the source package name (deb source, apk origin, rpm source).
    pub fn with_source(mut self, src_name: impl Into<String>) -> Self {
        self.src_name = Some(src_name.into());
        self
    }

    /// The version order for this package's ecosystem.
    pub fn scheme(&self) -> Scheme {
        match self.kind {
            PkgType::Deb => Scheme::Dpkg,
            PkgType::Apk => Scheme::Apk,
            PkgType::Rpm => Scheme::Rpm,
            PkgType::PythonPkg => Scheme::Pep440,
            PkgType::NodePkg => Scheme::Npm,
            PkgType::Cargo | PkgType::RustBinary => Scheme::Semver,
            PkgType::GoBinary => Scheme::Go,
            PkgType::Jar => Scheme::Maven,
        }
    }

    /// The name advisories use: the source package for OS packages, normalised names for PyPI.
    pub fn advisory_name(&self) -> String {
        match self.kind {
            PkgType::Deb | PkgType::Apk => {
                self.src_name.clone().unwrap_or_else(|| self.name.clone())
            }
            PkgType::PythonPkg => normalize_name(&self.name),
            _ => self.name.clone(),
        }
    }

    /// The version advisories are compared against (the source version for deb/apk).
    pub fn advisory_version(&self) -> &str {
        match self.kind {
            PkgType::Deb | PkgType::Apk => self.src_version.as_deref().unwrap_or(&self.version),
            _ => &self.version,
        }
    }

    /// OSV ecosystem names this package is matched against; `*` in an entry matches any text
    /// (see [`ecosystem_matches`]).
    pub fn ecosystems(&self, os: Option<&Os>) -> Vec<String> {
        match self.kind {
            PkgType::PythonPkg => vec!["PyPI".into()],
            PkgType::NodePkg => vec!["npm".into()],
            PkgType::Cargo | PkgType::RustBinary => vec!["crates.io".into()],
            PkgType::GoBinary => vec!["Go".into()],
            PkgType::Jar => vec!["Maven".into()],
            PkgType::Deb | PkgType::Apk | PkgType::Rpm => {
                let Some(os) = os else { return Vec::new() };
                match &os.family {
                    OsFamily::Debian => vec![format!("Debian:{}", os.major()), "Debian".into()],
                    OsFamily::Ubuntu => vec![
                        format!("Ubuntu:{}", os.major_minor()),
                        format!("Ubuntu:{}:*", os.major_minor()),
                    ],
                    OsFamily::Alpine => vec![format!("Alpine:v{}", os.major_minor())],
                    OsFamily::Wolfi => vec!["Wolfi".into()],
                    // Red Hat's OSV ecosystems name a CPE: "Red Hat:enterprise_linux:9::appstream".
                    OsFamily::Redhat | OsFamily::Centos => vec![
                        format!("Red Hat:*:{}", os.major()),
                        format!("Red Hat:*:{}::*", os.major()),
                        format!("Red Hat:*:{}.*", os.major()),
                    ],
                    OsFamily::Rocky => {
                        vec![format!("Rocky Linux:{}", os.major()), "Rocky Linux".into()]
                    }
                    OsFamily::Alma => vec![format!("AlmaLinux:{}", os.major()), "AlmaLinux".into()],
                    OsFamily::Fedora => vec![format!("Fedora:{}", os.major())],
                    OsFamily::Other(_) => Vec::new(),
                }
            }
        }
    }

    /// The package URL (purl-spec), as Trivy writes it.
    pub fn purl(&self, os: Option<&Os>) -> String {
        let enc = |s: &str| purl_encode(s);
        match self.kind {
            PkgType::Deb | PkgType::Apk | PkgType::Rpm => {
                let (ty, ns) = match self.kind {
                    PkgType::Deb => ("deb", os.map_or("debian", |o| o.family.as_str())),
                    PkgType::Apk => ("apk", os.map_or("alpine", |o| o.family.as_str())),
                    _ => ("rpm", os.map_or("redhat", |o| o.family.as_str())),
                };
                // Like Trivy: the epoch goes into a qualifier, not the version.
                let (epoch, version) = match self.version.split_once(':') {
                    Some((e, v))
                        if self.kind != PkgType::Apk && e.bytes().all(|b| b.is_ascii_digit()) =>
                    {
                        (Some(e), v)
                    }
                    _ => (None, self.version.as_str()),
                };
                let mut q = Vec::new();
                if let Some(a) = &self.arch {
                    q.push(format!("arch={}", enc(a)));
                }
                // Like Trivy: Alpine's distro qualifier is the release alone (`distro=3.19.1`),
                // the others name the family (`distro=debian-12.15`).
                match os {
                    Some(o) if self.kind == PkgType::Apk => {
                        q.push(format!("distro={}", enc(&o.version)));
                    }
                    Some(o) => {
                        q.push(format!("distro={}-{}", o.family.as_str(), enc(&o.version)));
                    }
                    None => {}
                }
                if let Some(e) = epoch.filter(|e| *e != "0") {
                    q.push(format!("epoch={e}"));
                }
                let q = if q.is_empty() {
                    String::new()
                } else {
                    format!("?{}", q.join("&"))
                };
                format!("pkg:{ty}/{ns}/{}@{}{q}", enc(&self.name), enc(version))
            }
            PkgType::PythonPkg => format!(
                "pkg:pypi/{}@{}",
                enc(&normalize_name(&self.name)),
                enc(&self.version)
            ),
            PkgType::NodePkg => match self.name.strip_prefix('@').and_then(|n| n.split_once('/')) {
                Some((scope, n)) => format!(
                    "pkg:npm/%40{}/{}@{}",
                    enc(scope),
                    enc(n),
                    enc(&self.version)
                ),
                None => format!("pkg:npm/{}@{}", enc(&self.name), enc(&self.version)),
            },
            PkgType::Cargo | PkgType::RustBinary => {
                format!("pkg:cargo/{}@{}", enc(&self.name), enc(&self.version))
            }
            PkgType::GoBinary => {
                let path: Vec<String> = self.name.split('/').map(enc).collect();
                format!("pkg:golang/{}@{}", path.join("/"), enc(&self.version))
            }
            PkgType::Jar => match self.name.split_once(':') {
                Some((g, a)) => format!("pkg:maven/{}/{}@{}", enc(g), enc(a), enc(&self.version)),
                None => format!("pkg:maven/{}@{}", enc(&self.name), enc(&self.version)),
            },
        }
    }
}

/// True when an advisory ecosystem name matches a wanted name or `*` pattern.
pub fn ecosystem_matches(pattern: &str, ecosystem: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == ecosystem;
    }
    glob::Pattern::new(pattern).is_ok_and(|p| p.matches(ecosystem))
}

/// Percent-encodes a purl segment (purl-spec: everything but unreserved characters).
pub fn purl_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Everything found in the scanned artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Inventory {
    /// The artifact.
    pub artifact: Artifact,
    /// The OS, when detected.
    pub os: Option<Os>,
    /// All packages, OS packages first.
    pub packages: Vec<Package>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debian() -> Os {
        Os {
            family: OsFamily::Debian,
            version: "12.15".into(),
        }
    }

    #[test]
    fn purls_follow_trivy() {
        let mut p = Package::new(
            PkgType::Deb,
            "libc6",
            "2.36-9+deb12u14",
            "var/lib/dpkg/status",
        );
        p.arch = Some("amd64".into());
        assert_eq!(
            p.purl(Some(&debian())),
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64&distro=debian-12.15"
        );
        let z = Package::new(PkgType::Deb, "zlib1g", "1:1.2.13.dfsg-1", "x");
        assert_eq!(
            z.purl(Some(&debian())),
            "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?distro=debian-12.15&epoch=1"
        );
        let n = Package::new(PkgType::NodePkg, "@types/node", "1.0.0", "x");
        assert_eq!(n.purl(None), "pkg:npm/%40types/node@1.0.0");
        let j = Package::new(PkgType::Jar, "com.google.guava:guava", "31.1-jre", "x");
        assert_eq!(j.purl(None), "pkg:maven/com.google.guava/guava@31.1-jre");
        let py = Package::new(PkgType::PythonPkg, "Jinja2", "2.11.2", "x");
        assert_eq!(py.purl(None), "pkg:pypi/jinja2@2.11.2");
        let mut musl = Package::new(PkgType::Apk, "musl", "1.2.4_git20230717-r4", "x");
        musl.arch = Some("x86_64".into());
        let alpine = Os {
            family: OsFamily::Alpine,
            version: "3.19.1".into(),
        };
        assert_eq!(
            musl.purl(Some(&alpine)),
            "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&distro=3.19.1"
        );
    }

    #[test]
    fn ecosystems_use_release_and_source() {
        let mut p = Package::new(PkgType::Deb, "libc6", "2.36-9", "var/lib/dpkg/status");
        p.src_name = Some("glibc".into());
        assert_eq!(
            p.ecosystems(Some(&debian())),
            vec!["Debian:12".to_owned(), "Debian".to_owned()]
        );
        assert_eq!(p.advisory_name(), "glibc");
        let alpine = Os {
            family: OsFamily::Alpine,
            version: "3.19.1".into(),
        };
        let a = Package::new(PkgType::Apk, "musl", "1.2.4-r2", "lib/apk/db/installed");
        assert_eq!(a.ecosystems(Some(&alpine)), vec!["Alpine:v3.19".to_owned()]);
        assert!(a.ecosystems(None).is_empty());
        let rhel = Os {
            family: OsFamily::Redhat,
            version: "9.3".into(),
        };
        let r = Package::new(
            PkgType::Rpm,
            "openssl",
            "1:3.0.7-25.el9_3",
            "var/lib/rpm/rpmdb.sqlite",
        );
        let pats = r.ecosystems(Some(&rhel));
        let hit = |e: &str| pats.iter().any(|p| ecosystem_matches(p, e));
        assert!(hit("Red Hat:enterprise_linux:9::appstream"));
        assert!(hit("Red Hat:rhel_eus:9.2::baseos"));
        assert!(!hit("Red Hat:enterprise_linux:8::appstream"));
        assert!(!hit("Red Hat:enterprise_linux:19::appstream"));
    }
}
