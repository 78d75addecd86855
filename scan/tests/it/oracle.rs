//! Oracle tests: each version scheme against its native implementation over generated cases.
//!
//! The tools are installed by `scan/tests/setup.sh` (under `$BERTH_TEST_TOOLS`, default
//! `/var/cache/berth-test`). A missing tool fails the test with a message naming the script.

use std::cmp::Ordering;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use berth_scan::version::{Scheme, maven};

fn tools() -> PathBuf {
    std::env::var_os("BERTH_TEST_TOOLS")
        .map_or_else(|| PathBuf::from("/var/cache/berth-test"), PathBuf::from)
}

fn require(path: &std::path::Path, what: &str) {
    assert!(
        path.exists(),
        "oracle {what} not found at {}; run `bash scan/tests/setup.sh` as root (it installs {what})",
        path.display()
    );
}

/// Deterministic xorshift generator, so every run checks the same cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
}

/// The one place these tests start a process: oracle tools, test-only, never in the scanner.
#[expect(
    clippy::disallowed_methods,
    reason = "oracle tools are test-only child processes; berth-scan itself spawns nothing"
)]
pub(crate) fn oracle_cmd(program: impl AsRef<std::ffi::OsStr>) -> Command {
    Command::new(program)
}

/// Runs `cmd`, feeding `input` on stdin, and returns stdout lines.
fn run(mut cmd: Command, input: &str) -> Vec<String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start oracle {cmd:?}: {e}; run `bash scan/tests/setup.sh`")
        });
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("oracle runs");
    writer
        .join()
        .expect("writer thread")
        .expect("write to oracle");
    assert!(
        out.status.success(),
        "oracle {cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn ord(s: &str) -> Ordering {
    match s.trim().parse::<i64>().expect("oracle prints an integer") {
        n if n < 0 => Ordering::Less,
        0 => Ordering::Equal,
        _ => Ordering::Greater,
    }
}

/// Makes pairs from a version list: random pairs plus each version against a neighbour, so
/// near-equal versions are well represented.
fn pairs(rng: &mut Rng, versions: &[String], n: usize) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let a = &versions[rng.below(versions.len())];
        let b = if i % 3 == 0 {
            &versions[(i / 3) % versions.len()]
        } else {
            &versions[rng.below(versions.len())]
        };
        out.push((a.clone(), b.clone()));
    }
    out
}

fn check(scheme: Scheme, cases: &[(String, String)], oracle: &[Ordering]) {
    assert_eq!(cases.len(), oracle.len(), "oracle answered every case");
    let mut failures = Vec::new();
    for ((a, b), want) in cases.iter().zip(oracle) {
        match scheme.compare(a, b) {
            Ok(got) if got == *want => {}
            got => failures.push(format!("{a:?} vs {b:?}: oracle {want:?}, berth {got:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {} cases disagree:\n{}",
        failures.len(),
        cases.len(),
        scheme.name(),
        failures.join("\n")
    );
}

fn gen_dpkg(rng: &mut Rng) -> String {
    let toks = [
        "0", "1", "2", "9", "10", "01", "a", "b", "rc", "~", "~~", "+", ".", "dfsg", "deb12u", "z",
        "A",
    ];
    let mut s = String::new();
    if rng.chance(15) {
        s.push_str(rng.pick(&["0:", "1:", "2:"]));
    }
    s.push_str(rng.pick(&["0", "1", "2", "10", "1.2", "2.36"]));
    for _ in 0..rng.below(5) {
        s.push_str(rng.pick(&toks));
    }
    if rng.chance(70) {
        s.push('-');
        s.push_str(rng.pick(&["1", "0", "9", "10", "1ubuntu", "a"]));
        for _ in 0..rng.below(4) {
            s.push_str(rng.pick(&toks));
        }
    }
    s
}

#[test]
fn dpkg_matches_dpkg_compare_versions() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let versions: Vec<String> = (0..400).map(|_| gen_dpkg(&mut rng)).collect();
    let cases = pairs(&mut rng, &versions, 1200);
    let input: String = cases.iter().map(|(a, b)| format!("{a} {b}\n")).collect();
    let mut cmd = oracle_cmd("bash");
    cmd.arg("-c").arg(
        "while read -r a b; do if dpkg --compare-versions \"$a\" lt \"$b\" 2>/dev/null; then echo -1; \
         elif dpkg --compare-versions \"$a\" eq \"$b\" 2>/dev/null; then echo 0; else echo 1; fi; done",
    );
    require(std::path::Path::new("/usr/bin/dpkg"), "dpkg");
    let oracle: Vec<Ordering> = run(cmd, &input).iter().map(|l| ord(l)).collect();
    check(Scheme::Dpkg, &cases, &oracle);
}

#[test]
fn rpm_matches_librpm_label_compare() {
    require(std::path::Path::new("/usr/bin/python3"), "python3");
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let toks = [
        "1", "2", "10", "01", "0", "a", "b", "rc", "~", "^", ".", "_", "+", "git", "el8", "Z",
    ];
    let field = |rng: &mut Rng| {
        let mut s = rng.pick(&["1", "2", "0", "10", "1.0", "a"]).to_owned();
        for _ in 0..rng.below(5) {
            s.push_str(rng.pick(&toks));
        }
        s
    };
    let evrs: Vec<(String, String, String)> = (0..400)
        .map(|_| {
            let e = if rng.chance(15) {
                rng.pick(&["0", "1", "2"]).to_owned()
            } else {
                String::new()
            };
            (e, field(&mut rng), field(&mut rng))
        })
        .collect();
    let mut cases = Vec::new();
    let mut input = String::new();
    for i in 0..1500 {
        let a = &evrs[rng.below(evrs.len())];
        let b = if i % 3 == 0 {
            &evrs[(i / 3) % evrs.len()]
        } else {
            &evrs[rng.below(evrs.len())]
        };
        let s = |(e, v, r): &(String, String, String)| {
            if e.is_empty() {
                format!("{v}-{r}")
            } else {
                format!("{e}:{v}-{r}")
            }
        };
        cases.push((s(a), s(b)));
        input.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            a.0, a.1, a.2, b.0, b.1, b.2
        ));
    }
    let mut cmd = oracle_cmd("/usr/bin/python3");
    cmd.arg("-c").arg(
        "import sys\ntry:\n import rpm\nexcept ImportError:\n sys.exit('python3-rpm missing: run scan/tests/setup.sh')\n\
         for line in sys.stdin:\n f=line.rstrip('\\n').split('\\t')\n a=(f[0] or None,f[1],f[2]); b=(f[3] or None,f[4],f[5])\n print(rpm.labelCompare(a,b))\n",
    );
    let oracle: Vec<Ordering> = run(cmd, &input).iter().map(|l| ord(l)).collect();
    check(Scheme::Rpm, &cases, &oracle);
}

