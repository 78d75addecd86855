//! Advisories: the OSV record model, the compact index and matcher, the on-disk database, and
//! the database published once for every host.

pub mod db;
pub mod index;
pub mod osv;
pub mod published;
pub mod vendor;

pub use db::{AdvisoryDb, DbError, DbMeta, StaleAction};
pub use index::{AdvisoryIndex, Match, Vuln};
pub use osv::OsvRecord;
