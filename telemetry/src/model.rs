//! The accumulated values ([`Totals`]) and the events that change them ([`Event`]). Pure: no
//! clock, no files; [`Totals::from_json`] reads a state file strictly (an unknown metric, a label
//! set that is not the family's, a histogram of the wrong shape or a negative count makes it
//! corrupt, never a panic).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{self, Kind};

/// The state file's format version.
pub const VERSION: u32 = 1;
/// Jobs whose outcome is remembered until their cleanup; the oldest are forgotten beyond this
/// (a runner that died before cleanup leaves them behind).
const MAX_PENDING_JOBS: usize = 4096;
/// Default bound of the `project` label.
pub const DEFAULT_MAX_PROJECTS: usize = 50;

/// How a job ended, as berth saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    /// Every stage succeeded.
    Success,
    /// The user's script or the job's inputs failed it.
    BuildFailure,
    /// The infrastructure failed it.
    SystemFailure,
    /// gitlab-runner cancelled it (cancel or timeout).
    Cancelled,
}

impl JobOutcome {
    /// The `outcome` label's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::BuildFailure => "build_failure",
            Self::SystemFailure => "system_failure",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Something berth did that a metric counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// One berth invocation for a stage ended after `seconds`.
    StageEnded {
        /// `config`, `prepare`, `cleanup`, or the runner's stage name for `run`.
        stage: String,
        /// How long it took.
        seconds: f64,
    },
    /// A stage of job `key` ended this way; the first failure decides the job's outcome, a
    /// cancel overrides it.
    JobStage {
        /// The job key.
        key: String,
        /// How the stage ended.
        outcome: JobOutcome,
    },
    /// Job `key` was cleaned up: its outcome is counted.
    JobEnded {
        /// The job key.
        key: String,
    },
    /// A pull into the base store.
    ImagePulled {
        /// It succeeded.
        ok: bool,
        /// How long it took.
        seconds: f64,
        /// The image's size, when known.
        bytes: Option<u64>,
    },
    /// A job built an image.
    ImageBuilt {
        /// `nested`, `build-socket` or `buildkit`.
        builder: String,
    },
    /// An image was scanned.
    ImageScanned {
        /// The project's path (`CI_PROJECT_PATH`).
        project: String,
        /// The policy blocks the job.
        blocked: bool,
        /// Reported findings by severity (Trivy's names, any case).
        findings: BTreeMap<String, u64>,
    },
    /// The reaper or pruner removed `count` objects of `kind` (`job`, `cache`, `image`).
    Reaped {
        /// What was removed.
        kind: String,
        /// How many.
        count: u64,
    },
    /// A reap or prune ended with `count` objects it could not remove.
    ReapLeft {
        /// How many.
        count: u64,
    },
    /// The base store's size.
    BaseStoreSize {
        /// In bytes.
        bytes: u64,
    },
    /// The advisory database's newest data is from this Unix time.
    AdvisoryDbUpdated {
        /// Seconds since the epoch.
        unix_seconds: i64,
    },
}

/// One series' value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Value {
    /// A counter's or gauge's value.
    Scalar(f64),
    /// A histogram: per-bucket (not cumulative) counts, sum and count.
    Histogram {
        /// Observations per bucket of the family, in order; the last is above every bound.
        buckets: Vec<u64>,
        /// Sum of the observations.
        sum: f64,
        /// Number of observations.
        count: u64,
    },
}

/// One series: a family's name and its labels (without `runner`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Series {
    /// The family's name.
    pub name: String,
    /// Label values by name.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: Value,
}

/// A job whose outcome so far is remembered until its cleanup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingJob {
    /// The outcome so far.
    pub outcome: JobOutcome,
    /// When it was first seen (Unix seconds), to forget the oldest first.
    pub since: u64,
}

