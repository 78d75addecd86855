//! The real gitlab-runner, run once per job attempt as `gitlab-runner run-single` against the
//! embedded coordinator with berth as its custom executor: its config.toml (typed, written with
//! `toml`), where its binary comes from, and the berth config the job's stages read.

use std::path::{Path, PathBuf};

use berth_sandbox::process::{self, CommandSpec, ProcessError};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::ExecError;

/// `config.toml` of one run-single.
#[derive(Debug, Serialize)]
struct RunnerToml {
    concurrent: u32,
    check_interval: u32,
    runners: Vec<RunnerEntry>,
}

#[derive(Debug, Serialize)]
struct RunnerEntry {
    name: String,
    url: String,
    token: String,
    executor: &'static str,
    builds_dir: &'static str,
    cache_dir: &'static str,
    shell: &'static str,
    feature_flags: FeatureFlags,
    custom: CustomSection,
}

#[derive(Debug, Serialize)]
struct FeatureFlags {
    /// The 19.x runner prefixes every trace line with a timestamp unless told otherwise.
    #[serde(rename = "FF_TIMESTAMPS")]
    timestamps: bool,
}

#[derive(Debug, Serialize)]
struct CustomSection {
    config_exec: String,
    config_args: Vec<String>,
    prepare_exec: String,
    prepare_args: Vec<String>,
    run_exec: String,
    run_args: Vec<String>,
    cleanup_exec: String,
    cleanup_args: Vec<String>,
    graceful_kill_timeout: u32,
    force_kill_timeout: u32,
}

/// One runner for one job attempt.
#[derive(Debug, Clone)]
pub struct RunnerSpec {
    /// Runner name (`-r`).
    pub name: String,
    /// The coordinator's base URL.
    pub url: String,
    /// The runner token the coordinator binds the job to.
    pub token: String,
    /// The berth binary the runner calls for every stage.
    pub berth: PathBuf,
    /// The berth config those stages read.
    pub berth_config: PathBuf,
}

impl RunnerSpec {
    /// The config.toml text.
    ///
    /// # Errors
    /// A path is not UTF-8 (TOML cannot hold it).
    pub fn to_toml(&self) -> Result<String, ExecError> {
        let utf8 = |p: &Path| {
            p.to_str().map(str::to_owned).ok_or_else(|| {
                ExecError::BerthConfig(format!(
                    "{} is not UTF-8, which config.toml cannot hold: move it",
                    p.display()
                ))
            })
        };
        let berth = utf8(&self.berth)?;
        let config = utf8(&self.berth_config)?;
        let args = |stage: &str| vec!["--config".to_owned(), config.clone(), stage.to_owned()];
        let toml = RunnerToml {
            concurrent: 1,
            check_interval: 1,
            runners: vec![RunnerEntry {
                name: self.name.clone(),
                url: self.url.clone(),
                token: self.token.clone(),
                executor: "custom",
                builds_dir: "/builds",
                cache_dir: "/cache",
                shell: "bash",
                feature_flags: FeatureFlags { timestamps: false },
                custom: CustomSection {
                    config_exec: berth.clone(),
                    config_args: args("config"),
                    prepare_exec: berth.clone(),
                    prepare_args: args("prepare"),
                    run_exec: berth.clone(),
                    run_args: args("run"),
                    cleanup_exec: berth,
                    cleanup_args: args("cleanup"),
                    graceful_kill_timeout: 10,
                    force_kill_timeout: 5,
                },
            }],
        };
        toml::to_string(&toml).map_err(|e| ExecError::Runner {
            job: self.name.clone(),
            detail: format!("cannot write its config.toml: {e}"),
        })
    }
}

/// The gitlab-runner binary: the configured one, else `gitlab-runner` on `PATH`.
///
/// # Errors
/// Neither exists.
pub fn locate(
    configured: Option<&Path>,
    path_var: Option<&std::ffi::OsStr>,
) -> Result<PathBuf, ExecError> {
    if let Some(path) = configured {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(ExecError::NoRunner {
                detail: format!("{} (gitlab_runner_binary) does not exist", path.display()),
            })
        };
    }
    path_var
        .into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("gitlab-runner"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| ExecError::NoRunner {
            detail: "gitlab-runner is not on PATH".to_owned(),
        })
}

/// How one run-single ended.
#[derive(Debug)]
pub struct RunnerExit {
    /// Whether it exited 0.
    pub success: bool,
    /// The end of its output, for an error.
    pub tail: String,
}

/// Runs `run-single` for the runner in `config_path` until it has taken and finished one job.
/// Cancelling stops its process group (SIGTERM, grace, SIGKILL): the runner then cancels the
/// job and berth's cleanup runs.
///
/// # Errors
/// The runner could not be started.
pub async fn run_single(
    binary: &Path,
    config_path: &Path,
    name: &str,
    cancel: &CancellationToken,
) -> Result<RunnerExit, ExecError> {
    let mut spec = CommandSpec::new(binary).args([
        "run-single".as_ref(),
        "-c".as_ref(),
        config_path.as_os_str(),
        "-r".as_ref(),
        name.as_ref(),
        "--max-builds".as_ref(),
        "1".as_ref(),
        "--wait-timeout".as_ref(),
        "30".as_ref(),
    ]);
    // The runner's own graceful shutdown lets the job's cleanup finish.
    spec.grace = std::time::Duration::from_secs(30);
    if let Some(home) = std::env::var_os("HOME") {
        spec = spec.env("HOME", home);
    }
    match process::run(&spec, cancel).await {
        Ok(output) => Ok(RunnerExit {
            success: true,
            tail: process::tail(&output.stderr),
        }),
        Err(ProcessError::Failed { stderr_tail, .. }) => Ok(RunnerExit {
            success: false,
            tail: stderr_tail,
        }),
        Err(ProcessError::Cancelled { .. }) => Ok(RunnerExit {
            success: false,
            tail: "canceled".to_owned(),
        }),
        Err(e) => Err(ExecError::Runner {
            job: name.to_owned(),
            detail: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runner_config_names_berth_for_every_stage_and_turns_timestamps_off() {
        let spec = RunnerSpec {
            name: "berth-exec-1".to_owned(),
            url: "http://127.0.0.1:4000".to_owned(),
            token: "glrt-x".to_owned(),
            berth: PathBuf::from("/usr/bin/berth"),
            berth_config: PathBuf::from("/p/.berth/exec/berth.toml"),
        };
        let text = spec.to_toml().expect("toml");
        let parsed: toml::Table = toml::from_str(&text).expect("parses");
        let runner = &parsed["runners"][0];
        assert_eq!(runner["executor"].as_str(), Some("custom"));
        assert_eq!(
            runner["feature_flags"]["FF_TIMESTAMPS"].as_bool(),
            Some(false)
        );
        assert_eq!(
            runner["custom"]["run_args"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>()),
            Some(vec!["--config", "/p/.berth/exec/berth.toml", "run"])
        );
    }

    #[test]
    fn the_runner_is_the_configured_one_or_found_on_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = locate(None, Some(dir.path().as_os_str()));
        assert!(matches!(missing, Err(ExecError::NoRunner { .. })));
        std::fs::write(dir.path().join("gitlab-runner"), "").expect("write");
        assert_eq!(
            locate(None, Some(dir.path().as_os_str())).expect("found"),
            dir.path().join("gitlab-runner")
        );
        assert!(locate(Some(&dir.path().join("nope")), None).is_err());
    }
}
