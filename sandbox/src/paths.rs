//! Every host path of one job, derived from its key alone so that separate stage processes agree
//! without sharing anything but the key.

use std::path::{Path, PathBuf};

use berth_config::StageTarget;

/// Where one job's files live on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPaths {
    /// The job key (already a valid container-name component).
    pub key: String,
    /// `<state_dir>/jobs/<key>`, mode 0700: state file, store, builds, agent dirs.
    pub job_dir: PathBuf,
    /// `<runtime_dir>/<key>`: Podman's runroot and tmpdir, the API socket and its pid file.
    pub run_dir: PathBuf,
    /// The shared read-only base image store.
    pub image_store: PathBuf,
}

impl JobPaths {
    /// Paths of job `key`.
    pub fn new(key: &str, jobs_dir: &Path, runtime_dir: &Path, image_store: &Path) -> Self {
        Self {
            key: key.to_owned(),
            job_dir: jobs_dir.join(key),
            run_dir: runtime_dir.join(key),
            image_store: image_store.to_owned(),
        }
    }

    /// The per-job container store (graphroot).
    pub fn storage(&self) -> PathBuf {
        self.job_dir.join("storage")
    }

    /// Host side of the job's `/builds`.
    pub fn builds(&self) -> PathBuf {
        self.job_dir.join("builds")
    }

    /// Host side of a container's agent directory (`/.berth` inside).
    pub fn agent(&self, target: StageTarget) -> PathBuf {
        self.job_dir.join("agent").join(target.as_str())
    }

    /// Inner container store and configuration for builds inside the job container.
    pub fn nested(&self) -> PathBuf {
        self.job_dir.join("nested")
    }

    /// Directory holding the build socket (mounted at `/run/berth` in the job container).
    pub fn build_socket_dir(&self) -> PathBuf {
        self.job_dir.join("buildsock")
    }

    /// The per-job BuildKit daemon's state (root, rootlesskit state, socket directory).
    pub fn buildkit(&self) -> PathBuf {
        self.job_dir.join("buildkit")
    }

    /// Refusals of the build socket, copied into the job log by `berth run`.
    pub fn build_socket_log(&self) -> PathBuf {
        self.job_dir.join("build-socket.log")
    }

    /// The versioned state file (no secrets).
    pub fn state_file(&self) -> PathBuf {
        self.job_dir.join("state.json")
    }

    /// Registry credentials for this job's pulls (0600, removed at cleanup).
    pub fn auth_file(&self) -> PathBuf {
        self.job_dir.join("auth.json")
    }

    /// The job's registries configuration (only with admin-listed insecure registries).
    pub fn registries_conf(&self) -> PathBuf {
        self.job_dir.join("registries.conf")
    }

    /// Log of the per-job API service.
    pub fn service_log(&self) -> PathBuf {
        self.job_dir.join("service.log")
    }

    /// Podman runroot.
    pub fn runroot(&self) -> PathBuf {
        self.run_dir.join("run")
    }

    /// Podman tmpdir.
    pub fn tmpdir(&self) -> PathBuf {
        self.run_dir.join("tmp")
    }

    /// The per-job libpod API socket.
    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("api.sock")
    }

    /// Pid file of the per-job API service.
    pub fn service_pid(&self) -> PathBuf {
        self.run_dir.join("service.pid")
    }

    /// Global Podman flags that select this job's store, reading base images from the shared one.
    pub fn podman_store_args(&self) -> Vec<String> {
        vec![
            "--root".into(),
            self.storage().display().to_string(),
            "--runroot".into(),
            self.runroot().display().to_string(),
            "--tmpdir".into(),
            self.tmpdir().display().to_string(),
            "--storage-driver".into(),
            "overlay".into(),
            "--storage-opt".into(),
            format!("overlay.imagestore={}", self.image_store.display()),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--events-backend".into(),
            "file".into(),
        ]
    }
}
