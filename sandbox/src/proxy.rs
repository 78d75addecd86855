//! The per-job build socket: a filtering proxy in front of the job's own Podman API service, so
//! the docker CLI and `podman --remote` can build, tag, pull, push and inspect images, while
//! nothing reaches beyond the job: no host bind mounts, privileged mode, devices, host
//! namespaces, added capabilities, unconfined or custom security profiles, and no container the
//! job did not create through this socket (berth's own helper and job containers included).
//!
//! [`decide`] is the pure policy; [`serve`] is the I/O around it. Every refusal is answered with
//! a 403 whose message the CLI prints, and appended to a log that `berth run` copies into the
//! job log.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;

/// What the proxy does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward as is.
    Allow,
    /// Forward, and remember the container the answer names as the job's own.
    AllowCreate,
    /// Refuse with this reason.
    Refuse(String),
}

/// The request as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// HTTP method.
    pub method: &'a Method,
    /// Path without the API version prefix.
    pub path: &'a str,
    /// Query string.
    pub query: &'a str,
    /// JSON body, for container creation.
    pub body: Option<&'a Value>,
}

/// Strips `/v1.41` or `/v4.0.0` and returns (libpod?, rest).
pub fn normalise(path: &str) -> (bool, String) {
    let mut rest = path;
    if let Some(after) = rest.strip_prefix("/v")
        && let Some(slash) = after.find('/')
        && after[..slash]
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.')
    {
        rest = &after[slash..];
    }
    match rest.strip_prefix("/libpod") {
        Some(libpod) => (true, libpod.to_owned()),
        None => (false, rest.to_owned()),
    }
}

fn query_has(query: &str, key: &str, bad: impl Fn(&str) -> bool) -> bool {
    query.split('&').any(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        k.eq_ignore_ascii_case(key) && bad(v)
    })
}

/// Decides one request. `own` holds ids and names of containers the job created here;
/// `bind_root` is the only host directory bind mounts may come from.
pub fn decide(call: &Call<'_>, own: &BTreeSet<String>, bind_root: &Path) -> Decision {
    let segments: Vec<&str> = call.path.trim_matches('/').split('/').collect();
    let refuse = |why: &str| Decision::Refuse(why.to_owned());
    match segments.as_slice() {
        ["_ping"] | ["version"] | ["info"] | ["auth"] => Decision::Allow,
        ["images", ..] => Decision::Allow,
        ["build"] => {
            for key in ["volume", "device", "devices", "cgroupparent", "securityopt"] {
                if query_has(call.query, key, |v| !v.is_empty()) {
                    return Decision::Refuse(format!(
                        "build option `{key}` reaches beyond the job"
                    ));
                }
            }
            if query_has(call.query, "networkmode", |v| {
                v == "host" || v.starts_with("container")
            }) {
                return refuse("builds may not use the host's or another container's network");
            }
            Decision::Allow
        }
        ["containers", "create"] => match call.body {
            Some(body) => check_create(body, bind_root),
            None => refuse("container create without a JSON body"),
        },
        ["containers", "json"] => Decision::Allow,
        ["containers", id, rest @ ..] => {
            let known = own
                .iter()
                .any(|o| o == id || (id.len() >= 12 && o.starts_with(id)));
            if !known {
                return Decision::Refuse(format!(
                    "container {id} was not created through this job's build socket"
                ));
            }
            match rest.first().copied() {
                Some("attach" | "exec") => refuse(
                    "attaching and exec are not offered by the build socket: run containers detached and read `logs`",
                ),
                _ => Decision::Allow,
            }
        }
        _ => Decision::Refuse(format!(
            "`{} {}` is not offered by berth's build socket (it serves builds, images, pushes and pulls)",
            call.method, call.path
        )),
    }
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::String(s)) => !s.is_empty(),
        _ => false,
    }
}

