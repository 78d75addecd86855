//! berth-scan: image inventory, offline advisory matching, policy and reports (pure core).
//!
//! The pipeline is `source` (image layers or a directory) → `analyzer` (package databases and
//! language manifests) → [`inventory::Inventory`] → [`report::Report::generate`] against an
//! [`advisory::AdvisoryIndex`] under a [`policy::Policy`] → `render` (GitLab, CycloneDX, SARIF,
//! JSON, log table). Only `source`, `analyzer`, `cache` and `advisory::db` touch the filesystem;
//! matching, policy and rendering are pure.

pub mod advisory;
pub mod analyzer;
pub mod cli;
pub mod digest;
pub mod inventory;
pub mod policy;
pub mod render;
pub mod report;
pub mod scan;
pub mod severity;
pub mod source;
pub mod version;
