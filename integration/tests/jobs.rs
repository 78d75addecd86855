//! Whole jobs through the real `berth` binary and real rootless Podman, driven as gitlab-runner
//! drives a custom executor. These fail (never skip) when the host is not set up.

use std::time::Duration;

use berth_integration::{
    FakeRunner, Registry, StageResult, base_podman, cleaned, leftovers_of, ok, payload,
    require_host, signal_group, wait_with_timeout,
};
use nix::sys::signal::Signal;
use serde_json::json;

const BUSYBOX: &str = "localhost/busybox:latest";

fn prepared(p: serde_json::Value) -> FakeRunner {
    require_host();
    let mut job = FakeRunner::new(p);
    ok(&job.stage(&["config"]));
    ok(&job.stage(&["prepare"]));
    job
}

/// Like [`prepared`], with a berth config.
fn prepared_with(p: serde_json::Value, config: &str) -> FakeRunner {
    require_host();
    let mut job = FakeRunner::new(p).with_config(config);
    ok(&job.stage(&["config"]));
    ok(&job.stage(&["prepare"]));
    job
}

/// Runs config, then a prepare that must exit with `code` (1: the job's fault, 2: the system's).
fn failed_prepare(job: &mut FakeRunner, code: i32, why: &str) -> StageResult {
    ok(&job.stage(&["config"]));
    let r = job.stage(&["prepare"]);
    assert_eq!(r.code, code, "{why}: {}", r.all());
    r
}

/// Puts the BuildKit client into the job's /builds/tools, owned by the job.
fn install_buildctl(job: &FakeRunner) {
    let tools = job.work_dir().join("builds/tools");
    std::fs::create_dir_all(&tools).expect("tools dir");
    std::fs::copy(BUILDCTL, tools.join("buildctl")).expect("copy buildctl");
    berth_integration::make_readable_by_all(&tools);
    berth_integration::give_to(
        &tools,
        &job.identity().expect("a prepared job holds an identity"),
    );
}

#[test]
fn a_passing_job_runs_every_stage_where_it_belongs_and_leaves_nothing() {
    let mut job = prepared(payload(BUSYBOX));
    let r = job.run("prepare_script", "echo helper-says-hi; command -v git");
    ok(&r);
    assert!(
        r.stdout.contains("helper-says-hi") && r.stdout.contains("/usr/bin/git"),
        "{}",
        r.all()
    );
    ok(&job.run(
        "get_sources",
        "mkdir -p /builds/group/project && cd /builds/group/project && echo source > README",
    ));
    let r = job.run(
        "build_script",
        "cd /builds/group/project; cat README; echo built > out.txt; command -v git || echo no-git-in-job-image",
    );
    ok(&r);
    assert!(
        r.stdout.contains("source") && r.stdout.contains("no-git-in-job-image"),
        "{}",
        r.all()
    );
    let r = job.run("after_script", "cat /builds/group/project/out.txt");
    ok(&r);
    assert!(r.stdout.contains("built"), "{}", r.all());
    ok(&job.run(
        "archive_cache",
        "mkdir -p /cache/k && echo c > /cache/k/file",
    ));
    ok(&job.run(
        "upload_artifacts_on_success",
        "ls /builds/group/project/out.txt",
    ));
    ok(&job.run(
        "cleanup_file_variables",
        "rm -f /builds/group/project/out.txt",
    ));
    assert!(!r.stderr.contains("masked-value-xyz"));
    cleaned(job);
}

#[test]
fn a_failing_script_reports_its_exit_code_and_after_script_still_runs() {
    let mut job = prepared(payload(BUSYBOX));
    let r = job.run("build_script", "echo about-to-fail > /builds/state; exit 3");
    assert_eq!(r.code, 1, "BUILD_FAILURE_EXIT_CODE: {}", r.all());
    assert_eq!(job.build_exit_code().as_deref(), Some("3"));
    job.extra_env
        .insert("CUSTOM_ENV_CI_JOB_STATUS".into(), "failed".into());
    let r = job.run(
        "after_script",
        "cat /builds/state; echo status=$CUSTOM_ENV_CI_JOB_STATUS",
    );
    ok(&r);
    assert!(r.stdout.contains("about-to-fail"), "{}", r.all());
    ok(&job.run("upload_artifacts_on_failure", "true"));
    cleaned(job);
}

/// A job with the tcp-service as `web` runs `script` (under berth config `config`, if any); each
/// answer of the service is counted.
fn service_answers(config: Option<&str>, script: &str, answers: usize) {
    let mut p = payload(BUSYBOX);
    p["services"] = json!([{ "name": "localhost/tcp-service:latest", "alias": "web" }]);
    let mut job = match config {
        Some(config) => prepared_with(p, config),
        None => prepared(p),
    };
    let r = job.run("build_script", script);
    ok(&r);
    assert_eq!(
        r.stdout.matches("service-says-hello").count(),
        answers,
        "{}",
        r.all()
    );
    cleaned(job);
}

#[test]
fn a_service_is_reachable_by_alias_and_by_name() {
    service_answers(
        None,
        "wget -qO- http://web:8080/ && wget -qO- http://localhost__tcp-service:8080/ && wget -qO- http://localhost-tcp-service:8080/",
        3,
    );
}

#[test]
fn a_service_is_reachable_by_alias_on_the_host_network_too() {
    // Podman ignores a pod's extra hosts on the host network: berth writes /etc/hosts itself.
    service_answers(
        Some("network = \"host\"\n"),
        "wget -qO- http://web:8080/ && wget -qO- http://localhost-tcp-service:8080/ && grep -q berth-job /etc/hosts && grep -q localhost /etc/hosts",
        2,
    );
}

#[test]
fn the_image_entrypoint_wraps_the_shell_and_a_broken_one_is_the_jobs_fault() {
    let mut job = prepared(payload("localhost/entrypoint-test:latest"));
    let r = job.run("build_script", "echo from-entrypoint=$FROM_ENTRYPOINT");
    ok(&r);
    assert!(r.stdout.contains("from-entrypoint=yes"), "{}", r.all());
    cleaned(job);

    let mut p = payload("localhost/entrypoint-test:latest");
    p["image"]["entrypoint"] = json!([""]);
    let mut job = prepared(p);
    let r = job.run(
        "build_script",
        "echo from-entrypoint=${FROM_ENTRYPOINT:-unset}",
    );
    ok(&r);
    assert!(r.stdout.contains("from-entrypoint=unset"), "{}", r.all());
    cleaned(job);

    require_host();
    let mut job = FakeRunner::new(payload("localhost/bad-entrypoint:latest"));
    let r = failed_prepare(&mut job, 1, "a broken entrypoint is a build failure");
    assert!(r.stderr.contains("entrypoint"), "{}", r.all());
    cleaned(job);
}

