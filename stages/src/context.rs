//! One job as every stage sees it: validated config, the runner's environment, the trusted
//! payload, the job key and the paths derived from it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_config::admin::BuildSocket;
use berth_config::{Config, ContractEnv, JobPayload};
use berth_sandbox::paths::JobPaths;
use berth_sandbox::podman::PodmanSettings;

use crate::StageError;
use crate::naming;
use crate::state::ProcessIdentity;

/// Facts about the host berth runs on, gathered by the binary before it drops privileges.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// The per-user runtime directory berth uses (`/run/user/UID/berth` by default).
    pub runtime_dir: PathBuf,
    /// The gitlab-runner binary to mount into the helper, if known.
    pub runner_binary: Option<PathBuf>,
    /// The calling gitlab-runner process.
    pub runner: Option<ProcessIdentity>,
    /// Environment for Podman: `HOME`, `XDG_RUNTIME_DIR`, `TMPDIR` of the runner user.
    pub podman_env: Vec<(String, String)>,
    /// The `podman` binary.
    pub podman: PathBuf,
    /// The berth binary itself (runs the build socket proxy).
    pub berth: Option<PathBuf>,
}

/// One job.
#[derive(Debug)]
pub struct Job {
    /// Validated config.
    pub config: Config,
    /// The runner's environment.
    pub env: ContractEnv,
    /// The trusted payload.
    pub payload: JobPayload,
    /// The job key.
    pub key: String,
    /// Host paths.
    pub paths: JobPaths,
    /// Host facts.
    pub host: HostFacts,
}

impl Job {
    /// Assembles the job from the payload text the binary read from `JOB_RESPONSE_FILE`.
    pub fn new(
        config: Config,
        env: ContractEnv,
        payload_text: &str,
        host: HostFacts,
    ) -> Result<Self, StageError> {
        let payload = JobPayload::from_json(payload_text).map_err(|e| StageError::Contract {
            what: "a readable job payload (JOB_RESPONSE_FILE)".into(),
            detail: e.to_string(),
        })?;
        if payload.id == 0 {
            return Err(StageError::Contract {
                what: "a job id in the payload".into(),
                detail: "id is 0".into(),
            });
        }
        let key = env
            .job_key()
            .map_or_else(|| naming::job_key(&payload, &env), str::to_owned);
        let paths = JobPaths::new(
            &key,
            &config.jobs_dir(),
            &host.runtime_dir,
            &config.image_store(),
        );
        Ok(Self {
            config,
            env,
            payload,
            key,
            paths,
            host,
        })
    }

    /// The per-project cache directory, kept apart for protected refs as the Docker executor does.
    pub fn cache_dir(&self) -> PathBuf {
        let project = self.payload.job_info.project_id;
        let suffix = if self.payload.git_info.protected == Some(true) {
            "-protected"
        } else {
            ""
        };
        self.config
            .cache_root()
            .join(format!("project-{project}{suffix}"))
    }

    /// Settings for the Podman backend.
    pub fn podman_settings(&self) -> PodmanSettings {
        let mut settings = podman_settings(&self.config, &self.host);
        if self.config.buildkit_cache_per_project {
            settings.buildkit_shared_root = Some(self.buildkit_cache_dir());
        }
        settings
    }

    /// The project's BuildKit root, kept apart for protected refs like the cache directory.
    pub fn buildkit_cache_dir(&self) -> PathBuf {
        let name = self
            .cache_dir()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.config.state_dir.join("buildkit-cache").join(name)
    }

    /// The job's timeout in seconds (the runner's default when the payload has none).
    pub fn timeout_secs(&self) -> u64 {
        match self.payload.runner_info.timeout {
            0 => 7200,
            t => t,
        }
    }
}

/// Settings for the Podman backend from the config and the host, with or without a job.
pub fn podman_settings(config: &Config, host: &HostFacts) -> PodmanSettings {
    PodmanSettings {
        podman: host.podman.clone(),
        shell: config.shell.clone(),
        stop_grace: Duration::from_secs(config.stop_grace_secs),
        // The build socket's proxy cannot restart the service it fronts: with a socket the service
        // lives as long as the job (cleanup and reap stop it).
        api_idle_timeout_secs: if config.build_socket != BuildSocket::Off {
            0
        } else {
            config.api_idle_timeout_secs
        },
        base_runroot: host.runtime_dir.join("base-run"),
        env: host.podman_env.clone(),
        buildkitd: config.buildkitd.clone(),
        buildkit_host_network: config.buildkit_host_network,
        buildkit_shared_root: None,
        build_socket_proxy: host
            .berth
            .clone()
            .filter(|_| config.build_socket != BuildSocket::Off)
            .map(|berth| berth_sandbox::proxy::Launch {
                berth,
                mode: config.build_socket,
            }),
        insecure_registries: config.insecure_registries.clone(),
    }
}

/// The default runtime directory for `uid`.
pub fn default_runtime_dir(uid: u32) -> PathBuf {
    Path::new("/run/user").join(uid.to_string()).join("berth")
}
