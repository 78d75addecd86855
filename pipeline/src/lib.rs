//! A project's `.gitlab-ci.yml` computed into a pipeline as GitLab computes it: YAML with
//! anchors and `!reference`, includes, `extends`, `default:`/`inherit:`, rules and their
//! expression language, `needs`, `parallel`, variables. Pure: files are read through the
//! [`model::ProjectFiles`] seam, repository facts arrive as [`model::RepoFacts`].

mod duration;
mod error;
pub mod expr;
mod includes;
mod inputs;
mod jobs;
pub mod model;
mod resolve;
mod rules;
mod schema;
mod variables;
mod yaml;

use std::collections::{HashMap, HashSet};

use serde_yaml_ng::{Mapping, Value};

pub use error::{ConfigError, ConfigErrors, ErrorSource};
use model::{AllowFailure, Job, Need, Pipeline, ProjectFiles, RepoFacts, Variable, When};
pub use variables::{pipeline_predefined, slugify};
use yaml::scalar_text;

/// What [`compute`] needs besides the project's files.
pub struct Options<'a> {
    /// The CI file, relative to the project root (GitLab's default: `.gitlab-ci.yml`).
    pub ci_file: String,
    /// What the repository says about this run.
    pub facts: RepoFacts,
    /// Pipeline variables given on the command line; they win over every YAML variable.
    pub cli_variables: Vec<(String, String)>,
    /// A local directory standing in for `include: project/remote/template/component`
    /// (layout: `projects/<group>/<project>/<file>`, `remote/<host>/<path>`,
    /// `templates/<name>`, `components/<group>/<project>/templates/<name>.yml`); `None`
    /// refuses those includes with an error naming this option.
    pub external_includes: Option<&'a dyn ProjectFiles>,
    /// Keep jobs whose rules say `never` (listed with [`When::Never`]).
    pub keep_never: bool,
}

/// The default CI file name.
pub const DEFAULT_CI_FILE: &str = ".gitlab-ci.yml";

fn lookup_in(list: &[Variable]) -> impl Fn(&str) -> Option<String> + '_ {
    move |name: &str| {
        list.iter()
            .rev()
            .find(|variable| variable.key == name)
            .map(|variable| variable.value.clone())
    }
}

fn cli_variables(options: &Options<'_>) -> Vec<Variable> {
    options
        .cli_variables
        .iter()
        .map(|(key, value)| variables::user_variable(key, value))
        .collect()
}

/// The lists one after the other (later definitions win), expanded.
fn expanded_union(lists: &[&[Variable]]) -> Vec<Variable> {
    let joined: Vec<Variable> = lists.iter().flat_map(|list| list.iter().cloned()).collect();
    variables::expand_all(&joined)
}

fn fail(errors: ConfigErrors) -> Result<Pipeline, ConfigErrors> {
    Err(errors)
}

/// Compute the pipeline GitLab would create for `options.facts` from the project's CI file.
///
/// # Errors
/// Every problem of the configuration, each in GitLab's words; also "Pipeline filtered out by
/// workflow rules." and the "no jobs" message, which GitLab reports as pipeline errors.
pub fn compute(files: &dyn ProjectFiles, options: &Options<'_>) -> Result<Pipeline, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let ci_file = if options.ci_file.is_empty() {
        DEFAULT_CI_FILE
    } else {
        options.ci_file.as_str()
    };
    let text = match files.read(ci_file) {
        Ok(Some(text)) => text,
        Ok(None) => {
            errors.push(format!(
                "the CI configuration file `{ci_file}` does not exist in the project"
            ));
            return fail(errors);
        }
        Err(error) => {
            errors.push(format!(
                "the CI configuration file `{ci_file}` could not be read: {error}"
            ));
            return fail(errors);
        }
    };
    if text.trim().is_empty() {
        errors.push(format!("Please provide content of {ci_file}"));
        return fail(errors);
    }
    let documents = match yaml::parse(&text) {
        Ok(documents) => documents,
        Err(message) => {
            errors.push(format!("({ci_file}): {message}"));
            return fail(errors);
        }
    };
    let content = match inputs::apply(documents.spec.as_ref(), None, documents.content) {
        Ok(content) => content,
        Err(messages) => {
            for message in messages {
                errors.push(message);
            }
            return fail(errors);
        }
    };
    let Value::Mapping(content) = content else {
        errors.push("Invalid configuration format");
        return fail(errors);
    };
    let listing = files.list().unwrap_or_default();
    let cli = cli_variables(options);
    let mut base_variables = pipeline_predefined(&options.facts, ci_file, None);
    base_variables.extend(cli.iter().cloned());
    let base_lookup = lookup_in(&base_variables);
    let include_context = rules::RuleContext {
        lookup: &base_lookup,
        files: &listing,
        facts: &options.facts,
    };
    let mut includer = includes::Includer::new(files, options.external_includes, &include_context);
    let mut config = includer.expand(content, 0, &mut errors);
    if !errors.is_empty() {
        return fail(errors);
    }
    if let Err(message) = resolve::apply_extends(&mut config) {
        errors.push(message);
        return fail(errors);
    }
    let mut config = match resolve::resolve_references(&config) {
        Ok(config) => config,
        Err(message) => {
            errors.push(message);
            return fail(errors);
        }
    };
    config.shift_remove("spec");

    // GitLab's own checks, then the schema for what they did not cover.
    let mut entry_errors = Vec::new();
    jobs::check_entries(&config, &mut entry_errors);
    let reported: HashSet<String> = entry_errors.iter().map(|(key, _)| key.clone()).collect();
    for (_, message) in entry_errors {
        errors.push(message);
    }
    for message in schema::violations(&yaml::to_json(&Value::Mapping(config.clone())), &reported) {
        errors.push_schema(message);
    }
    if !errors.is_empty() {
        return fail(errors);
    }
    build(files, options, &config, &listing, &cli)
}

