//! The admin's image trust at prepare, over the recording fake: what berth asks the registry
//! and pulls under each scope, when an image already in the base store is admitted without
//! asking, that a verified image runs by its digest, and the BUILD failures that name the image,
//! the scope and what it expects.

use std::collections::BTreeMap;

use berth_sandbox::fake::{Call, FakeBehaviour, FakeSandbox};
use berth_sandbox::{ImageInfo, RegistrySignatures, Role};
use berth_stages::trust::test_signing::{cosign_layer, public_pem};
use berth_stages::{FailureKind, JobLog, StageError};
use serde_json::json;

const HELPER: &str = "localhost/berth-helper:latest";
const REPO: &str = "registry.example.com/team/app";
const TAGGED: &str = "registry.example.com/team/app:1";
const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn pinned() -> String {
    format!("{REPO}@{DIGEST}")
}

struct Case {
    dir: tempfile::TempDir,
    key: std::path::PathBuf,
}

/// What the fake registry and base store hold.
struct World {
    /// Signing key seed of the attachment (None: nothing attached).
    signed_by: Option<u8>,
    /// Whether the base store already holds the tag (with the registry's digest).
    present: bool,
}

impl Case {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let key = dir.path().join("team.pub");
        std::fs::write(&key, public_pem(7)).expect("key");
        Self { dir, key }
    }

    fn config(&self) -> String {
        format!(
            "pull_policy = [\"if-not-present\"]\nallowed_pull_policies = [\"if-not-present\", \"never\", \"always\"]\n\n[[image_trust]]\nscope = \"default\"\npolicy = \"reject\"\n\n[[image_trust]]\nscope = \"registry.example.com/team\"\npolicy = \"sigstore\"\nkeys = [\"{}\"]\n\n[[image_trust]]\nscope = \"localhost\"\npolicy = \"accept\"\n",
            self.key.display()
        )
    }

    fn prepare(
        &self,
        payload: serde_json::Value,
        world: &World,
    ) -> (Result<(), StageError>, Vec<Call>) {
        let job = berth_tests::fake_backend::job_in(self.dir.path(), &payload, &self.config());
        let mut images = BTreeMap::new();
        let info = |name: &str, digest: Option<&str>| ImageInfo {
            id: format!("id-{name}"),
            digest: digest.map(str::to_owned),
            ..ImageInfo::default()
        };
        for name in [HELPER, "docker.io/library/redis:7", "localhost/tool:1"] {
            images.insert(name.to_owned(), info(name, None));
        }
        images.insert(pinned(), info(REPO, Some(DIGEST)));
        if world.present {
            images.insert(TAGGED.to_owned(), info(REPO, Some(DIGEST)));
        }
        let layers = world
            .signed_by
            .map(|seed| vec![cosign_layer(seed, REPO, DIGEST)])
            .unwrap_or_default();
        let fake = FakeSandbox::new(FakeBehaviour {
            images,
            signatures: BTreeMap::from([(
                TAGGED.to_owned(),
                RegistrySignatures {
                    digest: DIGEST.to_owned(),
                    layers,
                },
            )]),
            ..FakeBehaviour::default()
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let result = runtime.block_on(berth_stages::prepare::prepare(
            &job,
            &fake,
            &mut JobLog::new(Box::new(std::io::sink()), Vec::new()),
        ));
        (result, fake.calls())
    }
}

/// The image calls of a prepare, as words.
fn image_calls(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::EnsureImage(i, policies, _) if i != HELPER => Some(format!(
                "ensure {i} {}",
                policies
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            )),
            Call::RegistrySignatures(i) => Some(format!("ask registry {i}")),
            _ => None,
        })
        .collect()
}

fn job_container_image(calls: &[Call]) -> Option<String> {
    calls.iter().find_map(|c| match c {
        Call::RunContainer(spec) if spec.role == Role::Job => Some(spec.image.clone()),
        _ => None,
    })
}

