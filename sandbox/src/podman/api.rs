//! A small typed client for the libpod REST API over a unix socket: only the calls berth makes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyperlocal::{UnixClientExt, UnixConnector, Uri};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::spec::{PodSpecGenerator, SpecGenerator};

const API: &str = "/v4.0.0/libpod";

/// A failed API call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The socket did not answer.
    #[error("podman API at {socket} unreachable: {message}")]
    Unreachable {
        /// Socket path.
        socket: PathBuf,
        /// Cause.
        message: String,
    },
    /// Podman answered with an error.
    #[error("podman API {method} {path} answered {status}: {message}")]
    Status {
        /// Method.
        method: String,
        /// Path.
        path: String,
        /// HTTP status.
        status: u16,
        /// Podman's error message.
        message: String,
    },
    /// The answer was not what the API documents.
    #[error("podman API {path} answered unreadable JSON: {source}")]
    Decode {
        /// Path.
        path: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

impl ApiError {
    /// HTTP status, if Podman answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            Self::Unreachable { .. } | Self::Decode { .. } => None,
        }
    }
}

/// A libpod API client bound to one socket.
#[derive(Clone)]
pub struct Api {
    socket: PathBuf,
    client: Client<UnixConnector, Full<Bytes>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("socket", &self.socket).finish()
    }
}

/// The parts of `GET /libpod/containers/{name}/json` berth reads.
#[derive(Debug, Clone, Deserialize)]
pub struct ContainerInspect {
    /// State.
    #[serde(rename = "State")]
    pub state: ContainerState,
}

/// Container state.
#[derive(Debug, Clone, Deserialize)]
pub struct ContainerState {
    /// Whether it runs.
    #[serde(rename = "Running", default)]
    pub running: bool,
    /// Host pid of its init process (0 when stopped).
    #[serde(rename = "Pid", default)]
    pub pid: u32,
    /// Exit code once stopped.
    #[serde(rename = "ExitCode", default)]
    pub exit_code: i32,
}

/// The parts of `GET /libpod/images/{name}/json` berth reads.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ImageInspect {
    /// Image id.
    #[serde(rename = "Id", default)]
    pub id: String,
    /// The manifest digest it was pulled by (empty when built or imported locally).
    #[serde(rename = "Digest", default)]
    pub digest: String,
    /// Image config.
    #[serde(rename = "Config", default)]
    pub config: ImageConfig,
    /// Its size in bytes (for the pull metrics).
    #[serde(rename = "Size", default)]
    pub size: Option<u64>,
}

/// OCI image config.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ImageConfig {
    /// Entrypoint.
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    /// Exposed ports, `"5432/tcp": {}`.
    #[serde(rename = "ExposedPorts", default)]
    pub exposed_ports: Option<serde_json::Map<String, Value>>,
}

/// A container in a listing.
#[derive(Debug, Clone, Deserialize)]
pub struct ContainerSummary {
    /// Names.
    #[serde(rename = "Names", default)]
    pub names: Vec<String>,
}

/// A pod in a listing.
#[derive(Debug, Clone, Deserialize)]
pub struct PodSummary {
    /// Name.
    #[serde(rename = "Name", default)]
    pub name: String,
}

