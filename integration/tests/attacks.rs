//! Hostile jobs, driven as gitlab-runner drives them: an attacker and a victim of different
//! projects at once. Each test plays one class of attack on the containment berth promises (a
//! job reaches nothing beyond itself) and asserts that the victim's marker never reaches the
//! attacker and that the attacker's writes never land. The build socket's own attacks are in
//! `build_socket_attacks.rs`.

#![expect(
    clippy::disallowed_methods,
    reason = "the test plays the attacker on the host with runuser and pgrep"
)]

use std::process::Command;

use berth_integration::{FakeRunner, cleaned, ok, payload, require_host};
use serde_json::json;

const BUSYBOX: &str = "localhost/busybox:latest";
const VICTIM_MARKER: &str = "victim-marker-5be1c0";

fn prepared(project: u64, extra_env: &[(&str, &str)]) -> FakeRunner {
    require_host();
    let mut p = payload(BUSYBOX);
    p["job_info"]["project_id"] = json!(project);
    let mut job = FakeRunner::new(p);
    for (k, v) in extra_env {
        job.extra_env.insert((*k).to_owned(), (*v).to_owned());
    }
    ok(&job.stage(&["config"]));
    ok(&job.stage(&["prepare"]));
    job
}

/// Runs `script` on the host as `user`: what a job identity could do once it is out of its
/// container or through a hole in a filter (the containment layer's worst case).
fn as_identity(user: &str, script: &str) -> std::process::Output {
    Command::new("runuser")
        .args([
            "-u",
            user,
            "--",
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
            "sh",
            "-c",
            script,
        ])
        .current_dir("/")
        .output()
        .expect("runuser")
}

fn uid_of(user: &str) -> u32 {
    nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .expect("user")
        .uid
        .as_raw()
}

