//! Java archives: `META-INF/maven/**/pom.properties`, else `MANIFEST.MF`, recursing into
//! nested jars (fat jars, wars). No remote lookup: archives that identify themselves by neither
//! are skipped.

use std::io::{Cursor, Read};

use crate::inventory::{Package, PkgType};

const MAX_DEPTH: usize = 4;

fn props(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.split_once(['=', ':'])?;
            Some((k.trim(), v.trim()))
        })
}

fn from_manifest(text: &str, path: &str) -> Option<Package> {
    // Continuation lines start with a space; join them first.
    let joined = text.replace("\r\n", "\n").replace("\n ", "");
    let get = |key: &str| {
        props(&joined)
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_owned())
    };
    let artifact = get("Implementation-Title").or_else(|| get("Bundle-Name"))?;
    let version = get("Implementation-Version").or_else(|| get("Bundle-Version"))?;
    let group = get("Implementation-Vendor-Id").or_else(|| {
        get("Bundle-SymbolicName").and_then(|s| {
            s.split(';')
                .next()
                .and_then(|s| s.rsplit_once('.'))
                .map(|(g, _)| g.to_owned())
        })
    })?;
    if artifact.contains(' ') || group.contains(' ') {
        return None;
    }
    Some(Package::new(
        PkgType::Jar,
        format!("{group}:{artifact}"),
        version,
        path,
    ))
}

fn walk(data: &[u8], path: &str, depth: usize, out: &mut Vec<Package>) {
    let Ok(mut zip) = zip::ZipArchive::new(Cursor::new(data)) else {
        return;
    };
    let mut found = false;
    let mut manifest = None;
    let mut nested = Vec::new();
    for i in 0..zip.len() {
        let Ok(mut e) = zip.by_index(i) else { continue };
        let name = e.name().map(|n| n.into_owned()).unwrap_or_default();
        let read = |e: &mut zip::read::ZipFile<'_, Cursor<&[u8]>>| {
            let mut buf = Vec::new();
            e.take(256 << 20).read_to_end(&mut buf).ok().map(|_| buf)
        };
        if name.starts_with("META-INF/maven/") && name.ends_with("/pom.properties") {
            let Some(buf) = read(&mut e) else { continue };
            let text = String::from_utf8_lossy(&buf);
            let get = |key: &str| {
                props(&text)
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.to_owned())
            };
            if let (Some(g), Some(a), Some(v)) = (get("groupId"), get("artifactId"), get("version"))
            {
                let p = Package::new(PkgType::Jar, format!("{g}:{a}"), v, path);
                if !out.contains(&p) {
                    out.push(p);
                }
                found = true;
            }
        } else if name == "META-INF/MANIFEST.MF" {
            manifest = read(&mut e);
        } else if depth < MAX_DEPTH
            && super::maybe_archive(&name)
            && let Some(buf) = read(&mut e)
        {
            nested.push(buf);
        }
    }
    if !found
        && let Some(p) = manifest.and_then(|m| from_manifest(&String::from_utf8_lossy(&m), path))
    {
        out.push(p);
    }
    for n in nested {
        walk(&n, path, depth + 1, out);
    }
}

/// Packages inside a Java archive (attributed to the outermost archive's path).
pub fn parse(data: &[u8], path: &str) -> Vec<Package> {
    let mut out = Vec::new();
    walk(data, path, 0, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn jar(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (n, b) in files {
            z.start_file(*n, zip::write::SimpleFileOptions::default())
                .unwrap();
            z.write_all(b).unwrap();
        }
        z.finish().unwrap().into_inner()
    }

    #[test]
    fn pom_properties_manifest_and_nesting() {
        let inner = jar(&[("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\nImplementation-Title: commons-io\nImplementation-Version: 2.11.0\nImplementation-Vendor-Id: commons-io\n")]);
        let outer = jar(&[
            (
                "META-INF/maven/com.google.guava/guava/pom.properties",
                b"#x\ngroupId=com.google.guava\nartifactId=guava\nversion=31.1-jre\n",
            ),
            ("BOOT-INF/lib/commons-io-2.11.0.jar", &inner),
            ("BOOT-INF/lib/unknown.jar", &jar(&[("a.txt", b"x")])),
        ]);
        let p = parse(&outer, "app/app.jar");
        let got: Vec<(&str, &str)> = p
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("com.google.guava:guava", "31.1-jre"),
                ("commons-io:commons-io", "2.11.0")
            ]
        );
        assert!(parse(b"PK\x03\x04 broken", "x.jar").is_empty());
    }
}
