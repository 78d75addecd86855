//! The git work tree `berth exec` runs in: the facts GitLab's predefined variables derive from,
//! and the snapshot of the work tree (tracked files with their uncommitted changes, untracked
//! ones on request) that the runner clones from the embedded coordinator.

use std::path::{Path, PathBuf};

use berth_pipeline::model::RepoFacts;
use berth_sandbox::process::{self, CommandSpec};
use tokio_util::sync::CancellationToken;

use crate::error::ExecError;

/// SHA GitLab sends as the "before" of a new ref.
pub const NO_SHA: &str = "0000000000000000000000000000000000000000";

/// What `berth exec` was asked about the refs.
#[derive(Debug, Clone, Default)]
pub struct RefChoice {
    /// Run as a pipeline for this branch instead of the checked-out one.
    pub branch: Option<String>,
    /// `CI_PIPELINE_SOURCE` (default `push`).
    pub pipeline_source: Option<String>,
}

/// The commit the runner checks out and the ref it is served under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The commit: HEAD when the work tree is clean, else a commit of the work tree on HEAD.
    pub sha: String,
    /// Branch or tag name.
    pub ref_name: String,
    /// `branch` or `tag`.
    pub ref_type: &'static str,
}

/// The work tree's git repository.
#[derive(Debug, Clone)]
pub struct Repo {
    work_tree: PathBuf,
}

impl Repo {
    /// The repository whose work tree contains `dir`. It must belong to whoever runs berth
    /// exec: git runs commands a repository's config names (`core.fsmonitor`, hooks), so root
    /// never runs git in a checkout another user owns; git's own `safe.directory` check holds
    /// for everyone else.
    ///
    /// # Errors
    /// `dir` is not inside a git work tree, or another user owns it, or git is missing.
    pub async fn discover(dir: &Path, cancel: &CancellationToken) -> Result<Self, ExecError> {
        // Found without git: no command of the repository's config may run before the owner
        // is known.
        let candidate = dir
            .ancestors()
            .find(|d| d.join(".git").symlink_metadata().is_ok())
            .ok_or_else(|| ExecError::NotARepository {
                dir: dir.to_path_buf(),
                detail: "no .git in it or above it".to_owned(),
            })?;
        for path in [candidate.to_path_buf(), candidate.join(".git")] {
            let owner = std::fs::symlink_metadata(&path)
                .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
                .map_err(|source| ExecError::Read {
                    path: path.clone(),
                    source,
                })?;
            check_owner(&path, owner, nix::unistd::Uid::effective().as_raw())?;
        }
        let probe = Self {
            work_tree: candidate.to_path_buf(),
        };
        let top = probe
            .git(&["rev-parse", "--show-toplevel"], &[], cancel)
            .await
            .map_err(|e| ExecError::NotARepository {
                dir: dir.to_path_buf(),
                detail: e.to_string(),
            })?;
        Ok(Self {
            work_tree: PathBuf::from(top.trim_end()),
        })
    }

    /// The work tree's root.
    pub fn work_tree(&self) -> &Path {
        &self.work_tree
    }

    /// Runs git in the work tree with a clean environment; returns stdout.
    async fn git(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        cancel: &CancellationToken,
    ) -> Result<String, ExecError> {
        let mut spec = CommandSpec::new("git")
            .args(["-C"])
            .args([self.work_tree.as_os_str()])
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0");
        for (key, value) in env {
            spec = spec.env(key, value);
        }
        let output = process::run(&spec, cancel)
            .await
            .map_err(|source| ExecError::Git { source })?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    async fn git_ok(&self, args: &[&str], cancel: &CancellationToken) -> Option<String> {
        self.git(args, &[], cancel)
            .await
            .ok()
            .map(|s| s.trim_end().to_owned())
            .filter(|s| !s.is_empty())
    }

    /// The facts of HEAD and the work tree.
    ///
    /// # Errors
    /// The repository has no commit yet, or git fails.
    pub async fn facts(
        &self,
        choice: &RefChoice,
        cancel: &CancellationToken,
    ) -> Result<RepoFacts, ExecError> {
        let sha = self
            .git_ok(&["rev-parse", "--verify", "-q", "HEAD^{commit}"], cancel)
            .await
            .ok_or_else(|| ExecError::NoCommit {
                work_tree: self.work_tree.clone(),
            })?;
        let before_sha = self
            .git_ok(&["rev-parse", "--verify", "-q", "HEAD~1^{commit}"], cancel)
            .await
            .unwrap_or_else(|| NO_SHA.to_owned());
        let checked_out = self
            .git_ok(&["symbolic-ref", "--short", "-q", "HEAD"], cancel)
            .await;
        let tag = if choice.branch.is_none() && checked_out.is_none() {
            self.git_ok(&["describe", "--tags", "--exact-match", "HEAD"], cancel)
                .await
        } else {
            None
        };
        let branch = choice.branch.clone().or(checked_out).or_else(|| {
            // A detached HEAD that is no tag runs as a pipeline of the default branch would.
            tag.is_none().then(String::new)
        });
        let default_branch = self.default_branch(cancel).await;
        let branch = branch.map(|b| {
            if b.is_empty() {
                default_branch.clone()
            } else {
                b
            }
        });
        let show = |format: &'static str| async move {
            self.git(
                &["show", "-s", &format!("--format={format}"), "HEAD"],
                &[],
                cancel,
            )
            .await
        };
        let message = show("%B").await?;
        let author = show("%an <%ae>").await?.trim_end().to_owned();
        let timestamp = show("%cI").await?.trim_end().to_owned();
        let project_path = self.project_path(cancel).await;
        let changed_files = self
            .changed_files(&default_branch, branch.as_deref(), cancel)
            .await;
        Ok(RepoFacts {
            sha,
            before_sha,
            branch,
            tag,
            default_branch,
            message,
            author,
            timestamp,
            project_path,
            work_tree: self.work_tree.display().to_string(),
            changed_files,
            pipeline_source: choice
                .pipeline_source
                .clone()
                .unwrap_or_else(|| "push".to_owned()),
        })
    }

