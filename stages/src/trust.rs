//! The admin's image trust at prepare: cosign signatures checked by berth itself (Debian's
//! Podman 4.3.1 is built with sigstore disabled, so Podman cannot), and the record of which
//! manifest digests berth verified under which policy. A verified image is pulled and run by
//! its digest, so what runs is what was verified. An image already in the shared base store is
//! admitted under a signature scope only when its digest was verified under the policy in force:
//! a changed policy or key (a new fingerprint) makes berth verify again, and a job whose pull
//! policy forbids asking the registry is refused.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine;
use berth_config::Config;
use berth_config::trust::{ImageTrust, TrustRule};
use berth_sandbox::SignedLayer;
use p256::ecdsa::signature::Verifier;
use p256::pkcs8::DecodePublicKey;

use crate::StageError;

/// What a prepare needs to check images: the trust policy, its keys and its fingerprint.
#[derive(Debug, Clone)]
pub struct Gate {
    /// The admin's scopes.
    pub trust: ImageTrust,
    /// Each sigstore key, parsed.
    keys: BTreeMap<PathBuf, p256::ecdsa::VerifyingKey>,
    /// SHA-256 of the scopes and every key they name: a verification counts only under the
    /// fingerprint it was made under.
    pub fingerprint: String,
    verified_dir: PathBuf,
}

/// The media type of a cosign simple-signing payload.
const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// `registry/repository` of a reference, with Docker Hub spelled one way.
fn repository_of(reference: &str) -> Option<String> {
    let parsed = oci_spec::distribution::Reference::from_str(reference).ok()?;
    let registry = match parsed.registry() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    };
    Some(format!("{registry}/{}", parsed.repository()))
}

/// Whether `layers` hold a cosign signature by `key` of the manifest `digest` as an image of
/// `repository` (any tag: containers/image's `matchRepository`). The error says why not.
pub fn verify_cosign(
    key: &p256::ecdsa::VerifyingKey,
    repository: &str,
    digest: &str,
    layers: &[SignedLayer],
) -> Result<(), String> {
    if layers.is_empty() {
        return Err(format!("no signature is attached to {digest}"));
    }
    let wanted = repository_of(repository).unwrap_or_else(|| repository.to_owned());
    let mut reasons = Vec::new();
    for layer in layers {
        if layer.media_type != SIMPLE_SIGNING {
            reasons.push(format!(
                "a layer of type {} is no cosign signature",
                layer.media_type
            ));
            continue;
        }
        let Some(encoded) = &layer.signature else {
            reasons.push("a payload without its signature".to_owned());
            continue;
        };
        let signature = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|der| p256::ecdsa::Signature::from_der(&der).ok());
        let Some(signature) = signature else {
            reasons.push("a signature that is not a DER ECDSA signature".to_owned());
            continue;
        };
        if key.verify(&layer.payload, &signature).is_err() {
            reasons.push("a signature by another key (or of other bytes)".to_owned());
            continue;
        }
        let payload: serde_json::Value = match serde_json::from_slice(&layer.payload) {
            Ok(v) => v,
            Err(e) => {
                reasons.push(format!("a signed payload that is not JSON: {e}"));
                continue;
            }
        };
        let critical = &payload["critical"];
        let signed_digest = critical["image"]["docker-manifest-digest"].as_str();
        let signed_reference = critical["identity"]["docker-reference"].as_str();
        if critical["type"].as_str() != Some("cosign container image signature") {
            reasons.push("a signed payload of another type".to_owned());
        } else if signed_digest != Some(digest) {
            reasons.push(format!(
                "a signature of {}, not of {digest}",
                signed_digest.unwrap_or("no digest")
            ));
        } else if signed_reference.and_then(repository_of).as_deref() != Some(wanted.as_str()) {
            reasons.push(format!(
                "a signature for {}, not for {wanted}",
                signed_reference.unwrap_or("no repository")
            ));
        } else {
            return Ok(());
        }
    }
    Err(reasons.join("; "))
}

/// A cosign attachment layer: berth's signature, with `key`, of the manifest `digest` as an
/// image of `repository` (pure).
pub fn sign_cosign(key: &p256::ecdsa::SigningKey, repository: &str, digest: &str) -> SignedLayer {
    use p256::ecdsa::signature::Signer;
    let payload = serde_json::json!({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature"
        },
        "optional": {"signed-by": "berth", "berth.scan": "passed"}
    })
    .to_string()
    .into_bytes();
    let signature: p256::ecdsa::Signature = key.sign(&payload);
    SignedLayer {
        media_type: SIMPLE_SIGNING.to_owned(),
        signature: Some(base64_der(&signature)),
        payload,
        predicate_type: None,
    }
}

