//! Several runners on one host, each pointing berth at its own config (`--config`) with its own
//! identities and state directory: nothing of one crosses to the other, and a config that
//! shares what it must own alone is refused. Host B's identities and base store are made by
//! `scripts/test-all` (setup-host.sh and build-test-images.sh with `BERTH_*` for host B).

#![expect(
    clippy::disallowed_methods,
    reason = "the test stages a host's records in a mount namespace of its own with unshare"
)]

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use berth_integration::{FakeRunner, lease_in, leftovers_in, ok, payload, require_host};

const BUSYBOX: &str = "localhost/busybox:latest";
const STATE_B: &str = "/var/lib/berth-b";
const CONFIG_B: &str = "user = \"berth-runner-b\"\njob_users = [\"berth-b-job-0\", \"berth-b-job-1\"]\nstate_dir = \"/var/lib/berth-b\"\n";

fn require_host_b() {
    require_host();
    assert!(
        nix::unistd::User::from_name("berth-b-job-1")
            .ok()
            .flatten()
            .is_some()
            && Path::new(STATE_B).join("images").is_dir(),
        "host B is not set up: run BERTH_RUNNER_USER=berth-runner-b BERTH_JOB_USER_PREFIX=berth-b-job- BERTH_STATE_DIR={STATE_B} BERTH_JOB_SLOTS=2 integration/host/setup-host.sh, then integration/images/build-test-images.sh with the same variables"
    );
}

fn uid_of(name: &str) -> u32 {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no user {name}"))
        .uid
        .as_raw()
}

/// Whether berth makes per-job cgroups itself here (cgroup v1; on v2 rootless Podman does).
fn berth_makes_cgroups() -> bool {
    Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists()
}

#[test]
fn two_runner_configs_on_one_host_keep_their_jobs_identities_and_state_apart() {
    require_host_b();
    let mut a = FakeRunner::new(payload(BUSYBOX));
    // Host B serves the same job of the same runner: still two jobs that never meet.
    let mut b = FakeRunner::new(payload(BUSYBOX))
        .with_config(CONFIG_B)
        .with_job_of(&a);
    for job in [&mut a, &mut b] {
        ok(&job.stage(&["config"]));
        ok(&job.stage(&["prepare"]));
    }
    let (key_a, key_b) = (a.key(), b.key());
    assert_ne!(key_a, key_b, "one job key for two runners' jobs");
    assert!(key_b.starts_with(&key_a), "{key_b}");
    assert!(Path::new(STATE_B).join("jobs").join(&key_b).is_dir());
    assert!(!Path::new(STATE_B).join("jobs").join(&key_a).exists());
    let lease_b = lease_in(Path::new(STATE_B), &key_b).expect("b's lease is in b's state");
    assert!(lease_b.starts_with("berth-b-job-"), "{lease_b}");
    let lease_a = berth_integration::lease_of(&key_a).expect("a's lease");
    assert!(lease_a.starts_with("berth-job-"), "{lease_a}");

    // Each job's processes run as its own runner's identity.
    for (job, lease) in [(&mut a, &lease_a), (&mut b, &lease_b)] {
        let r = job.run(
            "build_script",
            "echo mine > /builds/file && cat /builds/file",
        );
        ok(&r);
        let uid = uid_of(lease);
        let work = if job.config.is_some() {
            Path::new(STATE_B).join("jobs").join(job.key()).join("work")
        } else {
            job.work_dir()
        };
        assert_eq!(
            std::fs::metadata(&work).expect("work").uid(),
            uid,
            "{}",
            work.display()
        );
    }

    // A job of B that a prepare killed early left an empty cgroup: A's reaper leaves it, B's
    // removes it.
    let orphan = format!("j1-gone-{}", key_b.rsplit('-').next().expect("tag"));
    let orphan_cgroup = Path::new("/sys/fs/cgroup/pids/berth").join(&orphan);
    if berth_makes_cgroups() {
        std::fs::create_dir_all(&orphan_cgroup).expect("cgroup");
        let b_identity = uid_of("berth-b-job-1");
        nix::unistd::chown(
            &orphan_cgroup,
            Some(nix::unistd::Uid::from_raw(b_identity)),
            None,
        )
        .expect("chown cgroup");
    }
    let mut admin_a = FakeRunner::new(payload(BUSYBOX));
    let mut admin_b = FakeRunner::new(payload(BUSYBOX)).with_config(CONFIG_B);
    ok(&admin_a.stage(&["reap"]));
    if berth_makes_cgroups() {
        assert!(
            orphan_cgroup.exists(),
            "runner A's reaper removed a cgroup of runner B's"
        );
    }
    ok(&admin_b.stage(&["reap"]));
    if berth_makes_cgroups() {
        assert!(
            !orphan_cgroup.exists(),
            "runner B's reaper left its own orphan cgroup"
        );
    } else {
        assert!(Path::new("/sys/fs/cgroup/cgroup.controllers").exists());
    }

    // Both jobs survived both reapers.
    for job in [&mut a, &mut b] {
        let r = job.run("build_script", "cat /builds/file");
        ok(&r);
        assert!(
            r.stdout.contains("mine") || r.stderr.contains("mine"),
            "{}",
            r.all()
        );
        ok(&job.stage(&["cleanup"]));
    }
    assert_eq!(
        leftovers_in(Path::new(berth_integration::STATE_DIR), &key_a),
        Vec::<String>::new()
    );
    assert_eq!(
        leftovers_in(Path::new(STATE_B), &key_b),
        Vec::<String>::new()
    );
}