fn gen_pep440(rng: &mut Rng) -> String {
    let mut s = String::new();
    if rng.chance(5) {
        s.push('v');
    }
    if rng.chance(8) {
        s.push_str(rng.pick(&["1!", "0!", "2!"]));
    }
    let n = 1 + rng.below(4);
    let nums: Vec<&str> = (0..n)
        .map(|_| rng.pick(&["0", "1", "2", "10", "00", "3"]))
        .collect();
    s.push_str(&nums.join("."));
    if rng.chance(35) {
        s.push_str(rng.pick(&["", ".", "-", "_"]));
        s.push_str(rng.pick(&[
            "a", "alpha", "b", "beta", "rc", "c", "pre", "preview", "RC", "A",
        ]));
        if rng.chance(80) {
            s.push_str(rng.pick(&["", "."]));
            s.push_str(rng.pick(&["0", "1", "2", "10"]));
        }
    }
    if rng.chance(25) {
        if rng.chance(30) {
            s.push('-');
            s.push_str(rng.pick(&["1", "2", "0"]));
        } else {
            s.push_str(rng.pick(&[".", "-", "_", ""]));
            s.push_str(rng.pick(&["post", "rev", "r"]));
            s.push_str(rng.pick(&["", "1", "2", "0"]));
        }
    }
    if rng.chance(25) {
        s.push_str(rng.pick(&[".", "-", "_", ""]));
        s.push_str("dev");
        s.push_str(rng.pick(&["", "0", "1", "3"]));
    }
    if rng.chance(12) {
        s.push('+');
        s.push_str(rng.pick(&["abc", "1", "ubuntu.1", "a.2", "2.a", "local-7", "00"]));
    }
    s
}

#[test]
fn pep440_matches_python_packaging() {
    let py = tools().join("venv/bin/python");
    require(&py, "python `packaging` (venv)");
    let mut rng = Rng(0x0DDB_1A5E_5BAD_5EED);
    let versions: Vec<String> = (0..500).map(|_| gen_pep440(&mut rng)).collect();
    let cases = pairs(&mut rng, &versions, 2000);
    let input: String = cases.iter().map(|(a, b)| format!("{a}\t{b}\n")).collect();
    let mut cmd = oracle_cmd(py);
    cmd.arg("-c").arg(
        "import sys\nfrom packaging.version import Version\nfor line in sys.stdin:\n a,b=line.rstrip('\\n').split('\\t')\n \
         x,y=Version(a),Version(b)\n print(-1 if x<y else (0 if x==y else 1))\n",
    );
    let oracle: Vec<Ordering> = run(cmd, &input).iter().map(|l| ord(l)).collect();
    check(Scheme::Pep440, &cases, &oracle);
}

fn gen_semver(rng: &mut Rng) -> String {
    let num = ["0", "1", "2", "10", "11"];
    let mut s = format!("{}.{}.{}", rng.pick(&num), rng.pick(&num), rng.pick(&num));
    if rng.chance(45) {
        s.push('-');
        let k = 1 + rng.below(3);
        let ids: Vec<&str> = (0..k)
            .map(|_| {
                rng.pick(&[
                    "alpha", "beta", "rc", "0", "1", "2", "11", "x-y", "RC", "a1", "1a",
                ])
            })
            .collect();
        s.push_str(&ids.join("."));
    }
    if rng.chance(10) {
        s.push('+');
        s.push_str(rng.pick(&["build.1", "sha.abc", "001"]));
    }
    s
}

