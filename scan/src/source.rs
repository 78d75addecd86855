//! Image sources: docker-archive and OCI-archive tars, OCI layout directories,
//! containers-storage overlay stores and plain root filesystem directories, each turned into an
//! ordered list of layers that can be walked entry by entry (whiteouts included).
//!
//! Stores a CI job can write are untrusted input: every id and digest is validated before it
//! names a file (a containers-storage store's metadata by `berth-storemeta`), files are opened beneath the store's root without following any link
//! (`berth-beneath`), JSON documents and layer chains are bounded, and walking a tar layer
//! computes berth's own digest of its stored bytes ([`ContentKey`]), which is checked against
//! the digest an OCI blob is named by. A missing, unreadable or inconsistent part of an image is
//! an error, never an empty layer.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use berth_beneath::{Dir, Kind};
use berth_storemeta::{self as storemeta, StoreId, StoreImage, StoreLayer, StoreMetaError};
use flate2::read::GzDecoder;
use serde::Deserialize;

use crate::digest::{Algorithm, ContentKey, Digest, DigestMemo, Hashing, HashingAside, Stamp};
use crate::inventory::{Artifact, ArtifactKind};

/// The largest JSON document of an image (index, manifest, config) read; a store's
/// `images.json` and `layers.json` are bounded by `berth-storemeta`.
pub const MAX_JSON: u64 = 64 << 20;
/// The most layers an image may have (a longer parent chain is refused).
pub const MAX_LAYERS: usize = 512;
/// The deepest directory nesting read in a directory layer.
pub const MAX_DEPTH: usize = 256;

/// Errors while opening or reading an image.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}; check that the path exists and is readable")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The input is not a format berth reads.
    #[error(
        "{path} is not an image berth can read ({reason}); pass a docker-archive or OCI-archive tar, an OCI layout directory or a root filesystem directory"
    )]
    Format {
        /// The input.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A JSON document inside the image is broken.
    #[error("{what} in {path} is malformed: {source}; re-export the image")]
    Json {
        /// Which document.
        what: String,
        /// The input.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A layer uses a compression berth does not read.
    #[error(
        "layer {layer} of {path} is {compression}-compressed; export the image uncompressed or with gzip or zstd (e.g. `podman save --format docker-archive`)"
    )]
    Compression {
        /// The input.
        path: PathBuf,
        /// Which layer.
        layer: String,
        /// The compression.
        compression: &'static str,
    },
    /// The image was not found in a containers-storage store.
    #[error(
        "image {image:?} not found in containers-storage at {root}; check `podman images` and the storage root (--root)"
    )]
    ImageNotFound {
        /// The store.
        root: PathBuf,
        /// The reference asked for.
        image: String,
    },
    /// The image as stored is damaged, inconsistent or forged (a blob that does not match its
    /// digest, a layer that is missing, a parent chain that loops): never scanned as empty.
    #[error(
        "{path}: {problem}; berth does not pass an image it cannot read whole: rebuild the image (its store was damaged or altered)"
    )]
    Invalid {
        /// The store or file.
        path: PathBuf,
        /// What is wrong, naming the image or layer.
        problem: String,
    },
    /// A containers-storage store's `images.json` or `layers.json` is unreadable or malformed.
    #[error(transparent)]
    Store(#[from] StoreMetaError),
}

impl SourceError {
    /// The store, file or input the error concerns (to tell whose store is broken).
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. }
            | Self::Format { path, .. }
            | Self::Json { path, .. }
            | Self::Compression { path, .. }
            | Self::Invalid { path, .. } => path,
            Self::ImageNotFound { root, .. } => root,
            Self::Store(e) => e.path(),
        }
    }
}

fn invalid(path: &Path, problem: impl Into<String>) -> SourceError {
    SourceError::Invalid {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SourceError + '_ {
    move |source| SourceError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where a layer's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerData {
    /// A (possibly compressed) tar stored at `offset..offset+len` of the file `rel`, opened
    /// beneath the directory `root` without following links.
    Tar {
        /// The directory the file is opened beneath (named by berth or its caller).
        root: PathBuf,
        /// The file, relative to `root`.
        rel: PathBuf,
        /// Start offset.
        offset: u64,
        /// Length in bytes.
        len: u64,
        /// The digest the stored bytes must have (an OCI blob's name), checked on every read.
        digest: Option<Digest>,
    },
    /// An unpacked directory given by its caller (a root filesystem).
    Dir(PathBuf),
    /// An unpacked directory `rel` (an overlay `diff` directory) opened beneath the store root
    /// `root` without following links.
    StoreDir {
        /// The store root.
        root: PathBuf,
        /// The directory, relative to `root`.
        rel: PathBuf,
    },
}

impl LayerData {
    /// Where the layer is, for messages.
    pub fn location(&self) -> PathBuf {
        match self {
            Self::Tar { root, rel, .. } | Self::StoreDir { root, rel } => root.join(rel),
            Self::Dir(p) => p.clone(),
        }
    }
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The layer's DiffID (digest of the uncompressed tar), when known.
    pub diff_id: Option<String>,
    /// Its bytes.
    pub data: LayerData,
}

/// An opened image: what it is and its layers, bottom first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The artifact description.
    pub artifact: Artifact,
    /// Layers, bottom first.
    pub layers: Vec<Layer>,
}