/// A signature as cosign stores it: DER, base64.
fn base64_der(signature: &p256::ecdsa::Signature) -> String {
    base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
}

/// The predicate type of a CycloneDX SBOM attestation, as cosign names it (`--type cyclonedx`).
pub const CYCLONEDX_PREDICATE: &str = "https://cyclonedx.org/bom";

/// A cosign attestation layer: `sbom` (CycloneDX JSON) as the predicate of an in-toto statement
/// about the manifest `digest` of `repository`, in a DSSE envelope signed with `key` (pure).
pub fn attest_sbom(
    key: &p256::ecdsa::SigningKey,
    repository: &str,
    digest: &str,
    sbom: &serde_json::Value,
) -> SignedLayer {
    use p256::ecdsa::signature::Signer;
    const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
    let statement = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": CYCLONEDX_PREDICATE,
        "subject": [{
            "name": repository,
            "digest": {"sha256": digest.trim_start_matches("sha256:")}
        }],
        "predicate": sbom
    })
    .to_string();
    // DSSE's pre-authentication encoding: what the signature covers.
    let pae = format!(
        "DSSEv1 {} {PAYLOAD_TYPE} {} {statement}",
        PAYLOAD_TYPE.len(),
        statement.len()
    );
    let signature: p256::ecdsa::Signature = key.sign(pae.as_bytes());
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let envelope = serde_json::json!({
        "payloadType": PAYLOAD_TYPE,
        "payload": b64(statement.as_bytes()),
        "signatures": [{"keyid": "", "sig": base64_der(&signature)}]
    });
    SignedLayer {
        media_type: "application/vnd.dsse.envelope.v1+json".to_owned(),
        payload: envelope.to_string().into_bytes(),
        signature: Some(String::new()),
        predicate_type: Some(CYCLONEDX_PREDICATE.to_owned()),
    }
}

