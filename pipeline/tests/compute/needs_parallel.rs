//! `stages`, `needs`, `dependencies`, `parallel` and `parallel: matrix`.

use crate::common::{errors, job, names, need_names, pipeline, var};

#[test]
fn default_stages_with_pre_and_post_and_order() {
    let p = pipeline(
        "z:\n  stage: deploy\n  script: [x]\nlast:\n  stage: .post\n  script: [x]\na:\n  script: [x]\nfirst:\n  stage: .pre\n  script: [x]\nb:\n  stage: build\n  script: [x]\n",
    );
    assert_eq!(p.stages, [".pre", "build", "test", "deploy", ".post"]);
    assert_eq!(names(&p), ["first", "b", "a", "z", "last"]);
    assert_eq!(job(&p, "a").stage, "test");
}

#[test]
fn unknown_stage_is_gitlabs_error() {
    assert_eq!(
        errors("stages: [one]\na:\n  stage: two\n  script: [x]\n"),
        ["a job: chosen stage two does not exist; available stages are .pre, one, .post"]
    );
}

#[test]
fn needs_forms() {
    let p = pipeline(
        "b:\n  stage: build\n  script: [x]\nc:\n  stage: build\n  script: [x]\nt:\n  needs: [b, {job: c, artifacts: false}, {job: gone, optional: true}]\n  script: [x]\nu:\n  needs: []\n  script: [x]\nv:\n  script: [x]\n",
    );
    let t = job(&p, "t").needs.clone().unwrap_or_default();
    assert_eq!(
        t.iter()
            .map(|n| (n.job.as_str(), n.artifacts))
            .collect::<Vec<_>>(),
        [("b", true), ("c", false)]
    );
    assert_eq!(job(&p, "u").needs, Some(Vec::new()));
    assert_eq!(job(&p, "v").needs, None);
}

#[test]
fn need_errors_are_gitlabs() {
    assert_eq!(
        errors("t:\n  needs: [build]\n  script: [x]\n"),
        ["t job: undefined need: build"]
    );
    assert_eq!(
        errors("build:\n  stage: deploy\n  script: [x]\nt:\n  needs: [build]\n  script: [x]\n"),
        ["t job: need build is not defined in current or prior stages"]
    );
    assert_eq!(
        errors("t:\n  needs: build\n  script: [x]\n"),
        ["jobs:t:needs job should be an array of strings or hashes"]
    );
    assert_eq!(
        errors(
            "b:\n  stage: build\n  script: [x]\n  rules: [{if: $NOPE}]\nt:\n  needs: [b]\n  script: [x]\n"
        ),
        [
            "'t' job needs 'b' job, but 'b' does not exist in the pipeline. This might be because of the only, except, or rules keywords. To need a job that sometimes does not exist in the pipeline, use needs:optional."
        ]
    );
}

#[test]
fn dependency_errors_are_gitlabs() {
    assert_eq!(
        errors("t:\n  dependencies: [x]\n  script: [x]\n"),
        ["t job: undefined dependency: x"]
    );
    assert_eq!(
        errors("d:\n  stage: deploy\n  script: [x]\nt:\n  dependencies: [d]\n  script: [x]\n"),
        ["t job: dependency d is not defined in current or prior stages"]
    );
}

#[test]
fn parallel_number_names_and_node_variables() {
    let p = pipeline(
        "t:\n  parallel: 3\n  script: [x]\nafter:\n  stage: deploy\n  needs: [t]\n  script: [x]\n",
    );
    assert_eq!(names(&p), ["t 1/3", "t 2/3", "t 3/3", "after"]);
    let second = job(&p, "t 2/3");
    assert_eq!(
        (
            var(second, "CI_NODE_INDEX").as_deref(),
            var(second, "CI_NODE_TOTAL").as_deref()
        ),
        (Some("2"), Some("3"))
    );
    assert_eq!(second.base_name, "t");
    let needs = need_names(job(&p, "after"));
    assert_eq!(needs, ["t 1/3", "t 2/3", "t 3/3"]);
}

#[test]
fn parallel_matrix_names_variables_and_needs_selectors() {
    let p = pipeline(
        "deploy:\n  stage: build\n  script: [x]\n  parallel:\n    matrix:\n      - PROVIDER: aws\n        STACK: [monitoring, app1]\n      - PROVIDER: [gcp, vultr]\n        STACK: data\nt:\n  needs:\n    - job: deploy\n      parallel:\n        matrix:\n          - PROVIDER: aws\n            STACK: app1\n  script: [x]\n",
    );
    assert_eq!(
        names(&p),
        [
            "deploy: [aws, monitoring]",
            "deploy: [aws, app1]",
            "deploy: [gcp, data]",
            "deploy: [vultr, data]",
            "t"
        ]
    );
    let j = job(&p, "deploy: [gcp, data]");
    assert_eq!(var(j, "PROVIDER").as_deref(), Some("gcp"));
    assert_eq!(var(j, "CI_NODE_INDEX").as_deref(), Some("3"));
    assert_eq!(var(j, "CI_NODE_TOTAL").as_deref(), Some("4"));
    let needs = need_names(job(&p, "t"));
    assert_eq!(needs, ["deploy: [aws, app1]"]);
}

#[test]
fn matrix_variables_reach_rules() {
    let p = pipeline(
        "t:\n  script: [x]\n  parallel:\n    matrix:\n      - OS: [linux, mac]\n  rules:\n    - if: $OS == \"linux\"\n",
    );
    assert_eq!(names(&p), ["t: [linux]"]);
}
