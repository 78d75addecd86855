//! The small versioned state file in the job directory: what later stages and the reaper need
//! to know about a prepared job. It holds no secrets.

use std::path::Path;

use berth_sandbox::Started;
use serde::{Deserialize, Serialize};

use crate::StageError;

/// Current format version.
pub const VERSION: u32 = 1;

/// A process identified beyond its pid (pids are reused): pid plus start time in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    /// Pid.
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`.
    pub start_ticks: u64,
}

impl ProcessIdentity {
    /// The identity of `pid`, if it runs.
    pub fn of(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after_name = stat.rsplit_once(')')?.1;
        // Fields after the name start at field 3 (state); start time is field 22.
        let start_ticks = after_name.split_whitespace().nth(19)?.parse().ok()?;
        Some(Self { pid, start_ticks })
    }

    /// Whether this very process still runs (and is not a zombie).
    pub fn is_alive(&self) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return false;
        };
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        !zombie && Self::of(self.pid).is_some_and(|now| now == *self)
    }
}

/// What prepare recorded about the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobState {
    /// Format version.
    pub version: u32,
    /// Job key.
    pub key: String,
    /// The gitlab-runner process that owns the job (berth's parent at prepare).
    pub runner: Option<ProcessIdentity>,
    /// Unix time after which the job is over whatever its runner says.
    pub deadline_unix: u64,
    /// The helper container, once started.
    pub helper: Option<Started>,
    /// The job container, once started.
    pub job: Option<Started>,
    /// Service containers, once started.
    #[serde(default)]
    pub services: Vec<Started>,
    /// Whether prepare finished.
    pub prepared: bool,
}

impl JobState {
    /// Reads the state file.
    pub fn load(path: &Path) -> Result<Self, StageError> {
        let text = std::fs::read_to_string(path).map_err(StageError::io(path))?;
        let state: Self = serde_json::from_str(&text).map_err(|e| StageError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(e),
        })?;
        if state.version != VERSION {
            return Err(StageError::Io {
                path: path.to_owned(),
                source: std::io::Error::other(format!(
                    "state format {} is not {VERSION}: a different berth version prepared this job",
                    state.version
                )),
            });
        }
        Ok(state)
    }

    /// Writes the state file atomically, beneath its directory's handle: a link planted in its
    /// place is replaced, never followed.
    pub fn save(&self, path: &Path) -> Result<(), StageError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| StageError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(e),
        })?;
        let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        else {
            return Err(StageError::io(path)(std::io::Error::other(
                "not a file path",
            )));
        };
        berth_beneath::Dir::open(dir)
            .and_then(|d| d.write_atomic(name, text.as_bytes(), 0o644))
            .map_err(StageError::io(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_identifies_live_processes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        let me = ProcessIdentity::of(std::process::id()).expect("self");
        assert!(me.is_alive());
        let state = JobState {
            version: VERSION,
            key: "j1-local".into(),
            runner: Some(me),
            deadline_unix: 10,
            helper: Some(Started { init_pid: 5 }),
            job: None,
            services: Vec::new(),
            prepared: false,
        };
        state.save(&path).expect("save");
        assert_eq!(JobState::load(&path).expect("load"), state);
        let stale = ProcessIdentity {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(!stale.is_alive(), "a reused pid is not the same process");
    }
}
