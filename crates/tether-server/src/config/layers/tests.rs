use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::config::settings::{settings, SettingKind};
use crate::config::{duration, Access, EngineKind};

/// A configuration file with `text`, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(text: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "tether-config-{}-{}.toml",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn from_file(text: &str) -> Result<Loaded, LoadError> {
    let file = TempFile::new(text);
    load(Some(&file.0), [], &[])
}

fn flag(key: &str, text: &str) -> (String, String, String) {
    (
        key.to_owned(),
        text.to_owned(),
        format!("--{}", key.replace('_', "-")),
    )
}

/// A value for `setting` that is not its default and that validation accepts.
fn other_value(setting: &Setting) -> toml::Value {
    use toml::Value;
    match (&setting.kind, &setting.default) {
        (SettingKind::Integer, Some(Value::Integer(n))) => Value::Integer(n + 1),
        (SettingKind::Integer, _) => Value::Integer(4096),
        (SettingKind::Number, Some(Value::Float(x))) => Value::Float(x * 2.0),
        (SettingKind::Number, _) => Value::Float(3.5),
        (SettingKind::Bool, Some(Value::Boolean(b))) => Value::Boolean(!b),
        (SettingKind::Bool, _) => Value::Boolean(true),
        (SettingKind::Duration, _) => Value::String("1500ms".into()),
        (SettingKind::List, _) => Value::Array(vec!["https://a.example".into(), "b".into()]),
        (SettingKind::Choice(choices), default) => choices
            .iter()
            .rev()
            .map(|choice| Value::String(choice.clone()))
            .find(|choice| Some(choice) != default.as_ref())
            .unwrap_or_else(|| Value::String(choices[0].clone())),
        (SettingKind::Text, _) if setting.key == "listen" => Value::String("127.0.0.1:9999".into()),
        (SettingKind::Text, _) => Value::String("/etc/tether/some-text".into()),
    }
}

/// `value` as a variable or a flag spells it.
fn as_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => text.clone(),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().unwrap())
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// The value of `key` in `config`, as the file would write it.
fn value_at(config: &ServerConfig, key: &str) -> Option<toml::Value> {
    let mut value = toml::Value::Table(toml::Table::try_from(config).unwrap());
    for part in key.split('.') {
        value = value.as_table()?.get(part)?.clone();
    }
    Some(value)
}

fn same(setting: &Setting, got: Option<toml::Value>, wanted: &toml::Value) -> bool {
    match (&setting.kind, got) {
        (SettingKind::Duration, Some(toml::Value::String(got))) => {
            duration::parse(&got) == duration::parse(wanted.as_str().unwrap())
        }
        (_, got) => got.as_ref() == Some(wanted),
    }
}

