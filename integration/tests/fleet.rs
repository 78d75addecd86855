//! Shared across hosts: the advisory database an admin publishes once (`berth db publish`, signed
//! with the real minisign) and every host fetches from `db_url` (`berth db update
//! --if-configured`, what the package's daily timer runs for each runner config), served by
//! Python's `http.server` on loopback.

#![expect(
    clippy::disallowed_methods,
    reason = "the test plays the admin and starts the peers itself"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use berth_integration::berth_binary;

fn berth(config: &Path, args: &[&str]) -> Output {
    Command::new(berth_binary())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("BERTH_DB")
        .stdin(Stdio::null())
        .output()
        .expect("run berth")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(program: &str, args: &[&str], dir: &Path) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): run integration/peers/install-fleet-peers.sh")
        });
    assert!(out.status.success(), "{program} {args:?}: {}", text(&out));
}

/// Python's http.server serving `dir` on a loopback port; killed when dropped.
struct FileServer {
    child: Child,
    port: u16,
}

impl FileServer {
    fn start(dir: &Path) -> Self {
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs http.server");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("http.server says where it serves");
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in http.server's line {line:?}"));
        Self { child, port }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn every_host_fetches_the_published_advisory_database_from_db_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    // The admin's side: a database, published once and signed with minisign.
    let osv = root.join("osv");
    std::fs::create_dir(&osv).expect("osv dir");
    std::fs::write(
        osv.join("a.json"),
        r#"{"id":"GHSA-fleet-0001","modified":"2026-11-20T00:00:00Z","affected":[{"package":{"ecosystem":"npm","name":"left-pad"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.3.0"}]}]}]}"#,
    )
    .expect("osv record");
    let admin_db = root.join("admin-db");
    let publish_dir = root.join("www");
    let admin_config = root.join("admin.toml");
    std::fs::write(
        &admin_config,
        format!("scan_db = \"{}\"\n", admin_db.display()),
    )
    .expect("admin config");
    let out = berth(
        &admin_config,
        &["db", "update", "--from", osv.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = berth(
        &admin_config,
        &[
            "db",
            "publish",
            "--out",
            publish_dir.to_str().expect("utf-8"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("minisign -S"), "{}", text(&out));
    run(
        "minisign",
        &["-G", "-W", "-p", "k.pub", "-s", "k.sec"],
        root,
    );
    run(
        "minisign",
        &["-S", "-s", "k.sec", "-m", "www/berth-advisories.tar"],
        root,
    );
    let public_key = std::fs::read_to_string(root.join("k.pub")).expect("public key");
    let public_key = public_key.lines().nth(1).expect("key line");
    let server = FileServer::start(&publish_dir);

    // A host without db_url: the timer's call says so and succeeds; by hand it is an error.
    let bare = root.join("bare.toml");
    std::fs::write(
        &bare,
        format!("scan_db = \"{}\"\n", root.join("bare-db").display()),
    )
    .expect("config");
    let out = berth(&bare, &["db", "update", "--if-configured"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no db_url"), "{}", text(&out));
    let out = berth(&bare, &["db", "update"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("set db_url"), "{}", text(&out));

    // Two hosts with db_url and the key fetch the same verified database.
    let url = format!("http://127.0.0.1:{}/berth-advisories.tar", server.port);
    for host in ["host-a", "host-b"] {
        let db = root.join(host).join("advisories");
        let config = root.join(format!("{host}.toml"));
        std::fs::write(
            &config,
            format!(
                "scan_db = \"{}\"\ndb_url = \"{url}\"\ndb_public_key = \"{public_key}\"\n",
                db.display()
            ),
        )
        .expect("config");
        let out = berth(&config, &["db", "update", "--if-configured"]);
        assert!(out.status.success(), "{host}: {}", text(&out));
        assert!(
            text(&out).contains("checksum and signature verified"),
            "{host}: {}",
            text(&out)
        );
        assert_eq!(
            std::fs::read(db.join("berth-advisories.json")).expect("fetched metadata"),
            std::fs::read(admin_db.join("berth-advisories.json")).expect("admin metadata"),
            "{host} holds what the admin published"
        );
    }

    // The signature goes missing: the host keeps what it has and says which check failed.
    std::fs::remove_file(publish_dir.join("berth-advisories.tar.minisig")).expect("unsign");
    let config = root.join("host-a.toml");
    let before =
        std::fs::read(root.join("host-a/advisories/berth-advisories.json")).expect("metadata");
    let out = berth(&config, &["db", "update", "--if-configured"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("download of the signature file") && text(&out).contains("unchanged"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read(root.join("host-a/advisories/berth-advisories.json")).expect("metadata"),
        before
    );
}

/// Host B of the fleet tests: the identities and state `scripts/test-all` makes with a second
/// run of `integration/host/setup-host.sh` (and its test images with `build-test-images.sh`).
const HOST_B_STATE: &str = "/var/lib/berth-b";

fn require_host_b() {
    berth_integration::require_host();
    for user in ["berth-runner-b", "berth-b-job-0", "berth-b-job-1"] {
        assert!(
            nix::unistd::User::from_name(user).ok().flatten().is_some(),
            "user {user} is missing: run BERTH_RUNNER_USER=berth-runner-b BERTH_JOB_USER_PREFIX=berth-b-job- BERTH_STATE_DIR={HOST_B_STATE} BERTH_JOB_SLOTS=2 integration/host/setup-host.sh (scripts/test-all does)"
        );
    }
    assert!(
        Path::new(HOST_B_STATE).join("images").is_dir(),
        "{HOST_B_STATE} is not set up: run setup-host.sh and build-test-images.sh for host B (scripts/test-all does)"
    );
}

/// Host B's berth config: its own identities and state directory (so its own base store).
fn host_b_config(rest: &str) -> String {
    format!(
        "user = \"berth-runner-b\"\njob_users = [\"berth-b-job-0\", \"berth-b-job-1\"]\nstate_dir = \"{HOST_B_STATE}\"\n{rest}"
    )
}

/// Pushes to `image` a one-layer busybox image whose layer no base store has (a file in it is
/// new each time): a host pulling it must fetch every blob, so a mirror that served the pull
/// keeps them all. Made in a throwaway store of root's, never berth's.
fn push_image_no_store_has(image: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = dir.path().join("rootfs");
    for sub in ["bin", "etc", "root", "tmp", "usr/bin"] {
        std::fs::create_dir_all(rootfs.join(sub)).expect("rootfs dir");
    }
    std::fs::set_permissions(
        rootfs.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .expect("chmod tmp");
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("busybox-static is installed by integration/host/setup-host.sh");
    let applets = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .expect("applet link");
        }
    }
    std::os::unix::fs::symlink("/bin/env", rootfs.join("usr/bin/env")).expect("env link");
    std::fs::write(
        rootfs.join("etc/fleet-nonce"),
        format!("{:?}", std::time::SystemTime::now()),
    )
    .expect("nonce");
    let tar = dir.path().join("rootfs.tar");
    run(
        "tar",
        &["-C", "rootfs", "-cf", "rootfs.tar", "."],
        dir.path(),
    );
    let store = |args: &[&str]| {
        let mut all = vec![
            "--root",
            "store/root",
            "--runroot",
            "store/run",
            "--storage-driver",
            "vfs",
        ];
        all.extend_from_slice(args);
        run("podman", &all, dir.path());
    };
    store(&[
        "import",
        "-q",
        tar.to_str().expect("utf-8"),
        "localhost/fleet:new",
    ]);
    store(&[
        "push",
        "-q",
        "--tls-verify=false",
        "localhost/fleet:new",
        image,
    ]);
    // The throwaway store's layers are root's, with the ids of a user namespace: unshare
    // is not needed to remove them as root.
    store(&["rmi", "-a", "-f"]);
}

#[test]
fn base_images_come_through_the_pull_through_mirror_when_the_origin_is_gone() {
    use berth_integration::{FakeRunner, Registry, cleaned, ok, payload};
    require_host_b();
    let origin = Registry::start_open();
    let mirror = Registry::start_mirror_of(&origin.address);
    let image = format!("{}/berth/fleet:mirrored", origin.address);
    push_image_no_store_has(&image);
    let (o, m) = (&origin.address, &mirror.address);
    let pulls = format!("pull_policy = [\"always\"]\ninsecure_registries = [\"{o}\", \"{m}\"]\n");
    let mirrors = format!("[registry_mirrors]\n\"{o}\" = [\"{m}\"]\n");
    let runs = |job: &mut FakeRunner| {
        ok(&job.stage(&["config"]));
        ok(&job.stage(&["prepare"]));
        let r = job.run("build_script", "echo mirrored-image-runs");
        ok(&r);
        assert!(r.stdout.contains("mirrored-image-runs"), "{}", r.all());
    };

    // Host A pulls through the mirror, which keeps what it fetched.
    let mut job = FakeRunner::new(payload(&image)).with_config(&format!("{pulls}{mirrors}"));
    runs(&mut job);
    cleaned(job);

    drop(origin);
    assert!(
        mirror.has_manifest("berth/fleet", "mirrored"),
        "the mirror did not keep what host A pulled through it"
    );
    // Without the mirror host B cannot get the image any more: the origin is gone.
    let mut job = FakeRunner::new(payload(&image)).with_config(&host_b_config(&pulls));
    ok(&job.stage(&["config"]));
    let r = job.stage(&["prepare"]);
    assert_eq!(
        r.code,
        2,
        "the origin is gone, a pull from it fails: {}",
        r.all()
    );
    ok(&job.stage(&["cleanup"]));
    // With it, host B's own base store gets the image from the mirror.
    let mut job =
        FakeRunner::new(payload(&image)).with_config(&host_b_config(&format!("{pulls}{mirrors}")));
    runs(&mut job);
    let key = job.key();
    ok(&job.stage(&["cleanup"]));
    assert!(
        !Path::new(HOST_B_STATE).join("jobs").join(&key).exists(),
        "host B's job directory outlived cleanup"
    );
}
