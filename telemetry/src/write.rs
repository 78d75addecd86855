//! The I/O edge of the metrics: under a lock, read the accumulated [`Totals`] from
//! `<state_dir>/metrics/<name>.json` (one per runner config, also when configs share a
//! state directory), fold this process's events in, write them back and render
//! `<metrics_dir>/<name>.prom`, each file written beside itself and renamed over the old one
//! beneath its directory's handle (node_exporter never reads half a file, a planted link is
//! replaced, never followed). Both directories must belong to the expected owner (root, when
//! berth runs as root) and be writable by nobody else.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_beneath::Dir;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::model::{Event, Totals};

/// Where and under which name one runner config's metrics go.
#[derive(Debug, Clone)]
pub struct Target {
    /// The config's `state_dir`: the accumulated values live in its `metrics/`.
    pub state_dir: PathBuf,
    /// node_exporter's textfile directory.
    pub metrics_dir: PathBuf,
    /// The file's stem and the `runner` label.
    pub name: String,
    /// Bound of the `project` label.
    pub max_projects: usize,
    /// Who must own both directories (root when berth runs as root).
    pub owner: u32,
}

/// Why the metrics were not written.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// A file or directory could not be used.
    #[error("{}: {source}", path.display())]
    Io {
        /// What was touched.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A directory someone else could write to.
    #[error("{}: {why}; berth writes metrics and its admin log only where no one but uid {owner} can write (fix: chown {owner} and chmod go-w it)", path.display())]
    Untrusted {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        why: String,
        /// The expected owner.
        owner: u32,
    },
    /// Another berth process held the lock for too long.
    #[error("{}: still locked by another berth process after {LOCK_WAIT:?}", path.display())]
    Busy {
        /// The lock file.
        path: PathBuf,
    },
}

/// Longest wait for another process's write (each takes milliseconds).
const LOCK_WAIT: Duration = Duration::from_secs(10);
/// Largest state file read (a few hundred series take kilobytes).
const STATE_LIMIT: u64 = 16 << 20;

fn io(path: &Path) -> impl Fn(std::io::Error) -> FlushError + '_ {
    move |source| FlushError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Opens `path` as a directory that only `owner` can write.
pub fn trusted_dir(path: &Path, owner: u32) -> Result<Dir, FlushError> {
    let dir = Dir::open(path).map_err(io(path))?;
    let st = nix::sys::stat::fstat(&dir).map_err(|e| io(path)(e.into()))?;
    let untrusted = |why: String| FlushError::Untrusted {
        path: path.to_owned(),
        why,
        owner,
    };
    if st.st_uid != owner {
        return Err(untrusted(format!("it belongs to uid {}", st.st_uid)));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(untrusted(format!(
            "its mode {:o} lets group or others write",
            st.st_mode & 0o7777
        )));
    }
    Ok(dir)
}

fn lock(dir: &Dir, name: &str) -> Result<Flock<std::fs::File>, FlushError> {
    let name = format!("{name}.lock");
    let path = dir.path().join(&name);
    let mut file = dir
        .open_writer(Path::new(&name), 0o600, true)
        .map_err(io(&path))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(locked),
            Err((back, Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                file = back;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err((_, Errno::EWOULDBLOCK)) => return Err(FlushError::Busy { path }),
            Err((_, e)) => return Err(io(&path)(e.into())),
        }
    }
}

