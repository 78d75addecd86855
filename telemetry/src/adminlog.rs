//! The admin log's sinks: berth's own events as JSON lines (formatted by `tracing-subscriber`),
//! each line masked (the job's masked values and token, raw and as JSON escapes them) and then
//! sent whole to journald's native socket when there is one, else appended to a root-owned
//! file opened without following links. Apart from the job log, which is berth's stderr.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use crate::write::{FlushError, trusted_dir};

/// The tracing target of berth's admin events: the admin log takes them, the job log never.
pub const TARGET: &str = "berth::admin";

/// journald's native protocol socket.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// Longest line sent (journald takes larger ones only through a memfd).
const MAX_LINE: usize = 64 << 10;
/// What the lines are tagged with in the journal (`journalctl -t berth`).
const IDENTIFIER: &str = "berth";

static MASKED: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Values no admin log line may carry from now on (shorter than 4 bytes: ignored, as in the
/// job log).
pub fn mask(values: impl IntoIterator<Item = String>) {
    let mut masked = MASKED.write().unwrap_or_else(PoisonError::into_inner);
    for value in values.into_iter().filter(|v| v.len() >= 4) {
        // A JSON line carries a value with quotes or backslashes escaped.
        let escaped = serde_json::to_string(&value).unwrap_or_default();
        let escaped = escaped
            .strip_prefix('"')
            .and_then(|e| e.strip_suffix('"'))
            .unwrap_or_default()
            .to_owned();
        if escaped != value && escaped.len() >= 4 {
            masked.push(escaped);
        }
        masked.push(value);
    }
    // Longest first: a value containing another is masked whole.
    masked.sort_by_key(|v| std::cmp::Reverse(v.len()));
    masked.dedup();
}

fn masked(line: &str) -> String {
    let mut line = line.to_owned();
    for secret in MASKED.read().unwrap_or_else(PoisonError::into_inner).iter() {
        line = line.replace(secret.as_str(), "[MASKED]");
    }
    line
}

#[derive(Debug)]
enum Sink {
    Journald(UnixDatagram),
    File(std::fs::File),
}

/// Where the admin log goes; a `tracing_subscriber` writer (one masked line per event).
#[derive(Debug, Clone)]
pub struct AdminLog {
    sink: Arc<Mutex<Sink>>,
    /// For messages: the journal socket or the file.
    pub destination: PathBuf,
}

impl AdminLog {
    /// journald when `journal_socket` is there, else the file `admin_log` (appended; created
    /// 0640; its directory and the file itself must be `owner`'s, writable by no one else).
    /// `None` when neither is there.
    pub fn open(
        journal_socket: &Path,
        admin_log: Option<&Path>,
        owner: u32,
    ) -> Result<Option<Self>, FlushError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| FlushError::Io { path, source }
        };
        if journal_socket.exists() {
            let socket = UnixDatagram::unbound().map_err(io(journal_socket))?;
            socket.connect(journal_socket).map_err(io(journal_socket))?;
            return Ok(Some(Self {
                sink: Arc::new(Mutex::new(Sink::Journald(socket))),
                destination: journal_socket.to_owned(),
            }));
        }
        let Some(path) = admin_log else {
            return Ok(None);
        };
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(io(path)(std::io::Error::other("not a file path")));
        };
        let dir = trusted_dir(parent, owner)?;
        let file = dir
            .open_writer(Path::new(name), 0o640, true)
            .map_err(io(path))?;
        let st = nix::sys::stat::fstat(&file).map_err(|e| io(path)(e.into()))?;
        if st.st_uid != owner || st.st_mode & 0o022 != 0 {
            return Err(FlushError::Untrusted {
                path: path.to_owned(),
                why: format!(
                    "the file belongs to uid {} with mode {:o}",
                    st.st_uid,
                    st.st_mode & 0o7777
                ),
                owner,
            });
        }
        Ok(Some(Self {
            sink: Arc::new(Mutex::new(Sink::File(file))),
            destination: path.to_owned(),
        }))
    }

    fn send(&self, line: &str) {
        let line = masked(line.trim_end_matches('\n'));
        let mut line = line.as_str();
        if line.len() > MAX_LINE {
            let mut end = MAX_LINE;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line = &line[..end];
        }
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        // A log that cannot be written must not fail the job: the line is dropped.
        let _ = match &mut *sink {
            Sink::Journald(socket) => socket.send(journal_entry(line).as_bytes()).map(drop),
            Sink::File(file) => file.write_all(format!("{line}\n").as_bytes()),
        };
    }
}

