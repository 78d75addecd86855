//! Reading an admin's policy directory: every `*.rego` below it as a module and every
//! `data.json` as a data document under its directory's path (as OPA loads a directory). Only
//! files and directories that berth's user (or root) owns and nobody else may write are read:
//! a policy someone else could change is no policy. Links are not followed.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::{DataDocument, MAX_FILE_BYTES, MAX_FILES, Module, PolicyError};

/// How deep below the policy directory files are looked for.
const MAX_DEPTH: usize = 16;

/// The modules and data documents of `dir`, every problem reported at once.
pub fn read_dir(dir: &Path) -> Result<(Vec<Module>, Vec<DataDocument>), Vec<PolicyError>> {
    let mut found = Found::default();
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            if let Some(problem) = unsafe_owner(dir, &meta) {
                return Err(vec![problem]);
            }
        }
        Ok(_) => {
            return Err(vec![read_error(
                dir,
                "is not a directory",
                "point the setting at the directory that holds the *.rego files",
            )]);
        }
        Err(e) => {
            return Err(vec![read_error(
                dir,
                &e.to_string(),
                "create it, or point the setting at the directory that holds the *.rego files",
            )]);
        }
    }
    walk(dir, dir, 0, &mut found);
    if found.problems.is_empty() {
        found.modules.sort_by(|a, b| a.name.cmp(&b.name));
        found.data.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((found.modules, found.data))
    } else {
        Err(found.problems)
    }
}

#[derive(Default)]
struct Found {
    modules: Vec<Module>,
    data: Vec<DataDocument>,
    problems: Vec<PolicyError>,
    files: usize,
}

fn read_error(path: &Path, detail: &str, fix: &str) -> PolicyError {
    PolicyError::Read {
        path: path.display().to_string(),
        detail: detail.to_owned(),
        fix: fix.to_owned(),
    }
}

/// A problem when `path` is owned by someone other than berth's user or root, or writable by
/// its group or others.
fn unsafe_owner(path: &Path, meta: &std::fs::Metadata) -> Option<PolicyError> {
    let me = nix::unistd::geteuid().as_raw();
    if (meta.uid() != 0 && meta.uid() != me) || meta.mode() & 0o022 != 0 {
        return Some(read_error(
            path,
            &format!(
                "is owned by uid {} with mode {:o}: someone else could change the policy",
                meta.uid(),
                meta.mode() & 0o7777
            ),
            "make it root's and writable by root alone (chown root: and chmod go-w)",
        ));
    }
    None
}

fn walk(root: &Path, dir: &Path, depth: usize, found: &mut Found) {
    if depth > MAX_DEPTH {
        found.problems.push(read_error(
            dir,
            &format!("is more than {MAX_DEPTH} directories deep"),
            "keep policies in a shallower tree",
        ));
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            found
                .problems
                .push(read_error(dir, &e.to_string(), "make it readable by root"));
            return;
        }
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_rego = name.ends_with(".rego");
        let is_data = name == "data.json";
        if meta.is_dir() {
            if let Some(problem) = unsafe_owner(&path, &meta) {
                found.problems.push(problem);
                continue;
            }
            walk(root, &path, depth + 1, found);
            continue;
        }
        if !is_rego && !is_data {
            continue;
        }
        if meta.file_type().is_symlink() || !meta.is_file() {
            found.problems.push(read_error(
                &path,
                "is a link or not a regular file",
                "put the file itself in the policy directory",
            ));
            continue;
        }
        if let Some(problem) = unsafe_owner(&path, &meta) {
            found.problems.push(problem);
            continue;
        }
        found.files += 1;
        if found.files > MAX_FILES {
            found.problems.push(read_error(
                root,
                &format!("holds more than {MAX_FILES} policy and data files"),
                "split the policies or remove unused ones",
            ));
            return;
        }
        if meta.len() > MAX_FILE_BYTES {
            found.problems.push(read_error(
                &path,
                &format!("is {} bytes, more than {MAX_FILE_BYTES}", meta.len()),
                "keep each file under 1 MiB",
            ));
            continue;
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                found.problems.push(read_error(
                    &path,
                    &e.to_string(),
                    "make it UTF-8 text root can read",
                ));
                continue;
            }
        };
        let relative = path.strip_prefix(root).unwrap_or(&path);
        // Named as `opa` names them: the directory as given, joined with the file, cleaned.
        let shown = path
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect::<std::path::PathBuf>()
            .to_string_lossy()
            .into_owned();
        if is_rego {
            found.modules.push(Module { name: shown, text });
            continue;
        }
        match serde_json::from_str(&text) {
            Ok(value) => found.data.push(DataDocument {
                name: shown,
                path: relative
                    .parent()
                    .into_iter()
                    .flat_map(Path::components)
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect(),
                value,
            }),
            Err(e) => found.problems.push(PolicyError::Data {
                file: shown,
                message: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn modules_and_data_are_read_with_their_paths_and_other_files_ignored() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        std::fs::create_dir_all(dir.join("company/teams")).expect("dirs");
        std::fs::write(dir.join("a.rego"), "package a\n").expect("a");
        std::fs::write(dir.join("company/teams/b.rego"), "package b\n").expect("b");
        std::fs::write(dir.join("company/data.json"), "{\"registry\": \"r/\"}").expect("data");
        std::fs::write(dir.join("README.md"), "not read").expect("readme");
        let (modules, data) = read_dir(dir).expect("reads");
        let names: Vec<String> = modules.iter().map(|m| m.name.clone()).collect();
        assert_eq!(
            names,
            vec![
                format!("{}/a.rego", dir.display()),
                format!("{}/company/teams/b.rego", dir.display())
            ]
        );
        assert_eq!(data.len(), 1);
        assert_eq!(data[0].path, vec!["company".to_owned()]);
    }

    #[test]
    fn links_writable_files_bad_json_and_a_missing_directory_are_each_reported() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        std::fs::write(dir.join("writable.rego"), "package w\n").expect("w");
        std::fs::set_permissions(
            dir.join("writable.rego"),
            std::fs::Permissions::from_mode(0o666),
        )
        .expect("chmod");
        std::fs::write(tmp.path().join("elsewhere"), "package e\n").expect("e");
        std::os::unix::fs::symlink(dir.join("elsewhere"), dir.join("linked.rego")).expect("ln");
        std::fs::write(dir.join("data.json"), "{").expect("bad json");
        let problems = read_dir(dir).expect_err("three problems");
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:#?}");
        assert!(text[0].contains("data.json"), "{text:#?}");
        assert!(
            text[1].contains("linked.rego") && text[1].contains("link"),
            "{text:#?}"
        );
        assert!(
            text[2].contains("writable.rego") && text[2].contains("chmod go-w"),
            "{text:#?}"
        );
        let missing = read_dir(&dir.join("nope")).expect_err("missing");
        assert!(missing[0].to_string().contains("create it"), "{missing:?}");
    }
}
