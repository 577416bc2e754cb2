//! Plugin roles and how a component's exports reveal its role and contract version.

use std::fmt;

/// The WIT package version this host implements.
pub const WIT_VERSION: &str = "0.1.1";

/// The WIT package every plugin interface lives in.
pub const WIT_PACKAGE: &str = "eva:plugin";

/// The part of the eva loop a plugin plays; one per WIT world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// World `info-metric`, exports `info`.
    InfoMetric,
    /// World `sampler`, exports `sample`.
    Sampler,
    /// World `evolver`, exports `evolve`.
    Evolver,
    /// World `pairing`, exports `pair`.
    Pairing,
    /// World `reward`, exports `rate` (since 0.1.1).
    Reward,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::InfoMetric, Role::Sampler, Role::Evolver, Role::Pairing, Role::Reward];

    /// The WIT world a plugin of this role targets.
    pub fn world(self) -> &'static str {
        match self {
            Role::InfoMetric => "info-metric",
            Role::Sampler => "sampler",
            Role::Evolver => "evolver",
            Role::Pairing => "pairing",
            Role::Reward => "reward",
        }
    }

    /// The interface the world exports besides `plugin`.
    pub fn interface(self) -> &'static str {
        match self {
            Role::InfoMetric => "info",
            Role::Sampler => "sample",
            Role::Evolver => "evolve",
            Role::Pairing => "pair",
            Role::Reward => "rate",
        }
    }

    fn from_interface(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.interface() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} role", self.world())
    }
}

/// The role interfaces a plugin may export, for messages: `eva:plugin/{info,...,rate}`.
pub fn expected_exports() -> String {
    let names: Vec<&str> = Role::ALL.iter().map(|r| r.interface()).collect();
    format!("{WIT_PACKAGE}/{{{}}}", names.join(","))
}

/// One `eva:plugin/NAME@VERSION` name, split.
#[derive(Debug, PartialEq, Eq)]
pub struct InterfaceName<'a> {
    pub name: &'a str,
    pub version: &'a str,
}

impl<'a> InterfaceName<'a> {
    /// Parse `eva:plugin/NAME@VERSION`; `None` for names of other packages.
    pub fn parse(full: &'a str) -> Option<Self> {
        let rest = full.strip_prefix(WIT_PACKAGE)?.strip_prefix('/')?;
        let (name, version) = rest.split_once('@').unwrap_or((rest, ""));
        Some(InterfaceName { name, version })
    }
}

/// What the exports of a component say about it.
#[derive(Debug, PartialEq, Eq)]
pub enum Detected {
    /// Exactly one role, of a supported version.
    Role(Role),
    /// No `eva:plugin` role interface at all.
    None,
    /// More than one role interface.
    Several(Vec<Role>),
    /// A role interface of a version this host cannot call.
    Unsupported { found: String },
}

/// Whether a plugin built against `found` can be called by this host. The component
/// model's semver rules apply: within 0.x, the minor version must match.
pub fn version_supported(found: &str) -> bool {
    let major_minor = |v: &str| {
        let mut parts = v.split('.');
        (parts.next().map(str::to_owned), parts.next().map(str::to_owned))
    };
    let (fm, fmin) = major_minor(found);
    let (sm, smin) = major_minor(WIT_VERSION);
    match (fm.as_deref(), sm.as_deref()) {
        (Some("0"), Some("0")) => fmin == smin,
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Find the role from a component's export names.
pub fn detect<'a>(exports: impl IntoIterator<Item = &'a str>) -> Detected {
    let mut roles = Vec::new();
    for export in exports {
        let Some(iface) = InterfaceName::parse(export) else { continue };
        let Some(role) = Role::from_interface(iface.name) else { continue };
        if !version_supported(iface.version) {
            return Detected::Unsupported { found: iface.version.to_owned() };
        }
        roles.push(role);
    }
    match roles.len() {
        0 => Detected::None,
        1 => Detected::Role(roles[0]),
        _ => Detected::Several(roles),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_one_role() {
        let exports = ["eva:plugin/plugin@0.1.0", "eva:plugin/sample@0.1.0"];
        assert_eq!(detect(exports), Detected::Role(Role::Sampler));
    }

    #[test]
    fn patch_versions_are_compatible_minor_versions_are_not() {
        assert_eq!(detect(["eva:plugin/info@0.1.7"]), Detected::Role(Role::InfoMetric));
        assert_eq!(detect(["eva:plugin/info@0.2.0"]), Detected::Unsupported { found: "0.2.0".into() });
    }

    #[test]
    fn every_role_is_named_in_messages() {
        assert_eq!(expected_exports(), "eva:plugin/{info,sample,evolve,pair,rate}");
    }

    #[test]
    fn reports_none_and_several() {
        assert_eq!(detect(["wasi:cli/run@0.2.0"]), Detected::None);
        assert_eq!(
            detect(["eva:plugin/pair@0.1.0", "eva:plugin/evolve@0.1.0"]),
            Detected::Several(vec![Role::Pairing, Role::Evolver])
        );
    }
}
