//! `rules:` (`if`, `exists`, `changes`), `rules:` on includes and workflows, and
//! `only`/`except`, decided as GitLab decides them for a push pipeline.

use globset::GlobBuilder;
use serde_yaml_ng::{Mapping, Value};

use crate::model::RepoFacts;
use crate::yaml::{key_text, scalar_text, string_list};

/// What rules are decided against.
pub(crate) struct RuleContext<'a> {
    /// Variables visible to `if:` (predefined, global, job, CLI).
    pub lookup: &'a dyn Fn(&str) -> Option<String>,
    /// Every file of the project, for `exists:`.
    pub files: &'a [String],
    /// The repository facts, for `changes:` and `only: refs`.
    pub facts: &'a RepoFacts,
}

/// Whether `path` matches `pattern` as Ruby's `File.fnmatch` with `FNM_PATHNAME |
/// FNM_DOTMATCH | FNM_EXTGLOB` does: `*` stays within a directory, `**/` crosses them,
/// `{a,b}` alternates.
pub(crate) fn glob_matches(pattern: &str, path: &str) -> bool {
    let pattern = pattern.trim_start_matches("./").trim_start_matches('/');
    if pattern == path {
        return true;
    }
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .is_ok_and(|glob| glob.compile_matcher().is_match(path))
}

fn expand(text: &str, context: &RuleContext<'_>) -> String {
    crate::variables::expand_with(text, context.lookup)
}

fn paths_of(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::Mapping(mapping) => mapping.get("paths").and_then(string_list),
        other => string_list(other),
    }
}

/// `exists:` is true when any pattern names a file of the project.
fn exists(value: &Value, context: &RuleContext<'_>) -> bool {
    let Some(patterns) = paths_of(value) else {
        return false;
    };
    patterns
        .iter()
        .map(|pattern| expand(pattern, context))
        .any(|pattern| {
            context
                .files
                .iter()
                .any(|file| glob_matches(&pattern, file))
        })
}

/// `changes:` is true when any pattern matches a changed file, or when no base is known
/// (GitLab: always true for a new branch or a pipeline without a push).
fn changes(value: &Value, context: &RuleContext<'_>) -> bool {
    let Some(changed) = &context.facts.changed_files else {
        return true;
    };
    let Some(patterns) = paths_of(value) else {
        return false;
    };
    patterns
        .iter()
        .map(|pattern| expand(pattern, context))
        .any(|pattern| changed.iter().any(|file| glob_matches(&pattern, file)))
}

fn condition(expression: &str, context: &RuleContext<'_>) -> Result<bool, String> {
    crate::expr::evaluate(expression, context.lookup)
        .map_err(|error| format!("`{expression}`: {error}"))
}

/// Whether one rule's clauses (`if`, `changes`, `exists`) all hold; a rule with none holds.
pub(crate) fn rule_holds(rule: &Mapping, context: &RuleContext<'_>) -> Result<bool, String> {
    if let Some(expression) = rule.get("if").and_then(scalar_text)
        && !condition(&expression, context)?
    {
        return Ok(false);
    }
    if let Some(value) = rule.get("changes")
        && !changes(value, context)
    {
        return Ok(false);
    }
    if let Some(value) = rule.get("exists")
        && !exists(value, context)
    {
        return Ok(false);
    }
    Ok(true)
}

/// The first rule that holds, if any (rules nested by `!reference` are flattened).
pub(crate) fn first_match<'r>(
    rules: &'r [Value],
    context: &RuleContext<'_>,
) -> Result<Option<&'r Mapping>, String> {
    for rule in rules {
        let found = match rule {
            Value::Mapping(mapping) => rule_holds(mapping, context)?.then_some(mapping),
            Value::Sequence(nested) => first_match(nested, context)?,
            _ => None,
        };
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// `include: rules:`: included when a rule holds and its `when` is not `never`.
pub(crate) fn include_rules_match(
    rules: &Value,
    context: &RuleContext<'_>,
) -> Result<bool, String> {
    let Value::Sequence(rules) = rules else {
        return Ok(true);
    };
    Ok(match first_match(rules, context)? {
        Some(rule) => rule.get("when").and_then(scalar_text).as_deref() != Some("never"),
        None => false,
    })
}

fn ref_name(facts: &RepoFacts) -> Option<&str> {
    facts.tag.as_deref().or(facts.branch.as_deref())
}

fn source_keyword(source: &str) -> &str {
    match source {
        "push" => "pushes",
        "schedule" => "schedules",
        "trigger" => "triggers",
        "pipeline" => "pipelines",
        "merge_request_event" => "merge_requests",
        "external_pull_request_event" => "external_pull_requests",
        other => other,
    }
}

fn ref_matches(pattern: &str, context: &RuleContext<'_>) -> bool {
    let facts = context.facts;
    match pattern {
        "branches" => return facts.tag.is_none() && facts.branch.is_some(),
        "tags" => return facts.tag.is_some(),
        "api"
        | "external"
        | "pipelines"
        | "pushes"
        | "schedules"
        | "triggers"
        | "web"
        | "merge_requests"
        | "chat"
        | "external_pull_requests" => return source_keyword(&facts.pipeline_source) == pattern,
        _ => {}
    }
    let (pattern, project) = match pattern.rsplit_once('@') {
        Some((pattern, project)) if !pattern.starts_with('/') || pattern.ends_with('/') => {
            (pattern, Some(project))
        }
        _ => (pattern, None),
    };
    if project.is_some_and(|project| project != facts.project_path) {
        return false;
    }
    let Some(name) = ref_name(facts) else {
        return false;
    };
    if let Some(body) = pattern.strip_prefix('/') {
        let (body, flags) = body.rsplit_once('/').unwrap_or((body, ""));
        return regex::RegexBuilder::new(body)
            .case_insensitive(flags.contains('i'))
            .build()
            .is_ok_and(|regex| regex.is_match(name));
    }
    pattern == name
}

/// Whether one `only:`/`except:` specification is satisfied (all of its parts).
fn specification_satisfied(value: &Value, context: &RuleContext<'_>) -> Result<bool, String> {
    let mapping = match value {
        Value::Mapping(mapping) => mapping.clone(),
        other => {
            let mut mapping = Mapping::new();
            mapping.insert("refs".into(), other.clone());
            mapping
        }
    };
    for (key, item) in &mapping {
        let satisfied = match key_text(key).as_str() {
            "refs" => string_list(item)
                .unwrap_or_default()
                .iter()
                .any(|pattern| ref_matches(pattern, context)),
            "variables" => {
                let mut any = false;
                for expression in string_list(item).unwrap_or_default() {
                    if condition(&expression, context)? {
                        any = true;
                        break;
                    }
                }
                any
            }
            "changes" => changes(item, context),
            "kubernetes" => false,
            _ => true,
        };
        if !satisfied {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `only:`/`except:` for a job without `rules:`: `only` defaults to branches and tags.
pub(crate) fn only_except(
    only: Option<&Value>,
    except: Option<&Value>,
    context: &RuleContext<'_>,
) -> Result<bool, String> {
    let default_only = Value::Sequence(vec!["branches".into(), "tags".into()]);
    let only = match only {
        None | Some(Value::Null) => &default_only,
        Some(value) => value,
    };
    if !specification_satisfied(only, context)? {
        return Ok(false);
    }
    match except {
        None | Some(Value::Null) => Ok(true),
        Some(value) => Ok(!specification_satisfied(value, context)?),
    }
}
