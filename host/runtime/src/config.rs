//! Plugin metadata and typed configuration: the user's settings are checked against the
//! schema a plugin declares before the plugin sees them.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::text::quote;

/// The longest plugin name, config key or version, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// The longest plugin description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;
/// The most config keys a plugin may declare.
pub const MAX_CONFIG_FIELDS: usize = 128;
/// The longest default value or description of one config key, in bytes.
pub const MAX_FIELD_BYTES: usize = 1024;

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metadata {
    pub name: String,
    pub version: String,
    pub description: String,
    pub config: Vec<ConfigField>,
}

/// One configuration key a plugin accepts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigField {
    pub name: String,
    pub kind: ConfigKind,
    pub default_value: String,
    pub description: String,
}

/// The type of a configuration value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConfigKind {
    Boolean,
    Integer,
    Float,
    Text,
}

impl fmt::Display for ConfigKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigKind::Boolean => "boolean",
            ConfigKind::Integer => "integer",
            ConfigKind::Float => "float",
            ConfigKind::Text => "text",
        })
    }
}

/// A configuration value, typed by its field.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ConfigValue {
    Boolean(bool),
    Integer(i64),
    Float(f64),
    Text(String),
}

/// A setting as the user wrote it, before it is checked against a schema.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    /// From the command line (`--plugin-config NAME.KEY=VALUE`): parsed by the field's kind.
    Text(String),
    /// From a TOML table: its type must fit the field's kind.
    Toml(toml::Value),
}

impl ConfigKind {
    /// Parse a value written as text (the command line, or a declared default).
    pub fn parse(self, text: &str) -> Result<ConfigValue, String> {
        let bad = || format!("{} is not a valid {self}", quote(text));
        Ok(match self {
            ConfigKind::Boolean => ConfigValue::Boolean(text.parse().map_err(|_| bad())?),
            ConfigKind::Integer => ConfigValue::Integer(text.parse().map_err(|_| bad())?),
            ConfigKind::Float => {
                let v: f64 = text.parse().map_err(|_| bad())?;
                if !v.is_finite() {
                    return Err(bad());
                }
                ConfigValue::Float(v)
            }
            ConfigKind::Text => ConfigValue::Text(text.to_owned()),
        })
    }

    fn parse_toml(self, value: &toml::Value) -> Result<ConfigValue, String> {
        match (self, value) {
            (ConfigKind::Boolean, toml::Value::Boolean(b)) => Ok(ConfigValue::Boolean(*b)),
            (ConfigKind::Integer, toml::Value::Integer(i)) => Ok(ConfigValue::Integer(*i)),
            (ConfigKind::Float, toml::Value::Integer(i)) => Ok(ConfigValue::Float(*i as f64)),
            (ConfigKind::Float, toml::Value::Float(f)) if f.is_finite() => Ok(ConfigValue::Float(*f)),
            (ConfigKind::Text, toml::Value::String(s)) => Ok(ConfigValue::Text(s.clone())),
            _ => Err(format!("`{value}` is not a valid {self}")),
        }
    }
}

