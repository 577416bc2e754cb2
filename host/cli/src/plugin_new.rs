//! `eva-host plugin new`: a ready-to-build plugin project for any role, in Rust (the
//! SDK), Python (componentize-py), JavaScript (componentize-js) or C (wit-bindgen's C
//! bindings and wasi-libc), from templates compiled into eva-host.
//!
//! Every template implements its role the same simple way in each language (the README
//! it writes says how), so a new plugin builds, loads and runs before its author changes
//! a line.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use eva_plugin_runtime::Role;
use minijinja::{Environment, context};

/// A plugin's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
    C,
}

/// Parse a role by its world's name (`info-metric`, `sampler`, ...).
pub fn parse_role(text: &str) -> Result<Role, String> {
    Role::ALL.into_iter().find(|r| r.world() == text).ok_or_else(|| {
        let worlds: Vec<&str> = Role::ALL.iter().map(|r| r.world()).collect();
        format!("`{text}` is not a role (roles: {})", worlds.join(", "))
    })
}

/// What the template of each role does, in a sentence (no quotes: it lands in string
/// literals of every language).
fn behaviour(role: Role) -> &'static str {
    match role {
        Role::InfoMetric => "Scores a prompt by the spread of its rewards (best minus worst).",
        Role::Sampler => "Picks the prompts with the highest info scores, best first.",
        Role::Evolver => "Makes one variant of each prompt that asks for every step to be explained.",
        Role::Pairing => "Pairs the best answer (chosen) with the worst (rejected) when their rewards differ.",
        Role::Reward => "Rewards answers of about 50 words: 1 / (1 + |words - 50| / 50).",
    }
}

struct File {
    path: String,
    template: &'static str,
    executable: bool,
}

fn file(path: impl Into<String>, template: &'static str) -> File {
    File { path: path.into(), template, executable: false }
}

const README: &str = include_str!("plugin_new/README.md.j2");

/// The SDK's sources, written into Rust projects (`eva-plugin-sdk/`) so that a project
/// builds on any machine, its SDK pinned to the eva-host that made it.
const SDK_SOURCES: [(&str, &str); 4] = [
    ("src/lib.rs", include_str!("../../../sdk/src/lib.rs")),
    ("src/bindings.rs", include_str!("../../../sdk/src/bindings.rs")),
    ("src/config.rs", include_str!("../../../sdk/src/config.rs")),
    ("src/__private.rs", include_str!("../../../sdk/src/__private.rs")),
];

/// The workspace manifest eva-host was built in, for the SDK's dependency on wit-bindgen.
const WORKSPACE_MANIFEST: &str = include_str!("../../../Cargo.toml");

/// The SDK's own manifest, standalone: the workspace's wit-bindgen line, verbatim.
fn sdk_manifest() -> Result<String> {
    let bindgen = WORKSPACE_MANIFEST
        .lines()
        .find(|l| l.starts_with("wit-bindgen = "))
        .context("eva's workspace manifest names no wit-bindgen version")?;
    Ok(format!(
        "# eva's plugin SDK, as eva-host {version} wrote it (contract eva:plugin@{wit}). Its bindings are\n\
         # generated from ../wit, the contract beside it.\n\
         [package]\nname = \"eva-plugin-sdk\"\nversion = \"{version}\"\nedition = \"2024\"\n\
         license = \"Apache-2.0\"\npublish = false\n\n[dependencies]\n{bindgen}\n",
        version = env!("CARGO_PKG_VERSION"),
        wit = eva_plugin_runtime::WIT_VERSION,
    ))
}

/// Four prompts for a smoke run of a new plugin (the README's `run` line).
const SMOKE_SEEDS: &str = concat!(
    r#"{"id": "s1", "prompt": "Name three fruits that are red."}"#,
    "\n",
    r#"{"id": "s2", "prompt": "Explain in one sentence why the sky is blue."}"#,
    "\n",
    r#"{"id": "s3", "prompt": "Suggest a name for a friendly robot."}"#,
    "\n",
    r#"{"id": "s4", "prompt": "What is 12 plus 30?", "answer": "42"}"#,
    "\n",
);

