//! A recording fake [`Sandbox`] for unit tests of stage logic: it records every call as a typed
//! value and plays back scripted results and injected failures.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use berth_config::{PullPolicy, StageTarget};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::agent::ScriptEnd;
use crate::{
    Attachment, BuiltImage, ContainerSpec, ImageInfo, PodSpec, PullOptions, RegistryManifest,
    RegistrySignatures, Sandbox, SandboxError, SignedLayer, Started,
};

/// One recorded call.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `start`.
    Start,
    /// `ensure_image(image, policies, with_auth)`.
    EnsureImage(String, Vec<PullPolicy>, bool),
    /// `registry_signatures(image)`.
    RegistrySignatures(String),
    /// `attach_signatures(repository, digest, layers)`.
    AttachSignatures(String, String, Vec<SignedLayer>),
    /// `create_pod`.
    CreatePod(PodSpec),
    /// `run_container`.
    RunContainer(Box<ContainerSpec>),
    /// `wait_ports(service, ports)`.
    WaitPorts(String, Vec<u16>),
    /// `exec(target, id, script)`.
    Exec(StageTarget, String, Vec<u8>),
    /// `teardown`.
    Teardown,
}

/// What the fake does.
#[derive(Debug, Default)]
pub struct FakeBehaviour {
    /// Images that exist; anything else is unavailable.
    pub images: BTreeMap<String, ImageInfo>,
    /// Exit code per script id prefix (stage name); default 0.
    pub exit_codes: BTreeMap<String, i32>,
    /// Output written for every exec.
    pub output: Vec<u8>,
    /// Make `start` fail as if Podman were unreachable.
    pub fail_start: bool,
    /// Errors `teardown` reports.
    pub teardown_errors: usize,
    /// Images the job "built".
    pub built: Vec<BuiltImage>,
    /// What the registry says of an image reference (its digest and signature attachments).
    pub signatures: BTreeMap<String, RegistrySignatures>,
    /// The manifests the registry holds, by image reference.
    pub manifests: BTreeMap<String, RegistryManifest>,
}

/// The recording fake.
#[derive(Debug, Default)]
pub struct FakeSandbox {
    /// Behaviour.
    pub behaviour: FakeBehaviour,
    calls: RefCell<Vec<Call>>,
}

impl FakeSandbox {
    /// A fake with `behaviour`.
    pub fn new(behaviour: FakeBehaviour) -> Self {
        Self {
            behaviour,
            calls: RefCell::default(),
        }
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    fn record(&self, call: Call) {
        self.calls.borrow_mut().push(call);
    }
}

fn unreachable_error() -> SandboxError {
    SandboxError::runtime("start the job's runtime")(std::io::Error::from(
        std::io::ErrorKind::ConnectionRefused,
    ))
}

impl Sandbox for FakeSandbox {
    async fn start(&self) -> Result<(), SandboxError> {
        self.record(Call::Start);
        if self.behaviour.fail_start {
            return Err(unreachable_error());
        }
        Ok(())
    }

    async fn ensure_image(
        &self,
        image: &str,
        policies: &[PullPolicy],
        pull: &PullOptions,
    ) -> Result<ImageInfo, SandboxError> {
        self.record(Call::EnsureImage(
            image.to_owned(),
            policies.to_vec(),
            pull.auth.is_some(),
        ));
        self.behaviour
            .images
            .get(image)
            .cloned()
            .ok_or_else(|| SandboxError::ImageUnavailable {
                image: image.to_owned(),
                reason: "not in the fake".to_owned(),
            })
    }

    async fn registry_signatures(
        &self,
        image: &str,
        _repository: &str,
        kind: Attachment,
        _pull: &PullOptions,
    ) -> Result<RegistrySignatures, SandboxError> {
        self.record(Call::RegistrySignatures(image.to_owned()));
        if kind == Attachment::Attestations {
            return Ok(RegistrySignatures::default());
        }
        self.behaviour
            .signatures
            .get(image)
            .cloned()
            .ok_or_else(|| SandboxError::ImageUnavailable {
                image: image.to_owned(),
                reason: "not in the fake registry".to_owned(),
            })
    }

    async fn registry_manifest(
        &self,
        image: &str,
        _pull: &PullOptions,
    ) -> Result<RegistryManifest, SandboxError> {
        self.behaviour
            .manifests
            .get(image)
            .cloned()
            .ok_or_else(|| SandboxError::ImageUnavailable {
                image: image.to_owned(),
                reason: "not in the fake registry".to_owned(),
            })
    }

    async fn attach_signatures(
        &self,
        repository: &str,
        digest: &str,
        kind: Attachment,
        layers: &[SignedLayer],
        _pull: &PullOptions,
    ) -> Result<(), SandboxError> {
        self.record(Call::AttachSignatures(
            repository.to_owned(),
            format!("{digest}.{}", kind.suffix()),
            layers.to_vec(),
        ));
        Ok(())
    }

    async fn create_pod(&self, spec: &PodSpec) -> Result<(), SandboxError> {
        self.record(Call::CreatePod(spec.clone()));
        Ok(())
    }

    async fn run_container(&self, spec: &ContainerSpec) -> Result<Started, SandboxError> {
        self.record(Call::RunContainer(Box::new(spec.clone())));
        let n = u32::try_from(self.calls.borrow().len()).unwrap_or(u32::MAX);
        Ok(Started { init_pid: 1000 + n })
    }

    async fn wait_ports(
        &self,
        service: &str,
        _started: Started,
        ports: &[u16],
        _timeout: Duration,
    ) -> Result<(), SandboxError> {
        self.record(Call::WaitPorts(service.to_owned(), ports.to_vec()));
        Ok(())
    }

    async fn exec(
        &self,
        target: StageTarget,
        _started: Started,
        id: &str,
        script: &[u8],
        out: &mut (dyn AsyncWrite + Unpin + Send),
        cancel: &CancellationToken,
    ) -> Result<ScriptEnd, SandboxError> {
        self.record(Call::Exec(target, id.to_owned(), script.to_vec()));
        out.write_all(&self.behaviour.output)
            .await
            .map_err(|e| SandboxError::Agent(crate::agent::AgentError::Output(e)))?;
        let code = self
            .behaviour
            .exit_codes
            .iter()
            .find(|(stage, _)| id.starts_with(stage.as_str()))
            .map_or(0, |(_, c)| *c);
        if cancel.is_cancelled() {
            return Ok(ScriptEnd::Cancelled(143));
        }
        Ok(ScriptEnd::Exited(code))
    }

    async fn built_images(&self) -> Result<Vec<BuiltImage>, SandboxError> {
        Ok(self.behaviour.built.clone())
    }

    async fn teardown(&self) -> Vec<SandboxError> {
        self.record(Call::Teardown);
        (0..self.behaviour.teardown_errors)
            .map(|_| unreachable_error())
            .collect()
    }
}
