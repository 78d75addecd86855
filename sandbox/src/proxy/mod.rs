//! The per-job build socket: a proxy in front of the job's own Podman API service that fails
//! closed. Every request is parsed into a typed model the way Podman would read it (query
//! options percent-decoded and matched without regard to case, JSON keys folded, duplicates
//! refused), checked against an allowlist of endpoints, options and fields, and forwarded
//! re-serialised from that model, never as the raw bytes, so Podman sees exactly what was
//! checked. What the allowlist offers depends on the admin's `build_socket` mode (see
//! [`Mode`]): builds, images, pushes and pulls; in `run` mode also containers the job created
//! here, with bind mounts only from beneath the job's builds directory (resolved without
//! following links) and tmpfs.
//!
//! [`decide`] is the pure policy ([`policy`], [`build`], [`create`]); [`serve`] is the I/O
//! around it. Every refusal is answered with a 403 whose message names the option or field and
//! the fix, and appended to a log that `berth run` copies into the job log.

pub mod build;
pub mod create;
pub mod policy;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;

pub use berth_config::admin::BuildSocket as Mode;
pub use policy::{Call, Context, decide};

/// Why the build socket refuses a request: the option or field, what is wrong, and the fix.
/// Never carries a secret (credentials are not parsed into messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}; {fix}")]
pub struct Refusal {
    /// The endpoint, option or field concerned.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
    /// What to do instead.
    pub fix: String,
}

impl Refusal {
    /// A refusal of `field`.
    pub fn new(field: &str, problem: &str, fix: &str) -> Self {
        Self {
            field: field.to_owned(),
            problem: problem.to_owned(),
            fix: fix.to_owned(),
        }
    }
}

/// The body Podman gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardBody {
    /// None (whatever the job sent is dropped).
    Empty,
    /// The job's body streamed unchanged: build contexts and image archives, which Podman
    /// reads as tar only.
    Stream,
    /// JSON re-serialised from the validated model.
    Json(Vec<u8>),
}

/// What the proxy does after Podman answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    /// Nothing.
    Nothing,
    /// Remember the container the answer names as the job's own, under this name too.
    Created {
        /// The name the job gave it.
        name: Option<String>,
    },
}

/// A request rebuilt from the validated model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// HTTP method.
    pub method: Method,
    /// Path (with the API version prefix the client used) and query, re-encoded.
    pub path_and_query: String,
    /// The body.
    pub body: ForwardBody,
    /// Follow-up.
    pub after: After,
}

/// What the proxy does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward this request.
    Forward(Forward),
    /// Refuse it.
    Refuse(Refusal),
}

/// The containers the job created through this socket: ids, and the names it gave them.
#[derive(Debug, Clone, Default)]
pub struct Own {
    ids: BTreeSet<String>,
    names: BTreeMap<String, String>,
}

impl Own {
    /// Records a container the socket created.
    pub fn insert(&mut self, id: &str, name: Option<&str>) {
        self.ids.insert(id.to_owned());
        if let Some(name) = name {
            self.names.insert(name.to_owned(), id.to_owned());
        }
    }

    /// Every id this socket handed out.
    pub fn ids(&self) -> Vec<String> {
        self.ids.iter().cloned().collect()
    }

    /// The full id `reference` names: a name the job gave, a full id, or a unique prefix of at
    /// least 12 characters of an id this socket handed out.
    pub fn resolve(&self, reference: &str) -> Option<&str> {
        if let Some(id) = self.names.get(reference) {
            return Some(id);
        }
        if let Some(id) = self.ids.get(reference) {
            return Some(id);
        }
        if reference.len() < 12 || !reference.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut matching = self.ids.iter().filter(|id| id.starts_with(reference));
        match (matching.next(), matching.next()) {
            (Some(id), None) => Some(id),
            _ => None,
        }
    }
}

/// The network namespace build RUN steps get, chosen by the proxy, never by the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildNetwork {
    /// The job pod's network namespace (`/proc/<infra pid>/ns/net`): the job's own network,
    /// without the host's loopback.
    Join(PathBuf),
    /// The admin runs job pods in the host's network (`network = "host"`): that namespace is
    /// the job's network, and the only one a rootless runtime cannot join by path.
    Host,
    /// A fresh namespace with loopback only.
    None,
}

