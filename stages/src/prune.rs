//! Pruning what berth keeps across jobs on purpose: GitLab's `/cache` per project, BuildKit's
//! cache per project and ref kind, the scanner's per-layer cache, and images in the shared base
//! store. An entry unused for longer than the admin allows goes; an entry a job holds never
//! does. Deciding is here; removing (in the runner's user namespace, through Podman) is the
//! caller's.
//!
//! Base images are collected only while no job exists at all: a running job may build FROM any
//! of them. Prepare holds the collection lock shared from before its job directory exists until
//! its containers run, so a collection never starts between a prepare's image check and its use.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use berth_beneath::Dir;
use berth_config::Config;
use berth_storemeta::{StoreId, StoreImage, StoreMetaError};

use crate::JobLog;

/// Touched whenever a job uses a kept directory; its mtime is the entry's last use.
pub const LAST_USED: &str = ".berth-last-used";

/// Records that a job uses `dir` now.
pub fn touch_last_used(dir: &Path) -> std::io::Result<()> {
    let stamp = dir.join(LAST_USED);
    std::fs::File::create(&stamp)?.set_modified(SystemTime::now())
}

/// What a prune would remove.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PrunePlan {
    /// Plain files and directories the runner user owns outright.
    pub owned: Vec<PathBuf>,
    /// BuildKit roots, holding files of subordinate ids: removed inside the user namespace.
    pub in_user_namespace: Vec<PathBuf>,
}

fn last_use(entry: &Path) -> Option<SystemTime> {
    std::fs::metadata(entry.join(LAST_USED))
        .or_else(|_| std::fs::metadata(entry))
        .and_then(|m| m.modified())
        .ok()
}

fn unused_children(dir: &Path, cutoff: SystemTime) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| last_use(p).is_some_and(|t| t < cutoff))
        .collect();
    found.sort();
    found
}

/// Whether a BuildKit cache is held by a job's daemon right now (its `flock` on `.lock`).
fn held(buildkit_cache: &Path) -> bool {
    let Ok(file) = std::fs::File::open(buildkit_cache.join(".lock")) else {
        return false;
    };
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(_released_on_drop) => false,
        Err(_) => true,
    }
}

/// What is unused for longer than `config.prune_after_days` at `now` (nothing when that is 0).
pub fn plan(config: &Config, now: SystemTime) -> PrunePlan {
    let Some(age) = config
        .prune_after_days
        .map(|d| Duration::from_secs(u64::from(d) * 86_400))
    else {
        return PrunePlan::default();
    };
    let cutoff = now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut owned = unused_children(&config.cache_root(), cutoff);
    owned.extend(unused_children(
        &config.state_dir.join("scan-cache"),
        cutoff,
    ));
    let in_user_namespace = unused_children(&config.state_dir.join("buildkit-cache"), cutoff)
        .into_iter()
        .filter(|p| !held(p))
        .collect();
    PrunePlan {
        owned,
        in_user_namespace,
    }
}

/// Where a base image's last use by a job is stamped (outside the store, which only the store
/// identity writes). Ids come from a job's Podman: only a plain 64-hex id names a stamp.
fn image_stamp(config: &Config, image_id: &str) -> Option<PathBuf> {
    let id = StoreId::parse(image_id.trim_start_matches("sha256:")).ok()?;
    Some(config.state_dir.join("image-use").join(id.as_str()))
}

/// Records that a job uses the base image `image_id` now.
pub fn touch_image_used(config: &Config, image_id: &str) -> std::io::Result<()> {
    let stamp = image_stamp(config, image_id).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{image_id:?} is not an image id"),
        )
    })?;
    if let Some(dir) = stamp.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::File::create(&stamp)?.set_modified(SystemTime::now())
}

/// The collection lock of the base store.
pub fn gc_lock_path(config: &Config) -> PathBuf {
    config.state_dir.join("locks").join("gc.lock")
}

/// The collection lock of the base store (made by root; created if missing otherwise).
pub fn gc_lock_file(config: &Config) -> Result<std::fs::File, crate::StageError> {
    let path = gc_lock_path(config);
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).map_err(crate::StageError::io(dir))?;
    }
    Ok(berth_sandbox::podman::open_lock(&path)?)
}

/// The images of the base store (none when it has none yet), read beneath the store without
/// following a link and validated by `berth-storemeta`.
pub fn base_images(config: &Config) -> Result<Vec<StoreImage>, StoreMetaError> {
    let store = config.image_store();
    let dir = match Dir::open(&store) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StoreMetaError::Read {
                path: store,
                source,
            });
        }
    };
    Ok(berth_storemeta::read_images(&dir)?.unwrap_or_default())
}

