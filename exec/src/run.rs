//! Running a plan: each job attempt is a payload on the embedded coordinator bound to a runner
//! token of its own, and one `gitlab-runner run-single` that takes it; the coordinator's events
//! (trace bytes, the final update, stored artifacts) drive the output and the next decisions.
//! Jobs start as soon as what they wait for has ended and a slot of `-j` is free.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_coordinator::payload::{ArtifactsFile, Dependency};
use berth_pipeline::model::{Job, When};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::ExecError;
use crate::layout::Layout;
use crate::output::{Printer, Summary, SummaryJob, detail};
use crate::payload::{Attempt, payload};
use crate::plan::{Decision, Ending, Plan};
use crate::repo::Snapshot;
use crate::runner::{RunnerExit, RunnerSpec, run_single};
use crate::serve::{Event, Serve};

/// Everything a run needs besides the plan.
#[derive(Debug)]
pub struct RunContext<'a> {
    /// Where files go.
    pub layout: &'a Layout,
    /// What the runner checks out.
    pub snapshot: &'a Snapshot,
    /// `CI_COMMIT_BEFORE_SHA`.
    pub before_sha: &'a str,
    /// `group/project`.
    pub project_path: &'a str,
    /// gitlab-runner.
    pub runner_binary: &'a Path,
    /// berth, for the runner's stages.
    pub berth_binary: &'a Path,
    /// The berth config those stages read.
    pub berth_config: &'a Path,
    /// Jobs at once.
    pub concurrency: usize,
    /// `CI_PIPELINE_ID`, also the base of job ids.
    pub pipeline_id: u64,
    /// Stops the run (Ctrl-C).
    pub cancel: CancellationToken,
}

/// What one attempt left behind.
#[derive(Debug, Default, Clone)]
struct Outputs {
    archive: Option<PathBuf>,
    dotenv: Vec<(String, String)>,
    /// Every other uploaded report (junit, dotenv, container_scanning, ...).
    reports: Vec<PathBuf>,
}

impl Outputs {
    fn record(&mut self, artifact_type: &str, path: PathBuf) {
        match artifact_type {
            "archive" => self.archive = Some(path),
            other => {
                if other == "dotenv" {
                    self.dotenv = crate::dotenv::read_gzip(&path).unwrap_or_default();
                }
                self.reports.push(path);
            }
        }
    }
}

/// The state of one planned job during the run.
#[derive(Debug, Default)]
struct JobState {
    ending: Option<Ending>,
    started: Option<Instant>,
    took: Option<Duration>,
    attempts: u32,
    current_id: Option<u64>,
    token: String,
    outputs: Outputs,
    last_attempt_id: Option<u64>,
}

/// The final update of an attempt, as the coordinator reported it.
#[derive(Debug, Clone)]
struct Finished {
    state: String,
    failure_reason: String,
    exit_code: Option<i32>,
}

