//! The one place settings are merged: defaults, then a TOML file, then
//! `TETHER_*` environment variables, then flags, each a layer of key/value
//! pairs over the one before, read into [`ServerConfig`] by serde and checked
//! once by [`ServerConfig::validate`]. Every value remembers where it came
//! from, so an error names the file line, the variable or the flag.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use super::settings::{self, value_of, Setting};
use super::{InvalidSetting, ServerConfig};

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The setting's default.
    Default,
    /// A line of the configuration file.
    File {
        /// The file, as given.
        path: String,
        /// Its line, from 1.
        line: usize,
    },
    /// An environment variable.
    Env(String),
    /// A flag, as spelt on the command line (`--websocket.ping-interval`).
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("the default"),
            Source::File { path, line } => write!(f, "{path}:{line}"),
            Source::Env(name) => write!(f, "variable {name}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Settings that could not be loaded; each names where the bad value is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML, or a value in it is not of its setting's kind
    /// (the message shows the line).
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// What the TOML reader said.
        #[source]
        source: toml::de::Error,
    },
    /// A key in the file is not a setting.
    #[error("{path}:{line}: {message}")]
    Unknown {
        /// The file.
        path: String,
        /// The key's line.
        line: usize,
        /// What is wrong, with the nearest setting or the right section.
        message: String,
    },
    /// A variable's or flag's value is not of its setting's kind.
    #[error("{origin}: {key} = {value:?}: {why}")]
    Value {
        /// The variable or flag.
        origin: Source,
        /// The setting.
        key: String,
        /// The text given.
        value: String,
        /// What it must be.
        why: String,
    },
    /// The merged settings cannot work together.
    #[error("{setting} (from {origin})")]
    Invalid {
        /// Where the bad value came from.
        origin: Source,
        /// The setting and why.
        setting: InvalidSetting,
    },
}

/// Settings, loaded.
#[derive(Debug)]
pub struct Loaded {
    /// The merged, checked configuration.
    pub config: ServerConfig,
    /// What was ignored and deserves a look (a `TETHER_*` variable that is
    /// no setting).
    pub warnings: Vec<String>,
}

/// The merged keys and where each came from.
#[derive(Default)]
struct Layers {
    table: toml::Table,
    sources: HashMap<String, Source>,
}

/// Loads the configuration: the defaults, the file at `file`, the `TETHER_*`
/// variables among `env`, and `flags` (setting key, text as given, flag as
/// spelt), in that order of precedence, then checks the result once.
/// Variables that name no setting are returned as warnings: the environment
/// is shared with other programs.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    flags: &[(String, String, String)],
) -> Result<Loaded, LoadError> {
    let mut layers = Layers::default();
    if let Some(path) = file {
        layers.file(path)?;
    }
    let mut warnings = Vec::new();
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with("TETHER_"))
        .collect();
    env.sort();
    for (name, text) in env {
        match env_key(&name) {
            Some(key) => layers.text(&key, &text, Source::Env(name))?,
            None => warnings.push(unknown_variable(&name)),
        }
    }
    for (key, text, flag) in flags {
        layers.text(key, text, Source::Flag(flag.clone()))?;
    }
    layers.inherit();
    let config = ServerConfig::deserialize(toml::Value::Table(layers.table.clone()))
        .expect("every layer was checked on its own");
    config.validate().map_err(|setting| LoadError::Invalid {
        origin: layers.source_of(&setting.key),
        setting,
    })?;
    Ok(Loaded { config, warnings })
}

