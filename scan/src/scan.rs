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
use crate::digest::{ContentKey, DigestMemo};
use crate::inventory::{Inventory, LayerRef, Package};
use crate::source::{
    EntryKind, Image, Layer, LayerData, SourceError, layer_key_with, remembered_key,
    walk_layer_with,
};

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
    memo: Option<DigestMemo>,
}

impl LayerCache {
    /// A cache in `dir` (created on first write); every tar layer is hashed on every scan.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            memo: None,
        }
    }

    /// A cache in `dir` that also remembers layer digests in `dir/digests` ([`DigestMemo`]),
    /// so a warm scan of unchanged files reads none of their bytes. For a user's own cache
    /// (`berth scan --cache-dir`); never for a cache a less trusted user can write (berth's
    /// in-job reads use [`LayerCache::new`]).
    pub fn with_digest_memo(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self {
            memo: Some(DigestMemo::new(dir.join("digests"))),
            dir,
        }
    }

    /// False when no entry of this analyzer version exists (a cold cache): then hashing a
    /// layer before analyzing it cannot find anything, and the walk's own hash keys the entry.
    fn may_hit(&self) -> bool {
        let suffix = format!(".a{ANALYZER_VERSION}.json");
        std::fs::read_dir(&self.dir).is_ok_and(|mut entries| {
            entries.any(|e| {
                e.is_ok_and(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    !name.starts_with('.') && name.ends_with(&suffix)
                })
            })
        })
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
    analyze_layer_with(layer, None)
}