/// Runs `plan` and returns the summary; a job's failure is in the summary, not an error.
///
/// # Errors
/// berth exec's own files cannot be written, or the runner cannot be started at all.
pub async fn run<W: Write, S: Serve>(
    plan: &Plan,
    context: &RunContext<'_>,
    server: &mut S,
    printer: &mut Printer<W>,
) -> Result<Summary, ExecError> {
    let count = plan.jobs.len();
    let mut states: Vec<JobState> = (0..count).map(|_| JobState::default()).collect();
    let mut by_id: BTreeMap<u64, usize> = BTreeMap::new();
    let mut finished: BTreeMap<u64, Finished> = BTreeMap::new();
    let mut artifacts: BTreeMap<u64, Outputs> = BTreeMap::new();
    let mut logs: BTreeMap<u64, std::fs::File> = BTreeMap::new();
    let mut tasks: JoinSet<(usize, u64, Result<RunnerExit, ExecError>)> = JoinSet::new();
    let mut delayed: JoinSet<usize> = JoinSet::new();
    let mut waiting_delay: Vec<bool> = vec![false; count];
    let mut delay_elapsed: Vec<bool> = vec![false; count];
    let mut next_id = context.pipeline_id.saturating_mul(1000);
    let mut running = 0usize;
    loop {
        // Decide every job whose prerequisites have ended, in pipeline order, until nothing
        // more can be decided (a job ended without running may decide the next one).
        let mut ready: Vec<usize> = Vec::new();
        loop {
            let endings: Vec<Option<Ending>> = states.iter().map(|s| s.ending.clone()).collect();
            let mut decided = false;
            ready.clear();
            for index in 0..count {
                let state = &states[index];
                if state.ending.is_some() || state.current_id.is_some() || waiting_delay[index] {
                    continue;
                }
                if context.cancel.is_cancelled() {
                    states[index].ending = Some(Ending::Canceled);
                    printer
                        .ended(&plan.jobs[index].job.name, &Ending::Canceled, None)
                        .map_err(print_error)?;
                    decided = true;
                    continue;
                }
                match plan.decide(index, &endings) {
                    None => {}
                    Some(Decision::End(ending)) => {
                        printer
                            .ended(&plan.jobs[index].job.name, &ending, None)
                            .map_err(print_error)?;
                        states[index].ending = Some(ending);
                        decided = true;
                    }
                    Some(Decision::Run) => ready.push(index),
                }
            }
            if !decided {
                break;
            }
        }
        for index in ready {
            let job = &plan.jobs[index].job;
            if job.when == When::Delayed
                && let Some(delay) = job.start_in
                && !delay_elapsed[index]
            {
                waiting_delay[index] = true;
                let cancel = context.cancel.clone();
                delayed.spawn(async move {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = cancel.cancelled() => {}
                    }
                    index
                });
                continue;
            }
            if running >= context.concurrency.max(1) {
                continue;
            }
            next_id += 1;
            start(
                plan,
                context,
                server,
                printer,
                &mut states,
                index,
                next_id,
                &mut logs,
                &mut tasks,
            )?;
            by_id.insert(next_id, index);
            running += 1;
        }
        if tasks.is_empty() && delayed.is_empty() {
            let undecided = states.iter().any(|s| s.ending.is_none());
            if !undecided {
                break;
            }
            // Nothing runs and nothing can be decided: only a cancelled run gets here, or jobs
            // waiting for a free slot (handled above); end the rest as canceled.
            if context.cancel.is_cancelled() || running == 0 {
                for (index, state) in states.iter_mut().enumerate() {
                    if state.ending.is_none() {
                        state.ending = Some(Ending::Canceled);
                        printer
                            .ended(&plan.jobs[index].job.name, &Ending::Canceled, None)
                            .map_err(print_error)?;
                    }
                }
                break;
            }
        }
        tokio::select! {
            biased;
            event = server.next_event() => {
                match event {
                    Some(Event::Trace { job_id, bytes }) => {
                        if let Some(&index) = by_id.get(&job_id) {
                            printer.log(&plan.jobs[index].job.name, &bytes).map_err(print_error)?;
                        }
                        if let Some(file) = logs.get_mut(&job_id) {
                            file.write_all(&bytes).map_err(|source| ExecError::State {
                                path: context.layout.logs.clone(),
                                source,
                            })?;
                        }
                    }
                    Some(Event::Finished { job_id, state, failure_reason, exit_code }) => {
                        finished.insert(job_id, Finished { state, failure_reason, exit_code });
                    }
                    Some(Event::Artifact { job_id, artifact_type, path }) => {
                        artifacts.entry(job_id).or_default().record(&artifact_type, path);
                    }
                    None => {
                        return Err(ExecError::Coordinator("the coordinator stopped during the run".to_owned()));
                    }
                }
            }
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                running = running.saturating_sub(1);
                let (index, job_id, exit) = match joined {
                    Ok(result) => result,
                    Err(e) => return Err(ExecError::Runner { job: String::from("?"), detail: e.to_string() }),
                };
                // The final update reached the channel before the runner could exit; drain it.
                while let Some(event) = server.try_event() {
                    match event {
                        Event::Finished { job_id, state, failure_reason, exit_code } => {
                            finished.insert(job_id, Finished { state, failure_reason, exit_code });
                        }
                        Event::Trace { job_id, bytes } => {
                            if let Some(&i) = by_id.get(&job_id) {
                                printer.log(&plan.jobs[i].job.name, &bytes).map_err(print_error)?;
                            }
                            if let Some(file) = logs.get_mut(&job_id) {
                                let _ = file.write_all(&bytes);
                            }
                        }
                        Event::Artifact { job_id, artifact_type, path } => {
                            artifacts.entry(job_id).or_default().record(&artifact_type, path);
                        }
                    }
                }
                logs.remove(&job_id);
                let job = &plan.jobs[index].job;
                let ending = ending_of(job, finished.get(&job_id), exit, &context.cancel);
                let state = &mut states[index];
                state.current_id = None;
                state.last_attempt_id = Some(job_id);
                state.outputs = artifacts.remove(&job_id).unwrap_or_default();
                if let Some(archive) = &state.outputs.archive {
                    state.outputs.archive = Some(context.layout.keep_archive(&job.name, archive)?);
                }
                let reports = std::mem::take(&mut state.outputs.reports);
                for report in reports {
                    state.outputs.reports.push(context.layout.keep_report(&job.name, &report)?);
                }
                state.took = state.started.map(|s| s.elapsed());
                if retries(job, &ending, state.attempts) && !context.cancel.is_cancelled() {
                    printer.log(&job.name, format!("berth exec: retrying {} (attempt {} of {})\n", job.name, state.attempts + 1, u32::from(job.retry.max) + 1).as_bytes()).map_err(print_error)?;
                    continue;
                }
                printer.ended(&job.name, &ending, state.took).map_err(print_error)?;
                state.ending = Some(ending);
            }
            Some(joined) = delayed.join_next(), if !delayed.is_empty() => {
                if let Ok(index) = joined {
                    waiting_delay[index] = false;
                    delay_elapsed[index] = true;
                }
            }
            () = context.cancel.cancelled(), if !context.cancel.is_cancelled() => {}
        }
    }
    let jobs = plan
        .jobs
        .iter()
        .zip(&states)
        .map(|(planned, state)| summary_row(context.layout, &planned.job, state))
        .collect::<Vec<_>>();
    let failed = states.iter().any(|s| {
        s.ending
            .as_ref()
            .is_some_and(|e| e.fails_pipeline() || *e == Ending::Canceled)
    });
    Ok(Summary {
        status: if failed { "failed" } else { "passed" }.to_owned(),
        jobs,
    })
}

