//! The `berth scan` and `berth db update` commands as library functions, with Trivy's flag
//! names: a thin layer that turns the flags into the typed values of [`crate::api`], calls it,
//! and maps its [`Verdict`] onto `--exit-code`. The executor owns the binary: it parses these
//! argument structs, calls `run_*`, writes the returned text to stdout and exits with the
//! returned code.

use std::path::{Path, PathBuf};

use time::{Date, OffsetDateTime};

use minisign_verify::PublicKey;

use crate::advisory::db::{self, DbError, ImportSummary, StaleAction};
use crate::advisory::published::{self, FetchError, FetchSettings, Published};
use crate::api::{self, Freshness, ImageSource, Verdict};
use crate::ignore_policy::{IgnorePolicy, MAX_POLICY_BYTES, PolicyError};
use crate::policy::{IgnoreError, IgnoreList, Policy};
use crate::render::{self, Format, FormatError, RenderContext};
use crate::report::Report;
use crate::scan::LayerCache;
use crate::severity::{self, SeverityError, Status, StatusError};
use crate::vex::{MAX_VEX_BYTES, VexError, VexSet};

/// Default advisory database directory.
pub const DEFAULT_DB: &str = "/var/lib/berth/advisories";

/// `berth scan IMAGE|PATH` or `berth scan sbom FILE`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScanArgs {
    /// Image name or id in containers-storage, or a path (tar archive, OCI layout, rootfs dir);
    /// or `sbom FILE` for a CycloneDX or SPDX JSON SBOM (as `trivy sbom FILE`).
    #[arg(num_args = 0..=2, value_name = "TARGET")]
    pub target: Vec<String>,
    /// Read the image from this docker-archive/OCI-archive tar or OCI layout directory.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Output format: table, json, sarif, cyclonedx, spdx-json, gitlab.
    #[arg(long, short = 'f', default_value = "table")]
    pub format: String,
    /// Write the output here instead of returning it for stdout.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Severities to report (comma-separated).
    #[arg(long, short = 's', default_value = "UNKNOWN,LOW,MEDIUM,HIGH,CRITICAL")]
    pub severity: String,
    /// Exit code when findings remain after all filters.
    #[arg(long, default_value_t = 0)]
    pub exit_code: i32,
    /// Leave out findings without a fixed version.
    #[arg(long)]
    pub ignore_unfixed: bool,
    /// Leave out findings with these statuses (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub ignore_status: Vec<String>,
    /// Ignore file: `.trivyignore` (ids, `exp:`) or `.trivyignore.yaml`.
    #[arg(long, default_value = ".trivyignore")]
    pub ignorefile: PathBuf,
    /// Advisory database directory.
    #[arg(long, env = "BERTH_DB", default_value = DEFAULT_DB)]
    pub db: PathBuf,
    /// Warn (or fail, with --db-stale-fail) when the advisories are older than this many days.
    #[arg(long, default_value_t = 7)]
    pub db_max_age_days: i64,
    /// Refuse to scan with stale advisories.
    #[arg(long)]
    pub db_stale_fail: bool,
    /// Per-layer result cache directory.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// containers-storage root for image names (default: the rootless user store); with it, the
    /// target is always an image in that store, never a path.
    #[arg(long)]
    pub storage_root: Option<PathBuf>,
    /// Read-only image stores whose layers images in the root may build on (repeatable).
    #[arg(long = "additional-image-store")]
    pub additional_image_stores: Vec<PathBuf>,
    /// Also write GitLab's container scanning report here.
    #[arg(long)]
    pub gitlab_report: Option<PathBuf>,
    /// Also write a CycloneDX SBOM here.
    #[arg(long)]
    pub sbom: Option<PathBuf>,
    /// A VEX document (OpenVEX, or CycloneDX VEX for `sbom FILE` of a CycloneDX SBOM), or a
    /// directory of them (every `*.json` in it, by name); repeatable. `not_affected` and `fixed`
    /// statements suppress findings.
    #[arg(long = "vex", value_name = "FILE|DIR")]
    pub vex: Vec<PathBuf>,
    /// A Rego ignore policy (package `trivy`, rule `ignore`, Rego v0), as Trivy's.
    #[arg(long, value_name = "FILE.rego")]
    pub ignore_policy: Option<PathBuf>,
}

