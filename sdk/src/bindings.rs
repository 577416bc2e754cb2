//! Guest bindings generated from `wit/`. The shared interfaces (`types`, `log`,
//! `random`, `generate`) are generated once, in `common`, and every role's bindings reuse
//! them, so a `Prompt` is the same Rust type whatever the role.
//!
//! Each module's type-information section travels inside its export macro
//! (`pub_export_macro`), so only the world a plugin actually exports ends up in its
//! component.

#![allow(missing_docs, clippy::all)]

pub mod common {
    wit_bindgen::generate!({
        inline: "
            package eva:sdk;
            world common {
                import eva:plugin/log@0.2.0;
                import eva:plugin/random@0.2.0;
                import eva:plugin/generate@0.2.0;
            }
        ",
        path: "../wit",
        world: "eva:sdk/common",
        generate_all,
        additional_derives: [PartialEq],
        pub_export_macro: true,
        default_bindings_module: "eva_plugin_sdk::bindings::common",
    });
}

macro_rules! role_bindings {
    ($module:ident, $world:literal, $macro_name:literal, $path:literal $(, $($extra:tt)*)?) => {
        pub mod $module {
            wit_bindgen::generate!({
                path: "../wit",
                world: $world,
                with: {
                    "eva:plugin/types@0.2.0": eva_plugin_sdk::bindings::common::eva::plugin::types,
                    "eva:plugin/log@0.2.0": eva_plugin_sdk::bindings::common::eva::plugin::log,
                    "eva:plugin/random@0.2.0": eva_plugin_sdk::bindings::common::eva::plugin::random,
                    $($($extra)*)?
                },
                additional_derives: [PartialEq],
                pub_export_macro: true,
                export_macro_name: $macro_name,
                default_bindings_module: $path,
            });
        }
    };
}

role_bindings!(info_metric, "info-metric", "__eva_export_info_metric_world", "eva_plugin_sdk::bindings::info_metric");
role_bindings!(sampler, "sampler", "__eva_export_sampler_world", "eva_plugin_sdk::bindings::sampler");
role_bindings!(
    evolver,
    "evolver",
    "__eva_export_evolver_world",
    "eva_plugin_sdk::bindings::evolver",
    "eva:plugin/generate@0.2.0": eva_plugin_sdk::bindings::common::eva::plugin::generate,
);
role_bindings!(pairing, "pairing", "__eva_export_pairing_world", "eva_plugin_sdk::bindings::pairing");
role_bindings!(reward, "reward", "__eva_export_reward_world", "eva_plugin_sdk::bindings::reward");