/// Folds `events` (at Unix time `now`) into the runner config's totals and renders them.
/// Returns warnings to log (a corrupt state file, reported and replaced).
pub fn flush(target: &Target, events: &[Event], now: u64) -> Result<Vec<String>, FlushError> {
    let mut warnings = Vec::new();
    let metrics = trusted_dir(&target.metrics_dir, target.owner)?;
    let state_dir = trusted_dir(&target.state_dir, target.owner)?;
    let dir = state_dir
        .mkdir(Path::new("metrics"), 0o700)
        .map_err(io(&target.state_dir.join("metrics")))?;
    dir.expect_owner(target.owner)
        .map_err(io(&target.state_dir.join("metrics")))?;
    let _locked = lock(&dir, &target.name)?;
    let state = format!("{}.json", target.name);
    let state_path = dir.path().join(&state);
    let mut totals = match dir.read(Path::new(&state), STATE_LIMIT) {
        Ok(bytes) => Totals::from_json(&bytes).unwrap_or_else(|e| {
            warnings.push(format!(
                "{} is corrupt ({e}); it is replaced and the metrics start again from zero",
                state_path.display()
            ));
            Totals::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Totals::default(),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            warnings.push(format!(
                "{e}; it is replaced and the metrics start again from zero"
            ));
            Totals::default()
        }
        Err(e) => return Err(io(&state_path)(e)),
    };
    for event in events {
        totals.apply(event, now, target.max_projects);
    }
    totals.mark_written(now);
    dir.write_atomic(&state, &totals.to_json(), 0o600)
        .map_err(io(&state_path))?;
    let name = format!("{}.prom", target.name);
    metrics
        .write_atomic(
            &name,
            crate::render::render(&totals, &target.name).as_bytes(),
            0o644,
        )
        .map_err(io(&target.metrics_dir.join(&name)))?;
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn target(tmp: &Path) -> Target {
        for d in ["state", "metrics"] {
            std::fs::create_dir_all(tmp.join(d)).unwrap_or_default();
            std::fs::set_permissions(tmp.join(d), std::fs::Permissions::from_mode(0o755))
                .unwrap_or_default();
        }
        Target {
            state_dir: tmp.join("state"),
            metrics_dir: tmp.join("metrics"),
            name: "main".into(),
            max_projects: 10,
            owner: nix::unistd::Uid::effective().as_raw(),
        }
    }

    fn ended(key: &str) -> Event {
        Event::JobEnded { key: key.into() }
    }

    #[test]
    fn processes_accumulate_and_the_file_is_replaced_whole() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = target(tmp.path());
        assert!(flush(&t, &[ended("a")], 5).expect("first").is_empty());
        assert!(flush(&t, &[ended("b")], 6).expect("second").is_empty());
        let text = std::fs::read_to_string(tmp.path().join("metrics/main.prom")).expect("prom");
        assert!(
            text.contains("berth_jobs_total{runner=\"main\",outcome=\"success\"} 2"),
            "{text}"
        );
        assert!(text.contains("berth_metrics_written_timestamp_seconds{runner=\"main\"} 6"));
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("metrics"))
            .expect("list")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers, ["main.prom"]);
        let mode = std::fs::metadata(tmp.path().join("state/metrics/main.json"))
            .expect("state")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_corrupt_state_file_is_reported_and_replaced() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = target(tmp.path());
        flush(&t, &[ended("a")], 5).expect("first");
        std::fs::write(
            tmp.path().join("state/metrics/main.json"),
            b"{\"version\": 1,",
        )
        .expect("damage");
        let warnings = flush(&t, &[ended("b")], 6).expect("flush");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("corrupt"), "{warnings:?}");
        let text = std::fs::read_to_string(tmp.path().join("metrics/main.prom")).expect("prom");
        assert!(text.contains("outcome=\"success\"} 1"), "{text}");
    }

    #[test]
    fn a_planted_link_is_replaced_and_its_target_untouched() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = target(tmp.path());
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"keep").expect("victim");
        std::os::unix::fs::symlink(&victim, tmp.path().join("metrics/main.prom")).expect("link");
        std::fs::create_dir_all(tmp.path().join("state/metrics")).expect("mkdir");
        std::os::unix::fs::symlink(&victim, tmp.path().join("state/metrics/main.json"))
            .expect("link");
        flush(&t, &[ended("a")], 5).expect_err("a link where the state is must not be read");
        std::fs::remove_file(tmp.path().join("state/metrics/main.json")).expect("unlink");
        flush(&t, &[ended("a")], 5).expect("flush");
        assert_eq!(std::fs::read(&victim).expect("victim"), b"keep");
        assert!(
            !std::fs::symlink_metadata(tmp.path().join("metrics/main.prom"))
                .expect("prom")
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = target(tmp.path());
        std::fs::set_permissions(&t.metrics_dir, std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let err = flush(&t, &[ended("a")], 5).expect_err("world-writable");
        assert!(
            err.to_string().contains("lets group or others write"),
            "{err}"
        );
        let other = Target {
            owner: t.owner + 1,
            ..t.clone()
        };
        std::fs::set_permissions(&t.metrics_dir, std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let err = flush(&other, &[ended("a")], 5).expect_err("someone else's");
        assert!(err.to_string().contains("belongs to uid"), "{err}");
        assert!(!tmp.path().join("metrics/main.prom").exists());
    }
}