/// What an entry of a layer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A regular file with an execute bit set.
    Executable,
    /// Deletes the path from lower layers.
    Whiteout,
    /// Hides everything below this directory in lower layers.
    OpaqueDir,
    /// Anything else (dirs, links, devices).
    Other,
}

/// Normalises a tar path: no leading `./` or `/`, no trailing `/`.
pub fn clean_path(p: &str) -> String {
    let p = p.trim_start_matches("./").trim_start_matches('/');
    p.trim_end_matches('/').to_owned()
}

/// Classifies a tar entry name, turning `.wh.` markers into whiteouts of the real path.
pub fn classify(path: &str) -> (String, Option<EntryKind>) {
    let path = clean_path(path);
    let (dir, base) = match path.rsplit_once('/') {
        Some((d, b)) => (d.to_owned(), b),
        None => (String::new(), path.as_str()),
    };
    if base == ".wh..wh..opq" {
        return (dir, Some(EntryKind::OpaqueDir));
    }
    if let Some(real) = base.strip_prefix(".wh.") {
        let p = if dir.is_empty() {
            real.to_owned()
        } else {
            format!("{dir}/{real}")
        };
        return (p, Some(EntryKind::Whiteout));
    }
    (path, None)
}

/// The hash of a layer's key: the algorithm of the digest its bytes are named by (which they
/// must match), else BLAKE3 (nothing to match: only berth's own key, and the fastest).
fn key_algorithm(named: Option<&Digest>) -> Algorithm {
    named.map_or(Algorithm::Blake3, Digest::algorithm)
}

/// A tar layer's stored bytes, opened beneath its root, with the file's [`Stamp`] before the
/// first byte was read and the algorithm of its key ([`key_algorithm`]).
fn stored_bytes(data: &LayerData) -> Result<(std::io::Take<File>, Stamp, Algorithm), SourceError> {
    let path = data.location();
    let LayerData::Tar {
        root,
        rel,
        offset,
        len,
        digest,
    } = data
    else {
        return Err(invalid(&path, "not a tar layer"));
    };
    if *len == 0 {
        return Err(invalid(
            &path,
            "the layer is empty (0 bytes), not a tar stream",
        ));
    }
    let mut f = Dir::open(root)
        .and_then(|d| d.open_file(rel))
        .map_err(io(&path))?;
    let stamp = Stamp::of_file(&f, *offset, *len).map_err(io(&path))?;
    f.seek(SeekFrom::Start(*offset)).map_err(io(&path))?;
    Ok((f.take(*len), stamp, key_algorithm(digest.as_ref())))
}

/// Remembers the digest just computed over a whole layer when the file is still as it was
/// before the first byte was read (`fstat` on the same open file).
fn remember(memo: Option<&DigestMemo>, file: &File, before: &Stamp, digest: &Digest) {
    let Some(memo) = memo else { return };
    let Ok(after) = Stamp::of_file(file, before.offset(), before.len()) else {
        return;
    };
    if after == *before {
        memo.put(before, digest);
    }
}

/// Checks what was read of a tar layer against what its image records.
fn check_stored(
    layer: &LayerData,
    read: u64,
    computed: &Digest,
) -> Result<ContentKey, SourceError> {
    if let LayerData::Tar { len, digest, .. } = layer {
        if read != *len {
            return Err(invalid(
                &layer.location(),
                format!("the layer holds {read} bytes, not the {len} its image records"),
            ));
        }
        if let Some(d) = digest.as_ref().filter(|d| *d != computed) {
            return Err(invalid(
                &layer.location(),
                format!("the layer's content is {computed}, not the {d} it is named by"),
            ));
        }
    }
    Ok(ContentKey::stored(computed))
}

/// The digest berth computes over a tar layer's stored bytes (see [`ContentKey`]), checked
/// against the digest the layer is named by; equal to what [`walk_layer`] returns for the same
/// bytes. Directory layers have none (they are read in place and never cached: a digest of the
/// tree would cost more than analyzing it; see the README).
pub fn layer_key(layer: &Layer) -> Result<Option<ContentKey>, SourceError> {
    layer_key_with(layer, None)
}