/// The sample input of `plugin call` for the template of `role`, and what the template
/// answers to it: the same in every language.
pub fn sample(role: Role) -> (serde_json::Value, serde_json::Value) {
    use serde_json::json;
    let colour = json!({"id": "a", "prompt": "Name a colour."});
    let sum = json!({"id": "b", "prompt": "Add 2 and 3.", "labels": {"answer": "5"}});
    match role {
        Role::InfoMetric => (
            json!({"items": [
                {"prompt": colour, "rewards": [0.1, 0.9, 0.4], "responses": ["Red.", "Blue, like the sky.", "Green."]},
                {"prompt": sum, "rewards": [0.5], "responses": ["5"]},
            ]}),
            json!({"scores": [0.8, 0.0]}),
        ),
        Role::Sampler => (json!({"scores": [0.2, 0.9, 0.5, 0.9], "count": 3}), json!({"indices": [1, 3, 2]})),
        Role::Evolver => {
            let child = |parent: u32, text: &str, labels: serde_json::Value| {
                json!({"parent": parent, "method": "step-by-step", "labels": labels,
                       "messages": [{"role": "user", "content": format!("{text} Explain each step.")}]})
            };
            (
                json!({"prompts": [colour, sum]}),
                json!({"evolved": [child(0, "Name a colour.", json!(null)), child(1, "Add 2 and 3.", json!({"answer": "5"}))]}),
            )
        }
        Role::Pairing => {
            let responses = |rewards: &[f64]| -> Vec<serde_json::Value> {
                rewards.iter().enumerate().map(|(i, r)| json!({"text": format!("answer {i}"), "reward": r})).collect()
            };
            (
                json!({"items": [{"prompt": colour, "responses": responses(&[0.1, 0.8, 0.3])},
                                 {"prompt": sum, "responses": responses(&[0.5, 0.5])}]}),
                json!({"pairs": [[{"chosen": 1, "rejected": 0}], []]}),
            )
        }
        Role::Reward => (
            json!({"items": [{"prompt": colour, "response": vec!["word"; 50].join(" ")},
                             {"prompt": sum, "response": "5"}]}),
            json!({"rewards": [1.0, 1.0 / (1.0 + 49.0 / 50.0)]}),
        ),
    }
}

