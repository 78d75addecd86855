//! The job's own rootless BuildKit daemon (`rootlesskit buildkitd`), optionally on a root shared
//! by the jobs of one project, and the images it built, read from its build history.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::service::{await_start, socket_exists};
use super::{PodmanSandbox, io, mkdir};
use crate::process::{self, CommandSpec};
use crate::{BuiltImage, SandboxError};

/// How long buildkitd may take to listen.
const BUILDKIT_START: Duration = Duration::from_secs(20);

/// One image in BuildKit's build history.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HistoryImage {
    digest: String,
    hex: String,
    media_type: Value,
    size: Value,
    names: Vec<String>,
}

/// The images of `buildctl debug histories --format '{{json .}}'` output (one JSON event per
/// line); lines that are not a finished build with a sha256 result are skipped.
fn built_by_history(text: &str) -> Vec<HistoryImage> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|event| {
            let record = event.get("record")?;
            let result = record.get("Result")?.get("ResultDeprecated")?;
            let digest = result.get("digest")?.as_str()?.to_owned();
            let hex = digest.strip_prefix("sha256:")?;
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            let names: Vec<String> = record
                .get("Exporters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|e| e.get("Attrs")?.get("name")?.as_str())
                .flat_map(|n| n.split(',').map(str::to_owned).collect::<Vec<_>>())
                .collect();
            Some(HistoryImage {
                hex: hex.to_owned(),
                media_type: result
                    .get("media_type")
                    .cloned()
                    .unwrap_or(json!("application/vnd.oci.image.manifest.v1+json")),
                size: result.get("size").cloned().unwrap_or(json!(0)),
                names: if names.is_empty() {
                    vec![digest.clone()]
                } else {
                    names
                },
                digest,
            })
        })
        .collect()
}

