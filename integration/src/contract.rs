//! The contract suite's [`Backend`] on real rootless Podman: every invocation is the berth binary,
//! run as gitlab-runner runs it ([`FakeRunner`]).

use std::time::Duration;

use berth_tests::contract::{Backend, Ending, Script};
use nix::sys::signal::Signal;

use crate::{
    FakeRunner, StageResult, await_host_sleep, host_sleeps, payload, signal_group,
    wait_with_timeout,
};

/// How long a cancelled script may take to start and to stop.
const CANCEL_WAIT: Duration = Duration::from_secs(60);

/// One job on the host, through the binary.
pub struct RealBackend {
    job: FakeRunner,
    transcript: String,
}

impl RealBackend {
    /// A job running `image` (from the base store).
    pub fn new(image: &str) -> Self {
        crate::require_host();
        let mut job = FakeRunner::new(payload(image));
        let config = job.stage(&["config"]);
        assert_eq!(config.code, 0, "{}", config.all());
        Self {
            job,
            transcript: String::new(),
        }
    }

    fn ending(&mut self, what: &str, result: &StageResult) -> Ending {
        self.transcript
            .push_str(&format!("=== {what}\n{}\n", result.all()));
        Ending::of_code(result.code).unwrap_or_else(|| {
            panic!(
                "{what} exited {}, none of the suite's codes\n{}",
                result.code, self.transcript
            )
        })
    }
}

impl Backend for RealBackend {
    fn prepare(&mut self) -> Ending {
        let r = self.job.stage(&["prepare"]);
        self.ending("prepare", &r)
    }

    fn run(&mut self, stage: &str, script: Script) -> Ending {
        let body = match script {
            Script::Succeeds => "true".to_owned(),
            Script::Fails(code) => format!("exit {code}"),
        };
        let r = self.job.run(stage, &body);
        self.ending(stage, &r)
    }

    fn run_cancelled(&mut self, stage: &str) -> Ending {
        // A sleep no other test uses, so the host shows when this script runs.
        let marker = format!("{}", 50_000 + self.job.job_id % 10_000);
        let child = self.job.spawn_run(stage, &format!("sleep {marker}"));
        await_host_sleep(&marker, "the script");
        signal_group(&child, Signal::SIGTERM);
        let r = wait_with_timeout(child, CANCEL_WAIT);
        assert!(
            host_sleeps(&marker).is_empty(),
            "the cancelled script's sleep survived\n{}",
            r.all()
        );
        self.ending(&format!("cancelled {stage}"), &r)
    }

    fn cleanup(&mut self) -> Ending {
        let r = self.job.stage(&["cleanup"]);
        self.ending("cleanup", &r)
    }

    fn build_exit_code(&self) -> Option<i32> {
        self.job.build_exit_code().and_then(|c| c.parse().ok())
    }

    fn leftovers(&self) -> Vec<String> {
        self.job.leftovers()
    }

    fn transcript(&self) -> String {
        self.transcript.clone()
    }
}
