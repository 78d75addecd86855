//! A stand-alone driver for the scanner library, the same commands as `berth scan` and `berth db
//! update` without building the executor: `cargo run -p berth-scan --example berth-scan -- scan
//! --input image.tar` and `… -- db update --from osv/`.

use std::io::Write;
use std::process::ExitCode;

use berth_scan::cli::{self, DbUpdateArgs, ScanArgs};
use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Scan an image or directory.
    Scan(Box<ScanArgs>),
    /// Advisory database commands.
    Db {
        #[command(subcommand)]
        cmd: DbCmd,
    },
}

#[derive(Subcommand)]
enum DbCmd {
    /// Rebuild the advisory database from OSV data.
    Update(DbUpdateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let now = time::OffsetDateTime::now_utc();
    let mut err = std::io::stderr();
    let mut out = std::io::stdout();
    let result = match &cli.cmd {
        Cmd::Scan(a) => cli::run_scan(a, now).map(|o| {
            for w in &o.warnings {
                let _ = writeln!(err, "warning: {w}");
            }
            let _ = out.write_all(o.stdout.as_bytes());
            if let Some(m) = o.report.policy_message() {
                let _ = err.write_all(m.as_bytes());
            }
            o.exit_code
        }),
        Cmd::Db {
            cmd: DbCmd::Update(a),
        } => cli::run_db_update(a, now).map(|s| {
            for w in &s.warnings {
                let _ = writeln!(err, "warning: skipped {w}");
            }
            let _ = writeln!(
                err,
                "imported {} records into {} ecosystems",
                s.meta.records,
                s.meta.ecosystems.len()
            );
            0
        }),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            ExitCode::from(2)
        }
    }
}