type Body = BoxBody<Bytes, hyper::Error>;

/// The largest JSON body the proxy reads (container create, login).
const JSON_LIMIT: usize = 1 << 20;

/// Request headers passed on to Podman; every other header is dropped (no upgrades, no
/// hop-by-hop tricks).
const HEADERS: &[&str] = &[
    "x-registry-auth",
    "x-registry-config",
    "user-agent",
    "accept",
];

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

struct State {
    upstream: PathBuf,
    mode: Mode,
    binds: Option<berth_beneath::Dir>,
    own: Mutex<Own>,
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

fn refused(state: &State, method: &Method, path: &str, why: &Refusal) -> Response<Body> {
    // The path only: query values may carry anything the job typed.
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&state.log)
    {
        let _ = writeln!(f, "{method} {path}: {why}");
    }
    json_response(
        StatusCode::FORBIDDEN,
        &serde_json::json!({ "message": format!("berth build socket refused: {why}") }),
    )
}

/// GET `path` on the job's Podman service, as JSON.
async fn upstream_json(state: &State, path: &str) -> Option<Value> {
    let request = Request::builder()
        .method(Method::GET)
        .uri(hyper::Uri::from(hyperlocal::Uri::new(
            &state.upstream,
            path,
        )))
        .body(full(Bytes::new()))
        .ok()?;
    let response = state.client.request(request).await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let bytes = Limited::new(response.into_body(), JSON_LIMIT)
        .collect()
        .await
        .ok()?
        .to_bytes();
    serde_json::from_slice(&bytes).ok()
}

