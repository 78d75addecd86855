//! Version orders, one per ecosystem, each a faithful port of its native implementation.
//!
//! Every scheme compares two version strings; [`Scheme::compare`] is the single entry point the
//! matcher uses. The oracle tests in `tests/it/oracle.rs` check each scheme against its native tool.

pub mod apk;
pub mod dpkg;
pub mod maven;
pub mod pep440;
pub mod rpm;
pub mod semver;

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// A version string could not be parsed by its scheme.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid {scheme} version {version:?}: {reason}; fix the version string or the scheme chosen for this ecosystem"
)]
pub struct VersionError {
    /// The scheme's name.
    pub scheme: &'static str,
    /// The text that failed to parse.
    pub version: String,
    /// What was wrong.
    pub reason: &'static str,
}

impl VersionError {
    pub(crate) fn new(scheme: &'static str, version: &str, reason: &'static str) -> Self {
        Self {
            scheme,
            version: version.to_owned(),
            reason,
        }
    }
}

/// The version orders berth knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Debian `dpkg --compare-versions`.
    Dpkg,
    /// Alpine apk-tools.
    Apk,
    /// rpm `labelCompare` over epoch:version-release.
    Rpm,
    /// PEP 440 (Python `packaging.version.Version`).
    Pep440,
    /// npm's `semver` (SemVer 2.0 precedence; a leading `v`/`=` is accepted).
    Npm,
    /// Go modules: SemVer with a `v` prefix, `+incompatible` ignored, `go1.x` toolchain names.
    Go,
    /// Maven's `ComparableVersion`.
    Maven,
    /// SemVer 2.0 as crates.io uses it.
    Semver,
}

impl Scheme {
    /// The scheme's name as used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dpkg => "dpkg",
            Self::Apk => "apk",
            Self::Rpm => "rpm",
            Self::Pep440 => "pep440",
            Self::Npm => "npm",
            Self::Go => "go",
            Self::Maven => "maven",
            Self::Semver => "semver",
        }
    }

    /// Compares two versions in this scheme.
    pub fn compare(self, a: &str, b: &str) -> Result<Ordering, VersionError> {
        match self {
            Self::Dpkg => dpkg::compare(a, b),
            Self::Apk => apk::compare(a, b),
            Self::Rpm => rpm::compare(a, b),
            Self::Pep440 => pep440::compare(a, b),
            Self::Npm | Self::Semver => semver::compare(a, b),
            Self::Go => semver::compare_go(a, b),
            Self::Maven => Ok(maven::compare(a, b)),
        }
    }
}

/// Compares two runs of ASCII digits numerically without overflow (leading zeros ignored).
pub(crate) fn cmp_digits(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_compare_numerically() {
        assert_eq!(cmp_digits("010", "9"), Ordering::Greater);
        assert_eq!(cmp_digits("000", ""), Ordering::Equal);
        assert_eq!(
            cmp_digits("123456789012345678901234567890", "99"),
            Ordering::Greater
        );
    }

    /// Arbitrary input never panics, and comparing a value with itself is never "less".
    #[test]
    fn garbage_never_panics() {
        let alphabet = b"0123456789.-_~^+:!abcrvpgitAZ \x00\xff";
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..20_000 {
            let mut v = |len: usize| {
                (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        alphabet[(x % alphabet.len() as u64) as usize]
                    })
                    .collect::<Vec<u8>>()
            };
            let (a, b) = (v(12), v(8));
            let (a, b) = (
                String::from_utf8_lossy(&a).into_owned(),
                String::from_utf8_lossy(&b).into_owned(),
            );
            for s in [
                Scheme::Dpkg,
                Scheme::Apk,
                Scheme::Rpm,
                Scheme::Pep440,
                Scheme::Npm,
                Scheme::Go,
                Scheme::Maven,
                Scheme::Semver,
            ] {
                let _ = s.compare(&a, &b);
                if let Ok(o) = s.compare(&a, &a) {
                    assert_eq!(o, Ordering::Equal, "{} {a:?}", s.name());
                }
            }
        }
    }

    #[test]
    fn scheme_dispatch() {
        assert_eq!(Scheme::Dpkg.compare("1.0~rc1", "1.0"), Ok(Ordering::Less));
        assert_eq!(Scheme::Go.compare("v1.19.8", "1.19.9"), Ok(Ordering::Less));
        assert_eq!(
            Scheme::Maven.compare("31.1-jre", "32.0.0-android"),
            Ok(Ordering::Less)
        );
        assert!(Scheme::Pep440.compare("not a version", "1").is_err());
    }
}
