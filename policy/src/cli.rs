//! `berth policy test DIR` and `berth policy eval DIR`: the flags, and what each prints and
//! exits with. The binary only prints what these return.

use std::path::{Path, PathBuf};

use crate::{Decision, Point, Policies, PolicyError};

/// `berth policy test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The policy directory (every `*.rego` below it, and `data.json` documents).
    pub dir: PathBuf,
    /// `pretty` (as `opa test` prints) or `json` (as `opa test --format json`).
    #[arg(long, short = 'f', default_value = "pretty", value_parser = ["pretty", "json"])]
    pub format: String,
    /// Every test, not only those that fail.
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

/// `berth policy eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The policy directory.
    pub dir: PathBuf,
    /// Where the decision is asked for: `prepare` or `build`.
    #[arg(long, value_parser = ["prepare", "build"])]
    pub point: String,
    /// The input document (JSON), as berth builds it at that point (`policy/schema/`).
    #[arg(long)]
    pub input: PathBuf,
}

/// What a policy command prints and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    /// For stdout.
    pub stdout: String,
    /// For stderr.
    pub stderr: String,
    /// The exit code.
    pub code: u8,
}

fn load(dir: &Path) -> Result<Policies, Vec<PolicyError>> {
    let (modules, data) = crate::load::read_dir(dir)?;
    Policies::new(modules, data)
}

fn problems(errors: &[PolicyError]) -> String {
    let mut text = format!(
        "{} error(s) occurred while loading the policies:\n",
        errors.len()
    );
    for e in errors {
        text.push_str(&format!("  {e}\n"));
    }
    text
}

/// Runs the directory's tests: 0 when all pass, 2 when one fails or errs, 1 when the policies
/// do not load (as `opa test`).
pub fn test(args: &TestArgs) -> Ran {
    match load(&args.dir) {
        Err(errors) => Ran {
            stdout: String::new(),
            stderr: problems(&errors),
            code: 1,
        },
        Ok(policies) => {
            let report = crate::testing::run(&policies);
            let stdout = if args.format == "json" {
                format!("{}\n", report.json())
            } else {
                report.pretty(args.verbose)
            };
            Ran {
                stdout,
                stderr: String::new(),
                code: report.exit_code(),
            }
        }
    }
}

/// Asks the directory's policies for a decision: prints `{"deny": [...]}`; 0 when allowed, 3
/// when denied, 1 when the policies or the input cannot be read or evaluated.
pub fn eval(args: &EvalArgs) -> Ran {
    let failed = |stderr: String| Ran {
        stdout: String::new(),
        stderr,
        code: 1,
    };
    let point = if args.point == "build" {
        Point::Build
    } else {
        Point::Prepare
    };
    let policies = match load(&args.dir) {
        Ok(p) => p,
        Err(errors) => return failed(problems(&errors)),
    };
    let input = match std::fs::read(&args.input)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| e.to_string())
        }) {
        Ok(v) => v,
        Err(e) => {
            return failed(format!(
                "cannot read the input {}: {e} (fix: a JSON document as policy/schema/ describes)\n",
                args.input.display()
            ));
        }
    };
    match policies.decide(point, &input) {
        Ok(Decision { deny }) => Ran {
            stdout: format!("{}\n", serde_json::json!({ "deny": deny })),
            stderr: String::new(),
            code: if deny.is_empty() { 0 } else { 3 },
        },
        Err(e) => failed(format!("{e}\n")),
    }
}
