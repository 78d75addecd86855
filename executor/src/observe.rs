//! What the binary tells the runner's admin: logging set up (the job log on stderr, and the
//! admin log of JSON lines when `log_format = "json"`), berth's own events in the admin log, and
//! the metrics this process noted written at its end. Neither may fail a job: their problems
//! are logged once and the stage's ending stands.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use berth_config::Config;
use berth_stages::{Outcome, StageError};
use berth_telemetry::adminlog::{AdminLog, JOURNAL_SOCKET};
use berth_telemetry::{Event, recorder};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The admin log's events; never shown in the job log.
pub(crate) const ADMIN: &str = berth_telemetry::adminlog::TARGET;

/// The job this process serves, once its payload is read: key and project.
static JOB: OnceLock<(String, String)> = OnceLock::new();

/// Remembers the job, for the admin log and the job's outcome in the metrics.
pub(crate) fn serving(job: &berth_stages::Job) {
    let project = job.payload.variable("CI_PROJECT_PATH").unwrap_or_default();
    let _ = JOB.set((job.key.clone(), project.to_owned()));
}

/// Sets up logging: stderr (the job log) as before, filtered by `BERTH_LOG` (default `warn`),
/// never carrying admin events; the admin log when `config` asks for JSON.
pub(crate) fn init_logging(config: Option<&Config>) {
    let filter = std::env::var("BERTH_LOG").unwrap_or_else(|_| "warn".to_owned());
    let stderr_filter = EnvFilter::try_new(format!("{filter},{ADMIN}=off"))
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,{ADMIN}=off")));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_filter(stderr_filter);
    let mut problem = None;
    let admin = config
        .filter(|c| c.observability.json_log)
        .and_then(|c| {
            let owner = nix::unistd::Uid::effective().as_raw();
            AdminLog::open(
                std::path::Path::new(JOURNAL_SOCKET),
                c.observability.admin_log.as_deref(),
                owner,
            )
            .map_err(|e| problem = Some(e.to_string()))
            .ok()
            .flatten()
        })
        .map(|log| {
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_writer(log)
                .with_filter(EnvFilter::new("info"))
        });
    tracing_subscriber::registry()
        .with(stderr)
        .with(admin)
        .init();
    if let Some(problem) = problem {
        tracing::warn!("the admin log is off: {problem}");
    }
}

/// The key and project of the job served, for admin events.
fn job() -> (&'static str, &'static str) {
    JOB.get()
        .map_or(("", ""), |(k, p)| (k.as_str(), p.as_str()))
}

/// Logs why a stage failed in the admin log (masked there as in the job log).
pub(crate) fn failed(stage: &str, e: &StageError) {
    let mut chain = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        chain.push_str(&format!("; caused by: {cause}"));
        source = cause.source();
    }
    let (job, project) = job();
    tracing::error!(
        target: ADMIN,
        job,
        project,
        stage,
        failure = ?e.failure_kind(),
        error = %chain,
        "stage failed"
    );
}

/// Notes how a job stage ended: its duration, and for prepare, run and cleanup the job's
/// outcome; logs it in the admin log.
pub(crate) fn stage_ended(stage: &str, started: Instant, ending: &Result<Outcome, StageError>) {
    let seconds = started.elapsed().as_secs_f64();
    recorder::note(Event::StageEnded {
        stage: stage.to_owned(),
        seconds,
    });
    let (job, project) = job();
    let outcome = match ending {
        Ok(o) => format!("{o:?}"),
        Err(e) => format!("{:?}", e.failure_kind()),
    };
    tracing::info!(
        target: ADMIN,
        job,
        project,
        stage,
        duration_seconds = seconds,
        outcome,
        "stage ended"
    );
    if job.is_empty() {
        return;
    }
    match stage {
        "config" => {}
        "cleanup" => recorder::note(Event::JobEnded {
            key: job.to_owned(),
        }),
        _ => {
            if let Some(outcome) = berth_stages::metrics::job_outcome(stage, ending) {
                recorder::note(Event::JobStage {
                    key: job.to_owned(),
                    outcome,
                });
            }
        }
    }
}

/// Takes this process's events, logs each in the admin log and writes the metrics when
/// `metrics_dir` is set: as root when berth started as root (`owner` 0), through the saved
/// set-user-ID, since the stage may have dropped to a job identity.
pub(crate) fn finish(config: Option<&Config>, started_as_root: bool) {
    let events = recorder::take();
    let (job, project) = job();
    for event in &events {
        let detail = serde_json::to_string(event).unwrap_or_default();
        tracing::info!(target: ADMIN, job, project, event = %detail, "berth event");
    }
    let Some(config) = config else {
        return;
    };
    let Some(metrics_dir) = &config.observability.metrics_dir else {
        return;
    };
    let owner = if started_as_root {
        0
    } else {
        nix::unistd::Uid::effective().as_raw()
    };
    let target = berth_telemetry::write::Target {
        state_dir: config.state_dir.clone(),
        metrics_dir: metrics_dir.clone(),
        name: config.observability.metrics_name.clone(),
        max_projects: config.observability.metrics_max_projects as usize,
        owner,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let written =
        berth_sandbox::process::as_root(|| berth_telemetry::write::flush(&target, &events, now));
    match written {
        Ok(warnings) => {
            for w in warnings {
                tracing::warn!("metrics: {w}");
            }
        }
        Err(e) => tracing::warn!("metrics not written (the job is not affected): {e}"),
    }
}
