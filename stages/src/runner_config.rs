//! `berth runner-config`: the `[runners.custom]` block an admin pastes into gitlab-runner's
//! config.toml.

use std::path::Path;

/// The block for the berth binary at `berth` (and an optional `--config` path).
pub fn runner_config_block(berth: &Path, config: Option<&Path>) -> String {
    let exe = berth.display();
    let extra = config.map_or_else(String::new, |c| {
        format!("\"--config\", \"{}\", ", c.display())
    });
    format!(
        r#"# Paste into the [[runners]] entry of gitlab-runner's config.toml.
  executor = "custom"
  builds_dir = "/builds"
  cache_dir = "/cache"
  [runners.custom]
    config_exec = "{exe}"
    config_args = [{extra}"config"]
    prepare_exec = "{exe}"
    prepare_args = [{extra}"prepare"]
    run_exec = "{exe}"
    run_args = [{extra}"run"]
    cleanup_exec = "{exe}"
    cleanup_args = [{extra}"cleanup"]
    # The runner's default waits 10 minutes between SIGTERM and SIGKILL; berth stops scripts in seconds.
    graceful_kill_timeout = 30
    force_kill_timeout = 10
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_names_every_stage() {
        let block = runner_config_block(
            Path::new("/usr/local/bin/berth"),
            Some(Path::new("/etc/b.toml")),
        );
        for key in ["config_exec", "prepare_exec", "run_exec", "cleanup_exec"] {
            assert!(block.contains(key), "{key}");
        }
        assert!(
            block.contains(r#"run_args = ["--config", "/etc/b.toml", "run"]"#),
            "{block}"
        );
        let parsed: toml::Table =
            toml::from_str(&block.replace("  [runners.custom]", "[runners.custom]"))
                .expect("valid toml");
        assert!(parsed.contains_key("runners"));
    }
}
