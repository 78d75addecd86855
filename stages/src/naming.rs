//! Names derived from the job key: the key itself, pod and container names, service aliases.
//! Separate stage processes agree on every name without sharing anything else.

use berth_config::{ContractEnv, JobPayload};

/// Keeps `[a-z0-9]`, maps everything else to `-`, trims, and bounds the length.
fn component(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    out.truncate(max);
    out.trim_matches('-').to_owned()
}

/// The job key: unique per job on a host, a valid container-name and path component.
/// `j<job id>-<runner>` where runner is the runner's short token (or id); `local` without one;
/// then `-<instance>` for a runner config other than the default one
/// ([`berth_config::Config::instance`]), so that two runners on a host never name a job alike.
pub fn job_key(payload: &JobPayload, env: &ContractEnv, instance: Option<&str>) -> String {
    let runner = env
        .job_var("CI_RUNNER_SHORT_TOKEN")
        .or_else(|| env.job_var("CI_RUNNER_ID"))
        .map(|r| component(r, 16))
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "local".to_owned());
    match instance {
        Some(instance) => format!("j{}-{runner}-{instance}", payload.id),
        None => format!("j{}-{runner}", payload.id),
    }
}

/// The job's pod.
pub fn pod(key: &str) -> String {
    format!("berth-{key}")
}

/// A container of the job.
pub fn container(key: &str, role: &str) -> String {
    format!("berth-{key}-{role}")
}

/// Host names a service answers to, as GitLab's Docker executor derives them: the image name
/// without tag or digest with `/` turned into `__` and into `-`, then the explicit aliases.
pub fn service_aliases(image: &str, explicit: &[String]) -> Vec<String> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    let name = match without_digest[last_slash..].find(':') {
        Some(colon) => &without_digest[..last_slash + colon],
        None => without_digest,
    };
    let mut aliases = vec![name.replace('/', "__"), name.replace('/', "-")];
    aliases.extend(explicit.iter().cloned());
    let mut seen = Vec::new();
    aliases.retain(|a| {
        let keep = berth_sandbox::hosts::is_host_name(a) && !seen.contains(a);
        seen.push(a.clone());
        keep
    });
    aliases
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_follow_the_docker_executor() {
        assert_eq!(
            service_aliases("registry.example.com/group/postgres:16", &["db".into()]),
            vec![
                "registry.example.com__group__postgres",
                "registry.example.com-group-postgres",
                "db"
            ]
        );
        // A registry port makes the derived names invalid host names: only explicit ones remain.
        assert_eq!(
            service_aliases("registry.example.com:5000/postgres:16", &["db".into()]),
            vec!["db"]
        );
        assert_eq!(
            service_aliases("tutum/wordpress:latest", &[]),
            vec!["tutum__wordpress", "tutum-wordpress"]
        );
        assert_eq!(
            service_aliases("redis", &["cache".into()]),
            vec!["redis", "cache"]
        );
        assert_eq!(
            service_aliases("localhost/tcp-service@sha256:abc", &[]),
            vec!["localhost__tcp-service", "localhost-tcp-service"]
        );
    }

    #[test]
    fn keys_are_valid_names() {
        let payload = JobPayload {
            id: 42,
            ..JobPayload::default()
        };
        let env = ContractEnv::from_vars([(
            "CUSTOM_ENV_CI_RUNNER_SHORT_TOKEN".to_owned(),
            "AbC_12/x".to_owned(),
        )]);
        assert_eq!(job_key(&payload, &env, None), "j42-abc-12-x");
        assert_eq!(
            job_key(&payload, &ContractEnv::default(), None),
            "j42-local"
        );
        assert_eq!(
            job_key(&payload, &env, Some("s0123abcd")),
            "j42-abc-12-x-s0123abcd"
        );
    }
}
