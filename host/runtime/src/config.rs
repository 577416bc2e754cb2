//! Plugin metadata and typed configuration: the user's settings are checked against the
//! schema a plugin declares before the plugin sees them.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

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
        let bad = || format!("`{text}` is not a valid {self}");
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
    /// Check what the plugin declared: a name, unique keys, defaults that parse.
    pub fn check(&self) -> Result<(), String> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        if !name_ok(&self.name) {
            return Err(format!(
                "plugin name `{}` must be 1 to 64 characters of a-z, 0-9 and `-`",
                self.name.escape_debug()
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for field in &self.config {
            if !name_ok(&field.name) {
                return Err(format!("config key `{}` is not kebab-case", field.name.escape_debug()));
            }
            if !seen.insert(&field.name) {
                return Err(format!("config key `{}` is declared twice", field.name));
            }
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
}