    /// origin's HEAD, else `main` or `master` when such a branch exists, else `main`.
    async fn default_branch(&self, cancel: &CancellationToken) -> String {
        if let Some(head) = self
            .git_ok(
                &["symbolic-ref", "--short", "-q", "refs/remotes/origin/HEAD"],
                cancel,
            )
            .await
        {
            return head.trim_start_matches("origin/").to_owned();
        }
        for candidate in ["main", "master"] {
            let reference = format!("refs/heads/{candidate}");
            if self
                .git_ok(&["rev-parse", "--verify", "-q", &reference], cancel)
                .await
                .is_some()
            {
                return candidate.to_owned();
            }
        }
        "main".to_owned()
    }

    /// `group/project` from origin's URL, else `local/<directory name>`.
    async fn project_path(&self, cancel: &CancellationToken) -> String {
        let from_origin = self
            .git_ok(&["config", "--get", "remote.origin.url"], cancel)
            .await
            .and_then(|url| project_path_of_url(&url));
        from_origin.unwrap_or_else(|| {
            let name = self
                .work_tree
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "project".to_owned());
            format!("local/{}", slug_path_part(&name))
        })
    }

    /// Files changed against the base: the merge base with the default branch on another
    /// branch, the parent commit on the default branch, plus what the work tree changed.
    /// `None` when there is no base (a first commit), which GitLab treats as "everything".
    async fn changed_files(
        &self,
        default_branch: &str,
        branch: Option<&str>,
        cancel: &CancellationToken,
    ) -> Option<Vec<String>> {
        let base = if branch.is_some_and(|b| b != default_branch) {
            self.git_ok(&["merge-base", "HEAD", default_branch], cancel)
                .await
                .filter(|base| !base.is_empty())
        } else {
            self.git_ok(&["rev-parse", "--verify", "-q", "HEAD~1^{commit}"], cancel)
                .await
        }?;
        let committed = self
            .git(&["diff", "--name-only", "-z", &base, "HEAD"], &[], cancel)
            .await
            .ok()?;
        let uncommitted = self
            .git(&["diff", "--name-only", "-z", "HEAD"], &[], cancel)
            .await
            .ok()?;
        let mut files: Vec<String> = committed
            .split('\0')
            .chain(uncommitted.split('\0'))
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect();
        files.sort();
        files.dedup();
        Some(files)
    }

    /// The repository's `info/exclude` file.
    ///
    /// # Errors
    /// git fails.
    pub async fn exclude_file(&self, cancel: &CancellationToken) -> Result<PathBuf, ExecError> {
        let path = self
            .git(&["rev-parse", "--git-path", "info/exclude"], &[], cancel)
            .await?;
        let path = PathBuf::from(path.trim_end());
        Ok(if path.is_absolute() {
            path
        } else {
            self.work_tree.join(path)
        })
    }

    /// Paths of the files a pipeline sees (`rules: exists`, `include: local` globs): tracked
    /// files, plus untracked ones not ignored when `untracked`.
    ///
    /// # Errors
    /// git fails.
    pub async fn files(
        &self,
        untracked: bool,
        cancel: &CancellationToken,
    ) -> Result<Vec<String>, ExecError> {
        let mut args = vec!["ls-files", "-z", "--cached"];
        if untracked {
            args.extend(["--others", "--exclude-standard"]);
        }
        let listed = self.git(&args, &[], cancel).await?;
        let mut files: Vec<String> = listed
            .split('\0')
            .filter(|f| !f.is_empty() && !f.starts_with(".berth/"))
            .map(str::to_owned)
            .collect();
        files.sort();
        files.dedup();
        Ok(files)
    }

    /// Commits the work tree as it is (without touching the user's index or refs) and pushes
    /// that commit into the bare repository `bare` under `facts`' ref, ready for dumb HTTP.
    ///
    /// # Errors
    /// git fails.
    pub async fn snapshot(
        &self,
        facts: &RepoFacts,
        untracked: bool,
        bare: &Path,
        cancel: &CancellationToken,
    ) -> Result<Snapshot, ExecError> {
        let index = bare.with_extension("index");
        let index_str = index.display().to_string();
        let _ = std::fs::remove_file(&index);
        let with_index = [("GIT_INDEX_FILE", index_str.as_str())];
        self.git(&["read-tree", "HEAD"], &with_index, cancel)
            .await?;
        let add: &[&str] = if untracked {
            &["add", "-A", "--", ".", ":(exclude).berth"]
        } else {
            &["add", "-u", "--", ".", ":(exclude).berth"]
        };
        self.git(add, &with_index, cancel).await?;
        let tree = self.git(&["write-tree"], &with_index, cancel).await?;
        let _ = std::fs::remove_file(&index);
        let tree = tree.trim_end();
        let head_tree = self.git(&["rev-parse", "HEAD^{tree}"], &[], cancel).await?;
        let sha = if head_tree.trim_end() == tree {
            facts.sha.clone()
        } else {
            let identity = [
                ("GIT_AUTHOR_NAME", "berth exec"),
                ("GIT_AUTHOR_EMAIL", "berth-exec@localhost"),
                ("GIT_COMMITTER_NAME", "berth exec"),
                ("GIT_COMMITTER_EMAIL", "berth-exec@localhost"),
            ];
            let message = format!(
                "{}\n\n(berth exec: with the work tree's changes)",
                facts.message.trim_end()
            );
            self.git(
                &["commit-tree", tree, "-p", "HEAD", "-m", &message],
                &identity,
                cancel,
            )
            .await?
            .trim_end()
            .to_owned()
        };
        let bare_str = bare.display().to_string();
        if !bare.join("HEAD").is_file() {
            self.git(&["init", "-q", "--bare", &bare_str], &[], cancel)
                .await?;
        }
        let (ref_name, ref_type, full_ref) = match (&facts.branch, &facts.tag) {
            (Some(branch), _) => (branch.clone(), "branch", format!("refs/heads/{branch}")),
            (None, Some(tag)) => (tag.clone(), "tag", format!("refs/tags/{tag}")),
            (None, None) => {
                let branch = facts.default_branch.clone();
                let full = format!("refs/heads/{branch}");
                (branch, "branch", full)
            }
        };
        let refspec = format!("+{sha}:{full_ref}");
        self.git(
            &["push", "-q", "--no-verify", &bare_str, &refspec],
            &[],
            cancel,
        )
        .await?;
        let bare_repo = Self {
            work_tree: bare.to_path_buf(),
        };
        bare_repo.git(&["update-server-info"], &[], cancel).await?;
        Ok(Snapshot {
            sha,
            ref_name,
            ref_type,
        })
    }
}

