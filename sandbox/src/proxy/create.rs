//! JSON bodies: container create (Docker-compatible `HostConfig` and libpod `SpecGenerator`)
//! and registry login, each read into a typed model whose fields are the names Podman matches
//! (folded to lower case), unknown fields refused, dangerous fields accepted only empty; bind
//! mounts only from beneath the job's builds directory, resolved without following links;
//! tmpfs allowed; every other kind of mount refused.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use super::Refusal;
use super::policy::image_ref;
use super::wire::{self, Folded};

/// A field that may only be absent or empty (`null`, `false`, `0`, `""`, `[]`, `{}`); never
/// forwarded.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Empty;

/// Whether a JSON value says nothing: `null`, `false`, `0`, `""`, `[]`, or an object whose
/// every value is such a scalar (`{"Propagation": ""}`).
fn says_nothing(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        // `{"/data": {}}` (a volume) names something by its key: only scalar values count.
        Value::Object(o) => o.values().all(|v| !v.is_object() && says_nothing(v)),
    }
}

impl<'de> Deserialize<'de> for Empty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Folded(v) = Folded::deserialize(d)?;
        if says_nothing(&v) {
            Ok(Self)
        } else {
            Err(serde::de::Error::custom(
                "a field that reaches beyond the job is set (berth's build socket accepts it only empty)",
            ))
        }
    }
}

/// A string from a fixed list.
fn one_of<'de, D: Deserializer<'de>>(
    d: D,
    allowed: &[&str],
    what: &str,
) -> Result<Option<String>, D::Error> {
    let v: Option<String> = Option::deserialize(d)?;
    match v {
        Some(s) if !allowed.contains(&s.as_str()) => Err(serde::de::Error::custom(format_args!(
            "{what} {s:?} is not allowed (use one of: {})",
            allowed
                .iter()
                .map(|a| if a.is_empty() { "\"\"" } else { a })
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        other => Ok(other),
    }
}

fn ns_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    one_of(
        d,
        &[
            "",
            "private",
            "default",
            "bridge",
            "slirp4netns",
            "none",
            "shareable",
        ],
        "namespace mode",
    )
}

fn log_driver<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    one_of(
        d,
        &["", "json-file", "k8s-file", "none", "passthrough"],
        "log driver",
    )
}

fn restart<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    one_of(d, &["", "no"], "restart policy")
}

fn off<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Option::<bool>::deserialize(d)? {
        Some(true) => Err(serde::de::Error::custom(
            "privileged containers are never allowed",
        )),
        other => Ok(other),
    }
}

fn security_opts<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let v: Option<Vec<String>> = Option::deserialize(d)?;
    if let Some(bad) = v.iter().flatten().find(|o| {
        !matches!(
            o.as_str(),
            "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true"
        )
    }) {
        return Err(serde::de::Error::custom(format_args!(
            "security option {bad:?} is not allowed (only no-new-privileges; no custom or unconfined profiles, labels or unmasking)"
        )));
    }
    Ok(v)
}

/// `LogConfig`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "fields accepted only empty are parsed to be checked, never forwarded"
)]
pub struct LogConfig {
    #[serde(
        default,
        deserialize_with = "log_driver",
        skip_serializing_if = "Option::is_none"
    )]
    r#type: Option<String>,
    #[serde(default, skip_serializing)]
    config: Option<Empty>,
}

/// `RestartPolicy`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "fields accepted only empty are parsed to be checked, never forwarded"
)]
pub struct RestartPolicy {
    #[serde(
        default,
        deserialize_with = "restart",
        skip_serializing_if = "Option::is_none"
    )]
    name: Option<String>,
    #[serde(default, skip_serializing)]
    maximumretrycount: Option<Empty>,
}

