//! The runner admin's `/etc/berth/config.toml`: read strictly into raw types, then validated once into
//! [`Config`], reporting every problem at once with its key and the fix.

use std::fmt;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};

/// Where berth looks for its config when neither `--config` nor `BERTH_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/berth/config.toml";

/// Where a host with several runners keeps one berth config per runner (`*.toml`).
pub const CONFIG_DIR: &str = "/etc/berth/config.d";

/// The state directory of the built-in defaults.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/berth";

/// Image pull policy, as in GitLab's Docker executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull only when the image is not in the base store.
    IfNotPresent,
    /// Never pull; the image must be in the base store.
    Never,
}

impl PullPolicy {
    /// Parses the Docker executor's spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "always" => Some(Self::Always),
            "if-not-present" => Some(Self::IfNotPresent),
            "never" => Some(Self::Never),
            _ => None,
        }
    }

    /// The Docker executor's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::IfNotPresent => "if-not-present",
            Self::Never => "never",
        }
    }
}

/// Network mode of a job's pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// Rootless user-mode networking (slirp4netns): isolated from the host's loopback.
    Slirp4netns,
    /// The host's network namespace (jobs can reach the host's loopback; services may collide).
    Host,
    /// No network besides loopback.
    None,
}

/// What the per-job build socket offers (`build_socket`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildSocket {
    /// No build socket.
    Off,
    /// Builds, and image tag, push, pull, list, inspect, remove, history and load.
    Build,
    /// `build`, plus containers the job creates through the socket (bind mounts only from
    /// beneath the job's builds directory, and tmpfs).
    Run,
}

impl BuildSocket {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Build => "build",
            Self::Run => "run",
        }
    }

    /// Parses the config spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "off" => Some(Self::Off),
            "build" => Some(Self::Build),
            "run" => Some(Self::Run),
            _ => None,
        }
    }
}

impl fmt::Display for BuildSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The raw TOML, exactly as written. Every key is optional; defaults are applied in [`validate`].
/// `deny_unknown_fields` because a typo in a security setting must fail closed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    user: Option<String>,
    job_users: Option<Vec<String>>,
    state_dir: Option<PathBuf>,
    runtime_dir: Option<PathBuf>,
    helper_image: Option<String>,
    default_image: Option<String>,
    gitlab_runner_binary: Option<PathBuf>,
    shell: Option<String>,
    hostname: Option<String>,
    network: Option<String>,
    pull_policy: Option<Vec<String>>,
    allowed_pull_policies: Option<Vec<String>>,
    allowed_images: Option<Vec<String>>,
    allowed_services: Option<Vec<String>>,
    cpus: Option<f64>,
    memory: Option<String>,
    pids_limit: Option<i64>,
    service_wait_timeout: Option<u64>,
    api_idle_timeout: Option<u64>,
    stop_grace: Option<u64>,
    no_new_privileges: Option<bool>,
    cap_drop: Option<Vec<String>>,
    insecure_registries: Option<Vec<String>>,
    nested_builds: Option<bool>,
    nested_run: Option<bool>,
    build_socket: Option<toml::Value>,
    scan_images: Option<bool>,
    scan_db: Option<PathBuf>,
    scan_severity: Option<String>,
    scan_block: Option<bool>,
    scan_ignore_unfixed: Option<bool>,
    buildkitd: Option<PathBuf>,
    buildkit_network: Option<String>,
    scan_jobs_may_relax: Option<bool>,
    scan_db_max_age: Option<u32>,
    scan_db_stale: Option<String>,
    scan_vex_dir: Option<PathBuf>,
    scan_ignore_policy: Option<PathBuf>,
    prune_after_days: Option<u32>,
    buildkit_cache: Option<String>,
    reap_grace: Option<u64>,
    metrics_dir: Option<PathBuf>,
    metrics_name: Option<String>,
    metrics_max_projects: Option<u32>,
    log_format: Option<String>,
    admin_log: Option<PathBuf>,
    image_trust: Option<Vec<crate::trust::RawTrustScope>>,
    admission_policies: Option<PathBuf>,
    sign_passed_images: Option<bool>,
    signing_key: Option<PathBuf>,
    db_url: Option<String>,
    db_public_key: Option<String>,
    registry_mirrors: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

/// Keys [`RawConfig`] accepts, for reporting every unknown key at once.
const KNOWN_KEYS: &[&str] = &[
    "user",
    "job_users",
    "state_dir",
    "runtime_dir",
    "helper_image",
    "default_image",
    "gitlab_runner_binary",
    "shell",
    "hostname",
    "network",
    "pull_policy",
    "allowed_pull_policies",
    "allowed_images",
    "allowed_services",
    "cpus",
    "memory",
    "pids_limit",
    "service_wait_timeout",
    "api_idle_timeout",
    "stop_grace",
    "no_new_privileges",
    "cap_drop",
    "insecure_registries",
    "nested_builds",
    "nested_run",
    "build_socket",
    "scan_images",
    "scan_db",
    "scan_severity",
    "scan_block",
    "scan_ignore_unfixed",
    "buildkitd",
    "buildkit_network",
    "scan_jobs_may_relax",
    "scan_db_max_age",
    "scan_db_stale",
    "scan_vex_dir",
    "scan_ignore_policy",
    "prune_after_days",
    "reap_grace",
    "buildkit_cache",
    "metrics_dir",
    "metrics_name",
    "metrics_max_projects",
    "log_format",
    "admin_log",
    "image_trust",
    "admission_policies",
    "sign_passed_images",
    "signing_key",
    "db_url",
    "db_public_key",
    "registry_mirrors",
];

/// An allow-list of doublestar globs with `!` exclusions (the Docker executor's `allowed_images`).
#[derive(Debug, Clone)]
pub struct AllowList {
    patterns: Vec<(bool, String, GlobMatcher)>,
}

impl AllowList {
    fn parse(key: &str, patterns: &[String], problems: &mut Vec<ConfigProblem>) -> Self {
        let mut out = Vec::new();
        for pattern in patterns {
            let (negated, glob) = match pattern.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, pattern.as_str()),
            };
            match GlobBuilder::new(glob).literal_separator(true).build() {
                Ok(g) => out.push((negated, pattern.clone(), g.compile_matcher())),
                Err(e) => problems.push(ConfigProblem::new(
                    key,
                    format!("pattern {pattern:?} is not a valid glob: {e}"),
                    "use `*` within one path segment and `**` across segments, e.g. \"docker.io/library/*:*\"",
                )),
            }
        }
        Self { patterns: out }
    }

    /// Whether `name` is allowed: it matches a positive pattern and no `!` pattern.
    /// An empty list allows everything, as in the Docker executor.
    pub fn allows(&self, name: &str) -> bool {
        if self.patterns.is_empty() {
            return true;
        }
        let mut allowed = false;
        for (negated, _, glob) in &self.patterns {
            if glob.is_match(name) {
                if *negated {
                    return false;
                }
                allowed = true;
            }
        }
        allowed
    }

    /// The patterns as written, for error messages.
    pub fn patterns(&self) -> Vec<&str> {
        self.patterns.iter().map(|(_, p, _)| p.as_str()).collect()
    }
}

