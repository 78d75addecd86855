//! The policy against every escape we know, and the requests the docker CLI and
//! `podman --remote` send for legitimate work.

use std::path::{Path, PathBuf};

use hyper::Method;
use serde_json::{Value, json};

use super::*;

const OWN_ID: &str = "abc123def4567890abc123def4567890abc123def4567890abc123def4567890";

struct Fixture {
    dir: tempfile::TempDir,
    root: berth_beneath::Dir,
    own: Own,
}

impl Fixture {
    /// A builds directory with `sub/` and a link `escape -> /` planted in it.
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let builds = dir.path().join("builds");
        std::fs::create_dir_all(builds.join("sub/deeper")).expect("sub");
        std::os::unix::fs::symlink("/", builds.join("escape")).expect("symlink");
        std::os::unix::fs::symlink("sub", builds.join("alias")).expect("symlink");
        let root = berth_beneath::Dir::open(&builds).expect("open builds");
        let mut own = Own::default();
        own.insert(OWN_ID, Some("mine"));
        Self { dir, root, own }
    }

    fn builds(&self) -> PathBuf {
        self.dir.path().join("builds")
    }

    fn decide(
        &self,
        mode: Mode,
        method: Method,
        path: &str,
        query: &str,
        body: Option<&[u8]>,
    ) -> Decision {
        let network = BuildNetwork::Join(PathBuf::from("/proc/4242/ns/net"));
        decide(
            &Call {
                method: &method,
                path,
                query,
                body,
            },
            &Context {
                mode,
                own: &self.own,
                binds: Some(&self.root),
                build_network: &network,
            },
        )
    }

    fn forward(
        &self,
        mode: Mode,
        method: Method,
        path: &str,
        query: &str,
        body: Option<&Value>,
    ) -> Forward {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("json"));
        match self.decide(mode, method.clone(), path, query, bytes.as_deref()) {
            Decision::Forward(f) => f,
            Decision::Refuse(r) => panic!("{method} {path}?{query} refused: {r}"),
        }
    }

    fn refusal(
        &self,
        mode: Mode,
        method: Method,
        path: &str,
        query: &str,
        body: Option<&Value>,
    ) -> Refusal {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("json"));
        self.refusal_raw(mode, method, path, query, bytes.as_deref())
    }

    fn refusal_raw(
        &self,
        mode: Mode,
        method: Method,
        path: &str,
        query: &str,
        body: Option<&[u8]>,
    ) -> Refusal {
        match self.decide(mode, method.clone(), path, query, body) {
            Decision::Refuse(r) => r,
            Decision::Forward(f) => panic!("{method} {path}?{query} was forwarded as {f:?}"),
        }
    }

    fn create(&self, body: &Value) -> Result<Value, Refusal> {
        let bytes = serde_json::to_vec(body).expect("json");
        match self.decide(
            Mode::Run,
            Method::POST,
            "/v1.41/containers/create",
            "",
            Some(&bytes),
        ) {
            Decision::Forward(Forward {
                body: ForwardBody::Json(json),
                ..
            }) => Ok(serde_json::from_slice(&json).expect("forwarded json")),
            Decision::Forward(other) => panic!("unexpected {other:?}"),
            Decision::Refuse(r) => Err(r),
        }
    }

    fn libpod_create(&self, body: &Value) -> Result<Value, Refusal> {
        let bytes = serde_json::to_vec(body).expect("json");
        match self.decide(
            Mode::Run,
            Method::POST,
            "/v4.3.1/libpod/containers/create",
            "",
            Some(&bytes),
        ) {
            Decision::Forward(Forward {
                body: ForwardBody::Json(json),
                ..
            }) => Ok(serde_json::from_slice(&json).expect("forwarded json")),
            Decision::Forward(other) => panic!("unexpected {other:?}"),
            Decision::Refuse(r) => Err(r),
        }
    }
}

fn query_of(forward: &Forward) -> wire::Query {
    let raw = forward
        .path_and_query
        .split_once('?')
        .map_or("", |(_, q)| q);
    wire::Query::parse(raw).expect("forwarded query parses")
}

/// What `docker build -t localhost/sock:docker --build-arg A=b -f Containerfile .` sends with
/// the classic builder.
const DOCKER_BUILD: &str = "buildargs=%7B%22A%22%3A%22b%22%7D&cachefrom=null&cgroupparent=&cpuperiod=0&cpuquota=0&cpusetcpus=&cpusetmems=&cpushares=0&dockerfile=Containerfile&labels=%7B%7D&memory=0&memswap=0&networkmode=default&rm=1&shmsize=0&t=localhost%2Fsock%3Adocker&target=&ulimits=null&version=1";

