//! apk: `/lib/apk/db/installed` (packages, origins, licenses and owned files).

use super::stanzas;
use crate::inventory::{Package, PkgType};

/// Parses the installed database into packages and the files they own.
pub fn parse_installed(text: &str, path: &str) -> (Vec<Package>, Vec<String>) {
    let mut pkgs = Vec::new();
    let mut owned = Vec::new();
    for st in stanzas(text) {
        let (mut name, mut version, mut arch, mut origin, mut license) =
            (None, None, None, None, None);
        let mut folder = String::new();
        for line in st.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            match k {
                "P" => name = Some(v),
                "V" => version = Some(v),
                "A" => arch = Some(v),
                "o" => origin = Some(v),
                "L" => license = Some(v),
                "F" => folder = v.to_owned(),
                "R" => owned.push(if folder.is_empty() {
                    v.to_owned()
                } else {
                    format!("{folder}/{v}")
                }),
                _ => {}
            }
        }
        let (Some(name), Some(version)) = (name, version) else {
            continue;
        };
        let mut p = Package::new(PkgType::Apk, name, version, path);
        p.arch = arch.map(str::to_owned);
        p.src_name = Some(origin.unwrap_or(name).to_owned());
        p.src_version = Some(version.to_owned());
        p.licenses = license.map(|l| vec![l.to_owned()]).unwrap_or_default();
        pkgs.push(p);
    }
    (pkgs, owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_db() {
        let db = "C:Q1abc=\nP:musl\nV:1.2.4_git20230717-r4\nA:x86_64\no:musl\nL:MIT\nF:lib\nR:ld-musl-x86_64.so.1\n\n\
P:py3-pip\nV:23.3.1-r0\nA:noarch\no:py-pip\nF:usr/lib/python3.11/site-packages/pip-23.3.1.dist-info\nR:METADATA\n";
        let (p, owned) = parse_installed(db, "lib/apk/db/installed");
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].src_name.as_deref(), Some("py-pip"));
        assert_eq!(p[0].licenses, ["MIT"]);
        assert!(owned.contains(
            &"usr/lib/python3.11/site-packages/pip-23.3.1.dist-info/METADATA".to_owned()
        ));
    }
}
