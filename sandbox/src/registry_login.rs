//! `docker login` to an admin-listed insecure registry, answered by the build socket itself.
//! Podman's Docker-compatible `/auth` always verifies TLS (only `localhost` is exempt), so the
//! docker CLI could never log in to a plain-HTTP registry the admin allows; the proxy checks the
//! credentials the way the Docker daemon does for an insecure registry: `GET /v2/`, then Basic
//! credentials or a Bearer token from the realm the registry names (over plain HTTP only, as
//! the registry itself is).

use base64::Engine;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};

/// How a registry asks for credentials (`WWW-Authenticate` on `GET /v2/`).
#[derive(Debug, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP Basic on the registry itself.
    Basic,
    /// A token service.
    Bearer {
        /// Token endpoint.
        realm: String,
        /// `service` parameter, if named.
        service: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    for part in params.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"').to_owned();
        match key.trim() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            _ => {}
        }
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
    })
}

/// The registry host of a docker CLI `serveraddress` (`http://r:5000/`, `r:5000`, …).
pub fn registry_host(server_address: &str) -> &str {
    let rest = server_address
        .strip_prefix("https://")
        .or_else(|| server_address.strip_prefix("http://"))
        .unwrap_or(server_address);
    rest.split('/').next().unwrap_or(rest)
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Empty<Bytes>,
>;

async fn get(
    client: &Client,
    uri: &str,
    basic: Option<&str>,
) -> Result<(StatusCode, Option<String>), String> {
    let mut request = Request::get(uri);
    if let Some(token) = basic {
        request = request.header("authorization", format!("Basic {token}"));
    }
    let request = request
        .body(Empty::new())
        .map_err(|e| format!("{uri}: {e}"))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("{uri}: {e}"))?;
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let _ = response.into_body().collect().await;
    Ok((status, challenge))
}

/// Checks `username`/`password` against the plain-HTTP registry `host`. `Ok(())` means the
/// registry accepted them; `Err` says why not, for the job log.
pub async fn check(host: &str, username: &str, password: &str) -> Result<(), String> {
    let client: Client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let ping = format!("http://{host}/v2/");
    let (status, challenge) = get(&client, &ping, None).await?;
    if status.is_success() {
        return Ok(());
    }
    if status != StatusCode::UNAUTHORIZED {
        return Err(format!("{ping} answered {status}"));
    }
    let check_uri = match challenge.as_deref().and_then(parse_challenge) {
        Some(Challenge::Basic) => ping.clone(),
        Some(Challenge::Bearer { realm, service }) => {
            let service = service.map(|s| format!("?service={s}")).unwrap_or_default();
            format!("{realm}{service}")
        }
        None => {
            return Err(format!(
                "{ping} asked for an authentication scheme berth does not know"
            ));
        }
    };
    match get(&client, &check_uri, Some(&basic)).await? {
        (s, _) if s.is_success() => Ok(()),
        (s, _) => Err(format!(
            "{check_uri} answered {s}: wrong username or password"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed_like_the_docker_daemon_does() {
        assert_eq!(
            parse_challenge("Basic realm=\"Registry\""),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                "Bearer realm=\"https://gitlab.example/jwt/auth\",service=\"container_registry\""
            ),
            Some(Challenge::Bearer {
                realm: "https://gitlab.example/jwt/auth".to_owned(),
                service: Some("container_registry".to_owned()),
            })
        );
        assert_eq!(parse_challenge("Bearer service=\"x\""), None);
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn server_addresses_name_their_host() {
        for address in [
            "127.0.0.1:5000",
            "http://127.0.0.1:5000/",
            "https://127.0.0.1:5000/v1/",
        ] {
            assert_eq!(registry_host(address), "127.0.0.1:5000");
        }
    }
}