/// The network for build RUN steps: the namespace of the job pod's infra container (the pod is
/// the only one in the job's store when the socket serves), else none at all.
async fn build_network(state: &State) -> BuildNetwork {
    let pods = upstream_json(state, "/v4.0.0/libpod/pods/json").await;
    let infra = match pods.as_ref().and_then(Value::as_array).map(Vec::as_slice) {
        Some([pod]) => pod
            .get("InfraId")
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    };
    let Some(infra) = infra.filter(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_hexdigit()))
    else {
        return BuildNetwork::None;
    };
    let inspect = upstream_json(state, &format!("/v4.0.0/libpod/containers/{infra}/json")).await;
    match inspect
        .as_ref()
        .and_then(|i| i.pointer("/State/Pid"))
        .and_then(Value::as_u64)
    {
        Some(pid) if pid > 0 => {
            use std::os::unix::fs::MetadataExt;
            let ns = PathBuf::from(format!("/proc/{pid}/ns/net"));
            let inode = |p: &std::path::Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
            if inode(&ns).is_some()
                && inode(&ns) == inode(std::path::Path::new("/proc/self/ns/net"))
            {
                BuildNetwork::Host
            } else {
                BuildNetwork::Join(ns)
            }
        }
        _ => BuildNetwork::None,
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, hyper::Error> {
    let method = req.method().clone();
    let raw_path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let (parts, incoming) = req.into_parts();
    let wants_json = policy::wants_json(&method, &raw_path);
    let (stream, json) = if wants_json {
        match Limited::new(incoming, JSON_LIMIT).collect().await {
            Ok(collected) => (None, Some(collected.to_bytes())),
            Err(_) => {
                let why = Refusal::new(
                    "body",
                    "larger than 1 MiB or cut short",
                    "send a smaller JSON body",
                );
                return Ok(refused(&state, &method, &raw_path, &why));
            }
        }
    } else {
        (Some(incoming), None)
    };
    let network = if policy::is_build(&raw_path) {
        build_network(&state).await
    } else {
        BuildNetwork::None
    };
    let own = state.own.lock().map(|o| o.clone()).unwrap_or_default();
    let decision = decide(
        &Call {
            method: &method,
            path: &raw_path,
            query: &query,
            body: json.as_deref(),
        },
        &Context {
            mode: state.mode,
            own: &own,
            binds: state.binds.as_ref(),
            build_network: &network,
        },
    );
    let forward = match decision {
        Decision::Refuse(why) => return Ok(refused(&state, &method, &raw_path, &why)),
        Decision::Forward(forward) => forward,
    };
    if policy::is_login(&forward)
        && let ForwardBody::Json(bytes) = &forward.body
        && let Ok(login) = serde_json::from_slice::<Value>(bytes)
        && let Some(response) = insecure_login(&state, &login).await
    {
        return Ok(response);
    }
    let mut upstream = Request::builder()
        .method(forward.method.clone())
        .uri(hyper::Uri::from(hyperlocal::Uri::new(
            &state.upstream,
            &forward.path_and_query,
        )));
    for (k, v) in &parts.headers {
        if HEADERS.contains(&k.as_str()) {
            upstream = upstream.header(k, v);
        }
    }
    let body = match (&forward.body, stream) {
        (ForwardBody::Stream, Some(incoming)) => {
            for name in [hyper::header::CONTENT_TYPE, hyper::header::CONTENT_LENGTH] {
                if let Some(v) = parts.headers.get(&name) {
                    upstream = upstream.header(name, v);
                }
            }
            incoming.boxed()
        }
        (ForwardBody::Json(bytes), _) => {
            upstream = upstream.header(hyper::header::CONTENT_TYPE, "application/json");
            full(bytes.clone())
        }
        _ => full(Bytes::new()),
    };
    let Ok(upstream) = upstream.body(body) else {
        let why = Refusal::new("request", "cannot be rebuilt", "send a well-formed request");
        return Ok(refused(&state, &method, &raw_path, &why));
    };
    let response = match state.client.request(upstream).await {
        Ok(r) => r,
        Err(e) => {
            return Ok(json_response(
                StatusCode::BAD_GATEWAY,
                &serde_json::json!({ "message": format!("berth build socket: the job's Podman service is unreachable: {e}") }),
            ));
        }
    };
    if let After::Created { name } = &forward.after
        && response.status().is_success()
    {
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await?.to_bytes();
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes)
            && let Some(id) = v.get("Id").or_else(|| v.get("id")).and_then(Value::as_str)
            && let Ok(mut own) = state.own.lock()
        {
            own.insert(id, name.as_deref());
        }
        return Ok(Response::from_parts(parts, full(bytes)));
    }
    Ok(response.map(BodyExt::boxed))
}

/// How prepare starts the proxy: the berth binary and the admin's mode.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The berth binary (`berth build-proxy`).
    pub berth: PathBuf,
    /// What the socket offers.
    pub mode: Mode,
}

/// What `berth build-proxy` serves.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// The socket to listen on.
    pub listen: PathBuf,
    /// The job's Podman API socket.
    pub upstream: PathBuf,
    /// The job's builds directory: the only host directory containers may bind-mount from.
    pub bind_root: PathBuf,
    /// Where refusals are logged.
    pub log: PathBuf,
    /// Plain-HTTP registries the admin allows, for `docker login`.
    pub insecure_registries: Vec<String>,
    /// What the socket offers.
    pub mode: Mode,
}

/// Serves the build socket until the process is stopped.
pub async fn serve(settings: &ProxySettings) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let binds = match settings.mode {
        Mode::Run => Some(berth_beneath::Dir::open(&settings.bind_root)?),
        Mode::Build | Mode::Off => None,
    };
    let _ = std::fs::remove_file(&settings.listen);
    let listener = tokio::net::UnixListener::bind(&settings.listen)?;
    // Non-root users in job images connect too; the directory is the job's alone.
    std::fs::set_permissions(&settings.listen, std::fs::Permissions::from_mode(0o666))?;
    let state = Arc::new(State {
        upstream: settings.upstream.clone(),
        mode: settings.mode,
        binds,
        own: Mutex::new(Own::default()),
        log: settings.log.clone(),
        client: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyperlocal::UnixConnector),
        insecure_registries: settings.insecure_registries.clone(),
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
mod tests;
