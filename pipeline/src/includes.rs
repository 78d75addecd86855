//! `include:` as GitLab expands it: local files (globs too), nested includes, `rules:` on
//! includes, `inputs:`, and the forms that need a GitLab server (`project`, `remote`,
//! `template`, `component`) read from a local directory that stands in for them.
//!
//! That directory (`Options::external_includes`) is laid out as:
//! - `projects/<group>/<project>/<file>` for `include: project: group/project, file: <file>`
//!   (`ref:` is not looked at); local includes nested in such a file read from the same
//!   `projects/<group>/<project>/`.
//! - `remote/<host>/<path>` for `include: remote: https://<host>/<path>` (or the string form).
//! - `templates/<name>` for `include: template: <name>`.
//! - `components/<group>/<project>/templates/<name>.yml` (or `…/templates/<name>/template.yml`)
//!   for `include: component: <host>/<group>/<project>/<name>@<version>` (host and version are
//!   not looked at); nested local includes read from `components/<group>/<project>/`.

use serde_yaml_ng::{Mapping, Value};

use crate::error::ConfigErrors;
use crate::model::ProjectFiles;
use crate::rules::{self, RuleContext};
use crate::yaml::{self, deep_merge, render, scalar_text};

/// GitLab's limit of nested includes.
const MAX_NESTING: usize = 100;
/// GitLab's default limit of included files per pipeline.
const MAX_INCLUDES: usize = 150;

/// Where a file's own `include: local` entries are read from.
#[derive(Clone, PartialEq, Eq)]
enum Origin {
    /// The project's work tree.
    Project,
    /// A directory of `external_includes`, by prefix.
    External(String),
}

/// What include expansion needs from the caller.
pub(crate) struct Includer<'a> {
    pub files: &'a dyn ProjectFiles,
    pub external: Option<&'a dyn ProjectFiles>,
    pub rule_context: &'a RuleContext<'a>,
    seen: Vec<String>,
}

struct Resolved {
    /// How the include is named in messages (its location as written).
    location: String,
    origin: Origin,
    path: String,
    inputs: Option<Mapping>,
    kind: &'static str,
}

impl<'a> Includer<'a> {
    pub(crate) fn new(
        files: &'a dyn ProjectFiles,
        external: Option<&'a dyn ProjectFiles>,
        rule_context: &'a RuleContext<'a>,
    ) -> Self {
        Self {
            files,
            external,
            rule_context,
            seen: Vec::new(),
        }
    }

    /// Expand the includes of `content` (a file's configuration) and merge: included files
    /// first, in order, then the file's own keys on top.
    pub(crate) fn expand(
        &mut self,
        content: Mapping,
        depth: usize,
        errors: &mut ConfigErrors,
    ) -> Mapping {
        self.expand_from(content, &Origin::Project, depth, errors)
    }

    fn expand_from(
        &mut self,
        mut content: Mapping,
        origin: &Origin,
        depth: usize,
        errors: &mut ConfigErrors,
    ) -> Mapping {
        let Some(include) = content.shift_remove("include") else {
            return content;
        };
        let items = match include {
            Value::Sequence(items) => items,
            Value::Null => Vec::new(),
            single => vec![single],
        };
        let mut merged = Value::Mapping(Mapping::new());
        for item in items {
            for resolved in self.resolve(&item, origin, errors) {
                if depth >= MAX_NESTING {
                    errors.push(format!(
                        "Maximum of {MAX_NESTING} nested includes are allowed!"
                    ));
                    return content;
                }
                let identity = format!(
                    "{}|{}|{}",
                    match &resolved.origin {
                        Origin::Project => "",
                        Origin::External(prefix) => prefix,
                    },
                    resolved.path,
                    resolved
                        .inputs
                        .as_ref()
                        .map(|inputs| render(&Value::Mapping(inputs.clone())))
                        .unwrap_or_default()
                );
                // The same file with the same inputs is included once, as GitLab does.
                if self.seen.contains(&identity) {
                    continue;
                }
                self.seen.push(identity);
                if self.seen.len() > MAX_INCLUDES {
                    errors.push(format!("Maximum of {MAX_INCLUDES} includes are allowed!"));
                    return content;
                }
                if let Some(included) = self.load(&resolved, depth, errors) {
                    deep_merge(&mut merged, Value::Mapping(included));
                }
            }
        }
        deep_merge(&mut merged, Value::Mapping(content));
        match merged {
            Value::Mapping(mapping) => mapping,
            _ => Mapping::new(),
        }
    }

