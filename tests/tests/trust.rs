//! The admin's image trust at prepare, over the recording fake: which pulls berth asks for
//! under each scope, when an image already in the base store is admitted, and the BUILD
//! failures that name the image, the scope and what it expects.

use std::collections::BTreeMap;

use berth_config::PullPolicy;
use berth_sandbox::ImageInfo;
use berth_sandbox::fake::{Call, FakeBehaviour, FakeSandbox};
use berth_stages::{FailureKind, JobLog, StageError};
use serde_json::json;

const HELPER: &str = "localhost/berth-helper:latest";
const SIGNED: &str = "registry.example.com/team/app:1";
const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn config(key: &std::path::Path) -> String {
    format!(
        "pull_policy = [\"if-not-present\"]\nallowed_pull_policies = [\"if-not-present\", \"never\", \"always\"]\n\n[[image_trust]]\nscope = \"default\"\npolicy = \"reject\"\n\n[[image_trust]]\nscope = \"registry.example.com/team\"\npolicy = \"sigstore\"\nkeys = [\"{}\"]\n\n[[image_trust]]\nscope = \"localhost\"\npolicy = \"accept\"\n",
        key.display()
    )
}

struct Case {
    dir: tempfile::TempDir,
    key: std::path::PathBuf,
}

impl Case {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let key = dir.path().join("team.pub");
        std::fs::write(
            &key,
            "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n",
        )
        .expect("key");
        Self { dir, key }
    }

    /// Prepares a job with `payload` over a fake holding `images` (`untrusted` refused at pull).
    fn prepare(
        &self,
        payload: serde_json::Value,
        untrusted: &[&str],
    ) -> (Result<(), StageError>, Vec<Call>) {
        let job = berth_tests::fake_backend::job_in(self.dir.path(), &payload, &config(&self.key));
        let mut images = BTreeMap::new();
        for name in [
            SIGNED,
            HELPER,
            "docker.io/library/redis:7",
            "localhost/tool:1",
        ] {
            let digest = (name == SIGNED).then(|| DIGEST.to_owned());
            images.insert(
                name.to_owned(),
                ImageInfo {
                    id: format!("id-{name}"),
                    digest,
                    ..ImageInfo::default()
                },
            );
        }
        let fake = FakeSandbox::new(FakeBehaviour {
            images,
            untrusted: untrusted.iter().map(|u| (*u).to_owned()).collect(),
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

fn pulls_of(calls: &[Call], image: &str) -> Vec<Vec<PullPolicy>> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::EnsureImage(i, policies, _) if i == image => Some(policies.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_image_in_the_base_store_is_verified_by_a_pull_once_then_admitted_under_the_same_policy() {
    let case = Case::new();
    let job = json!({"id": 1, "image": {"name": SIGNED}});
    let (result, calls) = case.prepare(job.clone(), &[]);
    result.expect("a verified pull admits it");
    // Present but never verified: looked at, then pulled (and so verified) despite
    // if-not-present.
    assert_eq!(
        pulls_of(&calls, SIGNED),
        vec![vec![PullPolicy::Never], vec![PullPolicy::Always]]
    );
    let (result, calls) = case.prepare(job, &[]);
    result.expect("verified before");
    assert_eq!(
        pulls_of(&calls, SIGNED),
        vec![vec![PullPolicy::Never], vec![PullPolicy::IfNotPresent]]
    );
    // A new key is a new policy: verified again.
    std::fs::write(
        &case.key,
        "-----BEGIN PUBLIC KEY-----\nMFkwOTHER\n-----END PUBLIC KEY-----\n",
    )
    .expect("new key");
    let (result, calls) = case.prepare(json!({"id": 2, "image": {"name": SIGNED}}), &[]);
    result.expect("verified again");
    assert_eq!(pulls_of(&calls, SIGNED)[1], vec![PullPolicy::Always]);
}

#[test]
fn refusals_are_build_failures_naming_the_image_the_scope_and_the_expectation() {
    let case = Case::new();
    // The default scope rejects: no pull is even tried.
    let (result, calls) = case.prepare(
        json!({"id": 3, "image": {"name": SIGNED}, "services": [{"name": "docker.io/library/redis:7"}]}),
        &[],
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
    assert!(pulls_of(&calls, "docker.io/library/redis:7").is_empty());

    // Unsigned at the registry: the pull is refused.
    let (result, _) = case.prepare(json!({"id": 4, "image": {"name": SIGNED}}), &[SIGNED]);
    let err = result.expect_err("unsigned");
    assert_eq!(err.failure_kind(), FailureKind::Build);
    let text = err.to_string();
    assert!(
        text.contains("scope registry.example.com/team")
            && text.contains(&format!("by the key {}", case.key.display()))
            && text.contains("no signature exists"),
        "{text}"
    );

    // Pull policy never forbids the verifying pull (on a host where no pull verified it yet).
    let case = Case::new();
    let (result, calls) = case.prepare(
        json!({"id": 5, "image": {"name": SIGNED, "pull_policy": ["never"]}}),
        &[],
    );
    let err = result.expect_err("never");
    assert!(
        err.to_string().contains("\"never\" forbids the pull"),
        "{err}"
    );
    assert_eq!(pulls_of(&calls, SIGNED), vec![vec![PullPolicy::Never]]);

    // An accepted scope runs unsigned, as its pull policy says.
    let (result, calls) =
        case.prepare(json!({"id": 6, "image": {"name": "localhost/tool:1"}}), &[]);
    result.expect("accepted");
    assert_eq!(
        pulls_of(&calls, "localhost/tool:1"),
        vec![vec![PullPolicy::IfNotPresent]]
    );
}
