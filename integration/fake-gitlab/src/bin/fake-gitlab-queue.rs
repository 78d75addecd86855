//! The fake GitLab as a standalone server for throughput benchmarks (`benches/throughput.sh`):
//! queues N copies of one job, writes its URL to a file for the runner's config.toml, waits until
//! every job has its final update, and prints a JSON summary (per-job timings, prepare-time
//! percentiles, wall time, succeeded jobs per minute, why any job failed) on stdout. A failed job
//! is a result, not an error: it exits 1 only when the jobs do not all finish in time.
//!
//! Prepare time is the runner's `prepare_executor` trace section, read from the per-line
//! timestamps the runner writes with `FF_TIMESTAMPS=true`: the same measure for every executor.

#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_macros,
    reason = "a benchmark driver prints its summary on stdout and its progress on stderr"
)]

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use berth_fake_gitlab::payload::{Image, Variable};
use berth_fake_gitlab::{FakeGitLab, JobPayload};
use clap::Parser;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Queue N jobs on a fake GitLab and report how the runner got through them.
#[derive(Debug, Parser)]
struct Args {
    /// How many copies of the job to queue.
    #[arg(long, default_value_t = 12)]
    jobs: u64,
    /// The job image (`image:`); none for the shell executor.
    #[arg(long)]
    image: Option<String>,
    /// The job's script line.
    #[arg(long, default_value = "echo hello from the job")]
    script: String,
    /// The first job id; the others follow (berth's job key is the id and the runner token).
    #[arg(long)]
    first_id: u64,
    /// Where to write the coordinator's URL once it listens.
    #[arg(long)]
    url_file: PathBuf,
    /// Also write each job's trace to `DIR/<id>.log`.
    #[arg(long)]
    traces_dir: Option<PathBuf>,
    /// Give up (exit 1) when the jobs are not all finished after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
}

/// One job's timings, in seconds.
#[derive(Debug, Serialize)]
struct JobTiming {
    id: u64,
    state: String,
    /// From the moment the fake handed the job out to its final update.
    total: f64,
    /// The `prepare_executor` trace section.
    prepare: Option<f64>,
    /// For a job that did not succeed: the runner's `ERROR: Job failed…` line.
    failure: Option<String>,
}