/// A Docker `Mounts` entry: bind (checked) or tmpfs.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "fields accepted only empty are parsed to be checked, never forwarded"
)]
pub struct DockerMount {
    r#type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    readonly: Option<bool>,
    #[serde(default, skip_serializing)]
    consistency: Option<Empty>,
    #[serde(default, skip_serializing)]
    bindoptions: Option<Empty>,
    #[serde(default, skip_serializing)]
    volumeoptions: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tmpfsoptions: Option<TmpfsOptions>,
}

/// `TmpfsOptions`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TmpfsOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sizebytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mode: Option<u32>,
}

/// Docker's `HostConfig`, the fields berth offers.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "fields accepted only empty are parsed to be checked, never forwarded"
)]
pub struct HostConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    binds: Option<Vec<String>>,
    #[serde(default, skip_serializing)]
    containeridfile: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    logconfig: Option<LogConfig>,
    #[serde(
        default,
        deserialize_with = "ns_mode",
        skip_serializing_if = "Option::is_none"
    )]
    networkmode: Option<String>,
    #[serde(default, skip_serializing)]
    portbindings: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restartpolicy: Option<RestartPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    autoremove: Option<bool>,
    #[serde(default, skip_serializing)]
    volumedriver: Option<Empty>,
    #[serde(default, skip_serializing)]
    volumesfrom: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    consolesize: Option<Vec<u32>>,
    #[serde(default, skip_serializing)]
    capadd: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    capdrop: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "ns_mode",
        skip_serializing_if = "Option::is_none"
    )]
    cgroupnsmode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dns: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dnsoptions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dnssearch: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    extrahosts: Option<Vec<String>>,
    #[serde(default, skip_serializing)]
    groupadd: Option<Empty>,
    #[serde(
        default,
        deserialize_with = "ns_mode",
        skip_serializing_if = "Option::is_none"
    )]
    ipcmode: Option<String>,
    #[serde(default, skip_serializing)]
    cgroup: Option<Empty>,
    #[serde(default, skip_serializing)]
    links: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    oomscoreadj: Option<i64>,
    #[serde(
        default,
        deserialize_with = "ns_mode",
        skip_serializing_if = "Option::is_none"
    )]
    pidmode: Option<String>,
    #[serde(default, deserialize_with = "off", skip_serializing)]
    privileged: Option<bool>,
    #[serde(default, skip_serializing)]
    publishallports: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    readonlyrootfs: Option<bool>,
    #[serde(
        default,
        deserialize_with = "security_opts",
        skip_serializing_if = "Option::is_none"
    )]
    securityopt: Option<Vec<String>>,
    #[serde(default, skip_serializing)]
    storageopt: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tmpfs: Option<BTreeMap<String, String>>,
    #[serde(
        default,
        deserialize_with = "ns_mode",
        skip_serializing_if = "Option::is_none"
    )]
    utsmode: Option<String>,
    #[serde(
        default,
        deserialize_with = "ns_mode",
        skip_serializing_if = "Option::is_none"
    )]
    usernsmode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shmsize: Option<i64>,
    #[serde(default, skip_serializing)]
    sysctls: Option<Empty>,
    #[serde(default, skip_serializing)]
    runtime: Option<Empty>,
    #[serde(default, skip_serializing)]
    isolation: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cpushares: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    memory: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nanocpus: Option<i64>,
    #[serde(default, skip_serializing)]
    cgroupparent: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    blkioweight: Option<i64>,
    #[serde(default, skip_serializing)]
    blkioweightdevice: Option<Empty>,
    #[serde(default, skip_serializing)]
    blkiodevicereadbps: Option<Empty>,
    #[serde(default, skip_serializing)]
    blkiodevicewritebps: Option<Empty>,
    #[serde(default, skip_serializing)]
    blkiodevicereadiops: Option<Empty>,
    #[serde(default, skip_serializing)]
    blkiodevicewriteiops: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cpuperiod: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cpuquota: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cpurealtimeperiod: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cpurealtimeruntime: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cpusetcpus: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cpusetmems: Option<String>,
    #[serde(default, skip_serializing)]
    devices: Option<Empty>,
    #[serde(default, skip_serializing)]
    devicecgrouprules: Option<Empty>,
    #[serde(default, skip_serializing)]
    devicerequests: Option<Empty>,
    #[serde(default, skip_serializing)]
    kernelmemory: Option<Empty>,
    #[serde(default, skip_serializing)]
    kernelmemorytcp: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    memoryreservation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    memoryswap: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    memoryswappiness: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    oomkilldisable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pidslimit: Option<i64>,
    #[serde(default, skip_serializing)]
    ulimits: Option<Empty>,
    #[serde(default, skip_serializing)]
    cpucount: Option<Empty>,
    #[serde(default, skip_serializing)]
    cpupercent: Option<Empty>,
    #[serde(default, skip_serializing)]
    iomaximumiops: Option<Empty>,
    #[serde(default, skip_serializing)]
    iomaximumbandwidth: Option<Empty>,
    #[serde(default, skip_serializing)]
    maskedpaths: Option<Empty>,
    #[serde(default, skip_serializing)]
    readonlypaths: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mounts: Option<Vec<DockerMount>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    init: Option<bool>,
}

