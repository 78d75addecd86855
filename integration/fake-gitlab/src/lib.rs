//! berth-fake-gitlab: the test face of the coordinator berth exec embeds
//! ([`berth_coordinator`]), a recording custom-executor driver, and a harness that runs the
//! real `gitlab-runner run-single` against them.
//!
//! * [`payload`] builds job payloads ([`payload::JobPayload`]); it is the coordinator's.
//! * [`server`] is the fake coordinator ([`server::FakeGitLab`]): the product coordinator with
//!   no token checks, a job queue for any runner, and a record of every request.
//! * [`harness`] writes the runner's config.toml and runs `run-single` with a wall-clock kill.
//! * [`driver`] is the recording driver script and the parser for what it records.
//! * [`peers`] finds the gitlab-runner binaries that `peers/build-gitlab-runner.sh` builds.

pub mod driver;
pub mod harness;
pub mod peers;
pub mod server;

pub use berth_coordinator::payload;
pub use harness::{RunOutcome, RunnerConfig};
pub use payload::JobPayload;
pub use server::FakeGitLab;
