//! Jobs: GitLab's key checks, `default:`/`inherit:`, `parallel` expansion, rules, needs,
//! variables, and the final [`Job`] of the model.

use std::collections::{HashMap, HashSet};

use serde_yaml_ng::{Mapping, Value};
use sha1::{Digest, Sha1};

use crate::duration;
use crate::model::{
    AllowFailure, Artifacts, Cache, ImageSpec, ProjectFiles, Retry, Variable, When,
};
use crate::rules::glob_matches;
use crate::variables::{expand_with, predefined, slugify};
use crate::yaml::{get, key_text, keys, scalar_text, string_list};

/// Top-level keys that are not jobs.
pub(crate) const RESERVED: &[&str] = &[
    "image",
    "services",
    "stages",
    "types",
    "variables",
    "cache",
    "before_script",
    "after_script",
    "default",
    "include",
    "workflow",
    "spec",
];

/// GitLab's job keys.
const JOB_KEYS: &[&str] = &[
    "image",
    "services",
    "before_script",
    "after_script",
    "hooks",
    "rules",
    "variables",
    "cache",
    "id_tokens",
    "identity",
    "inputs",
    "secrets",
    "script",
    "run",
    "stage",
    "only",
    "extends",
    "needs",
    "except",
    "tags",
    "allow_failure",
    "timeout",
    "when",
    "start_in",
    "manual_confirmation",
    "dependencies",
    "artifacts",
    "environment",
    "release",
    "coverage",
    "retry",
    "parallel",
    "interruptible",
    "resource_group",
    "trigger",
    "inherit",
    "publish",
    "pages",
    "dast_configuration",
];

/// `default:` keys, which are also the keys `inherit: default:` may list.
pub(crate) const DEFAULT_KEYS: &[&str] = &[
    "after_script",
    "artifacts",
    "before_script",
    "hooks",
    "cache",
    "image",
    "interruptible",
    "id_tokens",
    "identity",
    "retry",
    "services",
    "tags",
    "timeout",
];

const WHEN_VALUES: &[&str] = &[
    "on_success",
    "on_failure",
    "always",
    "manual",
    "delayed",
    "never",
];

/// A job as written, after `default:` and `inherit:` are applied.
#[derive(Clone)]
pub(crate) struct Draft {
    pub name: String,
    pub config: Mapping,
    pub stage: String,
    /// Global variables this job inherits.
    pub global_variables: Vec<Variable>,
}

/// One job after `parallel` expansion, before rules.
#[derive(Clone)]
pub(crate) struct Instance {
    pub draft: usize,
    pub name: String,
    pub node: Option<(u32, u32)>,
    pub matrix: Vec<(String, String)>,
}

