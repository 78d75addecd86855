//! The real backend: rootless Podman with a per-job container store (reading base images from the
//! shared read-only store) behind a per-job libpod API service started on demand.

pub mod api;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use berth_config::{PullPolicy, StageTarget};
use serde_json::{Value, json};
use tokio::io::AsyncWrite;
use tokio_util::sync::CancellationToken;

use crate::agent::{AGENT_SCRIPT, AgentDir, MOUNT_POINT, ScriptEnd};
use crate::identity::Identity;
use crate::paths::JobPaths;
use crate::process::{self, CommandSpec};
use crate::{
    BuiltImage, ContainerSpec, ImageInfo, PodSpec, PullOptions, Role, Sandbox, SandboxError,
    Started,
};
use api::Api;

/// Label every object of a job carries.
pub const JOB_LABEL: &str = "berth.job";

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

/// Where the BuildKit socket appears in the job container.
pub const BUILDKIT_SOCKET_DIR: &str = "/run/buildkit";

/// Where the build socket appears in the job container.
pub const BUILD_SOCKET_DIR: &str = "/run/berth";

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

fn mkdir(path: &Path, mode: u32) -> Result<(), SandboxError> {
    std::fs::create_dir_all(path).map_err(io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))
}

fn remove_tree(path: &Path) -> Result<(), SandboxError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
        _ => Ok(()),
    }
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

    fn podman(&self) -> CommandSpec {
        let mut spec = self.command();
        spec.args
            .extend(self.paths.podman_store_args().into_iter().map(Into::into));
        spec
    }

    fn base_podman(&self) -> CommandSpec {
        base_store_podman(&self.settings).args([
            "--cgroup-manager".to_owned(),
            "cgroupfs".to_owned(),
            "--events-backend".to_owned(),
            "file".to_owned(),
        ])
    }

    fn write_registries_conf(&self) -> Result<(), SandboxError> {
        let host_path = Path::new(crate::registries::HOST_REGISTRIES_CONF);
        let host = match std::fs::read_to_string(host_path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(host_path)(e)),
        };
        let text = crate::registries::with_insecure(host.as_deref(), &self.settings.insecure_registries)
            .map_err(|why| {
                io(host_path)(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("cannot add the berth config's insecure_registries to it: {why}; fix the file or empty insecure_registries"),
                ))
            })?;
        let path = self.paths.registries_conf();
        std::fs::write(&path, text).map_err(io(&path))
    }

    /// Starts the per-job API service unless it already answers.
    async fn ensure_service(&self) -> Result<(), SandboxError> {
        if self.api.ping().await.is_ok() {
            return Ok(());
        }
        let socket = self.paths.socket();
        let _ = std::fs::remove_file(&socket);
        let mut spec = self.podman();
        let registries = self.paths.registries_conf();
        if registries.exists() {
            spec = spec.env("CONTAINERS_REGISTRIES_CONF", registries);
        }
        let spec = spec.args([
            "system".to_owned(),
            "service".to_owned(),
            "--time".to_owned(),
            self.settings.api_idle_timeout_secs.to_string(),
            format!("unix://{}", socket.display()),
        ]);
        let pid = process::spawn_detached(&spec, &self.paths.service_log())?;
        let pid_file = self.paths.service_pid();
        std::fs::write(&pid_file, pid.to_string()).map_err(io(&pid_file))?;
        if let Err(e) = self.api.wait_ready(Duration::from_secs(20)).await {
            let log = std::fs::read(self.paths.service_log()).unwrap_or_default();
            process::stop_pid(pid, Duration::from_secs(1)).await;
            return Err(SandboxError::ServiceStart {
                pid,
                cause: e.to_string(),
                log_tail: process::tail(&log),
            });
        }
        Ok(())
    }

    async fn pull(&self, image: &str, pull: &PullOptions) -> Result<(), SandboxError> {
        let mut spec = self.base_podman().args(["pull", "--quiet"]);
        if pull.insecure {
            spec = spec.args(["--tls-verify=false"]);
        }
        if let Some(auth) = &pull.auth {
            let file = self.paths.auth_file();
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", auth.username, auth.password));
            let doc = json!({ "auths": { auth.registry.clone(): { "auth": token } } });
            // The pull runs as the store identity: the file is made for it alone, by root.
            let owner = self.settings.store.identity;
            process::as_root(|| {
                if let Some(dir) = file.parent() {
                    mkdir(dir, 0o711)?;
                }
                write_private(&file, doc.to_string().as_bytes(), owner)
            })?;
            spec = spec.args(["--authfile".into(), file.into_os_string()]);
        }
        spec = spec.args([image]);
        let lock_path = self.settings.store.locks.join("pull.lock");
        let lock = open_lock(&lock_path)?;
        // Pulls into the shared store are serialised; they only ever add images.
        let _guard = tokio::task::spawn_blocking(move || {
            nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        })
        .await
        .map_err(|e| io(&lock_path)(std::io::Error::other(e)))?
        .map_err(|(_, e)| io(&lock_path)(e.into()))?;
        let result = process::run(&spec, &CancellationToken::new()).await;
        let _ = process::as_root(|| std::fs::remove_file(self.paths.auth_file()));
        result.map(drop).map_err(SandboxError::from)
    }

    async fn inspect_image(&self, image: &str) -> Result<ImageInfo, SandboxError> {
        let inspect = self.api.image_inspect(image).await?;
        let tcp_ports = inspect
            .config
            .exposed_ports
            .unwrap_or_default()
            .keys()
            .filter_map(|k| {
                let (port, proto) = k.split_once('/').unwrap_or((k.as_str(), "tcp"));
                (proto == "tcp").then(|| port.parse().ok()).flatten()
            })
            .collect();
        Ok(ImageInfo {
            id: inspect.id,
            entrypoint: inspect.config.entrypoint,
            tcp_ports,
        })
    }

    fn spec_document(&self, spec: &ContainerSpec) -> Value {
        let mut mounts: Vec<Value> = spec
            .mounts
            .iter()
            .map(|m| {
                json!({
                    "type": "bind",
                    "source": m.source,
                    "destination": m.destination,
                    "options": ["rbind", if m.read_only { "ro" } else { "rw" }],
                })
            })
            .collect();
        let mut command = spec.command.clone();
        if let Some(target) = agent_target(spec.role) {
            // The control FIFO and the scripts are read-only to the container, so it cannot put
            // anything in their place; only results are written, beneath `out/`.
            mounts.push(json!({
                "type": "bind",
                "source": self.paths.agent(target),
                "destination": MOUNT_POINT,
                "options": ["rbind", "ro"],
            }));
            mounts.push(json!({
                "type": "bind",
                "source": self.paths.agent(target).join(crate::agent::OUT),
                "destination": format!("{MOUNT_POINT}/{}", crate::agent::OUT),
                "options": ["rbind", "rw"],
            }));
            command = Some(vec!["sh".into(), "-c".into(), AGENT_SCRIPT.into()]);
        }
        let mut limits = serde_json::Map::new();
        if let Some(bytes) = spec.limits.memory_bytes {
            limits.insert("memory".into(), json!({ "limit": bytes }));
        }
        if let Some(cpus) = spec.limits.cpus {
            let period = 100_000u64;
            #[expect(
                clippy::cast_possible_truncation,
                reason = "cpus is validated positive and finite"
            )]
            let quota = (cpus * period as f64).round() as i64;
            limits.insert("cpu".into(), json!({ "quota": quota, "period": period }));
        }
        if let Some(pids) = spec.limits.pids {
            limits.insert("pids".into(), json!({ "limit": pids }));
        }
        let mut doc = json!({
            "name": spec.name,
            "pod": spec.pod,
            "image": spec.image,
            "env": spec.env,
            "labels": spec.labels,
            "mounts": mounts,
            "no_new_privileges": spec.no_new_privileges,
            "cap_drop": spec.cap_drop,
            "privileged": false,
            "stop_timeout": 0,
            "terminal": false,
            "stdin": false,
        });
        if !limits.is_empty() {
            doc["resource_limits"] = Value::Object(limits);
        }
        if let Some(profile) = &spec.seccomp_profile {
            doc["seccomp_profile_path"] = json!(profile);
        }
        if !spec.unmask.is_empty() {
            doc["unmask"] = json!(spec.unmask);
        }
        if spec.role == Role::Job && self.settings.buildkitd.is_some() {
            doc["mounts"]
                .as_array_mut()
                .expect("mounts is an array")
                .push(json!({
                    "type": "bind",
                    "source": self.paths.buildkit().join("sock"),
                    "destination": BUILDKIT_SOCKET_DIR,
                    "options": ["rbind", "ro"],
                }));
            doc["env"]["BUILDKIT_HOST"] =
                json!(format!("unix://{BUILDKIT_SOCKET_DIR}/buildkitd.sock"));
        }
        if spec.role == Role::Job && self.settings.build_socket_proxy.is_some() {
            doc["mounts"]
                .as_array_mut()
                .expect("mounts is an array")
                .push(json!({
                    "type": "bind",
                    "source": self.paths.build_socket_dir(),
                    "destination": BUILD_SOCKET_DIR,
                    "options": ["rbind", "ro"],
                }));
            // `podman --remote` finds the socket at its default root path; CONTAINER_HOST would
            // turn every plain `podman` into a remote one and bypass the nested store.
            // Root in a user namespace looks under /run/user/0; real root under /run/podman.
            for destination in ["/run/podman/podman.sock", "/run/user/0/podman/podman.sock"] {
                doc["mounts"]
                    .as_array_mut()
                    .expect("mounts is an array")
                    .push(json!({
                        "type": "bind",
                        "source": self.paths.build_socket_dir().join("docker.sock"),
                        "destination": destination,
                        "options": ["rbind", "ro"],
                    }));
            }
            doc["env"]["DOCKER_HOST"] = json!(format!("unix://{BUILD_SOCKET_DIR}/docker.sock"));
        }
        if let Some(entrypoint) = &spec.entrypoint {
            doc["entrypoint"] = json!(entrypoint);
        }
        if let Some(command) = command {
            doc["command"] = json!(command);
        }
        doc
    }

    /// Starts the filtering proxy that serves the job's build socket (see `crate::proxy`).
    async fn start_build_socket(&self) -> Result<(), SandboxError> {
        let Some(launch) = &self.settings.build_socket_proxy else {
            return Ok(());
        };
        let dir = self.paths.build_socket_dir();
        mkdir(&dir, 0o755)?;
        let socket = dir.join("docker.sock");
        let mut spec = CommandSpec::new(launch.berth.clone()).args([
            "build-proxy".into(),
            "--mode".into(),
            launch.mode.as_str().into(),
            "--listen".into(),
            socket.clone().into_os_string(),
            "--upstream".into(),
            self.paths.socket().into_os_string(),
            "--bind-root".into(),
            self.paths.builds().into_os_string(),
            "--log".into(),
            self.paths.build_socket_log().into_os_string(),
        ]);
        for registry in &self.settings.insecure_registries {
            spec = spec.args(["--insecure-registry", registry.as_str()]);
        }
        let pid = process::spawn_detached(&spec, &self.paths.work().join("build-proxy.out"))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if tokio::time::Instant::now() >= deadline || !process::alive(pid) {
                let log =
                    std::fs::read(self.paths.work().join("build-proxy.out")).unwrap_or_default();
                return Err(SandboxError::ServiceStart {
                    pid,
                    cause: "the build socket proxy did not create its socket".into(),
                    log_tail: process::tail(&log),
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Images the job's BuildKit produced, from its build history, each made scannable as an
    /// OCI layout over BuildKit's own content store (no copy). Best effort: no daemon, no
    /// `buildctl` beside `buildkitd`, or no history means none.
    async fn buildkit_images(&self) -> Vec<BuiltImage> {
        let Some(buildctl) = self
            .settings
            .buildkitd
            .as_ref()
            .map(|d| d.with_file_name("buildctl"))
            .filter(|c| c.is_file())
        else {
            return Vec::new();
        };
        let dir = self.paths.buildkit();
        let socket = dir.join("sock/buildkitd.sock");
        if !socket.exists() {
            return Vec::new();
        }
        let spec = self.command().args([
            "--addr".to_owned(),
            format!("unix://{}", socket.display()),
            "debug".to_owned(),
            "histories".to_owned(),
            "--format".to_owned(),
            "{{json .}}".to_owned(),
        ]);
        let mut spec = spec;
        spec.program = buildctl;
        let Ok(output) = process::run(&spec, &CancellationToken::new()).await else {
            return Vec::new();
        };
        let blobs = dir.join("root/runc-overlayfs/content/blobs");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter_map(|event| {
                let record = event.get("record")?;
                let result = record.get("Result")?.get("ResultDeprecated")?;
                let digest = result.get("digest")?.as_str()?.to_owned();
                let hex = digest.strip_prefix("sha256:")?.to_owned();
                let names: Vec<String> = record
                    .get("Exporters")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.get("Attrs")?.get("name")?.as_str())
                    .flat_map(|n| n.split(',').map(str::to_owned).collect::<Vec<_>>())
                    .collect();
                let layout = dir.join("layouts").join(&hex);
                std::fs::create_dir_all(&layout).ok()?;
                std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).ok()?;
                let index = json!({
                    "schemaVersion": 2,
                    "manifests": [{
                        "mediaType": result.get("media_type").cloned().unwrap_or(json!("application/vnd.oci.image.manifest.v1+json")),
                        "digest": digest,
                        "size": result.get("size").cloned().unwrap_or(json!(0)),
                    }],
                });
                std::fs::write(layout.join("index.json"), index.to_string()).ok()?;
                let link = layout.join("blobs");
                if !link.exists() {
                    std::os::unix::fs::symlink(&blobs, &link).ok()?;
                }
                Some(BuiltImage {
                    id: hex,
                    names: if names.is_empty() { vec![digest] } else { names },
                    store: layout,
                    builder: "buildkit".to_owned(),
                    oci_layout: true,
                })
            })
            .collect()
    }

    /// Starts buildkitd on the project's shared root, holding `flock` on it for the daemon's life.
    /// Returns None when another job of the project holds it: that job keeps the cache warm, and
    /// this one builds with its own root (a cold cache) rather than waiting.
    async fn start_shared_buildkit(
        &self,
        spec: &CommandSpec,
        shared: &Path,
        log: &Path,
    ) -> Result<Option<u32>, SandboxError> {
        const LOCKED: i32 = 75;
        mkdir(shared, 0o700)?;
        // Its last use, for pruning (berth_stages::prune::LAST_USED).
        let stamp = shared.join(".berth-last-used");
        std::fs::File::create(&stamp)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()))
            .map_err(io(&stamp))?;
        let root_arg = self.paths.buildkit().join("root").into_os_string();
        let mut locked = CommandSpec::new("flock");
        locked.env = spec.env.clone();
        locked = locked.args([
            "--nonblock".into(),
            "--conflict-exit-code".into(),
            LOCKED.to_string().into(),
            shared.join(".lock").into_os_string(),
            spec.program.clone().into_os_string(),
        ]);
        locked.args.extend(spec.args.iter().map(|a| {
            if *a == root_arg {
                shared.join("root").into_os_string()
            } else {
                a.clone()
            }
        }));
        let pid = process::spawn_detached(&locked, log)?;
        // A conflict makes flock exit at once; a held lock keeps it running with the daemon.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let child = nix::unistd::Pid::from_raw(pid.cast_signed());
        match nix::sys::wait::waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, LOCKED)) => Ok(None),
            _ => Ok(Some(pid)),
        }
    }

    /// Starts the job's own rootless BuildKit daemon (`rootlesskit buildkitd`, native overlayfs,
    /// its own root, socket and OpenTelemetry socket, so jobs never share one).
    async fn start_buildkit(&self) -> Result<(), SandboxError> {
        let Some(buildkitd) = &self.settings.buildkitd else {
            return Ok(());
        };
        let dir = self.paths.buildkit();
        mkdir(&dir, 0o700)?;
        mkdir(&dir.join("sock"), 0o755)?;
        let socket = dir.join("sock/buildkitd.sock");
        let mut spec = self
            .command()
            .args([format!("--state-dir={}", dir.join("rk").display())]);
        spec = if self.settings.buildkit_host_network {
            spec.args(["--net=host"])
        } else {
            spec.args([
                "--net=slirp4netns",
                "--disable-host-loopback",
                "--copy-up=/etc",
            ])
        };
        spec.program = PathBuf::from("rootlesskit");
        spec = spec.args([
            buildkitd.clone().into_os_string(),
            "--root".into(),
            dir.join("root").into_os_string(),
            "--addr".into(),
            format!("unix://{}", socket.display()).into(),
            "--otel-socket-path".into(),
            dir.join("otel.sock").into_os_string(),
            "--oci-worker=true".into(),
            "--containerd-worker=false".into(),
            "--oci-worker-snapshotter=overlayfs".into(),
            "--cdi-disabled".into(),
        ]);
        let log = self.paths.work().join("buildkitd.log");
        let pid = match &self.settings.buildkit_shared_root {
            Some(shared) => match self.start_shared_buildkit(&spec, shared, &log).await? {
                Some(pid) => pid,
                None => process::spawn_detached(&spec, &log)?,
            },
            None => process::spawn_detached(&spec, &log)?,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            if tokio::time::Instant::now() >= deadline || !process::alive(pid) {
                return Err(SandboxError::ServiceStart {
                    pid,
                    cause: "rootless buildkitd did not create its socket".into(),
                    log_tail: process::tail(&std::fs::read(&log).unwrap_or_default()),
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Job containers run as other users too; the socket's directory is the job's alone.
        let _ = std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666));
        Ok(())
    }

    /// Stops processes still using this job's directories (conmon, `podman container cleanup`,
    /// a per-tmpdir pause process) after the pod is gone.
    /// Stops the builds a cancelled script left running in the job's API service (the build
    /// socket's `docker build`/`podman --remote build`: the service goes on building after its
    /// client is gone). Those are the service's `buildah-*` children (a RUN step's runtime)
    /// and everything under them; the service's other children stay: slirp4netns carries the
    /// pod's network for after_script, conmon the containers the job started through the
    /// socket, which stay until cleanup as with a Docker daemon.
    async fn stop_service_builds(&self) {
        let Some(service) = std::fs::read_to_string(self.paths.service_pid())
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
        else {
            return;
        };
        let victims = || {
            let all = crate::agent::processes();
            let builders: Vec<u32> = crate::agent::descendant_pids(&all, service)
                .into_iter()
                .filter(|pid| {
                    // Podman re-executes itself as `buildah-oci-runtime` (its comm is `exe`).
                    std::fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| c.starts_with(b"buildah-"))
                })
                .collect();
            builders
                .iter()
                .flat_map(|b| crate::agent::descendant_pids(&all, *b))
                .chain(builders.iter().copied())
                .collect::<Vec<u32>>()
        };
        // Once found, a victim stays one: a RUN step whose runtime parent died on SIGTERM is
        // reparented away from the service (and, as its pid namespace's init, ignores SIGTERM).
        let mut targets: std::collections::BTreeSet<u32> = victims().into_iter().collect();
        if targets.is_empty() {
            return;
        }
        tracing::info!(
            "cancel: stopping {} build process(es) in the job's Podman service",
            targets.len()
        );
        let deadline = tokio::time::Instant::now() + self.settings.stop_grace;
        let mut signal = nix::sys::signal::Signal::SIGTERM;
        loop {
            for pid in &targets {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid.cast_signed()), signal);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            targets.extend(victims());
            targets.retain(|pid| process::alive(*pid));
            if targets.is_empty() || signal == nix::sys::signal::Signal::SIGKILL {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                signal = nix::sys::signal::Signal::SIGKILL;
            }
        }
    }

    async fn stop_stragglers(&self) {
        let needles = [
            format!("{}/", self.paths.job_dir.display()),
            format!("{}/", self.paths.run_dir.display()),
        ];
        // Mount roots are relative to their file system, so match the tail that names the job;
        // an overlay root names its layers in the job's store (a build-socket RUN step whose
        // runtime parent died is found only this way).
        let mounts = [
            format!("/{}/builds ", self.paths.key),
            format!("/{}/agent/", self.paths.key),
            format!("/{}/storage/overlay/", self.paths.key),
            format!("/{}/buildkit/", self.paths.key),
        ];
        let own = std::process::id();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            let pids = processes_mentioning(&needles, &mounts, own);
            if pids.is_empty() {
                return;
            }
            let late = tokio::time::Instant::now() >= deadline;
            for pid in &pids {
                let sig = if late {
                    nix::sys::signal::Signal::SIGKILL
                } else {
                    nix::sys::signal::Signal::SIGTERM
                };
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid.cast_signed()), sig);
            }
            if late {
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// With an identity of its own, the job is every process that identity owns: all of them
    /// stop (its Podman service, proxy, BuildKit, conmon, containers, its pause process) and its
    /// files go from inside its user namespace; nothing of it is left to find by name.
    async fn teardown_identity(&self, identity: &Identity, errors: &mut Vec<SandboxError>) {
        stop_identity(identity).await;
        // A pause.pid of a process now gone would make the next Podman try to join it.
        if let Err(e) = wipe_runtime_home(identity).await {
            errors.push(e);
        }
        if let Err(e) = self.remove_store().await {
            errors.push(e);
        }
        // `podman unshare` itself leaves a fresh store skeleton in `work/` (its own files, the
        // identity's), and the run directory is the identity's too.
        let mut leftovers: Vec<PathBuf> = std::fs::read_dir(self.paths.work())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        leftovers.push(self.paths.run_dir.clone());
        let spec = CommandSpec::new("rm")
            .as_identity(identity.uid, identity.gid)
            .args(["-rf", "--one-file-system", "--"])
            .args(leftovers);
        if let Err(e) = process::run(&spec, &CancellationToken::new()).await {
            errors.push(e.into());
        }
        // What `podman unshare` started again (its pause process) ends when root releases the
        // identity (`berth_stages::identities::release_host`), which also checks none is left.
    }

    /// Without an identity of its own, the job's processes are told apart by the paths they
    /// name; the user's other jobs and its pause process must survive.
    async fn teardown_shared_user(&self, errors: &mut Vec<SandboxError>) {
        if let Some(pid) = std::fs::read_to_string(self.paths.service_pid())
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            process::stop_pid(pid, Duration::from_secs(2)).await;
        }
        self.stop_stragglers().await;
        // conmon may still launch `podman container cleanup` for a container that just died;
        // it writes into the store while we delete it. Stop it and try again.
        let mut attempt = 0;
        loop {
            match self.remove_store().await {
                Ok(()) => break,
                Err(_) if attempt < 3 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    self.stop_stragglers().await;
                }
                Err(e) => {
                    errors.push(e);
                    break;
                }
            }
        }
        for dir in [&self.paths.job_dir, &self.paths.run_dir] {
            if let Err(e) = remove_tree(dir) {
                errors.push(e);
            }
        }
    }

    /// Removes everything in the job's `work/` and its temporary directory inside the user
    /// namespace, after unmounting the store's layers: containers' non-root users leave files of
    /// subordinate ids anywhere they could write (`/builds`, the agent's `out/`, the nested store,
    /// BuildKit's root, build temporaries), which only the namespace's root may remove. `work/`
    /// itself stays (its parent may be root's).
    async fn remove_store(&self) -> Result<(), SandboxError> {
        let work = self.paths.work();
        let tmp = self.paths.tmpdir();
        let occupied = std::fs::read_dir(&work).is_ok_and(|mut d| d.next().is_some());
        if !occupied && !tmp.exists() {
            return Ok(());
        }
        let s = self.paths.storage().display().to_string();
        let (work, tmp) = (work.display().to_string(), tmp.display().to_string());
        let script = format!(
            "grep -F ' {s}/' /proc/self/mounts | cut -d' ' -f2 | sort -r | \
             while read -r m; do umount -l \"$m\" 2>/dev/null; done; \
             umount -l '{s}/overlay' 2>/dev/null; \
             find '{work}' -mindepth 1 -maxdepth 1 -exec rm -rf -- {{}} + && rm -rf -- '{tmp}'"
        );
        let spec = self.podman().args(["unshare", "sh", "-c", script.as_str()]);
        process::run(&spec, &CancellationToken::new()).await?;
        Ok(())
    }
}