/// A fully compromised job identity (a container escape, a filter bypass) can read and write
/// only its own job: not another job's checkout, cache, sockets or processes, not the base
/// store, not berth's state, leases or Podman configuration. On a host where all jobs share
/// one runner user (berth before job identities) every one of these succeeded.
#[test]
fn a_compromised_job_identity_reaches_nothing_beyond_its_own_job() {
    let mut victim = prepared(9001, &[]);
    ok(&victim.run(
        "build_script",
        &format!("echo {VICTIM_MARKER} > /builds/secret; echo {VICTIM_MARKER} > /cache/secret"),
    ));
    let attacker = prepared(9002, &[]);
    let (a, v) = (
        attacker.identity().expect("attacker identity"),
        victim.identity().expect("victim identity"),
    );
    assert_ne!(a, v, "two running jobs must never share an identity");
    let victim_work = victim.work_dir();
    let victim_uid = uid_of(&v);
    let service = std::fs::read_to_string(format!(
        "/run/user/{victim_uid}/berth/{}/service.pid",
        victim.key()
    ))
    .expect("victim service pid");
    // (what, something the attempt aims at, which must exist, checked as root, so that a
    // moved path fails this test instead of passing it, the attempt).
    let state = |key: String| format!("/var/lib/berth/jobs/{key}/state.json");
    let attempts = [
        (
            "read the victim's checkout",
            format!("{}/builds/secret", victim_work.display()),
            format!("cat {}/builds/secret", victim_work.display()),
        ),
        (
            "list the victim's job",
            victim_work.display().to_string(),
            format!("ls {}", victim_work.display()),
        ),
        (
            "read the victim's cache",
            format!("/run/berth/jobs/{}/cache/secret", victim.key()),
            format!("cat /run/berth/jobs/{}/cache/secret", victim.key()),
        ),
        (
            "reach the victim's Podman socket",
            format!("/run/user/{victim_uid}/berth/{}/api.sock", victim.key()),
            format!("ls /run/user/{victim_uid}/berth/{}/", victim.key()),
        ),
        (
            "signal the victim's Podman service",
            format!("/proc/{}", service.trim()),
            format!("kill -0 {}", service.trim()),
        ),
        (
            "write the base store",
            "/var/lib/berth/images".to_owned(),
            "touch /var/lib/berth/images/planted".to_owned(),
        ),
        (
            "write the base store through its own view",
            format!("/run/berth/base/{a}"),
            format!("touch /run/berth/base/{a}/planted"),
        ),
        (
            "read the victim's state",
            state(victim.key()),
            format!("cat {}", state(victim.key())),
        ),
        (
            "read the victim's base-store view",
            format!("/run/berth/base/{v}"),
            format!("ls /run/berth/base/{v}/"),
        ),
        (
            "forge the victim's state",
            state(victim.key()),
            format!("echo '{{}}' > {}", state(victim.key())),
        ),
        (
            "forge its own state",
            state(attacker.key()),
            format!("echo '{{}}' > {}", state(attacker.key())),
        ),
        (
            "take a lease",
            format!("/var/lib/berth/leases/{v}"),
            format!("echo {} > /var/lib/berth/leases/{v}", attacker.key()),
        ),
        (
            "plant Podman configuration for later jobs",
            "/etc/berth/podman/containers/containers.conf".to_owned(),
            "echo '[engine]' >> /etc/berth/podman/containers/containers.conf".to_owned(),
        ),
        (
            "plant a cache for another project",
            "/var/lib/berth/cache/project-9001".to_owned(),
            "mkdir /var/lib/berth/cache/project-9001/x".to_owned(),
        ),
        (
            "plant a scanner cache entry",
            "/var/lib/berth/scan-cache".to_owned(),
            "touch /var/lib/berth/scan-cache/planted".to_owned(),
        ),
    ];
    let mut breaches = Vec::new();
    for (what, target, script) in &attempts {
        assert!(
            std::path::Path::new(target).exists(),
            "{what}: {target} does not exist, so the attempt would prove nothing"
        );
        let out = as_identity(&a, script);
        if out.status.success() || String::from_utf8_lossy(&out.stdout).contains(VICTIM_MARKER) {
            breaches.push(format!(
                "{what}: `{script}` succeeded: {}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
    }
    assert!(
        breaches.is_empty(),
        "the attacker identity {a} got out:\n{}",
        breaches.join("\n")
    );
    assert!(!std::path::Path::new("/var/lib/berth/images/planted").exists());
    let r = victim.run("build_script", "cat /builds/secret");
    ok(&r);
    assert!(r.stdout.contains(VICTIM_MARKER), "{}", r.all());
    cleaned(attacker);
    cleaned(victim);
}

/// The job token and masked variables gitlab-runner hands berth never sit in the environment
/// of any process the job identity runs (its Podman service, conmon, slirp4netns, catatonit,
/// the build-socket proxy): any process of that identity could read them there. Before child
/// environments were cleared, every one of them carried `CUSTOM_ENV_CI_JOB_TOKEN`.
#[test]
fn no_process_of_the_job_identity_holds_the_job_token_or_a_masked_value() {
    let token = "glcbt-secret-token-8d2a9f";
    let masked = "masked-value-xyz";
    let job = prepared(
        9003,
        &[
            ("CUSTOM_ENV_CI_JOB_TOKEN", token),
            ("CUSTOM_ENV_MY_SECRET", masked),
        ],
    );
    let identity = job.identity().expect("identity");
    let uid = uid_of(&identity);
    let mut checked = 0;
    let mut holders = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let owned = std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next())
                == Some(uid.to_string().as_str())
        });
        if !owned {
            continue;
        }
        checked += 1;
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        for bytes in [&environ, &cmdline] {
            let text = String::from_utf8_lossy(bytes);
            if text.contains(token) || text.contains(masked) {
                holders.push(format!(
                    "{pid} {}",
                    String::from_utf8_lossy(&cmdline).replace('\0', " ")
                ));
            }
        }
    }
    assert!(
        checked >= 3,
        "expected the job's Podman processes, found {checked}"
    );
    assert!(
        holders.is_empty(),
        "processes of {identity} hold a secret:\n{}",
        holders.join("\n")
    );
    cleaned(job);
}

