//! rpm version order: `rpmvercmp` over epoch, version and release (librpm's `labelCompare`).

use std::cmp::Ordering;

use super::{VersionError, cmp_digits};

/// A parsed `[epoch:]version[-release]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evr<'a> {
    /// The epoch (0 when absent).
    pub epoch: u64,
    /// The version.
    pub version: &'a str,
    /// The release ("" when absent).
    pub release: &'a str,
}

/// Parses an EVR string.
pub fn parse(v: &str) -> Result<Evr<'_>, VersionError> {
    let s = v.trim();
    if s.is_empty() {
        return Err(VersionError::new("rpm", v, "empty version"));
    }
    let (epoch, rest) = match s.split_once(':') {
        Some((e, rest)) if !e.is_empty() => (
            e.parse::<u64>()
                .map_err(|_| VersionError::new("rpm", v, "epoch is not a number"))?,
            rest,
        ),
        Some((_, rest)) => (0, rest),
        None => (0, s),
    };
    let (version, release) = rest.rsplit_once('-').unwrap_or((rest, ""));
    Ok(Evr {
        epoch,
        version,
        release,
    })
}

/// Compares two EVR strings like `rpm.labelCompare`.
pub fn compare(a: &str, b: &str) -> Result<Ordering, VersionError> {
    let a = parse(a)?;
    let b = parse(b)?;
    Ok(a.epoch
        .cmp(&b.epoch)
        .then_with(|| rpmvercmp(a.version, b.version))
        .then_with(|| rpmvercmp(a.release, b.release)))
}

/// librpm's `rpmvercmp` on one field.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    while i < a.len() || j < b.len() {
        while i < a.len() && sep(a[i]) {
            i += 1;
        }
        while j < b.len() && sep(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca == Some(b'^') || cb == Some(b'^') {
            if ca.is_none() {
                return Ordering::Less;
            }
            if cb.is_none() {
                return Ordering::Greater;
            }
            if ca != Some(b'^') {
                return Ordering::Greater;
            }
            if cb != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca.is_none() || cb.is_none() {
            break;
        }
        let (si, sj) = (i, j);
        let isnum = a[i].is_ascii_digit();
        let class: fn(&u8) -> bool = if isnum {
            u8::is_ascii_digit
        } else {
            u8::is_ascii_alphabetic
        };
        while i < a.len() && class(&a[i]) {
            i += 1;
        }
        while j < b.len() && class(&b[j]) {
            j += 1;
        }
        if j == sj {
            return if isnum {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (sa, sb) = (&a[si..i], &b[sj..j]);
        // Both segments are ASCII, so the conversion cannot fail.
        let sa = std::str::from_utf8(sa).unwrap_or_default();
        let sb = std::str::from_utf8(sb).unwrap_or_default();
        let rc = if isnum {
            cmp_digits(sa, sb)
        } else {
            sa.cmp(sb)
        };
        if rc != Ordering::Equal {
            return rc;
        }
    }
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (false, _) => Ordering::Greater,
        (true, false) => Ordering::Less,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        let c = |a, b| compare(a, b).unwrap();
        assert_eq!(c("1.0~rc1", "1.0"), Ordering::Less);
        assert_eq!(c("1.0^git1", "1.0"), Ordering::Greater);
        assert_eq!(c("1.0^git1", "1.0.1"), Ordering::Less);
        assert_eq!(c("1.01", "1.1"), Ordering::Equal);
        assert_eq!(c("1.0_1", "1.0.1"), Ordering::Equal);
        assert_eq!(c("1-el8", "1-el8_1"), Ordering::Less);
        assert_eq!(c("1:1.0-1", "2.0-1"), Ordering::Greater);
        assert_eq!(c("1.0a", "1.0"), Ordering::Greater);
        assert_eq!(c("1.0", "1.0a"), Ordering::Less);
        assert_eq!(c("2a", "2.0"), Ordering::Less);
    }
}
