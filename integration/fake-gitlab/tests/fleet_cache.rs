//! The runner's distributed cache across hosts: `[runners.cache]` of type `s3` (`Shared = true`)
//! on a real S3 server (moto's server mode, `integration/peers/install-fleet-peers.sh`), and two
//! runner hosts simulated on this machine: two `gitlab-runner` processes, each with its own berth
//! config, identities and state directory (host A: `berth-runner`, `berth-job-*`,
//! `/var/lib/berth`; host B: `berth-runner-b`, `berth-b-job-*`, `/var/lib/berth-b`, made by a
//! second run of `integration/host/setup-host.sh` in `scripts/test-all`). A job on host A archives
//! the cache (the runner's cache-archiver in berth's helper container uploads it to the presigned
//! URL); a job on host B, whose own `/cache` is empty, restores it from S3.
//!
//! The helper must reach S3 at the address the runner signs (it is part of the signature). Twice:
//! S3 on 127.0.0.1 with berth's `network = "host"`, and S3 on the host's own non-loopback
//! address from the default slirp4netns network, which reaches every host address but the
//! loopback (the jobs clone nothing, so the helper needs nothing from the fake GitLab, which
//! listens on loopback).

#![expect(
    clippy::disallowed_methods,
    reason = "the test starts its S3 peer itself"
)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use berth_fake_gitlab::harness::{RunOptions, run_single};
use berth_fake_gitlab::payload::{Cache, Image};
use berth_fake_gitlab::peers::PeerVersion;
use berth_fake_gitlab::{FakeGitLab, JobPayload, RunnerConfig};
use common::{berth_runner_config, http, peer, tail};

const IMAGE: &str = "localhost/busybox:latest";
const MOTO: &str = "/var/cache/berth-peers/moto/bin/moto_server";
const BUCKET: &str = "berth-runner-cache";

/// moto's S3 server on a loopback port; killed when dropped.
struct S3Server {
    child: Child,
    addr: SocketAddr,
}