impl Api {
    /// A client for `socket`.
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_owned(),
            client: Client::unix(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        let uri: hyper::Uri = Uri::new(&self.socket, path).into();
        let body = match body {
            Some(b) => Full::new(Bytes::from(serde_json::to_vec(b).map_err(|source| {
                ApiError::Decode {
                    path: path.to_owned(),
                    source,
                }
            })?)),
            None => Full::new(Bytes::new()),
        };
        let request = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header("content-type", "application/json")
            .body(body)
            .map_err(|e| self.unreachable(e.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| self.unreachable(e.to_string()))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.unreachable(e.to_string()))?
            .to_bytes();
        if status.is_client_error() || status.is_server_error() {
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_owned());
            return Err(ApiError::Status {
                method: method.to_string(),
                path: path.to_owned(),
                status: status.as_u16(),
                message,
            });
        }
        Ok((status, bytes))
    }

    fn unreachable(&self, message: String) -> ApiError {
        ApiError::Unreachable {
            socket: self.socket.clone(),
            message,
        }
    }

    async fn json<T: DeserializeOwned>(&self, method: Method, path: &str) -> Result<T, ApiError> {
        let (_, bytes) = self.call(method, path, None::<&()>).await?;
        serde_json::from_slice(&bytes).map_err(|source| ApiError::Decode {
            path: path.to_owned(),
            source,
        })
    }

    /// `GET /_ping`.
    pub async fn ping(&self) -> Result<(), ApiError> {
        self.call(Method::GET, "/_ping", None::<&()>)
            .await
            .map(drop)
    }

    /// Waits until the socket answers, up to `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), ApiError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.ping().await {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    /// Whether an image is present (in the job store or the base store).
    pub async fn image_exists(&self, name: &str) -> Result<bool, ApiError> {
        let path = format!("{API}/images/{}/exists", encode(name));
        match self.call(Method::GET, &path, None::<&()>).await {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Image id and config.
    pub async fn image_inspect(&self, name: &str) -> Result<ImageInspect, ApiError> {
        self.json(Method::GET, &format!("{API}/images/{}/json", encode(name)))
            .await
    }

    /// Creates a pod.
    pub async fn pod_create(&self, spec: &PodSpecGenerator) -> Result<(), ApiError> {
        self.call(Method::POST, &format!("{API}/pods/create"), Some(spec))
            .await
            .map(drop)
    }

    /// Starts a pod's infra container.
    pub async fn pod_start(&self, name: &str) -> Result<(), ApiError> {
        self.call(
            Method::POST,
            &format!("{API}/pods/{}/start", encode(name)),
            None::<&()>,
        )
        .await
        .map(drop)
    }

    /// Kills every container of a pod, then removes it with them.
    pub async fn pod_remove(&self, name: &str) -> Result<(), ApiError> {
        let kill = format!("{API}/pods/{}/kill?signal=SIGKILL", encode(name));
        match self.call(Method::POST, &kill, None::<&()>).await {
            Ok(_) => {}
            Err(e) if matches!(e.status(), Some(404 | 409)) => {}
            Err(e) => return Err(e),
        }
        let path = format!("{API}/pods/{}?force=true", encode(name));
        match self.call(Method::DELETE, &path, None::<&()>).await {
            Err(e) if e.status() == Some(404) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Lists every pod in the store.
    pub async fn pods(&self) -> Result<Vec<PodSummary>, ApiError> {
        self.json(Method::GET, &format!("{API}/pods/json")).await
    }

    /// Lists every container in the store, running or not.
    pub async fn containers(&self) -> Result<Vec<ContainerSummary>, ApiError> {
        self.json(Method::GET, &format!("{API}/containers/json?all=true"))
            .await
    }

    /// Creates a container from a libpod SpecGenerator document.
    pub async fn container_create(&self, spec: &SpecGenerator) -> Result<(), ApiError> {
        self.call(
            Method::POST,
            &format!("{API}/containers/create"),
            Some(spec),
        )
        .await
        .map(drop)
    }

    /// Starts a container.
    pub async fn container_start(&self, name: &str) -> Result<(), ApiError> {
        self.call(
            Method::POST,
            &format!("{API}/containers/{}/start", encode(name)),
            None::<&()>,
        )
        .await
        .map(drop)
    }

    /// Inspects a container.
    pub async fn container_inspect(&self, name: &str) -> Result<ContainerInspect, ApiError> {
        self.json(
            Method::GET,
            &format!("{API}/containers/{}/json", encode(name)),
        )
        .await
    }

    /// Force-removes a container (killing it at once).
    pub async fn container_remove(&self, name: &str) -> Result<(), ApiError> {
        let path = format!("{API}/containers/{}?force=true&t=0", encode(name));
        match self.call(Method::DELETE, &path, None::<&()>).await {
            Err(e) if e.status() == Some(404) => Ok(()),
            other => other.map(drop),
        }
    }

    /// The last lines of a container's log (for errors about containers that died).
    pub async fn container_logs_tail(&self, name: &str) -> Result<String, ApiError> {
        let path = format!(
            "{API}/containers/{}/logs?stdout=true&stderr=true&tail=20",
            encode(name)
        );
        let (_, bytes) = self.call(Method::GET, &path, None::<&()>).await?;
        Ok(demux_log(&bytes))
    }
}

/// Strips the 8-byte multiplexing headers of a non-tty log stream.
fn demux_log(bytes: &[u8]) -> String {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 8 && rest[0] <= 2 && rest[1..4] == [0, 0, 0] {
        let len = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let end = (8 + len).min(rest.len());
        out.extend_from_slice(&rest[8..end]);
        rest = &rest[end..];
    }
    out.extend_from_slice(rest);
    String::from_utf8_lossy(&out).trim().to_owned()
}

/// Percent-encodes a path segment or query value.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_image_references_as_one_segment() {
        assert_eq!(
            encode("localhost:5000/a/b:1"),
            "localhost%3A5000%2Fa%2Fb%3A1"
        );
    }

    #[test]
    fn demuxes_log_frames() {
        let mut frames = vec![1, 0, 0, 0, 0, 0, 0, 3];
        frames.extend_from_slice(b"hi\n");
        frames.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 4]);
        frames.extend_from_slice(b"err\n");
        assert_eq!(demux_log(&frames), "hi\nerr");
    }
}