/// Per-job resource limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// CPUs (fractional).
    pub cpus: Option<f64>,
    /// Memory in bytes.
    pub memory_bytes: Option<u64>,
    /// Maximum number of processes.
    pub pids: Option<i64>,
}

/// The validated configuration: every value checked, every default applied.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config came from (None: built-in defaults).
    pub source: Option<PathBuf>,
    /// The store identity: owns the shared base store and the kept caches; pulls run as it.
    pub user: String,
    /// One unprivileged identity per concurrent job (started as root): everything that runs
    /// for a job runs as the identity it leases, which owns nothing of any other job.
    pub job_users: Vec<String>,
    /// Base directory: `images/` (shared read-only base store), `jobs/`, `cache/`.
    pub state_dir: PathBuf,
    /// Override for the per-user runtime directory (default `/run/user/UID/berth`).
    pub runtime_dir: Option<PathBuf>,
    /// Helper image (git, git-lfs; the runner binary is mounted in).
    pub helper_image: String,
    /// Image for jobs that name none.
    pub default_image: Option<String>,
    /// Host gitlab-runner binary to mount into the helper (default: the calling runner).
    pub gitlab_runner_binary: Option<PathBuf>,
    /// Shell for generated scripts.
    pub shell: String,
    /// Host name reported to the runner.
    pub hostname: Option<String>,
    /// Pod network.
    pub network: NetworkMode,
    /// Default pull policy list.
    pub pull_policy: Vec<PullPolicy>,
    /// Pull policies a job may request.
    pub allowed_pull_policies: Vec<PullPolicy>,
    /// Images jobs may use.
    pub allowed_images: AllowList,
    /// Services jobs may use.
    pub allowed_services: AllowList,
    /// Per-job limits.
    pub limits: Limits,
    /// Seconds to wait for a service's exposed ports.
    pub service_wait_timeout_secs: u64,
    /// Idle timeout of the per-job Podman API service.
    pub api_idle_timeout_secs: u64,
    /// Seconds between SIGTERM and SIGKILL when stopping a script.
    pub stop_grace_secs: u64,
    /// Set no-new-privileges on job containers.
    pub no_new_privileges: bool,
    /// Capabilities removed from Podman's default set.
    pub cap_drop: Vec<String>,
    /// Registries (`host[:port]`) pulled from over plain HTTP or without TLS verification.
    pub insecure_registries: Vec<String>,
    /// Prepare job containers for `podman build`/`buildah bud` inside (chroot isolation, a
    /// per-job inner store, the base store as read-only inner image store).
    pub nested_builds: bool,
    /// Kept caches (per-project `/cache`, BuildKit caches, the scanner's layer cache) unused
    /// for this many days are pruned by `berth reap` (run it from a timer); None: never.
    pub prune_after_days: Option<u32>,
    /// Seconds a job directory without a state file, or a lease without a job directory, is
    /// left alone by the reaper as a prepare still in progress.
    pub reap_grace_secs: u64,
    /// Also allow `podman run` and OCI-isolation builds inside the job: the job container gets
    /// Podman's default seccomp profile with `sethostname`, `setdomainname` and `setns` no
    /// longer gated on CAP_SYS_ADMIN, an unmasked `/proc`, and inner containers get a user
    /// namespace of their own. Never privileged, never unconfined.
    pub nested_run: bool,
    /// What the Docker-compatible build socket behind berth's filtering proxy offers.
    pub build_socket: BuildSocket,
    /// Scanning of the images a job builds.
    pub scan: ScanSettings,
    /// `[[image_trust]]`: the signatures images must carry, by scope (None: not checked).
    pub image_trust: Option<crate::trust::ImageTrust>,
    /// A directory of Rego admission policies asked at prepare (`data.berth.prepare.deny`).
    pub admission_policies: Option<PathBuf>,
    /// Sign, with `signing_key`, the images a job pushed that passed the scan (and the build
    /// policies).
    pub sign_passed_images: bool,
    /// berth's private signing key (PKCS#8 PEM, ECDSA P-256), used with `sign_passed_images`.
    pub signing_key: Option<PathBuf>,
    /// Per-job rootless BuildKit: the `buildkitd` binary (None: not offered).
    pub buildkitd: Option<PathBuf>,
    /// Network of the per-job buildkitd's RUN steps: `isolated` (slirp4netns without the
    /// host's loopback, default) or `host`.
    pub buildkit_host_network: bool,
    /// Keep BuildKit's cache per project (and apart for protected refs) instead of per job.
    pub buildkit_cache_per_project: bool,
    /// Metrics and the admin log.
    pub observability: Observability,
    /// Where `berth db update` without `--from` fetches the advisory database, and how it is
    /// verified.
    pub advisory_updates: AdvisoryUpdates,
    /// Pull-through mirrors tried, in order, before each registry (base image pulls and the
    /// job's Podman service).
    pub registry_mirrors: Vec<RegistryMirror>,
}

/// A registry and the mirrors tried before it, as containers-registries.conf's
/// `[[registry.mirror]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryMirror {
    /// The registry (`host[:port]`, optionally with a namespace) whose images the mirrors serve.
    pub registry: String,
    /// Mirrors (`host[:port]`, optionally with a namespace), tried in this order.
    pub mirrors: Vec<String>,
}

/// The advisory database published once and fetched by every host (`berth db update`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdvisoryUpdates {
    /// What `berth db update` with no `--from` fetches: a published database
    /// (`…/berth-advisories.tar`) or OSV data over http(s). None: nothing configured.
    pub url: Option<String>,
    /// The publisher's minisign public key: every fetched database must carry a signature that
    /// verifies with it.
    pub public_key: Option<minisign_verify::PublicKey>,
}

/// What berth tells the runner's admin apart from the job log: metrics for node_exporter's
/// textfile collector and the admin log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observability {
    /// node_exporter's textfile directory (None: no metrics).
    pub metrics_dir: Option<PathBuf>,
    /// The file's stem (`<metrics_dir>/<name>.prom`) and the `runner` label: one per runner
    /// config, so several configs may share a `metrics_dir`.
    pub metrics_name: String,
    /// Projects kept in the `project` label of the findings gauge (the least recently scanned
    /// are dropped beyond it; 0: no per-project series).
    pub metrics_max_projects: u32,
    /// berth's own events as JSON lines to journald, or to `admin_log` without journald.
    pub json_log: bool,
    /// The admin log file used when journald is not there.
    pub admin_log: Option<PathBuf>,
}

