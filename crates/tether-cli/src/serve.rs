//! `tether serve`: the real-time server. Its flags are made from the
//! server's list of settings (`tether_server::config::settings`): one
//! `--key` or `--section.key` per setting, with its doc and default, and the
//! flag it had before as an alias. The file, the `TETHER_*` variables and
//! these flags are merged by `tether_server::config::load`.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command};
use tether_server::config::{self, Setting, SettingKind};
use tokio::net::TcpListener;

/// Variables of the `tether` command itself, not settings of the server.
const OWN_VARIABLES: [&str; 2] = ["TETHER_CONFIG", "TETHER_LOG"];

/// Arguments of `tether serve`: the configuration file and the settings
/// given as flags (key, text, flag).
#[derive(Debug)]
pub struct ServeArgs {
    config: Option<PathBuf>,
    flags: Vec<(String, String, String)>,
}

impl clap::Args for ServeArgs {
    fn augment_args(command: Command) -> Command {
        let file = Arg::new("config")
            .long("config")
            .env("TETHER_CONFIG")
            .value_name("FILE")
            .value_parser(clap::value_parser!(PathBuf))
            .help("TOML configuration file (`tether config example` prints one)");
        command
            .arg(file)
            .args(config::settings().iter().map(flag))
            .after_help(
                "Every flag is also a TETHER_* variable (--websocket.ping-interval: \
                 TETHER_WEBSOCKET__PING_INTERVAL) and a key of the file ([websocket] \
                 ping_interval); flags win over variables, variables over the file. \
                 Durations take a unit: 25s, 500ms, 2m.",
            )
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

/// The flag of one setting.
fn flag(setting: &Setting) -> Arg {
    let first = setting.doc.split(". ").next().unwrap_or_default();
    let first = first.trim_end_matches('.');
    let default = setting.default_text();
    let value_name = match &setting.kind {
        SettingKind::Integer | SettingKind::Number => "N".to_owned(),
        SettingKind::Bool => "BOOL".to_owned(),
        SettingKind::Duration => "DURATION".to_owned(),
        SettingKind::List => "LIST".to_owned(),
        SettingKind::Choice(names) => names.join("|"),
        SettingKind::Text => "TEXT".to_owned(),
    };
    let mut arg = Arg::new(setting.key.clone())
        .long(setting.flag())
        .value_name(value_name)
        .help(format!("{first} [default: {default}]"))
        .long_help(format!(
            "{}\n[default: {default}] [env: {}]",
            setting.doc,
            setting.env()
        ));
    if let Some(alias) = &setting.alias {
        arg = arg.visible_alias(alias.clone());
    }
    if setting.kind == SettingKind::List {
        // Repeatable; each may also be comma-separated.
        arg = arg.action(ArgAction::Append);
    }
    arg
}

impl clap::FromArgMatches for ServeArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let flags = config::settings()
            .iter()
            .filter_map(|setting| {
                let given: Vec<&String> = matches.get_many::<String>(&setting.key)?.collect();
                let text = given
                    .iter()
                    .map(|text| text.as_str())
                    .collect::<Vec<_>>()
                    .join(",");
                Some((setting.key.clone(), text, format!("--{}", setting.flag())))
            })
            .collect();
        Ok(Self {
            config: matches.get_one::<PathBuf>("config").cloned(),
            flags,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

/// The server's settings: defaults, the file, the `TETHER_*` variables and
/// the flags, merged and checked once. Variables that name no setting are
/// logged.
pub fn config(
    args: &ServeArgs,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<tether_server::ServerConfig> {
    let env = env
        .into_iter()
        .filter(|(name, _)| !OWN_VARIABLES.contains(&name.as_str()));
    let loaded = config::load(args.config.as_deref(), env, &args.flags)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    Ok(loaded.config)
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = config(&args, std::env::vars())?;
    let listener = TcpListener::bind(config.listen).await?;
    tether_server::run(listener, config, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;
    use tether_server::config::settings;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        serve: super::ServeArgs,
    }

    fn parse(args: &[&str]) -> tether_server::ServerConfig {
        let cli = Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        super::config(&cli.serve, []).unwrap()
    }

    #[test]
    fn every_setting_is_a_flag_named_after_its_key() {
        let command = <Cli as clap::CommandFactory>::command();
        for setting in settings() {
            let flag = setting.flag();
            let arg = command
                .get_arguments()
                .find(|arg| arg.get_long() == Some(flag.as_str()))
                .unwrap_or_else(|| panic!("no --{flag}"));
            let help = arg.get_help().unwrap().to_string();
            assert!(
                help.ends_with(&format!("[default: {}]", setting.default_text())),
                "--{flag}: {help}"
            );
        }
    }

    #[test]
    fn the_flags_of_the_readme_still_work() {
        let config = parse(&[
            "--history-size",
            "5",
            "--ping-interval",
            "2.5",
            "--history-ttl",
            "0",
            "--compression",
            "false",
            "--allowed-origin",
            "https://a.example",
            "--allowed-origin",
            "https://b.example,https://c.example",
            "--engine",
            "memory",
        ]);
        assert_eq!(config.channels.history_size, 5);
        assert_eq!(config.websocket.ping_interval, Duration::from_millis(2500));
        assert_eq!(config.channels.history_ttl, None, "0: no age limit");
        assert!(!config.websocket.compression);
        assert_eq!(config.allowed_origins.len(), 3);
    }

    #[test]
    fn a_flag_is_the_key_with_dashes() {
        let config = parse(&[
            "--websocket.ping-interval",
            "3s",
            "--channels.history-size",
            "9",
            "--max-subscriptions",
            "4",
        ]);
        assert_eq!(config.websocket.ping_interval, Duration::from_secs(3));
        assert_eq!(config.channels.history_size, 9);
        assert_eq!(config.max_subscriptions, 4);
        let cli = Cli::try_parse_from(["serve", "--websocket.ping-interval", "0"]).unwrap();
        let error = super::config(&cli.serve, []).unwrap_err().to_string();
        assert!(
            error.contains("(from flag --websocket.ping-interval)"),
            "{error}"
        );
    }

    #[test]
    fn the_command_own_variables_are_no_settings() {
        let cli = Cli::try_parse_from(["serve"]).unwrap();
        let env = [
            ("TETHER_LOG".to_owned(), "debug".to_owned()),
            ("TETHER_MAX_SUBSCRIPTIONS".to_owned(), "3".to_owned()),
        ];
        assert_eq!(super::config(&cli.serve, env).unwrap().max_subscriptions, 3);
    }
}