impl Metadata {
    /// Check what the plugin declared: a name, unique keys, defaults that parse, and
    /// every string within its bound (a plugin controls them all; `inspect` prints them).
    pub fn check(&self) -> Result<(), String> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= MAX_NAME_BYTES
                && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        let bounded = |what: &str, s: &str, max: usize| {
            if s.len() > max {
                return Err(format!("{what} {} is longer than {max} bytes", quote(s)));
            }
            Ok(())
        };
        if !name_ok(&self.name) {
            return Err(format!(
                "plugin name {} must be 1 to {MAX_NAME_BYTES} characters of a-z, 0-9 and `-`",
                quote(&self.name)
            ));
        }
        bounded("version", &self.version, MAX_NAME_BYTES)?;
        if self.version.chars().any(char::is_control) {
            return Err(format!("version {} has control characters", quote(&self.version)));
        }
        bounded("description", &self.description, MAX_DESCRIPTION_BYTES)?;
        if self.config.len() > MAX_CONFIG_FIELDS {
            return Err(format!("{} config keys declared, more than {MAX_CONFIG_FIELDS}", self.config.len()));
        }
        let mut seen = std::collections::HashSet::new();
        for field in &self.config {
            if !name_ok(&field.name) {
                return Err(format!(
                    "config key {} is not kebab-case of at most {MAX_NAME_BYTES} bytes",
                    quote(&field.name)
                ));
            }
            if !seen.insert(&field.name) {
                return Err(format!("config key `{}` is declared twice", field.name));
            }
            bounded(&format!("the default of config key `{}`", field.name), &field.default_value, MAX_FIELD_BYTES)?;
            bounded(&format!("the description of config key `{}`", field.name), &field.description, MAX_FIELD_BYTES)?;
            field
                .kind
                .parse(&field.default_value)
                .map_err(|e| format!("default of config key `{}`: {e}", field.name))?;
        }
        Ok(())
    }

    /// Check the user's settings against the schema and type them. Keys left out are
    /// not sent: the plugin applies its own defaults.
    pub fn resolve(&self, settings: &BTreeMap<String, RawValue>) -> Result<Vec<(String, ConfigValue)>, String> {
        settings
            .iter()
            .map(|(key, raw)| {
                let field = self.config.iter().find(|f| &f.name == key).ok_or_else(|| {
                    let known: Vec<&str> = self.config.iter().map(|f| f.name.as_str()).collect();
                    if known.is_empty() {
                        format!("unknown key `{key}`: this plugin takes no configuration")
                    } else {
                        format!("unknown key `{key}` (known keys: {})", known.join(", "))
                    }
                })?;
                let value = match raw {
                    RawValue::Text(text) => field.kind.parse(text),
                    RawValue::Toml(value) => field.kind.parse_toml(value),
                }
                .map_err(|e| format!("key `{key}`: {e}"))?;
                Ok((key.clone(), value))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Metadata {
        Metadata {
            name: "regret".into(),
            version: "0.1.0".into(),
            description: "d".into(),
            config: vec![
                ConfigField {
                    name: "metric".into(),
                    kind: ConfigKind::Text,
                    default_value: "gap".into(),
                    description: String::new(),
                },
                ConfigField {
                    name: "scale".into(),
                    kind: ConfigKind::Float,
                    default_value: "1.0".into(),
                    description: String::new(),
                },
            ],
        }
    }

    #[test]
    fn resolves_typed_values_from_text_and_toml() {
        let settings = BTreeMap::from([
            ("metric".to_owned(), RawValue::Text("variance".into())),
            ("scale".to_owned(), RawValue::Toml(toml::Value::Integer(2))),
        ]);
        let resolved = schema().resolve(&settings).unwrap();
        assert_eq!(
            resolved,
            vec![
                ("metric".to_owned(), ConfigValue::Text("variance".into())),
                ("scale".to_owned(), ConfigValue::Float(2.0)),
            ]
        );
    }

    #[test]
    fn rejects_unknown_keys_and_wrong_kinds() {
        let unknown = BTreeMap::from([("metrc".to_owned(), RawValue::Text("x".into()))]);
        let err = schema().resolve(&unknown).unwrap_err();
        assert!(err.contains("unknown key `metrc`") && err.contains("metric, scale"), "{err}");
        let nan = BTreeMap::from([("scale".to_owned(), RawValue::Text("NaN".into()))]);
        assert!(schema().resolve(&nan).unwrap_err().contains("not a valid float"));
    }

    #[test]
    fn checks_declared_metadata() {
        assert!(schema().check().is_ok());
        let mut bad = schema();
        bad.config[1].default_value = "fast".into();
        assert!(bad.check().unwrap_err().contains("default of config key `scale`"));
        bad = schema();
        bad.name = "Bad Name".into();
        assert!(bad.check().is_err());
    }

    #[test]
    fn every_declared_string_is_bounded_and_quoted_briefly() {
        let check = |edit: &dyn Fn(&mut Metadata)| {
            let mut m = schema();
            edit(&mut m);
            m.check().unwrap_err()
        };
        let err = check(&|m| m.name = "n".repeat(10 << 20));
        assert!(err.len() < 200 && err.contains("(10485760 bytes) must be 1 to 64 characters"), "{err}");
        assert!(check(&|m| m.description = "d".repeat(30 << 20)).contains("longer than 4096 bytes"));
        assert!(check(&|m| m.version = "1".repeat(65)).contains("version"));
        assert!(check(&|m| m.version = "1.0\n[ERROR]".into()).contains("control characters"));
        assert!(check(&|m| m.config[0].description = "x".repeat(2000)).contains("description of config key `metric`"));
        assert!(check(&|m| m.config[0].default_value = "x".repeat(2000)).contains("default of config key `metric`"));
        let err = check(&|m| {
            m.config = (0..129)
                .map(|i| ConfigField {
                    name: format!("k{i}"),
                    kind: ConfigKind::Text,
                    default_value: String::new(),
                    description: String::new(),
                })
                .collect()
        });
        assert_eq!(err, "129 config keys declared, more than 128");
    }
}