/// `metrics_name` by default: the config file's stem (`config.d/fast.toml` is `fast`), `berth`
/// for `config.toml` and the built-in defaults.
fn default_metrics_name(source: Option<&Path>) -> String {
    source
        .and_then(Path::file_stem)
        .and_then(|s| s.to_str())
        .filter(|s| *s != "config" && valid_metrics_name(s))
        .unwrap_or("berth")
        .to_owned()
}

fn valid_metrics_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn observability(
    raw: &RawConfig,
    source: Option<&Path>,
    problems: &mut Vec<ConfigProblem>,
) -> Observability {
    let metrics_name = match &raw.metrics_name {
        Some(name) if valid_metrics_name(name) => name.clone(),
        Some(name) => {
            problems.push(ConfigProblem::new(
                "metrics_name",
                format!("{name:?} is not a file name of letters, digits, '-', '_' and '.'"),
                "use e.g. \"runner-a\" (at most 64 characters, not starting with '.')",
            ));
            default_metrics_name(source)
        }
        None => default_metrics_name(source),
    };
    let json_log = match raw.log_format.as_deref().unwrap_or("text") {
        "text" => false,
        "json" => true,
        other => {
            problems.push(ConfigProblem::new(
                "log_format",
                format!("unknown log format {other:?}"),
                "use \"text\" (default: berth's messages only in the job log) or \"json\" (also an admin log of JSON lines)",
            ));
            false
        }
    };
    if json_log && raw.admin_log.is_none() {
        problems.push(ConfigProblem::new(
            "admin_log",
            "log_format = \"json\" needs a file for hosts without journald",
            "set admin_log, e.g. \"/var/log/berth/admin.log\" (used only when /run/systemd/journal/socket is missing)",
        ));
    }
    Observability {
        metrics_dir: raw
            .metrics_dir
            .clone()
            .map(|p| absolute("metrics_dir", p, problems)),
        metrics_name,
        metrics_max_projects: raw.metrics_max_projects.unwrap_or(50),
        json_log,
        admin_log: raw
            .admin_log
            .clone()
            .map(|p| absolute("admin_log", p, problems)),
    }
}

/// How berth scans the images a job builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanSettings {
    /// Scan at all.
    pub enabled: bool,
    /// Advisory database (made by `berth db update`).
    pub db: PathBuf,
    /// Severities that count (comma-separated, Trivy's names).
    pub severity: String,
    /// Fail the job when counted findings remain.
    pub block: bool,
    /// Leave out findings without a fixed version.
    pub ignore_unfixed: bool,
    /// Jobs may relax the policy (fewer severities, ignore unfixed, not blocking) through
    /// `BERTH_SCAN_*` variables; they may always make it stricter.
    pub jobs_may_relax: bool,
    /// Advisories older than this many days (newest record) are stale.
    pub db_max_age_days: u32,
    /// Stale advisories fail the job (a system failure) instead of a warning.
    pub db_stale_fail: bool,
    /// The admin's VEX documents (every `*.json` in it), applied to every job's images with the
    /// project's own `.vex/`.
    pub vex_dir: Option<PathBuf>,
    /// The admin's Rego ignore policy (Trivy's `--ignore-policy`). Only the admin's: a policy
    /// from the project would be job-controlled code the runner evaluates.
    pub ignore_policy: Option<PathBuf>,
}

/// One thing wrong with the config: the key, what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The offending key.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl ConfigProblem {
    pub(crate) fn new(key: &str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {} (fix: {})", self.key, self.message, self.fix)
    }
}

/// Why the config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error(
        "cannot read berth config {path}: {source} (fix: create it, or point --config/BERTH_CONFIG at the right file)"
    )]
    Read {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a value has the wrong type.
    #[error("berth config {path} is not valid: {message}")]
    Syntax {
        /// Path.
        path: PathBuf,
        /// The TOML parser's message, naming the line and key.
        message: String,
    },
    /// One or more values are wrong.
    #[error("berth config {path} has {count} problem(s):\n{list}", count = problems.len(), list = render(problems))]
    Invalid {
        /// Path.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<ConfigProblem>,
    },
}

fn render(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, Some(path))
    }

    /// Parses and validates config text.
    pub fn parse(text: &str, path: Option<&Path>) -> Result<Self, ConfigError> {
        let shown = path.map_or_else(|| PathBuf::from("<config>"), Path::to_owned);
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        let unknown: Vec<ConfigProblem> = table
            .keys()
            .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
            .map(|k| {
                ConfigProblem::new(
                    k,
                    "unknown key",
                    format!("remove it, or use one of: {}", KNOWN_KEYS.join(", ")),
                )
            })
            .collect();
        if !unknown.is_empty() {
            return Err(ConfigError::Invalid {
                path: shown,
                problems: unknown,
            });
        }
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        validate(raw, path).map_err(|problems| ConfigError::Invalid {
            path: shown,
            problems,
        })
    }

    /// The built-in defaults (no config file).
    pub fn defaults() -> Self {
        validate(RawConfig::default(), None).unwrap_or_else(|_| unreachable!("defaults are valid"))
    }

    /// The shared, read-only base image store.
    pub fn image_store(&self) -> PathBuf {
        self.state_dir.join("images")
    }

    /// Parent of every job directory.
    pub fn jobs_dir(&self) -> PathBuf {
        self.state_dir.join("jobs")
    }

    /// Parent of every per-project cache directory.
    pub fn cache_root(&self) -> PathBuf {
        self.state_dir.join("cache")
    }

    /// Leases of the job identities (root's alone): which job holds which identity.
    pub fn leases_dir(&self) -> PathBuf {
        self.state_dir.join("leases")
    }

    /// The name of this runner config on its host ([`instance_of`] its state directory).
    pub fn instance(&self) -> Option<String> {
        instance_of(&self.state_dir)
    }

    /// What this config claims on its host, to compare with other runners' configs.
    pub fn footprint(&self) -> Footprint {
        Footprint {
            config: self.source.clone(),
            user: self.user.clone(),
            job_users: self.job_users.clone(),
            state_dir: self.state_dir.clone(),
            runtime_dir: self.runtime_dir.clone(),
        }
    }
}

