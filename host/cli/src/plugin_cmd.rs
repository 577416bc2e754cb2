//! `eva-host plugin ...`: inspect and build plugin components, and give authors of other
//! languages the contract, C bindings and componentization.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Subcommand;
use eva_plugin_build::{BuildRequest, GuestTarget};
use eva_plugin_registry::signature::SigningKey;
use eva_plugin_registry::{PluginInfo, PluginRef};
use eva_plugin_runtime::{Generator, Inspection, Role};

use crate::plugin_args::{PluginArgs, RegistryArgs};
use crate::plugin_io::CannedReplies;
use crate::plugin_new::{Lang, parse_role};
use crate::plugin_source::{PluginLoader, PluginSource};

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Print a plugin's role, name, version, WIT version, imports and config schema.
    Inspect {
        /// The component file, or an `oci://` reference.
        #[arg(value_name = "FILE.wasm|oci://REF")]
        source: PluginSource,
        #[command(flatten)]
        plugins: PluginArgs,
    },
    /// Call a plugin once on known inputs and print its output (JSON) and its log lines:
    /// seconds, no model run. The input's shape depends on the role (see
    /// docs/plugin-guide.md, "Call it on sample data"); `plugin new` writes one.
    Call {
        /// The component file, or an `oci://` reference.
        #[arg(value_name = "FILE.wasm|oci://REF")]
        source: PluginSource,
        /// The call's input, a JSON file.
        #[arg(long, value_name = "SAMPLE.json")]
        input: PathBuf,
        /// The seed of the plugin's random stream.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Evolvers: answer `generate` with these replies, in order (a JSON list of
        /// strings), instantly and deterministically. Without it, a model answers.
        #[arg(long, value_name = "FILE")]
        generate_replies: Option<PathBuf>,
        /// Evolvers: the model that answers `generate` (a .gguf file or a Hugging Face
        /// directory) [default: the embedded SmolLM2-135M-Instruct].
        #[arg(long, value_name = "PATH", conflicts_with = "generate_replies")]
        model: Option<PathBuf>,
        /// Evolvers: the most tokens of each generated reply.
        #[arg(long, default_value_t = 128)]
        max_tokens: u32,
        #[command(flatten)]
        plugins: PluginArgs,
    },
    /// Run a plugin on every case of a JSON-lines file and compare each output with the
    /// expected one (numbers within a tolerance); exits non-zero on any mismatch. See
    /// docs/plugin-guide.md, "Test it"; `plugin new` writes a passing case.
    Test {
        /// The component file, or an `oci://` reference.
        #[arg(value_name = "FILE.wasm|oci://REF")]
        source: PluginSource,
        /// The cases: one JSON object per line (`name`, `input`, `expect` or
        /// `expect_error`, and optionally `tolerance`, `config`, `seed`,
        /// `generate_replies`).
        #[arg(value_name = "CASES.jsonl")]
        cases: PathBuf,
        #[command(flatten)]
        plugins: PluginArgs,
    },
    /// Write a ready-to-build plugin project: NAME/ with the source, a build script (or
    /// Cargo.toml) and a README, implementing the role simply.
    New {
        /// The plugin's name (kebab-case); also the directory's, unless --dir.
        name: String,
        /// The language.
        #[arg(long, value_enum)]
        lang: Lang,
        /// The role: info-metric, sampler, evolver, pairing or reward.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Where the project goes [default: ./NAME].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Rust plugins: depend on this SDK directory (eva's `sdk/`, say) instead of the
        /// copy written into the project (`eva-plugin-sdk/`, with the contract in `wit/`).
        #[arg(long, value_name = "DIR")]
        sdk: Option<PathBuf>,
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
        /// Cargo's target directory for the guest build [default: target/eva-guests
        /// beside the manifest].
        #[arg(long, value_name = "DIR")]
        target_dir: Option<PathBuf>,
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
    /// Push a plugin component to an OCI registry as a Wasm artifact, its metadata as
    /// annotations; prints the reference pinned to the pushed manifest's digest.
    Publish {
        /// The component.
        file: PathBuf,
        /// Where: `[oci://]HOST[:PORT]/REPOSITORY:TAG`.
        reference: PluginRef,
        /// Sign the component's digest with this Ed25519 private key (PKCS#8 PEM, from
        /// `eva-host plugin keygen` or `openssl genpkey -algorithm ed25519`).
        #[arg(long, value_name = "KEY")]
        sign: Option<PathBuf>,
        /// Reach this registry (`HOST[:PORT]`) over plain HTTP (repeatable); loopback
        /// registries always are.
        #[arg(long = "insecure-registry", value_name = "HOST")]
        insecure_registries: Vec<String>,
    },
    /// Pull a plugin from a registry into the cache (checked against its digests, and
    /// its signature with --require-signed) and print where it is.
    Pull {
        /// `oci://HOST[:PORT]/REPOSITORY:TAG` or `...@sha256:HEX`.
        reference: PluginRef,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Make an Ed25519 key pair for signing plugins: `PREFIX.key` (private, mode 0600)
    /// and `PREFIX.pub` (public, for --require-signed).
    Keygen {
        /// The path of the keys without extension.
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
    },
}

impl PluginCommand {
    /// Whether the command is about one plugin's behaviour, so its log records matter.
    pub fn shows_plugin_logs(&self) -> bool {
        matches!(self, PluginCommand::Call { .. } | PluginCommand::Test { .. })
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum BindgenLang {
    C,
}

pub fn run(cmd: PluginCommand) -> Result<()> {
    match cmd {
        PluginCommand::Inspect { source, plugins } => {
            let loader = PluginLoader::from_args(&plugins)?;
            let plugin = loader.load(&source, false)?;
            loader.check_names(&[])?;
            print!("{}", Inspection(&plugin));
            Ok(())
        }
        PluginCommand::Call { source, input, seed, generate_replies, model, max_tokens, plugins } => {
            let text = std::fs::read_to_string(&input).with_context(|| format!("reading {}", input.display()))?;
            let input_value: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("{} is not JSON", input.display()))?;
            let loader = PluginLoader::from_args(&plugins)?;
            let mut plugin = loader.load(&source, false)?;
            loader.check_names(&[])?;
            plugin.reseed(seed);
            let generator = move || -> Result<Arc<dyn Generator>> {
                if let Some(file) = &generate_replies {
                    return Ok(Arc::new(CannedReplies::read(file)?));
                }
                let path = match &model {
                    Some(p) => p.clone(),
                    None => crate::models::fetch_default()?,
                };
                let model = eva_engine::LanguageModel::load(&path, eva_engine::WeightFormat::F32)
                    .with_context(|| format!("loading {}", path.display()))?;
                Ok(Arc::new(eva_loop::generator::EngineGenerator { model: Arc::new(model), max_tokens, seed }))
            };
            let output = crate::plugin_io::call(plugin, &input_value, Box::new(generator))
                .with_context(|| format!("calling {source} on {}", input.display()))?;
            print_json(&output)
        }
        PluginCommand::Test { source, cases, plugins } => crate::plugin_test::run(&source, &cases, &plugins),
        PluginCommand::New { name, lang, role, dir, sdk } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            print_paths(crate::plugin_new::create(lang, role, &name, &dir, sdk.as_deref())?)
        }
        PluginCommand::Build { path, packages, wasi, out, target_dir } => {
            let manifest_path = if path.is_dir() { path.join("Cargo.toml") } else { path };
            // A target directory of its own: guests may be built by another toolchain
            // than the host, and a running `cargo` may hold the default one's lock.
            let target_dir = target_dir.or_else(|| manifest_path.parent().map(|d| d.join("target").join("eva-guests")));
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
        PluginCommand::Publish { file, reference, sign, insecure_registries } => {
            let loader = PluginLoader::from_args(&PluginArgs::default())?;
            // Load it first: only a working eva plugin is published, with its own metadata.
            let plugin = loader.load(&PluginSource::File(file.clone()), true)?;
            let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let info = PluginInfo {
                name: plugin.name().to_owned(),
                version: plugin.metadata().version.clone(),
                description: plugin.metadata().description.clone(),
                role: plugin.role().world().to_owned(),
                wit: plugin.wit_version().to_owned(),
                imports: plugin.imports().to_vec(),
                exports: vec![format!("eva:plugin/{}@{}", plugin.role().interface(), plugin.wit_version())],
            };
            let digest = eva_plugin_registry::sha256_digest(&bytes);
            // What is pushed must be what was checked above.
            anyhow::ensure!(
                digest == format!("sha256:{}", plugin.digest()),
                "{} changed while it was being published",
                file.display()
            );
            let signature = match &sign {
                Some(key) => SigningKey::read(key)?.sign(&digest),
                None => Default::default(),
            };
            let client = crate::plugin_source::registry_client(&insecure_registries)?;
            let pushed = client.push(&reference, &bytes, &info, signature)?;
            eprintln!("published {} {} ({}) as {reference}", info.name, info.version, pushed.component_digest);
            println!("{}", pushed.pinned);
            Ok(())
        }
        PluginCommand::Pull { reference, registry } => {
            let args = PluginArgs { registry, ..PluginArgs::default() };
            let (pulled, signed_by) = PluginLoader::from_args(&args)?.pull(&reference)?;
            let signed = signed_by.map(|k| format!(", signed by {k}")).unwrap_or_default();
            eprintln!("{} ({}{signed})", pulled.pinned, pulled.component_digest);
            println!("{}", pulled.path.display());
            Ok(())
        }
        PluginCommand::Keygen { out } => {
            let key = SigningKey::generate()?;
            let (private, public) = (out.with_extension("key"), out.with_extension("pub"));
            key.write(&private)?;
            key.public().write(&public)?;
            eprintln!("key {}", key.public());
            print_paths(vec![private, public])
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

/// Print JSON; a closed pipe (`| head`) ends the output quietly.
fn print_json(value: &serde_json::Value) -> Result<()> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(value)? + "\n";
    match std::io::stdout().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn print_paths(paths: Vec<PathBuf>) -> Result<()> {
    for p in paths {
        println!("{}", p.display());
    }
    Ok(())
}
