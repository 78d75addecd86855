//! After each successful user stage: find the images the job built (through every builder),
//! record them, scan the new ones with berth-scan, write GitLab's reports into the project
//! directory, show the table in the job log, and let the security policy decide.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use berth_config::admin::ScanSettings;
use berth_sandbox::{BuiltImage, Sandbox};
use berth_scan::cli::ScanArgs;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::config_stage::BUILDS_DIR;
use crate::{Job, StageError};

/// The job's record of built images (for the scanner and for whoever asks later).
fn record_path(job: &Job) -> PathBuf {
    job.paths.built_images_record()
}

/// The project directory on the host (where GitLab's artifact reports are collected).
fn project_dir(job: &Job) -> PathBuf {
    let inside = job
        .env
        .job_var("CI_PROJECT_DIR")
        .and_then(|p| p.strip_prefix(BUILDS_DIR))
        .map(|p| p.trim_start_matches('/').to_owned())
        .unwrap_or_default();
    job.paths.builds().join(inside)
}

fn file_name(image: &BuiltImage) -> String {
    image
        .names
        .first()
        .map_or(image.id.as_str(), String::as_str)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

async fn say(out: &mut (dyn AsyncWrite + Unpin + Send), text: &str) {
    let _ = out.write_all(text.as_bytes()).await;
    let _ = out.flush().await;
}

/// The policy in force for this job: the admin's, adjusted by the job's `BERTH_SCAN_SEVERITY`,
/// `BERTH_SCAN_IGNORE_UNFIXED` and `BERTH_SCAN_BLOCK` variables where the admin allows it. A job
/// may always make the policy stricter; relaxing it needs `scan_jobs_may_relax`. Returns the
/// policy and a warning for every adjustment that was refused.
pub fn effective_policy(
    settings: &ScanSettings,
    job_var: impl Fn(&str) -> Option<String>,
) -> (ScanSettings, Vec<String>) {
    let mut policy = settings.clone();
    let mut refused = Vec::new();
    let levels = |s: &str| -> BTreeSet<String> {
        s.split(',')
            .map(|l| l.trim().to_ascii_uppercase())
            .filter(|l| !l.is_empty())
            .collect()
    };
    let truthy = |v: &str| matches!(v.trim(), "1" | "true" | "yes");
    if let Some(wanted) = job_var("BERTH_SCAN_SEVERITY") {
        let known = ["UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"];
        let wanted_set = levels(&wanted);
        if let Some(bad) = wanted_set.iter().find(|l| !known.contains(&l.as_str())) {
            refused.push(format!("BERTH_SCAN_SEVERITY: {bad:?} is not a severity (use UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL)"));
        } else if levels(&settings.severity).is_subset(&wanted_set) || settings.jobs_may_relax {
            policy.severity = wanted_set.into_iter().collect::<Vec<_>>().join(",");
        } else {
            refused.push(format!(
                "BERTH_SCAN_SEVERITY={wanted} would leave out severities the runner's policy counts ({}); the runner admin does not let jobs relax the policy",
                settings.severity
            ));
        }
    }
    if let Some(v) = job_var("BERTH_SCAN_IGNORE_UNFIXED") {
        let wanted = truthy(&v);
        if !wanted || settings.ignore_unfixed || settings.jobs_may_relax {
            policy.ignore_unfixed = wanted && (settings.ignore_unfixed || settings.jobs_may_relax);
        } else {
            refused.push("BERTH_SCAN_IGNORE_UNFIXED: the runner admin does not let jobs ignore unfixed findings".to_owned());
        }
    }
    if let Some(v) = job_var("BERTH_SCAN_BLOCK") {
        let wanted = truthy(&v);
        if wanted || !settings.block || settings.jobs_may_relax {
            policy.block = wanted;
        } else {
            refused.push(
                "BERTH_SCAN_BLOCK: the runner admin does not let jobs turn blocking off".to_owned(),
            );
        }
    }
    (policy, refused)
}

fn scan_args(
    job: &Job,
    settings: &ScanSettings,
    image: &BuiltImage,
    project: &Path,
    first: bool,
) -> ScanArgs {
    let ignorefile = [".trivyignore.yaml", ".trivyignore"]
        .iter()
        .map(|n| project.join(n))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(".trivyignore"));
    let report = if first {
        "gl-container-scanning-report.json".to_owned()
    } else {
        format!("gl-container-scanning-report-{}.json", file_name(image))
    };
    let (target, input, storage_root) = if image.oci_layout {
        (None, Some(image.store.clone()), None)
    } else {
        (Some(image.id.clone()), None, Some(image.store.clone()))
    };
    ScanArgs {
        target,
        input,
        format: "table".to_owned(),
        output: None,
        severity: settings.severity.clone(),
        exit_code: i32::from(settings.block),
        ignore_unfixed: settings.ignore_unfixed,
        ignore_status: Vec::new(),
        ignorefile,
        db: settings.db.clone(),
        db_max_age_days: i64::from(settings.db_max_age_days),
        db_stale_fail: settings.db_stale_fail,
        cache_dir: Some(job.scan_cache_source()),
        storage_root,
        additional_image_stores: vec![job.paths.image_store.clone()],
        gitlab_report: Some(project.join(report)),
        sbom: Some(project.join(format!("gl-sbom-{}.cdx.json", file_name(image)))),
    }
}

