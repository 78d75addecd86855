//! The runner configs in use on this host, so that two runners' configs never share an identity
//! or a state directory. Root records each config's [`Footprint`] under `/run/berth/instances/`
//! at prepare, and refuses the job (SYSTEM) when its config claims anything another recorded
//! config claims: one runner's leases, reaper and teardown would otherwise act on the other's
//! jobs. A record is dropped once its config file is gone, and compared as that file says now.

use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_config::Config;
use berth_config::admin::Footprint;

use crate::StageError;

/// Where root records the configs in use (tmpfs: a reboot forgets them with their jobs).
pub const REGISTRY_DIR: &str = "/run/berth/instances";

const LOCK: &str = ".lock";

/// Records `config` as in use on this host, after checking it shares nothing with another
/// recorded config. Root only.
pub fn register(config: &Config) -> Result<(), StageError> {
    register_in(Path::new(REGISTRY_DIR), &config.footprint(), reload)
}

/// A recorded config as its file says now (None: the file no longer reads as a config).
fn reload(path: &Path) -> Option<Footprint> {
    Config::load(path).ok().map(|c| c.footprint())
}

/// How to give runners' configs nothing in common (for an error or the doctor).
pub const SEPARATE_CONFIGS: &str = "give each runner's berth config its own `user`, `job_users`, `state_dir` (and `runtime_dir`, if set): integration/host/setup-host.sh with BERTH_RUNNER_USER, BERTH_JOB_USER_PREFIX and BERTH_STATE_DIR creates them";

/// Each of `others` that shares something with `mine`, and what: `FILE shares the identities
/// a, b; the state directory (...)`.
pub fn conflicts(mine: &Footprint, others: &[Footprint]) -> Vec<String> {
    others
        .iter()
        .filter_map(|other| {
            let shared = mine.shared_with(other);
            (!shared.is_empty())
                .then(|| format!("{} shares {}", other.describe(), shared.join("; ")))
        })
        .collect()
}

/// The configs recorded on this host other than `mine`, as their files say now.
pub fn others(mine: &Footprint) -> Result<Vec<Footprint>, StageError> {
    let dir = Path::new(REGISTRY_DIR);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let (recorded, _) = read_records(dir, mine, &reload)?;
    Ok(recorded)
}

/// [`register`] in `dir`, reading a recorded config's current file with `reload`.
fn register_in(
    dir: &Path,
    mine: &Footprint,
    reload: impl Fn(&Path) -> Option<Footprint>,
) -> Result<(), StageError> {
    root_only_dir(dir)?;
    let lock_path = dir.join(LOCK);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&lock_path)
        .map_err(StageError::io(&lock_path))?;
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| StageError::io(&lock_path)(e.into()))?;
    let (others, stale) = read_records(dir, mine, &reload)?;
    for path in stale {
        let _ = std::fs::remove_file(path);
    }
    let conflicts = conflicts(mine, &others);
    if !conflicts.is_empty() {
        return Err(StageError::HostLacks {
            what: format!(
                "this runner's berth config, {}, shares what it must own alone with another runner's config on this host: {}",
                mine.describe(),
                conflicts.join(", ")
            ),
            fix: format!(
                "{SEPARATE_CONFIGS}; `berth doctor --config FILE` checks every config in /etc/berth/config.d"
            ),
        });
    }
    let name = record_name(mine);
    let text = serde_json::to_vec_pretty(mine)
        .map_err(|e| StageError::io(&dir.join(&name))(io::Error::other(e)))?;
    berth_beneath::Dir::open(dir)
        .and_then(|d| d.write_atomic(&name, &text, 0o600))
        .map_err(StageError::io(&dir.join(&name)))?;
    Ok(())
}

/// The file a footprint is recorded in: one per state directory.
fn record_name(footprint: &Footprint) -> String {
    format!(
        "{}.json",
        berth_config::admin::instance_of(&footprint.state_dir)
            .unwrap_or_else(|| "default".to_owned())
    )
}

