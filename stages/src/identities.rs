//! Root's part of running jobs under identities of their own: which job leases which identity,
//! what root makes for that identity before berth drops to it (its runtime directory, the job
//! directory with the identity's `work/`, the read-only idmapped view of the base store, the
//! idmapped mounts of the project's kept caches, the job's cgroup), and what root undoes after
//! teardown. Leases live in a directory only root reads or writes; a lease is released only
//! once no process of the identity is left, so a new job never meets an old job's processes.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_config::Config;
use berth_sandbox::identity::{Identity, check_disjoint};
use berth_sandbox::paths::{JobPaths, RUN_ROOT};
use berth_sandbox::process;

use crate::outcome::Invocation;
use crate::{Job, StageError};

/// The store identity and the job identities of a host started as root.
#[derive(Debug, Clone)]
pub struct Identities {
    /// Owns the base store and the kept caches.
    pub store: Identity,
    /// One per concurrent job.
    pub jobs: Vec<Identity>,
}

fn user_error(user: &str) -> impl FnOnce(berth_sandbox::identity::IdentityError) -> StageError {
    let user = user.to_owned();
    move |e| StageError::User {
        user,
        detail: e.to_string(),
    }
}

impl Identities {
    /// Looks every configured identity up and checks that no two share ids.
    pub fn load(config: &Config) -> Result<Self, StageError> {
        let store = Identity::lookup(&config.user).map_err(user_error(&config.user))?;
        let jobs = config
            .job_users
            .iter()
            .map(|name| Identity::lookup(name).map_err(user_error(name)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut all = vec![store.clone()];
        all.extend(jobs.iter().cloned());
        check_disjoint(&all).map_err(user_error(&config.user))?;
        Ok(Self { store, jobs })
    }

    /// The job identity called `name`.
    pub fn job(&self, name: &str) -> Option<&Identity> {
        self.jobs.iter().find(|j| j.name == name)
    }
}

/// The leases: one file per leased identity, named after it, holding the job key.
#[derive(Debug, Clone)]
pub struct Leases {
    dir: PathBuf,
}

impl Leases {
    /// The lease directory of `config` (created, root's alone).
    pub fn open(config: &Config) -> Result<Self, StageError> {
        let dir = config.leases_dir();
        root_dir(&dir, 0o700)?;
        Ok(Self { dir })
    }

    /// Every lease: (identity, job key).
    pub fn all(&self) -> Vec<(String, String)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<(String, String)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                if name.starts_with('.') {
                    return None;
                }
                let key = std::fs::read_to_string(e.path()).ok()?;
                Some((name, key.trim().to_owned()))
            })
            .collect();
        out.sort();
        out
    }

    /// The identity job `key` holds.
    pub fn holder(&self, key: &str) -> Option<String> {
        self.all()
            .into_iter()
            .find_map(|(user, k)| (k == key).then_some(user))
    }

    /// Leases a free identity to job `key` (the one it already holds, on a retried prepare).
    pub fn claim(&self, identities: &Identities, key: &str) -> Result<Identity, StageError> {
        if let Some(held) = self.holder(key).and_then(|u| identities.job(&u).cloned()) {
            return Ok(held);
        }
        // Round robin: an identity just released is the last to be leased again.
        let next_path = self.dir.join(".next");
        let start = std::fs::read_to_string(&next_path)
            .ok()
            .and_then(|t| t.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let count = identities.jobs.len();
        for offset in 0..count {
            let index = (start + offset) % count;
            let identity = &identities.jobs[index];
            let path = self.dir.join(&identity.name);
            let created = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path);
            match created {
                Ok(mut file) => {
                    use std::io::Write;
                    file.write_all(key.as_bytes())
                        .map_err(StageError::io(&path))?;
                    let _ = std::fs::write(&next_path, ((index + 1) % count).to_string());
                    return Ok(identity.clone());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(StageError::io(&path)(e)),
            }
        }
        Err(StageError::HostLacks {
            what: format!(
                "all {} job identities are leased to running jobs",
                identities.jobs.len()
            ),
            fix: "raise `job_users` in the berth config (run setup-host.sh with BERTH_JOB_SLOTS to create more), or lower the runner's `concurrent`".into(),
        })
    }

    /// How long ago `user` was leased.
    pub fn age(&self, user: &str) -> Option<std::time::Duration> {
        let modified = std::fs::metadata(self.dir.join(user))
            .ok()?
            .modified()
            .ok()?;
        std::time::SystemTime::now().duration_since(modified).ok()
    }

    /// Ends the lease of `user`.
    pub fn release(&self, user: &str) -> Result<(), StageError> {
        let path = self.dir.join(user);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StageError::io(&path)(e)),
            _ => Ok(()),
        }
    }
}

