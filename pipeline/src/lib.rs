//! A project's `.gitlab-ci.yml` computed into a pipeline as GitLab computes it: YAML with
//! anchors and `!reference`, includes, `extends`, `default:`/`inherit:`, rules and their
//! expression language, `needs`, `parallel`, variables. Pure: files are read through the
//! [`model::ProjectFiles`] seam, repository facts arrive as [`model::RepoFacts`].

pub mod expr;
pub mod model;
