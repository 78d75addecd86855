//! `artifacts:reports:dotenv`: the gzip file the runner uploads, read as GitLab reads it
//! (`KEY=VALUE` lines, blanks stripped, quotes kept, at most 5 KiB and 20 variables) into
//! variables for the jobs that depend on it.

use std::io::Read;
use std::path::Path;

/// GitLab's cap on a dotenv report.
pub const MAX_BYTES: u64 = 5 * 1024;
/// GitLab's cap on its variables.
pub const MAX_VARIABLES: usize = 20;

/// The variables of the gzip-compressed dotenv report at `path`.
///
/// # Errors
/// The file is not gzip, too large, or a line is not `KEY=VALUE` with a valid name.
pub fn read_gzip(path: &Path) -> Result<Vec<(String, String)>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .take(MAX_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("the dotenv report is not gzip-compressed UTF-8 text: {e}"))?;
    parse(&text)
}

/// Parses a dotenv report's text.
///
/// # Errors
/// Too large, too many variables, or a malformed line (each named).
pub fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    if text.len() as u64 > MAX_BYTES {
        return Err(format!(
            "the dotenv report is larger than GitLab's {MAX_BYTES} bytes"
        ));
    }
    let mut out = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("dotenv line {}: write KEY=VALUE", number + 1));
        };
        let key = key.trim();
        if !crate::variables::is_variable_name(key) {
            return Err(format!(
                "dotenv line {}: {key:?} is not a variable name",
                number + 1
            ));
        }
        out.push((key.to_owned(), value.trim().to_owned()));
    }
    if out.len() > MAX_VARIABLES {
        return Err(format!(
            "the dotenv report has {} variables; GitLab takes at most {MAX_VARIABLES}",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_keeps_quotes_and_refuses_what_gitlab_refuses() {
        assert_eq!(
            parse("VERSION=1.2.3\n\nNAME = 'quoted'\n"),
            Ok(vec![
                ("VERSION".to_owned(), "1.2.3".to_owned()),
                ("NAME".to_owned(), "'quoted'".to_owned())
            ])
        );
        assert!(parse("not a pair\n").is_err());
        assert!(parse("2X=1\n").is_err());
        let many: String = (0..21).map(|i| format!("V{i}=x\n")).collect();
        assert!(parse(&many).unwrap_err().contains("at most 20"));
        assert!(parse(&"A=".repeat(3000)).is_err());
    }
}
