//! The package's `/etc/berth/config.toml` (`packaging/config.toml`) cannot drift from berth: every
//! key berth knows is in it, each default line uncommented is exactly the built-in default, and
//! each example of a key without a default is valid.

use super::{Config, KNOWN_KEYS};

const SHIPPED: &str = include_str!("../../../packaging/config.toml");
const SHIPPED_PATH: &str = "packaging/config.toml";
/// Ends the line of a key without a default, whose value is only an example.
const UNSET_MARK: &str = "# unset by default";

/// One commented setting of the shipped file: `#key = value`.
struct Setting<'a> {
    key: &'a str,
    /// The line without its leading `#`.
    uncommented: &'a str,
    /// The value is an example for a key without a default.
    example: bool,
}

/// The setting a line holds, when it is one.
fn setting(line: &str) -> Option<Setting<'_>> {
    let uncommented = line.strip_prefix('#')?;
    let (key, _) = uncommented.split_once(" = ")?;
    let is_key = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    is_key.then(|| Setting {
        key,
        uncommented,
        example: uncommented.trim_end().ends_with(UNSET_MARK),
    })
}

fn settings() -> Vec<Setting<'static>> {
    SHIPPED.lines().filter_map(setting).collect()
}

/// Config's globs have no equality; their Debug shows each pattern and its compiled regex, so
/// equal Debug output is equal configuration.
fn shown(config: &Config) -> String {
    format!("{config:#?}")
}

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(text, None).map_err(|e| e.to_string())
}

#[test]
fn every_key_berth_knows_is_in_the_shipped_config_once() {
    let settings = settings();
    let missing: Vec<&str> = KNOWN_KEYS
        .iter()
        .copied()
        .filter(|key| !settings.iter().any(|s| s.key == *key))
        .collect();
    assert!(
        missing.is_empty(),
        "{SHIPPED_PATH} lacks the key(s) {missing:?}: add a commented line `#KEY = DEFAULT` for each \
         (`#KEY = EXAMPLE  {UNSET_MARK}` for a key without a default), with a comment saying what it does"
    );
    let mut seen = std::collections::BTreeSet::new();
    let twice: Vec<&str> = settings
        .iter()
        .filter(|s| !seen.insert(s.key))
        .map(|s| s.key)
        .collect();
    assert!(
        twice.is_empty(),
        "{SHIPPED_PATH} has the key(s) {twice:?} more than once: keep one line each"
    );
}

#[test]
fn the_shipped_config_as_shipped_and_with_every_default_uncommented_is_the_defaults() {
    let defaults = shown(&Config::defaults());
    let as_shipped = parse(SHIPPED).unwrap_or_else(|e| panic!("{SHIPPED_PATH} as shipped: {e}"));
    assert_eq!(shown(&as_shipped), defaults, "{SHIPPED_PATH} as shipped");

    let mut differ = Vec::new();
    for setting in settings().iter().filter(|s| !s.example) {
        match parse(setting.uncommented) {
            Ok(config) if shown(&config) == defaults => {}
            Ok(_) => differ.push(format!(
                "`{}`: {:?} is not the default",
                setting.key, setting.uncommented
            )),
            Err(e) => differ.push(format!("`{}`: {e}", setting.key)),
        }
    }
    assert!(
        differ.is_empty(),
        "{SHIPPED_PATH}: uncommenting these lines would change berth, so they do not show the \
         default (write the default, or end the line with `{UNSET_MARK}` for a key without one):\n{}",
        differ.join("\n")
    );

    let text: String = SHIPPED
        .lines()
        .map(|line| match setting(line) {
            Some(s) if !s.example => format!("{}\n", s.uncommented),
            _ => format!("{line}\n"),
        })
        .collect();
    let every_default = parse(&text)
        .unwrap_or_else(|e| panic!("{SHIPPED_PATH} with every default uncommented: {e}"));
    assert_eq!(
        shown(&every_default),
        defaults,
        "{SHIPPED_PATH} with every default uncommented"
    );
}

#[test]
fn each_example_of_a_key_without_a_default_is_valid_and_changes_the_config() {
    let defaults = shown(&Config::defaults());
    let mut wrong = Vec::new();
    for setting in settings().iter().filter(|s| s.example) {
        match parse(setting.uncommented) {
            Ok(config) if shown(&config) != defaults => {}
            Ok(_) => wrong.push(format!(
                "`{}`: the example is the default, so drop `{UNSET_MARK}`",
                setting.key
            )),
            Err(e) => wrong.push(format!("`{}`: {e}", setting.key)),
        }
    }
    assert!(wrong.is_empty(), "{SHIPPED_PATH}:\n{}", wrong.join("\n"));
}
