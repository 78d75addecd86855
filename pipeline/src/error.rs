//! Every problem found in a configuration, each worded as GitLab words it.

use std::fmt;

/// One problem with the configuration, worded as GitLab shows it in the pipeline editor
/// (`jobs:build config contains unknown keys: scirpt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The message.
    pub message: String,
    /// Where it was found: `gitlab` for GitLab's own checks, `schema` for a violation of
    /// GitLab's CI JSON schema that no GitLab check reported.
    pub source: ErrorSource,
}

/// Which check found a [`ConfigError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// A check GitLab itself makes (YAML, includes, `extends`, keys, needs, rules …).
    Gitlab,
    /// GitLab's CI JSON schema (`pipeline/schema/gitlab-ci.json`).
    Schema,
    /// Not a problem of the YAML: GitLab creates no pipeline for these facts (workflow rules
    /// filter it out, or no job's rules add it).
    NoPipeline,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// All problems found, in the order they were found; never empty when returned as an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The problems.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Record that GitLab would create no pipeline, in GitLab's words.
    pub(crate) fn push_no_pipeline(&mut self, message: impl Into<String>) {
        self.errors.push(ConfigError {
            message: message.into(),
            source: ErrorSource::NoPipeline,
        });
    }

    /// Whether the only "errors" say that no pipeline is created.
    #[must_use]
    pub fn is_no_pipeline(&self) -> bool {
        !self.errors.is_empty()
            && self
                .errors
                .iter()
                .all(|e| e.source == ErrorSource::NoPipeline)
    }

    /// Record a problem found by one of GitLab's own checks.
    pub(crate) fn push(&mut self, message: impl Into<String>) {
        let message = message.into();
        if !self.errors.iter().any(|known| known.message == message) {
            self.errors.push(ConfigError {
                message,
                source: ErrorSource::Gitlab,
            });
        }
    }

    /// Record a schema violation.
    pub(crate) fn push_schema(&mut self, message: String) {
        self.errors.push(ConfigError {
            message,
            source: ErrorSource::Schema,
        });
    }

    /// Whether nothing was found.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The messages alone, for tests and listings.
    #[must_use]
    pub fn messages(&self) -> Vec<String> {
        self.errors
            .iter()
            .map(|error| error.message.clone())
            .collect()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.errors.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
