//! Pruning what berth keeps across jobs on purpose: GitLab's `/cache` per project, BuildKit's
//! cache per project and ref kind, and the scanner's per-layer cache. An entry unused for longer
//! than the admin allows goes; an entry a job holds never does. Deciding is here; removing
//! BuildKit's subordinate-owned files needs the runner's user namespace, which the caller has.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use berth_config::Config;

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

/// Where the last prune is stamped, so that prepare prunes at most once an hour.
pub fn due(config: &Config, now: SystemTime) -> bool {
    let stamp = config.state_dir.join(".berth-pruned");
    let last = std::fs::metadata(&stamp).and_then(|m| m.modified()).ok();
    let due = last.is_none_or(|t| {
        now.duration_since(t)
            .is_ok_and(|d| d > Duration::from_secs(3600))
    });
    if due {
        let _ = std::fs::File::create(&stamp).and_then(|f| f.set_modified(now));
    }
    due
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
    fn prepare_prunes_at_most_once_an_hour() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = Config::parse(&format!("state_dir = \"{}\"\n", tmp.path().display()), None)
            .expect("config");
        let now = SystemTime::now();
        assert!(due(&config, now));
        assert!(!due(&config, now + Duration::from_secs(60)));
        assert!(due(&config, now + Duration::from_secs(3601)));
    }
}
