//! Images: pulls into the shared base store as the store identity (serialised, credentials in a
//! root-made file), what the job's own stores hold, and the base store's maintenance.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{PodmanSandbox, PodmanSettings, io, mkdir};
use crate::process::{self, CommandSpec};
use crate::{BuiltImage, ImageInfo, PullOptions, SandboxError};

/// Label every object of a job carries.
pub const JOB_LABEL: &str = "berth.job";

/// The TCP ports among an image's exposed ports (`"5432/tcp"`, `"53/udp"`, `"80"`).
fn tcp_ports<'a>(exposed: impl IntoIterator<Item = &'a String>) -> Vec<u16> {
    exposed
        .into_iter()
        .filter_map(|k| {
            let (port, proto) = k.split_once('/').unwrap_or((k.as_str(), "tcp"));
            (proto == "tcp").then(|| port.parse().ok()).flatten()
        })
        .collect()
}

impl PodmanSandbox {
    /// Podman on the base store with the settings a pull needs.
    fn base_podman(&self) -> CommandSpec {
        base_store_podman(&self.settings).args([
            "--cgroup-manager".to_owned(),
            "cgroupfs".to_owned(),
            "--events-backend".to_owned(),
            "file".to_owned(),
        ])
    }

    pub(super) async fn pull(&self, image: &str, pull: &PullOptions) -> Result<(), SandboxError> {
        let mut spec = self.base_podman().args(["pull", "--quiet"]);
        if pull.insecure {
            spec = spec.args(["--tls-verify=false"]);
        }
        if super::service::needs_registries_conf(&self.settings) {
            let text = super::service::registries_conf(&self.settings)?;
            let file = self.paths.pull_registries_conf();
            let owner = self.settings.store.identity;
            process::as_root(|| {
                if let Some(dir) = file.parent() {
                    mkdir(dir, 0o711)?;
                }
                write_private(&file, text.as_bytes(), owner)
            })?;
            spec = spec.env("CONTAINERS_REGISTRIES_CONF", file);
        }
        if let Some(file) = self.write_pull_auth(pull)? {
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
        let _ = process::as_root(|| std::fs::remove_file(self.paths.pull_registries_conf()));
        result
            .map(drop)
            .map_err(SandboxError::runtime(format!("pull image {image}")))
    }

    /// Writes the job's credentials for `pull`'s registry where the store identity alone can
    /// read them (root makes the file); callers remove it (`auth_file`) when the pull is over.
    pub(super) fn write_pull_auth(
        &self,
        pull: &PullOptions,
    ) -> Result<Option<PathBuf>, SandboxError> {
        let Some(auth) = &pull.auth else {
            return Ok(None);
        };
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
        Ok(Some(file))
    }

    /// What berth needs of `image`: its id, entrypoint and exposed TCP ports.
    pub(super) async fn inspect_image(&self, image: &str) -> Result<ImageInfo, SandboxError> {
        let inspect = self
            .api
            .image_inspect(image)
            .await
            .map_err(SandboxError::runtime(format!("inspect image {image}")))?;
        Ok(ImageInfo {
            id: inspect.id,
            digest: Some(inspect.digest).filter(|d| !d.is_empty()),
            entrypoint: inspect.config.entrypoint,
            tcp_ports: tcp_ports(inspect.config.exposed_ports.unwrap_or_default().keys()),
        })
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

/// Named images in a containers-storage root, read from its `images.json` (no Podman call) by
/// the project's one reader of store metadata, beneath the store's handle (the job writes it).
/// Podman's own pod infra image is not the job's work.
pub(super) fn images_in_store(
    store: &Path,
    builder: &str,
) -> Result<Vec<BuiltImage>, SandboxError> {
    let dir = match berth_beneath::Dir::open(store) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(store)(e)),
    };
    let images = berth_storemeta::read_images(&dir)
        .map_err(SandboxError::runtime("list the images the job built"))?
        .unwrap_or_default();
    Ok(images
        .into_iter()
        .filter(|image| !image.names.is_empty())
        .filter(|image| {
            !image
                .names
                .iter()
                .any(|n| n.starts_with("localhost/podman-pause:"))
        })
        .map(|image| BuiltImage {
            id: image.id.as_str().to_owned(),
            names: image.names,
            store: store.to_owned(),
            builder: builder.to_owned(),
            oci_layout: false,
        })
        .collect())
}

/// Podman on the shared base store, outside any job, as the store identity.
pub(super) fn base_store_podman(settings: &PodmanSettings) -> CommandSpec {
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

/// Runs `podman <command> -- <operands>` on the base store as the store identity; nothing to
/// do without operands.
async fn base_store_run(
    settings: &PodmanSettings,
    command: &[&str],
    operands: impl IntoIterator<Item = std::ffi::OsString>,
    action: &str,
) -> Result<(), SandboxError> {
    let mut operands = operands.into_iter().peekable();
    if operands.peek().is_none() {
        return Ok(());
    }
    let spec = base_store_podman(settings)
        .args(command)
        .args(["--"])
        .args(operands);
    process::run(&spec, &CancellationToken::new())
        .await
        .map(drop)
        .map_err(SandboxError::runtime(action))
}

/// Removes trees that hold files of the store identity's subordinate ids (a BuildKit root)
/// from inside its user namespace, where it may delete them.
pub async fn remove_in_user_namespace(
    settings: &PodmanSettings,
    trees: &[PathBuf],
) -> Result<(), SandboxError> {
    base_store_run(
        settings,
        &["unshare", "rm", "-rf"],
        trees.iter().map(|t| t.as_os_str().to_owned()),
        "remove trees in the store identity's user namespace",
    )
    .await
}

/// Removes images from the shared base store (never forced: an image something still uses
/// stays, and Podman says why).
pub async fn remove_base_images(
    settings: &PodmanSettings,
    ids: &[String],
) -> Result<(), SandboxError> {
    base_store_run(
        settings,
        &["rmi"],
        ids.iter().map(std::ffi::OsString::from),
        "remove images from the base store",
    )
    .await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tcp_ports_are_waited_for() {
        let exposed = ["5432/tcp", "53/udp", "80", "x/tcp"].map(str::to_owned);
        assert_eq!(tcp_ports(&exposed), [5432, 80]);
    }

    #[test]
    fn a_store_lists_its_named_images_but_podmans_pause_image() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("overlay-images")).expect("mkdir");
        let images = serde_json::json!([
            { "id": "a".repeat(64), "names": ["localhost/app:1"] },
            { "id": "b".repeat(64), "names": ["localhost/podman-pause:4.3.1-0"] },
            { "id": "c".repeat(64) },
        ]);
        std::fs::write(
            dir.path().join("overlay-images/images.json"),
            images.to_string(),
        )
        .expect("write");
        let found = images_in_store(dir.path(), "nested").expect("read");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].names, ["localhost/app:1"]);
        assert_eq!(found[0].builder, "nested");
    }

    #[test]
    fn a_store_without_images_has_none_and_a_linked_index_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(
            images_in_store(dir.path(), "nested")
                .expect("empty")
                .is_empty()
        );
        std::fs::create_dir_all(dir.path().join("overlay-images")).expect("mkdir");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("overlay-images/images.json"))
            .expect("symlink");
        assert!(images_in_store(dir.path(), "nested").is_err());
    }

    #[test]
    fn a_lock_file_is_made_when_missing_and_opened_when_present() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pull.lock");
        drop(open_lock(&path).expect("create"));
        assert!(path.is_file());
        drop(open_lock(&path).expect("open"));
    }

    #[test]
    fn a_private_file_is_0600_and_refuses_a_planted_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("auth.json");
        write_private(&path, b"{}", None).expect("write");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&path, &link).expect("symlink");
        assert!(write_private(&link, b"x", None).is_err());
        assert_eq!(std::fs::read(&path).expect("read"), b"{}");
    }
}
