//! `berth reap`: remove what crashed or killed jobs left behind, without a database: every job
//! directory carries a state file naming the gitlab-runner process that owns it and a deadline.
//! A job whose runner still runs and whose deadline has not passed is never touched.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_sandbox::Sandbox;

use crate::StageError;
use crate::state::JobState;

/// Why a job counts as abandoned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Its runner process is gone.
    RunnerGone,
    /// Its deadline has passed.
    DeadlinePassed,
    /// No state file, and old enough not to be a prepare in progress.
    NoState,
    /// Leave it alone.
    Alive,
}

/// Decides about one job directory.
/// A job directory without a state file younger than `grace` may still be in early prepare.
pub fn judge(job_dir: &Path, now: SystemTime, grace: Duration) -> Verdict {
    match JobState::load(&job_dir.join("state.json")) {
        Ok(state) => {
            let now_unix = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            if state.deadline_unix < now_unix {
                Verdict::DeadlinePassed
            } else if state.runner.is_some_and(|r| !r.is_alive()) {
                Verdict::RunnerGone
            } else {
                Verdict::Alive
            }
        }
        Err(_) => {
            let age = std::fs::metadata(job_dir)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            if age > grace {
                Verdict::NoState
            } else {
                Verdict::Alive
            }
        }
    }
}

/// What one reap did.
#[derive(Debug, Default)]
pub struct ReapReport {
    /// Keys removed, with the reason.
    pub reaped: Vec<(String, Verdict)>,
    /// Keys left alone.
    pub kept: Vec<String>,
    /// Errors met.
    pub errors: Vec<StageError>,
}

/// Reaps abandoned jobs under `jobs_dir` except `skip` (the caller's own job).
pub async fn reap<S: Sandbox>(
    jobs_dir: &Path,
    skip: Option<&str>,
    grace: Duration,
    sandbox_for: impl Fn(&str) -> S,
) -> ReapReport {
    let mut report = ReapReport::default();
    let now = SystemTime::now();
    for key in berth_sandbox::podman::job_keys(jobs_dir) {
        if Some(key.as_str()) == skip {
            continue;
        }
        match judge(&jobs_dir.join(&key), now, grace) {
            Verdict::Alive => report.kept.push(key),
            verdict => {
                let errors = sandbox_for(&key).teardown().await;
                report
                    .errors
                    .extend(errors.into_iter().map(StageError::from));
                report.reaped.push((key, verdict));
            }
        }
    }
    report
}

