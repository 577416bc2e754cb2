//! Loading plugins the way the integration tests and benchmarks do.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use eva_plugin_runtime::{
    ChatMessage, ComponentCache, Plugin, PluginEngine, PluginOptions, Prompt, PromptRewards, RawValue,
};

/// One engine per process, with a compiled-component cache of its own.
pub fn engine() -> &'static PluginEngine {
    static ENGINE: OnceLock<PluginEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let dir = crate::target_dir().join("eva-test-cache");
        PluginEngine::new(ComponentCache::new(Some(dir))).expect("engine")
    })
}

/// Load the plugin built from `crate_name` (building every plugin first, once).
pub fn load(crate_name: &str, options: PluginOptions) -> Plugin {
    engine().load(&crate::component(crate_name), options).unwrap_or_else(|e| panic!("loading {crate_name}: {e}"))
}

/// Options that set these config keys (as if given on the command line).
pub fn with_config(pairs: &[(&str, &str)]) -> PluginOptions {
    PluginOptions {
        config: pairs.iter().map(|(k, v)| (k.to_string(), RawValue::Text(v.to_string()))).collect::<BTreeMap<_, _>>(),
        ..PluginOptions::default()
    }
}

/// A one-message prompt.
pub fn prompt(id: &str, text: &str) -> Prompt {
    Prompt::new(id, vec![ChatMessage::user(text)])
}

/// An info-metric input: a prompt and these rewards, 10 tokens per answer.
pub fn rewards(id: &str, rewards: &[f64]) -> PromptRewards {
    PromptRewards {
        prompt: prompt(id, "q"),
        rewards: rewards.to_vec(),
        token_counts: vec![10; rewards.len()],
        responses: vec!["a".into(); rewards.len()],
    }
}

/// Run a plugin's `build.sh OUT` (an example's or a template's) with `eva_host` as the
/// `EVA_HOST` it calls; panics with its output, naming the tools it needs, when it fails.
pub fn run_build_script(script: &std::path::Path, out: &std::path::Path, eva_host: &str, needs: &str) {
    let result = std::process::Command::new(script).arg(out).env("EVA_HOST", eva_host).output().unwrap();
    assert!(
        result.status.success(),
        "{} failed ({}; it needs {needs}: scripts/install-test-tools): {}{}",
        script.display(),
        result.status,
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
}