#[test]
fn cancel_during_build_script_stops_the_script_within_the_grace() {
    let mut job = prepared(payload(BUSYBOX));
    let child = job.spawn_run(
        "build_script",
        "echo started; trap '' TERM; sleep 3011 & echo sleeper=$!; wait",
    );
    // Cancel once the script really runs (its sleep exists), not after a guessed delay.
    berth_integration::await_host_sleep("3011", "the script");
    signal_group(&child, Signal::SIGTERM);
    let r = wait_with_timeout(child, Duration::from_secs(30));
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.elapsed < Duration::from_secs(15), "took {:?}", r.elapsed);
    assert!(r.stdout.contains("started"), "{}", r.all());
    job.extra_env
        .insert("CUSTOM_ENV_CI_JOB_STATUS".into(), "canceled".into());
    let r = job.run(
        "after_script",
        "ps | grep -c '[s]leep 3011' || true; echo after-ran",
    );
    ok(&r);
    assert!(r.stdout.contains("after-ran"), "{}", r.all());
    assert!(
        r.stdout.lines().next().is_some_and(|l| l.trim() == "0"),
        "the script's sleep survived the cancel: {}",
        r.all()
    );
    cleaned(job);
}

/// gitlab-runner (or the machine) SIGKILLs `berth run` mid-script: the script goes on in the
/// container, and the agent only reads the next request once it ends. The next stage stops it
/// first instead of waiting for it.
#[test]
fn a_killed_run_does_not_hold_up_the_next_stage() {
    let mut job = prepared(payload(BUSYBOX));
    let mut child = job.spawn_run("build_script", "sleep 4321");
    berth_integration::await_host_sleep("4321", "the script");
    child.kill().expect("SIGKILL berth run");
    let _ = child.wait();
    let started = std::time::Instant::now();
    let r = job.run("after_script", "echo next-stage-ran");
    ok(&r);
    assert!(r.stdout.contains("next-stage-ran"), "{}", r.all());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the next stage waited for the orphaned script: {:?}",
        started.elapsed()
    );
    assert!(
        berth_integration::host_sleeps("4321").is_empty(),
        "the orphaned script still runs"
    );
    cleaned(job);
}

#[test]
fn cleanup_after_failed_or_repeated_prepare_is_complete_and_idempotent() {
    require_host();
    let mut p = payload("localhost/not-there:1");
    p["image"]["pull_policy"] = json!(["never"]);
    let mut job = FakeRunner::new(p).with_config(
        "pull_policy = [\"never\"]\nallowed_pull_policies = [\"never\", \"if-not-present\"]\n",
    );
    let r = failed_prepare(&mut job, 2, "a missing image is a system failure");
    assert!(
        r.stderr.contains("localhost/not-there:1") && r.stderr.contains("never"),
        "{}",
        r.all()
    );
    ok(&job.stage(&["cleanup"]));
    ok(&job.stage(&["cleanup"]));
    assert!(job.leftovers().is_empty(), "{:#?}", job.leftovers());

    let mut job = FakeRunner::new(payload(BUSYBOX));
    ok(&job.stage(&["config"]));
    for _ in 0..3 {
        ok(&job.stage(&["prepare"]));
    }
    ok(&job.run("build_script", "echo third-prepare-works"));
    cleaned(job);
}

