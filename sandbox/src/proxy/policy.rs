//! The endpoint allowlist: which paths, methods and query options the build socket offers in
//! each [`Mode`], images and containers addressed only by validated names, and every request
//! rebuilt from what was checked.

use hyper::Method;

use super::wire::{self, Query};
use super::{After, BuildNetwork, Forward, ForwardBody, Mode, Own, Refusal, build, create};

/// The request as the policy sees it: raw path and query as the client sent them.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// HTTP method.
    pub method: &'a Method,
    /// Raw path, with the API version prefix.
    pub path: &'a str,
    /// Raw query string.
    pub query: &'a str,
    /// The body, read only for the endpoints that take JSON ([`wants_json`]).
    pub body: Option<&'a [u8]>,
}

/// What the policy knows besides the request.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// What the socket offers.
    pub mode: Mode,
    /// The containers the job created here.
    pub own: &'a Own,
    /// The job's builds directory, opened once (run mode only).
    pub binds: Option<&'a berth_beneath::Dir>,
    /// The network build RUN steps get.
    pub build_network: &'a BuildNetwork,
}

/// `(version prefix, libpod?, segments)` of a raw path; `None` for paths Podman might read
/// differently (escapes, empty or dot segments).
fn split(path: &str) -> Option<(String, bool, Vec<&str>)> {
    if path.contains('%') || !path.starts_with('/') {
        return None;
    }
    let mut segments: Vec<&str> = path[1..].split('/').collect();
    if segments.last() == Some(&"") {
        segments.pop();
    }
    if segments
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == "..")
    {
        return None;
    }
    let mut prefix = String::new();
    if let Some(first) = segments.first()
        && let Some(v) = first.strip_prefix('v')
        && !v.is_empty()
        && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        prefix = format!("/{first}");
        segments.remove(0);
    }
    let libpod = segments.first() == Some(&"libpod");
    if libpod {
        segments.remove(0);
    }
    Some((prefix, libpod, segments))
}

/// Whether the proxy must read the body as JSON before deciding.
pub fn wants_json(method: &Method, path: &str) -> bool {
    *method == Method::POST
        && matches!(split(path), Some((_, _, s)) if s == ["containers", "create"] || s == ["auth"])
}

/// Whether this is a build (the proxy then looks up the job's network).
pub fn is_build(path: &str) -> bool {
    matches!(split(path), Some((_, _, s)) if s == ["build"])
}

/// Whether this forward is a registry login.
pub fn is_login(forward: &Forward) -> bool {
    forward.method == Method::POST
        && forward
            .path_and_query
            .split('?')
            .next()
            .is_some_and(|p| p.ends_with("/auth"))
}

/// Whether `name` starts with a containers/image transport (`docker-archive:/p`, `dir:/p`, …),
/// which would make Podman or Buildah read a host path or another store.
fn has_transport(name: &str) -> bool {
    const TRANSPORTS: [&str; 10] = [
        "containers-storage",
        "dir",
        "docker",
        "docker-archive",
        "docker-daemon",
        "oci",
        "oci-archive",
        "ostree",
        "sif",
        "tarball",
    ];
    name.split_once(':')
        .is_some_and(|(head, _)| TRANSPORTS.contains(&head.to_ascii_lowercase().as_str()))
}

/// An image name or id as it may appear in a path or option.
pub fn image_ref(field: &str, name: &str) -> Result<String, Refusal> {
    let ok = !name.is_empty()
        && name.len() <= 512
        && !name.starts_with(['/', '-', '.'])
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b':' | b'@')
        })
        && !name.split('/').any(|c| c.is_empty() || c == "..")
        && !has_transport(name);
    if ok {
        Ok(name.to_owned())
    } else {
        Err(Refusal::new(
            field,
            &format!("{name:?} is not an image name"),
            "name an image as registry/repository:tag or by id",
        ))
    }
}