/// Makes `built` scannable as an OCI layout `layouts/<hex>` beneath `buildkit`: its index names
/// the image's manifest, and `blobs` links to BuildKit's content store (no copy).
fn write_layout(
    buildkit: &berth_beneath::Dir,
    built: &HistoryImage,
    blobs: &Path,
) -> std::io::Result<()> {
    let layout = buildkit
        .mkdir(Path::new("layouts"), 0o755)?
        .mkdir(Path::new(&built.hex), 0o755)?;
    layout.write_atomic("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644)?;
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": built.media_type,
            "digest": built.digest,
            "size": built.size,
        }],
    });
    layout.write_atomic("index.json", index.to_string().as_bytes(), 0o644)?;
    match nix::unistd::symlinkat(blobs, &layout, "blobs") {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

impl PodmanSandbox {
    /// Images the job's BuildKit produced, from its build history, each made scannable as an
    /// OCI layout over BuildKit's own content store (no copy). Best effort: no daemon, no
    /// `buildctl` beside `buildkitd`, or no history means none.
    pub(super) async fn buildkit_images(&self) -> Vec<BuiltImage> {
        let Some(buildctl) = self
            .settings
            .buildkitd
            .as_ref()
            .map(|d| d.with_file_name("buildctl"))
            .filter(|c| c.is_file())
        else {
            return Vec::new();
        };
        let dir = self.paths.buildkit();
        let socket = dir.join("sock/buildkitd.sock");
        if !socket.exists() {
            return Vec::new();
        }
        let spec = self.command().args([
            "--addr".to_owned(),
            format!("unix://{}", socket.display()),
            "debug".to_owned(),
            "histories".to_owned(),
            "--format".to_owned(),
            "{{json .}}".to_owned(),
        ]);
        let mut spec = spec;
        spec.program = buildctl;
        let Ok(output) = process::run(&spec, &CancellationToken::new()).await else {
            return Vec::new();
        };
        // The job's BuildKit directory is the job identity's: everything there is made beneath
        // a handle on it, no link followed.
        let Ok(buildkit) = berth_beneath::Dir::open(&dir) else {
            return Vec::new();
        };
        let blobs = dir.join("root/runc-overlayfs/content/blobs");
        built_by_history(&String::from_utf8_lossy(&output.stdout))
            .into_iter()
            .filter_map(|built| {
                write_layout(&buildkit, &built, &blobs).ok()?;
                Some(BuiltImage {
                    store: dir.join("layouts").join(&built.hex),
                    id: built.hex,
                    names: built.names,
                    builder: "buildkit".to_owned(),
                    oci_layout: true,
                })
            })
            .collect()
    }

    /// Starts buildkitd on the project's shared root, holding `flock` on it for the daemon's life.
    /// Returns None when another job of the project holds it: that job keeps the cache warm, and
    /// this one builds with its own root (a cold cache) rather than waiting.
    async fn start_shared_buildkit(
        &self,
        spec: &CommandSpec,
        shared: &Path,
        log: &Path,
    ) -> Result<Option<u32>, SandboxError> {
        const LOCKED: i32 = 75;
        mkdir(shared, 0o700)?;
        // Its last use, for pruning (berth_stages::prune::LAST_USED).
        let stamp = shared.join(".berth-last-used");
        std::fs::File::create(&stamp)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()))
            .map_err(io(&stamp))?;
        let root_arg = self.paths.buildkit().join("root").into_os_string();
        let mut locked = CommandSpec::new("flock");
        locked.env = spec.env.clone();
        locked = locked.args([
            "--nonblock".into(),
            "--conflict-exit-code".into(),
            LOCKED.to_string().into(),
            shared.join(".lock").into_os_string(),
            spec.program.clone().into_os_string(),
        ]);
        locked.args.extend(spec.args.iter().map(|a| {
            if *a == root_arg {
                shared.join("root").into_os_string()
            } else {
                a.clone()
            }
        }));
        let pid = process::spawn_detached(&locked, log)
            .map_err(SandboxError::runtime("start the project's shared BuildKit"))?;
        // A conflict makes flock exit at once; a held lock keeps it running with the daemon.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let child = nix::unistd::Pid::from_raw(pid.cast_signed());
        match nix::sys::wait::waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, LOCKED)) => Ok(None),
            _ => Ok(Some(pid)),
        }
    }

    /// Starts the job's own rootless BuildKit daemon (`rootlesskit buildkitd`, native overlayfs,
    /// its own root, socket and OpenTelemetry socket, so jobs never share one).
    pub(super) async fn start_buildkit(&self) -> Result<(), SandboxError> {
        let Some(buildkitd) = &self.settings.buildkitd else {
            return Ok(());
        };
        let dir = self.paths.buildkit();
        mkdir(&dir, 0o700)?;
        mkdir(&dir.join("sock"), 0o755)?;
        let socket = dir.join("sock/buildkitd.sock");
        let mut spec = self
            .command()
            .args([format!("--state-dir={}", dir.join("rk").display())]);
        spec = if self.settings.buildkit_host_network {
            spec.args(["--net=host"])
        } else {
            spec.args([
                "--net=slirp4netns",
                "--disable-host-loopback",
                "--copy-up=/etc",
            ])
        };
        spec.program = PathBuf::from("rootlesskit");
        spec = spec.args([
            buildkitd.clone().into_os_string(),
            "--root".into(),
            dir.join("root").into_os_string(),
            "--addr".into(),
            format!("unix://{}", socket.display()).into(),
            "--otel-socket-path".into(),
            dir.join("otel.sock").into_os_string(),
            "--oci-worker=true".into(),
            "--containerd-worker=false".into(),
            "--oci-worker-snapshotter=overlayfs".into(),
            "--cdi-disabled".into(),
        ]);
        let log = self.paths.work().join("buildkitd.log");
        let pid = match &self.settings.buildkit_shared_root {
            Some(shared) => match self.start_shared_buildkit(&spec, shared, &log).await? {
                Some(pid) => pid,
                None => process::spawn_detached(&spec, &log)
                    .map_err(SandboxError::runtime("start the job's BuildKit"))?,
            },
            None => process::spawn_detached(&spec, &log)
                .map_err(SandboxError::runtime("start the job's BuildKit"))?,
        };
        await_start(
            "rootless buildkitd",
            pid,
            &log,
            BUILDKIT_START,
            async || socket_exists(&socket),
        )
        .await?;
        // Job containers run as other users too; the socket's directory is the job's alone.
        let _ = std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_names_each_finished_image_by_its_exporter_names_or_digest() {
        let hex = "a".repeat(64);
        let named = json!({ "record": {
            "Result": { "ResultDeprecated": { "digest": format!("sha256:{hex}"), "size": 7 } },
            "Exporters": [{ "Attrs": { "name": "reg/app:1,reg/app:latest" } }],
        }});
        let unnamed = json!({ "record": {
            "Result": { "ResultDeprecated": { "digest": format!("sha256:{}", "b".repeat(64)) } },
        }});
        let text = format!("{named}\nnot json\n{unnamed}\n{{\"record\":{{}}}}\n");
        let images = built_by_history(&text);
        assert_eq!(images.len(), 2, "{images:?}");
        assert_eq!(images[0].names, ["reg/app:1", "reg/app:latest"]);
        assert_eq!(images[0].size, json!(7));
        assert_eq!(images[1].names, [format!("sha256:{}", "b".repeat(64))]);
    }

    fn history_image() -> HistoryImage {
        built_by_history(
            &json!({ "record": { "Result": { "ResultDeprecated": {
                "digest": format!("sha256:{}", "c".repeat(64)) } } } })
            .to_string(),
        )
        .pop()
        .expect("one image")
    }

    #[test]
    fn a_layout_is_written_beneath_the_buildkit_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let buildkit = berth_beneath::Dir::open(tmp.path()).expect("dir");
        let built = history_image();
        write_layout(&buildkit, &built, Path::new("/blobs")).expect("layout");
        let layout = tmp.path().join("layouts").join(&built.hex);
        let index = std::fs::read_to_string(layout.join("index.json")).expect("index");
        assert!(index.contains(&built.digest), "{index}");
        assert_eq!(
            std::fs::read_link(layout.join("blobs")).expect("link"),
            Path::new("/blobs")
        );
        // Twice is fine: the job may be scanned after every stage.
        write_layout(&buildkit, &built, Path::new("/blobs")).expect("again");
    }

    /// The job owns its BuildKit directory: a link it plants where a layout goes (the layouts
    /// directory or one layout) is not followed, and nothing is written where it points.
    #[test]
    fn a_planted_link_for_a_layout_is_not_followed() {
        let built = history_image();
        for planted in ["layouts".to_owned(), format!("layouts/{}", built.hex)] {
            let tmp = tempfile::tempdir().expect("tempdir");
            let elsewhere = tmp.path().join("elsewhere");
            std::fs::create_dir_all(&elsewhere).expect("mkdir");
            let bk = tmp.path().join("buildkit");
            std::fs::create_dir_all(bk.join("layouts")).expect("mkdir");
            if planted == "layouts" {
                std::fs::remove_dir(bk.join("layouts")).expect("rmdir");
            }
            std::os::unix::fs::symlink(&elsewhere, bk.join(&planted)).expect("plant");
            let buildkit = berth_beneath::Dir::open(&bk).expect("dir");
            assert!(
                write_layout(&buildkit, &built, Path::new("/blobs")).is_err(),
                "{planted}"
            );
            assert_eq!(
                std::fs::read_dir(&elsewhere).expect("read").count(),
                0,
                "{planted}: something was written through the link"
            );
        }
    }

    #[test]
    fn a_digest_that_is_not_sha256_hex_names_no_directory() {
        for digest in ["sha256:../../etc", "sha512:abc", "sha256:"] {
            let line =
                json!({ "record": { "Result": { "ResultDeprecated": { "digest": digest } } } });
            assert!(built_by_history(&line.to_string()).is_empty(), "{digest}");
        }
    }
}
