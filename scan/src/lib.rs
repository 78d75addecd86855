//! berth-scan: image inventory, offline advisory matching, policy and reports.
//!
//! The pipeline is `source` (image layers or a directory) → `scan` (per-layer analysis with its
//! layer cache, merged into an [`inventory::Inventory`]; the file formats are `analyzer`'s) →
//! [`report::Report::generate`] against an [`advisory::AdvisoryIndex`] loaded from
//! `advisory::db` under a [`policy::Policy`] → `render` (GitLab, CycloneDX, SARIF, JSON, log
//! table). [`api`] is that pipeline as typed calls, with a verdict; `cli` maps Trivy's flags
//! onto it. Only `source`, `scan` (its layer cache), `advisory::db` and `cli` touch the
//! filesystem (`api` through them); analyzers, matching, policy and rendering are pure.

pub mod advisory;
pub mod analyzer;
pub mod api;
pub mod cli;
pub mod digest;
pub mod ignore_policy;
pub mod inventory;
pub mod policy;
pub mod render;
pub mod report;
pub mod sbom;
pub mod scan;
pub mod severity;
pub mod source;
pub mod version;
pub mod vex;
