//! `spec: inputs` headers and `$[[ inputs.name ]]` interpolation, as GitLab checks them.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use serde_yaml_ng::{Mapping, Value};

use crate::yaml::{key_text, scalar_text};

static INTERPOLATION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\$\[\[\s*inputs\.([a-zA-Z0-9_-]+)\s*((?:\|\s*[a-z_]+(?:\([^)]*\))?\s*)*)\]\]")
        .unwrap_or_else(|_| unreachable!())
});

/// Interpolate `content` with the `provided` inputs checked against the file's `spec`.
/// Errors are GitLab's words (without the file's location, which the caller adds).
pub(crate) fn apply(
    spec: Option<&Value>,
    provided: Option<&Mapping>,
    content: Value,
) -> Result<Value, Vec<String>> {
    let inputs = match spec {
        None => {
            if provided.is_some_and(|given| !given.is_empty()) {
                return Err(vec!["Given inputs not defined in the `spec` section of the included configuration file".into()]);
            }
            BTreeMap::new()
        }
        Some(spec) => resolve(spec, provided)?,
    };
    let mut errors = Vec::new();
    let value = interpolate(content, &inputs, &mut errors);
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(errors)
    }
}

fn resolve(
    spec: &Value,
    provided: Option<&Mapping>,
) -> Result<BTreeMap<String, Value>, Vec<String>> {
    let empty = Mapping::new();
    let declared = match spec {
        Value::Mapping(spec) => match spec.get("inputs") {
            Some(Value::Mapping(inputs)) => inputs,
            None | Some(Value::Null) => &empty,
            Some(_) => return Err(vec!["header:spec:inputs config must be a hash".into()]),
        },
        _ => return Err(vec!["header:spec config must be a hash".into()]),
    };
    let provided = provided.unwrap_or(&empty);
    let mut errors = Vec::new();
    let unknown: Vec<String> = provided
        .keys()
        .map(key_text)
        .filter(|name| !declared.contains_key(name.as_str()))
        .collect();
    if !unknown.is_empty() {
        errors.push(format!("unknown input arguments: {}", unknown.join(", ")));
    }
    let mut values = BTreeMap::new();
    for (name, definition) in declared {
        let name = key_text(name);
        let definition = match definition {
            Value::Mapping(definition) => definition.clone(),
            _ => Mapping::new(),
        };
        let kind = definition
            .get("type")
            .and_then(scalar_text)
            .unwrap_or_else(|| "string".into());
        let value = match provided
            .get(name.as_str())
            .or_else(|| definition.get("default"))
        {
            Some(value) => value.clone(),
            None => {
                errors.push(format!(
                    "`{name}` input: required value has not been provided"
                ));
                continue;
            }
        };
        let type_ok = match kind.as_str() {
            "string" => matches!(value, Value::String(_)),
            "number" => matches!(value, Value::Number(_)),
            "boolean" => matches!(value, Value::Bool(_)),
            "array" => matches!(value, Value::Sequence(_)),
            other => {
                errors.push(format!(
                    "header:spec:inputs:{name} input type unknown value: {other}"
                ));
                continue;
            }
        };
        if !type_ok {
            errors.push(format!("`{name}` input: provided value is not a {kind}"));
            continue;
        }
        if let Some(Value::Sequence(options)) = definition.get("options")
            && !options.contains(&value)
        {
            errors.push(format!(
                "`{name}` input: `{}` cannot be used because it is not in the list of allowed options",
                scalar_text(&value).unwrap_or_default()
            ));
        }
        if let Some(Value::String(pattern)) = definition.get("regex") {
            let pattern = pattern.trim_start_matches('/').trim_end_matches('/');
            match Regex::new(pattern) {
                Ok(regex) if scalar_text(&value).is_some_and(|text| regex.is_match(&text)) => {}
                Ok(_) => errors.push(format!(
                    "`{name}` input: provided value does not match required RegEx pattern"
                )),
                Err(_) => errors.push(format!("`{name}` input: invalid regular expression")),
            }
        }
        values.insert(name, value);
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

fn interpolate(value: Value, inputs: &BTreeMap<String, Value>, errors: &mut Vec<String>) -> Value {
    match value {
        Value::String(text) => interpolate_text(&text, inputs, errors),
        Value::Sequence(items) => Value::Sequence(
            items
                .into_iter()
                .map(|item| interpolate(item, inputs, errors))
                .collect(),
        ),
        Value::Mapping(mapping) => Value::Mapping(
            mapping
                .into_iter()
                .map(|(key, item)| {
                    (
                        interpolate(key, inputs, errors),
                        interpolate(item, inputs, errors),
                    )
                })
                .collect(),
        ),
        Value::Tagged(mut tagged) => {
            tagged.value = interpolate(tagged.value, inputs, errors);
            Value::Tagged(tagged)
        }
        other => other,
    }
}

fn interpolate_text(
    text: &str,
    inputs: &BTreeMap<String, Value>,
    errors: &mut Vec<String>,
) -> Value {
    if !text.contains("$[[") {
        return Value::String(text.to_string());
    }
    // A string that is one interpolation and nothing else takes the input's own type.
    if let Some(whole) = INTERPOLATION.captures(text)
        && whole.get(0).is_some_and(|all| all.as_str() == text.trim())
        && whole
            .get(2)
            .is_none_or(|functions| functions.as_str().trim().is_empty())
    {
        let name = &whole[1];
        return match inputs.get(name) {
            Some(value) => value.clone(),
            None => {
                errors.push(format!("unknown interpolation key: `{name}`"));
                Value::String(text.to_string())
            }
        };
    }
    let mut failed = false;
    let replaced = INTERPOLATION.replace_all(text, |captures: &regex::Captures<'_>| {
        let name = &captures[1];
        let Some(value) = inputs.get(name) else {
            errors.push(format!("unknown interpolation key: `{name}`"));
            failed = true;
            return String::new();
        };
        let mut rendered = scalar_text(value).unwrap_or_else(|| crate::yaml::render(value));
        for function in captures
            .get(2)
            .map_or("", |m| m.as_str())
            .split('|')
            .map(str::trim)
            .filter(|f| !f.is_empty())
        {
            match apply_function(function, &rendered) {
                Ok(next) => rendered = next,
                Err(message) => {
                    errors.push(message);
                    failed = true;
                }
            }
        }
        rendered
    });
    if failed {
        Value::String(text.to_string())
    } else {
        Value::String(replaced.into_owned())
    }
}

fn apply_function(function: &str, value: &str) -> Result<String, String> {
    if function == "expand_vars" {
        // GitLab expands project and pipeline variables here; berth leaves `$VAR` for the
        // runner to expand, which gives the same text for the variables berth knows.
        return Ok(value.to_string());
    }
    if function == "posix_escape" {
        return Ok(value
            .chars()
            .flat_map(|c| {
                if c.is_ascii_alphanumeric() || "_-./".contains(c) {
                    vec![c]
                } else {
                    vec!['\\', c]
                }
            })
            .collect());
    }
    if let Some(arguments) = function
        .strip_prefix("truncate(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        let numbers: Vec<usize> = arguments
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect();
        if let [offset, length] = numbers[..] {
            return Ok(value.chars().skip(offset).take(length).collect());
        }
    }
    Err(format!(
        "no function matching `{function}`: check that the function name, arguments, and types are correct"
    ))
}