/// What the benchmark reports.
#[derive(Debug, Serialize)]
struct Summary {
    jobs: usize,
    succeeded: usize,
    /// From the first job handed out to the last final update.
    wall_seconds: f64,
    /// Succeeded jobs per minute of wall time.
    jobs_per_minute: f64,
    prepare_p50: Option<f64>,
    prepare_p95: Option<f64>,
    total_p50: Option<f64>,
    total_p95: Option<f64>,
    per_job: Vec<JobTiming>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let gitlab = FakeGitLab::start()?;
    let ids: Vec<u64> = (args.first_id..args.first_id + args.jobs).collect();
    for &id in &ids {
        let mut job = JobPayload::new(id, &[args.script.as_str()])
            .variable(Variable::new("GIT_STRATEGY", "none"));
        if let Some(image) = &args.image {
            job = job.image(Image::new(image.clone()));
        }
        gitlab.push_job(&job);
    }
    let tmp = args.url_file.with_extension("tmp");
    std::fs::write(&tmp, gitlab.url())?;
    std::fs::rename(&tmp, &args.url_file)?;
    eprintln!(
        "fake-gitlab-queue: {} jobs queued at {}",
        ids.len(),
        gitlab.url()
    );

    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    // A benchmark driver polls its own in-process record; nothing to wake it otherwise.
    while !ids.iter().all(|&id| gitlab.final_update(id).is_some()) {
        if Instant::now() > deadline {
            let done = ids
                .iter()
                .filter(|&&id| gitlab.final_update(id).is_some())
                .count();
            return Err(format!(
                "only {done} of {} jobs finished within {} s",
                ids.len(),
                args.timeout
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // The fake hands jobs out in queue order: the k-th 201 to `POST /jobs/request` is job k.
    let handed_out: Vec<SystemTime> = gitlab
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v4/jobs/request" && r.status == 201)
        .map(|r| r.received)
        .collect();
    let mut per_job = Vec::new();
    let mut finished = Vec::new();
    for (index, &id) in ids.iter().enumerate() {
        let final_request = gitlab
            .final_update_request(id)
            .ok_or_else(|| format!("job {id} has no final update"))?;
        let start = *handed_out
            .get(index)
            .ok_or_else(|| format!("job {id} was never handed out"))?;
        finished.push(final_request.received);
        let trace = gitlab.trace_text(id);
        if let Some(dir) = &args.traces_dir {
            std::fs::write(dir.join(format!("{id}.log")), &trace)?;
        }
        let state = final_request
            .json()
            .and_then(|v| v["state"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let failure = (state != "success").then(|| failure_line(&trace, &state));
        per_job.push(JobTiming {
            id,
            state,
            total: seconds_between(start, final_request.received),
            prepare: section_seconds(&trace, "prepare_executor"),
            failure,
        });
    }
    let first = handed_out.first().copied().ok_or("no job was handed out")?;
    let last = finished.iter().max().copied().ok_or("no job finished")?;
    let wall_seconds = seconds_between(first, last);
    let prepares: Vec<f64> = per_job.iter().filter_map(|j| j.prepare).collect();
    let totals: Vec<f64> = per_job.iter().map(|j| j.total).collect();
    let succeeded = per_job.iter().filter(|j| j.state == "success").count();
    let summary = Summary {
        jobs: per_job.len(),
        succeeded,
        wall_seconds,
        jobs_per_minute: succeeded as f64 * 60.0 / wall_seconds,
        prepare_p50: percentile(&prepares, 50.0),
        prepare_p95: percentile(&prepares, 95.0),
        total_p50: percentile(&totals, 50.0),
        total_p95: percentile(&totals, 95.0),
        per_job,
    };
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

/// The runner's `ERROR: Job failed…` line without its colour codes, else the final state.
fn failure_line(trace: &str, state: &str) -> String {
    trace
        .lines()
        .rev()
        .find_map(|line| line.split_once("ERROR: Job failed"))
        .map(|(_, rest)| {
            let rest = rest.split('\u{1b}').next().unwrap_or_default();
            format!("ERROR: Job failed{rest}")
        })
        .unwrap_or_else(|| format!("state {state}"))
}

fn seconds_between(from: SystemTime, to: SystemTime) -> f64 {
    to.duration_since(from).unwrap_or_default().as_secs_f64()
}

/// The nearest-rank percentile (the value at rank ⌈p/100 · n⌉ of the sorted sample).
fn percentile(sample: &[f64], p: f64) -> Option<f64> {
    let mut sorted = sample.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.max(1) - 1).copied()
}

/// The duration of trace section `name`, from the `FF_TIMESTAMPS` prefixes
/// (`2026-12-02T03:00:00.123456Z 00O section_start:…:name`) of its start and end lines.
fn section_seconds(trace: &str, name: &str) -> Option<f64> {
    let stamp_of = |marker: &str| {
        trace.lines().find_map(|line| {
            let (stamp, rest) = line.split_once(' ')?;
            let (_unix, section) = rest.split_once(marker)?.1.split_once(':')?;
            let section = section.split(['\r', '[', ' ']).next()?;
            (section == name)
                .then(|| OffsetDateTime::parse(stamp, &Rfc3339).ok())
                .flatten()
        })
    };
    let start = stamp_of("section_start:")?;
    let end = stamp_of("section_end:")?;
    Some((end - start).as_seconds_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_seconds_reads_the_timestamp_prefixes() {
        let trace = "2026-12-02T03:00:00.100000Z 00O section_start:1796180400:prepare_executor\r\u{1b}[0K\u{1b}[0K\u{1b}[36;1mPreparing\n\
                     2026-12-02T03:00:01.350000Z 00O section_end:1796180401:prepare_executor\r\u{1b}[0K\n\
                     2026-12-02T03:00:01.400000Z 00O section_start:1796180401:prepare_script\r\u{1b}[0K\n";
        let seconds = section_seconds(trace, "prepare_executor").expect("both markers");
        assert!((seconds - 1.25).abs() < 1e-9, "{seconds}");
        assert_eq!(section_seconds(trace, "prepare_script"), None);
        assert_eq!(section_seconds(trace, "get_sources"), None);
    }

    #[test]
    fn failure_line_is_the_runners_error_without_colour() {
        let trace =
            "2026-12-02T03:23:47.9Z 00O \u{1b}[31;1mERROR: Job failed: exit code 137\u{1b}[0;m\n";
        assert_eq!(
            failure_line(trace, "failed"),
            "ERROR: Job failed: exit code 137"
        );
        assert_eq!(
            failure_line("no error here\n", "canceled"),
            "state canceled"
        );
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let sample = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(percentile(&sample, 50.0), Some(3.0));
        assert_eq!(percentile(&sample, 95.0), Some(5.0));
        assert_eq!(percentile(&sample, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