#[test]
fn kill_9_mid_job_then_reap_removes_it_but_never_a_running_job() {
    let mut running = prepared(payload(BUSYBOX));
    require_host();
    // The doomed job has every builder running (build socket proxy, rootless buildkitd): they
    // must die with it too.
    let mut doomed =
        FakeRunner::new(payload(BUSYBOX)).with_config(&format!("buildkitd = \"{BUILDKITD}\"\n"));
    ok(&doomed.stage(&["config"]));
    // The doomed job's "runner" is a shell that is killed with berth in the middle of the job.
    let script = doomed.script("build_script", "sleep 300");
    let script = script.to_string_lossy();
    let runner = doomed.spawn_via_wrapper(&[&["prepare"], &["run", &script, "build_script"]]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !doomed
        .work_dir()
        .join("agent/job/out")
        .read_dir()
        .is_ok_and(|mut d| d.next().is_some())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the doomed job never reached build_script"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = doomed.leftovers();
    for builder in ["buildkitd", "build-proxy"] {
        assert!(
            before.iter().any(|l| l.contains(builder)),
            "{builder} runs before the kill: {before:#?}"
        );
    }
    signal_group(&runner, Signal::SIGKILL);
    let _ = wait_with_timeout(runner, Duration::from_secs(10));

    // reap's exit code also reports trouble with other hosts' leftovers; judge only this job.
    let r = running.stage(&["reap"]);
    let left = leftovers_of(&doomed.key());
    assert!(left.is_empty(), "reap left: {left:#?}\n{}", r.all());
    let r = running.run("build_script", "echo still-alive");
    ok(&r);
    assert!(
        r.stdout.contains("still-alive"),
        "reap touched a running job: {}",
        r.all()
    );
    cleaned(running);
}

#[test]
fn reap_prunes_caches_unused_too_long_and_keeps_the_rest() {
    require_host();
    let unused = |path: &std::path::Path| {
        let old = std::time::SystemTime::now() - Duration::from_secs(3 * 86_400);
        std::fs::File::open(path)
            .and_then(|f| f.set_modified(old))
            .expect("age");
    };
    let tag = std::process::id();
    let state = std::path::Path::new("/var/lib/berth");
    let old_cache = state.join(format!("cache/project-prune-old-{tag}"));
    let new_cache = state.join(format!("cache/project-prune-new-{tag}"));
    let old_bk = state.join(format!("buildkit-cache/project-prune-old-{tag}"));
    for dir in [&old_cache, &new_cache, &old_bk] {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    // BuildKit's files belong to subordinate ids: only the user namespace can remove them.
    let snapshot = old_bk.join("root/snapshots/1");
    std::fs::create_dir_all(&snapshot).expect("mkdir");
    std::fs::write(snapshot.join("layer-file"), "x").expect("write");
    for path in [
        &old_bk,
        &old_bk.join("root"),
        &old_bk.join("root/snapshots"),
        &snapshot,
    ] {
        let sub = (
            nix::unistd::Uid::from_raw(100_005),
            nix::unistd::Gid::from_raw(100_005),
        );
        nix::unistd::chown(path, Some(sub.0), Some(sub.1)).expect("chown to a subordinate id");
    }
    berth_integration::give_to_runner_user(&old_cache);
    berth_integration::give_to_runner_user(&new_cache);
    nix::unistd::chown(&old_bk, Some(nix::unistd::Uid::from_raw(999)), None).expect("chown");
    for dir in [&old_cache, &old_bk] {
        unused(dir);
    }
    let mut admin = FakeRunner::new(payload(BUSYBOX)).with_config("prune_after_days = 2\n");
    let r = admin.stage(&["reap"]);
    let (old_cache_left, old_bk_left, new_cache_left) =
        (old_cache.exists(), old_bk.exists(), new_cache.exists());
    let _ = std::fs::remove_dir_all(&new_cache);
    assert!(
        !old_cache_left && !old_bk_left,
        "unused caches stay: {}",
        r.all()
    );
    assert!(
        new_cache_left,
        "a recently used cache was pruned: {}",
        r.all()
    );
    assert!(r.stderr.contains("pruned"), "{}", r.all());
}

#[test]
fn reap_collects_base_images_unused_too_long_but_never_while_a_job_exists() {
    require_host();
    // A state directory of its own: collection waits for a moment without jobs, which the
    // shared one never has while these tests run in parallel.
    let tmp = tempfile::Builder::new()
        .prefix("berth-gc")
        .tempdir_in("/var/tmp")
        .expect("tempdir");
    let state = tmp.path().join("state");
    let run = tmp.path().join("run");
    for dir in [&state, &state.join("images"), &state.join("jobs"), &run] {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    berth_integration::give_to_runner_user(tmp.path());
    for (dir, mode) in [
        (tmp.path(), 0o755),
        (&run, 0o700),
        (&state.join("jobs"), 0o700),
    ] {
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .expect("chmod");
    }
    let podman = |args: &[&str]| {
        let out =
            berth_integration::store_podman(&state.join("images"), &run.join("base-run"), args);
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let busybox = "/var/cache/berth-test/busybox.tar";
    // A label apiece, so the two imports are two images.
    let old = podman(&[
        "import",
        "-q",
        "--change",
        "LABEL gc=old",
        busybox,
        "localhost/gc-old:1",
    ]);
    let recent = podman(&[
        "import",
        "-q",
        "--change",
        "LABEL gc=recent",
        busybox,
        "localhost/gc-recent:1",
    ]);
    assert_ne!(old, recent);
    let config = format!(
        "state_dir = \"{}\"\nruntime_dir = \"{}\"\nprune_after_days = 2\n",
        state.display(),
        run.display()
    );
    let mut admin = FakeRunner::new(payload(BUSYBOX)).with_config(&config);
    let stamp = |id: &str| {
        state
            .join("image-use")
            .join(id.trim_start_matches("sha256:"))
    };
    let reap = |admin: &mut FakeRunner| {
        let r = admin.stage(&["reap"]);
        assert_eq!(r.code, 0, "{}", r.all());
        r
    };
    // First sight starts each image's clock: nothing goes.
    reap(&mut admin);
    assert!(stamp(&old).exists() && stamp(&recent).exists());
    let three_days_ago = std::time::SystemTime::now() - Duration::from_secs(3 * 86_400);
    std::fs::File::open(stamp(&old))
        .and_then(|f| f.set_modified(three_days_ago))
        .expect("age the stamp");
    // A job exists: nothing goes, whatever its age.
    std::fs::create_dir_all(state.join("jobs/j1-running")).expect("job dir");
    let r = reap(&mut admin);
    assert!(r.stderr.contains("skipped"), "{}", r.all());
    assert!(podman(&["image", "exists", "localhost/gc-old:1"]).is_empty());
    std::fs::remove_dir(state.join("jobs/j1-running")).expect("rm job dir");
    // No job: the image unused for three days goes, the other stays.
    let r = reap(&mut admin);
    assert!(r.stderr.contains("removed base image"), "{}", r.all());
    let images = podman(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        !images.contains("gc-old") && images.contains("gc-recent"),
        "{images}\n{}",
        r.all()
    );
    podman(&["rmi", "-a", "-f"]);
}

#[test]
fn concurrent_jobs_cannot_see_each_others_files_or_processes() {
    let mut a = prepared(payload(BUSYBOX));
    let mut b = prepared(payload(BUSYBOX));
    ok(&a.run("build_script", "echo secret-of-a > /builds/a-file"));
    let sleeper = a.spawn_run("build_script", "exec sleep 77777");
    // b looks only once a's process exists: otherwise not seeing it would prove nothing.
    berth_integration::await_host_sleep("77777", "a's process");
    let r = b.run(
        "build_script",
        "ls -la /builds /cache; cat /proc/*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -c [7]7777 || true; ls / ; { find / -name a-file 2>/dev/null || true; } | wc -l",
    );
    ok(&r);
    assert!(!r.stdout.contains("a-file"), "{}", r.all());
    let counts: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.trim().chars().all(|c| c.is_ascii_digit()) && !l.trim().is_empty())
        .collect();
    assert!(
        counts.iter().all(|c| c.trim() == "0"),
        "b saw a's process or file: {}",
        r.all()
    );
    signal_group(&sleeper, Signal::SIGTERM);
    let _ = wait_with_timeout(sleeper, Duration::from_secs(20));
    cleaned(a);
    cleaned(b);
}

#[test]
fn bad_config_and_bad_image_names_get_clear_errors() {
    require_host();
    let mut job = FakeRunner::new(payload(BUSYBOX)).with_config("usr = \"x\"\nmemory = \"lots\"\n");
    let r = job.stage(&["prepare"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains("usr") && r.stderr.contains("fix"),
        "{}",
        r.all()
    );

    let mut job = FakeRunner::new(payload("Not/A Valid::Image"));
    let r = failed_prepare(&mut job, 1, "a bad image name is the job's fault");
    assert!(r.stderr.contains("not a valid image name"), "{}", r.all());
    ok(&job.stage(&["cleanup"]));

    let mut job = FakeRunner::new(payload(BUSYBOX))
        .with_config("allowed_images = [\"localhost/helper-*:*\"]\n");
    let r = failed_prepare(&mut job, 1, "a disallowed image is the job's fault");
    assert!(
        r.stderr.contains("not allowed") && r.stderr.contains("allowed_images"),
        "{}",
        r.all()
    );
    cleaned(job);
}

/// gitlab-runner calling berth with arguments it cannot parse is a registration mistake: a
/// system failure with the runner's code (clap's own exit code, 2, would be a coincidence).
#[test]
fn bad_arguments_are_a_system_failure_with_the_runners_code() {
    let mut job = FakeRunner::new(payload(BUSYBOX));
    job.extra_env
        .insert("SYSTEM_FAILURE_EXIT_CODE".into(), "7".into());
    let r = job.stage(&["frobnicate"]);
    assert_eq!(r.code, 7, "{}", r.all());
    assert!(r.stderr.contains("frobnicate"), "{}", r.all());
    let help = job.stage(&["--help"]);
    assert_eq!(help.code, 0, "{}", help.all());
}

#[test]
fn config_prints_exactly_one_json_document() {
    require_host();
    let mut job = FakeRunner::new(payload(BUSYBOX));
    let r = job.stage(&["config"]);
    ok(&r);
    let v: serde_json::Value =
        serde_json::from_str(&r.stdout).expect("one JSON document and nothing else");
    assert_eq!(v["builds_dir"], "/builds");
    assert_eq!(v["cache_dir"], "/cache");
    assert_eq!(v["driver"]["name"], "berth");
    assert_eq!(v["job_env"]["BERTH_JOB_KEY"], job.key());
}

#[test]
fn limits_from_config_are_applied_where_the_host_can_enforce_them() {
    require_host();
    let mut job = prepared_with(
        payload(BUSYBOX),
        "cpus = 1.5\nmemory = \"256m\"\npids_limit = 321\n",
    );
    let r = job.run(
        "build_script",
        "cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || echo no-cgroup-files",
    );
    ok(&r);
    let v2 = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    if v2 {
        assert!(
            r.stdout.contains("321") && r.stdout.contains(&(256u64 << 20).to_string()),
            "{}",
            r.all()
        );
    } else {
        // cgroup v1: rootless Podman cannot set limits; berth puts the whole job in its own cgroup.
        let pids_max =
            std::fs::read_to_string(format!("/sys/fs/cgroup/pids/berth/{}/pids.max", job.key()))
                .expect("the job's pids cgroup exists");
        assert_eq!(pids_max.trim(), "321");
        let mem = std::fs::read_to_string(format!(
            "/sys/fs/cgroup/memory/berth/{}/memory.limit_in_bytes",
            job.key()
        ))
        .expect("the job's memory cgroup exists");
        assert_eq!(mem.trim(), (256u64 << 20).to_string());
        // Forks beyond the limit fail; the kernel counts them in pids.events.
        let _ = job.run(
            "build_script",
            "for i in $(seq 400); do sleep 30 & done 2>/dev/null; true",
        );
        // The runtime puts each container in a cgroup of its own below the job's: the kernel
        // counts a refused fork where it was tried.
        let job_cgroup = format!("/sys/fs/cgroup/pids/berth/{}", job.key());
        let mut events = vec![std::path::PathBuf::from(&job_cgroup).join("pids.events")];
        for sub in std::fs::read_dir(&job_cgroup)
            .expect("job cgroup")
            .flatten()
        {
            if sub.path().is_dir() {
                events.push(sub.path().join("pids.events"));
            }
        }
        let refused: u64 = events
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .filter_map(|t| {
                t.split_whitespace()
                    .nth(1)
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .sum();
        assert!(refused > 0, "the pids limit did not bite: {events:?}");
        let doctor = job.stage(&["doctor"]);
        assert!(
            doctor.stdout.contains("resource limits"),
            "{}",
            doctor.all()
        );
    }
    cleaned(job);
}

#[test]
fn pull_policy_always_pulls_with_the_jobs_credentials_and_never_shows_them() {
    require_host();
    let registry = Registry::start("ci-user", "s3cret-registry-pass");
    let image = format!("{}/berth/busybox:pulled", registry.address);
    let pushed = base_podman(&[
        "push",
        "--quiet",
        "--tls-verify=false",
        "--creds",
        "ci-user:s3cret-registry-pass",
        BUSYBOX,
        &image,
    ]);
    assert!(
        pushed.status.success(),
        "push: {}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let config = format!(
        "pull_policy = [\"always\"]\nallowed_pull_policies = [\"always\", \"if-not-present\"]\ninsecure_registries = [\"{}\"]\n",
        registry.address
    );
    let with_creds = |password: &str| {
        let mut p = payload(&image);
        p["credentials"] = json!([{
            "type": "registry", "url": registry.address, "username": "ci-user", "password": password
        }]);
        p["variables"] =
            json!([{ "key": "CI_REGISTRY_PASSWORD", "value": password, "masked": true }]);
        p
    };

    let mut job = FakeRunner::new(with_creds("s3cret-registry-pass")).with_config(&config);
    ok(&job.stage(&["config"]));
    let r = job.stage(&["prepare"]);
    ok(&r);
    assert!(!r.stderr.contains("s3cret-registry-pass"), "{}", r.all());
    assert!(
        !job.work_dir().join("auth.json").exists(),
        "credentials outlived the pull"
    );
    let r = job.run("build_script", "echo pulled-image-runs");
    ok(&r);
    assert!(r.stdout.contains("pulled-image-runs"), "{}", r.all());
    cleaned(job);

    let mut job = FakeRunner::new(with_creds("wrong-password-here")).with_config(&config);
    let r = failed_prepare(&mut job, 2, "a failed pull is a system failure");
    assert!(
        r.stderr.contains("pull failed") && !r.stderr.contains("wrong-password-here"),
        "{}",
        r.all()
    );
    cleaned(job);
    // The pulled image stays: removing anything from the base store while other jobs run is
    // exactly what berth never does.
}

#[test]
fn a_job_builds_images_with_podman_and_buildah_inside_without_privilege() {
    let mut job = prepared(payload("localhost/build-tools:latest"));
    let r = job.run(
        "build_script",
        r#"mkdir -p /tmp/ctx && cd /tmp/ctx
printf 'FROM localhost/busybox:latest\nRUN echo built-inside > /hello\n' > Containerfile
podman build -q -t localhost/nested:podman .
buildah bud -q -t localhost/nested:buildah .
podman images --format '{{.Repository}}:{{.Tag}} ro={{.ReadOnly}}'
podman image exists localhost/nested:buildah && echo buildah-image-ok
echo inner-store-kb=$(du -sk /var/lib/containers/storage | cut -f1)
if mount -t tmpfs none /mnt 2>/dev/null; then echo mount-allowed; else echo mount-refused; fi"#,
    );
    ok(&r);
    for needle in [
        "localhost/nested:podman ro=false",
        "buildah-image-ok",
        "localhost/busybox:latest ro=true",
        "mount-refused",
    ] {
        assert!(r.stdout.contains(needle), "{needle}: {}", r.all());
    }
    let kb: u64 = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("inner-store-kb="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(u64::MAX);
    assert!(
        kb < 20_000,
        "the base image was copied into the job ({kb} KiB)"
    );
    cleaned(job);
}

fn berth_sandbox_alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid.cast_signed()), None).is_ok()
}

/// `podman run` and an OCI-isolation `RUN` step inside the job, then what must stay refused.
const NESTED_RUN_SCRIPT: &str = r#"mkdir -p /tmp/ctx && cd /tmp/ctx
printf 'FROM localhost/busybox:latest\nRUN echo oci-step-on-$(hostname) > /step\n' > Containerfile
if podman run --rm --hostname inner localhost/busybox:latest sh -c 'echo nested-run-on-$(hostname); cat /proc/self/uid_map' 2>/tmp/run.err; then
  podman build -q --isolation oci -t localhost/nested:oci . && podman run --rm localhost/nested:oci cat /step
else
  echo "nested-run-refused: $(tail -1 /tmp/run.err)"
fi
if hostname job-renamed 2>/dev/null; then echo job-hostname-changed; else echo job-hostname-refused; fi
if mount -t tmpfs none /mnt 2>/dev/null; then echo mount-allowed; else echo mount-refused; fi
echo firmware-entries=$(ls /sys/firmware 2>/dev/null | wc -l)"#;

#[test]
fn podman_run_and_oci_builds_inside_a_job_only_where_nested_run_allows() {
    let mut plain = prepared(payload("localhost/build-tools:latest"));
    let r = plain.run("build_script", NESTED_RUN_SCRIPT);
    ok(&r);
    assert!(
        r.stdout.contains("nested-run-refused:") && !r.stdout.contains("nested-run-on-"),
        "without nested_run the default profile keeps inner runtimes out: {}",
        r.all()
    );
    cleaned(plain);

    let mut job = prepared_with(
        payload("localhost/build-tools:latest"),
        "nested_run = true\n",
    );
    let r = job.run("build_script", NESTED_RUN_SCRIPT);
    ok(&r);
    for needle in [
        "nested-run-on-inner",
        "oci-step-on-",
        "job-hostname-refused",
        "mount-refused",
        "firmware-entries=0",
    ] {
        assert!(r.stdout.contains(needle), "{needle}: {}", r.all());
    }
    // The inner container has a user namespace of its own: its root is not the job's root.
    let inner_map = r
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("nested-run-on-"))
        .nth(1)
        .unwrap_or_default();
    let fields: Vec<&str> = inner_map.split_whitespace().collect();
    assert!(
        fields.len() == 3 && fields[0] == "0" && fields[1] != "0",
        "inner uid_map {inner_map:?}: {}",
        r.all()
    );
    cleaned(job);
}

#[test]
fn the_build_socket_builds_tags_and_pushes_but_refuses_every_escape() {
    require_host();
    let registry = Registry::start("ci-user", "push-pass-123");
    let reg = registry.address.clone();
    // The admin's insecure registries reach the job's Podman service: the docker CLI has no
    // --tls-verify of its own. In "run" mode containers are offered, so every escape below meets
    // the container checks, not just the missing endpoint.
    let mut job = prepared_with(
        payload("localhost/build-tools:latest"),
        &format!("insecure_registries = [\"{reg}\"]\nbuild_socket = \"run\"\n"),
    );
    let helper = format!("berth-{}-helper", job.key());
    let script = format!(
        r#"set +e +o pipefail
mkdir -p /tmp/ctx && cd /tmp/ctx
printf 'FROM localhost/busybox:latest\nRUN echo via-socket > /hello\n' > Containerfile
DOCKER_BUILDKIT=0 docker build -q -f Containerfile -t localhost/sock:docker . >/dev/null && echo docker-build-ok
podman --remote build -q -t localhost/sock:podman . >/dev/null && echo podman-build-ok
docker tag localhost/sock:docker {reg}/berth/sock:1 && echo tag-ok
docker image inspect {reg}/berth/sock:1 >/dev/null && echo inspect-ok
podman --remote push -q --tls-verify=false --creds ci-user:push-pass-123 {reg}/berth/sock:1 && echo push-ok
echo push-pass-123 | docker login -u ci-user --password-stdin {reg} && echo docker-login-ok
docker tag localhost/sock:podman {reg}/berth/sock:2 && docker push {reg}/berth/sock:2 && echo docker-push-ok
docker rmi {reg}/berth/sock:2 >/dev/null && docker pull -q {reg}/berth/sock:2 && echo docker-pull-ok
docker images --format '{{{{.Repository}}}}:{{{{.Tag}}}}' | grep -qx '{reg}/berth/sock:2' && echo images-ok
B=localhost/busybox:latest
docker run --rm --privileged $B true 2>&1 | grep -q 'socket refused' && echo refused-privileged
docker run --rm -v /etc:/h $B true 2>&1 | grep -q 'socket refused' && echo refused-bind
curl -s --unix-socket /run/berth/docker.sock -X POST -H content-type:application/json http://d/v1.41/containers/create -d '{{"Image":"localhost/busybox:latest","HostConfig":{{"Devices":[{{"PathOnHost":"/dev/kvm","PathInContainer":"/dev/kvm","CgroupPermissions":"rwm"}}]}}}}' | grep -q 'socket refused' && echo refused-device
docker run --rm --cap-add SYS_ADMIN $B true 2>&1 | grep -q 'socket refused' && echo refused-cap
docker run --rm --network host $B true 2>&1 | grep -q 'socket refused' && echo refused-hostnet
docker run --rm --pid host $B true 2>&1 | grep -q 'socket refused' && echo refused-hostpid
docker run --rm --ipc host $B true 2>&1 | grep -q 'socket refused' && echo refused-hostipc
docker run --rm --userns host $B true 2>&1 | grep -q 'socket refused' && echo refused-hostuserns
docker run --rm --security-opt seccomp=unconfined $B true 2>&1 | grep -q 'socket refused' && echo refused-seccomp
echo '{{"defaultAction":"SCMP_ACT_ALLOW"}}' > /tmp/allow-all.json
docker run --rm --security-opt seccomp=/tmp/allow-all.json $B true 2>&1 | grep -q 'socket refused' && echo refused-custom-seccomp
podman --remote run --rm --security-opt unmask=ALL $B true 2>&1 | grep -q 'socket refused' && echo refused-libpod-unmask
docker rm -f {helper} 2>&1 | grep -q 'socket refused' && echo refused-foreign
docker exec {helper} true 2>&1 | grep -q 'socket refused' && echo refused-exec
podman --remote run --rm --privileged $B true 2>&1 | grep -q 'socket refused' && echo refused-libpod-privileged
podman --remote run --rm -v /:/host $B true 2>&1 | grep -q 'socket refused' && echo refused-libpod-bind
curl -s --unix-socket /run/berth/docker.sock -X POST -H content-type:application/json http://d/v1.41/volumes/create -d '{{}}' | grep -q 'socket refused' && echo refused-volume
true"#
    );
    let r = job.run("build_script", &script);
    ok(&r);
    for marker in [
        "docker-build-ok",
        "podman-build-ok",
        "tag-ok",
        "inspect-ok",
        "push-ok",
        "docker-login-ok",
        "docker-push-ok",
        "docker-pull-ok",
        "images-ok",
        "refused-privileged",
        "refused-bind",
        "refused-device",
        "refused-cap",
        "refused-hostnet",
        "refused-hostpid",
        "refused-hostipc",
        "refused-hostuserns",
        "refused-seccomp",
        "refused-custom-seccomp",
        "refused-libpod-unmask",
        "refused-foreign",
        "refused-exec",
        "refused-libpod-privileged",
        "refused-libpod-bind",
        "refused-volume",
    ] {
        assert!(r.stdout.contains(marker), "{marker} missing: {}", r.all());
    }
    assert!(
        r.stdout.contains("berth build socket refused: POST"),
        "refusals reach the job log: {}",
        r.all()
    );
    let r = job.run("after_script", "echo helper-still-there");
    ok(&r);
    cleaned(job);
}

const VULN_RECORD: &str = r#"{"schema_version":"1.6.0","id":"CVE-2099-4242","modified":"2026-11-20T10:00:00Z",
 "database_specific":{"severity":"CRITICAL"},
 "affected":[{"package":{"ecosystem":"Debian:12","name":"libberthdemo"},
 "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.0-2"}]}]}]}"#;

