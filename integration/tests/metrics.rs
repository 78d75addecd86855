//! berth's metrics and admin log with real peers: jobs through the real binary with
//! `metrics_dir` set, `promtool check metrics` on the file, a real node_exporter
//! (`--collector.textfile.directory`) scraped by a real Prometheus, the shipped alert rules
//! through `promtool`, and the admin log of a hostile job. The peers come from
//! `integration/peers/install-prometheus.sh` (Debian's prometheus and prometheus-node-exporter);
//! a missing one fails the test.

#![expect(
    clippy::disallowed_methods,
    reason = "the tests start the Prometheus peers themselves"
)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_integration::{
    FakeRunner, STATE_DIR, berth_binary, cleaned, ok, payload, require_host, signal_group,
    wait_with_timeout,
};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const BUSYBOX: &str = "localhost/busybox:latest";

fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(rel)
}

/// Fails unless `binary` is on PATH, naming the script that installs it.
fn peer(binary: &str) -> &str {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{binary} is missing: run integration/peers/install-prometheus.sh (scripts/test-all does)"
    );
    binary
}

/// A directory only root can write, for metrics or the admin log.
fn root_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// Removes this test's state under `/var/lib/berth/metrics`, and the directory once no test
/// (they run at once, each in its own process) has files there, so the host's state directory
/// is left as found.
struct StateGuard {
    name: String,
}

impl StateGuard {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
        }
    }
}

impl Drop for StateGuard {
    fn drop(&mut self) {
        let dir = Path::new(STATE_DIR).join("metrics");
        for ext in ["json", "lock"] {
            let _ = std::fs::remove_file(dir.join(format!("{}.{ext}", self.name)));
        }
        // Only an empty directory is removed: another test's or a real runner's state stays.
        let _ = std::fs::remove_dir(&dir);
    }
}

