//! Image trust on real Podman: images pushed to a real registry (Debian's docker-registry on
//! loopback) and signed with the real cosign (built from the Go module proxy by
//! `integration/peers/build-cosign.sh`), run through the berth binary as gitlab-runner runs it.
//! A signed image runs; an unsigned one, one signed with another key, a tag moved to an
//! unsigned manifest after signing, an unsigned image already in the base store and a rejected
//! scope each fail as the job's fault (BUILD) with their own message. With `sign_passed_images`,
//! berth signs what a job pushed that passed the scan, and nothing else.

#![expect(
    clippy::disallowed_methods,
    reason = "the test plays the image publisher: podman push and cosign sign on the host"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_integration::{FakeRunner, Registry, base_podman, cleaned, ok, payload, require_host};

const COSIGN_PEER: &str = "/var/cache/berth-peers/cosign";
const BUSYBOX_IMAGE: &str = "localhost/busybox:latest";
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

/// A vulnerable package the scan knows of (Debian's libberthdemo 1.0-1, fixed in 1.0-2).
const VULN_RECORD: &str = r#"{"id":"CVE-2099-4343","modified":"2026-11-20T00:00:00Z","published":"2026-11-01T00:00:00Z",
"summary":"demo","database_specific":{"severity":"CRITICAL"},
"affected":[{"package":{"ecosystem":"Debian:12","name":"libberthdemo"},
"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.0-2"}]}]}]}"#;

/// Builds `tag` inside the job: busybox plus `marker`, and with `vulnerable` a dpkg status that
/// lists the vulnerable package.
fn build_script(tag: &str, marker: &str, vulnerable: bool) -> String {
    let status = if vulnerable {
        "printf 'Package: libberthdemo\\nStatus: install ok installed\\nVersion: 1.0-1\\nArchitecture: amd64\\n\\n' > status\nprintf 'ID=debian\\nVERSION_ID=\"12\"\\n' > os-release\nprintf 'COPY status /var/lib/dpkg/status\\nCOPY os-release /etc/os-release\\n' >> Containerfile\n"
    } else {
        ""
    };
    format!(
        "mkdir -p /builds/group/project /tmp/ctx-{marker} && cd /tmp/ctx-{marker}\necho {marker} > marker\nprintf 'FROM localhost/busybox:latest\\nCOPY marker /marker\\n' > Containerfile\n{status}podman build -q -t {tag} . >/dev/null && echo built-{marker}"
    )
}

fn cosign_verifies(public: &Path, image: &str) -> (bool, String) {
    cosign_checks(&["verify"], public, image)
}

/// `cosign verify-attestation --type cyclonedx`: berth's SBOM attestation of `image`.
fn cosign_verifies_sbom(public: &Path, image: &str) -> (bool, String) {
    cosign_checks(
        &["verify-attestation", "--type", "cyclonedx"],
        public,
        image,
    )
}

fn cosign_checks(command: &[&str], public: &Path, image: &str) -> (bool, String) {
    let out = Command::new(cosign())
        .args(command)
        .arg("--key")
        .arg(public)
        .args([
            "--insecure-ignore-tlog=true",
            "--allow-insecure-registry",
            "--allow-http-registry",
            image,
        ])
        .env("HOME", std::env::temp_dir())
        .output()
        .expect("cosign verify");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn berth_signs_what_a_job_pushed_that_passed_and_nothing_else() {
    require_host();
    let registry = Registry::start_open();
    let keys = tempfile::tempdir().expect("keys");
    let private = keys.path().join("berth.key");
    let public = keys.path().join("berth.pub");
    run(
        Command::new("sh").arg("-c").arg(format!(
            "openssl ecparam -genkey -name prime256v1 | openssl pkcs8 -topk8 -nocrypt -out {} && openssl ec -in {} -pubout -out {} 2>/dev/null && chmod 600 {}",
            private.display(),
            private.display(),
            public.display(),
            private.display()
        )),
        "openssl key pair",
    );
    let db = berth_integration::advisory_db(&[("CVE-2099-4343.json", VULN_RECORD)]);
    let config = format!(
        "network = \"host\"\ninsecure_registries = [\"{r}\"]\nscan_db = \"{d}\"\nsign_passed_images = true\nsigning_key = \"{k}\"\n",
        r = registry.address,
        d = db.path().display(),
        k = private.display()
    );
    let r = &registry.address;
    let push = |local: &str, remote: &str| {
        format!("\npodman push -q --tls-verify=false {local} {remote} && echo pushed")
    };

    // Passes the scan and is pushed: signed, and cosign verifies it with berth's public key.
    let passed = format!("{r}/team/passed:1");
    let mut job = FakeRunner::new(payload("localhost/build-tools:latest")).with_config(&config);
    ok(&job.stage(&["config"]));
    ok(&job.stage(&["prepare"]));
    let out = job.run(
        "build_script",
        &format!(
            "{}{}\ncat {} 2>&1 || echo no-key-here",
            build_script(&passed, "passed", false),
            push(&passed, &passed),
            private.display()
        ),
    );
    ok(&out);
    assert!(
        out.stdout.contains("no-key-here"),
        "the job read berth's key: {}",
        out.all()
    );
    assert!(
        out.stdout.contains(&format!("berth signed {passed}")),
        "{}",
        out.all()
    );
    let (verified, said) = cosign_verifies(&public, &passed);
    assert!(verified, "cosign does not verify berth's signature: {said}");
    assert!(
        out.stdout.contains("and attested its CycloneDX SBOM"),
        "{}",
        out.all()
    );
    let (verified, said) = cosign_verifies_sbom(&public, &passed);
    assert!(
        verified,
        "cosign does not verify berth's SBOM attestation: {said}"
    );
    assert!(
        said.contains("\"payloadType\":\"application/vnd.in-toto+json\""),
        "the attestation cosign verified: {said}"
    );

    // Blocked by the scan: nothing is signed, though the job pushed it.
    let vulnerable = format!("{r}/team/vulnerable:1");
    let out = job.run(
        "build_script",
        &format!(
            "{}{}",
            build_script(&vulnerable, "vulnerable", true),
            push(&vulnerable, &vulnerable)
        ),
    );
    assert_eq!(out.code, 1, "the scan blocks it: {}", out.all());
    let (verified, said) = cosign_verifies(&public, &vulnerable);
    assert!(!verified, "a blocked image was signed: {said}");

    // The job pushes other bytes under the name of an image that passed: not signed.
    let swapped = format!("{r}/team/swapped:1");
    let out = job.run(
        "build_script",
        &format!(
            "{}{}",
            build_script(&swapped, "swapped", false),
            push(BUSYBOX_IMAGE, &swapped)
        ),
    );
    ok(&out);
    assert!(
        out.stdout.contains("is not the image berth scanned"),
        "{}",
        out.all()
    );
    let (verified, said) = cosign_verifies(&public, &swapped);
    assert!(!verified, "other bytes were signed: {said}");
    let (verified, said) = cosign_verifies_sbom(&public, &swapped);
    assert!(
        !verified,
        "other bytes got berth's SBOM attestation: {said}"
    );
    cleaned(job);
}
