//! PEP 440 versions, parsed and ordered like Python's `packaging.version.Version`.

use std::cmp::Ordering;

use super::{VersionError, cmp_digits};

/// A number kept as its digit string (leading zeros stripped), so any length compares exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Num(String);

impl Num {
    fn new(s: &str) -> Self {
        let t = s.trim_start_matches('0');
        Self(if t.is_empty() {
            "0".to_owned()
        } else {
            t.to_owned()
        })
    }
    fn zero() -> Self {
        Self("0".to_owned())
    }
    fn is_zero(&self) -> bool {
        self.0 == "0"
    }
}

impl Ord for Num {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_digits(&self.0, &other.0)
    }
}

impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum LocalPart {
    // Strings sort before numbers (packaging uses (-inf, s) for strings).
    Str(String),
    Num(Num),
}

/// A parsed PEP 440 version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pep440 {
    epoch: Num,
    release: Vec<Num>,
    /// (0 = a, 1 = b, 2 = rc, number)
    pre: Option<(u8, Num)>,
    post: Option<Num>,
    dev: Option<Num>,
    local: Option<Vec<LocalPart>>,
}

struct P<'a> {
    s: &'a [u8],
    i: usize,
}

impl P<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn digits(&mut self) -> Option<&str> {
        let st = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        (self.i > st).then(|| std::str::from_utf8(&self.s[st..self.i]).unwrap_or("0"))
    }
    fn sep(&mut self) -> bool {
        if matches!(self.peek(), Some(b'-' | b'_' | b'.')) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    /// Parses `[sep]label[sep][N]`, returning the label's index and N (0 when absent), or
    /// leaves the cursor alone when no label follows.
    fn labelled(&mut self, labels: &[&str]) -> Option<(usize, Num)> {
        let save = self.i;
        self.sep();
        let Some(k) = self.label(labels) else {
            self.i = save;
            return None;
        };
        let after_label = self.i;
        self.sep();
        let n = match self.digits() {
            Some(d) => Num::new(d),
            None => {
                self.i = after_label;
                Num::zero()
            }
        };
        Some((k, n))
    }

    /// Tries the longest matching label among `labels` at the cursor.
    fn label(&mut self, labels: &[&str]) -> Option<usize> {
        let rest = &self.s[self.i..];
        let (k, l) = labels
            .iter()
            .enumerate()
            .filter(|(_, l)| rest.starts_with(l.as_bytes()))
            .max_by_key(|(_, l)| l.len())?;
        self.i += l.len();
        Some(k)
    }
}

/// Parses a PEP 440 version (case-insensitive, surrounding whitespace and a leading `v` allowed).
pub fn parse(v: &str) -> Result<Pep440, VersionError> {
    let lower = v.trim().to_ascii_lowercase();
    let err = |r| VersionError::new("pep440", v, r);
    let mut p = P {
        s: lower.as_bytes(),
        i: 0,
    };
    if p.peek() == Some(b'v') {
        p.i += 1;
    }
    let first = p
        .digits()
        .ok_or_else(|| err("must start with a release number"))?
        .to_owned();
    let mut epoch = Num::zero();
    let mut release = Vec::new();
    if p.peek() == Some(b'!') {
        p.i += 1;
        epoch = Num::new(&first);
        release.push(Num::new(
            p.digits()
                .ok_or_else(|| err("epoch must be followed by a release"))?,
        ));
    } else {
        release.push(Num::new(&first));
    }
    while p.peek() == Some(b'.') && p.s.get(p.i + 1).is_some_and(u8::is_ascii_digit) {
        p.i += 1;
        release.push(Num::new(p.digits().unwrap_or("0")));
    }
    // pre-release
    let pre = p
        .labelled(&["alpha", "a", "beta", "b", "preview", "pre", "c", "rc"])
        .map(|(k, n)| {
            let kind = match k {
                0 | 1 => 0,
                2 | 3 => 1,
                _ => 2,
            };
            (kind, n)
        });
    // post-release: `-N` or a labelled post
    let post = if p.peek() == Some(b'-') && p.s.get(p.i + 1).is_some_and(u8::is_ascii_digit) {
        p.i += 1;
        Some(Num::new(p.digits().unwrap_or("0")))
    } else {
        p.labelled(&["post", "rev", "r"]).map(|(_, n)| n)
    };
    let dev = p.labelled(&["dev"]).map(|(_, n)| n);
    // local
    let mut local = None;
    if p.peek() == Some(b'+') {
        p.i += 1;
        let rest = std::str::from_utf8(&p.s[p.i..]).map_err(|_| err("non-ASCII local label"))?;
        let mut parts = Vec::new();
        for seg in rest.split(['-', '_', '.']) {
            if seg.is_empty() || !seg.bytes().all(|c| c.is_ascii_alphanumeric()) {
                return Err(err("local label must be alphanumeric segments"));
            }
            parts.push(if seg.bytes().all(|c| c.is_ascii_digit()) {
                LocalPart::Num(Num::new(seg))
            } else {
                LocalPart::Str(seg.to_owned())
            });
        }
        p.i = p.s.len();
        local = Some(parts);
    }
    if p.i != p.s.len() {
        return Err(err("unexpected trailing text"));
    }
    Ok(Pep440 {
        epoch,
        release,
        pre,
        post,
        dev,
        local,
    })
}

