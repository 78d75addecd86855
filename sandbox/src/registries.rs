//! The job's `registries.conf`: the host's, plus the admin's insecure registries, so that a
//! docker CLI behind the build socket (which has no `--tls-verify` of its own) can log in, push
//! and pull there, as `--insecure-registry` on a DinD daemon would allow.

use toml::{Table, Value};

/// Where the host's main registries configuration lives (drop-ins in `registries.conf.d` are
/// read by Podman whatever the main file is, so they need no copy).
pub const HOST_REGISTRIES_CONF: &str = "/etc/containers/registries.conf";

/// The host's registries configuration (`None`: there is none) with each of `insecure` marked
/// insecure, in whichever format the host file uses (v2 `[[registry]]` tables, or v1
/// `[registries.insecure]`).
pub fn with_insecure(host: Option<&str>, insecure: &[String]) -> Result<String, String> {
    let mut conf: Table = match host {
        Some(text) => toml::from_str(text).map_err(|e| e.to_string())?,
        None => Table::new(),
    };
    if let Some(v1) = conf.get_mut("registries").and_then(Value::as_table_mut) {
        let list = v1
            .entry("insecure")
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .ok_or("[registries.insecure] is not a table")?
            .entry("registries")
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .ok_or("registries.insecure.registries is not a list")?;
        for registry in insecure {
            if !list.iter().any(|r| r.as_str() == Some(registry)) {
                list.push(Value::String(registry.clone()));
            }
        }
    } else {
        let list = conf
            .entry("registry")
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .ok_or("`registry` is not a list of tables")?;
        for registry in insecure {
            let existing = list.iter_mut().filter_map(Value::as_table_mut).find(|t| {
                t.get("location").and_then(Value::as_str) == Some(registry)
                    || t.get("prefix").and_then(Value::as_str) == Some(registry)
            });
            match existing {
                Some(table) => {
                    table.insert("insecure".into(), Value::Boolean(true));
                }
                None => list.push(Value::Table(Table::from_iter([
                    ("location".to_owned(), Value::String(registry.clone())),
                    ("insecure".to_owned(), Value::Boolean(true)),
                ]))),
            }
        }
    }
    toml::to_string(&conf).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insecure_of(text: &str) -> Vec<String> {
        let conf: Table = toml::from_str(text).expect("valid toml");
        conf.get("registry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|r| r.get("insecure").and_then(Value::as_bool) == Some(true))
            .filter_map(|r| r.get("location").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }

    #[test]
    fn adds_insecure_registries_and_keeps_the_hosts_settings() {
        let host = r#"unqualified-search-registries = ["registry.example"]
[[registry]]
location = "127.0.0.1:5000"
[[registry]]
location = "mirror.example"
blocked = true
"#;
        let out = with_insecure(
            Some(host),
            &["127.0.0.1:5000".to_owned(), "10.0.0.9:80".to_owned()],
        )
        .expect("merge");
        assert_eq!(insecure_of(&out), vec!["127.0.0.1:5000", "10.0.0.9:80"]);
        let conf: Table = toml::from_str(&out).expect("toml");
        assert_eq!(
            conf["unqualified-search-registries"][0].as_str(),
            Some("registry.example")
        );
        assert_eq!(conf["registry"][1]["blocked"].as_bool(), Some(true));
        assert_eq!(
            insecure_of(&with_insecure(None, &["r:1".to_owned()]).expect("no host file")),
            vec!["r:1"]
        );
    }

    #[test]
    fn the_v1_format_stays_v1() {
        let host = "[registries.search]\nregistries = [\"a.example\"]\n";
        let out = with_insecure(Some(host), &["r:1".to_owned()]).expect("merge");
        let conf: Table = toml::from_str(&out).expect("toml");
        assert_eq!(
            conf["registries"]["insecure"]["registries"][0].as_str(),
            Some("r:1")
        );
        assert!(
            conf.get("registry").is_none(),
            "v1 and v2 cannot mix: {out}"
        );
        assert!(with_insecure(Some("registry = 3"), &["r:1".to_owned()]).is_err());
        assert!(with_insecure(Some("[oops"), &["r:1".to_owned()]).is_err());
    }
}
