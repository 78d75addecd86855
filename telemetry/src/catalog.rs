//! Every metric berth writes: name, help, type, labels and buckets. Names follow Prometheus'
//! conventions (`berth_` prefix, base units, `_total` for counters, `_seconds`, `_bytes`); the
//! `runner` label (the config's `metrics_name`) is added to every series when rendered, as
//! gitlab-runner labels its own series by runner.

/// What kind of metric a family is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Only goes up (reset when the state file is replaced).
    Counter,
    /// A current value.
    Gauge,
    /// Observations counted into these upper bounds (seconds or bytes).
    Histogram(&'static [f64]),
}

/// One metric family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Family {
    /// The metric's name.
    pub name: &'static str,
    /// Its `# HELP` text.
    pub help: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its label names, besides `runner`.
    pub labels: &'static [&'static str],
    /// Values of the first label rendered as 0 before anything happened, so `rate()` and
    /// `increase()` see the first event.
    pub seed: &'static [&'static str],
}

/// The label every series carries: which runner config wrote it.
pub const RUNNER_LABEL: &str = "runner";

/// Stage durations: from a second to an hour.
const STAGE_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];
/// Pull durations.
const PULL_BUCKETS: &[f64] = &[0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// Jobs ended, by outcome.
pub const JOBS: &str = "berth_jobs_total";
/// Durations of berth's invocations per stage.
pub const STAGE_DURATION: &str = "berth_stage_duration_seconds";
/// Pulls into the base store.
pub const PULLS: &str = "berth_image_pulls_total";
/// Bytes of the images pulled.
pub const PULL_BYTES: &str = "berth_image_pull_bytes_total";
/// Pull durations.
pub const PULL_DURATION: &str = "berth_image_pull_duration_seconds";
/// Images jobs built, by builder.
pub const BUILDS: &str = "berth_images_built_total";
/// Images scanned, by verdict.
pub const SCANS: &str = "berth_image_scans_total";
/// Findings of scanned images, by severity and verdict.
pub const FINDINGS: &str = "berth_scan_findings_total";
/// Findings of each project's most recently scanned image.
pub const PROJECT_FINDINGS: &str = "berth_project_scan_findings";
/// Objects the reaper and the pruner removed, by kind.
pub const REAPED: &str = "berth_reaped_objects_total";
/// Objects the last reap could not remove.
pub const REAP_LEFT: &str = "berth_reap_left_objects";
/// Size of the shared base store.
pub const BASE_STORE: &str = "berth_base_store_size_bytes";
/// When the advisory database's newest data is from.
pub const DB_UPDATED: &str = "berth_advisory_db_updated_timestamp_seconds";
/// When berth last wrote this file.
pub const LAST_WRITE: &str = "berth_metrics_written_timestamp_seconds";

/// Every family, in the order they are rendered.
pub const FAMILIES: &[Family] = &[
    Family {
        name: JOBS,
        help: "Jobs ended (counted at cleanup), by outcome: success, build_failure, system_failure, cancelled.",
        kind: Kind::Counter,
        labels: &["outcome"],
        seed: &["success", "build_failure", "system_failure", "cancelled"],
    },
    Family {
        name: STAGE_DURATION,
        help: "Duration of berth's invocations, by stage: config, prepare, cleanup, or the runner's script stage (step_script, after_script, get_sources, ...).",
        kind: Kind::Histogram(STAGE_BUCKETS),
        labels: &["stage"],
        seed: &[],
    },
    Family {
        name: PULLS,
        help: "Image pulls into the shared base store, by outcome: success, failure.",
        kind: Kind::Counter,
        labels: &["outcome"],
        seed: &["success", "failure"],
    },
    Family {
        name: PULL_BYTES,
        help: "Size of the images pulled into the shared base store.",
        kind: Kind::Counter,
        labels: &[],
        seed: &[],
    },
    Family {
        name: PULL_DURATION,
        help: "Duration of image pulls into the shared base store.",
        kind: Kind::Histogram(PULL_BUCKETS),
        labels: &[],
        seed: &[],
    },
    Family {
        name: BUILDS,
        help: "Images jobs built, by builder: nested (podman/buildah in the job), build-socket, buildkit.",
        kind: Kind::Counter,
        labels: &["builder"],
        seed: &[],
    },
    Family {
        name: SCANS,
        help: "Images berth scanned, by verdict: pass, fail (the policy blocks the job).",
        kind: Kind::Counter,
        labels: &["verdict"],
        seed: &["pass", "fail"],
    },
    Family {
        name: FINDINGS,
        help: "Findings reported in scanned images, by severity and by the image's verdict.",
        kind: Kind::Counter,
        labels: &["severity", "verdict"],
        seed: &[],
    },
    Family {
        name: PROJECT_FINDINGS,
        help: "Findings of each project's most recently scanned image, by severity (projects beyond metrics_max_projects, least recently scanned first, are dropped).",
        kind: Kind::Gauge,
        labels: &["project", "severity"],
        seed: &[],
    },
    Family {
        name: REAPED,
        help: "Objects removed by the reaper and the pruner, by kind: job, cache, image.",
        kind: Kind::Counter,
        labels: &["kind"],
        seed: &[],
    },
    Family {
        name: REAP_LEFT,
        help: "Objects the most recent reap or prune could not remove.",
        kind: Kind::Gauge,
        labels: &[],
        seed: &[],
    },
    Family {
        name: BASE_STORE,
        help: "Size of the shared read-only base image store.",
        kind: Kind::Gauge,
        labels: &[],
        seed: &[],
    },
    Family {
        name: DB_UPDATED,
        help: "Time of the advisory database's newest data, as seen by the most recent scan.",
        kind: Kind::Gauge,
        labels: &[],
        seed: &[],
    },
    Family {
        name: LAST_WRITE,
        help: "When a berth process of this runner config last wrote its metrics.",
        kind: Kind::Gauge,
        labels: &[],
        seed: &[],
    },
];

/// The family named `name`.
pub fn family(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.name == name)
}

/// The names of every series berth writes, with the suffixes histograms add: what a dashboard
/// or an alert may query.
pub fn series_names() -> Vec<String> {
    FAMILIES
        .iter()
        .flat_map(|f| match f.kind {
            Kind::Histogram(_) => vec![
                format!("{}_bucket", f.name),
                format!("{}_sum", f.name),
                format!("{}_count", f.name),
            ],
            Kind::Counter | Kind::Gauge => vec![f.name.to_owned()],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        for f in FAMILIES {
            assert!(f.name.starts_with("berth_"), "{}", f.name);
            let is_total = f.name.ends_with("_total");
            assert_eq!(is_total, f.kind == Kind::Counter, "{}", f.name);
            assert!(
                !f.labels.contains(&RUNNER_LABEL),
                "{}: runner is added when rendered",
                f.name
            );
            if let Kind::Histogram(b) = f.kind {
                assert!(b.windows(2).all(|w| w[0] < w[1]), "{}", f.name);
                assert!(f.name.ends_with("_seconds"), "{}", f.name);
            }
        }
        let mut names: Vec<_> = FAMILIES.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FAMILIES.len());
    }
}
