//! Wiring: read the runner's inputs, drop privileges, run one stage on a current-thread tokio
//! runtime with SIGTERM bridged to cancellation, and map the outcome to an exit code.

#![expect(
    clippy::print_stdout,
    clippy::disallowed_macros,
    reason = "the binary is the one place that writes stdout (doctor, runner-config)"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use berth_config::{Config, ContractEnv};
use berth_sandbox::Cancel;
use berth_sandbox::paths::JobPaths;
use berth_sandbox::podman::PodmanSandbox;
use berth_stages::context::{HostFacts, default_runtime_dir};
use berth_stages::state::ProcessIdentity;
use berth_stages::{FailureKind, Job, JobLog, RunOutcome, StageError};
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};
use crate::privileges::{self, RunnerUser};

/// Exit codes of one invocation, from the runner's environment.
struct Codes {
    build: i32,
    system: i32,
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(1))
}

pub(crate) fn main(cli: Cli) -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_target(false)
        .without_time()
        .init();
    let env = ContractEnv::from_vars(std::env::vars());
    let codes = Codes {
        build: env.build_failure_exit_code(),
        system: env.system_failure_exit_code(),
    };
    let system = codes.system;
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!("berth hit a bug (not your job's fault): {info}");
        #[expect(
            clippy::disallowed_methods,
            reason = "the binary decides the exit code, also on a bug"
        )]
        std::process::exit(system);
    }));

    match cli.command {
        Command::RunnerConfig => {
            let exe =
                std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/usr/local/bin/berth"));
            print!(
                "{}",
                berth_stages::runner_config::runner_config_block(&exe, cli.config.as_deref())
            );
            ExitCode::SUCCESS
        }
        Command::Doctor => doctor(cli.config.as_deref()),
        Command::Scan(args) => scan(&args),
        Command::Reap => match reap(cli.config.as_deref()) {
            Ok(c) => c,
            Err(e) => report(&e, &codes),
        },
        Command::Db {
            command: crate::cli::DbCommand::Update(args),
        } => match berth_scan::cli::run_db_update(&args, time::OffsetDateTime::now_utc()) {
            Ok(summary) => {
                for w in &summary.warnings {
                    tracing::warn!("{w}");
                }
                println!(
                    "imported {} advisories into {} ({} ecosystems)",
                    summary.meta.records,
                    args.db.display(),
                    summary.meta.ecosystems.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::BuildProxy {
            listen,
            upstream,
            bind_root,
            log,
            insecure_registries,
            mode,
        } => {
            let served = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|rt| {
                    rt.block_on(berth_sandbox::proxy::serve(
                        &berth_sandbox::proxy::ProxySettings {
                            listen,
                            upstream,
                            bind_root,
                            log,
                            insecure_registries,
                            mode,
                        },
                    ))
                });
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("build socket proxy: {e}");
                    code(codes.system)
                }
            }
        }
        command => match stage(command, cli.config.as_deref(), env, &codes) {
            Ok(c) => c,
            Err(e) => report(&e, &codes),
        },
    }
}

fn report(e: &StageError, codes: &Codes) -> ExitCode {
    let mut log = JobLog::new(Box::new(std::io::stderr()), Vec::new());
    let kind = e.failure_kind();
    let prefix = match kind {
        FailureKind::Build => "ERROR: Job failed",
        FailureKind::System => "ERROR: Job failed (system failure)",
    };
    log.line(&format!("\x1b[31;1m{prefix}: {e}\x1b[0;m"));
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        log.line(&format!("  caused by: {cause}"));
        source = cause.source();
    }
    code(match kind {
        FailureKind::Build => codes.build,
        FailureKind::System => codes.system,
    })
}

fn load_config(path: Option<&Path>) -> Result<Config, StageError> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => {
            let default = Path::new(berth_config::admin::DEFAULT_PATH);
            if default.exists() {
                Ok(Config::load(default)?)
            } else {
                Ok(Config::defaults())
            }
        }
    }
}

