//! The registry's side of image trust: the manifest an image reference names and the cosign
//! signature attachment stored for its digest (`<repository>:sha256-<hex>.sig`), fetched and
//! stored with skopeo as the store identity, with the job's credentials and the admin's insecure
//! registries as for pulls. What is read back is read beneath a handle with bounded sizes; what
//! is stored is written by root where no job identity can write. Judging and signing are the
//! stages' (`stages/src/trust.rs`, `stages/src/signing.rs`); Debian's Podman 4.3.1 is built with
//! sigstore disabled, so Podman can do neither.

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{PodmanSandbox, PodmanSettings, io};
use crate::process::{self, CommandSpec};
use crate::{
    Attachment, PullOptions, RegistryManifest, RegistrySignatures, SandboxError, SignedLayer,
};

/// The largest manifest (or index) read.
const MAX_MANIFEST: usize = 4 << 20;
/// The largest signed payload read.
const MAX_PAYLOAD: u64 = 64 << 10;
/// The most layers of an attachment looked at.
const MAX_LAYERS: usize = 64;

/// skopeo as the store identity, with its environment.
fn skopeo(settings: &PodmanSettings) -> CommandSpec {
    let store = &settings.store;
    let mut spec = CommandSpec::new("skopeo");
    for (k, v) in &store.env {
        spec = spec.env(k, v);
    }
    if let Some((uid, gid)) = store.identity {
        spec = spec.as_identity(uid, gid);
    }
    spec
}

/// `rm -rf dir` as the store identity, whose directory it is.
async fn remove_as_store(settings: &PodmanSettings, dir: &Path) {
    let mut rm = CommandSpec::new("rm").args(["-rf".into(), dir.as_os_str().to_owned()]);
    if let Some((uid, gid)) = settings.store.identity {
        rm = rm.as_identity(uid, gid);
    }
    let _ = process::run(&rm, &CancellationToken::new()).await;
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Deserialize)]
struct ImageManifest {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    config: Option<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
}

#[derive(Deserialize)]
struct AttachmentManifest {
    #[serde(default)]
    layers: Vec<AttachmentLayer>,
}

#[derive(Deserialize)]
struct AttachmentLayer {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// The annotation cosign keeps a layer's signature in.
const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The annotation cosign keeps an attestation's predicate type in.
const PREDICATE_ANNOTATION: &str = "predicateType";

/// Reads the attachment skopeo wrote in `dir:` form, beneath a handle on `dir`.
fn read_attachment(dir: &Path) -> Result<Vec<SignedLayer>, SandboxError> {
    let handle = berth_beneath::Dir::open(dir).map_err(io(dir))?;
    let manifest = handle
        .read(Path::new("manifest.json"), 1 << 20)
        .map_err(io(&dir.join("manifest.json")))?;
    let manifest: AttachmentManifest = serde_json::from_slice(&manifest).map_err(|e| {
        io(&dir.join("manifest.json"))(std::io::Error::other(format!(
            "not a signature attachment manifest: {e}"
        )))
    })?;
    let mut layers = Vec::new();
    for layer in manifest.layers.into_iter().take(MAX_LAYERS) {
        let Some(hex) = layer
            .digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
        else {
            continue;
        };
        let path = dir.join(hex);
        let payload = handle
            .read(Path::new(hex), MAX_PAYLOAD)
            .map_err(io(&path))?;
        if sha256_hex(&payload) != hex {
            return Err(io(&path)(std::io::Error::other(
                "the signed payload does not match its digest",
            )));
        }
        layers.push(SignedLayer {
            media_type: layer.media_type,
            payload,
            signature: layer.annotations.get(SIGNATURE_ANNOTATION).cloned(),
            predicate_type: layer.annotations.get(PREDICATE_ANNOTATION).cloned(),
        });
    }
    Ok(layers)
}

impl PodmanSandbox {
    /// See [`crate::Sandbox::registry_signatures`].
    pub(super) async fn registry_signatures(
        &self,
        image: &str,
        repository: &str,
        kind: Attachment,
        pull: &PullOptions,
    ) -> Result<RegistrySignatures, SandboxError> {
        let auth = self.write_pull_auth(pull)?;
        let result = self
            .fetch_signatures(image, repository, kind, pull.insecure, auth.as_deref())
            .await;
        let _ = process::as_root(|| std::fs::remove_file(self.paths.auth_file()));
        result
    }

    /// See [`crate::Sandbox::registry_manifest`].
    pub(super) async fn registry_manifest(
        &self,
        image: &str,
        pull: &PullOptions,
    ) -> Result<RegistryManifest, SandboxError> {
        let auth = self.write_pull_auth(pull)?;
        let result = self
            .read_manifest(image, pull.insecure, auth.as_deref())
            .await;
        let _ = process::as_root(|| std::fs::remove_file(self.paths.auth_file()));
        result
    }

    async fn read_manifest(
        &self,
        image: &str,
        insecure: bool,
        auth: Option<&Path>,
    ) -> Result<RegistryManifest, SandboxError> {
        let mut inspect = skopeo(&self.settings).args(["inspect", "--raw"]);
        if insecure {
            inspect = inspect.args(["--tls-verify=false"]);
        }
        if let Some(auth) = auth {
            inspect = inspect.args(["--authfile".into(), auth.as_os_str().to_owned()]);
        }
        inspect = inspect.args([format!("docker://{image}")]);
        let manifest = process::run(&inspect, &CancellationToken::new())
            .await
            .map_err(SandboxError::runtime(format!(
                "read the manifest of image {image} at its registry"
            )))?
            .stdout;
        if manifest.len() > MAX_MANIFEST {
            return Err(SandboxError::ImageUnavailable {
                image: image.to_owned(),
                reason: format!("its manifest is larger than {MAX_MANIFEST} bytes"),
            });
        }
        let parsed: Option<ImageManifest> = serde_json::from_slice(&manifest).ok();
        let config = parsed
            .filter(|m| !m.media_type.contains("index") && !m.media_type.contains("list"))
            .and_then(|m| m.config)
            .map(|c| c.digest);
        Ok(RegistryManifest {
            digest: format!("sha256:{}", sha256_hex(&manifest)),
            config,
        })
    }

