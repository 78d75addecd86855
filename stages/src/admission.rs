//! The admin's admission policies (`admission_policies`): at prepare, what berth knows of the
//! job and of the images it resolved, asked of `data.berth.prepare.deny` once every image is
//! available and before any container exists; after each build, the image, berth's scan report
//! of it, its SBOM and the VEX statements applied, asked of `data.berth.build.deny`. Every fact comes from GitLab's payload fields or
//! from berth itself, never from a variable a pipeline can set, except the pipeline source,
//! which the payload carries only as `CI_PIPELINE_SOURCE`. A deny fails the job (BUILD) with
//! every message; policies that cannot be read or evaluated fail it as SYSTEM.

use std::str::FromStr;

use berth_config::admin::BuildSocket;
use berth_policy::input::{
    BuildInput, BuiltImage, GitRef, Image, Job as JobFacts, PrepareInput, Project, Role, Signature,
};
use berth_policy::{Point, Policies};

use crate::{Job, StageError};

/// What prepare resolved about one image.
#[derive(Debug, Clone)]
pub struct Resolved<'a> {
    /// The job's image or a service.
    pub role: Role,
    /// The name as the job wrote it.
    pub name: &'a str,
    /// A service's aliases.
    pub aliases: Vec<String>,
    /// The pull policies that applied.
    pub pull_policy: Vec<String>,
    /// The manifest digest, when known.
    pub digest: Option<String>,
    /// What the image trust said.
    pub signature: Signature,
}

fn image(resolved: &Resolved<'_>) -> Image {
    let parsed = oci_spec::distribution::Reference::from_str(resolved.name).ok();
    let registry = parsed.as_ref().map_or("", |r| r.registry()).to_owned();
    let repository = parsed.as_ref().map_or("", |r| r.repository()).to_owned();
    let tag = parsed.as_ref().and_then(|r| r.tag()).map(str::to_owned);
    let named_digest = parsed.as_ref().and_then(|r| r.digest()).map(str::to_owned);
    let mut name = format!("{registry}/{repository}");
    if let Some(tag) = &tag {
        name.push(':');
        name.push_str(tag);
    }
    if let Some(digest) = &named_digest {
        name.push('@');
        name.push_str(digest);
    }
    Image {
        role: resolved.role,
        name,
        registry,
        repository,
        tag,
        digest: resolved.digest.clone().or(named_digest),
        aliases: resolved.aliases.clone(),
        pull_policy: resolved.pull_policy.clone(),
        signature: resolved.signature,
    }
}

/// The input at prepare for `job` and its resolved images (pure).
pub fn prepare_input(job: &Job, images: &[Resolved<'_>]) -> PrepareInput {
    let payload = &job.payload;
    let config = &job.config;
    let mut builders = Vec::new();
    if config.nested_builds {
        builders.push("nested".to_owned());
    }
    if config.build_socket != BuildSocket::Off {
        builders.push("build_socket".to_owned());
    }
    if config.buildkitd.is_some() {
        builders.push("buildkit".to_owned());
    }
    PrepareInput {
        project: Project {
            id: payload.job_info.project_id,
            path: payload.git_info.project_path().unwrap_or_default(),
        },
        git_ref: GitRef {
            name: payload.git_info.git_ref.clone(),
            protected: payload.git_info.protected.unwrap_or(false),
            tag: payload.git_info.ref_type == "tag",
        },
        job: JobFacts {
            name: payload.job_info.name.clone(),
            stage: payload.job_info.stage.clone(),
            pipeline_source: payload
                .variable("CI_PIPELINE_SOURCE")
                .unwrap_or_default()
                .to_owned(),
        },
        images: images.iter().map(image).collect(),
        builders,
    }
}

fn broken(problems: &[berth_policy::PolicyError]) -> StageError {
    StageError::AdmissionBroken {
        detail: problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Asks the policies in `dir` at `point` about `input`.
fn ask(
    dir: &std::path::Path,
    point: Point,
    input: impl serde::Serialize,
) -> Result<(), StageError> {
    let policies = berth_sandbox::process::as_root(|| berth_policy::load::read_dir(dir))
        .and_then(|(modules, data)| Policies::new(modules, data))
        .map_err(|p| broken(&p))?;
    let input = serde_json::to_value(input).map_err(|e| StageError::AdmissionBroken {
        detail: e.to_string(),
    })?;
    let decision = policies.decide(point, &input).map_err(|e| broken(&[e]))?;
    if decision.allowed() {
        Ok(())
    } else {
        Err(StageError::AdmissionDenied {
            messages: decision.deny,
        })
    }
}

/// Asks the admin's policies (if any) whether `job` may run with `images`.
pub fn admit(job: &Job, images: &[Resolved<'_>]) -> Result<(), StageError> {
    match &job.config.admission_policies {
        Some(dir) => ask(dir, Point::Prepare, prepare_input(job, images)),
        None => Ok(()),
    }
}

/// The VEX statements the scan applied to `report`'s findings.
fn vex_applied(report: &berth_scan::report::Report) -> Vec<serde_json::Value> {
    report
        .suppressed
        .iter()
        .filter_map(|s| match &s.reason {
            berth_scan::report::Suppression::Vex {
                source,
                status,
                justification,
                ..
            } => {
                let mut statement = serde_json::json!({
                    "vulnerability": s.finding.id,
                    "status": status,
                    "source": source,
                });
                if let Some(j) = justification {
                    statement["justification"] = serde_json::Value::String(j.clone());
                }
                Some(statement)
            }
            _ => None,
        })
        .collect()
}

/// The input after a build of `image` (pure): `trivy_json` and `cyclonedx` are berth's report
/// and SBOM of it as rendered for the job.
pub fn build_input(
    job: &Job,
    image: &berth_sandbox::BuiltImage,
    report: &berth_scan::report::Report,
    trivy_json: &str,
    cyclonedx: &str,
) -> BuildInput {
    let facts = prepare_input(job, &[]);
    let parse = |text: &str| serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
    BuildInput {
        project: facts.project,
        git_ref: facts.git_ref,
        job: facts.job,
        image: BuiltImage {
            names: image.names.clone(),
            id: image.config_digest(),
            builder: image.builder.replace('-', "_"),
        },
        report: parse(trivy_json),
        sbom: parse(cyclonedx),
        vex: vex_applied(report),
    }
}

/// Asks the admin's policies (if any) whether the image the job built may leave it.
pub fn admit_build(
    job: &Job,
    image: &berth_sandbox::BuiltImage,
    report: &berth_scan::report::Report,
    trivy_json: &str,
    cyclonedx: &str,
) -> Result<(), StageError> {
    match &job.config.admission_policies {
        Some(dir) => ask(
            dir,
            Point::Build,
            build_input(job, image, report, trivy_json, cyclonedx),
        ),
        None => Ok(()),
    }
}
