//! `berth doctor`: checks the host for everything rootless Podman needs here and says how to fix
//! each problem. Each check reads the few host facts it needs (files under /etc and /proc, the
//! job identities, `PATH`) and turns them into one finding with a fix; none changes the host.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_config::Config;
use berth_config::admin::{Footprint, NetworkMode};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, with a caveat worth knowing.
    Warn,
    /// Jobs will fail until fixed.
    Fail,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Verdict.
    pub level: Level,
    /// What was found.
    pub detail: String,
    /// How to fix it.
    pub fix: Option<String>,
}

/// Jobs are kept apart by identities of their own only when berth starts as root.
fn job_identities_check(config: &Config, euid: u32) -> Check {
    if euid != 0 {
        return check(
            "job identities",
            Level::Warn,
            "started unprivileged: every job runs as this one user, so a job that escapes its container reaches the others",
            Some(
                "run gitlab-runner as root (its packaged service does) so each job runs as an identity of its own",
            ),
        );
    }
    match crate::identities::Identities::load(config) {
        Ok(ids) => check(
            "job identities",
            Level::Ok,
            format!(
                "{} job identities ({}), each with its own subordinate ids; the base store is shown to each through a read-only idmapped mount",
                ids.jobs.len(),
                ids.jobs
                    .iter()
                    .map(|j| j.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None,
        ),
        Err(e) => check(
            "job identities",
            Level::Fail,
            e.to_string(),
            Some(
                "run integration/host/setup-host.sh (BERTH_JOB_SLOTS sets how many), or fix `job_users`",
            ),
        ),
    }
}

/// Every other runner config on this host: the files in `/etc/berth/config.toml` and
/// `/etc/berth/config.d/*.toml`, and the configs prepares recorded as in use.
fn other_runners_check(config: &Config) -> Check {
    let mine = config.footprint();
    let mut files = vec![PathBuf::from(berth_config::admin::DEFAULT_PATH)];
    if let Ok(entries) = std::fs::read_dir(berth_config::admin::CONFIG_DIR) {
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        found.sort();
        files.extend(found);
    }
    let same_file = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b))
    {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    let mut others = Vec::new();
    let mut unreadable = Vec::new();
    for file in files.iter().filter(|f| f.exists()) {
        if mine.config.as_deref().is_some_and(|m| same_file(m, file)) {
            continue;
        }
        match Config::load(file) {
            Ok(other) => others.push(other.footprint()),
            Err(e) => unreadable.push(e.to_string()),
        }
    }
    // Configs in use elsewhere (say under gitlab-runner's own directory), each once.
    match crate::instances::others(&mine) {
        Ok(recorded) => others.extend(recorded.into_iter().filter(|r| {
            !r.config
                .as_deref()
                .is_some_and(|c| files.iter().any(|f| same_file(c, f)))
        })),
        Err(e) => unreadable.push(e.to_string()),
    }
    shared_configs_check(&mine, &others, &unreadable)
}

/// The verdict on `mine` among the other runners' configs (pure).
fn shared_configs_check(mine: &Footprint, others: &[Footprint], unreadable: &[String]) -> Check {
    let conflicts = crate::instances::conflicts(mine, others);
    if !conflicts.is_empty() {
        return check(
            "other runner configs",
            Level::Fail,
            format!(
                "{} must own its identities and directories alone: {}; its jobs are refused",
                mine.describe(),
                conflicts.join(", ")
            ),
            Some(crate::instances::SEPARATE_CONFIGS),
        );
    }
    if !unreadable.is_empty() {
        return check(
            "other runner configs",
            Level::Fail,
            format!(
                "cannot tell whether other runners' configs share anything with this one: {}",
                unreadable.join("; ")
            ),
            Some("fix or remove the config named"),
        );
    }
    check(
        "other runner configs",
        Level::Ok,
        format!(
            "{} other runner config(s) on this host; none shares an identity or a directory with this one",
            others.len()
        ),
        None,
    )
}

fn check(name: &'static str, level: Level, detail: impl Into<String>, fix: Option<&str>) -> Check {
    Check {
        name,
        level,
        detail: detail.into(),
        fix: fix.map(str::to_owned),
    }
}

/// The cgroup layout of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cgroups {
    /// Unified v2.
    V2,
    /// v1 or hybrid.
    V1,
}