/// Everything accumulated for one runner config: the state file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    /// Format version.
    pub version: u32,
    /// Every series, sorted by name and labels.
    pub series: Vec<Series>,
    /// Jobs not cleaned up yet.
    pub pending_jobs: BTreeMap<String, PendingJob>,
    /// Projects in the `project` label, with when each was last scanned (Unix seconds).
    pub projects: BTreeMap<String, u64>,
}

impl Default for Totals {
    fn default() -> Self {
        Self {
            version: VERSION,
            series: Vec::new(),
            pending_jobs: BTreeMap::new(),
            projects: BTreeMap::new(),
        }
    }
}

/// Why a state file was not used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Corrupt(String);

fn finite_non_negative(x: f64) -> bool {
    x.is_finite() && x >= 0.0
}

/// Severity label values: Trivy's five, lower-cased; anything else is `unknown`.
fn severity(name: &str) -> &'static str {
    match name.to_ascii_lowercase().as_str() {
        "critical" => "critical",
        "high" => "high",
        "medium" => "medium",
        "low" => "low",
        _ => "unknown",
    }
}

/// The runner's stage names (`BuildStage` in gitlab-runner) keep their name; other
/// `step_<name>` stages are `step_other` and anything else `other`, so a job cannot mint
/// label values.
pub fn stage_label(stage: &str) -> &str {
    const KNOWN: &[&str] = &[
        "config",
        "prepare",
        "cleanup",
        "prepare_script",
        "get_sources",
        "clear_worktree",
        "restore_cache",
        "download_artifacts",
        "build_script",
        "step_script",
        "step_release",
        "step_accessibility",
        "after_script",
        "archive_cache",
        "archive_cache_on_failure",
        "upload_artifacts_on_success",
        "upload_artifacts_on_failure",
        "cleanup_file_variables",
    ];
    match KNOWN.iter().find(|k| **k == stage) {
        Some(k) => k,
        None if stage.starts_with("step_") => "step_other",
        None => "other",
    }
}

