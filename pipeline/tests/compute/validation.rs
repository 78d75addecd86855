//! GitLab's key and value checks, the CI schema, YAML errors.

use crate::common::errors;

#[test]
fn unknown_job_keys() {
    assert_eq!(
        errors("build:\n  scirpt: [x]\n  script: [x]\n"),
        ["jobs:build config contains unknown keys: scirpt"]
    );
}

#[test]
fn job_without_script() {
    assert_eq!(
        errors("build:\n  stage: build\n"),
        ["jobs build config should implement the script:, run:, or trigger: keyword"]
    );
}

#[test]
fn default_unknown_keys() {
    assert_eq!(
        errors("default:\n  stage: x\nt:\n  script: [x]\n"),
        ["default config contains unknown keys: stage"]
    );
}

#[test]
fn only_hidden_jobs() {
    assert_eq!(
        errors(".t:\n  script: [x]\n"),
        ["jobs config should contain at least one visible job"]
    );
}

#[test]
fn rules_with_only() {
    assert_eq!(
        errors("t:\n  script: [x]\n  only: [main]\n  rules: [{when: always}]\n"),
        ["jobs:t config key may not be used with `rules`: only"]
    );
}

#[test]
fn bad_timeout_and_delayed_without_start_in() {
    assert_eq!(
        errors("t:\n  script: [x]\n  timeout: forever\n"),
        ["jobs:t:timeout config should be a duration"]
    );
    assert_eq!(
        errors("t:\n  script: [x]\n  when: delayed\n"),
        ["jobs:t start in can't be blank"]
    );
}

#[test]
fn duplicated_needs() {
    assert_eq!(
        errors("b:\n  stage: build\n  script: [x]\nt:\n  needs: [b, b]\n  script: [x]\n"),
        ["t has the following needs duplicated: b"]
    );
}

#[test]
fn schema_catches_what_gitlab_checks_here_do_not() {
    let e = errors("t:\n  script: [x]\n  retry: 5\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("jobs:t:retry config does not match GitLab's CI schema"),
        "{e:?}"
    );
}

#[test]
fn schema_stays_quiet_where_gitlab_already_spoke() {
    assert_eq!(errors("build:\n  scirpt: [x]\n  script: [x]\n").len(), 1);
}

#[test]
fn invalid_yaml_and_errors_are_all_reported() {
    let e = errors("a: [unclosed\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("(.gitlab-ci.yml): "), "{e:?}");
    let many = errors("a:\n  scirpt: [x]\nb:\n  stage: build\n");
    assert_eq!(many.len(), 3, "{many:?}");
}
