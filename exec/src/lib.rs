//! `berth exec`: a project's pipeline computed as GitLab computes it (`berth-pipeline`), each
//! job served from an embedded coordinator on loopback and run by the real
//! `gitlab-runner run-single` with berth as its custom executor.

pub mod dotenv;
pub mod error;
pub mod files;
pub mod layout;
pub mod list;
pub mod output;
pub mod payload;
pub mod plan;
pub mod repo;
pub mod run;
pub mod runner;
pub mod serve;
pub mod variables;

use std::io::Write;
use std::path::{Path, PathBuf};

use berth_pipeline::model::Pipeline;
use tokio_util::sync::CancellationToken;

pub use error::ExecError;

use crate::layout::Layout;
use crate::output::{Printer, Style, Summary};
use crate::plan::{Plan, Selection};
use crate::repo::{RefChoice, Repo};

/// What `berth exec` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Where it was started (inside the work tree).
    pub dir: PathBuf,
    /// The CI file, relative to the work tree (default `.gitlab-ci.yml`).
    pub ci_file: Option<String>,
    /// Which jobs.
    pub selection: Selection,
    /// `--variable KEY=VALUE` arguments.
    pub variables: Vec<String>,
    /// A variables file; `None`: `.berth/variables.env` when it exists.
    pub variables_file: Option<PathBuf>,
    /// Jobs at once (`-j`).
    pub concurrency: usize,
    /// Scan images the jobs build (off with `--no-scan`).
    pub scan: bool,
    /// Serve untracked (not ignored) files too.
    pub untracked: bool,
    /// Only list the jobs.
    pub list: bool,
    /// JSON instead of text (with `list`: the listing; else the summary).
    pub json: bool,
    /// How output looks.
    pub style: Style,
    /// The berth binary the runner calls.
    pub berth_binary: PathBuf,
    /// The admin's berth config the jobs' config derives from, if any.
    pub berth_config: Option<PathBuf>,
    /// A configured gitlab-runner binary; else `gitlab-runner` on `PATH`.
    pub runner_binary: Option<PathBuf>,
    /// A directory standing in for `include: project/remote/template/component`.
    pub external_includes: Option<PathBuf>,
    /// Ref and pipeline source overrides.
    pub refs: RefChoice,
}

/// How a run ended (errors aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Every job passed or was allowed to fail (or only the list was asked for).
    Passed,
    /// A job failed.
    Failed,
}

