//! Per-job limits on cgroup v1 hosts. Rootless Podman cannot set limits there, but root can:
//! berth (still root) creates `/sys/fs/cgroup/{memory,pids,cpu}/berth/<key>` with the limits
//! and its prepare and run processes join it before they start anything. The job's Podman
//! service, conmon, every container (also those started through the build socket), build RUN
//! steps and BuildKit inherit it, so the limits hold for the whole job; root never reads a pid
//! from anywhere the job can write.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_config::admin::Limits;

const ROOT: &str = "/sys/fs/cgroup";
const PERIOD_US: u64 = 100_000;

/// Limit files per controller for `limits`.
fn settings(limits: &Limits) -> Vec<(&'static str, &'static str, String)> {
    let mut out = Vec::new();
    if let Some(bytes) = limits.memory_bytes {
        out.push(("memory", "memory.limit_in_bytes", bytes.to_string()));
    }
    if let Some(pids) = limits.pids {
        out.push(("pids", "pids.max", pids.to_string()));
    }
    if let Some(cpus) = limits.cpus {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "cpus is validated positive and finite; quotas are far below 2^52"
        )]
        let quota = (cpus * PERIOD_US as f64).round() as u64;
        out.push(("cpu", "cpu.cfs_period_us", PERIOD_US.to_string()));
        out.push(("cpu", "cpu.cfs_quota_us", quota.to_string()));
    }
    out
}

fn dir(controller: &str, key: &str) -> PathBuf {
    Path::new(ROOT).join(controller).join("berth").join(key)
}

/// Whether this host has cgroup v1 controllers mounted where berth expects them.
pub fn v1_available() -> bool {
    ["memory", "pids", "cpu"]
        .iter()
        .all(|c| Path::new(ROOT).join(c).join("cgroup.procs").exists())
}

/// Creates the job's cgroups with `limits`, owned by `uid:gid`. Returns the directories. Needs root.
pub fn create(key: &str, limits: &Limits, uid: u32, gid: u32) -> io::Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for (controller, file, value) in settings(limits) {
        let d = dir(controller, key);
        if !dirs.contains(&d) {
            std::fs::create_dir_all(&d)?;
            for owned in [d.clone(), d.join("cgroup.procs"), d.join("tasks")] {
                nix::unistd::chown(
                    &owned,
                    Some(nix::unistd::Uid::from_raw(uid)),
                    Some(nix::unistd::Gid::from_raw(gid)),
                )
                .map_err(io::Error::from)?;
            }
            dirs.push(d.clone());
        }
        std::fs::write(d.join(file), value)?;
    }
    Ok(dirs)
}

/// Moves the calling process into the job's cgroups (those that exist), so that everything it
/// starts from then on is inside the job's limits. Needs root or the cgroup's owner.
pub fn join(key: &str) -> io::Result<()> {
    for controller in ["memory", "pids", "cpu"] {
        let procs = dir(controller, key).join("cgroup.procs");
        if procs.exists() {
            std::fs::write(&procs, std::process::id().to_string())
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", procs.display())))?;
        }
    }
    Ok(())
}

/// Keys of the job cgroups that exist (any controller) and belong to one of `owners` (a job's
/// cgroups are its identity's: [`create`]), so one runner config never sees another's.
pub fn job_keys_owned_by(owners: &[u32]) -> Vec<String> {
    let mut keys: Vec<String> = ["memory", "pids", "cpu"]
        .iter()
        .flat_map(|c| {
            std::fs::read_dir(Path::new(ROOT).join(c).join("berth"))
                .into_iter()
                .flatten()
        })
        .flatten()
        .filter(|e| {
            std::fs::symlink_metadata(e.path())
                .is_ok_and(|m| m.is_dir() && owners.contains(&m.uid()))
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Removes the job's cgroups and any child cgroups a runtime made in them (they must hold no
/// process). Missing ones are fine.
pub fn remove(key: &str) -> Vec<io::Error> {
    let mut errors = Vec::new();
    for controller in ["memory", "pids", "cpu"] {
        remove_tree(&dir(controller, key), &mut errors);
    }
    errors
}

fn remove_tree(d: &Path, errors: &mut Vec<io::Error>) {
    if let Ok(entries) = std::fs::read_dir(d) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path(), errors);
            }
        }
    }
    if let Err(e) = std::fs::remove_dir(d)
        && e.kind() != io::ErrorKind::NotFound
    {
        errors.push(io::Error::new(e.kind(), format!("{}: {e}", d.display())));
    }
}

/// The pids limit file of job `key`, if the job has one.
pub fn pids_max_file(key: &str) -> PathBuf {
    dir("pids", key).join("pids.max")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_map_to_v1_files() {
        let s = settings(&Limits {
            cpus: Some(1.5),
            memory_bytes: Some(256 << 20),
            pids: Some(100),
        });
        assert!(s.contains(&(
            "memory",
            "memory.limit_in_bytes",
            (256u64 << 20).to_string()
        )));
        assert!(s.contains(&("pids", "pids.max", "100".into())));
        assert!(s.contains(&("cpu", "cpu.cfs_quota_us", "150000".into())));
        assert!(
            settings(&Limits {
                cpus: None,
                memory_bytes: None,
                pids: None
            })
            .is_empty()
        );
    }
}