/// [`layer_key`], answered from `memo` without reading when the file is unchanged since berth
/// hashed it (and remembered there when it had to be read).
pub(crate) fn layer_key_with(
    layer: &Layer,
    memo: Option<&DigestMemo>,
) -> Result<Option<ContentKey>, SourceError> {
    match &layer.data {
        LayerData::Tar { .. } => {
            let (stored, stamp, algorithm) = stored_bytes(&layer.data)?;
            if let Some(known) = memo.and_then(|m| m.get(&stamp, algorithm)) {
                // The remembered digest is checked against the name as a computed one is.
                return check_stored(&layer.data, stamp.len(), &known).map(Some);
            }
            let mut stored = Hashing::new(stored, algorithm);
            let (read, computed) = stored.drain().map_err(io(&layer.data.location()))?;
            let key = check_stored(&layer.data, read, &computed)?;
            remember(memo, stored.get_ref().get_ref(), &stamp, &computed);
            Ok(Some(key))
        }
        LayerData::Dir(_) | LayerData::StoreDir { .. } => Ok(None),
    }
}

/// The key `memo` remembers for a tar layer whose file is unchanged since berth hashed it,
/// checked against the digest the layer is named by; none otherwise (nothing is read, and a
/// layer that cannot be opened is left for the read that names the error).
pub(crate) fn remembered_key(layer: &Layer, memo: &DigestMemo) -> Option<ContentKey> {
    if !matches!(layer.data, LayerData::Tar { .. }) {
        return None;
    }
    let (_, stamp, algorithm) = stored_bytes(&layer.data).ok()?;
    let known = memo.get(&stamp, algorithm)?;
    check_stored(&layer.data, stamp.len(), &known).ok()
}

/// A reader shared with whoever drains it after the tar reader on top is done.
struct Shared<R>(Rc<RefCell<R>>);

impl<R: Read> Read for Shared<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

type Visit<'a> = dyn FnMut(&str, EntryKind, &mut dyn Read) -> Result<(), SourceError> + 'a;

/// Calls `visit(path, kind, reader)` for every entry of a layer. `reader` is only meaningful
/// for files; `wants` decides which files are read at all. For a tar layer, returns berth's
/// digest of the bytes read (see [`layer_key`]); one whose bytes do not match its digest is an
/// error.
pub fn walk_layer(
    layer: &Layer,
    visit: impl FnMut(&str, EntryKind, &mut dyn Read) -> Result<(), SourceError>,
) -> Result<Option<ContentKey>, SourceError> {
    walk_layer_with(layer, None, visit)
}

/// [`walk_layer`], remembering a tar layer's digest in `memo` (see [`layer_key_with`]).
pub(crate) fn walk_layer_with(
    layer: &Layer,
    memo: Option<&DigestMemo>,
    mut visit: impl FnMut(&str, EntryKind, &mut dyn Read) -> Result<(), SourceError>,
) -> Result<Option<ContentKey>, SourceError> {
    let dir = match &layer.data {
        LayerData::Tar { .. } => return walk_tar(layer, memo, &mut visit).map(Some),
        LayerData::Dir(root) => Dir::open(root).map_err(io(root))?,
        LayerData::StoreDir { root, rel } => Dir::open(root)
            .and_then(|d| d.dir(rel))
            .map_err(io(&root.join(rel)))?,
    };
    walk_tree(&dir, "", 0, &mut visit)?;
    Ok(None)
}

fn walk_tar(
    layer: &Layer,
    memo: Option<&DigestMemo>,
    visit: &mut Visit<'_>,
) -> Result<ContentKey, SourceError> {
    let file = &layer.data.location();
    // Every stored byte passes the hash once, whether the decoder reads it or not; the hash
    // runs on its own thread while this one decodes.
    let (stored, stamp, algorithm) = stored_bytes(&layer.data)?;
    let stored = Rc::new(RefCell::new(HashingAside::new(stored, algorithm)));
    {
        let mut head = BufReader::with_capacity(256 * 1024, Shared(Rc::clone(&stored)));
        let magic = {
            use std::io::BufRead;
            head.fill_buf()
                .map_err(io(file))?
                .get(..4)
                .map(<[u8]>::to_vec)
                .unwrap_or_default()
        };
        let unreadable = |compression| SourceError::Compression {
            path: file.clone(),
            layer: layer.diff_id.clone().unwrap_or_default(),
            compression,
        };
        let reader: Box<dyn Read> = match magic.as_slice() {
            [0x1f, 0x8b, ..] => Box::new(GzDecoder::new(head)),
            [0x28, 0xb5, 0x2f, 0xfd] => {
                Box::new(zstd::Decoder::with_buffer(head).map_err(io(file))?)
            }
            [0xfd, b'7', b'z', b'X'] => return Err(unreadable("xz")),
            [b'B', b'Z', b'h', _] => return Err(unreadable("bzip2")),
            _ => Box::new(head),
        };
        let mut ar = tar::Archive::new(reader);
        for entry in ar.entries().map_err(io(file))? {
            let mut entry = entry.map_err(io(file))?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let (path, special) = classify(&raw);
            let exec = entry.header().mode().is_ok_and(|m| m & 0o111 != 0);
            let kind = special.unwrap_or(match entry.header().entry_type() {
                // The tar reader expands a GNU sparse file (holes as zeros) like any other.
                tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse
                    if exec =>
                {
                    EntryKind::Executable
                }
                tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse => EntryKind::File,
                _ => EntryKind::Other,
            });
            visit(&path, kind, &mut entry)?;
        }
    }
    let mut stored = Rc::try_unwrap(stored)
        .map_err(|_| invalid(file, "the layer reader is still in use"))?
        .into_inner();
    let (read, computed) = stored.drain().map_err(io(file))?;
    let key = check_stored(&layer.data, read, &computed)?;
    remember(memo, stored.get_ref().get_ref(), &stamp, &computed);
    Ok(key)
}

