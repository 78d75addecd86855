//! Variables: GitLab's predefined variables from the repository facts, `$VAR`/`${VAR}`
//! expansion with `$$` escaping, and slugs.

use std::collections::HashMap;

use crate::model::{RepoFacts, Variable};

/// Expand `$VAR` and `${VAR}` in `text` with `lookup` (unknown variables become empty, as in
/// the runner); `$$` is a literal `$`.
pub(crate) fn expand_with(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    expand_inner(text, &|name: &str| lookup(name))
}

fn expand_inner(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
            continue;
        }
        if let Some(braced) = after.strip_prefix('{')
            && let Some(end) = braced.find('}')
            && is_name(&braced[..end])
        {
            out.push_str(&lookup(&braced[..end]).unwrap_or_default());
            rest = &braced[end + 1..];
            continue;
        }
        let length = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if length == 0 {
            out.push('$');
            rest = after;
            continue;
        }
        out.push_str(&lookup(&after[..length]).unwrap_or_default());
        rest = &after[length..];
    }
    out.push_str(rest);
    out
}

fn is_name(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Expand every variable of `list` against the list itself (the last definition of a name
/// wins; references are followed through other variables; a cycle is left as written).
pub(crate) fn expand_all(list: &[Variable]) -> Vec<Variable> {
    let mut last: HashMap<&str, &Variable> = HashMap::new();
    for variable in list {
        last.insert(variable.key.as_str(), variable);
    }
    fn resolve(
        name: &str,
        last: &HashMap<&str, &Variable>,
        stack: &mut Vec<String>,
    ) -> Option<String> {
        let variable = last.get(name)?;
        if variable.raw {
            return Some(variable.value.clone());
        }
        if stack.iter().any(|seen| seen == name) || stack.len() > 64 {
            return Some(variable.value.clone());
        }
        stack.push(name.to_string());
        let value = expand_value(&variable.value, last, stack);
        stack.pop();
        Some(value)
    }
    fn expand_value(
        text: &str,
        last: &HashMap<&str, &Variable>,
        stack: &mut Vec<String>,
    ) -> String {
        let cell = std::cell::RefCell::new(std::mem::take(stack));
        let value = expand_inner(text, &|name: &str| {
            resolve(name, last, &mut cell.borrow_mut())
        });
        *stack = cell.into_inner();
        value
    }
    list.iter()
        .map(|variable| {
            if variable.raw {
                return variable.clone();
            }
            let mut stack = vec![variable.key.clone()];
            Variable {
                value: expand_value(&variable.value, &last, &mut stack),
                ..variable.clone()
            }
        })
        .collect()
}

/// GitLab's slug: lowercased, every character but `a-z0-9` replaced by `-`, cut to 63
/// characters, no `-` at either end.
#[must_use]
pub fn slugify(text: &str) -> String {
    let replaced: String = text
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let cut: String = replaced.chars().take(63).collect();
    cut.trim_matches('-').to_string()
}

/// A predefined variable as GitLab sends it (public, not masked).
pub(crate) fn predefined(key: &str, value: impl Into<String>) -> Variable {
    Variable {
        key: key.to_string(),
        value: value.into(),
        raw: false,
        file: false,
        masked: false,
        public: true,
    }
}

/// A variable of the user's (YAML, matrix or command line): not public.
pub(crate) fn user_variable(key: &str, value: &str) -> Variable {
    Variable {
        key: key.to_string(),
        value: value.to_string(),
        raw: false,
        file: false,
        masked: false,
        public: false,
    }
}

/// The pipeline-wide predefined variables GitLab derives from the repository.
#[must_use]
pub fn pipeline_predefined(
    facts: &RepoFacts,
    ci_file: &str,
    pipeline_name: Option<&str>,
) -> Vec<Variable> {
    let ref_name = facts
        .tag
        .clone()
        .or_else(|| facts.branch.clone())
        .unwrap_or_else(|| facts.sha.clone());
    let project_name = facts
        .project_path
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let namespace = facts
        .project_path
        .rsplit_once('/')
        .map_or(String::new(), |(namespace, _)| namespace.to_string());
    let title = facts.message.lines().next().unwrap_or_default().to_string();
    let description = facts
        .message
        .split_once('\n')
        .map_or(String::new(), |(_, rest)| {
            rest.trim_start_matches('\n').to_string()
        });
    let short_sha: String = facts.sha.chars().take(8).collect();
    let before = if facts.before_sha.is_empty() {
        "0".repeat(40)
    } else {
        facts.before_sha.clone()
    };
    let mut list = vec![
        predefined("CI", "true"),
        predefined("GITLAB_CI", "true"),
        predefined("CI_SERVER", "yes"),
        predefined("CI_PIPELINE_ID", "1"),
        predefined("CI_PIPELINE_IID", "1"),
        predefined(
            "CI_PIPELINE_SOURCE",
            if facts.pipeline_source.is_empty() {
                "push"
            } else {
                &facts.pipeline_source
            },
        ),
        predefined("CI_CONFIG_PATH", ci_file),
        predefined("CI_COMMIT_SHA", facts.sha.clone()),
        predefined("CI_COMMIT_SHORT_SHA", short_sha),
        predefined("CI_COMMIT_BEFORE_SHA", before),
        predefined("CI_COMMIT_REF_NAME", ref_name.clone()),
        predefined("CI_COMMIT_REF_SLUG", slugify(&ref_name)),
        predefined("CI_COMMIT_REF_PROTECTED", "false"),
        predefined("CI_COMMIT_MESSAGE", facts.message.clone()),
        predefined("CI_COMMIT_TITLE", title),
        predefined("CI_COMMIT_DESCRIPTION", description),
        predefined("CI_COMMIT_AUTHOR", facts.author.clone()),
        predefined("CI_COMMIT_TIMESTAMP", facts.timestamp.clone()),
        predefined("CI_PROJECT_PATH", facts.project_path.clone()),
        predefined("CI_PROJECT_PATH_SLUG", slugify(&facts.project_path)),
        predefined("CI_PROJECT_NAME", project_name.clone()),
        predefined("CI_PROJECT_TITLE", project_name),
        predefined("CI_PROJECT_NAMESPACE", namespace.clone()),
        predefined(
            "CI_PROJECT_ROOT_NAMESPACE",
            namespace.split('/').next().unwrap_or_default().to_string(),
        ),
        predefined("CI_PROJECT_DIR", format!("/builds/{}", facts.project_path)),
        predefined("CI_BUILDS_DIR", "/builds"),
        predefined("CI_DEFAULT_BRANCH", facts.default_branch.clone()),
    ];
    if let Some(branch) = facts.branch.as_ref().filter(|_| facts.tag.is_none()) {
        list.push(predefined("CI_COMMIT_BRANCH", branch.clone()));
    }
    if let Some(tag) = &facts.tag {
        list.push(predefined("CI_COMMIT_TAG", tag.clone()));
        list.push(predefined("CI_COMMIT_TAG_MESSAGE", String::new()));
    }
    if let Some(name) = pipeline_name {
        list.push(predefined("CI_PIPELINE_NAME", name));
    }
    list
}