fn agent_target(role: Role) -> Option<StageTarget> {
    match role {
        Role::Helper => Some(StageTarget::Helper),
        Role::Job => Some(StageTarget::Job),
        Role::Service => None,
    }
}

/// Writes a 0600 file, owned by `owner` when given, in a directory no job identity can write.
fn write_private(path: &Path, bytes: &[u8], owner: Option<(u32, u32)>) -> Result<(), SandboxError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(io(path))?;
    if let Some((uid, gid)) = owner {
        nix::unistd::fchown(
            &f,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(|e| io(path)(e.into()))?;
    }
    f.write_all(bytes).map_err(io(path))
}

/// Opens a lock file for `flock`: root makes them readable to every identity; a user running
/// berth on its own makes them itself.
pub fn open_lock(path: &Path) -> Result<std::fs::File, SandboxError> {
    match std::fs::File::open(path) {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io(path)),
        Err(e) => Err(io(path)(e)),
    }
}

/// Named images in a containers-storage root, read from its `images.json` (no Podman call).
/// Podman's own pod infra image is not the job's work.
fn images_in_store(store: &Path, builder: &str) -> Result<Vec<BuiltImage>, SandboxError> {
    #[derive(serde::Deserialize)]
    struct Entry {
        id: String,
        #[serde(default)]
        names: Vec<String>,
    }
    // The job writes this store: read beneath it, without links, bounded.
    let path = store.join("overlay-images/images.json");
    let text = match berth_beneath::Dir::open(store)
        .and_then(|d| d.read(Path::new("overlay-images/images.json"), 64 << 20))
    {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&path)(e)),
    };
    let entries: Vec<Entry> =
        serde_json::from_slice(&text).map_err(|e| io(&path)(std::io::Error::other(e)))?;
    Ok(entries
        .into_iter()
        .filter(|e| !e.names.is_empty())
        .filter(|e| {
            !e.names
                .iter()
                .any(|n| n.starts_with("localhost/podman-pause:"))
        })
        .map(|e| BuiltImage {
            id: e.id,
            names: e.names,
            store: store.to_owned(),
            builder: builder.to_owned(),
            oci_layout: false,
        })
        .collect())
}

