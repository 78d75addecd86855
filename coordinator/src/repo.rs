//! Bare git repositories served over git's dumb HTTP protocol: plain files under the
//! repository directory, nothing else.
//!
//! A request path must name a regular file below a served repository through plain path
//! components only: no `..`, no `.`, no symbolic link anywhere below the repository directory.
//! Percent-encoded names are not decoded (git never encodes repository file names), so
//! `%2e%2e` is an ordinary, missing file name.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Component, Path, PathBuf};

/// Why a repository could not be served.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The URL path is not a relative path of plain components.
    #[error(
        "repository URL path {0:?} must be relative and made of plain components (like group/project.git)"
    )]
    BadUrlPath(String),
    /// The directory is not a directory.
    #[error("repository directory {}: {source}", path.display())]
    Directory {
        /// The directory given.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
}

/// The served repositories by URL prefix (`/group/project.git`).
#[derive(Debug, Default)]
pub(crate) struct Repos(BTreeMap<String, PathBuf>);

impl Repos {
    /// Serves `dir` at `/<url_path>`.
    pub(crate) fn insert(&mut self, url_path: &str, dir: &Path) -> Result<(), RepoError> {
        let trimmed = url_path.trim_matches('/');
        if trimmed.is_empty() || !plain_components(trimmed) {
            return Err(RepoError::BadUrlPath(url_path.to_owned()));
        }
        let metadata = std::fs::metadata(dir).map_err(|source| RepoError::Directory {
            path: dir.to_path_buf(),
            source,
        })?;
        if !metadata.is_dir() {
            return Err(RepoError::Directory {
                path: dir.to_path_buf(),
                source: std::io::Error::other("not a directory"),
            });
        }
        self.0.insert(format!("/{trimmed}"), dir.to_path_buf());
        Ok(())
    }

    /// Opens the file a request path names, or `None` when it names nothing servable.
    pub(crate) fn open(&self, request_path: &str) -> Option<File> {
        self.0.iter().find_map(|(prefix, dir)| {
            let rest = request_path
                .strip_prefix(prefix.as_str())?
                .strip_prefix('/')?;
            open_below(dir, rest)
        })
    }
}

/// Checked on the text: `Path::components` would silently drop a `.` or an empty part.
fn plain_components(relative: &str) -> bool {
    relative
        .split('/')
        .all(|part| !matches!(part, "" | "." | ".."))
        && Path::new(relative)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// Opens `dir/relative` when every step below `dir` is a plain, non-symlink component and the
/// last one a regular file.
fn open_below(dir: &Path, relative: &str) -> Option<File> {
    if !plain_components(relative) {
        return None;
    }
    let mut path = dir.to_path_buf();
    for component in Path::new(relative).components() {
        path.push(component);
        if std::fs::symlink_metadata(&path)
            .ok()?
            .file_type()
            .is_symlink()
        {
            return None;
        }
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(&path)
        .ok()?;
    file.metadata().ok()?.is_file().then_some(file)
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn read(file: Option<File>) -> Option<String> {
        let mut text = String::new();
        file?.read_to_string(&mut text).ok()?;
        Some(text)
    }

    #[test]
    fn only_plain_files_below_the_repository_are_served() -> std::io::Result<()> {
        let root = tempfile::tempdir()?;
        let repo = root.path().join("project.git");
        std::fs::create_dir_all(repo.join("info"))?;
        std::fs::write(repo.join("info/refs"), "refs")?;
        std::fs::write(root.path().join("secret"), "secret")?;
        std::os::unix::fs::symlink(root.path().join("secret"), repo.join("link"))?;
        std::os::unix::fs::symlink(repo.join("info"), repo.join("dirlink"))?;
        let mut repos = Repos::default();
        repos
            .insert("group/project.git", &repo)
            .map_err(std::io::Error::other)?;
        assert_eq!(
            read(repos.open("/group/project.git/info/refs")).as_deref(),
            Some("refs")
        );
        for bad in [
            "/group/project.git/../secret",
            "/group/project.git/info/../../secret",
            "/group/project.git/%2e%2e/secret",
            "/group/project.git/%2E%2E/secret",
            "/group/project.git/./info/refs",
            "/group/project.git/info/./refs",
            "/group/project.git//info/refs",
            "/group/project.git/link",
            "/group/project.git/dirlink/refs",
            "/group/project.git/info",
            "/group/project.git",
            "/group/project.gitinfo/refs",
            "/group/project.git/",
        ] {
            assert!(repos.open(bad).is_none(), "{bad} must not be served");
        }
        Ok(())
    }

    #[test]
    fn url_paths_must_be_plain() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut repos = Repos::default();
        for bad in ["", "/", "../x.git", "a/./b.git", "a//b.git"] {
            assert!(
                matches!(repos.insert(bad, dir.path()), Err(RepoError::BadUrlPath(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            repos.insert("a.git", &dir.path().join("missing")),
            Err(RepoError::Directory { .. })
        ));
        Ok(())
    }
}
