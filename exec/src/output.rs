//! What `berth exec` shows: a line per job as it starts and ends, the jobs' logs (each line
//! prefixed with the job's name when jobs run side by side, in the job's colour on a terminal),
//! a final table, and the JSON summary of `--json`. Writes to a writer the binary hands in.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use crate::plan::Ending;

/// How output looks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Style {
    /// Only job start/end lines and the table, no job logs.
    pub quiet: bool,
    /// Prefix each log line with the job's name (several jobs at once).
    pub prefix: bool,
    /// ANSI colours (stdout is a terminal and `NO_COLOR` is unset).
    pub color: bool,
}

const COLORS: &[&str] = &["36", "33", "35", "32", "34", "96", "93", "95", "92", "94"];

/// The printer: keeps each job's partial line until its end arrives.
pub struct Printer<W: Write> {
    out: W,
    style: Style,
    width: usize,
    partial: BTreeMap<String, Vec<u8>>,
    colors: BTreeMap<String, &'static str>,
}

impl<W: Write> std::fmt::Debug for Printer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Printer")
            .field("style", &self.style)
            .finish_non_exhaustive()
    }
}

impl<W: Write> Printer<W> {
    /// A printer for jobs named `names` (for the prefix width and colours).
    pub fn new(out: W, style: Style, names: &[String]) -> Self {
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        let colors = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), COLORS[i % COLORS.len()]))
            .collect();
        Self {
            out,
            style,
            width,
            partial: BTreeMap::new(),
            colors,
        }
    }

    fn paint(&self, name: &str, text: &str) -> String {
        match (self.style.color, self.colors.get(name)) {
            (true, Some(code)) => format!("\x1b[{code}m{text}\x1b[0m"),
            _ => text.to_owned(),
        }
    }

    fn status_word(&self, ending: &Ending) -> String {
        let word = ending.status();
        if !self.style.color {
            return word.to_owned();
        }
        let code = match ending {
            Ending::Success => "32",
            Ending::Failed { allowed: true, .. } | Ending::Manual => "33",
            Ending::Failed { allowed: false, .. } | Ending::Canceled => "31",
            Ending::Skipped { .. } => "90",
        };
        format!("\x1b[{code}m{word}\x1b[0m")
    }

    /// A job started.
    ///
    /// # Errors
    /// The writer failed.
    pub fn started(&mut self, name: &str, stage: &str) -> std::io::Result<()> {
        let label = self.paint(name, name);
        writeln!(self.out, "▶ {label} ({stage}) started")
    }

    /// A job ended (or was decided without running).
    ///
    /// # Errors
    /// The writer failed.
    pub fn ended(
        &mut self,
        name: &str,
        ending: &Ending,
        took: Option<Duration>,
    ) -> std::io::Result<()> {
        self.flush_partial(name)?;
        let label = self.paint(name, name);
        let word = self.status_word(ending);
        let took = took
            .map(|d| format!(" in {}", seconds(d)))
            .unwrap_or_default();
        let detail = detail(ending);
        let mark = match ending {
            Ending::Success => "✔",
            Ending::Failed { allowed: true, .. } | Ending::Manual | Ending::Skipped { .. } => "⚠",
            Ending::Failed { allowed: false, .. } | Ending::Canceled => "✘",
        };
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(": {detail}")
        };
        writeln!(self.out, "{mark} {label} {word}{took}{detail}")
    }

    /// Bytes of a job's log as they arrive.
    ///
    /// # Errors
    /// The writer failed.
    pub fn log(&mut self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        if self.style.quiet {
            return Ok(());
        }
        let mut buffer = self.partial.remove(name).unwrap_or_default();
        buffer.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(end) = buffer[start..].iter().position(|&b| b == b'\n') {
            let line = buffer[start..start + end].to_vec();
            self.line(name, &line)?;
            start += end + 1;
        }
        buffer.drain(..start);
        if !buffer.is_empty() {
            self.partial.insert(name.to_owned(), buffer);
        }
        Ok(())
    }

    fn flush_partial(&mut self, name: &str) -> std::io::Result<()> {
        match self.partial.remove(name) {
            Some(rest) if !self.style.quiet => self.line(name, &rest),
            _ => Ok(()),
        }
    }

    fn line(&mut self, name: &str, raw: &[u8]) -> std::io::Result<()> {
        let text = clean_line(&String::from_utf8_lossy(raw), self.style.color);
        if text.is_empty() && raw.is_empty() {
            return writeln!(self.out);
        }
        if text.is_empty() {
            // A section marker alone, nothing to show.
            return Ok(());
        }
        if self.style.prefix {
            let padded = format!("{name:<width$}", width = self.width);
            let label = self.paint(name, &padded);
            writeln!(self.out, "{label} │ {text}")
        } else {
            writeln!(self.out, "{text}")
        }
    }

    /// The final table, one row per job in pipeline order.
    ///
    /// # Errors
    /// The writer failed.
    pub fn table(&mut self, rows: &[SummaryJob]) -> std::io::Result<()> {
        let name_width = rows
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(3)
            .max(3);
        let stage_width = rows
            .iter()
            .map(|r| r.stage.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        writeln!(self.out)?;
        writeln!(
            self.out,
            "{:<name_width$}  {:<stage_width$}  {:<8}  {:>8}  detail",
            "job", "stage", "status", "duration"
        )?;
        for row in rows {
            let took = row
                .duration_seconds
                .map(|s| seconds(Duration::from_secs_f64(s)))
                .unwrap_or_default();
            writeln!(
                self.out,
                "{:<name_width$}  {:<stage_width$}  {:<8}  {:>8}  {}",
                row.name, row.stage, row.status, took, row.detail
            )?;
        }
        Ok(())
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// What an ending adds after the status word.
#[must_use]
pub fn detail(ending: &Ending) -> String {
    match ending {
        Ending::Success | Ending::Manual | Ending::Canceled => String::new(),
        Ending::Failed {
            exit_code: Some(code),
            reason,
            allowed,
        } => format!(
            "{reason}, exit code {code}{}",
            if *allowed { " (allowed to fail)" } else { "" }
        ),
        Ending::Failed {
            exit_code: None,
            reason,
            allowed,
        } => format!(
            "{reason}{}",
            if *allowed { " (allowed to fail)" } else { "" }
        ),
        Ending::Skipped { reason } => reason.clone(),
    }
}

/// A runner trace line made fit for a terminal: GitLab's section markers go, and without
/// colour every ANSI sequence goes too.
#[must_use]
pub fn clean_line(line: &str, keep_color: bool) -> String {
    // The runner writes `\e[0Ksection_start:TS:NAME[opts]\r\e[0K` before a header and
    // `section_end:TS:NAME\r\e[0K` after; a `\r` elsewhere rewrites the line, keep what follows.
    let mut text = line.to_owned();
    while let Some(start) = text
        .find("section_start:")
        .or_else(|| text.find("section_end:"))
    {
        let end = text[start..]
            .find('\r')
            .map_or(text.len(), |i| start + i + 1);
        text.replace_range(start..end, "");
    }
    let text = text
        .rsplit('\r')
        .find(|s| !s.is_empty())
        .unwrap_or("")
        .to_owned();
    if keep_color {
        return text.replace("\x1b[0K", "");
    }
    strip_ansi(&text)
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        }
    }
    out
}