/// Records and scans what the job built since the last call. A blocked image is a
/// [`StageError::SecurityPolicy`] (a build failure); scanner trouble is only a warning, so a
/// scanner problem never fails a job.
pub async fn after_user_stage<S: Sandbox>(
    job: &Job,
    sandbox: &S,
    out: &mut (dyn AsyncWrite + Unpin + Send),
) -> Result<(), StageError> {
    let images = match sandbox.built_images().await {
        Ok(i) => i,
        Err(e) => {
            say(
                out,
                &format!("\x1b[0;33mWARNING: cannot list the images this job built: {e}\x1b[0;m\n"),
            )
            .await;
            return Ok(());
        }
    };
    let record = record_path(job);
    let seen: BTreeSet<String> = std::fs::read(&record)
        .ok()
        .and_then(|t| serde_json::from_slice::<Vec<BuiltImage>>(&t).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.id)
        .collect();
    let fresh: Vec<&BuiltImage> = images.iter().filter(|i| !seen.contains(&i.id)).collect();
    if fresh.is_empty() {
        return Ok(());
    }
    if let Ok(text) = serde_json::to_vec_pretty(&images) {
        // Root's file when the job has an identity: the job cannot make berth skip an image.
        let _ = berth_sandbox::process::as_root(|| std::fs::write(&record, text));
    }
    if !job.config.scan.enabled {
        return Ok(());
    }
    let (policy, refused) = effective_policy(&job.config.scan, |k| {
        job.payload.variable(k).map(str::to_owned)
    });
    for r in &refused {
        say(out, &format!("\x1b[0;33mWARNING: {r}\x1b[0;m\n")).await;
    }
    let settings = &policy;
    if !settings.db.exists() {
        say(out, &format!(
            "\x1b[0;33mWARNING: {} image(s) built by this job were not scanned: there is no advisory database at {} (the runner admin creates it with `berth db update --from <OSV directory or all.zip>`)\x1b[0;m\n",
            fresh.len(),
            settings.db.display()
        )).await;
        return Ok(());
    }
    let project = project_dir(job);
    let _ = std::fs::create_dir_all(&project);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    say(out, &format!(
        "\x1b[0Ksection_start:{now}:berth_scan[collapsed=false]\r\x1b[0K\x1b[36;1mScanning images built by this job (severity {}, {})\x1b[0;m\n",
        settings.severity,
        if settings.block { "blocking" } else { "reporting only" }
    )).await;
    let mut blocked = Vec::new();
    for (n, image) in fresh.iter().enumerate() {
        let name = image
            .names
            .first()
            .cloned()
            .unwrap_or_else(|| image.id.clone());
        say(
            out,
            &format!(
                "{name} ({}, built by {})\n",
                &image.id[..image.id.len().min(12)],
                image.builder
            ),
        )
        .await;
        let args = scan_args(job, settings, image, &project, n == 0);
        let scanned = berth_scan::cli::run_scan(&args, time::OffsetDateTime::now_utc());
        match scanned {
            Ok(outcome) => {
                for w in &outcome.warnings {
                    say(out, &format!("\x1b[0;33mWARNING: {w}\x1b[0;m\n")).await;
                }
                say(out, &outcome.stdout).await;
                if outcome.exit_code != 0 {
                    blocked.push(name);
                }
            }
            Err(berth_scan::cli::CliError::Db(
                stale @ berth_scan::advisory::db::DbError::Stale { .. },
            )) => {
                // The admin asked for this: no job passes on stale advisories.
                return Err(StageError::HostLacks {
                    what: format!("{name} was not scanned: {stale}"),
                    fix: format!(
                        "the runner admin updates {} with `berth db update --from <OSV all.zip or URL>` (or sets scan_db_stale = \"warn\")",
                        settings.db.display()
                    ),
                });
            }
            Err(e) => {
                say(
                    out,
                    &format!("\x1b[0;33mWARNING: {name} could not be scanned: {e}\x1b[0;m\n"),
                )
                .await;
            }
        }
    }
    say(
        out,
        &format!("\x1b[0Ksection_end:{now}:berth_scan\r\x1b[0K"),
    )
    .await;
    if blocked.is_empty() {
        Ok(())
    } else {
        Err(StageError::SecurityPolicy {
            summary: format!(
                "{} has findings of severity {}",
                blocked.join(", "),
                settings.severity
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(jobs_may_relax: bool) -> ScanSettings {
        ScanSettings {
            enabled: true,
            db: "/db".into(),
            severity: "HIGH,CRITICAL".into(),
            block: true,
            ignore_unfixed: false,
            jobs_may_relax,
            db_max_age_days: 7,
            db_stale_fail: false,
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn jobs_may_tighten_but_not_relax_unless_allowed() {
        let (p, refused) = effective_policy(
            &admin(false),
            vars(&[("BERTH_SCAN_SEVERITY", "medium,HIGH,CRITICAL")]),
        );
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(p.severity, "CRITICAL,HIGH,MEDIUM");
        let (p, refused) = effective_policy(
            &admin(false),
            vars(&[
                ("BERTH_SCAN_SEVERITY", "CRITICAL"),
                ("BERTH_SCAN_BLOCK", "false"),
                ("BERTH_SCAN_IGNORE_UNFIXED", "true"),
            ]),
        );
        assert_eq!(refused.len(), 3, "{refused:?}");
        assert_eq!(p, admin(false));
        let (p, refused) = effective_policy(
            &admin(true),
            vars(&[
                ("BERTH_SCAN_SEVERITY", "CRITICAL"),
                ("BERTH_SCAN_BLOCK", "false"),
                ("BERTH_SCAN_IGNORE_UNFIXED", "1"),
            ]),
        );
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(p.severity, "CRITICAL");
        assert!(!p.block && p.ignore_unfixed);
        let (_, refused) =
            effective_policy(&admin(true), vars(&[("BERTH_SCAN_SEVERITY", "SEVERE")]));
        assert!(refused[0].contains("not a severity"));
    }
}