/// Walks a directory layer beneath its handle: names and types from listing each directory,
/// every open through the handle, no link followed, nesting bounded.
fn walk_tree(
    dir: &Dir,
    prefix: &str,
    depth: usize,
    visit: &mut Visit<'_>,
) -> Result<(), SourceError> {
    if depth > MAX_DEPTH {
        return Err(invalid(
            dir.path(),
            format!("directories nest deeper than {MAX_DEPTH} levels"),
        ));
    }
    // Names and types come from listing the directory through its handle, and every open goes
    // through the handle too: a job swapping a directory for a link mid-walk can only fail the
    // walk, never lead it elsewhere.
    let mut entries = dir.entries().map_err(io(dir.path()))?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, meta) in entries {
        let rel = if prefix.is_empty() {
            name.to_string_lossy().into_owned()
        } else {
            format!("{prefix}/{}", name.to_string_lossy())
        };
        let (path, special) = classify(&rel);
        let at = || dir.path().join(&name);
        let sub = if meta.is(Kind::Directory) {
            Some(dir.dir(Path::new(&name)).map_err(io(&at()))?)
        } else {
            None
        };
        let kind = match (special, &sub) {
            (Some(k), _) => k,
            (None, Some(sub)) if overlay_opaque(sub) => EntryKind::OpaqueDir,
            (None, None) if meta.is(Kind::CharDevice) && meta.rdev == 0 => EntryKind::Whiteout,
            (None, None) if meta.is(Kind::File) && meta.mode & 0o111 != 0 => EntryKind::Executable,
            (None, None) if meta.is(Kind::File) => EntryKind::File,
            (None, _) => EntryKind::Other,
        };
        if matches!(kind, EntryKind::File | EntryKind::Executable) {
            let mut f = dir.open_file(Path::new(&name)).map_err(io(&at()))?;
            visit(&path, kind, &mut f)?;
        } else {
            visit(&path, kind, &mut std::io::empty())?;
        }
        if let Some(sub) = sub {
            walk_tree(&sub, &rel, depth + 1, visit)?;
        }
    }
    Ok(())
}

/// Overlay marks a directory that hides the lower layers' content with an xattr:
/// `trusted.overlay.opaque` (kernel overlayfs as root) or `user.overlay.opaque` (rootless).
/// Read on the directory's own handle.
fn overlay_opaque(dir: &Dir) -> bool {
    use xattr::FileExt;
    let Ok(file) = std::os::fd::AsFd::as_fd(dir)
        .try_clone_to_owned()
        .map(File::from)
    else {
        return false;
    };
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| {
            file.get_xattr(name)
                .ok()
                .flatten()
                .is_some_and(|v| v.first() == Some(&b'y'))
        })
}

#[derive(Deserialize)]
struct DockerManifest {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct ImageConfig {
    #[serde(default)]
    rootfs: Option<RootFs>,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Deserialize)]
