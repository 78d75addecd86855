//! The job's `/etc/hosts` on the host network, where Podman (4.3) drops a pod's extra hosts:
//! berth writes the file itself, the pod's names on loopback ahead of the host's own entries (the
//! order Podman uses for extra hosts), and mounts it read-only into every container of the pod.

/// Where the host keeps its hosts file, and where containers find theirs.
pub const ETC_HOSTS: &str = "/etc/hosts";

/// The most berth reads of the host's hosts file.
pub const HOST_HOSTS_LIMIT: u64 = 1 << 20;

/// Names the job's hosts file cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{names:?} cannot go into the job's /etc/hosts: a host name has only letters, digits, `-`, `_` and `.` (fix the service's name or alias)"
)]
pub struct InvalidHostNames {
    /// Every refused name.
    pub names: Vec<String>,
}

/// The job's hosts file: each of `names` on 127.0.0.1 (the pod itself), then the host's file
/// `host` as it is. Refuses names that would add or break entries (whitespace, `#`, empty).
pub fn job_hosts_file(host: &[u8], names: &[String]) -> Result<Vec<u8>, InvalidHostNames> {
    let invalid: Vec<String> = names
        .iter()
        .filter(|name| !is_host_name(name))
        .cloned()
        .collect();
    if !invalid.is_empty() {
        return Err(InvalidHostNames { names: invalid });
    }
    let mut out = b"# berth: the job's pod and its services\n".to_vec();
    let mut seen: Vec<&str> = Vec::new();
    for name in names {
        if !seen.contains(&name.as_str()) {
            seen.push(name);
            out.extend_from_slice(format!("127.0.0.1\t{name}\n").as_bytes());
        }
    }
    out.extend_from_slice(b"# the host's entries\n");
    out.extend_from_slice(host);
    if !host.is_empty() && !host.ends_with(b"\n") {
        out.push(b'\n');
    }
    Ok(out)
}

/// Whether `name` is a host name berth puts in `/etc/hosts` (and accepts as a service alias).
pub fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pods_names_come_first_on_loopback_then_the_hosts_entries() {
        let names = ["berth-job".to_owned(), "web".to_owned(), "web".to_owned()];
        let out = job_hosts_file(b"127.0.0.1 localhost\n::1 localhost", &names).expect("valid");
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "127.0.0.1\tberth-job",
                "127.0.0.1\tweb",
                "127.0.0.1 localhost",
                "::1 localhost"
            ]
        );
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn names_that_would_smuggle_entries_are_all_refused() {
        let names = [
            "ok".to_owned(),
            "evil 10.0.0.1".to_owned(),
            "a\n1.2.3.4 b".to_owned(),
            String::new(),
        ];
        let err = job_hosts_file(b"", &names).expect_err("refused");
        assert_eq!(err.names, names[1..].to_vec());
    }
}