/// Pids of the processes of one job, except `own`: Podman's helpers (conmon, the API service,
/// `container cleanup`) name the job's directories in their arguments (`cmdline_needles`), and
/// every container process has the job's own bind mounts (`/builds`, `/.berth`) in its mount
/// table (`mount_needles`), even when Podman has lost track of it. The overlay mounts of the
/// shared rootless mount namespace are deliberately not needles: every Podman process of the user
/// sees those.
pub fn processes_mentioning(
    cmdline_needles: &[String],
    mount_needles: &[String],
    own: u32,
) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mentions = |bytes: &[u8], needles: &[String]| {
        let text = String::from_utf8_lossy(bytes);
        needles.iter().any(|n| text.contains(n.as_str()))
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != own)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| mentions(&c, cmdline_needles))
                || std::fs::read(format!("/proc/{pid}/mountinfo"))
                    .is_ok_and(|m| mentions(&m, mount_needles))
        })
        .collect()
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
        if !self.settings.insecure_registries.is_empty() {
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
            let present = self.api.image_exists(image).await?;
            let outcome = match policy {
                PullPolicy::Never if present => Ok(()),
                PullPolicy::Never => {
                    Err("not in the base image store (pull policy \"never\")".to_owned())
                }
                PullPolicy::IfNotPresent if present => Ok(()),
                PullPolicy::IfNotPresent | PullPolicy::Always => self
                    .pull(image, pull)
                    .await
                    .map_err(|e| format!("pull failed ({}): {e}", policy.as_str())),
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

    async fn create_pod(&self, spec: &PodSpec) -> Result<(), SandboxError> {
        let hostadd: Vec<String> = spec
            .hosts
            .iter()
            .map(|h| format!("{h}:127.0.0.1"))
            .collect();
        let nsmode = match spec.network {
            berth_config::admin::NetworkMode::Slirp4netns => "slirp4netns",
            berth_config::admin::NetworkMode::Host => "host",
            berth_config::admin::NetworkMode::None => "none",
        };
        let doc = json!({
            "name": spec.name,
            "labels": spec.labels,
            "hostadd": hostadd,
            "netns": { "nsmode": nsmode },
            "hostname": "berth-job",
        });
        self.api.pod_create(&doc).await?;
        self.api.pod_start(&spec.name).await?;
        Ok(())
    }

    async fn run_container(&self, spec: &ContainerSpec) -> Result<Started, SandboxError> {
        if spec.role == Role::Job {
            self.start_build_socket().await?;
            self.start_buildkit().await?;
        }
        self.api.container_create(&self.spec_document(spec)).await?;
        tracing::debug!("created {}", spec.name);
        self.api.container_start(&spec.name).await?;
        tracing::debug!("started {}", spec.name);
        let state = self.api.container_inspect(&spec.name).await?.state;
        let role = match spec.role {
            Role::Service => "service",
            Role::Helper => "helper",
            Role::Job => "job",
        };
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
        if let Some(target) = agent_target(spec.role) {
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
            out.extend(images_in_store(&store, builder)?);
        }
        out.extend(self.buildkit_images().await);
        Ok(out)
    }

    async fn teardown(&self) -> Vec<SandboxError> {
        let t0 = std::time::Instant::now();
        let step = |name: &str| {
            tracing::debug!("teardown: {name} done at {} ms", t0.elapsed().as_millis())
        };
        let mut errors = Vec::new();
        // Two reapers (or a reaper and the job's own cleanup) must not tear down at once.
        let _lock = match std::fs::File::open(&self.paths.job_dir) {
            Ok(dir) => tokio::task::spawn_blocking(move || {
                nix::fcntl::Flock::lock(dir, nix::fcntl::FlockArg::LockExclusive).ok()
            })
            .await
            .ok()
            .flatten(),
            Err(_) => None,
        };
        // With an identity of its own, ending its processes ends the containers: no Podman call
        // (which a job at its pids limit, or a killed conmon, makes fail) is needed.
        if self.paths.storage().exists() && self.settings.job_identity.is_none() {
            match self.ensure_service().await {
                Ok(()) => {
                    // The store is the job's alone: everything in it goes, including containers
                    // the job started through its build socket.
                    match self.api.pods().await {
                        Ok(pods) => {
                            for pod in pods {
                                if let Err(e) = self.api.pod_remove(&pod.name).await {
                                    errors.push(e.into());
                                }
                            }
                        }
                        Err(e) => errors.push(e.into()),
                    }
                    match self.api.containers().await {
                        Ok(containers) => {
                            for c in containers.iter().flat_map(|c| c.names.first()) {
                                if let Err(e) = self.api.container_remove(c).await {
                                    errors.push(e.into());
                                }
                            }
                        }
                        Err(e) => errors.push(e.into()),
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        step("pods and containers");
        match &self.settings.job_identity {
            Some(identity) => self.teardown_identity(identity, &mut errors).await,
            None => self.teardown_shared_user(&mut errors).await,
        }
        step("processes and files");
        errors
    }
}

/// Empties `identity`'s `/run/user/UID`, as the identity itself (nothing there is followed).
/// What builds left there under subordinate ids goes from inside the identity's user namespace.
pub async fn wipe_runtime_home(identity: &Identity) -> Result<(), SandboxError> {
    let runtime = identity.runtime_home();
    if !runtime.is_dir() {
        return Ok(());
    }
    let find = |spec: CommandSpec| {
        spec.args([runtime.as_os_str().to_owned()])
            .args(["-mindepth", "1", "-xdev", "-delete"])
    };
    let plain = find(CommandSpec::new("find").as_identity(identity.uid, identity.gid));
    if process::run(&plain, &CancellationToken::new())
        .await
        .is_ok()
    {
        return Ok(());
    }
    let scratch = runtime.join(".berth-wipe");
    let mut spec = CommandSpec::new("podman").as_identity(identity.uid, identity.gid);
    for (k, v) in [
        ("HOME", scratch.clone()),
        ("XDG_CONFIG_HOME", scratch.join("config")),
        ("XDG_RUNTIME_DIR", runtime.clone()),
        ("TMPDIR", scratch.join("tmp")),
    ] {
        spec = spec.env(k, v);
    }
    let spec = find(spec.args([
        "--root".into(),
        scratch.join("root").into_os_string(),
        "--runroot".into(),
        scratch.join("run").into_os_string(),
        "unshare".into(),
        "find".into(),
    ]));
    let inside = process::run(&spec, &CancellationToken::new()).await;
    // `podman unshare` left a pause process and its files behind.
    stop_identity(identity).await;
    process::run(&plain, &CancellationToken::new()).await?;
    inside.map(drop).map_err(SandboxError::from)
}

/// Ends every process `identity` owns but this one, with SIGKILL: the job is over, and a
/// container's init ignores SIGTERM (a graceful stop of the job's scripts is the agent's, at
/// cancel). Its subordinate-id processes need root to signal.
pub async fn stop_identity(identity: &Identity) {
    let own = std::process::id();
    for _ in 0..100 {
        let targets: Vec<u32> = crate::identity::processes_of(identity)
            .into_iter()
            .filter(|pid| *pid != own)
            .collect();
        if targets.is_empty() {
            return;
        }
        process::as_root(|| {
            for pid in &targets {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid.cast_signed()),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        });
        // A killed process stays in the table until its parent (or init) reaps it.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Podman on the shared base store, outside any job, as the store identity.
fn base_store_podman(settings: &PodmanSettings) -> CommandSpec {
    let store = &settings.store;
    let mut spec = CommandSpec::new(&settings.podman);
    for (k, v) in &store.env {
        spec = spec.env(k, v);
    }
    if let Some((uid, gid)) = store.identity {
        spec = spec.as_identity(uid, gid);
    }
    spec.args([
        "--root".into(),
        store.root.as_os_str().to_owned(),
        "--runroot".into(),
        store.runroot.as_os_str().to_owned(),
        "--storage-driver".into(),
        std::ffi::OsString::from("overlay"),
    ])
}

/// Removes trees that hold files of the store identity's subordinate ids (a BuildKit root)
/// from inside its user namespace, where it may delete them.
pub async fn remove_in_user_namespace(
    settings: &PodmanSettings,
    trees: &[PathBuf],
) -> Result<(), SandboxError> {
    if trees.is_empty() {
        return Ok(());
    }
    let spec = base_store_podman(settings)
        .args(["unshare", "rm", "-rf", "--"])
        .args(trees.iter().map(|t| t.as_os_str().to_owned()));
    process::run(&spec, &CancellationToken::new()).await?;
    Ok(())
}

/// Removes images from the shared base store (never forced: an image something still uses
/// stays, and Podman says why).
pub async fn remove_base_images(
    settings: &PodmanSettings,
    ids: &[String],
) -> Result<(), SandboxError> {
    if ids.is_empty() {
        return Ok(());
    }
    let spec = base_store_podman(settings)
        .args(["rmi", "--"])
        .args(ids.iter().map(std::ffi::OsString::from));
    process::run(&spec, &CancellationToken::new()).await?;
    Ok(())
}

/// Keys of jobs that have a directory under `jobs_dir`.
pub fn job_keys(jobs_dir: &Path) -> Vec<String> {
    std::fs::read_dir(jobs_dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Labels for objects of job `key`.
pub fn job_labels(key: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(JOB_LABEL.to_owned(), key.to_owned())])
}