/// `NetworkingConfig`: only empty endpoint settings.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "fields accepted only empty are parsed to be checked, never forwarded"
)]
pub struct NetworkingConfig {
    #[serde(default, skip_serializing)]
    endpointsconfig: Option<Empty>,
}

/// A Docker-compatible container create body.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "fields accepted only empty are parsed to be checked, never forwarded"
)]
pub struct DockerCreate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    domainname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attachstdin: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attachstdout: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attachstderr: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tty: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    openstdin: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stdinonce: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cmd: Option<Vec<String>>,
    image: String,
    #[serde(default, skip_serializing)]
    volumes: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    workingdir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing)]
    onbuild: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stopsignal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stoptimeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exposedports: Option<BTreeMap<String, Option<BTreeMap<String, Empty>>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    networkdisabled: Option<bool>,
    #[serde(default, skip_serializing)]
    macaddress: Option<Empty>,
    #[serde(default, skip_serializing)]
    healthcheck: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    argsescaped: Option<bool>,
    #[serde(default, skip_serializing)]
    shell: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hostconfig: Option<HostConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    networkingconfig: Option<NetworkingConfig>,
}

const MOUNT_OPTIONS_FIX: &str =
    "use only ro or rw (z, Z, propagation and other options are refused)";

/// A bind source: absolute, beneath the job's builds directory, reached without following any
/// link, a directory or a regular file.
pub fn check_bind_source(source: &str, binds: Option<&berth_beneath::Dir>) -> Result<(), Refusal> {
    let field = format!("bind mount source {source:?}");
    let Some(root) = binds else {
        return Err(Refusal::new(
            &field,
            "bind mounts are not offered",
            "ask the admin for build_socket = \"run\"",
        ));
    };
    if !source.starts_with('/') {
        return Err(Refusal::new(
            &field,
            "a relative path or named volume (Podman would resolve it against its own working directory, or create a volume)",
            &format!("bind an absolute path beneath {}", root.path().display()),
        ));
    }
    let Ok(rel) = Path::new(source).strip_prefix(root.path()) else {
        return Err(Refusal::new(
            &field,
            "outside the job's builds directory",
            &format!("bind only paths beneath {}", root.path().display()),
        ));
    };
    if rel.as_os_str().is_empty() {
        return Ok(());
    }
    let meta = root.metadata(rel).map_err(|e| {
        Refusal::new(
            &field,
            &format!(
                "cannot be reached beneath the job's builds directory without following links ({e})"
            ),
            "bind a real directory or file, not a symbolic link or a path through one",
        )
    })?;
    if meta.is(berth_beneath::Kind::Directory) || meta.is(berth_beneath::Kind::File) {
        Ok(())
    } else {
        Err(Refusal::new(
            &field,
            "is neither a directory nor a regular file (a symbolic link is never followed)",
            "bind a real directory or file",
        ))
    }
}

