//! Reading an SBOM (CycloneDX JSON or SPDX 2.x JSON) into an inventory, as `trivy sbom` does:
//! each package from its purl (source package from Trivy's properties or SPDX `sourceInfo`), the
//! operating system from the document's OS component or, failing that, the purls' `distro`.
//! The document is untrusted input: it is read whole once, bounded, and every package that
//! cannot be used is counted in a warning rather than guessed at.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use packageurl::PackageUrl;
use serde_json::Value;

use crate::inventory::{Artifact, ArtifactKind, Inventory, Os, OsFamily, Package, PkgType};

/// The largest SBOM read.
pub const MAX_SBOM: u64 = 256 << 20;

/// An SBOM berth cannot use.
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    /// It could not be read.
    #[error("cannot read the SBOM {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// It is larger than berth reads.
    #[error("the SBOM {path} is larger than {MAX_SBOM} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// It is not a CycloneDX or SPDX JSON document.
    #[error(
        "{path} is not an SBOM berth reads ({why}); give a CycloneDX JSON (`bomFormat: CycloneDX`) or SPDX 2.x JSON (`spdxVersion: SPDX-2.x`) document"
    )]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// Reads the SBOM at `path` (its last component must not be a link) as artifact `name`.
/// Returns the inventory and what it could not use.
pub fn read(path: &Path, name: &str) -> Result<(Inventory, Vec<String>), SbomError> {
    use std::io::Read;
    let read_err = |source| SbomError::Read {
        path: path.to_owned(),
        source,
    };
    let (dir, file) = match (path.parent(), path.file_name()) {
        (Some(dir), Some(file)) => (
            if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            },
            file,
        ),
        _ => {
            return Err(read_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "an SBOM is a file",
            )));
        }
    };
    let file = berth_beneath::Dir::open(dir)
        .and_then(|d| d.open_file(Path::new(file)))
        .map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_SBOM + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_SBOM {
        return Err(SbomError::TooLarge {
            path: path.to_owned(),
        });
    }
    parse(&bytes, name).map_err(|why| SbomError::Format {
        path: path.to_owned(),
        why,
    })
}

/// Parses an SBOM document (pure). The error says why it is not one berth reads.
pub fn parse(bytes: &[u8], name: &str) -> Result<(Inventory, Vec<String>), String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let cyclonedx = doc.get("bomFormat").and_then(Value::as_str) == Some("CycloneDX");
    let entries = if cyclonedx {
        cyclonedx_entries(&doc)
    } else if doc
        .get("spdxVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| v.starts_with("SPDX-2."))
    {
        spdx_entries(&doc)
    } else {
        return Err("neither `bomFormat: CycloneDX` nor `spdxVersion: SPDX-2.x`".into());
    };
    let mut warnings = Vec::new();
    let mut packages = Vec::new();
    let mut os = entries.os;
    let (mut no_purl, mut unusable) = (0usize, Vec::new());
    for entry in entries.packages {
        let Some(purl) = entry.purl.as_deref() else {
            no_purl += 1;
            continue;
        };
        match package(purl, &entry, &mut os) {
            Ok(Some(p)) => packages.push(p),
            Ok(None) => {}
            Err(why) => unusable.push(why),
        }
    }
    if no_purl > 0 {
        warnings.push(format!(
            "{no_purl} package(s) of the SBOM have no purl and were not matched"
        ));
    }
    if !unusable.is_empty() {
        warnings.push(format!(
            "{} package(s) of the SBOM have a purl berth cannot use and were not matched, e.g. {}",
            unusable.len(),
            unusable.first().map(String::as_str).unwrap_or_default()
        ));
    }
    packages.sort_by_key(|p| !p.kind.is_os());
    Ok((
        Inventory {
            artifact: Artifact {
                name: name.to_owned(),
                kind: ArtifactKind::Filesystem,
                image_id: None,
                diff_ids: Vec::new(),
                // CycloneDX VEX names the SBOM by these two.
                bom: match (
                    cyclonedx,
                    text(&doc, "serialNumber"),
                    doc.get("version").and_then(Value::as_u64),
                ) {
                    (true, Some(serial), version) => Some(crate::inventory::BomId {
                        serial,
                        version: version.unwrap_or(1),
                    }),
                    _ => None,
                },
            },
            os,
            packages,
        },
        warnings,
    ))
}

