//! `berth run <script> <stage>`: route the stage to the helper or the job container, stream its
//! output, and report how the script ended.

use std::time::{SystemTime, UNIX_EPOCH};

use berth_config::{RunStage, StageTarget};
use berth_sandbox::{Cancel, Sandbox, ScriptEnd};
use tokio::io::AsyncWrite;

use crate::state::JobState;
use crate::{Job, StageError};

/// How a stage's script ended. A failing script is a value, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Exit code 0.
    Success,
    /// The script exited with this non-zero code.
    ScriptFailed(i32),
    /// The stage was cancelled (SIGTERM from the runner); the script's processes were stopped.
    Cancelled(i32),
}

/// Copies refusals of the build socket proxy that happened during the stage into the job log.
async fn report_build_socket_refusals(job: &Job, out: &mut (dyn AsyncWrite + Unpin + Send)) {
    use tokio::io::AsyncWriteExt;
    let log = job.paths.build_socket_log();
    let Ok(text) = std::fs::read_to_string(&log) else {
        return;
    };
    let mark = log.with_extension("shown");
    let shown: usize = std::fs::read_to_string(&mark)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let Some(new) = text.get(shown..) else {
        return;
    };
    let masked: Vec<String> = job
        .payload
        .masked_values()
        .into_iter()
        .map(str::to_owned)
        .collect();
    for line in new.lines() {
        let line = crate::joblog::mask_text(line, &masked);
        let _ = out
            .write_all(format!("\x1b[0;33mberth build socket refused: {line}\x1b[0;m\n").as_bytes())
            .await;
    }
    let _ = out.flush().await;
    let _ = std::fs::write(&mark, text.len().to_string());
}

/// Runs `script` for `stage_name`.
pub async fn run<S: Sandbox>(
    job: &Job,
    sandbox: &S,
    stage_name: &str,
    script: &[u8],
    out: &mut (dyn AsyncWrite + Unpin + Send),
    cancel: &Cancel,
) -> Result<RunOutcome, StageError> {
    let stage = RunStage::parse(stage_name);
    let state_file = job.paths.state_file();
    let state = JobState::load(&state_file).map_err(|e| StageError::NotPrepared {
        key: job.key.clone(),
        detail: e.to_string(),
    })?;
    let target = stage.target();
    let started = match target {
        StageTarget::Helper => state.helper,
        StageTarget::Job => state.job,
    }
    .filter(|_| state.prepared)
    .ok_or_else(|| StageError::NotPrepared {
        key: job.key.clone(),
        detail: format!(
            "prepare did not finish, so there is no {} container",
            target.as_str()
        ),
    })?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = format!("{stage}-{nanos}");
    let end = sandbox
        .exec(target, started, &id, script, out, cancel)
        .await?;
    report_build_socket_refusals(job, out).await;
    if target == StageTarget::Job && end == ScriptEnd::Exited(0) {
        crate::scan_stage::after_user_stage(job, sandbox, out).await?;
    }
    Ok(match end {
        ScriptEnd::Exited(0) => RunOutcome::Success,
        ScriptEnd::Exited(code) => RunOutcome::ScriptFailed(code),
        ScriptEnd::Cancelled(code) => RunOutcome::Cancelled(code),
    })
}

/// Writes a failed or cancelled script's code where gitlab-runner asked for it
/// (`BUILD_EXIT_CODE_FILE`, in the runner's own directory: written as root). A failure to write
/// is logged; the stage's outcome stands.
pub fn record_exit_code(file: &std::path::Path, code: i32, log: &mut crate::JobLog) {
    let written = berth_sandbox::process::as_root(|| std::fs::write(file, format!("{code}\n")));
    if let Err(e) = written {
        log.warn(&format!(
            "cannot write BUILD_EXIT_CODE_FILE {}: {e}",
            file.display()
        ));
    }
}