/// The name of the runner config whose state directory is `state_dir` (no two configs may share
/// one): `None` for the default directory, else `s` and 8 hex digits of the directory's SHA-256.
/// Jobs are named with it where configs share places (cgroups, `/run/berth`), so those names
/// never meet another config's.
pub fn instance_of(state_dir: &Path) -> Option<String> {
    if state_dir == Path::new(DEFAULT_STATE_DIR) {
        return None;
    }
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        state_dir.as_os_str().as_encoded_bytes(),
    );
    let hex: String = digest.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(format!("s{hex}"))
}

/// What one runner's berth config claims on a host: its identities and directories. Two
/// runners' configs must claim nothing in common, or one runner's jobs and reaper would act on
/// the other's (`berth doctor` and every prepare check it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Footprint {
    /// The config file (None: the built-in defaults).
    pub config: Option<PathBuf>,
    /// The store identity.
    pub user: String,
    /// The job identities.
    pub job_users: Vec<String>,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The runtime directory, when set.
    pub runtime_dir: Option<PathBuf>,
}

impl Footprint {
    /// Every identity: the store identity, then the job identities.
    pub fn identities(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.user.as_str()).chain(self.job_users.iter().map(String::as_str))
    }

    /// What this footprint shares with `other`, each item naming one thing shared: identities,
    /// the state directory (or one inside the other), the runtime directory.
    pub fn shared_with(&self, other: &Self) -> Vec<String> {
        let mut shared = Vec::new();
        let theirs: Vec<&str> = other.identities().collect();
        let identities: Vec<&str> = self.identities().filter(|i| theirs.contains(i)).collect();
        if !identities.is_empty() {
            shared.push(format!("the identities {}", identities.join(", ")));
        }
        if self.state_dir.starts_with(&other.state_dir)
            || other.state_dir.starts_with(&self.state_dir)
        {
            shared.push(format!(
                "the state directory ({} and {})",
                self.state_dir.display(),
                other.state_dir.display()
            ));
        }
        if let (Some(mine), Some(theirs)) = (&self.runtime_dir, &other.runtime_dir)
            && (mine.starts_with(theirs) || theirs.starts_with(mine))
        {
            shared.push(format!(
                "the runtime directory ({} and {})",
                mine.display(),
                theirs.display()
            ));
        }
        shared
    }

    /// The config's name for people: its file, or the built-in defaults.
    pub fn describe(&self) -> String {
        self.config.as_ref().map_or_else(
            || "the built-in defaults".to_owned(),
            |p| p.display().to_string(),
        )
    }
}

/// How many job identities the host setup creates by default.
pub const DEFAULT_JOB_SLOTS: usize = 8;

/// The job identities the host setup creates by default.
pub fn default_job_users() -> Vec<String> {
    (0..DEFAULT_JOB_SLOTS)
        .map(|n| format!("berth-job-{n}"))
        .collect()
}

fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !name.starts_with('-')
}