fn print_error(source: std::io::Error) -> ExecError {
    ExecError::State {
        path: PathBuf::from("<stdout>"),
        source,
    }
}

/// Starts attempt `id` of job `index`.
#[expect(
    clippy::too_many_arguments,
    reason = "the run loop's state, passed apart to borrow it apart"
)]
fn start<W: Write, S: Serve>(
    plan: &Plan,
    context: &RunContext<'_>,
    server: &mut S,
    printer: &mut Printer<W>,
    states: &mut [JobState],
    index: usize,
    id: u64,
    logs: &mut BTreeMap<u64, std::fs::File>,
    tasks: &mut JoinSet<(usize, u64, Result<RunnerExit, ExecError>)>,
) -> Result<(), ExecError> {
    let job = &plan.jobs[index].job;
    let (dependencies, dotenv) = dependencies_of(plan, states, index);
    let attempt = Attempt {
        id,
        // The coordinator sets the job's token when it takes the job.
        token: String::new(),
        coordinator_url: &server.url(),
        project_path: context.project_path,
        snapshot: context.snapshot,
        before_sha: context.before_sha,
        dependencies,
        dotenv,
        pipeline_id: context.pipeline_id,
    };
    let job_payload = payload(job, &attempt);
    let runner_token = server.new_runner_token()?;
    let name = format!("berth-exec-{id}");
    let config_path = context.layout.runner_config(id);
    let spec = RunnerSpec {
        name: name.clone(),
        url: server.url(),
        token: runner_token.clone(),
        berth: context.berth_binary.to_path_buf(),
        berth_config: context.berth_config.to_path_buf(),
    };
    context
        .layout
        .write_private(&config_path, spec.to_toml()?.as_bytes())?;
    let token = server.assign(&runner_token, job_payload)?;
    logs.insert(
        id,
        context
            .layout
            .create_log(&job.name, states[index].attempts)?,
    );
    let state = &mut states[index];
    state.attempts += 1;
    state.current_id = Some(id);
    state.token = token;
    if state.started.is_none() {
        state.started = Some(Instant::now());
    }
    printer
        .started(&job.name, &job.stage)
        .map_err(print_error)?;
    let binary = context.runner_binary.to_path_buf();
    let cancel = context.cancel.clone();
    tasks.spawn(async move {
        let exit = run_single(&binary, &config_path, &name, &cancel).await;
        (index, id, exit)
    });
    Ok(())
}

