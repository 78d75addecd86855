//! dpkg: `/var/lib/dpkg/status`, distroless `status.d/*`, and `info/*.list` file ownership.

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
        let (mut name, mut version, mut arch, mut source, mut status) =
            (None, None, None, None, None);
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

/// Parses an `info/<pkg>.list` file into owned paths (relative, directories dropped later by
/// simply never matching a manifest file).
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim().trim_start_matches('/'))
        .filter(|l| !l.is_empty() && *l != ".")
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
    fn distroless_status_d_and_lists() {
        let (p, _) = parse_status(
            "Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\n",
            "var/lib/dpkg/status.d/base",
        );
        assert_eq!(p.len(), 1);
        assert_eq!(
            parse_list("/.\n/usr\n/usr/lib/python3/dist-packages/pip-23.0.1.dist-info/METADATA\n"),
            [
                "usr",
                "usr/lib/python3/dist-packages/pip-23.0.1.dist-info/METADATA"
            ]
        );
    }
}
