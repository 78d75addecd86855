//! Sign what passed (`sign_passed_images`): after a stage's scan, each image the job built that
//! passed the scan (and the build policies) and that the job pushed is signed with berth's key,
//! as cosign signs, so later jobs and clusters can require "built and scanned by berth". Only
//! a registry manifest whose config digest is the id of the image berth scanned is signed: a
//! job that pushed other bytes under the name gets nothing signed. With the signature goes an
//! attestation of the CycloneDX SBOM berth made of the image. The key is read by root from
//! a file only root can read; no job process ever holds it.

use std::collections::BTreeMap;
use std::str::FromStr;

use berth_sandbox::{Attachment, BuiltImage, Sandbox};
use p256::pkcs8::DecodePrivateKey;

use crate::{Job, StageError};

/// What happened to one name of a passed image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signed {
    /// Signed: `name`'s manifest `digest`.
    Yes {
        /// The pushed name.
        name: String,
        /// Its manifest digest.
        digest: String,
        /// Whether its SBOM was attested too.
        attested: bool,
    },
    /// Not signed, and why (a line for the job log).
    No(String),
}

/// berth's signing key, read as root.
fn signing_key(path: &std::path::Path) -> Result<p256::ecdsa::SigningKey, StageError> {
    let unusable = |detail: String| {
        StageError::HostLacks {
        what: format!("berth's signing key {}: {detail}", path.display()),
        fix: "write a PKCS#8 PEM ECDSA P-256 key there, root's and 0600 (`openssl ecparam -genkey -name prime256v1 | openssl pkcs8 -topk8 -nocrypt`), or turn `sign_passed_images` off".into(),
    }
    };
    let pem = berth_sandbox::process::as_root(|| std::fs::read_to_string(path))
        .map_err(|e| unusable(e.to_string()))?;
    p256::SecretKey::from_pkcs8_pem(&pem)
        .map(p256::ecdsa::SigningKey::from)
        .map_err(|e| unusable(format!("not a PKCS#8 PEM ECDSA P-256 private key: {e}")))
}

/// Signs every pushed name of `passed` (images of this stage that passed), when configured.
pub async fn sign_passed<S: Sandbox>(
    job: &Job,
    sandbox: &S,
    passed: &[&BuiltImage],
    sboms: &BTreeMap<String, String>,
) -> Result<Vec<Signed>, StageError> {
    let Some(path) = job
        .config
        .signing_key
        .as_ref()
        .filter(|_| job.config.sign_passed_images)
    else {
        return Ok(Vec::new());
    };
    let key = signing_key(path)?;
    let mut out = Vec::new();
    for image in passed {
        let id = image.config_digest();
        for name in &image.names {
            let Ok(reference) = oci_spec::distribution::Reference::from_str(name) else {
                continue;
            };
            // Podman's name for an image no registry holds.
            if reference.registry() == "localhost" {
                continue;
            }
            let repository = format!("{}/{}", reference.registry(), reference.repository());
            let options = crate::prepare::pull_options(job, reference.registry());
            let manifest = match sandbox.registry_manifest(name, &options).await {
                Ok(m) => m,
                Err(e) => {
                    out.push(Signed::No(format!(
                        "{name} is not signed: its registry does not hold it ({e}); berth signs an image pushed in the stage that builds it"
                    )));
                    continue;
                }
            };
            if manifest.config.as_deref() != Some(id.as_str()) {
                out.push(Signed::No(format!(
                    "{name} is not signed: the registry's {name} ({}) is not the image berth scanned ({id})",
                    manifest.config.as_deref().unwrap_or("an index or an unknown manifest")
                )));
                continue;
            }
            // Keep what is attached already (other signers'), add berth's.
            let attach = |kind: Attachment, mine: berth_sandbox::SignedLayer| {
                let (name, repository, digest, options) =
                    (name, &repository, &manifest.digest, &options);
                async move {
                    let mut layers = sandbox
                        .registry_signatures(name, repository, kind, options)
                        .await
                        .map(|s| s.layers)
                        .unwrap_or_default();
                    layers.push(mine);
                    sandbox
                        .attach_signatures(repository, digest, kind, &layers, options)
                        .await
                }
            };
            attach(
                Attachment::Signatures,
                crate::trust::sign_cosign(&key, &repository, &manifest.digest),
            )
            .await?;
            // The SBOM berth made of the image, attested by berth's key (cosign's
            // `verify-attestation --type cyclonedx` checks it).
            let sbom = sboms
                .get(&image.id)
                .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok());
            let attested = match sbom {
                Some(sbom) => {
                    attach(
                        Attachment::Attestations,
                        crate::trust::attest_sbom(&key, &repository, &manifest.digest, &sbom),
                    )
                    .await?;
                    true
                }
                None => false,
            };
            out.push(Signed::Yes {
                name: name.clone(),
                digest: manifest.digest.clone(),
                attested,
            });
        }
    }
    Ok(out)
}