const VULN_BUILD: &str = r#"mkdir -p /builds/group/project /tmp/vctx && cd /tmp/vctx
printf 'Package: libberthdemo\nStatus: install ok installed\nVersion: 1.0-1\nArchitecture: amd64\n\n' > status
printf 'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n' > os-release
printf 'FROM localhost/busybox:latest\nCOPY status /var/lib/dpkg/status\nCOPY os-release /etc/os-release\n' > Containerfile
podman build -q -t localhost/vulnerable:1 . >/dev/null && echo built"#;

#[test]
fn images_a_job_builds_are_scanned_and_the_policy_decides() {
    require_host();
    let db = berth_integration::advisory_db(&[("CVE-2099-4242.json", VULN_RECORD)]);
    let config = format!(
        "scan_db = \"{}\"\nscan_severity = \"HIGH,CRITICAL\"\n",
        db.path().display()
    );

    let mut job = prepared_with(payload("localhost/build-tools:latest"), &config);
    let r = job.run("build_script", VULN_BUILD);
    assert_eq!(r.code, 1, "blocked by the policy: {}", r.all());
    assert!(
        r.stdout.contains("built") && r.stdout.contains("CVE-2099-4242"),
        "{}",
        r.all()
    );
    assert!(
        r.stderr.contains("security policy") && r.stderr.contains(".trivyignore"),
        "{}",
        r.all()
    );
    let report = job
        .work_dir()
        .join("builds/group/project/gl-container-scanning-report.json");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("GitLab report written"))
            .expect("json");
    assert!(report.to_string().contains("CVE-2099-4242"), "{report}");
    let sboms = std::fs::read_dir(job.work_dir().join("builds/group/project"))
        .expect("project dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("gl-sbom-"))
        .count();
    assert_eq!(sboms, 1);
    cleaned(job);

    let mut job = prepared_with(payload("localhost/build-tools:latest"), &config);
    let r = job.run(
        "build_script",
        &format!("mkdir -p /builds/group/project && echo CVE-2099-4242 > /builds/group/project/.trivyignore\n{VULN_BUILD}"),
    );
    ok(&r);
    assert!(r.stdout.contains("built"), "{}", r.all());
    cleaned(job);

    // A directory only a non-root user of the image may read (Debian's apt lists/partial,
    // a database's data): the scan still reads the whole image, in the job's user namespace.
    let mut job = prepared_with(payload("localhost/build-tools:latest"), &config);
    let private = VULN_BUILD.replace(
        "COPY os-release /etc/os-release\\n",
        "COPY os-release /etc/os-release\\nRUN mkdir /private && echo x > /private/f && chown -R 100:100 /private && chmod 700 /private\\n",
    );
    assert_ne!(private, VULN_BUILD);
    let r = job.run("build_script", &private);
    assert_eq!(
        r.code,
        1,
        "blocked by the policy, not by an unreadable image: {}",
        r.all()
    );
    assert!(r.stdout.contains("CVE-2099-4242"), "{}", r.all());
    assert!(!r.stderr.contains("could not read"), "{}", r.all());
    cleaned(job);

    // Advisories older than the admin allows, and the admin said fail: a system failure that
    // names the fix, not a pass on stale data (the record is from 2026-11-20).
    let stale = format!("{config}scan_db_max_age = 1\nscan_db_stale = \"fail\"\n");
    let mut job = prepared_with(payload("localhost/build-tools:latest"), &stale);
    let r = job.run("build_script", VULN_BUILD);
    assert_eq!(
        r.code,
        2,
        "stale advisories fail as a system failure: {}",
        r.all()
    );
    assert!(
        r.stderr.contains("stale") && r.stderr.contains("berth db update"),
        "{}",
        r.all()
    );
    cleaned(job);
}

