//! SemVer 2.0 precedence as npm's `semver.compare` and crates.io use it, plus Go's module
//! flavour (`v` prefix, `+incompatible`, `go1.21rc2` toolchain names).

use std::cmp::Ordering;

use super::{VersionError, cmp_digits};

/// One pre-release identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ident<'a> {
    Num(&'a str),
    Alpha(&'a str),
}

impl Ord for Ident<'_> {
    fn cmp(&self, o: &Self) -> Ordering {
        match (self, o) {
            (Self::Num(a), Self::Num(b)) => cmp_digits(a, b),
            (Self::Num(_), Self::Alpha(_)) => Ordering::Less,
            (Self::Alpha(_), Self::Num(_)) => Ordering::Greater,
            (Self::Alpha(a), Self::Alpha(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for Ident<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A parsed SemVer version borrowing from its text; build metadata is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemVer<'a> {
    core: [&'a str; 3],
    pre: Vec<Ident<'a>>,
}

impl Ord for SemVer<'_> {
    fn cmp(&self, o: &Self) -> Ordering {
        for k in 0..3 {
            let c = cmp_digits(self.core[k], o.core[k]);
            if c != Ordering::Equal {
                return c;
            }
        }
        match (self.pre.is_empty(), o.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => self.pre.cmp(&o.pre),
        }
    }
}

impl PartialOrd for SemVer<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

/// Parses `[v|=]MAJOR[.MINOR[.PATCH]][-pre][+build]`; missing minor/patch count as 0.
pub fn parse(v: &str) -> Result<SemVer<'_>, VersionError> {
    let err = |r| VersionError::new("semver", v, r);
    let s = v.trim();
    let s = s.strip_prefix('=').unwrap_or(s).trim_start();
    let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
    let s = match s.split_once('+') {
        Some((main, build)) => {
            if !build.split('.').all(is_ident) {
                return Err(err("invalid build metadata"));
            }
            main
        }
        None => s,
    };
    let (core, pre) = match s.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (s, None),
    };
    let mut parts = core.split('.');
    let mut out = ["0"; 3];
    for (k, slot) in out.iter_mut().enumerate() {
        match parts.next() {
            Some(p) if !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) => *slot = p,
            Some(_) => return Err(err("version numbers must be digits")),
            None if k == 0 => return Err(err("missing major version")),
            None => break,
        }
    }
    if parts.next().is_some() {
        return Err(err("more than three version numbers"));
    }
    let mut ids = Vec::new();
    if let Some(pre) = pre {
        for id in pre.split('.') {
            if !is_ident(id) {
                return Err(err("invalid pre-release identifier"));
            }
            ids.push(if id.bytes().all(|c| c.is_ascii_digit()) {
                Ident::Num(id)
            } else {
                Ident::Alpha(id)
            });
        }
    }
    Ok(SemVer {
        core: out,
        pre: ids,
    })
}

/// Compares two SemVer versions (build metadata ignored).
pub fn compare(a: &str, b: &str) -> Result<Ordering, VersionError> {
    Ok(parse(a)?.cmp(&parse(b)?))
}

/// Rewrites a Go version into SemVer: strips `v`/`go`, `+incompatible`, and turns toolchain
/// names like `go1.21rc2` into `1.21.0-rc.2`.
pub fn normalize_go(v: &str) -> String {
    let s = v.trim();
    let s = s.strip_suffix("+incompatible").unwrap_or(s);
    if let Some(rest) = s.strip_prefix("go") {
        // go1.21rc2 / go1.9beta1 / go1.21.3
        let cut = rest
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let (num, pre) = rest.split_at(cut);
        let mut n: Vec<&str> = num.split('.').collect();
        while n.len() < 3 {
            n.push("0");
        }
        let mut out = n.join(".");
        if !pre.is_empty() {
            let split = pre.find(|c: char| c.is_ascii_digit()).unwrap_or(pre.len());
            let (word, digits) = pre.split_at(split);
            out.push('-');
            out.push_str(word);
            if !digits.is_empty() {
                out.push('.');
                out.push_str(digits);
            }
        }
        return out;
    }
    s.strip_prefix('v').unwrap_or(s).to_owned()
}

/// Compares two Go module or toolchain versions.
pub fn compare_go(a: &str, b: &str) -> Result<Ordering, VersionError> {
    let (a, b) = (normalize_go(a), normalize_go(b));
    Ok(parse(&a)?.cmp(&parse(&b)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(a: &str, b: &str) -> Ordering {
        compare(a, b).unwrap()
    }

    #[test]
    fn semver_precedence() {
        // The SemVer 2.0 spec's own example chain.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "2.0.0",
            "2.1.0",
            "2.1.1",
        ];
        for w in chain.windows(2) {
            assert_eq!(c(w[0], w[1]), Ordering::Less, "{} < {}", w[0], w[1]);
        }
        assert_eq!(c("1.0.0+build.1", "1.0.0+other"), Ordering::Equal);
        assert_eq!(c("v1.2.3", "=1.2.3"), Ordering::Equal);
        assert_eq!(c("4.17.1", "4.17.1"), Ordering::Equal);
    }

    #[test]
    fn go_versions() {
        let g = |a, b| compare_go(a, b).unwrap();
        assert_eq!(g("v1.19.8", "1.19.9"), Ordering::Less);
        assert_eq!(g("v2.0.0+incompatible", "v2.0.0"), Ordering::Equal);
        assert_eq!(
            g("v0.0.0-20210101000000-abcdef123456", "v0.0.1"),
            Ordering::Less
        );
        assert_eq!(g("go1.21rc2", "1.21.0"), Ordering::Less);
        assert_eq!(g("go1.21", "v1.21.0"), Ordering::Equal);
        assert_eq!(normalize_go("go1.9beta1"), "1.9.0-beta.1");
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "x", "1.2.3.4", "1..2", "1.0.0-", "1.0.0-a..b", "1.0.0+"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
