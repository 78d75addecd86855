//! Build options (`POST /build`, Docker-compatible and libpod alike): the options Podman 4.3.1
//! reads that stay inside the job, with typed values, re-encoded; the network, namespaces and
//! isolation of RUN steps set by the proxy itself (the job pod's network, or none).

use std::collections::BTreeMap;

use super::policy::image_ref;
use super::wire::{self, Query};
use super::{BuildNetwork, Refusal};

/// Options a build may carry. Anything else (`remote`, `addcaps`, `devices`, `secrets`,
/// `additionalbuildcontexts`, `rusagelogfile`, `securityopt`, `seccomp`, `apparmor`,
/// `volume`, `idmappingoptions`, `outputs`, `cacheto`, ...) is refused.
const ALLOWED: &[&str] = &[
    "t",
    "dockerfile",
    "buildargs",
    "labels",
    "q",
    "rm",
    "forcerm",
    "nocache",
    "pull",
    "pullpolicy",
    "target",
    "platform",
    "layers",
    "squash",
    "httpproxy",
    "identitylabel",
    "omithistory",
    "skipunusedstages",
    "tlsverify",
    "memory",
    "memswap",
    "cpushares",
    "cpuperiod",
    "cpuquota",
    "cpusetcpus",
    "cpusetmems",
    "shmsize",
    "jobs",
    "timestamp",
    "outputformat",
    "networkmode",
    "nsoptions",
    "isolation",
    "ulimits",
    "cachefrom",
    "extrahosts",
    "cgroupparent",
    "version",
    "excludes",
    "rusage",
    "setenv",
    "unsetenv",
    "from",
    "compression",
    "annotations",
    "dropcaps",
    "idmappingoptions",
    "output",
    "seccomp",
    "apparmor",
];

const MULTI: &[&str] = &["t", "platform", "setenv", "unsetenv"];

fn refuse(key: &str, problem: &str, fix: &str) -> Refusal {
    Refusal::new(&format!("build option `{key}`"), problem, fix)
}

/// A Containerfile named relative to the build context, never absolute or leaving it.
fn containerfile(name: &str) -> Result<String, Refusal> {
    let clean = name.strip_prefix("./").unwrap_or(name);
    // Plain path bytes only: Podman also reads a value that merely looks like a JSON list
    // (after whitespace, say) as one, and a URL as a remote Containerfile.
    if clean.is_empty()
        || clean.starts_with('/')
        || !clean
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        || clean.split('/').any(|c| c == ".." || c.is_empty())
    {
        return Err(refuse(
            "dockerfile",
            &format!("{name:?} is not a path inside the build context"),
            "name one Containerfile relative to the context (e.g. -f Containerfile)",
        ));
    }
    Ok(clean.to_owned())
}

/// A namespace option as podman sends it in `nsoptions`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NsOption {
    name: String,
    #[serde(default)]
    host: bool,
    #[serde(default)]
    path: String,
}

/// Whether the job asked for no network (docker `--network none`, podman `--network none`).
fn job_wants_no_network(q: &Query) -> Result<bool, Refusal> {
    let mut none = false;
    if let Some(mode) = q.one("networkmode") {
        match mode {
            "" | "default" | "0" | "NetworkDefault" | "2" | "NetworkEnabled" => {}
            "none" | "1" | "NetworkDisabled" => none = true,
            other => {
                return Err(refuse(
                    "networkmode",
                    &format!(
                        "{other:?}: RUN steps get the job's network or none, never the host's or another container's"
                    ),
                    "leave the network unset, or use --network none",
                ));
            }
        }
    }
    if let Some(ns) = q.one("nsoptions") {
        let options: Option<Vec<NsOption>> = wire::json_option(ns, "nsoptions")?;
        for o in options.unwrap_or_default() {
            // The service's own user namespace (podman's default): the same as leaving it out.
            if o.name == "user" && o.host && o.path.is_empty() {
                continue;
            }
            if o.name != "network" || o.host || !o.path.is_empty() {
                return Err(refuse(
                    "nsoptions",
                    &format!("the {} namespace of the host or of a path", o.name),
                    "leave namespaces unset (or --network none): berth sets them",
                ));
            }
            none = true;
        }
    }
    Ok(none)
}

