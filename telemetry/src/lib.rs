//! berth-telemetry: what berth tells the runner's admin about itself, apart from the job log.
//!
//! Metrics the way batch jobs give them to Prometheus: every berth process (one per stage) notes
//! [`Event`]s in the process-wide [`recorder`]; at its end the binary folds them into the
//! accumulated [`Totals`] kept under the config's `state_dir` and renders them to
//! `<metrics_dir>/<name>.prom` for node_exporter's textfile collector ([`write::flush`]).
//! The model ([`catalog`], [`model`]) and the renderer ([`render`]) are pure; files are touched
//! only in [`write`], and the admin log's sinks (journald or a root-owned file) in [`adminlog`].

pub mod adminlog;
pub mod catalog;
#[cfg(test)]
mod deploy;
pub mod model;
pub mod recorder;
pub mod render;
pub mod write;

pub use model::{Event, JobOutcome, Totals};
