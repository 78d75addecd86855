//! Maven version order: a port of `org.apache.maven.artifact.versioning.ComparableVersion`
//! (maven-artifact 3.9.x), including its parse into nested lists and trailing-null trimming.

use std::cmp::Ordering;

use super::cmp_digits;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// A number, digits with leading zeros stripped.
    Int(String),
    /// A qualifier, already aliased (ga/final/release → "", cr → rc, a1 → alpha…).
    Str(String),
    List(Vec<Self>),
}

const QUALIFIERS: [&str; 7] = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"];
const RELEASE_INDEX: &str = "5";

fn comparable_qualifier(q: &str) -> String {
    match QUALIFIERS.iter().position(|x| *x == q) {
        Some(i) => i.to_string(),
        None => format!("{}-{q}", QUALIFIERS.len()),
    }
}

fn string_item(value: &str, followed_by_digit: bool) -> Item {
    let mut v = value;
    if followed_by_digit && value.len() == 1 {
        v = match value {
            "a" => "alpha",
            "b" => "beta",
            "m" => "milestone",
            other => other,
        };
    }
    let v = match v {
        "ga" | "final" | "release" => "",
        "cr" => "rc",
        other => other,
    };
    Item::Str(v.to_owned())
}

fn parse_item(is_digit: bool, buf: &str) -> Item {
    if is_digit {
        let t = buf.trim_start_matches('0');
        Item::Int(if t.is_empty() {
            "0".to_owned()
        } else {
            t.to_owned()
        })
    } else {
        string_item(buf, false)
    }
}

impl Item {
    fn is_null(&self) -> bool {
        match self {
            Self::Int(v) => v == "0",
            Self::Str(s) => comparable_qualifier(s) == RELEASE_INDEX,
            Self::List(l) => l.is_empty(),
        }
    }

    /// `this.compareTo(other)`, with `None` standing for Java's `null`.
    fn compare(&self, other: Option<&Self>) -> Ordering {
        match (self, other) {
            (Self::Int(v), None) => {
                if v == "0" {
                    Ordering::Equal
                } else {
                    Ordering::Greater
                }
            }
            (Self::Int(a), Some(Self::Int(b))) => cmp_digits(a, b),
            (Self::Int(_), Some(Self::Str(_) | Self::List(_))) => Ordering::Greater,
            (Self::Str(s), None) => comparable_qualifier(s).as_str().cmp(RELEASE_INDEX),
            (Self::Str(_), Some(Self::Int(_) | Self::List(_))) => Ordering::Less,
            (Self::Str(a), Some(Self::Str(b))) => {
                comparable_qualifier(a).cmp(&comparable_qualifier(b))
            }
            (Self::List(l), None) => {
                for i in l {
                    let r = i.compare(None);
                    if r != Ordering::Equal {
                        return r;
                    }
                }
                Ordering::Equal
            }
            (Self::List(_), Some(Self::Int(_))) => Ordering::Less,
            (Self::List(_), Some(Self::Str(_))) => Ordering::Greater,
            (Self::List(a), Some(Self::List(b))) => {
                let n = a.len().max(b.len());
                for k in 0..n {
                    let r = match (a.get(k), b.get(k)) {
                        (None, None) => Ordering::Equal,
                        (None, Some(r)) => r.compare(None).reverse(),
                        (Some(l), r) => l.compare(r),
                    };
                    if r != Ordering::Equal {
                        return r;
                    }
                }
                Ordering::Equal
            }
        }
    }
}

fn normalize(list: &mut Vec<Item>) {
    let mut i = list.len();
    while i > 0 {
        i -= 1;
        if list[i].is_null() {
            list.remove(i);
        } else if !matches!(list[i], Item::List(_)) {
            break;
        }
    }
}

