//! berth-storemeta: berth's one reader of containers-storage metadata, a store's
//! `overlay-images/images.json` and `overlay-layers/layers.json`.
//!
//! A job writes its own store, so both files are untrusted input: they are read beneath a handle
//! on the store (`berth-beneath`: no link followed, size bounded), and every entry is validated
//! once into typed values (ids of 64 lowercase hex digits, `sha256`/`sha512` digests, names
//! without control characters, no id twice) before any of it names a file. Every problem of a
//! file is reported together. Only the fields berth uses are read; containers-storage owns the
//! format, so fields berth does not know are ignored.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use berth_beneath::Dir;
use serde::Deserialize;

/// Where a store lists its images, relative to the store's root.
pub const IMAGES: &str = "overlay-images/images.json";
/// Where a store lists its layers, relative to the store's root.
pub const LAYERS: &str = "overlay-layers/layers.json";
/// The largest metadata file read.
pub const MAX_METADATA: u64 = 64 << 20;
/// The longest image name accepted.
pub const MAX_NAME: usize = 4096;
/// The most problems one error lists (a hostile file may have millions).
const MAX_PROBLEMS: usize = 20;

fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A containers-storage image or layer id: 64 lowercase hex digits, so it can name a directory
/// of the store (`overlay/<id>`) and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreId(String);

impl StoreId {
    /// Parses `text`; the error says what an id is (the text itself is not repeated: it may be
    /// hostile).
    pub fn parse(text: &str) -> Result<Self, String> {
        if lower_hex(text, 64) {
            Ok(Self(text.to_owned()))
        } else {
            Err("a containers-storage id is 64 lowercase hex digits".to_owned())
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A digest a store records: `sha256:<64 hex>` or `sha512:<128 hex>`, lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreDigest(String);

impl StoreDigest {
    /// Parses `text`; the error says what a digest is (the text itself is not repeated).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (algorithm, hex) = text
            .split_once(':')
            .ok_or_else(|| "a digest is algorithm:hex".to_owned())?;
        let len = match algorithm {
            "sha256" => 64,
            "sha512" => 128,
            _ => return Err("only sha256 and sha512 digests are read".to_owned()),
        };
        if lower_hex(hex, len) {
            Ok(Self(text.to_owned()))
        } else {
            Err(format!(
                "a {algorithm} digest is {len} lowercase hex digits"
            ))
        }
    }

    /// The digest as `algorithm:hex`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StoreDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One image of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreImage {
    /// Its id.
    pub id: StoreId,
    /// Its names (`localhost/app:latest`), possibly none.
    pub names: Vec<String>,
    /// Its top layer; `None` for an image without layers.
    pub layer: Option<StoreId>,
}

/// One layer of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLayer {
    /// Its id (its files are in `overlay/<id>/diff`).
    pub id: StoreId,
    /// The layer below it; `None` for a base layer.
    pub parent: Option<StoreId>,
    /// The digest of its uncompressed tar (the image's DiffID), when recorded.
    pub diff_digest: Option<StoreDigest>,
    /// The size of its uncompressed tar, when recorded (for the base store's size).
    pub diff_size: Option<u64>,
}

/// Errors reading a store's metadata; each names the file, the problem and the fix.
#[derive(Debug, thiserror::Error)]
pub enum StoreMetaError {
    /// The file could not be read (a link, not a regular file, too large, unreadable).
    #[error(
        "cannot read {path}: {source}; containers-storage writes a plain file of at most {MAX_METADATA} bytes there: if the store was altered, remove it and pull or build its images again"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file was read but is not what containers-storage writes.
    #[error(
        "{path} is malformed: {}; containers-storage never writes this, so the store was damaged or altered: remove it (or the images named) and pull or build again",
        problems.join("; ")
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Every problem found, in file order (at most 20, then how many more).
        problems: Vec<String>,
    },
}

impl StoreMetaError {
    /// The file the error concerns.
    pub fn path(&self) -> &Path {
        match self {
            Self::Read { path, .. } | Self::Malformed { path, .. } => path,
        }
    }
}

#[derive(Deserialize)]
struct RawImage {
    id: String,
    #[serde(default)]
    names: Option<Vec<String>>,
    #[serde(default)]
    layer: Option<String>,
}

#[derive(Deserialize)]
struct RawLayer {
    id: String,
    #[serde(default)]
    parent: Option<String>,
    #[serde(rename = "diff-digest", default)]
    diff_digest: Option<String>,
    #[serde(rename = "diff-size", default)]
    diff_size: Option<u64>,
}

