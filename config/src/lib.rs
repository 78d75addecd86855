//! berth-config: the admin's TOML (raw → validated) and GitLab's custom-executor contract as types.
//!
//! Nothing outside this crate parses `CUSTOM_ENV_*`, the job payload or the admin config.

pub mod admin;
pub mod protocol;
pub mod trust;

pub use admin::{Config, ConfigError, ConfigProblem, PullPolicy};
pub use protocol::{ConfigOutput, ContractEnv, JobPayload, RunStage, StageTarget};