const BUILDKITD: &str = "/var/cache/berth-peers/buildkit/buildkitd";
const BUILDCTL: &str = "/var/cache/berth-peers/buildkit/buildctl";

#[test]
fn rootless_buildkit_per_job_builds_and_pushes() {
    require_host();
    for peer in [BUILDKITD, BUILDCTL] {
        assert!(
            std::path::Path::new(peer).is_file(),
            "{peer} is missing: run integration/peers/build-buildkit.sh"
        );
    }
    let registry = Registry::start("bk-user", "bk-pass-123");
    let reg = registry.address.clone();
    let config = format!("buildkitd = \"{BUILDKITD}\"\nbuildkit_network = \"host\"\n");
    let mut job = prepared_with(payload("localhost/build-tools:latest"), &config);
    install_buildctl(&job);
    let auth = format!(
        "{{\"auths\":{{\"{reg}\":{{\"auth\":\"{}\"}}}}}}",
        "YmstdXNlcjpiay1wYXNzLTEyMw=="
    );
    let script = format!(
        r#"echo BUILDKIT_HOST=$BUILDKIT_HOST
mkdir -p /tmp/bk ~/.docker && cd /tmp/bk && echo from-buildkit > hello.txt
printf 'FROM scratch\nCOPY hello.txt /hello.txt\n' > Containerfile
echo '{auth}' > ~/.docker/config.json
B=/builds/tools/buildctl
$B debug workers >/dev/null && echo workers-ok
$B build --frontend dockerfile.v0 --local context=. --local dockerfile=. --opt filename=Containerfile --output type=oci,dest=/builds/out.tar && echo oci-ok
$B build --frontend dockerfile.v0 --local context=. --local dockerfile=. --opt filename=Containerfile --output type=image,name={reg}/berth/bk:1,push=true,registry.insecure=true && echo push-ok"#
    );
    let r = job.run("build_script", &script);
    ok(&r);
    for marker in [
        "BUILDKIT_HOST=unix:///run/buildkit/buildkitd.sock",
        "workers-ok",
        "oci-ok",
        "push-ok",
    ] {
        assert!(r.stdout.contains(marker), "{marker}: {}", r.all());
    }
    assert!(job.work_dir().join("builds/out.tar").is_file());
    let record = std::fs::read_to_string(job.job_dir().join("built-images.json"))
        .expect("built images are recorded");
    assert!(
        record.contains("\"builder\": \"buildkit\"")
            && record.contains(&format!("{reg}/berth/bk:1")),
        "BuildKit's images are recorded for the scanner: {record}"
    );
    cleaned(job);
}