/// Check the top-level keys and every visible job the way GitLab's config entries do.
/// Returns the top-level keys that got an error (for the schema's duplicate rule).
pub(crate) fn check_entries(config: &Mapping, errors: &mut Vec<(String, String)>) {
    if let Some(default) = config.get("default") {
        match default {
            Value::Mapping(mapping) => {
                let unknown: Vec<String> = keys(mapping)
                    .into_iter()
                    .filter(|key| !DEFAULT_KEYS.contains(&key.as_str()))
                    .collect();
                if !unknown.is_empty() {
                    errors.push((
                        "default".into(),
                        format!(
                            "default config contains unknown keys: {}",
                            unknown.join(", ")
                        ),
                    ));
                }
            }
            Value::Null => {}
            _ => errors.push(("default".into(), "default config should be a hash".into())),
        }
    }
    let mut visible = 0;
    for (key, value) in config {
        let name = key_text(key);
        if RESERVED.contains(&name.as_str()) || name.starts_with('.') {
            continue;
        }
        visible += 1;
        let Value::Mapping(job) = value else {
            errors.push((
                name.clone(),
                format!(
                    "jobs {name} config should implement the script:, run:, or trigger: keyword"
                ),
            ));
            continue;
        };
        let unknown: Vec<String> = keys(job)
            .into_iter()
            .filter(|key| !JOB_KEYS.contains(&key.as_str()))
            .collect();
        if !unknown.is_empty() {
            errors.push((
                name.clone(),
                format!(
                    "jobs:{name} config contains unknown keys: {}",
                    unknown.join(", ")
                ),
            ));
        }
        if !job.contains_key("script") && !job.contains_key("run") && !job.contains_key("trigger") {
            errors.push((
                name.clone(),
                format!(
                    "jobs {name} config should implement the script:, run:, or trigger: keyword"
                ),
            ));
        }
        if job.contains_key("trigger") {
            errors.push((
                name.clone(),
                format!("jobs:{name} trigger: downstream pipelines are not supported by berth exec (no GitLab server)"),
            ));
        }
        if job.contains_key("rules") {
            let with: Vec<&str> = ["only", "except"]
                .into_iter()
                .filter(|key| job.contains_key(*key))
                .collect();
            if !with.is_empty() {
                errors.push((
                    name.clone(),
                    format!(
                        "jobs:{name} config key may not be used with `rules`: {}",
                        with.join(", ")
                    ),
                ));
            }
        }
        if let Some(when) = job.get("when").and_then(scalar_text)
            && !WHEN_VALUES.contains(&when.as_str())
        {
            errors.push((
                name.clone(),
                format!("jobs:{name} when should be one of: on_success, on_failure, always, manual, delayed, never"),
            ));
        }
        let delayed = job.get("when").and_then(scalar_text).as_deref() == Some("delayed");
        if delayed && !job.contains_key("start_in") && !job.contains_key("rules") {
            errors.push((name.clone(), format!("jobs:{name} start in can't be blank")));
        }
        if !delayed && job.contains_key("start_in") && !job.contains_key("rules") {
            errors.push((
                name.clone(),
                format!("jobs:{name} start in should be blank"),
            ));
        }
        if let Some(start_in) = job.get("start_in").and_then(scalar_text)
            && duration::parse(&start_in).is_none()
        {
            errors.push((
                name.clone(),
                format!("jobs:{name} start in should be a duration"),
            ));
        }
        if let Some(timeout) = job.get("timeout").and_then(scalar_text)
            && duration::parse(&timeout).is_none()
        {
            errors.push((
                name.clone(),
                format!("jobs:{name}:timeout config should be a duration"),
            ));
        }
        if let Some(needs) = job.get("needs")
            && !needs_shape_ok(needs)
        {
            errors.push((
                name.clone(),
                format!("jobs:{name}:needs job should be an array of strings or hashes"),
            ));
        }
        if let Some(needs) = job.get("needs") {
            let names = need_names_as_written(needs);
            let mut seen = HashSet::new();
            let duplicated: Vec<String> = names
                .iter()
                .filter(|n| !seen.insert((*n).clone()))
                .cloned()
                .collect();
            if !duplicated.is_empty() {
                errors.push((
                    name.clone(),
                    format!(
                        "{name} has the following needs duplicated: {}",
                        duplicated.join(", ")
                    ),
                ));
            }
        }
    }
    if visible == 0 {
        errors.push((
            String::new(),
            "jobs config should contain at least one visible job".into(),
        ));
    }
}

fn needs_shape_ok(needs: &Value) -> bool {
    match needs {
        Value::Sequence(items) => items.iter().all(|item| match item {
            Value::String(_) => true,
            Value::Mapping(mapping) => mapping.get("job").is_some_and(Value::is_string),
            _ => false,
        }),
        _ => false,
    }
}

fn need_names_as_written(needs: &Value) -> Vec<String> {
    let Value::Sequence(items) = needs else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match item {
            Value::String(name) => Some(name.clone()),
            Value::Mapping(mapping) if !mapping.contains_key("parallel") => {
                mapping.get("job").and_then(scalar_text)
            }
            _ => None,
        })
        .collect()
}

/// Variables of a `variables:` mapping, as a job receives them (`expand: false` is raw).
pub(crate) fn parse_variables(value: Option<&Value>) -> Vec<Variable> {
    let Some(Value::Mapping(mapping)) = value else {
        return Vec::new();
    };
    mapping
        .iter()
        .map(|(key, item)| {
            let (value, raw) = match item {
                Value::Mapping(hash) => (
                    hash.get("value").and_then(scalar_text).unwrap_or_default(),
                    hash.get("expand") == Some(&Value::Bool(false)),
                ),
                other => (scalar_text(other).unwrap_or_default(), false),
            };
            Variable {
                key: key_text(key),
                value,
                raw,
                file: false,
                masked: false,
                public: false,
            }
        })
        .collect()
}

