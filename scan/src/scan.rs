//! Builds an [`Inventory`] from an [`Image`]: analyzes each layer on its own (tar layers cached
//! by the digest berth computes over their stored bytes, plus analyzer version), then applies
//! the layers in order — whiteouts and opaque directories remove lower files — and attributes
//! every package to the layer that introduced it.
//!
//! The cache is shared by every job of the host, and a job writes the store its images live in:
//! a DiffID the store records is only a claim, so it is never a key. A key is a digest of the
//! bytes berth read ([`ContentKey`]), and an entry is written under the digest of exactly the
//! bytes its result was computed from. Directory layers (overlay `diff` dirs, root filesystems)
//! are analyzed in place on every scan and never cached.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::analyzer::{self, ANALYZER_VERSION, FileResult, MAX_FILE};
use crate::digest::ContentKey;
use crate::inventory::{Inventory, LayerRef, Package};
use crate::source::{EntryKind, Image, Layer, SourceError, layer_key, walk_layer};

/// Errors of a scan.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Reading the image failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A layer could not be read whole: the image is not scanned at all.
    #[error("cannot scan image {image}: layer {index} ({location}): {source}")]
    Layer {
        /// The image.
        image: String,
        /// The layer's position, bottom first.
        index: usize,
        /// Where the layer is.
        location: PathBuf,
        /// The cause.
        #[source]
        source: SourceError,
    },
    /// A layer changed between computing its cache key and analyzing it.
    #[error(
        "cannot scan image {image}: layer {index} ({location}) changed while it was scanned; scan it again once nothing writes to it"
    )]
    Changed {
        /// The image.
        image: String,
        /// The layer's position, bottom first.
        index: usize,
        /// Where the layer is.
        location: PathBuf,
    },
}

impl ScanError {
    /// The store, file or layer the error concerns (to tell whose store is broken).
    pub fn path(&self) -> &Path {
        match self {
            Self::Source(e) => e.path(),
            Self::Layer { location, .. } | Self::Changed { location, .. } => location,
        }
    }
}

/// What one layer yielded; this is what the cache stores.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerResult {
    /// Analyzer version that produced it.
    pub analyzer_version: u32,
    /// Per analyzed file.
    pub files: BTreeMap<String, FileResult>,
    /// Paths deleted from lower layers.
    pub whiteouts: Vec<String>,
    /// Directories whose lower content is hidden.
    pub opaque_dirs: Vec<String>,
    /// Files that could not be analyzed.
    pub warnings: Vec<String>,
}

/// A per-layer result cache in a directory berth alone writes, keyed by the digest berth
/// computed over a tar layer's stored bytes ([`ContentKey`]) and the analyzer version.
#[derive(Debug, Clone)]
pub struct LayerCache {
    dir: PathBuf,
}

impl LayerCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, key: &ContentKey) -> PathBuf {
        let key: String = key
            .as_str()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        self.dir.join(format!("{key}.a{ANALYZER_VERSION}.json"))
    }

    /// The cached result, if any (a corrupt entry counts as a miss).
    pub fn get(&self, key: &ContentKey) -> Option<LayerResult> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        serde_json::from_slice::<LayerResult>(&bytes)
            .ok()
            .filter(|r| r.analyzer_version == ANALYZER_VERSION)
    }

    /// Stores a result; failures only cost a future re-analysis, so they are returned as text.
    pub fn put(&self, key: &ContentKey, r: &LayerResult) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cache {}: {e}", self.dir.display()))?;
        let target = self.path(key);
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // One temp file per entry and process, so parallel layer threads never collide.
        let tmp = self.dir.join(format!(".tmp-{}-{name}", std::process::id()));
        let bytes = serde_json::to_vec(r).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, bytes).map_err(|e| format!("cache {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &target).map_err(|e| format!("cache {}: {e}", self.dir.display()))
    }
}

