//! Image trust on real Podman: images pushed to a real registry (Debian's docker-registry on
//! loopback) and signed with the real cosign (built from the Go module proxy by
//! `integration/peers/build-cosign.sh`), run through the berth binary as gitlab-runner runs it.
//! A signed image runs; an unsigned one, one signed with another key, a tag moved to an
//! unsigned manifest after signing, an unsigned image already in the base store and a rejected
//! scope each fail as the job's fault (BUILD) with their own message.

#![expect(
    clippy::disallowed_methods,
    reason = "the test plays the image publisher: podman push and cosign sign on the host"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_integration::{FakeRunner, Registry, base_podman, cleaned, ok, payload, require_host};

const COSIGN_PEER: &str = "/var/cache/berth-peers/cosign";
const PASSWORD: &str = "berth-test-key-password";

fn cosign() -> PathBuf {
    let binary = Path::new(COSIGN_PEER).join("cosign");
    if binary.exists() {
        return binary;
    }
    match std::fs::read_to_string(Path::new(COSIGN_PEER).join("cosign.unavailable")) {
        Ok(refusal) => panic!("the cosign peer cannot be had: {refusal}"),
        Err(_) => panic!("no cosign peer: run integration/peers/build-cosign.sh"),
    }
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The publisher: root's own Podman store, and cosign keys.
struct Publisher {
    dir: tempfile::TempDir,
    registry: String,
}

impl Publisher {
    fn podman(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            .args(["--storage-driver", "overlay"])
            .env("HOME", self.dir.path());
        cmd
    }

    /// Pushes busybox, with `label` to make it an image of its own, as `repo:tag`.
    fn push(&self, repo: &str, label: &str) -> String {
        let local = format!("localhost/publish-{label}:1");
        run(
            self.podman().args([
                "import",
                "-q",
                "--change",
                &format!("LABEL publish={label}"),
                "/var/cache/berth-test/busybox.tar",
                &local,
            ]),
            "import busybox",
        );
        let remote = format!("{}/{repo}:1", self.registry);
        run(
            self.podman()
                .args(["push", "-q", "--tls-verify=false", &local, &remote]),
            "push",
        );
        remote
    }

    /// A cosign key pair named `name`; returns the public key's path.
    fn keys(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).expect("key dir");
        run(
            Command::new(cosign())
                .arg("generate-key-pair")
                .current_dir(&dir)
                .env("COSIGN_PASSWORD", PASSWORD),
            "cosign generate-key-pair",
        );
        let public = dir.join("cosign.pub");
        // berth reads it as root; the store identity never needs it.
        berth_integration::make_readable_by_all(&public);
        public
    }

    fn sign(&self, key: &str, image: &str) {
        run(
            Command::new(cosign())
                .args(["sign", "--key"])
                .arg(self.dir.path().join(key).join("cosign.key"))
                .args([
                    "--tlog-upload=false",
                    "--allow-insecure-registry",
                    "--allow-http-registry",
                    "-y",
                    image,
                ])
                .env("COSIGN_PASSWORD", PASSWORD)
                .env("HOME", self.dir.path()),
            "cosign sign",
        );
    }
}

fn refused(config: &str, image: &str, expected: &[&str]) {
    let mut job = FakeRunner::new(payload(image)).with_config(config);
    ok(&job.stage(&["config"]));
    let r = job.stage(&["prepare"]);
    assert_eq!(r.code, 1, "{image}: the job's fault: {}", r.all());
    for text in expected {
        assert!(
            r.stderr.contains(text),
            "{image}: {text:?} missing: {}",
            r.all()
        );
    }
    cleaned(job);
}

#[test]
fn only_images_signed_with_the_scopes_key_run_and_every_other_fails_with_its_reason() {
    require_host();
    let registry = Registry::start_open();
    let publisher = Publisher {
        dir: tempfile::tempdir().expect("tmp"),
        registry: registry.address.clone(),
    };
    let trusted = publisher.keys("trusted");
    publisher.keys("other");
    let signed = publisher.push("team/signed", "signed");
    publisher.sign("trusted", &signed);
    let unsigned = publisher.push("team/unsigned", "unsigned");
    let other = publisher.push("team/other", "other");
    publisher.sign("other", &other);
    let moved = publisher.push("team/moved", "moved-before");
    publisher.sign("trusted", &moved);
    // After signing, the tag is moved to a manifest no one signed.
    publisher.push("team/moved", "moved-after");
    let prepulled = publisher.push("team/prepulled", "prepulled");
    let blocked = publisher.push("blocked/app", "blocked");

    let config = format!(
        "insecure_registries = [\"{r}\"]\npull_policy = [\"if-not-present\"]\n\n[[image_trust]]\nscope = \"default\"\npolicy = \"accept\"\n\n[[image_trust]]\nscope = \"{r}/team\"\npolicy = \"sigstore\"\nkeys = [\"{k}\"]\n\n[[image_trust]]\nscope = \"{r}/blocked\"\npolicy = \"reject\"\n",
        r = registry.address,
        k = trusted.display()
    );
    // Someone put the unsigned image into the base store before the policy said anything.
    let pulled = base_podman(&["pull", "-q", "--tls-verify=false", &prepulled]);
    assert!(
        pulled.status.success(),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );

    let mut job = FakeRunner::new(payload(&signed)).with_config(&config);
    ok(&job.stage(&["config"]));
    ok(&job.stage(&["prepare"]));
    let r = job.run("build_script", "echo signed-image-runs");
    ok(&r);
    assert!(r.stdout.contains("signed-image-runs"), "{}", r.all());
    cleaned(job);

    let team_scope = format!("scope {}/team", registry.address);
    for (image, detail) in [
        (&unsigned, "no signature is attached"),
        (&other, "a signature by another key"),
        (&moved, "no signature is attached"),
        (&prepulled, "no signature is attached"),
    ] {
        let named = format!("image {image} is not trusted");
        refused(&config, image, &[&named, &team_scope, detail]);
    }
    refused(
        &config,
        &blocked,
        &[
            &format!("scope {}/blocked", registry.address),
            "admits no image",
        ],
    );
}