/// Reads the cgroup layout.
pub fn cgroups() -> Cgroups {
    match nix::sys::statfs::statfs("/sys/fs/cgroup") {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => Cgroups::V2,
        _ => Cgroups::V1,
    }
}

fn subid_count(file: &str, user: &str, uid: u32) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.split(':');
            let who = parts.next()?;
            let _start = parts.next()?;
            let count: u64 = parts.next()?.trim().parse().ok()?;
            (who == user || who == uid.to_string()).then_some(count)
        })
        .sum()
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_else(|| vec!["/usr/bin".into(), "/usr/sbin".into(), "/bin".into()])
        .into_iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn conf_value(path: &Path, key: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Runs every check for the user berth will run Podman as. `podman_version` is what
/// `podman --version` printed, if it ran.
pub fn run_checks(config: &Config, euid: u32, podman_version: Option<&str>) -> Vec<Check> {
    let mut out = Vec::new();
    let user_name = if euid == 0 {
        config.user.clone()
    } else {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(euid))
            .ok()
            .flatten()
            .map_or_else(|| euid.to_string(), |u| u.name)
    };
    let user = nix::unistd::User::from_name(&user_name).ok().flatten();
    let Some(user) = user else {
        out.push(check(
            "runner user",
            Level::Fail,
            format!("user {user_name:?} does not exist"),
            Some("run integration/host/setup-host.sh, or create the user and set `user` in the berth config"),
        ));
        return out;
    };
    let uid = user.uid.as_raw();
    out.push(if uid == 0 {
        check(
            "runner user",
            Level::Fail,
            "jobs would run as root",
            Some("set `user` to an unprivileged user"),
        )
    } else if euid == 0 {
        check(
            "runner user",
            Level::Ok,
            format!("started as root; drops to {user_name} (uid {uid}) before touching Podman"),
            None,
        )
    } else {
        check(
            "runner user",
            Level::Ok,
            format!("runs as {user_name} (uid {uid})"),
            None,
        )
    });
    out.push(job_identities_check(config, euid));
    out.push(other_runners_check(config));
    for (file, name) in [
        ("/etc/subuid", "subuid range"),
        ("/etc/subgid", "subgid range"),
    ] {
        let count = subid_count(file, &user_name, uid);
        out.push(match count {
            0 => check(
                name,
                Level::Fail,
                format!("{user_name} has no entry in {file}: images with non-root files break"),
                Some("add e.g. `berth-runner:100000:1000000` (setup-host.sh does)"),
            ),
            c if c < 65536 => check(
                name,
                Level::Fail,
                format!("{user_name} has only {c} ids in {file}"),
                Some("give at least 65536, better 1000000 so nested builds fit"),
            ),
            c if c < 200_000 => check(
                name,
                Level::Warn,
                format!("{c} ids: enough for jobs, tight for nested builds"),
                Some("give 1000000 ids for nested Podman/Buildah builds"),
            ),
            c => check(name, Level::Ok, format!("{c} ids"), None),
        });
    }
    for tool in ["newuidmap", "newgidmap"] {
        out.push(match which(tool) {
            Some(p) => check(
                "uid mapping tools",
                Level::Ok,
                format!("{} present", p.display()),
                None,
            ),
            None => check(
                "uid mapping tools",
                Level::Fail,
                format!("{tool} missing"),
                Some("apt-get install uidmap"),
            ),
        });
    }
    out.push(gitlab_runner_check(
        config.gitlab_runner_binary.as_deref(),
        which("gitlab-runner"),
    ));
    out.push(match podman_version {
        Some(v) => {
            let major: u32 = v
                .split_whitespace()
                .last()
                .and_then(|s| s.split('.').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if major >= 4 {
                check("podman", Level::Ok, v.trim().to_owned(), None)
            } else {
                check(
                    "podman",
                    Level::Fail,
                    format!("{} is older than 4.0", v.trim()),
                    Some("install Podman 4.x or newer"),
                )
            }
        }
        None => check(
            "podman",
            Level::Fail,
            "podman is not installed or does not run",
            Some("apt-get install podman (setup-host.sh does)"),
        ),
    });
    // berth's Podman settings for every identity (setup-host writes them; CONTAINERS_CONF).
    let containers_conf = PathBuf::from(crate::context::PODMAN_CONF);
    let runtime = conf_value(&containers_conf, "runtime");
    let layout = cgroups();
    out.push(match (layout, runtime.as_deref()) {
        (Cgroups::V1, Some("runc")) => check("OCI runtime", Level::Ok, "runc (crun refuses hybrid cgroups)", None),
        (Cgroups::V1, other) => check("OCI runtime", Level::Fail,
            format!("runtime is {:?} on a cgroup v1/hybrid host: crun fails with `cgroups in hybrid mode not supported`", other.unwrap_or("the default")),
            Some("set `[engine] runtime = \"runc\"` in /etc/berth/podman/containers/containers.conf (/usr/lib/berth/setup-host writes it when missing)")),
        (Cgroups::V2, r) => check("OCI runtime", Level::Ok, format!("{} on cgroup v2", r.unwrap_or("default")), None),
    });
    if which("runc").is_none() && runtime.as_deref() == Some("runc") {
        out.push(check(
            "OCI runtime",
            Level::Fail,
            "runc is configured but not installed",
            Some("apt-get install runc"),
        ));
    }
    let storage_conf = containers_conf.with_file_name("storage.conf");
    out.push(match conf_value(&storage_conf, "driver").as_deref() {
        Some("overlay") => check("storage driver", Level::Ok, "overlay", None),
        other => check("storage driver", Level::Fail,
            format!("driver is {:?}: rootless Podman falls back to vfs, which copies the whole image per container", other.unwrap_or("unset")),
            Some("set `[storage] driver = \"overlay\"` in /etc/berth/podman/containers/storage.conf (/usr/lib/berth/setup-host writes it when missing)")),
    });
    let limits_wanted = config.limits.cpus.is_some()
        || config.limits.memory_bytes.is_some()
        || config.limits.pids.is_some();
    out.push(match layout {
        Cgroups::V2 => {
            let delegated = std::fs::read_to_string(format!(
                "/sys/fs/cgroup/user.slice/user-{uid}.slice/user@{uid}.service/cgroup.controllers"
            ))
            .unwrap_or_default();
            if ["memory", "pids", "cpu"].iter().all(|c| delegated.contains(c)) {
                check("resource limits", Level::Ok, "cgroup v2 with memory, pids and cpu delegated: limits are enforced", None)
            } else {
                check("resource limits", if limits_wanted { Level::Fail } else { Level::Warn },
                    format!("cgroup v2 but controllers delegated to {user_name}: {:?}", delegated.trim()),
                    Some("enable systemd delegation (Delegate=memory pids cpu for user@.service) and `loginctl enable-linger`"))
            }
        }
        Cgroups::V1 if euid == 0 => check("resource limits", Level::Ok,
            "cgroup v1/hybrid: rootless Podman cannot set limits here, so berth (started as root) puts each job's containers into its own cgroup under /sys/fs/cgroup/*/berth/ with the configured cpus, memory and pids limits, for the job as a whole",
            None),
        Cgroups::V1 => check("resource limits", if limits_wanted { Level::Warn } else { Level::Ok },
            "cgroup v1/hybrid and berth not started as root: neither rootless Podman nor berth can enforce cpus, memory or pids limits here",
            limits_wanted.then_some("run berth from gitlab-runner's root service (berth drops privileges itself), or move the host to cgroup v2 with systemd delegation")),
    });
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, h)| h)
        .unwrap_or(0);
    let ulimits = conf_value(&containers_conf, "default_ulimits").unwrap_or_default();
    let wanted_nofile: u64 = ulimits
        .split("nofile=")
        .nth(1)
        .and_then(|s| s.split([':', '"', ',']).nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_048_576);
    out.push(if wanted_nofile <= hard {
        check("rlimits", Level::Ok, format!("nofile {wanted_nofile} within the hard limit {hard}"), None)
    } else {
        check("rlimits", Level::Fail, format!("containers ask for nofile {wanted_nofile} but the hard limit is {hard}: `setrlimit RLIMIT_NOFILE: Operation not permitted`"),
            Some("set `default_ulimits = [\"nofile=1024:1024\"]` under [containers] in /etc/berth/podman/containers/containers.conf"))
    });
    if config.network == NetworkMode::Slirp4netns {
        out.push(match std::fs::metadata("/dev/net/tun") {
            Ok(m) if m.permissions().mode() & 0o006 == 0o006 => {
                check("/dev/net/tun", Level::Ok, "usable by the runner user", None)
            }
            Ok(_) => check(
                "/dev/net/tun",
                Level::Fail,
                "not readable and writable by the runner user: slirp4netns fails",
                Some("chmod 0666 /dev/net/tun (or set network = \"host\" or \"none\")"),
            ),
            Err(_) => check(
                "/dev/net/tun",
                Level::Fail,
                "missing",
                Some("mknod /dev/net/tun c 10 200 && chmod 0666 /dev/net/tun"),
            ),
        });
    }
    let runtime_root = PathBuf::from(format!("/run/user/{uid}"));
    out.push(match std::fs::metadata(&runtime_root) {
        Ok(m) if m.uid() == uid && m.permissions().mode() & 0o777 == 0o700 => check(
            "runtime dir",
            Level::Ok,
            runtime_root.display().to_string(),
            None,
        ),
        Ok(_) => check(
            "runtime dir",
            Level::Fail,
            format!(
                "{} is not owned by {user_name} with mode 0700",
                runtime_root.display()
            ),
            Some("chown the directory to the runner user and chmod 0700"),
        ),
        Err(_) if euid == 0 => check(
            "runtime dir",
            Level::Ok,
            format!(
                "{} missing; berth creates it when started as root",
                runtime_root.display()
            ),
            None,
        ),
        Err(_) => check(
            "runtime dir",
            Level::Fail,
            format!("{} missing", runtime_root.display()),
            Some("create it owned by the runner user, mode 0700 (loginctl enable-linger does)"),
        ),
    });
    out.extend(state_dir_checks(config, euid, uid));
    if config.nested_run {
        let found = crate::nested::HOST_SECCOMP_PROFILES
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok().map(|text| (*p, text)));
        out.push(match found {
            Some((path, text)) => match crate::nested::nested_run_seccomp(&text) {
                Ok(_) => check(
                    "nested_run seccomp profile",
                    Level::Ok,
                    format!("derived from {path}"),
                    None,
                ),
                Err(why) => check(
                    "nested_run seccomp profile",
                    Level::Fail,
                    format!("{path}: {why}"),
                    Some("restore Podman's default profile (reinstall golang-github-containers-common) or set nested_run = false"),
                ),
            },
            None => check(
                "nested_run seccomp profile",
                Level::Fail,
                format!(
                    "none of {:?} exists",
                    crate::nested::HOST_SECCOMP_PROFILES
                ),
                Some("apt install golang-github-containers-common, or set nested_run = false"),
            ),
        });
    }
    out.extend(crate::metrics::doctor_checks(config, euid));
    out
}

