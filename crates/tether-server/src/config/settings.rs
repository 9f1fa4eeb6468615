//! The list of settings, read off the config structs' JSON Schema (their
//! fields, doc comments and types) and their `Default` (the values), so that
//! the flags, the environment, the example file and the docs cannot name a
//! setting or a default the structs do not have.

use std::sync::LazyLock;

use serde_json::Value as Json;

use super::{duration, ServerConfig};

/// What a setting takes, which decides how text from the environment or a
/// flag is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingKind {
    /// A whole number.
    Integer,
    /// A number, fractions allowed.
    Number,
    /// `true` or `false`.
    Bool,
    /// Text (an address, a secret, a path).
    Text,
    /// A duration (see [`duration`]).
    Duration,
    /// A list of text; comma-separated in the environment and flags.
    List,
    /// One of these names.
    Choice(Vec<String>),
}

/// One setting.
#[derive(Debug, Clone)]
pub struct Setting {
    /// Its key: `listen`, `websocket.ping_interval`.
    pub key: String,
    /// Its section (`websocket`), empty for the top level.
    pub section: String,
    /// Its name within the section (`ping_interval`).
    pub name: String,
    /// What it does, from its doc comment, without the default.
    pub doc: String,
    /// Its default as it would be written in the file; `None` when unset.
    pub default: Option<toml::Value>,
    /// What it takes.
    pub kind: SettingKind,
    /// The flag it had before flags were named after keys (`ping-interval`),
    /// still accepted.
    pub alias: Option<String>,
}

impl Setting {
    /// The flag: `--listen`, `--websocket.ping-interval`.
    pub fn flag(&self) -> String {
        self.key.replace('_', "-")
    }

    /// The environment variable: `TETHER_LISTEN`, `TETHER_WEBSOCKET__PING_INTERVAL`.
    pub fn env(&self) -> String {
        format!("TETHER_{}", self.key.replace('.', "__").to_uppercase())
    }

    /// The default as shown to people: `25s`, `"127.0.0.1:8080"`, `unset`.
    pub fn default_text(&self) -> String {
        match &self.default {
            None => "unset".to_owned(),
            Some(toml::Value::String(text)) if self.kind == SettingKind::Duration => text.clone(),
            Some(toml::Value::String(text)) => format!("{text:?}"),
            Some(value) => value.to_string(),
        }
    }
}

/// A section of the file (`[websocket]`).
#[derive(Debug, Clone)]
pub struct Section {
    /// Its name.
    pub name: String,
    /// What it holds, from its struct's doc comment.
    pub doc: String,
}

struct Catalogue {
    settings: Vec<Setting>,
    sections: Vec<Section>,
    /// Sections whose keys are names chosen by the user, each a table with
    /// the keys of another section (`namespaces` → `channels`).
    maps: Vec<(String, String)>,
}

static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(catalogue);

/// Every setting: the top level's first, then each section's, by name.
pub fn settings() -> &'static [Setting] {
    &CATALOGUE.settings
}

/// The file's sections, by name.
pub fn sections() -> &'static [Section] {
    &CATALOGUE.sections
}

/// Sections whose entries are named by the user, with the section whose keys
/// each entry takes: `namespaces` → `channels`.
pub fn maps() -> &'static [(String, String)] {
    &CATALOGUE.maps
}

/// The setting with this key.
pub fn find(key: &str) -> Option<&'static Setting> {
    settings().iter().find(|setting| setting.key == key)
}

