//! `berth prepare`: check the job's images against policy, make them available, create the job's
//! store, pod, services, helper and job containers.

use std::collections::BTreeMap;

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_config::protocol::ImageSpec;
use berth_config::trust::TrustRule;
use berth_config::{PullPolicy, StageTarget};
use berth_sandbox::podman::job_labels;
use berth_sandbox::{
    ContainerSpec, Mount, PodSpec, PullOptions, RegistryAuth, Role, Sandbox, SandboxError,
};

use crate::config_stage::{BUILDS_DIR, CACHE_DIR};
use crate::naming;
use crate::state::{JobState, VERSION};
use crate::{Job, JobLog, StageError};

/// Where the helper finds the runner binary.
pub const RUNNER_BINARY_IN_HELPER: &str = "/usr/local/bin/gitlab-runner";

/// How many exposed ports of a service are waited for, as in the Docker executor.
const MAX_WAITED_PORTS: usize = 20;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A checked image reference and the pull policies that apply to it.
#[derive(Debug, Clone)]
struct ImagePlan {
    name: String,
    registry: String,
    /// `registry/repository`, normalised (`docker.io/library/alpine`): what trust scopes match.
    repository: String,
    kind: &'static str,
    policies: Vec<PullPolicy>,
}

fn plan_image(job: &Job, spec: &ImageSpec, kind: &'static str) -> Result<ImagePlan, StageError> {
    let (allow, key) = match kind {
        "service" => (&job.config.allowed_services, "allowed_services"),
        _ => (&job.config.allowed_images, "allowed_images"),
    };
    let reference = oci_spec::distribution::Reference::from_str(&spec.name).map_err(|e| {
        StageError::InvalidImageName {
            image: spec.name.clone(),
            reason: e.to_string(),
        }
    })?;
    if !allow.allows(&spec.name) {
        return Err(StageError::ImageNotAllowed {
            kind,
            image: spec.name.clone(),
            allowed: allow.patterns().iter().map(|p| (*p).to_owned()).collect(),
            key,
        });
    }
    let policies = match &spec.pull_policy {
        Some(requested) if !requested.is_empty() => {
            let mut out = Vec::new();
            for text in requested {
                let policy = PullPolicy::parse(text)
                    .filter(|p| job.config.allowed_pull_policies.contains(p))
                    .ok_or_else(|| StageError::PullPolicyNotAllowed {
                        image: spec.name.clone(),
                        requested: text.clone(),
                        allowed: job
                            .config
                            .allowed_pull_policies
                            .iter()
                            .map(|p| p.as_str().to_owned())
                            .collect(),
                    })?;
                out.push(policy);
            }
            out
        }
        _ => job.config.pull_policy.clone(),
    };
    Ok(ImagePlan {
        name: spec.name.clone(),
        registry: reference.registry().to_owned(),
        repository: format!("{}/{}", reference.registry(), reference.repository()),
        kind,
        policies,
    })
}

pub(crate) fn pull_options(job: &Job, registry: &str) -> PullOptions {
    PullOptions {
        auth: auth_for(job, registry),
        insecure: job.config.insecure_registries.iter().any(|r| r == registry),
    }
}

fn auth_for(job: &Job, registry: &str) -> Option<RegistryAuth> {
    job.payload
        .credentials
        .iter()
        .rev()
        .find(|c| c.kind == "registry" && c.url.trim_end_matches('/') == registry)
        .map(|c| RegistryAuth {
            registry: registry.to_owned(),
            username: c.username.clone(),
            password: c.password.clone(),
        })
}