/// One entry of journald's native protocol; a JSON line never holds a newline, so every field
/// is the simple `KEY=value` form.
fn journal_entry(line: &str) -> String {
    let level = |l: &str| line.contains(&format!("\"level\":\"{l}\""));
    let priority = if level("ERROR") {
        3
    } else if level("WARN") {
        4
    } else if level("INFO") {
        6
    } else {
        7
    };
    format!("PRIORITY={priority}\nSYSLOG_IDENTIFIER={IDENTIFIER}\nMESSAGE={line}\n")
}

/// One event's bytes, sent as one line when the formatter is done with them.
#[derive(Debug)]
pub struct EventWriter {
    log: AdminLog,
    buf: Vec<u8>,
}

impl Write for EventWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.log.send(&String::from_utf8_lossy(&self.buf));
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for AdminLog {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            log: self.clone(),
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn me() -> u32 {
        nix::unistd::Uid::effective().as_raw()
    }

    #[test]
    fn lines_are_masked_raw_and_json_escaped_before_they_leave() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let path = tmp.path().join("admin.log");
        let log = AdminLog::open(&tmp.path().join("no-journal"), Some(&path), me())
            .expect("open")
            .expect("a file sink");
        mask([
            "tok-123456".to_owned(),
            "pa\"ss\\word".to_owned(),
            "abc".to_owned(),
        ]);
        let mut w = tracing_subscriber::fmt::MakeWriter::make_writer(&log);
        w.write_all(
            br#"{"level":"INFO","image":"reg/tok-123456:1","script":"echo pa\"ss\\word abc"}"#,
        )
        .expect("write");
        drop(w);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("tok-123456"), "{text}");
        assert!(!text.contains(r#"pa\"ss\\word"#), "{text}");
        assert!(
            text.contains("reg/[MASKED]:1") && text.contains("echo [MASKED] abc"),
            "{text}"
        );
        assert!(text.ends_with("}\n"), "{text}");
    }

    #[test]
    fn journald_gets_one_native_entry_per_line_when_its_socket_is_there() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let socket = tmp.path().join("journal.socket");
        let journal = UnixDatagram::bind(&socket).expect("bind");
        let log = AdminLog::open(&socket, None, me())
            .expect("open")
            .expect("a journald sink");
        mask(["journald-secret".to_owned()]);
        log.send("{\"level\":\"WARN\",\"message\":\"journald-secret leaked?\"}\n");
        let mut buf = vec![0; 4096];
        let n = journal.recv(&mut buf).expect("recv");
        let entry = String::from_utf8_lossy(&buf[..n]);
        assert_eq!(
            entry,
            "PRIORITY=4\nSYSLOG_IDENTIFIER=berth\nMESSAGE={\"level\":\"WARN\",\"message\":\"[MASKED] leaked?\"}\n"
        );
    }

    #[test]
    fn no_sink_without_journald_or_a_file_and_a_file_others_can_write_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let none = tmp.path().join("no-journal");
        assert!(AdminLog::open(&none, None, me()).expect("open").is_none());
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let path = tmp.path().join("admin.log");
        std::fs::write(&path, b"").expect("create");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let err = AdminLog::open(&none, Some(&path), me()).expect_err("world-writable file");
        assert!(err.to_string().contains("mode 666"), "{err}");
        std::fs::remove_file(&path).expect("rm");
        std::os::unix::fs::symlink("/etc/passwd", &path).expect("link");
        let err = AdminLog::open(&none, Some(&path), me()).expect_err("a link");
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }
}