/// `berth db update --from PATH|file://URL|http(s)://URL`.
#[derive(Debug, Clone, clap::Args)]
pub struct DbUpdateArgs {
    /// OSV directory, OSV all.zip, a directory of all.zip files, or an http(s) URL of an
    /// all.zip or OSV JSON file (repeatable); or the http(s) URL of a published database
    /// (`…/berth-advisories.tar`, made by `berth db publish`; alone), verified against
    /// `URL.sha256` (and `URL.minisig` with a public key) before it replaces the database.
    #[arg(long, required = true)]
    pub from: Vec<String>,
    /// Advisory database directory to (re)build.
    #[arg(long, env = "BERTH_DB", default_value = DEFAULT_DB)]
    pub db: PathBuf,
    /// The publisher's minisign public key (the base64 line of `minisign.pub`): a published
    /// database must then carry a signature that verifies with it.
    #[arg(long, value_parser = parse_public_key)]
    pub public_key: Option<PublicKey>,
    /// Largest published database downloaded, in bytes.
    #[arg(long, default_value_t = published::DEFAULT_MAX_BYTES)]
    pub max_size: u64,
}

/// `berth db publish`: the database in one file, with its checksum, for hosts to fetch.
#[derive(Debug, Clone, clap::Args)]
pub struct DbPublishArgs {
    /// Advisory database directory to publish.
    #[arg(long, env = "BERTH_DB", default_value = DEFAULT_DB)]
    pub db: PathBuf,
    /// Directory to write `berth-advisories.tar` and `berth-advisories.tar.sha256` into.
    #[arg(long)]
    pub out: PathBuf,
}

/// Parses a minisign public key: the base64 line of `minisign.pub` (`RW…`).
pub fn parse_public_key(text: &str) -> Result<PublicKey, String> {
    PublicKey::from_base64(text.trim()).map_err(|e| {
        format!(
            "{text:?} is not a minisign public key ({e}); use the second line of the publisher's minisign.pub (it starts with RW)"
        )
    })
}

impl From<api::Error> for CliError {
    fn from(e: api::Error) -> Self {
        Self::Api(Box::new(e))
    }
}

impl From<DbError> for CliError {
    fn from(e: DbError) -> Self {
        api::Error::from(e).into()
    }
}

/// Errors of the commands; every message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad flag value.
    #[error(transparent)]
    Severity(#[from] SeverityError),
    /// Bad flag value.
    #[error(transparent)]
    Status(#[from] StatusError),
    /// Bad flag value.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// No target.
    #[error("nothing to scan: pass an image name, a path, --input PATH or `sbom FILE`")]
    NoTarget,
    /// The ignore file is bad.
    #[error(transparent)]
    Ignore(#[from] IgnoreError),
    /// VEX documents that cannot be read, parsed or applied: every one, each with every problem.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Vex(Vec<VexError>),
    /// The ignore policy does not load.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The ignore policy could not be evaluated for some findings (Trivy stops there too).
    #[error("{}", .0.join("\n"))]
    PolicyEval(Vec<String>),
    /// The scan itself: the advisory database, the image or SBOM, reading it.
    #[error(transparent)]
    Api(Box<api::Error>),
    /// Reading an input file failed.
    #[error(
        "cannot read {path}: {source}; check the path (for --ignorefile, the file must exist when named)"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Downloading an advisory source failed.
    #[error(
        "cannot download {url}: {message}; check the URL and that this host can reach it (or download it yourself and pass the file)"
    )]
    Download {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A published database failed a check; the current one is unchanged.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// `--from` mixes a published database with other sources.
    #[error(
        "--from {0} is a published database: pass it alone (it replaces the whole database), without other sources"
    )]
    PublishedNotAlone(String),
    /// A public key is set but the source cannot be verified with it.
    #[error(
        "--from {0} cannot be verified with the configured public key: only a published database (`…/berth-advisories.tar` over http(s)) carries a signature; fetch that, or remove the public key to import OSV data unverified"
    )]
    Unverifiable(String),
    /// Writing an output failed.
    #[error("cannot write {path}: {source}; check the directory exists and is writable")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What `berth scan` produced.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// The report.
    pub report: Report,
    /// Text for stdout (empty when `-o` was given).
    pub stdout: String,
    /// Warnings for the log.
    pub warnings: Vec<String>,
    /// The exit code Trivy's flags ask for: `--exit-code` when the verdict is
    /// [`Verdict::Fail`], else 0.
    pub exit_code: i32,
}

