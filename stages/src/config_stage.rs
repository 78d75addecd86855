//! `berth config`: the JSON that tells gitlab-runner the in-container paths, the driver and the
//! `job_env` later stages need.

use std::collections::BTreeMap;

use berth_config::ConfigOutput;
use berth_config::protocol::{DriverInfo, job_env};

use crate::Job;

/// Builds directory inside every job container.
pub const BUILDS_DIR: &str = "/builds";
/// Cache directory inside every job container.
pub const CACHE_DIR: &str = "/cache";

/// The config stage's output for `job`.
pub fn config_output(job: &Job, host_name: &str) -> ConfigOutput {
    ConfigOutput {
        builds_dir: BUILDS_DIR.to_owned(),
        cache_dir: CACHE_DIR.to_owned(),
        builds_dir_is_shared: false,
        hostname: job
            .config
            .hostname
            .clone()
            .unwrap_or_else(|| host_name.to_owned()),
        driver: DriverInfo {
            name: "berth".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        },
        shell: job.config.shell.clone(),
        job_env: BTreeMap::from([(job_env::JOB_KEY.to_owned(), job.key.clone())]),
    }
}
