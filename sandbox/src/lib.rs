//! berth-sandbox: the job runtime seam. [`Sandbox`] is what the stages need from a container
//! runtime; [`podman::PodmanSandbox`] is the real rootless Podman backend, [`fake::FakeSandbox`]
//! a recording fake for tests. Also home of the process leash and the per-job paths.

pub mod agent;
pub mod cgroups;
pub mod fake;
pub mod hosts;
pub mod identity;
pub mod idmap;
pub mod paths;
pub mod podman;
pub mod ports;
pub mod process;
pub mod proxy;
pub mod registries;
pub mod registry_login;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use berth_config::admin::{Limits, NetworkMode};
use berth_config::{PullPolicy, StageTarget};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWrite;
use tokio_util::sync::CancellationToken;

pub use agent::ScriptEnd;
pub use tokio_util::sync::CancellationToken as Cancel;

/// Registry credentials for one pull. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    /// Registry host.
    pub registry: String,
    /// User.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// How to pull one image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullOptions {
    /// Credentials for its registry.
    pub auth: Option<RegistryAuth>,
    /// Pull without TLS verification (an admin-listed insecure registry).
    pub insecure: bool,
}

/// One layer of a cosign signature attachment (`<repository>:sha256-<hex>.sig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedLayer {
    /// The layer's media type (`application/vnd.dev.cosign.simplesigning.v1+json`).
    pub media_type: String,
    /// The layer: the signed payload.
    pub payload: Vec<u8>,
    /// Its `dev.cosignproject.cosign/signature` annotation (base64 DER signature; empty for an
    /// attestation, whose signatures are inside its DSSE envelope).
    pub signature: Option<String>,
    /// Its `predicateType` annotation (attestations only).
    pub predicate_type: Option<String>,
}

/// Which cosign attachment of a digest: its signatures (`sha256-<hex>.sig`) or its attestations
/// (`sha256-<hex>.att`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attachment {
    /// Simple-signing signatures.
    Signatures,
    /// DSSE-enveloped in-toto attestations.
    Attestations,
}

impl Attachment {
    /// The tag suffix cosign stores it under.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Signatures => "sig",
            Self::Attestations => "att",
        }
    }
}

/// The manifest a registry holds for an image reference.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistryManifest {
    /// `sha256:<hex>` of the manifest (or index).
    pub digest: String,
    /// The image's config digest (its id), when the manifest is an image manifest.
    pub config: Option<String>,
}

/// What a registry says of an image reference: the digest of the manifest it names, and the
/// cosign signature attachments stored for that digest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistrySignatures {
    /// `sha256:<hex>` of the manifest (or index) the reference names.
    pub digest: String,
    /// The attachment's layers (none when nothing is attached).
    pub layers: Vec<SignedLayer>,
}

/// What berth needs to know about an image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageInfo {
    /// Image id.
    pub id: String,
    /// The manifest digest it was pulled by (None: built or imported locally).
    pub digest: Option<String>,
    /// The image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Exposed TCP ports.
    pub tcp_ports: Vec<u16>,
}

/// An image a job produced, as the scanner needs to find it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltImage {
    /// Image id.
    pub id: String,
    /// Names (tags).
    pub names: Vec<String>,
    /// The containers-storage root holding it.
    pub store: PathBuf,
    /// Which builder made it: `build-socket`, `nested` or `buildkit`.
    pub builder: String,
    /// `store` is an OCI layout directory rather than a containers-storage root.
    #[serde(default)]
    pub oci_layout: bool,
}

impl BuiltImage {
    /// Its id as a digest (`sha256:<id>`): the config digest a registry manifest names.
    pub fn config_digest(&self) -> String {
        if self.id.starts_with("sha256:") {
            self.id.clone()
        } else {
            format!("sha256:{}", self.id)
        }
    }
}

/// The job's pod: one network namespace shared by job, helper and services.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSpec {
    /// Pod name.
    pub name: String,
    /// Host names that resolve to the pod itself (service aliases).
    pub hosts: Vec<String>,
    /// Network mode.
    pub network: NetworkMode,
    /// Labels (the job key, for reaping).
    pub labels: BTreeMap<String, String>,
}

/// A bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Host path.
    pub source: PathBuf,
    /// Container path.
    pub destination: String,
    /// Read-only.
    pub read_only: bool,
}

/// What a container is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A `services:` entry.
    Service,
    /// The helper container.
    Helper,
    /// The job container.
    Job,
}

impl From<StageTarget> for Role {
    fn from(t: StageTarget) -> Self {
        match t {
            StageTarget::Helper => Self::Helper,
            StageTarget::Job => Self::Job,
        }
    }
}

/// A container to create and start in the pod.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    /// Container name.
    pub name: String,
    /// Pod to join.
    pub pod: String,
    /// Image reference.
    pub image: String,
    /// Role.
    pub role: Role,
    /// Entrypoint override (`Some(vec![])` clears the image's).
    pub entrypoint: Option<Vec<String>>,
    /// Command (None: the image's).
    pub command: Option<Vec<String>>,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Bind mounts.
    pub mounts: Vec<Mount>,
    /// Resource limits.
    pub limits: Limits,
    /// Set no-new-privileges.
    pub no_new_privileges: bool,
    /// Capabilities to drop from Podman's default set.
    pub cap_drop: Vec<String>,
    /// A seccomp profile to use instead of Podman's default (never "unconfined").
    pub seccomp_profile: Option<PathBuf>,
    /// Masked paths to expose (e.g. `/proc/*`, so a nested runtime can mount a fresh procfs).
    pub unmask: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The pod's network: on the host network berth, not Podman, gives the container its
    /// `/etc/hosts`.
    pub network: NetworkMode,
}

