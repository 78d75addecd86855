//! Variables the user adds to a local run: `--variable KEY=VALUE` and a dotenv-style variables
//! file (`.berth/variables.env` by default), parsed strictly with every problem reported at once.

/// A variable name as GitLab accepts one: letters, digits and `_`, not starting with a digit.
#[must_use]
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `KEY=VALUE` arguments of `--variable`, in order (a later one wins).
///
/// # Errors
/// Every malformed argument, each with the fix.
pub fn from_arguments(arguments: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for argument in arguments {
        match argument.split_once('=') {
            Some((key, value)) if is_variable_name(key) => {
                out.push((key.to_owned(), value.to_owned()));
            }
            Some((key, _)) => problems.push(format!(
                "--variable {argument:?}: {key:?} is not a variable name (letters, digits and _, not starting with a digit)"
            )),
            None => problems.push(format!(
                "--variable {argument:?}: write KEY=VALUE"
            )),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join("\n"))
    }
}

/// A dotenv-style file: `KEY=VALUE` lines, `export KEY=VALUE` accepted, blank lines and `#`
/// comments skipped, a value in single quotes taken literally, in double quotes with `\n`, `\"`
/// and `\\` escapes. `origin` names the file in errors.
///
/// # Errors
/// Every malformed line, with its number.
pub fn from_file(text: &str, origin: &str) -> Result<Vec<(String, String)>, String> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, raw)) = line.split_once('=') else {
            problems.push(format!(
                "{origin}:{number}: write KEY=VALUE (found {line:?})"
            ));
            continue;
        };
        let key = key.trim_end();
        if !is_variable_name(key) {
            problems.push(format!(
                "{origin}:{number}: {key:?} is not a variable name (letters, digits and _, not starting with a digit)"
            ));
            continue;
        }
        match unquote(raw.trim()) {
            Ok(value) => out.push((key.to_owned(), value)),
            Err(why) => problems.push(format!("{origin}:{number}: {why}")),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join("\n"))
    }
}

fn unquote(raw: &str) -> Result<String, String> {
    if let Some(inner) = raw.strip_prefix('\'') {
        return inner
            .strip_suffix('\'')
            .map(str::to_owned)
            .ok_or_else(|| format!("the single quote of {raw:?} is not closed"));
    }
    let Some(inner) = raw.strip_prefix('"') else {
        return Ok(raw.to_owned());
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or_else(|| format!("the double quote of {raw:?} is not closed"))?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(c @ ('"' | '\\' | '$')) => out.push(c),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => return Err(format!("{raw:?} ends in a lone backslash")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_key_value_pairs_and_every_bad_one_is_named() {
        assert_eq!(
            from_arguments(&["A=1".into(), "B=x=y".into(), "C=".into()]),
            Ok(vec![
                ("A".into(), "1".into()),
                ("B".into(), "x=y".into()),
                ("C".into(), String::new())
            ])
        );
        let err = from_arguments(&["1A=x".into(), "NOEQUALS".into()]).expect_err("bad");
        assert!(err.contains("\"1A\" is not a variable name"), "{err}");
        assert!(err.contains("\"NOEQUALS\": write KEY=VALUE"), "{err}");
    }

    #[test]
    fn files_take_comments_exports_and_quotes() {
        let text = "# local\n\nexport TOKEN=abc\nGREETING=\"hello\\nworld\"\nLITERAL='$HOME'\n";
        assert_eq!(
            from_file(text, "v.env"),
            Ok(vec![
                ("TOKEN".into(), "abc".into()),
                ("GREETING".into(), "hello\nworld".into()),
                ("LITERAL".into(), "$HOME".into()),
            ])
        );
        let err = from_file("OK=1\nbad line\nX='open\n", "v.env").expect_err("bad");
        assert!(err.contains("v.env:2: write KEY=VALUE"), "{err}");
        assert!(err.contains("v.env:3: the single quote"), "{err}");
    }
}
