//! Who runs what: the store identity (owns the shared base store and the kept caches) and the
//! job identities (one per concurrent job, leased by prepare). An identity is a passwd entry
//! plus its subordinate id ranges from `/etc/subuid` and `/etc/subgid` (root-owned, trusted);
//! a job identity's processes are every process whose real uid is its uid or falls in its
//! subordinate range, which is how teardown finds them without guessing.

use std::ops::Range;
use std::path::Path;

/// Something is wrong with an identity's host setup.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No such user.
    #[error(
        "user {0:?} does not exist (fix: run integration/host/setup-host.sh, or change `user`/`job_users` in the berth config)"
    )]
    NoSuchUser(String),
    /// Looking the user up failed.
    #[error("cannot look up user {user:?}: {detail}")]
    Lookup {
        /// User.
        user: String,
        /// Cause.
        detail: String,
    },
    /// Root.
    #[error("{0:?} is root: jobs and the base store never belong to root")]
    Root(String),
    /// No subordinate range.
    #[error(
        "user {user:?} has no range in {file} (fix: run integration/host/setup-host.sh, which gives each identity its own range)"
    )]
    NoRange {
        /// User.
        user: String,
        /// The file.
        file: String,
    },
    /// Reading the file failed.
    #[error("cannot read {file}: {detail}")]
    Read {
        /// The file.
        file: String,
        /// Cause.
        detail: String,
    },
    /// Two identities overlap.
    #[error(
        "the subordinate ranges of {a:?} and {b:?} in {file} overlap, so their containers would share host ids (fix: give each its own range; setup-host.sh does)"
    )]
    Overlap {
        /// One user.
        a: String,
        /// The other.
        b: String,
        /// The file.
        file: String,
    },
}

/// One unprivileged identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User name.
    pub name: String,
    /// Uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Home directory from passwd.
    pub home: std::path::PathBuf,
    /// Subordinate uids.
    pub subuids: Range<u32>,
    /// Subordinate gids.
    pub subgids: Range<u32>,
}

/// The first range of `user` (by name or uid) in a subordinate-id file's text.
pub fn subordinate_range(text: &str, user: &str, uid: u32) -> Option<Range<u32>> {
    text.lines().find_map(|line| {
        let mut parts = line.trim().split(':');
        let owner = parts.next()?;
        let start: u32 = parts.next()?.parse().ok()?;
        let count: u32 = parts.next()?.parse().ok()?;
        (parts.next().is_none() && count > 0 && (owner == user || owner.parse::<u32>() == Ok(uid)))
            .then(|| start..start.saturating_add(count))
    })
}

fn read(file: &str) -> Result<String, IdentityError> {
    std::fs::read_to_string(file).map_err(|e| IdentityError::Read {
        file: file.to_owned(),
        detail: e.to_string(),
    })
}

impl Identity {
    /// Looks `name` up in passwd and the subordinate-id files.
    pub fn lookup(name: &str) -> Result<Self, IdentityError> {
        Self::lookup_in(name, Path::new("/etc/subuid"), Path::new("/etc/subgid"))
    }

    fn lookup_in(name: &str, subuid: &Path, subgid: &Path) -> Result<Self, IdentityError> {
        let user = nix::unistd::User::from_name(name)
            .map_err(|e| IdentityError::Lookup {
                user: name.to_owned(),
                detail: e.to_string(),
            })?
            .ok_or_else(|| IdentityError::NoSuchUser(name.to_owned()))?;
        if user.uid.is_root() {
            return Err(IdentityError::Root(name.to_owned()));
        }
        let uid = user.uid.as_raw();
        let range = |file: &Path| -> Result<Range<u32>, IdentityError> {
            let file = file.display().to_string();
            subordinate_range(&read(&file)?, name, uid).ok_or(IdentityError::NoRange {
                user: name.to_owned(),
                file,
            })
        };
        Ok(Self {
            name: name.to_owned(),
            uid,
            gid: user.gid.as_raw(),
            home: user.dir,
            subuids: range(subuid)?,
            subgids: range(subgid)?,
        })
    }

    /// Its `/run/user/UID` (`XDG_RUNTIME_DIR`).
    pub fn runtime_home(&self) -> std::path::PathBuf {
        Path::new("/run/user").join(self.uid.to_string())
    }

    /// Whether a process or file with host uid `uid` belongs to this identity.
    pub fn owns_uid(&self, uid: u32) -> bool {
        uid == self.uid || self.subuids.contains(&uid)
    }