/// One job in the summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryJob {
    /// Job name.
    pub name: String,
    /// Stage.
    pub stage: String,
    /// GitLab's status word (`passed`, `failed`, `warning`, `skipped`, `manual`, `canceled`).
    pub status: String,
    /// Failure reason, exit code or why it was skipped.
    pub detail: String,
    /// Script exit code of a failed job.
    pub exit_code: Option<i32>,
    /// Wall time of the run, when it ran.
    pub duration_seconds: Option<f64>,
    /// How many times it ran (retries included).
    pub attempts: u32,
    /// The job's log, relative to the project.
    pub log: Option<String>,
    /// The job's artifacts archive, relative to the project.
    pub artifacts: Option<String>,
    /// The job's uploaded reports (dotenv, junit, container scanning, ...), relative to the
    /// project.
    pub reports: Vec<String>,
}

/// `--json`: the whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// `passed` or `failed`.
    pub status: String,
    /// Every planned job.
    pub jobs: Vec<SummaryJob>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_markers_and_colours_are_taken_out_of_log_lines() {
        let line =
            "\x1b[0Ksection_start:1700000000:step_script\r\x1b[0K\x1b[32;1m$ echo hi\x1b[0;m";
        assert_eq!(clean_line(line, false), "$ echo hi");
        assert_eq!(
            clean_line("\x1b[0Ksection_end:1700000000:step_script\r\x1b[0K", false),
            ""
        );
        assert_eq!(
            clean_line("progress 10%\rprogress 100%", false),
            "progress 100%"
        );
    }

    #[test]
    fn concurrent_logs_are_prefixed_per_line_and_partial_lines_wait() {
        let names = vec!["build".to_owned(), "lint".to_owned()];
        let mut out = Vec::new();
        {
            let style = Style {
                prefix: true,
                ..Style::default()
            };
            let mut printer = Printer::new(&mut out, style, &names);
            printer.log("build", b"one\ntw").expect("log");
            printer.log("lint", b"ok\n").expect("log");
            printer.log("build", b"o\n").expect("log");
            printer.log("lint", b"tail without newline").expect("log");
            printer.ended("lint", &Ending::Success, None).expect("end");
        }
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(
            text,
            "build │ one\nlint  │ ok\nbuild │ two\nlint  │ tail without newline\n✔ lint passed\n"
        );
    }

    #[test]
    fn quiet_shows_only_the_job_lines_and_endings_say_why() {
        let mut out = Vec::new();
        {
            let style = Style {
                quiet: true,
                ..Style::default()
            };
            let mut printer = Printer::new(&mut out, style, &["t".to_owned()]);
            printer.started("t", "test").expect("start");
            printer.log("t", b"noise\n").expect("log");
            let failed = Ending::Failed {
                allowed: true,
                exit_code: Some(3),
                reason: "script_failure".to_owned(),
            };
            printer
                .ended("t", &failed, Some(Duration::from_millis(1500)))
                .expect("end");
        }
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(
            text,
            "▶ t (test) started\n⚠ t warning in 1.5s: script_failure, exit code 3 (allowed to fail)\n"
        );
    }
}
