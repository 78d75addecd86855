//! `extends:` (multi-level, several parents, deep merge, GitLab's nesting limit and circular
//! detection) and `!reference [key, ...]` tags, resolved in GitLab's order: includes, then
//! `extends`, then references.

use serde_yaml_ng::{Mapping, Value};

use crate::yaml::{REFERENCE_TAG, deep_merge, scalar_text};

/// GitLab's `Extendable::Entry::MAX_NESTING_LEVELS`.
const MAX_EXTENDS_NESTING: usize = 10;
/// How deep `!reference` tags may nest (GitLab documents 10 levels).
const MAX_REFERENCE_NESTING: usize = 10;

/// Apply `extends:` to every top-level entry that has one. GitLab stops at the first error.
/// As in GitLab, a merged entry keeps its `extends:`, so every entry walks its whole chain
/// again and the nesting limit counts the full chain whatever the order of definition.
pub(crate) fn apply_extends(config: &mut Mapping) -> Result<(), String> {
    let keys: Vec<Value> = config.keys().cloned().collect();
    for key in keys {
        let name = crate::yaml::key_text(&key);
        extend(config, &name, &mut Vec::new())?;
    }
    Ok(())
}

fn parents(value: &Value) -> Option<Vec<String>> {
    let Value::Mapping(mapping) = value else {
        return None;
    };
    match mapping.get("extends")? {
        Value::Sequence(items) => Some(items.iter().filter_map(scalar_text).collect()),
        other => scalar_text(other).map(|name| vec![name]),
    }
}

fn extend(config: &mut Mapping, key: &str, ancestors: &mut Vec<String>) -> Result<(), String> {
    let Some(value) = config.get(key) else {
        return Ok(());
    };
    let Some(bases) = parents(value) else {
        return Ok(());
    };
    let unknown: Vec<&str> = bases
        .iter()
        .map(String::as_str)
        .filter(|base| !config.contains_key(*base))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "{key}: unknown keys in `extends` ({})",
            unknown.join(", ")
        ));
    }
    let invalid: Vec<&str> = bases
        .iter()
        .map(String::as_str)
        .filter(|base| !config.get(*base).is_some_and(Value::is_mapping))
        .collect();
    if !invalid.is_empty() {
        return Err(format!(
            "{key}: invalid base hashes in `extends` ({})",
            invalid.join(", ")
        ));
    }
    if ancestors.len() > MAX_EXTENDS_NESTING {
        return Err(format!("{key}: nesting too deep in `extends`"));
    }
    if ancestors.iter().any(|ancestor| ancestor == key) {
        return Err(format!("{key}: circular dependency detected in `extends`"));
    }
    ancestors.push(key.to_string());
    for base in &bases {
        extend(config, base, ancestors)?;
    }
    ancestors.pop();
    let mut merged = Value::Mapping(Mapping::new());
    for base in &bases {
        if let Some(base_value) = config.get(base.as_str()) {
            deep_merge(&mut merged, base_value.clone());
        }
    }
    if let Some(own) = config.get(key) {
        deep_merge(&mut merged, own.clone());
    }
    config.insert(Value::String(key.to_string()), merged);
    Ok(())
}

/// Ruby's `Array#inspect` of a reference's path: `["job", "script"]`.
fn inspect(path: &[String]) -> String {
    let quoted: Vec<String> = path.iter().map(|part| format!("{part:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// Replace every `!reference` in `config` by what it names.
pub(crate) fn resolve_references(config: &Mapping) -> Result<Mapping, String> {
    let root = Value::Mapping(config.clone());
    let mut stack = Vec::new();
    match deep_resolve(&root, &root, &mut stack)? {
        Value::Mapping(mapping) => Ok(mapping),
        _ => Ok(Mapping::new()),
    }
}

fn deep_resolve(value: &Value, root: &Value, stack: &mut Vec<String>) -> Result<Value, String> {
    match value {
        Value::Sequence(items) => {
            let mut resolved = Vec::with_capacity(items.len());
            for item in items {
                resolved.push(deep_resolve(item, root, stack)?);
            }
            Ok(Value::Sequence(resolved))
        }
        Value::Mapping(mapping) => {
            let mut resolved = Mapping::new();
            for (key, item) in mapping {
                resolved.insert(key.clone(), deep_resolve(item, root, stack)?);
            }
            Ok(Value::Mapping(resolved))
        }
        Value::Tagged(tagged) if tagged.tag == REFERENCE_TAG => {
            let path: Vec<String> = match &tagged.value {
                Value::Sequence(items)
                    if !items.is_empty() && items.iter().all(Value::is_string) =>
                {
                    items.iter().filter_map(scalar_text).collect()
                }
                other => {
                    return Err(format!(
                        "!reference {} is not a list of keys",
                        crate::yaml::render(other)
                    ));
                }
            };
            let shown = inspect(&path);
            if stack.contains(&shown) {
                return Err(format!("!reference {shown} is part of a circular chain"));
            }
            if stack.len() >= MAX_REFERENCE_NESTING {
                return Err(format!(
                    "!reference {shown} is nested more than {MAX_REFERENCE_NESTING} levels deep"
                ));
            }
            let mut target = root;
            for part in &path {
                target = match target {
                    Value::Mapping(mapping) => mapping
                        .get(part.as_str())
                        .ok_or_else(|| format!("!reference {shown} could not be found"))?,
                    _ => return Err(format!("!reference {shown} could not be found")),
                };
            }
            if target.is_null() {
                return Err(format!("!reference {shown} could not be found"));
            }
            stack.push(shown);
            let resolved = deep_resolve(target, root, stack);
            stack.pop();
            resolved
        }
        Value::Tagged(tagged) => deep_resolve(&tagged.value, root, stack),
        other => Ok(other.clone()),
    }
}
