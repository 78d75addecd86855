//! berth-policy: admission policies as code. An admin's directory of Rego (v1, as OPA 1.x reads
//! it) is loaded once with regorus and asked, at prepare and after each build, for the messages of
//! `data.berth.prepare.deny` or `data.berth.build.deny`; any message fails the job (BUILD), and a
//! policy that cannot be evaluated fails it as SYSTEM. `berth policy test DIR` runs the
//! directory's `test_*` rules as `opa test` does ([`testing`]). The inputs are typed
//! ([`input`]) and documented as JSON schemas in `policy/schema/`. Reading files is at the edge
//! ([`load`]); everything else takes text.

pub mod cli;
pub mod input;
pub mod load;
pub mod testing;

use std::collections::BTreeSet;

use serde_json::Value;

/// The largest policy or data file read.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The most files a policy directory may hold.
pub const MAX_FILES: usize = 512;

/// One Rego module: its name (the path relative to the policy directory) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Where it came from: the policy directory as given, joined with its path below it.
    pub name: String,
    /// The Rego text.
    pub text: String,
}

/// A data document and where under `data` it goes (OPA's rule: the directory of a `data.json`,
/// relative to the policy directory, is its path).
#[derive(Debug, Clone, PartialEq)]
pub struct DataDocument {
    /// The file, relative to the policy directory.
    pub name: String,
    /// Path components under `data`.
    pub path: Vec<String>,
    /// The document.
    pub value: Value,
}

/// Where a decision is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// Before a job's containers exist: its images, pull policies and builders.
    Prepare,
    /// After a job built an image: the image, its scan report, SBOM and the VEX applied.
    Build,
}

impl Point {
    /// The query whose messages deny.
    pub fn query(self) -> &'static str {
        match self {
            Self::Prepare => "data.berth.prepare.deny",
            Self::Build => "data.berth.build.deny",
        }
    }
}

/// What is wrong with a policy directory or an evaluation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The directory or a file in it cannot be read.
    #[error("admission policies {path}: {detail} (fix: {fix})")]
    Read {
        /// The directory or file.
        path: String,
        /// What failed.
        detail: String,
        /// How to fix it.
        fix: String,
    },
    /// A module does not parse or compile (regorus names the line and column).
    #[error(
        "admission policy {file}: {message} (fix: write Rego v1 as OPA 1.x reads it, e.g. `package berth.prepare` with `deny contains msg if {{ ... }}`)"
    )]
    Load {
        /// The module.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A data document does not fit under `data`.
    #[error("admission policy data {file}: {message}")]
    Data {
        /// The document.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// Evaluating the query failed.
    #[error("admission policy: evaluating {query}: {message}")]
    Eval {
        /// The query.
        query: String,
        /// What failed.
        message: String,
    },
    /// The query gave something else than a set of strings.
    #[error(
        "admission policy: {query} must be a set of strings (one message per reason to deny), but it is {got}"
    )]
    Shape {
        /// The query.
        query: String,
        /// What it gave, shortened.
        got: String,
    },
}

/// The decision at one point: allowed when no policy denies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Every message of the deny rules, sorted.
    pub deny: Vec<String>,
}

impl Decision {
    /// Whether nothing denies.
    pub fn allowed(&self) -> bool {
        self.deny.is_empty()
    }
}

/// An admin's policies, loaded and compiled once.
#[derive(Debug, Clone)]
pub struct Policies {
    modules: Vec<Module>,
    engine: regorus::Engine,
}

impl Policies {
    /// Loads `modules` and `data`, reporting every module and document that does not load.
    pub fn new(modules: Vec<Module>, data: Vec<DataDocument>) -> Result<Self, Vec<PolicyError>> {
        let mut engine = regorus::Engine::new();
        engine.set_rego_v0(false);
        let mut problems = Vec::new();
        for module in &modules {
            if let Err(e) = engine.add_policy(module.name.clone(), module.text.clone()) {
                problems.push(PolicyError::Load {
                    file: module.name.clone(),
                    message: e.to_string(),
                });
            }
        }
        for doc in data {
            let mut value = doc.value;
            for component in doc.path.iter().rev() {
                value = serde_json::json!({ component.clone(): value });
            }
            let added =
                regorus::Value::from_json_str(&value.to_string()).and_then(|v| engine.add_data(v));
            if let Err(e) = added {
                problems.push(PolicyError::Data {
                    file: doc.name,
                    message: e.to_string(),
                });
            }
        }
        if problems.is_empty() {
            Ok(Self { modules, engine })
        } else {
            Err(problems)
        }
    }

    /// The modules, in load order.
    pub fn modules(&self) -> &[Module] {
        &self.modules
    }

    /// The decision at `point` for `input` (the serialised [`input::PrepareInput`] or
    /// [`input::BuildInput`]). A package the policies do not define allows.
    pub fn decide(&self, point: Point, input: &Value) -> Result<Decision, PolicyError> {
        let query = point.query();
        let eval = |message: String| PolicyError::Eval {
            query: query.to_owned(),
            message,
        };
        let mut engine = self.engine.clone();
        let input = regorus::Value::from_json_str(&input.to_string())
            .map_err(|e| eval(format!("the input is not JSON regorus reads: {e}")))?;
        engine.set_input(input);
        let results = engine
            .eval_query(query.to_owned(), false)
            .map_err(|e| eval(e.to_string()))?;
        let mut deny = BTreeSet::new();
        for result in results.result {
            for expression in result.expressions {
                collect_messages(query, &expression.value, &mut deny)?;
            }
        }
        Ok(Decision {
            deny: deny.into_iter().collect(),
        })
    }
}