/// `inherit: default:`/`variables:` of a job: whether `name` is inherited.
fn inherits(job: &Mapping, section: &str, name: &str) -> bool {
    let Some(Value::Mapping(inherit)) = job.get("inherit") else {
        return true;
    };
    match inherit.get(section) {
        None | Some(Value::Null) => true,
        Some(Value::Bool(flag)) => *flag,
        Some(list) => string_list(list)
            .unwrap_or_default()
            .iter()
            .any(|item| item == name),
    }
}

/// Build the drafts: `default:` (and the deprecated top-level keys) applied as `inherit:`
/// allows, stage defaulted to `test`.
pub(crate) fn drafts(config: &Mapping, global_variables: &[Variable]) -> Vec<Draft> {
    let default = match config.get("default") {
        Some(Value::Mapping(default)) => default.clone(),
        _ => Mapping::new(),
    };
    let mut drafts = Vec::new();
    for (key, value) in config {
        let name = key_text(key);
        if RESERVED.contains(&name.as_str()) || name.starts_with('.') {
            continue;
        }
        let Value::Mapping(job) = value else { continue };
        let mut job = job.clone();
        for default_key in DEFAULT_KEYS {
            if job.contains_key(*default_key) || !inherits(&job, "default", default_key) {
                continue;
            }
            let inherited = default.get(*default_key).or_else(|| {
                [
                    "image",
                    "services",
                    "before_script",
                    "after_script",
                    "cache",
                ]
                .contains(default_key)
                .then(|| config.get(*default_key))
                .flatten()
            });
            if let Some(inherited) = inherited {
                job.insert(Value::String((*default_key).to_string()), inherited.clone());
            }
        }
        let stage = job
            .get("stage")
            .and_then(scalar_text)
            .unwrap_or_else(|| "test".into());
        let globals = global_variables
            .iter()
            .filter(|variable| inherits(&job, "variables", &variable.key))
            .cloned()
            .collect();
        drafts.push(Draft {
            name,
            config: job,
            stage,
            global_variables: globals,
        });
    }
    drafts
}

/// GitLab's name of one matrix combination: `job: [a, b]`.
pub(crate) fn matrix_name(base: &str, values: &[(String, String)]) -> String {
    let shown: Vec<&str> = values.iter().map(|(_, value)| value.as_str()).collect();
    format!("{base}: [{}]", shown.join(", "))
}

/// The combinations of a `parallel: matrix:` list, in GitLab's order (each entry's first
/// variable varies slowest).
pub(crate) fn matrix_combinations(matrix: &Value) -> Vec<Vec<(String, String)>> {
    let Value::Sequence(entries) = matrix else {
        return Vec::new();
    };
    let mut all = Vec::new();
    for entry in entries {
        let Value::Mapping(entry) = entry else {
            continue;
        };
        let mut combinations: Vec<Vec<(String, String)>> = vec![Vec::new()];
        for (key, values) in entry {
            let values = string_list(values).unwrap_or_default();
            combinations = combinations
                .into_iter()
                .flat_map(|prefix| {
                    values.iter().map(move |value| {
                        let mut next = prefix.clone();
                        next.push((key_text(key), value.clone()));
                        next
                    })
                })
                .collect();
        }
        all.extend(combinations);
    }
    all
}

