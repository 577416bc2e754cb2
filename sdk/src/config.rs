//! The configuration a plugin receives, with its declared defaults filled in.

use std::collections::BTreeMap;

use crate::{ConfigEntry, ConfigField, ConfigKind, ConfigValue, Metadata, PluginError};

/// Build [`Metadata`](crate::Metadata): `metadata!(name, description, fields)`; the
/// version is the plugin crate's own, from `CARGO_PKG_VERSION` where the macro is used.
#[macro_export]
macro_rules! metadata {
    ($name:expr, $description:expr, $config:expr) => {
        $crate::Metadata {
            name: ::std::string::String::from($name),
            version: ::std::string::String::from(env!("CARGO_PKG_VERSION")),
            description: ::std::string::String::from($description),
            config: $config,
        }
    };
}

/// One configuration key: its name, kind, default (as the user would write it) and a
/// one-line description.
pub fn field(name: &str, kind: ConfigKind, default_value: &str, description: &str) -> ConfigField {
    ConfigField { name: name.into(), kind, default_value: default_value.into(), description: description.into() }
}

fn parse(kind: ConfigKind, text: &str) -> Option<ConfigValue> {
    Some(match kind {
        ConfigKind::Boolean => ConfigValue::Boolean(text.parse().ok()?),
        ConfigKind::Integer => ConfigValue::Integer(text.parse().ok()?),
        ConfigKind::Float => ConfigValue::Float(text.parse().ok()?),
        ConfigKind::Text => ConfigValue::Text(text.to_owned()),
    })
}

/// The plugin's configuration: every declared key, set by the user or defaulted.
#[derive(Debug, Clone)]
pub struct Config {
    values: BTreeMap<String, ConfigValue>,
}

impl Config {
    /// Defaults from `metadata`, overridden by `entries`.
    pub fn new(metadata: &Metadata, entries: Vec<ConfigEntry>) -> Result<Config, PluginError> {
        let mut values = BTreeMap::new();
        for f in &metadata.config {
            let value = parse(f.kind, &f.default_value).ok_or_else(|| {
                PluginError::Internal(format!("default `{}` of key `{}` does not parse", f.default_value, f.name))
            })?;
            values.insert(f.name.clone(), value);
        }
        for e in entries {
            if !values.contains_key(&e.key) {
                return Err(PluginError::InvalidConfig(format!("unknown key `{}`", e.key)));
            }
            values.insert(e.key, e.value);
        }
        Ok(Config { values })
    }

    fn get(&self, key: &str) -> Result<&ConfigValue, PluginError> {
        self.values.get(key).ok_or_else(|| PluginError::Internal(format!("config key `{key}` is not declared")))
    }

    fn wrong(key: &str, kind: &str) -> PluginError {
        PluginError::Internal(format!("config key `{key}` is not declared as {kind}"))
    }

    pub fn boolean(&self, key: &str) -> Result<bool, PluginError> {
        match self.get(key)? {
            ConfigValue::Boolean(b) => Ok(*b),
            _ => Err(Self::wrong(key, "a boolean")),
        }
    }

    pub fn integer(&self, key: &str) -> Result<i64, PluginError> {
        match self.get(key)? {
            ConfigValue::Integer(i) => Ok(*i),
            _ => Err(Self::wrong(key, "an integer")),
        }
    }

    pub fn float(&self, key: &str) -> Result<f64, PluginError> {
        match self.get(key)? {
            ConfigValue::Float(f) => Ok(*f),
            _ => Err(Self::wrong(key, "a float")),
        }
    }

    pub fn text(&self, key: &str) -> Result<&str, PluginError> {
        match self.get(key)? {
            ConfigValue::Text(t) => Ok(t),
            _ => Err(Self::wrong(key, "text")),
        }
    }
}
