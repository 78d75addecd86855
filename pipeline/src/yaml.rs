//! YAML as GitLab reads it: several documents (a `spec:` header before `---`), `<<:` merge
//! keys, `!reference` tags kept for later, and the deep merge GitLab uses for includes and
//! `extends`.

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

/// The tag GitLab resolves after includes and `extends` are merged.
pub(crate) const REFERENCE_TAG: &str = "reference";

/// One file's documents: the optional `spec:` header and the configuration.
pub(crate) struct Documents {
    /// The header's `spec:` value, when the file has a header document.
    pub spec: Option<Value>,
    /// The configuration (the second document when there is a header, else the only one).
    pub content: Value,
}

/// Parse `text` into its documents, applying `<<:` merge keys.
///
/// # Errors
/// The YAML parser's message.
pub(crate) fn parse(text: &str) -> Result<Documents, String> {
    let mut documents = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let mut value = Value::deserialize(document).map_err(|error| error.to_string())?;
        apply_merge_keys(&mut value)?;
        documents.push(value);
    }
    let mut documents = documents.into_iter();
    let first = documents.next().unwrap_or(Value::Null);
    let Some(second) = documents.next() else {
        return Ok(Documents {
            spec: None,
            content: first,
        });
    };
    if documents.next().is_some() {
        return Err(
            "the file has more than two YAML documents (a `spec:` header and the configuration)"
                .into(),
        );
    }
    match first {
        Value::Mapping(mut header) if header.len() == 1 && header.contains_key("spec") => {
            Ok(Documents {
                spec: header.shift_remove("spec"),
                content: second,
            })
        }
        _ => Err("the header document before `---` may only contain `spec:`".into()),
    }
}

/// Apply `<<:` merge keys everywhere, keeping the order of the other keys (the mapping's own
/// keys win over merged ones, as in YAML 1.1).
fn apply_merge_keys(value: &mut Value) -> Result<(), String> {
    match value {
        Value::Mapping(mapping) => {
            if let Some(merged) = mapping.shift_remove("<<") {
                let sources = match merged {
                    Value::Mapping(source) => vec![source],
                    Value::Sequence(items) => {
                        let mut sources = Vec::new();
                        for item in items {
                            match item {
                                Value::Mapping(source) => sources.push(source),
                                _ => return Err("a `<<:` merge key must refer to mappings".into()),
                            }
                        }
                        sources
                    }
                    _ => {
                        return Err(
                            "a `<<:` merge key must refer to a mapping or a list of mappings"
                                .into(),
                        );
                    }
                };
                for source in sources {
                    for (key, item) in source {
                        if !mapping.contains_key(&key) {
                            mapping.insert(key, item);
                        }
                    }
                }
            }
            for item in mapping.values_mut() {
                apply_merge_keys(item)?;
            }
        }
        Value::Sequence(items) => {
            for item in items {
                apply_merge_keys(item)?;
            }
        }
        Value::Tagged(tagged) => apply_merge_keys(&mut tagged.value)?,
        _ => {}
    }
    Ok(())
}

/// GitLab's `deep_merge`: hashes merge key by key, anything else in `overlay` replaces.
pub(crate) fn deep_merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Mapping(base), Value::Mapping(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(existing) if existing.is_mapping() && value.is_mapping() => {
                        deep_merge(existing, value)
                    }
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

/// A mapping key as text (GitLab symbolizes keys: `1:` is the key `1`).
pub(crate) fn key_text(key: &Value) -> String {
    scalar_text(key).unwrap_or_else(|| {
        serde_yaml_ng::to_string(key)
            .unwrap_or_default()
            .trim()
            .to_string()
    })
}

/// A scalar as the text GitLab would give it (`true`, `1`, `1.5`); `None` for collections.
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Number(number) => Some(number.to_string()),
        Value::Null => Some(String::new()),
        Value::Tagged(tagged) => scalar_text(&tagged.value),
        Value::Sequence(_) | Value::Mapping(_) => None,
    }
}

/// The value under `key` in a mapping.
pub(crate) fn get<'a>(mapping: &'a Mapping, key: &str) -> Option<&'a Value> {
    mapping.get(key)
}

/// The keys of a mapping, as text, in order.
pub(crate) fn keys(mapping: &Mapping) -> Vec<String> {
    mapping.keys().map(key_text).collect()
}

/// A string or a list of strings (nested lists flattened, as GitLab does for scripts).
pub(crate) fn string_list(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::Sequence(items) => {
            let mut list = Vec::new();
            for item in items {
                match item {
                    Value::Sequence(_) => list.extend(string_list(item)?),
                    Value::Mapping(_) => return None,
                    other => list.push(scalar_text(other)?),
                }
            }
            Some(list)
        }
        Value::Mapping(_) => None,
        other => scalar_text(other).map(|text| vec![text]),
    }
}

/// YAML as JSON, for the schema check. Tags other than `!reference` are dropped; a remaining
/// `!reference` becomes `{"!reference": [...]}`, which the schema knows.
pub(crate) fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(flag) => serde_json::Value::Bool(*flag),
        Value::Number(number) => {
            if let Some(integer) = number.as_i64() {
                serde_json::Value::from(integer)
            } else if let Some(integer) = number.as_u64() {
                serde_json::Value::from(integer)
            } else {
                number
                    .as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
        }
        Value::String(text) => serde_json::Value::String(text.clone()),
        Value::Sequence(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Mapping(mapping) => serde_json::Value::Object(
            mapping
                .iter()
                .map(|(key, item)| (key_text(key), to_json(item)))
                .collect(),
        ),
        Value::Tagged(tagged) if tagged.tag == REFERENCE_TAG => {
            serde_json::json!({ "!reference": to_json(&tagged.value) })
        }
        Value::Tagged(tagged) => to_json(&tagged.value),
    }
}

/// A short rendering of a value for messages (`{"local":"x"}` style as GitLab prints hashes).
pub(crate) fn render(value: &Value) -> String {
    serde_json::to_string(&to_json(value)).unwrap_or_default()
}
