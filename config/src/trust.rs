//! `[[image_trust]]`: which signatures the images jobs run must carry, by registry or repository
//! scope, raw → validated. Each scope either needs a sigstore signature made with one public key,
//! is rejected outright, or is accepted unsigned; the default scope (`scope = "default"`) is
//! always explicit. berth renders it into the `containers-policy.json` Podman verifies pulls
//! with (`berth_sandbox::trust`).

use std::path::PathBuf;

use serde::Deserialize;

use crate::admin::ConfigProblem;

/// One `[[image_trust]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrustScope {
    scope: String,
    policy: String,
    keys: Option<Vec<PathBuf>>,
}

/// What a scope demands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustRule {
    /// A sigstore signature made with this public key (PEM), for the image's repository.
    Sigstore {
        /// The public key file.
        key: PathBuf,
    },
    /// Never run images of this scope.
    Reject,
    /// Run images of this scope unsigned.
    Accept,
}

impl TrustRule {
    /// What the rule expects, in words for an error.
    pub fn expectation(&self) -> String {
        match self {
            Self::Sigstore { key } => format!(
                "a sigstore signature by the key {} for the image's repository",
                key.display()
            ),
            Self::Reject => "nothing: the scope is rejected".into(),
            Self::Accept => "nothing: the scope is accepted unsigned".into(),
        }
    }
}

/// One validated scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustScope {
    /// `registry[:port][/namespace...]`, or empty for the default scope.
    pub scope: String,
    /// What it demands.
    pub rule: TrustRule,
}

impl TrustScope {
    /// The scope as admins wrote it (`default` for the default one).
    pub fn shown(&self) -> &str {
        if self.scope.is_empty() {
            "default"
        } else {
            &self.scope
        }
    }
}

/// The validated `[[image_trust]]` tables: the default scope first, then the others as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageTrust {
    /// Every scope; exactly one is the default (empty `scope`).
    pub scopes: Vec<TrustScope>,
}

impl ImageTrust {
    /// The scope that governs `repository` (a normalised `registry/path/name`, without tag or
    /// digest): the longest scope that is the repository or one of its parent namespaces, as
    /// containers/image matches `transports.docker` scopes; the default scope otherwise.
    pub fn scope_for(&self, repository: &str) -> &TrustScope {
        let specific = self
            .scopes
            .iter()
            .filter(|s| !s.scope.is_empty())
            .filter(|s| {
                repository == s.scope
                    || repository
                        .strip_prefix(s.scope.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            })
            .max_by_key(|s| s.scope.len());
        specific.unwrap_or_else(|| self.default_scope())
    }

    /// The default scope.
    pub fn default_scope(&self) -> &TrustScope {
        // `validate` guarantees exactly one.
        self.scopes
            .iter()
            .find(|s| s.scope.is_empty())
            .unwrap_or(&self.scopes[0])
    }
}

/// Whether `scope` is a registry host (with an optional port) and optional path components, as
/// containers/image accepts them: lower case, no tag, no digest, no wildcard.
fn valid_scope(scope: &str) -> bool {
    let mut parts = scope.split('/');
    let Some(host) = parts.next() else {
        return false;
    };
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let host_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    host_ok
        && parts.all(|p| {
            !p.is_empty()
                && p.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
                })
        })
}