/// Computes the pipeline of the work tree around `request.dir`.
///
/// # Errors
/// Not a repository, unreadable files, or an invalid CI configuration.
pub async fn compute(
    request: &Request,
    repo: &Repo,
    cancel: &CancellationToken,
) -> Result<(Pipeline, berth_pipeline::model::RepoFacts), ExecError> {
    let facts = repo.facts(&request.refs, cancel).await?;
    let listed = repo.files(request.untracked, cancel).await?;
    let files =
        files::WorkTreeFiles::new(repo.work_tree(), listed).map_err(|source| ExecError::Read {
            path: repo.work_tree().to_path_buf(),
            source,
        })?;
    let external = match &request.external_includes {
        Some(dir) => Some(
            files::WorkTreeFiles::new(dir, list_dir(dir)).map_err(|source| ExecError::Read {
                path: dir.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let mut cli_variables = Vec::new();
    let variables_file = request.variables_file.clone().or_else(|| {
        let default = repo.work_tree().join(".berth/variables.env");
        default.is_file().then_some(default)
    });
    if let Some(path) = &variables_file {
        let text = std::fs::read_to_string(path).map_err(|source| ExecError::Read {
            path: path.clone(),
            source,
        })?;
        cli_variables.extend(
            variables::from_file(&text, &path.display().to_string())
                .map_err(ExecError::Variables)?,
        );
    }
    cli_variables
        .extend(variables::from_arguments(&request.variables).map_err(ExecError::Variables)?);
    let ci_file = request
        .ci_file
        .clone()
        .unwrap_or_else(|| ".gitlab-ci.yml".to_owned());
    let options = berth_pipeline::Options {
        ci_file: ci_file.clone(),
        facts: facts.clone(),
        cli_variables,
        external_includes: external
            .as_ref()
            .map(|e| e as &dyn berth_pipeline::model::ProjectFiles),
        // The listing shows what rules decided, `never` included; a run skips those jobs.
        keep_never: request.list,
    };
    let pipeline = match berth_pipeline::compute(&files, &options) {
        Ok(pipeline) => pipeline,
        Err(errors) if errors.is_no_pipeline() => {
            // GitLab creates no pipeline here; that is an answer, not an error of the YAML.
            tracing::warn!("{errors} No job runs.");
            Pipeline {
                stages: Vec::new(),
                jobs: Vec::new(),
                name: None,
            }
        }
        Err(errors) => {
            return Err(ExecError::Config {
                file: ci_file,
                errors: errors.to_string(),
            });
        }
    };
    Ok((pipeline, facts))
}

/// Every file below `dir`, relative and `/`-separated, for an external include directory.
fn list_dir(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(relative) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(dir.join(&relative)) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = relative.join(entry.file_name());
            if kind.is_dir() {
                todo.push(path);
            } else if kind.is_file() {
                out.push(path.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// The berth config the jobs' stages read: the admin's (if any) with the pod on the host's
/// network, so the job's helper reaches the coordinator on loopback, and scanning as asked.
///
/// # Errors
/// The admin's config is not TOML.
pub fn job_berth_config(admin: Option<&str>, scan: bool) -> Result<String, ExecError> {
    let mut table: toml::Table = match admin {
        Some(text) => toml::from_str(text)
            .map_err(|e| ExecError::BerthConfig(format!("not valid TOML: {e}")))?,
        None => toml::Table::new(),
    };
    table.insert("network".to_owned(), toml::Value::String("host".to_owned()));
    if !scan {
        table.insert("scan_images".to_owned(), toml::Value::Boolean(false));
    }
    toml::to_string(&table)
        .map_err(|e| ExecError::BerthConfig(format!("cannot write the job's copy: {e}")))
}

/// Runs `berth exec`: lists, or runs the selected jobs and prints as it goes.
///
/// # Errors
/// Exit code 2: the repository, the YAML, berth's own files, or the runner.
pub async fn exec<W: Write>(
    request: &Request,
    out: W,
    cancel: &CancellationToken,
) -> Result<Finish, ExecError> {
    let mut out = out;
    let repo = Repo::discover(&request.dir, cancel).await?;
    let (pipeline, facts) = compute(request, &repo, cancel).await?;
    if request.list {
        list::write(&mut out, &pipeline, request.json).map_err(|source| ExecError::State {
            path: PathBuf::from("<stdout>"),
            source,
        })?;
        return Ok(Finish::Passed);
    }
    let plan = Plan::new(&pipeline, &request.selection)?;
    let runner_binary = runner::locate(
        request.runner_binary.as_deref(),
        std::env::var_os("PATH").as_deref(),
    )?;
    let layout = Layout::create(repo.work_tree(), &repo.exclude_file(cancel).await?)?;
    let admin = match &request.berth_config {
        Some(path) => Some(
            std::fs::read_to_string(path).map_err(|source| ExecError::Read {
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let berth_config =
        layout.write_berth_config(&job_berth_config(admin.as_deref(), request.scan)?)?;
    let snapshot = repo
        .snapshot(&facts, request.untracked, &layout.source(), cancel)
        .await?;
    let mut server = serve::CoordinatorServe::start(&layout.uploads())?;
    server.serve_repo(&facts.project_path, &layout.source())?;
    let names: Vec<String> = plan.jobs.iter().map(|p| p.job.name.clone()).collect();
    let style = Style {
        prefix: request.style.prefix || request.concurrency > 1,
        ..request.style
    };
    let summary: Summary = {
        let mut printer = Printer::new(&mut out, style, &names);
        let context = run::RunContext {
            layout: &layout,
            snapshot: &snapshot,
            before_sha: &facts.before_sha,
            project_path: &facts.project_path,
            runner_binary: &runner_binary,
            berth_binary: &request.berth_binary,
            berth_config: &berth_config,
            concurrency: request.concurrency.max(1),
            pipeline_id: pipeline_id(),
            cancel: cancel.clone(),
        };
        let summary = run::run(&plan, &context, &mut server, &mut printer).await?;
        if !request.json {
            printer
                .table(&summary.jobs)
                .map_err(|source| ExecError::State {
                    path: PathBuf::from("<stdout>"),
                    source,
                })?;
        }
        summary
    };
    if request.json {
        let text = serde_json::to_string_pretty(&summary).map_err(|e| ExecError::State {
            path: PathBuf::from("<stdout>"),
            source: std::io::Error::other(e),
        })?;
        writeln!(out, "{text}").map_err(|source| ExecError::State {
            path: PathBuf::from("<stdout>"),
            source,
        })?;
    }
    Ok(if summary.status == "passed" {
        Finish::Passed
    } else {
        Finish::Failed
    })
}

/// A pipeline id unique enough on one host: seconds since the epoch (job ids are this times
/// 1000 plus a counter, and each runner has a random token, so two runs never share a job key).
fn pipeline_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jobs_berth_config_keeps_the_admins_settings_and_puts_the_pod_on_the_host_network() {
        let text = job_berth_config(Some("stop_grace = 2\nnetwork = \"slirp4netns\"\n"), false)
            .expect("config");
        let table: toml::Table = toml::from_str(&text).expect("toml");
        assert_eq!(table["network"].as_str(), Some("host"));
        assert_eq!(table["stop_grace"].as_integer(), Some(2));
        assert_eq!(table["scan_images"].as_bool(), Some(false));
        assert!(job_berth_config(Some("not = [toml"), true).is_err());
    }
}
