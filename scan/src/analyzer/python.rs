//! Python: wheel `*.dist-info/METADATA` and egg `*.egg-info/PKG-INFO` (or a bare `.egg-info` file).

use crate::inventory::{Package, PkgType};

/// Parses core metadata headers into a package.
pub fn parse_metadata(text: &str, path: &str) -> Option<Package> {
    let (mut name, mut version, mut license) = (None, None, None);
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k {
            "Name" => name = Some(v),
            "Version" => version = Some(v),
            "License-Expression" => license = Some(v),
            "License"
                if license.is_none() && !v.is_empty() && v != "UNKNOWN" && !v.contains('\n') =>
            {
                license = Some(v)
            }
            _ => {}
        }
    }
    let mut p = Package::new(PkgType::PythonPkg, name?, version?, path);
    p.licenses = license.map(|l| vec![l.to_owned()]).unwrap_or_default();
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata() {
        let p = parse_metadata("Metadata-Version: 2.1\nName: Jinja2\nVersion: 2.11.2\nLicense: BSD-3-Clause\n\nName: body\n", "x/METADATA").unwrap();
        assert_eq!((p.name.as_str(), p.version.as_str()), ("Jinja2", "2.11.2"));
        assert_eq!(p.licenses, ["BSD-3-Clause"]);
        assert!(parse_metadata("Name: x\n", "y").is_none());
    }
}
