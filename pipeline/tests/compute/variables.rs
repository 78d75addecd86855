//! Variables: precedence, expansion, `$$`, `expand: false`, predefined, CLI.

use berth_pipeline::slugify;

use crate::common::{Files, facts, job, options, pipeline, var};

#[test]
fn precedence_global_job_cli() {
    let mut files = Files::new(&[(
        ".gitlab-ci.yml",
        "variables: {A: global, B: global, C: global}\nt:\n  variables: {B: job, C: job}\n  script: [x]\n",
    )]);
    files.0.insert("x".into(), String::new());
    let mut opts = options(facts());
    opts.cli_variables = vec![("C".into(), "cli".into())];
    let p = berth_pipeline::compute(&files, &opts).unwrap_or_else(|e| panic!("{e}"));
    let t = job(&p, "t");
    assert_eq!(
        (
            var(t, "A").as_deref(),
            var(t, "B").as_deref(),
            var(t, "C").as_deref()
        ),
        (Some("global"), Some("job"), Some("cli"))
    );
}

#[test]
fn expansion_escaping_and_raw() {
    let p = pipeline(
        "variables:\n  BASE: /opt\n  PATHS: $BASE/bin:${BASE}/lib\n  PRICE: $$5\n  RAW: {value: $BASE, expand: false}\n  DESCRIBED: {value: x, description: shown in the run form}\n  NUM: 3\n  FLAG: true\nt:\n  variables:\n    NESTED: $PATHS\n  script: [x]\n",
    );
    let t = job(&p, "t");
    assert_eq!(var(t, "PATHS").as_deref(), Some("/opt/bin:/opt/lib"));
    assert_eq!(var(t, "NESTED").as_deref(), Some("/opt/bin:/opt/lib"));
    assert_eq!(var(t, "PRICE").as_deref(), Some("$5"));
    assert_eq!(var(t, "RAW").as_deref(), Some("$BASE"));
    assert!(t.variables.iter().any(|v| v.key == "RAW" && v.raw));
    assert_eq!(var(t, "DESCRIBED").as_deref(), Some("x"));
    assert_eq!(
        (var(t, "NUM").as_deref(), var(t, "FLAG").as_deref()),
        (Some("3"), Some("true"))
    );
}

#[test]
fn predefined_variables_from_facts() {
    let mut f = facts();
    f.branch = Some("Feature/ÜBER_long".into());
    let files = Files::new(&[(
        ".gitlab-ci.yml",
        "build job:\n  stage: build\n  script: [x]\n",
    )]);
    let p = berth_pipeline::compute(&files, &options(f)).unwrap_or_else(|e| panic!("{e}"));
    let t = job(&p, "build job");
    let expect = [
        ("CI", "true"),
        ("GITLAB_CI", "true"),
        ("CI_COMMIT_SHA", "0123456789abcdef0123456789abcdef01234567"),
        ("CI_COMMIT_SHORT_SHA", "01234567"),
        ("CI_COMMIT_BRANCH", "Feature/ÜBER_long"),
        ("CI_COMMIT_REF_NAME", "Feature/ÜBER_long"),
        ("CI_COMMIT_REF_SLUG", "feature--ber-long"),
        ("CI_COMMIT_TITLE", "Add the thing"),
        ("CI_COMMIT_DESCRIPTION", "Longer text."),
        ("CI_PROJECT_PATH", "group/project"),
        ("CI_PROJECT_NAME", "project"),
        ("CI_PROJECT_NAMESPACE", "group"),
        ("CI_PROJECT_PATH_SLUG", "group-project"),
        ("CI_PROJECT_DIR", "/builds/group/project"),
        ("CI_DEFAULT_BRANCH", "main"),
        ("CI_PIPELINE_SOURCE", "push"),
        ("CI_JOB_NAME", "build job"),
        ("CI_JOB_NAME_SLUG", "build-job"),
        ("CI_JOB_STAGE", "build"),
    ];
    for (key, value) in expect {
        assert_eq!(var(t, key).as_deref(), Some(value), "{key}");
    }
    assert_eq!(var(t, "CI_COMMIT_TAG"), None);
    assert_eq!(var(t, "CI_NODE_INDEX"), None);
}

#[test]
fn slug_rules() {
    assert_eq!(slugify("-Feature_Branch-"), "feature-branch");
    assert_eq!(slugify(&"a".repeat(70)).len(), 63);
    assert_eq!(slugify(&format!("{}-b", "a".repeat(62))), "a".repeat(62));
}

#[test]
fn image_services_cache_artifacts_retry_timeout() {
    let p = pipeline(
        "variables: {TAG: '3.12'}\nt:\n  image: python:$TAG\n  services:\n    - postgres:16\n    - name: redis:7\n      alias: cache\n      command: [redis-server, --save, '']\n  cache:\n    - key: $CI_COMMIT_REF_SLUG\n      paths: [.cache/]\n    - key: {files: [Cargo.lock]}\n      paths: [target/]\n      policy: pull\n  artifacts:\n    name: out-$CI_JOB_NAME\n    paths: [dist/]\n    reports: {dotenv: build.env, junit: [a.xml, b.xml]}\n    expire_in: 1 week\n  retry: {max: 2, when: [script_failure], exit_codes: 137}\n  timeout: 3 hours\n  script: [x]\n",
    );
    let t = job(&p, "t");
    assert_eq!(
        t.image.as_ref().map(|i| i.name.as_str()),
        Some("python:3.12")
    );
    assert_eq!(t.services.len(), 2);
    assert_eq!(t.services[1].alias.as_deref(), Some("cache"));
    assert_eq!(t.cache[0].key, "main");
    assert_eq!(t.cache[0].policy, "pull-push");
    assert_eq!(
        t.cache[1].key, "1-default",
        "no Cargo.lock: GitLab's 'default' digest after the index prefix"
    );
    let a = t.artifacts.clone().unwrap_or_else(|| panic!("artifacts"));
    assert_eq!(a.name.as_deref(), Some("out-t"));
    assert_eq!(
        a.reports.get("dotenv"),
        Some(&vec!["build.env".to_string()])
    );
    assert_eq!(a.reports.get("junit").map(Vec::len), Some(2));
    assert_eq!(
        (
            t.retry.max,
            t.retry.when.clone(),
            t.retry.exit_codes.clone()
        ),
        (2, vec!["script_failure".to_string()], vec![137])
    );
    assert_eq!(t.timeout, Some(std::time::Duration::from_secs(3 * 3600)));
}

#[test]
fn cache_key_files_hashes_blob_ids() {
    let files = Files::new(&[
        (
            ".gitlab-ci.yml",
            "t:\n  cache:\n    key: {files: [Cargo.lock], prefix: rust}\n    paths: [target/]\n  script: [x]\n",
        ),
        ("Cargo.lock", "hello\n"),
    ]);
    let p = berth_pipeline::compute(&files, &options(facts())).unwrap_or_else(|e| panic!("{e}"));
    // git hash-object of "hello\n" is ce013625030ba8dba906f756967f9e9ca394464a; SHA-1 of that id
    // (computed with Python's hashlib):
    assert_eq!(
        job(&p, "t").cache[0].key,
        "rust-126780f1d4ae55fc826963e2e5d7ba7916e8903f"
    );
}