fn builder_label(builder: &str) -> &str {
    match builder {
        "nested" | "build-socket" | "buildkit" => builder,
        _ => "other",
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Totals {
    /// Reads a state file strictly.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Corrupt> {
        let totals: Self =
            serde_json::from_slice(bytes).map_err(|e| Corrupt(format!("not a state file: {e}")))?;
        totals.check()?;
        Ok(totals)
    }

    /// The state file's bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    fn check(&self) -> Result<(), Corrupt> {
        if self.version != VERSION {
            return Err(Corrupt(format!(
                "version {} (this berth writes {VERSION})",
                self.version
            )));
        }
        for s in &self.series {
            let family = catalog::family(&s.name)
                .ok_or_else(|| Corrupt(format!("unknown metric {:?}", s.name)))?;
            let names: Vec<&str> = s.labels.keys().map(String::as_str).collect();
            let mut expected = family.labels.to_vec();
            expected.sort_unstable();
            if names != expected {
                return Err(Corrupt(format!(
                    "{} has labels {names:?}, not {expected:?}",
                    s.name
                )));
            }
            let ok = match (&s.value, family.kind) {
                (Value::Scalar(x), Kind::Counter | Kind::Gauge) => finite_non_negative(*x),
                (
                    Value::Histogram {
                        buckets,
                        sum,
                        count,
                    },
                    Kind::Histogram(bounds),
                ) => {
                    buckets.len() == bounds.len() + 1
                        && finite_non_negative(*sum)
                        && buckets.iter().try_fold(0u64, |a, b| a.checked_add(*b)) == Some(*count)
                }
                _ => false,
            };
            if !ok {
                return Err(Corrupt(format!(
                    "{} {:?} has a bad value",
                    s.name, s.labels
                )));
            }
        }
        if self.pending_jobs.len() > MAX_PENDING_JOBS {
            return Err(Corrupt(format!(
                "{} pending jobs (at most {MAX_PENDING_JOBS})",
                self.pending_jobs.len()
            )));
        }
        Ok(())
    }

    fn slot(&mut self, name: &str, labels: BTreeMap<String, String>, zero: Value) -> &mut Value {
        let at = self
            .series
            .binary_search_by(|s| (s.name.as_str(), &s.labels).cmp(&(name, &labels)));
        let index = match at {
            Ok(i) => i,
            Err(i) => {
                self.series.insert(
                    i,
                    Series {
                        name: name.to_owned(),
                        labels,
                        value: zero,
                    },
                );
                i
            }
        };
        &mut self.series[index].value
    }

    fn add(&mut self, name: &str, pairs: &[(&str, &str)], by: f64) {
        if let Value::Scalar(x) = self.slot(name, labels(pairs), Value::Scalar(0.0)) {
            *x += by;
        }
    }

    fn set(&mut self, name: &str, pairs: &[(&str, &str)], to: f64) {
        if let Value::Scalar(x) = self.slot(name, labels(pairs), Value::Scalar(0.0)) {
            *x = to;
        }
    }

    fn observe(&mut self, name: &str, pairs: &[(&str, &str)], value: f64) {
        let Some(Kind::Histogram(bounds)) = catalog::family(name).map(|f| f.kind) else {
            return;
        };
        let value = if finite_non_negative(value) {
            value
        } else {
            0.0
        };
        let zero = Value::Histogram {
            buckets: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        };
        if let Value::Histogram {
            buckets,
            sum,
            count,
        } = self.slot(name, labels(pairs), zero)
        {
            let at = bounds
                .iter()
                .position(|b| value <= *b)
                .unwrap_or(bounds.len());
            if let Some(b) = buckets.get_mut(at) {
                *b += 1;
            }
            *sum += value;
            *count += 1;
        }
    }

    /// Folds `event`, at Unix time `now`, with at most `max_projects` values of the `project`
    /// label (the least recently scanned projects are dropped first).
    pub fn apply(&mut self, event: &Event, now: u64, max_projects: usize) {
        match event {
            Event::StageEnded { stage, seconds } => {
                self.observe(
                    catalog::STAGE_DURATION,
                    &[("stage", stage_label(stage))],
                    *seconds,
                );
            }
            Event::JobStage { key, outcome } => {
                let pending = self.pending_jobs.entry(key.clone()).or_insert(PendingJob {
                    outcome: JobOutcome::Success,
                    since: now,
                });
                pending.outcome = match (pending.outcome, *outcome) {
                    (_, JobOutcome::Cancelled) => JobOutcome::Cancelled,
                    (JobOutcome::Success, later) => later,
                    (first, _) => first,
                };
                while self.pending_jobs.len() > MAX_PENDING_JOBS {
                    let oldest = self
                        .pending_jobs
                        .iter()
                        .min_by_key(|(_, p)| p.since)
                        .map(|(k, _)| k.clone());
                    if let Some(k) = oldest {
                        self.pending_jobs.remove(&k);
                    }
                }
            }
            Event::JobEnded { key } => {
                let outcome = self
                    .pending_jobs
                    .remove(key)
                    .map_or(JobOutcome::Success, |p| p.outcome);
                self.add(catalog::JOBS, &[("outcome", outcome.as_str())], 1.0);
            }
            Event::ImagePulled { ok, seconds, bytes } => {
                let outcome = if *ok { "success" } else { "failure" };
                self.add(catalog::PULLS, &[("outcome", outcome)], 1.0);
                self.observe(catalog::PULL_DURATION, &[], *seconds);
                if let (true, Some(bytes)) = (ok, bytes) {
                    self.add(catalog::PULL_BYTES, &[], *bytes as f64);
                }
            }
            Event::ImageBuilt { builder } => {
                self.add(catalog::BUILDS, &[("builder", builder_label(builder))], 1.0);
            }
            Event::ImageScanned {
                project,
                blocked,
                findings,
            } => self.scanned(project, *blocked, findings, now, max_projects),
            Event::Reaped { kind, count } => {
                let kind = match kind.as_str() {
                    "job" | "cache" | "image" => kind.as_str(),
                    _ => "other",
                };
                self.add(catalog::REAPED, &[("kind", kind)], *count as f64);
            }
            Event::ReapLeft { count } => self.set(catalog::REAP_LEFT, &[], *count as f64),
            Event::BaseStoreSize { bytes } => self.set(catalog::BASE_STORE, &[], *bytes as f64),
            Event::AdvisoryDbUpdated { unix_seconds } => {
                self.set(catalog::DB_UPDATED, &[], (*unix_seconds).max(0) as f64);
            }
        }
    }

    /// Sets the time this runner config's metrics were last written.
    pub fn mark_written(&mut self, now: u64) {
        self.set(catalog::LAST_WRITE, &[], now as f64);
    }

    fn scanned(
        &mut self,
        project: &str,
        blocked: bool,
        findings: &BTreeMap<String, u64>,
        now: u64,
        max_projects: usize,
    ) {
        let verdict = if blocked { "fail" } else { "pass" };
        self.add(catalog::SCANS, &[("verdict", verdict)], 1.0);
        let mut by_severity: BTreeMap<&str, u64> = ["critical", "high", "medium", "low", "unknown"]
            .into_iter()
            .map(|s| (s, 0))
            .collect();
        for (name, count) in findings {
            *by_severity.entry(severity(name)).or_default() += count;
        }
        for (severity, count) in &by_severity {
            if *count > 0 {
                self.add(
                    catalog::FINDINGS,
                    &[("severity", severity), ("verdict", verdict)],
                    *count as f64,
                );
            }
        }
        if max_projects == 0 {
            return;
        }
        self.projects.insert(project.to_owned(), now);
        for (severity, count) in &by_severity {
            self.set(
                catalog::PROJECT_FINDINGS,
                &[("project", project), ("severity", severity)],
                *count as f64,
            );
        }
        while self.projects.len() > max_projects {
            let Some(oldest) = self
                .projects
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(p, _)| p.clone())
            else {
                break;
            };
            self.projects.remove(&oldest);
            self.series.retain(|s| {
                s.name != catalog::PROJECT_FINDINGS
                    || s.labels.get("project").map(String::as_str) != Some(oldest.as_str())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(t: &Totals, name: &str, pairs: &[(&str, &str)]) -> Option<f64> {
        let want = labels(pairs);
        t.series
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .and_then(|s| match s.value {
                Value::Scalar(x) => Some(x),
                Value::Histogram { .. } => None,
            })
    }

    fn stage(key: &str, outcome: JobOutcome) -> Event {
        Event::JobStage {
            key: key.into(),
            outcome,
        }
    }

    fn ended(key: &str) -> Event {
        Event::JobEnded { key: key.into() }
    }

    #[test]
    fn a_jobs_first_failure_decides_its_outcome_and_a_cancel_overrides_it() {
        let mut t = Totals::default();
        for e in [
            stage("a", JobOutcome::Success),
            stage("a", JobOutcome::BuildFailure),
            stage("a", JobOutcome::SystemFailure),
            ended("a"),
            stage("b", JobOutcome::SystemFailure),
            stage("b", JobOutcome::Cancelled),
            ended("b"),
            stage("c", JobOutcome::Success),
            ended("c"),
            ended("never-prepared"),
        ] {
            t.apply(&e, 1, 10);
        }
        let jobs = |o| scalar(&t, catalog::JOBS, &[("outcome", o)]);
        assert_eq!(jobs("build_failure"), Some(1.0));
        assert_eq!(jobs("cancelled"), Some(1.0));
        assert_eq!(jobs("success"), Some(2.0));
        assert_eq!(jobs("system_failure"), None);
        assert!(t.pending_jobs.is_empty());
    }

    #[test]
    fn histograms_count_each_observation_in_its_bucket() {
        let mut t = Totals::default();
        for seconds in [0.05, 0.3, 7200.0] {
            t.apply(
                &Event::StageEnded {
                    stage: "prepare".into(),
                    seconds,
                },
                1,
                10,
            );
        }
        let s = &t.series[0];
        let Value::Histogram {
            buckets,
            sum,
            count,
        } = &s.value
        else {
            panic!("{s:?}");
        };
        assert_eq!(
            (buckets[0], buckets[2], *buckets.last().unwrap_or(&0)),
            (1, 1, 1)
        );
        assert_eq!(*count, 3);
        assert!((sum - 7200.35).abs() < 1e-9);
    }

    #[test]
    fn job_chosen_names_cannot_mint_label_values() {
        assert_eq!(stage_label("step_script"), "step_script");
        assert_eq!(stage_label("build_script"), "build_script");
        assert_eq!(stage_label("step_deploy_to_prod"), "step_other");
        assert_eq!(stage_label("anything"), "other");
        let mut t = Totals::default();
        t.apply(
            &Event::ImageBuilt {
                builder: "evil\"}".into(),
            },
            1,
            10,
        );
        t.apply(
            &Event::Reaped {
                kind: "x".into(),
                count: 2,
            },
            1,
            10,
        );
        assert_eq!(
            scalar(&t, catalog::BUILDS, &[("builder", "other")]),
            Some(1.0)
        );
        assert_eq!(scalar(&t, catalog::REAPED, &[("kind", "other")]), Some(2.0));
    }

    #[test]
    fn the_project_label_keeps_only_the_most_recently_scanned_projects() {
        let mut t = Totals::default();
        for (n, project) in ["a/one", "b/two", "c/three"].iter().enumerate() {
            t.apply(
                &Event::ImageScanned {
                    project: (*project).into(),
                    blocked: true,
                    findings: [("CRITICAL".to_owned(), 2), ("weird".to_owned(), 1)].into(),
                },
                n as u64,
                2,
            );
        }
        let projects: Vec<_> = t.projects.keys().cloned().collect();
        assert_eq!(projects, ["b/two", "c/three"]);
        assert_eq!(
            scalar(
                &t,
                catalog::PROJECT_FINDINGS,
                &[("project", "a/one"), ("severity", "critical")]
            ),
            None
        );
        assert_eq!(
            scalar(
                &t,
                catalog::PROJECT_FINDINGS,
                &[("project", "c/three"), ("severity", "critical")]
            ),
            Some(2.0)
        );
        assert_eq!(
            scalar(
                &t,
                catalog::FINDINGS,
                &[("severity", "critical"), ("verdict", "fail")]
            ),
            Some(6.0)
        );
        assert_eq!(
            scalar(
                &t,
                catalog::FINDINGS,
                &[("severity", "unknown"), ("verdict", "fail")]
            ),
            Some(3.0)
        );
    }

    #[test]
    fn a_state_file_round_trips_and_every_kind_of_damage_is_refused() {
        let mut t = Totals::default();
        t.apply(
            &Event::ImagePulled {
                ok: true,
                seconds: 2.0,
                bytes: Some(10),
            },
            1,
            10,
        );
        t.apply(&stage("k", JobOutcome::BuildFailure), 1, 10);
        let json = t.to_json();
        assert_eq!(Totals::from_json(&json).ok(), Some(t));
        let text = String::from_utf8(json).unwrap_or_default();
        for (from, to) in [
            ("\"version\": 1", "\"version\": 2"),
            ("berth_image_pulls_total", "berth_made_up_total"),
            (
                "\"outcome\": \"success\"",
                "\"outcome\": \"success\", \"x\": \"y\"",
            ),
            ("\"count\": 1", "\"count\": 5"),
            ("\"sum\": 2.0", "\"sum\": -2.0"),
            ("\"pending_jobs\"", "\"surprise\": 1, \"pending_jobs\""),
        ] {
            assert!(text.contains(from), "{from} not in {text}");
            let damaged = text.replacen(from, to, 1);
            assert!(
                Totals::from_json(damaged.as_bytes()).is_err(),
                "accepted with {to}"
            );
        }
        assert!(Totals::from_json(b"\x00garbage").is_err());
    }
}
