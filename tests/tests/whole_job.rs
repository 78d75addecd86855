//! Whole jobs through the stage functions over the recording fake: routing, the order of
//! sandbox calls, policy decisions and the BUILD/SYSTEM verdicts, with no Podman involved.

use std::collections::BTreeMap;
use std::path::Path;

use berth_config::{PullPolicy, StageTarget};
use berth_sandbox::fake::{Call, FakeBehaviour, FakeSandbox};
use berth_sandbox::{Cancel, ImageInfo, Role};
use berth_stages::{FailureKind, Job, JobLog, RunOutcome, StageError};
use serde_json::json;

struct Fixture {
    _dir: tempfile::TempDir,
    job: Job,
}

fn fixture(payload: serde_json::Value, config_text: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = berth_tests::fake_backend::job_in(dir.path(), &payload, config_text);
    Fixture { _dir: dir, job }
}

fn images(names: &[&str]) -> BTreeMap<String, ImageInfo> {
    names
        .iter()
        .map(|n| {
            (
                (*n).to_owned(),
                ImageInfo {
                    id: format!("id-{n}"),
                    tcp_ports: vec![5432],
                    ..ImageInfo::default()
                },
            )
        })
        .collect()
}

fn log() -> JobLog {
    JobLog::new(Box::new(std::io::sink()), Vec::new())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

const HELPER: &str = "localhost/berth-helper:latest";

#[test]
fn prepare_creates_pod_services_helper_and_job_in_order() {
    let f = fixture(
        json!({"id": 7, "image": {"name": "alpine:3"},
               "services": [{"name": "postgres:16", "alias": "db"}],
               "job_info": {"project_id": 3}}),
        "",
    );
    let fake = FakeSandbox::new(FakeBehaviour {
        images: images(&["alpine:3", "postgres:16", HELPER]),
        ..FakeBehaviour::default()
    });
    rt().block_on(berth_stages::prepare::prepare(&f.job, &fake, &mut log()))
        .expect("prepare");
    let calls = fake.calls();
    let kinds: Vec<String> = calls
        .iter()
        .map(|c| match c {
            Call::Start => "start".into(),
            Call::EnsureImage(i, _, _) => format!("image {i}"),
            Call::CreatePod(p) => format!("pod {}", p.hosts.join(",")),
            Call::RunContainer(c) => format!("run {:?} {}", c.role, c.image),
            Call::WaitPorts(s, p) => format!("wait {s} {p:?}"),
            Call::Exec(..) => "exec".into(),
            Call::Teardown => "teardown".into(),
            Call::RegistrySignatures(i) => format!("signatures {i}"),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "teardown",
            "start",
            "image alpine:3",
            &format!("image {HELPER}"),
            "image postgres:16",
            "pod postgres,db,build",
            "run Service postgres:16",
            "wait postgres:16 [5432]",
            &format!("run Helper {HELPER}"),
            "run Job alpine:3",
        ]
    );
    let Some(Call::RunContainer(job)) = calls.last() else {
        panic!("last call is the job container");
    };
    assert!(job.no_new_privileges);
    assert!(job.mounts.iter().any(|m| m.destination == "/builds"));
    assert!(
        job.mounts
            .iter()
            .any(|m| m.destination == "/cache" && m.source.ends_with("project-3"))
    );
    assert_eq!(job.role, Role::Job);
}

#[test]
fn only_the_job_container_gets_the_nested_run_profile_and_only_when_configured() {
    for (config, expect_profile) in [("", false), ("nested_run = true\n", true)] {
        let f = fixture(
            json!({"id": 9, "image": {"name": "alpine:3"},
                   "services": [{"name": "postgres:16"}]}),
            config,
        );
        let fake = FakeSandbox::new(FakeBehaviour {
            images: images(&["alpine:3", "postgres:16", HELPER]),
            ..FakeBehaviour::default()
        });
        rt().block_on(berth_stages::prepare::prepare(&f.job, &fake, &mut log()))
            .expect("prepare");
        for call in fake.calls() {
            let Call::RunContainer(c) = call else {
                continue;
            };
            let confined_as_default = c.seccomp_profile.is_none() && c.unmask.is_empty();
            if c.role == Role::Job && expect_profile {
                let profile = c.seccomp_profile.as_deref().expect("profile");
                assert!(
                    profile.starts_with(f.job.paths.job_dir.as_path()),
                    "{profile:?}"
                );
                assert_eq!(c.unmask, vec!["/proc/*".to_owned()]);
            } else {
                assert!(confined_as_default, "{config:?}: {:?} got {c:?}", c.role);
            }
        }
    }
}

#[test]
fn stages_are_routed_and_script_failures_are_values() {
    let f = fixture(json!({"id": 8, "image": {"name": "alpine:3"}}), "");
    let fake = FakeSandbox::new(FakeBehaviour {
        images: images(&["alpine:3", HELPER]),
        exit_codes: BTreeMap::from([("build_script".to_owned(), 3)]),
        ..FakeBehaviour::default()
    });
    let rt = rt();
    rt.block_on(berth_stages::prepare::prepare(&f.job, &fake, &mut log()))
        .expect("prepare");
    let mut out = Vec::new();
    let cancel = Cancel::new();
    for (stage, expected) in [
        ("prepare_script", RunOutcome::Success),
        ("get_sources", RunOutcome::Success),
        ("build_script", RunOutcome::ScriptFailed(3)),
        ("step_release", RunOutcome::Success),
        ("after_script", RunOutcome::Success),
        ("upload_artifacts_on_failure", RunOutcome::Success),
    ] {
        let outcome = rt
            .block_on(berth_stages::run::run(
                &f.job, &fake, stage, b"true", &mut out, &cancel,
            ))
            .expect("run");
        assert_eq!(outcome, expected, "{stage}");
    }
    let targets: Vec<(StageTarget, String)> = fake
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Exec(t, id, _) => Some((t, id.split('-').next().unwrap_or_default().to_owned())),
            _ => None,
        })
        .collect();
    assert_eq!(
        targets,
        vec![
            (StageTarget::Helper, "prepare_script".to_owned()),
            (StageTarget::Helper, "get_sources".to_owned()),
            (StageTarget::Job, "build_script".to_owned()),
            (StageTarget::Job, "step_release".to_owned()),
            (StageTarget::Job, "after_script".to_owned()),
            (
                StageTarget::Helper,
                "upload_artifacts_on_failure".to_owned()
            ),
        ]
    );
}

