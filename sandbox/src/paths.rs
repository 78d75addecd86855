//! Every host path of one job, derived from its key alone so that separate stage processes agree
//! without sharing anything but the key.
//!
//! The job directory itself belongs to root (its state file and record of built images are
//! berth's word about the job); everything the job's identity writes lives in `work/` below it,
//! and the kept caches it may use are idmapped mounts under a root-owned directory in `/run`.

use std::path::{Path, PathBuf};

use berth_config::StageTarget;

/// Where one job's files live on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPaths {
    /// The job key (already a valid container-name component).
    pub key: String,
    /// `<state_dir>/jobs/<key>`: root's (state file, record of built images) with the job
    /// identity's `work/` below it.
    pub job_dir: PathBuf,
    /// `<runtime_dir>/<key>`: Podman's runroot and tmpdir, the API socket and its pid file.
    pub run_dir: PathBuf,
    /// The base image store as this job reads it (read-only; an idmapped view of the shared
    /// store when the job has an identity of its own).
    pub image_store: PathBuf,
    /// `/run/berth/jobs/<host name>`: root's directory of the idmapped mounts of kept caches.
    pub mounts_dir: PathBuf,
    /// The job's name among every runner config's jobs on this host (the key, qualified by the
    /// config's instance tag for a config other than the default one): what names the job in
    /// places all configs share (`/run/berth`, cgroups).
    pub host_name: String,
}

/// Name of the job's hosts file in its job directory.
pub const HOSTS_FILE: &str = "hosts";

/// Root of berth's runtime mounts: base-store views per job identity, per-job cache mounts.
pub const RUN_ROOT: &str = "/run/berth";

/// Job `key`'s name in places every runner config on the host shares: `<instance>-<key>`, or
/// the key for the default config. The key itself stays short, since Podman refuses runroots
/// (which hold it) longer than 50 characters.
pub fn host_name(key: &str, instance: Option<&str>) -> String {
    match instance {
        Some(instance) => format!("{instance}-{key}"),
        None => key.to_owned(),
    }
}

/// The key of the job whose host name is `host_name`, for the config tagged `instance` (None
/// when the name is another config's).
pub fn key_of_host_name<'a>(host_name: &'a str, instance: Option<&str>) -> Option<&'a str> {
    match instance {
        Some(instance) => host_name
            .strip_prefix(instance)
            .and_then(|rest| rest.strip_prefix('-')),
        None => Some(host_name),
    }
}

impl JobPaths {
    /// Paths of job `key`.
    pub fn new(key: &str, jobs_dir: &Path, runtime_dir: &Path, image_store: &Path) -> Self {
        Self {
            key: key.to_owned(),
            job_dir: jobs_dir.join(key),
            run_dir: runtime_dir.join(key),
            image_store: image_store.to_owned(),
            mounts_dir: Path::new(RUN_ROOT).join("jobs").join(key),
            host_name: key.to_owned(),
        }
    }

    /// The same paths for the runner config whose instance tag is `instance` (None: the
    /// default config, whose host name is the key).
    #[must_use]
    pub fn for_instance(mut self, instance: Option<&str>) -> Self {
        self.host_name = host_name(&self.key, instance);
        self.mounts_dir = Path::new(RUN_ROOT).join("jobs").join(&self.host_name);
        self
    }

    /// Everything the job identity writes: store, builds, agent dirs, logs.
    pub fn work(&self) -> PathBuf {
        self.job_dir.join("work")
    }

    /// The per-job container store (graphroot).
    pub fn storage(&self) -> PathBuf {
        self.work().join("storage")
    }

    /// Host side of the job's `/builds`.
    pub fn builds(&self) -> PathBuf {
        self.work().join("builds")
    }

    /// Host side of a container's agent directory (`/.berth` inside).
    pub fn agent(&self, target: StageTarget) -> PathBuf {
        self.work().join("agent").join(target.as_str())
    }

    /// Inner container store and configuration for builds inside the job container.
    pub fn nested(&self) -> PathBuf {
        self.work().join("nested")
    }

    /// Directory holding the build socket (mounted at `/run/berth` in the job container).
    pub fn build_socket_dir(&self) -> PathBuf {
        self.work().join("buildsock")
    }

    /// The per-job BuildKit daemon's state (root, rootlesskit state, socket directory).
    pub fn buildkit(&self) -> PathBuf {
        self.work().join("buildkit")
    }

    /// Refusals of the build socket, copied into the job log by `berth run`.
    pub fn build_socket_log(&self) -> PathBuf {
        self.work().join("build-socket.log")
    }

    /// The versioned state file (no secrets; root's when the job has an identity).
    pub fn state_file(&self) -> PathBuf {
        self.job_dir.join("state.json")
    }

    /// The job's `/etc/hosts` on the host network (root's when the job has an identity), mounted
    /// read-only into every container of the pod.
    pub fn hosts_file(&self) -> PathBuf {
        self.job_dir.join(HOSTS_FILE)
    }

    /// berth's record of the images the job built (root's when the job has an identity).
    pub fn built_images_record(&self) -> PathBuf {
        self.job_dir.join("built-images.json")
    }

    /// The registries.conf (insecure registries, mirrors) of this job's pulls into the base
    /// store, beside their credentials, removed right after the pull.
    pub fn pull_registries_conf(&self) -> PathBuf {
        Path::new(RUN_ROOT)
            .join("pull-auth")
            .join(format!("{}.registries.conf", self.host_name))
    }

    /// Registry credentials for this job's pulls (the store identity's, 0600, removed right
    /// after the pull), in a directory of root's that only lets its owners' files be reached.
    pub fn auth_file(&self) -> PathBuf {
        Path::new(RUN_ROOT)
            .join("pull-auth")
            .join(format!("{}.json", self.host_name))
    }

    /// The job's registries configuration (only with admin-listed insecure registries).
    pub fn registries_conf(&self) -> PathBuf {
        self.work().join("registries.conf")
    }

    /// Log of the per-job API service.
    pub fn service_log(&self) -> PathBuf {
        self.work().join("service.log")
    }

    /// The job identity's home for the job's life (nothing of it outlives the job).
    pub fn home(&self) -> PathBuf {
        self.work().join("home")
    }

    /// The project's `/cache`, as this job mounts it (an idmapped mount).
    pub fn cache_mount(&self) -> PathBuf {
        self.mounts_dir.join("cache")
    }

    /// The project's BuildKit cache, as this job's daemon uses it (an idmapped mount).
    pub fn buildkit_cache_mount(&self) -> PathBuf {
        self.mounts_dir.join("buildkit-cache")
    }

    /// The project's scanner layer cache, as this job's scans use it (an idmapped mount).
    pub fn scan_cache_mount(&self) -> PathBuf {
        self.mounts_dir.join("scan-cache")
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
