//! YAML features: anchors, merge keys, `!reference`, `extends`, `default:`/`inherit:`.

use crate::common::{errors, job, names, pipeline, var};

#[test]
fn anchors_and_merge_keys_build_jobs() {
    let p = pipeline(
        ".base: &base\n  image: alpine\n  script: [echo base]\ntest:\n  <<: *base\n  script: [echo own]\n",
    );
    assert_eq!(names(&p), ["test"]);
    assert_eq!(job(&p, "test").script, ["echo own"]);
    assert_eq!(
        job(&p, "test").image.as_ref().map(|i| i.name.as_str()),
        Some("alpine")
    );
}

#[test]
fn reference_inlines_scripts_and_flattens() {
    let p = pipeline(
        ".setup:\n  script: [echo one, echo two]\ntest:\n  script:\n    - !reference [.setup, script]\n    - echo three\n",
    );
    assert_eq!(
        job(&p, "test").script,
        ["echo one", "echo two", "echo three"]
    );
}

#[test]
fn nested_reference_resolves() {
    let p = pipeline(
        ".a:\n  script: [echo a]\n.b:\n  script:\n    - !reference [.a, script]\n    - echo b\ntest:\n  script: !reference [.b, script]\n",
    );
    assert_eq!(job(&p, "test").script, ["echo a", "echo b"]);
}

#[test]
fn missing_reference_is_gitlabs_error() {
    assert_eq!(
        errors("test:\n  script: !reference [.nope, script]\n"),
        [r#"!reference [".nope", "script"] could not be found"#]
    );
}

#[test]
fn circular_reference_is_gitlabs_error() {
    let e = errors("a:\n  script: !reference [b, script]\nb:\n  script: !reference [a, script]\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].ends_with("is part of a circular chain"), "{e:?}");
}

#[test]
fn extends_deep_merges_hashes_and_replaces_arrays() {
    let p = pipeline(
        ".base:\n  script: [echo base]\n  variables: {A: a, B: b}\n  tags: [x, y]\n.mid:\n  extends: .base\n  variables: {B: mid}\ntest:\n  extends: .mid\n  tags: [z]\n",
    );
    let t = job(&p, "test");
    assert_eq!(t.script, ["echo base"]);
    assert_eq!(t.tags, ["z"]);
    assert_eq!(var(t, "A").as_deref(), Some("a"));
    assert_eq!(var(t, "B").as_deref(), Some("mid"));
}

#[test]
fn extends_several_parents_later_wins() {
    let p = pipeline(
        ".a:\n  script: [echo a]\n  stage: build\n.b:\n  script: [echo b]\ntest:\n  extends: [.a, .b]\n",
    );
    assert_eq!(job(&p, "test").script, ["echo b"]);
    assert_eq!(job(&p, "test").stage, "build");
}

#[test]
fn extends_errors_are_gitlabs() {
    assert_eq!(
        errors("test:\n  extends: .nope\n  script: [x]\n"),
        ["test: unknown keys in `extends` (.nope)"]
    );
    assert_eq!(
        errors(".a:\n  extends: .b\n.b:\n  extends: .a\ntest:\n  extends: .a\n  script: [x]\n"),
        [".a: circular dependency detected in `extends`"]
    );
    assert_eq!(
        errors(".a: foo\ntest:\n  extends: .a\n  script: [x]\n"),
        ["test: invalid base hashes in `extends` (.a)"]
    );
}

#[test]
fn extends_nesting_limit_is_ten() {
    let mut yaml = String::from(".l0:\n  script: [x]\n");
    for level in 1..=11 {
        yaml.push_str(&format!(".l{level}:\n  extends: .l{}\n", level - 1));
    }
    yaml.push_str("test:\n  extends: .l11\n");
    let e = errors(&yaml);
    assert_eq!(e.len(), 1);
    assert!(e[0].ends_with(": nesting too deep in `extends`"), "{e:?}");
    let mut ok = String::from(".l0:\n  script: [x]\n");
    for level in 1..=9 {
        ok.push_str(&format!(".l{level}:\n  extends: .l{}\n", level - 1));
    }
    ok.push_str("test:\n  extends: .l9\n");
    assert_eq!(names(&pipeline(&ok)), ["test"]);
}

#[test]
fn default_applies_and_inherit_limits_it() {
    let p = pipeline(
        "default:\n  image: ruby\n  before_script: [echo before]\n  retry: 2\n  interruptible: true\nvariables:\n  G1: one\n  G2: two\na:\n  script: [x]\nb:\n  script: [x]\n  inherit:\n    default: [retry]\n    variables: [G2]\nc:\n  script: [x]\n  inherit:\n    default: false\n    variables: false\n",
    );
    let a = job(&p, "a");
    assert_eq!(a.image.as_ref().map(|i| i.name.as_str()), Some("ruby"));
    assert_eq!(a.before_script, ["echo before"]);
    assert_eq!(a.retry.max, 2);
    assert!(a.interruptible);
    let b = job(&p, "b");
    assert!(b.image.is_none());
    assert_eq!(b.retry.max, 2);
    assert_eq!(var(b, "G1"), None);
    assert_eq!(var(b, "G2").as_deref(), Some("two"));
    let c = job(&p, "c");
    assert!(c.image.is_none() && c.before_script.is_empty() && c.retry.max == 0);
    assert_eq!(var(c, "G1"), None);
}

#[test]
fn job_keys_override_default() {
    let p = pipeline(
        "default:\n  image: ruby\ntest:\n  image: {name: alpine, entrypoint: ['']}\n  script: [x]\n",
    );
    let image = job(&p, "test").image.clone();
    assert_eq!(image.as_ref().map(|i| i.name.as_str()), Some("alpine"));
    assert_eq!(image.and_then(|i| i.entrypoint), Some(vec![String::new()]));
}

#[test]
fn hidden_jobs_are_not_jobs_and_pages_is() {
    let p = pipeline(".hidden:\n  script: [x]\npages:\n  script: [x]\n");
    assert_eq!(names(&p), ["pages"]);
}
