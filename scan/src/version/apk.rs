//! Alpine apk version order, a port of apk-tools' token-based `apk_version_compare`.

use std::cmp::Ordering;

use super::VersionError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tok {
    Invalid = -1,
    DigitOrZero = 0,
    Digit = 1,
    Letter = 2,
    Suffix = 3,
    SuffixNo = 4,
    RevisionNo = 5,
    End = 6,
}

const PRE_SUFFIXES: [&str; 4] = ["alpha", "beta", "pre", "rc"];
const POST_SUFFIXES: [&str; 5] = ["cvs", "svn", "git", "hg", "p"];

struct Cursor<'a> {
    s: &'a [u8],
    t: Tok,
}

impl Cursor<'_> {
    fn next_token(&mut self) {
        let mut n = Tok::Invalid;
        if self.s.is_empty() || self.s[0] == 0 {
            n = Tok::End;
        } else if matches!(self.t, Tok::Digit | Tok::DigitOrZero) && self.s[0].is_ascii_lowercase()
        {
            n = Tok::Letter;
        } else if self.t == Tok::Letter && self.s[0].is_ascii_digit() {
            n = Tok::Digit;
        } else if self.t == Tok::Suffix && self.s[0].is_ascii_digit() {
            n = Tok::SuffixNo;
        } else {
            match self.s[0] {
                b'.' => n = Tok::DigitOrZero,
                b'_' => n = Tok::Suffix,
                b'-' if self.s.get(1) == Some(&b'r') => {
                    n = Tok::RevisionNo;
                    self.s = &self.s[1..];
                }
                _ => {}
            }
            self.s = &self.s[1..];
        }
        if n < self.t
            && !((n == Tok::DigitOrZero && self.t == Tok::Digit)
                || (n == Tok::Suffix && self.t == Tok::SuffixNo)
                || (n == Tok::Digit && self.t == Tok::Letter))
        {
            n = Tok::Invalid;
        }
        self.t = n;
    }

    /// Returns the value of the current token and advances; values are i128 so long digit runs
    /// saturate instead of wrapping.
    fn get_token(&mut self) -> i128 {
        let mut v: i128 = 0;
        let mut i = 0usize;
        let mut nt = Tok::Invalid;
        if self.s.is_empty() {
            self.t = Tok::End;
            return 0;
        }
        let digits = |i: &mut usize, v: &mut i128| {
            while *i < self.s.len() && self.s[*i].is_ascii_digit() {
                *v = v
                    .saturating_mul(10)
                    .saturating_add(i128::from(self.s[*i] - b'0'));
                *i += 1;
            }
        };
        match self.t {
            Tok::DigitOrZero if self.s[0] == b'0' => {
                while i < self.s.len() && self.s[i] == b'0' {
                    i += 1;
                }
                nt = Tok::Digit;
                v = -(i as i128);
            }
            Tok::DigitOrZero | Tok::Digit | Tok::SuffixNo | Tok::RevisionNo => {
                digits(&mut i, &mut v)
            }
            Tok::Letter => {
                v = i128::from(self.s[0]);
                i = 1;
            }
            Tok::Suffix => {
                if let Some(k) = PRE_SUFFIXES
                    .iter()
                    .position(|p| self.s.starts_with(p.as_bytes()))
                {
                    v = k as i128 - PRE_SUFFIXES.len() as i128;
                    i = PRE_SUFFIXES[k].len();
                } else if let Some(k) = POST_SUFFIXES
                    .iter()
                    .position(|p| self.s.starts_with(p.as_bytes()))
                {
                    v = k as i128;
                    i = POST_SUFFIXES[k].len();
                } else {
                    self.t = Tok::Invalid;
                    return -1;
                }
            }
            Tok::Invalid | Tok::End => {
                self.t = Tok::Invalid;
                return -1;
            }
        }
        self.s = &self.s[i..];
        if self.s.is_empty() {
            self.t = Tok::End;
        } else if nt != Tok::Invalid {
            self.t = nt;
        } else {
            self.next_token();
        }
        v
    }
}

/// Checks that a version is well formed in apk's grammar.
pub fn validate(v: &str) -> Result<(), VersionError> {
    if v.is_empty() || !v.as_bytes()[0].is_ascii_digit() {
        return Err(VersionError::new("apk", v, "must start with a digit"));
    }
    let mut c = Cursor {
        s: v.as_bytes(),
        t: Tok::Digit,
    };
    while c.t != Tok::End {
        c.get_token();
        if c.t == Tok::Invalid {
            return Err(VersionError::new(
                "apk",
                v,
                "not of the form digits(.digits)*[letter](_suffix[N])*[-rN]",
            ));
        }
    }
    Ok(())
}

