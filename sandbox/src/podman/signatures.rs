//! The registry's side of image trust: the digest an image reference names and the cosign
//! signature attachment stored for that digest (`<repository>:sha256-<hex>.sig`), fetched with
//! skopeo as the store identity, with the job's credentials and the admin's insecure registries
//! as for pulls, and read back beneath a handle with bounded sizes. Judging them is the stages'
//! (`stages/src/trust.rs`); Debian's Podman 4.3.1 is built with sigstore disabled, so Podman
//! cannot verify them at pull.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{PodmanSandbox, PodmanSettings, io};
use crate::process::{self, CommandSpec};
use crate::{PullOptions, RegistrySignatures, SandboxError, SignedLayer};

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
        pull: &PullOptions,
    ) -> Result<RegistrySignatures, SandboxError> {
        let auth = self.write_pull_auth(pull)?;
        let result = self
            .fetch_signatures(image, repository, pull.insecure, auth.as_deref())
            .await;
        let _ = process::as_root(|| std::fs::remove_file(self.paths.auth_file()));
        result
    }

    async fn fetch_signatures(
        &self,
        image: &str,
        repository: &str,
        insecure: bool,
        auth: Option<&Path>,
    ) -> Result<RegistrySignatures, SandboxError> {
        let action = |what: &str| format!("{what} of image {image} at its registry");
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
            .map_err(SandboxError::runtime(action("read the manifest")))?
            .stdout;
        if manifest.len() > MAX_MANIFEST {
            return Err(SandboxError::ImageUnavailable {
                image: image.to_owned(),
                reason: format!("its manifest is larger than {MAX_MANIFEST} bytes"),
            });
        }
        let hex = sha256_hex(&manifest);
        let digest = format!("sha256:{hex}");
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
            format!("docker://{repository}:sha256-{hex}.sig"),
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