/// berth's state directories as it uses them. Started as root: `state_dir` and `jobs/` (0711) are
/// root's, the base store the store identity's; started unprivileged, all three are that user's.
fn state_dir_checks(config: &Config, euid: u32, store_uid: u32) -> Vec<Check> {
    const FIX: &str = "run /usr/lib/berth/setup-host (integration/host/setup-host.sh from a checkout), which makes state_dir's directories as berth uses them";
    let (state_owner, jobs_owner, jobs_mode) = if euid == 0 {
        (0, 0, 0o711)
    } else {
        (store_uid, store_uid, 0o700)
    };
    [
        (config.state_dir.clone(), state_owner, None),
        (config.jobs_dir(), jobs_owner, Some(jobs_mode)),
        (config.image_store(), store_uid, None),
    ]
    .into_iter()
    .map(|(dir, owner, mode)| match std::fs::metadata(&dir) {
        Ok(m)
            if m.uid() == owner
                && mode.is_none_or(|want| m.permissions().mode() & 0o777 == want) =>
        {
            check(
                "state directories",
                Level::Ok,
                dir.display().to_string(),
                None,
            )
        }
        Ok(m) => check(
            "state directories",
            Level::Fail,
            format!(
                "{} is owned by uid {} with mode {:o}; berth needs uid {owner}{}",
                dir.display(),
                m.uid(),
                m.permissions().mode() & 0o777,
                mode.map(|want| format!(" with mode {want:o}"))
                    .unwrap_or_default()
            ),
            Some(FIX),
        ),
        Err(_) => check(
            "state directories",
            Level::Fail,
            format!("{} missing", dir.display()),
            Some(FIX),
        ),
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn footprint(config: &str, user: &str, jobs: &[&str], state: &str) -> Footprint {
        Footprint {
            config: Some(config.into()),
            user: user.into(),
            job_users: jobs.iter().map(|j| (*j).to_owned()).collect(),
            state_dir: state.into(),
            runtime_dir: None,
        }
    }

    #[test]
    fn runner_configs_sharing_identities_or_state_fail_the_doctor() {
        let a = footprint(
            "/etc/berth/config.d/a.toml",
            "ra",
            &["a0"],
            "/var/lib/berth",
        );
        let b = footprint(
            "/etc/berth/config.d/b.toml",
            "rb",
            &["b0"],
            "/var/lib/berth-b",
        );
        let ok = shared_configs_check(&a, std::slice::from_ref(&b), &[]);
        assert_eq!(ok.level, Level::Ok, "{ok:?}");
        let c = footprint(
            "/etc/berth/config.d/c.toml",
            "rc",
            &["a0"],
            "/var/lib/berth",
        );
        let fail = shared_configs_check(&a, &[b, c], &[]);
        assert_eq!(fail.level, Level::Fail);
        assert!(
            fail.detail
                .contains("/etc/berth/config.d/c.toml shares the identities a0")
                && fail.detail.contains("the state directory"),
            "{fail:?}"
        );
        let broken = shared_configs_check(&a, &[], &["cannot read x.toml".into()]);
        assert_eq!(broken.level, Level::Fail);
    }

    #[test]
    fn state_directories_are_checked_against_the_layout_setup_host_makes() {
        use std::os::unix::fs::{PermissionsExt, chown};
        let tmp = tempfile::tempdir().expect("tmp");
        let state = tmp.path().join("state");
        for (dir, mode) in [("", 0o755), ("jobs", 0o711), ("images", 0o700)] {
            let path = state.join(dir);
            std::fs::create_dir_all(&path).expect("mkdir");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "the layout is root's: run the unit tests as root, as scripts/test-all does"
        );
        let store_uid = 4242;
        chown(state.join("images"), Some(store_uid), Some(store_uid))
            .expect("chown: run the unit tests as root, as scripts/test-all does");
        let config = Config::parse(
            &format!("state_dir = {:?}\n", state.display().to_string()),
            None,
        )
        .expect("config");
        let as_root = state_dir_checks(&config, 0, store_uid);
        assert!(as_root.iter().all(|c| c.level == Level::Ok), "{as_root:#?}");

        chown(state.join("jobs"), Some(store_uid), None).expect("chown");
        let jobs_not_roots = state_dir_checks(&config, 0, store_uid);
        let failed: Vec<&Check> = jobs_not_roots
            .iter()
            .filter(|c| c.level == Level::Fail)
            .collect();
        assert_eq!(failed.len(), 1, "{jobs_not_roots:#?}");
        assert!(
            failed[0].detail.contains("jobs is owned by uid 4242"),
            "{:?}",
            failed[0]
        );
        assert!(
            failed[0]
                .fix
                .as_deref()
                .is_some_and(|f| f.contains("setup-host"))
        );
    }

    #[test]
    fn nested_run_is_checked_only_when_configured() {
        let named = |c: &Config| {
            run_checks(c, 0, None)
                .into_iter()
                .filter(|c| c.name == "nested_run seccomp profile")
                .collect::<Vec<_>>()
        };
        assert!(named(&Config::defaults()).is_empty());
        let on = Config::parse("nested_run = true\n", None).expect("config");
        let found = named(&on);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].level,
            Level::Ok,
            "{:?} (podman installed?)",
            found[0]
        );
    }

    #[test]
    fn a_missing_user_is_a_failure_with_a_fix() {
        let mut config = Config::defaults();
        config.user = "no-such-user-berth".into();
        let checks = run_checks(&config, 0, Some("podman version 4.3.1"));
        assert_eq!(checks[0].level, Level::Fail);
        assert!(
            checks[0]
                .fix
                .as_deref()
                .is_some_and(|f| f.contains("setup-host.sh"))
        );
    }

    #[test]
    fn subid_ranges_are_summed_per_user() {
        let tmp = tempfile::NamedTempFile::new().expect("tmp");
        std::fs::write(tmp.path(), "a:100000:65536\nb:200000:10\na:300000:1000\n").expect("write");
        let path = tmp.path().to_str().expect("utf8");
        assert_eq!(subid_count(path, "a", 1), 66536);
        assert_eq!(subid_count(path, "c", 1), 0);
    }
}

