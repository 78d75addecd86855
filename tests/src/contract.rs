//! The scenarios and the [`Backend`] they run on. A scenario speaks only of what gitlab-runner
//! sees: how each invocation ends and what is left of the job afterwards.

/// How one invocation ended, as gitlab-runner classifies its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Exit 0.
    Success,
    /// `BUILD_FAILURE_EXIT_CODE`: the user's job failed.
    BuildFailure,
    /// `SYSTEM_FAILURE_EXIT_CODE`: the infrastructure failed.
    SystemFailure,
}

impl Ending {
    /// The ending of exit `code` under the suite's codes (build 1, system 2).
    pub fn of_code(code: i32) -> Option<Self> {
        match code {
            0 => Some(Self::Success),
            BUILD_FAILURE => Some(Self::BuildFailure),
            SYSTEM_FAILURE => Some(Self::SystemFailure),
            _ => None,
        }
    }
}

/// `BUILD_FAILURE_EXIT_CODE` in every scenario.
pub const BUILD_FAILURE: i32 = 1;
/// `SYSTEM_FAILURE_EXIT_CODE` in every scenario.
pub const SYSTEM_FAILURE: i32 = 2;

/// What a stage's script does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// Exits 0.
    Succeeds,
    /// Exits with this code.
    Fails(i32),
}

/// Every stage gitlab-runner runs for a job with a cache and artifacts, in order.
pub const STAGES: &[&str] = &[
    "prepare_script",
    "get_sources",
    "restore_cache",
    "download_artifacts",
    "step_script",
    "after_script",
    "archive_cache",
    "upload_artifacts_on_success",
    "cleanup_file_variables",
];

/// One job on one backend, driven as gitlab-runner drives berth.
pub trait Backend {
    /// `berth prepare`.
    fn prepare(&mut self) -> Ending;
    /// `berth run <script> <stage>`.
    fn run(&mut self, stage: &str, script: Script) -> Ending;
    /// `berth run` of a script that would run for ever, cancelled (SIGTERM) once it runs.
    fn run_cancelled(&mut self, stage: &str) -> Ending;
    /// `berth cleanup`.
    fn cleanup(&mut self) -> Ending;
    /// What berth wrote to `BUILD_EXIT_CODE_FILE`, if anything.
    fn build_exit_code(&self) -> Option<i32>;
    /// What is left of the job (empty when nothing is).
    fn leftovers(&self) -> Vec<String>;
    /// Output of the invocations so far, for failure messages.
    fn transcript(&self) -> String;
}

fn expect(backend: &impl Backend, what: &str, got: Ending, want: Ending) {
    assert_eq!(got, want, "{what}\n{}", backend.transcript());
}

/// Prepare, every stage, cleanup, and cleanup again: all succeed and nothing is left.
pub fn a_whole_job_runs_every_stage_and_cleanup_twice_leaves_nothing(backend: &mut impl Backend) {
    let got = backend.prepare();
    expect(backend, "prepare", got, Ending::Success);
    for stage in STAGES {
        let got = backend.run(stage, Script::Succeeds);
        expect(backend, stage, got, Ending::Success);
    }
    assert_eq!(backend.build_exit_code(), None, "{}", backend.transcript());
    for round in ["cleanup", "cleanup again"] {
        let got = backend.cleanup();
        expect(backend, round, got, Ending::Success);
        assert_eq!(backend.leftovers(), Vec::<String>::new(), "after {round}");
    }
}

/// A failing script is a build failure carrying its code; the job goes on to after_script and
/// cleans up.
pub fn a_failing_script_is_a_build_failure_with_its_code(backend: &mut impl Backend) {
    let got = backend.prepare();
    expect(backend, "prepare", got, Ending::Success);
    let got = backend.run("step_script", Script::Fails(3));
    expect(backend, "failing step_script", got, Ending::BuildFailure);
    assert_eq!(
        backend.build_exit_code(),
        Some(3),
        "{}",
        backend.transcript()
    );
    let got = backend.run("after_script", Script::Succeeds);
    expect(backend, "after_script", got, Ending::Success);
    let got = backend.cleanup();
    expect(backend, "cleanup", got, Ending::Success);
    assert_eq!(backend.leftovers(), Vec::<String>::new());
}

/// A script cancelled mid-run ends as a build failure; cleanup still leaves nothing.
pub fn a_cancelled_script_ends_the_stage_and_cleanup_leaves_nothing(backend: &mut impl Backend) {
    let got = backend.prepare();
    expect(backend, "prepare", got, Ending::Success);
    let got = backend.run_cancelled("step_script");
    expect(backend, "cancelled step_script", got, Ending::BuildFailure);
    let got = backend.cleanup();
    expect(backend, "cleanup", got, Ending::Success);
    assert_eq!(backend.leftovers(), Vec::<String>::new());
}

/// Cleanup of a job that was never prepared succeeds and leaves nothing.
pub fn cleanup_without_prepare_succeeds(backend: &mut impl Backend) {
    let got = backend.cleanup();
    expect(backend, "cleanup", got, Ending::Success);
    assert_eq!(backend.leftovers(), Vec::<String>::new());
}

/// Running a stage of a job that was never prepared is berth's failure, not the user's.
pub fn a_stage_without_prepare_is_a_system_failure(backend: &mut impl Backend) {
    let got = backend.run("step_script", Script::Succeeds);
    expect(backend, "step_script", got, Ending::SystemFailure);
}

/// Declares one `#[test]` per scenario, each on a fresh backend made by `$backend`, so both
/// backends run exactly the same list.
#[macro_export]
macro_rules! contract_tests {
    ($backend:expr) => {
        $crate::contract_tests!(
            $backend;
            a_whole_job_runs_every_stage_and_cleanup_twice_leaves_nothing,
            a_failing_script_is_a_build_failure_with_its_code,
            a_cancelled_script_ends_the_stage_and_cleanup_leaves_nothing,
            cleanup_without_prepare_succeeds,
            a_stage_without_prepare_is_a_system_failure
        );
    };
    ($backend:expr; $($scenario:ident),+) => {
        $(
            #[test]
            fn $scenario() {
                $crate::contract::$scenario(&mut $backend);
            }
        )+
    };
}
