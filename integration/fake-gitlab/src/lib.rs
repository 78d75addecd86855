//! berth-fake-gitlab: a fake GitLab coordinator, a recording custom-executor driver, and a
//! harness that runs the real `gitlab-runner run-single` against them.
//!
//! * [`payload`] builds job payloads ([`payload::JobPayload`]).
//! * [`server`] is the coordinator ([`server::FakeGitLab`]): job queue, PUT/PATCH/artifacts
//!   endpoints, dumb-HTTP git, and a record of every request.
//! * [`harness`] writes the runner's config.toml and runs `run-single` with a wall-clock kill.
//! * [`driver`] is the recording driver script and the parser for what it records.
//! * [`peers`] finds the gitlab-runner binaries that `peers/build-gitlab-runner.sh` builds.

pub mod driver;
pub mod harness;
pub mod payload;
pub mod peers;
pub mod server;

pub use harness::{RunOutcome, RunnerConfig};
pub use payload::JobPayload;
pub use server::FakeGitLab;
