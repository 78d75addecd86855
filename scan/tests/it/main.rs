//! berth-scan's integration tests, in one binary (one link instead of five on small builders).
//!
//! Oracle and schema tests need the tools `scan/tests/setup.sh` installs; without them they
//! fail and say so.

mod advisory_db;
mod cli;
mod grype;
mod hostile;
mod odd_images;
mod oracle;
mod published_db;
mod reports;
mod rpm;
mod rpm_formats;
mod sources;
mod support;
mod trivy;
mod vex;
