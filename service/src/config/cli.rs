//! The settings as command-line options: one `--NAME VALUE` per row of the
//! settings table, with its help (`… [config: NAME, default N]`) and the
//! same checks as in the file, so that the two never disagree.

use clap::{ArgMatches, Args, Command, FromArgMatches};

use super::ServiceConfig;

/// The settings given on the command line, for a `#[command(flatten)]`
/// field of a derived parser.
#[derive(Debug, Clone, Default)]
pub struct SettingArgs(Option<ArgMatches>);

impl SettingArgs {
    /// Overrides the settings of `config` that the command line gives.
    pub fn apply(&self, config: &mut ServiceConfig) {
        if let Some(matches) = &self.0 {
            config.apply_options(matches);
        }
    }
}

impl FromArgMatches for SettingArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(SettingArgs(Some(matches.clone())))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0 = Some(matches.clone());
        Ok(())
    }
}

impl Args for SettingArgs {
    fn augment_args(cmd: Command) -> Command {
        cmd.args(ServiceConfig::options())
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        SettingArgs::augment_args(cmd)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        settings: SettingArgs,
    }

    fn config(args: &[&str]) -> Result<ServiceConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("leco-service").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        let mut config = ServiceConfig::default();
        cli.settings.apply(&mut config);
        Ok(config)
    }

    #[test]
    fn every_setting_is_an_option() {
        let c = config(&[
            "--update-interval",
            "250ms",
            "--udp-idle",
            "30",
            "--backlog",
            "0",
            "--backlog-max",
            "500",
            "--max-flows",
            "65536",
            "--ring-buffer-kib",
            "1024",
            "--signal-rate",
            "100",
        ])
        .expect("parses");
        assert_eq!(
            c,
            ServiceConfig {
                update_interval: Duration::from_millis(250),
                udp_idle: Duration::from_secs(30),
                backlog: Duration::ZERO,
                backlog_max: 500,
                max_flows: 65_536,
                ring_buffer_kib: 1024,
                signal_rate: 100,
                ..ServiceConfig::default()
            }
        );
        assert_eq!(config(&[]).expect("parses"), ServiceConfig::default());
        // A backlog of none, as the file allows.
        let none = config(&["--backlog", "0"]).expect("parses");
        assert_eq!(none.backlog, Duration::ZERO);
    }

    #[test]
    fn options_are_checked_as_the_file_is() {
        let cases = [
            (
                &["--update-interval", "0"][..],
                "0 is out of range: a duration between 10ms and 1 day",
            ),
            (
                &["--udp-idle", "0.5"],
                "0.5 is out of range: a duration between 1s and 1 day",
            ),
            (
                &["--max-flows", "10"],
                "10 is out of range: an integer from 64 to 4194304",
            ),
            (
                &["--ring-buffer-kib", "300"],
                "300 is out of range: a power of two from 4 to 1048576",
            ),
            (&["--signal-rate", "lots"], "`lots` is not an integer"),
            // What the command line once let through or refused on its own
            // terms: now the file's ranges.
            (
                &["--max-flows", "0"],
                "0 is out of range: an integer from 64 to 4194304",
            ),
            (
                &["--udp-idle", "0.01"],
                "0.01 is out of range: a duration between 1s and 1 day",
            ),
        ];
        for (args, expected) in cases {
            let e = config(args).expect_err("refused");
            assert!(e.contains(expected), "{args:?}: {e}");
        }
    }

    #[test]
    fn help_names_the_setting_and_its_default() {
        let help = Cli::command().render_long_help().to_string();
        for setting in ServiceConfig::settings() {
            let tail = format!("[config: {}, default {}]", setting.name, setting.default);
            let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(flat.contains(&tail), "{tail} not in\n{help}");
            assert!(
                help.contains(&format!("--{} <{}>", setting.name, setting.value_name)),
                "{help}"
            );
        }
        let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flat.contains("[config: signal-rate, default 5000]"),
            "{help}"
        );
    }
}
