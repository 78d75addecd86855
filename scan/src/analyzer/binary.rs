//! Executables: Go build info (`.go.buildinfo`, Go 1.18+ layout) and cargo-auditable's
//! `.dep-v0` section (zlib-compressed JSON), found through the ELF section table.

use std::io::Read;

use serde::Deserialize;

use crate::inventory::{Package, PkgType};

/// An ELF section's bytes by name, for 32/64-bit little-endian files.
pub fn elf_section<'a>(data: &'a [u8], name: &str) -> Option<&'a [u8]> {
    if data.get(..4)? != b"\x7fELF" || data.get(5)? != &1 {
        return None;
    }
    let is64 = *data.get(4)? == 2;
    let u16_at = |o: usize| {
        data.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |o: usize| {
        data.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let u64_at = |o: usize| {
        data.get(o..o + 8)
            .and_then(|b| usize::try_from(u64::from_le_bytes(b.try_into().ok()?)).ok())
    };
    let word = |o: usize| if is64 { u64_at(o) } else { u32_at(o) };
    let (shoff, shentsize, shnum, shstrndx) = if is64 {
        (u64_at(0x28)?, u16_at(0x3A)?, u16_at(0x3C)?, u16_at(0x3E)?)
    } else {
        (u32_at(0x20)?, u16_at(0x2E)?, u16_at(0x30)?, u16_at(0x32)?)
    };
    let (off_field, size_field) = if is64 { (0x18, 0x20) } else { (0x10, 0x14) };
    let header = |i: usize| shoff.checked_add(i.checked_mul(shentsize)?);
    let strtab = header(shstrndx)?;
    let str_off = word(strtab + off_field)?;
    for i in 0..shnum {
        let h = header(i)?;
        let name_off = str_off.checked_add(u32_at(h)?)?;
        let end = data.get(name_off..)?.iter().position(|&b| b == 0)?;
        if &data[name_off..name_off + end] == name.as_bytes() {
            let off = word(h + off_field)?;
            let size = word(h + size_field)?;
            return data.get(off..off.checked_add(size)?);
        }
    }
    None
}

fn uvarint(b: &[u8]) -> Option<(usize, usize)> {
    let mut x: u64 = 0;
    for (i, &c) in b.iter().enumerate().take(10) {
        x |= u64::from(c & 0x7f) << (7 * i);
        if c < 0x80 {
            return Some((usize::try_from(x).ok()?, i + 1));
        }
    }
    None
}

/// Parses Go build info into packages: `stdlib` plus main module and dependencies.
pub fn go_buildinfo(section: &[u8], path: &str) -> Vec<Package> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    if section.len() < 32 || !section.starts_with(MAGIC) || section[15] & 2 == 0 {
        return Vec::new(); // pre-1.18 pointer layout: not supported
    }
    let mut rest = &section[32..];
    let mut strings = Vec::new();
    for _ in 0..2 {
        let Some((n, k)) = uvarint(rest) else {
            return Vec::new();
        };
        let Some(s) = rest.get(k..k + n) else {
            return Vec::new();
        };
        strings.push(String::from_utf8_lossy(s).into_owned());
        rest = &rest[k + n..];
    }
    let mut out = Vec::new();
    if let Some(v) = strings[0].strip_prefix("go") {
        let v = v.split([' ', '+']).next().unwrap_or(v);
        out.push(Package::new(
            PkgType::GoBinary,
            "stdlib",
            format!("v{v}"),
            path,
        ));
    }
    // modinfo is framed by 16-byte sentinels.
    let modinfo = strings[1]
        .get(16..strings[1].len().saturating_sub(16))
        .unwrap_or("");
    for line in modinfo.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["mod", p, v, ..] | ["dep", p, v, ..] if *v != "(devel)" => {
                out.push(Package::new(PkgType::GoBinary, *p, *v, path));
            }
            ["=>", p, v, ..] => {
                if let Some(last) = out.last_mut().filter(|l| l.name != "stdlib") {
                    last.name = (*p).to_owned();
                    last.version = (*v).to_owned();
                }
            }
            _ => {}
        }
    }
    out
}

#[derive(Deserialize)]
struct Auditable {
    packages: Vec<AuditablePkg>,
}

#[derive(Deserialize)]
struct AuditablePkg {
    name: String,
    version: String,
    #[serde(default)]
    kind: Option<String>,
}