/// The records other than `mine`'s, each as its config file says now (`reload`), and the paths
/// of records whose config file is gone.
fn read_records(
    dir: &Path,
    mine: &Footprint,
    reload: &dyn Fn(&Path) -> Option<Footprint>,
) -> Result<(Vec<Footprint>, Vec<PathBuf>), StageError> {
    let own = record_name(mine);
    let mut others = Vec::new();
    let mut stale = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(StageError::io(dir))?;
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            !name.starts_with('.') && name.ends_with(".json") && *name != own
        })
        .map(|e| e.path())
        .collect();
    paths.sort();
    for path in paths {
        let unreadable = |detail: String| StageError::HostLacks {
            what: format!(
                "the record of a runner config, {}, is unreadable: {detail}",
                path.display()
            ),
            fix: "remove it; berth records that config again at its next prepare".into(),
        };
        let meta = std::fs::symlink_metadata(&path).map_err(StageError::io(&path))?;
        if !meta.is_file() || meta.uid() != nix::unistd::geteuid().as_raw() {
            return Err(unreadable("not a file of berth's user".into()));
        }
        let text = std::fs::read(&path).map_err(StageError::io(&path))?;
        let recorded: Footprint =
            serde_json::from_slice(&text).map_err(|e| unreadable(e.to_string()))?;
        let current = match &recorded.config {
            Some(file) if !file.exists() => {
                stale.push(path);
                continue;
            }
            Some(file) => reload(file).unwrap_or(recorded),
            None => recorded,
        };
        others.push(current);
    }
    Ok((others, stale))
}

/// Makes `dir` berth's user's alone, refusing anything else in its place.
fn root_only_dir(dir: &Path) -> Result<(), StageError> {
    std::fs::create_dir_all(dir).map_err(StageError::io(dir))?;
    let meta = std::fs::symlink_metadata(dir).map_err(StageError::io(dir))?;
    if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(StageError::HostLacks {
            what: format!("{} is not a directory of berth's user", dir.display()),
            fix: "remove it; berth makes it again".into(),
        });
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(StageError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn footprint(config: Option<&Path>, user: &str, jobs: &[&str], state: &str) -> Footprint {
        Footprint {
            config: config.map(Path::to_owned),
            user: user.into(),
            job_users: jobs.iter().map(|j| (*j).to_owned()).collect(),
            state_dir: state.into(),
            runtime_dir: None,
        }
    }

    #[test]
    fn a_config_sharing_an_identity_with_a_recorded_one_is_refused_and_not_recorded() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("instances");
        let a = footprint(None, "runner-a", &["a-0", "a-1"], "/var/lib/berth");
        let b = footprint(None, "runner-b", &["b-0"], "/var/lib/berth-b");
        let c = footprint(None, "runner-c", &["c-0", "a-1"], "/var/lib/berth-c");
        let none = |_: &Path| None;
        register_in(&dir, &a, none).expect("a");
        register_in(&dir, &b, none).expect("b, sharing nothing");
        register_in(&dir, &a, none).expect("a again: its own record is not a conflict");
        let err = register_in(&dir, &c, none).expect_err("c shares a-1");
        let text = err.to_string();
        assert!(
            text.contains("the identities a-1") && text.contains("berth doctor"),
            "{text}"
        );
        assert_eq!(err.failure_kind(), crate::FailureKind::System);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let b_name = record_name(&b);
        assert_eq!(
            names,
            vec![".lock".to_owned(), "default.json".to_owned(), b_name]
        );
    }

    #[test]
    fn a_record_whose_config_file_is_gone_is_dropped_and_one_still_there_is_read_again() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("instances");
        let gone = tmp.path().join("gone.toml");
        let kept = tmp.path().join("kept.toml");
        std::fs::write(&gone, "").expect("gone");
        std::fs::write(&kept, "").expect("kept");
        let old = footprint(Some(&gone), "runner-x", &["x-0"], "/srv/x");
        let edited = footprint(Some(&kept), "runner-y", &["y-0"], "/srv/y");
        let none = |_: &Path| None;
        register_in(&dir, &old, none).expect("x");
        register_in(&dir, &edited, none).expect("y");
        std::fs::remove_file(&gone).expect("rm");
        // x's file is gone: its identities are free again.
        let new = footprint(None, "runner-x", &["x-0", "z-0"], "/srv/z");
        // y's file now names other identities than the record says.
        let reload =
            |p: &Path| (p == kept).then(|| footprint(Some(&kept), "runner-y", &["z-0"], "/srv/y"));
        let err = register_in(&dir, &new, reload).expect_err("z-0 is y's now");
        assert!(err.to_string().contains("the identities z-0"), "{err}");
        assert!(!dir.join(record_name(&old)).exists());
    }

    #[test]
    fn an_unreadable_record_fails_closed_and_names_the_file() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("instances");
        let a = footprint(None, "runner-a", &["a-0"], "/var/lib/berth");
        register_in(&dir, &a, |_| None).expect("a");
        std::fs::write(dir.join("sdeadbeef.json"), b"{\"user\": 1}").expect("corrupt");
        let b = footprint(None, "runner-b", &["b-0"], "/srv/b");
        let err = register_in(&dir, &b, |_| None).expect_err("corrupt record");
        assert!(
            err.to_string().contains("sdeadbeef.json") && err.to_string().contains("remove it"),
            "{err}"
        );
    }
}