/// Container create bodies, Docker (`HostConfig`) and libpod (`SpecGenerator`) alike.
fn check_create(body: &Value, bind_root: &Path) -> Decision {
    let host = body.get("HostConfig").unwrap_or(&Value::Null);
    let refuse = |why: &str| Decision::Refuse(why.to_owned());
    if truthy(host.get("Privileged")) || truthy(body.get("privileged")) {
        return refuse("privileged containers are never allowed");
    }
    if truthy(host.get("Devices"))
        || truthy(body.get("devices"))
        || truthy(host.get("DeviceRequests"))
    {
        return refuse("host devices are not allowed");
    }
    if truthy(host.get("CapAdd")) || truthy(body.get("cap_add")) {
        return refuse("added capabilities are not allowed");
    }
    if truthy(host.get("VolumesFrom")) || truthy(body.get("volumes_from")) {
        return refuse("volumes from other containers are not allowed");
    }
    for (key, libpod) in [
        ("NetworkMode", "netns"),
        ("PidMode", "pidns"),
        ("IpcMode", "ipcns"),
        ("UTSMode", "utsns"),
        ("UsernsMode", "userns"),
        ("CgroupnsMode", "cgroupns"),
    ] {
        let docker = host.get(key).and_then(Value::as_str).unwrap_or("");
        let pod = body
            .get(libpod)
            .and_then(|n| n.get("nsmode"))
            .and_then(Value::as_str)
            .unwrap_or("");
        for mode in [docker, pod] {
            if mode == "host"
                || mode.starts_with("container")
                || mode == "path"
                || mode.starts_with("ns:")
            {
                return Decision::Refuse(format!("{key} {mode:?} reaches outside the job"));
            }
        }
    }
    let opts = host
        .get("SecurityOpt")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect::<Vec<_>>();
    if opts.iter().any(|o| o.contains("unconfined"))
        || body.get("seccomp_profile_path").and_then(Value::as_str) == Some("unconfined")
    {
        return refuse("unconfined security profiles are not allowed");
    }
    // A profile of the job's own making (docker sends it inline) can allow anything the
    // default refuses; so can unmasking the paths the default hides.
    if opts.iter().any(|o| {
        let kind = o.split(['=', ':']).next().unwrap_or("");
        matches!(
            kind,
            "seccomp" | "apparmor" | "label" | "systempaths" | "unmask" | "mask"
        )
    }) || [
        "seccomp_profile_path",
        "unmask",
        "apparmor_profile",
        "selinux_opts",
    ]
    .iter()
    .any(|key| truthy(body.get(*key)))
    {
        return refuse("custom security profiles and unmasked paths are not allowed");
    }
    let mut sources: Vec<String> = Vec::new();
    for bind in host
        .get("Binds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(src) = bind.as_str().and_then(|b| b.split(':').next())
            && src.starts_with('/')
        {
            sources.push(src.to_owned());
        }
    }
    for mounts in [host.get("Mounts"), body.get("mounts")] {
        for m in mounts.and_then(Value::as_array).into_iter().flatten() {
            let kind = m
                .get("Type")
                .or_else(|| m.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("bind");
            if kind == "bind"
                && let Some(src) = m
                    .get("Source")
                    .or_else(|| m.get("source"))
                    .and_then(Value::as_str)
            {
                sources.push(src.to_owned());
            }
        }
    }
    for src in sources {
        let path = Path::new(&src);
        let inside = path.starts_with(bind_root) && !src.split('/').any(|c| c == "..");
        if !inside {
            return Decision::Refuse(format!(
                "bind mount of host path {src} is outside the job's own directory"
            ));
        }
    }
    Decision::AllowCreate
}

type Body = BoxBody<Bytes, hyper::Error>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

struct State {
    upstream: PathBuf,
    bind_root: PathBuf,
    own: Mutex<BTreeSet<String>>,
    log: PathBuf,
    client: hyper_util::client::legacy::Client<hyperlocal::UnixConnector, Body>,
    insecure_registries: Vec<String>,
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(body.to_string()))
        .unwrap_or_else(|_| Response::new(full("error")))
}

/// `docker login` to an insecure registry the admin allows, which Podman would refuse (see
/// [`crate::registry_login`]); `None`: not such a login, pass it on.
async fn insecure_login(state: &State, body: &Value) -> Option<Response<Body>> {
    let address = body.get("serveraddress").and_then(Value::as_str)?;
    let host = crate::registry_login::registry_host(address);
    if !state.insecure_registries.iter().any(|r| r == host) {
        return None;
    }
    let field = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("");
    Some(
        match crate::registry_login::check(host, field("username"), field("password")).await {
            Ok(()) => json_response(
                StatusCode::OK,
                &serde_json::json!({"Status": "Login Succeeded", "IdentityToken": ""}),
            ),
            Err(why) => json_response(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({"message": format!("login to {host} failed: {why}")}),
            ),
        },
    )
}