#[test]
fn the_build_socket_outlives_the_api_idle_timeout() {
    let mut job = prepared_with(
        payload("localhost/build-tools:latest"),
        "api_idle_timeout = 2\n",
    );
    let r = job.run(
        "build_script",
        "sleep 5; docker version --format 'server={{.Server.Version}}'",
    );
    ok(&r);
    assert!(r.stdout.contains("server="), "{}", r.all());
    cleaned(job);
}

#[test]
fn a_cancelled_job_stops_the_builds_of_every_builder() {
    require_host();
    let mut job = prepared_with(
        payload("localhost/build-tools:latest"),
        &format!("buildkitd = \"{BUILDKITD}\"\n"),
    );
    install_buildctl(&job);
    let ctx = job.work_dir().join("builds/ctx");
    std::fs::create_dir_all(&ctx).expect("ctx");
    std::fs::copy("/bin/busybox", ctx.join("busybox")).expect("busybox for BuildKit");
    let files = [
        (
            "nested.Containerfile",
            "FROM localhost/busybox:latest\nRUN sleep 4243\n",
        ),
        (
            "socket.Containerfile",
            "FROM localhost/busybox:latest\nRUN sleep 4244\n",
        ),
        (
            "bk.Containerfile",
            "FROM scratch\nCOPY busybox /busybox\nRUN [\"/busybox\", \"sleep\", \"4245\"]\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(ctx.join(name), text).expect("containerfile");
    }
    berth_integration::make_readable_by_all(&ctx);
    berth_integration::give_to(
        &ctx,
        &job.identity().expect("a prepared job holds an identity"),
    );
    let child = job.spawn_run(
        "build_script",
        r#"cd /builds/ctx
podman build --no-cache -f nested.Containerfile . &
DOCKER_BUILDKIT=0 docker build --no-cache -f socket.Containerfile . &
/builds/tools/buildctl build --frontend dockerfile.v0 --local context=. --local dockerfile=. --opt filename=bk.Containerfile &
wait"#,
    );
    let builds = ["4243", "4244", "4245"];
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while builds
        .iter()
        .any(|b| berth_integration::host_sleeps(b).is_empty())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "not every builder reached its RUN step: {:?}",
            builds.map(|b| (b, berth_integration::host_sleeps(b)))
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The pod's network (slirp4netns, in the session of the job's Podman service, like the
    // builds) must outlive the cancel: after_script still runs.
    let identity = job.identity().expect("a prepared job holds an identity");
    let uid = nix::unistd::User::from_name(&identity)
        .ok()
        .flatten()
        .map_or(0, |u| u.uid.as_raw());
    let service: u32 =
        std::fs::read_to_string(format!("/run/user/{uid}/berth/{}/service.pid", job.key()))
            .expect("service pid")
            .trim()
            .parse()
            .expect("pid");
    let slirp: Vec<u32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "slirp4netns")
                && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
                    st.rsplit(')')
                        .next()
                        .and_then(|rest| rest.split_whitespace().nth(3))
                        == Some(service.to_string().as_str())
                })
        })
        .collect();
    assert_eq!(slirp.len(), 1, "the job's pod network process");
    signal_group(&child, Signal::SIGTERM);
    let r = wait_with_timeout(child, Duration::from_secs(60));
    assert_eq!(
        r.code,
        1,
        "a cancelled script is a build failure: {}",
        r.all()
    );
    assert!(
        berth_sandbox_alive(slirp[0]),
        "the cancel killed the pod's network (slirp4netns {})",
        slirp[0]
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut survivors = builds.map(|b| (b, berth_integration::host_sleeps(b)));
    while survivors.iter().any(|(_, pids)| !pids.is_empty()) && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
        survivors = builds.map(|b| (b, berth_integration::host_sleeps(b)));
    }
    assert!(
        survivors.iter().all(|(_, pids)| pids.is_empty()),
        "RUN steps outlived the cancel (4243 nested, 4244 build socket, 4245 BuildKit): {survivors:?}\n{}",
        r.all()
    );
    job.extra_env
        .insert("CUSTOM_ENV_CI_JOB_STATUS".into(), "canceled".into());
    let r = job.run("after_script", "echo after-ran");
    ok(&r);
    cleaned(job);
}

