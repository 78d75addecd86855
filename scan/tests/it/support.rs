//! Builds small fixture images in every supported format from the same three layers.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

/// One layer: (path, contents); a path ending in `/` is a directory; `.wh.` names are whiteouts.
pub type LayerSpec = Vec<(&'static str, Vec<u8>)>;

const STATUS_1: &str = "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9+deb12u14\n\n\
Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2.15-2+b7\n\n\
Package: python3-pip\nStatus: install ok installed\nArchitecture: all\nSource: python-pip\nVersion: 23.0.1+dfsg-1\n";
const STATUS_2: &str = "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9+deb12u14\n\n\
Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2.15-2+b7\n\n\
Package: python3-pip\nStatus: install ok installed\nArchitecture: all\nSource: python-pip\nVersion: 23.0.1+dfsg-1\n\n\
Package: curl\nStatus: install ok installed\nArchitecture: amd64\nVersion: 7.88.1-10+deb12u8\n";

fn metadata(name: &str, version: &str) -> Vec<u8> {
    format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n").into_bytes()
}

/// The three layers of the fixture image.
pub fn layers() -> Vec<LayerSpec> {
    vec![
        vec![
            ("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n".into()),
            ("etc/debian_version", "12.15\n".into()),
            ("var/lib/dpkg/status", STATUS_1.into()),
            ("var/lib/dpkg/info/python3-pip.md5sums", "d41d8cd98f00b204e9800998ecf8427e  usr/lib/python3/dist-packages/pip-23.0.1.dist-info/METADATA\n".into()),
            ("usr/lib/python3/dist-packages/pip-23.0.1.dist-info/METADATA", metadata("pip", "23.0.1")),
            ("app/node_modules/lodash/package.json", r#"{"name":"lodash","version":"4.17.15","license":"MIT"}"#.into()),
            ("app/node_modules/minimist/package.json", r#"{"name":"minimist","version":"1.2.0"}"#.into()),
            ("app/package.json", r#"{"name":"nodeapp","version":"1.0.0"}"#.into()),
        ],
        vec![
            ("var/lib/dpkg/status", STATUS_2.into()),
            ("app/node_modules/.wh.lodash", Vec::new()),
            ("venv/lib/python3.11/site-packages/Jinja2-2.11.2.dist-info/METADATA", metadata("Jinja2", "2.11.2")),
            ("venv/lib/python3.11/site-packages/urllib3-1.26.4.dist-info/METADATA", metadata("urllib3", "1.26.4")),
            (
                "app/rust/Cargo.toml",
                "[package]\nname = \"app\"\nversion = \"0.1.0\"\n\n[dependencies]\nsmallvec = \"1.6\"\n".into(),
            ),
            (
                "app/rust/Cargo.lock",
                "version = 3\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\ndependencies = [\"smallvec\"]\n\n[[package]]\nname = \"smallvec\"\nversion = \"1.6.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n".into(),
            ),
        ],
        vec![
            ("venv/lib/python3.11/site-packages/.wh..wh..opq", Vec::new()),
            ("venv/lib/python3.11/site-packages/requests-2.25.1.dist-info/METADATA", metadata("requests", "2.25.1")),
            ("venv/lib/python3.11/site-packages/urllib3-1.26.4.dist-info/METADATA", metadata("urllib3", "1.26.4")),
        ],
    ]
}

/// Fake but well-formed DiffIDs, one per layer.
pub fn diff_id(i: usize) -> String {
    format!("sha256:{:064x}", 0xd1ff_0000 + i)
}

/// An OCI blob's name: the sha256 of its bytes.
fn blob_digest(data: &[u8]) -> String {
    berth_scan::digest::Digest::of(berth_scan::digest::Algorithm::Sha256, data).to_string()
}

/// A layer as an uncompressed tar.
pub fn layer_tar(spec: &LayerSpec) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, body) in spec {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        // Files under a bin/ directory are executables.
        h.set_mode(if path.contains("bin/") { 0o755 } else { 0o644 });
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, body.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

/// zstd by the reference `zstd` command (not the library berth decodes with).
fn zstd_cli(data: &[u8]) -> Vec<u8> {
    let mut child = crate::oracle::oracle_cmd("zstd")
        .args(["-q", "-c", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the zstd command (scan/tests/setup.sh installs it)");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "zstd failed");
    out.stdout
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn config_json() -> String {
    config_json_for(layers().len())
}

fn config_json_for(n: usize) -> String {
    let ids: Vec<String> = (0..n).map(diff_id).collect();
    serde_json::json!({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":ids}}).to_string()
}

fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, body) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, body.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

/// docker-archive tar (`podman save --format docker-archive`): uncompressed layers.
pub fn docker_archive(dir: &Path) -> PathBuf {
    docker_archive_of(dir, &layers(), "docker.tar")
}

/// A docker-archive tar named `name` in `dir` holding the given layers.
pub fn docker_archive_of(dir: &Path, layers: &[LayerSpec], name: &str) -> PathBuf {
    let mut files = vec![];
    let mut names = vec![];
    for (i, l) in layers.iter().enumerate() {
        let n = format!("{:064x}.tar", 0xa0 + i);
        files.push((n.clone(), layer_tar(l)));
        names.push(n);
    }
    files.push((
        "cfg0123.json".into(),
        config_json_for(layers.len()).into_bytes(),
    ));
    let manifest = serde_json::json!([{"Config":"cfg0123.json","RepoTags":["localhost/fixture:latest"],"Layers":names}]);
    files.push(("manifest.json".into(), manifest.to_string().into_bytes()));
    let p = dir.join(name);
    std::fs::write(&p, tar_of(&files)).unwrap();
    p
}

fn oci_files() -> Vec<(String, Vec<u8>)> {
    let mut files = vec![(
        "oci-layout".to_owned(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    )];
    let mut layer_desc = vec![];
    for (i, l) in layers().iter().enumerate() {
        // Layer 1 stays uncompressed and layer 2 is zstd, to cover every media type.
        let (data, mt) = if i == 1 {
            (layer_tar(l), "application/vnd.oci.image.layer.v1.tar")
        } else if i == 2 {
            (
                zstd_cli(&layer_tar(l)),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            )
        } else {
            (
                gzip(&layer_tar(l)),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        };
        let d = blob_digest(&data);
        layer_desc.push(serde_json::json!({"mediaType":mt,"digest":d,"size":data.len()}));
        files.push((format!("blobs/{}", d.replace(':', "/")), data));
    }
    let cfg = blob_digest(config_json().as_bytes());
    files.push((
        format!("blobs/{}", cfg.replace(':', "/")),
        config_json().into_bytes(),
    ));
    let manifest = serde_json::json!({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":cfg,"size":1},"layers":layer_desc});
    let md = blob_digest(manifest.to_string().as_bytes());
    files.push((
        format!("blobs/{}", md.replace(':', "/")),
        manifest.to_string().into_bytes(),
    ));
    let index = serde_json::json!({"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "digest":md,"size":1,"annotations":{"org.opencontainers.image.ref.name":"localhost/fixture:latest"}}]});
    files.push(("index.json".into(), index.to_string().into_bytes()));
    files
}

/// OCI archive tar.
pub fn oci_archive(dir: &Path) -> PathBuf {
    let p = dir.join("oci.tar");
    std::fs::write(&p, tar_of(&oci_files())).unwrap();
    p
}

/// OCI layout directory.
pub fn oci_layout(dir: &Path) -> PathBuf {
    let root = dir.join("oci-layout");
    for (name, body) in oci_files() {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    root
}

pub fn write_tree(root: &Path, spec: &LayerSpec) {
    for (path, body) in spec {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
}

/// A containers-storage overlay store holding the image (whiteouts as `.wh.` files, as
/// fuse-overlayfs writes them).
pub fn containers_storage(dir: &Path) -> PathBuf {
    let root = dir.join("storage");
    let mut layer_json = vec![];
    let mut parent: Option<String> = None;
    for (i, l) in layers().iter().enumerate() {
        let id = format!("{:064x}", 0x1a7e + i);
        write_tree(&root.join("overlay").join(&id).join("diff"), l);
        let mut j = serde_json::json!({"id":id,"diff-digest":diff_id(i)});
        if let Some(p) = &parent {
            j["parent"] = serde_json::json!(p);
        }
        layer_json.push(j);
        parent = Some(id);
    }
    std::fs::create_dir_all(root.join("overlay-layers")).unwrap();
    std::fs::write(
        root.join("overlay-layers/layers.json"),
        serde_json::json!(layer_json).to_string(),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("overlay-images")).unwrap();
    let images = serde_json::json!([{"id":format!("{:064x}", 0x1a9e),"names":["localhost/fixture:latest"],"layer":parent}]);
    std::fs::write(root.join("overlay-images/images.json"), images.to_string()).unwrap();
    root
}

/// The flattened filesystem of the image, as a plain directory.
pub fn rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    let l = layers();
    write_tree(&root, &l[0]);
    std::fs::remove_dir_all(root.join("app/node_modules/lodash")).unwrap();
    let keep: LayerSpec = l[1]
        .iter()
        .filter(|(p, _)| !p.contains(".wh.") && !p.contains("site-packages"))
        .cloned()
        .collect();
    write_tree(&root, &keep);
    let keep: LayerSpec = l[2]
        .iter()
        .filter(|(p, _)| !p.contains(".wh."))
        .cloned()
        .collect();
    write_tree(&root, &keep);
    root
}

/// Go's uvarint.
fn uvarint(mut n: usize, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push(u8::try_from(n & 0x7f).unwrap() | 0x80);
        n >>= 7;
    }
    out.push(u8::try_from(n).unwrap());
}

/// A minimal static ELF64 executable whose `.go.buildinfo` section (inside a PT_LOAD segment,
/// as Go's debug/buildinfo needs) records `go_version` and the module lines in `modinfo`.
pub fn go_binary(go_version: &str, modinfo: &str) -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    let mut info = b"\xff Go buildinf:".to_vec();
    info.extend([8u8, 2]);
    info.resize(32, 0);
    uvarint(go_version.len(), &mut info);
    info.extend(go_version.as_bytes());
    let sentinel = "3077af0c9274080241e1c107e6d618e6";
    let m = format!("{}{modinfo}{}", &sentinel[..16], &sentinel[16..]);
    uvarint(m.len(), &mut info);
    info.extend(m.as_bytes());
    let shstrtab = b"\0.go.buildinfo\0.shstrtab\0".to_vec();
    let info_off = 0x100usize; // after the ELF header and one program header, 16-aligned
    let str_off = info_off + info.len();
    let sh_off = (str_off + shstrtab.len()).next_multiple_of(8);
    let total = sh_off + 3 * 64;
    let mut f = vec![0u8; total];
    let put =
        |f: &mut Vec<u8>, at: usize, bytes: &[u8]| f[at..at + bytes.len()].copy_from_slice(bytes);
    put(&mut f, 0, b"\x7fELF\x02\x01\x01");
    put(&mut f, 16, &2u16.to_le_bytes()); // ET_EXEC
    put(&mut f, 18, &62u16.to_le_bytes()); // x86-64
    put(&mut f, 20, &1u32.to_le_bytes());
    put(&mut f, 32, &64u64.to_le_bytes()); // e_phoff
    put(&mut f, 40, &(sh_off as u64).to_le_bytes());
    put(&mut f, 52, &64u16.to_le_bytes()); // e_ehsize
    put(&mut f, 54, &56u16.to_le_bytes()); // e_phentsize
    put(&mut f, 56, &1u16.to_le_bytes()); // e_phnum
    put(&mut f, 58, &64u16.to_le_bytes()); // e_shentsize
    put(&mut f, 60, &3u16.to_le_bytes()); // e_shnum
    put(&mut f, 62, &2u16.to_le_bytes()); // e_shstrndx
    // PT_LOAD covering the whole file, readable
    let ph = 64;
    put(&mut f, ph, &1u32.to_le_bytes());
    put(&mut f, ph + 4, &4u32.to_le_bytes());
    put(&mut f, ph + 16, &BASE.to_le_bytes());
    put(&mut f, ph + 24, &BASE.to_le_bytes());
    put(&mut f, ph + 32, &(total as u64).to_le_bytes());
    put(&mut f, ph + 40, &(total as u64).to_le_bytes());
    put(&mut f, ph + 48, &0x1000u64.to_le_bytes());
    put(&mut f, info_off, &info);
    put(&mut f, str_off, &shstrtab);
    // section 1: .go.buildinfo; section 2: .shstrtab
    let sec = |f: &mut Vec<u8>,
               i: usize,
               name: u32,
               ty: u32,
               flags: u64,
               addr: u64,
               off: usize,
               size: usize| {
        let h = sh_off + i * 64;
        put(f, h, &name.to_le_bytes());
        put(f, h + 4, &ty.to_le_bytes());
        put(f, h + 8, &flags.to_le_bytes());
        put(f, h + 16, &addr.to_le_bytes());
        put(f, h + 24, &(off as u64).to_le_bytes());
        put(f, h + 32, &(size as u64).to_le_bytes());
        put(f, h + 48, &1u64.to_le_bytes());
    };
    sec(
        &mut f,
        1,
        1,
        1,
        3,
        BASE + info_off as u64,
        info_off,
        info.len(),
    );
    sec(&mut f, 2, 15, 3, 0, 0, str_off, shstrtab.len());
    f
}