/// Write a new plugin project called `name` into `dir` (which must not hold files);
/// `sdk` is eva's `sdk/` directory, which Rust plugins depend on.
pub fn create(lang: Lang, role: Role, name: &str, dir: &Path, sdk: Option<&Path>) -> Result<Vec<PathBuf>> {
    // Words of a-z and 0-9 joined by single dashes: every language's identifiers derive
    // from it (`my-plugin` → `MyPlugin`, `my_plugin`).
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.split('-').all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    if !valid {
        bail!(
            "plugin name `{name}`: use words of a-z and 0-9 joined by single `-`, starting with a letter (at most 64 characters)"
        );
    }
    if dir.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        bail!("{} already holds files: choose another --dir", dir.display());
    }
    let snake = name.replace('-', "_");
    // Rust projects get the SDK beside their sources unless told to use another one.
    let sdk = match (lang, sdk) {
        (Lang::Rust, Some(dir)) => Some(sdk_dir(dir)?.display().to_string()),
        (Lang::Rust, None) => Some("eva-plugin-sdk".to_owned()),
        _ => None,
    };
    let (files, lang_name, build_command, component, toolchain) = match lang {
        Lang::Rust => (
            vec![
                file("Cargo.toml", include_str!("plugin_new/Cargo.toml.j2")),
                file("src/lib.rs", include_str!("plugin_new/lib.rs.j2")),
            ],
            "Rust",
            "eva-host plugin build .".to_owned(),
            format!("plugins-out/{name}.wasm"),
            "It depends on eva's plugin SDK, written beside it (`eva-plugin-sdk/`, built from the \
             contract in `wit/`): the project builds on any machine, with or without eva's source. \
             `eva-host plugin build` uses rustup's wasm32 target when installed and otherwise \
             Debian's rustc-web (see eva's README).",
        ),
        Lang::Python => (
            vec![
                file("app.py", include_str!("plugin_new/app.py.j2")),
                File {
                    path: "build.sh".into(),
                    template: include_str!("plugin_new/build-python.sh.j2"),
                    executable: true,
                },
            ],
            "Python",
            format!("./build.sh {name}.wasm"),
            format!("{name}.wasm"),
            "`build.sh` needs python3 and installs componentize-py 0.25.1 with pip when it is \
             missing. The component embeds a Python interpreter (about 18 MB); eva caches it \
             compiled, so only the first load takes seconds. It also writes the bindings as \
             typed Python sources into `bindings/` (`wit_world`, `componentize_py_types`): add \
             that directory to your editor's analysis path for completion and type checks.",
        ),
        Lang::Js => (
            vec![
                file("app.js", include_str!("plugin_new/app.js.j2")),
                file("package.json", include_str!("plugin_new/package.json.j2")),
                File { path: "build.sh".into(), template: include_str!("plugin_new/build-js.sh.j2"), executable: true },
            ],
            "JavaScript",
            format!("./build.sh {name}.wasm"),
            format!("{name}.wasm"),
            "`build.sh` needs Node.js 20+ and npm; it installs componentize-js into node_modules \
             on first use and builds with every WASI feature disabled.",
        ),
        Lang::C => (
            vec![
                file(format!("{snake}.c"), include_str!("plugin_new/plugin.c.j2")),
                File { path: "build.sh".into(), template: include_str!("plugin_new/build-c.sh.j2"), executable: true },
            ],
            "C",
            format!("./build.sh {name}.wasm"),
            format!("{name}.wasm"),
            "`build.sh` needs clang with wasm-ld and wasi-libc (Debian: clang-19, lld-19, \
             wasi-libc, libclang-rt-19-dev-wasm32).",
        ),
    };
    let lang_id = match lang {
        Lang::Rust => "rust",
        Lang::Python => "python",
        Lang::Js => "js",
        Lang::C => "c",
    };
    let type_name: String = name.split('-').map(|w| w[..1].to_ascii_uppercase() + &w[1..]).collect();
    let ctx = context! {
        name, role => role.world(), interface => role.interface(), world => role.world().replace('-', "_"),
        p => format!("exports_eva_plugin_{}", role.interface()), type_name, description => behaviour(role),
        behaviour => behaviour(role), sdk, c_file => format!("{snake}.c"),
        lang => lang_id, lang_name, wit_version => eva_plugin_runtime::WIT_VERSION, build_command,
        run_plugin => match role {
            Role::Reward => format!("--reward plugin --reward-plugin {component}"),
            _ => format!("--plugin {component}"),
        },
        component, toolchain,
    };
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    let readme = File { path: "README.md".into(), template: README, executable: false };
    let ignore = match lang {
        Lang::Rust => "/target\n/plugins-out\n",
        Lang::Js => "/node_modules\n*.wasm\n",
        Lang::Python => "__pycache__/\n*.wasm\n/bindings\n",
        Lang::C => "*.wasm\n",
    };
    let mut written = vec![];
    for f in files.iter().chain([&readme]) {
        let text = env.render_str(f.template, &ctx).with_context(|| format!("rendering {}", f.path))?;
        written.push(write(&dir.join(&f.path), &text, f.executable)?);
    }
    written.push(write(&dir.join(".gitignore"), ignore, false)?);
    let (input, expect) = sample(role);
    let pretty = serde_json::to_string_pretty(&input).expect("JSON") + "\n";
    written.push(write(&dir.join("sample-input.json"), &pretty, false)?);
    let case = serde_json::json!({"name": "what the template does", "input": input, "expect": expect});
    written.push(write(&dir.join("tests.jsonl"), &(case.to_string() + "\n"), false)?);
    written.push(write(&dir.join("smoke-seeds.jsonl"), SMOKE_SEEDS, false)?);
    if lang == Lang::Rust && sdk.as_deref() == Some("eva-plugin-sdk") {
        for (path, text) in SDK_SOURCES {
            written.push(write(&dir.join("eva-plugin-sdk").join(path), text, false)?);
        }
        written.push(write(&dir.join("eva-plugin-sdk/Cargo.toml"), &sdk_manifest()?, false)?);
        written.extend(eva_plugin_build::contract::write_wit(&dir.join("wit"))?);
    }
    Ok(written)
}

