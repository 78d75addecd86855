//! `rules:`, `only`/`except`, `when`, `allow_failure`, `workflow:`.

use berth_pipeline::model::{AllowFailure, When};

use crate::common::{errors, facts, job, names, pipeline, run_with, var};

#[test]
fn rules_if_when_and_variables() {
    let p = pipeline(
        "a:\n  script: [x]\n  rules:\n    - if: $CI_COMMIT_BRANCH == \"dev\"\n    - if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH\n      when: manual\n      variables: {R: rule}\nb:\n  script: [x]\n  rules:\n    - if: $CI_COMMIT_TAG\n",
    );
    assert_eq!(names(&p), ["a"]);
    let a = job(&p, "a");
    assert_eq!(a.when, When::Manual);
    assert_eq!(
        a.allow_failure,
        AllowFailure::Bool(false),
        "manual through rules does not allow failure"
    );
    assert_eq!(var(a, "R").as_deref(), Some("rule"));
}

#[test]
fn keep_never_lists_never_jobs() {
    let mut files = crate::common::Files::new(&[(
        ".gitlab-ci.yml",
        "a:\n  script: [x]\n  rules: [{when: never}]\nb:\n  script: [x]\n",
    )]);
    files.0.insert("x".into(), String::new());
    let options = berth_pipeline::Options {
        keep_never: true,
        ..crate::common::options(facts())
    };
    let p = berth_pipeline::compute(&files, &options).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(job(&p, "a").when, When::Never);
}

#[test]
fn rules_exists_and_changes() {
    let mut f = facts();
    f.changed_files = Some(vec!["src/main.rs".into()]);
    let yaml = "docker:\n  script: [x]\n  rules: [{exists: ['**/Dockerfile']}]\nrust:\n  script: [x]\n  rules: [{changes: {paths: ['src/*.rs'], compare_to: main}}]\ndocs:\n  script: [x]\n  rules: [{changes: ['docs/**/*']}]\n";
    let p = run_with(yaml, &[("build/Dockerfile", "FROM x")], f).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names(&p), ["docker", "rust"]);
    let all = run_with(yaml, &[], facts()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        names(&all),
        ["rust", "docs"],
        "changes is true when no base is known"
    );
}

#[test]
fn manual_job_allows_failure_and_exit_codes() {
    let p = pipeline(
        "m:\n  script: [x]\n  when: manual\nc:\n  script: [x]\n  allow_failure: {exit_codes: [137, 255]}\nd:\n  script: [x]\n  allow_failure: {exit_codes: 3}\nl:\n  script: [x]\n  when: delayed\n  start_in: 1h 30m\n",
    );
    assert_eq!(job(&p, "m").allow_failure, AllowFailure::Bool(true));
    assert_eq!(
        job(&p, "c").allow_failure,
        AllowFailure::ExitCodes(vec![137, 255])
    );
    assert_eq!(job(&p, "d").allow_failure, AllowFailure::ExitCodes(vec![3]));
    assert_eq!(job(&p, "l").when, When::Delayed);
    assert_eq!(
        job(&p, "l").start_in,
        Some(std::time::Duration::from_secs(5400))
    );
}

#[test]
fn only_except_refs_regexes_and_variables() {
    let p = pipeline(
        "a:\n  script: [x]\n  only: [main]\nb:\n  script: [x]\n  only: [tags]\nc:\n  script: [x]\n  only: ['/^ma/']\nd:\n  script: [x]\n  except: [branches]\ne:\n  script: [x]\n  only:\n    variables: [$CI_COMMIT_REF_NAME == \"main\"]\nf:\n  script: [x]\n  except:\n    refs: [main]\n",
    );
    assert_eq!(names(&p), ["a", "c", "e"]);
    let mut tag = facts();
    tag.tag = Some("v1.0".into());
    tag.branch = None;
    let t = run_with(
        "b:\n  script: [x]\n  only: [tags]\nn:\n  script: [x]\n  only: [branches]\n",
        &[],
        tag,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names(&t), ["b"]);
}

#[test]
fn workflow_rules_filter_and_add_variables_and_name() {
    assert_eq!(
        errors("workflow:\n  rules:\n    - if: $CI_COMMIT_TAG\na:\n  script: [x]\n"),
        ["Pipeline filtered out by workflow rules."]
    );
    let p = pipeline(
        "variables: {V: global}\nworkflow:\n  name: 'Pipeline for $CI_COMMIT_BRANCH'\n  rules:\n    - if: $CI_COMMIT_BRANCH\n      variables: {V: workflow}\na:\n  script: [x]\n",
    );
    assert_eq!(p.name.as_deref(), Some("Pipeline for main"));
    assert_eq!(var(&p.jobs[0], "V").as_deref(), Some("workflow"));
    assert_eq!(
        var(&p.jobs[0], "CI_PIPELINE_NAME").as_deref(),
        Some("Pipeline for main")
    );
}

#[test]
fn no_job_left_is_gitlabs_error() {
    assert_eq!(
        errors("a:\n  script: [x]\n  rules: [{if: $NOPE}]\n"),
        [
            "Pipeline will not run for the selected trigger. The rules configuration prevented any jobs from being added to the pipeline."
        ]
    );
}
