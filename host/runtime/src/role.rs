//! Plugin roles and how a component's exports reveal its role and contract version.

use std::fmt;

/// The WIT package version this host implements, and the one plugins are built against.
pub const WIT_VERSION: &str = "0.2.0";

/// A contract version the host can call: the current one, or an older one it adapts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Contract {
    /// 0.2.x, the version of `wit/`: prompts with labels, info metrics see answer texts.
    Current,
    /// 0.1.x (0.1.0 and 0.1.1): no labels and no answer texts; called through an adapter.
    V0_1,
}

impl Contract {
    /// The contract a plugin built against `version` is called through, if any. The
    /// component model's semver rules apply: within 0.x, versions of one minor version
    /// are compatible.
    pub fn of(version: &str) -> Option<Contract> {
        let mut parts = version.split('.');
        match (parts.next(), parts.next()) {
            (Some("0"), Some("2")) => Some(Contract::Current),
            (Some("0"), Some("1")) => Some(Contract::V0_1),
            _ => None,
        }
    }
}

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
    /// Exactly one role, of a supported version: the role, the contract it is called
    /// through and the version its export names.
    Role(Role, Contract, String),
    /// No `eva:plugin` role interface at all.
    None,
    /// More than one role interface.
    Several(Vec<Role>),
    /// A role interface of a version this host cannot call.
    Unsupported { found: String },
}

/// The versions this host loads, for messages.
pub const SUPPORTED_VERSIONS: &str = "0.2.x and 0.1.x";

/// Find the role from a component's export names.
pub fn detect<'a>(exports: impl IntoIterator<Item = &'a str>) -> Detected {
    let mut roles = Vec::new();
    for export in exports {
        let Some(iface) = InterfaceName::parse(export) else { continue };
        let Some(role) = Role::from_interface(iface.name) else { continue };
        let Some(contract) = Contract::of(iface.version) else {
            return Detected::Unsupported { found: iface.version.to_owned() };
        };
        roles.push((role, contract, iface.version.to_owned()));
    }
    match roles.len() {
        0 => Detected::None,
        1 => {
            let (role, contract, version) = roles.remove(0);
            Detected::Role(role, contract, version)
        }
        _ => Detected::Several(roles.into_iter().map(|(role, ..)| role).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_one_role() {
        let exports = ["eva:plugin/plugin@0.2.0", "eva:plugin/sample@0.2.0"];
        assert_eq!(detect(exports), Detected::Role(Role::Sampler, Contract::Current, "0.2.0".into()));
    }

    #[test]
    fn patch_versions_are_compatible_and_0_1_is_adapted() {
        assert_eq!(
            detect(["eva:plugin/info@0.2.7"]),
            Detected::Role(Role::InfoMetric, Contract::Current, "0.2.7".into())
        );
        assert_eq!(detect(["eva:plugin/info@0.1.0"]), Detected::Role(Role::InfoMetric, Contract::V0_1, "0.1.0".into()));
        assert_eq!(detect(["eva:plugin/info@0.3.0"]), Detected::Unsupported { found: "0.3.0".into() });
        assert_eq!(detect(["eva:plugin/info@1.0.0"]), Detected::Unsupported { found: "1.0.0".into() });
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
