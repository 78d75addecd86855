//! The documents berth sends libpod to create pods and containers, as typed structs serialised
//! to libpod's `PodSpecGenerator` and `SpecGenerator` (Podman 4.3 field names), and the pure
//! functions that build them from the seam's [`ContainerSpec`] and [`PodSpec`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_config::StageTarget;
use berth_config::admin::{Limits, NetworkMode};
use serde::Serialize;

use crate::agent::{AGENT_SCRIPT, MOUNT_POINT, OUT};
use crate::hosts::ETC_HOSTS;
use crate::paths::JobPaths;
use crate::{ContainerSpec, PodSpec, Role};

/// Where the BuildKit socket appears in the job container.
pub const BUILDKIT_SOCKET_DIR: &str = "/run/buildkit";

/// Where the build socket appears in the job container.
pub const BUILD_SOCKET_DIR: &str = "/run/berth";

/// The pod's host name.
pub const POD_HOSTNAME: &str = "berth-job";

/// Where `podman --remote` looks for its socket: root in a user namespace under `/run/user/0`,
/// real root under `/run/podman`.
const PODMAN_SOCKET_PATHS: [&str; 2] =
    ["/run/podman/podman.sock", "/run/user/0/podman/podman.sock"];

/// libpod's `SpecGenerator`, the fields berth sets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpecGenerator {
    /// Container name.
    pub name: String,
    /// Pod to join.
    pub pod: String,
    /// Image reference.
    pub image: String,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Bind mounts.
    pub mounts: Vec<BindMount>,
    /// `no_new_privileges`.
    pub no_new_privileges: bool,
    /// Capabilities dropped from Podman's default set.
    pub cap_drop: Vec<String>,
    /// Always false: berth never runs a privileged container.
    pub privileged: bool,
    /// Seconds between the stop signal and SIGKILL (0: the job's processes are ended by berth).
    pub stop_timeout: u32,
    /// No terminal.
    pub terminal: bool,
    /// No stdin.
    pub stdin: bool,
    /// cgroup limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_limits: Option<ResourceLimits>,
    /// A seccomp profile instead of Podman's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp_profile_path: Option<PathBuf>,
    /// Masked paths to expose.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unmask: Vec<String>,
    /// Entrypoint (an empty list clears the image's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Command (none: the image's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
}

/// One bind mount (libpod's OCI `Mount`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BindMount {
    /// Always `bind`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Host path.
    pub source: PathBuf,
    /// Container path.
    pub destination: String,
    /// `rbind` plus `ro` or `rw`.
    pub options: [&'static str; 2],
}

impl BindMount {
    /// A recursive bind of `source` at `destination`.
    pub fn new(
        source: impl Into<PathBuf>,
        destination: impl Into<String>,
        read_only: bool,
    ) -> Self {
        Self {
            kind: "bind",
            source: source.into(),
            destination: destination.into(),
            options: ["rbind", if read_only { "ro" } else { "rw" }],
        }
    }
}

/// The OCI `LinuxResources` berth sets.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ResourceLimits {
    /// Memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Limit>,
    /// CPU bandwidth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuLimit>,
    /// Process count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<Limit>,
}

/// A plain limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limit {
    /// The limit.
    pub limit: i64,
}

/// CPU bandwidth: `quota` microseconds per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CpuLimit {
    /// Microseconds per period.
    pub quota: i64,
    /// Period in microseconds.
    pub period: u64,
}

/// The CFS period berth uses for CPU limits.
const CPU_PERIOD: u64 = 100_000;

impl ResourceLimits {
    /// The cgroup limits for `limits`, or None when it sets none.
    pub fn of(limits: &Limits) -> Option<Self> {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_precision_loss,
            reason = "cpus is validated positive and finite; the period is small"
        )]
        let cpu = limits.cpus.map(|cpus| CpuLimit {
            quota: (cpus * CPU_PERIOD as f64).round() as i64,
            period: CPU_PERIOD,
        });
        let out = Self {
            memory: limits.memory_bytes.map(|bytes| Limit {
                limit: i64::try_from(bytes).unwrap_or(i64::MAX),
            }),
            cpu,
            pids: limits.pids.map(|limit| Limit { limit }),
        };
        (out != Self::default()).then_some(out)
    }
}

/// What the job container gets besides its spec: the sockets of the job's builders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Builders {
    /// A per-job rootless BuildKit.
    pub buildkit: bool,
    /// The filtered build socket.
    pub build_socket: bool,
}

/// The stage target whose agent a container of `role` runs, if any.
pub fn agent_target(role: Role) -> Option<StageTarget> {
    match role {
        Role::Helper => Some(StageTarget::Helper),
        Role::Job => Some(StageTarget::Job),
        Role::Service => None,
    }
}

