//! What a job container needs for `podman build` and `buildah bud` inside, without privilege:
//! subordinate ids for its root, a per-job inner store on a host directory (native overlay works
//! in a user namespace here), the shared base store as a read-only additional image store (the
//! ID mappings line up, so base images are used in place, not copied), and chroot isolation.

use std::collections::BTreeMap;
use std::path::Path;

use berth_sandbox::Mount;

use crate::StageError;

/// Environment variables for a container.
pub type Env = BTreeMap<String, String>;

/// Where the inner store lives in the job container.
pub const INNER_STORE: &str = "/var/lib/containers/storage";
/// Where the shared base store appears, read-only, in the job container.
pub const INNER_BASE_STORE: &str = "/var/lib/containers/berth-base";
/// Where berth's inner Podman configuration appears in the job container.
pub const INNER_CONF: &str = "/etc/berth-containers";

fn storage_conf() -> String {
    format!(
        "# Written by berth for builds inside this job.\n[storage]\ndriver = \"overlay\"\n\
         graphroot = \"{INNER_STORE}\"\nrunroot = \"/run/containers/storage\"\n\
         [storage.options]\nadditionalimagestores = [\"{INNER_BASE_STORE}\"]\n"
    )
}

const CONTAINERS_CONF: &str = "# Written by berth for builds inside this job.\n\
[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n";

/// Writes the inner configuration under `dir` and returns the mounts and environment for the
/// job container.
pub fn prepare(dir: &Path, base_store: &Path) -> Result<(Vec<Mount>, Env), StageError> {
    let store = dir.join("storage");
    let conf = dir.join("conf");
    for d in [&store, &conf] {
        std::fs::create_dir_all(d).map_err(StageError::io(d))?;
    }
    let files = [
        ("storage.conf", storage_conf()),
        ("containers.conf", CONTAINERS_CONF.to_owned()),
        ("subuid", "root:1:65536\n".to_owned()),
        ("subgid", "root:1:65536\n".to_owned()),
    ];
    for (name, text) in files {
        let path = conf.join(name);
        std::fs::write(&path, text).map_err(StageError::io(&path))?;
    }
    let mount = |source: std::path::PathBuf, destination: &str, read_only: bool| Mount {
        source,
        destination: destination.to_owned(),
        read_only,
    };
    let mounts = vec![
        mount(store, INNER_STORE, false),
        mount(base_store.to_owned(), INNER_BASE_STORE, true),
        mount(conf.clone(), INNER_CONF, true),
        mount(conf.join("subuid"), "/etc/subuid", true),
        mount(conf.join("subgid"), "/etc/subgid", true),
    ];
    let env = BTreeMap::from([
        (
            "CONTAINERS_STORAGE_CONF".to_owned(),
            format!("{INNER_CONF}/storage.conf"),
        ),
        (
            "CONTAINERS_CONF".to_owned(),
            format!("{INNER_CONF}/containers.conf"),
        ),
        ("BUILDAH_ISOLATION".to_owned(), "chroot".to_owned()),
    ]);
    Ok((mounts, env))
}

/// Where the job's registry credentials appear in the job container.
pub const REGISTRY_AUTH_DIR: &str = "/run/berth-auth";

/// The job's own registry credentials (`CI_REGISTRY`, `CI_REGISTRY_USER`,
/// `CI_REGISTRY_PASSWORD`) as a Docker/Podman auth file in a 0700 directory of the job, mounted
/// read-only and named by `DOCKER_CONFIG` (docker CLI, buildctl) and `REGISTRY_AUTH_FILE`
/// (podman, buildah), so pushes to the job's registry need no `login`. Nothing is written when
/// the job has no such credentials.
pub fn registry_auth(
    dir: &Path,
    registry: Option<&str>,
    user: Option<&str>,
    password: Option<&str>,
) -> Result<Option<(Mount, Env)>, StageError> {
    use base64::Engine;
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let (Some(registry), Some(user), Some(password)) = (registry, user, password) else {
        return Ok(None);
    };
    std::fs::create_dir_all(dir).map_err(StageError::io(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(StageError::io(dir))?;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let doc = serde_json::json!({ "auths": { registry: { "auth": token } } });
    let path = dir.join("config.json");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(StageError::io(&path))?;
    file.write_all(doc.to_string().as_bytes())
        .map_err(StageError::io(&path))?;
    let mount = Mount {
        source: dir.to_owned(),
        destination: REGISTRY_AUTH_DIR.to_owned(),
        read_only: true,
    };
    let env = BTreeMap::from([
        ("DOCKER_CONFIG".to_owned(), REGISTRY_AUTH_DIR.to_owned()),
        (
            "REGISTRY_AUTH_FILE".to_owned(),
            format!("{REGISTRY_AUTH_DIR}/config.json"),
        ),
    ]);
    Ok(Some((mount, env)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_credentials_become_a_private_auth_file() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("auth");
        assert!(
            registry_auth(&dir, Some("r:5000"), None, Some("p"))
                .expect("ok")
                .is_none()
        );
        let (mount, env) = registry_auth(&dir, Some("r:5000"), Some("u"), Some("p"))
            .expect("ok")
            .expect("written");
        assert!(mount.read_only);
        assert_eq!(env["DOCKER_CONFIG"], REGISTRY_AUTH_DIR);
        let file = dir.join("config.json");
        assert_eq!(
            std::fs::metadata(&file).expect("file").permissions().mode() & 0o777,
            0o600
        );
        let text = std::fs::read_to_string(file).expect("read");
        assert!(text.contains("r:5000") && text.contains("dTpw"), "{text}");
    }

    #[test]
    fn writes_inner_config_and_mounts_the_base_store_read_only() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (mounts, env) =
            prepare(&tmp.path().join("nested"), Path::new("/base")).expect("prepare");
        let base = mounts
            .iter()
            .find(|m| m.destination == INNER_BASE_STORE)
            .expect("base store mount");
        assert!(base.read_only);
        assert_eq!(env["BUILDAH_ISOLATION"], "chroot");
        let conf =
            std::fs::read_to_string(tmp.path().join("nested/conf/storage.conf")).expect("conf");
        let parsed: toml::Table = toml::from_str(&conf).expect("valid toml");
        assert_eq!(
            parsed["storage"]["options"]["additionalimagestores"][0].as_str(),
            Some(INNER_BASE_STORE)
        );
    }
}
