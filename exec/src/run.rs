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

/// The final update of an attempt, as the coordinator reported it.
#[derive(Debug, Clone)]
struct Finished {
    success: bool,
    failure_reason: String,
    exit_code: Option<i32>,
}

/// One running attempt: what the coordinator has said of it so far.
#[derive(Debug)]
struct Attempting {
    log: std::fs::File,
    finished: Option<Finished>,
    outputs: Outputs,
}

/// Where a `when: delayed` job is in its wait.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Delay {
    #[default]
    NotYet,
    Waiting,
    Elapsed,
}

/// The state of one planned job during the run.
#[derive(Debug, Default)]
struct JobState {
    ending: Option<Ending>,
    started: Option<Instant>,
    took: Option<Duration>,
    attempts: u32,
    delay: Delay,
    running: Option<Attempting>,
    /// The id and kept outputs of the attempt that ended last.
    last: Option<(u64, Outputs)>,
}

type RunnerTask = (usize, u64, Result<RunnerExit, ExecError>);

/// The run loop's state.
struct Run<'a, W: Write, S: Serve> {
    plan: &'a Plan,
    context: &'a RunContext<'a>,
    server: &'a mut S,
    printer: &'a mut Printer<W>,
    states: Vec<JobState>,
    by_id: BTreeMap<u64, usize>,
    tasks: JoinSet<RunnerTask>,
    delays: JoinSet<usize>,
    next_id: u64,
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
    let mut run = Run {
        plan,
        context,
        server,
        printer,
        states: (0..plan.jobs.len()).map(|_| JobState::default()).collect(),
        by_id: BTreeMap::new(),
        tasks: JoinSet::new(),
        delays: JoinSet::new(),
        next_id: context.pipeline_id.saturating_mul(1000),
    };
    run.drive().await?;
    let jobs = plan
        .jobs
        .iter()
        .zip(&run.states)
        .map(|(planned, state)| summary_row(context.layout, &planned.job, state))
        .collect::<Vec<_>>();
    let failed = run.states.iter().any(|s| {
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

impl<W: Write, S: Serve> Run<'_, W, S> {
    async fn drive(&mut self) -> Result<(), ExecError> {
        loop {
            let ready = self.decide()?;
            self.start_ready(ready)?;
            if self.tasks.is_empty() && self.delays.is_empty() {
                // Nothing runs or waits: every job is decided, or the run was cancelled
                // before the rest could be.
                for index in 0..self.states.len() {
                    if self.states[index].ending.is_none() {
                        self.end(index, Ending::Canceled, None)?;
                    }
                }
                return Ok(());
            }
            tokio::select! {
                biased;
                event = self.server.next_event() => {
                    let event = event.ok_or_else(|| {
                        ExecError::Coordinator("the coordinator stopped during the run".to_owned())
                    })?;
                    self.absorb(event)?;
                }
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    let (index, job_id, exit) = joined.map_err(|e| ExecError::Runner {
                        job: String::from("?"),
                        detail: e.to_string(),
                    })?;
                    // The final update reached the channel before the runner could exit.
                    while let Some(event) = self.server.try_event() {
                        self.absorb(event)?;
                    }
                    self.attempt_ended(index, job_id, exit)?;
                }
                Some(joined) = self.delays.join_next(), if !self.delays.is_empty() => {
                    if let Ok(index) = joined {
                        self.states[index].delay = Delay::Elapsed;
                    }
                }
                () = self.context.cancel.cancelled(), if !self.context.cancel.is_cancelled() => {}
            }
        }
    }

    /// Decides every job whose prerequisites have ended, in pipeline order, until nothing more
    /// can be (a job ended without running may decide the next one); returns those to start.
    fn decide(&mut self) -> Result<Vec<usize>, ExecError> {
        loop {
            let endings: Vec<Option<Ending>> =
                self.states.iter().map(|s| s.ending.clone()).collect();
            let mut ready = Vec::new();
            let mut decided = false;
            for index in 0..self.states.len() {
                let state = &self.states[index];
                if state.ending.is_some()
                    || state.running.is_some()
                    || state.delay == Delay::Waiting
                {
                    continue;
                }
                let decision = if self.context.cancel.is_cancelled() {
                    Some(Decision::End(Ending::Canceled))
                } else {
                    self.plan.decide(index, &endings)
                };
                match decision {
                    None => {}
                    Some(Decision::End(ending)) => {
                        self.end(index, ending, None)?;
                        decided = true;
                    }
                    Some(Decision::Run) => ready.push(index),
                }
            }
            if !decided {
                return Ok(ready);
            }
        }
    }

    /// Starts what is ready while `-j` has a free slot; a delayed job waits `start_in` first.
    fn start_ready(&mut self, ready: Vec<usize>) -> Result<(), ExecError> {
        for index in ready {
            let job = &self.plan.jobs[index].job;
            if job.when == When::Delayed
                && let Some(delay) = job.start_in
                && self.states[index].delay == Delay::NotYet
            {
                self.states[index].delay = Delay::Waiting;
                let cancel = self.context.cancel.clone();
                self.delays.spawn(async move {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = cancel.cancelled() => {}
                    }
                    index
                });
                continue;
            }
            if self.tasks.len() >= self.context.concurrency.max(1) {
                continue;
            }
            self.start(index)?;
        }
        Ok(())
    }

    fn end(
        &mut self,
        index: usize,
        ending: Ending,
        took: Option<Duration>,
    ) -> Result<(), ExecError> {
        self.printer
            .ended(&self.plan.jobs[index].job.name, &ending, took)
            .map_err(print_error)?;
        self.states[index].ending = Some(ending);
        Ok(())
    }

    /// Takes in what the coordinator saw: log bytes go to the screen and the job's log file,
    /// the final update and stored artifacts wait for the runner's exit.
    fn absorb(&mut self, event: Event) -> Result<(), ExecError> {
        let job_id = match &event {
            Event::Trace { job_id, .. }
            | Event::Finished { job_id, .. }
            | Event::Artifact { job_id, .. } => *job_id,
        };
        let Some(&index) = self.by_id.get(&job_id) else {
            return Ok(());
        };
        let name = &self.plan.jobs[index].job.name;
        let Some(attempt) = self.states[index].running.as_mut() else {
            return Ok(());
        };
        match event {
            Event::Trace { bytes, .. } => {
                self.printer.log(name, &bytes).map_err(print_error)?;
                attempt
                    .log
                    .write_all(&bytes)
                    .map_err(|source| ExecError::State {
                        path: self.context.layout.logs.clone(),
                        source,
                    })?;
            }
            Event::Finished {
                success,
                failure_reason,
                exit_code,
                ..
            } => {
                attempt.finished = Some(Finished {
                    success,
                    failure_reason,
                    exit_code,
                });
            }
            Event::Artifact {
                artifact_type,
                path,
                ..
            } => attempt.outputs.record(&artifact_type, path),
        }
        Ok(())
    }

    /// The runner of attempt `job_id` of job `index` exited: keep what it left, then retry or
    /// end the job.
    fn attempt_ended(
        &mut self,
        index: usize,
        job_id: u64,
        exit: Result<RunnerExit, ExecError>,
    ) -> Result<(), ExecError> {
        let job = &self.plan.jobs[index].job;
        let layout = self.context.layout;
        let state = &mut self.states[index];
        let Some(attempt) = state.running.take() else {
            return Ok(());
        };
        let ending = ending_of(job, attempt.finished.as_ref(), exit, &self.context.cancel);
        let mut outputs = attempt.outputs;
        if let Some(archive) = &outputs.archive {
            outputs.archive = Some(layout.keep(&job.name, archive, true)?);
        }
        outputs.reports = outputs
            .reports
            .iter()
            .map(|report| layout.keep(&job.name, report, false))
            .collect::<Result<_, _>>()?;
        state.last = Some((job_id, outputs));
        state.took = state.started.map(|s| s.elapsed());
        if retries(job, &ending, state.attempts) && !self.context.cancel.is_cancelled() {
            let line = format!(
                "berth exec: retrying {} (attempt {} of {})\n",
                job.name,
                state.attempts + 1,
                u32::from(job.retry.max) + 1
            );
            return self
                .printer
                .log(&job.name, line.as_bytes())
                .map_err(print_error);
        }
        let took = state.took;
        self.end(index, ending, took)
    }

    /// Starts the next attempt of job `index`.
    fn start(&mut self, index: usize) -> Result<(), ExecError> {
        self.next_id += 1;
        let id = self.next_id;
        let context = self.context;
        let job = &self.plan.jobs[index].job;
        let (dependencies, dotenv) = self.dependencies_of(index);
        let url = self.server.url();
        let attempt = Attempt {
            id,
            coordinator_url: &url,
            project_path: context.project_path,
            snapshot: context.snapshot,
            before_sha: context.before_sha,
            dependencies,
            dotenv,
            pipeline_id: context.pipeline_id,
        };
        let job_payload = payload(job, &attempt);
        let runner_token = self.server.new_runner_token()?;
        let name = format!("berth-exec-{id}");
        let spec = RunnerSpec {
            name: name.clone(),
            url,
            token: runner_token.clone(),
            berth: context.berth_binary.to_path_buf(),
            berth_config: context.berth_config.to_path_buf(),
        };
        let config_path = context.layout.write_runner_config(id, &spec.to_toml()?)?;
        self.server.assign(&runner_token, job_payload)?;
        let log = context
            .layout
            .create_log(&job.name, self.states[index].attempts)?;
        let state = &mut self.states[index];
        state.attempts += 1;
        state.running = Some(Attempting {
            log,
            finished: None,
            outputs: Outputs::default(),
        });
        state.started.get_or_insert_with(Instant::now);
        self.by_id.insert(id, index);
        self.printer
            .started(&job.name, &job.stage)
            .map_err(print_error)?;
        let binary = context.runner_binary.to_path_buf();
        let cancel = context.cancel.clone();
        self.tasks.spawn(async move {
            let exit = run_single(&binary, &config_path, &name, &cancel).await;
            (index, id, exit)
        });
        Ok(())
    }

    /// The jobs whose artifacts (and dotenv variables) job `index` receives, as GitLab decides:
    /// `dependencies:` when set, else its `needs:` with `artifacts: true`, else every job of an
    /// earlier stage.
    fn dependencies_of(&self, index: usize) -> (Vec<Dependency>, Vec<(String, String)>) {
        let job = &self.plan.jobs[index].job;
        let mut dependencies = Vec::new();
        let mut dotenv = Vec::new();
        for (other, state) in self.plan.jobs.iter().zip(&self.states) {
            let wanted = match (&job.dependencies, &job.needs) {
                (Some(list), _) => {
                    list.contains(&other.job.name) || list.contains(&other.job.base_name)
                }
                (None, Some(needs)) => needs.iter().any(|n| n.artifacts && n.job == other.job.name),
                (None, None) => other.job.stage_index < job.stage_index,
            };
            let Some((id, outputs)) = state.last.as_ref().filter(|_| wanted) else {
                continue;
            };
            dotenv.extend(outputs.dotenv.iter().cloned());
            let Some(archive) = &outputs.archive else {
                continue;
            };
            dependencies.push(Dependency {
                id: *id,
                // The coordinator gives every dependency the running job's own token.
                token: String::new(),
                name: other.job.name.clone(),
                artifacts_file: ArtifactsFile {
                    filename: "artifacts.zip".to_owned(),
                    size: std::fs::metadata(archive).map(|m| m.len()).unwrap_or(0),
                },
            });
        }
        (dependencies, dotenv)
    }
}

fn ending_of(
    job: &Job,
    finished: Option<&Finished>,
    exit: Result<RunnerExit, ExecError>,
    cancel: &CancellationToken,
) -> Ending {
    match finished {
        Some(f) if f.success => Ending::Success,
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
    let outputs = state.last.as_ref().map(|(_, outputs)| outputs);
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
        artifacts: outputs
            .and_then(|o| o.archive.as_ref())
            .map(|p| layout.relative(p)),
        reports: outputs
            .map(|o| o.reports.iter().map(|p| layout.relative(p)).collect())
            .unwrap_or_default(),
    }
}
