//! berth-stages: what `config`, `prepare`, `run`, `cleanup`, `reap` and `doctor` do, written over
//! the [`berth_sandbox::Sandbox`] seam so the whole job can run against a recording fake.
//!
//! No GitLab detail reaches below this crate, and nothing here writes to stdout.

pub mod admission;
pub mod cleanup;
pub mod config_stage;
pub mod context;
pub mod doctor;
pub mod error;
pub mod identities;
pub mod instances;
pub mod joblog;
pub mod metrics;
pub mod naming;
pub mod nested;
pub mod outcome;
pub mod prepare;
pub mod prune;
pub mod reap;
pub mod run;
pub mod runner_config;
pub mod scan_stage;
pub mod signing;
pub mod state;
pub mod trust;

pub use context::Job;
pub use error::{FailureKind, StageError};
pub use joblog::JobLog;
pub use outcome::{ExitCodes, Outcome};
pub use run::RunOutcome;
