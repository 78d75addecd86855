//! OS detection from `os-release`, `/etc/debian_version` and `/etc/alpine-release`.

use super::OsFacts;
use crate::inventory::{Os, OsFamily};

/// Parses one OS file.
pub fn parse(path: &str, text: &str) -> OsFacts {
    let mut f = OsFacts::default();
    if path.ends_with("os-release") {
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"').trim_matches('\'').to_owned();
            match k.trim() {
                "ID" => f.id = Some(v),
                "VERSION_ID" => f.version_id = Some(v),
                _ => {}
            }
        }
    } else {
        let v = text.trim();
        if !v.is_empty() {
            f.precise_version = Some(v.to_owned());
        }
        if path.ends_with("alpine-release") {
            f.id = Some("alpine".into());
        } else if path.ends_with("debian_version") {
            f.id = Some("debian".into());
        }
    }
    f
}

/// Combines the facts of all OS files into the OS, as Trivy does: the family from os-release
/// (or the release file), the version from the precise release file when it fits.
pub fn detect<'a>(facts: impl IntoIterator<Item = (&'a str, &'a OsFacts)>) -> Option<Os> {
    let mut os_release: Option<&OsFacts> = None;
    let mut debian: Option<&OsFacts> = None;
    let mut alpine: Option<&OsFacts> = None;
    for (path, f) in facts {
        match path {
            "etc/os-release" => os_release = Some(f),
            "usr/lib/os-release" if os_release.is_none() => os_release = Some(f),
            "etc/debian_version" => debian = Some(f),
            "etc/alpine-release" => alpine = Some(f),
            _ => {}
        }
    }
    let id = os_release
        .and_then(|f| f.id.clone())
        .or_else(|| alpine.and(Some("alpine".to_owned())))
        .or_else(|| debian.and(Some("debian".to_owned())))?;
    let family = OsFamily::from_id(&id);
    let numeric = |v: &&String| v.chars().next().is_some_and(|c| c.is_ascii_digit());
    let precise = match family {
        OsFamily::Debian => debian
            .and_then(|f| f.precise_version.as_ref())
            .filter(numeric)
            .cloned(),
        OsFamily::Alpine => alpine
            .and_then(|f| f.precise_version.as_ref())
            .filter(numeric)
            .cloned(),
        _ => None,
    };
    let version = precise.or_else(|| os_release.and_then(|f| f.version_id.clone()))?;
    Some(Os { family, version })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_uses_debian_version() {
        let osr = parse(
            "etc/os-release",
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
        );
        let dv = parse("etc/debian_version", "12.15\n");
        let os = detect([("etc/os-release", &osr), ("etc/debian_version", &dv)]).unwrap();
        assert_eq!(
            os,
            Os {
                family: OsFamily::Debian,
                version: "12.15".into()
            }
        );
        // testing/sid write a codename there: fall back to VERSION_ID
        let sid = parse("etc/debian_version", "trixie/sid\n");
        assert_eq!(
            detect([("etc/os-release", &osr), ("etc/debian_version", &sid)])
                .unwrap()
                .version,
            "12"
        );
        let ar = parse("etc/alpine-release", "3.19.1\n");
        assert_eq!(
            detect([("etc/alpine-release", &ar)]).unwrap(),
            Os {
                family: OsFamily::Alpine,
                version: "3.19.1".into()
            }
        );
        assert!(detect([]).is_none());
    }
}
