//! One job as every stage sees it: validated config, the runner's environment, the trusted
//! payload, the job key and the paths derived from it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_config::admin::BuildSocket;
use berth_config::{Config, ContractEnv, JobPayload};
use berth_sandbox::identity::Identity;
use berth_sandbox::paths::JobPaths;
use berth_sandbox::podman::{PodmanSettings, StoreAccess};

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
    /// Environment for the job's Podman: `HOME`, `XDG_RUNTIME_DIR`, `TMPDIR`, the config home.
    pub podman_env: Vec<(String, String)>,
    /// The job's own identity, when berth started as root (None: berth's own user).
    pub job_identity: Option<Identity>,
    /// The base store as the store identity writes it.
    pub store: StoreAccess,
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
        let paths = job_paths(&config, &host, &key);
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

    /// The same job run by the host `host` describes (its job identity, once leased).
    #[must_use]
    pub fn with_host(mut self, host: HostFacts) -> Self {
        self.paths = job_paths(&self.config, &host, &self.key);
        self.host = host;
        self
    }

    /// Settings for the Podman backend.
    pub fn podman_settings(&self) -> PodmanSettings {
        let mut settings = job_settings(&self.config, &self.host, &self.paths);
        if self.config.buildkit_cache_per_project {
            settings.buildkit_shared_root = Some(if self.host.job_identity.is_some() {
                self.paths.buildkit_cache_mount()
            } else {
                self.buildkit_cache_dir()
            });
        }
        settings
    }

    /// The project's `/cache` as this job's containers mount it.
    pub fn cache_source(&self) -> PathBuf {
        if self.host.job_identity.is_some() {
            self.paths.cache_mount()
        } else {
            self.cache_dir()
        }
    }

    /// The project's scanner layer cache, on disk (kept apart for protected refs): a scan of
    /// one project never reads what another project's job could have written.
    pub fn scan_cache_dir(&self) -> PathBuf {
        let name = self
            .cache_dir()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.config.state_dir.join("scan-cache").join(name)
    }

    /// The scanner layer cache as this job's scans use it.
    pub fn scan_cache_source(&self) -> PathBuf {
        if self.host.job_identity.is_some() {
            self.paths.scan_cache_mount()
        } else {
            self.scan_cache_dir()
        }
    }

    /// The kept caches root mounts for this job: (on disk, mount point, mode of a new one).
    pub fn kept_caches(&self) -> Vec<(PathBuf, PathBuf, u32)> {
        let buildkit = self
            .config
            .buildkit_cache_per_project
            .then(|| self.buildkit_cache_dir());
        crate::identities::kept_caches(
            &self.paths,
            &self.cache_dir(),
            buildkit.as_deref(),
            &self.scan_cache_dir(),
        )
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

/// The paths of job `key` run by `host`: with a job identity, it reads the base store through
/// that identity's view.
pub fn job_paths(config: &Config, host: &HostFacts, key: &str) -> JobPaths {
    let image_view = host
        .job_identity
        .as_ref()
        .map_or_else(|| config.image_store(), crate::identities::base_view);
    JobPaths::new(key, &config.jobs_dir(), &host.runtime_dir, &image_view)
        .for_instance(config.instance().as_deref())
}

/// Settings for the Podman backend of the job at `paths`.
pub fn job_settings(config: &Config, host: &HostFacts, paths: &JobPaths) -> PodmanSettings {
    let mut settings = podman_settings(config, host);
    if host.job_identity.is_some() {
        home_in_job(&mut settings, paths);
    }
    settings
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
        store: host.store.clone(),
        env: host.podman_env.clone(),
        job_identity: host.job_identity.clone(),
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
        registry_mirrors: config.registry_mirrors.clone(),
    }
}

/// berth's Podman configuration for every identity (`CONTAINERS_CONF`): root's file, which no
/// job identity can change, written by setup-host.sh.
pub const PODMAN_CONF: &str = "/etc/berth/podman/containers/containers.conf";

/// The environment Podman (or BuildKit) runs with as user `name`.
pub fn identity_env(
    name: &str,
    uid: u32,
    home: &Path,
    runtime_dir: &Path,
) -> Vec<(String, String)> {
    vec![
        ("HOME".into(), home.display().to_string()),
        ("USER".into(), name.to_owned()),
        ("LOGNAME".into(), name.to_owned()),
        ("XDG_RUNTIME_DIR".into(), format!("/run/user/{uid}")),
        // The runner's TMPDIR is its own root-only directory, deleted at cleanup.
        ("TMPDIR".into(), runtime_dir.display().to_string()),
        // Podman keeps its CNI lock directory here: the identity's own, for this job only.
        (
            "XDG_CONFIG_HOME".into(),
            home.join(".config").display().to_string(),
        ),
        ("CONTAINERS_CONF".into(), PODMAN_CONF.into()),
    ]
}

impl HostFacts {
    /// Started as root: the job runs as `job` (None for stages that need no identity), the
    /// base store belongs to `store`.
    pub fn with_identities(config: &Config, job: Option<&Identity>, store: &Identity) -> Self {
        let store_runtime = config
            .runtime_dir
            .clone()
            .unwrap_or_else(|| default_runtime_dir(store.uid));
        let store_access = StoreAccess {
            root: config.image_store(),
            runroot: store_runtime.join("base-run"),
            env: identity_env(&store.name, store.uid, &store.home, &store_runtime),
            identity: Some((store.uid, store.gid)),
            locks: config.state_dir.join("locks"),
        };
        let (runtime_dir, podman_env) = match job {
            Some(id) => {
                let runtime = default_runtime_dir(id.uid);
                let env = identity_env(&id.name, id.uid, Path::new("/nonexistent"), &runtime);
                (runtime, env)
            }
            None => (store_runtime, store_access.env.clone()),
        };
        Self {
            runtime_dir,
            podman_env,
            job_identity: job.cloned(),
            store: store_access,
            ..Self::default()
        }
    }

    /// Started unprivileged: everything runs as berth's own user (`name`, `uid`, `home`).
    pub fn as_own_user(config: &Config, name: &str, uid: u32, home: &Path) -> Self {
        let runtime_dir = config
            .runtime_dir
            .clone()
            .unwrap_or_else(|| default_runtime_dir(uid));
        let mut env = identity_env(name, uid, home, &runtime_dir);
        // Its own Podman configuration, as a user running Podman keeps it.
        env.retain(|(k, _)| k != "CONTAINERS_CONF");
        Self {
            store: StoreAccess {
                root: config.image_store(),
                runroot: runtime_dir.join("base-run"),
                env: env.clone(),
                identity: None,
                locks: config.state_dir.join("locks"),
            },
            runtime_dir,
            podman_env: env,
            job_identity: None,
            ..Self::default()
        }
    }
}

/// A job identity's home and temporary directory are inside its job: nothing of them outlives
/// the job (builds leave subordinate-id files in TMPDIR, removed in the user namespace).
fn home_in_job(settings: &mut PodmanSettings, paths: &JobPaths) {
    let home = paths.home();
    for (k, v) in &mut settings.env {
        match k.as_str() {
            "HOME" => *v = home.display().to_string(),
            "XDG_CONFIG_HOME" => *v = home.join(".config").display().to_string(),
            "TMPDIR" => *v = paths.tmpdir().display().to_string(),
            _ => {}
        }
    }
}

/// The default runtime directory for `uid`.
pub fn default_runtime_dir(uid: u32) -> PathBuf {
    Path::new("/run/user").join(uid.to_string()).join("berth")
}