/// One package as an SBOM lists it.
#[derive(Debug, Default)]
struct Entry {
    purl: Option<String>,
    bom_ref: Option<String>,
    src_name: Option<String>,
    src_version: Option<String>,
    licenses: Vec<String>,
}

#[derive(Debug, Default)]
struct Entries {
    os: Option<Os>,
    packages: Vec<Entry>,
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn os_of(name: Option<String>, version: Option<String>) -> Option<Os> {
    Some(Os {
        family: OsFamily::from_id(&name?),
        version: version?,
    })
}

/// CycloneDX: every component, nested ones too; Trivy's `aquasecurity:trivy:Src*` properties.
fn cyclonedx_entries(doc: &Value) -> Entries {
    let mut out = Entries::default();
    let mut stack: Vec<&Value> = doc
        .get("components")
        .and_then(Value::as_array)
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    if let Some(root) = doc.pointer("/metadata/component") {
        stack.extend(
            root.get("components")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
    }
    while let Some(c) = stack.pop() {
        stack.extend(
            c.get("components")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
        if c.get("type").and_then(Value::as_str) == Some("operating-system") {
            out.os = out
                .os
                .or_else(|| os_of(text(c, "name"), text(c, "version")));
            continue;
        }
        let property = |name: &str| {
            c.get("properties")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
                .and_then(|p| text(p, "value"))
        };
        let licenses = c
            .get("licenses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|l| {
                l.pointer("/license/id")
                    .or_else(|| l.pointer("/license/name"))
                    .or_else(|| l.get("expression"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect();
        // Trivy splits a source version into epoch, upstream version and release.
        let src_version = property("aquasecurity:trivy:SrcVersion").map(|version| {
            let epoch = property("aquasecurity:trivy:SrcEpoch").filter(|e| e != "0");
            let release = property("aquasecurity:trivy:SrcRelease");
            format!(
                "{}{version}{}",
                epoch.map(|e| format!("{e}:")).unwrap_or_default(),
                release.map(|r| format!("-{r}")).unwrap_or_default()
            )
        });
        out.packages.push(Entry {
            purl: text(c, "purl"),
            bom_ref: text(c, "bom-ref"),
            src_name: property("aquasecurity:trivy:SrcName"),
            src_version,
            licenses,
        });
    }
    out
}

/// SPDX: packages with a purl external reference; the OS package by its purpose.
fn spdx_entries(doc: &Value) -> Entries {
    let mut out = Entries::default();
    for p in doc
        .get("packages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if p.get("primaryPackagePurpose").and_then(Value::as_str) == Some("OPERATING-SYSTEM") {
            out.os = out
                .os
                .or_else(|| os_of(text(p, "name"), text(p, "versionInfo")));
            continue;
        }
        let purl = p
            .get("externalRefs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|r| r.get("referenceType").and_then(Value::as_str) == Some("purl"))
            .and_then(|r| text(r, "referenceLocator"));
        // Containers and other described artifacts carry an oci purl or none: not packages.
        if purl.as_deref().is_some_and(|p| p.starts_with("pkg:oci/")) {
            continue;
        }
        if purl.is_none()
            && matches!(
                p.get("primaryPackagePurpose").and_then(Value::as_str),
                Some("CONTAINER" | "SOURCE" | "APPLICATION")
            )
        {
            continue;
        }
        // Trivy writes `built package from: <name> <version>`.
        let (src_name, src_version) = text(p, "sourceInfo")
            .and_then(|s| {
                let rest = s.strip_prefix("built package from: ")?.to_owned();
                let (n, v) = rest.split_once(' ')?;
                Some((Some(n.to_owned()), Some(v.to_owned())))
            })
            .unwrap_or_default();
        let licenses = text(p, "licenseDeclared")
            .filter(|l| l != "NOASSERTION" && l != "NONE")
            .into_iter()
            .collect();
        out.packages.push(Entry {
            purl,
            bom_ref: None,
            src_name,
            src_version,
            licenses,
        });
    }
    out
}

/// The package a purl names (`None` for a type berth does not match, such as `oci`); learns the
/// OS from a `distro` qualifier when the document did not name one.
fn package(purl: &str, entry: &Entry, os: &mut Option<Os>) -> Result<Option<Package>, String> {
    let parsed = PackageUrl::from_str(purl).map_err(|e| format!("{purl:?}: {e}"))?;
    let version = parsed
        .version()
        .ok_or_else(|| format!("{purl:?} has no version"))?
        .to_owned();
    let qualifier = |key: &str| {
        parsed
            .qualifiers()
            .get(key)
            .map(|v| v.to_string())
            .filter(|v| !v.is_empty())
    };
    let namespaced = |sep: &str| match parsed.namespace() {
        Some(ns) => format!("{ns}{sep}{}", parsed.name()),
        None => parsed.name().to_owned(),
    };
    let (kind, name) = match parsed.ty() {
        "deb" => (PkgType::Deb, parsed.name().to_owned()),
        "apk" => (PkgType::Apk, parsed.name().to_owned()),
        "rpm" => (PkgType::Rpm, parsed.name().to_owned()),
        "pypi" => (PkgType::PythonPkg, parsed.name().to_owned()),
        "npm" => (PkgType::NodePkg, namespaced("/")),
        "cargo" => (PkgType::Cargo, parsed.name().to_owned()),
        "golang" => (PkgType::GoBinary, namespaced("/")),
        "maven" => (PkgType::Jar, namespaced(":")),
        _ => return Ok(None),
    };
    // Like Trivy, a purl carries an rpm's or deb's epoch as a qualifier; the version has it.
    let epoch =
        qualifier("epoch").filter(|e| e != "0" && matches!(kind, PkgType::Deb | PkgType::Rpm));
    let with_epoch = |v: String| match &epoch {
        Some(e) if !v.contains(':') => format!("{e}:{v}"),
        _ => v,
    };
    let version = with_epoch(version);
    if kind.is_os() && os.is_none() {
        *os = qualifier("distro").and_then(|d| match kind {
            // Alpine's distro is the release alone; the others name the family.
            PkgType::Apk => Some(Os {
                family: OsFamily::Alpine,
                version: d,
            }),
            _ => {
                let (family, release) = d.split_once('-')?;
                Some(Os {
                    family: OsFamily::from_id(family),
                    version: release.to_owned(),
                })
            }
        });
    }
    let mut p = Package::new(kind, name, version.clone(), "sbom");
    p.arch = qualifier("arch");
    p.licenses.clone_from(&entry.licenses);
    p.bom_ref.clone_from(&entry.bom_ref);
    if kind.is_os() {
        p.src_name = Some(entry.src_name.clone().unwrap_or_else(|| p.name.clone()));
        p.src_version = Some(entry.src_version.clone().map_or(version, with_epoch));
    }
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cyclonedx_packages_come_from_purls_with_trivys_source_properties() {
        let doc = json!({
            "bomFormat": "CycloneDX", "specVersion": "1.6",
            "components": [
                {"type": "operating-system", "name": "debian", "version": "12.15"},
                {"type": "library", "name": "libc6", "purl": "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64&distro=debian-12.15",
                 "properties": [{"name": "aquasecurity:trivy:SrcName", "value": "glibc"},
                                {"name": "aquasecurity:trivy:SrcVersion", "value": "2.36"},
                                {"name": "aquasecurity:trivy:SrcRelease", "value": "9+deb12u14"}]},
                {"type": "library", "name": "gcc", "purl": "pkg:deb/debian/libgcc-s1@12.2.0-14?distro=debian-12.15",
                 "properties": [{"name": "aquasecurity:trivy:SrcName", "value": "gcc-12"},
                                {"name": "aquasecurity:trivy:SrcVersion", "value": "12.2.0"},
                                {"name": "aquasecurity:trivy:SrcRelease", "value": "14"},
                                {"name": "aquasecurity:trivy:SrcEpoch", "value": "1"}]},
                {"type": "library", "name": "zlib1g", "purl": "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?distro=debian-12.15&epoch=1"},
                {"type": "library", "name": "node", "purl": "pkg:npm/%40types/node@1.0.0"},
                {"type": "library", "name": "guava", "purl": "pkg:maven/com.google.guava/guava@31.1-jre"},
                {"type": "library", "name": "no-purl"},
                {"type": "library", "name": "bad", "purl": "not a purl"},
                {"type": "container", "name": "img", "purl": "pkg:oci/img@sha256%3Aabc"}
            ]
        });
        let (inv, warnings) = parse(doc.to_string().as_bytes(), "sbom.json").expect("parses");
        assert_eq!(
            inv.os,
            Some(Os {
                family: OsFamily::Debian,
                version: "12.15".into()
            })
        );
        let mut got: Vec<(PkgType, &str, &str, Option<&str>)> = inv
            .packages
            .iter()
            .map(|p| {
                (
                    p.kind,
                    p.name.as_str(),
                    p.version.as_str(),
                    p.src_name.as_deref(),
                )
            })
            .collect();
        got.sort();
        // Trivy's split source version comes back whole: Debian advisories match on it.
        let src = |name: &str| {
            inv.packages
                .iter()
                .find(|p| p.name == name)
                .and_then(|p| p.src_version.as_deref())
        };
        assert_eq!(src("libc6"), Some("2.36-9+deb12u14"));
        assert_eq!(src("libgcc-s1"), Some("1:12.2.0-14"));
        assert_eq!(
            got,
            [
                (PkgType::Deb, "libc6", "2.36-9+deb12u14", Some("glibc")),
                (PkgType::Deb, "libgcc-s1", "12.2.0-14", Some("gcc-12")),
                (PkgType::Deb, "zlib1g", "1:1.2.13.dfsg-1", Some("zlib1g")),
                (PkgType::NodePkg, "@types/node", "1.0.0", None),
                (PkgType::Jar, "com.google.guava:guava", "31.1-jre", None),
            ]
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("1 package(s) of the SBOM have no purl"))
        );
        // Round trip: berth's own purls come back as the packages they were made from.
        for p in &inv.packages {
            let again = PackageUrl::from_str(&p.purl(inv.os.as_ref())).expect("own purl parses");
            assert!(again.name() == p.name || p.name.ends_with(again.name()));
        }
    }

    #[test]
    fn spdx_packages_and_the_os_from_the_distro_qualifier() {
        let doc = json!({
            "spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT",
            "packages": [
                {"name": "img", "SPDXID": "SPDXRef-C", "primaryPackagePurpose": "CONTAINER"},
                {"name": "musl", "SPDXID": "SPDXRef-P1", "versionInfo": "1.2.4-r4",
                 "sourceInfo": "built package from: musl 1.2.4-r4",
                 "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                                   "referenceLocator": "pkg:apk/alpine/musl@1.2.4-r4?arch=x86_64&distro=3.19.1"}]}
            ]
        });
        let (inv, warnings) = parse(doc.to_string().as_bytes(), "s").expect("parses");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            inv.os,
            Some(Os {
                family: OsFamily::Alpine,
                version: "3.19.1".into()
            })
        );
        assert_eq!(inv.packages.len(), 1);
        assert_eq!(inv.packages[0].src_name.as_deref(), Some("musl"));
    }

    #[test]
    fn what_is_not_an_sbom_says_so() {
        for bad in [
            &b"not json"[..],
            br#"{"bomFormat": "Other"}"#,
            br#"{"spdxVersion": "SPDX-3.0"}"#,
        ] {
            let err = parse(bad, "x").expect_err("refused");
            assert!(!err.is_empty());
        }
    }
}