fn analyze_layer_with(
    layer: &Layer,
    memo: Option<&DigestMemo>,
) -> Result<(LayerResult, Option<ContentKey>), SourceError> {
    let mut r = LayerResult {
        analyzer_version: ANALYZER_VERSION,
        ..LayerResult::default()
    };
    walk_layer_with(layer, memo, |path, kind, reader| {
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

/// A layer's result, and why it could not be cached (if it could not).
type Analyzed = (LayerResult, Option<String>);

/// Scans an image into an inventory, using `cache` keyed by computed layer digests. Returns the
/// inventory and non-fatal warnings.
///
/// Layers are independent until merged, so they are read on up to as many threads as the
/// machine has cores, largest first; each result lands in its layer's slot and the merge runs
/// in layer order, so the inventory is the same as from reading them one by one.
pub fn inventory(
    image: &Image,
    cache: Option<&LayerCache>,
) -> Result<(Inventory, Vec<String>), ScanError> {
    // Hashing a layer first only pays when the cache could hold its result.
    let may_hit = cache.is_some_and(LayerCache::may_hit);
    let memo = cache.and_then(|c| c.memo.as_ref());
    let one = |index: usize, layer: &Layer| -> Result<Analyzed, ScanError> {
        let failed = |source| ScanError::Layer {
            image: image.artifact.name.clone(),
            index,
            location: layer.data.location(),
            source,
        };
        let Some(cache) = cache else {
            return Ok((analyze_layer(layer).map_err(failed)?.0, None));
        };
        let key = if may_hit {
            layer_key_with(layer, memo).map_err(failed)?
        } else {
            None
        };
        if let Some(r) = key.as_ref().and_then(|k| cache.get(k)) {
            return Ok((r, None));
        }
        let (r, analyzed) = analyze_layer_with(layer, memo).map_err(failed)?;
        if key.is_some() && analyzed != key {
            return Err(ScanError::Changed {
                image: image.artifact.name.clone(),
                index,
                location: layer.data.location(),
            });
        }
        // Stored under the digest of the very bytes the result came from.
        let put_err = analyzed.and_then(|a| cache.put(&a, &r).err());
        Ok((r, put_err))
    };
    // A warm scan of unchanged files: results whose key the memo knows come straight from the
    // cache on this thread; only the others are read, in parallel.
    let mut done: Vec<Option<Result<Analyzed, ScanError>>> = image
        .layers
        .iter()
        .map(|layer| {
            let (cache, memo) = (cache?, memo?);
            let hit = may_hit
                .then(|| remembered_key(layer, memo))
                .flatten()
                .and_then(|k| cache.get(&k))?;
            Some(Ok((hit, None)))
        })
        .collect();
    let todo: Vec<usize> = (0..done.len()).filter(|&i| done[i].is_none()).collect();
    for (slot, read) in done.iter_mut().zip(run_parallel(&image.layers, &todo, one)) {
        if slot.is_none() {
            *slot = read;
        }
    }
    let mut results = Vec::with_capacity(done.len());
    let mut warnings = Vec::new();
    // In layer order; a layer left unread after a lower one failed has no slot.
    for d in done.into_iter().flatten() {
        let (r, put_err) = d?;
        warnings.extend(put_err);
        warnings.extend(r.warnings.iter().cloned());
        results.push(r);
    }
    if results.len() < image.layers.len() {
        // Every layer ended without an error, yet one has no result: its thread panicked.
        return Err(ScanError::Source(SourceError::Io {
            path: PathBuf::from("<layer>"),
            source: std::io::Error::other("layer analysis thread panicked"),
        }));
    }
    Ok((merge(image, &results), warnings))
}

/// The order the layers `todo` are handed to threads: largest stored size first (a big base
/// layer starts at once instead of last), directory layers after tar layers, ties by position.
fn schedule(layers: &[Layer], todo: &[usize]) -> Vec<usize> {
    let mut order = todo.to_vec();
    let size = |l: &Layer| match l.data {
        LayerData::Tar { len, .. } => len,
        LayerData::Dir(_) | LayerData::StoreDir { .. } => 0,
    };
    order.sort_by_key(|&i| (std::cmp::Reverse(layers.get(i).map_or(0, size)), i));
    order
}

/// Runs `one` on the layers `todo` on up to `available_parallelism` threads and returns one
/// slot per layer, in layer order (`None` for a layer not in `todo` or not read). After a failure
/// no layer above it is started (those below still are), so the first error in layer order is
/// always the lowest failing layer's, whatever the timing. A thread that panicked leaves its
/// layer's slot empty.
fn run_parallel<T: Send>(
    layers: &[Layer],
    todo: &[usize],
    one: impl Fn(usize, &Layer) -> Result<T, ScanError> + Sync,
) -> Vec<Option<Result<T, ScanError>>> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let order = schedule(layers, todo);
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(order.len());
    let next = AtomicUsize::new(0);
    // The lowest layer that failed so far.
    let failed = AtomicUsize::new(usize::MAX);
    let slots: Vec<Mutex<Option<Result<T, ScanError>>>> =
        layers.iter().map(|_| Mutex::new(None)).collect();
    let work = || {
        while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
            let Some(layer) = layers.get(i).filter(|_| i < failed.load(Ordering::Relaxed)) else {
                continue;
            };
            let r = one(i, layer);
            if r.is_err() {
                failed.fetch_min(i, Ordering::Relaxed);
            }
            if let Some(slot) = slots.get(i) {
                *slot
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(r);
            }
        }
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(work)).collect();
        for h in handles {
            // A panicked thread's layer keeps an empty slot; the caller names it.
            let _ = h.join();
        }
    });
    slots
        .into_iter()
        .map(|s| {
            s.into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        })
        .collect()
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
    // Only files that declare language packages are ever looked up in it: the OS packages' file
    // lists (thousands of paths) are checked against those few instead of all being collected.
    let declares_lang: HashSet<&str> = merged
        .iter()
        .filter(|(_, (_, fr))| fr.packages.iter().any(|p| !p.kind.is_os()))
        .map(|(p, _)| *p)
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
        .filter(|f| declares_lang.contains(f))
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::inventory::{Artifact, ArtifactKind};

    fn meta(name: &str, version: &str) -> (String, Vec<u8>) {
        (
            format!("usr/lib/python3/dist-packages/{name}.dist-info/METADATA"),
            format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n").into_bytes(),
        )
    }

    /// A layer's files and whether it is gzip-compressed.
    type Spec = (Vec<(String, Vec<u8>)>, bool);

    fn tar_of(files: &[(String, Vec<u8>)], gzip: bool) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, data.as_slice())
                .expect("append");
        }
        let raw = b.into_inner().expect("tar");
        if !gzip {
            return raw;
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).expect("gzip");
        gz.finish().expect("gzip")
    }

    /// Six layers, some gzip-compressed, the largest in the middle (so the threads take them
    /// out of order), with a whiteout, an opaque directory and a package replaced by a later
    /// layer.
    fn image(dir: &Path) -> Image {
        let filler = |n: usize| ("filler".to_owned(), vec![b'x'; n]);
        let opq = "usr/lib/python3/dist-packages/.wh..wh..opq".to_owned();
        let layers: Vec<Spec> = vec![
            (
                vec![meta("a", "1"), meta("b", "1"), meta("gone", "1")],
                true,
            ),
            (vec![meta("a", "2"), filler(10)], false),
            (
                vec![
                    (
                        "usr/lib/python3/dist-packages/.wh.gone.dist-info".into(),
                        vec![],
                    ),
                    filler(400_000),
                ],
                false,
            ),
            (vec![meta("c", "1")], true),
            (vec![(opq, vec![]), meta("d", "1")], true),
            (vec![meta("e", "1"), filler(200_000)], false),
        ];
        let layers = layers
            .iter()
            .enumerate()
            .map(|(i, (files, gz))| {
                let bytes = tar_of(files, *gz);
                let rel = format!("layer{i}.tar");
                std::fs::write(dir.join(&rel), &bytes).expect("write layer");
                Layer {
                    diff_id: Some(format!("sha256:{i:064x}")),
                    data: LayerData::Tar {
                        root: dir.to_owned(),
                        rel: rel.into(),
                        offset: 0,
                        len: bytes.len() as u64,
                        digest: None,
                    },
                }
            })
            .collect();
        Image {
            artifact: Artifact {
                name: "fixture".into(),
                kind: ArtifactKind::ContainerImage,
                diff_ids: (0..6).map(|i| format!("sha256:{i:064x}")).collect(),
                ..Artifact::default()
            },
            layers,
        }
    }

    /// Name, version and the layer each package is attributed to.
    fn packages(inv: &Inventory) -> Vec<(&str, &str, Option<usize>)> {
        inv.packages
            .iter()
            .map(|p| {
                let layer = p.layer.as_ref().map(|l| l.index);
                (p.name.as_str(), p.version.as_str(), layer)
            })
            .collect()
    }

    #[test]
    fn reading_layers_in_parallel_gives_the_inventory_of_reading_them_in_order() {
        let d = tempfile::tempdir().expect("tempdir");
        let image = image(d.path());
        assert_ne!(
            schedule(&image.layers, &[0, 1, 2, 3, 4, 5]),
            (0..6).collect::<Vec<_>>(),
            "the fixture must make the threads take layers out of order"
        );
        let in_order: Vec<LayerResult> = image
            .layers
            .iter()
            .map(|l| analyze_layer(l).expect("layer").0)
            .collect();
        let expected = merge(&image, &in_order);
        // Layer 4's opaque directory hides a, b (and the whited-out gone) from below it.
        assert_eq!(
            packages(&expected),
            [("d", "1", Some(4)), ("e", "1", Some(5))]
        );
        let cache = LayerCache::with_digest_memo(d.path().join("cache"));
        for c in [None, Some(&cache), Some(&cache)] {
            let (inv, _) = inventory(&image, c).expect("inventory");
            assert_eq!(inv, expected);
        }
    }

    #[test]
    fn a_warm_scan_takes_remembered_layers_from_the_cache_and_reads_only_the_rest() {
        let d = tempfile::tempdir().expect("tempdir");
        let image = image(d.path());
        let dir = d.path().join("cache");
        let cache = LayerCache {
            memo: Some(DigestMemo::new(dir.join("digests")).settled_at_once()),
            dir,
        };
        let memo = cache.memo.as_ref().expect("memo");
        let (cold, _) = inventory(&image, Some(&cache)).expect("cold");
        for layer in &image.layers {
            let key = remembered_key(layer, memo).expect("remembered after the cold scan");
            assert!(cache.get(&key).is_some());
        }
        // A changed layer is read again (its stamp changed), the others come from the cache.
        let changed = d.path().join("layer3.tar");
        let bytes = std::fs::read(&changed).expect("read");
        std::fs::write(&changed, &bytes).expect("rewrite");
        assert_eq!(remembered_key(&image.layers[3], memo), None);
        let (warm, _) = inventory(&image, Some(&cache)).expect("warm");
        assert_eq!(warm, cold);
        assert!(remembered_key(&image.layers[3], memo).is_some());
    }

    #[test]
    fn whiteouts_and_replacements_apply_in_layer_order_whatever_order_layers_finish() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut image = image(d.path());
        // Without the opaque layer: a@2 from layer 1 wins over layer 0's a@1 and keeps
        // attribution to layer 1; gone@1 is whited out by layer 2.
        image.layers.remove(4);
        image.artifact.diff_ids.remove(4);
        let (inv, _) = inventory(&image, None).expect("inventory");
        assert_eq!(
            packages(&inv),
            [
                ("a", "2", Some(1)),
                ("b", "1", Some(0)),
                ("c", "1", Some(3)),
                ("e", "1", Some(4)),
            ]
        );
    }

    #[test]
    fn a_failing_layer_fails_the_scan_naming_the_lowest_failing_layer() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut image = image(d.path());
        for i in [3, 5] {
            if let Some(Layer {
                data: LayerData::Tar { len, .. },
                ..
            }) = image.layers.get_mut(i)
            {
                *len += 1;
            }
        }
        // Layer 5 is taken before layer 3 (it is larger), yet 3 is named every time.
        for _ in 0..5 {
            assert!(matches!(
                inventory(&image, None),
                Err(ScanError::Layer { index: 3, .. })
            ));
        }
    }
}