impl Pep440 {
    /// True for dev and pre-releases.
    pub fn is_prerelease(&self) -> bool {
        self.pre.is_some() || self.dev.is_some()
    }
}

impl Ord for Pep440 {
    fn cmp(&self, o: &Self) -> Ordering {
        fn trimmed(r: &[Num]) -> &[Num] {
            let n = r.iter().rposition(|x| !x.is_zero()).map_or(0, |i| i + 1);
            &r[..n]
        }
        // pre key: -inf when only dev, +inf when none.
        fn pre_key(v: &Pep440) -> (i8, Option<&(u8, Num)>) {
            match (&v.pre, &v.post, &v.dev) {
                (None, None, Some(_)) => (-1, None),
                (None, _, _) => (1, None),
                (Some(p), _, _) => (0, Some(p)),
            }
        }
        fn post_key(v: &Pep440) -> (i8, Option<&Num>) {
            v.post.as_ref().map_or((-1, None), |n| (0, Some(n)))
        }
        fn dev_key(v: &Pep440) -> (i8, Option<&Num>) {
            v.dev.as_ref().map_or((1, None), |n| (0, Some(n)))
        }
        fn local_key(v: &Pep440) -> (i8, Option<&Vec<LocalPart>>) {
            v.local.as_ref().map_or((-1, None), |l| (0, Some(l)))
        }
        self.epoch
            .cmp(&o.epoch)
            .then_with(|| trimmed(&self.release).cmp(trimmed(&o.release)))
            .then_with(|| pre_key(self).cmp(&pre_key(o)))
            .then_with(|| post_key(self).cmp(&post_key(o)))
            .then_with(|| dev_key(self).cmp(&dev_key(o)))
            .then_with(|| local_key(self).cmp(&local_key(o)))
    }
}

impl PartialOrd for Pep440 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Compares two PEP 440 versions.
pub fn compare(a: &str, b: &str) -> Result<Ordering, VersionError> {
    Ok(parse(a)?.cmp(&parse(b)?))
}

/// Normalises a PyPI project name per PEP 503 (lowercase, runs of `-_.` become `-`).
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_sep {
                out.push('-');
            }
            in_sep = true;
        } else {
            out.push(c.to_ascii_lowercase());
            in_sep = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(a: &str, b: &str) -> Ordering {
        compare(a, b).unwrap()
    }

    #[test]
    fn known_vectors() {
        assert_eq!(c("6.0.1rc1", "6.0.1"), Ordering::Less);
        assert_eq!(c("1.0rc1", "1.0"), Ordering::Less);
        assert_eq!(c("1.0.dev0", "1.0a0"), Ordering::Less);
        assert_eq!(c("1.0", "1.0.post0"), Ordering::Less);
        assert_eq!(c("1.0-1", "1.0.post1"), Ordering::Equal);
        assert_eq!(c("1.0", "1.0.0.0"), Ordering::Equal);
        assert_eq!(c("1!0.1", "2.0"), Ordering::Greater);
        assert_eq!(c("1.0+abc", "1.0"), Ordering::Greater);
        assert_eq!(c("1.0+abc", "1.0+5"), Ordering::Less);
        assert_eq!(c("1.0ALPHA1", "1.0a1"), Ordering::Equal);
        assert_eq!(c("1.0c1", "1.0rc1"), Ordering::Equal);
        assert_eq!(c("1.0.post1.dev2", "1.0.post1"), Ordering::Less);
        assert_eq!(c("1.0a1.post2", "1.0a1"), Ordering::Greater);
        assert_eq!(c("v1.0", "1.0"), Ordering::Equal);
        assert_eq!(c("1.0-r", "1.0.post0"), Ordering::Equal);
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "a", "1.0+", "1.0..1", "1.0 beta", "1.0+a..b", "1.0foo"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(normalize_name("Jinja2"), "jinja2");
        assert_eq!(normalize_name("zope.interface__x"), "zope-interface-x");
    }
}