#[test]
fn a_signed_image_is_verified_at_the_registry_pulled_and_run_by_its_digest_then_admitted_without_asking()
 {
    let case = Case::new();
    let job = json!({"id": 1, "image": {"name": TAGGED}});
    let signed = World {
        signed_by: Some(7),
        present: true,
    };
    let (result, calls) = case.prepare(job.clone(), &signed);
    result.expect("a signed image");
    // In the base store, but never verified: berth asks the registry before using it.
    assert_eq!(
        image_calls(&calls),
        vec![
            format!("ensure {TAGGED} never"),
            format!("ask registry {TAGGED}"),
            format!("ensure {} if-not-present", pinned()),
        ]
    );
    assert_eq!(job_container_image(&calls), Some(pinned()));
    // Verified under this policy: used as it is, by digest, without asking the registry.
    let (result, calls) = case.prepare(job, &signed);
    result.expect("verified before");
    assert_eq!(
        image_calls(&calls),
        vec![
            format!("ensure {TAGGED} never"),
            format!("ensure {} never", pinned())
        ]
    );
    // A new key is a new policy: asked again, and this signature is no longer good enough.
    std::fs::write(&case.key, public_pem(9)).expect("new key");
    let (result, calls) = case.prepare(json!({"id": 2, "image": {"name": TAGGED}}), &signed);
    let err = result.expect_err("signed by the old key");
    assert!(err.to_string().contains("another key"), "{err}");
    assert!(image_calls(&calls).contains(&format!("ask registry {TAGGED}")));
}

#[test]
fn refusals_are_build_failures_naming_the_image_the_scope_and_the_expectation() {
    let case = Case::new();
    let unsigned = World {
        signed_by: None,
        present: false,
    };
    // The default scope rejects: nothing is pulled or asked.
    let (result, calls) = case.prepare(
        json!({"id": 3, "image": {"name": "localhost/tool:1"}, "services": [{"name": "docker.io/library/redis:7"}]}),
        &unsigned,
    );
    let err = result.expect_err("rejected scope");
    assert_eq!(err.failure_kind(), FailureKind::Build);
    let text = err.to_string();
    assert!(
        text.contains("service docker.io/library/redis:7 is not trusted")
            && text.contains("scope default")
            && text.contains("admits no image"),
        "{text}"
    );
    assert_eq!(
        image_calls(&calls),
        vec!["ensure localhost/tool:1 if-not-present".to_owned()],
        "the accepted job image is pulled as its policy says; the service is never touched"
    );

    // Unsigned at the registry.
    let (result, calls) = case.prepare(json!({"id": 4, "image": {"name": TAGGED}}), &unsigned);
    let err = result.expect_err("unsigned");
    assert_eq!(err.failure_kind(), FailureKind::Build);
    let text = err.to_string();
    assert!(
        text.contains("scope registry.example.com/team")
            && text.contains(&format!("by the key {}", case.key.display()))
            && text.contains("no signature is attached"),
        "{text}"
    );
    assert!(
        !image_calls(&calls).iter().any(|c| c.contains('@')),
        "nothing unverified is pulled: {calls:?}"
    );

    // Signed, but by another key.
    let (result, _) = case.prepare(
        json!({"id": 5, "image": {"name": TAGGED}}),
        &World {
            signed_by: Some(8),
            present: false,
        },
    );
    assert!(
        result
            .expect_err("other key")
            .to_string()
            .contains("another key")
    );

    // Pull policy never, and never verified: refused without asking.
    let (result, calls) = case.prepare(
        json!({"id": 6, "image": {"name": TAGGED, "pull_policy": ["never"]}}),
        &World {
            signed_by: Some(7),
            present: true,
        },
    );
    let err = result.expect_err("never");
    assert!(
        err.to_string()
            .contains("\"never\" forbids asking the registry"),
        "{err}"
    );
    assert_eq!(image_calls(&calls), vec![format!("ensure {TAGGED} never")]);
}
