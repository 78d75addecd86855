//! The job's per-job services: the libpod API service on the job's own store (started on
//! demand, so a cleanup can start it again), and the filtering proxy that serves the job's
//! build socket in front of it.

use std::path::Path;
use std::time::Duration;

use super::{PodmanSandbox, PodmanSettings, io, mkdir};
use crate::SandboxError;
use crate::process::{self, CommandSpec};

/// How long a service may take to come up.
const SERVICE_START: Duration = Duration::from_secs(20);
/// How long the build socket proxy may take to listen.
const PROXY_START: Duration = Duration::from_secs(10);

/// Waits until `ready` holds for a service started as `pid`, logging to `log`. A service that
/// exits or does not come up in `timeout` is stopped and reported with its log's end.
pub(super) async fn await_start(
    what: &str,
    pid: u32,
    log: &Path,
    timeout: Duration,
    mut ready: impl AsyncFnMut() -> Result<(), String>,
) -> Result<(), SandboxError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let cause = match ready().await {
            Ok(()) => return Ok(()),
            Err(cause) => cause,
        };
        let exited = !process::running(pid);
        if exited || tokio::time::Instant::now() >= deadline {
            process::stop_pid(pid, Duration::from_secs(1)).await;
            let why = if exited { "exited" } else { "did not come up" };
            return Err(SandboxError::ServiceStart {
                pid,
                cause: format!("{what} {why}: {cause}"),
                log_tail: process::tail(&std::fs::read(log).unwrap_or_default()),
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Readiness of a service that is up once its socket exists.
pub(super) fn socket_exists(socket: &Path) -> Result<(), String> {
    if socket.exists() {
        Ok(())
    } else {
        Err(format!("{} does not exist yet", socket.display()))
    }
}

/// Whether berth writes a registries.conf of its own: the admin configured insecure registries
/// or mirrors.
pub(super) fn needs_registries_conf(settings: &PodmanSettings) -> bool {
    !settings.insecure_registries.is_empty() || !settings.registry_mirrors.is_empty()
}

/// The host's registries.conf with the admin's insecure registries and mirrors.
pub(super) fn registries_conf(settings: &PodmanSettings) -> Result<String, SandboxError> {
    let host_path = Path::new(crate::registries::HOST_REGISTRIES_CONF);
    let host = match std::fs::read_to_string(host_path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(host_path)(e)),
    };
    crate::registries::for_berth(
        host.as_deref(),
        &settings.insecure_registries,
        &settings.registry_mirrors,
    )
    .map_err(|why| {
        io(host_path)(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("cannot add the berth config's insecure_registries and registry_mirrors to it: {why}; fix the file, or empty those keys"),
        ))
    })
}

impl PodmanSandbox {
    pub(super) fn write_registries_conf(&self) -> Result<(), SandboxError> {
        let text = registries_conf(&self.settings)?;
        let path = self.paths.registries_conf();
        std::fs::write(&path, text).map_err(io(&path))
    }

    /// Starts the per-job API service unless it already answers.
    pub(super) async fn ensure_service(&self) -> Result<(), SandboxError> {
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
        let log = self.paths.service_log();
        let pid = process::spawn_detached(&spec, &log)
            .map_err(SandboxError::runtime("start the job's Podman API service"))?;
        let pid_file = self.paths.service_pid();
        std::fs::write(&pid_file, pid.to_string()).map_err(io(&pid_file))?;
        await_start(
            "the per-job Podman API service",
            pid,
            &log,
            SERVICE_START,
            async || self.api.ping().await.map_err(|e| e.to_string()),
        )
        .await
    }

    /// Starts the filtering proxy that serves the job's build socket (see `crate::proxy`).
    pub(super) async fn start_build_socket(&self) -> Result<(), SandboxError> {
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
        let log = self.paths.work().join("build-proxy.out");
        let pid = process::spawn_detached(&spec, &log)
            .map_err(SandboxError::runtime("start the job's build socket"))?;
        await_start(
            "the build socket proxy",
            pid,
            &log,
            PROXY_START,
            async || socket_exists(&socket),
        )
        .await
    }

    /// Stops the builds a cancelled script left running in the job's API service (the build
    /// socket's `docker build`/`podman --remote build`: the service goes on building after its
    /// client is gone). Those are the service's `buildah-*` children (a RUN step's runtime)
    /// and everything under them; the service's other children stay: slirp4netns carries the
    /// pod's network for after_script, conmon the containers the job started through the
    /// socket, which stay until cleanup as with a Docker daemon.
    pub(super) async fn stop_service_builds(&self) {
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
        // Once found, a victim stays one (the ladder keeps it): a RUN step whose runtime parent
        // died on SIGTERM is reparented away from the service.
        let targets = victims();
        if targets.is_empty() {
            return;
        }
        tracing::info!(
            "cancel: stopping {} build process(es) in the job's Podman service",
            targets.len()
        );
        process::Ladder::new(self.settings.stop_grace)
            .stop(victims)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A detached `sh -c script` as a service would run: its directory, log and pid.
    fn service(script: &str) -> (tempfile::TempDir, std::path::PathBuf, u32) {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("service.log");
        let spec = CommandSpec::new("sh").args(["-c", script]);
        let pid = process::spawn_detached(&spec, &log).expect("spawn");
        (dir, log, pid)
    }

    const FOREVER: &str = "while :; do sleep 1; done";

    #[tokio::test]
    async fn a_service_that_exits_is_reported_at_once_with_its_log() {
        let (_dir, log, pid) = service("echo no storage here >&2; exit 3");
        let started = std::time::Instant::now();
        let err = await_start(
            "the test service",
            pid,
            &log,
            Duration::from_secs(120),
            async || Err("no socket yet".to_owned()),
        )
        .await
        .expect_err("it exited");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "waited the whole timeout"
        );
        let text = err.to_string();
        assert!(
            text.contains("the test service exited") && text.contains("no storage here"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_service_that_never_answers_is_stopped() {
        let (_dir, log, pid) = service(FOREVER);
        let err = await_start("the test service", pid, &log, Duration::ZERO, async || {
            Err("no socket yet".to_owned())
        })
        .await
        .expect_err("never ready");
        assert!(err.to_string().contains("did not come up"), "{err}");
        assert!(!process::running(pid), "the service was left running");
    }

    #[tokio::test]
    async fn a_service_that_answers_is_kept() {
        let (_dir, log, pid) = service(FOREVER);
        await_start("the test service", pid, &log, Duration::ZERO, async || {
            Ok(())
        })
        .await
        .expect("ready");
        assert!(process::running(pid));
        process::stop_pid(pid, Duration::ZERO).await;
    }
}
