//! What comes over the wire, read the way Podman reads it: query strings percent-decoded (keys
//! matched case-insensitively, as gorilla/schema does) and JSON bodies whose keys are folded to
//! ASCII lower case (as Go's encoding/json matches them), refusing duplicates after decoding or
//! folding, so that the proxy and Podman can never read one request two ways.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::Refusal;

/// A decoded query string: each key (lower case) with its values in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Query {
    pairs: BTreeMap<String, Vec<String>>,
}

fn unhex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one query component as Go's `url.QueryUnescape` does (`+` is a space).
pub fn percent_decode(text: &str) -> Result<String, Refusal> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(unhex);
                let lo = bytes.get(i + 2).copied().and_then(unhex);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(Refusal::new(
                        "query",
                        "a malformed percent escape",
                        "encode the query with a standard client",
                    ));
                };
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map_err(|_| Refusal::new("query", "text that is not UTF-8", "send UTF-8 query values"))
}

impl Query {
    /// Parses a raw query string; `;` separators are refused (Go splits on them differently
    /// across versions).
    pub fn parse(raw: &str) -> Result<Self, Refusal> {
        let mut pairs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            if pair.contains(';') {
                return Err(Refusal::new(
                    "query",
                    "a `;` separator",
                    "separate query options with `&`",
                ));
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(k)?;
            if !key.is_ascii() {
                return Err(Refusal::new(
                    &format!("query option {key:?}"),
                    "a name that is not ASCII",
                    "use the documented option names",
                ));
            }
            pairs
                .entry(key.to_ascii_lowercase())
                .or_default()
                .push(percent_decode(v)?);
        }
        Ok(Self { pairs })
    }

    /// Refuses any option not in `allowed`, and any option given twice unless in `multi`.
    pub fn only(&self, endpoint: &str, allowed: &[&str], multi: &[&str]) -> Result<(), Refusal> {
        for (key, values) in &self.pairs {
            if !allowed.contains(&key.as_str()) {
                return Err(Refusal::new(
                    &format!("query option `{key}`"),
                    &format!("an option {endpoint} does not offer through berth's build socket"),
                    &if allowed.is_empty() {
                        "send no options".to_owned()
                    } else {
                        format!("use only: {}", allowed.join(", "))
                    },
                ));
            }
            if values.len() > 1 && !multi.contains(&key.as_str()) {
                return Err(Refusal::new(
                    &format!("query option `{key}`"),
                    "an option given more than once (or in two spellings)",
                    "give it once",
                ));
            }
        }
        Ok(())
    }

    /// The single value of `key`.
    pub fn one(&self, key: &str) -> Option<&str> {
        self.pairs
            .get(key)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// Every value of `key`.
    pub fn all(&self, key: &str) -> &[String] {
        self.pairs.get(key).map_or(&[], Vec::as_slice)
    }

    /// A boolean option as Go's `strconv.ParseBool` reads it.
    pub fn flag(&self, key: &str) -> Result<Option<bool>, Refusal> {
        self.one(key).map(|v| parse_bool(key, v)).transpose()
    }

    /// A whole-number option.
    pub fn number(&self, key: &str) -> Result<Option<i64>, Refusal> {
        self.one(key)
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    Refusal::new(
                        &format!("query option `{key}`"),
                        &format!("{v:?}, not a whole number"),
                        "give a whole number",
                    )
                })
            })
            .transpose()
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(key: &str, v: &str) -> Result<bool, Refusal> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" | "" => Ok(false),
        other => Err(Refusal::new(
            &format!("query option `{key}`"),
            &format!("{other:?}, not a boolean"),
            "give 1 or 0",
        )),
    }
}

