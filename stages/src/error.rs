//! Every way a stage can fail, and the one exhaustive decision of whose fault it is.

use std::path::PathBuf;

use berth_config::ConfigError;
use berth_sandbox::SandboxError;

/// Who is to blame, which decides the exit code the runner sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The job's own inputs: `BUILD_FAILURE_EXIT_CODE`, not retried.
    Build,
    /// The infrastructure or berth itself: `SYSTEM_FAILURE_EXIT_CODE`, retried by the runner.
    System,
}

/// A stage that could not do its work. A user script exiting non-zero is not an error; see
/// [`crate::RunOutcome`].
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The admin's config is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// gitlab-runner did not provide what its contract promises.
    #[error(
        "gitlab-runner did not provide {what}: {detail} (is berth registered as a custom executor? see `berth runner-config`)"
    )]
    Contract {
        /// What is missing.
        what: String,
        /// Detail.
        detail: String,
    },
    /// The job's image or a service is not on the admin's allow-list.
    #[error(
        "{kind} {image:?} is not allowed on this runner (allowed: {allowed:?}); use an allowed image or ask the runner admin to extend `{key}` in the berth config"
    )]
    ImageNotAllowed {
        /// `image` or `service`.
        kind: &'static str,
        /// Image.
        image: String,
        /// Allowed patterns.
        allowed: Vec<String>,
        /// Config key.
        key: &'static str,
    },
    /// The job asked for a pull policy the admin does not allow.
    #[error(
        "pull policy {requested:?} for {image:?} is not allowed on this runner (allowed: {allowed:?}); remove `pull_policy` from the job or use an allowed one"
    )]
    PullPolicyNotAllowed {
        /// Image.
        image: String,
        /// Requested policy.
        requested: String,
        /// Allowed policies.
        allowed: Vec<String>,
    },
    /// An image reference that cannot be valid.
    #[error(
        "{image:?} is not a valid image name: {reason}; write it as [registry/]repository[:tag][@digest], e.g. \"alpine:3.20\""
    )]
    InvalidImageName {
        /// The name as written.
        image: String,
        /// What is wrong.
        reason: String,
    },
    /// The admin's image trust policy refuses the job's image.
    #[error(
        "{kind} {image} is not trusted here: the image trust scope {scope} expects {expected}; {detail} (fix: use an image the scope admits, or ask the runner's admin)"
    )]
    ImageUntrusted {
        /// `image` or `service`.
        kind: &'static str,
        /// The name as written.
        image: String,
        /// The `[[image_trust]]` scope that governs it.
        scope: String,
        /// What that scope expects.
        expected: String,
        /// What was found.
        detail: String,
    },
    /// The container runtime failed.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The job was never prepared (or was already cleaned up).
    #[error("job {key} is not prepared: {detail}")]
    NotPrepared {
        /// Job key.
        key: String,
        /// Detail.
        detail: String,
    },
    /// Host file system trouble.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// An image the job built has findings the runner's security policy does not accept.
    #[error(
        "the security policy blocked this job: {summary}. The findings that decided it are listed above, in the section \"Scanning images built by this job\". To accept a finding, add its ID to .trivyignore in the project (optionally with `exp:YYYY-MM-DD`), or fix it by updating the package"
    )]
    SecurityPolicy {
        /// Which images, how many findings.
        summary: String,
    },
    /// An image the job built cannot be read whole: missing, unreadable, inconsistent or forged
    /// in the job's store. Never passed as an empty scan.
    #[error(
        "the scan could not read image {image}, which this job built: {detail}. The image in the job's store is broken or was altered, so berth cannot pass it; rebuild the image in a new pipeline"
    )]
    ImageUnreadable {
        /// The image.
        image: String,
        /// What could not be read, naming the layer.
        detail: String,
    },
    /// The job put something where berth writes or reads scan files (a link in place of a report
    /// or of a directory on the way to it).
    #[error("{what}; {fix}")]
    ScanRefused {
        /// What berth refused.
        what: String,
        /// How the job fixes it.
        fix: String,
    },
    /// berth's scanner failed on its own inputs: its settings, the advisory database, the shared
    /// image store, the layer cache.
    #[error(
        "berth could not scan {image}: {detail}; this is a fault of the runner, not of the job: the runner admin checks the scan settings, the advisory database and the image store"
    )]
    Scanner {
        /// The image.
        image: String,
        /// What failed.
        detail: String,
    },
    /// The host lacks something the admin's config asks for.
    #[error("{what}; {fix}")]
    HostLacks {
        /// What is missing or unusable.
        what: String,
        /// How the admin fixes it.
        fix: String,
    },
    /// Dropping privileges or finding users failed.
    #[error("cannot switch to user {user:?}: {detail}")]
    User {
        /// User.
        user: String,
        /// Detail.
        detail: String,
    },
}

impl StageError {
    /// The one place that decides BUILD or SYSTEM. No wildcard: a new variant forces a decision.
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            Self::ImageNotAllowed { .. }
            | Self::PullPolicyNotAllowed { .. }
            | Self::InvalidImageName { .. }
            | Self::ImageUntrusted { .. }
            | Self::SecurityPolicy { .. }
            | Self::ImageUnreadable { .. }
            | Self::ScanRefused { .. } => FailureKind::Build,
            Self::Sandbox(e) => {
                if e.is_users_fault() {
                    FailureKind::Build
                } else {
                    FailureKind::System
                }
            }
            Self::Config(_)
            | Self::Contract { .. }
            | Self::NotPrepared { .. }
            | Self::Io { .. }
            | Self::HostLacks { .. }
            | Self::Scanner { .. }
            | Self::User { .. } => FailureKind::System,
        }
    }

    /// An I/O error at `path`.
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_inputs_are_build_failures_and_infrastructure_is_system() {
        let build = [
            StageError::ImageNotAllowed {
                kind: "image",
                image: "x".into(),
                allowed: vec![],
                key: "allowed_images",
            },
            StageError::InvalidImageName {
                image: "UPPER".into(),
                reason: "r".into(),
            },
            StageError::ImageUntrusted {
                kind: "image",
                image: "x".into(),
                scope: "default".into(),
                expected: "e".into(),
                detail: "unsigned".into(),
            },
            StageError::Sandbox(SandboxError::ContainerExited {
                role: "job".into(),
                image: "x".into(),
                exit_code: 1,
                logs: String::new(),
            }),
            StageError::ImageUnreadable {
                image: "app".into(),
                detail: "layer 1 is missing".into(),
            },
            StageError::ScanRefused {
                what: "a link".into(),
                fix: "remove it".into(),
            },
        ];
        for e in &build {
            assert_eq!(e.failure_kind(), FailureKind::Build, "{e}");
        }
        let system = [
            StageError::Sandbox(SandboxError::ImageUnavailable {
                image: "x".into(),
                reason: "never".into(),
            }),
            StageError::Sandbox(SandboxError::ContainerExited {
                role: "helper".into(),
                image: "x".into(),
                exit_code: 1,
                logs: String::new(),
            }),
            StageError::NotPrepared {
                key: "k".into(),
                detail: "d".into(),
            },
            StageError::Contract {
                what: "JOB_RESPONSE_FILE".into(),
                detail: "unset".into(),
            },
            StageError::Scanner {
                image: "app".into(),
                detail: "advisory database unreadable".into(),
            },
        ];
        for e in &system {
            assert_eq!(e.failure_kind(), FailureKind::System, "{e}");
        }
    }
}