/// What `podman --remote build -t localhost/sock:podman .` (4.3) sends.
const PODMAN_BUILD: &str = "dockerfile=%5B%22Containerfile%22%5D&identitylabel=1&isolation=2&jobs=1&layers=1&networkmode=0&omithistory=0&outputformat=application%2Fvnd.oci.image.manifest.v1%2Bjson&pullpolicy=missing&rm=1&skipunusedstages=1&t=localhost%2Fsock%3Apodman&httpproxy=1&buildargs=%7B%22A%22%3A%22b%22%7D&output=localhost%2Fsock%3Apodman&seccomp=%2Fusr%2Fshare%2Fcontainers%2Fseccomp.json&idmappingoptions=%7B%22HostUIDMapping%22%3Atrue%2C%22HostGIDMapping%22%3Atrue%2C%22UIDMap%22%3A%5B%7B%22container_id%22%3A0%2C%22host_id%22%3A0%2C%22size%22%3A1%7D%5D%2C%22GIDMap%22%3Anull%2C%22AutoUserNs%22%3Afalse%2C%22AutoUserNsOpts%22%3A%7B%22Size%22%3A0%7D%7D&nsoptions=%5B%7B%22Name%22%3A%22user%22%2C%22Host%22%3Atrue%2C%22Path%22%3A%22%22%7D%5D";