/// Makes the job's or a service's image available as its pull policies say, under the admin's
/// image trust when there is one, and returns it with the reference to run it by. A rejected
/// scope is refused before any pull. Under a signature scope berth asks the registry for the
/// digest the name points at and its cosign signatures, verifies them, and pulls and runs that
/// digest; an image already in the base store is used without asking the registry only when its
/// digest was verified under the policy in force.
async fn ensure_job_image<S: Sandbox>(
    job: &Job,
    sandbox: &S,
    plan: &ImagePlan,
    gate: Option<&crate::trust::Gate>,
) -> Result<(berth_sandbox::ImageInfo, String), StageError> {
    let options = pull_options(job, &plan.registry);
    let Some(gate) = gate else {
        let info = sandbox
            .ensure_image(&plan.name, &plan.policies, &options)
            .await?;
        return Ok((info, plan.name.clone()));
    };
    let scope = gate.trust.scope_for(&plan.repository);
    let untrusted = |detail: String| StageError::ImageUntrusted {
        kind: plan.kind,
        image: plan.name.clone(),
        scope: scope.shown().to_owned(),
        expected: scope.rule.expectation(),
        detail,
    };
    let key = match &scope.rule {
        TrustRule::Reject => return Err(untrusted("its scope admits no image".into())),
        TrustRule::Accept => {
            let info = sandbox
                .ensure_image(&plan.name, &plan.policies, &options)
                .await?;
            return Ok((info, plan.name.clone()));
        }
        TrustRule::Sigstore { key } => gate
            .key(key)
            .ok_or_else(|| untrusted("its key was not loaded".into()))?,
    };
    let pinned = |digest: &str| format!("{}@{digest}", plan.repository);
    // Already here and verified under this policy: no need to ask the registry.
    let asks_registry = plan.policies.contains(&PullPolicy::Always);
    if !asks_registry
        && let Ok(present) = sandbox
            .ensure_image(&plan.name, &[PullPolicy::Never], &options)
            .await
        && let Some(digest) = present.digest.as_deref().filter(|d| gate.is_verified(d))
    {
        let reference = pinned(digest);
        let info = sandbox
            .ensure_image(&reference, &[PullPolicy::Never], &options)
            .await?;
        return Ok((info, reference));
    }
    if plan.policies.iter().all(|p| *p == PullPolicy::Never) {
        return Err(untrusted(
            "berth never verified it under the trust policy in force, and its pull policy \"never\" forbids asking the registry".into(),
        ));
    }
    let signed = sandbox
        .registry_signatures(
            &plan.name,
            &plan.repository,
            berth_sandbox::Attachment::Signatures,
            &options,
        )
        .await?;
    crate::trust::verify_cosign(key, &plan.repository, &signed.digest, &signed.layers)
        .map_err(|why| untrusted(format!("{} at the registry: {why}", signed.digest)))?;
    let reference = pinned(&signed.digest);
    let info = sandbox
        .ensure_image(&reference, &[PullPolicy::IfNotPresent], &options)
        .await?;
    gate.record_verified(&signed.digest)?;
    Ok((info, reference))
}

/// What the admission policies are told of one resolved image.
fn resolved<'a>(
    plan: &'a ImagePlan,
    info: &berth_sandbox::ImageInfo,
    role: berth_policy::input::Role,
    aliases: Vec<String>,
    gate: Option<&crate::trust::Gate>,
) -> crate::admission::Resolved<'a> {
    use berth_policy::input::Signature;
    crate::admission::Resolved {
        role,
        name: &plan.name,
        aliases,
        pull_policy: plan
            .policies
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        digest: info.digest.clone(),
        signature: match gate.map(|g| &g.trust.scope_for(&plan.repository).rule) {
            None => Signature::Unchecked,
            Some(TrustRule::Sigstore { .. }) => Signature::Verified,
            Some(TrustRule::Accept | TrustRule::Reject) => Signature::NotRequired,
        },
    }
}

/// The job image: the payload's, else `CI_JOB_IMAGE`, else the admin's default.
fn job_image(job: &Job) -> Result<ImageSpec, StageError> {
    let mut spec = job.payload.image.clone().unwrap_or_default();
    if spec.name.is_empty() {
        spec.name = job
            .env
            .job_var("CI_JOB_IMAGE")
            .map(str::to_owned)
            .or_else(|| job.config.default_image.clone())
            .ok_or_else(|| StageError::InvalidImageName {
                image: String::new(),
                reason: "the job names no image and the runner has no default_image".into(),
            })?;
    }
    Ok(spec)
}

/// `[""]` clears the image's entrypoint, as in the Docker executor.
fn entrypoint_override(spec: &ImageSpec) -> Option<Vec<String>> {
    spec.entrypoint
        .as_ref()
        .map(|e| e.iter().filter(|part| !part.is_empty()).cloned().collect())
}

fn shared_mounts(job: &Job) -> Vec<Mount> {
    vec![
        Mount {
            source: job.paths.builds(),
            destination: BUILDS_DIR.to_owned(),
            read_only: false,
        },
        Mount {
            source: job.cache_source(),
            destination: CACHE_DIR.to_owned(),
            read_only: false,
        },
    ]
}

fn container(job: &Job, role: Role, suffix: &str, image: &str) -> ContainerSpec {
    ContainerSpec {
        name: naming::container(&job.key, suffix),
        pod: naming::pod(&job.key),
        image: image.to_owned(),
        role,
        entrypoint: None,
        command: None,
        env: BTreeMap::new(),
        mounts: shared_mounts(job),
        limits: job.config.limits.clone(),
        no_new_privileges: job.config.no_new_privileges,
        cap_drop: job.config.cap_drop.clone(),
        seccomp_profile: None,
        unmask: Vec::new(),
        labels: job_labels(&job.key),
        network: job.config.network,
    }
}

