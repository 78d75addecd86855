//! The recording driver (`drivers/recording-driver.sh`) and the parser for its record file.
//!
//! The driver is a stand-in custom executor that runs each stage script on the host and writes
//! one tab-separated record per call, so tests can assert the stage order, argv layout and
//! environment the real runner produces (contract §6).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The driver script's source.
pub const SCRIPT: &str = include_str!("../drivers/recording-driver.sh");

/// Path of the driver script in this crate's source tree.
pub fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("drivers/recording-driver.sh")
}

/// One record: a driver invocation (`config`, `prepare`, `run`, `cleanup`), the exit of a
/// stage script (`exit`), the end of cleanup (`cleanup-done`), or a SIGTERM the driver saw
/// (`signal`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverCall {
    /// `config`, `prepare`, `run`, `cleanup`, `exit`, `cleanup-done` or `signal`.
    pub op: String,
    /// argv after the operation (for `run`: script path and stage name).
    pub args: Vec<String>,
    /// Recorded environment variables.
    pub env: BTreeMap<String, String>,
    /// Other `key=value` fields (`stage`, `rc`, `sig`, `t`).
    pub fields: BTreeMap<String, String>,
}

impl DriverCall {
    /// The stage name of a `run` call (its last argument), or the `stage` field.
    pub fn stage(&self) -> Option<&str> {
        if self.op == "run" {
            self.args.last().map(String::as_str)
        } else {
            self.fields.get("stage").map(String::as_str)
        }
    }

    /// The record's time (`t`, bash's `$EPOCHREALTIME`).
    pub fn time(&self) -> Option<std::time::SystemTime> {
        let secs: f64 = self.fields.get("t")?.replace(',', ".").parse().ok()?;
        std::time::SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::from_secs_f64(secs))
    }

    /// A recorded environment variable.
    pub fn env(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
    }
}

fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses the record file's text.
pub fn parse(text: &str) -> Vec<DriverCall> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut call = DriverCall::default();
            for field in line.split('\t') {
                if let Some(rest) = field.strip_prefix("env:") {
                    if let Some((k, v)) = rest.split_once('=') {
                        call.env.insert(k.to_owned(), unescape(v));
                    }
                } else if let Some(arg) = field.strip_prefix("arg=") {
                    call.args.push(unescape(arg));
                } else if let Some(op) = field.strip_prefix("op=") {
                    op.clone_into(&mut call.op);
                } else if let Some((k, v)) = field.split_once('=') {
                    call.fields.insert(k.to_owned(), unescape(v));
                }
            }
            call
        })
        .collect()
}

/// Reads and parses a record file; a missing file means no calls.
pub fn read(path: &Path) -> Vec<DriverCall> {
    std::fs::read_to_string(path)
        .map(|t| parse(&t))
        .unwrap_or_default()
}

/// The op sequence, with `run` calls shown as `run:<stage>`, for compact assertions.
pub fn sequence(calls: &[DriverCall]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| matches!(c.op.as_str(), "config" | "prepare" | "run" | "cleanup"))
        .map(|c| {
            if c.op == "run" {
                format!("run:{}", c.stage().unwrap_or_default())
            } else {
                c.op.clone()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records() {
        let calls = parse(
            "op=run\targc=2\targ=/tmp/x/script\targ=build_script\tenv:CUSTOM_ENV_A=1\\n2\nop=exit\tstage=build_script\trc=3\n",
        );
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].stage(), Some("build_script"));
        assert_eq!(calls[0].env("CUSTOM_ENV_A"), Some("1\n2"));
        assert_eq!(calls[1].fields.get("rc").map(String::as_str), Some("3"));
        assert!(calls[0].time().is_none());
        let timed = parse("op=cleanup-done\tt=1795469283.250000\n");
        let t = timed[0]
            .time()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        assert_eq!(t.map(|d| d.as_millis()), Some(1_795_469_283_250));
        assert_eq!(sequence(&calls), vec!["run:build_script".to_owned()]);
    }

    #[test]
    fn embedded_script_is_the_file() {
        assert_eq!(
            std::fs::read_to_string(script_path()).ok().as_deref(),
            Some(SCRIPT)
        );
    }
}