/// Adds the strings of a deny rule's value to `into`; anything but a set (or array) of strings
/// is a broken policy, never an allow.
fn collect_messages(
    query: &str,
    value: &regorus::Value,
    into: &mut BTreeSet<String>,
) -> Result<(), PolicyError> {
    let shape = |got: &regorus::Value| {
        let mut text = got.to_json_str().unwrap_or_else(|_| format!("{got:?}"));
        if text.len() > 200 {
            text.truncate(200);
            text.push('…');
        }
        PolicyError::Shape {
            query: query.to_owned(),
            got: text,
        }
    };
    let items: Vec<regorus::Value> = match value {
        regorus::Value::Undefined => return Ok(()),
        regorus::Value::Set(set) => set.iter().cloned().collect(),
        regorus::Value::Array(items) => items.iter().cloned().collect(),
        other => return Err(shape(other)),
    };
    for item in items {
        match item {
            regorus::Value::String(text) => {
                into.insert(text.to_string());
            }
            other => return Err(shape(&other)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies(text: &str) -> Policies {
        Policies::new(
            vec![Module {
                name: "p.rego".into(),
                text: text.into(),
            }],
            Vec::new(),
        )
        .expect("loads")
    }

    pub(crate) const NO_LATEST: &str = r#"
package berth.prepare

deny contains msg if {
    some image in input.images
    endswith(image.name, ":latest")
    input.ref.protected
    msg := sprintf("%s: no latest tags on protected refs", [image.name])
}
"#;

    #[test]
    fn deny_messages_are_collected_and_sorted_and_nothing_denied_allows() {
        let p = policies(NO_LATEST);
        let input = serde_json::json!({
            "ref": {"protected": true},
            "images": [{"name": "b:latest"}, {"name": "a:latest"}, {"name": "c:1"}]
        });
        let d = p.decide(Point::Prepare, &input).expect("decides");
        assert_eq!(
            d.deny,
            vec![
                "a:latest: no latest tags on protected refs".to_owned(),
                "b:latest: no latest tags on protected refs".to_owned()
            ]
        );
        let unprotected =
            serde_json::json!({"ref": {"protected": false}, "images": [{"name": "a:latest"}]});
        assert!(
            p.decide(Point::Prepare, &unprotected)
                .expect("decides")
                .allowed()
        );
        // No build policy at all: builds are allowed.
        assert!(p.decide(Point::Build, &input).expect("decides").allowed());
    }

    #[test]
    fn a_deny_that_is_not_a_set_of_strings_fails_closed() {
        let p = policies("package berth.prepare\n\ndeny := {\"a\": 1}\n");
        let err = p
            .decide(Point::Prepare, &serde_json::json!({}))
            .expect_err("an object is no decision");
        assert!(matches!(err, PolicyError::Shape { .. }), "{err}");
        let p = policies("package berth.prepare\n\ndeny contains 7 if true\n");
        let err = p
            .decide(Point::Prepare, &serde_json::json!({}))
            .expect_err("a number is no message");
        assert!(err.to_string().contains("set of strings"), "{err}");
    }

    #[test]
    fn every_module_that_does_not_load_is_reported_with_its_name() {
        let err = Policies::new(
            vec![
                Module {
                    name: "a.rego".into(),
                    text: "package berth.prepare\n\ndeny contains msg if {\n".into(),
                },
                Module {
                    name: "b.rego".into(),
                    text: "pakage x\n".into(),
                },
                Module {
                    name: "c.rego".into(),
                    text: NO_LATEST.into(),
                },
            ],
            Vec::new(),
        )
        .expect_err("two broken modules");
        let names: Vec<String> = err
            .iter()
            .map(|e| match e {
                PolicyError::Load { file, .. } => file.clone(),
                other => other.to_string(),
            })
            .collect();
        assert_eq!(names, vec!["a.rego".to_owned(), "b.rego".to_owned()]);
    }

    #[test]
    fn data_documents_are_placed_under_their_directory_path() {
        let p = Policies::new(
            vec![Module {
                name: "p.rego".into(),
                text: "package berth.prepare\n\ndeny contains msg if {\n    some image in input.images\n    not startswith(image.name, data.company.registry)\n    msg := sprintf(\"%s is not from %s\", [image.name, data.company.registry])\n}\n".into(),
            }],
            vec![DataDocument {
                name: "company/data.json".into(),
                path: vec!["company".into()],
                value: serde_json::json!({"registry": "registry.example.com/"}),
            }],
        )
        .expect("loads");
        let d = p
            .decide(
                Point::Prepare,
                &serde_json::json!({"images": [{"name": "docker.io/x"}, {"name": "registry.example.com/y"}]}),
            )
            .expect("decides");
        assert_eq!(
            d.deny,
            vec!["docker.io/x is not from registry.example.com/".to_owned()]
        );
    }
}