    fn source(&self, origin: &Origin) -> Option<&'a dyn ProjectFiles> {
        match origin {
            Origin::Project => Some(self.files),
            Origin::External(_) => self.external,
        }
    }

    fn load(
        &mut self,
        resolved: &Resolved,
        depth: usize,
        errors: &mut ConfigErrors,
    ) -> Option<Mapping> {
        let location = &resolved.location;
        if !(resolved.path.ends_with(".yml") || resolved.path.ends_with(".yaml"))
            && resolved.kind != "component"
        {
            errors.push(format!(
                "Included file `{location}` does not have YAML extension!"
            ));
            return None;
        }
        let source = self.source(&resolved.origin)?;
        let full_path = match &resolved.origin {
            Origin::Project => resolved.path.clone(),
            Origin::External(prefix) => format!("{prefix}{}", resolved.path),
        };
        let text = match source.read(&full_path) {
            Ok(Some(text)) => text,
            Ok(None) => {
                errors.push(missing_message(resolved));
                return None;
            }
            Err(error) => {
                errors.push(format!(
                    "Included file `{location}` could not be read: {error}"
                ));
                return None;
            }
        };
        if text.trim().is_empty() {
            errors.push(format!("Local file `{location}` is empty!"));
            return None;
        }
        let Ok(documents) = yaml::parse(&text) else {
            errors.push(format!(
                "Included file `{location}` does not have valid YAML syntax!"
            ));
            return None;
        };
        let content = match crate::inputs::apply(
            documents.spec.as_ref(),
            resolved.inputs.as_ref(),
            documents.content,
        ) {
            Ok(content) => content,
            Err(messages) => {
                for message in messages {
                    errors.push(format!("`{location}`: {message}"));
                }
                return None;
            }
        };
        let Value::Mapping(content) = content else {
            errors.push(format!(
                "Included file `{location}` does not have valid YAML syntax!"
            ));
            return None;
        };
        if content.is_empty() {
            errors.push(format!(
                "Included file `{location}` does not have valid YAML syntax!"
            ));
            return None;
        }
        let nested_origin = match (&resolved.origin, resolved.kind) {
            (Origin::External(prefix), "project" | "component") => Origin::External(prefix.clone()),
            (Origin::External(prefix), "local") => Origin::External(prefix.clone()),
            _ => Origin::Project,
        };
        Some(self.expand_from(content, &nested_origin, depth + 1, errors))
    }

    fn resolve(&self, item: &Value, origin: &Origin, errors: &mut ConfigErrors) -> Vec<Resolved> {
        let lookup = |name: &str| (self.rule_context.lookup)(name);
        let expand = |text: &str| crate::variables::expand_with(text, &lookup);
        let mapping = match item {
            Value::String(text) if text.starts_with("http://") || text.starts_with("https://") => {
                let mut mapping = Mapping::new();
                mapping.insert("remote".into(), Value::String(text.clone()));
                mapping
            }
            Value::String(text) => {
                let mut mapping = Mapping::new();
                mapping.insert("local".into(), Value::String(text.clone()));
                mapping
            }
            Value::Mapping(mapping) => mapping.clone(),
            other => {
                errors.push(format!(
                    "Include `{}` needs to match exactly one accessor!",
                    render(other)
                ));
                return Vec::new();
            }
        };
        let accessors: Vec<&str> = [
            "local",
            "project",
            "remote",
            "template",
            "component",
            "artifact",
        ]
        .into_iter()
        .filter(|key| mapping.contains_key(*key))
        .collect();
        let [accessor] = accessors[..] else {
            errors.push(format!(
                "Include `{}` needs to match exactly one accessor!",
                render(item)
            ));
            return Vec::new();
        };
        if let Some(rules) = mapping.get("rules") {
            match rules::include_rules_match(rules, self.rule_context) {
                Ok(true) => {}
                Ok(false) => return Vec::new(),
                Err(message) => {
                    errors.push(message);
                    return Vec::new();
                }
            }
        }
        let inputs = match mapping.get("inputs") {
            Some(Value::Mapping(inputs)) => Some(inputs.clone()),
            _ => None,
        };
        let Some(location) = mapping
            .get(accessor)
            .and_then(scalar_text)
            .map(|text| expand(&text))
        else {
            if accessor == "project" {
                // `file:` carries the location; checked below.
            } else {
                errors.push(format!(
                    "Include `{}` needs to match exactly one accessor!",
                    render(item)
                ));
                return Vec::new();
            }
            return Vec::new();
        };
        if accessor != "local" && self.external.is_none() {
            errors.push(format!(
                "Include `{accessor}: {location}` needs a GitLab server, which berth exec does not have: \
                 give berth a local directory standing in for project, remote, template and component \
                 includes (Options::external_includes; layout in the pipeline crate's includes.rs)"
            ));
            return Vec::new();
        }
        match accessor {
            "local" => self.local(&location, origin, inputs, errors),
            "project" => {
                let files = match mapping.get("file") {
                    Some(value) => yaml::string_list(value).unwrap_or_default(),
                    None => Vec::new(),
                };
                if files.is_empty() {
                    errors.push(format!(
                        "Include `{}` needs to match exactly one accessor!",
                        render(item)
                    ));
                }
                files
                    .into_iter()
                    .map(|file| {
                        let file = expand(&file).trim_start_matches('/').to_string();
                        Resolved {
                            location: file.clone(),
                            origin: Origin::External(format!(
                                "projects/{}/",
                                location.trim_matches('/')
                            )),
                            path: file,
                            inputs: inputs.clone(),
                            kind: "project",
                        }
                    })
                    .collect()
            }
            "remote" => {
                let path = location
                    .split_once("://")
                    .map_or(location.as_str(), |(_, rest)| rest)
                    .to_string();
                vec![Resolved {
                    location,
                    origin: Origin::External("remote/".into()),
                    path,
                    inputs,
                    kind: "remote",
                }]
            }
            "template" => vec![Resolved {
                path: location.clone(),
                location,
                origin: Origin::External("templates/".into()),
                inputs,
                kind: "template",
            }],
            "component" => self.component(&location, inputs, errors),
            _ => {
                errors.push(format!(
                    "Include `{}` needs to match exactly one accessor!",
                    render(item)
                ));
                Vec::new()
            }
        }
    }

    fn local(
        &self,
        location: &str,
        origin: &Origin,
        inputs: Option<Mapping>,
        errors: &mut ConfigErrors,
    ) -> Vec<Resolved> {
        let path = location.trim_start_matches('/').to_string();
        if !path.contains('*') {
            return vec![Resolved {
                location: location.to_string(),
                origin: origin.clone(),
                path,
                inputs,
                kind: "local",
            }];
        }
        let Some(source) = self.source(origin) else {
            return Vec::new();
        };
        let prefix = match origin {
            Origin::Project => String::new(),
            Origin::External(prefix) => prefix.clone(),
        };
        let listing = match source.list() {
            Ok(listing) => listing,
            Err(error) => {
                errors.push(format!(
                    "Local file `{location}` could not be listed: {error}"
                ));
                return Vec::new();
            }
        };
        let mut matched: Vec<String> = listing
            .into_iter()
            .filter_map(|file| file.strip_prefix(&prefix).map(str::to_string))
            .filter(|file| rules::glob_matches(&path, file))
            .collect();
        matched.sort();
        if matched.is_empty() {
            errors.push(format!("Local file `{location}` does not exist!"));
        }
        matched
            .into_iter()
            .map(|file| Resolved {
                location: file.clone(),
                origin: origin.clone(),
                path: file,
                inputs: inputs.clone(),
                kind: "local",
            })
            .collect()
    }

    fn component(
        &self,
        location: &str,
        inputs: Option<Mapping>,
        errors: &mut ConfigErrors,
    ) -> Vec<Resolved> {
        let without_version = location.split_once('@').map_or(location, |(path, _)| path);
        // `$CI_SERVER_FQDN/…` expands to `/…` (berth has no server): then there is no host part.
        let has_host = !without_version.starts_with('/');
        let segments: Vec<&str> = without_version
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let first = usize::from(has_host);
        if segments.len() < first + 2 {
            errors.push(format!("Component '{location}' - content not found"));
            return Vec::new();
        }
        let name = segments[segments.len() - 1];
        let project = segments[first..segments.len() - 1].join("/");
        let prefix = format!("components/{project}/");
        let candidates = [
            format!("templates/{name}.yml"),
            format!("templates/{name}/template.yml"),
        ];
        let found = self.external.and_then(|external| {
            candidates.iter().find(|candidate| {
                matches!(external.read(&format!("{prefix}{candidate}")), Ok(Some(_)))
            })
        });
        let Some(path) = found else {
            errors.push(format!("Component '{location}' - content not found"));
            return Vec::new();
        };
        vec![Resolved {
            location: location.to_string(),
            origin: Origin::External(prefix),
            path: path.clone(),
            inputs,
            kind: "component",
        }]
    }
}

fn missing_message(resolved: &Resolved) -> String {
    let location = &resolved.location;
    match (&resolved.origin, resolved.kind) {
        (Origin::External(prefix), "project") => {
            let project = prefix.trim_start_matches("projects/").trim_end_matches('/');
            format!("Project `{project}` file `{location}` does not exist!")
        }
        (_, "remote") => format!(
            "Remote file `{location}` could not be fetched: it is not in the directory standing in for remote includes"
        ),
        (_, "template") => format!("Template file `{location}` is not a valid location!"),
        _ => format!("Local file `{location}` does not exist!"),
    }
}