fn refused(state: &State, method: &Method, path: &str, why: &str) -> Response<Body> {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&state.log)
    {
        let _ = writeln!(f, "{method} {path}: {why}");
    }
    let body = serde_json::json!({ "message": format!("berth build socket refused: {why}") });
    Response::builder()
        .status(StatusCode::FORBIDDEN)
        .header("content-type", "application/json")
        .body(full(body.to_string()))
        .unwrap_or_else(|_| Response::new(full("refused")))
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, hyper::Error> {
    let method = req.method().clone();
    let raw_path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let (_, path) = normalise(&raw_path);
    let is_create = path.trim_end_matches('/').ends_with("/containers/create");
    let is_auth = method == Method::POST && path.trim_end_matches('/') == "/auth";
    let (parts, incoming) = req.into_parts();
    let (body, json) = if is_create || is_auth {
        let bytes = incoming.collect().await?.to_bytes();
        let json: Option<Value> = serde_json::from_slice(&bytes).ok();
        (full(bytes), json)
    } else {
        (incoming.boxed(), None)
    };
    if is_auth
        && let Some(response) = match &json {
            Some(login) => insecure_login(&state, login).await,
            None => None,
        }
    {
        return Ok(response);
    }
    let own = state.own.lock().map(|o| o.clone()).unwrap_or_default();
    let decision = decide(
        &Call {
            method: &method,
            path: &path,
            query: &query,
            body: json.as_ref(),
        },
        &own,
        &state.bind_root,
    );
    if let Decision::Refuse(why) = &decision {
        return Ok(refused(&state, &method, &raw_path, why));
    }
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = Request::builder()
        .method(method.clone())
        .uri(hyper::Uri::from(hyperlocal::Uri::new(
            &state.upstream,
            path_and_query,
        )));
    for (k, v) in &parts.headers {
        if k != hyper::header::HOST {
            upstream = upstream.header(k, v);
        }
    }
    let Ok(upstream) = upstream.body(body) else {
        return Ok(refused(&state, &method, &raw_path, "malformed request"));
    };
    let response = match state.client.request(upstream).await {
        Ok(r) => r,
        Err(e) => {
            let body = serde_json::json!({ "message": format!("berth build socket: the job's Podman service is unreachable: {e}") });
            return Ok(Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .header("content-type", "application/json")
                .body(full(body.to_string()))
                .unwrap_or_else(|_| Response::new(full("unreachable"))));
        }
    };
    if decision == Decision::AllowCreate && response.status().is_success() {
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await?.to_bytes();
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes)
            && let Some(id) = v.get("Id").or_else(|| v.get("id")).and_then(Value::as_str)
            && let Ok(mut own) = state.own.lock()
        {
            own.insert(id.to_owned());
            if let Some(name) = query.split('&').find_map(|p| p.strip_prefix("name=")) {
                own.insert(name.to_owned());
            }
            if let Some(name) = json
                .as_ref()
                .and_then(|j| j.get("name"))
                .and_then(Value::as_str)
            {
                own.insert(name.to_owned());
            }
        }
        return Ok(Response::from_parts(parts, full(bytes)));
    }
    Ok(response.map(BodyExt::boxed))
}