/// The stage agent's control FIFO and scripts are on a read-only mount: a job cannot replace
/// them with links that would make berth (on the host) write or read where the job chooses.
#[test]
fn a_job_cannot_replace_the_stage_agents_control_channel() {
    let mut job = prepared(9004, &[]);
    let r = job.run(
        "build_script",
        "rm -f /.berth/ctl 2>&1 || true; ln -sf /etc/passwd /.berth/ctl 2>&1 || true; \
         (echo x > /.berth/scripts/planted) 2>&1 || true; ls -l /.berth/ctl",
    );
    ok(&r);
    assert!(r.stdout.contains("Read-only file system"), "{}", r.all());
    assert!(r.stdout.contains("prw"), "the FIFO is gone: {}", r.all());
    // The agent still answers: the channel is intact.
    let again = job.run("build_script", "echo still-here");
    ok(&again);
    assert!(again.stdout.contains("still-here"), "{}", again.all());
    cleaned(job);
}

/// After cleanup nothing of the job identity is left: no process (its rootless pause process
/// included), nothing in its runtime directory, no lease, and the next job that leases it
/// starts clean.
#[test]
fn cleanup_leaves_no_process_or_file_of_the_job_identity() {
    let mut job = prepared(9005, &[]);
    ok(&job.run("build_script", "sleep 300 & echo started"));
    let identity = job.identity().expect("identity");
    let uid = uid_of(&identity);
    ok(&job.stage(&["cleanup"]));
    let runtime = std::fs::read_dir(format!("/run/user/{uid}"))
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default();
    assert!(runtime.is_empty(), "left in /run/user/{uid}: {runtime:?}");
    // Zombies hold nothing but a pid, and only their parent (here init) can take that.
    let survivors: Vec<String> = std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter_map(|e| {
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::trim)
                    .map(str::to_owned)
            };
            let live = !field("State:")?.starts_with('Z');
            let owned = field("Uid:")?.split_whitespace().next() == Some(&uid.to_string());
            (live && owned).then(|| {
                format!(
                    "{} {}",
                    e.file_name().to_string_lossy(),
                    field("Name:").unwrap_or_default()
                )
            })
        })
        .collect();
    assert!(
        survivors.is_empty(),
        "processes of {identity} survived cleanup: {survivors:?}"
    );
    assert!(job.leftovers().is_empty(), "{:#?}", job.leftovers());
}

/// berth's own last words (the error line that ends a stage) never show a masked value, even
/// when the job put one where berth quotes it.
#[test]
fn berths_own_error_lines_mask_the_jobs_secrets() {
    require_host();
    let masked = "masked-value-xyz";
    let mut p = payload(&format!("localhost/{masked}:1"));
    p["job_info"]["project_id"] = json!(9006);
    let mut job = FakeRunner::new(p).with_config("allowed_images = [\"localhost/busybox:*\"]\n");
    ok(&job.stage(&["config"]));
    let r = job.stage(&["prepare"]);
    assert_eq!(
        r.code,
        1,
        "a disallowed image is the job's fault: {}",
        r.all()
    );
    assert!(r.stderr.contains("not allowed"), "{}", r.all());
    assert!(
        !r.all().contains(masked),
        "a masked value in berth's error: {}",
        r.all()
    );
    assert!(r.stderr.contains("[MASKED]"), "{}", r.all());
    cleaned(job);
}

/// A job leaves directories only a non-root user of its image may enter, where berth reads
/// (the agent's `out/`) and in its checkout: cleanup still removes everything, from inside the
/// job identity's user namespace (root deletes nothing a job wrote), and ends the lease.
#[test]
fn cleanup_removes_what_non_root_container_users_locked_away() {
    let mut job = prepared(9007, &[]);
    ok(&job.run(
        "build_script",
        "for d in /.berth/out/locked /builds/locked; do \
           mkdir -p $d/deeper && echo x > $d/deeper/f && chown -R 1000:1000 $d && chmod -R 700 $d; \
         done",
    ));
    let locked = job.work_dir().join("agent/job/out/locked");
    let meta = std::fs::metadata(&locked).expect("the job's locked directory");
    assert_ne!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        uid_of(&job.identity().expect("identity")),
        "the directory must belong to a subordinate id, not the identity itself"
    );
    cleaned(job);
}