struct OciIndex {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

#[derive(Deserialize)]
struct OciManifest {
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// Random access to the files of an image container: a directory or a tar archive.
trait Store {
    /// A file of at most [`MAX_JSON`] bytes, `None` when absent.
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, SourceError>;
    /// The layer stored as `name`; `digest` is what its bytes must hash to.
    fn layer(
        &self,
        name: &str,
        diff_id: Option<String>,
        digest: Option<Digest>,
    ) -> Result<Layer, SourceError>;
    fn path(&self) -> &Path;
}

/// A directory (an OCI layout, an unpacked docker archive), read beneath its handle.
struct DirStore(Dir);

impl Store for DirStore {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, SourceError> {
        match self.0.read(Path::new(name), MAX_JSON) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SourceError::Io {
                path: self.0.path().join(name),
                source: e,
            }),
        }
    }
    fn layer(
        &self,
        name: &str,
        diff_id: Option<String>,
        digest: Option<Digest>,
    ) -> Result<Layer, SourceError> {
        let rel = PathBuf::from(name);
        let p = self.0.path().join(&rel);
        let meta = self
            .0
            .metadata(&rel)
            .map_err(|e| invalid(&p, format!("a layer the image lists cannot be opened: {e}")))?;
        if !meta.is(Kind::File) {
            return Err(invalid(&p, "a layer the image lists is not a regular file"));
        }
        Ok(Layer {
            diff_id,
            data: LayerData::Tar {
                root: self.0.path().to_owned(),
                rel,
                offset: 0,
                len: meta.size,
                digest,
            },
        })
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
}

/// One entry of an image archive, as indexed.
#[derive(Debug, Clone)]
enum ArchiveEntry {
    /// A file's data: (offset, size).
    Data(u64, u64),
    /// A symbolic link (`docker save` links a duplicate layer to the first copy), its target
    /// already made an archive path.
    Link(Result<String, String>),
    /// A hard link to another entry's name.
    HardLink(String),
    /// Anything else (a directory, a sparse or special file), by kind.
    Other(&'static str),
}

/// How many links one name may go through before it counts as a loop (Linux's limit).
const MAX_LINKS: usize = 40;

/// The archive path a symbolic link at `entry` pointing at `target` names: relative targets
/// from the link's own directory, absolute ones from the archive's root; never above the root.
fn link_target(entry: &str, target: &str) -> Result<String, String> {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        entry
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or_else(Vec::new, |(_, dir)| dir.to_vec())
    };
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("points above the archive's root ({target:?})"));
                }
            }
            part => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

/// A tar archive indexed once: entry name → where its data is, links resolved on use.
struct TarStore {
    file: PathBuf,
    entries: HashMap<String, ArchiveEntry>,
}

impl TarStore {
    fn open(file: &Path) -> Result<Self, SourceError> {
        // The archive is named by berth's caller; its layers are read beneath its directory.
        let file = file.canonicalize().map_err(io(file))?;
        let f = File::open(&file).map_err(io(&file))?;
        let mut ar = tar::Archive::new(f);
        let mut entries = HashMap::new();
        for e in ar.entries_with_seek().map_err(io(&file))? {
            let e = e.map_err(io(&file))?;
            let name = clean_path(&String::from_utf8_lossy(&e.path_bytes()));
            let link = || {
                e.link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default()
            };
            let entry = match e.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    ArchiveEntry::Data(e.raw_file_position(), e.size())
                }
                tar::EntryType::Symlink => ArchiveEntry::Link(link_target(&name, &link())),
                tar::EntryType::Link => ArchiveEntry::HardLink(clean_path(&link())),
                tar::EntryType::Directory => ArchiveEntry::Other("a directory"),
                tar::EntryType::GNUSparse => ArchiveEntry::Other("a sparse file"),
                _ => ArchiveEntry::Other("a special file"),
            };
            entries.insert(name, entry);
        }
        Ok(Self { file, entries })
    }

    /// Where the data of `name` is, through any links: `None` when the archive has no such
    /// entry, an error naming the problem when it is a loop, leads nowhere or is not a file.
    fn data(&self, name: &str) -> Result<Option<(u64, u64)>, SourceError> {
        let mut current = clean_path(name);
        for _ in 0..=MAX_LINKS {
            let Some(entry) = self.entries.get(&current) else {
                return if current == clean_path(name) {
                    Ok(None)
                } else {
                    Err(invalid(
                        &self.file,
                        format!(
                            "{name:?} is a link to {current:?}, which the archive does not hold"
                        ),
                    ))
                };
            };
            match entry {
                ArchiveEntry::Data(offset, len) => return Ok(Some((*offset, *len))),
                ArchiveEntry::Link(Ok(target)) | ArchiveEntry::HardLink(target) => {
                    current.clone_from(target);
                }
                ArchiveEntry::Link(Err(why)) => {
                    return Err(invalid(
                        &self.file,
                        format!("{name:?} is a link that {why}"),
                    ));
                }
                ArchiveEntry::Other(kind) => {
                    return Err(invalid(
                        &self.file,
                        format!("{name:?} is {kind} in the archive, not a file"),
                    ));
                }
            }
        }
        Err(invalid(
            &self.file,
            format!("{name:?} is a symlink loop (more than {MAX_LINKS} links)"),
        ))
    }
}

