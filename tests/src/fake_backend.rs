//! The contract suite's [`Backend`] over the recording fake: each invocation goes through
//! [`berth_stages::outcome::invoke`] and [`berth_stages::outcome::exit_code`], as the binary's
//! do, with the fake in place of Podman.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_config::{Config, ContractEnv};
use berth_sandbox::fake::{Call, FakeBehaviour, FakeSandbox};
use berth_sandbox::{Cancel, ImageInfo};
use berth_stages::context::HostFacts;
use berth_stages::outcome::{ExitCodes, Invocation, exit_code, invoke};
use berth_stages::{Job, JobLog};

use crate::contract::{BUILD_FAILURE, Backend, Ending, SYSTEM_FAILURE, Script};

/// The helper image berth runs.
const HELPER: &str = "localhost/berth-helper:latest";

/// The job `payload` describes, under a berth config of `config_text` with its state in `dir`,
/// as the stages see it after `berth config` (no Podman, no identities).
pub fn job_in(dir: &Path, payload: &serde_json::Value, config_text: &str) -> Job {
    let text = format!("state_dir = \"{}\"\n{config_text}", dir.display());
    let config = Config::parse(&text, None).expect("config");
    let env = ContractEnv::from_vars([(
        "CUSTOM_ENV_CI_RUNNER_SHORT_TOKEN".to_owned(),
        "tok".to_owned(),
    )]);
    let host = HostFacts {
        runtime_dir: dir.join("run"),
        ..HostFacts::default()
    };
    Job::new(config, env, &payload.to_string(), host).expect("job")
}

/// One job over the fake, in a temporary state directory.
pub struct FakeBackend {
    dir: tempfile::TempDir,
    job: Job,
    sandbox: FakeSandbox,
    transcript: Vec<u8>,
}

impl FakeBackend {
    /// A job running `image`.
    pub fn new(image: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let payload = serde_json::json!({ "id": 1, "image": { "name": image } });
        let job = job_in(dir.path(), &payload, "");
        let images = [image, HELPER]
            .into_iter()
            .map(|name| {
                (
                    name.to_owned(),
                    ImageInfo {
                        id: format!("id-{name}"),
                        ..ImageInfo::default()
                    },
                )
            })
            .collect::<BTreeMap<_, _>>();
        Self {
            dir,
            job,
            sandbox: FakeSandbox::new(FakeBehaviour {
                images,
                ..FakeBehaviour::default()
            }),
            transcript: Vec::new(),
        }
    }

    fn exit_code_file(&self) -> PathBuf {
        self.dir.path().join("build_exit_code")
    }

    fn invoke(&mut self, invocation: Invocation<'_>, cancel: &Cancel) -> Ending {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut log = JobLog::new(Box::new(std::io::sink()), Vec::new());
        let mut out = Vec::new();
        let ending = runtime.block_on(invoke(
            invocation,
            &self.job,
            &self.sandbox,
            &mut out,
            cancel,
            &mut log,
        ));
        self.transcript.extend(out);
        if let Err(e) = &ending {
            self.transcript
                .extend(format!("{invocation:?} failed: {e}\n").into_bytes());
        }
        let code = exit_code(
            &ending,
            ExitCodes {
                build: BUILD_FAILURE,
                system: SYSTEM_FAILURE,
            },
        );
        Ending::of_code(code).expect("one of the suite's codes")
    }

    fn run_with(&mut self, stage: &str, cancel: &Cancel) -> Ending {
        let file = self.exit_code_file();
        self.invoke(
            Invocation::Run {
                stage,
                script: b"script",
                build_exit_code_file: Some(&file),
            },
            cancel,
        )
    }
}

impl Backend for FakeBackend {
    fn prepare(&mut self) -> Ending {
        self.invoke(Invocation::Prepare, &Cancel::new())
    }

    fn run(&mut self, stage: &str, script: Script) -> Ending {
        let code = match script {
            Script::Succeeds => 0,
            Script::Fails(code) => code,
        };
        // The fake keys exit codes by berth's name for the stage (`step_script` is `build_script`).
        let name = berth_config::RunStage::parse(stage).to_string();
        self.sandbox.behaviour.exit_codes = BTreeMap::from([(name, code)]);
        self.run_with(stage, &Cancel::new())
    }

    fn run_cancelled(&mut self, stage: &str) -> Ending {
        let cancel = Cancel::new();
        cancel.cancel();
        self.run_with(stage, &cancel)
    }

    fn cleanup(&mut self) -> Ending {
        self.invoke(Invocation::Cleanup, &Cancel::new())
    }

    fn build_exit_code(&self) -> Option<i32> {
        std::fs::read_to_string(self.exit_code_file())
            .ok()
            .and_then(|t| t.trim().parse().ok())
    }

    /// The fake keeps nothing on the host; what would be left is a job whose last word to the
    /// sandbox was not a teardown.
    fn leftovers(&self) -> Vec<String> {
        match self.sandbox.calls().last() {
            None | Some(Call::Teardown) => Vec::new(),
            Some(last) => vec![format!(
                "the last sandbox call was {last:?}, not a teardown"
            )],
        }
    }

    fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.transcript).into_owned()
    }
}
