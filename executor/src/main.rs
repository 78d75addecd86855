//! The `berth` binary: gitlab-runner's custom executor. It only wires: arguments, logging,
//! privileges, signals, and the mapping of every outcome to the exit code the runner expects.

mod app;
mod cli;
mod observe;
mod privileges;

use clap::Parser;

fn main() -> std::process::ExitCode {
    match cli::Cli::try_parse() {
        Ok(cli) => app::main(cli),
        Err(e) => app::bad_arguments(&e),
    }
}
