//! One trivial job through the real gitlab-runner (v19 peer) and the fake GitLab, with berth or
//! with the runner's shell executor (no isolation: the floor). `benches/runner-executors.sh`
//! runs this under hyperfine, side by side.
//!
//! Usage: `runner_bench berth|shell [BERTH_BINARY]`

#![expect(
    clippy::print_stderr,
    clippy::disallowed_macros,
    reason = "a benchmark driver reports on stderr"
)]

use std::path::PathBuf;
use std::time::Duration;

use berth_fake_gitlab::harness::{CustomConfig, RunOptions, run_single};
use berth_fake_gitlab::payload::{Image, Variable};
use berth_fake_gitlab::peers::{self, Peer, PeerVersion};
use berth_fake_gitlab::{FakeGitLab, JobPayload, RunnerConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "berth".to_owned());
    let berth = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "target/release/berth".to_owned()),
    );
    let Peer::Binary(runner) = peers::locate(PeerVersion::V19)? else {
        return Err(format!("no v19 gitlab-runner peer: run {}", peers::BUILD_SCRIPT).into());
    };
    let gitlab = FakeGitLab::start()?;
    let id = u64::from(std::process::id()) * 10 + 1;
    let mut job = JobPayload::new(id, &["echo hello from the job"])
        .variable(Variable::new("GIT_STRATEGY", "none"));
    if mode == "berth" {
        job = job.image(Image::new("localhost/busybox:latest"));
    }
    gitlab.push_job(&job);
    let dir = tempfile::tempdir()?;
    let mut config = RunnerConfig::recommended(&gitlab.url(), &berth);
    config.token = format!("glrt-bench{}", std::process::id());
    if mode == "shell" {
        config.executor = "shell".to_owned();
        config.builds_dir = dir.path().join("builds").display().to_string();
        config.cache_dir = dir.path().join("cache").display().to_string();
    } else {
        let berth_config = dir.path().join("berth.toml");
        std::fs::write(&berth_config, "network = \"host\"\n")?;
        config.custom = CustomConfig::berth(&berth, &berth_config);
    }
    let mut options = RunOptions::new(&runner, dir.path());
    options.wall_clock = Duration::from_secs(120);
    let outcome = run_single(&config, &options)?;
    let state = gitlab.final_update(id).map(|u| u.state().to_owned());
    if state.as_deref() != Some("success") {
        eprintln!(
            "job did not succeed ({state:?}):\n{}",
            gitlab.trace_text(id)
        );
        return Err("job failed".into());
    }
    eprintln!("{mode}: {:?}", outcome.elapsed);
    Ok(())
}