fn job_users(
    raw: Option<Vec<String>>,
    store: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Vec<String> {
    let users = raw.unwrap_or_else(default_job_users);
    if users.is_empty() {
        problems.push(ConfigProblem::new(
            "job_users",
            "the list is empty: jobs would share one identity",
            "name at least one unprivileged user per concurrent job (setup-host.sh creates berth-job-0 … berth-job-7)",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for user in &users {
        if !valid_user_name(user) || user == "root" {
            problems.push(ConfigProblem::new(
                "job_users",
                format!("{user:?} is not an unprivileged user name"),
                "use names like \"berth-job-0\"",
            ));
        } else if user == store {
            problems.push(ConfigProblem::new(
                "job_users",
                format!("{user:?} is also `user`, the identity that owns the base store"),
                "give jobs identities of their own",
            ));
        } else if !seen.insert(user.as_str()) {
            problems.push(ConfigProblem::new(
                "job_users",
                format!("{user:?} is listed twice"),
                "list each identity once",
            ));
        }
    }
    users
}

fn parse_policies(
    key: &str,
    list: &[String],
    problems: &mut Vec<ConfigProblem>,
) -> Vec<PullPolicy> {
    let mut out = Vec::new();
    for item in list {
        match PullPolicy::parse(item) {
            Some(p) => out.push(p),
            None => problems.push(ConfigProblem::new(
                key,
                format!("unknown pull policy {item:?}"),
                "use \"always\", \"if-not-present\" or \"never\"",
            )),
        }
    }
    if out.is_empty() && list.is_empty() {
        problems.push(ConfigProblem::new(
            key,
            "the list is empty",
            "name at least one policy, e.g. [\"if-not-present\"]",
        ));
    }
    out
}

/// Parses Docker-style sizes: `512m`, `2g`, `1GiB`, `1048576`.
fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn absolute(key: &str, path: PathBuf, problems: &mut Vec<ConfigProblem>) -> PathBuf {
    if !path.is_absolute() {
        problems.push(ConfigProblem::new(
            key,
            format!("{} is not an absolute path", path.display()),
            "write the full path, starting with /",
        ));
    }
    path
}

/// Whether `text` is what registries.conf takes as a location: `host[:port]`, optionally with
/// `/namespace…`, no scheme, no tag or digest.
fn registry_location(text: &str) -> bool {
    let host = text.split('/').next().unwrap_or_default();
    !host.is_empty()
        && !text.ends_with('/')
        && !text.contains("//")
        && !text.contains(['@', ' ', '\t', '"', '*'])
        && !text.contains("://")
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

fn registry_mirrors(
    raw: Option<std::collections::BTreeMap<String, Vec<String>>>,
    problems: &mut Vec<ConfigProblem>,
) -> Vec<RegistryMirror> {
    let mut out = Vec::new();
    for (registry, mirrors) in raw.unwrap_or_default() {
        if !registry_location(&registry) {
            problems.push(ConfigProblem::new(
                "registry_mirrors",
                format!("{registry:?} is not a registry"),
                "name the registry as in image names, host[:port] (e.g. \"docker.io\" or \"registry.example:5000\"), without https://",
            ));
        }
        if mirrors.is_empty() {
            problems.push(ConfigProblem::new(
                "registry_mirrors",
                format!("{registry:?} has no mirrors"),
                "list at least one mirror, e.g. [\"mirror.example:5000\"], or remove the entry",
            ));
        }
        for mirror in &mirrors {
            if !registry_location(mirror) || *mirror == registry {
                problems.push(ConfigProblem::new(
                    "registry_mirrors",
                    format!("{mirror:?} is not a mirror of {registry:?}"),
                    "write the mirror as host[:port] (a plain-HTTP mirror also goes into insecure_registries), e.g. \"mirror.example:5000\"",
                ));
            }
        }
        out.push(RegistryMirror { registry, mirrors });
    }
    out
}

fn advisory_updates(
    url: Option<String>,
    public_key: Option<String>,
    problems: &mut Vec<ConfigProblem>,
) -> AdvisoryUpdates {
    if let Some(url) = &url {
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        if rest
            .is_none_or(|r| r.is_empty() || r.starts_with('/') || r.contains(char::is_whitespace))
        {
            problems.push(ConfigProblem::new(
                "db_url",
                format!("{url:?} is not an http(s) URL"),
                "write the URL of the published database, e.g. \"https://mirror.example/berth/berth-advisories.tar\"",
            ));
        }
    }
    let public_key =
        public_key.and_then(
            |text| match minisign_verify::PublicKey::from_base64(text.trim()) {
                Ok(key) => Some(key),
                Err(e) => {
                    problems.push(ConfigProblem::new(
                        "db_public_key",
                        format!("{text:?} is not a minisign public key ({e})"),
                        "paste the second line of the publisher's minisign.pub (it starts with RW)",
                    ));
                    None
                }
            },
        );
    if let (Some(url), Some(_)) = (&url, &public_key) {
        let path = url.split(['?', '#']).next().unwrap_or_default();
        if !path.ends_with(".tar") {
            problems.push(ConfigProblem::new(
                "db_url",
                format!("{url:?} is not a published database, so db_public_key cannot verify it"),
                "point db_url at the berth-advisories.tar that `berth db publish` wrote, or remove db_public_key",
            ));
        }
    }
    AdvisoryUpdates { url, public_key }
}

fn validate(raw: RawConfig, source: Option<&Path>) -> Result<Config, Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    let observability = observability(&raw, source, &mut problems);
    let user = raw.user.unwrap_or_else(|| "berth-runner".to_owned());
    if user.is_empty() || user == "root" {
        problems.push(ConfigProblem::new(
            "user",
            format!("{user:?} cannot run jobs: berth never runs Podman as root"),
            "name an unprivileged user with /etc/subuid and /etc/subgid ranges (setup-host.sh creates berth-runner)",
        ));
    }
    let job_users = job_users(raw.job_users, &user, &mut problems);
    let state_dir = absolute(
        "state_dir",
        raw.state_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
        &mut problems,
    );
    let runtime_dir = raw
        .runtime_dir
        .map(|p| absolute("runtime_dir", p, &mut problems));
    let gitlab_runner_binary = raw
        .gitlab_runner_binary
        .map(|p| absolute("gitlab_runner_binary", p, &mut problems));
    let shell = raw.shell.unwrap_or_else(|| "bash".to_owned());
    if !matches!(shell.as_str(), "bash" | "sh") {
        problems.push(ConfigProblem::new(
            "shell",
            format!("shell {shell:?} is not supported in Linux containers"),
            "use \"bash\" (falls back to sh in images without bash) or \"sh\"",
        ));
    }
    let network = match raw.network.as_deref().unwrap_or("slirp4netns") {
        "slirp4netns" => NetworkMode::Slirp4netns,
        "host" => NetworkMode::Host,
        "none" => NetworkMode::None,
        other => {
            problems.push(ConfigProblem::new(
                "network",
                format!("unknown network mode {other:?}"),
                "use \"slirp4netns\" (default), \"host\" or \"none\"",
            ));
            NetworkMode::Slirp4netns
        }
    };
    let pull_policy = parse_policies(
        "pull_policy",
        &raw.pull_policy
            .unwrap_or_else(|| vec!["if-not-present".into()]),
        &mut problems,
    );
    let allowed_pull_policies = match raw.allowed_pull_policies {
        Some(list) => parse_policies("allowed_pull_policies", &list, &mut problems),
        None => pull_policy.clone(),
    };
    if let Some(bad) = pull_policy
        .iter()
        .find(|p| !allowed_pull_policies.contains(p))
    {
        problems.push(ConfigProblem::new(
            "pull_policy",
            format!("{:?} is not in allowed_pull_policies", bad.as_str()),
            "add it to allowed_pull_policies or remove it from pull_policy",
        ));
    }
    let allowed_images = AllowList::parse(
        "allowed_images",
        &raw.allowed_images.unwrap_or_default(),
        &mut problems,
    );
    let allowed_services = AllowList::parse(
        "allowed_services",
        &raw.allowed_services.unwrap_or_default(),
        &mut problems,
    );
    if let Some(cpus) = raw.cpus
        && !(cpus > 0.0 && cpus.is_finite())
    {
        problems.push(ConfigProblem::new(
            "cpus",
            format!("{cpus} is not a positive number of CPUs"),
            "use e.g. 1.5, or remove the key for no limit",
        ));
    }
    let memory_bytes = raw.memory.as_deref().and_then(|m| {
        let parsed = parse_bytes(m).filter(|b| *b >= 6 << 20);
        if parsed.is_none() {
            problems.push(ConfigProblem::new(
                "memory",
                format!("{m:?} is not a memory size of at least 6m"),
                "use e.g. \"512m\" or \"2g\"",
            ));
        }
        parsed
    });
    if let Some(pids) = raw.pids_limit
        && pids < 1
    {
        problems.push(ConfigProblem::new(
            "pids_limit",
            format!("{pids} is not a positive process count"),
            "use e.g. 4096, or remove the key for no limit",
        ));
    }
    let cap_drop = raw.cap_drop.unwrap_or_default();
    for cap in &cap_drop {
        if !cap.starts_with("CAP_") && cap != "ALL" {
            problems.push(ConfigProblem::new(
                "cap_drop",
                format!("{cap:?} is not a capability name"),
                "write capabilities as CAP_NET_RAW etc., or \"ALL\"",
            ));
        }
    }
    let insecure_registries = raw.insecure_registries.unwrap_or_default();
    for registry in &insecure_registries {
        if registry.is_empty() || registry.contains('/') {
            problems.push(ConfigProblem::new(
                "insecure_registries",
                format!("{registry:?} is not a registry host"),
                "write host[:port], e.g. \"127.0.0.1:5000\"",
            ));
        }
    }
    let severity = raw
        .scan_severity
        .unwrap_or_else(|| "HIGH,CRITICAL".to_owned());
    for level in severity.split(',') {
        if !matches!(
            level.trim(),
            "UNKNOWN" | "LOW" | "MEDIUM" | "HIGH" | "CRITICAL"
        ) {
            problems.push(ConfigProblem::new(
                "scan_severity",
                format!("{level:?} is not a severity"),
                "list some of UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL, e.g. \"HIGH,CRITICAL\"",
            ));
        }
    }
    let image_trust = crate::trust::validate(raw.image_trust, &mut problems);
    let admission_policies = raw
        .admission_policies
        .map(|p| absolute("admission_policies", p, &mut problems));
    let sign_passed_images = raw.sign_passed_images.unwrap_or(false);
    let signing_key = raw
        .signing_key
        .map(|key| absolute("signing_key", key, &mut problems));
    if sign_passed_images && signing_key.is_none() {
        problems.push(ConfigProblem::new(
            "sign_passed_images",
            "is on, but no `signing_key` says which key signs",
            "add `signing_key = \"/etc/berth/keys/berth.key\"`: a PKCS#8 PEM ECDSA P-256 key only root can read (`openssl ecparam -genkey -name prime256v1 | openssl pkcs8 -topk8 -nocrypt`)",
        ));
    }
    let scan = ScanSettings {
        enabled: raw.scan_images.unwrap_or(true),
        db: absolute(
            "scan_db",
            raw.scan_db.unwrap_or_else(|| state_dir.join("advisories")),
            &mut problems,
        ),
        severity,
        block: raw.scan_block.unwrap_or(true),
        ignore_unfixed: raw.scan_ignore_unfixed.unwrap_or(false),
        jobs_may_relax: raw.scan_jobs_may_relax.unwrap_or(false),
        db_max_age_days: match raw.scan_db_max_age {
            Some(0) => {
                problems.push(ConfigProblem::new(
                    "scan_db_max_age",
                    "0 days would call every database stale",
                    "use a number of days, e.g. 7 (the default)",
                ));
                7
            }
            days => days.unwrap_or(7),
        },
        db_stale_fail: match raw.scan_db_stale.as_deref().unwrap_or("warn") {
            "warn" => false,
            "fail" => true,
            other => {
                problems.push(ConfigProblem::new(
                    "scan_db_stale",
                    format!("unknown choice {other:?}"),
                    "use \"warn\" (default: scan and say so in the job log) or \"fail\" (fail the job as a system failure until the database is updated)",
                ));
                false
            }
        },
        vex_dir: raw
            .scan_vex_dir
            .map(|p| absolute("scan_vex_dir", p, &mut problems)),
        ignore_policy: raw
            .scan_ignore_policy
            .map(|p| absolute("scan_ignore_policy", p, &mut problems)),
    };
    let buildkitd = raw
        .buildkitd
        .map(|p| absolute("buildkitd", p, &mut problems));
    let buildkit_host_network = match raw.buildkit_network.as_deref().unwrap_or("isolated") {
        "isolated" => false,
        "host" => true,
        other => {
            problems.push(ConfigProblem::new(
                "buildkit_network",
                format!("unknown BuildKit network {other:?}"),
                "use \"isolated\" (default: no access to the host's loopback) or \"host\"",
            ));
            false
        }
    };
    let buildkit_cache_per_project = match raw.buildkit_cache.as_deref().unwrap_or("job") {
        "job" => false,
        "project" => true,
        other => {
            problems.push(ConfigProblem::new(
                "buildkit_cache",
                format!("unknown BuildKit cache scope {other:?}"),
                "use \"job\" (default: dropped with the job) or \"project\" (kept per project and per protected/unprotected ref)",
            ));
            false
        }
    };
    let build_socket = match &raw.build_socket {
        None => BuildSocket::Build,
        Some(toml::Value::String(text)) => BuildSocket::parse(text).unwrap_or_else(|| {
            problems.push(ConfigProblem::new(
                "build_socket",
                format!("unknown choice {text:?}"),
                "use \"off\", \"build\" (default: builds and images) or \"run\" (also containers)",
            ));
            BuildSocket::Build
        }),
        Some(toml::Value::Boolean(old)) => {
            problems.push(ConfigProblem::new(
                "build_socket",
                format!("the boolean {old} is no longer accepted"),
                if *old {
                    "write build_socket = \"build\" (builds and images) or \"run\" (also containers)"
                } else {
                    "write build_socket = \"off\""
                },
            ));
            BuildSocket::Off
        }
        Some(other) => {
            problems.push(ConfigProblem::new(
                "build_socket",
                format!("a {}, not a string", other.type_str()),
                "use \"off\", \"build\" or \"run\"",
            ));
            BuildSocket::Off
        }
    };
    let nested_builds = raw.nested_builds.unwrap_or(true);
    let nested_run = raw.nested_run.unwrap_or(false);
    if nested_run && !nested_builds {
        problems.push(ConfigProblem::new(
            "nested_run",
            "nested_run needs nested_builds, which is false",
            "set nested_builds = true, or remove nested_run",
        ));
    }
    let advisory_updates = advisory_updates(raw.db_url, raw.db_public_key, &mut problems);
    let registry_mirrors = registry_mirrors(raw.registry_mirrors, &mut problems);
    let config = Config {
        source: source.map(Path::to_owned),
        user,
        job_users,
        state_dir,
        runtime_dir,
        helper_image: raw
            .helper_image
            .unwrap_or_else(|| "localhost/berth-helper:latest".to_owned()),
        default_image: raw.default_image,
        gitlab_runner_binary,
        shell,
        hostname: raw.hostname,
        network,
        pull_policy,
        allowed_pull_policies,
        allowed_images,
        allowed_services,
        limits: Limits {
            cpus: raw.cpus,
            memory_bytes,
            pids: raw.pids_limit,
        },
        service_wait_timeout_secs: raw.service_wait_timeout.unwrap_or(30),
        api_idle_timeout_secs: raw.api_idle_timeout.unwrap_or(600),
        stop_grace_secs: raw.stop_grace.unwrap_or(5),
        no_new_privileges: raw.no_new_privileges.unwrap_or(true),
        cap_drop,
        insecure_registries,
        nested_builds,
        nested_run,
        reap_grace_secs: raw.reap_grace.unwrap_or(120),
        prune_after_days: match raw.prune_after_days.unwrap_or(30) {
            0 => None,
            days => Some(days),
        },
        build_socket,
        scan,
        image_trust,
        admission_policies,
        sign_passed_images,
        signing_key,
        buildkitd,
        buildkit_host_network,
        buildkit_cache_per_project,
        observability,
        advisory_updates,
        registry_mirrors,
    };
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_secure_and_valid() {
        let c = Config::defaults();
        assert_eq!(c.user, "berth-runner");
        assert!(c.no_new_privileges);
        assert_eq!(c.pull_policy, vec![PullPolicy::IfNotPresent]);
        assert!(c.allowed_images.allows("anything:1"));
    }

    #[test]
    fn the_build_socket_is_a_mode_and_the_old_boolean_names_the_fix() {
        assert_eq!(Config::defaults().build_socket, BuildSocket::Build);
        let run = Config::parse("build_socket = \"run\"\n", None).expect("valid");
        assert_eq!(run.build_socket, BuildSocket::Run);
        for (text, fix) in [
            ("build_socket = true\n", "\"build\""),
            ("build_socket = false\n", "\"off\""),
            ("build_socket = \"all\"\n", "\"run\""),
        ] {
            let err = Config::parse(text, None).expect_err(text);
            let ConfigError::Invalid { problems, .. } = err else {
                panic!("expected Invalid, got {err}");
            };
            assert_eq!(problems[0].key, "build_socket");
            assert!(problems[0].fix.contains(fix), "{text}: {}", problems[0].fix);
        }
    }

    #[test]
    fn the_advisory_database_url_and_key_are_checked_together() {
        assert_eq!(
            Config::defaults().advisory_updates,
            AdvisoryUpdates::default()
        );
        let key = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3";
        let ok = Config::parse(
            &format!(
                "db_url = \"https://h/berth/berth-advisories.tar\"\ndb_public_key = \"{key}\"\n"
            ),
            None,
        )
        .expect("valid");
        assert_eq!(
            ok.advisory_updates.url.as_deref(),
            Some("https://h/berth/berth-advisories.tar")
        );
        assert!(ok.advisory_updates.public_key.is_some());
        for (text, fix) in [
            ("db_url = \"ftp://h/x.tar\"\n", "published database"),
            ("db_url = \"https://\"\n", "published database"),
            ("db_public_key = \"not a key\"\n", "minisign.pub"),
            (
                &*format!("db_url = \"https://h/all.zip\"\ndb_public_key = \"{key}\"\n"),
                "remove db_public_key",
            ),
        ] {
            let err = Config::parse(text, None).expect_err(text);
            let ConfigError::Invalid { problems, .. } = err else {
                panic!("expected Invalid, got {err}");
            };
            assert_eq!(problems.len(), 1, "{text}: {problems:?}");
            assert!(problems[0].fix.contains(fix), "{text}: {}", problems[0].fix);
        }
    }

    #[test]
    fn registry_mirrors_map_a_registry_to_its_mirrors_in_order() {
        let c = Config::parse(
            "[registry_mirrors]\n\"docker.io\" = [\"m1.example:5000\", \"m2.example/hub\"]\n\"127.0.0.1:5000\" = [\"127.0.0.1:5001\"]\n",
            None,
        )
        .expect("valid");
        assert_eq!(
            c.registry_mirrors,
            vec![
                RegistryMirror {
                    registry: "127.0.0.1:5000".into(),
                    mirrors: vec!["127.0.0.1:5001".into()],
                },
                RegistryMirror {
                    registry: "docker.io".into(),
                    mirrors: vec!["m1.example:5000".into(), "m2.example/hub".into()],
                },
            ]
        );
        assert!(Config::defaults().registry_mirrors.is_empty());
        let err = Config::parse(
            "[registry_mirrors]\n\"https://docker.io\" = [\"m\"]\n\"quay.io\" = []\n\"ghcr.io\" = [\"ghcr.io\", \"http://m:1\"]\n",
            None,
        )
        .expect_err("bad mirrors");
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected Invalid, got {err}");
        };
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems.iter().all(|p| p.key == "registry_mirrors"));
        assert!(
            Config::parse("registry_mirrors = [\"docker.io\"]\n", None).is_err(),
            "a list is not a map"
        );
    }

    #[test]
    fn metrics_and_the_admin_log_are_off_by_default_and_checked_when_set() {
        let c = Config::defaults();
        assert_eq!(c.observability.metrics_dir, None);
        assert!(!c.observability.json_log);
        assert_eq!(c.observability.metrics_name, "berth");
        let named = |path: &str| {
            Config::parse("", Some(Path::new(path)))
                .expect("valid")
                .observability
                .metrics_name
        };
        assert_eq!(named("/etc/berth/config.toml"), "berth");
        assert_eq!(named("/etc/berth/config.d/fast-lane.toml"), "fast-lane");
        let c = Config::parse(
            "metrics_dir = \"/var/lib/berth-metrics\"\nmetrics_name = \"a\"\nmetrics_max_projects = 3\nlog_format = \"json\"\nadmin_log = \"/var/log/berth.log\"\n",
            None,
        )
        .expect("valid");
        assert_eq!(
            c.observability,
            Observability {
                metrics_dir: Some("/var/lib/berth-metrics".into()),
                metrics_name: "a".into(),
                metrics_max_projects: 3,
                json_log: true,
                admin_log: Some("/var/log/berth.log".into()),
            }
        );
        let err = Config::parse(
            "metrics_dir = \"rel\"\nmetrics_name = \"../x\"\nlog_format = \"xml\"\n",
            None,
        )
        .expect_err("bad");
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected Invalid, got {err}");
        };
        let mut keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["log_format", "metrics_dir", "metrics_name"]);
        let err = Config::parse("log_format = \"json\"\n", None).expect_err("no file");
        assert!(err.to_string().contains("admin_log"), "{err}");
    }

    #[test]
    fn every_unknown_key_is_reported_at_once() {
        let err = Config::parse("usr = \"x\"\nimage_policy = 1\nshell = \"bash\"\n", None)
            .expect_err("unknown keys");
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected Invalid, got {err}");
        };
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, vec!["image_policy", "usr"]);
        assert!(problems[0].fix.contains("user"));
    }

    #[test]
    fn every_bad_value_is_reported_with_key_and_fix() {
        let text = r#"
            user = "root"
            state_dir = "relative/dir"
            shell = "pwsh"
            pull_policy = ["sometimes"]
            memory = "lots"
            cpus = -1.0
            pids_limit = 0
            allowed_images = ["[unclosed"]
        "#;
        let err =
            Config::parse(text, Some(Path::new("/etc/berth/config.toml"))).expect_err("bad values");
        let message = err.to_string();
        for key in [
            "`user`",
            "`state_dir`",
            "`shell`",
            "`pull_policy`",
            "`memory`",
            "`cpus`",
            "`pids_limit`",
            "`allowed_images`",
        ] {
            assert!(message.contains(key), "{key} missing from:\n{message}");
        }
        assert!(message.contains("/etc/berth/config.toml"));
        assert!(message.contains("fix:"));
    }

    #[test]
    fn job_identities_are_distinct_unprivileged_and_not_the_store_identity() {
        assert_eq!(Config::defaults().job_users, default_job_users());
        let text = r#"
            user = "berth-runner"
            job_users = ["berth-job-0", "berth-job-0", "root", "berth-runner", "Bad/Name"]
        "#;
        let message = Config::parse(text, None)
            .expect_err("bad identities")
            .to_string();
        for needle in [
            "listed twice",
            "\"root\" is not",
            "also `user`",
            "\"Bad/Name\" is not",
        ] {
            assert!(
                message.contains(needle),
                "{needle} missing from:\n{message}"
            );
        }
        let empty = Config::parse("job_users = []\n", None).expect_err("empty");
        assert!(empty.to_string().contains("share one identity"), "{empty}");
    }

    #[test]
    fn wrong_types_name_the_key() {
        let err = Config::parse("cpus = \"two\"\n", None).expect_err("type error");
        assert!(err.to_string().contains("cpus"), "{err}");
    }

    #[test]
    fn allow_lists_use_doublestar_globs_with_exclusions() {
        let mut problems = Vec::new();
        let list = AllowList::parse(
            "allowed_images",
            &[
                "localhost/*:*".to_owned(),
                "registry.example/**".to_owned(),
                "!localhost/evil:*".to_owned(),
            ],
            &mut problems,
        );
        assert!(problems.is_empty());
        assert!(list.allows("localhost/busybox:latest"));
        assert!(list.allows("registry.example/a/b/c:1"));
        assert!(!list.allows("localhost/evil:1"));
        assert!(!list.allows("docker.io/library/alpine:3"));
        assert!(!list.allows("localhost/a/b:1"), "* does not cross /");
    }

    #[test]
    fn nested_run_is_off_by_default_and_needs_nested_builds() {
        assert!(!Config::defaults().nested_run);
        let on = Config::parse("nested_run = true\n", None).expect("valid");
        assert!(on.nested_run && on.nested_builds);
        let err = Config::parse("nested_run = true\nnested_builds = false\n", None)
            .expect_err("nested_run without nested_builds");
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected Invalid, got {err}");
        };
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "nested_run");
        assert!(problems[0].fix.contains("nested_builds = true"));
    }

    #[test]
    fn database_age_policy_is_validated() {
        let c = Config::defaults();
        assert_eq!((c.scan.db_max_age_days, c.scan.db_stale_fail), (7, false));
        let c =
            Config::parse("scan_db_max_age = 2\nscan_db_stale = \"fail\"\n", None).expect("valid");
        assert_eq!((c.scan.db_max_age_days, c.scan.db_stale_fail), (2, true));
        let err = Config::parse("scan_db_max_age = 0\nscan_db_stale = \"panic\"\n", None)
            .expect_err("invalid");
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected Invalid, got {err}");
        };
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, vec!["scan_db_max_age", "scan_db_stale"]);
    }

    #[test]
    fn the_admins_vex_directory_and_ignore_policy_are_absolute_paths() {
        let c = Config::defaults();
        assert_eq!((c.scan.vex_dir, c.scan.ignore_policy), (None, None));
        let c = Config::parse(
            "scan_vex_dir = \"/etc/berth/vex\"\nscan_ignore_policy = \"/etc/berth/ignore.rego\"\n",
            None,
        )
        .expect("valid");
        assert_eq!(c.scan.vex_dir, Some(PathBuf::from("/etc/berth/vex")));
        assert_eq!(
            c.scan.ignore_policy,
            Some(PathBuf::from("/etc/berth/ignore.rego"))
        );
        let err = Config::parse(
            "scan_vex_dir = \"vex\"\nscan_ignore_policy = \"ignore.rego\"\n",
            None,
        )
        .expect_err("relative paths");
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected Invalid, got {err}");
        };
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, vec!["scan_vex_dir", "scan_ignore_policy"]);
    }

    #[test]
    fn each_state_directory_names_its_own_instance_and_the_default_none() {
        let default = Config::defaults();
        assert_eq!(default.instance(), None);
        let b = Config::parse("state_dir = \"/var/lib/berth-b\"\n", None).expect("b");
        let c = Config::parse("state_dir = \"/var/lib/berth-c\"\n", None).expect("c");
        let b_again = Config::parse("state_dir = \"/var/lib/berth-b\"\n", None).expect("b");
        let tag = b.instance().expect("a tag");
        assert!(
            tag.len() == 9
                && tag.starts_with('s')
                && tag[1..].chars().all(|c| c.is_ascii_hexdigit()),
            "{tag}"
        );
        assert_eq!(b.instance(), b_again.instance());
        // Each runner's config reads the advisories its own timer keeps.
        assert_eq!(b.scan.db, Path::new("/var/lib/berth-b/advisories"));
        assert_eq!(default.scan.db, Path::new("/var/lib/berth/advisories"));
        assert_ne!(b.instance(), c.instance());
    }

    #[test]
    fn two_runner_configs_share_nothing_or_say_what_they_share() {
        let a = Config::defaults();
        let b = Config::parse(
            "user = \"berth-runner-b\"\njob_users = [\"berth-b-job-0\", \"berth-b-job-1\"]\nstate_dir = \"/var/lib/berth-b\"\n",
            None,
        )
        .expect("b");
        assert_eq!(
            a.footprint().shared_with(&b.footprint()),
            Vec::<String>::new()
        );
        assert_eq!(
            b.footprint().shared_with(&a.footprint()),
            Vec::<String>::new()
        );
        let overlapping = Config::parse(
            "user = \"berth-runner-c\"\njob_users = [\"berth-c-job-0\", \"berth-job-3\"]\nstate_dir = \"/var/lib/berth/c\"\nruntime_dir = \"/run/c\"\n",
            None,
        )
        .expect("c");
        assert_eq!(
            overlapping.footprint().shared_with(&a.footprint()),
            vec![
                "the identities berth-job-3".to_owned(),
                "the state directory (/var/lib/berth/c and /var/lib/berth)".to_owned()
            ]
        );
        let same_runtime =
            Config::parse("state_dir = \"/srv/x\"\nruntime_dir = \"/run/c/x\"\nuser = \"u\"\njob_users = [\"v\"]\n", None)
                .expect("x");
        assert_eq!(
            same_runtime
                .footprint()
                .shared_with(&overlapping.footprint()),
            vec!["the runtime directory (/run/c/x and /run/c)".to_owned()]
        );
    }

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_bytes("512m"), Some(512 << 20));
        assert_eq!(parse_bytes("2GiB"), Some(2 << 30));
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("1x"), None);
    }
}

#[cfg(test)]
mod example {
    #[test]
    fn the_shipped_example_config_is_valid() {
        let text = include_str!("../berth.example.toml");
        let config = super::Config::parse(text, None).expect("example config is valid");
        assert_eq!(config.limits.memory_bytes, Some(4 << 30));
        assert!(
            !config
                .allowed_images
                .allows("registry.example.com/untrusted/x:1")
        );
    }
}

#[cfg(test)]
mod shipped_config_tests;