/// Problems of one file, counted past the ones listed.
#[derive(Default)]
struct Problems {
    listed: Vec<String>,
    more: usize,
}

impl Problems {
    fn push(&mut self, problem: String) {
        if self.listed.len() < MAX_PROBLEMS {
            self.listed.push(problem);
        } else {
            self.more += 1;
        }
    }

    fn into_result<T>(mut self, path: &Path, value: T) -> Result<T, StoreMetaError> {
        if self.listed.is_empty() {
            return Ok(value);
        }
        if self.more > 0 {
            self.listed
                .push(format!("and {} more problem(s)", self.more));
        }
        Err(StoreMetaError::Malformed {
            path: path.to_owned(),
            problems: self.listed,
        })
    }
}

/// The entries of a JSON array, each still to be read; a document that is no array is one
/// problem.
fn entries(bytes: &[u8], path: &Path) -> Result<Vec<serde_json::Value>, StoreMetaError> {
    serde_json::from_slice(bytes).map_err(|e| StoreMetaError::Malformed {
        path: path.to_owned(),
        problems: vec![format!("not a JSON list of entries ({e})")],
    })
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("a name is empty".to_owned())
    } else if name.len() > MAX_NAME {
        Err(format!("a name is longer than {MAX_NAME} bytes"))
    } else if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Err("a name contains whitespace or a control character".to_owned())
    } else {
        Ok(())
    }
}

/// An optional field that, when present, must parse: `Some(None)` when absent, `None` (and a
/// problem) when malformed.
fn optional<T, E: fmt::Display>(
    value: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, E>,
    what: &str,
    bad: &mut dyn FnMut(String),
) -> Option<Option<T>> {
    match value.map(parse).transpose() {
        Ok(v) => Some(v),
        Err(why) => {
            bad(format!("{what} is malformed: {why}"));
            None
        }
    }
}

/// The entries of a metadata file as `Raw`, each validated by `check` into its id (when it
/// parses) and its value (when every field does); problems go to the callback. Every problem
/// of the file, a duplicate id among them, is reported together. `kind` names an entry.
fn parse_all<Raw: serde::de::DeserializeOwned, T>(
    bytes: &[u8],
    path: &Path,
    kind: &str,
    mut check: impl FnMut(Raw, &mut dyn FnMut(String)) -> (Option<StoreId>, Option<T>),
) -> Result<Vec<T>, StoreMetaError> {
    let mut problems = Problems::default();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (n, entry) in entries(bytes, path)?.into_iter().enumerate() {
        let mut bad = |what: String| problems.push(format!("entry {n}: {what}"));
        let raw = match serde_json::from_value::<Raw>(entry) {
            Ok(r) => r,
            Err(e) => {
                bad(e.to_string());
                continue;
            }
        };
        let (id, value) = check(raw, &mut bad);
        if let Some(id) = id
            && !seen.insert(id.clone())
        {
            bad(format!("{kind} {id} is listed twice"));
        }
        out.extend(value);
    }
    problems.into_result(path, out)
}

/// Parses the text of an `images.json`; `path` names it in errors.
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<Vec<StoreImage>, StoreMetaError> {
    parse_all(bytes, path, "image", |raw: RawImage, bad| {
        let id = StoreId::parse(&raw.id)
            .map_err(|why| bad(format!("id is malformed: {why}")))
            .ok();
        let layer = optional(raw.layer.as_deref(), StoreId::parse, "layer id", bad);
        let names = raw.names.unwrap_or_default();
        let mut names_ok = true;
        for name in &names {
            if let Err(why) = check_name(name) {
                bad(why);
                names_ok = false;
            }
        }
        let image = match (&id, layer, names_ok) {
            (Some(id), Some(layer), true) => Some(StoreImage {
                id: id.clone(),
                names,
                layer,
            }),
            _ => None,
        };
        (id, image)
    })
}

/// Parses the text of a `layers.json`; `path` names it in errors.
pub fn parse_layers(bytes: &[u8], path: &Path) -> Result<Vec<StoreLayer>, StoreMetaError> {
    parse_all(bytes, path, "layer", |raw: RawLayer, bad| {
        let id = StoreId::parse(&raw.id)
            .map_err(|why| bad(format!("id is malformed: {why}")))
            .ok();
        let parent = optional(raw.parent.as_deref(), StoreId::parse, "parent id", bad);
        let diff_digest = optional(
            raw.diff_digest.as_deref(),
            StoreDigest::parse,
            "diff-digest",
            bad,
        );
        let layer = match (&id, parent, diff_digest) {
            (Some(id), Some(parent), Some(diff_digest)) => Some(StoreLayer {
                id: id.clone(),
                parent,
                diff_digest,
                diff_size: raw.diff_size,
            }),
            _ => None,
        };
        (id, layer)
    })
}