fn root_dir(dir: &Path) -> Result<(), StageError> {
    std::fs::create_dir_all(dir).map_err(StageError::io(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(StageError::io(dir))
}

impl Gate {
    /// The gate of `config` (None without `[[image_trust]]`); its keys read as root.
    pub fn of(config: &Config) -> Result<Option<Self>, StageError> {
        let Some(trust) = &config.image_trust else {
            return Ok(None);
        };
        let mut fingerprint = ring::digest::Context::new(&ring::digest::SHA256);
        let mut keys = BTreeMap::new();
        for scope in &trust.scopes {
            fingerprint.update(format!("{}\0{:?}\0", scope.scope, scope.rule).as_bytes());
            let TrustRule::Sigstore { key } = &scope.rule else {
                continue;
            };
            let unusable = |detail: String| {
                StageError::HostLacks {
                what: format!(
                    "the public key {} of image trust scope {}: {detail}",
                    key.display(),
                    scope.shown()
                ),
                fix: "put cosign's PEM public key there (`cosign generate-key-pair` writes cosign.pub; ECDSA P-256), root's, or fix `keys` in [[image_trust]]".into(),
            }
            };
            let pem = berth_sandbox::process::as_root(|| std::fs::read_to_string(key))
                .map_err(|e| unusable(e.to_string()))?;
            let parsed = p256::ecdsa::VerifyingKey::from_public_key_pem(&pem)
                .map_err(|e| unusable(format!("not an ECDSA P-256 public key in PEM: {e}")))?;
            fingerprint.update(pem.as_bytes());
            keys.insert(key.clone(), parsed);
        }
        let fingerprint: String = fingerprint
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let verified_dir = config.state_dir.join("trust").join(&fingerprint);
        berth_sandbox::process::as_root(|| -> Result<(), StageError> {
            root_dir(&config.state_dir.join("trust"))?;
            root_dir(&verified_dir)
        })?;
        Ok(Some(Self {
            trust: trust.clone(),
            keys,
            fingerprint,
            verified_dir,
        }))
    }

    /// The parsed key at `path` (one the gate loaded).
    pub fn key(&self, path: &Path) -> Option<&p256::ecdsa::VerifyingKey> {
        self.keys.get(path)
    }

    /// The record's name for `digest` (its hex), when it is a SHA-256 digest.
    fn record(digest: &str) -> Option<&str> {
        let hex = digest.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
    }

    /// Whether a pull verified `digest` under this gate's policy.
    pub fn is_verified(&self, digest: &str) -> bool {
        Self::record(digest).is_some_and(|hex| self.verified_dir.join(hex).is_file())
    }

    /// Records that a pull verified `digest` under this gate's policy (root's file, written
    /// beneath the record directory's handle).
    pub fn record_verified(&self, digest: &str) -> Result<(), StageError> {
        let Some(hex) = Self::record(digest) else {
            return Ok(());
        };
        let dir = &self.verified_dir;
        berth_sandbox::process::as_root(|| {
            berth_beneath::Dir::open(dir).and_then(|d| d.write_atomic(hex, b"", 0o644))
        })
        .map_err(StageError::io(&dir.join(hex)))
    }
}

/// Signing as cosign does, with fixed keys: for the tests of berth and its fakes (the recording
/// fake's registry holds what these sign), never for images.
pub mod test_signing {
    use berth_sandbox::SignedLayer;
    use p256::pkcs8::EncodePublicKey;

    /// A fixed signing key (tests only).
    pub fn signing_key(seed: u8) -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_bytes(&[seed.max(1); 32].into()).expect("a valid scalar")
    }

    /// The PEM public key of `signing_key(seed)`.
    pub fn public_pem(seed: u8) -> String {
        p256::ecdsa::VerifyingKey::from(&signing_key(seed))
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .expect("PEM")
    }

    /// A cosign attachment layer signing `digest` as an image of `reference`, as berth signs.
    pub fn cosign_layer(seed: u8, reference: &str, digest: &str) -> SignedLayer {
        super::sign_cosign(&signing_key(seed), reference, digest)
    }
}

#[cfg(test)]
mod tests {
    use super::test_signing::{cosign_layer, public_pem};
    use super::*;

    const DIGEST: &str = "sha256:c77304e9d30e96790e1055c4639c83fef4fdb6d636d055069a25d1d4e74a7aa3";

    fn key(seed: u8) -> p256::ecdsa::VerifyingKey {
        p256::ecdsa::VerifyingKey::from_public_key_pem(&public_pem(seed)).expect("key")
    }

    #[test]
    fn a_signature_by_the_key_for_the_digest_and_repository_verifies() {
        let layer = cosign_layer(7, "127.0.0.1:5000/team/app", DIGEST);
        verify_cosign(&key(7), "127.0.0.1:5000/team/app", DIGEST, &[layer]).expect("verifies");
        // Signed with a tag in the identity (Podman's way): still the repository.
        let tagged = cosign_layer(7, "127.0.0.1:5000/team/app:1.0", DIGEST);
        verify_cosign(&key(7), "127.0.0.1:5000/team/app", DIGEST, &[tagged]).expect("tag");
        // Docker Hub as cosign names it.
        let hub = cosign_layer(7, "index.docker.io/library/alpine", DIGEST);
        verify_cosign(&key(7), "docker.io/library/alpine", DIGEST, &[hub]).expect("hub");
    }

    #[test]
    fn every_other_signature_is_refused_with_its_reason() {
        let repo = "127.0.0.1:5000/team/app";
        let cases = [
            (Vec::new(), "no signature is attached"),
            (vec![cosign_layer(8, repo, DIGEST)], "another key"),
            (
                vec![cosign_layer(7, repo, &DIGEST.replace('c', "d"))],
                "not of sha256:c773",
            ),
            (
                vec![cosign_layer(7, "127.0.0.1:5000/team/other", DIGEST)],
                "not for 127.0.0.1:5000/team/app",
            ),
        ];
        for (layers, reason) in cases {
            let err = verify_cosign(&key(7), repo, DIGEST, &layers).expect_err(reason);
            assert!(err.contains(reason), "{reason}: {err}");
        }
        let mut tampered = cosign_layer(7, repo, DIGEST);
        tampered.payload = String::from_utf8(tampered.payload)
            .expect("utf8")
            .replace("team/app", "team/evil")
            .into_bytes();
        let err = verify_cosign(&key(7), repo, DIGEST, &[tampered]).expect_err("tampered");
        assert!(err.contains("another key (or of other bytes)"), "{err}");
    }
}