/// Analyzes one layer; for a tar layer also returns berth's digest of exactly the bytes
/// analyzed.
pub fn analyze_layer(layer: &Layer) -> Result<(LayerResult, Option<ContentKey>), SourceError> {
    let mut r = LayerResult {
        analyzer_version: ANALYZER_VERSION,
        ..LayerResult::default()
    };
    walk_layer(layer, |path, kind, reader| {
        match kind {
            EntryKind::Whiteout => r.whiteouts.push(path.to_owned()),
            EntryKind::OpaqueDir => r.opaque_dirs.push(path.to_owned()),
            EntryKind::Other => {}
            EntryKind::File | EntryKind::Executable => {
                let io_err = |source| SourceError::Io {
                    path: PathBuf::from(path),
                    source,
                };
                let mut buf = Vec::new();
                let k = match analyzer::wants(path) {
                    Some(k) => k,
                    None if kind == EntryKind::Executable || analyzer::maybe_archive(path) => {
                        // Sniff the magic before reading a whole binary or archive.
                        reader.take(4).read_to_end(&mut buf).map_err(io_err)?;
                        match analyzer::sniff(path, &buf) {
                            Some(k) => k,
                            None => return Ok(()),
                        }
                    }
                    None => return Ok(()),
                };
                let limit = MAX_FILE + 1 - buf.len() as u64;
                reader.take(limit).read_to_end(&mut buf).map_err(io_err)?;
                let n = buf.len() as u64;
                if n > MAX_FILE {
                    r.warnings
                        .push(format!("{path}: larger than {MAX_FILE} bytes, skipped"));
                    return Ok(());
                }
                match analyzer::analyze(k, path, &buf) {
                    Ok(mut fr) => {
                        r.warnings.append(&mut fr.warnings);
                        r.files.insert(path.to_owned(), fr);
                    }
                    Err(e) => r.warnings.push(e),
                }
            }
        }
        Ok(())
    })
    .map(|key| (r, key))
}

fn cargo_dir(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

fn under(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Scans an image into an inventory, using `cache` keyed by computed layer digests. Returns the
/// inventory and non-fatal warnings.
pub fn inventory(
    image: &Image,
    cache: Option<&LayerCache>,
) -> Result<(Inventory, Vec<String>), ScanError> {
    // Layers are independent until merged: analyze them on as many threads as there are cores.
    let one = |index: usize, layer: &Layer| -> Result<(LayerResult, Option<String>), ScanError> {
        let failed = |source| ScanError::Layer {
            image: image.artifact.name.clone(),
            index,
            location: layer.data.location(),
            source,
        };
        let key = match cache {
            Some(c) => layer_key(layer).map_err(failed)?.map(|k| (c, k)),
            None => None,
        };
        let Some((cache, key)) = key else {
            return Ok((analyze_layer(layer).map_err(failed)?.0, None));
        };
        if let Some(r) = cache.get(&key) {
            return Ok((r, None));
        }
        let (r, analyzed) = analyze_layer(layer).map_err(failed)?;
        let Some(analyzed) = analyzed.filter(|a| *a == key) else {
            return Err(ScanError::Changed {
                image: image.artifact.name.clone(),
                index,
                location: layer.data.location(),
            });
        };
        // Stored under the digest of the very bytes the result came from.
        let put_err = cache.put(&analyzed, &r).err();
        Ok((r, put_err))
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .max(1);
    let mut results = Vec::with_capacity(image.layers.len());
    let mut warnings = Vec::new();
    let indexed: Vec<(usize, &Layer)> = image.layers.iter().enumerate().collect();
    for chunk in indexed.chunks(threads) {
        let done: Vec<Result<(LayerResult, Option<String>), ScanError>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|&(i, l)| s.spawn(move || one(i, l)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(ScanError::Source(SourceError::Io {
                            path: PathBuf::from("<layer>"),
                            source: std::io::Error::other("layer analysis thread panicked"),
                        }))
                    })
                })
                .collect()
        });
        for d in done {
            let (r, put_err) = d?;
            warnings.extend(put_err);
            warnings.extend(r.warnings.iter().cloned());
            results.push(r);
        }
    }
    Ok((merge(image, &results), warnings))
}