/// Refuses a repository `path` owned by `owner` when berth runs as `uid` and they differ.
fn check_owner(path: &Path, owner: u32, uid: u32) -> Result<(), ExecError> {
    if owner == uid {
        return Ok(());
    }
    Err(ExecError::NotOwned {
        path: path.to_path_buf(),
        owner,
        uid,
    })
}

/// `group/sub/project` from an https, ssh or scp-like git URL.
fn project_path_of_url(url: &str) -> Option<String> {
    let without_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = if url.contains("://") {
        without_scheme.split_once('/')?.1
    } else {
        // scp-like `git@host:group/project.git`
        without_scheme.split_once(':')?.1
    };
    let path = path.trim_matches('/').trim_end_matches(".git");
    let parts: Vec<String> = path
        .split('/')
        .filter(|p| !p.is_empty())
        .map(slug_path_part)
        .collect();
    (parts.len() >= 2).then(|| parts.join("/"))
}

/// A path component as GitLab allows it in a project path.
fn slug_path_part(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches(|c| matches!(c, '-' | '.' | '_'));
    if trimmed.is_empty() {
        "project".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_paths_come_from_every_url_form() {
        for (url, want) in [
            (
                "https://gitlab.com/group/project.git",
                Some("group/project"),
            ),
            ("https://host/group/sub/project", Some("group/sub/project")),
            ("git@gitlab.com:group/project.git", Some("group/project")),
            ("ssh://git@host:2222/g/p.git", Some("g/p")),
            ("/srv/repo.git", None),
            ("https://host/only", None),
        ] {
            assert_eq!(project_path_of_url(url).as_deref(), want, "{url}");
        }
    }

    #[test]
    fn only_the_owner_of_a_repository_runs_git_in_it() {
        let path = Path::new("/home/dev/project");
        assert!(check_owner(path, 1000, 1000).is_ok());
        assert!(check_owner(path, 0, 0).is_ok());
        let refused = check_owner(path, 1000, 0).expect_err("root in a developer's checkout");
        assert!(
            refused.to_string().contains("owned by uid 1000"),
            "{refused}"
        );
    }

    #[test]
    fn path_parts_keep_only_what_gitlab_allows() {
        assert_eq!(slug_path_part("my project!"), "my-project");
        assert_eq!(slug_path_part("..."), "project");
    }
}