/// Parses cargo-auditable's compressed dependency list (runtime dependencies and the root).
pub fn cargo_auditable(section: &[u8], path: &str) -> Vec<Package> {
    let mut json = Vec::new();
    if flate2::read::ZlibDecoder::new(section)
        .take(64 << 20)
        .read_to_end(&mut json)
        .is_err()
    {
        return Vec::new();
    }
    let Ok(a) = serde_json::from_slice::<Auditable>(&json) else {
        return Vec::new();
    };
    a.packages
        .into_iter()
        .filter(|p| p.kind.as_deref() != Some("build"))
        .map(|p| Package::new(PkgType::RustBinary, p.name, p.version, path))
        .collect()
}

/// Everything an executable reveals.
pub fn parse(data: &[u8], path: &str) -> Vec<Package> {
    let mut out = Vec::new();
    if let Some(s) = elf_section(data, ".go.buildinfo") {
        out.extend(go_buildinfo(s, path));
    }
    if let Some(s) = elf_section(data, ".dep-v0") {
        out.extend(cargo_auditable(s, path));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn varstr(s: &str) -> Vec<u8> {
        let mut v = Vec::new();
        let mut n = s.len();
        while n >= 0x80 {
            v.push(u8::try_from(n & 0x7f).unwrap() | 0x80);
            n >>= 7;
        }
        v.push(u8::try_from(n).unwrap());
        v.extend_from_slice(s.as_bytes());
        v
    }

    #[test]
    fn go_buildinfo_inline_strings() {
        let mut sec = b"\xff Go buildinf:".to_vec();
        sec.extend([8u8, 2]);
        sec.resize(32, 0);
        sec.extend(varstr("go1.19.8"));
        let sentinel = "0123456789abcdef";
        let modinfo = format!(
            "{sentinel}path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\tgolang.org/x/net\tv0.1.0\th1:x\n\
             dep\tgithub.com/a/b\tv1.0.0\th1:y\n=>\tgithub.com/fork/b\tv1.0.1\th1:z\n{sentinel}"
        );
        sec.extend(varstr(&modinfo));
        let p = go_buildinfo(&sec, "usr/local/bin/app");
        let got: Vec<(&str, &str)> = p
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("stdlib", "v1.19.8"),
                ("golang.org/x/net", "v0.1.0"),
                ("github.com/fork/b", "v1.0.1")
            ]
        );
        assert!(go_buildinfo(b"junk", "x").is_empty());
    }

    #[test]
    fn auditable_and_elf() {
        let json = r#"{"packages":[{"name":"app","version":"0.1.0","source":"local","root":true},
            {"name":"smallvec","version":"1.6.0","source":"crates.io"},{"name":"cc","version":"1.0.0","source":"crates.io","kind":"build"}]}"#;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(json.as_bytes()).unwrap();
        let dep = z.finish().unwrap();
        let elf = tiny_elf(&[(".dep-v0", &dep)]);
        let p = parse(&elf, "usr/local/bin/app");
        let got: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(got, ["app", "smallvec"]);
        assert!(p.iter().all(|p| p.kind == PkgType::RustBinary));
        assert!(elf_section(&elf, ".text").is_none());
        assert!(
            elf_section(&elf[..40], ".dep-v0").is_none(),
            "truncated files are not read out of bounds"
        );
    }

    /// A minimal ELF64 file: header, the given sections, a section-name table.
    fn tiny_elf(sections: &[(&str, &[u8])]) -> Vec<u8> {
        let mut data = vec![0u8; 64];
        data[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let mut names = vec![0u8];
        let mut hdrs = vec![(0usize, 0usize, 0usize)]; // null section
        for (n, body) in sections {
            let name_off = names.len();
            names.extend_from_slice(n.as_bytes());
            names.push(0);
            hdrs.push((name_off, data.len(), body.len()));
            data.extend_from_slice(body);
        }
        let shstr_name = names.len();
        names.extend_from_slice(b".shstrtab\0");
        hdrs.push((shstr_name, data.len(), names.len()));
        data.extend_from_slice(&names);
        let shoff = data.len();
        for (name, off, size) in &hdrs {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&u32::try_from(*name).unwrap().to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(*off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(*size as u64).to_le_bytes());
            data.extend(h);
        }
        data[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        data[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
        data[0x3C..0x3E].copy_from_slice(&u16::try_from(hdrs.len()).unwrap().to_le_bytes());
        data[0x3E..0x40].copy_from_slice(&u16::try_from(hdrs.len() - 1).unwrap().to_le_bytes());
        data
    }
}