fn catalogue() -> Catalogue {
    let schema = schemars::schema_for!(ServerConfig);
    let root = schema.as_value();
    let defaults = toml::Table::try_from(ServerConfig::default()).expect("defaults serialize");
    let mut catalogue = Catalogue {
        settings: Vec::new(),
        sections: Vec::new(),
        maps: Vec::new(),
    };
    let mut nested = Vec::new();
    for (name, property) in properties(root, root) {
        let resolved = resolve(root, property);
        if resolved.get("properties").is_some() {
            nested.push((name.clone(), property));
        } else if let Some(entry) = resolved
            .get("additionalProperties")
            .filter(|e| e.is_object())
        {
            let of = reference_name(entry).unwrap_or_default();
            catalogue.maps.push((name.clone(), of));
        } else {
            catalogue
                .settings
                .push(setting(root, "", name, property, defaults.get(name)));
        }
    }
    for (section, property) in nested {
        let resolved = resolve(root, property);
        catalogue.sections.push(Section {
            name: section.clone(),
            doc: clean(
                description(resolved)
                    .or(description(property))
                    .unwrap_or(""),
            ),
        });
        let table = defaults.get(&section).and_then(toml::Value::as_table);
        for (name, field) in properties(root, resolved) {
            let default = table.and_then(|table| table.get(name));
            catalogue
                .settings
                .push(setting(root, &section, name, field, default));
        }
    }
    // `namespaces` takes the keys of the section whose struct its entries are.
    let by_struct: Vec<(String, String)> = properties(root, root)
        .filter_map(|(name, property)| Some((reference_name(property)?, name.clone())))
        .collect();
    for (_, of) in &mut catalogue.maps {
        if let Some((_, section)) = by_struct.iter().find(|(name, _)| name == of) {
            *of = section.clone();
        }
    }
    catalogue
}

fn setting(
    root: &Json,
    section: &str,
    name: &str,
    property: &Json,
    default: Option<&toml::Value>,
) -> Setting {
    let resolved = resolve(root, property);
    let key = if section.is_empty() {
        name.to_owned()
    } else {
        format!("{section}.{name}")
    };
    Setting {
        key,
        section: section.to_owned(),
        name: name.to_owned(),
        doc: clean(description(property).unwrap_or("")),
        default: default.cloned(),
        kind: kind(property, resolved),
        alias: property
            .get("x-alias")
            .and_then(Json::as_str)
            .map(str::to_owned),
    }
}

fn kind(property: &Json, resolved: &Json) -> SettingKind {
    if property.get("format").and_then(Json::as_str) == Some("duration") {
        return SettingKind::Duration;
    }
    let choices: Vec<String> = resolved
        .get("enum")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .chain(
            resolved
                .get("oneOf")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .filter_map(|variant| variant.get("const")),
        )
        .filter_map(|value| value.as_str().map(str::to_owned))
        .collect();
    if !choices.is_empty() {
        return SettingKind::Choice(choices);
    }
    // `Option<T>` is `["T", "null"]`.
    let types: Vec<&str> = match resolved.get("type") {
        Some(Json::String(one)) => vec![one.as_str()],
        Some(Json::Array(many)) => many.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    };
    match types.into_iter().find(|name| *name != "null") {
        Some("integer") => SettingKind::Integer,
        Some("number") => SettingKind::Number,
        Some("boolean") => SettingKind::Bool,
        Some("array") => SettingKind::List,
        _ => SettingKind::Text,
    }
}

/// An object schema's properties, by name.
fn properties<'a>(
    root: &'a Json,
    schema: &'a Json,
) -> impl Iterator<Item = (&'a String, &'a Json)> {
    resolve(root, schema)
        .get("properties")
        .and_then(Json::as_object)
        .into_iter()
        .flatten()
}

/// The schema a `$ref` points at (or the schema itself).
fn resolve<'a>(root: &'a Json, schema: &'a Json) -> &'a Json {
    match reference_name(schema) {
        Some(name) => &root["$defs"][name.as_str()],
        None => schema,
    }
}

/// `WebSocketConfig` of `{"$ref": "#/$defs/WebSocketConfig"}`.
fn reference_name(schema: &Json) -> Option<String> {
    let reference = schema.get("$ref")?.as_str()?;
    Some(reference.rsplit('/').next()?.to_owned())
}

fn description(schema: &Json) -> Option<&str> {
    schema.get("description").and_then(Json::as_str)
}