/// The libpod document for `spec`, in the job at `paths`.
pub fn container(paths: &JobPaths, builders: Builders, spec: &ContainerSpec) -> SpecGenerator {
    let mut mounts: Vec<BindMount> = spec
        .mounts
        .iter()
        .map(|m| BindMount::new(&m.source, &m.destination, m.read_only))
        .collect();
    if spec.network == NetworkMode::Host {
        // Podman drops the pod's extra hosts on the host network; berth's file stands in for
        // them, read-only so no container can change what its neighbours resolve.
        mounts.push(BindMount::new(paths.hosts_file(), ETC_HOSTS, true));
    }
    let mut env = spec.env.clone();
    let mut command = spec.command.clone();
    if let Some(target) = agent_target(spec.role) {
        // The control FIFO and the scripts are read-only to the container, so it cannot put
        // anything in their place; only results are written, beneath `out/`.
        let agent = paths.agent(target);
        mounts.push(BindMount::new(&agent, MOUNT_POINT, true));
        mounts.push(BindMount::new(
            agent.join(OUT),
            format!("{MOUNT_POINT}/{OUT}"),
            false,
        ));
        command = Some(vec!["sh".into(), "-c".into(), AGENT_SCRIPT.into()]);
    }
    if spec.role == Role::Job && builders.buildkit {
        mounts.push(BindMount::new(
            paths.buildkit().join("sock"),
            BUILDKIT_SOCKET_DIR,
            true,
        ));
        env.insert(
            "BUILDKIT_HOST".into(),
            format!("unix://{BUILDKIT_SOCKET_DIR}/buildkitd.sock"),
        );
    }
    if spec.role == Role::Job && builders.build_socket {
        let dir = paths.build_socket_dir();
        mounts.push(BindMount::new(&dir, BUILD_SOCKET_DIR, true));
        // `podman --remote` finds the socket at its default path; CONTAINER_HOST would turn every
        // plain `podman` into a remote one and bypass the nested store.
        for destination in PODMAN_SOCKET_PATHS {
            mounts.push(BindMount::new(dir.join("docker.sock"), destination, true));
        }
        env.insert(
            "DOCKER_HOST".into(),
            format!("unix://{BUILD_SOCKET_DIR}/docker.sock"),
        );
    }
    SpecGenerator {
        name: spec.name.clone(),
        pod: spec.pod.clone(),
        image: spec.image.clone(),
        env,
        labels: spec.labels.clone(),
        mounts,
        no_new_privileges: spec.no_new_privileges,
        cap_drop: spec.cap_drop.clone(),
        privileged: false,
        stop_timeout: 0,
        terminal: false,
        stdin: false,
        resource_limits: ResourceLimits::of(&spec.limits),
        seccomp_profile_path: spec.seccomp_profile.clone(),
        unmask: spec.unmask.clone(),
        entrypoint: spec.entrypoint.clone(),
        command,
    }
}

/// libpod's `PodSpecGenerator`, the fields berth sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodSpecGenerator {
    /// Pod name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `/etc/hosts` entries (`name:address`).
    pub hostadd: Vec<String>,
    /// The pod's network namespace.
    pub netns: Namespace,
    /// The pod's host name.
    pub hostname: &'static str,
}

/// A namespace choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Namespace {
    /// `slirp4netns`, `host` or `none`.
    pub nsmode: &'static str,
}