/// Builds a query string back from validated pairs.
pub fn encode(pairs: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        for b in v.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// JSON as written, except that keys which are not ASCII, and keys equal to another key of the
/// same object after folding case, are refused while parsing (Go's encoding/json would match
/// either to a field the proxy did not check).
#[derive(Debug, Clone, PartialEq)]
pub struct Folded(pub serde_json::Value);

struct FoldedVisitor;

impl<'de> Visitor<'de> for FoldedVisitor {
    type Value = Folded;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Folded, E> {
        Ok(Folded(v.into()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Folded, E> {
        Ok(Folded(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Folded, E> {
        Ok(Folded(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Folded, E> {
        Ok(Folded(
            serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into),
        ))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Folded, E> {
        Ok(Folded(v.into()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Folded, E> {
        Ok(Folded(v.into()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Folded, E> {
        Ok(Folded(serde_json::Value::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Folded, E> {
        Ok(Folded(serde_json::Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Folded, A::Error> {
        let mut items = Vec::new();
        while let Some(Folded(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Folded(items.into()))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Folded, A::Error> {
        let mut out = serde_json::Map::new();
        let mut seen = std::collections::BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !key.is_ascii() {
                return Err(de::Error::custom(format_args!(
                    "field {key:?} has a name that is not ASCII (Podman would match it to another field)"
                )));
            }
            let folded = key.to_ascii_lowercase();
            if !seen.insert(folded.clone()) {
                return Err(de::Error::custom(format_args!(
                    "field `{folded}` is given twice (Podman matches field names without regard to case)"
                )));
            }
            let Folded(value) = map.next_value()?;
            out.insert(key, value);
        }
        Ok(Folded(out.into()))
    }
}

impl<'de> Deserialize<'de> for Folded {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FoldedVisitor)
    }
}

/// Deserialises a value with struct field names matched as Go matches them (folded to lower
/// case; the model's fields are lower case), while map keys (labels, environment, build
/// arguments) keep their case.
struct Fold(serde_json::Value);

struct FoldMap {
    entries: std::vec::IntoIter<(String, serde_json::Value)>,
    value: Option<(String, serde_json::Value)>,
}

/// Prefixes an error with the field it concerns, so nested problems name their whole path.
fn within(field: &str, e: serde_json::Error) -> serde_json::Error {
    de::Error::custom(format_args!("`{field}`: {e}"))
}

impl<'de> MapAccess<'de> for FoldMap {
    type Error = serde_json::Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.entries.next() {
            Some((k, v)) => {
                self.value = Some((k.clone(), v));
                seed.deserialize(de::value::StringDeserializer::new(k))
                    .map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let (key, value) = self.value.take().unwrap_or_default();
        seed.deserialize(Fold(value)).map_err(|e| within(&key, e))
    }
}

struct FoldSeq(std::vec::IntoIter<serde_json::Value>);

impl<'de> SeqAccess<'de> for FoldSeq {
    type Error = serde_json::Error;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        self.0.next().map(|v| seed.deserialize(Fold(v))).transpose()
    }
}

impl<'de> Deserializer<'de> for Fold {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            serde_json::Value::Object(map) => visitor.visit_map(FoldMap {
                entries: map.into_iter().collect::<Vec<_>>().into_iter(),
                value: None,
            }),
            serde_json::Value::Array(items) => visitor.visit_seq(FoldSeq(items.into_iter())),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            serde_json::Value::Object(map) => visitor.visit_map(FoldMap {
                entries: map
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect::<Vec<_>>()
                    .into_iter(),
                value: None,
            }),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            serde_json::Value::Null => visitor.visit_none(),
            other => visitor.visit_some(Self(other)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

/// Parses a JSON body into `T` (whose fields are the folded, lower-case names), refusing
/// duplicates, unknown fields and wrong types; `what` names the body in the refusal.
pub fn json<T: de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Refusal> {
    let Folded(value) = serde_json::from_slice(bytes).map_err(|e| bad_json(what, &e))?;
    T::deserialize(Fold(value)).map_err(|e| bad_json(what, &e))
}

/// Deserialises an already parsed [`Folded`] value (field names matched as Podman does).
pub fn from_folded<T: de::DeserializeOwned>(
    value: serde_json::Value,
) -> Result<T, serde_json::Error> {
    T::deserialize(Fold(value))
}

/// Parses JSON carried in a query option the same way.
pub fn json_option<T: de::DeserializeOwned>(text: &str, key: &str) -> Result<T, Refusal> {
    json(text.as_bytes(), &format!("query option `{key}`"))
}

fn bad_json(what: &str, e: &serde_json::Error) -> Refusal {
    // serde's messages name the field and list the accepted ones; values never appear in them
    // except for enum variants and invalid literals, which are the job's own choices.
    let mut message = e.to_string();
    if let Some(at) = message.find(" at line ") {
        message.truncate(at);
    }
    Refusal::new(
        what,
        &message,
        "send only the fields berth's build socket allows (see the README, \"build socket\")",
    )
}
