//! `berth cleanup`: remove everything the job created, trying every step and gathering every
//! error. Idempotent: fine twice, fine after a prepare that failed half-way or never ran.

use berth_sandbox::Sandbox;

use crate::{Job, JobLog, StageError};

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