#[test]
fn every_setting_is_taken_by_one_name_from_the_file_the_environment_and_a_flag() {
    let mut checked = 0;
    for setting in settings() {
        let wanted = other_value(setting);
        // The file: `name = value` under `[section]`.
        let mut text = String::new();
        if !setting.section.is_empty() {
            text.push_str(&format!("[{}]\n", setting.section));
        }
        let mut line = toml::Table::new();
        line.insert(setting.name.clone(), wanted.clone());
        text.push_str(&toml::to_string(&line).unwrap());
        let config = from_file(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", setting.key))
            .config;
        assert!(
            same(setting, value_at(&config, &setting.key), &wanted),
            "file: {text}"
        );
        // The environment.
        let env = [(setting.env(), as_text(&wanted))];
        let config = load(None, env.clone(), &[])
            .unwrap_or_else(|e| panic!("{env:?}: {e}"))
            .config;
        assert!(
            same(setting, value_at(&config, &setting.key), &wanted),
            "{env:?}"
        );
        // A flag.
        let flags = [flag(&setting.key, &as_text(&wanted))];
        let config = load(None, [], &flags)
            .unwrap_or_else(|e| panic!("{flags:?}: {e}"))
            .config;
        assert!(
            same(setting, value_at(&config, &setting.key), &wanted),
            "{flags:?}"
        );
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} settings");
}

#[test]
fn flags_win_over_the_environment_which_wins_over_the_file() {
    let file = TempFile::new(
        "listen = \"127.0.0.1:9999\"\noutbound_queue = 7\nmax_subscriptions = 9\n\
         [channels]\nhistory_size = 3\n",
    );
    let env = [
        ("TETHER_OUTBOUND_QUEUE".to_owned(), "8".to_owned()),
        ("TETHER_CHANNELS__HISTORY_SIZE".to_owned(), "4".to_owned()),
    ];
    let flags = [flag("channels.history_size", "5")];
    let config = load(Some(&file.0), env, &flags).unwrap().config;
    assert_eq!(config.listen.port(), 9999, "from the file");
    assert_eq!(config.max_subscriptions, 9, "from the file");
    assert_eq!(config.outbound_queue, 8, "the variable wins over the file");
    assert_eq!(config.channels.history_size, 5, "the flag wins");
    assert_eq!(
        config.max_channel_name,
        ServerConfig::default().max_channel_name
    );
}

#[test]
fn a_namespace_keeps_what_it_does_not_set_from_channels() {
    let file = TempFile::new(
        "[channels]\nhistory_size = 10\nhistory_ttl = \"0s\"\n\
         [namespaces.scores]\npublish = \"nobody\"\nslow_consumer = \"latest-per-key\"\n",
    );
    let env = [(
        "TETHER_NAMESPACES__CHAT__PRESENCE".to_owned(),
        "false".to_owned(),
    )];
    let flags = [flag("channels.history_size", "11")];
    let config = load(Some(&file.0), env, &flags).unwrap().config;
    assert_eq!(config.namespace_of("other:x").history_size, 11);
    let scores = config.namespace_of("scores:1");
    assert_eq!((scores.history_size, scores.history_ttl), (11, None));
    assert_eq!(scores.publish, Access::Nobody);
    let chat = config.namespace_of("chat:lobby");
    assert!(!chat.presence);
    assert_eq!(chat.history_size, 11);
}

#[test]
fn a_bad_value_is_named_by_where_it_came_from() {
    // Checked once, on the merged result: the source of the value is named.
    let error = load(None, [], &[flag("websocket.ping_interval", "0")]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "websocket.ping_interval = 0s: must be above 0 (from flag --websocket.ping-interval)"
    );
    let env = [(
        "TETHER_WEBSOCKET__PING_INTERVAL".to_owned(),
        "0s".to_owned(),
    )];
    let error = load(None, env, &[]).unwrap_err().to_string();
    assert!(
        error.ends_with("(from variable TETHER_WEBSOCKET__PING_INTERVAL)"),
        "{error}"
    );
    let file = TempFile::new("# heartbeat\n[websocket]\nping_interval = \"0s\"\n");
    let error = load(Some(&file.0), [], &[]).unwrap_err().to_string();
    assert!(
        error.ends_with(&format!("(from {}:3)", file.0.display())),
        "{error}"
    );
    // A value not of its kind: named before anything is merged.
    let error = load(None, [], &[flag("max_subscriptions", "many")]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "flag --max-subscriptions: max_subscriptions = \"many\": `many` is not a whole number"
    );
    let error = load(None, [], &[flag("engine.kind", "etcd")])
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("flag --engine.kind: engine.kind = \"etcd\": unknown variant `etcd`"),
        "{error}"
    );
    // `--engine redis://...` names the engine and its instances at once.
    let loaded = load(
        None,
        [],
        &[flag(
            "engine.kind",
            "redis://127.0.0.1:7000,redis://127.0.0.1:7001",
        )],
    )
    .unwrap();
    assert_eq!(loaded.config.engine.kind, EngineKind::Redis);
    assert_eq!(
        loaded.config.engine.redis_urls,
        ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]
    );
    let error = from_file("[websocket]\nping_interval = \"-5s\"\n")
        .unwrap_err()
        .to_string();
    assert!(error.contains("line 2"), "{error}");
    assert!(error.contains("-5"), "{error}");
    // A setting that contradicts another names the one validation checks.
    let error = load(None, [], &[flag("max_api_body", "10")])
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("max_api_body = 10: must be at least"),
        "{error}"
    );
    let file = TempFile::new("[namespaces.chat]\nhistory_size = 1\n");
    let env = [("TETHER_MAX_DATA_DEPTH".to_owned(), "500".to_owned())];
    let error = load(Some(&file.0), env, &[]).unwrap_err().to_string();
    assert!(
        error.ends_with("(from variable TETHER_MAX_DATA_DEPTH)"),
        "{error}"
    );
}