/// A started container as later stages address it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    /// Host pid of the container's init process.
    pub init_pid: u32,
}

/// Why the sandbox failed. [`SandboxError::is_users_fault`] decides BUILD vs SYSTEM.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The container runtime could not do something the stage asked of it.
    #[error("the container runtime could not {action}: {source}")]
    Runtime {
        /// What was asked, in the seam's words ("create the job's pod").
        action: String,
        /// The runtime's own account.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The agent protocol failed.
    #[error(transparent)]
    Agent(#[from] agent::AgentError),
    /// Processes of the job's identity outlived teardown.
    #[error(
        "{processes} process(es) of job identity {identity} survived SIGKILL; the identity stays leased until `berth reap` ends them"
    )]
    Leftovers {
        /// The identity.
        identity: String,
        /// How many.
        processes: usize,
    },
    /// The per-job Podman API service did not come up.
    #[error(
        "the per-job Podman API service (pid {pid}) did not answer: {cause}; its log ends with:\n{log_tail}"
    )]
    ServiceStart {
        /// Pid of `podman system service`.
        pid: u32,
        /// Last API error.
        cause: String,
        /// End of its log.
        log_tail: String,
    },
    /// The image is not available under the pull policy.
    #[error("image {image} is not available: {reason}")]
    ImageUnavailable {
        /// Image.
        image: String,
        /// What was tried.
        reason: String,
    },
    /// The job's image exited instead of running the shell (usually its entrypoint).
    #[error(
        "the {role} container of image {image} exited before its shell started (exit code {exit_code}); \
         its entrypoint must run the command it is given, or clear it with `image: {{ name: {image}, entrypoint: [\"\"] }}`. Last output:\n{logs}"
    )]
    ContainerExited {
        /// Role.
        role: String,
        /// Image.
        image: String,
        /// Exit code.
        exit_code: i32,
        /// The end of its log.
        logs: String,
    },
    /// A service never listened on its exposed ports.
    #[error("service {service} did not listen on port(s) {ports:?} within {secs} s")]
    ServiceNotReady {
        /// Service name.
        service: String,
        /// Ports not listening.
        ports: Vec<u16>,
        /// Seconds waited.
        secs: u64,
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
}

impl SandboxError {
    /// A runtime failure to do `action`, for `map_err`.
    pub fn runtime<E>(action: impl Into<String>) -> impl FnOnce(E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let action = action.into();
        move |source| Self::Runtime {
            action,
            source: Box::new(source),
        }
    }

    /// Whether the job's own inputs caused this (its image), rather than the infrastructure.
    pub fn is_users_fault(&self) -> bool {
        match self {
            Self::ContainerExited { role, .. } => role == "job" || role == "service",
            Self::Runtime { .. }
            | Self::Agent(_)
            | Self::ImageUnavailable { .. }
            | Self::ServiceStart { .. }
            | Self::ServiceNotReady { .. }
            | Self::Leftovers { .. }
            | Self::Io { .. } => false,
        }
    }
}

/// What the stages need from a container runtime, for one job.
#[expect(
    async_fn_in_trait,
    reason = "static dispatch only; no Send bound needed on a current-thread runtime"
)]
pub trait Sandbox {
    /// Makes the runtime usable for this job (creates its store, starts its API service).
    async fn start(&self) -> Result<(), SandboxError>;
    /// Makes `image` available per `policies`, tried in order as fallbacks.
    async fn ensure_image(
        &self,
        image: &str,
        policies: &[PullPolicy],
        pull: &PullOptions,
    ) -> Result<ImageInfo, SandboxError>;
    /// Asks `image`'s registry (with `pull`'s credentials) for the digest the reference names
    /// and the cosign attachment `kind` of that digest, stored in `repository`.
    async fn registry_signatures(
        &self,
        image: &str,
        repository: &str,
        kind: Attachment,
        pull: &PullOptions,
    ) -> Result<RegistrySignatures, SandboxError>;
    /// Asks `image`'s registry for the manifest the reference names: its digest and, for an
    /// image manifest, its config digest (the image id).
    async fn registry_manifest(
        &self,
        image: &str,
        pull: &PullOptions,
    ) -> Result<RegistryManifest, SandboxError>;
    /// Stores `layers` as the cosign signature attachment of `digest` in `repository`
    /// (`<repository>:sha256-<hex>.sig`), replacing the attachment there (callers include the
    /// layers it held).
    async fn attach_signatures(
        &self,
        repository: &str,
        digest: &str,
        kind: Attachment,
        layers: &[SignedLayer],
        pull: &PullOptions,
    ) -> Result<(), SandboxError>;
    /// Creates and starts the job's pod.
    async fn create_pod(&self, spec: &PodSpec) -> Result<(), SandboxError>;
    /// Creates and starts a container; for helper and job containers, waits for the agent.
    async fn run_container(&self, spec: &ContainerSpec) -> Result<Started, SandboxError>;
    /// Waits until `ports` listen inside the container's network namespace.
    async fn wait_ports(
        &self,
        service: &str,
        started: Started,
        ports: &[u16],
        timeout: Duration,
    ) -> Result<(), SandboxError>;
    /// Runs a stage script in the container playing `target`.
    async fn exec(
        &self,
        target: StageTarget,
        started: Started,
        id: &str,
        script: &[u8],
        out: &mut (dyn AsyncWrite + Unpin + Send),
        cancel: &CancellationToken,
    ) -> Result<ScriptEnd, SandboxError>;
    /// Images the job has built so far, through every builder.
    async fn built_images(&self) -> Result<Vec<BuiltImage>, SandboxError>;
    /// Removes everything of this job. Tries every step; returns every error.
    async fn teardown(&self) -> Vec<SandboxError>;
}
