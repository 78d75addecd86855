//! berth-coordinator: the GitLab coordinator `berth exec` embeds on loopback.
//!
//! It hands job payloads to `gitlab-runner run-single` by runner token, takes traces, job
//! updates and artifact uploads (checked against each job's random token), serves dependency
//! artifacts and the project's sources as a git repository over dumb HTTP, and reports what
//! happened as [`Event`]s.
//!
//! * [`payload`] builds job payloads ([`payload::JobPayload`]).
//! * [`server`] is the coordinator ([`Coordinator`]).
//! * [`event`] is what it reports ([`Event`]).
//! * [`artifact`] names the artifact kinds and where they are stored.
//! * [`token`] holds runner and job tokens.
//! * [`repo`] serves bare repositories' files.

pub mod artifact;
pub mod event;
pub mod payload;
pub mod repo;
pub mod server;
pub mod token;
mod trace;

pub use artifact::{ArtifactFormat, ArtifactType, StoredArtifact};
pub use event::{Event, Events, FinalState};
pub use payload::JobPayload;
pub use server::{
    Access, AssignError, AssignProblem, Coordinator, CoordinatorConfig, Endpoint, JobState, Limits,
    RecordedRequest, RemoteStatus, StartError, StatusRule, StoreError,
};
pub use token::{JobToken, RunnerToken};
