//! Flags into settings. The typed settings of `eva_loop::settings` hold every default; the
//! flag structs of the commands only parse (each field an `Option` named as its setting's
//! key). [`with_defaults`] shows the library's defaults in `--help`, and [`settings`]
//! lays the flags given on the command line over a base (the defaults, a `--config`
//! file's, or a resumed run's).

use clap::parser::ValueSource;
use clap::{ArgMatches, Command};
use eva_loop::settings::{LoopSettings, Overlay, RewardSettings, SolverSettings};
use serde::Serialize;
use serde_json::{Map, Value};

/// The settings of each subcommand whose flags are settings.
fn defaults_of(subcommand: &str) -> Option<Map<String, Value>> {
    let value = match subcommand {
        "run" => serde_json::to_string(&LoopSettings::default()),
        "train" => serde_json::to_string(&SolverSettings::default()),
        "score" | "eval" => serde_json::to_string(&RewardSettings::default()),
        _ => return None,
    };
    // Through text, so that an f32 default reads 0.7, not its f64 widening.
    serde_json::from_str(&value.expect("settings serialize")).ok()
}

/// `cmd` with each setting's default on its flag (shown by `--help`; a flag given on the
/// command line is told apart by [`given`]).
pub fn with_defaults(mut cmd: Command) -> Command {
    let names: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_owned()).collect();
    for name in names {
        let Some(defaults) = defaults_of(&name) else { continue };
        // In place (`mut_arg` would move each flag to the end of `--help`).
        cmd = cmd.mut_subcommand(&name, |sub| {
            sub.mut_args(|arg| match defaults.get(arg.get_id().as_str()) {
                Some(Value::Number(n)) => arg.default_value(n.to_string()),
                Some(Value::String(s)) => arg.default_value(s.clone()),
                // Flags (bool) and optional settings have no default to show.
                _ => arg,
            })
        });
    }
    cmd
}

/// Whether flag `id` was given on the command line (or in its environment variable).
pub fn is_given(matches: &ArgMatches, id: &str) -> bool {
    matches!(matches.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable))
}

/// The flags of `flags` given on the command line, by key.
pub fn given(flags: &impl Serialize, matches: &ArgMatches) -> Map<String, Value> {
    let Value::Object(all) = serde_json::to_value(flags).expect("flags serialize") else {
        unreachable!("flags are structs")
    };
    all.into_iter().filter(|(id, _)| is_given(matches, id)).collect()
}

/// `base` with the flags given put over it.
pub fn settings<T: Overlay>(base: &T, flags: &impl Serialize, matches: &ArgMatches) -> anyhow::Result<T> {
    Ok(base.overlay(given(flags, matches), "the flags")?)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every setting is a flag of its command (the other way round, each flag struct's
    /// tests check that its fields are settings).
    #[test]
    fn every_setting_is_a_flag() {
        let cli = crate::Cli::command();
        for name in ["run", "train", "score", "eval"] {
            let sub = cli.find_subcommand(name).unwrap();
            let ids: Vec<&str> = sub.get_arguments().map(|a| a.get_id().as_str()).collect();
            for key in defaults_of(name).unwrap().keys() {
                assert!(ids.contains(&key.as_str()), "`{name}` has no flag for setting `{key}`");
            }
        }
        let help = with_defaults(crate::Cli::command()).find_subcommand_mut("run").unwrap().render_long_help();
        let help = help.to_string();
        assert!(help.contains("[default: 0.7]") && help.contains("[default: dpo]"), "{help}");
    }

    /// `docs/settings.md` is the flags' own help: regenerated with `EVA_UPDATE_DOCS=1`,
    /// and this test fails when it is out of date.
    #[test]
    fn the_settings_reference_is_the_help() {
        let mut text = String::from(
            "# Settings of `eva-host run`, `train`, `score` and `eval`\n\n\
             Generated from the flags' own help (`EVA_UPDATE_DOCS=1 cargo test -p eva-host \
             the_settings_reference` rewrites it); every default is the library's \
             (`eva_loop::settings`). A `--config FILE` of `run` takes the loop's settings by the \
             same names (kebab-case or snake_case); a flag given on the command line wins.\n",
        );
        let mut cli = with_defaults(crate::Cli::command());
        cli.build();
        for name in ["run", "train", "score", "eval"] {
            let sub = cli.find_subcommand(name).unwrap();
            text += &format!("\n## `eva-host {name}`\n\n| flag | default | what it does |\n| --- | --- | --- |\n");
            for arg in sub.get_arguments().filter(|a| a.get_long().is_some()) {
                let help = arg.get_long_help().or(arg.get_help()).map(|h| h.to_string()).unwrap_or_default();
                let takes_values = arg.get_num_args().is_some_and(|n| n.takes_values());
                let defaults: Vec<String> =
                    arg.get_default_values().iter().map(|v| format!("`{}`", v.to_string_lossy())).collect();
                let defaults = if takes_values { defaults.join(", ") } else { String::new() };
                let env = arg.get_env().map(|e| format!(" (env `{}`)", e.to_string_lossy())).unwrap_or_default();
                let value = arg.get_value_names().filter(|_| takes_values).map(|v| format!(" {}", v[0]));
                let row = format!(
                    "| `--{}{}`{env} | {defaults} | {} |",
                    arg.get_long().unwrap(),
                    value.unwrap_or_default(),
                    help.replace('\n', " ")
                );
                text += &(row.replace('|', "\\|").replace("\\| ", "| ").replace(" \\|", " |") + "\n");
            }
        }
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/settings.md");
        if std::env::var_os("EVA_UPDATE_DOCS").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let written = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(written == text, "docs/settings.md is out of date: rerun this test with EVA_UPDATE_DOCS=1");
    }
}
