//! `.berth/` in the project: what a local run keeps (each job's log and artifacts, the
//! runner's configs, the source snapshot served to the runner) and that git never sees (berth
//! adds `.berth/` to `.git/info/exclude`). Every directory of it is made and written beneath a
//! handle on the work tree: a link planted in `.berth/` (a checked-out repository can carry
//! one) is refused, never followed.

use std::io::Write;
use std::path::{Path, PathBuf};

use berth_beneath::Dir;

use crate::error::ExecError;

/// `.berth/`, its directories held open.
#[derive(Debug)]
pub struct Layout {
    /// The work tree.
    pub work_tree: PathBuf,
    /// `.berth/logs/`: one log per job.
    pub logs: PathBuf,
    /// `.berth/exec/`: what the run itself needs (snapshot, runner configs, uploads).
    pub exec: PathBuf,
    logs_dir: Dir,
    artifacts_dir: Dir,
    exec_dir: Dir,
    runners_dir: Dir,
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
    /// (the repository's `info/exclude`). An earlier run's runner configs (tokens) and uploads
    /// (copied out once a job ended) are of no further use and go.
    ///
    /// # Errors
    /// A directory or the exclude file cannot be written, or a link stands in `.berth/`.
    pub fn create(work_tree: &Path, exclude_file: &Path) -> Result<Self, ExecError> {
        let tree = Dir::open(work_tree).map_err(state_error(work_tree))?;
        let mkdir = |parent: &Dir, name: &str, mode: u32| {
            parent
                .mkdir(Path::new(name), mode)
                .map_err(state_error(&parent.path().join(name)))
        };
        let root = mkdir(&tree, ".berth", 0o755)?;
        let exec_dir = mkdir(&root, "exec", 0o755)?;
        for private in ["runners", "uploads"] {
            let path = exec_dir.path().join(private);
            // The handle proved `exec/` a real directory; a link at `private` is removed itself.
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(ExecError::State { path, source }),
            }
        }
        let runners_dir = mkdir(&exec_dir, "runners", 0o700)?;
        mkdir(&exec_dir, "uploads", 0o700)?;
        let layout = Self {
            work_tree: work_tree.to_path_buf(),
            logs: root.path().join("logs"),
            exec: exec_dir.path().to_path_buf(),
            logs_dir: mkdir(&root, "logs", 0o755)?,
            artifacts_dir: mkdir(&root, "artifacts", 0o755)?,
            exec_dir,
            runners_dir,
        };
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

    /// Writes the berth config the jobs' stages read, readable by its owner only.
    ///
    /// # Errors
    /// It cannot be written.
    pub fn write_berth_config(&self, text: &str) -> Result<PathBuf, ExecError> {
        let path = self.berth_config();
        self.exec_dir
            .write(Path::new("berth.toml"), text.as_bytes(), 0o600)
            .map_err(state_error(&path))?;
        Ok(path)
    }

    /// Writes the config.toml of attempt `id`'s runner, readable by its owner only.
    ///
    /// # Errors
    /// It cannot be written.
    pub fn write_runner_config(&self, id: u64, text: &str) -> Result<PathBuf, ExecError> {
        let name = format!("{id}.toml");
        let path = self.runners_dir.path().join(&name);
        self.runners_dir
            .write(Path::new(&name), text.as_bytes(), 0o600)
            .map_err(state_error(&path))?;
        Ok(path)
    }

    /// The log file of `job`, truncated for its first attempt, appended to for retries.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn create_log(&self, job: &str, attempt: u32) -> Result<std::fs::File, ExecError> {
        let name = format!("{}.log", file_name_of(job));
        self.logs_dir
            .open_writer(Path::new(&name), 0o644, attempt > 0)
            .map_err(state_error(&self.logs.join(&name)))
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

    /// Keeps what `job` uploaded under `.berth/artifacts/<job>/`: the archive as
    /// `artifacts.zip`, a report under the coordinator's own name for it (`<type>.<ext>`).
    ///
    /// # Errors
    /// It cannot be copied.
    pub fn keep(&self, job: &str, uploaded: &Path, archive: bool) -> Result<PathBuf, ExecError> {
        let job_dir_name = file_name_of(job);
        let job_dir = self
            .artifacts_dir
            .mkdir(Path::new(&job_dir_name), 0o755)
            .map_err(state_error(&self.artifacts_dir.path().join(&job_dir_name)))?;
        let name = if archive {
            "artifacts.zip".into()
        } else {
            uploaded
                .file_name()
                .map_or_else(|| "report".into(), std::ffi::OsStr::to_os_string)
        };
        let kept = job_dir.path().join(&name);
        let mut source = std::fs::File::open(uploaded).map_err(state_error(uploaded))?;
        let mut target = job_dir
            .open_writer(Path::new(&name), 0o644, false)
            .map_err(state_error(&kept))?;
        std::io::copy(&mut source, &mut target).map_err(state_error(&kept))?;
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
    fn a_link_planted_in_the_layout_is_refused_or_replaced_never_followed() {
        // `.berth/exec/{runners,uploads}` are removed at every start, so a link there goes.
        for (planted, refused) in [
            (".berth", true),
            (".berth/logs", true),
            (".berth/exec", true),
            (".berth/exec/uploads", false),
            (".berth/exec/runners", false),
        ] {
            let tree = tempfile::tempdir().expect("tempdir");
            let outside = tempfile::tempdir().expect("tempdir");
            let link = tree.path().join(planted);
            std::fs::create_dir_all(link.parent().expect("parent")).expect("mkdir");
            std::os::unix::fs::symlink(outside.path(), &link).expect("symlink");
            let created = Layout::create(tree.path(), &tree.path().join(".git/info/exclude"));
            if refused {
                assert!(created.is_err(), "{planted}: a planted link was followed");
            } else {
                created.expect("the link is replaced");
                assert!(
                    !std::fs::symlink_metadata(&link).expect("stat").is_symlink(),
                    "{planted}: the link stayed"
                );
            }
            let leaked: Vec<_> = std::fs::read_dir(outside.path()).expect("read").collect();
            assert!(
                leaked.is_empty(),
                "{planted}: wrote through the link: {leaked:?}"
            );
        }
    }

    #[test]
    fn logs_and_kept_artifacts_refuse_a_planted_link() {
        let tree = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let layout =
            Layout::create(tree.path(), &tree.path().join(".git/info/exclude")).expect("layout");
        let target = outside.path().join("victim");
        std::fs::write(&target, "untouched").expect("write");
        std::os::unix::fs::symlink(&target, layout.logs.join("build.log")).expect("symlink");
        assert!(layout.create_log("build", 0).is_err());
        let upload = layout.uploads().join("archive.zip");
        std::fs::write(&upload, "zip").expect("write");
        let job_dir = tree.path().join(".berth/artifacts/build");
        std::os::unix::fs::symlink(outside.path(), &job_dir).expect("symlink");
        assert!(layout.keep("build", &upload, true).is_err());
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "untouched");
        assert!(!outside.path().join("artifacts.zip").exists());
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
