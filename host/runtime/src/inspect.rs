//! A human-readable description of a plugin, for `eva-host plugin inspect`.

use std::fmt;

use crate::plugin::Plugin;
use crate::role::{Contract, WIT_PACKAGE};
use crate::text::one_line;

/// What `eva-host plugin inspect` prints.
pub struct Inspection<'a>(pub &'a Plugin);

impl fmt::Display for Inspection<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.0;
        let m = p.metadata();
        let wit_version = p.wit_version();
        writeln!(f, "plugin:      {} {}", m.name, m.version)?;
        // A plugin's strings are printed as single lines: no terminal escapes reach the screen.
        writeln!(f, "description: {}", one_line(&m.description))?;
        writeln!(f, "role:        {} (exports {WIT_PACKAGE}/{})", p.role().world(), p.role().interface())?;
        match p.contract() {
            Contract::Current => writeln!(f, "wit:         {WIT_PACKAGE}@{wit_version}")?,
            Contract::V0_1 => writeln!(
                f,
                "wit:         {WIT_PACKAGE}@{wit_version} (called through the 0.1 adapter: it sees no labels and no answer texts)"
            )?,
        }
        writeln!(f, "sha256:      {}", p.digest())?;
        writeln!(f, "imports:")?;
        if p.imports().is_empty() {
            writeln!(f, "  (none)")?;
        }
        for import in p.imports() {
            writeln!(f, "  {import}")?;
        }
        writeln!(f, "config:")?;
        if m.config.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for field in &m.config {
            let (default, description) = (one_line(&field.default_value), one_line(&field.description));
            writeln!(f, "  {} ({}, default {default}): {description}", field.name, field.kind)?;
        }
        Ok(())
    }
}