impl Store for TarStore {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, SourceError> {
        let Some((off, len)) = self.data(name)? else {
            return Ok(None);
        };
        if len > MAX_JSON {
            return Err(invalid(
                &self.file,
                format!("{name} is larger than {MAX_JSON} bytes"),
            ));
        }
        let mut f = File::open(&self.file).map_err(io(&self.file))?;
        f.seek(SeekFrom::Start(off)).map_err(io(&self.file))?;
        let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        f.take(len).read_to_end(&mut buf).map_err(io(&self.file))?;
        Ok(Some(buf))
    }
    fn layer(
        &self,
        name: &str,
        diff_id: Option<String>,
        digest: Option<Digest>,
    ) -> Result<Layer, SourceError> {
        let (offset, len) = self
            .data(name)?
            .ok_or_else(|| invalid(&self.file, format!("layer {name:?} listed but missing")))?;
        let (root, rel) = match (self.file.parent(), self.file.file_name()) {
            (Some(root), Some(rel)) => (root.to_owned(), PathBuf::from(rel)),
            _ => return Err(invalid(&self.file, "an archive is a file in a directory")),
        };
        Ok(Layer {
            diff_id,
            data: LayerData::Tar {
                root,
                rel,
                offset,
                len,
                digest,
            },
        })
    }
    fn path(&self) -> &Path {
        &self.file
    }
}

fn parse<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    what: &str,
    path: &Path,
) -> Result<T, SourceError> {
    serde_json::from_slice(bytes).map_err(|source| SourceError::Json {
        what: what.to_owned(),
        path: path.to_owned(),
        source,
    })
}

fn json<T: for<'de> Deserialize<'de>>(
    store: &dyn Store,
    name: &str,
    what: &str,
) -> Result<T, SourceError> {
    let bytes = store
        .read(name)?
        .ok_or_else(|| invalid(store.path(), format!("the {what} {name} is missing")))?;
    parse(&bytes, what, store.path())
}

/// A blob named by `digest`, read only when its bytes hash to it.
fn blob_json<T: for<'de> Deserialize<'de>>(
    store: &dyn Store,
    digest: &Digest,
    what: &str,
) -> Result<T, SourceError> {
    let name = digest.blob_path().to_string_lossy().into_owned();
    let bytes = store
        .read(&name)?
        .ok_or_else(|| invalid(store.path(), format!("the {what} {digest} is missing")))?;
    let computed = Digest::of(digest.algorithm(), &bytes);
    if computed != *digest {
        return Err(invalid(
            store.path(),
            format!("the {what} {digest} does not match its digest (its content is {computed})"),
        ));
    }
    parse(&bytes, what, store.path())
}

/// A digest from an image document, validated before it names anything.
fn digest(store: &dyn Store, text: &str, what: &str) -> Result<Digest, SourceError> {
    Digest::parse(text).map_err(|why| {
        invalid(
            store.path(),
            format!("the {what} digest is malformed: {why}"),
        )
    })
}

fn diff_ids(cfg: ImageConfig) -> Vec<String> {
    cfg.rootfs.map(|r| r.diff_ids).unwrap_or_default()
}

/// The config's DiffIDs, one per layer.
fn checked_diff_ids(
    store: &dyn Store,
    ids: Vec<String>,
    layers: usize,
) -> Result<Vec<String>, SourceError> {
    if ids.len() != layers {
        return Err(invalid(
            store.path(),
            format!(
                "the image config lists {} layers but the manifest {layers}",
                ids.len()
            ),
        ));
    }
    for id in &ids {
        digest(store, id, "DiffID")?;
    }
    Ok(ids)
}

fn open_docker(store: &dyn Store, name: &str) -> Result<Image, SourceError> {
    let manifests: Vec<DockerManifest> = json(store, "manifest.json", "manifest.json")?;
    let m = manifests
        .into_iter()
        .next()
        .ok_or_else(|| SourceError::Format {
            path: store.path().to_owned(),
            reason: "manifest.json lists no image".into(),
        })?;
    let ids = diff_ids(json(store, &m.config, "image config")?);
    let ids = checked_diff_ids(store, ids, m.layers.len())?;
    let layers = m
        .layers
        .iter()
        .zip(&ids)
        .map(|(l, id)| store.layer(l, Some(id.clone()), None))
        .collect::<Result<Vec<_>, _>>()?;
    let config_hex = m
        .config
        .trim_start_matches("blobs/sha256/")
        .trim_end_matches(".json");
    let name = m
        .repo_tags
        .and_then(|t| t.into_iter().next())
        .unwrap_or_else(|| name.to_owned());
    Ok(Image {
        artifact: Artifact {
            name,
            kind: ArtifactKind::ContainerImage,
            image_id: Some(format!("sha256:{config_hex}")),
            diff_ids: ids,
            bom: None,
        },
        layers,
    })
}