/// Validates a build's query and returns the query Podman gets.
pub fn query(
    q: &Query,
    libpod: bool,
    endpoint: &str,
    network: &BuildNetwork,
) -> Result<Vec<(&'static str, String)>, Refusal> {
    q.only(endpoint, ALLOWED, MULTI)?;
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for tag in q.all("t") {
        out.push(("t", image_ref("build option `t`", tag)?));
    }
    if let Some(name) = q.one("dockerfile").filter(|d| !d.is_empty()) {
        // Podman reads a JSON list as it is (absolute paths included), a plain name relative
        // to the context.
        let names: Vec<String> = if name.starts_with('[') {
            wire::json_option(name, "dockerfile")?
        } else {
            vec![name.to_owned()]
        };
        let [one] = names.as_slice() else {
            return Err(refuse(
                "dockerfile",
                "several Containerfiles",
                "build from one Containerfile",
            ));
        };
        let one = containerfile(one)?;
        // Both dialects reach the same handler, which reads a JSON list: forwarded as one, the
        // checked name is exactly what Podman sees.
        out.push((
            "dockerfile",
            serde_json::to_string(&[one]).unwrap_or_default(),
        ));
    }
    for key in ["buildargs", "labels"] {
        if let Some(v) = q.one(key).filter(|v| !v.is_empty()) {
            let map: Option<BTreeMap<String, String>> = wire::json_option(v, key)?;
            out.push((
                if key == "labels" {
                    "labels"
                } else {
                    "buildargs"
                },
                serde_json::to_string(&map.unwrap_or_default()).unwrap_or_default(),
            ));
        }
    }
    for (key, canon) in [
        ("q", "q"),
        ("rm", "rm"),
        ("forcerm", "forcerm"),
        ("nocache", "nocache"),
        ("pull", "pull"),
        ("layers", "layers"),
        ("squash", "squash"),
        ("httpproxy", "httpproxy"),
        ("identitylabel", "identitylabel"),
        ("omithistory", "omithistory"),
        ("skipunusedstages", "skipunusedstages"),
        ("tlsverify", "tlsVerify"),
        ("rusage", "rusage"),
    ] {
        if let Some(v) = q.flag(key)? {
            out.push((canon, if v { "1" } else { "0" }.to_owned()));
        }
    }
    for (key, canon) in [
        ("memory", "memory"),
        ("memswap", "memswap"),
        ("cpushares", "cpushares"),
        ("cpuperiod", "cpuperiod"),
        ("cpuquota", "cpuquota"),
        ("shmsize", "shmsize"),
        ("jobs", "jobs"),
        ("timestamp", "timestamp"),
        ("compression", "compression"),
    ] {
        if let Some(v) = q.number(key)? {
            out.push((canon, v.to_string()));
        }
    }
    for key in ["cpusetcpus", "cpusetmems"] {
        if let Some(v) = q.one(key).filter(|v| !v.is_empty()) {
            if !v
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b',' || b == b'-')
            {
                return Err(refuse(
                    key,
                    &format!("{v:?} is not a CPU or node list"),
                    "use a list like 0-3,5",
                ));
            }
            out.push((
                if key == "cpusetcpus" {
                    "cpusetcpus"
                } else {
                    "cpusetmems"
                },
                v.to_owned(),
            ));
        }
    }
    if let Some(p) = q.one("pullpolicy") {
        if !matches!(
            p,
            "always" | "missing" | "never" | "newer" | "ifmissing" | "ifnewer"
        ) {
            return Err(refuse(
                "pullpolicy",
                &format!("{p:?} is not a pull policy"),
                "use always, missing, never or newer",
            ));
        }
        out.push(("pullpolicy", p.to_owned()));
    }
    if let Some(t) = q.one("target").filter(|t| !t.is_empty()) {
        if !t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(refuse(
                "target",
                &format!("{t:?} is not a stage name"),
                "name a stage of the Containerfile",
            ));
        }
        out.push(("target", t.to_owned()));
    }
    for p in q.all("platform").iter().filter(|p| !p.is_empty()) {
        if !p
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b','))
        {
            return Err(refuse(
                "platform",
                &format!("{p:?} is not a platform"),
                "use os/arch[/variant]",
            ));
        }
        out.push(("platform", p.clone()));
    }
    if let Some(from) = q.one("from").filter(|f| !f.is_empty()) {
        out.push(("from", image_ref("build option `from`", from)?));
    }
    if let Some(f) = q.one("outputformat").filter(|f| !f.is_empty()) {
        if !matches!(
            f,
            "application/vnd.oci.image.manifest.v1+json"
                | "application/vnd.docker.distribution.manifest.v2+json"
                | "oci"
                | "docker"
        ) {
            return Err(refuse(
                "outputformat",
                &format!("{f:?} is not an image format"),
                "use oci or docker",
            ));
        }
        out.push(("outputformat", f.to_owned()));
    }
    if let Some(c) = q.one("cachefrom") {
        match c {
            "" | "null" | "[]" => {}
            image => out.push(("cachefrom", image_ref("build option `cachefrom`", image)?)),
        }
    }
    for key in [
        "excludes",
        "annotations",
        "dropcaps",
        "ulimits",
        "extrahosts",
    ] {
        if let Some(v) = q.one(key).filter(|v| !v.is_empty()) {
            let list: Option<Vec<String>> = wire::json_option(v, key)?;
            let list = list.unwrap_or_default();
            if key == "extrahosts"
                && list.iter().any(|h| {
                    !h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
                })
            {
                return Err(refuse(
                    key,
                    "an entry that is not host:address",
                    "give host:address pairs",
                ));
            }
            if key == "dropcaps"
                && list
                    .iter()
                    .any(|c| !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            {
                return Err(refuse(
                    key,
                    "an entry that is not a capability",
                    "name capabilities like CAP_NET_RAW",
                ));
            }
            if key == "ulimits"
                && list.iter().any(|u| {
                    !u.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b':' | b'-'))
                })
            {
                return Err(refuse(
                    key,
                    "an entry that is not name=soft[:hard]",
                    "give ulimits as nofile=1024:2048",
                ));
            }
            if !list.is_empty() {
                out.push((
                    match key {
                        "excludes" => "excludes",
                        "annotations" => "annotations",
                        "dropcaps" => "dropcaps",
                        "ulimits" => "ulimits",
                        _ => "extrahosts",
                    },
                    serde_json::to_string(&list).unwrap_or_default(),
                ));
            }
        }
    }
    for key in ["setenv", "unsetenv"] {
        for v in q.all(key) {
            if v.contains('\0') {
                return Err(refuse(key, "a NUL byte", "send plain NAME=value pairs"));
            }
            out.push((
                if key == "setenv" {
                    "setenv"
                } else {
                    "unsetenv"
                },
                v.clone(),
            ));
        }
    }
    // podman sends its client's defaults; RUN steps always get the service's own profiles.
    if let Some(profile) = q
        .one("seccomp")
        .filter(|v| !v.is_empty() && *v != "/usr/share/containers/seccomp.json" && *v != "default")
    {
        return Err(refuse(
            "seccomp",
            &format!("{profile:?} instead of the default profile"),
            "leave the seccomp profile unset",
        ));
    }
    if let Some(profile) = q
        .one("apparmor")
        .filter(|v| !v.is_empty() && !v.starts_with("containers-default"))
    {
        return Err(refuse(
            "apparmor",
            &format!("{profile:?} instead of the default profile"),
            "leave the AppArmor profile unset",
        ));
    }
    if let Some(output) = q.one("output").filter(|v| !v.is_empty()) {
        // podman sends its first tag again; Podman 4.3.1 does not read it.
        image_ref("build option `output`", output)?;
    }
    if let Some(ids) = q.one("idmappingoptions").filter(|v| !v.is_empty()) {
        // Validated and dropped: RUN steps keep the service's own user namespace mapping.
        let _: Option<super::create::IdMappings> = wire::json_option(ids, "idmappingoptions")?;
    }
    if q.one("cgroupparent").is_some_and(|c| !c.is_empty()) {
        return Err(refuse(
            "cgroupparent",
            "a cgroup of the job's choosing",
            "leave it unset",
        ));
    }
    if let Some(v) = q.one("version").filter(|v| !v.is_empty() && *v != "1") {
        return Err(refuse(
            "version",
            &format!("builder version {v:?} (BuildKit) is not offered here"),
            "build with DOCKER_BUILDKIT=0, or use the job's BUILDKIT_HOST",
        ));
    }
    if let Some(i) = q.one("isolation")
        && !matches!(
            i,
            "" | "default" | "0" | "1" | "2" | "3" | "oci" | "chroot" | "rootless"
        )
    {
        return Err(refuse(
            "isolation",
            &format!("{i:?} is not an isolation"),
            "leave it unset: berth runs RUN steps under OCI isolation",
        ));
    }
    // Chroot isolation can neither join nor create a network namespace: RUN steps always run
    // under Podman's default (OCI) isolation, in the namespace chosen here.
    if libpod {
        out.push(("isolation", "0".to_owned()));
    }
    let no_network = job_wants_no_network(q)?;
    let (path, policy, host) = match network {
        BuildNetwork::Join(path) if !no_network => {
            (path.to_string_lossy().into_owned(), "0", false)
        }
        BuildNetwork::Host if !no_network => (String::new(), "0", true),
        _ => (String::new(), "1", false),
    };
    out.push(("networkmode", policy.to_owned()));
    out.push((
        "nsoptions",
        serde_json::json!([{ "Name": "network", "Host": host, "Path": path }]).to_string(),
    ));
    Ok(out)
}