/// The base images no job used for longer than `prune_after_days` at `now`. The helper and
/// default images are always kept; an image seen for the first time gets its stamp now (its
/// age counts from here, never from when it was built).
pub fn unused_images(config: &Config, images: &[StoreImage], now: SystemTime) -> Vec<String> {
    let Some(days) = config.prune_after_days else {
        return Vec::new();
    };
    let cutoff = now
        .checked_sub(Duration::from_secs(u64::from(days) * 86_400))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let pinned: Vec<&str> = std::iter::once(config.helper_image.as_str())
        .chain(config.default_image.as_deref())
        .collect();
    images
        .iter()
        .filter(|image| !image.names.iter().any(|n| pinned.contains(&n.as_str())))
        .filter(|image| {
            let Some(stamp) = image_stamp(config, image.id.as_str()) else {
                return false;
            };
            match std::fs::metadata(&stamp).and_then(|m| m.modified()) {
                Ok(last) => last < cutoff,
                Err(_) => {
                    let _ = std::fs::create_dir_all(stamp.parent().unwrap_or(&stamp))
                        .and_then(|()| std::fs::File::create(&stamp))
                        .and_then(|f| f.set_modified(now));
                    false
                }
            }
        })
        .map(|image| image.id.to_string())
        .collect()
}

/// Counts removed objects of `kind` for the metrics.
fn note_removed(kind: &str, count: usize) {
    if count > 0 {
        berth_telemetry::recorder::note(berth_telemetry::Event::Reaped {
            kind: kind.to_owned(),
            count: count as u64,
        });
    }
}

/// Runs as the store identity (or berth's own user), which owns what it removes.
/// Removes kept caches unused for longer than the admin allows (see `berth_stages::prune`);
/// returns how many could not be removed, each told in the log.
pub async fn prune_caches(
    config: &Config,
    settings: &berth_sandbox::podman::PodmanSettings,
    log: &mut JobLog,
) -> usize {
    let plan = plan(config, SystemTime::now());
    let mut errors = 0;
    for path in &plan.owned {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
        match removed {
            Ok(()) => {
                note_removed("cache", 1);
                log.line(&format!("pruned {} (unused too long)", path.display()));
            }
            Err(e) => {
                errors += 1;
                log.warn(&format!("pruning {}: {e}", path.display()));
            }
        }
    }
    match berth_sandbox::podman::remove_in_user_namespace(settings, &plan.in_user_namespace).await {
        Ok(()) => {
            note_removed("cache", plan.in_user_namespace.len());
            for path in &plan.in_user_namespace {
                log.line(&format!("pruned {} (unused too long)", path.display()));
            }
        }
        Err(e) => {
            errors += plan.in_user_namespace.len();
            log.warn(&format!("pruning BuildKit caches: {e}"));
        }
    }
    errors
}