fn absolute_target(target: &str) -> Result<(), Refusal> {
    if target.starts_with('/') && !target.split('/').any(|c| c == "..") {
        Ok(())
    } else {
        Err(Refusal::new(
            &format!("mount destination {target:?}"),
            "not an absolute path",
            "mount at an absolute path in the container",
        ))
    }
}

fn tmpfs_options(target: &str, options: &str) -> Result<(), Refusal> {
    for o in options.split(',').filter(|o| !o.is_empty()) {
        let name = o.split('=').next().unwrap_or("");
        if !matches!(
            name,
            "size"
                | "mode"
                | "ro"
                | "rw"
                | "noexec"
                | "exec"
                | "nosuid"
                | "nodev"
                | "uid"
                | "gid"
                | "nr_inodes"
                | "rprivate"
                | "private"
                | "tmpcopyup"
                | "notmpcopyup"
                | "noatime"
                | "relatime"
                | "strictatime"
        ) {
            return Err(Refusal::new(
                &format!("tmpfs {target:?} option {o:?}"),
                "not a tmpfs option berth allows",
                "use size, mode, ro/rw, noexec, nosuid, nodev, uid, gid",
            ));
        }
    }
    Ok(())
}

/// Checks and re-serialises a Docker-compatible create body.
pub fn docker(body: &[u8], binds: Option<&berth_beneath::Dir>) -> Result<Vec<u8>, Refusal> {
    let create: DockerCreate = wire::json(body, "container create body")?;
    image_ref("field `Image`", &create.image)?;
    if let Some(host) = &create.hostconfig {
        for bind in host.binds.iter().flatten() {
            let parts: Vec<&str> = bind.split(':').collect();
            let (source, target, options) = match parts.as_slice() {
                [s, t] => (*s, *t, ""),
                [s, t, o] => (*s, *t, *o),
                _ => {
                    return Err(Refusal::new(
                        &format!("bind {bind:?}"),
                        "not source:destination[:options]",
                        "write binds as /source:/destination[:ro]",
                    ));
                }
            };
            check_bind_source(source, binds)?;
            absolute_target(target)?;
            if options.split(',').any(|o| !matches!(o, "" | "ro" | "rw")) {
                return Err(Refusal::new(
                    &format!("bind {bind:?} options"),
                    "not ro or rw",
                    MOUNT_OPTIONS_FIX,
                ));
            }
        }
        for mount in host.mounts.iter().flatten() {
            absolute_target(&mount.target)?;
            match mount.r#type.as_str() {
                "bind" => check_bind_source(mount.source.as_deref().unwrap_or(""), binds)?,
                "tmpfs" if mount.source.as_deref().unwrap_or("").is_empty() => {}
                other => {
                    return Err(Refusal::new(
                        &format!("mount type {other:?}"),
                        "not offered (only bind beneath the job's builds directory, and tmpfs)",
                        "bind a directory beneath the builds directory, or use tmpfs",
                    ));
                }
            }
        }
        for (target, options) in host.tmpfs.iter().flatten() {
            absolute_target(target)?;
            tmpfs_options(target, options)?;
        }
    }
    Ok(serde_json::to_vec(&create).unwrap_or_default())
}

/// A libpod namespace.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "fields accepted only empty are parsed to be checked, never forwarded"
)]
pub struct Namespace {
    #[serde(
        default,
        deserialize_with = "ns_mode",
        skip_serializing_if = "Option::is_none"
    )]
    nsmode: Option<String>,
    #[serde(default, skip_serializing)]
    value: Option<Empty>,
}

/// A libpod mount: bind (checked) or tmpfs.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LibpodMount {
    destination: String,
    r#type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    options: Option<Vec<String>>,
}

