//! After each successful user stage: find the images the job built (through every builder),
//! record them, scan the new ones with berth-scan, write GitLab's reports into the project
//! directory, show the table in the job log, and let the security policy decide.
//!
//! The project directory is the job's: every file there is read and written beneath a handle on
//! the job's builds directory (a path berth names) without following a link the job planted
//! (`berth-beneath`); a report replaces whatever link is at its name. An image the job built
//! that cannot be read whole fails the job as a build failure; berth's own trouble (advisory
//! database, shared image store, settings) is a system failure.
//!
//! Findings are suppressed only by what the project or the admin says: the project's
//! `.trivyignore`, the VEX documents of the project's `.vex/` and of the admin's `scan_vex_dir`,
//! and the admin's Rego `scan_ignore_policy`. Nothing is read from the image under scan for
//! that (an image could vouch for itself). A document that cannot be read or parsed suppresses
//! nothing, and the job log says so.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Component, Path};

use berth_beneath::Dir;
use berth_config::admin::ScanSettings;
use berth_sandbox::{BuiltImage, Sandbox};
use berth_scan::advisory::db::{DbError, StaleAction};
use berth_scan::api::{self, Freshness, ImageSource, ReadOutcome, ReadRequest, Verdict};
use berth_scan::ignore_policy::{IgnorePolicy, MAX_POLICY_BYTES};
use berth_scan::policy::{IgnoreList, Policy};
use berth_scan::render::{self, Format, RenderContext};
use berth_scan::report::{Report, Suppression};
use berth_scan::vex::{MAX_VEX_BYTES, VexSet};
use berth_storemeta::StoreId;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::config_stage::BUILDS_DIR;
use crate::{Job, StageError};

/// The job's record of built images (for the scanner and for whoever asks later), in the job's
/// directory.
const RECORD: &str = "built-images.json";
/// The largest record read.
const MAX_RECORD: u64 = 16 << 20;
/// The largest ignore file read.
const MAX_IGNORE: u64 = 1 << 20;
/// Reports are for the runner to upload.
const REPORT_MODE: u32 = 0o644;

/// Whether an I/O failure in the job's builds directory is the host's (a full or read-only
/// disk, no memory) rather than the job's (a link, a directory or a FIFO where berth writes, a
/// directory the job made unwritable).
fn host_fault(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull
            | io::ErrorKind::QuotaExceeded
            | io::ErrorKind::ReadOnlyFilesystem
            | io::ErrorKind::OutOfMemory
    )
}

/// A failure to use `path` in the job's builds directory, blamed on whoever caused it.
fn in_builds(path: &Path, e: io::Error) -> StageError {
    if host_fault(&e) {
        StageError::Io {
            path: path.to_owned(),
            source: e,
        }
    } else {
        StageError::ScanRefused {
            what: format!(
                "berth cannot write the scan reports into {}: {e}",
                path.display()
            ),
            fix: "berth never writes through a link the job put in the project directory: remove it (or the file in the way) before the stage ends".to_owned(),
        }
    }
}

/// Opens the project directory (`rel` below the job's `builds` directory), creating what is
/// missing, without following a link at any component.
fn open_project(builds: &Path, rel: &str) -> Result<Dir, StageError> {
    let mut dir = Dir::open(builds).map_err(StageError::io(builds))?;
    for part in Path::new(rel).components() {
        let Component::Normal(name) = part else {
            continue;
        };
        let name = Path::new(name);
        dir = match dir.dir(name) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => dir
                .mkdir(name, 0o755)
                .map_err(|e| in_builds(&dir.path().join(name), e))?,
            Err(e) => return Err(in_builds(&dir.path().join(name), e)),
        };
    }
    Ok(dir)
}

/// The project directory on the host (where GitLab's artifact reports are collected), below
/// the job's builds directory. Parent components of `CI_PROJECT_DIR` (`..`) are dropped.
fn project_dir(job: &Job) -> Result<Dir, StageError> {
    let inside = job
        .env
        .job_var("CI_PROJECT_DIR")
        .and_then(|p| p.strip_prefix(BUILDS_DIR))
        .map(|p| p.trim_start_matches('/').to_owned())
        .unwrap_or_default();
    open_project(&job.paths.builds(), &inside)
}

/// The project's ignore rules (`.trivyignore.yaml`, else `.trivyignore`), read beneath the
/// project directory; one that cannot be read or parsed counts as absent (nothing suppressed),
/// with a warning.
fn ignore_rules(project: &Dir) -> (IgnoreList, Option<String>) {
    for name in [".trivyignore.yaml", ".trivyignore"] {
        let text = match project.read(Path::new(name), MAX_IGNORE) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return (IgnoreList::default(), Some(format!("{e}"))),
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(_) => {
                    return (
                        IgnoreList::default(),
                        Some(format!("{name} is not UTF-8 text")),
                    );
                }
            },
        };
        return match IgnoreList::parse(&text, name) {
            Ok(list) => (list, None),
            Err(e) => (IgnoreList::default(), Some(e.to_string())),
        };
    }
    (IgnoreList::default(), None)
}

/// The project's VEX directory, beneath the project directory.
const PROJECT_VEX: &str = ".vex";

/// What suppresses findings in this job besides the policy's severities.
#[derive(Debug, Clone, Default)]
struct Rules {
    /// The project's ignore file.
    ignore: IgnoreList,
    /// The admin's and the project's VEX documents.
    vex: VexSet,
    /// The admin's Rego ignore policy.
    ignore_policy: Option<IgnorePolicy>,
}

