//! Idmapped bind mounts (Linux ≥ 5.12; overlay lower layers on them ≥ 5.19): how one store on
//! disk, owned by the store identity, is shown to a job identity as its own, with no copy and
//! no chown. The shared base store is mounted read-only this way once per job identity; the
//! kept per-project caches read-write per job. Root makes them (`open_tree` → `mount_setattr`
//! with a user namespace carrying the mapping → `move_mount`) before it drops to the job
//! identity.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::identity::IdMap;
use crate::process::UserNamespace;

const OPEN_TREE_CLONE: u32 = 1;
const AT_RECURSIVE: u32 = 0x8000;
const AT_EMPTY_PATH: u32 = 0x1000;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 4;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn context(what: &str, path: &Path) -> impl FnOnce(io::Error) -> io::Error {
    let path = path.display().to_string();
    let what = what.to_owned();
    move |e| io::Error::new(e.kind(), format!("{what} {path}: {e}"))
}

/// A user namespace whose id maps are `map`: ids inside are the ids on disk, ids outside the
/// ids shown through the mount.
fn mapped_namespace(map: &IdMap) -> io::Result<(UserNamespace, OwnedFd)> {
    let holder = UserNamespace::new()?;
    let pid = holder.pid();
    std::fs::write(format!("/proc/{pid}/uid_map"), IdMap::proc_map(&map.uids))
        .map_err(|e| io::Error::new(e.kind(), format!("writing the uid map: {e}")))?;
    std::fs::write(format!("/proc/{pid}/gid_map"), IdMap::proc_map(&map.gids))
        .map_err(|e| io::Error::new(e.kind(), format!("writing the gid map: {e}")))?;
    let fd = std::fs::File::open(format!("/proc/{pid}/ns/user"))?;
    Ok((holder, OwnedFd::from(fd)))
}

/// Mounts `source` at `target` (an existing directory) with `map` applied, nosuid and nodev,
/// read-only when asked. Needs root.
pub fn mount(source: &Path, target: &Path, map: &IdMap, read_only: bool) -> io::Result<()> {
    let (_holder, userns) = mapped_namespace(map)?;
    let source_c = cstring(source)?;
    let target_c = cstring(target)?;
    #[expect(
        unsafe_code,
        reason = "open_tree, mount_setattr and move_mount have no safe wrapper in nix 0.30"
    )]
    // SAFETY: plain syscalls with NUL-terminated paths that outlive the calls, a properly sized
    // and initialised `mount_attr`, and a returned fd taken into an OwnedFd at once.
    unsafe {
        let tree = nix::libc::syscall(
            nix::libc::SYS_open_tree,
            nix::libc::AT_FDCWD,
            source_c.as_ptr(),
            OPEN_TREE_CLONE | nix::libc::O_CLOEXEC.cast_unsigned() | AT_RECURSIVE,
        );
        if tree < 0 {
            return Err(context("open_tree", source)(io::Error::last_os_error()));
        }
        let tree = OwnedFd::from_raw_fd(i32::try_from(tree).map_err(io::Error::other)?);
        let mut set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
        if read_only {
            set |= MOUNT_ATTR_RDONLY;
        }
        let attr = MountAttr {
            attr_set: set,
            attr_clr: 0,
            propagation: 0,
            userns_fd: u64::try_from(userns.as_raw_fd()).map_err(io::Error::other)?,
        };
        let empty = c"";
        if nix::libc::syscall(
            nix::libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            AT_EMPTY_PATH | AT_RECURSIVE,
            &raw const attr,
            size_of::<MountAttr>(),
        ) < 0
        {
            return Err(context("idmapping", source)(io::Error::last_os_error()));
        }
        if nix::libc::syscall(
            nix::libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            nix::libc::AT_FDCWD,
            target_c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        ) < 0
        {
            return Err(context("mounting at", target)(io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Whether `target` is an idmapped mount point showing `source`'s root (same device and
/// inode), as a live view must be.
pub fn is_mounted_from(source: &Path, target: &Path) -> bool {
    let (Ok(src), Ok(dst)) = (std::fs::metadata(source), std::fs::symlink_metadata(target)) else {
        return false;
    };
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let target = target.as_os_str().as_bytes();
    let listed = mountinfo.lines().any(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        fields.get(4).is_some_and(|m| m.as_bytes() == target)
            && fields
                .get(5)
                .is_some_and(|opts| opts.split(',').any(|o| o == "idmapped"))
    });
    listed && dst.is_dir() && src.dev() == dst.dev() && src.ino() == dst.ino()
}

/// Detaches the mount at `target` (and everything below it); a missing or unmounted target is
/// fine.
pub fn unmount(target: &Path) -> io::Result<()> {
    match nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(context("unmounting", target)(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root, as the whole suite does (CI runs it as root).
    #[test]
    fn the_store_owners_files_show_as_the_jobs_and_stay_read_only() {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "idmapped mounts need root: run the suite as root"
        );
        let tmp = tempfile::tempdir().expect("tempdir");
        let (src, dst) = (tmp.path().join("store"), tmp.path().join("view"));
        std::fs::create_dir_all(src.join("sub")).expect("mkdir");
        std::fs::create_dir(&dst).expect("mkdir");
        std::fs::write(src.join("sub/file"), b"layer").expect("write");
        let own = |p: &Path, id: u32| {
            nix::unistd::chown(
                p,
                Some(nix::unistd::Uid::from_raw(id)),
                Some(nix::unistd::Gid::from_raw(id)),
            )
            .expect("chown");
        };
        own(&src.join("sub"), 5000);
        own(&src.join("sub/file"), 5001);
        let map = IdMap {
            uids: vec![(5000, 7000, 2)],
            gids: vec![(5000, 7000, 2)],
        };
        mount(&src, &dst, &map, true).expect("idmapped mount");
        assert!(is_mounted_from(&src, &dst));
        let shown = std::fs::metadata(dst.join("sub/file")).expect("stat");
        let dir = std::fs::metadata(dst.join("sub")).expect("stat");
        let write = std::fs::write(dst.join("sub/new"), b"x");
        unmount(&dst).expect("unmount");
        assert_eq!((shown.uid(), shown.gid()), (7001, 7001));
        assert_eq!(dir.uid(), 7000);
        assert_eq!(
            write.expect_err("a read-only view").raw_os_error(),
            Some(nix::libc::EROFS)
        );
        assert!(!is_mounted_from(&src, &dst));
        assert_eq!(
            std::fs::metadata(src.join("sub/file")).expect("stat").uid(),
            5001
        );
    }
}
