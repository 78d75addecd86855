//! `berth cleanup`: remove everything the job created, trying every step and gathering every
//! error. Idempotent: fine twice, fine after a prepare that failed half-way or never ran.

use std::path::Path;

use berth_sandbox::Sandbox;

use crate::identities::Leases;
use crate::{Job, JobLog, Outcome, StageError};

/// Removes the job. Returns every error met; an empty list means nothing of the job is left.
pub async fn cleanup<S: Sandbox>(job: &Job, sandbox: &S, log: &mut JobLog) -> Vec<StageError> {
    let errors: Vec<StageError> = sandbox
        .teardown()
        .await
        .into_iter()
        .map(StageError::from)
        .collect();
    for e in &errors {
        log.warn(&format!("cleanup of job {}: {e}", job.key));
    }
    errors
}

/// `berth cleanup`: the job's sandbox, then (with a job identity) its lease and the job's cgroup,
/// as root. Every step is tried; the outcome counts what failed.
pub async fn cleanup_job<S: Sandbox>(job: &Job, sandbox: &S, log: &mut JobLog) -> Outcome {
    let mut errors = cleanup(job, sandbox, log).await;
    if let Some(identity) = &job.host.job_identity {
        let released = match berth_sandbox::process::as_root(|| Leases::open(&job.config)) {
            Ok(leases) => crate::identities::release_host(&leases, identity, &job.paths).await,
            Err(e) => vec![e],
        };
        for e in &released {
            log.warn(&format!("releasing job identity {}: {e}", identity.name));
        }
        errors.extend(released);
    }
    for e in
        berth_sandbox::process::as_root(|| berth_sandbox::cgroups::remove(&job.paths.host_name))
    {
        log.warn(&format!("removing the job's cgroup: {e}"));
        errors.push(StageError::io(Path::new("/sys/fs/cgroup"))(e));
    }
    if errors.is_empty() {
        Outcome::Success
    } else {
        Outcome::CleanupIncomplete(errors.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_config::{Config, ContractEnv};
    use berth_sandbox::fake::{Call, FakeBehaviour, FakeSandbox};

    fn job(dir: &Path) -> Job {
        let text = format!("state_dir = \"{}\"\n", dir.display());
        let config = Config::parse(&text, None).expect("config");
        let env = ContractEnv::from_vars([(
            "CUSTOM_ENV_CI_RUNNER_SHORT_TOKEN".to_owned(),
            "t".to_owned(),
        )]);
        let host = crate::context::HostFacts {
            runtime_dir: dir.join("run"),
            ..crate::context::HostFacts::default()
        };
        Job::new(
            config,
            env,
            r#"{"id": 5, "image": {"name": "alpine:3"}}"#,
            host,
        )
        .expect("job")
    }

    #[tokio::test]
    async fn cleanup_tears_down_and_counts_every_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let job = job(dir.path());
        let mut log = JobLog::new(Box::new(std::io::sink()), Vec::new());
        for (errors, outcome) in [(0, Outcome::Success), (3, Outcome::CleanupIncomplete(3))] {
            let fake = FakeSandbox::new(FakeBehaviour {
                teardown_errors: errors,
                ..FakeBehaviour::default()
            });
            assert_eq!(cleanup_job(&job, &fake, &mut log).await, outcome);
            assert_eq!(fake.calls(), [Call::Teardown]);
        }
    }
}
