//! Runner and job tokens: the secrets the coordinator binds jobs and requests to.
//!
//! A job token is random per job and is the only credential a job's requests carry; it is
//! compared in constant time and never printed by `Debug`.

use std::fmt;

use subtle::ConstantTimeEq as _;

/// The prefix GitLab gives CI job tokens (`glcbt-`), so the runner's token masking treats ours
/// alike.
const JOB_TOKEN_PREFIX: &str = "glcbt-";

/// Random bytes in a job token (hex-encoded after the prefix).
const JOB_TOKEN_BYTES: usize = 24;

/// The token a runner polls with (`token` in the `POST /jobs/request` body).
#[derive(Clone, PartialEq, Eq)]
pub struct RunnerToken(String);

impl RunnerToken {
    /// Wraps a runner token; `None` when it is empty.
    pub fn new(token: impl Into<String>) -> Option<Self> {
        let token = token.into();
        (!token.is_empty()).then_some(Self(token))
    }

    /// The token text, for the runner's `config.toml`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn matches(&self, presented: &str) -> bool {
        constant_time_eq(&self.0, presented)
    }
}

impl fmt::Debug for RunnerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RunnerToken(..)")
    }
}

/// A job's own token: the `token` of its payload, `CI_JOB_TOKEN`, and the `JOB-TOKEN` or body
/// `token` of every request the job's runner makes.
#[derive(Clone, PartialEq, Eq)]
pub struct JobToken(String);

impl JobToken {
    /// A fresh random token from the operating system's generator.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0_u8; JOB_TOKEN_BYTES];
        getrandom::fill(&mut bytes)?;
        let mut text = String::with_capacity(JOB_TOKEN_PREFIX.len() + 2 * JOB_TOKEN_BYTES);
        text.push_str(JOB_TOKEN_PREFIX);
        for byte in bytes {
            text.push(hex_digit(byte >> 4));
            text.push(hex_digit(byte & 0x0f));
        }
        Ok(Self(text))
    }

    /// The token text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn matches(&self, presented: &str) -> bool {
        constant_time_eq(&self.0, presented)
    }
}

impl fmt::Debug for JobToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JobToken(..)")
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16).unwrap_or('0')
}

/// Equal in time independent of where the texts differ (their lengths are not secret).
fn constant_time_eq(expected: &str, presented: &str) -> bool {
    expected.as_bytes().ct_eq(presented.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_job_tokens_are_prefixed_random_and_redacted() -> Result<(), getrandom::Error> {
        let one = JobToken::generate()?;
        let two = JobToken::generate()?;
        assert!(one.as_str().starts_with("glcbt-"), "{}", one.as_str());
        assert_eq!(one.as_str().len(), "glcbt-".len() + 48);
        assert_ne!(one, two);
        assert!(one.matches(one.as_str()));
        assert!(!one.matches(two.as_str()));
        assert!(!one.matches(""));
        assert_eq!(format!("{one:?}"), "JobToken(..)");
        Ok(())
    }

    #[test]
    fn empty_runner_tokens_are_refused() {
        assert!(RunnerToken::new("").is_none());
        let token = RunnerToken::new("glrt-a").map(|t| t.matches("glrt-a"));
        assert_eq!(token, Some(true));
    }
}