/// The libpod document for the job's pod: its aliases resolve to the pod itself.
pub fn pod(spec: &PodSpec) -> PodSpecGenerator {
    PodSpecGenerator {
        name: spec.name.clone(),
        labels: spec.labels.clone(),
        hostadd: spec
            .hosts
            .iter()
            .map(|h| format!("{h}:127.0.0.1"))
            .collect(),
        netns: Namespace {
            nsmode: match spec.network {
                NetworkMode::Slirp4netns => "slirp4netns",
                NetworkMode::Host => "host",
                NetworkMode::None => "none",
            },
        },
        hostname: POD_HOSTNAME,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mount;
    use serde_json::json;
    use std::path::Path;

    fn paths() -> JobPaths {
        JobPaths::new(
            "k1",
            Path::new("/state/jobs"),
            Path::new("/run/user/1/berth"),
            Path::new("/var/lib/berth/images"),
        )
    }

    fn spec(role: Role) -> ContainerSpec {
        ContainerSpec {
            name: "c".into(),
            pod: "p".into(),
            image: "alpine:3".into(),
            role,
            entrypoint: None,
            command: None,
            env: BTreeMap::from([("A".into(), "1".into())]),
            mounts: vec![Mount {
                source: "/state/jobs/k1/work/builds".into(),
                destination: "/builds".into(),
                read_only: false,
            }],
            limits: Limits {
                cpus: None,
                memory_bytes: None,
                pids: None,
            },
            no_new_privileges: true,
            cap_drop: vec!["NET_RAW".into()],
            seccomp_profile: None,
            unmask: Vec::new(),
            labels: BTreeMap::new(),
            network: NetworkMode::Slirp4netns,
        }
    }

    #[test]
    fn a_service_keeps_its_command_and_gets_no_agent_or_sockets() {
        let mut service = spec(Role::Service);
        service.command = Some(vec!["redis-server".into()]);
        let doc = container(
            &paths(),
            Builders {
                buildkit: true,
                build_socket: true,
            },
            &service,
        );
        assert_eq!(doc.command, Some(vec!["redis-server".to_owned()]));
        assert_eq!(doc.mounts.len(), 1);
        assert!(!doc.env.contains_key("DOCKER_HOST"));
        let json = serde_json::to_value(&doc).expect("serialise");
        assert_eq!(json["privileged"], json!(false));
        assert_eq!(json["stop_timeout"], json!(0));
        for absent in [
            "resource_limits",
            "entrypoint",
            "unmask",
            "seccomp_profile_path",
        ] {
            assert!(json.get(absent).is_none(), "{absent} was sent: {json}");
        }
    }

    #[test]
    fn the_agent_directory_is_read_only_but_its_out_directory() {
        let doc = container(&paths(), Builders::default(), &spec(Role::Helper));
        let agent: Vec<&BindMount> = doc
            .mounts
            .iter()
            .filter(|m| m.destination.starts_with(MOUNT_POINT))
            .collect();
        assert_eq!(agent.len(), 2);
        assert_eq!(agent[0].options, ["rbind", "ro"]);
        assert_eq!(agent[1].destination, format!("{MOUNT_POINT}/{OUT}"));
        assert_eq!(agent[1].options, ["rbind", "rw"]);
        assert_eq!(doc.command.as_deref().map(<[String]>::len), Some(3));
        assert_eq!(
            doc.env.get("DOCKER_HOST"),
            None,
            "helper gets no build socket"
        );
    }

    #[test]
    fn the_job_gets_the_builder_sockets_read_only_and_the_env_that_finds_them() {
        let doc = container(
            &paths(),
            Builders {
                buildkit: true,
                build_socket: true,
            },
            &spec(Role::Job),
        );
        let sockets: Vec<&BindMount> = doc
            .mounts
            .iter()
            .filter(|m| {
                m.destination.starts_with(BUILD_SOCKET_DIR)
                    || m.destination.starts_with(BUILDKIT_SOCKET_DIR)
                    || PODMAN_SOCKET_PATHS.contains(&m.destination.as_str())
            })
            .collect();
        assert_eq!(sockets.len(), 4, "{sockets:?}");
        assert!(sockets.iter().all(|m| m.options == ["rbind", "ro"]));
        assert_eq!(
            doc.env.get("DOCKER_HOST").map(String::as_str),
            Some("unix:///run/berth/docker.sock")
        );
        assert_eq!(
            doc.env.get("BUILDKIT_HOST").map(String::as_str),
            Some("unix:///run/buildkit/buildkitd.sock")
        );
        assert_eq!(doc.env.get("A").map(String::as_str), Some("1"));
    }

    #[test]
    fn limits_become_cgroup_values() {
        let mut job = spec(Role::Job);
        job.limits = Limits {
            memory_bytes: Some(512 << 20),
            cpus: Some(1.5),
            pids: Some(256),
        };
        let json = serde_json::to_value(container(&paths(), Builders::default(), &job))
            .expect("serialise");
        assert_eq!(
            json["resource_limits"],
            json!({
                "memory": { "limit": 512 << 20 },
                "cpu": { "quota": 150_000, "period": 100_000 },
                "pids": { "limit": 256 },
            })
        );
    }

    #[test]
    fn an_empty_entrypoint_is_sent_to_clear_the_images() {
        let mut job = spec(Role::Job);
        job.entrypoint = Some(Vec::new());
        let json = serde_json::to_value(container(&paths(), Builders::default(), &job))
            .expect("serialise");
        assert_eq!(json["entrypoint"], json!([]));
    }

    #[test]
    fn on_the_host_network_every_container_reads_berths_hosts_file_read_only() {
        for role in [Role::Service, Role::Helper, Role::Job] {
            let mut host = spec(role);
            host.network = NetworkMode::Host;
            let doc = container(&paths(), Builders::default(), &host);
            let hosts: Vec<&BindMount> = doc
                .mounts
                .iter()
                .filter(|m| m.destination == ETC_HOSTS)
                .collect();
            assert_eq!(
                hosts,
                [&BindMount::new("/state/jobs/k1/hosts", ETC_HOSTS, true)],
                "{role:?}"
            );

            let doc = container(&paths(), Builders::default(), &spec(role));
            assert!(
                doc.mounts.iter().all(|m| m.destination != ETC_HOSTS),
                "slirp4netns keeps Podman's /etc/hosts for {role:?}: {:?}",
                doc.mounts
            );
        }
    }

    #[test]
    fn a_pod_resolves_its_aliases_to_itself() {
        let doc = pod(&PodSpec {
            name: "p".into(),
            hosts: vec!["db".into(), "cache".into()],
            network: NetworkMode::None,
            labels: BTreeMap::new(),
        });
        let json = serde_json::to_value(doc).expect("serialise");
        assert_eq!(json["hostadd"], json!(["db:127.0.0.1", "cache:127.0.0.1"]));
        assert_eq!(json["netns"], json!({ "nsmode": "none" }));
    }
}
