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