/// Reaps abandoned jobs under `config` but `skip`, then what an early death left without a
/// job directory. Started as root (`identities` given), each job is torn down as the identity
/// it leased (`sandbox_for` builds its sandbox), then root removes what is root's and ends the
/// lease; leases whose job directory is gone (and older than `reap_grace`) are released once
/// their identity has no process left; cgroups of jobs that never got a directory go.
pub async fn reap_all(
    config: &berth_config::Config,
    identities: Option<&crate::identities::Identities>,
    skip: Option<&str>,
    log: &mut crate::JobLog,
    sandbox_for: impl Fn(
        &str,
        Option<&berth_sandbox::identity::Identity>,
    ) -> berth_sandbox::podman::PodmanSandbox,
) -> ReapReport {
    let leases = match identities {
        Some(_) => match crate::identities::Leases::open(config) {
            Ok(l) => Some(l),
            Err(e) => {
                let mut report = ReapReport::default();
                report.errors.push(e);
                return report;
            }
        },
        None => None,
    };
    let identity_of = |key: &str| match (identities, &leases) {
        (Some(ids), Some(leases)) => leases.holder(key).and_then(|u| ids.job(&u).cloned()),
        _ => None,
    };
    let grace = Duration::from_secs(config.reap_grace_secs);
    let mut report = reap(&config.jobs_dir(), skip, grace, |key| {
        sandbox_for(key, identity_of(key).as_ref())
    })
    .await;
    for (key, why) in &report.reaped {
        log.line(&format!("reaped {key}: {why:?}"));
        for e in berth_sandbox::process::as_root(|| berth_sandbox::cgroups::remove(key)) {
            log.warn(&format!("removing the cgroup of {key}: {e}"));
        }
    }
    // Cgroups of jobs whose directory never came to be (a prepare killed early): only those of
    // this config's job identities, since another runner's config on this host has its own.
    let owners: Vec<u32> = identities
        .map(|ids| ids.jobs.iter().map(|j| j.uid).collect())
        .unwrap_or_default();
    for key in berth_sandbox::cgroups::job_keys_owned_by(&owners) {
        if Some(key.as_str()) != skip && !config.jobs_dir().join(&key).exists() {
            let _ = berth_sandbox::process::as_root(|| berth_sandbox::cgroups::remove(&key));
        }
    }
    if let (Some(ids), Some(leases)) = (identities, &leases) {
        let jobs_dir = config.jobs_dir();
        for (user, key) in leases.all() {
            // A lease without a job directory younger than the grace may be a prepare in progress.
            let gone = report.reaped.iter().any(|(k, _)| *k == key)
                || (!jobs_dir.join(&key).exists() && leases.age(&user).is_some_and(|a| a > grace));
            if !gone || Some(key.as_str()) == skip {
                continue;
            }
            let Some(identity) = ids.job(&user) else {
                continue;
            };
            let paths = sandbox_for(&key, Some(identity)).paths().clone();
            report
                .errors
                .extend(crate::identities::release_host(leases, identity, &paths).await);
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ProcessIdentity, VERSION};

    const GRACE: Duration = Duration::from_secs(120);

    fn write_state(dir: &Path, runner: Option<ProcessIdentity>, deadline: u64) {
        std::fs::create_dir_all(dir).expect("mkdir");
        JobState {
            version: VERSION,
            key: "k".into(),
            runner,
            deadline_unix: deadline,
            helper: None,
            job: None,
            services: Vec::new(),
            prepared: true,
        }
        .save(&dir.join("state.json"))
        .expect("save");
    }

    /// Only abandoned jobs are torn down (through the sandbox the caller names for each), never
    /// the caller's own; every teardown error is kept.
    #[tokio::test]
    async fn reap_tears_down_abandoned_jobs_only_and_keeps_every_error() {
        use berth_sandbox::fake::{FakeBehaviour, FakeSandbox};
        use std::cell::RefCell;
        let tmp = tempfile::tempdir().expect("tempdir");
        let later = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("epoch")
            .as_secs()
            + 3600;
        let me = ProcessIdentity::of(std::process::id());
        write_state(&tmp.path().join("alive"), me, later);
        write_state(&tmp.path().join("late"), me, 1);
        write_state(&tmp.path().join("mine"), me, 1);
        let torn_down = RefCell::new(Vec::new());
        let report = reap(tmp.path(), Some("mine"), GRACE, |key| {
            torn_down.borrow_mut().push(key.to_owned());
            FakeSandbox::new(FakeBehaviour {
                teardown_errors: 2,
                ..FakeBehaviour::default()
            })
        })
        .await;
        assert_eq!(*torn_down.borrow(), ["late"]);
        assert_eq!(
            report.reaped,
            [("late".to_owned(), Verdict::DeadlinePassed)]
        );
        assert_eq!(report.kept, ["alive"]);
        assert_eq!(report.errors.len(), 2);
    }

    #[test]
    fn only_abandoned_jobs_are_judged_dead() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let now = SystemTime::now();
        let later = now.duration_since(UNIX_EPOCH).expect("epoch").as_secs() + 3600;
        let me = ProcessIdentity::of(std::process::id());
        write_state(&tmp.path().join("alive"), me, later);
        assert_eq!(judge(&tmp.path().join("alive"), now, GRACE), Verdict::Alive);
        let gone = me.map(|m| ProcessIdentity {
            start_ticks: m.start_ticks + 7,
            ..m
        });
        write_state(&tmp.path().join("gone"), gone, later);
        assert_eq!(
            judge(&tmp.path().join("gone"), now, GRACE),
            Verdict::RunnerGone
        );
        write_state(&tmp.path().join("late"), me, 1);
        assert_eq!(
            judge(&tmp.path().join("late"), now, GRACE),
            Verdict::DeadlinePassed
        );
        std::fs::create_dir_all(tmp.path().join("fresh")).expect("mkdir");
        assert_eq!(judge(&tmp.path().join("fresh"), now, GRACE), Verdict::Alive);
        assert_eq!(
            judge(
                &tmp.path().join("fresh"),
                now + Duration::from_secs(600),
                GRACE
            ),
            Verdict::NoState
        );
    }
}