#[test]
fn run_without_prepare_is_a_system_failure() {
    let f = fixture(json!({"id": 9, "image": {"name": "alpine:3"}}), "");
    let fake = FakeSandbox::default();
    let err = rt()
        .block_on(berth_stages::run::run(
            &f.job,
            &fake,
            "build_script",
            b"true",
            &mut Vec::new(),
            &Cancel::new(),
        ))
        .expect_err("not prepared");
    assert!(matches!(err, StageError::NotPrepared { .. }), "{err}");
    assert_eq!(err.failure_kind(), FailureKind::System);
}

#[test]
fn policy_refusals_are_build_failures_and_infrastructure_is_system() {
    let cases: Vec<(serde_json::Value, &str, FailureKind, &str)> = vec![
        (
            json!({"id": 1, "image": {"name": "evil/miner:1"}}),
            "allowed_images = [\"alpine:*\"]\n",
            FailureKind::Build,
            "allowed_images",
        ),
        (
            json!({"id": 2, "image": {"name": "alpine:3"}, "services": [{"name": "redis:7"}]}),
            "allowed_services = [\"postgres:*\"]\n",
            FailureKind::Build,
            "allowed_services",
        ),
        (
            json!({"id": 3, "image": {"name": "alpine:3", "pull_policy": ["always"]}}),
            "",
            FailureKind::Build,
            "pull policy \"always\"",
        ),
        (
            json!({"id": 4, "image": {"name": "UPPER::case"}}),
            "",
            FailureKind::Build,
            "not a valid image name",
        ),
        (
            json!({"id": 5, "image": {"name": "missing:1"}}),
            "",
            FailureKind::System,
            "missing:1",
        ),
    ];
    for (payload, config, kind, needle) in cases {
        let f = fixture(payload, config);
        let fake = FakeSandbox::new(FakeBehaviour {
            images: images(&["alpine:3", HELPER]),
            ..FakeBehaviour::default()
        });
        let err = rt()
            .block_on(berth_stages::prepare::prepare(&f.job, &fake, &mut log()))
            .expect_err("refused");
        assert_eq!(err.failure_kind(), kind, "{err}");
        assert!(err.to_string().contains(needle), "{needle} not in: {err}");
    }
    let f = fixture(json!({"id": 6, "image": {"name": "alpine:3"}}), "");
    let fake = FakeSandbox::new(FakeBehaviour {
        fail_start: true,
        images: images(&["alpine:3", HELPER]),
        ..FakeBehaviour::default()
    });
    let err = rt()
        .block_on(berth_stages::prepare::prepare(&f.job, &fake, &mut log()))
        .expect_err("podman down");
    assert_eq!(err.failure_kind(), FailureKind::System, "{err}");
}

#[test]
fn job_pull_policies_are_honoured_within_the_allowed_set() {
    let f = fixture(
        json!({"id": 11, "image": {"name": "alpine:3", "pull_policy": ["never", "if-not-present"]}}),
        "allowed_pull_policies = [\"never\", \"if-not-present\"]\n",
    );
    let fake = FakeSandbox::new(FakeBehaviour {
        images: images(&["alpine:3", HELPER]),
        ..FakeBehaviour::default()
    });
    rt().block_on(berth_stages::prepare::prepare(&f.job, &fake, &mut log()))
        .expect("prepare");
    assert!(fake.calls().contains(&Call::EnsureImage(
        "alpine:3".into(),
        vec![PullPolicy::Never, PullPolicy::IfNotPresent],
        false
    )));
}

#[test]
fn cleanup_gathers_every_error_and_is_idempotent() {
    let f = fixture(json!({"id": 12, "image": {"name": "alpine:3"}}), "");
    let fake = FakeSandbox::new(FakeBehaviour {
        teardown_errors: 2,
        ..FakeBehaviour::default()
    });
    let rt = rt();
    let errors = rt.block_on(berth_stages::cleanup::cleanup(&f.job, &fake, &mut log()));
    assert_eq!(errors.len(), 2);
    let again = rt.block_on(berth_stages::cleanup::cleanup(&f.job, &fake, &mut log()));
    assert_eq!(again.len(), 2);
    assert_eq!(fake.calls(), vec![Call::Teardown, Call::Teardown]);
    assert!(!Path::new(&f.job.paths.job_dir).exists());
}