/// `berth exec` runs the real gitlab-runner: configured, or on `PATH`.
fn gitlab_runner_check(configured: Option<&Path>, on_path: Option<PathBuf>) -> Check {
    const FIX: &str = "install gitlab-runner (packages.gitlab.com/runner/gitlab-runner, or build it: integration/fake-gitlab/peers/build-gitlab-runner.sh) and put it on PATH, or set gitlab_runner_binary in the berth config";
    match (configured, on_path) {
        (Some(path), _) if path.is_file() => check(
            "gitlab-runner (berth exec)",
            Level::Ok,
            format!("{} (gitlab_runner_binary)", path.display()),
            None,
        ),
        (Some(path), _) => check(
            "gitlab-runner (berth exec)",
            Level::Fail,
            format!("gitlab_runner_binary {} does not exist", path.display()),
            Some(FIX),
        ),
        (None, Some(path)) => check(
            "gitlab-runner (berth exec)",
            Level::Ok,
            format!("{} on PATH", path.display()),
            None,
        ),
        (None, None) => check(
            "gitlab-runner (berth exec)",
            Level::Warn,
            "not on PATH and not configured: berth exec cannot run jobs".to_owned(),
            Some(FIX),
        ),
    }
}

#[cfg(test)]
mod gitlab_runner_tests {
    use super::*;

    #[test]
    fn berth_exec_finds_gitlab_runner_configured_or_on_path_and_says_how_to_get_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let binary = dir.path().join("gitlab-runner");
        std::fs::write(&binary, "").expect("write");
        assert_eq!(gitlab_runner_check(Some(&binary), None).level, Level::Ok);
        let missing = gitlab_runner_check(Some(&dir.path().join("nope")), None);
        assert_eq!(missing.level, Level::Fail);
        assert_eq!(gitlab_runner_check(None, Some(binary)).level, Level::Ok);
        let absent = gitlab_runner_check(None, None);
        assert_eq!(absent.level, Level::Warn);
        assert!(
            absent
                .fix
                .as_deref()
                .is_some_and(|f| f.contains("gitlab_runner_binary"))
        );
    }
}
