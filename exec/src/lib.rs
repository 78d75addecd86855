//! `berth exec`: a project's pipeline computed as GitLab computes it (`berth-pipeline`), each
//! job served from an embedded coordinator on loopback and run by the real
//! `gitlab-runner run-single` with berth as its custom executor.

pub mod error;
pub mod files;
pub mod output;
pub mod plan;
pub mod repo;
pub mod variables;

pub use error::ExecError;
