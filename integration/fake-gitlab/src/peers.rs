//! Finds the real gitlab-runner binaries ("peers") that `peers/build-gitlab-runner.sh` builds.
//!
//! A peer is looked up at `$BERTH_GITLAB_RUNNER_19` / `$BERTH_GITLAB_RUNNER_16`, else in
//! `$BERTH_PEERS_DIR` (default `/var/cache/berth-peers`). When the build script could not build
//! a version because the Go module proxy refused it (a final answer), it leaves
//! `<binary>.unavailable` with the exact error; [`locate`] reports that as
//! [`Peer::Unavailable`], distinct from a build script that was never run.

use std::path::{Path, PathBuf};

/// The build script, relative to the repository root.
pub const BUILD_SCRIPT: &str = "integration/fake-gitlab/peers/build-gitlab-runner.sh";

/// Default directory of built peers.
pub const DEFAULT_PEERS_DIR: &str = "/var/cache/berth-peers";

/// The runner versions the tests target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerVersion {
    /// v19.3.0, the newest release, or the 19.4.0 main-branch snapshot standing in for it
    /// (whole, or with its proxy-refused gitlab.com dependencies stubbed).
    V19,
    /// v16.11.0, the baseline.
    V16,
}

impl PeerVersion {
    /// The environment variable that overrides the binary path.
    pub const fn env_var(self) -> &'static str {
        match self {
            Self::V19 => "BERTH_GITLAB_RUNNER_19",
            Self::V16 => "BERTH_GITLAB_RUNNER_16",
        }
    }

    /// File names in the peers directory, preferred first.
    pub const fn file_names(self) -> &'static [&'static str] {
        match self {
            Self::V19 => &[
                "gitlab-runner-19.3.0",
                "gitlab-runner-19.4.0-pre-fc1f1862",
                "gitlab-runner-19.4.0-pre-fc1f1862-stubbed",
            ],
            Self::V16 => &["gitlab-runner-16.11.0"],
        }
    }

    /// Whether `run-single` understands `-c/-r` (v17.1+).
    pub const fn has_config_flag(self) -> bool {
        matches!(self, Self::V19)
    }

    /// Whether the runner sets `BUILD_EXIT_CODE_FILE` (v17.9+).
    pub const fn has_build_exit_code_file(self) -> bool {
        matches!(self, Self::V19)
    }
}

/// The outcome of looking for a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A runnable binary.
    Binary(PathBuf),
    /// The build script recorded that this version cannot be had; the text is its record.
    Unavailable(String),
}

/// The peer is neither built nor recorded as unavailable.
#[derive(Debug, thiserror::Error)]
#[error(
    "gitlab-runner {version:?} peer not found (looked at {looked:?}); run {BUILD_SCRIPT} first, or set {env_var} to a gitlab-runner binary"
)]
pub struct MissingPeer {
    /// The version looked for.
    pub version: PeerVersion,
    /// The paths tried.
    pub looked: Vec<PathBuf>,
    /// The override variable.
    pub env_var: &'static str,
}

/// The peers directory (`$BERTH_PEERS_DIR` or the default).
pub fn peers_dir() -> PathBuf {
    std::env::var_os("BERTH_PEERS_DIR")
        .map_or_else(|| PathBuf::from(DEFAULT_PEERS_DIR), PathBuf::from)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Looks for the peer of `version`.
pub fn locate(version: PeerVersion) -> Result<Peer, MissingPeer> {
    locate_in(
        version,
        std::env::var_os(version.env_var()).map(PathBuf::from),
        &peers_dir(),
    )
}

/// [`locate`] with the override and directory given explicitly.
pub fn locate_in(
    version: PeerVersion,
    override_path: Option<PathBuf>,
    dir: &Path,
) -> Result<Peer, MissingPeer> {
    let missing = |looked| MissingPeer {
        version,
        looked,
        env_var: version.env_var(),
    };
    if let Some(path) = override_path {
        return if is_executable(&path) {
            Ok(Peer::Binary(path))
        } else {
            Err(missing(vec![path]))
        };
    }
    let candidates: Vec<PathBuf> = version.file_names().iter().map(|n| dir.join(n)).collect();
    if let Some(found) = candidates.iter().find(|p| is_executable(p)) {
        return Ok(Peer::Binary(found.clone()));
    }
    let records: Vec<String> = candidates
        .iter()
        .filter_map(|p| {
            std::fs::read_to_string(p.with_file_name(format!("{}.unavailable", file_name(p)))).ok()
        })
        .collect();
    // Unavailable only when every candidate was tried and refused.
    if !records.is_empty() && records.len() == candidates.len() {
        return Ok(Peer::Unavailable(records.join("\n")));
    }
    Err(missing(candidates))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_names_the_build_script() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let err = locate_in(PeerVersion::V16, None, dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(BUILD_SCRIPT), "{err}");
        assert!(err.contains("BERTH_GITLAB_RUNNER_16"), "{err}");
    }

    #[test]
    fn unavailable_needs_every_candidate_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let write = |name: &str| {
            std::fs::write(dir.path().join(name), "refused").unwrap_or_else(|e| panic!("{e}"))
        };
        write("gitlab-runner-19.3.0.unavailable");
        assert!(locate_in(PeerVersion::V19, None, dir.path()).is_err());
        write("gitlab-runner-19.4.0-pre-fc1f1862.unavailable");
        assert!(locate_in(PeerVersion::V19, None, dir.path()).is_err());
        write("gitlab-runner-19.4.0-pre-fc1f1862-stubbed.unavailable");
        assert!(matches!(
            locate_in(PeerVersion::V19, None, dir.path()),
            Ok(Peer::Unavailable(_))
        ));
    }
}