fn write(path: &Path, text: &str, executable: bool) -> Result<PathBuf> {
    std::fs::create_dir_all(path.parent().expect("inside the project"))
        .with_context(|| format!("creating {}", path.display()))?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    if executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", path.display()))?;
    }
    Ok(path.to_owned())
}

/// An SDK directory given with `--sdk` (eva's own `sdk/`, say), checked.
fn sdk_dir(given: &Path) -> Result<PathBuf> {
    given
        .canonicalize()
        .ok()
        .filter(|d| d.join("Cargo.toml").is_file())
        .with_context(|| format!("--sdk {}: no Cargo.toml there", given.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The files of every language's project, and one rendered source and README: a
    /// change to a template shows up in review. (Each template is built and run by
    /// `tests/plugin_new.rs`.)
    #[test]
    fn the_vendored_sdk_is_eva_s_own_with_a_standalone_manifest() {
        let manifest = sdk_manifest().unwrap();
        assert!(manifest.contains("\nwit-bindgen = { version = "), "{manifest}");
        let parsed: toml::Table = toml::from_str(&manifest).unwrap();
        assert_eq!(parsed["package"]["name"].as_str(), Some("eva-plugin-sdk"));
        let bindings = SDK_SOURCES.iter().find(|(p, _)| *p == "src/bindings.rs").unwrap().1;
        assert!(bindings.contains(r#"path: "../wit""#), "the SDK finds the contract at ../wit");
    }

    #[test]
    fn projects_have_their_files_and_render_cleanly() {
        let root = tempfile::tempdir().unwrap();
        let mut listing = String::new();
        for (lang, id) in [(Lang::Rust, "rust"), (Lang::Python, "python"), (Lang::Js, "js"), (Lang::C, "c")] {
            for role in Role::ALL {
                let dir = root.path().join(format!("{id}-{}", role.world()));
                let files = create(lang, role, "demo-plugin", &dir, None).unwrap();
                let names: Vec<String> =
                    files.iter().map(|f| f.strip_prefix(&dir).unwrap().display().to_string()).collect();
                if role == Role::Pairing {
                    listing += &format!("{id}: {}\n", names.join(" "));
                }
                for f in &files {
                    let text = std::fs::read_to_string(f).unwrap();
                    assert!(!text.contains("{{") && !text.contains("{%"), "{} is not fully rendered", f.display());
                    // Two blank lines at most (PEP 8 puts two before a top-level class).
                    assert!(!text.contains("\n\n\n\n"), "{} has a run of blank lines", f.display());
                }
            }
        }
        insta::assert_snapshot!("project_files", listing);
        let c = std::fs::read_to_string(root.path().join("c-pairing/demo_plugin.c")).unwrap();
        insta::assert_snapshot!("c_pairing_source", c);
        let readme = std::fs::read_to_string(root.path().join("python-sampler/README.md")).unwrap();
        let readme = readme.replace(eva_plugin_runtime::WIT_VERSION, "WIT_VERSION");
        insta::assert_snapshot!("python_sampler_readme", readme);
        let err = create(Lang::C, Role::Sampler, "demo-plugin", &root.path().join("c-sampler"), None).unwrap_err();
        assert!(err.to_string().contains("already holds files"), "{err}");
        for bad in ["demo-", "demo--plugin", "-demo", "Demo", ""] {
            let err = create(Lang::Rust, Role::Sampler, bad, &root.path().join("bad"), None).unwrap_err();
            assert!(err.to_string().contains("joined by single `-`"), "{bad}: {err}");
        }
    }
}
