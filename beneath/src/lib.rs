//! Files in directories a job can write, opened beneath a directory handle without following
//! any link: every path is resolved by `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` from a
//! handle opened once, so neither a planted symlink, a `..`, nor a swapped path component can
//! take berth outside the directory; what is opened is checked for type (and, on request,
//! owner) on the open descriptor, and reads are bounded.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{Mode, SFlag, fstat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

/// A directory handle; every path below is relative to it and stays beneath it.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// What kind of file an open is allowed to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A FIFO.
    Fifo,
    /// A directory.
    Directory,
    /// A character device (overlay's whiteouts are 0/0 ones).
    CharDevice,
}

impl Kind {
    fn matches(self, mode: u32) -> bool {
        let kind = SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits());
        match self {
            Self::File => kind == SFlag::S_IFREG,
            Self::Fifo => kind == SFlag::S_IFIFO,
            Self::Directory => kind == SFlag::S_IFDIR,
            Self::CharDevice => kind == SFlag::S_IFCHR,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::File => "a regular file",
            Self::Fifo => "a FIFO",
            Self::Directory => "a directory",
            Self::CharDevice => "a character device",
        }
    }
}

fn resolve() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS
}

/// A link in the way or a path leading out gets a message saying so; every other error keeps
/// its raw errno, which callers match on (`ENXIO` from a FIFO nobody reads yet, `ENOENT`).
fn explain(path: &Path, errno: Errno) -> io::Error {
    let why = match errno {
        Errno::ELOOP => "a symbolic link is in the way and is never followed",
        Errno::EXDEV => "the path leads outside its directory",
        other => return io::Error::from(other),
    };
    io::Error::new(
        io::Error::from(errno).kind(),
        format!("{}: {why}", path.display()),
    )
}

fn checked_relative(rel: &Path) -> io::Result<&Path> {
    if rel.as_os_str().is_empty()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: only plain relative paths are opened beneath a directory",
                rel.display()
            ),
        ));
    }
    Ok(rel)
}