/// The bytes of `rel` beneath `store`; `None` when it does not exist.
fn read(store: &Dir, rel: &str) -> Result<Option<Vec<u8>>, StoreMetaError> {
    match store.read(Path::new(rel), MAX_METADATA) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreMetaError::Read {
            path: store.path().join(rel),
            source,
        }),
    }
}

/// The images of the store `store` is a handle on; `None` when it has no `images.json` (a store
/// nothing was pulled into yet; whether that is fine is the caller's call).
pub fn read_images(store: &Dir) -> Result<Option<Vec<StoreImage>>, StoreMetaError> {
    read(store, IMAGES)?
        .map(|bytes| parse_images(&bytes, &store.path().join(IMAGES)))
        .transpose()
}

/// The layers of the store `store` is a handle on; `None` when it has no `layers.json`.
pub fn read_layers(store: &Dir) -> Result<Option<Vec<StoreLayer>>, StoreMetaError> {
    read(store, LAYERS)?
        .map(|bytes| parse_layers(&bytes, &store.path().join(LAYERS)))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> String {
        c.to_string().repeat(64)
    }

    fn store() -> (tempfile::TempDir, Dir) {
        let tmp = tempfile::tempdir().expect("tempdir");
        for d in ["overlay-images", "overlay-layers"] {
            std::fs::create_dir(tmp.path().join(d)).expect("mkdir");
        }
        let dir = Dir::open(tmp.path()).expect("open");
        (tmp, dir)
    }

    fn problems(e: StoreMetaError) -> Vec<String> {
        match e {
            StoreMetaError::Malformed { problems, .. } => problems,
            StoreMetaError::Read { .. } => panic!("a read error, not a malformed file: {e}"),
        }
    }

    #[test]
    fn a_store_podman_wrote_is_read_with_the_fields_berth_uses() {
        let (tmp, dir) = store();
        let images = format!(
            r#"[{{"id":"{}","digest":"sha256:{}","names":["localhost/app:latest","localhost/app:1"],"layer":"{}","metadata":"{{}}","big-data-names":["manifest"],"created":"2026-11-01T00:00:00Z"}},{{"id":"{}"}}]"#,
            id('a'),
            id('0'),
            id('1'),
            id('b'),
        );
        std::fs::write(tmp.path().join(IMAGES), images).expect("write");
        let layers = format!(
            r#"[{{"id":"{}","created":"2026-11-01T00:00:00Z","compressed-diff-digest":"sha256:{}","diff-digest":"sha256:{}","diff-size":10}},{{"id":"{}","parent":"{}"}}]"#,
            id('1'),
            id('2'),
            id('3'),
            id('4'),
            id('1'),
        );
        std::fs::write(tmp.path().join(LAYERS), layers).expect("write");
        let images = read_images(&dir).expect("read").expect("present");
        assert_eq!(
            images,
            vec![
                StoreImage {
                    id: StoreId(id('a')),
                    names: vec!["localhost/app:latest".into(), "localhost/app:1".into()],
                    layer: Some(StoreId(id('1'))),
                },
                StoreImage {
                    id: StoreId(id('b')),
                    names: vec![],
                    layer: None,
                },
            ]
        );
        let layers = read_layers(&dir).expect("read").expect("present");
        assert_eq!(layers.len(), 2);
        assert_eq!(
            layers[0].diff_digest.as_ref().map(StoreDigest::as_str),
            Some(format!("sha256:{}", id('3')).as_str())
        );
        assert_eq!(layers[1].parent, Some(StoreId(id('1'))));
    }

    #[test]
    fn missing_files_are_none_for_the_caller_to_judge() {
        let (_tmp, dir) = store();
        assert!(read_images(&dir).expect("read").is_none());
        assert!(read_layers(&dir).expect("read").is_none());
        let empty = tempfile::tempdir().expect("tempdir");
        let bare = Dir::open(empty.path()).expect("open");
        assert!(read_images(&bare).expect("read").is_none(), "no directory");
    }

    #[test]
    fn bad_and_path_like_ids_are_refused_and_every_problem_is_told() {
        let images = format!(
            r#"[{{"id":"../x"}},{{"id":"{}","layer":"../../etc"}},{{"id":"{}"}},{{"id":"{}","names":["a\nb",""]}},{{"id":"{}"}},{{"id":7}}]"#,
            id('A'),
            id('c'),
            id('d'),
            id('c'),
        );
        let err = parse_images(images.as_bytes(), Path::new("/s/images.json")).expect_err("read");
        assert!(err.to_string().contains("/s/images.json"), "{err}");
        assert!(err.to_string().contains("pull or build again"), "{err}");
        let p = problems(err);
        let want = [
            "entry 0: id is malformed",
            "entry 1: id is malformed",
            "entry 1: layer id is malformed",
            "entry 3: a name contains whitespace",
            "entry 3: a name is empty",
            "entry 4: image cccc",
            "entry 5: invalid type",
        ];
        assert_eq!(p.len(), want.len(), "{p:?}");
        for (got, want) in p.iter().zip(want) {
            assert!(got.starts_with(want), "{got:?} is not {want:?}");
        }
        assert!(
            !p.concat().contains("../"),
            "hostile text is not echoed: {p:?}"
        );
    }

    #[test]
    fn layers_with_bad_parents_digests_or_twice_listed_are_refused() {
        let layers = format!(
            r#"[{{"id":"{}","parent":"../../../etc"}},{{"id":"{}","diff-digest":"md5:00"}},{{"id":"{}","diff-digest":"sha256:{}"}}]"#,
            id('1'),
            id('2'),
            id('1'),
            "A".repeat(64),
        );
        let p =
            problems(parse_layers(layers.as_bytes(), Path::new("layers.json")).expect_err("read"));
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p[0].contains("parent id is malformed"), "{p:?}");
        assert!(p[1].contains("only sha256 and sha512"), "{p:?}");
        assert!(p[2].contains("lowercase hex"), "{p:?}");
        assert!(p[3].contains("listed twice"), "{p:?}");
    }

    #[test]
    fn a_document_that_is_no_list_is_one_problem() {
        for text in [&b"{}"[..], b"", b"[{\"id\":"] {
            let p = problems(parse_layers(text, Path::new("layers.json")).expect_err("read"));
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(p[0].starts_with("not a JSON list"), "{p:?}");
        }
    }

    #[test]
    fn a_flood_of_problems_is_told_in_part_and_counted() {
        let images = format!("[{}]", vec![r#"{"id":"x"}"#; 25].join(","));
        let p = problems(parse_images(images.as_bytes(), Path::new("i")).expect_err("read"));
        assert_eq!(p.len(), MAX_PROBLEMS + 1);
        assert_eq!(p[MAX_PROBLEMS], "and 5 more problem(s)");
    }

    #[test]
    fn an_oversized_file_is_refused_before_it_is_parsed() {
        let (tmp, dir) = store();
        let f = std::fs::File::create(tmp.path().join(LAYERS)).expect("create");
        // Sparse: one byte over the limit costs no disk.
        f.set_len(MAX_METADATA + 1).expect("grow");
        let err = read_layers(&dir).expect_err("read a file past the limit");
        assert!(matches!(err, StoreMetaError::Read { .. }), "{err}");
        assert!(err.to_string().contains("larger than"), "{err}");
        assert_eq!(err.path(), tmp.path().join(LAYERS));
    }

    #[test]
    fn a_symlinked_images_json_is_not_followed() {
        let (tmp, dir) = store();
        let elsewhere = tmp.path().join("elsewhere.json");
        std::fs::write(&elsewhere, format!(r#"[{{"id":"{}"}}]"#, id('e'))).expect("write");
        std::os::unix::fs::symlink(&elsewhere, tmp.path().join(IMAGES)).expect("symlink");
        let err = read_images(&dir).expect_err("followed the link");
        assert!(matches!(err, StoreMetaError::Read { .. }), "{err}");
        // A linked directory on the way is refused the same way.
        std::fs::remove_dir_all(tmp.path().join("overlay-layers")).expect("rm");
        let other = tempfile::tempdir().expect("tempdir");
        std::fs::write(other.path().join("layers.json"), "[]").expect("write");
        std::os::unix::fs::symlink(other.path(), tmp.path().join("overlay-layers"))
            .expect("symlink");
        assert!(read_layers(&dir).is_err(), "followed a linked directory");
    }
}
