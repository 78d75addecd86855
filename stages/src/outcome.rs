//! How an invocation ended and the one mapping from that to the exit code gitlab-runner reads:
//! success, the user's script failing (BUILD), a cancelled stage, or berth's own failure
//! (BUILD or SYSTEM by [`StageError::failure_kind`]).

use std::path::Path;

use berth_sandbox::{Cancel, Sandbox};
use tokio::io::AsyncWrite;

use crate::{FailureKind, Job, JobLog, RunOutcome, StageError};

/// One of the job stages gitlab-runner invokes, with what it hands berth.
#[derive(Debug, Clone, Copy)]
pub enum Invocation<'a> {
    /// `berth prepare`.
    Prepare,
    /// `berth run <script> <stage>`.
    Run {
        /// The stage's name.
        stage: &'a str,
        /// The script's bytes.
        script: &'a [u8],
        /// `BUILD_EXIT_CODE_FILE`, where a failed script's code goes.
        build_exit_code_file: Option<&'a Path>,
    },
    /// `berth cleanup`.
    Cleanup,
}

/// Runs one invocation of the job on `sandbox`, as the binary does after it has dropped to the
/// job's identity; `cancel` is gitlab-runner's SIGTERM.
pub async fn invoke<S: Sandbox>(
    invocation: Invocation<'_>,
    job: &Job,
    sandbox: &S,
    out: &mut (dyn AsyncWrite + Unpin + Send),
    cancel: &Cancel,
    log: &mut JobLog,
) -> Result<Outcome, StageError> {
    match invocation {
        Invocation::Prepare => {
            tokio::select! {
                r = crate::prepare::prepare(job, sandbox, log) => r.map(|()| Outcome::Success),
                () = cancel.cancelled() => {
                    log.warn("prepare cancelled by gitlab-runner (job cancel or timeout)");
                    Ok(Outcome::Cancelled(None))
                }
            }
        }
        Invocation::Run {
            stage,
            script,
            build_exit_code_file,
        } => {
            let outcome = crate::run::run(job, sandbox, stage, script, out, cancel).await?;
            if let (RunOutcome::ScriptFailed(c) | RunOutcome::Cancelled(c), Some(file)) =
                (outcome, build_exit_code_file)
            {
                crate::run::record_exit_code(file, c, log);
            }
            Ok(outcome.into())
        }
        Invocation::Cleanup => Ok(crate::cleanup::cleanup_job(job, sandbox, log).await),
    }
}

/// How a stage ended, short of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Success,
    /// The user's script exited with this non-zero code.
    ScriptFailed(i32),
    /// gitlab-runner cancelled the stage (job cancel or timeout); the script, if one ran, was
    /// stopped and ended with this code.
    Cancelled(Option<i32>),
    /// Cleanup tried every step, and this many failed (each already logged).
    CleanupIncomplete(usize),
}

impl From<RunOutcome> for Outcome {
    fn from(run: RunOutcome) -> Self {
        match run {
            RunOutcome::Success => Self::Success,
            RunOutcome::ScriptFailed(code) => Self::ScriptFailed(code),
            RunOutcome::Cancelled(code) => Self::Cancelled(Some(code)),
        }
    }
}

/// The exit codes gitlab-runner asked for (`BUILD_FAILURE_EXIT_CODE`, `SYSTEM_FAILURE_EXIT_CODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitCodes {
    /// The user's job failed.
    pub build: i32,
    /// The infrastructure failed.
    pub system: i32,
}

/// The one place an ending becomes an exit code. A cancelled script ends as the script it was
/// (a build failure, as with the Docker executor); a stage cancelled before any script ran
/// (prepare) never got to the user's work, so it is the infrastructure's.
pub fn exit_code(ending: &Result<Outcome, StageError>, codes: ExitCodes) -> i32 {
    match ending {
        Ok(Outcome::Success) => 0,
        Ok(Outcome::ScriptFailed(_) | Outcome::Cancelled(Some(_))) => codes.build,
        Ok(Outcome::Cancelled(None) | Outcome::CleanupIncomplete(_)) => codes.system,
        Err(e) => match e.failure_kind() {
            FailureKind::Build => codes.build,
            FailureKind::System => codes.system,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODES: ExitCodes = ExitCodes {
        build: 7,
        system: 9,
    };

    #[test]
    fn every_ending_has_its_code() {
        let cases: [(Result<Outcome, StageError>, i32); 7] = [
            (Ok(Outcome::Success), 0),
            (Ok(Outcome::ScriptFailed(3)), 7),
            (Ok(Outcome::Cancelled(Some(143))), 7),
            (Ok(Outcome::Cancelled(None)), 9),
            (Ok(Outcome::CleanupIncomplete(2)), 9),
            (
                Err(StageError::ImageNotAllowed {
                    kind: "image",
                    image: "x".into(),
                    allowed: vec![],
                    key: "allowed_images",
                }),
                7,
            ),
            (
                Err(StageError::Contract {
                    what: "JOB_RESPONSE_FILE".into(),
                    detail: "unset".into(),
                }),
                9,
            ),
        ];
        for (ending, code) in cases {
            assert_eq!(exit_code(&ending, CODES), code, "{ending:?}");
        }
    }

    #[test]
    fn a_script_outcome_keeps_its_code() {
        assert_eq!(
            Outcome::from(RunOutcome::Cancelled(143)),
            Outcome::Cancelled(Some(143))
        );
        assert_eq!(
            Outcome::from(RunOutcome::ScriptFailed(2)),
            Outcome::ScriptFailed(2)
        );
    }
}
