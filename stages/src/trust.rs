//! The admin's image trust at prepare: the files a verified pull reads (written by root, where
//! no job identity can write), and the record of which manifest digests a pull verified under
//! which policy. An image already in the shared base store is admitted under a signature scope
//! only when its digest was verified under the policy in force: a changed policy or key (a new
//! fingerprint) makes berth pull, and so verify, again, and a job that forbids the pull is
//! refused.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_config::Config;
use berth_config::trust::{ImageTrust, TrustRule};
use berth_sandbox::TrustFiles;

use crate::StageError;

/// What a prepare needs to check images: the trust policy, its files and its fingerprint.
#[derive(Debug, Clone)]
pub struct Gate {
    /// The admin's scopes.
    pub trust: ImageTrust,
    /// The files pulls are verified with.
    pub files: TrustFiles,
    /// SHA-256 of the rendered policy and every key it names: a verification counts only
    /// under the fingerprint it was made under.
    pub fingerprint: String,
    verified_dir: PathBuf,
}

fn root_dir(dir: &Path) -> Result<(), StageError> {
    std::fs::create_dir_all(dir).map_err(StageError::io(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(StageError::io(dir))
}

/// Writes `bytes` to `path` atomically (a temporary file beside it, then a rename), 0644.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StageError> {
    let temp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&temp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&temp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        StageError::io(path)(e)
    })
}

impl Gate {
    /// The gate of `config` (None without `[[image_trust]]`), its files written as root.
    pub fn of(config: &Config) -> Result<Option<Self>, StageError> {
        let Some(trust) = &config.image_trust else {
            return Ok(None);
        };
        let policy = serde_json::to_vec_pretty(&berth_sandbox::trust::policy_json(trust))
            .map_err(|e| StageError::io(Path::new("policy.json"))(std::io::Error::other(e)))?;
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        digest.update(&policy);
        for scope in &trust.scopes {
            if let TrustRule::Sigstore { key } = &scope.rule {
                let bytes = berth_sandbox::process::as_root(|| std::fs::read(key)).map_err(|e| StageError::HostLacks {
                    what: format!(
                        "the public key {} of image trust scope {} cannot be read: {e}",
                        key.display(),
                        scope.shown()
                    ),
                    fix: "put the PEM public key there (root's, readable by the store identity) or fix `keys` in [[image_trust]]".into(),
                })?;
                digest.update(key.as_os_str().as_encoded_bytes());
                digest.update(&bytes);
            }
        }
        let fingerprint: String = digest
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let dir = config.state_dir.join("trust");
        let home = dir.join("home");
        let registries_d = home.join(".config/containers/registries.d");
        let policy_path = dir.join(format!("policy-{}.json", &fingerprint[..16]));
        let verified_dir = dir.join("verified").join(&fingerprint);
        berth_sandbox::process::as_root(|| -> Result<(), StageError> {
            for d in [
                &dir,
                &home,
                &home.join(".config"),
                &home.join(".config/containers"),
                &registries_d,
                &dir.join("verified"),
                &verified_dir,
            ] {
                root_dir(d)?;
            }
            write_atomically(&policy_path, &policy)?;
            write_atomically(
                &registries_d.join("berth.yaml"),
                berth_sandbox::trust::REGISTRIES_D.as_bytes(),
            )
        })?;
        Ok(Some(Self {
            trust: trust.clone(),
            files: TrustFiles {
                policy: policy_path,
                home,
            },
            fingerprint,
            verified_dir,
        }))
    }

    fn record(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| self.verified_dir.join(hex))
    }

    /// Whether a pull verified `digest` under this gate's policy.
    pub fn is_verified(&self, digest: &str) -> bool {
        self.record(digest).is_some_and(|p| p.is_file())
    }

    /// Records that a pull verified `digest` under this gate's policy (root's file).
    pub fn record_verified(&self, digest: &str) -> Result<(), StageError> {
        let Some(path) = self.record(digest) else {
            return Ok(());
        };
        berth_sandbox::process::as_root(|| write_atomically(&path, b""))
    }
}
