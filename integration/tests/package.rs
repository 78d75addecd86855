//! The Debian package (`packaging/`, built by `cargo deb` before the tiers) on a clean Debian 12
//! root made by debootstrap (`integration/peers/debian-root.sh`): apt installs it with its
//! dependencies, `berth doctor` is all ok, one job runs, the timers' units verify and their script
//! goes on past a failing config, reinstall and upgrade keep an edited config, remove keeps the
//! state, and purge leaves the root exactly as it was before the install.
//!
//! A plain chroot cannot run rootless Podman: the kernel refuses `unshare(CLONE_NEWUSER)` to a
//! process whose root is not its mount namespace's root (unshare(2): "EPERM ... the caller is in a
//! chroot environment"). So the root gets a mount and PID namespace of its own and is entered with
//! `pivot_root` (the root is then the namespace's root, and user namespaces work); every command
//! runs in it through `nsenter`. Its mounts (`/proc`, `/sys`, `/dev`, a tmpfs `/run`, the apt
//! archive cache) exist only in that namespace, so they all go when it ends: the guard kills the
//! namespace's init, also when a test fails. The host's `/run/user` and `/var/lib/berth` are
//! never touched: the root has its own.

#![expect(
    clippy::disallowed_methods,
    reason = "the test plays the admin: it runs apt, dpkg and berth in the Debian root itself"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use berth_integration::{RUNNER_USER, base_podman, berth_binary, payload, require_host};

const PEERS: &str = "/var/cache/berth-peers";
const ROOT_SCRIPT: &str = "integration/peers/debian-root.sh";
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const IMAGES: [&str; 2] = ["localhost/busybox:latest", "localhost/berth-helper:latest"];

/// The cargo target directory the test binary was built in (`target/debug/deps/..` up two).
fn target_dir() -> PathBuf {
    let berth = berth_binary();
    berth
        .parent()
        .and_then(Path::parent)
        .expect("target dir above the berth binary")
        .to_owned()
}