/// Expand `parallel:` into instances.
pub(crate) fn instances(drafts: &[Draft]) -> Vec<Instance> {
    let mut list = Vec::new();
    for (index, draft) in drafts.iter().enumerate() {
        match draft.config.get("parallel") {
            Some(Value::Number(number)) => {
                let total = u32::try_from(number.as_u64().unwrap_or(1)).unwrap_or(1);
                if total <= 1 {
                    list.push(Instance {
                        draft: index,
                        name: draft.name.clone(),
                        node: Some((1, 1)),
                        matrix: Vec::new(),
                    });
                    continue;
                }
                for node in 1..=total {
                    list.push(Instance {
                        draft: index,
                        name: format!("{} {node}/{total}", draft.name),
                        node: Some((node, total)),
                        matrix: Vec::new(),
                    });
                }
            }
            Some(Value::Mapping(parallel)) => {
                let combinations = parallel
                    .get("matrix")
                    .map(matrix_combinations)
                    .unwrap_or_default();
                let total = u32::try_from(combinations.len()).unwrap_or(u32::MAX);
                for (position, combination) in combinations.into_iter().enumerate() {
                    list.push(Instance {
                        draft: index,
                        name: matrix_name(&draft.name, &combination),
                        node: Some((
                            u32::try_from(position)
                                .unwrap_or(u32::MAX)
                                .saturating_add(1),
                            total,
                        )),
                        matrix: combination,
                    });
                }
            }
            _ => list.push(Instance {
                draft: index,
                name: draft.name.clone(),
                node: None,
                matrix: Vec::new(),
            }),
        }
    }
    list
}

/// One `needs:` entry after parallel names are expanded.
#[derive(Clone, Debug)]
pub(crate) struct ExpandedNeed {
    pub job: String,
    pub artifacts: bool,
    pub optional: bool,
}

/// Expand `needs:` entries to instance names: a need on a `parallel` job means all its
/// instances, or those its `parallel: matrix:` selects.
pub(crate) fn expand_needs(
    needs: &Value,
    instances_by_base: &HashMap<String, Vec<String>>,
) -> Vec<ExpandedNeed> {
    let Value::Sequence(items) = needs else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let (name, artifacts, optional, matrix) = match item {
            Value::String(name) => (name.clone(), true, false, None),
            Value::Mapping(mapping) => (
                mapping.get("job").and_then(scalar_text).unwrap_or_default(),
                mapping.get("artifacts") != Some(&Value::Bool(false)),
                mapping.get("optional") == Some(&Value::Bool(true)),
                match mapping.get("parallel") {
                    Some(Value::Mapping(parallel)) => parallel.get("matrix").cloned(),
                    _ => None,
                },
            ),
            Value::Sequence(nested) => {
                out.extend(expand_needs(
                    &Value::Sequence(nested.clone()),
                    instances_by_base,
                ));
                continue;
            }
            _ => continue,
        };
        if let Some(matrix) = matrix {
            for combination in matrix_combinations(&matrix) {
                out.push(ExpandedNeed {
                    job: matrix_name(&name, &combination),
                    artifacts,
                    optional,
                });
            }
            continue;
        }
        match instances_by_base.get(&name) {
            Some(names) if names.len() > 1 || names.first() != Some(&name) => {
                out.extend(names.iter().map(|job| ExpandedNeed {
                    job: job.clone(),
                    artifacts,
                    optional,
                }));
            }
            _ => out.push(ExpandedNeed {
                job: name,
                artifacts,
                optional,
            }),
        }
    }
    out
}

/// `when:` text to the model.
pub(crate) fn parse_when(text: &str) -> When {
    match text {
        "on_failure" => When::OnFailure,
        "always" => When::Always,
        "manual" => When::Manual,
        "delayed" => When::Delayed,
        "never" => When::Never,
        _ => When::OnSuccess,
    }
}

/// `allow_failure:` to the model; `None` when unset or not understood.
pub(crate) fn parse_allow_failure(value: Option<&Value>) -> Option<AllowFailure> {
    match value? {
        Value::Bool(flag) => Some(AllowFailure::Bool(*flag)),
        Value::Mapping(mapping) => {
            let codes = match mapping.get("exit_codes")? {
                Value::Number(number) => vec![i32::try_from(number.as_i64()?).ok()?],
                Value::Sequence(items) => items
                    .iter()
                    .filter_map(|item| item.as_i64().and_then(|code| i32::try_from(code).ok()))
                    .collect(),
                _ => return None,
            };
            Some(AllowFailure::ExitCodes(codes))
        }
        _ => None,
    }
}