/// libpod `log_configuration`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "fields accepted only empty are parsed to be checked, never forwarded"
)]
pub struct LibpodLog {
    #[serde(
        default,
        deserialize_with = "log_driver",
        skip_serializing_if = "Option::is_none"
    )]
    driver: Option<String>,
    #[serde(default, skip_serializing)]
    path: Option<Empty>,
    #[serde(default, skip_serializing)]
    options: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<i64>,
}

/// A libpod `SpecGenerator`, the fields berth offers.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "fields accepted only empty are parsed to be checked, never forwarded"
)]
pub struct LibpodCreate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    raw_image_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    env: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    terminal: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stdin: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    work_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stop_signal: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stop_timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    remove: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mounts: Option<Vec<LibpodMount>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    netns: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pidns: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ipcns: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    utsns: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    userns: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cgroupns: Option<Namespace>,
    #[serde(default, deserialize_with = "off", skip_serializing)]
    privileged: Option<bool>,
    #[serde(default, skip_serializing)]
    cap_add: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cap_drop: Option<Vec<String>>,
    #[serde(default, skip_serializing)]
    volumes: Option<Empty>,
    #[serde(default, skip_serializing)]
    image_volumes: Option<Empty>,
    #[serde(default, skip_serializing)]
    overlay_volumes: Option<Empty>,
    #[serde(default, skip_serializing)]
    volumes_from: Option<Empty>,
    #[serde(default, skip_serializing)]
    devices: Option<Empty>,
    #[serde(default, skip_serializing)]
    device_cgroup_rule: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    log_configuration: Option<LibpodLog>,
    #[serde(default, skip_serializing)]
    conmon_pid_file: Option<Empty>,
    #[serde(default, skip_serializing)]
    pod: Option<Empty>,
    #[serde(default, skip_serializing)]
    dependency_containers: Option<Empty>,
    #[serde(default, skip_serializing)]
    portmappings: Option<Empty>,
    #[serde(default, skip_serializing)]
    publish_image_ports: Option<Empty>,
    #[serde(default, skip_serializing)]
    networks: Option<Empty>,
    #[serde(default, skip_serializing)]
    cni_networks: Option<Empty>,
    #[serde(default, skip_serializing)]
    seccomp_profile_path: Option<Empty>,
    #[serde(default, skip_serializing)]
    apparmor_profile: Option<Empty>,
    #[serde(default, skip_serializing)]
    selinux_opts: Option<Empty>,
    #[serde(default, skip_serializing)]
    unmask: Option<Empty>,
    #[serde(default, skip_serializing)]
    procfs_opts: Option<Empty>,
    #[serde(default, skip_serializing)]
    sysctl: Option<Empty>,
    #[serde(default, skip_serializing)]
    oci_runtime: Option<Empty>,
    #[serde(default, skip_serializing)]
    idmappings: Option<IdMappings>,
    #[serde(default, skip_serializing)]
    groups: Option<Empty>,
    #[serde(default, skip_serializing)]
    env_host: Option<Empty>,
    #[serde(default, skip_serializing)]
    cgroup_parent: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image_volume_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seccomp_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    umask: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    systemd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    use_image_hosts: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    use_image_resolve_conf: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    read_only_filesystem: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    no_new_privileges: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    init: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    httpproxy: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shm_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    containercreatecommand: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image_os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image_arch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image_variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    envmerge: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unsetenv: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unsetenvall: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    create_working_dir: Option<bool>,
    #[serde(
        default,
        deserialize_with = "cgroups_mode",
        skip_serializing_if = "Option::is_none"
    )]
    cgroups_mode: Option<String>,
    #[serde(
        default,
        deserialize_with = "sdnotify",
        skip_serializing_if = "Option::is_none"
    )]
    sdnotifymode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dns_server: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dns_search: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dns_option: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hostadd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    oom_score_adj: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    health_check_on_failure_action: Option<i64>,
    #[serde(default, skip_serializing)]
    healthconfig: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resource_limits: Option<ResourceLimits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    r_limits: Option<Vec<Rlimit>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cpu_period: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cpu_quota: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expose: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    volatile: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    manage_password: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mask: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "restart",
        skip_serializing_if = "Option::is_none"
    )]
    restart_policy: Option<String>,
    #[serde(default, skip_serializing)]
    restart_tries: Option<Empty>,
    #[serde(default, skip_serializing)]
    unified: Option<Empty>,
    #[serde(default, skip_serializing)]
    weightdevice: Option<Empty>,
    #[serde(default, skip_serializing)]
    throttlereadbpsdevice: Option<Empty>,
    #[serde(default, skip_serializing)]
    throttlewritebpsdevice: Option<Empty>,
    #[serde(default, skip_serializing)]
    throttlereadiopsdevice: Option<Empty>,
    #[serde(default, skip_serializing)]
    throttlewriteiopsdevice: Option<Empty>,
    #[serde(default, skip_serializing)]
    network_options: Option<Empty>,
    #[serde(default, skip_serializing)]
    personality: Option<Empty>,
    #[serde(default, skip_serializing)]
    secret_env: Option<Empty>,
    #[serde(default, skip_serializing)]
    secrets: Option<Empty>,
    #[serde(default, skip_serializing)]
    chroot_directories: Option<Empty>,
    #[serde(default, skip_serializing)]
    rootfs: Option<Empty>,
    #[serde(default, skip_serializing)]
    rootfs_overlay: Option<Empty>,
    #[serde(default, skip_serializing)]
    rootfs_propagation: Option<Empty>,
    #[serde(default, skip_serializing)]
    storage_opts: Option<Empty>,
    #[serde(default, skip_serializing)]
    init_path: Option<Empty>,
    #[serde(default, skip_serializing)]
    init_container_type: Option<Empty>,
    #[serde(default, skip_serializing)]
    passwd_entry: Option<Empty>,
    #[serde(default, skip_serializing)]
    hostusers: Option<Empty>,
    #[serde(default, skip_serializing)]
    dependencycontainers: Option<Empty>,
    #[serde(default, skip_serializing)]
    namespace: Option<Empty>,
    #[serde(default, skip_serializing)]
    devices_from: Option<Empty>,
    #[serde(default, skip_serializing)]
    host_device_list: Option<Empty>,
}