/// The jobs whose artifacts (and dotenv variables) job `index` receives, as GitLab decides:
/// `dependencies:` when set, else its `needs:` with `artifacts: true`, else every job of an
/// earlier stage.
fn dependencies_of(
    plan: &Plan,
    states: &[JobState],
    index: usize,
) -> (Vec<Dependency>, Vec<(String, String)>) {
    let job = &plan.jobs[index].job;
    let wanted: Vec<usize> = plan
        .jobs
        .iter()
        .enumerate()
        .filter(|(j, other)| {
            *j != index
                && match (&job.dependencies, &job.needs) {
                    (Some(list), _) => {
                        list.contains(&other.job.name) || list.contains(&other.job.base_name)
                    }
                    (None, Some(needs)) => {
                        needs.iter().any(|n| n.artifacts && n.job == other.job.name)
                    }
                    (None, None) => other.job.stage_index < job.stage_index,
                }
        })
        .map(|(j, _)| j)
        .collect();
    let mut dependencies = Vec::new();
    let mut dotenv = Vec::new();
    for j in wanted {
        let state = &states[j];
        dotenv.extend(state.outputs.dotenv.iter().cloned());
        let (Some(archive), Some(id)) = (&state.outputs.archive, state.last_id()) else {
            continue;
        };
        let size = std::fs::metadata(archive).map(|m| m.len()).unwrap_or(0);
        dependencies.push(Dependency {
            id,
            token: state.token.clone(),
            name: plan.jobs[j].job.name.clone(),
            artifacts_file: ArtifactsFile {
                filename: "artifacts.zip".to_owned(),
                size,
            },
        });
    }
    (dependencies, dotenv)
}

impl JobState {
    /// The id of the attempt that ended (the kept outputs are its).
    fn last_id(&self) -> Option<u64> {
        self.outputs.archive.as_ref()?;
        self.last_attempt_id
    }
}

fn ending_of(
    job: &Job,
    finished: Option<&Finished>,
    exit: Result<RunnerExit, ExecError>,
    cancel: &CancellationToken,
) -> Ending {
    match finished {
        Some(f) if f.state == "success" => Ending::Success,
        Some(f) if f.failure_reason == "job_canceled" || cancel.is_cancelled() => Ending::Canceled,
        Some(f) => {
            let exit_code = if f.failure_reason == "script_failure" {
                f.exit_code
            } else {
                None
            };
            Ending::Failed {
                allowed: job.allow_failure.allows(exit_code),
                exit_code,
                reason: f.failure_reason.clone(),
            }
        }
        None if cancel.is_cancelled() => Ending::Canceled,
        None => Ending::Failed {
            allowed: false,
            exit_code: None,
            reason: match exit {
                Ok(exit) => format!(
                    "runner_system_failure: gitlab-runner never reported the job ({})",
                    exit.tail
                ),
                Err(e) => format!("runner_system_failure: {e}"),
            },
        },
    }
}

/// Whether `retry:` asks for another attempt after `ending` (attempts so far: `attempts`).
fn retries(job: &Job, ending: &Ending, attempts: u32) -> bool {
    let Ending::Failed {
        exit_code, reason, ..
    } = ending
    else {
        return false;
    };
    if attempts > u32::from(job.retry.max) {
        return false;
    }
    let reason_matches = job.retry.when.is_empty()
        || job.retry.when.iter().any(|w| {
            w == "always"
                || reason.starts_with(w.as_str())
                || (w == "unknown_failure" && reason.is_empty())
        });
    let code_matches = job.retry.exit_codes.is_empty()
        || exit_code.is_some_and(|c| job.retry.exit_codes.contains(&c));
    reason_matches && code_matches
}

fn summary_row(layout: &Layout, job: &Job, state: &JobState) -> SummaryJob {
    let ending = state.ending.clone().unwrap_or(Ending::Canceled);
    SummaryJob {
        name: job.name.clone(),
        stage: job.stage.clone(),
        status: ending.status().to_owned(),
        detail: detail(&ending),
        exit_code: match &ending {
            Ending::Failed { exit_code, .. } => *exit_code,
            _ => None,
        },
        duration_seconds: state.took.map(|d| d.as_secs_f64()),
        attempts: state.attempts,
        log: (state.attempts > 0).then(|| layout.log_relative(&job.name)),
        artifacts: state.outputs.archive.as_ref().map(|p| layout.relative(p)),
        reports: state
            .outputs
            .reports
            .iter()
            .map(|p| layout.relative(p))
            .collect(),
    }
}