/// Runs `job`'s berth stage `args` in a mount namespace of its own whose
/// `/run/berth/instances` holds only `records` (file name, JSON): a host where exactly those runner
/// configs are in use, without touching the records of jobs other tests run meanwhile.
fn berth_with_records(
    job: &FakeRunner,
    args: &[&str],
    records: &[(&str, String)],
) -> (i32, String) {
    let staged = tempfile::tempdir().expect("tmp");
    for (name, json) in records {
        std::fs::write(staged.path().join(name), json).expect("record");
    }
    std::fs::create_dir_all(REGISTRY).expect("registry dir");
    let script = format!(
        "mount -t tmpfs -o mode=0700 none {REGISTRY} && cp {}/* {REGISTRY}/ && exec \"$@\"",
        staged.path().display()
    );
    let template = job.berth_command(args);
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        "sh",
    ])
    .arg(template.get_program())
    .args(template.get_args())
    .current_dir(job.tmp.path())
    .env_clear();
    for (k, v) in template.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let out = cmd.output().expect("unshare");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

const REGISTRY: &str = "/run/berth/instances";

/// The record a prepare under the built-in defaults leaves.
fn default_record() -> String {
    let job_users: Vec<String> = berth_integration::job_users()
        .into_iter()
        .map(|u| u.name)
        .collect();
    serde_json::json!({
        "config": null,
        "user": berth_integration::RUNNER_USER,
        "job_users": job_users,
        "state_dir": berth_integration::STATE_DIR,
        "runtime_dir": null,
    })
    .to_string()
}

#[test]
fn a_runner_config_sharing_identities_with_one_in_use_is_refused_before_it_leases_any() {
    require_host();
    // Runner C has a state directory of its own but the default runner's identities: its
    // leases could not see A's, so C's jobs would run as identities A's jobs hold.
    let state_c = tempfile::tempdir().expect("state");
    let mut c = FakeRunner::new(payload(BUSYBOX))
        .with_config(&format!("state_dir = \"{}\"\n", state_c.path().display()));
    ok(&c.stage(&["config"]));
    let records = [("default.json", default_record())];
    let (code, out) = berth_with_records(&c, &["prepare"], &records);
    assert_eq!(code, 2, "a system failure: {out}");
    assert!(
        out.contains("shares what it must own alone")
            && out.contains("the identities berth-runner, berth-job-0")
            && out.contains("berth doctor --config"),
        "{out}"
    );
    let leased = std::fs::read_dir(state_c.path().join("leases"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leased, 0, "C leased an identity");
    assert!(!state_c.path().join("jobs").join(c.key()).exists());

    // The doctor says the same before any job runs.
    let (_, out) = berth_with_records(&c, &["doctor"], &records);
    let line = out
        .lines()
        .find(|l| l.contains("other runner configs"))
        .unwrap_or_else(|| panic!("no line on other runners: {out}"));
    assert!(
        line.starts_with("FAIL") && line.contains("the built-in defaults shares the identities"),
        "{out}"
    );
    // Runner B shares nothing with A: both doctors are content on that line.
    let b = FakeRunner::new(payload(BUSYBOX)).with_config(CONFIG_B);
    let (_, out) = berth_with_records(&b, &["doctor"], &records);
    let line = out
        .lines()
        .find(|l| l.contains("other runner configs"))
        .unwrap_or_else(|| panic!("no line on other runners: {out}"));
    assert!(line.starts_with("ok"), "{out}");
}
