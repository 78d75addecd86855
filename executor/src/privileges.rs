//! Started as root (gitlab-runner's packaged service), berth drops to the unprivileged runner user
//! before touching Podman. The saved set-user-ID stays root so the binary can write
//! `BUILD_EXIT_CODE_FILE` into the runner's root-only temp directory at the very end; every child
//! process gets the unprivileged ids only, because execve replaces the saved ID.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use nix::unistd::{Gid, Uid, User};

/// The user Podman runs as.
#[derive(Debug, Clone)]
pub(crate) struct RunnerUser {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) home: PathBuf,
}

/// Who we are, or who we become when root.
pub(crate) fn runner_user(configured: &str) -> Result<RunnerUser, String> {
    let euid = Uid::effective();
    let user = if euid.is_root() {
        User::from_name(configured)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("user {configured:?} does not exist (run integration/host/setup-host.sh, or set `user` in the berth config)"))?
    } else {
        User::from_uid(euid)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("uid {euid} has no passwd entry"))?
    };
    if user.uid.is_root() {
        return Err("jobs never run as root: set `user` to an unprivileged user".into());
    }
    Ok(RunnerUser {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        home: user.dir,
    })
}

/// Creates `/run/user/UID` when root, then drops to the runner user keeping saved-uid root.
pub(crate) fn drop_to(user: &RunnerUser) -> Result<(), String> {
    if !Uid::effective().is_root() {
        return Ok(());
    }
    let runtime = PathBuf::from(format!("/run/user/{}", user.uid));
    if !runtime.exists() {
        std::fs::create_dir_all(&runtime).map_err(|e| format!("{}: {e}", runtime.display()))?;
        nix::unistd::chown(
            &runtime,
            Some(Uid::from_raw(user.uid)),
            Some(Gid::from_raw(user.gid)),
        )
        .map_err(|e| format!("{}: {e}", runtime.display()))?;
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("{}: {e}", runtime.display()))?;
    }
    let gid = Gid::from_raw(user.gid);
    nix::unistd::setgroups(&[gid]).map_err(|e| format!("setgroups: {e}"))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| format!("setresgid: {e}"))?;
    let uid = Uid::from_raw(user.uid);
    nix::unistd::setresuid(uid, uid, Uid::from_raw(0)).map_err(|e| format!("setresuid: {e}"))
}
