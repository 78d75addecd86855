//! The job log as seen by gitlab-runner (berth's stderr): masked values replaced, collapsible
//! sections in GitLab's `section_start`/`section_end` markup.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// A writer to the job log that never lets a masked value through.
pub struct JobLog {
    sink: Box<dyn Write + Send>,
    masked: Vec<String>,
}

impl std::fmt::Debug for JobLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobLog").finish_non_exhaustive()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `text` with every masked value (of at least 4 bytes) replaced by `[MASKED]`.
pub fn mask_text(text: &str, masked: &[String]) -> String {
    let mut text = text.to_owned();
    for secret in masked.iter().filter(|v| v.len() >= 4) {
        text = text.replace(secret.as_str(), "[MASKED]");
    }
    text
}

impl JobLog {
    /// A log writing to `sink`, hiding `masked` values.
    pub fn new(sink: Box<dyn Write + Send>, masked: Vec<String>) -> Self {
        Self { sink, masked }
    }

    /// Adds values to hide.
    pub fn mask(&mut self, values: impl IntoIterator<Item = String>) {
        self.masked
            .extend(values.into_iter().filter(|v| v.len() >= 4));
    }

    /// Writes one line.
    pub fn line(&mut self, text: &str) {
        let text = mask_text(text, &self.masked);
        let _ = writeln!(self.sink, "{text}");
        let _ = self.sink.flush();
    }

    /// Opens a collapsed section.
    pub fn section_start(&mut self, name: &str, header: &str) {
        let _ = write!(
            self.sink,
            "\x1b[0Ksection_start:{}:{name}[collapsed=true]\r\x1b[0K",
            now()
        );
        self.line(&format!("\x1b[36;1m{header}\x1b[0;m"));
    }

    /// Closes a section.
    pub fn section_end(&mut self, name: &str) {
        let _ = write!(self.sink, "\x1b[0Ksection_end:{}:{name}\r\x1b[0K", now());
        let _ = self.sink.flush();
    }

    /// A warning line, as the runner formats them; also in the admin log.
    pub fn warn(&mut self, text: &str) {
        tracing::warn!(target: berth_telemetry::adminlog::TARGET, warning = %mask_text(text, &self.masked), "job log warning");
        self.line(&format!("\x1b[0;33mWARNING: {text}\x1b[0;m"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn masks_secrets_and_marks_sections() {
        let shared = Shared::default();
        let mut log = JobLog::new(Box::new(shared.clone()), vec!["s3cr3t-value".into()]);
        log.section_start("prepare_berth", "Preparing");
        log.line("token is s3cr3t-value here");
        log.section_end("prepare_berth");
        let text = String::from_utf8(shared.0.lock().expect("lock").clone()).expect("utf8");
        assert!(text.contains("section_start:") && text.contains(":prepare_berth[collapsed=true]"));
        assert!(text.contains("token is [MASKED] here"));
        assert!(!text.contains("s3cr3t"));
        assert!(text.contains("section_end:"));
    }
}
