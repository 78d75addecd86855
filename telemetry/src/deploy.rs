//! The shipped Grafana dashboard and Prometheus alerts query only series berth writes.

use crate::catalog::series_names;

const DASHBOARD: &str = include_str!("../../deploy/grafana/berth-dashboard.json");
const ALERTS: &str = include_str!("../../deploy/prometheus/berth-alerts.yml");

/// Every `berth_…` identifier in `text`.
fn berth_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("berth_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.push(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// Every PromQL expression of the dashboard's panels.
pub(crate) fn dashboard_queries() -> Vec<String> {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap_or_default();
    dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_dashboard_parses_and_queries_only_series_berth_writes() {
    let dashboard: serde_json::Value =
        serde_json::from_str(DASHBOARD).expect("berth-dashboard.json is JSON");
    assert_eq!(dashboard["uid"], "berth-runner");
    let queries = dashboard_queries();
    assert!(queries.len() >= 15, "{queries:?}");
    let known = series_names();
    let mut used = Vec::new();
    for q in &queries {
        let names = berth_names(q);
        assert!(!names.is_empty(), "a panel queries no berth series: {q}");
        for n in names {
            assert!(
                known.contains(&n),
                "the dashboard queries {n}, which berth never writes"
            );
            used.push(n);
        }
    }
    // The panels the issue asks for: jobs, overhead, findings per project over time.
    for needed in [
        "berth_jobs_total",
        "berth_stage_duration_seconds_sum",
        "berth_project_scan_findings",
    ] {
        assert!(used.iter().any(|u| u == needed), "no panel shows {needed}");
    }
}

#[test]
fn the_alerts_query_only_series_berth_writes() {
    let names = berth_names(ALERTS);
    assert!(names.len() >= 4, "{names:?}");
    let known = series_names();
    for n in names {
        assert!(
            known.contains(&n),
            "an alert queries {n}, which berth never writes"
        );
    }
}

#[test]
fn names_are_found_whole() {
    assert_eq!(
        berth_names("rate(berth_jobs_total{x=\"y\"}[5m]) / xberth_no + berth_a_b"),
        ["berth_jobs_total", "berth_a_b"]
    );
}
