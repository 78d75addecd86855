//! What a job container needs for `podman build` and `buildah bud` inside, without privilege:
//! subordinate ids for its root, a per-job inner store on a host directory (native overlay works
//! in a user namespace here), the shared base store as a read-only additional image store (the
//! ID mappings line up, so base images are used in place, not copied), and chroot isolation.
//! Where the admin allows `nested_run`, also what `podman run` and OCI-isolation builds need:
//! inner containers in a user namespace of their own, a seccomp profile that lets them set
//! their hostname, and a `/proc` without overmounts so their runtime can mount a fresh one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

/// Inner containers: the job's network, no cgroups of their own (rootless cgroup v1 has none
/// to give), and a user namespace each, carved from the job container's subordinate ids, in
/// which they hold the capabilities their runtime needs (`sethostname`, mounts).
const CONTAINERS_CONF_RUN: &str = "[containers]\nnetns = \"host\"\ncgroups = \"disabled\"\n\
userns = \"auto\"\n";

/// Where Podman looks for its default seccomp profile, in its order.
pub const HOST_SECCOMP_PROFILES: [&str; 2] = [
    "/etc/containers/seccomp.json",
    "/usr/share/containers/seccomp.json",
];

/// Syscalls Podman's default profile allows only with CAP_SYS_ADMIN that a nested runtime
/// calls inside the user namespace it creates (where it does hold that capability).
const NESTED_RUN_SYSCALLS: [&str; 3] = ["sethostname", "setdomainname", "setns"];

/// The masked paths exposed for nested runs: the kernel refuses a fresh procfs mount while
/// any of `/proc` is overmounted. `/sys` stays masked.
pub const NESTED_RUN_UNMASK: &str = "/proc/*";

/// What the job container gets for builds (and runs) inside.
#[derive(Debug, Default, PartialEq)]
pub struct NestedSetup {
    /// Inner store, base store, configuration.
    pub mounts: Vec<Mount>,
    /// Where the inner Podman finds its configuration.
    pub env: Env,
    /// The narrower seccomp profile, for `nested_run`.
    pub seccomp_profile: Option<PathBuf>,
    /// Masked paths to expose, for `nested_run`.
    pub unmask: Vec<String>,
}

/// Podman's default seccomp profile with [`NESTED_RUN_SYSCALLS`] taken out of every rule (in
/// Podman's profile, only the ones gating them on CAP_SYS_ADMIN) and allowed outright: an added
/// allow rule would not override the profile's own deny. Everything else as the host has it.
pub fn nested_run_seccomp(default_profile: &str) -> Result<String, String> {
    let mut profile: serde_json::Value =
        serde_json::from_str(default_profile).map_err(|e| format!("not JSON: {e}"))?;
    let rules = profile
        .get_mut("syscalls")
        .and_then(serde_json::Value::as_array_mut)
        .ok_or("no \"syscalls\" list")?;
    for rule in rules.iter_mut() {
        if let Some(names) = rule
            .get_mut("names")
            .and_then(serde_json::Value::as_array_mut)
        {
            names.retain(|n| !n.as_str().is_some_and(|n| NESTED_RUN_SYSCALLS.contains(&n)));
        }
    }
    rules.retain(|rule| {
        rule.get("names")
            .and_then(serde_json::Value::as_array)
            .is_none_or(|names| !names.is_empty())
    });
    rules.push(serde_json::json!({
        "names": NESTED_RUN_SYSCALLS,
        "action": "SCMP_ACT_ALLOW",
        "comment": "berth nested_run: a nested runtime sets up its own namespaces",
    }));
    serde_json::to_string_pretty(&profile).map_err(|e| e.to_string())
}