fn list_of_strings(value: Option<&Value>) -> Option<Vec<String>> {
    value.and_then(string_list).map(|list| {
        list.into_iter()
            .map(|item| item.trim().to_string())
            .collect()
    })
}

/// `image:` or a `services:` entry, names expanded with the job's variables.
pub(crate) fn parse_image(
    value: &Value,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<ImageSpec> {
    let expand = |text: &str| expand_with(text, lookup);
    match value {
        Value::Mapping(mapping) => Some(ImageSpec {
            name: expand(&mapping.get("name").and_then(scalar_text)?),
            entrypoint: list_of_strings(mapping.get("entrypoint")),
            command: list_of_strings(mapping.get("command")),
            alias: mapping.get("alias").and_then(scalar_text),
            pull_policy: list_of_strings(mapping.get("pull_policy")).unwrap_or_default(),
            variables: parse_variables(mapping.get("variables")),
        }),
        other => Some(ImageSpec {
            name: expand(&scalar_text(other)?),
            entrypoint: None,
            command: None,
            alias: None,
            pull_policy: Vec::new(),
            variables: Vec::new(),
        }),
    }
}

/// `artifacts:`.
pub(crate) fn parse_artifacts(
    value: Option<&Value>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<Artifacts> {
    let Some(Value::Mapping(mapping)) = value else {
        return None;
    };
    let mut reports = std::collections::BTreeMap::new();
    if let Some(Value::Mapping(report_map)) = mapping.get("reports") {
        for (kind, paths) in report_map {
            let paths = match paths {
                Value::Mapping(coverage) => coverage
                    .get("path")
                    .and_then(scalar_text)
                    .into_iter()
                    .collect(),
                other => string_list(other).unwrap_or_default(),
            };
            reports.insert(key_text(kind), paths);
        }
    }
    Some(Artifacts {
        name: mapping
            .get("name")
            .and_then(scalar_text)
            .map(|name| expand_with(&name, lookup)),
        paths: list_of_strings(mapping.get("paths")).unwrap_or_default(),
        exclude: list_of_strings(mapping.get("exclude")).unwrap_or_default(),
        untracked: mapping.get("untracked") == Some(&Value::Bool(true)),
        when: mapping
            .get("when")
            .and_then(scalar_text)
            .unwrap_or_else(|| "on_success".into()),
        expire_in: mapping.get("expire_in").and_then(scalar_text),
        reports,
    })
}

/// Git's blob id of `content` (what GitLab hashes for `cache:key:files`).
fn git_blob_id(content: &[u8]) -> String {
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {}\0", content.len()).as_bytes());
    hasher.update(content);
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `cache:key:files` as GitLab computes it: SHA-1 of the sorted, unique blob ids of the files
/// (globs expanded against the project), joined with `-`; `default` when none exists.
fn files_digest(patterns: &[String], files: &dyn ProjectFiles, listing: &[String]) -> String {
    let mut paths = Vec::new();
    for pattern in patterns.iter().filter(|pattern| !pattern.is_empty()) {
        if pattern.contains('*') {
            paths.extend(
                listing
                    .iter()
                    .filter(|file| glob_matches(pattern, file))
                    .cloned(),
            );
        } else {
            paths.push(pattern.trim_start_matches('/').to_string());
        }
    }
    let mut ids: Vec<String> = paths
        .iter()
        .filter_map(|path| files.read(path).ok().flatten())
        .map(|content| git_blob_id(content.as_bytes()))
        .collect();
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return "default".into();
    }
    let mut hasher = Sha1::new();
    hasher.update(ids.join("-").as_bytes());
    hex(&hasher.finalize())
}

/// `cache:` (a hash or a list of them).
pub(crate) fn parse_cache(
    value: Option<&Value>,
    lookup: &dyn Fn(&str) -> Option<String>,
    files: &dyn ProjectFiles,
    listing: &[String],
) -> Vec<Cache> {
    let entries = match value {
        Some(Value::Sequence(items)) => items.clone(),
        Some(Value::Mapping(_)) => vec![value.cloned().unwrap_or(Value::Null)],
        _ => Vec::new(),
    };
    entries
        .iter()
        .enumerate()
        .filter_map(|(index, entry)| {
            let Value::Mapping(mapping) = entry else {
                return None;
            };
            let key = match mapping.get("key") {
                Some(Value::Mapping(key)) => {
                    let patterns =
                        list_of_strings(key.get("files").or_else(|| key.get("files_commits")))
                            .unwrap_or_default();
                    let prefix = key
                        .get("prefix")
                        .and_then(scalar_text)
                        .map_or_else(|| index.to_string(), |p| expand_with(&p, lookup));
                    let digest = files_digest(&patterns, files, listing);
                    [prefix, digest]
                        .into_iter()
                        .filter(|part| !part.is_empty())
                        .collect::<Vec<_>>()
                        .join("-")
                }
                Some(other) => expand_with(&scalar_text(other).unwrap_or_default(), lookup),
                None => "default".into(),
            };
            Some(Cache {
                key,
                paths: list_of_strings(mapping.get("paths")).unwrap_or_default(),
                untracked: mapping.get("untracked") == Some(&Value::Bool(true)),
                policy: mapping
                    .get("policy")
                    .and_then(scalar_text)
                    .map_or_else(|| "pull-push".into(), |p| expand_with(&p, lookup)),
                when: mapping
                    .get("when")
                    .and_then(scalar_text)
                    .unwrap_or_else(|| "on_success".into()),
                fallback_keys: list_of_strings(mapping.get("fallback_keys")).unwrap_or_default(),
            })
        })
        .collect()
}

/// `retry:`.
pub(crate) fn parse_retry(value: Option<&Value>) -> Retry {
    let max_of = |value: &Value| {
        value
            .as_u64()
            .and_then(|max| u8::try_from(max).ok())
            .unwrap_or(0)
    };
    match value {
        Some(Value::Mapping(mapping)) => Retry {
            max: mapping.get("max").map_or(0, max_of),
            when: list_of_strings(mapping.get("when")).unwrap_or_else(|| vec!["always".into()]),
            exit_codes: match mapping.get("exit_codes") {
                Some(Value::Sequence(items)) => items
                    .iter()
                    .filter_map(|item| item.as_i64().and_then(|code| i32::try_from(code).ok()))
                    .collect(),
                Some(item) => item
                    .as_i64()
                    .and_then(|code| i32::try_from(code).ok())
                    .into_iter()
                    .collect(),
                None => Vec::new(),
            },
        },
        Some(other) => Retry {
            max: max_of(other),
            when: vec!["always".into()],
            exit_codes: Vec::new(),
        },
        None => Retry {
            max: 0,
            when: vec!["always".into()],
            exit_codes: Vec::new(),
        },
    }
}

/// The job-level predefined variables.
pub(crate) fn job_predefined(
    name: &str,
    stage: &str,
    node: Option<(u32, u32)>,
    manual: bool,
) -> Vec<Variable> {
    let mut list = vec![
        predefined("CI_JOB_NAME", name),
        predefined("CI_JOB_NAME_SLUG", slugify(name)),
        predefined("CI_JOB_STAGE", stage),
    ];
    if let Some((index, total)) = node {
        list.push(predefined("CI_NODE_INDEX", index.to_string()));
        list.push(predefined("CI_NODE_TOTAL", total.to_string()));
    }
    if manual {
        list.push(predefined("CI_JOB_MANUAL", "true"));
    }
    list
}

/// A job's `environment:` name.
pub(crate) fn environment_name(
    value: Option<&Value>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    let name = match value? {
        Value::Mapping(mapping) => mapping.get("name").and_then(scalar_text)?,
        other => scalar_text(other)?,
    };
    Some(expand_with(&name, lookup))
}

/// The `tags:` of a job (nested lists flattened).
pub(crate) fn tags(value: Option<&Value>) -> Vec<String> {
    value.and_then(string_list).unwrap_or_default()
}

/// A mapping entry as a script (nested lists flattened).
pub(crate) fn script(mapping: &Mapping, key: &str) -> Vec<String> {
    get(mapping, key).and_then(string_list).unwrap_or_default()
}