impl AsFd for Dir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Dir {
    /// Opens the anchor `path`, which must be a directory; its last component is not followed
    /// when it is a link. The anchor itself must be a path no job can steer.
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .map_err(|e| explain(path, e))?;
        Ok(Self {
            fd,
            path: path.to_owned(),
        })
    }

    /// The path this handle was opened at (for messages only; never reopened by name).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_raw(&self, rel: &Path, flags: OFlag, mode: Mode) -> io::Result<OwnedFd> {
        let rel = checked_relative(rel)?;
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .mode(mode)
            .resolve(resolve());
        openat2(self.fd.as_fd(), rel, how).map_err(|e| explain(&self.path.join(rel), e))
    }

    fn expect_kind(&self, rel: &Path, fd: &OwnedFd, kind: Kind) -> io::Result<()> {
        let st = fstat(fd.as_fd()).map_err(|e| explain(&self.path.join(rel), e))?;
        if !kind.matches(st.st_mode) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not {}", self.path.join(rel).display(), kind.name()),
            ));
        }
        Ok(())
    }

    /// The subdirectory `rel`.
    pub fn dir(&self, rel: &Path) -> io::Result<Self> {
        let fd = self.open_raw(rel, OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty())?;
        Ok(Self {
            fd,
            path: self.path.join(rel),
        })
    }

    /// Opens `rel` for reading; it must be a regular file. Never blocks on a FIFO put in its
    /// place.
    pub fn open_file(&self, rel: &Path) -> io::Result<File> {
        let fd = self.open_raw(rel, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty())?;
        self.expect_kind(rel, &fd, Kind::File)?;
        let file = File::from(fd);
        clear_nonblock(&file)?;
        Ok(file)
    }

    /// Opens the FIFO `rel` for writing without blocking (fails with `ENXIO` while nobody reads).
    pub fn open_fifo_writer(&self, rel: &Path) -> io::Result<File> {
        let fd = self.open_raw(rel, OFlag::O_WRONLY | OFlag::O_NONBLOCK, Mode::empty())?;
        self.expect_kind(rel, &fd, Kind::Fifo)?;
        Ok(File::from(fd))
    }

    /// Reads `rel` whole, refusing files larger than `limit` bytes.
    pub fn read(&self, rel: &Path, limit: u64) -> io::Result<Vec<u8>> {
        let file = self.open_file(rel)?;
        let mut bytes = Vec::new();
        file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is larger than {limit} bytes",
                    self.path.join(rel).display()
                ),
            ));
        }
        Ok(bytes)
    }

    /// Creates (or truncates) the regular file `rel` with `mode` and writes `bytes`.
    pub fn write(&self, rel: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
        let mut file = self.open_writer(rel, mode, false)?;
        nix::sys::stat::fchmod(file.as_fd(), Mode::from_bits_truncate(mode))
            .map_err(|e| explain(&self.path.join(rel), e))?;
        file.write_all(bytes)
    }

    /// Opens the regular file `rel` for writing, created with `mode` when missing: truncated, or
    /// appended to with `append`. A link at `rel` is refused, never followed.
    pub fn open_writer(&self, rel: &Path, mode: u32, append: bool) -> io::Result<File> {
        let tail = if append {
            OFlag::O_APPEND
        } else {
            OFlag::O_TRUNC
        };
        let fd = self.open_raw(
            rel,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NONBLOCK | tail,
            Mode::from_bits_truncate(mode),
        )?;
        self.expect_kind(rel, &fd, Kind::File)?;
        let file = File::from(fd);
        clear_nonblock(&file)?;
        Ok(file)
    }

    /// Writes `name` (a file directly in this directory) atomically: a fresh temporary file
    /// beside it, then a rename over it; a link planted at either name is replaced, never
    /// followed.
    pub fn write_atomic(&self, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
        let rel = checked_relative(Path::new(name))?;
        if rel.components().count() != 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name}: atomic writes take a name, not a path"),
            ));
        }
        let tmp = format!(".{name}.{}.tmp", std::process::id());
        let _ = self.remove_file(Path::new(&tmp));
        let fd = self.open_raw(
            Path::new(&tmp),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
            Mode::from_bits_truncate(mode),
        )?;
        let mut file = File::from(fd);
        let written = file
            .write_all(bytes)
            .and_then(|()| file.sync_data())
            .and_then(|()| {
                nix::sys::stat::fchmod(file.as_fd(), Mode::from_bits_truncate(mode))
                    .map_err(io::Error::from)
            });
        if let Err(e) = written {
            let _ = self.remove_file(Path::new(&tmp));
            return Err(e);
        }
        nix::fcntl::renameat(self.fd.as_fd(), tmp.as_str(), self.fd.as_fd(), name)
            .map_err(|e| explain(&self.path.join(name), e))
    }

    /// Creates the directory `rel` (its parent must exist) with `mode`; an existing directory
    /// is fine, anything else in its place is an error.
    pub fn mkdir(&self, rel: &Path, mode: u32) -> io::Result<Self> {
        let rel = checked_relative(rel)?;
        let (parent, name) = self.parent_of(rel)?;
        match mkdirat(parent.fd.as_fd(), name, Mode::from_bits_truncate(mode)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(explain(&self.path.join(rel), e)),
        }
        let dir = self.dir(rel)?;
        nix::sys::stat::fchmod(dir.fd.as_fd(), Mode::from_bits_truncate(mode))
            .map_err(|e| explain(&self.path.join(rel), e))?;
        Ok(dir)
    }

    /// Removes the file (or link, FIFO, socket) `rel`; a missing one is fine.
    pub fn remove_file(&self, rel: &Path) -> io::Result<()> {
        let rel = checked_relative(rel)?;
        let (parent, name) = self.parent_of(rel)?;
        match unlinkat(parent.fd.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(explain(&self.path.join(rel), e)),
        }
    }

    /// Metadata of `rel` itself (a link is reported, not followed).
    pub fn metadata(&self, rel: &Path) -> io::Result<Metadata> {
        let fd = self.open_raw(rel, OFlag::O_PATH, Mode::empty())?;
        let st = fstat(fd.as_fd()).map_err(|e| explain(&self.path.join(rel), e))?;
        Ok(Metadata::of(&st))
    }

    /// The entries of this directory with their own metadata (links reported, not followed),
    /// listed through the handle: a directory swapped for a link after it was opened is never
    /// listed in its place.
    pub fn entries(&self) -> io::Result<Vec<(std::ffi::OsString, Metadata)>> {
        use std::os::unix::ffi::OsStrExt;
        let mut listing = nix::dir::Dir::openat(
            self.fd.as_fd(),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| explain(&self.path, e))?;
        let mut out = Vec::new();
        for entry in listing.iter() {
            let entry = entry.map_err(|e| explain(&self.path, e))?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            let st = nix::sys::stat::fstatat(
                self.fd.as_fd(),
                name,
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| explain(&self.path, e))?;
            out.push((
                std::ffi::OsStr::from_bytes(name.to_bytes()).to_owned(),
                Metadata::of(&st),
            ));
        }
        Ok(out)
    }

    /// Fails unless this directory is owned by `uid`.
    pub fn expect_owner(&self, uid: u32) -> io::Result<()> {
        let meta = File::from(self.fd.try_clone()?).metadata()?;
        if meta.uid() != uid {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} belongs to uid {}, not to uid {uid}",
                    self.path.display(),
                    meta.uid()
                ),
            ));
        }
        Ok(())
    }

    fn parent_of<'a>(&self, rel: &'a Path) -> io::Result<(Self, &'a std::ffi::OsStr)> {
        let name = rel.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: no file name", rel.display()),
            )
        })?;
        let parent = match rel.parent() {
            Some(p) if !p.as_os_str().is_empty() => self.dir(p)?,
            _ => Self {
                fd: self.fd.try_clone()?,
                path: self.path.clone(),
            },
        };
        Ok((parent, name))
    }
}