/// A doc comment as people read it outside rustdoc: one line, no links, and
/// without its `Default:` sentence (the default is shown from the value).
fn clean(doc: &str) -> String {
    let doc = doc.split("Default:").next().unwrap_or(doc);
    let doc = doc.replace("[`", "`").replace("`]", "`");
    doc.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads `text` from the environment or a flag as a value of `kind`.
pub fn value_of(kind: &SettingKind, text: &str) -> Result<toml::Value, String> {
    let text = text.trim();
    Ok(match kind {
        SettingKind::Integer => toml::Value::Integer(
            text.parse()
                .map_err(|_| format!("`{text}` is not a whole number"))?,
        ),
        SettingKind::Number => toml::Value::Float(
            text.parse()
                .map_err(|_| format!("`{text}` is not a number"))?,
        ),
        SettingKind::Bool => toml::Value::Boolean(match text {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err(format!("`{text}` is not true or false")),
        }),
        SettingKind::Duration => {
            duration::parse(text)?;
            toml::Value::String(text.to_owned())
        }
        SettingKind::List => toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_owned()))
                .collect(),
        ),
        SettingKind::Text | SettingKind::Choice(_) => toml::Value::String(text.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_section_and_its_settings_with_docs_and_defaults() {
        let keys: Vec<&str> = settings().iter().map(|s| s.key.as_str()).collect();
        for key in [
            "listen",
            "max_subscriptions",
            "channels.history_size",
            "channels.history_ttl",
            "websocket.ping_interval",
            "http.session_ttl",
            "engine.kind",
            "auth.rsa_public_key_file",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
        assert!(!keys.iter().any(|key| key.contains("pem")), "{keys:?}");
        for setting in settings() {
            assert!(!setting.doc.is_empty(), "{} has no doc", setting.key);
        }
        let ping = find("websocket.ping_interval").unwrap();
        assert_eq!(ping.kind, SettingKind::Duration);
        assert_eq!(ping.default_text(), "25s");
        assert_eq!(ping.flag(), "websocket.ping-interval");
        assert_eq!(ping.env(), "TETHER_WEBSOCKET__PING_INTERVAL");
        assert_eq!(ping.alias.as_deref(), Some("ping-interval"));
        assert!(!ping.doc.contains("Default"), "{}", ping.doc);
        assert_eq!(find("listen").unwrap().default_text(), "\"127.0.0.1:8080\"");
        assert_eq!(find("api_key").unwrap().default_text(), "unset");
        assert_eq!(
            find("channels.slow_consumer").unwrap().kind,
            SettingKind::Choice(vec![
                "disconnect".into(),
                "drop-oldest".into(),
                "latest-per-key".into()
            ])
        );
        assert_eq!(find("allowed_origins").unwrap().kind, SettingKind::List);
        assert_eq!(
            find("max_buffered_bytes").unwrap().kind,
            SettingKind::Integer
        );
        assert_eq!(maps(), [("namespaces".to_owned(), "channels".to_owned())]);
        let names: Vec<&str> = sections().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "auth",
                "channels",
                "engine",
                "http",
                "http2",
                "tls",
                "websocket"
            ]
        );
    }

    #[test]
    fn reads_text_by_kind() {
        assert_eq!(
            value_of(&SettingKind::Integer, "12"),
            Ok(toml::Value::Integer(12))
        );
        assert!(value_of(&SettingKind::Integer, "12.5").is_err());
        assert_eq!(
            value_of(&SettingKind::Bool, "false"),
            Ok(toml::Value::Boolean(false))
        );
        assert_eq!(
            value_of(&SettingKind::List, "a, b,"),
            Ok(toml::Value::Array(vec!["a".into(), "b".into()]))
        );
        assert!(value_of(&SettingKind::Duration, "-1s").is_err());
        assert_eq!(
            value_of(&SettingKind::Text, "123"),
            Ok(toml::Value::String("123".into()))
        );
    }
}