fn open_oci(store: &dyn Store, name: &str) -> Result<Image, SourceError> {
    let index: OciIndex = json(store, "index.json", "index.json")?;
    let pick = |ds: &[Descriptor]| -> Option<String> {
        // The host's platform first, then any real image; never a BuildKit attestation.
        let host = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        let attestation = |d: &&Descriptor| {
            d.platform.as_ref().is_some_and(|p| p.os == "unknown")
                || d.annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key("vnd.docker.reference.type"))
        };
        let native = ds.iter().find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == host)
        });
        native
            .or_else(|| ds.iter().find(|d| !attestation(d)))
            .map(|d| d.digest.clone())
    };
    let mut picked = pick(&index.manifests).ok_or_else(|| SourceError::Format {
        path: store.path().to_owned(),
        reason: "index.json lists no manifest".into(),
    })?;
    let ref_name = index.manifests.iter().find_map(|d| {
        d.annotations
            .as_ref()
            .and_then(|a| a.get("org.opencontainers.image.ref.name").cloned())
    });
    // Follow nested indexes to an image manifest.
    for _ in 0..4 {
        let m: OciManifest = blob_json(store, &digest(store, &picked, "manifest")?, "manifest")?;
        if let Some(inner) = m.manifests.as_deref().filter(|v| !v.is_empty()) {
            picked = pick(inner).unwrap_or_default();
            continue;
        }
        let config = m.config.ok_or_else(|| SourceError::Format {
            path: store.path().to_owned(),
            reason: "manifest has no config".into(),
        })?;
        let config_digest = digest(store, &config.digest, "config")?;
        let ids = diff_ids(blob_json(store, &config_digest, "image config")?);
        let ids = checked_diff_ids(store, ids, m.layers.len())?;
        let layers = m
            .layers
            .iter()
            .zip(&ids)
            .map(|(l, id)| {
                let d = digest(store, &l.digest, "layer")?;
                store.layer(&d.blob_path().to_string_lossy(), Some(id.clone()), Some(d))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let name = ref_name.unwrap_or_else(|| name.to_owned());
        return Ok(Image {
            artifact: Artifact {
                name,
                kind: ArtifactKind::ContainerImage,
                image_id: Some(config_digest.to_string()),
                diff_ids: ids,
                bom: None,
            },
            layers,
        });
    }
    Err(SourceError::Format {
        path: store.path().to_owned(),
        reason: "image index nests too deeply".into(),
    })
}

/// Opens `input`: a docker-archive or OCI-archive tar, an OCI layout directory, or a root
/// filesystem directory. `name` is the artifact name used in reports. A directory is read
/// beneath itself; `input` (its last component included) must not be a symbolic link.
pub fn open(input: &Path, name: &str) -> Result<Image, SourceError> {
    let meta = std::fs::symlink_metadata(input).map_err(io(input))?;
    if meta.is_symlink() {
        return Err(SourceError::Format {
            path: input.to_owned(),
            reason: "it is a symbolic link, which berth does not follow (a job may have planted it); pass the path it points to".into(),
        });
    }
    if meta.is_dir() {
        let dir = Dir::open(input).map_err(io(input))?;
        let has = |n: &str| dir.metadata(Path::new(n)).is_ok_and(|m| m.is(Kind::File));
        let (oci, docker) = (
            has("index.json") && has("oci-layout"),
            has("manifest.json")
                && !dir
                    .metadata(Path::new("etc"))
                    .is_ok_and(|m| m.is(Kind::Directory)),
        );
        let store = DirStore(dir);
        if oci {
            return open_oci(&store, name);
        }
        if docker {
            return open_docker(&store, name);
        }
        return Ok(Image {
            artifact: Artifact {
                name: name.to_owned(),
                kind: ArtifactKind::Filesystem,
                image_id: None,
                diff_ids: vec![],
                bom: None,
            },
            layers: vec![Layer {
                diff_id: None,
                data: LayerData::Dir(input.to_owned()),
            }],
        });
    }
    let store = TarStore::open(input)?;
    if store.entries.contains_key("manifest.json") {
        open_docker(&store, name)
    } else if store.entries.contains_key("index.json") {
        open_oci(&store, name)
    } else {
        Err(SourceError::Format {
            path: input.to_owned(),
            reason: "tar has neither manifest.json nor index.json".into(),
        })
    }
}

/// Opens an image straight from a containers-storage overlay store (`root`, e.g.
/// `~/.local/share/containers/storage`), reading each layer's `diff` directory in place: no
/// export. `image` is a name (`localhost/app:tag`), a full id or an id prefix.
pub fn open_containers_storage(root: &Path, image: &str) -> Result<Image, SourceError> {
    open_containers_storage_in(&[root], image)
}

/// A store's images or layers as `read` finds them (validated by `berth-storemeta`); none when
/// an additional store (`optional`) has no such file, or is missing altogether.
fn store_meta<T>(
    root: &Path,
    optional: bool,
    rel: &str,
    read: fn(&Dir) -> Result<Option<Vec<T>>, StoreMetaError>,
) -> Result<Vec<T>, SourceError> {
    let dir = match Dir::open(root) {
        Ok(d) => d,
        Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(SourceError::Io {
                path: root.to_owned(),
                source,
            });
        }
    };
    match read(&dir)? {
        Some(found) => Ok(found),
        None if optional => Ok(Vec::new()),
        None => Err(SourceError::Io {
            path: root.join(rel),
            source: std::io::ErrorKind::NotFound.into(),
        }),
    }
}