/// A child process of the test, killed (by its own pid) when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `GET path` on `127.0.0.1:port` over HTTP/1.0; the body, or None when nothing answers.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus' answer to an instant query.
fn query(port: u16, promql: &str) -> Value {
    let body =
        http_get(port, &format!("/api/v1/query?query={}", url_encode(promql))).unwrap_or_default();
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

/// Polls `condition` until it holds or `deadline` passes; the last value explains a timeout.
fn poll<T>(what: &str, timeout: Duration, mut condition: impl FnMut() -> (bool, T)) -> T
where
    T: std::fmt::Debug,
{
    let deadline = Instant::now() + timeout;
    loop {
        let (done, value) = condition();
        if done {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: timed out; last: {value:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn job_config(metrics_dir: &Path, name: &str, extra: &str) -> String {
    format!(
        "metrics_dir = \"{}\"\nmetrics_name = \"{name}\"\n{extra}",
        metrics_dir.display()
    )
}

/// A whole passing job, one whose script fails, a cancelled one, and one whose image cannot be
/// pulled.
fn run_jobs(config: &str) {
    let mut passing = FakeRunner::new(payload(BUSYBOX)).with_config(config);
    ok(&passing.stage(&["config"]));
    ok(&passing.stage(&["prepare"]));
    ok(&passing.run("step_script", "echo hello"));
    // gitlab-runner ignores a failing after_script; the job still succeeds.
    let r = passing.run("after_script", "exit 4");
    assert_eq!(r.code, 1, "{}", r.all());
    cleaned(passing);

    let mut failing = FakeRunner::new(payload(BUSYBOX)).with_config(config);
    ok(&failing.stage(&["config"]));
    ok(&failing.stage(&["prepare"]));
    let r = failing.run("step_script", "exit 3");
    assert_eq!(r.code, 1, "{}", r.all());
    ok(&failing.run("upload_artifacts_on_failure", "true"));
    cleaned(failing);

    let mut cancelled = FakeRunner::new(payload(BUSYBOX)).with_config(config);
    ok(&cancelled.stage(&["config"]));
    ok(&cancelled.stage(&["prepare"]));
    let child = cancelled.spawn_run("step_script", "sleep 3027");
    // Cancelled once the script really runs, as gitlab-runner does on a job cancel.
    berth_integration::await_host_sleep("3027", "the cancelled job's script");
    signal_group(&child, Signal::SIGTERM);
    let r = wait_with_timeout(child, Duration::from_secs(60));
    assert_eq!(r.code, 1, "{}", r.all());
    cleaned(cancelled);

    let mut broken =
        FakeRunner::new(payload("localhost/berth-metrics-no-such-image:1")).with_config(config);
    ok(&broken.stage(&["config"]));
    let r = broken.stage(&["prepare"]);
    assert_eq!(r.code, 2, "a pull that fails is the system's: {}", r.all());
    cleaned(broken);
}

fn line_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// Jobs write their metrics; promtool accepts the file; node_exporter serves it and Prometheus
/// scrapes it with the values the jobs made, and every dashboard query runs on it.
#[test]
fn jobs_metrics_reach_prometheus_through_node_exporters_textfile_collector() {
    require_host();
    let (promtool, prometheus, node_exporter) = (
        peer("promtool"),
        peer("prometheus"),
        peer("prometheus-node-exporter"),
    );
    let name = format!("it-metrics-{}", std::process::id());
    let _state = StateGuard::new(&name);
    let metrics = root_dir();
    run_jobs(&job_config(metrics.path(), &name, ""));

    // The admin's reap writes to the same runner config's metrics (pruning off: other tests'
    // base images stay).
    let reap_dir = tempfile::tempdir().expect("tempdir");
    let reap_config = reap_dir.path().join("berth.toml");
    std::fs::write(
        &reap_config,
        job_config(metrics.path(), &name, "prune_after_days = 0\n"),
    )
    .expect("config");
    let reaped = Command::new(berth_binary())
        .arg("--config")
        .arg(&reap_config)
        .arg("reap")
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .expect("berth reap");
    let reap_log = String::from_utf8_lossy(&reaped.stderr).into_owned();

    let file = metrics.path().join(format!("{name}.prom"));
    let text = std::fs::read_to_string(&file).expect("the metrics file");
    let base_store = line_value(
        &text,
        &format!("berth_base_store_size_bytes{{runner=\"{name}\"}}"),
    );
    assert!(
        base_store.is_some_and(|b| b > 1e6),
        "the base store holds the test images: {base_store:?}\n{reap_log}\n{text}"
    );
    assert!(
        text.contains(&format!("berth_reap_left_objects{{runner=\"{name}\"}}")),
        "{reap_log}\n{text}"
    );
    let r = |outcome: &str| format!("berth_jobs_total{{runner=\"{name}\",outcome=\"{outcome}\"}}");
    assert_eq!(line_value(&text, &r("success")), Some(1.0), "{text}");
    assert_eq!(line_value(&text, &r("build_failure")), Some(1.0), "{text}");
    assert_eq!(line_value(&text, &r("system_failure")), Some(1.0), "{text}");
    assert_eq!(line_value(&text, &r("cancelled")), Some(1.0), "{text}");
    let count = |stage: &str| {
        line_value(
            &text,
            &format!("berth_stage_duration_seconds_count{{runner=\"{name}\",stage=\"{stage}\"}}"),
        )
    };
    assert_eq!(count("prepare"), Some(4.0), "{text}");
    assert_eq!(count("cleanup"), Some(4.0), "{text}");
    assert_eq!(count("step_script"), Some(3.0), "{text}");
    assert_eq!(
        line_value(
            &text,
            &format!("berth_image_pulls_total{{runner=\"{name}\",outcome=\"failure\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    let mode = std::fs::metadata(&file).expect("prom").permissions().mode();
    assert_eq!(mode & 0o777, 0o644);

    let checked = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).expect("open"))
        .output()
        .expect("promtool");
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let exporter_port = free_port();
    let _exporter = Peer(
        Command::new(node_exporter)
            .arg(format!("--web.listen-address=127.0.0.1:{exporter_port}"))
            .arg("--collector.disable-defaults")
            .arg("--collector.textfile")
            .arg(format!(
                "--collector.textfile.directory={}",
                metrics.path().display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node_exporter"),
    );
    let served = poll(
        "node_exporter serves the file",
        Duration::from_secs(30),
        || {
            let body = http_get(exporter_port, "/metrics").unwrap_or_default();
            // node_exporter orders the labels by name.
            let served = format!("berth_jobs_total{{outcome=\"success\",runner=\"{name}\"}} 1\n");
            (body.contains(&served), body)
        },
    );
    assert!(
        served.contains("\nnode_textfile_scrape_error 0\n"),
        "node_exporter could not read the file: {served}"
    );

    let prom_dir = tempfile::tempdir().expect("tempdir");
    let rules = prom_dir.path().join("berth-alerts.yml");
    std::fs::copy(deploy("prometheus/berth-alerts.yml"), &rules).expect("rules");
    let config = prom_dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [\"{}\"]\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: [\"127.0.0.1:{exporter_port}\"]\n",
            rules.display()
        ),
    )
    .expect("prometheus config");
    let prom_port = free_port();
    let _prometheus = Peer(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let selector = format!("berth_jobs_total{{runner=\"{name}\"}}");
    let scraped = poll(
        "Prometheus scraped berth's series",
        Duration::from_secs(90),
        || {
            let answer = query(prom_port, &selector);
            let n = answer["data"]["result"].as_array().map_or(0, Vec::len);
            (n == 4, answer)
        },
    );
    let value_of = |outcome: &str| {
        scraped["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["metric"]["outcome"] == outcome)
            .map(|s| (s["metric"]["job"].clone(), s["value"][1].clone()))
    };
    assert_eq!(
        value_of("success"),
        Some((json!("node"), json!("1"))),
        "{scraped}"
    );
    assert_eq!(
        value_of("build_failure"),
        Some((json!("node"), json!("1"))),
        "{scraped}"
    );
    assert_eq!(
        value_of("system_failure"),
        Some((json!("node"), json!("1"))),
        "{scraped}"
    );
    assert_eq!(
        value_of("cancelled"),
        Some((json!("node"), json!("1"))),
        "{scraped}"
    );
    let p95 = query(
        prom_port,
        &format!("berth_stage_duration_seconds_count{{runner=\"{name}\",stage=\"prepare\"}}"),
    );
    assert_eq!(p95["data"]["result"][0]["value"][1], "4", "{p95}");

    // Every dashboard query is PromQL Prometheus runs (the variables as Grafana fills them).
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/berth-dashboard.json")).expect("dashboard"),
    )
    .expect("dashboard JSON");
    for target in dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
    {
        let expr = target["expr"].as_str().unwrap_or_default();
        let filled = expr
            .replace("$__rate_interval", "1m")
            .replace("$runner", &name)
            .replace("$instance", ".*")
            .replace("$severity", ".*");
        let answer = query(prom_port, &filled);
        assert_eq!(answer["status"], "success", "{filled}: {answer}");
    }
    // The shipped rules loaded and evaluate without errors.
    let rules = poll(
        "the alert rules are evaluated",
        Duration::from_secs(30),
        || {
            let body = http_get(prom_port, "/api/v1/rules").unwrap_or_default();
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let rules: Vec<Value> = v["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            let evaluated = rules.len() == 4 && rules.iter().all(|r| r["health"] == "ok");
            (evaluated, v)
        },
    );
    assert_eq!(rules["status"], "success", "{rules}");
}

/// The shipped rules are valid and their unit tests pass.
#[test]
fn the_alert_rules_pass_promtools_checks_and_unit_tests() {
    let promtool = peer("promtool");
    let rules = deploy("prometheus/berth-alerts.yml");
    let check = Command::new(promtool)
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout) + String::from_utf8_lossy(&check.stderr)
    );
    let tests = Command::new(promtool)
        .args(["test", "rules", "berth-alerts.test.yml"])
        .current_dir(deploy("prometheus"))
        .output()
        .expect("promtool");
    let out = String::from_utf8_lossy(&tests.stdout) + String::from_utf8_lossy(&tests.stderr);
    assert!(tests.status.success() && out.contains("SUCCESS"), "{out}");
}

/// The job identity can neither write berth's accumulated metrics nor the file node_exporter
/// reads, nor plant a link for root to follow.
#[test]
fn a_job_identity_cannot_write_the_metrics_state_or_the_prom_file() {
    require_host();
    let name = format!("it-metrics-attack-{}", std::process::id());
    let _state = StateGuard::new(&name);
    let metrics = root_dir();
    let config = job_config(metrics.path(), &name, "");
    let mut job = FakeRunner::new(payload(BUSYBOX)).with_config(&config);
    ok(&job.stage(&["config"]));
    ok(&job.stage(&["prepare"]));
    let identity = job.identity().expect("a leased identity");
    let state = Path::new(STATE_DIR).join(format!("metrics/{name}.json"));
    let prom = metrics.path().join(format!("{name}.prom"));
    let before = (
        std::fs::read(&state).expect("state after prepare"),
        std::fs::read(&prom).expect("prom after prepare"),
    );
    for attempt in [
        format!("echo 'berth_jobs_total 1e9' >> {}", state.display()),
        format!("echo 'berth_jobs_total 1e9' > {}", prom.display()),
        format!(
            "ln -sf /etc/shadow {}/{name}.prom.new",
            metrics.path().display()
        ),
        format!("ln -sf /etc/shadow {}/metrics/{name}.lock", STATE_DIR),
        format!("mv {} {}.old", prom.display(), prom.display()),
    ] {
        let out = Command::new("runuser")
            .args(["-u", &identity, "--", "sh", "-c", &attempt])
            .current_dir("/")
            .output()
            .expect("runuser");
        assert!(!out.status.success(), "the job identity could: {attempt}");
    }
    ok(&job.run("step_script", "true"));
    cleaned(job);
    let after = std::fs::read_to_string(&prom).expect("prom");
    assert!(!after.contains("1e9"), "{after}");
    assert_ne!(before.1, after.as_bytes(), "cleanup wrote the file again");
    assert!(
        after.contains(&format!(
            "berth_jobs_total{{runner=\"{name}\",outcome=\"success\"}} 1"
        )),
        "{after}"
    );
    let meta = std::fs::symlink_metadata(&state).expect("state");
    assert!(meta.is_file() && std::os::unix::fs::MetadataExt::uid(&meta) == 0);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::symlink_metadata(Path::new(STATE_DIR).join("metrics"))
            .expect("metrics state dir")
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
}

/// A hostile job puts its token and a masked value into its image name, its script and its
/// output: the admin log (JSON lines, a file here: there is no journald) has the job's events
/// and never either secret; the job log stays as it was.
#[test]
fn the_admin_log_has_the_jobs_events_and_never_its_secrets() {
    require_host();
    assert!(
        !Path::new("/run/systemd/journal/socket").exists(),
        "this test reads the admin log's file; with journald running berth logs there instead"
    );
    let token = "glcbt-admin-log-secret-token";
    let masked = "masked-value-xyz";
    let logs = root_dir();
    let admin_log = logs.path().join("admin.log");
    let config = format!(
        "log_format = \"json\"\nadmin_log = \"{}\"\nallowed_images = [\"localhost/busybox:*\"]\n",
        admin_log.display()
    );
    let hostile = |image: &str| {
        let mut p = payload(image);
        p["token"] = json!(token);
        p["variables"]
            .as_array_mut()
            .expect("variables")
            .push(json!({"key": "CI_PROJECT_PATH", "value": "group/admin-log", "masked": false}));
        p
    };
    let mut refused =
        FakeRunner::new(hostile(&format!("localhost/{token}-{masked}:1"))).with_config(&config);
    ok(&refused.stage(&["config"]));
    let r = refused.stage(&["prepare"]);
    assert_eq!(
        r.code,
        1,
        "a disallowed image is the job's fault: {}",
        r.all()
    );
    ok(&refused.stage(&["cleanup"]));

    let mut job = FakeRunner::new(hostile(BUSYBOX)).with_config(&config);
    ok(&job.stage(&["config"]));
    ok(&job.stage(&["prepare"]));
    let r = job.run(
        "step_script",
        &format!("echo {token} {masked}; echo \"$MY_SECRET\" >&2; exit 5"),
    );
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        !r.stdout.contains("\"level\"") && !r.stderr.contains("\"level\""),
        "admin lines in the job log: {}",
        r.all()
    );
    let key = job.key();
    cleaned(job);

    let text = std::fs::read_to_string(&admin_log).expect("the admin log");
    assert!(!text.contains(token), "the token in the admin log:\n{text}");
    assert!(
        !text.contains(masked),
        "a masked value in the admin log:\n{text}"
    );
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let failed = lines
        .iter()
        .find(|l| l["message"] == "stage failed" && l["stage"] == "prepare")
        .unwrap_or_else(|| panic!("no failed prepare in\n{text}"));
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("[MASKED]"),
        "{failed}"
    );
    let ended = lines
        .iter()
        .find(|l| {
            l["message"] == "stage ended" && l["job"] == key.as_str() && l["stage"] == "step_script"
        })
        .unwrap_or_else(|| panic!("no step_script of {key} in\n{text}"));
    assert_eq!(ended["project"], "group/admin-log", "{ended}");
    assert_eq!(ended["outcome"], "ScriptFailed(5)", "{ended}");
    assert!(ended["duration_seconds"].as_f64().is_some(), "{ended}");
    let mode = std::fs::metadata(&admin_log)
        .expect("log")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
}

/// An advisory for a package only the image built below carries, critical, fixed in 2-1.
const METRICS_ADVISORY: &str = r#"{"schema_version":"1.6.0","id":"CVE-2099-7777","modified":"2026-11-20T10:00:00Z","database_specific":{"severity":"CRITICAL"},"affected":[{"package":{"ecosystem":"Debian:12","name":"libberthmetrics"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2-1"}]}]}]}"#;

/// A nested `podman build` of an image that carries `libberthmetrics` 1-1.
const METRICS_BUILD: &str = r#"mkdir -p /builds/group/project /tmp/mctx && cd /tmp/mctx
printf 'Package: libberthmetrics\nStatus: install ok installed\nVersion: 1-1\nArchitecture: amd64\n\n' > status
printf 'ID=debian\nVERSION_ID="12"\n' > os-release
printf 'FROM localhost/busybox:latest\nCOPY status /var/lib/dpkg/status\nCOPY os-release /etc/os-release\n' > Containerfile
podman build -q -t localhost/metrics-vulnerable:1 . >/dev/null && echo built"#;

/// A job builds an image (nested Podman) that the scan blocks: the build, the scan's verdict,
/// its findings under the job's project and the database's date are in the metrics.
#[test]
fn builds_and_scan_findings_are_counted_per_builder_verdict_and_project() {
    require_host();
    let advisories = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        advisories.path().join("CVE-2099-7777.json"),
        METRICS_ADVISORY,
    )
    .expect("record");
    let db = tempfile::Builder::new()
        .prefix("berth-db")
        .tempdir()
        .expect("db dir");
    let imported = Command::new(berth_binary())
        .args(["db", "update", "--from"])
        .arg(advisories.path())
        .arg("--db")
        .arg(db.path())
        .output()
        .expect("berth db update");
    assert!(imported.status.success(), "{imported:?}");
    berth_integration::make_readable_by_all(db.path());

    let name = format!("it-metrics-scan-{}", std::process::id());
    let _state = StateGuard::new(&name);
    let metrics = root_dir();
    let config = job_config(
        metrics.path(),
        &name,
        &format!("scan_db = \"{}\"\n", db.path().display()),
    );
    let mut p = payload("localhost/build-tools:latest");
    p["variables"]
        .as_array_mut()
        .expect("variables")
        .push(json!({"key": "CI_PROJECT_PATH", "value": "group/scanned", "masked": false}));
    let mut job = FakeRunner::new(p).with_config(&config);
    ok(&job.stage(&["config"]));
    ok(&job.stage(&["prepare"]));
    let r = job.run("build_script", METRICS_BUILD);
    assert_eq!(r.code, 1, "blocked by the policy: {}", r.all());
    assert!(
        r.stdout.contains("built") && r.stdout.contains("CVE-2099-7777"),
        "{}",
        r.all()
    );
    cleaned(job);

    let text = std::fs::read_to_string(metrics.path().join(format!("{name}.prom")))
        .expect("the metrics file");
    for (series, value) in [
        (
            format!("berth_images_built_total{{runner=\"{name}\",builder=\"nested\"}}"),
            1.0,
        ),
        (
            format!("berth_image_scans_total{{runner=\"{name}\",verdict=\"fail\"}}"),
            1.0,
        ),
        (
            format!(
                "berth_scan_findings_total{{runner=\"{name}\",severity=\"critical\",verdict=\"fail\"}}"
            ),
            1.0,
        ),
        (
            format!(
                "berth_project_scan_findings{{runner=\"{name}\",project=\"group/scanned\",severity=\"critical\"}}"
            ),
            1.0,
        ),
        (
            format!(
                "berth_project_scan_findings{{runner=\"{name}\",project=\"group/scanned\",severity=\"high\"}}"
            ),
            0.0,
        ),
        (
            format!("berth_advisory_db_updated_timestamp_seconds{{runner=\"{name}\"}}"),
            1_795_168_800.0,
        ),
        (
            format!("berth_jobs_total{{runner=\"{name}\",outcome=\"build_failure\"}}"),
            1.0,
        ),
    ] {
        assert_eq!(
            line_value(&text, &series),
            Some(value),
            "{series} in\n{text}"
        );
    }
}