impl Layers {
    /// The file's keys: unknown ones refused with their line, values read by
    /// serde (whose errors show the line).
    fn file(&mut self, path: &Path) -> Result<(), LoadError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: shown.clone(),
            source,
        })?;
        let parse = |source| LoadError::Parse {
            path: shown.clone(),
            source,
        };
        let spans = toml::de::DeTable::parse(&text).map_err(parse)?;
        let mut keys = Vec::new();
        walk(spans.get_ref(), "", &mut keys);
        for (key, offset) in &keys {
            let line = text[..*offset].matches('\n').count() + 1;
            if let Some(message) = unknown(key) {
                return Err(LoadError::Unknown {
                    path: shown,
                    line,
                    message,
                });
            }
            let source = Source::File {
                path: shown.clone(),
                line,
            };
            self.sources.insert(key.clone(), source);
        }
        toml::from_str::<ServerConfig>(&text).map_err(parse)?;
        self.table = toml::from_str(&text).map_err(parse)?;
        Ok(())
    }

    /// A value given as text (a variable or a flag), read by its setting's kind
    /// and by serde on its own, so that a bad one is named by its source.
    fn text(&mut self, key: &str, text: &str, source: Source) -> Result<(), LoadError> {
        // `--engine redis://HOST:PORT[,redis://...]`: the engine and its instances at once.
        if key == "engine.kind" && text.starts_with("redis") && text.contains("://") {
            self.text("engine.kind", "redis", source.clone())?;
            return self.text("engine.redis_urls", text, source);
        }
        let bad = |why: String| LoadError::Value {
            origin: source.clone(),
            key: key.to_owned(),
            value: text.to_owned(),
            why,
        };
        let setting = setting_of(key).ok_or_else(|| bad("no such setting".to_owned()))?;
        let value = value_of(&setting.kind, text).map_err(bad)?;
        let mut alone = toml::Table::new();
        insert(&mut alone, key, value.clone());
        if let Err(error) = ServerConfig::deserialize(toml::Value::Table(alone)) {
            return Err(bad(error.message().to_owned()));
        }
        insert(&mut self.table, key, value);
        self.sources.insert(key.to_owned(), source);
        Ok(())
    }

    /// A namespace keeps the `[channels]` value of every key it does not set.
    fn inherit(&mut self) {
        for (map, of) in settings::maps() {
            let base = self
                .table
                .get(of)
                .and_then(toml::Value::as_table)
                .cloned()
                .unwrap_or_default();
            let Some(entries) = self.table.get_mut(map).and_then(toml::Value::as_table_mut) else {
                continue;
            };
            for (name, entry) in entries.iter_mut() {
                let Some(entry) = entry.as_table_mut() else {
                    continue;
                };
                for (key, value) in &base {
                    if !entry.contains_key(key) {
                        entry.insert(key.clone(), value.clone());
                        if let Some(source) = self.sources.get(&format!("{of}.{key}")).cloned() {
                            self.sources.insert(format!("{map}.{name}.{key}"), source);
                        }
                    }
                }
            }
        }
    }

    /// Where `key` was set, or the default.
    fn source_of(&self, key: &str) -> Source {
        self.sources.get(key).cloned().unwrap_or(Source::Default)
    }
}

/// Every leaf key of a parsed file with the offset of its name.
fn walk(table: &toml::de::DeTable<'_>, prefix: &str, keys: &mut Vec<(String, usize)>) {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.get_ref().to_string()
        } else {
            format!("{prefix}.{}", name.get_ref())
        };
        match value.get_ref() {
            // A section, a namespace, or a table where a value belongs (which
            // serde then refuses by its line).
            toml::de::DeValue::Table(inner) if setting_of(&key).is_none() => {
                walk(inner, &key, keys);
                if inner.is_empty() {
                    keys.push((key, name.span().start));
                }
            }
            _ => keys.push((key, name.span().start)),
        }
    }
}

/// The setting a key names; `namespaces.chat.presence` is `channels.presence`.
fn setting_of(key: &str) -> Option<&'static Setting> {
    if let Some(found) = settings::find(key) {
        return Some(found);
    }
    settings::maps().iter().find_map(|(map, of)| {
        let (_, name) = key.strip_prefix(map)?.strip_prefix('.')?.split_once('.')?;
        settings::find(&format!("{of}.{name}"))
    })
}