fn stages_of(config: &Mapping) -> Vec<String> {
    let declared = config
        .get("stages")
        .or_else(|| config.get("types"))
        .and_then(yaml::string_list)
        .unwrap_or_else(|| vec!["build".into(), "test".into(), "deploy".into()]);
    let mut stages = vec![".pre".to_string()];
    for stage in declared {
        if stage != ".pre" && stage != ".post" && !stages.contains(&stage) {
            stages.push(stage);
        }
    }
    stages.push(".post".into());
    stages
}

struct Decided {
    when: When,
    allow_failure: Option<AllowFailure>,
    rule_variables: Vec<Variable>,
    start_in: Option<String>,
    needs: Option<Value>,
    interruptible: Option<bool>,
    has_rules: bool,
}

#[expect(
    clippy::too_many_lines,
    reason = "one pass over GitLab's pipeline creation steps, in order"
)]
fn build(
    files: &dyn ProjectFiles,
    options: &Options<'_>,
    config: &Mapping,
    listing: &[String],
    cli: &[Variable],
) -> Result<Pipeline, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let facts = &options.facts;
    let ci_file = if options.ci_file.is_empty() {
        DEFAULT_CI_FILE
    } else {
        options.ci_file.as_str()
    };
    let stages = stages_of(config);
    let mut global_variables = jobs::parse_variables(config.get("variables"));
    // With `keep_never`, a pipeline workflow:rules filters out is still listed, every job `never`.
    let mut workflow_never = false;

    // workflow: rules decide whether there is a pipeline at all, and add variables.
    let workflow = match config.get("workflow") {
        Some(Value::Mapping(workflow)) => workflow.clone(),
        _ => Mapping::new(),
    };
    if let Some(Value::Sequence(rules_list)) = workflow.get("rules") {
        let expanded = expanded_union(&[
            &pipeline_predefined(facts, ci_file, None),
            &global_variables,
            cli,
        ]);
        let lookup = lookup_in(&expanded);
        let context = rules::RuleContext {
            lookup: &lookup,
            files: listing,
            facts,
        };
        match rules::first_match(rules_list, &context) {
            Ok(Some(rule))
                if rule.get("when").and_then(scalar_text).as_deref() != Some("never") =>
            {
                global_variables.extend(jobs::parse_variables(rule.get("variables")));
            }
            Ok(_) if options.keep_never => workflow_never = true,
            Ok(_) => {
                errors.push_no_pipeline("Pipeline filtered out by workflow rules.");
                return Err(errors);
            }
            Err(message) => {
                errors.push(format!("workflow:rules:if {message}"));
                return Err(errors);
            }
        }
    }
    let pipeline_name = workflow.get("name").and_then(scalar_text).map(|name| {
        let expanded = expanded_union(&[
            &pipeline_predefined(facts, ci_file, None),
            &global_variables,
            cli,
        ]);
        variables::expand_with(&name, &lookup_in(&expanded))
    });
    let predefined = pipeline_predefined(facts, ci_file, pipeline_name.as_deref());

    let drafts = jobs::drafts(config, &global_variables);
    let instances = jobs::instances(&drafts);
    let mut by_base: HashMap<String, Vec<String>> = HashMap::new();
    for instance in &instances {
        by_base
            .entry(drafts[instance.draft].name.clone())
            .or_default()
            .push(instance.name.clone());
    }
    let stage_of: HashMap<String, usize> = instances
        .iter()
        .map(|instance| {
            (
                instance.name.clone(),
                stages
                    .iter()
                    .position(|s| *s == drafts[instance.draft].stage)
                    .unwrap_or(usize::MAX),
            )
        })
        .collect();

    // Definition checks: stages, needs and dependencies (GitLab's YamlProcessor).
    for draft in &drafts {
        let name = &draft.name;
        let Some(stage_index) = stages.iter().position(|stage| *stage == draft.stage) else {
            errors.push(format!(
                "{name} job: chosen stage {} does not exist; available stages are {}",
                draft.stage,
                stages.join(", ")
            ));
            continue;
        };
        if let Some(needs) = draft.config.get("needs") {
            for need in jobs::expand_needs(needs, &by_base) {
                check_dependency(
                    name,
                    &need.job,
                    "need",
                    stage_index,
                    &stage_of,
                    need.optional,
                    &mut errors,
                );
            }
        }
        if let Some(dependencies) = draft.config.get("dependencies").and_then(yaml::string_list) {
            for dependency in dependencies {
                for expanded in by_base
                    .get(&dependency)
                    .cloned()
                    .unwrap_or_else(|| vec![dependency.clone()])
                {
                    check_dependency(
                        name,
                        &expanded,
                        "dependency",
                        stage_index,
                        &stage_of,
                        false,
                        &mut errors,
                    );
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    // Rules per instance (matrix variables are visible to them).
    let mut decided: Vec<(jobs::Instance, Decided, Vec<Variable>)> = Vec::new();
    for instance in instances {
        let draft = &drafts[instance.draft];
        let job_variables = jobs::parse_variables(draft.config.get("variables"));
        let matrix_variables: Vec<Variable> = instance
            .matrix
            .iter()
            .map(|(key, value)| variables::user_variable(key, value))
            .collect();
        let mut visible = predefined.clone();
        visible.extend(jobs::job_predefined(
            &instance.name,
            &draft.stage,
            instance.node,
            false,
        ));
        visible.extend(draft.global_variables.iter().cloned());
        visible.extend(job_variables.iter().cloned());
        visible.extend(matrix_variables.iter().cloned());
        visible.extend(cli.iter().cloned());
        let expanded = variables::expand_all(&visible);
        let lookup = lookup_in(&expanded);
        let context = rules::RuleContext {
            lookup: &lookup,
            files: listing,
            facts,
        };
        match decide(&draft.config, &context) {
            Ok(mut outcome) => {
                if workflow_never {
                    outcome.when = When::Never;
                }
                if outcome.when == When::Never && !options.keep_never {
                    continue;
                }
                let mut user = draft.global_variables.clone();
                user.extend(job_variables);
                user.extend(outcome.rule_variables.iter().cloned());
                user.extend(matrix_variables);
                decided.push((instance, outcome, user));
            }
            Err(message) => errors.push(format!("jobs:{}:rules {message}", draft.name)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let present: HashSet<String> = decided
        .iter()
        .filter(|(_, outcome, _)| outcome.when != When::Never)
        .map(|(instance, _, _)| instance.name.clone())
        .collect();
    // Listed (with `keep_never`) though GitLab would not create them: an optional need on one
    // stays in the listing, as the job it names is listed too.
    let listed: HashSet<String> = decided
        .iter()
        .map(|(instance, _, _)| instance.name.clone())
        .collect();

    let mut jobs_out = Vec::new();
    for (instance, outcome, user_variables) in decided {
        let draft = &drafts[instance.draft];
        let job = &draft.config;
        let stage_index = stages
            .iter()
            .position(|stage| *stage == draft.stage)
            .unwrap_or_default();
        let needs_value = outcome.needs.clone().or_else(|| job.get("needs").cloned());
        let needs = needs_value.map(|value| {
            let mut list = Vec::new();
            for need in jobs::expand_needs(&value, &by_base) {
                if present.contains(&need.job)
                    || (options.keep_never && need.optional && listed.contains(&need.job))
                {
                    list.push(Need { job: need.job, artifacts: need.artifacts, optional: need.optional });
                } else if !need.optional && outcome.when != When::Never {
                    errors.push(format!(
                        "'{}' job needs '{}' job, but '{}' does not exist in the pipeline. This might be because of the \
                         only, except, or rules keywords. To need a job that sometimes does not exist in the pipeline, \
                         use needs:optional.",
                        instance.name, need.job, need.job
                    ));
                }
            }
            list
        });
        let dependencies = job
            .get("dependencies")
            .and_then(yaml::string_list)
            .map(|list| {
                list.into_iter()
                    .flat_map(|dependency| {
                        by_base
                            .get(&dependency)
                            .cloned()
                            .unwrap_or_else(|| vec![dependency])
                    })
                    .filter(|dependency| present.contains(dependency))
                    .collect()
            });
        let mut variable_list = predefined.clone();
        variable_list.extend(jobs::job_predefined(
            &instance.name,
            &draft.stage,
            instance.node,
            outcome.when == When::Manual,
        ));
        variable_list.extend(user_variables);
        variable_list.extend(cli.iter().cloned());
        let variable_list = variables::expand_all(&variable_list);
        let lookup = lookup_in(&variable_list);
        let allow_failure = outcome.allow_failure.clone().unwrap_or(AllowFailure::Bool(
            outcome.when == When::Manual && !outcome.has_rules,
        ));
        let start_in = outcome
            .start_in
            .clone()
            .or_else(|| job.get("start_in").and_then(scalar_text))
            .filter(|_| outcome.when == When::Delayed)
            .and_then(|text| duration::parse(&text));
        jobs_out.push(Job {
            name: instance.name.clone(),
            base_name: draft.name.clone(),
            stage: draft.stage.clone(),
            stage_index,
            when: outcome.when,
            start_in,
            allow_failure,
            needs,
            dependencies,
            image: job
                .get("image")
                .and_then(|image| jobs::parse_image(image, &lookup)),
            services: match job.get("services") {
                Some(Value::Sequence(items)) => items
                    .iter()
                    .filter_map(|item| jobs::parse_image(item, &lookup))
                    .collect(),
                _ => Vec::new(),
            },
            before_script: jobs::script(job, "before_script"),
            script: jobs::script(job, "script"),
            after_script: jobs::script(job, "after_script"),
            artifacts: jobs::parse_artifacts(job.get("artifacts"), &lookup),
            cache: jobs::parse_cache(job.get("cache"), &lookup, files, listing),
            timeout: job
                .get("timeout")
                .and_then(scalar_text)
                .and_then(|text| duration::parse(&text)),
            retry: jobs::parse_retry(job.get("retry")),
            interruptible: outcome
                .interruptible
                .unwrap_or(job.get("interruptible") == Some(&Value::Bool(true))),
            node: instance.node,
            tags: jobs::tags(job.get("tags")),
            environment: jobs::environment_name(job.get("environment"), &lookup),
            coverage: job.get("coverage").and_then(scalar_text),
            description: None,
            variables: variable_list.clone(),
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    jobs_out.sort_by_key(|job| job.stage_index);
    if jobs_out.is_empty() {
        errors.push_no_pipeline(
            "Pipeline will not run for the selected trigger. The rules configuration prevented any jobs from being \
             added to the pipeline.",
        );
        return Err(errors);
    }
    Ok(Pipeline {
        stages,
        jobs: jobs_out,
        name: pipeline_name,
    })
}

fn check_dependency(
    name: &str,
    dependency: &str,
    kind: &str,
    stage_index: usize,
    stage_of: &HashMap<String, usize>,
    optional: bool,
    errors: &mut ConfigErrors,
) {
    match stage_of.get(dependency) {
        None if optional => {}
        None => errors.push(format!("{name} job: undefined {kind}: {dependency}")),
        Some(index) if *index > stage_index => {
            errors.push(format!(
                "{name} job: {kind} {dependency} is not defined in current or prior stages"
            ));
        }
        Some(_) => {}
    }
}

/// Rules, or `only`/`except`, decided for one job.
fn decide(job: &Mapping, context: &rules::RuleContext<'_>) -> Result<Decided, String> {
    let job_when = job.get("when").and_then(scalar_text);
    let job_allow_failure = jobs::parse_allow_failure(job.get("allow_failure"));
    if let Some(rules_value) = job.get("rules") {
        let rules_list = match rules_value {
            Value::Sequence(items) => items.clone(),
            _ => Vec::new(),
        };
        let Some(rule) = rules::first_match(&rules_list, context)? else {
            return Ok(Decided {
                when: When::Never,
                allow_failure: job_allow_failure,
                rule_variables: Vec::new(),
                start_in: None,
                needs: None,
                interruptible: None,
                has_rules: true,
            });
        };
        let when = rule
            .get("when")
            .and_then(scalar_text)
            .or(job_when)
            .unwrap_or_else(|| "on_success".into());
        return Ok(Decided {
            when: jobs::parse_when(&when),
            allow_failure: jobs::parse_allow_failure(rule.get("allow_failure"))
                .or(job_allow_failure),
            rule_variables: jobs::parse_variables(rule.get("variables")),
            start_in: rule.get("start_in").and_then(scalar_text),
            needs: rule.get("needs").cloned(),
            interruptible: rule.get("interruptible").and_then(Value::as_bool),
            has_rules: true,
        });
    }
    let included = rules::only_except(job.get("only"), job.get("except"), context)?;
    let when = if included {
        job_when.unwrap_or_else(|| "on_success".into())
    } else {
        "never".into()
    };
    Ok(Decided {
        when: jobs::parse_when(&when),
        allow_failure: job_allow_failure,
        rule_variables: Vec::new(),
        start_in: None,
        needs: None,
        interruptible: None,
        has_rules: false,
    })
}
