//! `eva-host plugin ...`: inspect and build plugin components, and give authors of other
//! languages the contract, C bindings and componentization.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use eva_plugin_build::{BuildRequest, GuestTarget};
use eva_plugin_runtime::Inspection;

use crate::plugin_args::PluginArgs;

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Print a plugin's role, name, version, WIT version, imports and config schema.
    Inspect {
        /// The component file.
        file: PathBuf,
        #[command(flatten)]
        plugins: PluginArgs,
    },
    /// Build a Rust plugin crate into a component (`OUT/NAME.wasm`).
    Build {
        /// The plugin crate's directory or its Cargo.toml.
        path: PathBuf,
        /// Build this package of a workspace (repeatable); default: the crate at PATH.
        #[arg(short, long = "package")]
        packages: Vec<String>,
        /// Build for wasm32-wasip1 (for plugins that use files through WASI).
        #[arg(long)]
        wasi: bool,
        /// Where the components go.
        #[arg(long, default_value = "plugins-out")]
        out: PathBuf,
    },
    /// Write the plugin contract (the WIT package eva:plugin) into a directory, for
    /// componentize-py, componentize-js or wit-bindgen.
    Wit {
        /// The directory.
        #[arg(long, default_value = "wit")]
        out: PathBuf,
    },
    /// Generate bindings of a world for a language without its own bindings generator
    /// here: C (`WORLD.h`, `WORLD.c`, `WORLD_component_type.o`, from wit-bindgen).
    Bindgen {
        /// The language.
        #[arg(value_enum)]
        lang: BindgenLang,
        /// The world: info-metric, sampler, evolver, pairing or reward.
        #[arg(long)]
        world: String,
        /// Where the files go.
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a core wasm module that carries its world's type (wit-bindgen's
    /// `*_component_type.o` linked in) a component; a module importing WASI preview 1
    /// gets the reactor adapter.
    Componentize {
        /// The core module.
        module: PathBuf,
        /// The component to write.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum BindgenLang {
    C,
}

pub fn run(cmd: PluginCommand) -> Result<()> {
    match cmd {
        PluginCommand::Inspect { file, plugins } => {
            let settings = plugins.settings()?;
            let engine = crate::plugin_engine()?;
            let plugin = engine.load_with(&file, |name| settings.options(name))?;
            settings.check_names([plugin.name()])?;
            print!("{}", Inspection(&plugin));
            Ok(())
        }
        PluginCommand::Build { path, packages, wasi, out } => {
            let manifest_path = if path.is_dir() { path.join("Cargo.toml") } else { path };
            // A target directory of its own: guests may be built by another toolchain
            // than the host, and a running `cargo` may hold the default one's lock.
            let target_dir = manifest_path.parent().map(|d| d.join("target").join("eva-guests"));
            let request = BuildRequest {
                manifest_path,
                packages,
                target: if wasi { GuestTarget::Wasip1 } else { GuestTarget::Unknown },
                target_dir,
                out_dir: out,
            };
            let built = eva_plugin_build::build(&request).context("building the plugin")?;
            for b in built {
                println!("{}", b.component.display());
            }
            Ok(())
        }
        PluginCommand::Wit { out } => print_paths(eva_plugin_build::contract::write_wit(&out)?),
        PluginCommand::Bindgen { lang: BindgenLang::C, world, out } => {
            print_paths(eva_plugin_build::contract::c_bindings(&world, &out)?)
        }
        PluginCommand::Componentize { module, out } => {
            let bytes = std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
            let target = eva_plugin_build::guest_target_of(&bytes)
                .map_err(|e| anyhow::anyhow!("{} is not a wasm module: {e}", module.display()))?;
            eva_plugin_build::componentize_file(&module, &out, target)?;
            println!("{}", out.display());
            Ok(())
        }
    }
}

fn print_paths(paths: Vec<PathBuf>) -> Result<()> {
    for p in paths {
        println!("{}", p.display());
    }
    Ok(())
}