/// Builds the item tree. Lists are kept on an explicit stack of paths so they can be normalised
/// innermost-first, exactly as the Java code pops its `Deque`.
fn parse(version: &str) -> Item {
    let version = version.to_lowercase();
    // The tree is stored as nested Vecs; `path` holds the index chain to the current list.
    let mut root: Vec<Item> = Vec::new();
    let mut stack: Vec<Vec<usize>> = vec![Vec::new()];

    fn current<'a>(root: &'a mut Vec<Item>, path: &[usize]) -> &'a mut Vec<Item> {
        let mut cur = root;
        for &k in path {
            cur = match &mut cur[k] {
                Item::List(l) => l,
                _ => unreachable!("stack paths point at lists"),
            };
        }
        cur
    }
    fn push_list(root: &mut Vec<Item>, stack: &mut Vec<Vec<usize>>) {
        let path = stack.last().cloned().unwrap_or_default();
        let list = current(root, &path);
        list.push(Item::List(Vec::new()));
        let mut p = path;
        p.push(list.len() - 1);
        stack.push(p);
    }
    let add = |root: &mut Vec<Item>, stack: &[Vec<usize>], item: Item| {
        let path = stack.last().cloned().unwrap_or_default();
        current(root, &path).push(item);
    };
    let is_empty = |root: &mut Vec<Item>, stack: &[Vec<usize>]| {
        let path = stack.last().cloned().unwrap_or_default();
        current(root, &path).is_empty()
    };

    let chars: Vec<char> = version.chars().collect();
    let sub = |a: usize, b: usize| chars[a..b].iter().collect::<String>();
    let mut is_digit = false;
    let mut start = 0usize;
    for (i, &c) in chars.iter().enumerate() {
        if c == '.' {
            if i == start {
                add(&mut root, &stack, Item::Int("0".to_owned()));
            } else {
                add(&mut root, &stack, parse_item(is_digit, &sub(start, i)));
            }
            start = i + 1;
        } else if c == '-' {
            if i == start {
                add(&mut root, &stack, Item::Int("0".to_owned()));
            } else {
                add(&mut root, &stack, parse_item(is_digit, &sub(start, i)));
            }
            start = i + 1;
            push_list(&mut root, &mut stack);
        } else if c.is_ascii_digit() {
            if !is_digit && i > start {
                if !is_empty(&mut root, &stack) {
                    push_list(&mut root, &mut stack);
                }
                add(&mut root, &stack, string_item(&sub(start, i), true));
                start = i;
                push_list(&mut root, &mut stack);
            }
            is_digit = true;
        } else {
            if is_digit && i > start {
                add(&mut root, &stack, parse_item(true, &sub(start, i)));
                start = i;
                push_list(&mut root, &mut stack);
            }
            is_digit = false;
        }
    }
    if chars.len() > start {
        if !is_digit && !is_empty(&mut root, &stack) {
            push_list(&mut root, &mut stack);
        }
        add(
            &mut root,
            &stack,
            parse_item(is_digit, &sub(start, chars.len())),
        );
    }
    while let Some(path) = stack.pop() {
        normalize(current(&mut root, &path));
    }
    Item::List(root)
}

/// Compares two Maven versions. Every string is a valid Maven version.
pub fn compare(a: &str, b: &str) -> Ordering {
    parse(a).compare(Some(&parse(b)))
}

/// Maven's canonical form of a version (as `ComparableVersion.getCanonical()` prints it).
pub fn canonical(v: &str) -> String {
    // Java's ListItem.toString: a separator only once its own buffer is non-empty.
    fn render(items: &[Item]) -> String {
        let mut buf = String::new();
        for item in items {
            if !buf.is_empty() {
                buf.push(if matches!(item, Item::List(_)) {
                    '-'
                } else {
                    '.'
                });
            }
            match item {
                Item::Int(s) | Item::Str(s) => buf.push_str(s),
                Item::List(l) => buf.push_str(&render(l)),
            }
        }
        buf
    }
    match parse(v) {
        Item::List(l) => render(&l),
        Item::Int(s) | Item::Str(s) => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(compare("31.1-jre", "32.0.0-android"), Ordering::Less);
        assert_eq!(compare("1.0-SNAPSHOT", "1.0"), Ordering::Less);
        assert_eq!(compare("1.0", "1.0.RELEASE"), Ordering::Equal);
        assert_eq!(compare("1.0", "1.0.ga"), Ordering::Equal);
        assert_eq!(compare("1-1", "1.0-1"), Ordering::Equal);
        assert_eq!(compare("1.0-alpha1", "1.0-beta1"), Ordering::Less);
        assert_eq!(compare("1.0a1", "1.0-alpha-1"), Ordering::Equal);
        assert_eq!(compare("1.0-rc1", "1.0-cr1"), Ordering::Equal);
        assert_eq!(compare("1.0-sp1", "1.0"), Ordering::Greater);
        assert_eq!(compare("1.0-foo", "1.0-sp"), Ordering::Greater);
        assert_eq!(compare("1.0.1", "1.0-1"), Ordering::Greater);
        assert_eq!(compare("2.11.0", "2.9.0"), Ordering::Greater);
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical("1.0.0"), "1");
        assert_eq!(canonical("1.0-SNAPSHOT"), "1-snapshot");
        assert_eq!(canonical("1a1"), "1-alpha-1");
        assert_eq!(canonical("31.1-jre"), "31.1-jre");
    }
}
