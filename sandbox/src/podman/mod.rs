//! The real backend: rootless Podman with a per-job container store (reading base images from the
//! shared read-only store) behind a per-job libpod API service started on demand.
//!
//! In parts: [`api`] is the libpod client, [`spec`] the typed documents it sends, `service` the
//! per-job API service and build socket, `buildkit` the per-job BuildKit daemon, `store` the
//! shared base store and the job's own, `teardown` the end of a job. This module wires them
//! behind [`Sandbox`].

pub mod api;
mod buildkit;
mod service;
mod signatures;
pub mod spec;
mod store;
mod teardown;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_config::admin::NetworkMode;
use berth_config::{PullPolicy, StageTarget};
use tokio::io::AsyncWrite;
use tokio_util::sync::CancellationToken;

use crate::agent::{AgentDir, ScriptEnd};
use crate::hosts;
use crate::identity::Identity;
use crate::paths::{HOSTS_FILE, JobPaths};
use crate::process::{self, CommandSpec};
use crate::{
    BuiltImage, ContainerSpec, ImageInfo, PodSpec, PullOptions, Role, Sandbox, SandboxError,
    Started,
};
use api::Api;
pub use store::{
    JOB_LABEL, job_keys, job_labels, open_lock, remove_base_images, remove_in_user_namespace,
};
pub use teardown::{processes_mentioning, stop_identity, wipe_runtime_home};

/// Backend settings that do not vary per job.
#[derive(Debug, Clone)]
pub struct PodmanSettings {
    /// The `podman` binary.
    pub podman: PathBuf,
    /// Shell for stage scripts (`bash` falls back to `sh`).
    pub shell: String,
    /// Grace between SIGTERM and SIGKILL when stopping scripts.
    pub stop_grace: Duration,
    /// Idle timeout of the per-job API service, seconds.
    pub api_idle_timeout_secs: u64,
    /// The shared base store and who writes it (pulls, collection).
    pub store: StoreAccess,
    /// Environment for every Podman process of the job (`HOME`, `XDG_RUNTIME_DIR`, `TMPDIR`).
    pub env: Vec<(String, String)>,
    /// The job's own identity (started as root): every process of the job runs as it, and
    /// teardown ends every process it owns. None: berth's own user, shared by all its jobs.
    pub job_identity: Option<Identity>,
    /// The berth binary and mode of the job's build socket proxy (None: no build socket).
    pub build_socket_proxy: Option<crate::proxy::Launch>,
    /// The `buildkitd` binary for a per-job rootless BuildKit (None: not offered).
    pub buildkitd: Option<PathBuf>,
    /// Let BuildKit's RUN steps use the host network (else slirp4netns without host loopback).
    pub buildkit_host_network: bool,
    /// A BuildKit root shared by the jobs of one project and ref kind (None: per job).
    pub buildkit_shared_root: Option<PathBuf>,
    /// Registries (`host[:port]`) the job's Podman service reaches without TLS verification.
    pub insecure_registries: Vec<String>,
    /// Pull-through mirrors tried before each registry, for base image pulls and the job's
    /// Podman service.
    pub registry_mirrors: Vec<berth_config::admin::RegistryMirror>,
}

/// The shared base store, written only by the store identity.
#[derive(Debug, Clone, Default)]
pub struct StoreAccess {
    /// The store itself (not a job's view of it).
    pub root: PathBuf,
    /// Podman runroot for it.
    pub runroot: PathBuf,
    /// Environment of Podman processes on it.
    pub env: Vec<(String, String)>,
    /// The store identity's (uid, gid), when berth runs jobs under other identities.
    pub identity: Option<(u32, u32)>,
    /// Directory of the root-made lock files (pulls, collection) every identity may open.
    pub locks: PathBuf,
}

/// Rootless Podman for one job.
#[derive(Debug)]
pub struct PodmanSandbox {
    paths: JobPaths,
    settings: PodmanSettings,
    api: Api,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The host's hosts file (none: empty), refused beyond [`hosts::HOST_HOSTS_LIMIT`] bytes.
fn read_host_hosts(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(hosts::HOST_HOSTS_LIMIT + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > hosts::HOST_HOSTS_LIMIT {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "larger than {} bytes; shorten it or use network = \"slirp4netns\"",
                hosts::HOST_HOSTS_LIMIT
            ),
        ));
    }
    Ok(bytes)
}

fn mkdir(path: &Path, mode: u32) -> Result<(), SandboxError> {
    std::fs::create_dir_all(path).map_err(io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))
}

impl PodmanSandbox {
    /// The backend for the job at `paths`.
    pub fn new(paths: JobPaths, settings: PodmanSettings) -> Self {
        let api = Api::new(&paths.socket());
        Self {
            paths,
            settings,
            api,
        }
    }

