//! `.berth/` in the project: what a local run keeps (each job's log and artifacts, the
//! runner's configs, the source snapshot served to the runner) and that git never sees (berth
//! adds `.berth/` to `.git/info/exclude`).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::ExecError;

/// The directories of `.berth/`.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The work tree.
    pub work_tree: PathBuf,
    /// `.berth/`.
    pub root: PathBuf,
    /// `.berth/logs/`: one log per job.
    pub logs: PathBuf,
    /// `.berth/artifacts/`: the artifacts archive per job.
    pub artifacts: PathBuf,
    /// `.berth/exec/`: what the run itself needs (snapshot, runner configs, uploads).
    pub exec: PathBuf,
}

fn state_error(path: &Path) -> impl FnOnce(std::io::Error) -> ExecError + '_ {
    move |source| ExecError::State {
        path: path.to_path_buf(),
        source,
    }
}

/// A job name as a file name: what is not alphanumeric, `.`, `_` or `-` becomes `-`.
#[must_use]
pub fn file_name_of(job: &str) -> String {
    let name: String = job
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_start_matches('.');
    if name.is_empty() {
        "job".to_owned()
    } else {
        name.to_owned()
    }
}

impl Layout {
    /// Creates `.berth/` in `work_tree` and excludes it from git through `exclude_file`
    /// (the repository's `info/exclude`).
    ///
    /// # Errors
    /// A directory or the exclude file cannot be written.
    pub fn create(work_tree: &Path, exclude_file: &Path) -> Result<Self, ExecError> {
        let root = work_tree.join(".berth");
        let layout = Self {
            work_tree: work_tree.to_path_buf(),
            logs: root.join("logs"),
            artifacts: root.join("artifacts"),
            exec: root.join("exec"),
            root,
        };
        for dir in [&layout.root, &layout.logs, &layout.artifacts, &layout.exec] {
            std::fs::create_dir_all(dir).map_err(state_error(dir))?;
        }
        // An earlier run's runner configs (tokens) and uploads (copied out once a job ended)
        // are of no further use.
        for dir in [layout.exec.join("runners"), layout.exec.join("uploads")] {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(ExecError::State { path: dir, source }),
            }
            std::fs::create_dir_all(&dir).map_err(state_error(&dir))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(state_error(&dir))?;
        }
        exclude(exclude_file)?;
        Ok(layout)
    }

    /// The bare repository the coordinator serves.
    #[must_use]
    pub fn source(&self) -> PathBuf {
        self.exec.join("source.git")
    }

    /// Where the coordinator stores uploads.
    #[must_use]
    pub fn uploads(&self) -> PathBuf {
        self.exec.join("uploads")
    }

    /// The berth config the jobs' stages read.
    #[must_use]
    pub fn berth_config(&self) -> PathBuf {
        self.exec.join("berth.toml")
    }

    /// The config.toml of attempt `id`'s runner.
    #[must_use]
    pub fn runner_config(&self, id: u64) -> PathBuf {
        self.exec.join("runners").join(format!("{id}.toml"))
    }

    /// Writes `bytes` to `path` readable by its owner only, replacing what was there.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write_private(&self, path: &Path, bytes: &[u8]) -> Result<(), ExecError> {
        let _ = std::fs::remove_file(path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)
            .map_err(state_error(path))?;
        file.write_all(bytes).map_err(state_error(path))
    }

    /// The log file of `job`, truncated for its first attempt, appended to for retries.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn create_log(&self, job: &str, attempt: u32) -> Result<std::fs::File, ExecError> {
        let path = self.logs.join(format!("{}.log", file_name_of(job)));
        let mut options = std::fs::OpenOptions::new();
        options.custom_flags(nix::libc::O_NOFOLLOW).create(true);
        if attempt == 0 {
            options.write(true).truncate(true);
        } else {
            options.append(true);
        }
        options.open(&path).map_err(state_error(&path))
    }

    /// `.berth/logs/<job>.log`, relative to the work tree.
    #[must_use]
    pub fn log_relative(&self, job: &str) -> String {
        format!(".berth/logs/{}.log", file_name_of(job))
    }

    /// `path` relative to the work tree when it is inside it.
    #[must_use]
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.work_tree)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// Keeps the artifacts archive of `job` as `.berth/artifacts/<job>/artifacts.zip`.
    ///
    /// # Errors
    /// It cannot be copied.
    pub fn keep_archive(&self, job: &str, uploaded: &Path) -> Result<PathBuf, ExecError> {
        let dir = self.artifacts.join(file_name_of(job));
        std::fs::create_dir_all(&dir).map_err(state_error(&dir))?;
        let kept = dir.join("artifacts.zip");
        let _ = std::fs::remove_file(&kept);
        std::fs::copy(uploaded, &kept).map_err(state_error(&kept))?;
        Ok(kept)
    }
}

impl Layout {
    /// Keeps an uploaded report of `job` as `.berth/artifacts/<job>/<type>.<ext>` (the
    /// coordinator's own name for it).
    ///
    /// # Errors
    /// It cannot be copied.
    pub fn keep_report(&self, job: &str, uploaded: &Path) -> Result<PathBuf, ExecError> {
        let dir = self.artifacts.join(file_name_of(job));
        std::fs::create_dir_all(&dir).map_err(state_error(&dir))?;
        let name = uploaded
            .file_name()
            .map_or_else(|| "report".into(), std::ffi::OsStr::to_os_string);
        let kept = dir.join(name);
        let _ = std::fs::remove_file(&kept);
        std::fs::copy(uploaded, &kept).map_err(state_error(&kept))?;
        Ok(kept)
    }
}

/// Adds `.berth/` to the exclude file unless a line already says so.
fn exclude(exclude_file: &Path) -> Result<(), ExecError> {
    let existing = match std::fs::read_to_string(exclude_file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(ExecError::State {
                path: exclude_file.to_path_buf(),
                source,
            });
        }
    };
    if existing
        .lines()
        .any(|l| matches!(l.trim(), ".berth" | ".berth/" | "/.berth" | "/.berth/"))
    {
        return Ok(());
    }
    if let Some(parent) = exclude_file.parent() {
        std::fs::create_dir_all(parent).map_err(state_error(parent))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(exclude_file)
        .map_err(state_error(exclude_file))?;
    let separator = if existing.is_empty() || existing.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    write!(
        file,
        "{separator}# berth exec keeps logs and artifacts here\n/.berth/\n"
    )
    .map_err(state_error(exclude_file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_become_safe_file_names() {
        assert_eq!(file_name_of("test 1/3"), "test-1-3");
        assert_eq!(file_name_of("deploy: [aws, eu]"), "deploy---aws--eu-");
        assert_eq!(file_name_of("../../etc"), "-..-etc");
        assert_eq!(file_name_of("..."), "job");
    }

    #[test]
    fn the_layout_is_excluded_from_git_once() {
        let tree = tempfile::tempdir().expect("tempdir");
        let exclude_file = tree.path().join(".git/info/exclude");
        Layout::create(tree.path(), &exclude_file).expect("create");
        Layout::create(tree.path(), &exclude_file).expect("again");
        let text = std::fs::read_to_string(&exclude_file).expect("read");
        assert_eq!(text.matches("/.berth/").count(), 1, "{text}");
        assert!(tree.path().join(".berth/logs").is_dir());
    }
}
