//! Image sources: docker-archive and OCI-archive tars, OCI layout directories,
//! containers-storage overlay stores and plain root filesystem directories, each turned into an
//! ordered list of layers that can be walked entry by entry (whiteouts included).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use serde::Deserialize;

use crate::inventory::{Artifact, ArtifactKind};

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
    /// A (possibly gzip-compressed) tar stored at `offset..offset+len` of `file`.
    Tar {
        /// The file holding it.
        file: PathBuf,
        /// Start offset.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
    /// An unpacked directory (a rootfs, or an overlay `diff` directory).
    Dir(PathBuf),
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

/// Calls `visit(path, kind, reader)` for every entry of a layer. `reader` is only meaningful
/// for files; `wants` decides which files are read at all.
pub fn walk_layer(
    layer: &Layer,
    mut visit: impl FnMut(&str, EntryKind, &mut dyn Read) -> Result<(), SourceError>,
) -> Result<(), SourceError> {
    match &layer.data {
        LayerData::Tar { file, offset, len } => {
            let mut f = File::open(file).map_err(io(file))?;
            f.seek(SeekFrom::Start(*offset)).map_err(io(file))?;
            let mut head = BufReader::with_capacity(256 * 1024, f.take(*len));
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
                    tar::EntryType::Regular | tar::EntryType::Continuous if exec => {
                        EntryKind::Executable
                    }
                    tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
                    _ => EntryKind::Other,
                });
                visit(&path, kind, &mut entry)?;
            }
        }
        LayerData::Dir(root) => {
            use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
            for e in walkdir::WalkDir::new(root)
                .follow_links(false)
                .sort_by_file_name()
            {
                let e = e.map_err(|e| SourceError::Io {
                    path: root.clone(),
                    source: e
                        .into_io_error()
                        .unwrap_or_else(|| std::io::Error::other("walk error")),
                })?;
                let rel = e.path().strip_prefix(root).unwrap_or(e.path());
                let rel = rel.to_string_lossy();
                if rel.is_empty() {
                    continue;
                }
                let (path, special) = classify(&rel);
                let ft = e.file_type();
                let kind = match special {
                    Some(k) => k,
                    None if ft.is_char_device() && e.metadata().is_ok_and(|m| m.rdev() == 0) => {
                        EntryKind::Whiteout
                    }
                    None if ft.is_file()
                        && e.metadata()
                            .is_ok_and(|m| m.permissions().mode() & 0o111 != 0) =>
                    {
                        EntryKind::Executable
                    }
                    None if ft.is_file() => EntryKind::File,
                    None if ft.is_dir() && overlay_opaque(e.path()) => EntryKind::OpaqueDir,
                    None => EntryKind::Other,
                };
                if matches!(kind, EntryKind::File | EntryKind::Executable) {
                    let mut f = File::open(e.path()).map_err(io(e.path()))?;
                    visit(&path, kind, &mut f)?;
                } else {
                    visit(&path, kind, &mut std::io::empty())?;
                }
            }
        }
    }
    Ok(())
}