/// Runs prepare. On error the runner calls cleanup, which removes whatever was created.
pub async fn prepare<S: Sandbox>(
    job: &Job,
    sandbox: &S,
    log: &mut JobLog,
) -> Result<(), StageError> {
    log.section_start(
        "prepare_berth",
        &format!(
            "Preparing the rootless Podman sandbox (berth {})",
            env!("CARGO_PKG_VERSION")
        ),
    );
    let result = prepare_inner(job, sandbox, log).await;
    log.section_end("prepare_berth");
    result
}

async fn prepare_inner<S: Sandbox>(
    job: &Job,
    sandbox: &S,
    log: &mut JobLog,
) -> Result<(), StageError> {
    // No base-image collection may start while this prepare checks and uses base images; once
    // the job directory exists, collections wait for the job's end (see `prune`).
    let lock_path = crate::prune::gc_lock_path(&job.config);
    let lock = crate::prune::gc_lock_file(&job.config)?;
    let _collection_lock = tokio::task::spawn_blocking(move || {
        nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockShared)
    })
    .await
    .map_err(|e| StageError::io(&lock_path)(std::io::Error::other(e)))?
    .map_err(|(_, e)| StageError::io(&lock_path)(e.into()))?;
    let image_spec = job_image(job)?;
    let image = plan_image(job, &image_spec, "image")?;
    let services: Vec<(ImageSpec, ImagePlan)> = job
        .payload
        .services
        .iter()
        .map(|s| plan_image(job, s, "service").map(|p| (s.clone(), p)))
        .collect::<Result<_, _>>()?;

    let t0 = std::time::Instant::now();
    let step =
        |name: &str| tracing::debug!("prepare: {name} done at {} ms", t0.elapsed().as_millis());
    // A retried prepare starts from nothing: remove what an earlier attempt left.
    let leftovers = sandbox.teardown().await;
    for e in leftovers {
        log.warn(&format!("removing an earlier attempt's leftovers: {e}"));
    }
    let mut state = JobState {
        version: VERSION,
        key: job.key.clone(),
        runner: job.host.runner,
        deadline_unix: unix_now() + job.timeout_secs() + 3600,
        helper: None,
        job: None,
        services: Vec::new(),
        prepared: false,
    };
    if job.host.job_identity.is_none() {
        std::fs::create_dir_all(&job.paths.job_dir).map_err(StageError::io(&job.paths.job_dir))?;
        let cache = job.cache_dir();
        std::fs::create_dir_all(&cache).map_err(StageError::io(&cache))?;
        set_mode(&cache, 0o777)?;
        crate::prune::touch_last_used(&cache).map_err(StageError::io(&cache))?;
    }
    // Root's file when the job has an identity: berth's word about the job, not the job's.
    berth_sandbox::process::as_root(|| state.save(&job.paths.state_file()))?;

    step("teardown of leftovers");
    sandbox.start().await?;
    step("sandbox start");
    log.line(&format!("Using job image {} ...", image.name));
    let gate = crate::trust::Gate::of(&job.config)?;
    let (image_info, image_reference) =
        ensure_job_image(job, sandbox, &image, gate.as_ref()).await?;
    // The helper is the runner's own tooling, provisioned with the host: pulled only when missing.
    let helper_info = sandbox
        .ensure_image(
            &job.config.helper_image,
            &[PullPolicy::IfNotPresent],
            &PullOptions::default(),
        )
        .await?;
    let mut service_infos = Vec::new();
    for (_, plan) in &services {
        service_infos.push(ensure_job_image(job, sandbox, plan, gate.as_ref()).await?);
    }

    let mut admitted = vec![resolved(
        &image,
        &image_info,
        berth_policy::input::Role::Job,
        Vec::new(),
        gate.as_ref(),
    )];
    for ((spec, plan), (info, _)) in services.iter().zip(&service_infos) {
        admitted.push(resolved(
            plan,
            info,
            berth_policy::input::Role::Service,
            spec.aliases(),
            gate.as_ref(),
        ));
    }
    crate::admission::admit(job, &admitted)?;

    step("images");
    for info in std::iter::once(&image_info)
        .chain(service_infos.iter().map(|(info, _)| info))
        .chain(std::iter::once(&helper_info))
    {
        if let Err(e) = berth_sandbox::process::as_root(|| {
            crate::prune::touch_image_used(&job.config, &info.id)
        }) {
            log.warn(&format!("cannot record the use of image {}: {e}", info.id));
        }
    }
    let mut hosts = Vec::new();
    for (spec, _) in &services {
        hosts.extend(naming::service_aliases(&spec.name, &spec.aliases()));
    }
    hosts.push("build".to_owned());
    hosts.dedup();
    sandbox
        .create_pod(&PodSpec {
            name: naming::pod(&job.key),
            hosts,
            network: job.config.network,
            labels: job_labels(&job.key),
        })
        .await?;

    step("pod");
    let job_vars: BTreeMap<String, String> = job
        .payload
        .variables
        .iter()
        .filter(|v| !v.file)
        .map(|v| (v.key.clone(), v.value.clone()))
        .collect();
    for (index, ((spec, plan), (info, reference))) in
        services.iter().zip(&service_infos).enumerate()
    {
        let aliases = naming::service_aliases(&spec.name, &spec.aliases());
        log.line(&format!(
            "Starting service {} (reachable as {}) ...",
            plan.name,
            aliases.join(", ")
        ));
        let mut c = container(job, Role::Service, &format!("svc{index}"), reference);
        c.entrypoint = entrypoint_override(spec);
        c.command = spec.command.clone().filter(|c| !c.is_empty());
        c.env = job_vars.clone();
        c.env.extend(
            spec.variables
                .iter()
                .map(|v| (v.key.clone(), v.value.clone())),
        );
        let started = sandbox.run_container(&c).await?;
        state.services.push(started);
        let ports: Vec<u16> = info
            .tcp_ports
            .iter()
            .copied()
            .take(MAX_WAITED_PORTS)
            .collect();
        if !ports.is_empty() {
            let wait = Duration::from_secs(job.config.service_wait_timeout_secs);
            match sandbox.wait_ports(&plan.name, started, &ports, wait).await {
                Ok(()) => {}
                Err(SandboxError::ServiceNotReady { service, ports, secs }) => log.warn(&format!(
                    "Service {service} probably didn't start properly: nothing listens on port(s) {ports:?} after {secs} s"
                )),
                Err(e) => return Err(e.into()),
            }
        }
    }

    let mut helper = container(
        job,
        Role::Helper,
        StageTarget::Helper.as_str(),
        &job.config.helper_image,
    );
    helper.entrypoint = Some(Vec::new());
    if let Some(binary) = &job.host.runner_binary {
        helper.mounts.push(Mount {
            source: binary.clone(),
            destination: RUNNER_BINARY_IN_HELPER.to_owned(),
            read_only: true,
        });
    } else {
        log.warn("no gitlab-runner binary found for the helper: artifacts and cache stages will be skipped (set gitlab_runner_binary in the berth config)");
    }
    step("services");
    let mut job_container = container(job, Role::Job, StageTarget::Job.as_str(), &image_reference);
    job_container.entrypoint = entrypoint_override(&image_spec);
    if job.config.nested_builds {
        let nested = crate::nested::prepare(
            &job.paths.nested(),
            &job.paths.image_store,
            job.config.nested_run,
        )?;
        job_container.mounts.extend(nested.mounts);
        job_container.env.extend(nested.env);
        job_container.seccomp_profile = nested.seccomp_profile;
        job_container.unmask = nested.unmask;
    }
    if let Some((mount, env)) = crate::nested::registry_auth(
        &job.paths.work().join("registry-auth"),
        job.payload.variable("CI_REGISTRY"),
        job.payload.variable("CI_REGISTRY_USER"),
        job.payload.variable("CI_REGISTRY_PASSWORD"),
    )? {
        job_container.mounts.push(mount);
        job_container.env.extend(env);
    }
    if image_info.entrypoint.is_some() && job_container.entrypoint.is_none() {
        log.line("The image's entrypoint wraps the job shell, as with the Docker executor.");
    }
    // Helper and job container start side by side: each waits on its own shell.
    let (helper_started, job_started) = tokio::join!(
        sandbox.run_container(&helper),
        sandbox.run_container(&job_container)
    );
    state.helper = Some(helper_started?);
    state.job = Some(job_started?);
    step("job container");
    state.prepared = true;
    berth_sandbox::process::as_root(|| state.save(&job.paths.state_file()))?;
    log.line("Job sandbox ready.");
    Ok(())
}

fn set_mode(path: &std::path::Path, mode: u32) -> Result<(), StageError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(StageError::io(path))
}
