//! Artifact kinds and their files on disk: what `POST /jobs/:id/artifacts` may store and where.
//!
//! The type list is GitLab's (`Enums::Ci::JobArtifact.file_type`) minus `metadata` and `trace`,
//! which GitLab produces itself; a closed list also bounds how many files one job can leave.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

macro_rules! artifact_types {
    ($($variant:ident => $name:literal,)*) => {
        /// The `artifact_type` of an upload (GitLab's job artifact file types).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ArtifactType {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl ArtifactType {
            /// The name GitLab and the runner use.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }

            /// Parses a name; `None` for names GitLab does not accept from a runner.
            pub fn parse(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

artifact_types! {
    Archive => "archive",
    Junit => "junit",
    Sast => "sast",
    DependencyScanning => "dependency_scanning",
    ContainerScanning => "container_scanning",
    Dast => "dast",
    Codequality => "codequality",
    LicenseScanning => "license_scanning",
    Performance => "performance",
    Metrics => "metrics",
    MetricsReferee => "metrics_referee",
    NetworkReferee => "network_referee",
    Lsif => "lsif",
    Dotenv => "dotenv",
    Cobertura => "cobertura",
    Terraform => "terraform",
    Accessibility => "accessibility",
    ClusterApplications => "cluster_applications",
    SecretDetection => "secret_detection",
    Requirements => "requirements",
    CoverageFuzzing => "coverage_fuzzing",
    BrowserPerformance => "browser_performance",
    LoadPerformance => "load_performance",
    ApiFuzzing => "api_fuzzing",
    ClusterImageScanning => "cluster_image_scanning",
    Cyclonedx => "cyclonedx",
    RequirementsV2 => "requirements_v2",
    Annotations => "annotations",
    RepositoryXray => "repository_xray",
    Jacoco => "jacoco",
}

/// The `artifact_format` of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ArtifactFormat {
    /// `zip` (the `archive` type).
    Zip,
    /// `gzip` (most reports, `dotenv`).
    Gzip,
    /// `raw` (some security reports).
    Raw,
}

impl ArtifactFormat {
    /// The name GitLab and the runner use.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Zip => "zip",
            Self::Gzip => "gzip",
            Self::Raw => "raw",
        }
    }

    /// The file name extension of a stored upload.
    pub const fn extension(self) -> &'static str {
        match self {
            Self::Zip => "zip",
            Self::Gzip => "gz",
            Self::Raw => "raw",
        }
    }

    /// Parses a name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Zip, Self::Gzip, Self::Raw]
            .into_iter()
            .find(|f| f.as_str() == name)
    }
}

/// What the query string of an upload asks for. As in GitLab, both default to an `archive` in
/// `zip`; `expire_in` and other parameters do not matter to a local coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UploadQuery {
    pub(crate) artifact_type: ArtifactType,
    pub(crate) format: ArtifactFormat,
}

/// Parses `artifact_type=…&artifact_format=…`; the error names every bad parameter.
pub(crate) fn parse_upload_query(query: &str) -> Result<UploadQuery, String> {
    let mut artifact_type = None;
    let mut format = None;
    let mut problems = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "artifact_type" if artifact_type.is_some() => {
                problems.push("artifact_type given twice".to_owned());
            }
            "artifact_type" => match ArtifactType::parse(value) {
                Some(t) => artifact_type = Some(t),
                None => problems.push(format!("unknown artifact_type {value:?}")),
            },
            "artifact_format" if format.is_some() => {
                problems.push("artifact_format given twice".to_owned());
            }
            "artifact_format" => match ArtifactFormat::parse(value) {
                Some(f) => format = Some(f),
                None => problems.push(format!("unknown artifact_format {value:?}")),
            },
            _ => {}
        }
    }
    if problems.is_empty() {
        Ok(UploadQuery {
            artifact_type: artifact_type.unwrap_or(ArtifactType::Archive),
            format: format.unwrap_or(ArtifactFormat::Zip),
        })
    } else {
        Err(problems.join("; "))
    }
}

/// An artifact file the coordinator keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredArtifact {
    /// The job it belongs to.
    pub job_id: u64,
    /// Its `artifact_type`.
    pub artifact_type: ArtifactType,
    /// Its `artifact_format`.
    pub format: ArtifactFormat,
    /// The file name the uploader gave (for example `artifacts.zip`); informational only.
    pub filename: String,
    /// Where it is: `<artifacts dir>/<job_id>/<artifact_type>.<extension>`.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// `<root>/<job_id>/<artifact_type>.<extension>`.
pub(crate) fn artifact_path(
    root: &Path,
    job_id: u64,
    artifact_type: ArtifactType,
    format: ArtifactFormat,
) -> PathBuf {
    root.join(job_id.to_string())
        .join(format!("{}.{}", artifact_type.as_str(), format.extension()))
}

/// Creates the artifact's file, never following a symbolic link and never replacing a file:
/// the job directory must be a real directory and the file must not exist yet.
pub(crate) fn create_artifact_file(path: &Path) -> io::Result<File> {
    if let Some(job_dir) = path.parent() {
        match std::fs::create_dir(job_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if !std::fs::symlink_metadata(job_dir)?.is_dir() {
            return Err(io::Error::other(format!(
                "{} is not a directory",
                job_dir.display()
            )));
        }
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_query_defaults_to_a_zip_archive_and_names_every_problem() {
        assert_eq!(
            parse_upload_query("expire_in=1+week"),
            Ok(UploadQuery {
                artifact_type: ArtifactType::Archive,
                format: ArtifactFormat::Zip
            })
        );
        assert_eq!(
            parse_upload_query("artifact_format=gzip&artifact_type=dotenv"),
            Ok(UploadQuery {
                artifact_type: ArtifactType::Dotenv,
                format: ArtifactFormat::Gzip
            })
        );
        let err = parse_upload_query("artifact_type=../x&artifact_format=tar").unwrap_err();
        assert!(err.contains("\"../x\"") && err.contains("\"tar\""), "{err}");
        assert!(parse_upload_query("artifact_type=trace").is_err());
        assert!(parse_upload_query("artifact_type=junit&artifact_type=archive").is_err());
    }

    #[test]
    fn artifact_files_are_never_replaced_nor_followed() -> io::Result<()> {
        let root = tempfile::tempdir()?;
        let path = artifact_path(root.path(), 4, ArtifactType::Junit, ArtifactFormat::Gzip);
        assert!(path.ends_with("4/junit.gz"), "{}", path.display());
        drop(create_artifact_file(&path)?);
        assert!(create_artifact_file(&path).is_err(), "create_new");
        let elsewhere = tempfile::tempdir()?;
        std::os::unix::fs::symlink(elsewhere.path(), root.path().join("5"))?;
        let linked = artifact_path(root.path(), 5, ArtifactType::Archive, ArtifactFormat::Zip);
        assert!(
            create_artifact_file(&linked).is_err(),
            "job dir is a symlink"
        );
        let target = root.path().join("target");
        std::fs::create_dir(root.path().join("6"))?;
        let file_link = artifact_path(root.path(), 6, ArtifactType::Archive, ArtifactFormat::Zip);
        std::os::unix::fs::symlink(&target, &file_link)?;
        assert!(
            create_artifact_file(&file_link).is_err(),
            "file is a symlink"
        );
        assert!(!target.exists());
        Ok(())
    }
}