/// Creates `dir` as root's with `mode`, refusing anything else in its place.
fn root_dir(dir: &Path, mode: u32) -> Result<(), StageError> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() && meta.uid() == 0 => {}
        Ok(_) => {
            return Err(StageError::HostLacks {
                what: format!("{} is not a directory of root's", dir.display()),
                fix: "remove it and run setup-host.sh again".into(),
            });
        }
        Err(_) => std::fs::create_dir_all(dir).map_err(StageError::io(dir))?,
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(StageError::io(dir))
}

/// Creates `dir` as root's with group `gid` and `mode`: reachable by that one identity's group,
/// by no other identity.
fn root_dir_for_group(dir: &Path, gid: u32, mode: u32) -> Result<(), StageError> {
    root_dir(dir, mode)?;
    nix::unistd::chown(dir, None, Some(nix::unistd::Gid::from_raw(gid)))
        .map_err(|e| StageError::io(dir)(e.into()))
}

/// Creates `dir` (its parent must be root's) owned by `identity` with `mode`.
fn owned_dir(dir: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), StageError> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta = std::fs::symlink_metadata(dir).map_err(StageError::io(dir))?;
            if !meta.is_dir() {
                return Err(StageError::io(dir)(io::Error::other(
                    "exists and is not a directory",
                )));
            }
        }
        Err(e) => return Err(StageError::io(dir)(e)),
    }
    nix::unistd::chown(
        dir,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .map_err(|e| StageError::io(dir)(e.into()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(StageError::io(dir))
}

/// The read-only view of the base store for `identity`.
pub fn base_view(identity: &Identity) -> PathBuf {
    Path::new(RUN_ROOT).join("base").join(&identity.name)
}

/// The kept caches a job mounts: (on disk, mount point, mode of a new one).
pub fn kept_caches(
    paths: &JobPaths,
    cache: &Path,
    buildkit_cache: Option<&Path>,
    scan_cache: &Path,
) -> Vec<(PathBuf, PathBuf, u32)> {
    let mut out = vec![
        // Non-root users in job images must be able to write /cache, as with Docker.
        (cache.to_owned(), paths.cache_mount(), 0o777),
        (scan_cache.to_owned(), paths.scan_cache_mount(), 0o700),
    ];
    if let Some(bk) = buildkit_cache {
        out.push((bk.to_owned(), paths.buildkit_cache_mount(), 0o700));
    }
    out
}

/// Root, before dropping to `identity` for prepare: its runtime directory, the job directory
/// with its `work/`, the base-store view and the kept caches' mounts.
pub fn prepare_host(
    config: &Config,
    identities: &Identities,
    identity: &Identity,
    paths: &JobPaths,
    caches: &[(PathBuf, PathBuf, u32)],
) -> Result<(), StageError> {
    let store = &identities.store;
    let runtime = identity.runtime_home();
    // A shared directory: made when missing, never re-owned or re-moded.
    if !Path::new("/run/user").exists() {
        std::fs::create_dir_all("/run/user").map_err(StageError::io(Path::new("/run/user")))?;
    }
    owned_dir(&runtime, identity.uid, identity.gid, 0o700)?;
    root_dir(&config.jobs_dir(), 0o711)?;
    // Other identities must not even see what is in another job's directories.
    root_dir_for_group(&paths.job_dir, identity.gid, 0o750)?;
    owned_dir(&paths.work(), identity.uid, identity.gid, 0o700)?;
    for lock in ["pull.lock", "gc.lock"] {
        let dir = config.state_dir.join("locks");
        root_dir(&dir, 0o755)?;
        let path = dir.join(lock);
        if !path.exists() {
            std::fs::write(&path, b"").map_err(StageError::io(&path))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                .map_err(StageError::io(&path))?;
        }
    }
    root_dir(Path::new(RUN_ROOT), 0o755)?;
    root_dir(&Path::new(RUN_ROOT).join("base"), 0o755)?;
    root_dir(&Path::new(RUN_ROOT).join("jobs"), 0o755)?;
    let view = base_view(identity);
    let store_dir = config.image_store();
    owned_dir(&store_dir, store.uid, store.gid, 0o700)?;
    if !berth_sandbox::idmap::is_mounted_from(&store_dir, &view) {
        berth_sandbox::idmap::unmount(&view).map_err(StageError::io(&view))?;
        root_dir(&view, 0o755)?;
        berth_sandbox::idmap::mount(&store_dir, &view, &identity.mapping_from(store), true)
            .map_err(|e| StageError::HostLacks {
                what: format!("cannot show the base store to job identity {}: {e}", identity.name),
                fix: "berth needs idmapped mounts (Linux 5.19 or later, an ext4, xfs or btrfs state_dir); see `berth doctor`".into(),
            })?;
    }
    root_dir_for_group(&paths.mounts_dir, identity.gid, 0o750)?;
    let map = identity.mapping_from(store);
    for (source, target, mode) in caches {
        if let Some(parent) = source.parent() {
            owned_dir(parent, store.uid, store.gid, 0o700)?;
        }
        if !source.exists() {
            owned_dir(source, store.uid, store.gid, *mode)?;
        }
        // Its last use, for pruning: the directory itself, which no job can replace.
        touch(source);
        if berth_sandbox::idmap::is_mounted_from(source, target) {
            continue;
        }
        root_dir(target, 0o755)?;
        berth_sandbox::idmap::mount(source, target, &map, false).map_err(StageError::io(target))?;
    }
    Ok(())
}

/// Sets a directory's times to now without following a link in its place.
fn touch(dir: &Path) {
    let _ = nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        dir,
        &nix::sys::time::TimeSpec::UTIME_NOW,
        &nix::sys::time::TimeSpec::UTIME_NOW,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    );
}

/// Root, after teardown (or for a lease whose job is gone): ends every process the identity
/// still owns, unmounts the job's cache views, removes root's files and the directories
/// teardown emptied, empties the identity's runtime directory, then ends the lease. Root
/// deletes nothing the job identity could have written: a `work/` teardown could not empty
/// stays, and so does the lease, for the next `berth reap` to tear down again. Gathers every
/// error.
pub async fn release_host(
    leases: &Leases,
    identity: &Identity,
    paths: &JobPaths,
) -> Vec<StageError> {
    let mut errors = Vec::new();
    berth_sandbox::podman::stop_identity(identity).await;
    process::as_root(|| {
        let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
        let mut remove = |result: io::Result<()>, path: &Path| {
            if let Err(e) = result
                && !gone(&e)
            {
                errors.push(StageError::io(path)(e));
            }
        };
        if let Ok(entries) = std::fs::read_dir(&paths.mounts_dir) {
            for entry in entries.flatten() {
                let target = entry.path();
                remove(berth_sandbox::idmap::unmount(&target), &target);
                remove(std::fs::remove_dir(&target), &target);
            }
        }
        remove(std::fs::remove_dir(&paths.mounts_dir), &paths.mounts_dir);
        for root_file in [
            paths.state_file(),
            paths.built_images_record(),
            paths.hosts_file(),
        ] {
            remove(std::fs::remove_file(&root_file), &root_file);
        }
        for dir in [paths.work(), paths.job_dir.clone()] {
            remove(std::fs::remove_dir(&dir), &dir);
        }
    });
    if let Err(e) = berth_sandbox::podman::wipe_runtime_home(identity).await {
        errors.push(StageError::Sandbox(e));
    }
    let left = berth_sandbox::identity::processes_of(identity)
        .into_iter()
        .filter(|p| *p != std::process::id())
        .count();
    if left > 0 {
        errors.push(StageError::Sandbox(
            berth_sandbox::SandboxError::Leftovers {
                identity: identity.name.clone(),
                processes: left,
            },
        ));
    }
    if errors.is_empty()
        && let Err(e) = process::as_root(|| leases.release(&identity.name))
    {
        errors.push(e);
    }
    errors
}

/// On cgroup v1 hosts rootless Podman cannot enforce limits; berth, still root, creates a cgroup
/// for the job (see `berth_sandbox::cgroups`) that its stage processes join before they start
/// anything, so the job's Podman and all it starts are inside. Returns whether it did.
pub fn create_job_cgroup(job: &Job, identity: &Identity) -> bool {
    let limits = &job.config.limits;
    let wanted = limits.cpus.is_some() || limits.memory_bytes.is_some() || limits.pids.is_some();
    if !wanted || !berth_sandbox::cgroups::v1_available() {
        return false;
    }
    match berth_sandbox::cgroups::create(&job.paths.host_name, limits, identity.uid, identity.gid) {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!("per-job limits not enforced: cannot create the job's cgroup: {e}");
            false
        }
    }
}