/// The one `berth_*_amd64.deb` in `dir`, failing with how to build it when there is none.
fn deb_in(dir: &Path) -> PathBuf {
    let debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("berth_") && n.ends_with("_amd64.deb"))
        })
        .collect();
    assert!(
        debs.len() == 1,
        "want exactly one berth_*_amd64.deb in {}, found {debs:?}: build it with \
         `cargo deb --locked -p berth` and the upgrade with `--no-build --deb-version` \
         (scripts/test-all does both)",
        dir.display()
    );
    debs.into_iter().next().expect("one deb")
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn shown(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A fresh copy of the cached clean Debian 12 root, entered through a namespace of its own.
struct DebianRoot {
    dir: tempfile::TempDir,
    /// `unshare`, parent of the namespace's init.
    holder: Child,
    /// The namespace's init (pid 1 inside), as the host sees it.
    init: i32,
}

/// Runs inside the new mount and PID namespaces (host binaries until `pivot_root`): mounts what
/// the root needs, makes the root the namespace's root, and stays as its init.
const HOLDER: &str = r#"set -e
root=$1 archives=$2
mount --make-rprivate /
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=0755 tmpfs "$root/run"
mount --bind "$archives" "$root/var/cache/apt/archives"
cd "$root"
mkdir .host
pivot_root . .host
umount -l /.host
rmdir /.host
echo ready
exec sleep infinity
"#;

impl DebianRoot {
    fn new() -> Self {
        let made = run(&mut Command::new(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/debian-root.sh"),
        ));
        assert!(
            made.status.success(),
            "{ROOT_SCRIPT} could not make the clean Debian 12 root (needs debootstrap and \
             deb.debian.org):\n{}",
            shown(&made)
        );
        let tarball = String::from_utf8_lossy(&made.stdout).trim().to_owned();
        let dir = tempfile::Builder::new()
            .prefix("berth-package-root")
            .tempdir_in("/var/tmp")
            .expect("temp dir under /var/tmp");
        let root = dir.path();
        let unpacked =
            run(Command::new("tar")
                .arg("-C")
                .arg(root)
                .args(["--numeric-owner", "-xf", &tarball]));
        assert!(
            unpacked.status.success(),
            "unpack {tarball}: {}",
            shown(&unpacked)
        );
        // The root reaches deb.debian.org as the host does: its resolver, sources and apt's
        // network settings (no other apt configuration).
        let copied = run(Command::new("sh")
            .arg("-c")
            .arg(
                r#"set -e; r=$1
cp /etc/resolv.conf "$r/etc/resolv.conf"
rm -f "$r/etc/apt/sources.list"
[ ! -f /etc/apt/sources.list ] || cp /etc/apt/sources.list "$r/etc/apt/"
[ ! -d /etc/apt/sources.list.d ] || cp -r /etc/apt/sources.list.d/. "$r/etc/apt/sources.list.d/"
for f in /etc/apt/apt.conf.d/*; do
  if grep -q '^Acquire::' "$f"; then cp "$f" "$r/etc/apt/apt.conf.d/"; fi
done"#,
            )
            .arg("sh")
            .arg(root));
        assert!(copied.status.success(), "apt settings: {}", shown(&copied));
        let archives = Path::new(PEERS).join("debian-root/apt-archives");
        std::fs::create_dir_all(archives.join("partial")).expect("apt archive cache");

        let mut holder = Command::new("unshare")
            .args([
                "--mount",
                "--pid",
                "--fork",
                "--kill-child",
                "--",
                "/bin/sh",
                "-c",
                HOLDER,
                "sh",
            ])
            .arg(root)
            .arg(&archives)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn unshare");
        let mut line = String::new();
        let stdout = holder.stdout.take().expect("holder stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("read the holder's readiness");
        if line.trim() != "ready" {
            let out = holder.wait_with_output().expect("holder output");
            panic!("the root's namespace could not be set up:\n{}", shown(&out));
        }
        let pid = holder.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .expect("the holder's child");
        let init = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the namespace's init");
        Self { dir, holder, init }
    }

    fn path(&self, inside: &str) -> PathBuf {
        self.dir.path().join(inside.trim_start_matches('/'))
    }

    /// Runs `script` with sh inside the root, as root, with a clean environment.
    fn sh(&self, script: &str) -> Output {
        run(Command::new("nsenter")
            .arg(format!("--target={}", self.init))
            .args(["--mount", "--pid", "--root", "--wd", "--"])
            .args([
                "/usr/bin/env",
                "-i",
                &format!("PATH={PATH}"),
                "LANG=C.UTF-8",
            ])
            .args(["DEBIAN_FRONTEND=noninteractive", "/bin/sh", "-c", script]))
    }

    /// Like [`Self::sh`], failing with `what` and the output unless it succeeds; its stdout.
    fn ok(&self, what: &str, script: &str) -> String {
        let out = self.sh(script);
        assert!(out.status.success(), "{what}: {}", shown(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Everything an install could leave: accounts, subordinate ids, installed packages and
    /// every path outside what apt, dpkg and logs keep for themselves.
    fn snapshot(&self) -> Snapshot {
        let read = |p: &str| std::fs::read_to_string(self.path(p)).unwrap_or_default();
        let mut paths = BTreeSet::new();
        let skipped = [
            "proc",
            "sys",
            "dev",
            "run",
            "tmp",
            "var/tmp",
            "var/log",
            "var/cache",
            "var/lib/apt",
            "var/lib/dpkg",
        ];
        let mut stack = vec![self.dir.path().to_owned()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                let rel = path
                    .strip_prefix(self.dir.path())
                    .expect("below the root")
                    .to_string_lossy()
                    .into_owned();
                // shadow-utils' backups of the account files (passwd-, subuid-, ...).
                if skipped.contains(&rel.as_str())
                    || (rel.starts_with("etc/") && rel.ends_with('-'))
                {
                    continue;
                }
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(path);
                }
                paths.insert(rel);
            }
        }
        Snapshot {
            accounts: ["passwd", "group", "shadow", "gshadow", "subuid", "subgid"]
                .iter()
                .map(|f| (format!("/etc/{f}"), read(&format!("etc/{f}"))))
                .collect(),
            packages: self.ok(
                "installed packages",
                "dpkg-query -W -f '${Package} ${Status}\\n'",
            ),
            paths,
        }
    }
}

impl Drop for DebianRoot {
    fn drop(&mut self) {
        // The namespace's init dies by SIGKILL from the host; every process inside dies with it,
        // and with the last of them the mount namespace and all its mounts.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.init),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    accounts: Vec<(String, String)>,
    packages: String,
    paths: BTreeSet<String>,
}

/// What differs between two snapshots, for the failure message.
fn differences(before: &Snapshot, after: &Snapshot) -> String {
    let mut out = Vec::new();
    for ((file, was), (_, now)) in before.accounts.iter().zip(&after.accounts) {
        if was != now {
            out.push(format!("{file} was:\n{was}now:\n{now}"));
        }
    }
    if before.packages != after.packages {
        out.push(format!(
            "packages were:\n{}now:\n{}",
            before.packages, after.packages
        ));
    }
    let added: Vec<&String> = after.paths.difference(&before.paths).collect();
    let removed: Vec<&String> = before.paths.difference(&after.paths).collect();
    if !added.is_empty() {
        out.push(format!("added: {added:#?}"));
    }
    if !removed.is_empty() {
        out.push(format!("removed: {removed:#?}"));
    }
    out.join("\n")
}

/// The package names of a control field (`Depends`, `Recommends`), without versions; the first
/// of each set of alternatives.
fn control_packages(deb: &Path, field: &str) -> Vec<String> {
    let out = run(Command::new("dpkg-deb").arg("-f").arg(deb).arg(field));
    assert!(out.status.success(), "dpkg-deb -f {field}: {}", shown(&out));
    String::from_utf8_lossy(&out.stdout)
        .split(',')
        .filter_map(|item| {
            let first = item.split('|').next()?.trim();
            let name = first.split([' ', '(']).next()?.trim();
            (!name.is_empty()).then(|| name.to_owned())
        })
        .collect()
}

fn deb_version(deb: &Path) -> String {
    let out = run(Command::new("dpkg-deb").arg("-f").arg(deb).arg("Version"));
    assert!(out.status.success(), "dpkg-deb -f Version: {}", shown(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The gitlab-runner peer (integration/fake-gitlab/peers/build-gitlab-runner.sh): a runner host
/// has gitlab-runner, and `berth doctor` checks for it.
fn gitlab_runner_peer() -> PathBuf {
    std::fs::read_dir(PEERS)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("gitlab-runner-") && n.ends_with("-stubbed"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no gitlab-runner peer in {PEERS}: run integration/fake-gitlab/peers/build-gitlab-runner.sh \
                 (scripts/test-all does)"
            )
        })
}

/// The job's environment as gitlab-runner sets it for a custom executor (see `FakeRunner`).
fn job_env(job_id: u64, token: &str, key: Option<&str>) -> String {
    let mut env = vec![
        "TMPDIR=/tmp/runner".to_owned(),
        "BUILD_FAILURE_EXIT_CODE=1".to_owned(),
        "SYSTEM_FAILURE_EXIT_CODE=2".to_owned(),
        "BUILD_EXIT_CODE_FILE=/tmp/runner/build_exit_code".to_owned(),
        "JOB_RESPONSE_FILE=/tmp/runner/response.json".to_owned(),
        format!("CUSTOM_ENV_CI_RUNNER_SHORT_TOKEN={token}"),
        format!("CUSTOM_ENV_CI_JOB_ID={job_id}"),
        "CUSTOM_ENV_CI_JOB_STATUS=running".to_owned(),
        "CUSTOM_ENV_CI_BUILDS_DIR=/builds".to_owned(),
        "CUSTOM_ENV_CI_PROJECT_DIR=/builds/group/project".to_owned(),
    ];
    // `job_env` from the config stage, on every later stage.
    env.extend(key.map(|key| format!("BERTH_JOB_KEY={key}")));
    env.join(" ")
}

/// Copies the test images from the host's base store into the root's, as its store identity
/// with berth's storage settings.
fn load_images(root: &DebianRoot) {
    let staging = tempfile::Builder::new()
        .prefix("berth-package-images")
        .tempdir_in("/var/tmp")
        .expect("staging dir");
    berth_integration::give_to_runner_user(staging.path());
    let archive = staging.path().join("images.tar");
    let archive_arg = archive.to_string_lossy().into_owned();
    let mut args = vec!["save", "-m", "-o", archive_arg.as_str()];
    args.extend(IMAGES);
    let saved = base_podman(&args);
    assert!(
        saved.status.success(),
        "podman save {IMAGES:?} from the host's base store (integration/images/build-test-images.sh \
         makes them): {}",
        shown(&saved)
    );
    std::fs::rename(&archive, root.path("tmp/images.tar")).expect("move the images into the root");
    root.ok(
        "podman load into the root's base store",
        &format!(
            r#"set -e
uid=$(id -u {RUNNER_USER})
chmod 0644 /tmp/images.tar
install -d -m 0700 -o {RUNNER_USER} -g {RUNNER_USER} /run/user/$uid /run/user/$uid/berth
runuser -u {RUNNER_USER} -- env -C / XDG_RUNTIME_DIR=/run/user/$uid HOME=/home/{RUNNER_USER} \
  CONTAINERS_CONF=/etc/berth/podman/containers/containers.conf podman --root /var/lib/berth/images \
  --runroot /run/user/$uid/berth/base-run --storage-driver overlay --cgroup-manager cgroupfs \
  --events-backend file load -i /tmp/images.tar
rm /tmp/images.tar"#
        ),
    );
}

/// One job through the installed berth, stage by stage as gitlab-runner runs them.
fn run_one_job(root: &DebianRoot) {
    let job_id: u64 = 4_242_001;
    let token = "pkgtest";
    let mut job = payload(IMAGES[0]);
    job["id"] = serde_json::json!(job_id);
    job["token"] = serde_json::json!("glcbt-package-token");
    std::fs::create_dir_all(root.path("tmp/runner/build")).expect("runner dir");
    std::fs::write(root.path("tmp/runner/response.json"), job.to_string()).expect("payload");
    std::fs::write(
        root.path("tmp/runner/build/script"),
        "#!/usr/bin/env bash\nset -eo pipefail\necho \"job ran in the package's sandbox: $((40 + 2))\"\n",
    )
    .expect("script");
    root.ok(
        "runner dir",
        "chmod -R go-rwx /tmp/runner && chmod 0700 /tmp/runner/build/script",
    );

    let config = root.ok(
        "berth config",
        &format!("env {} berth config", job_env(job_id, token, None)),
    );
    let value: serde_json::Value = serde_json::from_str(&config).expect("config prints JSON");
    let key = value["job_env"]["BERTH_JOB_KEY"]
        .as_str()
        .unwrap_or_else(|| panic!("config printed no job key: {config}"))
        .to_owned();
    let env = job_env(job_id, token, Some(&key));
    root.ok("berth prepare", &format!("env {env} berth prepare"));
    let ran = root.sh(&format!(
        "env {env} berth run /tmp/runner/build/script build_script"
    ));
    let cleaned = root.sh(&format!("env {env} berth cleanup"));
    assert!(ran.status.success(), "berth run: {}", shown(&ran));
    assert!(
        String::from_utf8_lossy(&ran.stdout).contains("job ran in the package's sandbox: 42")
            || String::from_utf8_lossy(&ran.stderr)
                .contains("job ran in the package's sandbox: 42"),
        "the job's output is missing: {}",
        shown(&ran)
    );
    assert!(
        cleaned.status.success(),
        "berth cleanup: {}",
        shown(&cleaned)
    );
    assert!(
        !root.path(&format!("var/lib/berth/jobs/{key}")).exists(),
        "cleanup left the job's directory"
    );
}

#[test]
fn the_package_installs_on_clean_debian_runs_a_job_keeps_edited_config_and_purges_to_nothing() {
    require_host();
    let deb = deb_in(&target_dir().join("debian"));
    let upgrade = deb_in(&target_dir().join("debian/upgrade"));
    let root = DebianRoot::new();

    // Found already there: purge must keep them.
    root.ok(
        "what the admin had",
        "echo alice:100000:65536 >>/etc/subuid && echo alice:100000:65536 >>/etc/subgid \
         && mkdir -p /var/lib/berth && echo mine >/var/lib/berth/notes",
    );
    std::fs::copy(
        gitlab_runner_peer(),
        root.path("usr/local/bin/gitlab-runner"),
    )
    .expect("gitlab-runner");
    root.ok("apt-get update", "apt-get update -qq");
    std::fs::copy(&deb, root.path("tmp").join(deb.file_name().expect("name")))
        .expect("copy the deb");
    let deb_name = deb
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();

    // On the clean root apt resolves every dependency from Debian.
    let simulated = root.ok(
        "apt-get install --simulate",
        &format!("cd /tmp && apt-get install -s ./{deb_name}"),
    );
    for dep in [
        "podman",
        "runc",
        "uidmap",
        "slirp4netns",
        "fuse-overlayfs",
        "catatonit",
    ] {
        assert!(
            simulated
                .lines()
                .any(|l| l.starts_with(&format!("Inst {dep} "))),
            "apt would not install {dep} with the package:\n{simulated}"
        );
    }
    // The dependencies go in first, so that what berth adds and purge removes can be compared.
    let mut deps = control_packages(&deb, "Depends");
    deps.extend(control_packages(&deb, "Recommends"));
    // A runner host has systemd (not running here: the timers are only enabled and verified).
    root.ok(
        "systemd",
        "apt-get install -y -qq --no-install-recommends systemd",
    );
    root.ok(
        "the dependencies",
        &format!("apt-get install -y -qq {}", deps.join(" ")),
    );
    let before = root.snapshot();

    let installed = root.ok(
        "apt install ./berth_*.deb",
        &format!("cd /tmp && apt install -y ./{deb_name}"),
    );
    assert!(
        installed.contains("berth: berth doctor"),
        "postinst ran no doctor:\n{installed}"
    );
    let doctor = root.ok("berth doctor", "berth doctor");
    let not_ok: Vec<&str> = doctor.lines().filter(|l| !l.starts_with("ok ")).collect();
    assert!(not_ok.is_empty(), "berth doctor is not all ok:\n{doctor}");

    // The units as installed, verified offline by the root's own systemd (not running), and
    // the timers enabled.
    let verified = root.sh(
        "cd /lib/systemd/system && systemd-analyze verify berth-reap.service berth-reap.timer \
         berth-db-update.service berth-db-update.timer",
    );
    assert!(
        verified.status.success() && verified.stdout.is_empty() && verified.stderr.is_empty(),
        "systemd-analyze verify: {}",
        shown(&verified)
    );
    for timer in ["berth-reap.timer", "berth-db-update.timer"] {
        assert!(
            // A link into /lib, which the host resolves in its own root: the link itself.
            std::fs::symlink_metadata(
                root.path("etc/systemd/system/timers.target.wants")
                    .join(timer)
            )
            .is_ok(),
            "{timer} is not enabled"
        );
    }

    // The timers' script: every config, past a failing one, failing at the end.
    std::fs::write(
        root.path("etc/berth/config.d/a-broken.toml"),
        "no_such_key = 1\n",
    )
    .expect("broken config");
    let each = root.sh("/usr/lib/berth/each-config reap");
    let stderr = String::from_utf8_lossy(&each.stderr);
    assert_eq!(
        each.status.code(),
        Some(1),
        "each-config with a broken config: {}",
        shown(&each)
    );
    assert!(
        stderr.contains("failed for: /etc/berth/config.d/a-broken.toml\n"),
        "{}",
        shown(&each)
    );
    assert!(
        stderr.contains("berth --config /etc/berth/config.toml reap\n")
            && !stderr.contains("/etc/berth/config.toml reap failed"),
        "the good config was not reaped after the broken one: {}",
        shown(&each)
    );
    std::fs::remove_file(root.path("etc/berth/config.d/a-broken.toml"))
        .expect("remove broken config");
    root.ok("each-config reap", "/usr/lib/berth/each-config reap");

    load_images(&root);
    run_one_job(&root);

    // An edited config survives reinstall and upgrade.
    let edit = "\n# the admin's edit\nstop_grace = 7\n";
    let config_path = root.path("etc/berth/config.toml");
    let mut edited = std::fs::read_to_string(&config_path).expect("config");
    edited.push_str(edit);
    std::fs::write(&config_path, &edited).expect("edit config");
    root.ok(
        "reinstall",
        &format!("cd /tmp && apt install -y --reinstall ./{deb_name}"),
    );
    assert_eq!(
        std::fs::read_to_string(&config_path).expect("config"),
        edited,
        "reinstall replaced the edited config"
    );
    let upgrade_name = upgrade
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    std::fs::copy(&upgrade, root.path("tmp").join(&upgrade_name)).expect("copy the upgrade");
    root.ok(
        "upgrade",
        &format!("cd /tmp && apt install -y ./{upgrade_name}"),
    );
    let version = root.ok("version", "dpkg-query -W -f '${Version}' berth");
    assert_eq!(
        version,
        deb_version(&upgrade),
        "the upgrade was not installed"
    );
    assert_eq!(
        std::fs::read_to_string(&config_path).expect("config"),
        edited,
        "the upgrade replaced the edited config"
    );
    root.ok("berth doctor after the upgrade", "berth doctor");

    // remove keeps state and config; purge removes exactly what postinst made.
    root.ok("apt-get remove", "apt-get remove -y -qq berth");
    for kept in [
        "etc/berth/config.toml",
        "var/lib/berth/images",
        "var/lib/berth-setup/created",
        "home/berth-runner",
    ] {
        assert!(root.path(kept).exists(), "remove took /{kept}");
    }
    assert!(
        !root.path("usr/bin/berth").exists(),
        "remove left /usr/bin/berth"
    );
    root.ok("apt-get purge", "apt-get purge -y -qq berth");
    let after = root.snapshot();
    assert!(
        before == after,
        "purge did not leave the root as it was before the install:\n{}",
        differences(&before, &after)
    );
    assert_eq!(
        std::fs::read_to_string(root.path("var/lib/berth/notes")).expect("notes"),
        "mine\n"
    );
}
