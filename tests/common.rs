//! Helpers shared by the integration tests (included with `mod common;`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use eva_plugin_runtime::{
    ChatMessage, ComponentCache, Plugin, PluginEngine, PluginOptions, Prompt, PromptRewards, RawValue,
};

/// One engine per test binary, with a cache of its own.
pub fn engine() -> &'static PluginEngine {
    static ENGINE: OnceLock<PluginEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let dir = eva::target_dir().join("eva-test-cache");
        PluginEngine::new(ComponentCache::new(Some(dir))).expect("engine")
    })
}

pub fn load(crate_name: &str, options: PluginOptions) -> Plugin {
    engine().load(&eva::component(crate_name), options).unwrap_or_else(|e| panic!("loading {crate_name}: {e}"))
}

pub fn with_config(pairs: &[(&str, &str)]) -> PluginOptions {
    PluginOptions {
        config: pairs.iter().map(|(k, v)| (k.to_string(), RawValue::Text(v.to_string()))).collect::<BTreeMap<_, _>>(),
        ..PluginOptions::default()
    }
}

pub fn prompt(id: &str, text: &str) -> Prompt {
    Prompt { id: id.into(), messages: vec![ChatMessage::user(text)] }
}

pub fn rewards(id: &str, rewards: &[f64]) -> PromptRewards {
    PromptRewards { prompt: prompt(id, "q"), rewards: rewards.to_vec(), token_counts: vec![10; rewards.len()] }
}
