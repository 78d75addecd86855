//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// berth: run GitLab CI jobs in rootless Podman sandboxes (a gitlab-runner custom executor).
#[derive(Debug, Parser)]
#[command(version, about)]
pub(crate) struct Cli {
    /// Config file (default /etc/berth/config.toml; built-in defaults if that does not exist).
    #[arg(long, global = true, env = "BERTH_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// config_exec: print the executor configuration JSON for gitlab-runner.
    Config,
    /// prepare_exec: create the job's sandbox.
    Prepare,
    /// run_exec: run one stage script in the job's sandbox.
    Run {
        /// Path of the script gitlab-runner wrote.
        script: PathBuf,
        /// Stage name (build_script, get_sources, ...).
        stage: String,
    },
    /// cleanup_exec: remove everything the job created.
    Cleanup,
    /// Remove what crashed or killed jobs left behind (never a running job).
    Reap,
    /// Check this host for rootless Podman and print the fix for each problem.
    Doctor,
    /// Print the [runners.custom] block for gitlab-runner's config.toml.
    RunnerConfig,
    /// Scan an image or path for vulnerable packages (Trivy's flag names).
    Scan(Box<berth_scan::cli::ScanArgs>),
    /// Read an image's inventory and print it as JSON (run by berth inside a job identity's
    /// user namespace, where every file of the job's images is readable).
    #[command(hide = true)]
    ScanInventory {
        /// What to read: a `berth_scan::api::ReadRequest` as JSON.
        #[arg(long)]
        request: String,
    },
    /// Run this project's pipeline locally: the real gitlab-runner runs each job with berth as
    /// its executor (exit 0: passed, 1: a job failed, 2: an error of the YAML or of berth).
    Exec(Box<ExecArgs>),
    /// Admission policies as code (Rego): run their tests as `opa test` does, or ask them for a
    /// decision on an input.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Manage the offline advisory database.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Serve a job's build socket (started by prepare; not for direct use).
    #[command(hide = true)]
    BuildProxy {
        /// Socket to listen on.
        #[arg(long)]
        listen: PathBuf,
        /// The job's Podman API socket.
        #[arg(long)]
        upstream: PathBuf,
        /// The only host directory containers may bind-mount from.
        #[arg(long)]
        bind_root: PathBuf,
        /// Where refusals are logged.
        #[arg(long)]
        log: PathBuf,
        /// A plain-HTTP registry the admin allows, for `docker login` (repeatable).
        #[arg(long = "insecure-registry")]
        insecure_registries: Vec<String>,
        /// What the socket offers: `build` or `run` (the admin's `build_socket`).
        #[arg(long, value_parser = parse_build_socket)]
        mode: berth_sandbox::proxy::Mode,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Run the `test_*` rules of a policy directory (exit 0: all pass, 2: one fails, 1: the
    /// policies do not load).
    Test(berth_policy::cli::TestArgs),
    /// Print the decision of a policy directory for an input (exit 0: allowed, 3: denied).
    Eval(berth_policy::cli::EvalArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum DbCommand {
    /// Import OSV advisories (directory, all.zip, or a directory of all.zip files), or fetch a
    /// published database (`db_url` in the config when no --from), verified before it replaces
    /// the current one.
    Update(DbUpdate),
    /// Pack the advisory database into one file with its checksum, for every host to fetch
    /// with `berth db update` (sign it with minisign).
    Publish {
        /// Advisory database directory (default: `scan_db` from the config).
        #[arg(long, env = "BERTH_DB")]
        db: Option<PathBuf>,
        /// Directory to write `berth-advisories.tar` and its `.sha256` into.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `berth db update`: the sources and the database default to the config's.
#[derive(Debug, clap::Args)]
pub(crate) struct DbUpdate {
    /// OSV directory, all.zip, a directory of all.zip files, an http(s) URL of OSV data, or the
    /// http(s) URL of a published database (`…/berth-advisories.tar`, alone); repeatable.
    /// Default: `db_url` from the config.
    #[arg(long)]
    pub(crate) from: Vec<String>,
    /// Advisory database directory (default: `scan_db` from the config).
    #[arg(long, env = "BERTH_DB")]
    pub(crate) db: Option<PathBuf>,
    /// With no --from and no `db_url` in the config, say so and succeed (for timers that run
    /// for every runner config).
    #[arg(long)]
    pub(crate) if_configured: bool,
    /// Largest published database downloaded, in bytes.
    #[arg(long, default_value_t = berth_scan::advisory::published::DEFAULT_MAX_BYTES)]
    pub(crate) max_size: u64,
}

fn parse_build_socket(text: &str) -> Result<berth_sandbox::proxy::Mode, String> {
    match berth_sandbox::proxy::Mode::parse(text) {
        Some(berth_sandbox::proxy::Mode::Off) | None => Err(format!(
            "{text:?} is not a mode the build socket serves: use build or run"
        )),
        Some(mode) => Ok(mode),
    }
}

/// `berth exec [JOB...]`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExecArgs {
    /// Jobs to run (a `parallel` job's name runs every instance); none: the whole pipeline.
    pub(crate) jobs: Vec<String>,
    /// List the jobs (name, stage, when, allow_failure, needs) instead of running them.
    #[arg(long)]
    pub(crate) list: bool,
    /// JSON output: the listing with --list (gitlab-ci-local's --list-json shape), else a summary.
    #[arg(long)]
    pub(crate) json: bool,
    /// The CI file, relative to the work tree.
    #[arg(long, default_value = ".gitlab-ci.yml")]
    pub(crate) file: String,
    /// A variable for every job, KEY=VALUE (repeatable; wins over the YAML's).
    #[arg(long = "variable", short = 'v', value_name = "KEY=VALUE")]
    pub(crate) variables: Vec<String>,
    /// A variables file of KEY=VALUE lines (default: .berth/variables.env when it exists).
    #[arg(long)]
    pub(crate) variables_file: Option<PathBuf>,
    /// Also run what the named jobs need, transitively.
    #[arg(long)]
    pub(crate) needs: bool,
    /// Run the jobs of this stage.
    #[arg(long)]
    pub(crate) stage: Option<String>,
    /// Jobs at once.
    #[arg(long, short = 'j', default_value_t = 1)]
    pub(crate) concurrency: usize,
    /// Run manual jobs instead of leaving them waiting.
    #[arg(long)]
    pub(crate) manual: bool,
    /// Do not scan the images the jobs build.
    #[arg(long)]
    pub(crate) no_scan: bool,
    /// Serve untracked files (not ignored ones) to the jobs too.
    #[arg(long)]
    pub(crate) untracked: bool,
    /// Only a line per job and the final table, no job logs.
    #[arg(long, short = 'q')]
    pub(crate) quiet: bool,
    /// Run as a pipeline of this branch.
    #[arg(long)]
    pub(crate) branch: Option<String>,
    /// CI_PIPELINE_SOURCE (default push).
    #[arg(long)]
    pub(crate) pipeline_source: Option<String>,
    /// A directory standing in for include: project/remote/template/component
    /// (<dir>/project/<group>/<project>/<file>, <dir>/remote/<host>/<path>,
    /// <dir>/template/<name>, <dir>/component/<host>/<path>/<name>).
    #[arg(long)]
    pub(crate) includes_dir: Option<PathBuf>,
}
