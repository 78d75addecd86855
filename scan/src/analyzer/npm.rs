//! Node.js: `package.json` files (node_modules and the application's own).

use serde::Deserialize;
use serde_json::Value;

use crate::inventory::{Package, PkgType};

#[derive(Deserialize)]
struct PackageJson {
    name: Option<String>,
    version: Option<String>,
    #[serde(default)]
    license: Option<Value>,
}

/// Parses a package.json; files without a name and version are not packages.
pub fn parse_package_json(data: &[u8], path: &str) -> Option<Package> {
    let pj: PackageJson = serde_json::from_slice(data).ok()?;
    let (name, version) = (
        pj.name.filter(|n| !n.is_empty())?,
        pj.version.filter(|v| !v.is_empty())?,
    );
    let mut p = Package::new(PkgType::NodePkg, name, version, path);
    let license = match pj.license {
        Some(Value::String(s)) => Some(s),
        Some(Value::Object(o)) => o.get("type").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    p.licenses = license.into_iter().collect();
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_json() {
        let p = parse_package_json(
            br#"{"name":"express","version":"4.17.1","license":"MIT"}"#,
            "a/package.json",
        )
        .unwrap();
        assert_eq!(
            (p.name.as_str(), p.version.as_str(), p.licenses[0].as_str()),
            ("express", "4.17.1", "MIT")
        );
        assert!(parse_package_json(br#"{"name":"x"}"#, "b").is_none());
        assert!(parse_package_json(b"not json", "c").is_none());
    }
}