/// What root does for the job before berth drops to `identity` for `invocation`: at prepare, the host side of the
/// job ([`prepare_host`]), a clean identity (whatever an earlier failure left of it, processes
/// and files in its runtime directory, goes first) and the job's cgroup; at prepare and run,
/// joining that cgroup, so everything the job's Podman starts from here on (service, conmon,
/// containers, build steps, BuildKit) is inside the job's limits.
pub async fn enter_job(
    job: &Job,
    identities: &Identities,
    identity: &Identity,
    invocation: &Invocation<'_>,
    log: &mut crate::JobLog,
) -> Result<(), StageError> {
    if let Invocation::Prepare = invocation {
        prepare_host(
            &job.config,
            identities,
            identity,
            &job.paths,
            &job.kept_caches(),
        )?;
        berth_sandbox::podman::stop_identity(identity).await;
        berth_sandbox::podman::wipe_runtime_home(identity).await?;
        create_job_cgroup(job, identity);
    }
    if matches!(invocation, Invocation::Prepare | Invocation::Run { .. })
        && let Err(e) = berth_sandbox::cgroups::join(&job.paths.host_name)
    {
        log.warn(&format!(
            "per-job limits not enforced: cannot join the job's cgroup: {e}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(name: &str, uid: u32) -> Identity {
        Identity {
            name: name.into(),
            uid,
            gid: uid,
            home: "/nonexistent".into(),
            subuids: uid * 1000..uid * 1000 + 100,
            subgids: uid * 1000..uid * 1000 + 100,
        }
    }

    #[test]
    fn each_identity_is_leased_once_and_a_retry_keeps_its_own() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let leases = Leases {
            dir: tmp.path().to_owned(),
        };
        let ids = Identities {
            store: identity("store", 10),
            jobs: vec![identity("job-0", 20), identity("job-1", 21)],
        };
        assert_eq!(leases.claim(&ids, "a").expect("a").name, "job-0");
        assert_eq!(leases.claim(&ids, "b").expect("b").name, "job-1");
        assert_eq!(leases.claim(&ids, "a").expect("retry").name, "job-0");
        let full = leases.claim(&ids, "c").expect_err("none left");
        assert!(full.to_string().contains("job_users"), "{full}");
        assert_eq!(leases.holder("b").as_deref(), Some("job-1"));
        leases.release("job-0").expect("release");
        assert_eq!(leases.claim(&ids, "c").expect("c").name, "job-0");
        assert_eq!(
            leases.all(),
            vec![("job-0".into(), "c".into()), ("job-1".into(), "b".into())]
        );
        // Round robin: with both free, the one after the last leased comes first.
        leases.release("job-0").expect("release");
        leases.release("job-1").expect("release");
        assert_eq!(leases.claim(&ids, "d").expect("d").name, "job-1");
    }
}
