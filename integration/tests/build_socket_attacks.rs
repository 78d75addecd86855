//! Hostile jobs against the build socket, on real rootless Podman: each tries an escape the old
//! denylist let through (a symlinked bind source, a case-folded `binds`, `fromSrc` and `remote`
//! naming host paths, a build RUN step reaching the host's loopback) and must see a refusal,
//! while a victim's marker never reaches it; and the legitimate `docker run` flow still works
//! with `build_socket = "run"`.
//!
//! The victim's files are owned by the attacking job's own identity but lie outside its builds
//! directory: what a filter hole could reach even with one identity per job, so each refusal
//! here is the build socket's own, not the containment layer's.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use berth_integration::{FakeRunner, cleaned, ok, payload, require_host};

const BUILD_TOOLS: &str = "localhost/build-tools:latest";
/// A directory with a secret in it, outside the attacker's builds directory but owned by its
/// identity.
struct Victim {
    dir: PathBuf,
    marker: String,
}

impl Victim {
    #[expect(
        clippy::disallowed_methods,
        reason = "the test plays the host and packs the victim's archive with tar"
    )]
    fn plant(owner: &str, name: &str) -> Self {
        let marker = format!("VICTIM-{}-{name}-MARKER", std::process::id());
        let dir = Path::new("/var/tmp").join(format!("berth-victim-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("builds/ctx/sub")).expect("victim");
        std::fs::write(dir.join("builds/secret"), &marker).expect("secret");
        std::fs::write(
            dir.join("builds/ctx/Dockerfile"),
            format!("FROM localhost/busybox:latest\nRUN echo {marker}\n"),
        )
        .expect("dockerfile");
        // An archive Podman's import would read: the marker as a file of an image.
        let tar = std::process::Command::new("tar")
            .arg("-C")
            .arg(dir.join("builds"))
            .arg("-cf")
            .arg(dir.join("builds/secret.tar"))
            .arg("secret")
            .status()
            .expect("tar");
        assert!(tar.success());
        berth_integration::give_to(&dir, owner);
        Self { dir, marker }
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn prepared(config: &str) -> FakeRunner {
    require_host();
    let mut job = FakeRunner::new(payload(BUILD_TOOLS)).with_config(config);
    ok(&job.stage(&["config"]));
    ok(&job.stage(&["prepare"]));
    job
}

fn host_builds(job: &FakeRunner) -> PathBuf {
    job.work_dir().join("builds")
}

fn identity(job: &FakeRunner) -> String {
    job.identity().expect("a prepared job holds an identity")
}

#[test]
fn hostile_jobs_are_refused_and_never_see_the_victims_marker() {
    let mut job = prepared("build_socket = \"run\"\n");
    let victim = Victim::plant(&identity(&job), "escape");
    let builds = host_builds(&job);
    let v = victim.dir.display();
    let b = builds.display();
    let script = format!(
        r#"set +e +o pipefail
S=/run/berth/docker.sock
B=localhost/busybox:latest
# 1. A link in the job's own builds directory to another job's, bound by its host path.
ln -s {v}/builds /builds/x
docker run --rm -v "{b}/x:/h:ro" $B cat /h/secret > /tmp/1 2>&1; cat /tmp/1
grep -q 'socket refused' /tmp/1 && echo refused-symlink-bind
# 2. Another job's directory under a case-folded key, past a checker that only knew `Binds`.
curl -s --unix-socket $S -X POST -H content-type:application/json http://d/v1.41/containers/create \
  -d '{{"Image":"'$B'","Cmd":["cat","/h/secret"],"HostConfig":{{"binds":["{v}/builds:/h:ro"]}}}}' > /tmp/2; cat /tmp/2
grep -q 'socket refused' /tmp/2 && echo refused-folded-binds
ID=$(sed -n 's/.*"Id":"\([0-9a-f]*\)".*/\1/p' /tmp/2)
[ -n "$ID" ] && curl -s --unix-socket $S -X POST http://d/v1.41/containers/$ID/start && curl -s --unix-socket $S "http://d/v1.41/containers/$ID/logs?stdout=1"
# 3. Import a host file as an image.
curl -s --unix-socket $S -X POST "http://d/v1.41/images/create?fromSrc={v}/builds/secret.tar&repo=stolen&tag=1" > /tmp/3; cat /tmp/3
grep -q 'socket refused' /tmp/3 && echo refused-fromsrc
docker run --rm stolen:1 cat /secret 2>&1
curl -s --unix-socket $S -X POST "http://d/v1.41/images/create?fromSrc=/etc/passwd&repo=passwd" | grep -q 'socket refused' && echo refused-fromsrc-passwd
# 4. Build from a host directory (Podman 4.3.1 also deletes the parent of `remote`).
curl -s --unix-socket $S -X POST "http://d/v4.0.0/libpod/build?remote={v}/builds/ctx/sub&dockerfile=%2E%2E%2FDockerfile&t=stolen2" > /tmp/4; cat /tmp/4
grep -q 'socket refused' /tmp/4 && echo refused-remote
curl -s --unix-socket $S -X POST "http://d/v4.0.0/libpod/build?%72emote={v}/builds/ctx/sub&t=stolen3" | grep -q 'socket refused' && echo refused-encoded-remote
true"#
    );
    let r = job.run("build_script", &script);
    ok(&r);
    for marker in [
        "refused-symlink-bind",
        "refused-folded-binds",
        "refused-fromsrc",
        "refused-fromsrc-passwd",
        "refused-remote",
        "refused-encoded-remote",
    ] {
        assert!(r.stdout.contains(marker), "{marker} missing: {}", r.all());
    }
    assert!(
        !r.all().contains(&victim.marker),
        "the victim's secret reached the job: {}",
        r.all()
    );
    assert!(
        victim.dir.join("builds/ctx/Dockerfile").is_file(),
        "the victim's build context was deleted"
    );
    cleaned(job);
}

#[test]
fn build_run_steps_never_reach_the_hosts_loopback() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let mut job = prepared("");
    let script = format!(
        r#"set +e +o pipefail
mkdir -p /tmp/ctx && cd /tmp/ctx
cat > Containerfile <<'CF'
FROM localhost/busybox:latest
RUN (wget -T 3 -q -O- http://127.0.0.1:{port}/ ; wget -T 3 -q -O- http://10.0.2.2:{port}/ ; timeout 5 nc 127.0.0.1 {port} </dev/null ; timeout 5 nc 10.0.2.2 {port} </dev/null) >/dev/null 2>&1; echo run-step-done
RUN grep -q tap0 /proc/net/dev && echo in-the-jobs-network
CF
DOCKER_BUILDKIT=0 docker build --no-cache -f Containerfile -t localhost/probe:docker . > /tmp/d 2>&1; cat /tmp/d
grep -q run-step-done /tmp/d && echo docker-build-ok
grep -q in-the-jobs-network /tmp/d && echo docker-build-network
podman --remote build --no-cache -t localhost/probe:podman . > /tmp/p 2>&1; cat /tmp/p
grep -q run-step-done /tmp/p && echo podman-build-ok
grep -q in-the-jobs-network /tmp/p && echo podman-build-network
DOCKER_BUILDKIT=0 docker build --network host -f Containerfile -t localhost/probe:host . 2>&1 | grep -q 'socket refused' && echo refused-host-network
true"#
    );
    let r = job.run("build_script", &script);
    ok(&r);
    let connected = match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => None,
        Ok((_, from)) => Some(from),
        Err(e) => panic!("accept: {e}"),
    };
    assert!(
        connected.is_none(),
        "a RUN step connected to the host's loopback from {connected:?}: {}",
        r.all()
    );
    // RUN steps share the job pod's network (its slirp4netns `tap0`), not a dead end.
    for marker in [
        "docker-build-ok",
        "docker-build-network",
        "podman-build-ok",
        "podman-build-network",
        "refused-host-network",
    ] {
        assert!(r.stdout.contains(marker), "{marker} missing: {}", r.all());
    }
    cleaned(job);
}

#[test]
fn in_run_mode_a_job_runs_containers_with_its_own_binds_and_tmpfs() {
    let mut job = prepared("build_socket = \"run\"\n");
    let b = host_builds(&job);
    let script = format!(
        r#"set +e +o pipefail
mkdir -p /builds/data && echo hello-from-the-job > /builds/data/hello
B=localhost/busybox:latest
docker run -d --name web -v "{b}/data:/src:ro" --tmpfs /scratch $B sh -c 'cat /src/hello; echo tmpfs-ok > /scratch/y && cat /scratch/y' >/dev/null
docker wait web
docker logs web
docker rm web >/dev/null && echo removed
podman --remote run -d --name pweb -v "{b}/data:/src:ro" --tmpfs /scratch $B sh -c 'cat /src/hello | sed s/job/podman/' > /tmp/p 2>&1; cat /tmp/p
podman --remote wait pweb
podman --remote logs pweb
podman --remote rm pweb >/dev/null && echo podman-removed
docker run --rm -v /etc:/h $B true 2>&1 | grep -q 'socket refused' && echo refused-etc
docker create --name kept $B true >/dev/null
docker ps -a --format '{{{{.Names}}}}' > /tmp/ps 2>&1; cat /tmp/ps
grep -qx kept /tmp/ps && echo lists-its-own
grep -q berth- /tmp/ps || echo hides-berths-containers
true"#,
        b = b.display()
    );
    let r = job.run("build_script", &script);
    ok(&r);
    for marker in [
        "hello-from-the-job",
        "tmpfs-ok",
        "removed",
        "hello-from-the-podman",
        "podman-removed",
        "refused-etc",
        "lists-its-own",
        "hides-berths-containers",
    ] {
        assert!(r.stdout.contains(marker), "{marker} missing: {}", r.all());
    }
    cleaned(job);
}