/// Id mappings as podman sends them (`idmappingoptions` of a build, `idmappings` of a create:
/// its client-side view); checked for shape, then dropped: Podman's own mapping applies.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "parsed to be checked, then dropped")]
pub struct IdMappings {
    #[serde(default)]
    hostuidmapping: Option<bool>,
    #[serde(default)]
    hostgidmapping: Option<bool>,
    #[serde(default)]
    uidmap: Option<Vec<Folded>>,
    #[serde(default)]
    gidmap: Option<Vec<Folded>>,
    #[serde(default)]
    autousernsopts: Option<Folded>,
    #[serde(default)]
    autouserns: Option<bool>,
}

/// libpod `resource_limits`: pids, memory and CPU only (no devices, block I/O, hugepages or
/// raw cgroup files).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pids: Option<BTreeMap<String, i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    memory: Option<BTreeMap<String, i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cpu: Option<BTreeMap<String, serde_json::Value>>,
}

/// One rlimit (bounded by the service's own hard limits).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rlimit {
    r#type: String,
    hard: u64,
    soft: u64,
}

fn cgroups_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    one_of(d, &["", "enabled", "disabled", "no-conmon"], "cgroups mode")
}

fn sdnotify<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    one_of(d, &["", "container", "conmon", "ignore"], "sd-notify mode")
}

