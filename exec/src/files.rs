//! The project's files as the pipeline computation sees them: read beneath the work tree's
//! handle without following links (a CI file is project input, never a path out of it), listed
//! as git lists them.

use std::io;
use std::path::{Component, Path};

use berth_beneath::Dir;
use berth_pipeline::model::ProjectFiles;

/// The largest CI file read (GitLab's own limit on a CI configuration is 1 MiB of YAML; included
/// files add up, each is read separately).
pub const MAX_CI_FILE: u64 = 4 << 20;

/// The work tree's files: read beneath its handle, listed from git.
#[derive(Debug)]
pub struct WorkTreeFiles {
    root: Dir,
    listed: Vec<String>,
}

impl WorkTreeFiles {
    /// The files beneath `root`; `listed` is what git lists (tracked, plus untracked on request).
    ///
    /// # Errors
    /// `root` cannot be opened as a directory.
    pub fn new(root: &Path, listed: Vec<String>) -> io::Result<Self> {
        Ok(Self {
            root: Dir::open(root)?,
            listed,
        })
    }
}

impl ProjectFiles for WorkTreeFiles {
    fn read(&self, path: &str) -> io::Result<Option<String>> {
        let relative = Path::new(path);
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{path:?} is not a path inside the project"),
            ));
        }
        match self.root.read(relative, MAX_CI_FILE) {
            Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{path} is not UTF-8"))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.listed.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_beneath_the_work_tree_and_links_out_are_refused() {
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("secret"), "host secret").expect("write");
        let tree = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            tree.path().join(".gitlab-ci.yml"),
            "job: {script: [true]}\n",
        )
        .expect("write");
        std::os::unix::fs::symlink(outside.path().join("secret"), tree.path().join("inc.yml"))
            .expect("symlink");
        let files =
            WorkTreeFiles::new(tree.path(), vec![".gitlab-ci.yml".to_owned()]).expect("open");
        assert_eq!(
            files.read(".gitlab-ci.yml").expect("read").as_deref(),
            Some("job: {script: [true]}\n")
        );
        assert_eq!(files.read("missing.yml").expect("read"), None);
        let linked = files.read("inc.yml");
        assert!(
            linked.is_err(),
            "a link out of the project was followed: {linked:?}"
        );
        assert!(files.read("../x").is_err());
        assert!(files.read("/etc/passwd").is_err());
    }
}
