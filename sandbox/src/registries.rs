//! berth's `registries.conf`: the host's, plus the admin's insecure registries, so that a
//! docker CLI behind the build socket (which has no `--tls-verify` of its own) can log in, push
//! and pull there, as `--insecure-registry` on a DinD daemon would allow; plus the admin's
//! pull-through mirrors (`registry_mirrors`) as `[[registry.mirror]]` tables, which
//! containers/image tries in order before the registry itself, for pulls by tag and by digest.
//! Used for base image pulls and for the job's Podman service.

use berth_config::admin::RegistryMirror;
use toml::{Table, Value};

/// The host's registries configuration with the admin's insecure registries and mirrors. A
/// mirror listed in `insecure` is marked insecure (plain HTTP or unverified TLS). Mirrors need
/// the v2 format (`[[registry]]` tables); a v1 host file with mirrors configured is an error.
pub fn for_berth(
    host: Option<&str>,
    insecure: &[String],
    mirrors: &[RegistryMirror],
) -> Result<String, String> {
    let with_insecure = with_insecure(host, insecure)?;
    if mirrors.is_empty() {
        return Ok(with_insecure);
    }
    let mut conf: Table = toml::from_str(&with_insecure).map_err(|e| e.to_string())?;
    if conf.contains_key("registries") {
        return Err(
            "it is in the v1 format ([registries.*]), which has no mirrors; rewrite it with [[registry]] tables (containers-registries.conf(5))"
                .into(),
        );
    }
    let list = conf
        .entry("registry")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or("`registry` is not a list of tables")?;
    for entry in mirrors {
        let mirror_tables: Vec<Value> = entry
            .mirrors
            .iter()
            .map(|m| {
                let mut t = Table::from_iter([("location".to_owned(), Value::String(m.clone()))]);
                let host = m.split('/').next().unwrap_or_default();
                if insecure.iter().any(|i| i == m || i == host) {
                    t.insert("insecure".into(), Value::Boolean(true));
                }
                Value::Table(t)
            })
            .collect();
        let existing = list.iter_mut().filter_map(Value::as_table_mut).find(|t| {
            t.get("prefix")
                .or_else(|| t.get("location"))
                .and_then(Value::as_str)
                == Some(entry.registry.as_str())
        });
        match existing {
            // The admin's mirrors come first, then whatever the host already had.
            Some(table) => {
                let mut all = mirror_tables;
                if let Some(Value::Array(old)) = table.remove("mirror") {
                    all.extend(old);
                }
                table.insert("mirror".into(), Value::Array(all));
            }
            None => list.push(Value::Table(Table::from_iter([
                ("location".to_owned(), Value::String(entry.registry.clone())),
                ("mirror".to_owned(), Value::Array(mirror_tables)),
            ]))),
        }
    }
    toml::to_string(&conf).map_err(|e| e.to_string())
}

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

    fn mirrors() -> Vec<RegistryMirror> {
        vec![
            RegistryMirror {
                registry: "docker.io".into(),
                mirrors: vec!["m1.example:5000".into(), "m2.example/hub".into()],
            },
            RegistryMirror {
                registry: "127.0.0.1:5000".into(),
                mirrors: vec!["127.0.0.1:5001".into()],
            },
        ]
    }

    #[test]
    fn mirrors_become_registry_mirror_tables_in_order() {
        let host = "[[registry]]\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"old.example\"\n";
        let out = for_berth(Some(host), &["127.0.0.1:5001".to_owned()], &mirrors()).expect("merge");
        let conf: Table = toml::from_str(&out).expect("toml");
        let registries = conf["registry"].as_array().expect("list");
        let of = |location: &str| {
            registries
                .iter()
                .find(|r| r["location"].as_str() == Some(location))
                .unwrap_or_else(|| panic!("{location} in {out}"))
        };
        let hub: Vec<_> = of("docker.io")["mirror"]
            .as_array()
            .expect("mirrors")
            .iter()
            .map(|m| m["location"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(hub, ["m1.example:5000", "m2.example/hub", "old.example"]);
        let local = &of("127.0.0.1:5000")["mirror"][0];
        assert_eq!(local["location"].as_str(), Some("127.0.0.1:5001"));
        assert_eq!(local["insecure"].as_bool(), Some(true));
        assert!(of("docker.io")["mirror"][0].get("insecure").is_none());
        let err = for_berth(
            Some("[registries.search]\nregistries = []\n"),
            &[],
            &mirrors(),
        )
        .expect_err("v1 has no mirrors");
        assert!(err.contains("[[registry]]"), "{err}");
        assert_eq!(
            for_berth(None, &[], &[]).expect("nothing to add"),
            with_insecure(None, &[]).expect("nothing to add")
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