/// The `*.json` documents of `dir` by name, each read beneath its handle without following a
/// link and no larger than [`MAX_VEX_BYTES`]; `label` prefixes their names. One that cannot be
/// read is left out with a warning.
fn vex_documents(dir: &Dir, label: &str, warnings: &mut Vec<String>) -> Vec<(String, Vec<u8>)> {
    let entries = match dir.entries() {
        Ok(e) => e,
        Err(e) => {
            warnings.push(format!(
                "the VEX documents in {label} were not read, nothing is suppressed by them: {e}"
            ));
            return Vec::new();
        }
    };
    let mut names: Vec<std::ffi::OsString> = entries
        .into_iter()
        .map(|(name, _)| name)
        .filter(|n| Path::new(n).extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    let mut docs = Vec::new();
    for name in names {
        let shown = format!("{label}{}", name.to_string_lossy());
        match dir.read(Path::new(&name), MAX_VEX_BYTES) {
            Ok(bytes) => docs.push((shown, bytes)),
            Err(e) => warnings.push(format!(
                "VEX document {shown} was not used, nothing is suppressed by it: {e}"
            )),
        }
    }
    docs
}

/// The VEX documents in force: the admin's `vex_dir`, then the project's `.vex/` (read beneath
/// the project directory; a link there is refused, not followed). Never the image's. Every
/// document that cannot be read, parsed or applied to an image is a warning and suppresses
/// nothing.
fn vex_rules(project: &Dir, admin: Option<&Path>) -> (VexSet, Vec<String>) {
    let mut warnings = Vec::new();
    let mut docs = Vec::new();
    if let Some(dir) = admin {
        match Dir::open(dir) {
            Ok(d) => docs.extend(vex_documents(
                &d,
                &format!("{}/", dir.display()),
                &mut warnings,
            )),
            Err(e) => warnings.push(format!(
                "the runner's VEX directory was not read, nothing is suppressed by it: {e}"
            )),
        }
    }
    match project.dir(Path::new(PROJECT_VEX)) {
        Ok(d) => docs.extend(vex_documents(&d, ".vex/", &mut warnings)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        // O_DIRECTORY with O_NOFOLLOW meets a link as "not a directory".
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => warnings.push(format!(
            "the project's {PROJECT_VEX} is not a directory (a symbolic link there is never followed), nothing is suppressed by it"
        )),
        Err(e) => warnings.push(format!(
            "the project's {PROJECT_VEX}/ was not read, nothing is suppressed by it: {e}"
        )),
    }
    let (mut set, errors) = VexSet::parse_all(docs.iter().map(|(n, b)| (n.as_str(), b.as_slice())));
    // Images are never CycloneDX SBOMs.
    let inapplicable = set.retain_applicable(None);
    for e in errors.iter().chain(&inapplicable) {
        warnings.push(format!("{e}; nothing is suppressed by it"));
    }
    (set, warnings)
}

/// The admin's Rego ignore policy. Only the admin's: a policy in the project would be
/// job-controlled code that the runner evaluates, so none is read from there. One that cannot
/// be read or loaded suppresses nothing, with a warning.
fn admin_ignore_policy(path: &Path) -> (Option<IgnorePolicy>, Option<String>) {
    let unread = |why: String| {
        (
            None,
            Some(format!(
                "the runner's ignore policy {} was not used, nothing is suppressed by it: {why}",
                path.display()
            )),
        )
    };
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return unread("it names no file".to_owned());
    };
    let bytes = match Dir::open(parent).and_then(|d| d.read(Path::new(name), MAX_POLICY_BYTES)) {
        Ok(b) => b,
        Err(e) => return unread(e.to_string()),
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return unread("it is not UTF-8 text".to_owned());
    };
    match IgnorePolicy::parse(&text, &path.display().to_string()) {
        Ok(p) => (Some(p), None),
        Err(e) => unread(e.to_string()),
    }
}

/// The job-log lines that say how many findings each VEX document and the ignore policy
/// suppressed (`berth: 3 finding(s) suppressed by VEX .vex/app.openvex.json (not_affected)`).
fn suppression_lines(report: &Report) -> Vec<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for s in &report.suppressed {
        let key = match &s.reason {
            Suppression::Vex { source, status, .. } => {
                format!("by VEX {source} ({})", status.as_str())
            }
            Suppression::IgnorePolicy { source } => format!("by the ignore policy {source}"),
            _ => continue,
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(by, n)| format!("berth: {n} finding(s) suppressed {by}\n"))
        .collect()
}

/// Writes a report into the project directory; a link at its name is replaced, not followed.
fn write_report(project: &Dir, name: &str, text: &str) -> Result<(), StageError> {
    project
        .write_atomic(name, text.as_bytes(), REPORT_MODE)
        .map_err(|e| in_builds(&project.path().join(name), e))
}

/// An image that could not be read whole: the job's fault (BUILD) unless what failed is in
/// berth's own store (`berths_store`, SYSTEM).
fn unreadable_image(
    image: &str,
    berths_store: &Path,
    path: Option<&Path>,
    detail: String,
) -> StageError {
    if path.is_some_and(|p| p.starts_with(berths_store)) {
        StageError::Scanner {
            image: image.to_owned(),
            detail,
        }
    } else {
        StageError::ImageUnreadable {
            image: image.to_owned(),
            detail,
        }
    }
}

/// A scan that failed, blamed on whoever caused it: the job's image (BUILD), or berth's
/// database or shared image store (`berths_store`) (SYSTEM). No wildcard: a new scanner error
/// forces a decision.
fn scan_failure(image: &str, berths_store: &Path, db: &Path, e: api::Error) -> StageError {
    let unreadable =
        |path: &Path, detail: String| unreadable_image(image, berths_store, Some(path), detail);
    match e {
        api::Error::Source(s) => unreadable(s.path(), s.to_string()),
        api::Error::Scan(s) => unreadable(s.path(), s.to_string()),
        // The admin asked for this: no job passes on stale advisories.
        api::Error::Db(stale @ DbError::Stale { .. }) => StageError::HostLacks {
            what: format!("{image} was not scanned: {stale}"),
            fix: format!(
                "the runner admin updates {} with `berth db update --from <OSV all.zip or URL>` (or sets scan_db_stale = \"warn\")",
                db.display()
            ),
        },
        // The stage never scans an SBOM: one failing is berth's own doing.
        e @ (api::Error::Db(_) | api::Error::Sbom(_)) => StageError::Scanner {
            image: image.to_owned(),
            detail: e.to_string(),
        },
    }
}

fn file_name(image: &BuiltImage) -> String {
    image
        .names
        .first()
        .map_or(image.id.as_str(), String::as_str)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

async fn say(out: &mut (dyn AsyncWrite + Unpin + Send), text: &str) {
    let _ = out.write_all(text.as_bytes()).await;
    let _ = out.flush().await;
}

/// The policy in force for this job: the admin's, adjusted by the job's `BERTH_SCAN_SEVERITY`,
/// `BERTH_SCAN_IGNORE_UNFIXED` and `BERTH_SCAN_BLOCK` variables where the admin allows it. A job
/// may always make the policy stricter; relaxing it needs `scan_jobs_may_relax`. Returns the
/// policy and a warning for every adjustment that was refused.
pub fn effective_policy(
    settings: &ScanSettings,
    job_var: impl Fn(&str) -> Option<String>,
) -> (ScanSettings, Vec<String>) {
    let mut policy = settings.clone();
    let mut refused = Vec::new();
    let levels = |s: &str| -> BTreeSet<String> {
        s.split(',')
            .map(|l| l.trim().to_ascii_uppercase())
            .filter(|l| !l.is_empty())
            .collect()
    };
    let truthy = |v: &str| matches!(v.trim(), "1" | "true" | "yes");
    if let Some(wanted) = job_var("BERTH_SCAN_SEVERITY") {
        let known = ["UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"];
        let wanted_set = levels(&wanted);
        if let Some(bad) = wanted_set.iter().find(|l| !known.contains(&l.as_str())) {
            refused.push(format!("BERTH_SCAN_SEVERITY: {bad:?} is not a severity (use UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL)"));
        } else if levels(&settings.severity).is_subset(&wanted_set) || settings.jobs_may_relax {
            policy.severity = wanted_set.into_iter().collect::<Vec<_>>().join(",");
        } else {
            refused.push(format!(
                "BERTH_SCAN_SEVERITY={wanted} would leave out severities the runner's policy counts ({}); the runner admin does not let jobs relax the policy",
                settings.severity
            ));
        }
    }
    if let Some(v) = job_var("BERTH_SCAN_IGNORE_UNFIXED") {
        let wanted = truthy(&v);
        if !wanted || settings.ignore_unfixed || settings.jobs_may_relax {
            policy.ignore_unfixed = wanted && (settings.ignore_unfixed || settings.jobs_may_relax);
        } else {
            refused.push("BERTH_SCAN_IGNORE_UNFIXED: the runner admin does not let jobs ignore unfixed findings".to_owned());
        }
    }
    if let Some(v) = job_var("BERTH_SCAN_BLOCK") {
        let wanted = truthy(&v);
        if wanted || !settings.block || settings.jobs_may_relax {
            policy.block = wanted;
        } else {
            refused.push(
                "BERTH_SCAN_BLOCK: the runner admin does not let jobs turn blocking off".to_owned(),
            );
        }
    }
    (policy, refused)
}

/// The policy in force (`settings`, after the job's adjustments) under the job's `rules` (the
/// project's ignore file, the admin's and the project's VEX, the admin's ignore policy), on
/// `today`. The severities were checked when the config and the job's variables were read, so
/// a failure here is berth's own.
fn scan_policy(
    settings: &ScanSettings,
    rules: &Rules,
    today: time::Date,
) -> Result<Policy, String> {
    let severities =
        berth_scan::severity::parse_list(&settings.severity).map_err(|e| e.to_string())?;
    Ok(Policy {
        severities,
        block: settings.block,
        ignore_unfixed: settings.ignore_unfixed,
        ignore_statuses: Vec::new(),
        ignore: rules.ignore.clone(),
        vex: rules.vex.clone(),
        ignore_policy: rules.ignore_policy.clone(),
        today,
    })
}

/// What reading one image asks: the image in the job's store (whose base layers are in
/// berth's shared store) or the OCI layout a builder exported, and the scanner's layer cache.
fn read_request(job: &Job, image: &BuiltImage) -> ReadRequest {
    let source = if image.oci_layout {
        ImageSource::Path {
            path: image.store.clone(),
            name: image.store.display().to_string(),
        }
    } else {
        ImageSource::Store {
            root: image.store.clone(),
            additional: vec![job.paths.image_store.clone()],
            image: image.id.clone(),
        }
    };
    ReadRequest {
        source,
        cache_dir: Some(job.scan_cache_source()),
    }
}

/// Reads the image inside the job identity's user namespace (`podman unshare`), where files of
/// every user of the job's images are readable as they are in its containers; the request goes
/// as JSON and the inventory comes back as JSON. Reading the job's bytes stays with the job's
/// identity.
async fn read_in_user_namespace(
    job: &Job,
    request: &ReadRequest,
    name: &str,
) -> Result<ReadOutcome, StageError> {
    let settings = job.podman_settings();
    let system = |detail: String| StageError::Scanner {
        image: name.to_owned(),
        detail,
    };
    let Some(berth) = &job.host.berth else {
        return Err(system("the berth binary's path is unknown, so the image cannot be read in the job's user namespace".into()));
    };
    let request = serde_json::to_string(request)
        .map_err(|e| system(format!("cannot write the request to read it: {e}")))?;
    let mut spec = berth_sandbox::process::CommandSpec::new(&settings.podman);
    for (k, v) in &settings.env {
        spec = spec.env(k, v);
    }
    if let Some(id) = &settings.job_identity {
        spec = spec.as_identity(id.uid, id.gid);
    }
    spec = spec
        .args(job.paths.podman_store_args())
        .args([
            std::ffi::OsString::from("unshare"),
            berth.clone().into_os_string(),
        ])
        .args(["scan-inventory", "--request", request.as_str()]);
    let output = berth_sandbox::process::run(&spec, &berth_sandbox::Cancel::new())
        .await
        .map_err(|e| {
            system(format!(
                "reading it in the job's user namespace failed: {e}"
            ))
        })?;
    serde_json::from_slice(&output.stdout)
        .map_err(|e| system(format!("the inventory reader answered no inventory: {e}")))
}

/// Reads the image `request` names: in the job identity's user namespace when the job has an
/// identity, else here. An image that cannot be read whole is blamed by [`unreadable_image`].
async fn read(job: &Job, request: &ReadRequest, name: &str) -> Result<api::Read, StageError> {
    let outcome = if job.host.job_identity.is_some() {
        read_in_user_namespace(job, request, name).await?
    } else {
        ReadOutcome::of(request)
    };
    match outcome {
        ReadOutcome::Read(read) => Ok(read),
        ReadOutcome::Failed {
            image_fault: true,
            path,
            message,
        } => Err(unreadable_image(
            name,
            &job.paths.image_store,
            path.as_deref(),
            message,
        )),
        ReadOutcome::Failed { message, .. } => Err(StageError::Scanner {
            image: name.to_owned(),
            detail: message,
        }),
    }
}

/// The ids already recorded in the job's directory.
fn recorded(job_dir: &Dir) -> BTreeSet<String> {
    job_dir
        .read(Path::new(RECORD), MAX_RECORD)
        .ok()
        .and_then(|t| serde_json::from_slice::<Vec<BuiltImage>>(&t).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.id)
        .collect()
}

/// Scans `fresh`, writes their reports and shows their tables; returns the blocked images and
/// each image's CycloneDX SBOM by id.
async fn scan_fresh(
    job: &Job,
    settings: &ScanSettings,
    fresh: &[&BuiltImage],
    project: &Dir,
    rules: &Rules,
    out: &mut (dyn AsyncWrite + Unpin + Send),
) -> Result<(Vec<String>, BTreeMap<String, String>), StageError> {
    let mut blocked = Vec::new();
    let mut sboms = BTreeMap::new();
    let Some(first) = fresh.first() else {
        return Ok((blocked, sboms));
    };
    // Opened once, before any image is read: a missing or stale database fails fast.
    let now = time::OffsetDateTime::now_utc();
    let freshness = Freshness {
        max_age_days: i64::from(settings.db_max_age_days),
        on_stale: if settings.db_stale_fail {
            StaleAction::Fail
        } else {
            StaleAction::Warn
        },
    };
    let berths_store = &job.paths.image_store;
    let (db, db_warnings) = api::open_db(&settings.db, freshness, now)
        .map_err(|e| scan_failure(&first.id, berths_store, &settings.db, e))?;
    if let Some(updated) = db.meta.updated_at() {
        berth_telemetry::recorder::note(berth_telemetry::Event::AdvisoryDbUpdated {
            unix_seconds: updated.unix_timestamp(),
        });
    }
    let policy =
        scan_policy(settings, rules, now.date()).map_err(|detail| StageError::Scanner {
            image: first.id.clone(),
            detail,
        })?;
    for (n, image) in fresh.iter().enumerate() {
        let name = image
            .names
            .first()
            .cloned()
            .unwrap_or_else(|| image.id.clone());
        say(
            out,
            &format!(
                "{name} ({}, built by {})\n",
                image.id.get(..12).unwrap_or(&image.id),
                image.builder
            ),
        )
        .await;
        // The id comes from the job's images.json: it names an image, never a path.
        if !image.oci_layout {
            StoreId::parse(&image.id).map_err(|why| StageError::ImageUnreadable {
                image: name.clone(),
                detail: format!("its id in {} is malformed: {why}", image.store.display()),
            })?;
        }
        let read = read(job, &read_request(job, image), &name).await?;
        let outcome = api::judge(read, &db, &policy)
            .map_err(|e| scan_failure(&name, berths_store, &settings.db, e))?;
        let mut context = RenderContext::new(time::OffsetDateTime::now_utc());
        context.started = now;
        let rendered = |format| render::render(&outcome.report, format, &context);
        let report = if n == 0 {
            "gl-container-scanning-report.json".to_owned()
        } else {
            format!("gl-container-scanning-report-{}.json", file_name(image))
        };
        write_report(project, &report, &rendered(Format::GitLab))?;
        let sbom = rendered(Format::CycloneDx);
        write_report(
            project,
            &format!("gl-sbom-{}.cdx.json", file_name(image)),
            &sbom,
        )?;
        crate::admission::admit_build(job, image, &outcome.report, &rendered(Format::Json), &sbom)?;
        sboms.insert(image.id.clone(), sbom);
        // The database's staleness warning once, with the first image.
        let db_warnings = if n == 0 { db_warnings.as_slice() } else { &[] };
        for w in db_warnings.iter().chain(&outcome.warnings) {
            say(out, &format!("\x1b[0;33mWARNING: {w}\x1b[0;m\n")).await;
        }
        // A finding the policy could not be evaluated for stays reported.
        for e in &outcome.report.suppression_errors {
            say(
                out,
                &format!("\x1b[0;33mWARNING: {e}; the finding is not suppressed\x1b[0;m\n"),
            )
            .await;
        }
        for line in suppression_lines(&outcome.report) {
            say(out, &line).await;
        }
        say(out, &rendered(Format::Table)).await;
        note_scan(job, &outcome.report);
        match outcome.verdict {
            Verdict::Fail { .. } => blocked.push(name),
            Verdict::Pass => {}
        }
    }
    Ok((blocked, sboms))
}

/// Counts a scanned image's findings for the metrics, under the job's project.
fn note_scan(job: &Job, report: &Report) {
    let mut findings = BTreeMap::new();
    for f in &report.findings {
        *findings.entry(f.severity.to_string()).or_insert(0) += 1;
    }
    berth_telemetry::recorder::note(berth_telemetry::Event::ImageScanned {
        // Metrics are not masked like logs: a project path that holds a secret is not shown.
        project: crate::joblog::mask_text(
            job.payload.variable("CI_PROJECT_PATH").unwrap_or("unknown"),
            &job.payload
                .masked_values()
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        ),
        blocked: report.blocked,
        findings,
    });
}

/// Records and scans what the job built since the last call. A blocked image is a
/// [`StageError::SecurityPolicy`] and an image that cannot be read whole a
/// [`StageError::ImageUnreadable`] (build failures); a database or store of berth's that cannot
/// be read is a system failure. Only listing the built images is a warning, when it fails.
pub async fn after_user_stage<S: Sandbox>(
    job: &Job,
    sandbox: &S,
    out: &mut (dyn AsyncWrite + Unpin + Send),
) -> Result<(), StageError> {
    let images = match sandbox.built_images().await {
        Ok(i) => i,
        Err(e) => {
            say(
                out,
                &format!("\x1b[0;33mWARNING: cannot list the images this job built: {e}\x1b[0;m\n"),
            )
            .await;
            return Ok(());
        }
    };
    let job_dir = Dir::open(&job.paths.job_dir).map_err(StageError::io(&job.paths.job_dir))?;
    let seen = recorded(&job_dir);
    let fresh: Vec<&BuiltImage> = images.iter().filter(|i| !seen.contains(&i.id)).collect();
    if fresh.is_empty() {
        return Ok(());
    }
    if let Ok(text) = serde_json::to_vec_pretty(&images) {
        // Root's file when the job has an identity: the job cannot make berth skip an image.
        berth_sandbox::process::as_root(|| job_dir.write_atomic(RECORD, &text, 0o644))
            .map_err(StageError::io(&job.paths.job_dir.join(RECORD)))?;
    }
    for image in &fresh {
        berth_telemetry::recorder::note(berth_telemetry::Event::ImageBuilt {
            builder: image.builder.clone(),
        });
    }
    if !job.config.scan.enabled {
        return Ok(());
    }
    let (policy, refused) = effective_policy(&job.config.scan, |k| {
        job.payload.variable(k).map(str::to_owned)
    });
    for r in &refused {
        say(out, &format!("\x1b[0;33mWARNING: {r}\x1b[0;m\n")).await;
    }
    let settings = &policy;
    if !settings.db.exists() {
        say(out, &format!(
            "\x1b[0;33mWARNING: {} image(s) built by this job were not scanned: there is no advisory database at {} (the runner admin creates it with `berth db update --from <OSV directory or all.zip>`)\x1b[0;m\n",
            fresh.len(),
            settings.db.display()
        )).await;
        return Ok(());
    }
    let project = project_dir(job)?;
    let (ignore, unread) = ignore_rules(&project);
    if let Some(why) = unread {
        say(out, &format!("\x1b[0;33mWARNING: the project's ignore file was not used, no finding is suppressed: {why}\x1b[0;m\n")).await;
    }
    let (vex, mut unused) = vex_rules(&project, settings.vex_dir.as_deref());
    let ignore_policy = match settings.ignore_policy.as_deref().map(admin_ignore_policy) {
        Some((policy, why)) => {
            unused.extend(why);
            policy
        }
        None => None,
    };
    for why in &unused {
        say(out, &format!("\x1b[0;33mWARNING: {why}\x1b[0;m\n")).await;
    }
    let rules = Rules {
        ignore,
        vex,
        ignore_policy,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    say(out, &format!(
        "\x1b[0Ksection_start:{now}:berth_scan[collapsed=false]\r\x1b[0K\x1b[36;1mScanning images built by this job (severity {}, {})\x1b[0;m\n",
        settings.severity,
        if settings.block { "blocking" } else { "reporting only" }
    )).await;
    let scanned = scan_fresh(job, settings, &fresh, &project, &rules, out).await;
    say(
        out,
        &format!("\x1b[0Ksection_end:{now}:berth_scan\r\x1b[0K"),
    )
    .await;
    let (blocked, sboms) = scanned?;
    if blocked.is_empty() {
        // Everything this stage built passed: sign what the job pushed of it.
        for signed in crate::signing::sign_passed(job, sandbox, &fresh, &sboms).await? {
            let line = match signed {
                crate::signing::Signed::Yes {
                    name,
                    digest,
                    attested,
                } => format!(
                    "berth signed {name} ({digest}){}: built by this job and passed the scan\n",
                    if attested {
                        " and attested its CycloneDX SBOM"
                    } else {
                        ""
                    }
                ),
                crate::signing::Signed::No(why) => {
                    format!("\x1b[0;33mWARNING: {why}\x1b[0;m\n")
                }
            };
            say(out, &line).await;
        }
        Ok(())
    } else {
        Err(StageError::SecurityPolicy {
            summary: format!(
                "{} has findings of severity {}",
                blocked.join(", "),
                settings.severity
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FailureKind;

    /// The admin's default policy today with only `vex` as rules.
    fn vex_policy(vex: VexSet) -> Policy {
        let rules = Rules {
            vex,
            ..Rules::default()
        };
        let today = time::OffsetDateTime::now_utc().date();
        scan_policy(&admin(false), &rules, today).expect("policy")
    }

    fn admin(jobs_may_relax: bool) -> ScanSettings {
        ScanSettings {
            enabled: true,
            db: "/db".into(),
            severity: "HIGH,CRITICAL".into(),
            block: true,
            ignore_unfixed: false,
            jobs_may_relax,
            db_max_age_days: 7,
            db_stale_fail: false,
            vex_dir: None,
            ignore_policy: None,
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn jobs_may_tighten_but_not_relax_unless_allowed() {
        let (p, refused) = effective_policy(
            &admin(false),
            vars(&[("BERTH_SCAN_SEVERITY", "medium,HIGH,CRITICAL")]),
        );
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(p.severity, "CRITICAL,HIGH,MEDIUM");
        let (p, refused) = effective_policy(
            &admin(false),
            vars(&[
                ("BERTH_SCAN_SEVERITY", "CRITICAL"),
                ("BERTH_SCAN_BLOCK", "false"),
                ("BERTH_SCAN_IGNORE_UNFIXED", "true"),
            ]),
        );
        assert_eq!(refused.len(), 3, "{refused:?}");
        assert_eq!(p, admin(false));
        let (p, refused) = effective_policy(
            &admin(true),
            vars(&[
                ("BERTH_SCAN_SEVERITY", "CRITICAL"),
                ("BERTH_SCAN_BLOCK", "false"),
                ("BERTH_SCAN_IGNORE_UNFIXED", "1"),
            ]),
        );
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(p.severity, "CRITICAL");
        assert!(!p.block && p.ignore_unfixed);
        let (_, refused) =
            effective_policy(&admin(true), vars(&[("BERTH_SCAN_SEVERITY", "SEVERE")]));
        assert!(refused[0].contains("not a severity"));
    }

    fn tree() -> (tempfile::TempDir, std::path::PathBuf) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let builds = tmp.path().join("builds");
        std::fs::create_dir_all(builds.join("group/project")).expect("mkdir");
        std::fs::write(tmp.path().join("outside"), "precious").expect("write");
        (tmp, builds)
    }

    #[test]
    fn a_report_link_the_job_planted_is_replaced_not_followed() {
        let (tmp, builds) = tree();
        let report = builds.join("group/project/gl-container-scanning-report.json");
        std::os::unix::fs::symlink(tmp.path().join("outside"), &report).expect("symlink");
        let project = open_project(&builds, "group/project").expect("open");
        write_report(&project, "gl-container-scanning-report.json", "{}").expect("write");
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("outside")).expect("read"),
            "precious"
        );
        assert!(std::fs::symlink_metadata(&report).expect("stat").is_file());
        assert_eq!(std::fs::read_to_string(&report).expect("read"), "{}");
    }

    #[test]
    fn a_linked_directory_on_the_way_to_the_project_is_refused() {
        let (tmp, builds) = tree();
        std::fs::remove_dir_all(builds.join("group")).expect("rm");
        std::fs::create_dir(tmp.path().join("elsewhere")).expect("mkdir");
        std::os::unix::fs::symlink(tmp.path().join("elsewhere"), builds.join("group"))
            .expect("symlink");
        let err = open_project(&builds, "group/project").expect_err("followed the link");
        assert_eq!(err.failure_kind(), FailureKind::Build, "{err}");
        assert!(err.to_string().contains("link"), "{err}");
        assert!(
            std::fs::read_dir(tmp.path().join("elsewhere"))
                .expect("list")
                .next()
                .is_none(),
            "nothing created through the link"
        );
        // A missing project directory is created beneath the anchor.
        let project = open_project(&builds, "other/project").expect("created");
        assert!(project.path().ends_with("other/project"));
    }

    #[test]
    fn an_ignore_file_planted_as_a_link_is_not_read() {
        let (tmp, builds) = tree();
        std::fs::write(tmp.path().join("outside"), "CVE-2099-0001\n").expect("write");
        std::os::unix::fs::symlink(
            tmp.path().join("outside"),
            builds.join("group/project/.trivyignore"),
        )
        .expect("symlink");
        let project = open_project(&builds, "group/project").expect("open");
        let (list, warning) = ignore_rules(&project);
        assert_eq!(list, IgnoreList::default());
        let warning = warning.expect("a warning");
        assert!(warning.contains("symbolic link"), "{warning}");
        assert!(!warning.contains("CVE-2099-0001"), "{warning}");
    }

    /// Whether one of `warnings` says every one of `words`.
    fn warned(warnings: &[String], words: &[&str]) -> bool {
        warnings.iter().any(|w| words.iter().all(|x| w.contains(x)))
    }

    /// Asserts the project's VEX yields no document and a warning saying every one of `words`.
    fn assert_no_vex_read(project: &Dir, words: &[&str]) {
        let (set, warnings) = vex_rules(project, None);
        assert!(set.is_empty(), "a document was read: {set:?}");
        assert!(warned(&warnings, words), "{warnings:?}");
    }

    /// An OpenVEX document that says minimist 1.2.5 is not affected by GHSA-0000-0000-0000.
    const MINIMIST_VEX: &str = r#"{"@context":"https://openvex.dev/ns/v0.2.0","statements":[
      {"vulnerability":{"name":"GHSA-0000-0000-0000"},"products":[{"@id":"pkg:npm/minimist@1.2.5"}],
       "status":"not_affected","justification":"vulnerable_code_not_in_execute_path"}]}"#;

    #[test]
    fn the_projects_vex_documents_are_read_by_name_and_a_bad_one_suppresses_nothing() {
        let (_tmp, builds) = tree();
        let vex = builds.join("group/project/.vex");
        std::fs::create_dir(&vex).expect("mkdir");
        std::fs::write(vex.join("b.openvex.json"), MINIMIST_VEX).expect("write");
        std::fs::write(vex.join("a.json"), "{\"@context\":\"x\"}").expect("write");
        std::fs::write(vex.join("notes.txt"), "not a document").expect("write");
        let project = open_project(&builds, "group/project").expect("open");
        let (set, warnings) = vex_rules(&project, None);
        let names: Vec<&str> = set.documents.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, vec![".vex/b.openvex.json"]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains(".vex/a.json") && warnings[0].contains("nothing is suppressed"),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_vex_directory_or_document_planted_as_a_link_is_not_read() {
        let (tmp, builds) = tree();
        let outside = tmp.path().join("outside-vex");
        std::fs::create_dir(&outside).expect("mkdir");
        std::fs::write(outside.join("app.openvex.json"), MINIMIST_VEX).expect("write");
        std::os::unix::fs::symlink(&outside, builds.join("group/project/.vex")).expect("symlink");
        let project = open_project(&builds, "group/project").expect("open");
        assert_no_vex_read(&project, &["symbolic link"]);
        // A link to a document outside, inside a real .vex/.
        std::fs::remove_file(builds.join("group/project/.vex")).expect("rm");
        std::fs::create_dir(builds.join("group/project/.vex")).expect("mkdir");
        std::os::unix::fs::symlink(
            outside.join("app.openvex.json"),
            builds.join("group/project/.vex/app.openvex.json"),
        )
        .expect("symlink");
        assert_no_vex_read(&project, &[".vex/app.openvex.json", "symbolic link"]);
    }

    #[test]
    fn an_oversized_vex_document_is_refused_with_a_warning() {
        let (_tmp, builds) = tree();
        let vex = builds.join("group/project/.vex");
        std::fs::create_dir(&vex).expect("mkdir");
        let padding = " ".repeat(usize::try_from(MAX_VEX_BYTES).expect("fits"));
        std::fs::write(vex.join("big.json"), format!("{MINIMIST_VEX}{padding}")).expect("write");
        let project = open_project(&builds, "group/project").expect("open");
        assert_no_vex_read(&project, &[".vex/big.json", "larger than"]);
    }

    #[test]
    fn the_admins_vex_and_ignore_policy_apply_and_a_broken_policy_suppresses_nothing() {
        let (tmp, builds) = tree();
        let admin_vex = tmp.path().join("admin-vex");
        std::fs::create_dir(&admin_vex).expect("mkdir");
        std::fs::write(admin_vex.join("runner.json"), MINIMIST_VEX).expect("write");
        let project = open_project(&builds, "group/project").expect("open");
        let (set, warnings) = vex_rules(&project, Some(&admin_vex));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            set.documents[0].name,
            format!("{}/runner.json", admin_vex.display())
        );
        let rego = tmp.path().join("ignore.rego");
        std::fs::write(
            &rego,
            "package trivy\nignore { input.PkgName == \"minimist\" }\n",
        )
        .expect("write");
        let (policy, warning) = admin_ignore_policy(&rego);
        assert!(policy.is_some() && warning.is_none(), "{warning:?}");
        std::fs::write(&rego, "package trivy\nignore {\n").expect("write");
        let (policy, warning) = admin_ignore_policy(&rego);
        assert!(policy.is_none());
        let warning = warning.expect("a warning");
        assert!(
            warning.contains("ignore.rego") && warning.contains("nothing is suppressed"),
            "{warning}"
        );
    }

    /// An advisory database in `dir` that makes minimist 1.2.5 a finding.
    fn minimist_db(dir: &Path) -> berth_scan::advisory::db::AdvisoryDb {
        let osv = dir.join("osv");
        std::fs::create_dir_all(&osv).expect("mkdir");
        std::fs::write(
            osv.join("GHSA-0000-0000-0000.json"),
            r#"{"id":"GHSA-0000-0000-0000","modified":"2026-11-01T00:00:00Z","database_specific":{"severity":"HIGH"},"affected":[{"package":{"ecosystem":"npm","name":"minimist"},"versions":["1.2.5"]}]}"#,
        )
        .expect("write");
        let db = dir.join("db");
        let now = time::OffsetDateTime::now_utc();
        berth_scan::advisory::db::import(&[osv], &db, now).expect("database");
        let freshness = Freshness {
            max_age_days: 7,
            on_stale: StaleAction::Warn,
        };
        api::open_db(&db, freshness, now).expect("open").0
    }

    /// An image whose root holds minimist 1.2.5 and VEX documents (at the project's place and
    /// elsewhere) that would suppress its finding: the scan never consults them, only the
    /// project's and the admin's count; the admin's build policy then sees the report and the
    /// VEX statements applied (`data.berth.build.deny`).
    #[test]
    fn a_vex_document_inside_the_image_is_never_consulted() {
        let (tmp, builds) = tree();
        let db = minimist_db(tmp.path());
        let rootfs = tmp.path().join("rootfs");
        let pkg = rootfs.join("app/node_modules/minimist");
        std::fs::create_dir_all(&pkg).expect("mkdir");
        std::fs::write(
            pkg.join("package.json"),
            r#"{"name":"minimist","version":"1.2.5"}"#,
        )
        .expect("write");
        for dir in [".vex", "app/.vex", "usr/share/vex"] {
            std::fs::create_dir_all(rootfs.join(dir)).expect("mkdir");
            std::fs::write(rootfs.join(dir).join("app.openvex.json"), MINIMIST_VEX).expect("write");
        }
        let project = open_project(&builds, "group/project").expect("open");
        let (vex, warnings) = vex_rules(&project, None);
        assert!(warnings.is_empty(), "{warnings:?}");
        let policy = vex_policy(vex);
        let request = ReadRequest {
            source: ImageSource::Path {
                path: rootfs,
                name: "app".into(),
            },
            cache_dir: None,
        };
        let ReadOutcome::Read(read) = ReadOutcome::of(&request) else {
            panic!("the image was not read");
        };
        let outcome = api::judge(read, &db, &policy).expect("judge");
        let unvexed = outcome.report.clone();
        assert_eq!(outcome.verdict, Verdict::Fail { findings: 1 });
        assert!(
            outcome.report.suppressed.is_empty(),
            "{:?}",
            outcome.report.suppressed
        );
        // The same document in the project suppresses it, and the job log says by which.
        std::fs::create_dir(builds.join("group/project/.vex")).expect("mkdir");
        std::fs::write(
            builds.join("group/project/.vex/app.openvex.json"),
            MINIMIST_VEX,
        )
        .expect("write");
        let (vex, _) = vex_rules(&project, None);
        let policy = vex_policy(vex);
        let ReadOutcome::Read(read) = ReadOutcome::of(&request) else {
            panic!("the image was not read");
        };
        let outcome = api::judge(read, &db, &policy).expect("judge");
        assert_eq!(outcome.verdict, Verdict::Pass);
        assert_eq!(
            suppression_lines(&outcome.report),
            vec!["berth: 1 finding(s) suppressed by VEX .vex/app.openvex.json (not_affected)\n"]
        );

        // The admin's build policy sees the report and the VEX applied: no finding without a
        // statement may leave the job.
        let policies = tmp.path().join("policies");
        std::fs::create_dir(&policies).expect("mkdir");
        std::fs::write(
            policies.join("build.rego"),
            "package berth.build\n\nstated contains s.vulnerability if some s in input.vex\n\ndeny contains msg if {\n\tsome result in input.report.Results\n\tsome v in result.Vulnerabilities\n\tnot v.VulnerabilityID in stated\n\tmsg := sprintf(\"%s in %s has no VEX statement\", [v.VulnerabilityID, concat(\", \", input.image.names)])\n}\n",
        )
        .expect("policy");
        let job = Job::new(
            berth_config::Config::parse(
                &format!("admission_policies = \"{}\"\n", policies.display()),
                None,
            )
            .expect("config"),
            berth_config::ContractEnv::default(),
            r#"{"id": 5, "git_info": {"ref": "main", "protected": true}}"#,
            crate::context::HostFacts::default(),
        )
        .expect("job");
        let built = BuiltImage {
            id: "b".repeat(64),
            names: vec!["registry.example.com/group/app:1".into()],
            store: tmp.path().to_owned(),
            builder: "build-socket".into(),
            oci_layout: false,
        };
        let context = RenderContext::new(time::OffsetDateTime::now_utc());
        let ask = |report: &Report| {
            let rendered = |format| render::render(report, format, &context);
            crate::admission::admit_build(
                &job,
                &built,
                report,
                &rendered(Format::Json),
                &rendered(Format::CycloneDx),
            )
        };
        let denied = ask(&unvexed).expect_err("a finding without VEX");
        assert_eq!(denied.failure_kind(), FailureKind::Build);
        assert!(
            denied.to_string().contains(
                "GHSA-0000-0000-0000 in registry.example.com/group/app:1 has no VEX statement"
            ),
            "{denied}"
        );
        ask(&outcome.report).expect("the finding has its VEX statement");
        let rendered = |format| render::render(&outcome.report, format, &context);
        let input = crate::admission::build_input(
            &job,
            &built,
            &outcome.report,
            &rendered(Format::Json),
            &rendered(Format::CycloneDx),
        );
        assert_eq!(
            serde_json::to_value(&input.vex).expect("JSON"),
            serde_json::json!([{
                "vulnerability": "GHSA-0000-0000-0000",
                "status": "not_affected",
                "justification": "vulnerable_code_not_in_execute_path",
                "source": ".vex/app.openvex.json"
            }])
        );
        assert_eq!(input.image.builder, "build_socket");
        assert_eq!(input.sbom["bomFormat"], "CycloneDX");
    }

    /// The inventory comes back from the job's user namespace: one that claims to be a
    /// CycloneDX SBOM (serial number, bom-refs) cannot make a CycloneDX VEX document of the
    /// project apply to the image.
    #[test]
    fn an_inventory_claiming_to_be_an_sbom_cannot_bring_cyclonedx_vex_to_an_image() {
        let (tmp, builds) = tree();
        let db = minimist_db(tmp.path());
        let serial = "3e671687-395b-41f5-a30f-a58921a69b79";
        std::fs::create_dir(builds.join("group/project/.vex")).expect("mkdir");
        std::fs::write(
            builds.join("group/project/.vex/app.cdx.json"),
            format!(
                r#"{{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,"vulnerabilities":[
                {{"id":"GHSA-0000-0000-0000","analysis":{{"state":"not_affected"}},
                  "affects":[{{"ref":"urn:cdx:{serial}/1#minimist"}}]}}]}}"#
            ),
        )
        .expect("write");
        let project = open_project(&builds, "group/project").expect("open");
        let (vex, warnings) = vex_rules(&project, None);
        assert!(
            warned(&warnings, &[".vex/app.cdx.json", "CycloneDX SBOM"]),
            "{warnings:?}"
        );
        let mut package = berth_scan::inventory::Package::new(
            berth_scan::inventory::PkgType::NodePkg,
            "minimist",
            "1.2.5",
            "app/node_modules/minimist/package.json",
        );
        package.bom_ref = Some("minimist".into());
        let mut inventory = berth_scan::inventory::Inventory::default();
        inventory.artifact.bom = Some(berth_scan::inventory::BomId {
            serial: format!("urn:uuid:{serial}"),
            version: 1,
        });
        inventory.packages.push(package);
        let forged: api::Read =
            serde_json::from_value(serde_json::json!({"inventory": inventory, "warnings": []}))
                .expect("crosses as JSON");
        let policy = vex_policy(vex);
        let outcome = api::judge(forged, &db, &policy).expect("judge");
        assert_eq!(outcome.verdict, Verdict::Fail { findings: 1 });
    }

    #[test]
    fn an_unreadable_job_image_is_a_build_failure_and_berths_own_trouble_a_system_one() {
        let berths = Path::new("/var/lib/berth/images");
        let db = Path::new("/var/lib/berth/advisories");
        let broken = |path: &str| {
            api::Error::Source(berth_scan::source::SourceError::Invalid {
                path: path.into(),
                problem: "layer 1 is missing".into(),
            })
        };
        let job_image = scan_failure("app", berths, db, broken("/jobs/k/nested/storage"));
        assert_eq!(job_image.failure_kind(), FailureKind::Build, "{job_image}");
        assert!(
            job_image
                .to_string()
                .contains("the scan could not read image app"),
            "{job_image}"
        );
        let base = scan_failure("app", berths, db, broken("/var/lib/berth/images/overlay/x"));
        assert_eq!(base.failure_kind(), FailureKind::System, "{base}");
        let no_db = scan_failure(
            "app",
            berths,
            db,
            api::Error::Db(DbError::Missing(db.into())),
        );
        assert_eq!(no_db.failure_kind(), FailureKind::System, "{no_db}");
    }

    /// A job's store whose only layer directory is gone: the scan fails, the job fails as a
    /// build failure, and no report claims a clean image.
    #[test]
    fn a_job_image_with_a_missing_layer_fails_the_job() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let osv = tmp.path().join("osv");
        std::fs::create_dir(&osv).expect("mkdir");
        std::fs::write(
            osv.join("GHSA-0000-0000-0000.json"),
            r#"{"id":"GHSA-0000-0000-0000","modified":"2026-11-01T00:00:00Z","affected":[{"package":{"ecosystem":"npm","name":"left-pad"},"versions":["1.0.0"]}]}"#,
        )
        .expect("write");
        let db = tmp.path().join("db");
        let now = time::OffsetDateTime::now_utc();
        berth_scan::advisory::db::import(&[osv], &db, now).expect("empty database");
        let store = tmp.path().join("store");
        let layer = "1".repeat(64);
        std::fs::create_dir_all(store.join("overlay-layers")).expect("mkdir");
        std::fs::create_dir_all(store.join("overlay-images")).expect("mkdir");
        std::fs::write(
            store.join("overlay-layers/layers.json"),
            format!(r#"[{{"id":"{layer}"}}]"#),
        )
        .expect("write");
        std::fs::write(
            store.join("overlay-images/images.json"),
            format!(
                r#"[{{"id":"{}","names":["localhost/app:latest"],"layer":"{layer}"}}]"#,
                "2".repeat(64)
            ),
        )
        .expect("write");
        let freshness = Freshness {
            max_age_days: 7,
            on_stale: StaleAction::Warn,
        };
        let (db_handle, _) = api::open_db(&db, freshness, now).expect("open");
        let policy = scan_policy(&admin(false), &Rules::default(), now.date()).expect("policy");
        let source = ImageSource::Store {
            root: store,
            additional: vec![tmp.path().join("images")],
            image: "localhost/app:latest".into(),
        };
        let cache = berth_scan::scan::LayerCache::new(tmp.path().join("cache"));
        let err = api::scan_image(&source, &db_handle, &policy, Some(&cache))
            .expect_err("an image without its layer passed the scan");
        let err = scan_failure("localhost/app:latest", &tmp.path().join("images"), &db, err);
        assert_eq!(err.failure_kind(), FailureKind::Build, "{err}");
        assert!(err.to_string().contains(&layer), "{err}");
    }
}