/// Why a key of the file is no setting, or `None` when it is one (or a
/// section, or a namespace).
fn unknown(key: &str) -> Option<String> {
    if setting_of(key).is_some()
        || settings::sections()
            .iter()
            .any(|section| section.name == key)
        || settings::maps().iter().any(|(map, _)| {
            key == map
                || key
                    .strip_prefix(map)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .is_some_and(|name| !name.contains('.'))
        })
    {
        return None;
    }
    let (place, name) = key.rsplit_once('.').unwrap_or(("", key));
    // A namespace takes `[channels]`'s keys.
    let map = settings::maps()
        .iter()
        .find(|(map, _)| place.starts_with(map.as_str()));
    let section = map.map_or(place, |(_, of)| of.as_str());
    let here = match place {
        "" => "at the top".to_owned(),
        place => format!("under [{place}]"),
    };
    let homes: Vec<&Setting> = settings::settings()
        .iter()
        .filter(|setting| setting.name == name && setting.section != section)
        .collect();
    if !homes.is_empty() {
        let places: Vec<String> = homes
            .iter()
            .map(|setting| match setting.section.as_str() {
                "" => "at the top, before any [section]".to_owned(),
                home => format!("under [{home}]"),
            })
            .collect();
        return Some(format!(
            "`{name}` belongs {}, not {here}",
            places.join(" or ")
        ));
    }
    let in_section = |stem: &str| match section {
        "" => stem.to_owned(),
        section => format!("{section}.{stem}"),
    };
    if let Some(setting) = name
        .strip_suffix("_secs")
        .and_then(|stem| settings::find(&in_section(stem)))
    {
        return Some(format!(
            "`{name}` is now `{}`, a duration with its unit (`{} = \"25s\"`)",
            setting.key, setting.name
        ));
    }
    let wanted = in_section(name);
    let nearest = settings::settings()
        .iter()
        .map(|setting| (strsim::levenshtein(&wanted, &setting.key), setting))
        .min_by_key(|(distance, _)| *distance)
        .filter(|(distance, _)| *distance <= (wanted.len() / 3).max(2));
    Some(match nearest {
        // Within a namespace, or within the same section, the name says it.
        Some((_, setting)) if map.is_some() || setting.section == section => {
            let hint = match setting.section.as_str() {
                _ if map.is_some() => String::new(),
                "" => String::new(),
                home => format!(" under [{home}]"),
            };
            format!(
                "unknown setting `{key}`; did you mean `{}`{hint}?",
                setting.name
            )
        }
        Some((_, setting)) => format!("unknown setting `{key}`; did you mean `{}`?", setting.key),
        None => format!("unknown setting `{key}` (`tether config example` lists them all)"),
    })
}

/// The setting a `TETHER_*` variable names: `TETHER_WEBSOCKET__PING_INTERVAL`
/// is `websocket.ping_interval`, `TETHER_NAMESPACES__CHAT__PRESENCE` is
/// `namespaces.chat.presence`.
fn env_key(name: &str) -> Option<String> {
    let key = name
        .strip_prefix("TETHER_")?
        .to_lowercase()
        .replace("__", ".");
    setting_of(&key).map(|_| key)
}

/// A warning for a `TETHER_*` variable that names no setting, with the
/// nearest one.
fn unknown_variable(name: &str) -> String {
    let nearest = settings::settings()
        .iter()
        .map(|setting| {
            let env = setting.env();
            // An old name is often the new one without its section.
            let bare = format!("TETHER_{}", setting.name.to_uppercase());
            (
                strsim::levenshtein(name, &env).min(strsim::levenshtein(name, &bare)),
                env,
            )
        })
        .min_by_key(|(distance, _)| *distance)
        // A third of the name may be off, so `TETHER_URL` is not taken for
        // `TETHER_SSE`.
        .filter(|(distance, _)| *distance <= (name.len().saturating_sub(7) / 3).clamp(1, 3));
    match nearest {
        Some((_, env)) => format!("{name} is not a setting and is ignored; did you mean {env}?"),
        None => format!("{name} is not a setting and is ignored"),
    }
}

/// Sets `key` (dotted) in `table`, making the sections on the way.
fn insert(table: &mut toml::Table, key: &str, value: toml::Value) {
    match key.split_once('.') {
        None => {
            table.insert(key.to_owned(), value);
        }
        Some((section, rest)) => {
            let inner = table
                .entry(section.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !inner.is_table() {
                *inner = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(inner) = inner {
                insert(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests;
