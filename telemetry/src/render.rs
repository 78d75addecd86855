//! The Prometheus text exposition format (version 0.0.4, what node_exporter's textfile
//! collector reads) of [`Totals`], every series labelled with the runner config's name.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::catalog::{FAMILIES, Family, Kind, RUNNER_LABEL};
use crate::model::{Totals, Value};

/// A label value escaped as the format asks (backslash, double quote, line feed).
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn label_set(
    runner: &str,
    labels: &BTreeMap<String, String>,
    extra: Option<(&str, &str)>,
) -> String {
    let mut parts = vec![format!("{RUNNER_LABEL}=\"{}\"", escape(runner))];
    parts.extend(labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))));
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{}\"", escape(v)));
    }
    format!("{{{}}}", parts.join(","))
}

fn number(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

fn bound(b: f64) -> String {
    let text = number(b);
    if text.contains('.') {
        text
    } else {
        format!("{text}.0")
    }
}

fn family_text(out: &mut String, family: &Family, totals: &Totals, runner: &str) {
    let mut series: Vec<(&BTreeMap<String, String>, &Value)> = totals
        .series
        .iter()
        .filter(|s| s.name == family.name)
        .map(|s| (&s.labels, &s.value))
        .collect();
    let seeded: Vec<BTreeMap<String, String>> = match family.labels.first() {
        Some(first) if family.labels.len() == 1 => family
            .seed
            .iter()
            .map(|v| [((*first).to_owned(), (*v).to_owned())].into())
            .filter(|l| !series.iter().any(|(have, _)| *have == l))
            .collect(),
        _ => Vec::new(),
    };
    let zero = Value::Scalar(0.0);
    series.extend(seeded.iter().map(|l| (l, &zero)));
    series.sort_by(|a, b| a.0.cmp(b.0));
    if series.is_empty() {
        return;
    }
    let kind = match family.kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram(_) => "histogram",
    };
    let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
    let _ = writeln!(out, "# TYPE {} {kind}", family.name);
    for (labels, value) in series {
        match (value, family.kind) {
            (Value::Scalar(x), _) => {
                let _ = writeln!(
                    out,
                    "{}{} {}",
                    family.name,
                    label_set(runner, labels, None),
                    number(*x)
                );
            }
            (
                Value::Histogram {
                    buckets,
                    sum,
                    count,
                },
                Kind::Histogram(bounds),
            ) => {
                let mut cumulative = 0u64;
                for (b, n) in bounds.iter().zip(buckets) {
                    cumulative += n;
                    let le = bound(*b);
                    let _ = writeln!(
                        out,
                        "{}_bucket{} {cumulative}",
                        family.name,
                        label_set(runner, labels, Some(("le", &le)))
                    );
                }
                let _ = writeln!(
                    out,
                    "{}_bucket{} {count}",
                    family.name,
                    label_set(runner, labels, Some(("le", "+Inf")))
                );
                let _ = writeln!(
                    out,
                    "{}_sum{} {}",
                    family.name,
                    label_set(runner, labels, None),
                    number(*sum)
                );
                let _ = writeln!(
                    out,
                    "{}_count{} {count}",
                    family.name,
                    label_set(runner, labels, None)
                );
            }
            (Value::Histogram { .. }, Kind::Counter | Kind::Gauge) => {}
        }
    }
}

/// The text node_exporter reads, for the runner config named `runner`.
pub fn render(totals: &Totals, runner: &str) -> String {
    let mut out = String::new();
    for family in FAMILIES {
        family_text(&mut out, family, totals, runner);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Event;

    #[test]
    fn counters_are_seeded_histograms_cumulative_and_labels_escaped() {
        let mut t = Totals::default();
        t.apply(
            &Event::StageEnded {
                stage: "prepare".into(),
                seconds: 0.3,
            },
            1,
            10,
        );
        t.apply(
            &Event::ImageScanned {
                project: "we\"ird\\group/x\ny".into(),
                blocked: false,
                findings: [("HIGH".to_owned(), 1)].into(),
            },
            1,
            10,
        );
        let text = render(&t, "main");
        for line in [
            "# TYPE berth_jobs_total counter",
            "berth_jobs_total{runner=\"main\",outcome=\"cancelled\"} 0",
            "berth_stage_duration_seconds_bucket{runner=\"main\",stage=\"prepare\",le=\"0.25\"} 0",
            "berth_stage_duration_seconds_bucket{runner=\"main\",stage=\"prepare\",le=\"0.5\"} 1",
            "berth_stage_duration_seconds_bucket{runner=\"main\",stage=\"prepare\",le=\"3600.0\"} 1",
            "berth_stage_duration_seconds_bucket{runner=\"main\",stage=\"prepare\",le=\"+Inf\"} 1",
            "berth_stage_duration_seconds_count{runner=\"main\",stage=\"prepare\"} 1",
            "berth_project_scan_findings{runner=\"main\",project=\"we\\\"ird\\\\group/x\\ny\",severity=\"high\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in\n{text}"
            );
        }
        assert!(!text.contains("berth_base_store_size_bytes"), "{text}");
    }
}