fn read_ignore(path: &Path, explicit: bool) -> Result<IgnoreList, CliError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(IgnoreList::parse(&text, &path.display().to_string())?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            Ok(IgnoreList::default())
        }
        Err(source) => Err(CliError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Reads at most `limit` bytes of `path`; a larger file is an error.
fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

/// The documents `--vex` names: files, and every `*.json` of a directory sorted by name. Every
/// document that cannot be read or parsed is reported, together.
fn read_vex(paths: &[PathBuf]) -> Result<VexSet, CliError> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let io_error = |path: &Path, e: std::io::Error| VexError {
        document: path.display().to_string(),
        problems: vec![format!("cannot read it: {e}")],
    };
    for path in paths {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        match std::fs::read_dir(path) {
            Ok(entries) => {
                let mut names: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect();
                names.sort();
                files.extend(names);
            }
            Err(e) => errors.push(io_error(path, e)),
        }
    }
    let mut docs = Vec::new();
    for path in &files {
        match read_bounded(path, MAX_VEX_BYTES) {
            Ok(bytes) => docs.push((path.display().to_string(), bytes)),
            Err(e) => errors.push(io_error(path, e)),
        }
    }
    let (set, bad) = VexSet::parse_all(docs.iter().map(|(n, b)| (n.as_str(), b.as_slice())));
    errors.extend(bad);
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(CliError::Vex(errors))
    }
}

/// The `--ignore-policy` file, loaded.
fn read_ignore_policy(path: &Path) -> Result<IgnorePolicy, CliError> {
    let bytes = read_bounded(path, MAX_POLICY_BYTES).map_err(|source| CliError::Read {
        path: path.to_owned(),
        source,
    })?;
    let name = path.display().to_string();
    let text = String::from_utf8(bytes).map_err(|_| PolicyError::Load {
        file: name.clone(),
        message: "not UTF-8 text".to_owned(),
    })?;
    Ok(IgnorePolicy::parse(&text, &name)?)
}

/// Podman's default store: the system one for root, the user's own otherwise.
fn default_storage_root() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    match std::env::var_os("HOME") {
        Some(h) if !root => PathBuf::from(h).join(".local/share/containers/storage"),
        _ => PathBuf::from("/var/lib/containers/storage"),
    }
}

fn write(path: &Path, text: &str) -> Result<(), CliError> {
    std::fs::write(path, text).map_err(|source| CliError::Write {
        path: path.to_owned(),
        source,
    })
}

impl ScanArgs {
    /// The image the flags name: `--input`, else a target that is a path on this host (only
    /// without `--storage-root`), else an image in the store.
    pub fn source(&self) -> Result<ImageSource, CliError> {
        let target = match self.target.as_slice() {
            [] => None,
            [one] => Some(one),
            [kind, file] if kind == "sbom" && self.input.is_none() => {
                return Ok(ImageSource::Sbom {
                    path: PathBuf::from(file),
                    name: file.clone(),
                });
            }
            _ => return Err(CliError::NoTarget),
        };
        match (&self.input, target) {
            (Some(p), _) => Ok(ImageSource::Path {
                path: p.clone(),
                name: p.display().to_string(),
            }),
            // With a storage root the target is an image there, never a path on this host.
            (None, Some(t)) if self.storage_root.is_none() && Path::new(t).exists() => {
                Ok(ImageSource::Path {
                    path: PathBuf::from(t),
                    name: t.clone(),
                })
            }
            (None, Some(t)) => Ok(ImageSource::Store {
                root: self
                    .storage_root
                    .clone()
                    .unwrap_or_else(default_storage_root),
                additional: self.additional_image_stores.clone(),
                image: t.clone(),
            }),
            (None, None) => Err(CliError::NoTarget),
        }
    }

    /// The policy the flags set, under the ignore rules `ignore`, on `today`; any
    /// `--exit-code` but 0 makes it block.
    pub fn policy(&self, ignore: IgnoreList, today: Date) -> Result<Policy, CliError> {
        let severities = severity::parse_list(&self.severity)?;
        let ignore_statuses = self
            .ignore_status
            .iter()
            .map(|s| s.parse::<Status>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy {
            severities,
            block: self.exit_code != 0,
            ignore_unfixed: self.ignore_unfixed,
            ignore_statuses,
            ignore,
            vex: VexSet::default(),
            ignore_policy: None,
            today,
        })
    }

    /// How old the advisories may be.
    pub fn freshness(&self) -> Freshness {
        Freshness {
            max_age_days: self.db_max_age_days,
            on_stale: if self.db_stale_fail {
                StaleAction::Fail
            } else {
                StaleAction::Warn
            },
        }
    }
}