/// Overlay marks a directory that hides the lower layers' content with an xattr:
/// `trusted.overlay.opaque` (kernel overlayfs as root) or `user.overlay.opaque` (rootless).
fn overlay_opaque(dir: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| {
            xattr::get(dir, name)
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
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, SourceError>;
    fn layer(&self, name: &str, diff_id: Option<String>) -> Result<Layer, SourceError>;
    fn path(&self) -> &Path;
}

struct DirStore(PathBuf);

impl Store for DirStore {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, SourceError> {
        let p = self.0.join(name);
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SourceError::Io { path: p, source: e }),
        }
    }
    fn layer(&self, name: &str, diff_id: Option<String>) -> Result<Layer, SourceError> {
        let p = self.0.join(name);
        let len = std::fs::metadata(&p).map_err(io(&p))?.len();
        Ok(Layer {
            diff_id,
            data: LayerData::Tar {
                file: p,
                offset: 0,
                len,
            },
        })
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

/// A tar archive indexed once: entry name → (data offset, size).
struct TarStore {
    file: PathBuf,
    entries: HashMap<String, (u64, u64)>,
}

impl TarStore {
    fn open(file: &Path) -> Result<Self, SourceError> {
        let f = File::open(file).map_err(io(file))?;
        let mut ar = tar::Archive::new(f);
        let mut entries = HashMap::new();
        for e in ar.entries_with_seek().map_err(io(file))? {
            let e = e.map_err(io(file))?;
            let name = clean_path(&String::from_utf8_lossy(&e.path_bytes()));
            entries.insert(name, (e.raw_file_position(), e.size()));
        }
        Ok(Self {
            file: file.to_owned(),
            entries,
        })
    }
}

impl Store for TarStore {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, SourceError> {
        let Some(&(off, len)) = self.entries.get(&clean_path(name)) else {
            return Ok(None);
        };
        let mut f = File::open(&self.file).map_err(io(&self.file))?;
        f.seek(SeekFrom::Start(off)).map_err(io(&self.file))?;
        let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        f.take(len).read_to_end(&mut buf).map_err(io(&self.file))?;
        Ok(Some(buf))
    }
    fn layer(&self, name: &str, diff_id: Option<String>) -> Result<Layer, SourceError> {
        let &(offset, len) =
            self.entries
                .get(&clean_path(name))
                .ok_or_else(|| SourceError::Format {
                    path: self.file.clone(),
                    reason: format!("layer {name} listed but missing"),
                })?;
        Ok(Layer {
            diff_id,
            data: LayerData::Tar {
                file: self.file.clone(),
                offset,
                len,
            },
        })
    }
    fn path(&self) -> &Path {
        &self.file
    }
}

fn json<T: for<'de> Deserialize<'de>>(
    store: &dyn Store,
    name: &str,
    what: &str,
) -> Result<T, SourceError> {
    let bytes = store.read(name)?.ok_or_else(|| SourceError::Format {
        path: store.path().to_owned(),
        reason: format!("{name} is missing"),
    })?;
    serde_json::from_slice(&bytes).map_err(|source| SourceError::Json {
        what: what.to_owned(),
        path: store.path().to_owned(),
        source,
    })
}

fn blob_name(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

fn diff_ids(store: &dyn Store, config: &str) -> Result<Vec<String>, SourceError> {
    let cfg: ImageConfig = json(store, config, "image config")?;
    Ok(cfg.rootfs.map(|r| r.diff_ids).unwrap_or_default())
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
    let ids = diff_ids(store, &m.config)?;
    let layers = m
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| store.layer(l, ids.get(i).cloned()))
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
    let mut digest = pick(&index.manifests).ok_or_else(|| SourceError::Format {
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
        let m: OciManifest = json(store, &blob_name(&digest), "OCI manifest")?;
        if let Some(inner) = m.manifests.as_deref().filter(|v| !v.is_empty()) {
            digest = pick(inner).unwrap_or_default();
            continue;
        }
        let config = m.config.ok_or_else(|| SourceError::Format {
            path: store.path().to_owned(),
            reason: "manifest has no config".into(),
        })?;
        let ids = diff_ids(store, &blob_name(&config.digest))?;
        let layers = m
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| store.layer(&blob_name(&l.digest), ids.get(i).cloned()))
            .collect::<Result<Vec<_>, _>>()?;
        let name = ref_name.unwrap_or_else(|| name.to_owned());
        return Ok(Image {
            artifact: Artifact {
                name,
                kind: ArtifactKind::ContainerImage,
                image_id: Some(config.digest),
                diff_ids: ids,
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
/// filesystem directory. `name` is the artifact name used in reports.
pub fn open(input: &Path, name: &str) -> Result<Image, SourceError> {
    let meta = std::fs::metadata(input).map_err(io(input))?;
    if meta.is_dir() {
        let store = DirStore(input.to_owned());
        if input.join("index.json").is_file() && input.join("oci-layout").is_file() {
            return open_oci(&store, name);
        }
        if input.join("manifest.json").is_file() && !input.join("etc").is_dir() {
            return open_docker(&store, name);
        }
        return Ok(Image {
            artifact: Artifact {
                name: name.to_owned(),
                kind: ArtifactKind::Filesystem,
                image_id: None,
                diff_ids: vec![],
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

#[derive(Deserialize)]
struct CsImage {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    layer: Option<String>,
}

#[derive(Deserialize)]
struct CsLayer {
    id: String,
    #[serde(default)]
    parent: Option<String>,
    #[serde(rename = "diff-digest", default)]
    diff_digest: Option<String>,
}

/// Opens an image straight from a containers-storage overlay store (`root`, e.g.
/// `~/.local/share/containers/storage`), reading each layer's `diff` directory in place: no
/// export. `image` is a name (`localhost/app:tag`), a full id or an id prefix.
pub fn open_containers_storage(root: &Path, image: &str) -> Result<Image, SourceError> {
    open_containers_storage_in(&[root], image)
}

/// Like [`open_containers_storage`], over a store and its additional read-only image stores
/// (`roots[0]` first): an image built in a per-job store keeps its base layers in the shared
/// store it was built from.
pub fn open_containers_storage_in(roots: &[&Path], image: &str) -> Result<Image, SourceError> {
    let root = *roots.first().ok_or_else(|| SourceError::Format {
        path: PathBuf::from("<none>"),
        reason: "no containers-storage root given".into(),
    })?;
    let read = |p: PathBuf| std::fs::read(&p).map_err(|source| SourceError::Io { path: p, source });
    let mut images: Vec<CsImage> = Vec::new();
    for (i, r) in roots.iter().enumerate() {
        let path = r.join("overlay-images/images.json");
        if i > 0 && !path.exists() {
            continue;
        }
        let found: Vec<CsImage> =
            serde_json::from_slice(&read(path)?).map_err(|source| SourceError::Json {
                what: "images.json".into(),
                path: r.to_path_buf(),
                source,
            })?;
        images.extend(found);
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
                .find(|i| bare.len() >= 12 && i.id.starts_with(bare))
        })
        .ok_or_else(|| SourceError::ImageNotFound {
            root: root.to_owned(),
            image: image.to_owned(),
        })?;
    let mut layers: Vec<(PathBuf, CsLayer)> = Vec::new();
    for (i, r) in roots.iter().enumerate() {
        let path = r.join("overlay-layers/layers.json");
        if i > 0 && !path.exists() {
            continue;
        }
        let found: Vec<CsLayer> =
            serde_json::from_slice(&read(path)?).map_err(|source| SourceError::Json {
                what: "layers.json".into(),
                path: r.to_path_buf(),
                source,
            })?;
        layers.extend(found.into_iter().map(|l| (r.to_path_buf(), l)));
    }
    // The first store that has a layer wins, as in containers-storage.
    let mut by_id: HashMap<&str, (&Path, &CsLayer)> = HashMap::new();
    for (r, l) in &layers {
        by_id.entry(l.id.as_str()).or_insert((r.as_path(), l));
    }
    let mut chain = Vec::new();
    let mut cur = img.layer.as_deref();
    while let Some(id) = cur {
        let (r, l) = by_id.get(id).ok_or_else(|| SourceError::Format {
            path: root.to_owned(),
            reason: format!("layer {id} of image {} is missing from layers.json", img.id),
        })?;
        chain.push((*r, *l));
        cur = l.parent.as_deref();
    }
    chain.reverse();
    let out: Vec<Layer> = chain
        .iter()
        .map(|(r, l)| Layer {
            diff_id: l.diff_digest.clone(),
            data: LayerData::Dir(r.join("overlay").join(&l.id).join("diff")),
        })
        .collect();
    Ok(Image {
        artifact: Artifact {
            name: img
                .names
                .first()
                .cloned()
                .unwrap_or_else(|| image.to_owned()),
            kind: ArtifactKind::ContainerImage,
            image_id: Some(format!("sha256:{}", img.id)),
            diff_ids: out.iter().filter_map(|l| l.diff_id.clone()).collect(),
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
