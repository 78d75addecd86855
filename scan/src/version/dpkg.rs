//! Debian version order, as `dpkg --compare-versions` implements it (`verrevcmp`).

use std::cmp::Ordering;

use super::VersionError;

/// A parsed `[epoch:]upstream[-revision]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebVersion<'a> {
    /// The epoch (0 when absent).
    pub epoch: u64,
    /// The upstream part.
    pub upstream: &'a str,
    /// The Debian revision ("" when absent, which sorts like "0").
    pub revision: &'a str,
}

/// Parses a Debian version.
pub fn parse(v: &str) -> Result<DebVersion<'_>, VersionError> {
    let s = v.trim();
    if s.is_empty() {
        return Err(VersionError::new("dpkg", v, "empty version"));
    }
    let (epoch, rest) = match s.split_once(':') {
        Some((e, rest)) => {
            let epoch = e
                .parse::<u64>()
                .map_err(|_| VersionError::new("dpkg", v, "epoch is not a number"))?;
            (epoch, rest)
        }
        None => (0, s),
    };
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((u, r)) => (u, r),
        None => (rest, ""),
    };
    if upstream.is_empty() {
        return Err(VersionError::new("dpkg", v, "empty upstream version"));
    }
    if s.chars().any(char::is_whitespace) {
        return Err(VersionError::new("dpkg", v, "contains whitespace"));
    }
    Ok(DebVersion {
        epoch,
        upstream,
        revision,
    })
}

/// Compares two Debian versions.
pub fn compare(a: &str, b: &str) -> Result<Ordering, VersionError> {
    let a = parse(a)?;
    let b = parse(b)?;
    Ok(a.epoch
        .cmp(&b.epoch)
        .then_with(|| verrevcmp(a.upstream, b.upstream))
        .then_with(|| verrevcmp(a.revision, b.revision)))
}

fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let mut first_diff = 0i32;
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        while i < a.len() && j < b.len() && a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            if first_diff == 0 {
                first_diff = i32::from(a[i]) - i32::from(b[j]);
            }
            i += 1;
            j += 1;
        }
        if a.get(i).is_some_and(u8::is_ascii_digit) {
            return Ordering::Greater;
        }
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            return Ordering::Less;
        }
        if first_diff != 0 {
            return first_diff.cmp(&0);
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &str, b: &str) -> Ordering {
        compare(a, b).unwrap()
    }

    #[test]
    fn known_vectors() {
        assert_eq!(cmp("1.0", "1.0-0"), Ordering::Equal);
        assert_eq!(cmp("1.0~rc1", "1.0"), Ordering::Less);
        assert_eq!(cmp("1:0.1", "9.9"), Ordering::Greater);
        assert_eq!(cmp("1.0a", "1.0+"), Ordering::Less);
        assert_eq!(cmp("2.36-9+deb12u14", "2.36-9+deb12u9"), Ordering::Greater);
        assert_eq!(
            cmp("5.36.0-7+deb12u3", "5.36.0-7+deb12u3~"),
            Ordering::Greater
        );
        assert_eq!(cmp("1:1.2.13.dfsg-1", "1.2.13.dfsg-2"), Ordering::Greater);
        assert_eq!(cmp("1.0~~", "1.0~"), Ordering::Less);
        assert_eq!(cmp("1.2-3-4", "1.2-3-5"), Ordering::Less);
        assert_eq!(cmp("1.001", "1.1"), Ordering::Equal);
    }

    #[test]
    fn rejects_garbage() {
        assert!(compare("a:1", "1").is_err());
        assert!(compare("", "1").is_err());
        assert!(compare("1:-1", "1").is_err());
    }
}