/// What [`Dir::metadata`] and [`Dir::entries`] report.
#[derive(Debug, Clone, Copy)]
pub struct Metadata {
    /// Type and permission bits (`st_mode`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Device number, for device files.
    pub rdev: u64,
}

impl Metadata {
    fn of(st: &nix::sys::stat::FileStat) -> Self {
        Self {
            mode: st.st_mode,
            uid: st.st_uid,
            size: u64::try_from(st.st_size).unwrap_or(0),
            rdev: st.st_rdev,
        }
    }

    /// Whether it is of `kind`.
    pub fn is(&self, kind: Kind) -> bool {
        kind.matches(self.mode)
    }
}

fn clear_nonblock(file: &File) -> io::Result<()> {
    let flags = nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = OFlag::from_bits_truncate(flags) - OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Dir) {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(tmp.path().join("job")).expect("mkdir");
        std::fs::write(tmp.path().join("secret"), b"other job").expect("write");
        let dir = Dir::open(&tmp.path().join("job")).expect("open");
        (tmp, dir)
    }

    #[test]
    fn a_planted_symlink_is_never_followed() {
        let (tmp, dir) = setup();
        std::os::unix::fs::symlink(tmp.path().join("secret"), tmp.path().join("job/out.log"))
            .expect("symlink");
        let err = dir.open_file(Path::new("out.log")).expect_err("followed");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = dir
            .write(Path::new("out.log"), b"x", 0o600)
            .expect_err("wrote through");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(
            std::fs::read(tmp.path().join("secret")).expect("read"),
            b"other job"
        );
    }

    #[test]
    fn a_symlinked_directory_or_dotdot_is_refused() {
        let (tmp, dir) = setup();
        std::os::unix::fs::symlink(tmp.path(), tmp.path().join("job/up")).expect("symlink");
        assert!(dir.open_file(Path::new("up/secret")).is_err());
        assert!(dir.open_file(Path::new("../secret")).is_err());
        assert!(dir.open_file(Path::new("/etc/passwd")).is_err());
        assert!(dir.dir(Path::new("up")).is_err());
    }

    #[test]
    fn a_fifo_in_place_of_a_file_is_refused_without_blocking() {
        let (tmp, dir) = setup();
        nix::unistd::mkfifo(&tmp.path().join("job/rc"), Mode::from_bits_truncate(0o666))
            .expect("mkfifo");
        let err = dir.read(Path::new("rc"), 64).expect_err("read a fifo");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn atomic_writes_replace_a_planted_link_instead_of_following_it() {
        let (tmp, dir) = setup();
        std::os::unix::fs::symlink(tmp.path().join("secret"), tmp.path().join("job/state.json"))
            .expect("symlink");
        dir.write_atomic("state.json", b"{}", 0o600).expect("write");
        assert_eq!(
            std::fs::read(tmp.path().join("secret")).expect("read"),
            b"other job"
        );
        assert_eq!(dir.read(Path::new("state.json"), 16).expect("read"), b"{}");
        assert!(
            dir.metadata(Path::new("state.json"))
                .expect("stat")
                .is(Kind::File)
        );
    }

    #[test]
    fn a_fifo_nobody_reads_reports_enxio_for_callers_to_retry() {
        let (tmp, dir) = setup();
        nix::unistd::mkfifo(&tmp.path().join("job/ctl"), Mode::from_bits_truncate(0o666))
            .expect("mkfifo");
        let err = dir
            .open_fifo_writer(Path::new("ctl"))
            .expect_err("no reader");
        assert_eq!(err.raw_os_error(), Some(nix::libc::ENXIO), "{err}");
    }

    #[test]
    fn entries_are_listed_through_the_handle_and_links_not_followed() {
        let (tmp, dir) = setup();
        std::fs::write(tmp.path().join("job/file"), b"x").expect("write");
        std::os::unix::fs::symlink(tmp.path().join("secret"), tmp.path().join("job/link"))
            .expect("symlink");
        let mut names: Vec<_> = dir
            .entries()
            .expect("entries")
            .into_iter()
            .map(|(n, m)| (n.to_string_lossy().into_owned(), m.is(Kind::File)))
            .collect();
        names.sort();
        assert_eq!(
            names,
            [("file".to_owned(), true), ("link".to_owned(), false)]
        );
        // The handle keeps listing the directory it opened, whatever is put at its path.
        std::fs::rename(tmp.path().join("job"), tmp.path().join("moved")).expect("rename");
        std::os::unix::fs::symlink(tmp.path(), tmp.path().join("job")).expect("symlink");
        assert_eq!(dir.entries().expect("entries").len(), 2);
    }

    #[test]
    fn reads_are_bounded() {
        let (_tmp, dir) = setup();
        dir.write(Path::new("big"), &[b'x'; 100], 0o600)
            .expect("write");
        assert!(dir.read(Path::new("big"), 99).is_err());
        assert_eq!(dir.read(Path::new("big"), 100).expect("read").len(), 100);
    }

    #[test]
    fn mkdir_and_remove_stay_beneath() {
        let (tmp, dir) = setup();
        let sub = dir.mkdir(Path::new("out"), 0o700).expect("mkdir");
        sub.write(Path::new("a"), b"1", 0o600).expect("write");
        dir.remove_file(Path::new("out/a")).expect("remove");
        assert!(!tmp.path().join("job/out/a").exists());
        std::os::unix::fs::symlink(tmp.path(), tmp.path().join("job/link")).expect("symlink");
        assert!(dir.remove_file(Path::new("link/secret")).is_err());
        assert!(tmp.path().join("secret").exists());
    }
}