/// Checks and re-serialises a libpod create body; returns it and the name it gives.
pub fn libpod(
    body: &[u8],
    binds: Option<&berth_beneath::Dir>,
) -> Result<(Vec<u8>, Option<String>), Refusal> {
    let create: LibpodCreate = wire::json(body, "container create body")?;
    image_ref("field `image`", &create.image)?;
    if let Some(name) = &create.name {
        container_name(name)?;
    }
    // OCI runtimes read some annotations as settings (crun's `run.oci.*` keep host groups,
    // for one): only podman's own bookkeeping passes.
    if let Some(key) = create
        .annotations
        .iter()
        .flatten()
        .map(|(k, _)| k)
        .find(|k| {
            !matches!(
                k.as_str(),
                "io.container.manager"
                    | "io.kubernetes.cri-o.TTY"
                    | "io.kubernetes.cri-o.ContainerType"
                    | "io.podman.annotations.autoremove"
                    | "io.podman.annotations.init"
            )
        })
    {
        return Err(Refusal::new(
            &format!("annotation `{key}`"),
            "an annotation the OCI runtime may read as a setting",
            "leave annotations unset",
        ));
    }
    if let Some(mode) = &create.image_volume_mode
        && !matches!(mode.as_str(), "" | "anonymous" | "tmpfs" | "ignore")
    {
        return Err(Refusal::new(
            "field `image_volume_mode`",
            &format!("{mode:?}"),
            "use anonymous, tmpfs or ignore",
        ));
    }
    if let Some(p) = &create.seccomp_policy
        && !matches!(p.as_str(), "" | "default")
    {
        return Err(Refusal::new(
            "field `seccomp_policy`",
            &format!("{p:?}"),
            "leave it default",
        ));
    }
    for mount in create.mounts.iter().flatten() {
        absolute_target(&mount.destination)?;
        let options = mount.options.as_deref().unwrap_or_default();
        match mount.r#type.as_str() {
            "bind" => {
                check_bind_source(mount.source.as_deref().unwrap_or(""), binds)?;
                if let Some(bad) = options.iter().find(|o| {
                    !matches!(
                        o.as_str(),
                        "ro" | "rw" | "rbind" | "bind" | "rprivate" | "private"
                    )
                }) {
                    return Err(Refusal::new(
                        &format!("bind mount option {bad:?}"),
                        "not offered",
                        MOUNT_OPTIONS_FIX,
                    ));
                }
            }
            "tmpfs"
                if mount
                    .source
                    .as_deref()
                    .is_none_or(|s| s.is_empty() || s == "tmpfs") =>
            {
                tmpfs_options(&mount.destination, &options.join(","))?;
            }
            other => {
                return Err(Refusal::new(
                    &format!("mount type {other:?}"),
                    "not offered (only bind beneath the job's builds directory, and tmpfs)",
                    "bind a directory beneath the builds directory, or use tmpfs",
                ));
            }
        }
    }
    let name = create.name.clone();
    Ok((serde_json::to_vec(&create).unwrap_or_default(), name))
}

/// A container name the job chooses.
pub fn container_name(name: &str) -> Result<String, Refusal> {
    let ok = name.len() <= 128
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(Refusal::new(
            &format!("container name {name:?}"),
            "not a container name",
            "use letters, digits, _ . and -",
        ))
    }
}

/// `docker login`'s body.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Login {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    serveraddress: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identitytoken: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    registrytoken: Option<String>,
}

/// Checks and re-serialises a login. The refusal never repeats the body or the parser's
/// message (which could quote a credential).
pub fn login(body: &[u8]) -> Result<Vec<u8>, Refusal> {
    let login: Login = serde_json::from_slice::<Folded>(body)
        .ok()
        .and_then(|Folded(v)| wire::from_folded(v).ok())
        .ok_or_else(|| {
            Refusal::new(
                "login body",
                "not the JSON the docker CLI sends (fields username, password, serveraddress, each once)",
                "log in with `docker login`",
            )
        })?;
    Ok(serde_json::to_vec(&login).unwrap_or_default())
}