#[test]
fn pushes_use_the_jobs_own_registry_credentials_without_login() {
    require_host();
    let registry = Registry::start("ci-registry-user", "ci-registry-pass-9");
    let reg = registry.address.clone();
    let mut p = payload("localhost/build-tools:latest");
    p["variables"] = json!([
        { "key": "CI_REGISTRY", "value": reg },
        { "key": "CI_REGISTRY_USER", "value": "ci-registry-user" },
        { "key": "CI_REGISTRY_PASSWORD", "value": "ci-registry-pass-9", "masked": true }
    ]);
    let mut job = FakeRunner::new(p).with_config(&format!(
        "network = \"host\"\ninsecure_registries = [\"{reg}\"]\n"
    ));
    ok(&job.stage(&["config"]));
    let r = job.stage(&["prepare"]);
    ok(&r);
    assert!(!r.stderr.contains("ci-registry-pass-9"), "{}", r.all());
    let script = format!(
        r#"mkdir -p /tmp/ci && cd /tmp/ci && printf 'FROM localhost/busybox:latest\nRUN echo ci > /ci\n' > Containerfile
podman build -q -t {reg}/berth/ci:1 . >/dev/null
podman push -q --tls-verify=false {reg}/berth/ci:1 && echo pushed-without-login
DOCKER_BUILDKIT=0 docker build -q -f Containerfile -t {reg}/berth/ci:2 . >/dev/null && docker push -q {reg}/berth/ci:2 >/dev/null && echo docker-pushed-without-login
docker login -u wrong-user -p wrong-pass {reg} >/dev/null 2>&1 || echo wrong-login-refused
docker login -u ci-registry-user -p ci-registry-pass-9 {reg} >/dev/null 2>&1 && echo docker-login-ok
podman login -u ci-registry-user -p ci-registry-pass-9 --tls-verify=false {reg} >/dev/null 2>&1 && echo podman-login-ok
docker push -q {reg}/berth/ci:2 >/dev/null && echo docker-pushed-after-login"#
    );
    let r = job.run("build_script", &script);
    ok(&r);
    for marker in [
        "pushed-without-login",
        "docker-pushed-without-login",
        "wrong-login-refused",
        "docker-login-ok",
        "podman-login-ok",
        "docker-pushed-after-login",
    ] {
        assert!(r.stdout.contains(marker), "{marker}: {}", r.all());
    }
    let auth = job.work_dir().join("registry-auth/config.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&auth).expect("auth file").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "only the job may read its credentials");
    cleaned(job);
}

#[test]
fn every_builder_pushes_to_a_registry_without_authentication() {
    require_host();
    let registry = Registry::start_open();
    let reg = registry.address.clone();
    let config = format!(
        "network = \"host\"\nbuildkitd = \"{BUILDKITD}\"\nbuildkit_network = \"host\"\ninsecure_registries = [\"{reg}\"]\n"
    );
    let mut job = prepared_with(payload("localhost/build-tools:latest"), &config);
    install_buildctl(&job);
    let script = format!(
        r#"mkdir -p /tmp/open && cd /tmp/open && echo open > hello.txt
printf 'FROM scratch\nCOPY hello.txt /hello.txt\n' > Containerfile
podman build -q -t {reg}/open/nested:1 . >/dev/null && podman push -q --tls-verify=false {reg}/open/nested:1 && echo nested-pushed
DOCKER_BUILDKIT=0 docker build -q -f Containerfile -t {reg}/open/socket:1 . >/dev/null && docker push -q {reg}/open/socket:1 >/dev/null && echo socket-pushed
/builds/tools/buildctl build --frontend dockerfile.v0 --local context=. --local dockerfile=. --opt filename=Containerfile --output type=image,name={reg}/open/buildkit:1,push=true,registry.insecure=true 2>/dev/null && echo buildkit-pushed"#
    );
    let r = job.run("build_script", &script);
    ok(&r);
    for builder in ["nested", "socket", "buildkit"] {
        assert!(
            r.stdout.contains(&format!("{builder}-pushed")),
            "{builder}: {}",
            r.all()
        );
        assert!(
            registry.has_manifest(&format!("open/{builder}"), "1"),
            "the registry lacks open/{builder}:1: {}",
            r.all()
        );
    }
    assert!(!registry.has_manifest("open/never-pushed", "1"));
    cleaned(job);
}

#[test]
fn buildkit_cache_is_kept_per_project_when_configured() {
    require_host();
    let config = format!("buildkitd = \"{BUILDKITD}\"\nbuildkit_cache = \"project\"\n");
    let mut p = payload("localhost/build-tools:latest");
    p["job_info"]["project_id"] = json!(std::process::id() + 900_000);
    let script = r#"mkdir -p /tmp/c && cd /tmp/c && echo same-content > data.txt
printf 'FROM scratch\nCOPY data.txt /data.txt\n' > Containerfile
/builds/tools/buildctl build --progress plain --frontend dockerfile.v0 --local context=. --local dockerfile=. --opt filename=Containerfile --output type=oci,dest=/tmp/o.tar 2>&1 | grep -E 'CACHED|DONE' | head -5"#;
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let mut job = prepared_with(p.clone(), &config);
        install_buildctl(&job);
        let r = job.run("build_script", script);
        ok(&r);
        outputs.push(r.stdout.clone());
        cleaned(job);
    }
    assert!(
        !outputs[0].contains("CACHED"),
        "the first build is cold: {}",
        outputs[0]
    );
    assert!(
        outputs[1].contains("CACHED"),
        "the second job reuses the project's cache: {}",
        outputs[1]
    );
}