/// Removes base images no job used for `prune_after_days`, only while no job exists and no
/// prepare is checking images (see `berth_stages::prune`); returns how many removals failed.
pub async fn collect_base_images(
    config: &Config,
    settings: &berth_sandbox::podman::PodmanSettings,
    log: &mut JobLog,
) -> usize {
    if config.prune_after_days.is_none() {
        return 0;
    }
    let lock = match gc_lock_file(config) {
        Ok(f) => f,
        Err(e) => {
            log.warn(&format!("base image collection skipped: {e}"));
            return 1;
        }
    };
    let Ok(_held) = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
    else {
        log.line("base image collection skipped: a job is being prepared");
        return 0;
    };
    let jobs = berth_sandbox::podman::job_keys(&config.jobs_dir());
    if !jobs.is_empty() {
        log.line(&format!(
            "base image collection skipped: {} job(s) exist (a job may build FROM any base image)",
            jobs.len()
        ));
        return 0;
    }
    let images = match base_images(config) {
        Ok(i) => i,
        Err(e) => {
            log.warn(&format!("base image collection skipped: {e}"));
            return 1;
        }
    };
    let unused = unused_images(config, &images, SystemTime::now());
    let mut failed = 0;
    // One at a time: one image Podman refuses must not keep the others.
    for id in &unused {
        match berth_sandbox::podman::remove_base_images(settings, std::slice::from_ref(id)).await {
            Ok(()) => {
                note_removed("image", 1);
                log.line(&format!("removed base image {id} (unused too long)"));
            }
            Err(e) => {
                failed += 1;
                log.warn(&format!("removing base image {id}: {e}"));
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(path: &Path, days: u64) {
        let t = SystemTime::now() - Duration::from_secs(days * 86_400);
        std::fs::File::options()
            .write(true)
            .open(path)
            .or_else(|_| std::fs::File::open(path))
            .and_then(|f| f.set_modified(t))
            .expect("set mtime");
    }

    #[test]
    fn only_entries_unused_for_longer_than_allowed_and_not_held_are_planned() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = Config::parse(
            &format!(
                "state_dir = \"{}\"\nprune_after_days = 10\n",
                tmp.path().display()
            ),
            None,
        )
        .expect("config");
        let cache = config.cache_root();
        for project in ["project-1", "project-2", "project-3"] {
            std::fs::create_dir_all(cache.join(project)).expect("mkdir");
        }
        age(&cache.join("project-1"), 30);
        // Old directory, but a job used it yesterday.
        age(&cache.join("project-2"), 30);
        touch_last_used(&cache.join("project-2")).expect("touch");
        age(&cache.join("project-2").join(LAST_USED), 1);
        let scan = config.state_dir.join("scan-cache");
        std::fs::create_dir_all(&scan).expect("mkdir");
        std::fs::write(scan.join("old.json"), "{}").expect("write");
        std::fs::write(scan.join("new.json"), "{}").expect("write");
        age(&scan.join("old.json"), 11);
        let bk = config.state_dir.join("buildkit-cache");
        for p in ["project-7", "project-8"] {
            std::fs::create_dir_all(bk.join(p)).expect("mkdir");
            std::fs::write(bk.join(p).join(".lock"), "").expect("lock file");
            age(&bk.join(p), 40);
        }
        let held_lock = std::fs::File::open(bk.join("project-8/.lock")).expect("open");
        let _held = nix::fcntl::Flock::lock(held_lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .expect("hold project-8");

        let plan = plan(&config, SystemTime::now());
        assert_eq!(
            plan,
            PrunePlan {
                owned: vec![cache.join("project-1"), scan.join("old.json")],
                in_user_namespace: vec![bk.join("project-7")],
            }
        );
        let never = Config::parse(
            &format!(
                "state_dir = \"{}\"\nprune_after_days = 0\n",
                tmp.path().display()
            ),
            None,
        )
        .expect("config");
        assert_eq!(super::plan(&never, SystemTime::now()), PrunePlan::default());
    }

    #[test]
    fn base_images_go_only_after_a_long_unused_stretch_and_pinned_ones_never() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = Config::parse(
            &format!(
                "state_dir = \"{}\"\nprune_after_days = 10\ndefault_image = \"localhost/default:1\"\n",
                tmp.path().display()
            ),
            None,
        )
        .expect("config");
        let id = |c: char| c.to_string().repeat(64);
        let image = |id: &str, name: &str| StoreImage {
            id: StoreId::parse(id).expect("an id"),
            names: vec![name.to_owned()],
            layer: None,
        };
        let images = [
            image(&id('a'), "localhost/old:1"),
            image(&id('b'), "localhost/recent:1"),
            image(&id('c'), "localhost/never-seen:1"),
            image(&id('d'), &config.helper_image),
            image(&id('e'), "localhost/default:1"),
        ];
        for image_id in [id('a'), id('b'), id('d'), id('e')] {
            touch_image_used(&config, &image_id).expect("touch");
        }
        for image_id in [id('a'), id('d'), id('e')] {
            age(&image_stamp(&config, &image_id).expect("stamp"), 30);
        }
        let now = SystemTime::now();
        assert_eq!(unused_images(&config, &images, now), vec![id('a')]);
        assert!(
            image_stamp(&config, &id('c')).is_some_and(|p| p.exists()),
            "first sight starts the clock"
        );
        assert!(
            !unused_images(&config, &images, now + Duration::from_secs(9 * 86_400))
                .contains(&id('c'))
        );
        assert!(
            unused_images(&config, &images, now + Duration::from_secs(11 * 86_400))
                .contains(&id('c'))
        );
        assert_eq!(
            base_images(&config).expect("no store yet"),
            vec![],
            "a store nothing was pulled into has no images"
        );
        std::fs::create_dir_all(config.image_store().join("overlay-images")).expect("mkdir");
        let listed = config.image_store().join("overlay-images/images.json");
        std::fs::write(
            &listed,
            format!(r#"[{{"id":"{}","names":["localhost/old:1"]}}]"#, id('a')),
        )
        .expect("write");
        assert_eq!(
            base_images(&config).expect("read"),
            vec![image(&id('a'), "localhost/old:1")]
        );
        // A damaged listing stops the collection rather than deciding from part of it.
        std::fs::write(
            &listed,
            format!(
                r#"[{{"id":"{}","names":["localhost/old:1"],"layer":"x"}},{{"id":"fff"}}]"#,
                id('a')
            ),
        )
        .expect("write");
        let err = base_images(&config).expect_err("a malformed images.json was used");
        assert_eq!(err.path(), listed);
        assert!(err.to_string().contains("id is malformed"), "{err}");
    }
}