/// Validates the raw tables, adding every problem to `problems`.
pub fn validate(
    raw: Option<Vec<RawTrustScope>>,
    problems: &mut Vec<ConfigProblem>,
) -> Option<ImageTrust> {
    let raw = raw?;
    let key = "image_trust";
    let mut scopes: Vec<TrustScope> = Vec::new();
    for table in raw {
        let scope = if table.scope == "default" {
            String::new()
        } else {
            table.scope.clone()
        };
        if !scope.is_empty() && !valid_scope(&scope) {
            problems.push(ConfigProblem::new(
                key,
                format!("scope {:?} is not a registry or repository", table.scope),
                "write `default`, a registry (`registry.example.com`, `localhost:5000`) or a repository namespace (`registry.example.com/team`), lower case, without tag or digest",
            ));
            continue;
        }
        if scopes.iter().any(|s| s.scope == scope) {
            problems.push(ConfigProblem::new(
                key,
                format!("scope {:?} is listed twice", table.scope),
                "keep one table per scope",
            ));
            continue;
        }
        let keys = table.keys.unwrap_or_default();
        let rule = match table.policy.as_str() {
            "sigstore" => match keys.as_slice() {
                [one] if one.is_absolute() => TrustRule::Sigstore { key: one.clone() },
                [one] => {
                    problems.push(ConfigProblem::new(
                        key,
                        format!(
                            "scope {:?}: key {} is not an absolute path",
                            table.scope,
                            one.display()
                        ),
                        "write the full path of the public key, starting with /",
                    ));
                    continue;
                }
                [] => {
                    problems.push(ConfigProblem::new(
                        key,
                        format!("scope {:?}: policy \"sigstore\" needs `keys`", table.scope),
                        "add `keys = [\"/etc/berth/keys/NAME.pub\"]`, the public key images of this scope are signed with",
                    ));
                    continue;
                }
                _ => {
                    problems.push(ConfigProblem::new(
                        key,
                        format!(
                            "scope {:?}: {} keys; Podman 4.3 checks one sigstore key per scope",
                            table.scope,
                            keys.len()
                        ),
                        "list one key, or split the images into scopes with a key each",
                    ));
                    continue;
                }
            },
            "reject" | "accept" if !keys.is_empty() => {
                problems.push(ConfigProblem::new(
                    key,
                    format!(
                        "scope {:?}: policy {:?} takes no `keys`",
                        table.scope, table.policy
                    ),
                    "remove `keys`, or use policy \"sigstore\"",
                ));
                continue;
            }
            "reject" => TrustRule::Reject,
            "accept" => TrustRule::Accept,
            other => {
                problems.push(ConfigProblem::new(
                    key,
                    format!("scope {:?}: unknown policy {other:?}", table.scope),
                    "use \"sigstore\" (with `keys`), \"reject\" or \"accept\"",
                ));
                continue;
            }
        };
        scopes.push(TrustScope { scope, rule });
    }
    if !scopes.iter().any(|s| s.scope.is_empty()) {
        problems.push(ConfigProblem::new(
            key,
            "no table has `scope = \"default\"`",
            "add `[[image_trust]] scope = \"default\"` with the policy for every image no other scope names (\"reject\" to admit only the listed scopes)",
        ));
        return None;
    }
    scopes.sort_by_key(|s| !s.scope.is_empty());
    Some(ImageTrust { scopes })
}

#[cfg(test)]
mod tests {
    use crate::Config;

    const TRUST: &str = r#"
[[image_trust]]
scope = "registry.example.com/team"
policy = "sigstore"
keys = ["/etc/berth/keys/team.pub"]

[[image_trust]]
scope = "default"
policy = "reject"

[[image_trust]]
scope = "registry.example.com"
policy = "accept"
"#;

    #[test]
    fn the_longest_matching_scope_governs_and_the_default_catches_the_rest() {
        let config = Config::parse(TRUST, None).expect("valid");
        let trust = config.image_trust.expect("configured");
        assert_eq!(trust.scopes[0].shown(), "default");
        assert_eq!(
            trust.scope_for("registry.example.com/team/app").shown(),
            "registry.example.com/team"
        );
        assert_eq!(
            trust.scope_for("registry.example.com/teamx/app").shown(),
            "registry.example.com"
        );
        assert_eq!(
            trust.scope_for("docker.io/library/alpine").shown(),
            "default"
        );
        assert_eq!(
            trust.scope_for("registry.example.com/team").shown(),
            "registry.example.com/team"
        );
    }

    #[test]
    fn every_problem_of_the_tables_is_reported_at_once() {
        let err = Config::parse(
            r#"
[[image_trust]]
scope = "Registry.example.com:x"
policy = "accept"

[[image_trust]]
scope = "a.example"
policy = "sigstore"

[[image_trust]]
scope = "b.example"
policy = "sigstore"
keys = ["relative.pub"]

[[image_trust]]
scope = "c.example"
policy = "sigstore"
keys = ["/a.pub", "/b.pub"]

[[image_trust]]
scope = "d.example"
policy = "maybe"
"#,
            None,
        )
        .expect_err("invalid");
        let text = err.to_string();
        for expected in [
            "is not a registry or repository",
            "needs `keys`",
            "not an absolute path",
            "one sigstore key per scope",
            "unknown policy \"maybe\"",
            "no table has `scope = \"default\"`",
        ] {
            assert!(text.contains(expected), "{expected}: {text}");
        }
    }

    #[test]
    fn an_unknown_key_in_a_table_is_refused() {
        let err = Config::parse(
            "[[image_trust]]\nscope = \"default\"\npolicy = \"accept\"\nkey = \"/x.pub\"\n",
            None,
        )
        .expect_err("unknown field");
        assert!(err.to_string().contains("key"), "{err}");
    }
}