    /// The idmapping that shows what `store` owns on disk as owned by this identity: its uid
    /// and primary gid, and its subordinate ranges, matched from their starts.
    pub fn mapping_from(&self, store: &Self) -> IdMap {
        let pair = |from: &Range<u32>, to: &Range<u32>| {
            let count = from.len().min(to.len());
            (
                from.start,
                to.start,
                u32::try_from(count).unwrap_or(u32::MAX),
            )
        };
        IdMap {
            uids: vec![
                (store.uid, self.uid, 1),
                pair(&store.subuids, &self.subuids),
            ],
            gids: vec![
                (store.gid, self.gid, 1),
                pair(&store.subgids, &self.subgids),
            ],
        }
    }
}

/// Fails when two identities' subordinate ranges overlap (their containers would share ids).
pub fn check_disjoint(identities: &[Identity]) -> Result<(), IdentityError> {
    for (i, a) in identities.iter().enumerate() {
        for b in &identities[i + 1..] {
            let overlaps = |x: &Range<u32>, y: &Range<u32>| x.start < y.end && y.start < x.end;
            let clash = |x: &Identity, y: &Identity| {
                overlaps(&x.subuids, &y.subuids)
                    || y.subuids.contains(&x.uid)
                    || x.subuids.contains(&y.uid)
            };
            if clash(a, b) {
                return Err(IdentityError::Overlap {
                    a: a.name.clone(),
                    b: b.name.clone(),
                    file: "/etc/subuid".into(),
                });
            }
            if overlaps(&a.subgids, &b.subgids) {
                return Err(IdentityError::Overlap {
                    a: a.name.clone(),
                    b: b.name.clone(),
                    file: "/etc/subgid".into(),
                });
            }
        }
    }
    Ok(())
}

/// An id mapping for an idmapped mount: `(on disk, shown as, count)` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    /// Uid lines.
    pub uids: Vec<(u32, u32, u32)>,
    /// Gid lines.
    pub gids: Vec<(u32, u32, u32)>,
}

impl IdMap {
    /// The text for `/proc/PID/{uid,gid}_map` of a user namespace whose ids inside are the
    /// ids on disk and whose ids outside are the ids shown.
    pub fn proc_map(lines: &[(u32, u32, u32)]) -> String {
        lines
            .iter()
            .map(|(inside, outside, count)| format!("{inside} {outside} {count}\n"))
            .collect()
    }
}

/// Real uid of a running process, from `/proc/PID/status` (None for a zombie: it holds
/// nothing but its pid, and only its parent can take that).
pub fn process_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let zombie = status
        .lines()
        .find_map(|l| l.strip_prefix("State:"))
        .is_some_and(|s| s.trim_start().starts_with('Z'));
    if zombie {
        return None;
    }
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Every process on the host that belongs to `identity` (by real uid).
pub fn processes_of(identity: &Identity) -> Vec<u32> {
    crate::process::pids()
        .filter(|pid| process_uid(*pid).is_some_and(|uid| identity.owns_uid(uid)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(name: &str, uid: u32, sub: u32) -> Identity {
        Identity {
            name: name.into(),
            uid,
            gid: uid,
            home: "/nonexistent".into(),
            subuids: sub..sub + 1000,
            subgids: sub..sub + 1000,
        }
    }

    #[test]
    fn subordinate_ranges_are_read_by_name_or_uid() {
        let text = "berth-runner:100000:1000000\n1001:2000000:65536\nbad line\n";
        assert_eq!(
            subordinate_range(text, "berth-runner", 999),
            Some(100_000..1_100_000)
        );
        assert_eq!(
            subordinate_range(text, "berth-job-0", 1001),
            Some(2_000_000..2_065_536)
        );
        assert_eq!(subordinate_range(text, "other", 5), None);
    }

    #[test]
    fn the_mapping_shows_the_stores_ids_as_the_jobs() {
        let store = identity("store", 999, 100_000);
        let job = identity("job", 1001, 5_000_000);
        let map = job.mapping_from(&store);
        assert_eq!(map.uids, vec![(999, 1001, 1), (100_000, 5_000_000, 1000)]);
        assert_eq!(
            IdMap::proc_map(&map.uids),
            "999 1001 1\n100000 5000000 1000\n"
        );
    }

    #[test]
    fn overlapping_ranges_are_refused() {
        let a = identity("a", 1001, 100_000);
        let b = identity("b", 1002, 100_500);
        assert!(matches!(
            check_disjoint(&[a.clone(), b]),
            Err(IdentityError::Overlap { .. })
        ));
        let c = identity("c", 1003, 200_000);
        assert!(check_disjoint(&[a, c]).is_ok());
    }

    #[test]
    fn an_identity_owns_its_uid_and_its_subordinate_range_only() {
        let job = identity("job", 1001, 5_000_000);
        assert!(job.owns_uid(1001));
        assert!(job.owns_uid(5_000_999));
        assert!(!job.owns_uid(5_001_000));
        assert!(!job.owns_uid(0));
    }
}