/// Compares two apk versions. Malformed versions still compare (as apk does), token by token.
pub fn compare(a: &str, b: &str) -> Result<Ordering, VersionError> {
    if a.is_empty() || b.is_empty() {
        return Err(VersionError::new(
            "apk",
            if a.is_empty() { a } else { b },
            "empty version",
        ));
    }
    let mut ca = Cursor {
        s: a.as_bytes(),
        t: Tok::Digit,
    };
    let mut cb = Cursor {
        s: b.as_bytes(),
        t: Tok::Digit,
    };
    let (mut av, mut bv) = (0i128, 0i128);
    while ca.t == cb.t && ca.t != Tok::End && ca.t != Tok::Invalid && av == bv {
        av = ca.get_token();
        bv = cb.get_token();
    }
    if av != bv {
        return Ok(av.cmp(&bv));
    }
    if ca.t == cb.t {
        return Ok(Ordering::Equal);
    }
    if ca.t == Tok::Suffix {
        let mut t = Cursor { s: ca.s, t: ca.t };
        if t.get_token() < 0 {
            return Ok(Ordering::Less);
        }
    }
    if cb.t == Tok::Suffix {
        let mut t = Cursor { s: cb.s, t: cb.t };
        if t.get_token() < 0 {
            return Ok(Ordering::Greater);
        }
    }
    Ok(cb.t.cmp(&ca.t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        let c = |a, b| compare(a, b).unwrap();
        assert_eq!(c("1.2.3-r10", "1.2.3-r9"), Ordering::Greater);
        assert_eq!(c("1.1_rc1", "1.1"), Ordering::Less);
        // apk-tools 2.x quirk, kept on purpose: a zero component followed by a suffix makes
        // the leading-zero token swallow the suffix check, so this sorts *after* "1.0".
        assert_eq!(c("1.0_rc1", "1.0"), Ordering::Greater);
        assert_eq!(c("1.0_p1", "1.0"), Ordering::Greater);
        assert_eq!(c("1.0_alpha", "1.0_beta"), Ordering::Less);
        assert_eq!(c("1.0_beta2", "1.0_beta10"), Ordering::Less);
        assert_eq!(c("1.0_pre1", "1.0_rc1"), Ordering::Less);
        assert_eq!(c("1.0_git1", "1.0_svn1"), Ordering::Greater);
        assert_eq!(c("1.0a", "1.0"), Ordering::Greater);
        assert_eq!(c("1.0a", "1.0b"), Ordering::Less);
        assert_eq!(c("1.0", "1.0.1"), Ordering::Less);
        assert_eq!(c("1.0-r0", "1.0"), Ordering::Greater);
        assert_eq!(c("3.0.12-r1", "3.0.12-r1"), Ordering::Equal);
        assert_eq!(c("1.10", "1.9"), Ordering::Greater);
        assert_eq!(c("1.01", "1.1"), Ordering::Less);
        assert_eq!(c("2.36.1_p20221202-r0", "2.36.1-r0"), Ordering::Greater);
    }

    /// A sample of the ordering facts in apk-tools' own `test/version.data`.
    #[test]
    fn upstream_vectors() {
        let table = "2.34 > 0.1.0_alpha|0.1.0_alpha2 > 0.1.0_alpha|1.1 > 1.1_alpha1|\
            1.3_alpha2 < 1.3_alpha3|0.8_beta4 < 4.8-r1|2.3.0b-r1 < 2.3.0b-r2|0.12.3 > 0.12|\
            1.2.12.1 < 1.2.13|3.1_p16 < 3.1_p17|1.06-r6 < 006|1.2.2-r1 > 1.2.2|\
            2.59 < 20050718-r1|2.01.01_alpha10 > 0.94|2.8.9-r1 > 2.8.9|\
            4.2.52_p2-r1 < 4.2.52_p4-r2|2.18.3-r10 > 1.05-r18|22.7-r1 < 22.7.3-r1|\
            2.1_pre20 < 2.1_pre26|02.08.01b < 4.77|1.6d > 1.2.07.8|0.59s-r11 < 0.65|\
            0.20070118 < 0.20070207_rc1|4.5_p1-r1 > 4.5_p1|0.9.8c-r1 < 0.9.8d|1.7 < 1.7b|\
            1.8.5 < 1.8.5_p2|2.9.11_pre20051101-r3 > 2.9.11_pre20051101|\
            1.6.8_p12-r1 > 1.6.8_p9-r2|2.25b-r5 < 2.25b-r6|0.9.28.1 < 087-r1|\
            104-r11 > 104-r9|1.2.5_rc2 > 0.1|2.12r-r4 < 2.12r-r5|7.0.17 < 7.0.174|\
            1.3-r0 < 1.3.1-r0|1.3_pre1-r1 < 1.3.2|1.0_p10-r0 > 1.0_p9-r0|\
            0.1.0_alpha_pre2 < 0.1.0_alpha|\
            1.0.0_pre20191002222144-r0 < 1.0.0_pre20210530193627-r0|0.2.0-r1 = 0.2.0-r1";
        for case in table.split('|') {
            let mut it = case.split_whitespace();
            let (a, op, b) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
            let want = match op {
                "<" => Ordering::Less,
                ">" => Ordering::Greater,
                _ => Ordering::Equal,
            };
            assert_eq!(compare(a, b).unwrap(), want, "{case}");
        }
    }

    #[test]
    fn validation() {
        assert!(validate("1.2.3_rc1-r4").is_ok());
        assert!(validate("1.2a_p3").is_ok());
        assert!(validate("x1").is_err());
        assert!(validate("1.2_foo").is_err());
        assert!(validate("1.2-4").is_err());
    }
}
