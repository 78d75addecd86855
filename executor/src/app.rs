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
use berth_sandbox::podman::PodmanSandbox;
use berth_stages::context::HostFacts;
use berth_stages::outcome::Invocation;
use berth_stages::state::ProcessIdentity;
use berth_stages::{ExitCodes, FailureKind, Job, JobLog, Outcome, StageError};

use crate::cli::{Cli, Command};
use berth_sandbox::identity::Identity;
use berth_stages::identities::{Identities, Leases};

use crate::privileges::{self, RunnerUser};

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(1))
}

/// Arguments berth cannot parse: gitlab-runner called it wrongly (a registration mistake), a
/// system failure with clap's message; `--help` and `--version` print and succeed.
pub(crate) fn bad_arguments(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    match e.kind() {
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
            ExitCode::SUCCESS
        }
        // `berth exec` is a person's command, not the runner's: its errors exit 2.
        _ if std::env::args().skip(1).any(|a| a == "exec") => ExitCode::from(2),
        _ => code(ContractEnv::from_vars(std::env::vars()).system_failure_exit_code()),
    }
}

pub(crate) fn main(cli: Cli) -> ExitCode {
    let started = std::time::Instant::now();
    let started_as_root = nix::unistd::Uid::effective().is_root();
    // The runner's commands (and the admin's reap and doctor) report to the admin; a person's
    // commands (scan, exec) and berth's helpers inside a job identity do not.
    let observed = match &cli.command {
        Command::Config
        | Command::Prepare
        | Command::Run { .. }
        | Command::Cleanup
        | Command::Reap
        | Command::Doctor => load_config(cli.config.as_deref()).ok(),
        _ => None,
    };
    crate::observe::init_logging(observed.as_ref());
    let env = ContractEnv::from_vars(std::env::vars());
    let codes = ExitCodes {
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
        Command::Doctor => {
            let code = doctor(cli.config.as_deref());
            crate::observe::finish(observed.as_ref(), started_as_root);
            code
        }
        Command::Scan(args) => scan(&args),
        Command::Exec(args) => exec(&args, cli.config.as_deref()),
        Command::ScanInventory { request } => {
            use berth_scan::api::{ReadOutcome, ReadRequest};
            let outcome = match serde_json::from_str::<ReadRequest>(&request) {
                Ok(request) => ReadOutcome::of(&request),
                // berth wrote the request: a berth of another version asked.
                Err(e) => ReadOutcome::bad_request(format!(
                    "berth scan-inventory cannot read its request ({e}); the berth that asks and the one that reads must be the same build"
                )),
            };
            match serde_json::to_string(&outcome) {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!("cannot encode the inventory: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Reap => {
            let reaped = reap(cli.config.as_deref());
            crate::observe::finish(observed.as_ref(), started_as_root);
            match reaped {
                Ok(c) => c,
                Err(e) => {
                    report(&e);
                    crate::observe::failed("reap", &e);
                    code(berth_stages::outcome::exit_code(&Err(e), codes))
                }
            }
        }
        Command::Policy { command } => {
            let ran = match command {
                crate::cli::PolicyCommand::Test(args) => berth_policy::cli::test(&args),
                crate::cli::PolicyCommand::Eval(args) => berth_policy::cli::eval(&args),
            };
            print!("{}", ran.stdout);
            let _ = std::io::stderr().write_all(ran.stderr.as_bytes());
            ExitCode::from(ran.code)
        }
        Command::Db { command } => db(command, cli.config.as_deref()),
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
        Command::Config | Command::Prepare | Command::Run { .. } | Command::Cleanup => {
            let stage_name = match &cli.command {
                Command::Prepare => "prepare".to_owned(),
                Command::Run { stage, .. } => stage.clone(),
                Command::Cleanup => "cleanup".to_owned(),
                _ => "config".to_owned(),
            };
            let ending = match cli.command {
                Command::Prepare => stage(JobStage::Prepare, cli.config.as_deref(), env),
                Command::Run {
                    script,
                    stage: name,
                } => stage(
                    JobStage::Run {
                        script,
                        stage: name,
                    },
                    cli.config.as_deref(),
                    env,
                ),
                Command::Cleanup => stage(JobStage::Cleanup, cli.config.as_deref(), env),
                _ => config(cli.config.as_deref(), env),
            };
            if let Err(e) = &ending {
                report(e);
                crate::observe::failed(&stage_name, e);
            }
            crate::observe::stage_ended(&stage_name, started, &ending);
            crate::observe::finish(observed.as_ref(), started_as_root);
            code(berth_stages::outcome::exit_code(&ending, codes))
        }
    }
}

/// The job's masked values, once its payload is read: berth's own last words are masked too.
static MASKED: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Says why berth failed, in the job log, masked.
fn report(e: &StageError) {
    let mut log = JobLog::new(
        Box::new(std::io::stderr()),
        MASKED.get().cloned().unwrap_or_default(),
    );
    let prefix = match e.failure_kind() {
        FailureKind::Build => "ERROR: Job failed",
        FailureKind::System => "ERROR: Job failed (system failure)",
    };
    log.line(&format!("\x1b[31;1m{prefix}: {e}\x1b[0;m"));
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        log.line(&format!("  caused by: {cause}"));
        source = cause.source();
    }
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

/// `berth db update` and `berth db publish`, with the config's database, URL and key.
fn db(command: crate::cli::DbCommand, config_path: Option<&Path>) -> ExitCode {
    use berth_scan::cli::{DbPublishArgs, DbUpdateArgs};
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let shown = config.source.as_ref().map_or_else(
        || "the built-in defaults".to_owned(),
        |p| p.display().to_string(),
    );
    match command {
        crate::cli::DbCommand::Publish { db, out } => {
            let args = DbPublishArgs {
                db: db.unwrap_or(config.scan.db),
                out,
            };
            match berth_scan::cli::run_db_publish(&args) {
                Ok(published) => {
                    println!(
                        "published {} ({} bytes, sha256 {}) and {}",
                        published.archive.display(),
                        published.bytes,
                        published.sha256,
                        published.checksum.display()
                    );
                    println!(
                        "sign it: minisign -S -s <secret key> -m {}; then serve the directory's berth-advisories.tar, .sha256 and .minisig, and set db_url (and db_public_key) on every host",
                        published.archive.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        crate::cli::DbCommand::Update(update) => {
            let from = if update.from.is_empty() {
                match config.advisory_updates.url.clone() {
                    Some(url) => vec![url],
                    None if update.if_configured => {
                        println!("no db_url in {shown}: nothing to update");
                        return ExitCode::SUCCESS;
                    }
                    None => {
                        tracing::error!(
                            "nothing to update from: pass --from, or set db_url in {shown}"
                        );
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                update.from
            };
            let args = DbUpdateArgs {
                from,
                db: update.db.unwrap_or(config.scan.db),
                public_key: config.advisory_updates.public_key,
                max_size: update.max_size,
            };
            match berth_scan::cli::run_db_update(&args, time::OffsetDateTime::now_utc()) {
                Ok(summary) => {
                    for w in &summary.warnings {
                        tracing::warn!("{w}");
                    }
                    let how = match (&args.from[..], &args.public_key) {
                        ([url], Some(_))
                            if berth_scan::advisory::published::is_published_url(url) =>
                        {
                            format!("fetched {url} (checksum and signature verified)")
                        }
                        ([url], None) if berth_scan::advisory::published::is_published_url(url) => {
                            format!(
                                "fetched {url} (checksum verified; no db_public_key, so no signature checked)"
                            )
                        }
                        _ => "imported".to_owned(),
                    };
                    println!(
                        "{how}: {} advisories into {} ({} ecosystems)",
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

/// `berth reap` on its own (cron, an admin): no job payload needed.
fn reap(config_path: Option<&Path>) -> Result<ExitCode, StageError> {
    let config = load_config(config_path)?;
    let who = Who::of(&config)?;
    std::env::set_current_dir("/").map_err(StageError::io(Path::new("/")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StageError::io(Path::new("<tokio runtime>")))?;
    let mut log = JobLog::new(Box::new(std::io::stderr()), Vec::new());
    let report = runtime.block_on(reap_jobs(&config, &who, None, &mut log));
    for e in &report.errors {
        log.warn(&e.to_string());
        tracing::warn!(target: crate::observe::ADMIN, error = %e, "reap could not remove");
    }
    // The kept caches and the base store are the store identity's: it prunes them, not root.
    let store_user = match &who {
        Who::Root(ids) => as_runner_user(&ids.store),
        Who::OwnUser(user) => user.clone(),
    };
    let host = who.host(&config, None);
    privileges::drop_to(&store_user).map_err(|detail| StageError::User {
        user: store_user.name.clone(),
        detail,
    })?;
    let settings = berth_stages::context::podman_settings(&config, &host);
    let mut prune_errors = runtime.block_on(berth_stages::prune::prune_caches(
        &config, &settings, &mut log,
    ));
    prune_errors += runtime.block_on(berth_stages::prune::collect_base_images(
        &config, &settings, &mut log,
    ));
    berth_telemetry::recorder::note(berth_telemetry::Event::ReapLeft {
        count: (report.errors.len() + prune_errors) as u64,
    });
    match berth_stages::metrics::base_store_bytes(&config) {
        Ok(bytes) => {
            berth_telemetry::recorder::note(berth_telemetry::Event::BaseStoreSize { bytes })
        }
        Err(e) => log.warn(&format!("the base store's size is unknown: {e}")),
    }
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

/// `berth exec`: exit 0 when the pipeline passed, 1 when a job failed, 2 for errors of the YAML
/// or of berth (also for a bug: the panic hook's code is the runner's, so exec sets its own).
fn exec(args: &crate::cli::ExecArgs, config_path: Option<&Path>) -> ExitCode {
    const ERROR: u8 = 2;
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("berth hit a bug (not your pipeline's fault): {info}");
        #[expect(
            clippy::disallowed_methods,
            reason = "the binary decides the exit code, also on a bug"
        )]
        std::process::exit(i32::from(ERROR));
    }));
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(ERROR);
        }
    };
    let admin_config = config_path.map(Path::to_path_buf).or_else(|| {
        let default = PathBuf::from(berth_config::admin::DEFAULT_PATH);
        default.exists().then_some(default)
    });
    let color = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none();
    let request = berth_exec::Request {
        dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        ci_file: Some(args.file.clone()),
        selection: berth_exec::plan::Selection {
            jobs: args.jobs.clone(),
            with_needs: args.needs,
            stage: args.stage.clone(),
            manual: args.manual,
        },
        variables: args.variables.clone(),
        variables_file: args.variables_file.clone(),
        concurrency: args.concurrency,
        scan: !args.no_scan,
        untracked: args.untracked,
        list: args.list,
        json: args.json,
        style: berth_exec::output::Style {
            quiet: args.quiet,
            prefix: false,
            color,
        },
        berth_binary: std::env::current_exe()
            .unwrap_or_else(|_| PathBuf::from("/usr/local/bin/berth")),
        berth_config: admin_config,
        runner_binary: config.gitlab_runner_binary.clone(),
        external_includes: args.includes_dir.clone(),
        refs: berth_exec::repo::RefChoice {
            branch: args.branch.clone(),
            pipeline_source: args.pipeline_source.clone(),
        },
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start berth's runtime: {e}");
            return ExitCode::from(ERROR);
        }
    };
    let cancel = Cancel::new();
    let result = runtime.block_on(async {
        bridge_signals(cancel.clone());
        berth_exec::exec(&request, std::io::stdout().lock(), &cancel).await
    });
    match result {
        Ok(berth_exec::Finish::Passed) => ExitCode::SUCCESS,
        Ok(berth_exec::Finish::Failed) => ExitCode::from(1),
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(ERROR)
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
    running_runner(&parent)
}

/// The runner binary a `/proc/PID/exe` link names: when the file was replaced while the runner
/// runs (a package upgrade), the kernel's name ends in " (deleted)", and the new binary at the
/// same path stands in for it.
fn running_runner(link: &Path) -> Option<PathBuf> {
    let text = link.to_str()?;
    let path = match text.strip_suffix(" (deleted)") {
        Some(replaced) => Path::new(replaced).to_owned(),
        None => link.to_owned(),
    };
    let name = path.file_name()?.to_string_lossy().into_owned();
    (name.contains("gitlab-runner") && path.is_file()).then_some(path)
}

/// Who runs a stage's processes: identities of their own when berth started as root, else
/// berth's own user for everything.
enum Who {
    Root(Identities),
    OwnUser(RunnerUser),
}

impl Who {
    fn of(config: &Config) -> Result<Self, StageError> {
        if nix::unistd::Uid::effective().is_root() {
            Ok(Self::Root(Identities::load(config)?))
        } else {
            let user =
                privileges::runner_user(&config.user).map_err(|detail| StageError::User {
                    user: config.user.clone(),
                    detail,
                })?;
            Ok(Self::OwnUser(user))
        }
    }

    /// Host facts for a job run by `job_identity` (root) or by berth's own user.
    fn host(&self, config: &Config, job_identity: Option<&Identity>) -> HostFacts {
        let base = match self {
            Self::Root(ids) => HostFacts::with_identities(config, job_identity, &ids.store),
            Self::OwnUser(u) => HostFacts::as_own_user(config, &u.name, u.uid, &u.home),
        };
        HostFacts {
            runner_binary: runner_binary(config),
            runner: ProcessIdentity::of(nix::unistd::getppid().as_raw().cast_unsigned()),
            podman: PathBuf::from("podman"),
            berth: std::env::current_exe().ok(),
            ..base
        }
    }
}

fn as_runner_user(identity: &Identity) -> RunnerUser {
    RunnerUser {
        name: identity.name.clone(),
        uid: identity.uid,
        gid: identity.gid,
        home: identity.home.clone(),
    }
}

/// The sandbox of job `key` as its own identity sees it (for reaping it as root).
fn sandbox_of(config: &Config, who: &Who, key: &str, identity: Option<&Identity>) -> PodmanSandbox {
    let host = who.host(config, identity);
    let paths = berth_stages::context::job_paths(config, &host, key);
    let settings = berth_stages::context::job_settings(config, &host, &paths);
    PodmanSandbox::new(paths, settings)
}

/// Reaps abandoned jobs (all but `skip`); see `berth_stages::reap::reap_all`.
async fn reap_jobs(
    config: &Config,
    who: &Who,
    skip: Option<&str>,
    log: &mut JobLog,
) -> berth_stages::reap::ReapReport {
    let identities = match who {
        Who::Root(ids) => Some(ids),
        Who::OwnUser(_) => None,
    };
    let report = berth_stages::reap::reap_all(config, identities, skip, log, |key, identity| {
        sandbox_of(config, who, key, identity)
    })
    .await;
    for (key, why) in &report.reaped {
        tracing::info!(target: crate::observe::ADMIN, reaped = %key, reason = ?why, "reaped an abandoned job");
    }
    if !report.reaped.is_empty() {
        berth_telemetry::recorder::note(berth_telemetry::Event::Reaped {
            kind: "job".to_owned(),
            count: report.reaped.len() as u64,
        });
    }
    report
}

fn read_input(path: &Path, what: &str) -> Result<Vec<u8>, StageError> {
    std::fs::read(path).map_err(|e| StageError::Contract {
        what: what.to_owned(),
        detail: format!("{}: {e}", path.display()),
    })
}

/// The stages of one job after `config`, as gitlab-runner invokes them.
enum JobStage {
    Prepare,
    Run { script: PathBuf, stage: String },
    Cleanup,
}

/// What every job stage reads first, before privileges drop: berth's config, the job payload
/// the runner wrote as its own user, and who runs the job.
struct Inputs {
    config: Config,
    payload: String,
    who: Who,
}

fn read_inputs(config_path: Option<&Path>, env: &ContractEnv) -> Result<Inputs, StageError> {
    let config = load_config(config_path)?;
    let payload_path = env
        .job_response_file()
        .ok_or_else(|| StageError::Contract {
            what: "JOB_RESPONSE_FILE".into(),
            detail: "the variable is unset".into(),
        })?;
    let payload = read_input(&payload_path, "a readable JOB_RESPONSE_FILE")?;
    let payload = String::from_utf8_lossy(&payload).into_owned();
    if let Ok(parsed) = berth_config::JobPayload::from_json(&payload) {
        let masked: Vec<String> = parsed
            .masked_values()
            .into_iter()
            .map(str::to_owned)
            .collect();
        berth_telemetry::adminlog::mask(masked.iter().cloned());
        let _ = MASKED.set(masked);
    }
    let who = Who::of(&config)?;
    Ok(Inputs {
        config,
        payload,
        who,
    })
}

/// `berth config`: the job's settings as one JSON document on stdout.
fn config(config_path: Option<&Path>, env: ContractEnv) -> Result<Outcome, StageError> {
    let Inputs {
        config,
        payload,
        who,
    } = read_inputs(config_path, &env)?;
    let host = who.host(&config, None);
    let job = Job::new(config, env, &payload, host)?;
    crate::observe::serving(&job);
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
    Ok(Outcome::Success)
}

fn stage(
    command: JobStage,
    config_path: Option<&Path>,
    env: ContractEnv,
) -> Result<Outcome, StageError> {
    let Inputs {
        config,
        payload,
        who,
    } = read_inputs(config_path, &env)?;
    let script = match &command {
        JobStage::Run { script, .. } => read_input(script, "a readable stage script")?,
        JobStage::Prepare | JobStage::Cleanup => Vec::new(),
    };
    let build_exit_code_file = env.build_exit_code_file();
    let invocation = match &command {
        JobStage::Prepare => Invocation::Prepare,
        JobStage::Run { stage, .. } => Invocation::Run {
            stage,
            script: &script,
            build_exit_code_file: build_exit_code_file.as_deref(),
        },
        JobStage::Cleanup => Invocation::Cleanup,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StageError::io(Path::new("<tokio runtime>")))?;

    let mut log = JobLog::new(Box::new(std::io::stderr()), Vec::new());
    // The job's identity: leased at prepare (after reaping abandoned jobs, as root), found by
    // the job key in later stages. Root prepares what the identity needs, then berth drops to it.
    let (job, drop_user) = match &who {
        Who::Root(ids) => {
            let leases = Leases::open(&config)?;
            let host = who.host(&config, None);
            let job = Job::new(config, env, &payload, host)?;
            crate::observe::serving(&job);
            let key = job.key.clone();
            let identity = match invocation {
                Invocation::Prepare => {
                    // Before reaping or leasing: both act on what this config claims.
                    berth_stages::instances::register(&job.config)?;
                    let reaped =
                        runtime.block_on(reap_jobs(&job.config, &who, Some(&key), &mut log));
                    for e in &reaped.errors {
                        log.warn(&format!("reaping abandoned jobs: {e}"));
                    }
                    Some(leases.claim(ids, &key)?)
                }
                _ => leases.holder(&key).and_then(|u| ids.job(&u).cloned()),
            };
            let Some(identity) = identity else {
                // Nothing of the job exists (never prepared, or cleaned up already).
                return match invocation {
                    Invocation::Cleanup => Ok(Outcome::Success),
                    _ => Err(StageError::NotPrepared {
                        key,
                        detail: "no job identity is leased to it".into(),
                    }),
                };
            };
            let host = who.host(&job.config, Some(&identity));
            let job = job.with_host(host);
            runtime.block_on(berth_stages::identities::enter_job(
                &job,
                ids,
                &identity,
                &invocation,
                &mut log,
            ))?;
            (job, as_runner_user(&identity))
        }
        Who::OwnUser(user) => {
            let host = who.host(&config, None);
            let job = Job::new(config, env, &payload, host)?;
            crate::observe::serving(&job);
            (job, user.clone())
        }
    };
    privileges::drop_to(&drop_user).map_err(|detail| StageError::User {
        user: drop_user.name.clone(),
        detail,
    })?;
    std::fs::create_dir_all(&job.host.runtime_dir)
        .map_err(StageError::io(&job.host.runtime_dir))?;
    // gitlab-runner starts us in its root-only temp dir, unusable after the drop.
    std::env::set_current_dir("/").map_err(StageError::io(Path::new("/")))?;
    log.mask(job.payload.masked_values().into_iter().map(str::to_owned));
    let sandbox = PodmanSandbox::new(job.paths.clone(), job.podman_settings());
    let cancel = Cancel::new();
    runtime.block_on(async {
        bridge_signals(cancel.clone());
        let mut out = tokio::io::stdout();
        berth_stages::outcome::invoke(invocation, &job, &sandbox, &mut out, &cancel, &mut log).await
    })
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

#[cfg(test)]
mod runner_binary_tests {
    use super::*;

    #[test]
    fn a_runner_binary_replaced_while_it_runs_is_found_at_its_path() {
        let tmp = tempfile::tempdir().expect("tmp");
        let runner = tmp.path().join("gitlab-runner-19");
        std::fs::write(&runner, b"binary").expect("runner");
        assert_eq!(running_runner(&runner), Some(runner.clone()));
        let deleted = PathBuf::from(format!("{} (deleted)", runner.display()));
        assert_eq!(running_runner(&deleted), Some(runner.clone()));
        std::fs::remove_file(&runner).expect("rm");
        assert_eq!(running_runner(&deleted), None, "nothing to mount");
        assert_eq!(running_runner(Path::new("/usr/bin/bash")), None);
    }
}