#[test]
fn docker_and_podman_builds_pass_in_the_jobs_network() {
    let f = Fixture::new();
    let docker = f.forward(
        Mode::Build,
        Method::POST,
        "/v1.41/build",
        DOCKER_BUILD,
        None,
    );
    assert!(
        docker.path_and_query.starts_with("/v1.41/build?"),
        "{docker:?}"
    );
    assert_eq!(docker.body, ForwardBody::Stream);
    let q = query_of(&docker);
    assert_eq!(q.all("t"), ["localhost/sock:docker"]);
    assert_eq!(q.one("dockerfile"), Some(r#"["Containerfile"]"#));
    assert_eq!(q.one("buildargs"), Some(r#"{"A":"b"}"#));
    assert_eq!(q.one("networkmode"), Some("0"));
    assert_eq!(
        q.one("nsoptions"),
        Some(r#"[{"Host":false,"Name":"network","Path":"/proc/4242/ns/net"}]"#)
    );
    let podman = f.forward(
        Mode::Build,
        Method::POST,
        "/v4.3.1/libpod/build",
        PODMAN_BUILD,
        None,
    );
    assert!(
        podman.path_and_query.starts_with("/v4.3.1/libpod/build?"),
        "{podman:?}"
    );
    let q = query_of(&podman);
    assert_eq!(q.one("dockerfile"), Some(r#"["Containerfile"]"#));
    assert_eq!(
        q.one("isolation"),
        Some("0"),
        "chroot isolation cannot keep RUN off the host network"
    );
    assert!(
        q.one("nsoptions")
            .is_some_and(|n| n.contains("/proc/4242/ns/net"))
    );
}

#[test]
fn a_build_that_asks_for_no_network_gets_none_and_so_does_a_job_without_a_pod() {
    let f = Fixture::new();
    let none = f.forward(
        Mode::Build,
        Method::POST,
        "/build",
        "networkmode=none",
        None,
    );
    let q = query_of(&none);
    assert_eq!(q.one("networkmode"), Some("1"));
    assert_eq!(
        q.one("nsoptions"),
        Some(r#"[{"Host":false,"Name":"network","Path":""}]"#)
    );
    let network = BuildNetwork::None;
    let Decision::Forward(fwd) = decide(
        &Call {
            method: &Method::POST,
            path: "/build",
            query: "t=x",
            body: None,
        },
        &Context {
            mode: Mode::Build,
            own: &f.own,
            binds: None,
            build_network: &network,
        },
    ) else {
        panic!("refused");
    };
    assert_eq!(query_of(&fwd).one("networkmode"), Some("1"));
}

#[test]
fn build_escapes_are_refused_naming_the_option() {
    let f = Fixture::new();
    for (query, names) in [
        ("networkmode=host", "networkmode"),
        ("NetworkMode=host", "networkmode"),
        ("%6eetworkmode=host", "networkmode"),
        ("networkmode=container%3Aabc", "networkmode"),
        (
            "nsoptions=%5B%7B%22Name%22%3A%22network%22%2C%22Host%22%3Atrue%7D%5D",
            "nsoptions",
        ),
        (
            "nsoptions=%5B%7B%22Name%22%3A%22pid%22%2C%22Host%22%3Atrue%7D%5D",
            "nsoptions",
        ),
        ("remote=%2Fvar%2Flib%2Fberth%2Fjobs%2Fother%2Fx", "remote"),
        ("addcaps=%5B%22CAP_SYS_ADMIN%22%5D", "addcaps"),
        (
            "secrets=%5B%22id%3Dx%2Csrc%3D%2Fetc%2Fshadow%22%5D",
            "secrets",
        ),
        (
            "additionalbuildcontexts=%7B%22h%22%3A%7B%22Value%22%3A%22%2F%22%7D%7D",
            "additionalbuildcontexts",
        ),
        ("rusagelogfile=%2Fhome%2Frunner%2F.bashrc", "rusagelogfile"),
        ("devices=%5B%22%2Fdev%2Fkvm%22%5D", "devices"),
        ("volume=%2Fetc%3A%2Fe", "volume"),
        (
            "securityopt=%5B%22seccomp%3Dunconfined%22%5D",
            "securityopt",
        ),
        ("cgroupparent=%2Fsystem.slice", "cgroupparent"),
        ("dockerfile=%2Fetc%2Fpasswd", "dockerfile"),
        ("dockerfile=..%2F..%2Fetc%2Fpasswd", "dockerfile"),
        ("dockerfile=%5B%22%2Fetc%2Fpasswd%22%5D", "dockerfile"),
        ("dockerfile=%5B%22a%22%2C%22b%22%5D", "dockerfile"),
        ("dockerfile=a&dockerfile=b", "dockerfile"),
        // Looks like a plain name, but Podman reads it as a JSON list naming a host file.
        ("dockerfile=%20%5B%22%2Fetc%2Fpasswd%22%5D", "dockerfile"),
        (
            "dockerfile=https%3A%2F%2Fexample.com%2FContainerfile",
            "dockerfile",
        ),
        ("from=docker-archive%3A%2Fvar%2Flib%2Fberth%2Fx.tar", "from"),
        ("q=1&Q=1", "q"),
        ("q=1&%51=1", "q"),
        ("isolation=host", "isolation"),
        ("version=2", "version"),
        ("seccomp=unconfined", "seccomp"),
        ("seccomp=%2Fbuilds%2Fallow-all.json", "seccomp"),
        ("apparmor=unconfined", "apparmor"),
        (
            "idmappingoptions=%7B%22UIDMap%22%3A1%2C%22Extra%22%3A1%7D",
            "idmappingoptions",
        ),
    ] {
        let r = f.refusal(Mode::Build, Method::POST, "/v1.41/build", query, None);
        assert!(r.field.contains(names), "{query}: {r}");
        assert!(!r.fix.is_empty(), "{query}: {r}");
        let r = f.refusal(
            Mode::Build,
            Method::POST,
            "/v4.0.0/libpod/build",
            query,
            None,
        );
        assert!(r.field.contains(names), "libpod {query}: {r}");
    }
}

#[test]
fn images_tag_push_pull_list_inspect_remove_and_login_pass() {
    let f = Fixture::new();
    let b = Mode::Build;
    for (method, path, query) in [
        (Method::GET, "/_ping", ""),
        (Method::HEAD, "/_ping", ""),
        (Method::GET, "/v1.41/version", ""),
        (Method::GET, "/v4.0.0/libpod/_ping", ""),
        (Method::GET, "/v4.3.1/libpod/info", ""),
        (
            Method::POST,
            "/v1.41/images/localhost/sock:docker/tag",
            "repo=reg%3A5000%2Fberth%2Fsock&tag=1",
        ),
        (
            Method::POST,
            "/v4.3.1/libpod/images/localhost/sock:docker/tag",
            "repo=reg%3A5000%2Fberth%2Fsock&tag=1",
        ),
        (Method::GET, "/v1.41/images/reg:5000/berth/sock:1/json", ""),
        (
            Method::GET,
            "/v1.41/images/json",
            "filters=%7B%22reference%22%3A%7B%22x%22%3Atrue%7D%7D",
        ),
        (Method::GET, "/v4.3.1/libpod/images/json", "all=false"),
        (Method::GET, "/v1.41/images/sha256:abc/history", ""),
        (
            Method::POST,
            "/v1.41/images/reg:5000/berth/sock/push",
            "tag=2",
        ),
        (
            Method::POST,
            "/v4.3.1/libpod/images/reg:5000/berth/sock:1/push",
            "destination=reg%3A5000%2Fberth%2Fsock%3A1&tlsVerify=false&quiet=true",
        ),
        (
            Method::POST,
            "/v1.41/images/create",
            "fromImage=reg%3A5000%2Fberth%2Fsock&tag=2",
        ),
        (
            Method::POST,
            "/v4.3.1/libpod/images/pull",
            "reference=reg%3A5000%2Fberth%2Fsock%3A2&policy=always&tlsVerify=false&quiet=true",
        ),
        (
            Method::DELETE,
            "/v1.41/images/reg:5000/berth/sock:2",
            "force=0&noprune=1",
        ),
        (
            Method::DELETE,
            "/v4.3.1/libpod/images/remove",
            "images=reg%3A5000%2Fberth%2Fsock%3A2&force=false",
        ),
        (Method::POST, "/v1.41/images/load", "quiet=1"),
    ] {
        let fwd = f.forward(b, method.clone(), path, query, None);
        assert_eq!(fwd.path_and_query.split('?').next(), Some(path), "{fwd:?}");
    }
    let login =
        json!({"username": "ci-user", "password": "push-pass-123", "serveraddress": "reg:5000"});
    let fwd = f.forward(b, Method::POST, "/v1.41/auth", "", Some(&login));
    let ForwardBody::Json(bytes) = fwd.body else {
        panic!("json body")
    };
    assert_eq!(
        serde_json::from_slice::<Value>(&bytes).expect("json"),
        login
    );
}

#[test]
fn image_escapes_are_refused() {
    let f = Fixture::new();
    let r = f.refusal(
        Mode::Run,
        Method::POST,
        "/v1.41/images/create",
        "fromSrc=%2Fetc%2Fpasswd&repo=x",
        None,
    );
    assert!(r.field.contains("fromSrc"), "{r}");
    let r = f.refusal(
        Mode::Run,
        Method::POST,
        "/v1.41/images/create",
        "fromImage=x&FROMSRC=-",
        None,
    );
    assert!(r.field.contains("fromSrc"), "{r}");
    // A transport makes Podman read a host archive or directory instead of a registry.
    for image in [
        "docker-archive%3A%2Ftmp%2Fx.tar",
        "dir%3A%2Fetc",
        "OCI-ARCHIVE%3A%2Fx",
    ] {
        let r = f.refusal(
            Mode::Run,
            Method::POST,
            "/v1.41/images/create",
            &format!("fromImage={image}"),
            None,
        );
        assert!(r.problem.contains("not an image name"), "{image}: {r}");
    }
    let r = f.refusal(
        Mode::Run,
        Method::POST,
        "/v4.3.1/libpod/images/import",
        "url=%2Fetc%2Fshadow",
        None,
    );
    assert!(r.problem.contains("does not offer"), "{r}");
    let r = f.refusal(
        Mode::Run,
        Method::POST,
        "/v4.3.1/libpod/images/pull",
        "reference=x&authfile=%2Froot%2Fauth.json",
        None,
    );
    assert!(r.field.contains("authfile"), "{r}");
    let r = f.refusal(
        Mode::Run,
        Method::GET,
        "/v1.41/images/..%2F..%2Fetc/json",
        "",
        None,
    );
    assert_eq!(r.field, "path");
    for (method, path) in [
        (Method::POST, "/v1.41/volumes/create"),
        (Method::POST, "/v1.41/networks/create"),
        (Method::POST, "/v4.3.1/libpod/pods/create"),
        (Method::POST, "/v4.3.1/libpod/play/kube"),
        (Method::POST, "/v4.3.1/libpod/secrets/create"),
        (Method::POST, "/v4.3.1/libpod/system/prune"),
        (Method::GET, "/v4.3.1/libpod/generate/x/systemd"),
        (Method::POST, "/v4.3.1/libpod/manifests/x/push"),
        (Method::GET, "/v1.41/images/x/get"),
    ] {
        let r = f.refusal(Mode::Run, method, path, "", None);
        assert!(r.problem.contains("does not offer"), "{path}: {r}");
    }
}

#[test]
fn containers_are_refused_in_build_mode() {
    let f = Fixture::new();
    let body = json!({"Image": "localhost/busybox:latest"});
    let r = f.refusal(
        Mode::Build,
        Method::POST,
        "/v1.41/containers/create",
        "",
        Some(&body),
    );
    assert!(r.fix.contains("build_socket = \"run\""), "{r}");
    let r = f.refusal(
        Mode::Build,
        Method::POST,
        "/v1.41/containers/mine/start",
        "",
        None,
    );
    assert!(r.fix.contains("build_socket"), "{r}");
}

#[test]
fn a_container_run_with_a_bind_beneath_the_job_and_a_tmpfs_passes() {
    let f = Fixture::new();
    let source = f.builds().join("sub");
    // What `docker run -d --name web -v <builds>/sub:/src:ro --tmpfs /scratch busybox ...` sends.
    let text = r#"{
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": false,
        "AttachStdout": false, "AttachStderr": false, "Tty": false, "OpenStdin": false,
        "StdinOnce": false, "Env": null, "Cmd": ["cat", "/src/x"], "Image": "localhost/busybox:latest",
        "Volumes": {}, "WorkingDir": "", "Entrypoint": null, "OnBuild": null, "Labels": {},
        "HostConfig": {
            "Binds": ["BIND"], "ContainerIDFile": "",
            "LogConfig": {"Type": "", "Config": {}}, "NetworkMode": "default", "PortBindings": {},
            "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": false,
            "VolumeDriver": "", "VolumesFrom": null, "ConsoleSize": [0, 0], "CapAdd": null,
            "CapDrop": null, "CgroupnsMode": "", "Dns": [], "DnsOptions": [], "DnsSearch": [],
            "ExtraHosts": null, "GroupAdd": null, "IpcMode": "", "Cgroup": "", "Links": null,
            "OomScoreAdj": 0, "PidMode": "", "Privileged": false, "PublishAllPorts": false,
            "ReadonlyRootfs": false, "SecurityOpt": null, "Tmpfs": {"/scratch": ""},
            "UTSMode": "", "UsernsMode": "", "ShmSize": 0, "Isolation": "", "CpuShares": 0,
            "Memory": 0, "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0,
            "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [],
            "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0,
            "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "",
            "Devices": [], "DeviceCgroupRules": null, "DeviceRequests": null,
            "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": null,
            "OomKillDisable": false, "PidsLimit": null, "Ulimits": null, "CpuCount": 0,
            "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
            "MaskedPaths": null, "ReadonlyPaths": null
        },
        "NetworkingConfig": {"EndpointsConfig": {}}
    }"#;
    let body: Value =
        serde_json::from_str(&text.replace("BIND", &format!("{}:/src:ro", source.display())))
            .expect("json");
    let bytes = serde_json::to_vec(&body).expect("json");
    let Decision::Forward(fwd) = f.decide(
        Mode::Run,
        Method::POST,
        "/v1.41/containers/create",
        "name=web",
        Some(&bytes),
    ) else {
        panic!("refused");
    };
    assert_eq!(
        fwd.after,
        After::Created {
            name: Some("web".into())
        }
    );
    let ForwardBody::Json(sent) = &fwd.body else {
        panic!("json")
    };
    let sent: Value = serde_json::from_slice(sent).expect("json");
    assert_eq!(
        sent["hostconfig"]["binds"][0],
        format!("{}:/src:ro", source.display())
    );
    assert_eq!(sent["hostconfig"]["tmpfs"]["/scratch"], "");
    assert!(sent["hostconfig"].get("privileged").is_none(), "{sent}");
    // The whole builds directory and a Mounts tmpfs pass too.
    f.create(&json!({"Image": "x", "HostConfig": {
        "Binds": [format!("{}:/b", f.builds().display())],
        "Mounts": [{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1048576}},
                   {"Type": "bind", "Source": source, "Target": "/m", "BindOptions": {"Propagation": ""}}]}}))
        .expect("allowed");
    // podman --remote run -d -v <builds>/sub:/src --tmpfs /t
    let libpod = json!({"name": "pod-run", "image": "localhost/busybox:latest", "command": ["true"],
        "mounts": [{"destination": "/src", "type": "bind", "source": source, "options": ["rbind", "ro"]},
                   {"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["rw", "size=1m"]}],
        "netns": {"nsmode": ""}, "pidns": {"nsmode": ""}, "seccomp_policy": "default",
        "image_volume_mode": "anonymous", "remove": true, "log_configuration": {"driver": "k8s-file"}});
    f.libpod_create(&libpod).expect("allowed");
    for (method, path, query) in [
        (Method::POST, "/v1.41/containers/web/start", ""),
        (Method::POST, "/v1.41/containers/mine/start", ""),
        (
            Method::POST,
            "/v1.41/containers/abc123def456/wait",
            "condition=next-exit",
        ),
        (
            Method::GET,
            "/v1.41/containers/mine/logs",
            "stdout=1&stderr=1&tail=all",
        ),
        (Method::GET, "/v1.41/containers/mine/json", ""),
        (Method::POST, "/v1.41/containers/mine/kill", "signal=KILL"),
        (Method::DELETE, "/v1.41/containers/mine", "force=1&v=1"),
        (
            Method::DELETE,
            "/v4.3.1/libpod/containers/mine",
            "force=true&timeout=10",
        ),
    ] {
        let mut own = f.own.clone();
        own.insert("fedcba9876543210", Some("web"));
        let network = BuildNetwork::None;
        let Decision::Forward(fwd) = decide(
            &Call {
                method: &method,
                path,
                query,
                body: None,
            },
            &Context {
                mode: Mode::Run,
                own: &own,
                binds: Some(&f.root),
                build_network: &network,
            },
        ) else {
            panic!("{path} refused");
        };
        assert!(
            fwd.path_and_query.contains("/containers/fedcba9876543210")
                || fwd.path_and_query.contains(OWN_ID),
            "addressed by the full id: {fwd:?}"
        );
    }
}

#[test]
fn foreign_containers_exec_and_attach_are_refused() {
    let f = Fixture::new();
    for (method, path) in [
        (Method::DELETE, "/v1.41/containers/berth-j1-helper"),
        (Method::POST, "/v1.41/containers/abc123/start"),
        (Method::POST, "/v1.41/containers/mine/exec"),
        (Method::POST, "/v1.41/containers/mine/attach"),
        (Method::POST, "/v4.3.1/libpod/containers/mine/attach"),
        (Method::POST, "/v1.41/containers/mine/archive"),
    ] {
        let r = f.refusal(Mode::Run, method, path, "", None);
        assert!(!r.fix.is_empty(), "{path}: {r}");
    }
}

#[test]
fn removing_dependents_is_refused() {
    let f = Fixture::new();
    let r = f.refusal(
        Mode::Run,
        Method::DELETE,
        "/v4.3.1/libpod/containers/mine",
        "depend=true",
        None,
    );
    assert!(r.field.contains("depend"), "{r}");
    f.forward(
        Mode::Run,
        Method::DELETE,
        "/v4.3.1/libpod/containers/mine",
        "depend=false&volumes=true",
        None,
    );
}

#[test]
fn symlinked_relative_and_outside_bind_sources_are_refused() {
    let f = Fixture::new();
    let builds = f.builds();
    for (source, why) in [
        (format!("{}/escape/etc", builds.display()), "links"),
        (format!("{}/escape", builds.display()), "link"),
        (format!("{}/alias", builds.display()), "link"),
        (format!("{}/alias/deeper", builds.display()), "links"),
        (format!("{}/sub/../../", builds.display()), "links"),
        (".".to_owned(), "relative"),
        ("sub".to_owned(), "relative"),
        ("named-volume".to_owned(), "relative"),
        ("/etc".to_owned(), "outside"),
        (format!("{}-other/x", builds.display()), "outside"),
    ] {
        let r = f
            .create(&json!({"Image": "x", "HostConfig": {"Binds": [format!("{source}:/h:ro")]}}))
            .expect_err(&source);
        assert!(
            r.problem.contains(why) || r.fix.contains(why),
            "{source}: {r}"
        );
        let r = f.libpod_create(&json!({"image": "x", "mounts": [{"destination": "/h", "type": "bind", "source": source}]}))
            .expect_err(&source);
        assert!(r.field.contains("bind mount source"), "{source}: {r}");
    }
}

#[test]
fn create_bodies_are_read_as_podman_reads_them() {
    let f = Fixture::new();
    let b = f.builds();
    let escapes = [
        // Case-folded keys reach the same fields, and are checked there.
        json!({"Image": "x", "hostconfig": {"binds": ["/etc:/h"]}}),
        json!({"image": "x", "HOSTCONFIG": {"pidmode": "host"}}),
        json!({"Image": "x", "HostConfig": {"networkmode": "host"}}),
        json!({"Image": "x", "HostConfig": {"PRIVILEGED": true}}),
        // Duplicates after folding.
        json!({"Image": "x", "HostConfig": {"Binds": [format!("{}:/h", b.display())], "binds": ["/:/h"]}}),
        json!({"Image": "x", "Image ": "y"}),
        // Fields Docker's create does not have, or that reach beyond the job.
        json!({"Image": "x", "privileged": true}),
        json!({"Image": "x", "HostConfig": {"Mounts": [{"Type": "bind,source=/", "Target": "/h"}]}}),
        json!({"Image": "x", "HostConfig": {"Mounts": [{"Type": "volume", "Source": "v", "Target": "/h"}]}}),
        json!({"Image": "x", "HostConfig": {"Mounts": [{"Type": "bind", "Source": b, "Target": "/h", "BindOptions": {"Propagation": "rshared"}}]}}),
        json!({"Image": "x", "HostConfig": {"Mounts": [{"Type": "tmpfs", "Source": "/etc", "Target": "/h"}]}}),
        json!({"Image": "x", "HostConfig": {"Binds": [format!("{}:/h:z", b.display())]}}),
        json!({"Image": "x", "HostConfig": {"Binds": [format!("{}:/h:rshared", b.display())]}}),
        json!({"Image": "x", "HostConfig": {"Tmpfs": {"/t": "size=1m,bind=/etc"}}}),
        json!({"Image": "x", "HostConfig": {"LogConfig": {"Type": "k8s-file", "Config": {"path": "/home/runner/.bashrc"}}}}),
        json!({"Image": "x", "HostConfig": {"LogConfig": {"Type": "journald", "Config": {}}}}),
        json!({"Image": "x", "HostConfig": {"VolumesFrom": ["berth-j1-job"]}}),
        json!({"Image": "x", "HostConfig": {"Devices": [{"PathOnHost": "/dev/kvm"}]}}),
        json!({"Image": "x", "HostConfig": {"CapAdd": ["SYS_ADMIN"]}}),
        json!({"Image": "x", "HostConfig": {"SecurityOpt": ["seccomp=unconfined"]}}),
        json!({"Image": "x", "HostConfig": {"SecurityOpt": ["label=disable"]}}),
        json!({"Image": "x", "HostConfig": {"IpcMode": "host"}}),
        json!({"Image": "x", "HostConfig": {"UsernsMode": "host"}}),
        json!({"Image": "x", "HostConfig": {"PidMode": "container:berth-j1-job"}}),
        json!({"Image": "x", "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "80"}]}}}),
        json!({"Image": "x", "HostConfig": {"MaskedPaths": ["/proc/kcore"]}}),
        json!({"Image": "x", "HostConfig": {"CgroupParent": "/"}}),
        json!({"Image": "x", "Volumes": {"/data": {}}}),
        json!({"Image": "/etc/passwd"}),
    ];
    for body in &escapes {
        let r = f.create(body).expect_err(&body.to_string());
        assert!(!r.problem.is_empty() && !r.fix.is_empty(), "{body}: {r}");
    }
    let r = f.create(&escapes[1]).expect_err("pid");
    assert!(r.problem.contains("host"), "names the value: {r}");
    let r = f.create(&escapes[4]).expect_err("dup");
    assert!(r.problem.contains("`binds` is given twice"), "{r}");
    for raw in [
        br#"{"Image":"x","Image":"/etc/passwd"}"#.as_slice(),
        br#"{"Image":"x","HostConfig":{"Binds":[],"binds":["/:/h"]}}"#.as_slice(),
        br#"{"Image":"x","HostConfig":{},"hostConfig":{"Privileged":true}}"#.as_slice(),
    ] {
        let r = f.refusal_raw(
            Mode::Run,
            Method::POST,
            "/v1.41/containers/create",
            "",
            Some(raw),
        );
        assert!(r.problem.contains("given twice"), "{r}");
    }
    let r = f
        .create(&json!({"Image": "x", "HostConfig": {"LogConfig": {"Config": {"path": "/x"}}}}))
        .expect_err("log path");
    assert!(
        r.problem
            .contains("`hostconfig`: `logconfig`: `config`: a field that reaches beyond the job"),
        "names the whole path: {r}"
    );
    let r = f.create(&escapes[6]).expect_err("privileged");
    assert!(r.problem.contains("unknown field `privileged`"), "{r}");
}

#[test]
fn libpod_create_bodies_are_read_as_podman_reads_them() {
    let f = Fixture::new();
    let b = f.builds();
    for body in [
        json!({"image": "x", "Privileged": true}),
        json!({"image": "x", "PidNS": {"nsmode": "host"}}),
        json!({"image": "x", "netns": {"nsmode": "host"}}),
        json!({"image": "x", "userns": {"nsmode": "ns:/proc/1/ns/user"}}),
        json!({"image": "x", "Mounts": [{"destination": "/h", "type": "bind", "source": "/"}]}),
        json!({"image": "x", "mounts": [{"destination": "/h", "type": "none", "source": "/etc", "options": ["rbind"]}]}),
        json!({"image": "x", "mounts": [{"destination": "/h", "type": "bind", "source": b, "options": ["rbind", "rshared"]}]}),
        json!({"image": "x", "mounts": [{"destination": "/h", "type": "overlay", "source": b}]}),
        json!({"image": "x", "mounts": [{"destination": "/h", "type": "devpts"}]}),
        json!({"image": "x", "overlay_volumes": [{"source": "/etc", "destination": "/h"}]}),
        json!({"image": "x", "image_volumes": [{"source": "x", "destination": "/h"}]}),
        json!({"image": "x", "volumes": [{"Name": "v", "Dest": "/h"}]}),
        json!({"image": "x", "volumes_from": ["berth-j1-job"]}),
        json!({"image": "x", "log_configuration": {"driver": "k8s-file", "path": "/home/runner/.profile"}}),
        json!({"image": "x", "conmon_pid_file": "/home/runner/.profile"}),
        json!({"image": "x", "pod": "berth-j1"}),
        json!({"image": "x", "cap_add": ["SYS_ADMIN"]}),
        json!({"image": "x", "unmask": ["ALL"]}),
        json!({"image": "x", "seccomp_profile_path": "/tmp/allow.json"}),
        json!({"image": "x", "devices": [{"path": "/dev/kvm"}]}),
        json!({"image": "x", "oci_runtime": "/builds/evil-runtime"}),
        json!({"image": "x", "annotations": {"run.oci.keep_original_groups": "1"}}),
        json!({"image": "x", "rootfs": "/"}),
        json!({"image": "x", "init_path": "/home/runner/evil"}),
        json!({"image": "x", "hostusers": ["runner"]}),
        json!({"image": "x", "groups": ["keep-groups"]}),
        json!({"image": "x", "unified": {"memory.max": "max"}}),
        json!({"image": "x", "resource_limits": {"devices": [{"allow": true, "access": "rwm"}]}}),
        json!({"image": "x", "seccomp_policy": "image"}),
        json!({"image": "x", "systemd": "always", "cgroups_mode": "split"}),
        json!({"image": "x", "secret_env": {"A": "other-jobs-secret"}}),
    ] {
        let r = f.libpod_create(&body).expect_err(&body.to_string());
        assert!(!r.problem.is_empty(), "{body}: {r}");
    }
}

#[test]
fn a_refused_login_never_repeats_the_credentials() {
    let f = Fixture::new();
    for body in [
        br#"{"username":"u","password":"s3cr3t-pass","extra":"s3cr3t-pass"}"#.as_slice(),
        br#"{"username":"u","password":"s3cr3t-pass","Password":"s3cr3t-pass"}"#.as_slice(),
        br#"{"username":"u","password":["s3cr3t-pass"]}"#.as_slice(),
    ] {
        let r = f.refusal_raw(Mode::Build, Method::POST, "/v1.41/auth", "", Some(body));
        assert!(!r.to_string().contains("s3cr3t"), "{r}");
    }
}

#[test]
fn own_containers_resolve_by_name_full_id_or_a_long_unique_prefix() {
    let mut own = Own::default();
    own.insert("aaaaaaaaaaaa1111", Some("one"));
    own.insert("aaaaaaaaaaaa2222", None);
    assert_eq!(own.resolve("one"), Some("aaaaaaaaaaaa1111"));
    assert_eq!(own.resolve("aaaaaaaaaaaa2222"), Some("aaaaaaaaaaaa2222"));
    assert_eq!(own.resolve("aaaaaaaaaaaa1"), Some("aaaaaaaaaaaa1111"));
    assert_eq!(own.resolve("aaaaaaaaaaaa"), None, "ambiguous");
    assert_eq!(own.resolve("aaaaaaaaaaa"), None, "too short");
    assert_eq!(own.resolve("berth-j1-helper"), None);
    let _ = Path::new("/");
}