/// Runs `berth scan`. `now` is the clock reading used for expiry, staleness and timestamps.
/// Opens the advisories first (a missing or stale database fails before any image is read).
pub fn run_scan(args: &ScanArgs, now: OffsetDateTime) -> Result<CommandOutput, CliError> {
    let format: Format = args.format.parse()?;
    let explicit_ignore = args.ignorefile != Path::new(".trivyignore");
    let ignore = read_ignore(&args.ignorefile, explicit_ignore)?;
    let mut policy = args.policy(ignore, now.date())?;
    policy.vex = read_vex(&args.vex)?;
    policy.ignore_policy = args
        .ignore_policy
        .as_deref()
        .map(read_ignore_policy)
        .transpose()?;
    let (db, mut warnings) = api::open_db(&args.db, args.freshness(), now)?;
    let source = args.source()?;
    let cache = args.cache_dir.as_ref().map(LayerCache::with_digest_memo);
    let read = api::read_image(&source, cache.as_ref())?;
    // As Trivy: CycloneDX VEX needs a CycloneDX SBOM scan, or the scan fails.
    let inapplicable = policy
        .vex
        .retain_applicable(read.inventory.artifact.bom.as_ref());
    if !inapplicable.is_empty() {
        return Err(CliError::Vex(inapplicable));
    }
    let outcome = api::judge(read, &db, &policy)?;
    if !outcome.report.suppression_errors.is_empty() {
        return Err(CliError::PolicyEval(
            outcome.report.suppression_errors.clone(),
        ));
    }
    warnings.extend(outcome.warnings);
    let mut context = RenderContext::new(OffsetDateTime::now_utc());
    context.started = now;
    let rendered = |format| render::render(&outcome.report, format, &context);
    if let Some(p) = &args.gitlab_report {
        write(p, &rendered(Format::GitLab))?;
    }
    if let Some(p) = &args.sbom {
        write(p, &rendered(Format::CycloneDx))?;
    }
    let text = rendered(format);
    let stdout = match &args.output {
        Some(p) => {
            write(p, &text)?;
            String::new()
        }
        None => text,
    };
    Ok(CommandOutput {
        exit_code: match outcome.verdict {
            Verdict::Pass => 0,
            Verdict::Fail { .. } => args.exit_code,
        },
        report: outcome.report,
        stdout,
        warnings,
    })
}

/// Downloads an http(s) source into `dir`, keeping the file name (an OSV `all.zip` stays a zip).
fn download(url: &str, dir: &Path, n: usize) -> Result<PathBuf, CliError> {
    let fail = |message: String| CliError::Download {
        url: url.to_owned(),
        message,
    };
    let name = url
        .split(['?', '#'])
        .next()
        .and_then(|u| u.rsplit('/').next())
        .filter(|n| !n.is_empty())
        .unwrap_or("all.zip");
    std::fs::create_dir_all(dir).map_err(|source| CliError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let path = dir.join(format!("{n}-{name}"));
    let mut response = ureq::get(url).call().map_err(|e| fail(e.to_string()))?;
    let mut file = std::fs::File::create(&path).map_err(|source| CliError::Write {
        path: path.clone(),
        source,
    })?;
    std::io::copy(&mut response.body_mut().as_reader(), &mut file)
        .map_err(|e| fail(e.to_string()))?;
    Ok(path)
}

/// Runs `berth db update`: fetches a published database (verified, see
/// [`published::fetch`]), or imports OSV data. Either way the new database replaces the old
/// one with one rename, and only when it is whole.
pub fn run_db_update(args: &DbUpdateArgs, now: OffsetDateTime) -> Result<ImportSummary, CliError> {
    if let Some(url) = args.from.iter().find(|f| published::is_published_url(f)) {
        if args.from.len() > 1 {
            return Err(CliError::PublishedNotAlone(url.clone()));
        }
        let meta = published::fetch(&FetchSettings {
            url: url.clone(),
            db: args.db.clone(),
            public_key: args.public_key.clone(),
            max_bytes: args.max_size,
        })?;
        return Ok(ImportSummary {
            meta,
            warnings: Vec::new(),
        });
    }
    if let (Some(from), Some(_)) = (args.from.first(), &args.public_key) {
        return Err(CliError::Unverifiable(from.clone()));
    }
    // Downloads live beside the database only for the import.
    let downloads = args.db.with_extension("downloads");
    let mut sources = Vec::new();
    let mut resolved = Ok(());
    for (n, from) in args.from.iter().enumerate() {
        let source = if from.starts_with("http://") || from.starts_with("https://") {
            download(from, &downloads, n)
        } else {
            db::resolve_source(from).map_err(CliError::from)
        };
        match source {
            Ok(s) => sources.push(s),
            Err(e) => {
                resolved = Err(e);
                break;
            }
        }
    }
    let imported = resolved.and_then(|()| {
        published::replace_with(&args.db, |staged| db::import(&sources, staged, now))
            .map_err(CliError::from)
    });
    let _ = std::fs::remove_dir_all(&downloads);
    imported
}

/// Runs `berth db publish`.
pub fn run_db_publish(args: &DbPublishArgs) -> Result<Published, CliError> {
    Ok(published::publish(&args.db, &args.out)?)
}