fn simple(field: &str, value: &str, extra: &[u8]) -> Result<String, Refusal> {
    if !value.is_empty()
        && value.len() <= 256
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    {
        Ok(value.to_owned())
    } else {
        Err(Refusal::new(
            field,
            &format!("{value:?} is not a plain value"),
            "use letters, digits and the usual punctuation only",
        ))
    }
}

fn flag(
    q: &Query,
    key: &str,
    out: &mut Vec<(&'static str, String)>,
    canon: &'static str,
) -> Result<(), Refusal> {
    if let Some(v) = q.flag(key)? {
        out.push((canon, if v { "true" } else { "false" }.to_owned()));
    }
    Ok(())
}

fn number(
    q: &Query,
    key: &str,
    out: &mut Vec<(&'static str, String)>,
    canon: &'static str,
) -> Result<(), Refusal> {
    if let Some(v) = q.number(key)? {
        out.push((canon, v.to_string()));
    }
    Ok(())
}

struct Route {
    prefix: String,
    libpod: bool,
}

impl Route {
    fn to(
        &self,
        method: Method,
        path: &str,
        query: &[(&'static str, String)],
        body: ForwardBody,
    ) -> Forward {
        let mut path_and_query = format!(
            "{}{}{}",
            self.prefix,
            if self.libpod { "/libpod" } else { "" },
            path
        );
        if !query.is_empty() {
            path_and_query.push('?');
            path_and_query.push_str(&wire::encode(query));
        }
        Forward {
            method,
            path_and_query,
            body,
            after: After::Nothing,
        }
    }
}

fn not_offered(method: &Method, path: &str, mode: Mode) -> Refusal {
    let offered = match mode {
        Mode::Run => {
            "builds, images, pushes, pulls, and containers created here (no exec, attach, volumes, networks, pods or system)"
        }
        Mode::Build | Mode::Off => {
            "builds, images, pushes and pulls (the admin's build_socket = \"run\" adds containers)"
        }
    };
    Refusal::new(
        &format!("`{method} {path}`"),
        "an endpoint berth's build socket does not offer",
        &format!("it serves {offered}"),
    )
}

/// Decides one request: refused, or forwarded rebuilt from what was checked.
pub fn decide(call: &Call<'_>, ctx: &Context<'_>) -> super::Decision {
    match decide_inner(call, ctx) {
        Ok(forward) => super::Decision::Forward(forward),
        Err(refusal) => super::Decision::Refuse(refusal),
    }
}

fn decide_inner(call: &Call<'_>, ctx: &Context<'_>) -> Result<Forward, Refusal> {
    let method = call.method;
    let Some((prefix, libpod, segments)) = split(call.path) else {
        return Err(Refusal::new(
            "path",
            &format!("{:?} has escapes or empty, `.` or `..` segments", call.path),
            "use the plain API paths the docker CLI and podman --remote send",
        ));
    };
    let route = Route { prefix, libpod };
    let q = Query::parse(call.query)?;
    let endpoint = format!("`{method} {}`", call.path);
    let none = |q: &Query| q.only(&endpoint, &[], &[]);
    let mut out: Vec<(&'static str, String)> = Vec::new();
    let m = method.clone();
    match (method, segments.as_slice()) {
        (&Method::GET | &Method::HEAD, ["_ping"]) | (&Method::GET, ["version" | "info"]) => {
            none(&q)?;
            Ok(route.to(
                m,
                &format!("/{}", segments.join("/")),
                &out,
                ForwardBody::Empty,
            ))
        }
        (&Method::POST, ["auth"]) if !libpod => {
            none(&q)?;
            let body = call
                .body
                .ok_or_else(|| Refusal::new("login", "no body", "send the login as JSON"))?;
            let login = create::login(body)?;
            Ok(route.to(m, "/auth", &out, ForwardBody::Json(login)))
        }
        (&Method::POST, ["build"]) => {
            out = build::query(&q, libpod, &endpoint, ctx.build_network)?;
            Ok(route.to(m, "/build", &out, ForwardBody::Stream))
        }
        (&Method::GET, ["images", "json"]) => {
            q.only(
                &endpoint,
                &["all", "filters", "digests", "shared-size"],
                &[],
            )?;
            flag(&q, "all", &mut out, "all")?;
            flag(&q, "digests", &mut out, "digests")?;
            flag(&q, "shared-size", &mut out, "shared-size")?;
            if let Some(filters) = q.one("filters") {
                let parsed: std::collections::BTreeMap<String, FilterValues> =
                    wire::json_option(filters, "filters")?;
                out.push((
                    "filters",
                    serde_json::to_string(&parsed).unwrap_or_default(),
                ));
            }
            Ok(route.to(m, "/images/json", &out, ForwardBody::Empty))
        }
        (&Method::POST, ["images", "create"]) if !libpod => {
            q.only(&endpoint, &["fromimage", "tag", "platform"], &[])
                .map_err(|e| {
                    if q.one("fromsrc").is_some() {
                        Refusal::new(
                            "query option `fromSrc`",
                            "imports a file or URL of the host's choosing",
                            "pull with fromImage, or `docker load` an archive",
                        )
                    } else {
                        e
                    }
                })?;
            let image = q.one("fromimage").ok_or_else(|| {
                Refusal::new(
                    "query option `fromImage`",
                    "missing",
                    "pull an image by name",
                )
            })?;
            out.push(("fromImage", image_ref("query option `fromImage`", image)?));
            if let Some(tag) = q.one("tag").filter(|t| !t.is_empty()) {
                out.push(("tag", simple("query option `tag`", tag, b"._-:")?));
            }
            if let Some(p) = q.one("platform").filter(|t| !t.is_empty()) {
                out.push(("platform", simple("query option `platform`", p, b"/._-")?));
            }
            Ok(route.to(m, "/images/create", &out, ForwardBody::Empty))
        }
        (&Method::POST, ["images", "pull"]) if libpod => {
            q.only(
                &endpoint,
                &[
                    "reference",
                    "authfile",
                    "username",
                    "password",
                    "policy",
                    "tlsverify",
                    "quiet",
                    "alltags",
                    "arch",
                    "os",
                    "variant",
                ],
                &[],
            )?;
            let image = q.one("reference").ok_or_else(|| {
                Refusal::new(
                    "query option `reference`",
                    "missing",
                    "pull an image by name",
                )
            })?;
            out.push(("reference", image_ref("query option `reference`", image)?));
            no_authfile(&q)?;
            if let Some(p) = q.one("policy") {
                if !matches!(p, "always" | "missing" | "never" | "newer") {
                    return Err(Refusal::new(
                        "query option `policy`",
                        &format!("{p:?} is not a pull policy"),
                        "use always, missing, never or newer",
                    ));
                }
                out.push(("policy", p.to_owned()));
            }
            flag(&q, "tlsverify", &mut out, "tlsVerify")?;
            flag(&q, "quiet", &mut out, "quiet")?;
            flag(&q, "alltags", &mut out, "allTags")?;
            for key in ["arch", "os", "variant"] {
                if let Some(v) = q.one(key).filter(|v| !v.is_empty()) {
                    out.push((
                        match key {
                            "arch" => "Arch",
                            "os" => "OS",
                            _ => "Variant",
                        },
                        simple(&format!("query option `{key}`"), v, b"._-")?,
                    ));
                }
            }
            Ok(route.to(m, "/images/pull", &out, ForwardBody::Empty))
        }
        (&Method::POST, ["images", "load"]) => {
            q.only(&endpoint, &["quiet"], &[])?;
            flag(&q, "quiet", &mut out, "quiet")?;
            Ok(route.to(m, "/images/load", &out, ForwardBody::Stream))
        }
        (&Method::DELETE, ["images", "remove"]) if libpod => {
            q.only(
                &endpoint,
                &["images", "force", "ignore", "lookupmanifest", "noprune"],
                &["images"],
            )?;
            for image in q.all("images") {
                out.push(("images", image_ref("query option `images`", image)?));
            }
            for key in ["force", "ignore", "lookupmanifest", "noprune"] {
                flag(&q, key, &mut out, key_name(key))?;
            }
            Ok(route.to(m, "/images/remove", &out, ForwardBody::Empty))
        }
        (_, ["images", rest @ ..]) if !rest.is_empty() => {
            image_endpoint(&route, method, rest, &q, &endpoint)
        }
        (&Method::GET, ["containers", "json"]) if ctx.mode == Mode::Run => {
            q.only(
                &endpoint,
                &["all", "filters", "size", "limit", "last", "sync"],
                &[],
            )?;
            flag(&q, "all", &mut out, "all")?;
            flag(&q, "sync", &mut out, "sync")?;
            flag(&q, "size", &mut out, "size")?;
            number(&q, "limit", &mut out, "limit")?;
            number(&q, "last", &mut out, "last")?;
            let mut filters: std::collections::BTreeMap<String, Vec<String>> =
                match q.one("filters") {
                    Some(f) if !f.is_empty() => wire::json_option(f, "filters")?,
                    _ => std::collections::BTreeMap::new(),
                };
            if let Some(key) = filters.keys().find(|k| {
                !matches!(
                    k.as_str(),
                    "name" | "status" | "label" | "ancestor" | "exited" | "id"
                )
            }) {
                return Err(Refusal::new(
                    &format!("container list filter `{key}`"),
                    "not offered",
                    "filter by name, id, status, label, ancestor or exited",
                ));
            }
            // Only the job's own containers are listed: the id filter is the proxy's.
            let mut ids = ctx.own.ids();
            if ids.is_empty() {
                ids.push("0".repeat(64));
            }
            filters.insert("id".to_owned(), ids);
            out.push((
                "filters",
                serde_json::to_string(&filters).unwrap_or_default(),
            ));
            Ok(route.to(m, "/containers/json", &out, ForwardBody::Empty))
        }
        (_, ["containers", "json"]) => Err(not_offered(method, call.path, ctx.mode)),
        (_, ["containers", ..]) if ctx.mode != Mode::Run => Err(Refusal::new(
            &endpoint,
            "containers are not offered by this runner's build socket",
            "build images instead, or ask the runner's admin for build_socket = \"run\"",
        )),
        (&Method::POST, ["containers", "create"]) => {
            let body = call.body.ok_or_else(|| {
                Refusal::new(
                    "container create",
                    "no JSON body",
                    "send the container as JSON",
                )
            })?;
            let mut name = None;
            if !libpod {
                q.only(&endpoint, &["name", "platform"], &[])?;
                if let Some(n) = q.one("name").filter(|n| !n.is_empty()) {
                    let n = create::container_name(n)?;
                    out.push(("name", n.clone()));
                    name = Some(n);
                }
                if let Some(p) = q.one("platform").filter(|t| !t.is_empty()) {
                    out.push(("platform", simple("query option `platform`", p, b"/._-")?));
                }
            } else {
                none(&q)?;
            }
            let (json, body_name) = if libpod {
                create::libpod(body, ctx.binds)?
            } else {
                (create::docker(body, ctx.binds)?, None)
            };
            let mut forward = route.to(m, "/containers/create", &out, ForwardBody::Json(json));
            forward.after = After::Created {
                name: name.or(body_name),
            };
            Ok(forward)
        }
        (_, ["containers", reference, rest @ ..]) => {
            let id = ctx.own.resolve(reference).ok_or_else(|| {
                Refusal::new(
                    &format!("container {reference:?}"),
                    "was not created through this job's build socket",
                    "address only containers you created here, by the id or name you got",
                )
            })?;
            let id = id.to_owned();
            let (path, allowed): (String, &[&str]) = match (method, rest) {
                (&Method::POST, ["start"]) => (format!("/containers/{id}/start"), &["recursive"]),
                (&Method::POST, ["wait"]) => {
                    (format!("/containers/{id}/wait"), &["condition", "interval"])
                }
                (&Method::GET, ["logs"]) => (
                    format!("/containers/{id}/logs"),
                    &[
                        "stdout",
                        "stderr",
                        "follow",
                        "since",
                        "until",
                        "timestamps",
                        "tail",
                    ],
                ),
                (&Method::GET, ["json"]) => (format!("/containers/{id}/json"), &["size"]),
                (&Method::GET, ["exists"]) if libpod => (format!("/containers/{id}/exists"), &[]),
                (&Method::POST, ["kill"]) => (format!("/containers/{id}/kill"), &["signal"]),
                (&Method::POST, ["stop"]) => (
                    format!("/containers/{id}/stop"),
                    &["t", "timeout", "ignore"],
                ),
                (&Method::DELETE, []) => (
                    format!("/containers/{id}"),
                    &["force", "v", "volumes", "timeout", "ignore", "depend"],
                ),
                (_, [action, ..]) if matches!(*action, "attach" | "exec") => {
                    return Err(Refusal::new(
                        &endpoint,
                        "attaching and exec are not offered",
                        "run containers detached and read their logs",
                    ));
                }
                _ => return Err(not_offered(method, call.path, ctx.mode)),
            };
            q.only(&endpoint, allowed, &["condition"])?;
            for key in allowed {
                match *key {
                    "condition" => {
                        for c in q.all("condition").iter().filter(|c| !c.is_empty()) {
                            if !matches!(
                                c.as_str(),
                                "not-running"
                                    | "next-exit"
                                    | "removed"
                                    | "configured"
                                    | "created"
                                    | "exited"
                                    | "paused"
                                    | "running"
                                    | "stopped"
                                    | "healthy"
                                    | "unhealthy"
                            ) {
                                return Err(Refusal::new(
                                    "query option `condition`",
                                    &format!("{c:?} is not a wait condition"),
                                    "use not-running, next-exit or removed",
                                ));
                            }
                            out.push(("condition", c.clone()));
                        }
                    }
                    "interval" | "since" | "until" | "tail" | "signal" => {
                        if let Some(v) = q.one(key).filter(|v| !v.is_empty()) {
                            out.push((
                                key_name(key),
                                simple(&format!("query option `{key}`"), v, b".:+-")?,
                            ));
                        }
                    }
                    "t" | "timeout" => number(&q, key, &mut out, key_name(key))?,
                    // Containers that depend on this one might not be the job's.
                    "depend" if q.flag("depend")? == Some(true) => {
                        return Err(Refusal::new(
                            "query option `depend`",
                            "removes the containers that depend on this one",
                            "remove the job's own containers one by one",
                        ));
                    }
                    other => flag(&q, other, &mut out, key_name(other))?,
                }
            }
            Ok(route.to(m, &path, &out, ForwardBody::Empty))
        }
        _ => Err(not_offered(method, call.path, ctx.mode)),
    }
}

/// `authfile` names a file on the host, and credentials in a query string end up in logs: only
/// the empty values podman sends are accepted (never repeated in a refusal).
fn no_authfile(q: &Query) -> Result<(), Refusal> {
    for key in ["authfile", "username", "password"] {
        if q.one(key).is_some_and(|v| !v.is_empty()) {
            return Err(Refusal::new(
                &format!("query option `{key}`"),
                "set (a file on the host, or credentials in the URL)",
                "send credentials in the X-Registry-Auth header (docker login, --creds)",
            ));
        }
    }
    Ok(())
}

/// Values in a list filter: strings, one or many.
#[derive(Debug, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
enum FilterValues {
    Many(Vec<String>),
    Set(std::collections::BTreeMap<String, bool>),
}

fn key_name(key: &str) -> &'static str {
    match key {
        "force" => "force",
        "ignore" => "ignore",
        "lookupmanifest" => "lookupManifest",
        "noprune" => "noprune",
        "stdout" => "stdout",
        "stderr" => "stderr",
        "follow" => "follow",
        "timestamps" => "timestamps",
        "size" => "size",
        "v" => "v",
        "t" => "t",
        "timeout" => "timeout",
        "interval" => "interval",
        "since" => "since",
        "until" => "until",
        "tail" => "tail",
        "signal" => "signal",
        "quiet" => "quiet",
        "tlsverify" => "tlsVerify",
        "compress" => "compress",
        "all" => "all",
        "removesignatures" => "removeSignatures",
        "recursive" => "recursive",
        "depend" => "depend",
        "volumes" => "volumes",
        _ => "unknown",
    }
}

/// `images/{name}/{action}` and `DELETE images/{name}`; names may hold slashes.
fn image_endpoint(
    route: &Route,
    method: &Method,
    rest: &[&str],
    q: &Query,
    endpoint: &str,
) -> Result<Forward, Refusal> {
    let m = method.clone();
    let mut out: Vec<(&'static str, String)> = Vec::new();
    if *method == Method::DELETE {
        let name = image_ref("image", &rest.join("/"))?;
        q.only(endpoint, &["force", "noprune", "ignore"], &[])?;
        for key in ["force", "noprune", "ignore"] {
            flag(q, key, &mut out, key_name(key))?;
        }
        return Ok(route.to(m, &format!("/images/{name}"), &out, ForwardBody::Empty));
    }
    let (action, name) = rest
        .split_last()
        .ok_or_else(|| not_offered(method, endpoint, Mode::Build))?;
    if name.is_empty() {
        return Err(not_offered(method, endpoint, Mode::Build));
    }
    let name = image_ref("image", &name.join("/"))?;
    match (method, *action) {
        (&Method::GET, "json") => {
            q.only(endpoint, &["size"], &[])?;
            flag(q, "size", &mut out, "size")?;
        }
        (&Method::GET, "history" | "exists") => q.only(endpoint, &[], &[])?,
        (&Method::POST, "tag") => {
            q.only(endpoint, &["repo", "tag"], &[])?;
            if let Some(repo) = q.one("repo") {
                out.push(("repo", image_ref("query option `repo`", repo)?));
            }
            if let Some(tag) = q.one("tag").filter(|t| !t.is_empty()) {
                out.push(("tag", simple("query option `tag`", tag, b"._-")?));
            }
        }
        (&Method::POST, "push") => {
            q.only(
                endpoint,
                &[
                    "tag",
                    "authfile",
                    "username",
                    "password",
                    "destination",
                    "tlsverify",
                    "format",
                    "compress",
                    "compressionformat",
                    "quiet",
                    "all",
                    "removesignatures",
                ],
                &[],
            )?;
            if let Some(tag) = q.one("tag").filter(|t| !t.is_empty()) {
                out.push(("tag", simple("query option `tag`", tag, b"._-")?));
            }
            no_authfile(q)?;
            if let Some(d) = q.one("destination") {
                out.push(("destination", image_ref("query option `destination`", d)?));
            }
            for key in ["tlsverify", "compress", "quiet", "all", "removesignatures"] {
                flag(q, key, &mut out, key_name(key))?;
            }
            if let Some(f) = q.one("format").filter(|f| !f.is_empty()) {
                out.push(("format", simple("query option `format`", f, b"./+-")?));
            }
            if let Some(f) = q.one("compressionformat").filter(|f| !f.is_empty()) {
                out.push((
                    "compressionFormat",
                    simple("query option `compressionFormat`", f, b"-")?,
                ));
            }
        }
        _ => return Err(not_offered(method, endpoint, Mode::Build)),
    }
    Ok(route.to(
        m,
        &format!("/images/{name}/{action}"),
        &out,
        ForwardBody::Empty,
    ))
}