/// Applies the layer results in order and builds the inventory.
pub fn merge(image: &Image, results: &[LayerResult]) -> Inventory {
    let layered = image.layers.len() > 1 || image.layers.iter().any(|l| l.diff_id.is_some());
    let mut merged: BTreeMap<&str, (usize, &FileResult)> = BTreeMap::new();
    for (i, r) in results.iter().enumerate() {
        for d in &r.opaque_dirs {
            merged.retain(|p, _| !under(p, d));
        }
        for w in &r.whiteouts {
            merged.retain(|p, _| *p != w.as_str() && !under(p, w));
        }
        for (p, fr) in &r.files {
            merged.insert(p.as_str(), (i, fr));
        }
    }
    let os = analyzer::os::detect(
        merged
            .iter()
            .filter_map(|(p, (_, fr))| fr.os.as_ref().map(|o| (*p, o))),
    );
    // Files installed by OS packages: a dpkg `<package>[:arch].md5sums` counts only for a
    // package the status database says is installed and that comes from the distribution
    // (Trivy 0.74 ties installed files to packages; a list left behind by a removed package, or
    // a third-party package's, owns nothing, so language analyzers still see those files).
    let installed_debs: HashSet<&str> = merged
        .values()
        .flat_map(|(_, fr)| fr.packages.iter())
        .filter(|p| p.kind == crate::inventory::PkgType::Deb && !p.third_party)
        .map(|p| p.name.as_str())
        .collect();
    let owned: HashSet<&str> = merged
        .iter()
        .filter(|(path, _)| {
            path.strip_prefix("var/lib/dpkg/info/")
                .or_else(|| path.strip_prefix("var/lib/dpkg/status.d/"))
                .and_then(|f| f.strip_suffix(".md5sums"))
                .is_none_or(|pkg| {
                    installed_debs.contains(pkg.split_once(':').map_or(pkg, |(name, _)| name))
                })
        })
        .flat_map(|(_, (_, fr))| fr.owned.iter().map(String::as_str))
        .collect();
    let layer_ref = |i: usize| {
        layered.then(|| LayerRef {
            index: i,
            diff_id: image.layers.get(i).and_then(|l| l.diff_id.clone()),
        })
    };
    // A Cargo.toml next to a Cargo.lock decides which of the lock's crates count (Trivy's
    // rule): what its dependencies, and its workspace members', reach.
    let manifest_at = |path: &str| {
        merged
            .get(path)
            .and_then(|(_, fr)| fr.cargo_manifest.as_ref())
    };
    let cargo_kept: HashMap<&str, BTreeSet<String>> = merged
        .iter()
        .filter(|(p, (_, fr))| p.ends_with("Cargo.lock") && !fr.cargo_edges.is_empty())
        .filter_map(|(p, (_, fr))| {
            let dir = cargo_dir(p);
            let at = |file: &str| {
                if dir.is_empty() {
                    file.to_owned()
                } else {
                    format!("{dir}/{file}")
                }
            };
            let root = manifest_at(&at("Cargo.toml"))?;
            let members: Vec<&analyzer::cargo::Manifest> = root
                .members
                .iter()
                .filter_map(|m| {
                    manifest_at(&at(&format!("{}/Cargo.toml", m.trim_end_matches('/'))))
                })
                .collect();
            Some((
                *p,
                analyzer::cargo::kept(
                    &fr.packages,
                    &fr.cargo_edges,
                    &fr.cargo_local,
                    root,
                    &members,
                ),
            ))
        })
        .collect();
    let mut os_pkgs: Vec<Package> = Vec::new();
    let mut lang: Vec<Package> = Vec::new();
    for (path, (i, fr)) in &merged {
        for p in &fr.packages {
            let mut p = p.clone();
            if !p.kind.is_os() && owned.contains(path) {
                continue;
            }
            if p.kind == crate::inventory::PkgType::Cargo
                && cargo_kept
                    .get(path)
                    .is_some_and(|keep| !keep.contains(&format!("{}@{}", p.name, p.version)))
            {
                continue;
            }
            // The layer that introduced this exact package: the first one whose copy of the
            // same file already listed it (Trivy's origin-layer rule).
            let origin = results
                .iter()
                .enumerate()
                .take(i + 1)
                .find(|(_, r)| {
                    r.files.get(*path).is_some_and(|f| {
                        f.packages
                            .iter()
                            .any(|q| q.name == p.name && q.version == p.version)
                    })
                })
                .map_or(*i, |(k, _)| k);
            p.layer = layer_ref(origin);
            if p.kind.is_os() {
                os_pkgs.push(p);
            } else {
                lang.push(p);
            }
        }
    }
    os_pkgs.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.version.cmp(&b.version)));
    lang.sort_by(|a, b| a.path.cmp(&b.path).then_with(|| a.name.cmp(&b.name)));
    os_pkgs.extend(lang);
    Inventory {
        artifact: image.artifact.clone(),
        os,
        packages: os_pkgs,
    }
}

/// Opens `input` (see [`crate::source::open`]) and scans it.
pub fn scan_path(
    input: &Path,
    name: &str,
    cache: Option<&LayerCache>,
) -> Result<(Inventory, Vec<String>), ScanError> {
    let image = crate::source::open(input, name)?;
    inventory(&image, cache)
}
