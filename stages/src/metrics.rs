//! What a stage's ending means for the job's outcome in the metrics, and the base store's size;
//! the events themselves are noted through `berth_telemetry::recorder`.

use berth_config::Config;
use berth_storemeta::StoreMetaError;
use berth_telemetry::JobOutcome;

use crate::doctor::{Check, Level};
use crate::{FailureKind, Outcome, StageError};

/// The job outcome a `prepare` or `run` invocation for the runner's stage `stage` reports;
/// `None` when it says nothing about the job (cleanup's own trouble). The runner ignores a
/// failing `after_script`, so it does too.
pub fn job_outcome(stage: &str, ending: &Result<Outcome, StageError>) -> Option<JobOutcome> {
    Some(match ending {
        Ok(Outcome::Success) => JobOutcome::Success,
        Ok(Outcome::ScriptFailed(_)) if stage == "after_script" => JobOutcome::Success,
        Ok(Outcome::ScriptFailed(_)) => JobOutcome::BuildFailure,
        Ok(Outcome::Cancelled(_)) => JobOutcome::Cancelled,
        Ok(Outcome::CleanupIncomplete(_)) => return None,
        Err(e) => match e.failure_kind() {
            FailureKind::Build => JobOutcome::BuildFailure,
            FailureKind::System => JobOutcome::SystemFailure,
        },
    })
}

/// The shared base store's size: the uncompressed size of every layer containers-storage
/// recorded (0 for a store nothing was pulled into yet).
pub fn base_store_bytes(config: &Config) -> Result<u64, StoreMetaError> {
    let store = config.image_store();
    let dir = match berth_beneath::Dir::open(&store) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(StoreMetaError::Read {
                path: store,
                source,
            });
        }
    };
    Ok(berth_storemeta::read_layers(&dir)?
        .unwrap_or_default()
        .iter()
        .filter_map(|l| l.diff_size)
        .sum())
}

/// `berth doctor`'s word on the metrics directory and the admin log: where they go and
/// whether berth (as `euid`, root when 0) will write there.
pub fn doctor_checks(config: &Config, euid: u32) -> Vec<Check> {
    use berth_telemetry::write::trusted_dir;
    let observability = &config.observability;
    let mut out = Vec::new();
    if let Some(dir) = &observability.metrics_dir {
        out.push(match trusted_dir(dir, euid) {
            Ok(_) => Check {
                name: "metrics",
                level: Level::Ok,
                detail: format!(
                    "{}/{}.prom (point node_exporter's --collector.textfile.directory here)",
                    dir.display(),
                    observability.metrics_name
                ),
                fix: None,
            },
            Err(e) => Check {
                name: "metrics",
                level: Level::Fail,
                detail: e.to_string(),
                fix: Some(format!(
                    "create {} owned by uid {euid}, mode 0755, or point metrics_dir at node_exporter's textfile directory",
                    dir.display()
                )),
            },
        });
    }
    if observability.json_log {
        let journal = std::path::Path::new(berth_telemetry::adminlog::JOURNAL_SOCKET);
        let file_dir = observability
            .admin_log
            .as_deref()
            .and_then(std::path::Path::parent);
        out.push(match (journal.exists(), file_dir) {
            (true, _) => Check {
                name: "admin log",
                level: Level::Ok,
                detail: "journald (journalctl -t berth)".into(),
                fix: None,
            },
            (false, Some(parent)) => match trusted_dir(parent, euid) {
                Ok(_) => Check {
                    name: "admin log",
                    level: Level::Ok,
                    detail: format!(
                        "no journald: {}",
                        observability
                            .admin_log
                            .as_deref()
                            .unwrap_or(parent)
                            .display()
                    ),
                    fix: None,
                },
                Err(e) => Check {
                    name: "admin log",
                    level: Level::Fail,
                    detail: e.to_string(),
                    fix: Some(format!(
                        "create {} owned by uid {euid}, mode 0755",
                        parent.display()
                    )),
                },
            },
            (false, None) => Check {
                name: "admin log",
                level: Level::Fail,
                detail: "no journald and no admin_log".into(),
                fix: Some("set admin_log".into()),
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_kind_comes_from_the_stage_ending() {
        let system = Err(StageError::Contract {
            what: "JOB_RESPONSE_FILE".into(),
            detail: "unset".into(),
        });
        let build = Err(StageError::SecurityPolicy {
            summary: "blocked".into(),
        });
        let cases = [
            ("prepare", Ok(Outcome::Success), Some(JobOutcome::Success)),
            (
                "step_script",
                Ok(Outcome::ScriptFailed(1)),
                Some(JobOutcome::BuildFailure),
            ),
            (
                "after_script",
                Ok(Outcome::ScriptFailed(1)),
                Some(JobOutcome::Success),
            ),
            (
                "step_script",
                Ok(Outcome::Cancelled(Some(143))),
                Some(JobOutcome::Cancelled),
            ),
            (
                "prepare",
                Ok(Outcome::Cancelled(None)),
                Some(JobOutcome::Cancelled),
            ),
            ("cleanup", Ok(Outcome::CleanupIncomplete(1)), None),
            ("prepare", system, Some(JobOutcome::SystemFailure)),
            ("step_script", build, Some(JobOutcome::BuildFailure)),
        ];
        for (stage, ending, want) in cases {
            assert_eq!(job_outcome(stage, &ending), want, "{stage} {ending:?}");
        }
    }

    #[test]
    fn the_base_store_size_sums_its_layers_and_an_empty_host_has_none() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = Config::parse(&format!("state_dir = \"{}\"\n", tmp.path().display()), None)
            .expect("config");
        assert_eq!(base_store_bytes(&config).expect("no store"), 0);
        let layers = config.image_store().join("overlay-layers");
        std::fs::create_dir_all(&layers).expect("mkdir");
        let id = |c: char| c.to_string().repeat(64);
        std::fs::write(
            layers.join("layers.json"),
            format!(
                r#"[{{"id":"{}","diff-size":1000}},{{"id":"{}","parent":"{}","diff-size":24}}]"#,
                id('a'),
                id('b'),
                id('a')
            ),
        )
        .expect("write");
        assert_eq!(base_store_bytes(&config).expect("store"), 1024);
    }

    #[test]
    fn doctor_says_where_metrics_and_the_admin_log_go_and_refuses_open_directories() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let euid = nix::unistd::Uid::effective().as_raw();
        let config = |mode: u32| {
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))
                .expect("chmod");
            Config::parse(
                &format!(
                    "metrics_dir = \"{0}\"\nmetrics_name = \"a\"\nlog_format = \"json\"\nadmin_log = \"{0}/admin.log\"\n",
                    tmp.path().display()
                ),
                None,
            )
            .expect("config")
        };
        let checks = doctor_checks(&config(0o755), euid);
        assert_eq!(checks.len(), 2, "{checks:?}");
        assert!(checks.iter().all(|c| c.level == Level::Ok), "{checks:?}");
        assert!(checks[0].detail.contains("/a.prom"), "{checks:?}");
        let checks = doctor_checks(&config(0o777), euid);
        assert_eq!(checks[0].level, Level::Fail, "{checks:?}");
        assert!(
            checks[0].detail.contains("lets group or others write"),
            "{checks:?}"
        );
        assert!(doctor_checks(&Config::defaults(), euid).is_empty());
    }
}
