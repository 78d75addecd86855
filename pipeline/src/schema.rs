//! The merged configuration checked against GitLab's own CI JSON schema
//! (`pipeline/schema/gitlab-ci.json`, vendored from gitlabhq; see its README).
//!
//! Rule against noisy duplicates: a schema violation is reported only for a top-level key
//! (job, `default`, `workflow`, …) that none of GitLab's own checks already reported a problem
//! for; one key's GitLab message is enough to fix it, and the schema's wording of the same
//! problem (often a vague `oneOf` failure) would only repeat it.

use std::collections::HashSet;
use std::sync::LazyLock;

use jsonschema::Validator;

static SCHEMA_TEXT: &str = include_str!("../schema/gitlab-ci.json");

static VALIDATOR: LazyLock<Result<Validator, String>> = LazyLock::new(|| {
    let schema: serde_json::Value =
        serde_json::from_str(SCHEMA_TEXT).map_err(|error| error.to_string())?;
    jsonschema::draft7::new(&schema).map_err(|error| error.to_string())
});

/// Violations of the schema, as messages, skipping the top-level keys in `already_reported`.
pub(crate) fn violations(
    config: &serde_json::Value,
    already_reported: &HashSet<String>,
) -> Vec<String> {
    let validator = match &*VALIDATOR {
        Ok(validator) => validator,
        Err(error) => {
            return vec![format!(
                "GitLab's CI schema bundled with berth does not load: {error}"
            )];
        }
    };
    let config = &with_rules_flattened(config);
    let mut messages = Vec::new();
    for error in validator.iter_errors(config) {
        let pointer = error.instance_path.to_string();
        let parts: Vec<String> = pointer
            .split('/')
            .skip(1)
            .map(|part| part.replace("~1", "/").replace("~0", "~"))
            .collect();
        let top = parts.first().cloned().unwrap_or_default();
        if already_reported.contains(&top) {
            continue;
        }
        let location = match top.as_str() {
            "" => "root".to_string(),
            "default" | "workflow" | "variables" | "stages" | "include" | "image" | "services"
            | "cache" | "before_script" | "after_script" | "spec" => parts.join(":"),
            _ => format!("jobs:{}", parts.join(":")),
        };
        let message = format!("{location} config does not match GitLab's CI schema: {error}");
        if !messages.contains(&message) {
            messages.push(message);
        }
    }
    messages
}

/// GitLab flattens `rules:` lists nested by `!reference` (as it flattens scripts) before it
/// checks them; the schema sees them the same way.
fn with_rules_flattened(config: &serde_json::Value) -> serde_json::Value {
    fn flatten(list: &[serde_json::Value], out: &mut Vec<serde_json::Value>) {
        for item in list {
            match item {
                serde_json::Value::Array(inner) => flatten(inner, out),
                other => out.push(other.clone()),
            }
        }
    }
    let mut config = config.clone();
    if let Some(entries) = config.as_object_mut() {
        for entry in entries.values_mut() {
            if let Some(rules) = entry.get_mut("rules")
                && let Some(list) = rules.as_array()
            {
                let mut flat = Vec::new();
                flatten(list, &mut flat);
                *rules = serde_json::Value::Array(flat);
            }
        }
    }
    config
}
