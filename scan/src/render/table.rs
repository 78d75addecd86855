//! The plain-text table for the job log: a summary line, then one row per finding.

use crate::report::Report;

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n.saturating_sub(1)).collect::<String>() + "…"
    }
}

/// Renders the table.
pub fn render(r: &Report) -> String {
    let os = r.os.as_ref().map_or_else(String::new, |o| {
        format!(" ({} {})", o.family.as_str(), o.version)
    });
    let counts: Vec<String> = r
        .counts()
        .iter()
        .rev()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    let mut out = format!(
        "{}{os}: {} packages, {} vulnerabilities ({}), {} suppressed\n",
        r.artifact.name,
        r.packages.len(),
        r.findings.len(),
        counts.join(", "),
        r.suppressed.len()
    );
    if r.findings.is_empty() {
        return out;
    }
    let rows: Vec<[String; 6]> = r
        .findings
        .iter()
        .map(|f| {
            [
                cut(&f.pkg_name, 32),
                cut(&f.id, 24),
                f.severity.as_str().to_owned(),
                cut(&f.installed_version, 28),
                cut(
                    if f.fixed_version.is_empty() {
                        "-"
                    } else {
                        &f.fixed_version
                    },
                    28,
                ),
                cut(f.title.as_deref().unwrap_or(""), 60),
            ]
        })
        .collect();
    let head = [
        "Library",
        "Vulnerability",
        "Severity",
        "Installed",
        "Fixed",
        "Title",
    ];
    let mut w = head.map(|h| h.chars().count());
    for row in &rows {
        for (i, c) in row.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i] - c.chars().count();
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    out.push_str(&line(&head.map(str::to_owned)));
    out.push_str(&line(&w.map(|n| "-".repeat(n))));
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}
