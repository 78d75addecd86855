//! `include:` local (forms, globs, nesting, duplicates, rules), external forms, inputs.

use berth_pipeline::{Options, compute};

use crate::common::{Files, errors_with, facts, names, run_with};

fn pipeline_with(yaml: &str, extra: &[(&str, &str)]) -> berth_pipeline::model::Pipeline {
    match run_with(yaml, extra, facts()) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn local_include_string_list_and_hash_forms() {
    let files = [
        ("ci/a.yml", "a:\n  script: [x]\n"),
        ("ci/b.yml", "b:\n  script: [x]\n"),
        ("ci/c.yml", "c:\n  script: [x]\n"),
    ];
    let p = pipeline_with(
        "include:\n  - ci/a.yml\n  - local: /ci/b.yml\n  - {local: ci/c.yml}\n",
        &files,
    );
    assert_eq!(names(&p), ["a", "b", "c"]);
}

#[test]
fn single_string_include() {
    let p = pipeline_with(
        "include: ci/a.yml\nmain:\n  script: [x]\n",
        &[("ci/a.yml", "a:\n  script: [x]\n")],
    );
    assert_eq!(names(&p), ["a", "main"]);
}

#[test]
fn glob_include_reads_matching_files_in_order() {
    let files = [
        ("ci/b.yml", "b:\n  script: [x]\n"),
        ("ci/a.yml", "a:\n  script: [x]\n"),
        ("ci/sub/c.yml", "c:\n  script: [x]\n"),
    ];
    let p = pipeline_with("include: 'ci/*.yml'\n", &files);
    assert_eq!(names(&p), ["a", "b"]);
}

#[test]
fn including_file_wins_over_included() {
    let p = pipeline_with(
        "include: ci/a.yml\nvariables:\n  V: main\n",
        &[(
            "ci/a.yml",
            "variables:\n  V: included\n  W: w\na:\n  script: [x]\n",
        )],
    );
    let a = &p.jobs[0];
    assert_eq!(crate::common::var(a, "V").as_deref(), Some("main"));
    assert_eq!(crate::common::var(a, "W").as_deref(), Some("w"));
}

#[test]
fn nested_includes_and_duplicates_are_read_once() {
    let files = [
        ("ci/a.yml", "include: ci/b.yml\na:\n  script: [x]\n"),
        ("ci/b.yml", "include: ci/a.yml\nb:\n  script: [x]\n"),
    ];
    let p = pipeline_with("include: [ci/a.yml, ci/b.yml]\n", &files);
    assert_eq!(names(&p), ["b", "a"]);
}

#[test]
fn missing_and_invalid_includes_are_gitlabs_errors() {
    assert_eq!(
        errors_with("include: ci/none.yml\n", &[]),
        ["Local file `ci/none.yml` does not exist!"]
    );
    assert_eq!(
        errors_with("include: ci/x.yml\n", &[("ci/x.yml", "a: [unclosed\n")]),
        ["Included file `ci/x.yml` does not have valid YAML syntax!"]
    );
    assert_eq!(
        errors_with("include: ci/x.txt\n", &[("ci/x.txt", "a: b\n")]),
        ["Included file `ci/x.txt` does not have YAML extension!"]
    );
}

#[test]
fn include_rules_if_and_exists() {
    let files = [
        ("ci/a.yml", "a:\n  script: [x]\n"),
        ("ci/b.yml", "b:\n  script: [x]\n"),
        ("Gemfile", ""),
    ];
    let p = pipeline_with(
        "include:\n  - local: ci/a.yml\n    rules:\n      - if: $CI_COMMIT_BRANCH == \"main\"\n  - local: ci/b.yml\n    rules:\n      - exists: [Cargo.toml]\nmain:\n  script: [x]\n",
        &files,
    );
    assert_eq!(names(&p), ["a", "main"]);
}

#[test]
fn external_includes_are_refused_without_a_directory() {
    let e = errors_with(
        "include:\n  - project: group/other\n    file: ci.yml\nmain:\n  script: [x]\n",
        &[],
    );
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("Include `project: group/other` needs a GitLab server"),
        "{e:?}"
    );
    assert!(e[0].contains("external_includes"), "{e:?}");
}

#[test]
fn external_includes_read_from_the_directory() {
    let external = Files::new(&[
        (
            "projects/group/other/ci.yml",
            "include: local.yml\nfrom_project:\n  script: [x]\n",
        ),
        ("projects/group/other/local.yml", "nested:\n  script: [x]\n"),
        (
            "templates/Tpl.gitlab-ci.yml",
            "from_template:\n  script: [x]\n",
        ),
        ("remote/example.com/ci.yml", "from_remote:\n  script: [x]\n"),
        (
            "components/group/comp/templates/lint.yml",
            "spec:\n  inputs:\n    stage: {default: test}\n---\nlint:\n  stage: $[[ inputs.stage ]]\n  script: [x]\n",
        ),
    ]);
    let mut files = Files::default();
    files.0.insert(
        ".gitlab-ci.yml".into(),
        "include:\n  - project: group/other\n    file: ci.yml\n  - template: Tpl.gitlab-ci.yml\n  - https://example.com/ci.yml\n  - component: $CI_SERVER_FQDN/group/comp/lint@1.0\n    inputs: {stage: build}\n".into(),
    );
    let options = Options {
        external_includes: Some(&external),
        ..crate::common::options(facts())
    };
    let p = compute(&files, &options).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        names(&p),
        [
            "lint",
            "nested",
            "from_project",
            "from_template",
            "from_remote"
        ]
    );
}

#[test]
fn inputs_interpolate_with_types_and_defaults() {
    let p = pipeline_with(
        "include:\n  - local: ci/t.yml\n    inputs:\n      job: build-it\n      parallel: 2\n",
        &[(
            "ci/t.yml",
            "spec:\n  inputs:\n    job:\n    stage:\n      default: test\n    parallel:\n      type: number\n---\n\"$[[ inputs.job ]]\":\n  stage: $[[ inputs.stage ]]\n  parallel: $[[ inputs.parallel ]]\n  script:\n    - echo $[[ inputs.job | truncate(0,5) ]]\n",
        )],
    );
    assert_eq!(names(&p), ["build-it 1/2", "build-it 2/2"]);
    assert_eq!(p.jobs[0].script, ["echo build"]);
    assert_eq!(p.jobs[0].stage, "test");
}

#[test]
fn input_errors_are_gitlabs() {
    let spec = "spec:\n  inputs:\n    env:\n      options: [dev, prod]\n    name:\n      regex: ^[a-z]+$\n    count:\n      type: number\n      default: 1\n---\nj:\n  script:\n    - echo $[[ inputs.env ]] $[[ inputs.nope ]]\n";
    let e = errors_with(
        "include:\n  - local: ci/t.yml\n    inputs: {env: qa, name: Bad1, count: x, extra: 1}\n",
        &[("ci/t.yml", spec)],
    );
    assert_eq!(
        e,
        [
            "`ci/t.yml`: unknown input arguments: extra",
            "`ci/t.yml`: `env` input: `qa` cannot be used because it is not in the list of allowed options",
            "`ci/t.yml`: `name` input: provided value does not match required RegEx pattern",
            "`ci/t.yml`: `count` input: provided value is not a number",
        ]
    );
    let missing = errors_with(
        "include: ci/t.yml\n",
        &[(
            "ci/t.yml",
            "spec:\n  inputs:\n    env:\n---\nj:\n  script: [x]\n",
        )],
    );
    assert_eq!(
        missing,
        ["`ci/t.yml`: `env` input: required value has not been provided"]
    );
}