/// Serves the build socket at `listen` until the process is stopped.
pub async fn serve(
    listen: &Path,
    upstream: &Path,
    bind_root: &Path,
    log: &Path,
    insecure_registries: &[String],
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(listen);
    let listener = tokio::net::UnixListener::bind(listen)?;
    // Non-root users in job images connect too; the directory is the job's alone.
    std::fs::set_permissions(listen, std::fs::Permissions::from_mode(0o666))?;
    let state = Arc::new(State {
        upstream: upstream.to_owned(),
        bind_root: bind_root.to_owned(),
        own: Mutex::new(BTreeSet::new()),
        log: log.to_owned(),
        client: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyperlocal::UnixConnector),
        insecure_registries: insecure_registries.to_vec(),
    });
    loop {
        let (stream, _) = listener.accept().await?;
        let state = state.clone();
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call<'a>(
        method: &'a Method,
        path: &'a str,
        query: &'a str,
        body: Option<&'a Value>,
    ) -> Decision {
        decide(
            &Call {
                method,
                path,
                query,
                body,
            },
            &BTreeSet::from(["abc123def456789".to_owned(), "mine".to_owned()]),
            Path::new("/var/lib/berth/jobs/j1/builds"),
        )
    }

    #[test]
    fn strips_api_versions() {
        assert_eq!(
            normalise("/v1.41/images/json"),
            (false, "/images/json".into())
        );
        assert_eq!(normalise("/v4.0.0/libpod/build"), (true, "/build".into()));
        assert_eq!(normalise("/_ping"), (false, "/_ping".into()));
    }

    #[test]
    fn builds_images_and_pushes_pass() {
        let post = Method::POST;
        let get = Method::GET;
        assert_eq!(call(&get, "/_ping", "", None), Decision::Allow);
        assert_eq!(
            call(&post, "/build", "t=x&dockerfile=Dockerfile", None),
            Decision::Allow
        );
        assert_eq!(call(&post, "/images/x/push", "", None), Decision::Allow);
        assert_eq!(
            call(&post, "/images/x/tag", "repo=y", None),
            Decision::Allow
        );
        assert_eq!(call(&get, "/images/json", "", None), Decision::Allow);
        assert_eq!(call(&post, "/auth", "", None), Decision::Allow);
    }

    #[test]
    fn every_escape_is_refused() {
        let post = Method::POST;
        let escapes = [
            json!({"Image": "x", "HostConfig": {"Privileged": true}}),
            json!({"Image": "x", "HostConfig": {"Binds": ["/etc:/host-etc"]}}),
            json!({"Image": "x", "HostConfig": {"Binds": ["/var/lib/berth/jobs/j2/builds:/b"]}}),
            json!({"Image": "x", "HostConfig": {"Binds": ["/var/lib/berth/jobs/j1/builds/../../j2:/b"]}}),
            json!({"Image": "x", "HostConfig": {"Mounts": [{"Type": "bind", "Source": "/", "Target": "/h"}]}}),
            json!({"Image": "x", "HostConfig": {"Devices": [{"PathOnHost": "/dev/kvm"}]}}),
            json!({"Image": "x", "HostConfig": {"CapAdd": ["SYS_ADMIN"]}}),
            json!({"Image": "x", "HostConfig": {"NetworkMode": "host"}}),
            json!({"Image": "x", "HostConfig": {"PidMode": "host"}}),
            json!({"Image": "x", "HostConfig": {"IpcMode": "host"}}),
            json!({"Image": "x", "HostConfig": {"UsernsMode": "host"}}),
            json!({"Image": "x", "HostConfig": {"SecurityOpt": ["seccomp=unconfined"]}}),
            json!({"Image": "x", "HostConfig": {"SecurityOpt": ["seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}"]}}),
            json!({"Image": "x", "HostConfig": {"SecurityOpt": ["apparmor=my-profile"]}}),
            json!({"Image": "x", "HostConfig": {"SecurityOpt": ["label:disable"]}}),
            json!({"image": "x", "seccomp_profile_path": "/var/lib/berth/jobs/j1/builds/allow-all.json"}),
            json!({"image": "x", "unmask": ["ALL"]}),
            json!({"image": "x", "privileged": true}),
            json!({"image": "x", "mounts": [{"type": "bind", "source": "/home", "destination": "/h"}]}),
            json!({"image": "x", "pidns": {"nsmode": "host"}}),
            json!({"image": "x", "cap_add": ["NET_ADMIN"]}),
        ];
        for body in &escapes {
            assert!(
                matches!(
                    call(&post, "/containers/create", "", Some(body)),
                    Decision::Refuse(_)
                ),
                "not refused: {body}"
            );
        }
        assert!(matches!(
            call(&post, "/build", "t=x&networkmode=host", None),
            Decision::Refuse(_)
        ));
        assert!(matches!(
            call(&post, "/build", "volume=/etc:/e", None),
            Decision::Refuse(_)
        ));
        assert!(matches!(
            call(&post, "/containers/berth-j1-helper/exec", "", None),
            Decision::Refuse(_)
        ));
        assert!(matches!(
            call(
                &Method::DELETE,
                "/containers/berth-j1-job",
                "force=true",
                None
            ),
            Decision::Refuse(_)
        ));
        assert!(matches!(
            call(&post, "/volumes/create", "", None),
            Decision::Refuse(_)
        ));
        assert!(matches!(
            call(&post, "/containers/mine/attach", "", None),
            Decision::Refuse(_)
        ));
    }

    #[test]
    fn the_jobs_own_containers_are_usable() {
        let ok = json!({"Image": "x", "HostConfig": {"Binds": ["/var/lib/berth/jobs/j1/builds/sub:/src"]}});
        assert_eq!(
            call(&Method::POST, "/containers/create", "", Some(&ok)),
            Decision::AllowCreate
        );
        assert_eq!(
            call(&Method::POST, "/containers/mine/start", "", None),
            Decision::Allow
        );
        assert_eq!(
            call(
                &Method::GET,
                "/containers/abc123def456/logs",
                "stdout=1",
                None
            ),
            Decision::Allow
        );
    }
}
