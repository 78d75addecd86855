//! dpkg: `/var/lib/dpkg/status`, distroless `status.d/*`, and the files packages installed
//! (`info/*.md5sums`, `status.d/*.md5sums`).

use super::stanzas;
use crate::inventory::{Package, PkgType};

/// What a status file held besides its packages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Stanzas without a `Package` or `Version` field.
    pub stanzas: usize,
    /// Lines that are neither `Field: value` nor a continuation.
    pub lines: usize,
}

impl Dropped {
    /// A warning for the scan's output, when anything was dropped.
    pub fn warning(self, path: &str) -> Option<String> {
        (self != Self::default()).then(|| {
            format!(
                "{path}: kept only the valid packages; dropped {} stanza(s) without Package or Version and ignored {} line(s) that are not `Field: value`",
                self.stanzas, self.lines
            )
        })
    }
}

/// Maintainers of packages from third-party repositories (Trivy 0.74's heuristic; dpkg records
/// no vendor): a substring anywhere in the `Maintainer` field.
const THIRD_PARTY_MAINTAINERS: &[&str] = &[
    "support@docker.com",
    "@nvidia.com",
    "Google Cloud CLI Authors",
    "sapmachine@sap.com",
    "@hashicorp.com",
    "@microsoft.com",
    "@mongodb.com",
    "developers@lists.mariadb.org",
    "dev@couchdb.apache.org",
    "info@elastic.co",
    "nginx-packaging@f5.com",
    "@konghq.com",
    "@cloudflare.com",
    "support@influxdb.com",
    "support@gitlab.com",
    "contact@grafana.com",
    "@datadoghq.com",
    "@nodesource.com",
    "info@tailscale.com",
    "@openrobotics.org",
    "@osrfoundation.org",
];
/// Maintainer fields that name a third party only when they are the whole field.
const THIRD_PARTY_MAINTAINERS_EXACT: &[&str] = &["GitHub", "HashiCorp"];

/// Whether a package with this `Maintainer` comes from a third-party repository.
pub fn third_party_maintainer(maintainer: &str) -> bool {
    THIRD_PARTY_MAINTAINERS_EXACT.contains(&maintainer)
        || THIRD_PARTY_MAINTAINERS
            .iter()
            .any(|m| maintainer.contains(m))
}

/// A dpkg field name: printable ASCII without spaces or colons (deb822).
fn field_name(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// Parses a status file (or one status.d file) into installed packages, and counts what it
/// could not use.
pub fn parse_status(text: &str, path: &str) -> (Vec<Package>, Dropped) {
    let mut out = Vec::new();
    let mut dropped = Dropped::default();
    for st in stanzas(text) {
        let (mut name, mut version, mut arch, mut source, mut status, mut maintainer) =
            (None, None, None, None, None, None);
        for line in st.lines() {
            if line.starts_with([' ', '\t']) || line.is_empty() {
                continue;
            }
            let Some((k, v)) = line.split_once(':').filter(|(k, _)| field_name(k)) else {
                dropped.lines += 1;
                continue;
            };
            let v = v.trim();
            match k {
                "Package" => name = Some(v),
                "Version" => version = Some(v),
                "Architecture" => arch = Some(v),
                "Source" => source = Some(v),
                "Status" => status = Some(v),
                "Maintainer" => maintainer = Some(v),
                _ => {}
            }
        }
        let (Some(name), Some(version)) = (name, version) else {
            dropped.stanzas += 1;
            continue;
        };
        // status.d files carry no Status field; a status file marks removed packages.
        if status.is_some_and(|s| s.split_whitespace().last() != Some("installed")) {
            continue;
        }
        let mut p = Package::new(PkgType::Deb, name, version, path);
        p.arch = arch.map(str::to_owned);
        p.third_party = maintainer.is_some_and(third_party_maintainer);
        let (src, src_version) = match source {
            Some(s) => match s.split_once('(') {
                Some((n, v)) => (n.trim(), v.trim_end_matches(')').trim()),
                None => (s, version),
            },
            None => (name, version),
        };
        p.src_name = Some(src.to_owned());
        p.src_version = Some(src_version.to_owned());
        out.push(p);
    }
    (out, dropped)
}

/// Parses a `<package>.md5sums` file (`<digest>  <path>` per line, paths without the leading
/// `/`) into the files the package installed; malformed lines are skipped.
pub fn parse_md5sums(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_once("  ").map(|(_, path)| path))
        .map(|p| p.trim().trim_start_matches('/'))
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9+deb12u14\nDescription: GNU C Library\n multi-line\n\n\
Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\nSource: zlib (1:1.2.13.dfsg-1)\nVersion: 1:1.2.13.dfsg-1\n\n\
Package: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n\n\
Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b7\n";

    #[test]
    fn status_file() {
        let (p, dropped) = parse_status(STATUS, "var/lib/dpkg/status");
        assert_eq!(dropped, Dropped::default());
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["libc6", "zlib1g", "bash"]);
        assert_eq!(p[0].src_name.as_deref(), Some("glibc"));
        assert_eq!(p[0].src_version.as_deref(), Some("2.36-9+deb12u14"));
        assert_eq!(p[1].src_version.as_deref(), Some("1:1.2.13.dfsg-1"));
        assert_eq!(p[2].src_name.as_deref(), Some("bash"));
        assert_eq!(p[0].arch.as_deref(), Some("amd64"));
    }

    #[test]
    fn garbage_keeps_the_valid_packages_and_counts_what_it_dropped() {
        let text = "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\n\x00\x01binary junk\n\n\
\u{fffd}\u{fffd}garbage without fields\nmore garbage\n\n\
Package: nameless-version\nStatus: install ok installed\n\n\
Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b7\n";
        let (p, dropped) = parse_status(text, "var/lib/dpkg/status");
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["libc6", "bash"]);
        assert_eq!(
            dropped,
            Dropped {
                stanzas: 2,
                lines: 3
            }
        );
        let warning = dropped.warning("var/lib/dpkg/status").expect("a warning");
        assert!(
            warning.contains("2 stanza(s)") && warning.contains("3 line(s)"),
            "{warning}"
        );
        assert!(
            !warning.contains("junk"),
            "the warning echoes the file's bytes: {warning}"
        );
    }

    #[test]
    fn third_party_maintainers_mark_packages() {
        let text = "Package: docker-ce\nStatus: install ok installed\nVersion: 5:27.0.3-1~debian.12~bookworm\nMaintainer: Docker <support@docker.com>\n\n\
Package: gh\nStatus: install ok installed\nVersion: 2.50.0\nMaintainer: GitHub\n\n\
Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b7\nMaintainer: Matthias Klose <doko@debian.org>\n";
        let (p, _) = parse_status(text, "var/lib/dpkg/status");
        let third: Vec<(&str, bool)> = p.iter().map(|p| (p.name.as_str(), p.third_party)).collect();
        assert_eq!(third, [("docker-ce", true), ("gh", true), ("bash", false)]);
    }

    #[test]
    fn distroless_status_d_and_lists() {
        let (p, _) = parse_status(
            "Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\n",
            "var/lib/dpkg/status.d/base",
        );
        assert_eq!(p.len(), 1);
        assert_eq!(
            parse_md5sums(
                "d41d8cd98f00b204e9800998ecf8427e  usr/lib/python3/dist-packages/pip-23.0.1.dist-info/METADATA\nnot a line\n"
            ),
            ["usr/lib/python3/dist-packages/pip-23.0.1.dist-info/METADATA"]
        );
    }
}
