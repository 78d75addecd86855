//! The admin's `[[image_trust]]` rendered for Podman: a `containers-policy.json` that pulls are
//! verified with (`podman pull --signature-policy`), and a `registries.d` document that has
//! signatures looked up as sigstore attachments. Pure: berth writes the results as root
//! (`stages/src/trust.rs`).

use berth_config::trust::{ImageTrust, TrustRule};
use serde_json::{Value, json};

/// The policy requirement list of one rule.
fn requirements(rule: &TrustRule) -> Value {
    match rule {
        TrustRule::Sigstore { key } => json!([{
            "type": "sigstoreSigned",
            "keyPath": key,
            "signedIdentity": { "type": "matchRepository" }
        }]),
        TrustRule::Reject => json!([{ "type": "reject" }]),
        TrustRule::Accept => json!([{ "type": "insecureAcceptAnything" }]),
    }
}

/// The `containers-policy.json` for `trust`: the default scope for every transport, the
/// others under `transports.docker` (the one transport a job's images are pulled with).
pub fn policy_json(trust: &ImageTrust) -> Value {
    let default = requirements(&trust.default_scope().rule);
    let mut docker = serde_json::Map::new();
    docker.insert(String::new(), default.clone());
    for scope in trust.scopes.iter().filter(|s| !s.scope.is_empty()) {
        docker.insert(scope.scope.clone(), requirements(&scope.rule));
    }
    json!({ "default": default, "transports": { "docker": docker } })
}

/// The `registries.d` document: signatures are sigstore attachments in every registry.
pub const REGISTRIES_D: &str = "# Written by berth: sigstore signatures are OCI attachments next to each image.\ndefault-docker:\n  use-sigstore-attachments: true\n";

/// Whether Podman's account of a failed pull says the trust policy refused the image (as
/// containers/image words it: "Source image rejected: ...").
pub fn rejected_by_policy(stderr: &str) -> bool {
    stderr.contains("Source image rejected")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scope_becomes_its_requirements_and_the_default_covers_every_transport() {
        let config = berth_config::Config::parse(
            r#"
[[image_trust]]
scope = "default"
policy = "reject"

[[image_trust]]
scope = "localhost:5000/signed"
policy = "sigstore"
keys = ["/etc/berth/keys/ci.pub"]

[[image_trust]]
scope = "localhost:5000/open"
policy = "accept"
"#,
            None,
        )
        .expect("valid");
        let policy = policy_json(config.image_trust.as_ref().expect("trust"));
        assert_eq!(
            policy,
            json!({
                "default": [{"type": "reject"}],
                "transports": {"docker": {
                    "": [{"type": "reject"}],
                    "localhost:5000/signed": [{
                        "type": "sigstoreSigned",
                        "keyPath": "/etc/berth/keys/ci.pub",
                        "signedIdentity": {"type": "matchRepository"}
                    }],
                    "localhost:5000/open": [{"type": "insecureAcceptAnything"}]
                }}
            })
        );
        assert!(rejected_by_policy(
            "Error: Source image rejected: A signature was required, but no signature exists"
        ));
        assert!(!rejected_by_policy("Error: manifest unknown"));
    }
}