fn doctor(config: Option<&Path>) -> ExitCode {
    let config = match load_config(config) {
        Ok(c) => c,
        Err(e) => {
            println!("FAIL  config: {e}");
            return ExitCode::FAILURE;
        }
    };
    let euid = nix::unistd::Uid::effective().as_raw();
    let version = podman_version();
    let checks = berth_stages::doctor::run_checks(&config, euid, version.as_deref());
    let mut failed = false;
    for c in &checks {
        let tag = match c.level {
            berth_stages::doctor::Level::Ok => "ok   ",
            berth_stages::doctor::Level::Warn => "WARN ",
            berth_stages::doctor::Level::Fail => {
                failed = true;
                "FAIL "
            }
        };
        println!("{tag} {}: {}", c.name, c.detail);
        if let Some(fix) = &c.fix {
            println!("      fix: {fix}");
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Removes kept caches unused for longer than the admin allows (see `berth_stages::prune`);
/// returns how many could not be removed, each told in the log.
async fn prune_caches(
    config: &Config,
    settings: &berth_sandbox::podman::PodmanSettings,
    log: &mut JobLog,
) -> usize {
    let plan = berth_stages::prune::plan(config, std::time::SystemTime::now());
    let mut errors = 0;
    for path in &plan.owned {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
        match removed {
            Ok(()) => log.line(&format!("pruned {} (unused too long)", path.display())),
            Err(e) => {
                errors += 1;
                log.warn(&format!("pruning {}: {e}", path.display()));
            }
        }
    }
    match berth_sandbox::podman::remove_in_user_namespace(
        settings,
        &config.image_store(),
        &plan.in_user_namespace,
    )
    .await
    {
        Ok(()) => {
            for path in &plan.in_user_namespace {
                log.line(&format!("pruned {} (unused too long)", path.display()));
            }
        }
        Err(e) => {
            errors += plan.in_user_namespace.len();
            log.warn(&format!("pruning BuildKit caches: {e}"));
        }
    }
    errors
}

/// Removes base images no job used for `prune_after_days`, only while no job exists and no
/// prepare is checking images (see `berth_stages::prune`); returns how many removals failed.
async fn collect_base_images(
    config: &Config,
    settings: &berth_sandbox::podman::PodmanSettings,
    log: &mut JobLog,
) -> usize {
    if config.prune_after_days.is_none() {
        return 0;
    }
    let lock = match berth_stages::prune::gc_lock_file(config) {
        Ok(f) => f,
        Err(e) => {
            log.warn(&format!("base image collection skipped: {e}"));
            return 1;
        }
    };
    let Ok(_held) = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
    else {
        log.line("base image collection skipped: a job is being prepared");
        return 0;
    };
    let jobs = berth_sandbox::podman::job_keys(&config.jobs_dir());
    if !jobs.is_empty() {
        log.line(&format!(
            "base image collection skipped: {} job(s) exist (a job may build FROM any base image)",
            jobs.len()
        ));
        return 0;
    }
    let images = match berth_stages::prune::base_images(config) {
        Ok(i) => i,
        Err(e) => {
            log.warn(&format!("base image collection skipped: {e}"));
            return 1;
        }
    };
    let unused = berth_stages::prune::unused_images(config, &images, std::time::SystemTime::now());
    let mut failed = 0;
    // One at a time: one image Podman refuses must not keep the others.
    for id in &unused {
        match berth_sandbox::podman::remove_base_images(
            settings,
            &config.image_store(),
            std::slice::from_ref(id),
        )
        .await
        {
            Ok(()) => log.line(&format!("removed base image {id} (unused too long)")),
            Err(e) => {
                failed += 1;
                log.warn(&format!("removing base image {id}: {e}"));
            }
        }
    }
    failed
}

/// `berth reap` on its own (cron, an admin): no job payload needed.
fn reap(config_path: Option<&Path>) -> Result<ExitCode, StageError> {
    let config = load_config(config_path)?;
    let user = privileges::runner_user(&config.user).map_err(|detail| StageError::User {
        user: config.user.clone(),
        detail,
    })?;
    let host = host_facts(&config, &user);
    privileges::drop_to(&user).map_err(|detail| StageError::User {
        user: user.name.clone(),
        detail,
    })?;
    std::env::set_current_dir("/").map_err(StageError::io(Path::new("/")))?;
    let settings = berth_stages::context::podman_settings(&config, &host);
    let jobs_dir = config.jobs_dir();
    let image_store = config.image_store();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StageError::io(Path::new("<tokio runtime>")))?;
    let report = runtime.block_on(berth_stages::reap::reap(&jobs_dir, None, |key| {
        PodmanSandbox::new(
            JobPaths::new(key, &jobs_dir, &host.runtime_dir, &image_store),
            settings.clone(),
        )
    }));
    let mut log = JobLog::new(Box::new(std::io::stderr()), Vec::new());
    for (key, why) in &report.reaped {
        log.line(&format!("reaped {key}: {why:?}"));
        for e in privileges::with_root(|| berth_sandbox::cgroups::remove(key)) {
            log.warn(&format!("removing the cgroup of {key}: {e}"));
        }
    }
    for e in &report.errors {
        log.warn(&e.to_string());
    }
    let mut prune_errors = runtime.block_on(prune_caches(&config, &settings, &mut log));
    prune_errors += runtime.block_on(collect_base_images(&config, &settings, &mut log));
    Ok(if report.errors.is_empty() && prune_errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn scan(args: &berth_scan::cli::ScanArgs) -> ExitCode {
    match berth_scan::cli::run_scan(args, time::OffsetDateTime::now_utc()) {
        Ok(outcome) => {
            for w in &outcome.warnings {
                tracing::warn!("{w}");
            }
            print!("{}", outcome.stdout);
            code(outcome.exit_code)
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn podman_version() -> Option<String> {
    let spec = berth_sandbox::process::CommandSpec::new("podman").args(["--version"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(berth_sandbox::process::run(&spec, &Cancel::new()))
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The gitlab-runner binary to mount into the helper: configured, or the calling runner itself.
fn runner_binary(config: &Config) -> Option<PathBuf> {
    if let Some(p) = &config.gitlab_runner_binary {
        return Some(p.clone());
    }
    let parent = std::fs::read_link(format!("/proc/{}/exe", nix::unistd::getppid())).ok()?;
    let name = parent.file_name()?.to_string_lossy().into_owned();
    name.contains("gitlab-runner").then_some(parent)
}

fn host_facts(config: &Config, user: &RunnerUser) -> HostFacts {
    let runtime_dir = config
        .runtime_dir
        .clone()
        .unwrap_or_else(|| default_runtime_dir(user.uid));
    let xdg = format!("/run/user/{}", user.uid);
    HostFacts {
        podman_env: vec![
            ("HOME".into(), user.home.display().to_string()),
            ("USER".into(), user.name.clone()),
            ("LOGNAME".into(), user.name.clone()),
            ("XDG_RUNTIME_DIR".into(), xdg),
            // The runner's TMPDIR is its own root-only directory, deleted at cleanup.
            ("TMPDIR".into(), runtime_dir.display().to_string()),
            (
                "XDG_CONFIG_HOME".into(),
                user.home.join(".config").display().to_string(),
            ),
        ],
        runtime_dir,
        runner_binary: runner_binary(config),
        runner: ProcessIdentity::of(nix::unistd::getppid().as_raw().cast_unsigned()),
        podman: PathBuf::from("podman"),
        berth: std::env::current_exe().ok(),
    }
}

fn read_input(path: &Path, what: &str) -> Result<Vec<u8>, StageError> {
    std::fs::read(path).map_err(|e| StageError::Contract {
        what: what.to_owned(),
        detail: format!("{}: {e}", path.display()),
    })
}

fn stage(
    command: Command,
    config_path: Option<&Path>,
    env: ContractEnv,
    codes: &Codes,
) -> Result<ExitCode, StageError> {
    let config = load_config(config_path)?;
    // Inputs the runner wrote as its own user are read before privileges drop.
    let payload_path = env
        .job_response_file()
        .ok_or_else(|| StageError::Contract {
            what: "JOB_RESPONSE_FILE".into(),
            detail: "the variable is unset".into(),
        })?;
    let payload = read_input(&payload_path, "a readable JOB_RESPONSE_FILE")?;
    let payload = String::from_utf8_lossy(&payload).into_owned();
    let script = match &command {
        Command::Run { script, .. } => Some(read_input(script, "a readable stage script")?),
        _ => None,
    };
    let user = privileges::runner_user(&config.user).map_err(|detail| StageError::User {
        user: config.user.clone(),
        detail,
    })?;
    let host = host_facts(&config, &user);
    let build_exit_code_file = env.build_exit_code_file();
    let job = Job::new(config, env, &payload, host)?;

    if let Command::Config = command {
        let host_name = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "berth".into());
        let output = berth_stages::config_stage::config_output(&job, &host_name);
        let json = serde_json::to_string(&output).map_err(|e| StageError::Io {
            path: PathBuf::from("<stdout>"),
            source: std::io::Error::other(e),
        })?;
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(json.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(StageError::io(Path::new("<stdout>")))?;
        return Ok(ExitCode::SUCCESS);
    }

    let job_cgroup = matches!(command, Command::Prepare)
        && nix::unistd::Uid::effective().is_root()
        && create_job_cgroup(&job, &user);
    privileges::drop_to(&user).map_err(|detail| StageError::User {
        user: user.name.clone(),
        detail,
    })?;
    std::fs::create_dir_all(&job.host.runtime_dir)
        .map_err(StageError::io(&job.host.runtime_dir))?;
    // gitlab-runner starts us in its root-only temp dir, unusable after the drop.
    std::env::set_current_dir("/").map_err(StageError::io(Path::new("/")))?;
    let mut log = JobLog::new(Box::new(std::io::stderr()), Vec::new());
    log.mask(job.payload.masked_values().into_iter().map(str::to_owned));
    let sandbox = PodmanSandbox::new(job.paths.clone(), job.podman_settings());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StageError::io(Path::new("<tokio runtime>")))?;
    let cancel = Cancel::new();
    runtime.block_on(async {
        bridge_signals(cancel.clone());
        match command {
            Command::Prepare => {
                let settings = job.podman_settings();
                let jobs_dir = job.config.jobs_dir();
                let runtime_dir = job.host.runtime_dir.clone();
                let image_store = job.config.image_store();
                let reaped = berth_stages::reap::reap(&jobs_dir, Some(&job.key), |key| {
                    PodmanSandbox::new(
                        JobPaths::new(key, &jobs_dir, &runtime_dir, &image_store),
                        settings.clone(),
                    )
                })
                .await;
                for (key, why) in &reaped.reaped {
                    tracing::info!("reaped abandoned job {key} ({why:?})");
                    let _ = privileges::with_root(|| berth_sandbox::cgroups::remove(key));
                }
                for e in &reaped.errors {
                    log.warn(&format!("reaping abandoned jobs: {e}"));
                }
                if berth_stages::prune::due(&job.config, std::time::SystemTime::now()) {
                    let mut quiet = JobLog::new(Box::new(std::io::sink()), Vec::new());
                    let _ = prune_caches(&job.config, &settings, &mut quiet).await;
                }
                tokio::select! {
                    r = berth_stages::prepare::prepare(&job, &sandbox, &mut log) => {
                        r?;
                        if job_cgroup {
                            adopt_into_job_cgroup(&job, &mut log);
                        }
                        Ok(ExitCode::SUCCESS)
                    }
                    () = cancel.cancelled() => Err(StageError::Contract {
                        what: "time to finish prepare".into(),
                        detail: "cancelled by gitlab-runner (timeout or job cancel)".into(),
                    }),
                }
            }
            Command::Run { stage, .. } => {
                let script = script.unwrap_or_default();
                let mut out = tokio::io::stdout();
                let outcome =
                    berth_stages::run::run(&job, &sandbox, &stage, &script, &mut out, &cancel)
                        .await?;
                Ok(match outcome {
                    RunOutcome::Success => ExitCode::SUCCESS,
                    RunOutcome::ScriptFailed(c) | RunOutcome::Cancelled(c) => {
                        if let Some(file) = &build_exit_code_file {
                            let written =
                                privileges::with_root(|| std::fs::write(file, format!("{c}\n")));
                            if let Err(e) = written {
                                log.warn(&format!(
                                    "cannot write BUILD_EXIT_CODE_FILE {}: {e}",
                                    file.display()
                                ));
                            }
                        }
                        code(codes.build)
                    }
                })
            }
            Command::Cleanup => {
                let mut errors = berth_stages::cleanup::cleanup(&job, &sandbox, &mut log).await;
                for e in privileges::with_root(|| berth_sandbox::cgroups::remove(&job.key)) {
                    log.warn(&format!("removing the job's cgroup: {e}"));
                    errors.push(StageError::io(Path::new("/sys/fs/cgroup"))(e));
                }
                Ok(if errors.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    code(codes.system)
                })
            }
            Command::Config
            | Command::Reap
            | Command::Doctor
            | Command::RunnerConfig
            | Command::BuildProxy { .. }
            | Command::Scan(_)
            | Command::Db { .. } => Ok(ExitCode::SUCCESS),
        }
    })
}

/// On cgroup v1 hosts rootless Podman cannot enforce limits; berth, still root, creates a cgroup
/// for the job's containers (see `berth_sandbox::cgroups`). Returns whether it did.
fn create_job_cgroup(job: &Job, user: &RunnerUser) -> bool {
    let limits = &job.config.limits;
    let wanted = limits.cpus.is_some() || limits.memory_bytes.is_some() || limits.pids.is_some();
    if !wanted || !berth_sandbox::cgroups::v1_available() {
        return false;
    }
    match berth_sandbox::cgroups::create(&job.key, limits, user.uid, user.gid) {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!("per-job limits not enforced: cannot create the job's cgroup: {e}");
            false
        }
    }
}

/// Moves the job's running containers into its cgroup (root is needed to move subuid processes).
fn adopt_into_job_cgroup(job: &Job, log: &mut JobLog) {
    let Ok(state) = berth_stages::state::JobState::load(&job.paths.state_file()) else {
        return;
    };
    let roots: Vec<u32> = state
        .helper
        .iter()
        .chain(state.job.iter())
        .chain(state.services.iter())
        .map(|s| s.init_pid)
        .collect();
    if let Err(e) = privileges::with_root(|| berth_sandbox::cgroups::adopt(&job.key, &roots)) {
        log.warn(&format!(
            "per-job limits not enforced: cannot move the containers into the job's cgroup: {e}"
        ));
    }
}

/// SIGTERM and SIGINT (the runner's cancel and timeout) cancel the stage.
fn bridge_signals(cancel: Cancel) {
    use tokio::signal::unix::{SignalKind, signal};
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("received a stop signal: stopping the stage");
        cancel.cancel();
    });
}