    async fn fetch_signatures(
        &self,
        image: &str,
        repository: &str,
        kind: Attachment,
        insecure: bool,
        auth: Option<&Path>,
    ) -> Result<RegistrySignatures, SandboxError> {
        let action = |what: &str| format!("{what} of image {image} at its registry");
        let digest = self.read_manifest(image, insecure, auth).await?.digest;
        let hex = digest.trim_start_matches("sha256:").to_owned();
        let dir = self
            .settings
            .store
            .runroot
            .with_file_name(format!("signatures-{}", self.paths.key));
        remove_as_store(&self.settings, &dir).await;
        let mut copy = skopeo(&self.settings).args(["copy", "--quiet"]);
        if insecure {
            copy = copy.args(["--src-tls-verify=false"]);
        }
        if let Some(auth) = auth {
            copy = copy.args(["--src-authfile".into(), auth.as_os_str().to_owned()]);
        }
        copy = copy.args([
            format!("docker://{repository}:sha256-{hex}.{}", kind.suffix()),
            format!("dir:{}", dir.display()),
        ]);
        let layers = match process::run(&copy, &CancellationToken::new()).await {
            // Nothing is attached: no signature.
            Err(e) if e.to_string().contains("manifest unknown") => Vec::new(),
            Err(e) => {
                remove_as_store(&self.settings, &dir).await;
                return Err(SandboxError::runtime(action("fetch the signatures"))(e));
            }
            Ok(_) => {
                let read = process::as_root(|| read_attachment(&dir));
                remove_as_store(&self.settings, &dir).await;
                read?
            }
        };
        Ok(RegistrySignatures { digest, layers })
    }
}

impl PodmanSandbox {
    /// See [`crate::Sandbox::attach_signatures`].
    pub(super) async fn attach_signatures(
        &self,
        repository: &str,
        digest: &str,
        kind: Attachment,
        layers: &[SignedLayer],
        pull: &PullOptions,
    ) -> Result<(), SandboxError> {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let dir = Path::new(crate::paths::RUN_ROOT)
            .join("sign")
            .join(&self.paths.host_name);
        // Root writes the attachment where no job identity can; the store identity reads it.
        process::as_root(|| write_attachment(&dir, layers))?;
        let auth = self.write_pull_auth(pull)?;
        let mut copy = skopeo(&self.settings).args(["copy", "--quiet"]);
        if pull.insecure {
            copy = copy.args(["--dest-tls-verify=false"]);
        }
        if let Some(auth) = &auth {
            copy = copy.args(["--dest-authfile".into(), auth.as_os_str().to_owned()]);
        }
        copy = copy.args([
            format!("dir:{}", dir.display()),
            format!("docker://{repository}:sha256-{hex}.{}", kind.suffix()),
        ]);
        let result = process::run(&copy, &CancellationToken::new()).await;
        let _ = process::as_root(|| std::fs::remove_file(self.paths.auth_file()));
        let _ = process::as_root(|| std::fs::remove_dir_all(&dir));
        result.map(drop).map_err(SandboxError::runtime(format!(
            "store the signature of {repository}@{digest} at its registry"
        )))
    }
}

/// Writes `layers` as a cosign attachment in skopeo's `dir:` form (root's, readable by all).
fn write_attachment(dir: &Path, layers: &[SignedLayer]) -> Result<(), SandboxError> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_dir_all(dir);
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))
            .map_err(io(parent))?;
    }
    std::fs::create_dir(dir).map_err(io(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(io(dir))?;
    let write = |name: &str, bytes: &[u8]| -> Result<(), SandboxError> {
        let path = dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io(&path))?;
        std::io::Write::write_all(&mut f, bytes).map_err(io(&path))
    };
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(&l.payload)))
        .collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {}
    }))
    .map_err(|e| io(dir)(std::io::Error::other(e)))?;
    let config_hex = sha256_hex(&config);
    write(&config_hex, &config)?;
    let mut descriptors = Vec::new();
    for layer in layers {
        let hex = sha256_hex(&layer.payload);
        if !dir.join(&hex).exists() {
            write(&hex, &layer.payload)?;
        }
        let mut descriptor = serde_json::json!({
            "mediaType": layer.media_type,
            "size": layer.payload.len(),
            "digest": format!("sha256:{hex}"),
        });
        let mut annotations = serde_json::Map::new();
        if let Some(signature) = &layer.signature {
            annotations.insert(SIGNATURE_ANNOTATION.into(), signature.clone().into());
        }
        if let Some(predicate) = &layer.predicate_type {
            annotations.insert(PREDICATE_ANNOTATION.into(), predicate.clone().into());
        }
        if !annotations.is_empty() {
            descriptor["annotations"] = serde_json::Value::Object(annotations);
        }
        descriptors.push(descriptor);
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": config.len(),
            "digest": format!("sha256:{config_hex}"),
        },
        "layers": descriptors,
    }))
    .map_err(|e| io(dir)(std::io::Error::other(e)))?;
    write("manifest.json", &manifest)?;
    write("version", b"Directory Transport Version: 1.1\n")
}