#[test]
fn an_unknown_key_gets_its_line_and_the_nearest_setting() {
    let error = from_file("listen = \"127.0.0.1:1\"\n\n[websocket]\ncompresion = false\n")
        .unwrap_err()
        .to_string();
    assert!(error.ends_with(":4: unknown setting `websocket.compresion`; did you mean `compression` under [websocket]?"), "{error}");
    // Not a list of every key.
    assert!(!error.contains("max_subscriptions"), "{error}");
    let error = from_file("lisen = \"127.0.0.1:1\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        error.ends_with(":1: unknown setting `lisen`; did you mean `listen`?"),
        "{error}"
    );
    let error = from_file("[namespaces.chat]\npresense = false\n")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(":2: unknown setting `namespaces.chat.presense`; did you mean `presence`"),
        "{error}"
    );
    let error = from_file("wibble = 1\n").unwrap_err().to_string();
    assert!(error.contains("unknown setting `wibble`"), "{error}");
}

#[test]
fn a_key_in_the_wrong_section_is_told_its_section() {
    let error = from_file("listen = \"127.0.0.1:1\"\ncompression = false\n")
        .unwrap_err()
        .to_string();
    assert!(
        error.ends_with(":2: `compression` belongs under [websocket], not at the top"),
        "{error}"
    );
    let error = from_file("[http]\nmax_subscriptions = 3\n")
        .unwrap_err()
        .to_string();
    assert!(
        error.ends_with(
            ":2: `max_subscriptions` belongs at the top, before any [section], not under [http]"
        ),
        "{error}"
    );
    let error = from_file("[websocket]\nping_interval_secs = 5\n")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("`ping_interval_secs` is now `websocket.ping_interval`"),
        "{error}"
    );
}

#[test]
fn a_variable_that_is_no_setting_is_a_warning_with_the_nearest_name() {
    let env = [
        ("TETHER_PING_INTERVAL".to_owned(), "3".to_owned()),
        ("TETHER_URL".to_owned(), "ws://x".to_owned()),
        ("HOME".to_owned(), "/root".to_owned()),
    ];
    let loaded = load(None, env, &[]).unwrap();
    assert_eq!(
        loaded.warnings,
        [
            "TETHER_PING_INTERVAL is not a setting and is ignored; did you mean TETHER_WEBSOCKET__PING_INTERVAL?",
            "TETHER_URL is not a setting and is ignored",
        ]
    );
    assert_eq!(
        loaded.config.websocket.ping_interval,
        Duration::from_secs(25),
        "ignored"
    );
}

#[test]
fn durations_take_one_form_everywhere() {
    let config = from_file("[websocket]\nping_interval = \"1500ms\"\npong_timeout = 3\n")
        .unwrap()
        .config;
    assert_eq!(config.websocket.ping_interval, Duration::from_millis(1500));
    assert_eq!(config.websocket.pong_timeout, Duration::from_secs(3));
    let env = [("TETHER_HTTP__POLL_TIMEOUT".to_owned(), "2m".to_owned())];
    let flags = [flag("shutdown_timeout", "2.5")];
    let config = load(None, env, &flags).unwrap().config;
    assert_eq!(config.http.poll_timeout, Duration::from_secs(120));
    assert_eq!(config.shutdown_timeout, Duration::from_millis(2500));
}

#[test]
fn validation_names_only_keys_that_are_settings() {
    // Every number and duration at 0, and past a bound: whatever validation
    // refuses, it names by a key the file, the environment and flags know.
    let mut refused = 0;
    for setting in settings() {
        let texts: &[&str] = match setting.kind {
            SettingKind::Integer | SettingKind::Number => &["0", "100000"],
            SettingKind::Duration => &["0s"],
            _ => continue,
        };
        for text in texts {
            let flags = [flag(&setting.key, text)];
            if let Err(LoadError::Invalid {
                setting: invalid, ..
            }) = load(None, [], &flags)
            {
                assert!(
                    crate::config::settings::find(&invalid.key).is_some(),
                    "validation names `{}`, which is no setting",
                    invalid.key
                );
                refused += 1;
            }
        }
    }
    assert!(refused >= 15, "only {refused} refusals");
}