impl S3Server {
    fn start(ip: IpAddr) -> Result<Self> {
        let port = std::net::TcpListener::bind((ip, 0))?.local_addr()?.port();
        let child = Command::new(MOTO)
            .args(["-H", &ip.to_string(), "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!("cannot start {MOTO}: run integration/peers/install-fleet-peers.sh")
            })?;
        let server = Self {
            child,
            addr: SocketAddr::new(ip, port),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(server.addr).is_err() {
            ensure!(
                Instant::now() < deadline,
                "moto_server did not start on {}",
                server.addr
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    /// The keys in the bucket (ListObjectsV2; moto's server takes unsigned requests).
    fn keys(&self) -> Result<String> {
        let listing = http(
            self.addr,
            "GET",
            &format!("/{BUCKET}?list-type=2"),
            &[],
            b"",
        )?;
        ensure!(
            listing.status == 200,
            "list: {}",
            String::from_utf8_lossy(&listing.body)
        );
        Ok(String::from_utf8_lossy(&listing.body).into_owned())
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes a host's kept per-project cache of the test project (berth keeps it by design).
struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// One simulated runner host: its gitlab-runner config (own token, the shared S3 cache) and its
/// berth config (own identities and state).
fn host(
    binary: &Path,
    gitlab: &FakeGitLab,
    name: &str,
    s3: &S3Server,
    network: &str,
    berth_config: &str,
) -> Result<(tempfile::TempDir, RunnerConfig, RunOptions)> {
    let (dir, mut config, options) = berth_runner_config(
        binary,
        gitlab,
        &format!("glrt-{name}{}", std::process::id()),
        network,
        berth_config,
    )?;
    config.name = name.to_owned();
    config.extra_runner_toml = format!(
        r#"  [runners.cache]
    Type = "s3"
    Shared = true
    [runners.cache.s3]
      ServerAddress = "{addr}"
      AccessKey = "berth-test-access"
      SecretKey = "berth-test-secret"
      BucketName = "{BUCKET}"
      BucketLocation = "us-east-1"
      Insecure = true
"#,
        addr = s3.addr
    );
    Ok((dir, config, options))
}

fn explain(gitlab: &FakeGitLab, id: u64, stderr: &str) -> String {
    format!(
        "final: {:?}\ntrace:\n{}\nrunner stderr (tail):\n{}",
        gitlab.final_update(id).map(|u| u.0),
        gitlab.trace_text(id),
        tail(stderr, 40)
    )
}

/// Runs `job` on one host's runner; it must succeed. Returns the runner's stderr.
fn run_to_success(
    gitlab: &FakeGitLab,
    job: &JobPayload,
    config: &RunnerConfig,
    options: &RunOptions,
) -> Result<String> {
    gitlab.push_job(job);
    let outcome = run_single(config, options)?;
    ensure!(
        gitlab
            .final_update(job.id)
            .is_some_and(|u| u.state() == "success"),
        "{}",
        explain(gitlab, job.id, &outcome.stderr)
    );
    Ok(outcome.stderr)
}

/// This host's first global IPv4 address (`ip -4 -o addr show scope global`).
fn host_address() -> Result<IpAddr> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .context("run ip (iproute2 is installed by integration/host/setup-host.sh)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        .map(IpAddr::V4)
        .with_context(|| format!("this host has no global IPv4 address: {text}"))
}

#[test]
fn a_cache_written_on_host_a_is_restored_on_host_b_through_s3() -> Result<()> {
    cache_across_hosts(IpAddr::V4(Ipv4Addr::LOCALHOST), "host", 120)
}

#[test]
fn the_helper_reaches_s3_at_the_hosts_address_from_the_default_network() -> Result<()> {
    cache_across_hosts(host_address()?, "slirp4netns", 130)
}

/// Host A's job `first_job` saves the cache on S3 at `s3_ip`, host B's job `first_job + 1`
/// restores it; both hosts' pods on `network`.
fn cache_across_hosts(s3_ip: IpAddr, network: &str, first_job: u64) -> Result<()> {
    let binary = peer(PeerVersion::V19).unwrap_or_else(|| {
        panic!(
            "no gitlab-runner v19 peer could be built; see {}",
            berth_fake_gitlab::peers::BUILD_SCRIPT
        )
    });
    for user in ["berth-runner-b", "berth-b-job-0"] {
        assert!(
            nix::unistd::User::from_name(user).ok().flatten().is_some(),
            "user {user} is missing: run BERTH_RUNNER_USER=berth-runner-b BERTH_JOB_USER_PREFIX=berth-b-job- BERTH_STATE_DIR=/var/lib/berth-b BERTH_JOB_SLOTS=2 integration/host/setup-host.sh (scripts/test-all does)"
        );
    }
    let s3 = S3Server::start(s3_ip)?;
    let made = http(s3.addr, "PUT", &format!("/{BUCKET}"), &[], b"")?;
    ensure!(
        made.status == 200,
        "create bucket: {}",
        String::from_utf8_lossy(&made.body)
    );
    let gitlab = FakeGitLab::start()?;
    let project_id = 710_000 + u64::from(std::process::id());
    let _kept = RemoveOnDrop(vec![
        PathBuf::from(format!("/var/lib/berth/cache/project-{project_id}")),
        PathBuf::from(format!("/var/lib/berth-b/cache/project-{project_id}")),
    ]);
    let key = format!("fleet-{project_id}");
    let (_a_dir, host_a, options_a) = host(&binary, &gitlab, "host-a", &s3, network, "")?;
    let (_b_dir, host_b, options_b) = host(
        &binary,
        &gitlab,
        "host-b",
        &s3,
        network,
        "user = \"berth-runner-b\"\njob_users = [\"berth-b-job-0\", \"berth-b-job-1\"]\nstate_dir = \"/var/lib/berth-b\"\n",
    )?;
    let mut write = JobPayload::new(
        first_job,
        &["mkdir -p vendor", "echo cached-on-host-a > vendor/dep.txt"],
    )
    .image(Image::new(IMAGE))
    .cache(Cache {
        policy: "push".to_owned(),
        ..Cache::new(&key, &["vendor/"])
    });
    write.project_id = project_id;
    let a = run_to_success(&gitlab, &write, &host_a, &options_a)?;
    let stored = s3.keys()?;
    ensure!(
        stored.contains(&format!("project/{project_id}/{key}")),
        "host A's cache is not in S3: {stored}\n{}",
        explain(&gitlab, first_job, &a)
    );

    let mut read = JobPayload::new(first_job + 1, &["cat vendor/dep.txt"])
        .image(Image::new(IMAGE))
        .cache(Cache {
            policy: "pull".to_owned(),
            ..Cache::new(&key, &["vendor/"])
        });
    read.project_id = project_id;
    let b = run_to_success(&gitlab, &read, &host_b, &options_b)?;
    let trace = gitlab.trace_text(first_job + 1);
    ensure!(
        trace.contains(&format!("Downloading cache from http://{}", s3.addr))
            && trace.contains("Successfully extracted cache")
            && trace.contains("cached-on-host-a"),
        "{}",
        explain(&gitlab, first_job + 1, &b)
    );
    Ok(())
}
