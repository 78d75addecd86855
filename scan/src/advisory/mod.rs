//! Advisories: the OSV record model, the compact index and matcher, and the on-disk database.

pub mod db;
pub mod index;
pub mod osv;
pub mod vendor;

pub use db::{AdvisoryDb, DbError, DbMeta, StaleAction};
pub use index::{AdvisoryIndex, Match, Vuln};
pub use osv::OsvRecord;
