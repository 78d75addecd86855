//! What the policies see: typed inputs, serialised to the JSON documented by
//! `policy/schema/prepare-input.schema.json` and `build-input.schema.json` (a unit test keeps the
//! types and the schemas in step). Only facts berth itself established go in: the job's payload
//! from GitLab, the images as berth resolved them, and berth's own scan.

use serde::Serialize;

/// The project a job belongs to.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Project {
    /// GitLab's project id.
    pub id: u64,
    /// `group/project`.
    pub path: String,
}

/// The ref the pipeline runs for.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GitRef {
    /// Branch or tag name.
    pub name: String,
    /// Whether GitLab says the ref is protected.
    pub protected: bool,
    /// Whether it is a tag.
    pub tag: bool,
}

/// The job as users name it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Job {
    /// The job's name in `.gitlab-ci.yml`.
    pub name: String,
    /// Its stage.
    pub stage: String,
    /// `CI_PIPELINE_SOURCE`: push, merge_request_event, schedule, web, ...
    pub pipeline_source: String,
}

/// Whether an image's signature was checked, and how that ended.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Signature {
    /// Verified under the image trust policy in force.
    Verified,
    /// The trust policy accepts this scope without a signature.
    NotRequired,
    /// Not checked (no trust policy configured).
    Unchecked,
}

/// What an image is to the job.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The job's `image:`.
    Job,
    /// One of its `services:`.
    Service,
}

/// An image the job asks for.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Image {
    /// What it is to the job.
    pub role: Role,
    /// The name as the job wrote it, normalised (`docker.io/library/alpine:3.20`).
    pub name: String,
    /// The registry host (`docker.io`).
    pub registry: String,
    /// The repository without the registry (`library/alpine`).
    pub repository: String,
    /// The tag, when the name has one.
    pub tag: Option<String>,
    /// The manifest digest, when known at prepare (named by the job, or already in the base
    /// store).
    pub digest: Option<String>,
    /// A service's aliases.
    pub aliases: Vec<String>,
    /// The pull policies the job asked for (the config's when it asked for none).
    pub pull_policy: Vec<String>,
    /// The signature check.
    pub signature: Signature,
}

/// The input at prepare.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PrepareInput {
    /// The project.
    pub project: Project,
    /// The ref.
    #[serde(rename = "ref")]
    pub git_ref: GitRef,
    /// The job.
    pub job: Job,
    /// The job's image, then its services.
    pub images: Vec<Image>,
    /// The builders the job is offered (`nested`, `build_socket`, `buildkit`).
    pub builders: Vec<String>,
}

/// An image the job built.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BuiltImage {
    /// Its names (`registry/repo:tag`), as the builder tagged it.
    pub names: Vec<String>,
    /// Its image id (the config digest).
    pub id: String,
    /// The builder that made it (`nested`, `build_socket`, `buildkit`).
    pub builder: String,
}

/// The input after each build.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BuildInput {
    /// The project.
    pub project: Project,
    /// The ref.
    #[serde(rename = "ref")]
    pub git_ref: GitRef,
    /// The job.
    pub job: Job,
    /// The image.
    pub image: BuiltImage,
    /// berth's scan report of it (Trivy's JSON report shape).
    pub report: serde_json::Value,
    /// Its SBOM (CycloneDX JSON).
    pub sbom: serde_json::Value,
    /// The VEX statements applied to its findings: `{vulnerability, status, justification,
    /// source}`.
    pub vex: Vec<serde_json::Value>,
}

#[cfg(test)]
pub(crate) mod examples {
    use super::*;

    /// A prepare input with every field set.
    pub(crate) fn prepare() -> PrepareInput {
        PrepareInput {
            project: Project {
                id: 42,
                path: "group/app".into(),
            },
            git_ref: GitRef {
                name: "main".into(),
                protected: true,
                tag: false,
            },
            job: Job {
                name: "build image".into(),
                stage: "build".into(),
                pipeline_source: "push".into(),
            },
            images: vec![
                Image {
                    role: Role::Job,
                    name: "registry.example.com/tools/builder:1.4".into(),
                    registry: "registry.example.com".into(),
                    repository: "tools/builder".into(),
                    tag: Some("1.4".into()),
                    digest: Some(format!("sha256:{}", "a".repeat(64))),
                    aliases: Vec::new(),
                    pull_policy: vec!["if-not-present".into()],
                    signature: Signature::Verified,
                },
                Image {
                    role: Role::Service,
                    name: "docker.io/library/postgres:latest".into(),
                    registry: "docker.io".into(),
                    repository: "library/postgres".into(),
                    tag: Some("latest".into()),
                    digest: None,
                    aliases: vec!["db".into()],
                    pull_policy: vec!["always".into()],
                    signature: Signature::Unchecked,
                },
            ],
            builders: vec!["nested".into(), "build_socket".into()],
        }
    }

    /// A build input with every field set.
    pub(crate) fn build() -> BuildInput {
        let prepare = prepare();
        BuildInput {
            project: prepare.project,
            git_ref: prepare.git_ref,
            job: prepare.job,
            image: BuiltImage {
                names: vec!["registry.example.com/group/app:1.0".into()],
                id: format!("sha256:{}", "b".repeat(64)),
                builder: "buildkit".into(),
            },
            report: serde_json::json!({"SchemaVersion": 2, "Results": []}),
            sbom: serde_json::json!({"bomFormat": "CycloneDX", "specVersion": "1.6"}),
            vex: vec![serde_json::json!({
                "vulnerability": "CVE-2024-0001",
                "status": "not_affected",
                "justification": "vulnerable_code_not_in_execute_path",
                "source": ".vex/app.openvex.json"
            })],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::examples;

    fn check(schema_text: &str, instance: &serde_json::Value) {
        let schema: serde_json::Value = serde_json::from_str(schema_text).expect("schema is JSON");
        let validator = jsonschema::validator_for(&schema).expect("a valid schema");
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{}: {e}", e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}\n{instance:#}");
    }

    #[test]
    fn the_inputs_are_what_their_json_schemas_document() {
        let prepare = serde_json::to_value(examples::prepare()).expect("JSON");
        check(
            include_str!("../schema/prepare-input.schema.json"),
            &prepare,
        );
        let build = serde_json::to_value(examples::build()).expect("JSON");
        check(include_str!("../schema/build-input.schema.json"), &build);
    }

    #[test]
    fn the_schemas_refuse_what_the_types_never_produce() {
        let mut prepare = serde_json::to_value(examples::prepare()).expect("JSON");
        prepare["images"][0]["signature"] = serde_json::json!("maybe");
        prepare["extra"] = serde_json::json!(1);
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../schema/prepare-input.schema.json"))
                .expect("JSON");
        let validator = jsonschema::validator_for(&schema).expect("valid");
        assert_eq!(validator.iter_errors(&prepare).count(), 2);
    }
}
