//! Pure tests of the pipeline computation (no Podman): fixtures written from GitLab's CI/CD
//! YAML reference, in an in-memory project.

mod common;
mod includes;
mod needs_parallel;
mod rules;
mod validation;
mod variables;
mod yaml_features;