/// Like [`open_containers_storage`], over a store and its additional read-only image stores
/// (`roots[0]` first): an image built in a per-job store keeps its base layers in the shared
/// store it was built from.
pub fn open_containers_storage_in(roots: &[&Path], image: &str) -> Result<Image, SourceError> {
    let root = *roots.first().ok_or_else(|| SourceError::Format {
        path: PathBuf::from("<none>"),
        reason: "no containers-storage root given".into(),
    })?;
    let mut images: Vec<StoreImage> = Vec::new();
    for (i, r) in roots.iter().enumerate() {
        images.extend(store_meta(
            r,
            i > 0,
            storemeta::IMAGES,
            storemeta::read_images,
        )?);
    }
    let bare = image.trim_start_matches("sha256:");
    // Compare references the way podman resolves short names for local images.
    let norm = |r: &str| {
        let r = r
            .strip_prefix("localhost/")
            .or_else(|| r.strip_prefix("docker.io/library/"))
            .unwrap_or(r);
        let tagged = r
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':') || last.contains('@'));
        if tagged {
            r.to_owned()
        } else {
            format!("{r}:latest")
        }
    };
    let wanted = norm(image);
    let want = |n: &str| norm(n) == wanted;
    let img = images
        .iter()
        .find(|i| i.names.iter().any(|n| want(n)))
        .or_else(|| {
            images
                .iter()
                .find(|i| bare.len() >= 12 && i.id.as_str().starts_with(bare))
        })
        .ok_or_else(|| SourceError::ImageNotFound {
            root: root.to_owned(),
            image: image.to_owned(),
        })?;
    let img_id = &img.id;
    let mut layers: Vec<(&Path, StoreLayer)> = Vec::new();
    for (i, r) in roots.iter().enumerate() {
        let found = store_meta(r, i > 0, storemeta::LAYERS, storemeta::read_layers)?;
        layers.extend(found.into_iter().map(|l| (*r, l)));
    }
    // The first store that has a layer wins, as in containers-storage.
    let mut by_id: HashMap<&StoreId, (&Path, &StoreLayer)> = HashMap::new();
    for (r, l) in &layers {
        by_id.entry(&l.id).or_insert((*r, l));
    }
    // Bounded and cycle-safe: a parent chain a job wrote may loop or never end.
    let mut chain = Vec::new();
    let mut seen = HashSet::new();
    let mut cur = img.layer.as_ref();
    while let Some(id) = cur {
        let layer_problem =
            |what: String| invalid(root, format!("image {image} ({img_id}): layer {what}"));
        if !seen.insert(id) {
            return Err(layer_problem(format!(
                "{id} is its own ancestor in layers.json (the parent chain loops)"
            )));
        }
        if chain.len() == MAX_LAYERS {
            return Err(layer_problem(format!(
                "chain is longer than {MAX_LAYERS} layers"
            )));
        }
        let (r, l) = by_id
            .get(id)
            .ok_or_else(|| layer_problem(format!("{id} is missing from layers.json")))?;
        chain.push((*r, *l));
        cur = l.parent.as_ref();
    }
    chain.reverse();
    let mut out = Vec::with_capacity(chain.len());
    for (r, l) in chain {
        let rel = Path::new("overlay").join(l.id.as_str()).join("diff");
        // The layer must be there, a directory, reached without a link.
        Dir::open(r).and_then(|d| d.dir(&rel)).map_err(|e| {
            invalid(
                r,
                format!(
                    "image {image} ({img_id}): layer {} cannot be read: {e}",
                    l.id
                ),
            )
        })?;
        out.push(Layer {
            diff_id: l.diff_digest.as_ref().map(|d| d.as_str().to_owned()),
            data: LayerData::StoreDir {
                root: r.to_owned(),
                rel,
            },
        });
    }
    Ok(Image {
        artifact: Artifact {
            name: img
                .names
                .first()
                .cloned()
                .unwrap_or_else(|| image.to_owned()),
            kind: ArtifactKind::ContainerImage,
            image_id: Some(format!("sha256:{img_id}")),
            diff_ids: out.iter().filter_map(|l| l.diff_id.clone()).collect(),
            bom: None,
        },
        layers: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteouts() {
        assert_eq!(
            classify("./etc/.wh.passwd"),
            ("etc/passwd".to_owned(), Some(EntryKind::Whiteout))
        );
        assert_eq!(
            classify("usr/lib/.wh..wh..opq"),
            ("usr/lib".to_owned(), Some(EntryKind::OpaqueDir))
        );
        assert_eq!(
            classify(".wh.app"),
            ("app".to_owned(), Some(EntryKind::Whiteout))
        );
        assert_eq!(
            classify("/var/lib/dpkg/status"),
            ("var/lib/dpkg/status".to_owned(), None)
        );
    }
}