fn node_semver(cases: &[(String, String)]) -> Vec<Ordering> {
    let semver = tools().join("node/node_modules/semver");
    require(&semver.join("package.json"), "npm `semver`");
    let input: String = cases.iter().map(|(a, b)| format!("{a}\t{b}\n")).collect();
    let mut cmd = oracle_cmd("node");
    cmd.arg("-e").arg(format!(
        "const s=require({:?});let d='';process.stdin.on('data',c=>d+=c).on('end',()=>{{\
         const o=[];for(const l of d.split('\\n')){{if(!l)continue;const [a,b]=l.split('\\t');o.push(s.compare(a,b));}}\
         process.stdout.write(o.join('\\n')+'\\n');}});",
        semver.display().to_string()
    ));
    run(cmd, &input).iter().map(|l| ord(l)).collect()
}

#[test]
fn npm_matches_npm_semver() {
    let mut rng = Rng(0xC0FF_EE00_1234_4321);
    let versions: Vec<String> = (0..500).map(|_| gen_semver(&mut rng)).collect();
    let cases = pairs(&mut rng, &versions, 2000);
    let oracle = node_semver(&cases);
    check(Scheme::Npm, &cases, &oracle);
    check(Scheme::Semver, &cases, &oracle);
}

/// Go module versions are SemVer with a `v`; the oracle is npm semver on the same versions, and
/// `+incompatible` must not change the order.
#[test]
fn go_matches_semver_with_v_prefix() {
    let mut rng = Rng(0x5EED_0000_0000_0042);
    let versions: Vec<String> = (0..300)
        .map(|_| gen_semver(&mut rng))
        .filter(|v| !v.contains('+'))
        .collect();
    let cases = pairs(&mut rng, &versions, 1000);
    let oracle = node_semver(&cases);
    let go_cases: Vec<(String, String)> = cases
        .iter()
        .enumerate()
        .map(|(i, (a, b))| {
            let b = if i % 4 == 0 {
                format!("v{b}+incompatible")
            } else {
                format!("v{b}")
            };
            (format!("v{a}"), b)
        })
        .collect();
    check(Scheme::Go, &go_cases, &oracle);
}

fn gen_maven(rng: &mut Rng) -> String {
    let toks = [
        "1", "0", "2", "10", "00", "alpha", "beta", "a1", "b2", "m3", "rc", "cr", "snapshot",
        "SNAPSHOT", "ga", "final", "release", "sp", "jre", "android", "foo", "RC1", "1a", "x2",
    ];
    let mut s = rng
        .pick(&["1", "2", "0", "1.0", "31.1", "32.0.0"])
        .to_owned();
    for _ in 0..rng.below(4) {
        s.push_str(rng.pick(&[".", "-", "."]));
        s.push_str(rng.pick(&toks));
    }
    s
}

#[test]
fn maven_matches_comparable_version() {
    let jar = tools().join("maven/maven-artifact.jar");
    require(&jar, "Maven's maven-artifact jar (ComparableVersion)");
    let mut rng = Rng(0xFACE_B00C_0000_0001);
    let versions: Vec<String> = (0..400).map(|_| gen_maven(&mut rng)).collect();
    // ComparableVersion's main compares each argument with the one before it.
    let seq: Vec<String> = (0..1500)
        .map(|i| {
            if i % 3 == 0 {
                versions[(i / 3) % versions.len()].clone()
            } else {
                versions[rng.below(versions.len())].clone()
            }
        })
        .collect();
    let mut cmd = oracle_cmd("java");
    cmd.arg("-cp")
        .arg(&jar)
        .arg("org.apache.maven.artifact.versioning.ComparableVersion")
        .args(&seq);
    let lines = run(cmd, "");
    let mut cases = Vec::new();
    let mut oracle = Vec::new();
    let mut canon = Vec::new();
    for l in &lines {
        if let Some(rest) = l.strip_prefix("   ") {
            let f: Vec<&str> = rest.split_whitespace().collect();
            assert_eq!(f.len(), 3, "unexpected oracle line {l:?}");
            cases.push((f[0].to_owned(), f[2].to_owned()));
            oracle.push(match f[1] {
                "<" => Ordering::Less,
                "==" => Ordering::Equal,
                _ => Ordering::Greater,
            });
        } else if let Some((v, c)) = l
            .split_once(". ")
            .and_then(|(_, rest)| rest.split_once(" -> "))
        {
            canon.push((
                v.to_owned(),
                c.split("; tokens:").next().unwrap_or_default().to_owned(),
            ));
        }
    }
    assert_eq!(cases.len(), seq.len() - 1);
    check(Scheme::Maven, &cases, &oracle);
    for (v, c) in canon {
        assert_eq!(maven::canonical(&v), c, "canonical form of {v:?}");
    }
}