    /// The job's paths.
    pub fn paths(&self) -> &JobPaths {
        &self.paths
    }

    /// A command as the job: its identity and its Podman environment.
    fn command(&self) -> CommandSpec {
        let mut spec = CommandSpec::new(&self.settings.podman);
        for (k, v) in &self.settings.env {
            spec = spec.env(k, v);
        }
        if let Some(id) = &self.settings.job_identity {
            spec = spec.as_identity(id.uid, id.gid);
        }
        spec
    }

    /// `podman` on the job's own store.
    fn podman(&self) -> CommandSpec {
        let mut spec = self.command();
        spec.args
            .extend(self.paths.podman_store_args().into_iter().map(Into::into));
        spec
    }

    /// Writes the job's `/etc/hosts` for the host network (where Podman ignores the pod's extra
    /// hosts): in the job directory, root's when the job has an identity, so the job can neither
    /// change nor replace it; beneath a handle of that directory, a planted link replaced.
    fn write_hosts_file(&self, aliases: &[String]) -> Result<(), SandboxError> {
        let host_path = Path::new(hosts::ETC_HOSTS);
        let host = read_host_hosts(host_path).map_err(io(host_path))?;
        let names: Vec<String> = std::iter::once(spec::POD_HOSTNAME.to_owned())
            .chain(aliases.iter().cloned())
            .collect();
        let path = self.paths.hosts_file();
        let text = hosts::job_hosts_file(&host, &names)
            .map_err(|e| io(&path)(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
        process::as_root(|| {
            berth_beneath::Dir::open(&self.paths.job_dir)
                .and_then(|dir| dir.write_atomic(HOSTS_FILE, &text, 0o644))
        })
        .map_err(io(&path))
    }

    fn builders(&self) -> spec::Builders {
        spec::Builders {
            buildkit: self.settings.buildkitd.is_some(),
            build_socket: self.settings.build_socket_proxy.is_some(),
        }
    }
}

impl Sandbox for PodmanSandbox {
    async fn start(&self) -> Result<(), SandboxError> {
        mkdir(&self.paths.work(), 0o700)?;
        mkdir(&self.paths.home(), 0o700)?;
        mkdir(&self.paths.storage(), 0o700)?;
        // Non-root users in job images must be able to write the checkout, as with Docker.
        mkdir(&self.paths.builds(), 0o777)?;
        for target in [StageTarget::Helper, StageTarget::Job] {
            AgentDir::new(self.paths.agent(target), target.as_str()).create()?;
        }
        mkdir(&self.paths.run_dir, 0o700)?;
        mkdir(&self.paths.runroot(), 0o700)?;
        mkdir(&self.paths.tmpdir(), 0o700)?;
        if service::needs_registries_conf(&self.settings) {
            self.write_registries_conf()?;
        }
        self.ensure_service().await
    }

    async fn ensure_image(
        &self,
        image: &str,
        policies: &[PullPolicy],
        pull: &PullOptions,
    ) -> Result<ImageInfo, SandboxError> {
        let mut tried = Vec::new();
        for policy in policies {
            let present = self
                .api
                .image_exists(image)
                .await
                .map_err(SandboxError::runtime(format!("look up image {image}")))?;
            let outcome = match policy {
                PullPolicy::Never if present => Ok(()),
                PullPolicy::Never => {
                    Err("not in the base image store (pull policy \"never\")".to_owned())
                }
                PullPolicy::IfNotPresent if present => Ok(()),
                PullPolicy::IfNotPresent | PullPolicy::Always => {
                    let started = std::time::Instant::now();
                    let pulled = self.pull(image, pull).await;
                    let seconds = started.elapsed().as_secs_f64();
                    let bytes = match &pulled {
                        Ok(()) => self
                            .api
                            .image_inspect(image)
                            .await
                            .ok()
                            .and_then(|i| i.size),
                        Err(_) => None,
                    };
                    berth_telemetry::recorder::note(berth_telemetry::Event::ImagePulled {
                        ok: pulled.is_ok(),
                        seconds,
                        bytes,
                    });
                    pulled.map_err(|e| format!("pull failed ({}): {e}", policy.as_str()))
                }
            };
            match outcome {
                Ok(()) => return self.inspect_image(image).await,
                Err(reason) => tried.push(reason),
            }
        }
        Err(SandboxError::ImageUnavailable {
            image: image.to_owned(),
            reason: tried.join("; then "),
        })
    }

    async fn registry_signatures(
        &self,
        image: &str,
        repository: &str,
        kind: crate::Attachment,
        pull: &PullOptions,
    ) -> Result<crate::RegistrySignatures, SandboxError> {
        Self::registry_signatures(self, image, repository, kind, pull).await
    }

    async fn registry_manifest(
        &self,
        image: &str,
        pull: &PullOptions,
    ) -> Result<crate::RegistryManifest, SandboxError> {
        Self::registry_manifest(self, image, pull).await
    }

    async fn attach_signatures(
        &self,
        repository: &str,
        digest: &str,
        kind: crate::Attachment,
        layers: &[crate::SignedLayer],
        pull: &PullOptions,
    ) -> Result<(), SandboxError> {
        Self::attach_signatures(self, repository, digest, kind, layers, pull).await
    }

    async fn create_pod(&self, spec: &PodSpec) -> Result<(), SandboxError> {
        if spec.network == NetworkMode::Host {
            self.write_hosts_file(&spec.hosts)?;
        }
        let action = || format!("create the job's pod {}", spec.name);
        self.api
            .pod_create(&spec::pod(spec))
            .await
            .map_err(SandboxError::runtime(action()))?;
        self.api
            .pod_start(&spec.name)
            .await
            .map_err(SandboxError::runtime(action()))
    }

    async fn run_container(&self, spec: &ContainerSpec) -> Result<Started, SandboxError> {
        if spec.role == Role::Job {
            self.start_build_socket().await?;
            self.start_buildkit().await?;
        }
        let role = match spec.role {
            Role::Service => "service",
            Role::Helper => "helper",
            Role::Job => "job",
        };
        let action = |verb: &str| format!("{verb} the {role} container {}", spec.name);
        self.api
            .container_create(&spec::container(&self.paths, self.builders(), spec))
            .await
            .map_err(SandboxError::runtime(action("create")))?;
        self.api
            .container_start(&spec.name)
            .await
            .map_err(SandboxError::runtime(action("start")))?;
        let state = self
            .api
            .container_inspect(&spec.name)
            .await
            .map_err(SandboxError::runtime(action("inspect")))?
            .state;
        let exited = async |api: &Api| -> SandboxError {
            let exit_code = api
                .container_inspect(&spec.name)
                .await
                .map(|i| i.state.exit_code)
                .unwrap_or(-1);
            SandboxError::ContainerExited {
                role: role.to_owned(),
                image: spec.image.clone(),
                exit_code,
                logs: api
                    .container_logs_tail(&spec.name)
                    .await
                    .unwrap_or_default(),
            }
        };
        if !state.running {
            return Err(exited(&self.api).await);
        }
        if let Some(target) = spec::agent_target(spec.role) {
            let agent = AgentDir::new(self.paths.agent(target), role);
            let pid = state.pid;
            let ready = agent
                .wait_ready(Duration::from_secs(30), async || process::alive(pid))
                .await;
            match ready {
                Ok(()) => {}
                Err(crate::agent::AgentError::ContainerGone { .. }) => {
                    return Err(exited(&self.api).await);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Started {
            init_pid: state.pid,
        })
    }

    async fn wait_ports(
        &self,
        service: &str,
        started: Started,
        ports: &[u16],
        timeout: Duration,
    ) -> Result<(), SandboxError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let open = crate::ports::listening_tcp_ports(started.init_pid);
            let missing: Vec<u16> = ports
                .iter()
                .copied()
                .filter(|p| !open.contains(p))
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline || !process::alive(started.init_pid) {
                return Err(SandboxError::ServiceNotReady {
                    service: service.to_owned(),
                    ports: missing,
                    secs: timeout.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn exec(
        &self,
        target: StageTarget,
        started: Started,
        id: &str,
        script: &[u8],
        mut out: &mut (dyn AsyncWrite + Unpin + Send),
        cancel: &CancellationToken,
    ) -> Result<ScriptEnd, SandboxError> {
        let agent = AgentDir::new(self.paths.agent(target), target.as_str());
        let request = crate::agent::ScriptRun {
            id,
            script,
            shell: &self.settings.shell,
            container_init_pid: started.init_pid,
            grace: self.settings.stop_grace,
        };
        let end = agent.run(&request, &mut out, cancel).await?;
        if matches!(end, ScriptEnd::Cancelled(_)) && target == StageTarget::Job {
            self.stop_service_builds().await;
        }
        Ok(end)
    }

    async fn built_images(&self) -> Result<Vec<BuiltImage>, SandboxError> {
        let mut out = Vec::new();
        for (store, builder) in [
            (self.paths.storage(), "build-socket"),
            (self.paths.nested().join("storage"), "nested"),
        ] {
            out.extend(store::images_in_store(&store, builder)?);
        }
        out.extend(self.buildkit_images().await);
        Ok(out)
    }

    async fn teardown(&self) -> Vec<SandboxError> {
        self.teardown_job().await
    }
}