fn host_seccomp_profile() -> Result<(PathBuf, String), StageError> {
    for candidate in HOST_SECCOMP_PROFILES {
        match std::fs::read_to_string(candidate) {
            Ok(text) => return Ok((PathBuf::from(candidate), text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StageError::io(Path::new(candidate))(e)),
        }
    }
    Err(StageError::HostLacks {
        what: format!(
            "nested_run needs Podman's default seccomp profile, found at none of {HOST_SECCOMP_PROFILES:?}"
        ),
        fix: "install it (Debian: apt install golang-github-containers-common) or set nested_run = false in the berth config".to_owned(),
    })
}

/// Writes the inner configuration under `dir` and returns what the job container needs.
/// `nested_run` adds what `podman run` and OCI-isolation builds need; see [`NestedSetup`].
pub fn prepare(dir: &Path, base_store: &Path, nested_run: bool) -> Result<NestedSetup, StageError> {
    let store = dir.join("storage");
    let conf = dir.join("conf");
    for d in [&store, &conf] {
        std::fs::create_dir_all(d).map_err(StageError::io(d))?;
    }
    let containers_conf = if nested_run {
        format!("{CONTAINERS_CONF}{CONTAINERS_CONF_RUN}")
    } else {
        CONTAINERS_CONF.to_owned()
    };
    let files = [
        ("storage.conf", storage_conf()),
        ("containers.conf", containers_conf),
        ("subuid", "root:1:65536\n".to_owned()),
        ("subgid", "root:1:65536\n".to_owned()),
    ];
    for (name, text) in files {
        let path = conf.join(name);
        std::fs::write(&path, text).map_err(StageError::io(&path))?;
    }
    let mount = |source: PathBuf, destination: &str, read_only: bool| Mount {
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
    let mut setup = NestedSetup {
        mounts,
        env,
        ..NestedSetup::default()
    };
    if nested_run {
        let (host_profile, text) = host_seccomp_profile()?;
        let profile = nested_run_seccomp(&text).map_err(|why| StageError::HostLacks {
            what: format!(
                "nested_run cannot derive a seccomp profile from {}: {why}",
                host_profile.display()
            ),
            fix: "restore Podman's default profile there or set nested_run = false in the berth config".to_owned(),
        })?;
        let path = conf.join("seccomp.json");
        std::fs::write(&path, profile).map_err(StageError::io(&path))?;
        setup.seccomp_profile = Some(path);
        setup.unmask = vec![NESTED_RUN_UNMASK.to_owned()];
    }
    Ok(setup)
}

/// Where the job's registry credentials appear in the job container.
pub const REGISTRY_AUTH_DIR: &str = "/run/berth-auth";

/// The job's own registry credentials (`CI_REGISTRY`, `CI_REGISTRY_USER`,
/// `CI_REGISTRY_PASSWORD`) as a Docker/Podman auth file in a 0700 directory of the job, mounted
/// writable (a `docker login`/`podman login` in the job, GitLab's documented pattern, adds to
/// it) and named by `DOCKER_CONFIG` (docker CLI, buildctl) and `REGISTRY_AUTH_FILE` (podman,
/// buildah), so pushes to the job's registry need no `login`. Nothing is written when the job
/// has no such credentials.
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
        read_only: false,
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
        assert!(!mount.read_only, "logins in the job add to it");
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
        let NestedSetup {
            mounts,
            env,
            seccomp_profile,
            unmask,
        } = prepare(&tmp.path().join("nested"), Path::new("/base"), false).expect("prepare");
        assert_eq!((seccomp_profile, unmask), (None, Vec::<String>::new()));
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

    #[test]
    fn nested_run_allows_namespace_setup_and_nothing_else_changes() {
        let default = serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["bpf", "sethostname", "setns"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["bpf", "sethostname", "setns"], "action": "SCMP_ACT_ERRNO",
                 "excludes": {"caps": ["CAP_SYS_ADMIN"]}, "errnoRet": 1},
                {"names": ["setdomainname"], "action": "SCMP_ACT_ERRNO"},
            ]
        });
        let derived: serde_json::Value =
            serde_json::from_str(&nested_run_seccomp(&default.to_string()).expect("derive"))
                .expect("json");
        assert_eq!(derived["defaultAction"], "SCMP_ACT_ERRNO");
        let rules = derived["syscalls"].as_array().expect("rules");
        let rule_for = |name: &str| -> Vec<&serde_json::Value> {
            rules
                .iter()
                .filter(|r| {
                    r["names"]
                        .as_array()
                        .expect("names")
                        .iter()
                        .any(|n| n == name)
                })
                .collect()
        };
        for name in NESTED_RUN_SYSCALLS {
            let found = rule_for(name);
            assert_eq!(found.len(), 1, "{name}: {found:?}");
            assert_eq!(found[0]["action"], "SCMP_ACT_ALLOW");
            assert!(found[0].get("includes").is_none());
        }
        // bpf stays gated on CAP_SYS_ADMIN; the emptied setdomainname rule is gone.
        let bpf = rule_for("bpf");
        assert_eq!(bpf.len(), 2);
        assert!(
            bpf.iter()
                .all(|r| r.get("includes").is_some() || r.get("excludes").is_some())
        );
        assert_eq!(rules.len(), 4);
        assert!(
            nested_run_seccomp("{}")
                .expect_err("no syscalls")
                .contains("syscalls")
        );
        assert!(
            nested_run_seccomp("[")
                .expect_err("not json")
                .contains("not JSON")
        );
    }

    #[test]
    fn nested_run_writes_the_profile_and_lets_inner_containers_have_a_user_namespace() {
        let Some(host) = HOST_SECCOMP_PROFILES.iter().find(|p| Path::new(p).exists()) else {
            panic!(
                "Podman's default seccomp profile is missing at {HOST_SECCOMP_PROFILES:?}: install podman"
            );
        };
        let tmp = tempfile::tempdir().expect("tempdir");
        let setup = prepare(&tmp.path().join("nested"), Path::new("/base"), true).expect("prepare");
        let profile = setup.seccomp_profile.expect("profile");
        let written = std::fs::read_to_string(&profile).expect("profile written");
        let expected = nested_run_seccomp(&std::fs::read_to_string(host).expect("host profile"))
            .expect("derive");
        assert_eq!(written, expected);
        assert_eq!(setup.unmask, vec![NESTED_RUN_UNMASK.to_owned()]);
        let conf = std::fs::read_to_string(tmp.path().join("nested/conf/containers.conf"))
            .expect("containers.conf");
        let parsed: toml::Table = toml::from_str(&conf).expect("valid toml");
        assert_eq!(parsed["containers"]["userns"].as_str(), Some("auto"));
        assert_eq!(
            parsed["engine"]["cgroup_manager"].as_str(),
            Some("cgroupfs")
        );
    }
}
